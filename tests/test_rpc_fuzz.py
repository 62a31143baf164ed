"""The RPC fuzzer (tests/rpc_fuzz.py) in the suite: a bounded run against
one node (funded, with a channel to a peer), every command `help` lists,
mutated valid calls, random ones and malformed bytes.  Derandomized, so a
failure reproduces; RPC_FUZZ_EXAMPLES=N changes the count and
RPC_FUZZ_RANDOM=1 explores new examples.  The long run is
`./run bench rpc_fuzz --examples 20000`."""
from __future__ import annotations

import os

from rpc_fuzz import Scene, fuzz


def test_rpc_fuzz(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    scene = Scene(l1, l2)
    examples = int(os.environ.get("RPC_FUZZ_EXAMPLES", "500"))
    stats = fuzz(scene, examples, derandomize=not os.environ.get("RPC_FUZZ_RANDOM"))
    assert stats.failures == {}
    # the run reached command bodies, not only parameter checks
    assert stats.answered.get("result", 0) > examples // 20, stats.answered
