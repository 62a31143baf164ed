"""The RPC fuzzer's long run (tests/rpc_fuzz.py): one node on the regtest
chain, funded, with a channel to a second node, driven through its socket
with every command `help` lists.  Unlike the test it does not stop at the
first failure: it records each distinct failure (by command and cause) and
goes on, then prints what it tried and what it found.

    ./run bench rpc_fuzz --examples 20000 [--seed N] [--timeout S]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from contrib.regtest.testing import RegtestChain  # noqa: E402


def run(argv: list[str] | None = None) -> dict:
    from node_factory import NodeFactory
    from rpc_fuzz import FuzzStats, Scene, fuzz

    ap = argparse.ArgumentParser(prog="./run bench rpc_fuzz")
    ap.add_argument("--examples", type=int, default=2000, help="inputs to try")
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (random by default)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a call may take before it is a hang")
    args = ap.parse_args(argv or [])

    def progress(s: FuzzStats) -> None:
        print(f"rpc_fuzz: {s.tried} tried, {len(s.failures)} distinct failures, answers {s.answered}",
              file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        chain = RegtestChain(Path(tmp) / "bitcoind")
        chain.start()
        chain.mine(101)
        nf = NodeFactory(Path(tmp), chain)
        try:
            l1, l2 = nf.get_nodes(2, opts={"log-level": "debug"})
            scene = Scene(l1, l2)
            t0 = time.perf_counter()
            stats = fuzz(scene, args.examples, call_timeout=args.timeout, stop_at_failure=False, seed=args.seed,
                         progress=progress)
            elapsed = time.perf_counter() - t0
        finally:
            problems = nf.teardown()
            chain.stop()
    for sig, (example, problem) in sorted(stats.failures.items()):
        print(f"FAILURE {sig}\n  input:   {example}\n  problem: {problem[:1000]}", file=sys.stderr)
    return {"examples_tried": stats.tried, "seconds": round(elapsed, 1),
            "per_second": round(stats.tried / elapsed, 1), "answers": stats.answered,
            "failures_found": len(stats.failures), "failures": sorted(stats.failures),
            "catchall_-1_messages": {k: sorted(v) for k, v in sorted(stats.catchall.items())},
            "teardown_problems": problems}
