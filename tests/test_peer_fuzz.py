"""The peer fuzzer in the normal suite (tests/peer_fuzz.py): a BOLT 8 peer
sends a running node one valid message of every peer message type of the
BOLT schema, aimed at its channels, then PEER_FUZZ_EXAMPLES random,
truncated, mutated and unknown-type messages drawn by hypothesis; after each
one the node must have logged no BROKEN line, printed no traceback, answer
getinfo, greet a fresh connection with init and keep up with the chain.

A long campaign: `./run bench peer_fuzz --examples 5000`."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, example, given, settings

from peer_fuzz import MESSAGES, Example, PeerFuzzer, examples

# ~0.3 s an example on a small machine: the file stays under a minute
EXAMPLES = int(os.environ.get("PEER_FUZZ_EXAMPLES", "80"))


def _every_type(test):
    """One explicit, valid example of each message type, aimed at a channel."""
    for i, name in enumerate(MESSAGES):
        test = example(ex=Example(name, "valid", seed=i, target=1 + i % 3))(test)
    return test


def test_fuzzed_peer_messages_leave_the_node_well(node_factory):
    node = node_factory.get_node({"dev-opening-timeout-secs": 30})
    fuzzer = PeerFuzzer(node, live=True, live_every=150, mine_every=40)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(ex=examples())
    @_every_type
    def property_node_stays_well(ex: Example) -> None:
        problems = fuzzer.run(ex)
        assert not problems, f"{ex}: {problems}"

    property_node_stays_well()
    stats = fuzzer.stats
    assert stats.tried >= len(MESSAGES) + EXAMPLES // 2
    # the fuzzer reached the channel code: it had an open in progress, a
    # channel awaiting funding and a locked-in channel to aim at
    assert stats.opens and stats.unconfirmed and stats.live, stats.summary()
    print(stats.summary())
