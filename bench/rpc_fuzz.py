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
import time

from bench.scene import regtest_scene


def run(argv: list[str] | None = None) -> dict:
    from rpc_fuzz import (  # tests/, on the path once bench.scene is loaded
        FuzzStats,
        Scene,
        fuzz,
    )
    ap = argparse.ArgumentParser(prog="./run bench rpc_fuzz")
    ap.add_argument("--examples", type=int, default=2000, help="inputs to try")
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (random by default)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a call may take before it is a hang")
    args = ap.parse_args(argv or [])

    def progress(s: FuzzStats) -> None:
        print(f"rpc_fuzz: {s.tried} tried, {len(s.failures)} distinct failures, answers {s.answered}",
              file=sys.stderr, flush=True)

    with regtest_scene() as setting:
        l1, l2 = setting.nodes.get_nodes(2, opts={"log-level": "debug"})
        t0 = time.perf_counter()
        stats = fuzz(Scene(l1, l2), args.examples, call_timeout=args.timeout, stop_at_failure=False,
                     seed=args.seed, progress=progress)
        elapsed = time.perf_counter() - t0
    problems = setting.teardown_problems
    for sig, (example, problem) in sorted(stats.failures.items()):
        print(f"FAILURE {sig}\n  input:   {example}\n  problem: {problem[:1000]}", file=sys.stderr)
    return {"examples_tried": stats.tried, "seconds": round(elapsed, 1),
            "per_second": round(stats.tried / elapsed, 1), "answers": stats.answered,
            "failures_found": len(stats.failures), "failures": sorted(stats.failures),
            "catchall_-1_messages": {k: sorted(v) for k, v in sorted(stats.catchall.items())},
            "teardown_problems": problems}
