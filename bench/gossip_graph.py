"""gossipd's core at mainnet scale, on a synthetic graph with real
signatures (tests/synthetic_graph.py: 17,000 nodes, 51,000 channels, 323,000
signatures; generated once, ~20 s, and cached in $GOSSIP_BENCH_CACHE or
<tmp>/pylightning-gossip-bench).

    ./run bench gossip_graph

1. baseline: libsecp256k1 verifying every signature alone (keys and
   signatures parsed beforehand, digests precomputed), and the same through
   coincurve's ``PublicKey(key).verify(der, digest)`` API;
2. loading the store and validating every message into a fresh graph
   (one thread, then two), and its ratio to the baselines (target <= 1.3x);
3. getroute median / p95 over 100 random (source, destination, amount)
   (target median <= 50 ms);
4. resident memory of a process holding the loaded graph and a route
   finder (target <= 300 MB), measured in a subprocess.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coincurve import PublicKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

TESTS = str(Path(__file__).resolve().parent.parent / "tests")
sys.path.insert(0, TESTS)   # synthetic_graph

from bitcoin.keys import compact_to_der  # noqa: E402
from gossipd.manager import GossipManager
from gossipd.routing import RouteNotFound, Router
from gossipd.store import GossipStore
from synthetic_graph import CHAIN_HASH, build_store
from gossipd.validate import (
    CHANNEL_ANNOUNCEMENT, CHANNEL_UPDATE, NODE_ANNOUNCEMENT, hash256, parse_channel_announcement,
    parse_channel_update,
)

NODES, CHANNELS = 17_000, 51_000


def cache_path() -> str:
    d = os.environ.get("GOSSIP_BENCH_CACHE",
                       os.path.join(tempfile.gettempdir(), "pylightning-gossip-bench"))
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, f"synthetic-{NODES}-{CHANNELS}.gossip_store")


def signature_jobs(path: str) -> list[tuple[bytes, bytes, bytes]]:
    """(pubkey, sig64, digest) of every signature in the store."""
    st = GossipStore.open(path)
    nodes: dict[int, tuple[bytes, bytes]] = {}
    jobs = []
    for rec in st.records():
        t, msg = rec.type, rec.msg
        if t == CHANNEL_ANNOUNCEMENT:
            a = parse_channel_announcement(msg)
            nodes[a.scid] = (a.node_id_1, a.node_id_2)
            jobs += a.signature_checks()
        elif t == CHANNEL_UPDATE:
            u = parse_channel_update(msg)
            jobs.append((nodes[u.scid][u.channel_flags & 1], msg[2:66], hash256(msg[66:])))
        elif t == NODE_ANNOUNCEMENT:
            flen = int.from_bytes(msg[66:68], "big")
            jobs.append((msg[72 + flen:105 + flen], msg[2:66], hash256(msg[66:])))
    st.close()
    return jobs


class Timer:
    """Wall and CPU time (CPU time is what the single-thread ratios use: the
    machine may be shared, which moves wall time but hardly CPU time)."""

    def __enter__(self) -> Timer:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def baseline_libsecp(jobs) -> Timer:
    ctx = GLOBAL_CONTEXT.ctx
    keys: dict[bytes, object] = {}
    parsed = []
    for pk, sig, digest in jobs:
        k = keys.get(pk)
        if k is None:
            k = keys[pk] = ffi.new("secp256k1_pubkey *")
            assert lib.secp256k1_ec_pubkey_parse(ctx, k, pk, 33)
        s = ffi.new("secp256k1_ecdsa_signature *")
        assert lib.secp256k1_ecdsa_signature_parse_compact(ctx, s, sig)
        parsed.append((s, digest, k))
    verify = lib.secp256k1_ecdsa_verify
    with Timer() as t:
        ok = sum(verify(ctx, s, d, k) for s, d, k in parsed)
    assert ok == len(jobs)
    return t


def baseline_coincurve_api(jobs) -> Timer:
    ders = [(pk, compact_to_der(sig), d) for pk, sig, d in jobs]
    with Timer() as t:
        ok = sum(PublicKey(pk).verify(der, d, hasher=None) for pk, der, d in ders)
    assert ok == len(jobs)
    return t


def load(path: str, threads: int) -> tuple[Timer, GossipManager]:
    with Timer() as t:
        m = GossipManager(GossipStore.open(path), CHAIN_HASH)
        stats = m.load(verify=True, threads=threads)
    assert stats.rejected == 0 and stats.channels == CHANNELS, stats
    return t, m


def getroute_times(m: GossipManager, pairs: int = 100) -> dict:
    t0 = time.perf_counter()
    router = Router(m.graph, seed=1)
    router._refresh()
    build = time.perf_counter() - t0
    ids = sorted(m.graph.node_ids())
    rng = random.Random(42)
    times, hops, failed = [], [], 0
    for _ in range(pairs):
        a, b = rng.sample(ids, 2)
        amount = int(10 ** rng.uniform(6, 9))          # 1,000 .. 1,000,000 sat
        t = time.perf_counter()
        try:
            hops.append(len(router.getroute(a, b, amount, riskfactor=10, fuzzpercent=5)))
        except RouteNotFound:
            failed += 1
        times.append(time.perf_counter() - t)
    times.sort()
    return {"router_build_s": round(build, 3),
            "getroute_median_ms": round(statistics.median(times) * 1000, 2),
            "getroute_p95_ms": round(times[int(len(times) * 0.95) - 1] * 1000, 2),
            "getroute_max_ms": round(times[-1] * 1000, 2),
            "getroute_not_found": failed,
            "route_mean_hops": round(statistics.mean(hops), 2) if hops else None}


_RSS_CHILD = r"""
import gc, json, sys
sys.path.insert(0, sys.argv[2])
def status():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) // 1024
    return out
