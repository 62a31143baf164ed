"""Benchmarks: `./run bench [name ...]` (all by default); prints JSON figures.

Options after the names go to the benchmark (one name then): e.g.
`./run bench peer_fuzz --examples 5000`."""
from __future__ import annotations

import importlib
import json
import sys

BENCHES = ["node_startup", "codec", "gossip_graph", "chain_sync", "payments", "offers", "channel_memory",
           "spawn_latency", "rpc_fuzz"]


def main() -> None:
    args = sys.argv[1:]
    first_opt = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    names, opts = args[:first_opt] or BENCHES, args[first_opt:]
    if opts and len(names) != 1:
        sys.exit("options go to one benchmark: ./run bench NAME [--option value ...]")
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        result = mod.run(opts) if opts else mod.run()
        print(json.dumps({name: result}, indent=2, default=str), flush=True)


main()
