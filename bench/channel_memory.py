"""Memory per channel and per subdaemon, every subdaemon forked from the
zygote (zygote/zygote.py).

l1 opens CHANNELS channels (default 50) round-robin over PEERS peers
(default 20; with fewer peers than channels a peer gets several), waits
until all are CHANNELD_NORMAL, and reads /proc/PID/smaps_rollup of every
process of l1: RSS, PSS (shared pages split among the processes mapping
them: what a process costs the machine) and USS (private clean + dirty:
what killing it would free).  PSS is the figure to judge by; RSS counts the
whole shared interpreter image in every process.

- the node with its peers connected and no channel yet, then with CHANNELS
  channels: node total (lightningd and all its children) and PSS per added
  channel = (total with channels - total without) / CHANNELS;
- each process kind: lightningd, zygote, hsmd, connectd, gossipd, channeld;
- onchaind: l1 then closes the channels of ONCHAIN_PEERS peers (default 2)
  unilaterally (the peers are stopped first), mines a block, and reads the
  onchainds resolving them;
- spawn latency: bench/spawn_latency.py, in a subprocess.

Each figure is taken twice when this runs as root on a kernel with KSM: once
as the node runs by default on most machines (ksmd off: children share the
zygote's pages copy-on-write only), once with ksmd switched on for the run
(zygote/memory_merge.py; the previous settings are put back after).  Only
l1 is opted in then (its peers run with subdaemon-memory-merge=false), so
no page of l1 is counted as shared with another node's.

    ./run bench channel_memory         # CHANNELS=50 PEERS=20 ONCHAIN_PEERS=2
    ./run bench channel_memory --ksm off|on|both --channels N --peers N

The table and the summary go to stderr; stdout keeps the JSON figures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from bench.scene import regtest_scene
from contrib.regtest.testing import RegtestChain

REPO = Path(__file__).resolve().parent.parent
CHANNEL_SAT = 1_000_000
KINDS = ("lightningd", "zygote", "hsmd", "connectd", "gossipd", "channeld", "onchaind")


@dataclass(frozen=True)
class Mem:
    """One process's memory in KiB, from /proc/PID/smaps_rollup."""
    rss: int
    pss: int
    uss: int

    @classmethod
    def of(cls, pid: int) -> "Mem":
        fields: dict[str, int] = {}
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1])
        return cls(rss=fields["Rss"], pss=fields["Pss"],
                   uss=fields["Private_Clean"] + fields["Private_Dirty"])


def summarize(mems: list[Mem]) -> dict[str, Any]:
    """Mean/median per process and total over the processes, in MiB."""
    out: dict[str, Any] = {"count": len(mems)}
    for field in ("rss", "pss", "uss"):
        xs = [getattr(m, field) / 1024 for m in mems] or [0.0]
        out[field] = {"mean": round(statistics.mean(xs), 2), "median": round(statistics.median(xs), 2),
                      "total": round(sum(xs), 2)}
    return out


def node_memory(node: Any) -> dict[str, list[Mem]]:
    """Every process of the node, by kind, read at (nearly) one moment."""
    kinds: dict[str, list[Mem]] = {k: [] for k in KINDS}
    kinds["lightningd"].append(Mem.of(node.proc.pid))
    for pid, name in node.subdaemon_pids_all().items():
        try:
            kinds[name].append(Mem.of(pid))
        except OSError:       # (exited meanwhile)
            pass
    return kinds


def total_pss(kinds: dict[str, list[Mem]]) -> float:
    return sum(m.pss for ms in kinds.values() for m in ms) / 1024


KSM = Path("/sys/kernel/mm/ksm")


def ksm_available() -> bool:
    """ksmd can be switched on here and a process can opt in as a whole."""
    if not os.access(KSM / "run", os.W_OK):
        return False
    code = "from zygote.memory_merge import set_memory_merge; set_memory_merge(True)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True).returncode == 0


