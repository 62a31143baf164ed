"""Payment latency and throughput on the regtest chain, with both nodes'
database on each engine in turn, side by side: SQLite (the default file,
synchronous=FULL) and PostgreSQL (a local server started for the run, fsync
and synchronous_commit on; `--wallet=postgres://...`):

- single part, over one channel: 1,000 sequential 1-hop payments, then
  1,000 with 20 in flight at once (sendpay + waitsendpay on invoices made
  beforehand);
- multi-part, N=4 parts over 4 channels to the same peer: the same with
  each payment sent as 4 sendpay parts at once (each sendpay +
  waitsendpay in its own RPC thread), one per channel (the payee holds
  them until the 4th arrives), PAYMENTS/5 of each;
- `pay` splitting by itself: MPP_PAYS payments (default 20) by `pay`
  between two nodes with 4 channels, each more than the payer's 3 largest
  channels can send (so in 4 parts or more), in turns from each side; its
  latency includes the route planning and the parts' retries.

    ./run bench payments                       # both engines
    ./run bench payments --engine postgres     # one (sqlite | postgres | both)
    ./run bench payments --payments 200        # or PAYMENTS=200: a shorter run
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pyln.client import RpcError  # noqa: E402

from contrib.postgres_testing import PostgresServer  # noqa: E402
from contrib.regtest.testing import RegtestChain  # noqa: E402


def run(args: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="./run bench payments")
    ap.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--payments", type=int, default=int(os.environ.get("PAYMENTS", "1000")))
    ap.add_argument("--inflight", type=int, default=20)
    opts = ap.parse_args(args or [])
    engines = ["sqlite", "postgres"] if opts.engine == "both" else [opts.engine]
    return {e: run_engine(e, opts.payments, opts.inflight) for e in engines}


def run_engine(engine: str, n: int, inflight: int = 20) -> dict:
    from node_factory import NodeFactory, wait_for
    with tempfile.TemporaryDirectory() as tmp:
        chain = RegtestChain(Path(tmp) / "bitcoind")
        chain.start()
        chain.mine(101)
        server = _postgres(engine)
        nf = NodeFactory(Path(tmp), chain, server)
        try:
            l1, l2 = nf.get_nodes(2, opts={"log-level": "info", "max-concurrent-htlcs": 483})
            addr = l1.rpc.newaddr("bech32")["bech32"]
            chain.fund(addr, 50_000_000)
            chain.mine(1)
            wait_for(lambda: l1.rpc.listfunds()["outputs"])
            l1.connect(l2)
            l1.rpc.fundchannel(l2.node_id, 16_000_000)
            chain.mine(3)
            wait_for(lambda: l1.rpc.listpeerchannels()["channels"][0]["state"] == "CHANNELD_NORMAL"
                     and l1.rpc.listpeerchannels()["channels"][0]["spendable_msat"] > 0)
            scid = l1.rpc.listpeerchannels()["channels"][0]["short_channel_id"]
            invs = [l2.rpc.invoice(1000 + i, f"b{i}", "bench") for i in range(2 * n)]
            route = [{"id": l2.node_id, "channel": scid, "amount_msat": 0, "delay": 18}]

            def pay(inv: dict, amount: int) -> float:
                r = dict(route[0], amount_msat=amount)
                t = time.perf_counter()
                l1.rpc.sendpay([r], inv["payment_hash"], payment_secret=inv["payment_secret"])
                res = l1.rpc.waitsendpay(inv["payment_hash"], 60)
                assert res["status"] == "complete"
                return time.perf_counter() - t

            t0 = time.perf_counter()
            seq = [pay(invs[i], 1000 + i) for i in range(n)]
            seq_total = time.perf_counter() - t0
            procs = _node_processes(l1, "payer") + _node_processes(l2, "payee") + [(chain.proc.pid, "regtestd")]
            if server is not None:
                procs += [(pid, "postgres") for pid in _postgres_pids(server)]
            cpu0, client0 = _cpu(procs), time.process_time()
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(inflight) as ex:
                conc = list(ex.map(lambda i: pay(invs[i], 1000 + i), range(n, 2 * n)))
            conc_total = time.perf_counter() - t0
            cpu1, client1 = _cpu(procs), time.process_time()
            # CPU seconds each process used during the concurrent phase (2 cores: at most 2 x wall)
            cpu = {k: round(cpu1.get(k, 0) - v, 2) for k, v in cpu0.items()}
            cpu["bench client (20 RPC threads)"] = round(client1 - client0, 2)
        finally:
            nf.teardown()
            chain.stop()
            if server is not None:
                server.cleanup()

    return {"payments": n, "sequential": stats(seq, seq_total), f"concurrent_{inflight}": stats(conc, conc_total),
            f"concurrent_{inflight}_cpu_s": dict(cpu, wall=round(conc_total, 2)),
            "mpp": run_mpp(engine, max(20, n // 5), inflight=inflight),
            "load_average": os.getloadavg()}


def stats(xs: list[float], total: float) -> dict:
    return {"mean_ms": round(statistics.mean(xs) * 1000, 1), "median_ms": round(statistics.median(xs) * 1000, 1),
            "p95_ms": round(sorted(xs)[int(len(xs) * 0.95)] * 1000, 1),
            "payments_per_s": round(len(xs) / total, 1)}


def _postgres(engine: str) -> PostgresServer | None:
    """A PostgreSQL server for this run (fsync on), or None for SQLite."""
    if engine != "postgres":
        return None
    server = PostgresServer(fsync=True)
    server.start()
    return server


def _postgres_pids(server: PostgresServer) -> list[int]:
    """The server's processes (postmaster and backends)."""
    from node_factory import child_pids
    try:
        with open(os.path.join(server.datadir, "postmaster.pid")) as f:
            root = int(f.readline())
    except (OSError, ValueError):
        return []
    return [root] + child_pids(root)


