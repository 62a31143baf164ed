"""Benchmarks: `./run bench [name ...]` (all by default); prints JSON figures."""
from __future__ import annotations

import importlib
import json
import sys

BENCHES = ["node_startup", "codec", "gossip_graph", "chain_sync", "payments", "channel_memory"]


def main() -> None:
    names = sys.argv[1:] or BENCHES
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        print(json.dumps({name: mod.run()}, indent=2), flush=True)


main()