@contextmanager
def ksmd(on: bool) -> Iterator[None]:
    """ksmd running (scanning 2000 pages per 20 ms wake-up, so that it
    converges within the bench) for the block; settings restored after."""
    if not on:
        yield
        return
    saved = {k: (KSM / k).read_text().strip() for k in ("run", "pages_to_scan")}
    (KSM / "pages_to_scan").write_text("2000")
    (KSM / "run").write_text("1")
    try:
        yield
    finally:
        for k, v in saved.items():
            (KSM / k).write_text(v)


def ksm_settle(on: bool) -> None:
    """Two full scans of ksmd: what can be merged now is."""
    if not on:
        return
    from node_factory import wait_for
    scans = KSM / "full_scans"
    start = int(scans.read_text())
    wait_for(lambda: int(scans.read_text()) >= start + 2, timeout=600)


def open_channels(nf: Any, chain: RegtestChain, channels: int, peers: int,
                  merge: bool = False) -> tuple[Any, list[Any], dict]:
    """Start l1 and its peers, connect them, read the node without channels,
    open `channels` channels round-robin and return once all are normal."""
    from node_factory import wait_for
    peer_opts = {"log-level": "info", "subdaemon-memory-merge": "false"}
    l1, *others = nf.get_nodes(1 + peers, opts=[{"log-level": "info"}] + [peer_opts] * peers)
    # One confirmed UTXO per channel: fundchannel spends confirmed coins only
    # (minconf 1), so a single coin would force a block between opens.
    addr = l1.rpc.newaddr("bech32")["bech32"]
    for _ in range(channels):
        chain.fund(addr, CHANNEL_SAT + 100_000)
    chain.mine(1)
    wait_for(lambda: len([o for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]) >= channels,
             timeout=60)
    for peer in others:
        l1.connect(peer)
    time.sleep(2)
    ksm_settle(merge)
    before = node_memory(l1)
    for i in range(channels):
        l1.rpc.fundchannel(others[i % peers].node_id, CHANNEL_SAT)
    chain.mine(6)

    def all_normal() -> bool:
        chans = l1.rpc.listpeerchannels()["channels"]
        return len(chans) == channels and all(c["state"] == "CHANNELD_NORMAL" for c in chans)
    wait_for(all_normal, timeout=180)
    return l1, others, before


def go_onchain(l1: Any, peers: list[Any], chain: RegtestChain) -> int:
    """Stop these peers, close their channels unilaterally, mine the
    commitments: one onchaind per channel.  Returns how many."""
    from node_factory import wait_for
    ids = {p.node_id for p in peers}
    chans = [c for c in l1.rpc.listpeerchannels()["channels"] if c["peer_id"] in ids]
    for p in peers:
        p.stop()
    wait_for(lambda: not any(c["peer_connected"] for c in l1.rpc.listpeerchannels()["channels"]
                             if c["peer_id"] in ids))
    for c in chans:
        assert l1.rpc.close(c["channel_id"], unilateraltimeout=1)["type"] == "unilateral"
    wait_for(lambda: len(chain.rpc.getrawmempool()) >= len(chans))
    chain.mine(1)
    wait_for(lambda: list(l1.subdaemon_pids_all().values()).count("onchaind") == len(chans), timeout=60)
    return len(chans)