def run_mpp(engine: str, n: int, parts: int = 4, inflight: int = 20) -> dict:
    """N-part payments over N channels (sendpay), then `pay` splitting."""
    from node_factory import NodeFactory, wait_for
    pays = int(os.environ.get("MPP_PAYS", "20"))
    out: dict = {"parts": parts}
    with tempfile.TemporaryDirectory() as tmp:
        chain = RegtestChain(Path(tmp) / "bitcoind")
        chain.start()
        chain.mine(101)
        server = _postgres(engine)
        nf = NodeFactory(Path(tmp), chain, server)
        try:
            l1, l2 = nf.get_nodes(2, opts={"log-level": "info", "max-concurrent-htlcs": 483})
            for _ in range(parts):
                chain.fund(l1.rpc.newaddr("bech32")["bech32"], 5_000_000)
            chain.mine(1)
            wait_for(lambda: len(l1.rpc.listfunds()["outputs"]) == parts)
            l1.connect(l2)
            for _ in range(parts):
                # half pushed to l2: both sides can pay
                l1.rpc.fundchannel(l2.node_id, 4_000_000, push_msat=2_000_000_000)
            chain.mine(3)

            def chans(a, b) -> list[dict]:
                return a.rpc.listpeerchannels(b.node_id)["channels"]
            wait_for(lambda: len(chans(l1, l2)) == parts and all(
                c["state"] == "CHANNELD_NORMAL" and c["spendable_msat"] > 0 for c in chans(l1, l2) + chans(l2, l1)))
            scids = [c["short_channel_id"] for c in chans(l1, l2)]
            invs = [l2.rpc.invoice(4000 + i, f"m{i}", "bench mpp") for i in range(2 * n)]

            part_pool = concurrent.futures.ThreadPoolExecutor(parts * inflight)

            def one_part(inv: dict, k: int) -> None:
                route = [{"id": l2.node_id, "channel": scids[k], "amount_msat": inv["amount"] // parts
                          + (inv["amount"] % parts if k == 0 else 0), "delay": 18}]
                l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"], partid=k + 1,
                               amount_msat=inv["amount"])
                assert l1.rpc.waitsendpay(inv["payment_hash"], 60, partid=k + 1)["status"] == "complete"

            def pay_parts(inv: dict) -> float:
                # the parts at once, as pay sends them
                t = time.perf_counter()
                for f in [part_pool.submit(one_part, inv, k) for k in range(parts)]:
                    f.result()
                return time.perf_counter() - t

            for i, inv in enumerate(invs):
                inv["amount"] = 4000 + i
            t0 = time.perf_counter()
            seq = [pay_parts(invs[i]) for i in range(n)]
            seq_total = time.perf_counter() - t0
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(inflight) as ex:
                conc = list(ex.map(pay_parts, invs[n:]))
            conc_total = time.perf_counter() - t0
            part_pool.shutdown()
            out[f"sendpay_{parts}_parts_sequential"] = dict(stats(seq, seq_total), payments=n)
            out[f"sendpay_{parts}_parts_concurrent_{inflight}"] = dict(stats(conc, conc_total), payments=n)

            # pay: each payment more than the payer's 3 largest channels can send
            lat, nparts = [], []
            for i in range(pays):
                payer, payee = (l1, l2) if i % 2 == 0 else (l2, l1)
                spend = sorted(c["spendable_msat"] for c in chans(payer, payee))
                amount = sum(spend[1:]) + spend[0] // 2
                inv = payee.rpc.invoice(amount, f"p{i}", "bench pay mpp")
                t = time.perf_counter()
                try:
                    r = payer.rpc.pay(inv["bolt11"])
                except RpcError as e:        # a node whose pay cannot split (before issue 14)
                    out["pay_split_sequential"] = {"error": e.error}
                    return out
                lat.append(time.perf_counter() - t)
                nparts.append(r["parts"])
                # the next payer's figures: wait until the HTLCs are gone
                wait_for(lambda: not any(c["htlcs"] for c in chans(l1, l2)))
            out["pay_split_sequential"] = {
                "payments": pays, "mean_ms": round(statistics.mean(lat) * 1000, 1),
                "median_ms": round(statistics.median(lat) * 1000, 1), "max_ms": round(max(lat) * 1000, 1),
                "parts_mean": round(statistics.mean(nparts), 2), "parts_max": max(nparts)}
        finally:
            nf.teardown()
            chain.stop()
            if server is not None:
                server.cleanup()
    return out


def _node_processes(node, role: str) -> list[tuple[int, str]]:
    """The node's lightningd and its subdaemons, as (pid, "role name")."""
    from node_factory import child_pids, cmdline
    out = [(node.proc.pid, f"{role} lightningd")]
    for pid in child_pids(node.proc.pid):
        words = cmdline(pid).split()
        name = words[2] if len(words) > 2 and words[1] == "-m" else (words[0] if words else "?")
        out.append((pid, f"{role} {name}"))
    return out


def _cpu(procs: list[tuple[int, str]]) -> dict[str, float]:
    """utime + stime (seconds) of each process, summed by name."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid, name in procs:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(run(sys.argv[1:]), indent=2))
