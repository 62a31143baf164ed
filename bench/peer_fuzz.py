"""A long peer-fuzzing campaign against a real node (tests/peer_fuzz.py):
valid, truncated, mutated, random and unknown-type messages of every BOLT
message type, over BOLT 8, aimed at the node's channels (an open in
progress, a channel awaiting funding, a locked-in channel), with the node's
health checked after each one.

    ./run bench peer_fuzz --examples 5000 [--seed N]

Prints the messages tried and the failures found (each with the example
and what went wrong: a BROKEN line, a traceback, no getinfo, no init on a
fresh connection, a node that stopped following the chain)."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.scene import regtest_scene


def run(argv: list[str] | None = None) -> dict[str, Any]:
    from peer_fuzz import (  # tests/, on the path once bench.scene is loaded
        PeerFuzzer,
        campaign,
    )
    ap = argparse.ArgumentParser(prog="./run bench peer_fuzz")
    ap.add_argument("--examples", type=int, default=1000, help="messages to send (default 1000)")
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed, to repeat a campaign")
    ap.add_argument("--live-every", type=int, default=100,
                    help="at most one new locked-in channel per this many messages")
    args = ap.parse_args(argv or [])
    t0 = time.monotonic()
    with regtest_scene() as scene:
        node = scene.nodes.get_node({"dev-opening-timeout-secs": 30})
        fuzzer = PeerFuzzer(node, live=True, live_every=args.live_every, mine_every=25)
        try:
            campaign(fuzzer, args.examples, args.seed)
        except KeyboardInterrupt:
            print("interrupted: reporting what ran", file=sys.stderr)
        stats = fuzzer.stats
    problems = scene.teardown_problems
    result = stats.summary()
    result.update(seconds=round(time.monotonic() - t0, 1), teardown_problems=problems)
    print(f"peer_fuzz: {stats.tried} messages tried, {len(stats.failures)} failures, "
          f"{len(problems)} teardown problems", file=sys.stderr)
    return result