from gossipd.manager import GossipManager
from gossipd.routing import Router
from gossipd.store import GossipStore
from synthetic_graph import CHAIN_HASH
gc.collect()
before = status()["VmRSS"]
m = GossipManager(GossipStore.open(sys.argv[1]), CHAIN_HASH)
m.load(verify=True, threads=2)
r = Router(m.graph)
r._refresh()
gc.collect()
s = status()
print(json.dumps({"rss_imports_mb": before, "rss_mb": s["VmRSS"], "peak_rss_mb": s["VmHWM"]}))
"""


def rss(path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, path, TESTS], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout)


def run() -> dict:
    path = cache_path()
    t0 = time.perf_counter()
    info = build_store(path, NODES, CHANNELS)
    gen = time.perf_counter() - t0
    jobs = signature_jobs(path)
    base = baseline_libsecp(jobs)
    base_api = baseline_coincurve_api(jobs)
    del jobs
    load1, m = load(path, threads=1)
    del m
    load2, m = load(path, threads=2)
    res = {"nodes": m.graph.node_count, "channels": m.graph.channel_count,
           "signatures": info.signatures, "store_bytes": os.path.getsize(path),
           "store_generated_s": round(gen, 1) if gen > 1 else None,      # None: cached
           "baseline_libsecp_verify_s": round(base.wall, 2),
           "baseline_libsecp_verify_cpu_s": round(base.cpu, 2),
           "baseline_coincurve_api_verify_s": round(base_api.wall, 2),
           "load_validate_1_thread_s": round(load1.wall, 2),
           "load_validate_1_thread_cpu_s": round(load1.cpu, 2),
           "load_ratio_vs_libsecp_cpu": round(load1.cpu / base.cpu, 3),
           "load_ratio_vs_libsecp_wall": round(load1.wall / base.wall, 3),
           "load_ratio_vs_coincurve_api_wall": round(load1.wall / base_api.wall, 3),
           "load_validate_2_threads_s": round(load2.wall, 2),
           "cpus": os.cpu_count()}
    res.update(getroute_times(m))
    del m
    res.update(rss(path))
    return res