def spawn_latency() -> dict[str, Any]:
    """bench/spawn_latency.py in its own process (it becomes a subreaper)."""
    out = subprocess.run([sys.executable, "-m", "bench.spawn_latency"], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(channels: int, peers: int, onchain_peers: int, merge: bool) -> dict[str, Any]:
    """One scene: the node's memory without channels, with them, and its
    onchainds; ksmd on for the whole scene when `merge`."""
    from node_factory import wait_for
    t0 = time.monotonic()
    # Enough mature coinbases for one faucet payment per channel.
    with ksmd(merge), regtest_scene(101 + channels) as scene:
        chain = scene.chain
        l1, others, before = open_channels(scene.nodes, chain, channels, peers, merge)
        setup_s = time.monotonic() - t0
        wait_for(lambda: list(l1.subdaemon_pids_all().values()).count("channeld") == channels, timeout=60)
        time.sleep(2)  # settle: post-lock-in messages, gossip
        ksm_settle(merge)
        after = node_memory(l1)
        n_onchain = go_onchain(l1, others[:onchain_peers], chain) if onchain_peers else 0
        time.sleep(2)
        ksm_settle(merge)
        onchain = node_memory(l1)
    return {"before": before, "after": after, "onchain": onchain, "onchain_channels": n_onchain,
            "setup_s": round(setup_s, 1), "total_s": round(time.monotonic() - t0, 1),
            "teardown_problems": scene.teardown_problems}


def run(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="./run bench channel_memory")
    ap.add_argument("--channels", type=int, default=int(os.environ.get("CHANNELS", "50")))
    ap.add_argument("--peers", type=int, default=int(os.environ.get("PEERS", "20")))
    ap.add_argument("--onchain-peers", type=int, default=int(os.environ.get("ONCHAIN_PEERS", "2")))
    ap.add_argument("--ksm", choices=("off", "on", "both"), default=None,
                    help="ksmd off, on, or one run each (default: both where ksmd can be switched on, else off)")
    a = ap.parse_args(argv or [])
    channels, peers = a.channels, min(a.peers, a.channels)
    onchain_peers = min(a.onchain_peers, peers)
    mode = a.ksm or ("both" if ksm_available() else "off")
    if mode != "off" and not ksm_available():
        sys.exit("ksmd cannot be switched on here (root, /sys/kernel/mm/ksm and Linux >= 6.4 needed)")
    latency = spawn_latency()
    result: dict[str, Any] = {"channels": channels, "peers": peers}
    for merge in {"off": [False], "on": [True], "both": [False, True]}[mode]:
        m = measure(channels, peers, onchain_peers, merge)
        label = "ksmd on" if merge else "ksmd off"
        print(f"\n== {label}", file=sys.stderr)
        r = report(m["before"], m["after"], m["onchain"], channels, latency)
        r.update({k: m[k] for k in ("onchain_channels", "setup_s", "total_s", "teardown_problems")})
        result["ksm_on" if merge else "ksm_off"] = r
    return result


def report(before: dict[str, list[Mem]], after: dict[str, list[Mem]], onchain: dict[str, list[Mem]],
           channels: int, latency: dict[str, Any]) -> dict[str, Any]:
    """Print the table and summary to stderr; return the same figures."""
    rows = [(k, summarize(after[k])) for k in KINDS if k != "onchaind"]
    rows.append(("onchaind", summarize(onchain["onchaind"])))
    err = sys.stderr
    print(f"\n{'process':<14}{'n':>4}  {'RSS mean/med/total':>22}  {'PSS mean/med/total':>22}  "
          f"{'USS mean/med/total':>22}   (MiB)", file=err)
    for name, s in rows:
        cells = "  ".join(f"{s[f]['mean']:>7.1f}{s[f]['median']:>7.1f}{s[f]['total']:>8.1f}"
                          for f in ("rss", "pss", "uss"))
        print(f"{name:<14}{s['count']:>4}  {cells}", file=err)
    t0, t1 = total_pss(before), total_pss(after)
    per_channel = (t1 - t0) / channels
    ch = summarize(after["channeld"])
    forked = latency.get("forked_by_zygote", {})
    spawned = latency.get("python_m_channeld", {})
    summary = (f"node PSS: {t0:.1f} MiB without channels, {t1:.1f} MiB with {channels}: "
               f"{per_channel:.2f} MiB per added channel; channeld PSS {ch['pss']['mean']:.2f} MiB "
               f"(USS {ch['uss']['mean']:.2f}) each; channeld spawn request -> first message: "
               f"{forked.get('median_ms', '?')} ms forked, {spawned.get('median_ms', '?')} ms from "
               f"`python -m channeld` (medians)")
    print(f"\n{summary}\n", file=err, flush=True)
    return {"mib": {name: s for name, s in rows},
            "node_pss_mib": {"no_channels": round(t0, 1), "with_channels": round(t1, 1),
                             "per_added_channel": round(per_channel, 2)},
            "spawn_latency": latency, "summary": summary}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:]), indent=2))
