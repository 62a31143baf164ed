"""Benchmarks: `./run bench [name ...]` (all by default); prints JSON figures.
Options after a single bench's name go to it: `./run bench rpc_fuzz --examples 20000`."""
from __future__ import annotations

import importlib
import json
import sys

BENCHES = ["node_startup", "codec", "gossip_graph", "chain_sync", "payments", "channel_memory", "spawn_latency",
           "rpc_fuzz"]


def main() -> None:
    args = sys.argv[1:]
    opts = args[next((i for i, a in enumerate(args) if a.startswith("-")), len(args)):]
    names = args[:len(args) - len(opts)] or BENCHES
    if opts and len(names) != 1:
        sys.exit("usage: ./run bench [name ...] | ./run bench NAME --option ...")
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        print(json.dumps({name: mod.run(opts) if opts else mod.run()}, indent=2), flush=True)


main()
