"""Well-formed but arbitrary channel messages fed to the channel core (what
channeld does with every BOLT 2 message a peer sends on a live channel):
the core may only refuse them with a ChannelError (channeld then sends an
`error` and fails the channel, BOLT 2), never with any other exception,
which would end channeld with a traceback (a BROKEN line).

In-process, so it reaches the normal-operation code a network fuzzer rarely
gets to (a channel must be locked in, with HTLCs in flight): fields come
from the schema's sampler, with the channel id, HTLC ids and amounts often
made plausible so the checks past the first one are reached too."""
from __future__ import annotations

import os
import random
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wire
from channeld.core import Channel, ChannelError
from channel_testing import Node, make_pair
from wire_samples import sample_message

SCHEMA = wire.bolt_schema()
EXAMPLES = int(os.environ.get("CORE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# channeld's dispatch of peer messages to the core (channeld/channeld.py _handle_peer)
RECV: dict[str, Callable[[Channel, dict[str, Any]], Any]] = {
    "update_add_htlc": lambda ch, f: ch.recv_update_add_htlc(f),
    "update_fulfill_htlc": lambda ch, f: ch.recv_update_fulfill_htlc(f),
    "update_fail_htlc": lambda ch, f: ch.recv_update_fail_htlc(f),
    "update_fail_malformed_htlc": lambda ch, f: ch.recv_update_fail_malformed_htlc(f),
    "update_fee": lambda ch, f: ch.recv_update_fee(f),
    "commitment_signed": lambda ch, f: ch.recv_commitment_signed(f),
    "revoke_and_ack": lambda ch, f: ch.recv_revoke_and_ack(f),
    "channel_ready": lambda ch, f: ch.recv_channel_ready(f),
    "shutdown": lambda ch, f: ch.recv_shutdown(f),
    "closing_signed": lambda ch, f: ch.recv_closing_signed(f),
    "channel_reestablish": lambda ch, f: (ch.disconnect(), ch.recv_reestablish(f)),
}


def busy_pair(seed: int) -> tuple[Node, Node]:
    """A locked-in channel with an HTLC each way, committed on both sides."""
    a, b = make_pair(funding_sat=2_000_000, push_msat=500_000_000, seed=seed.to_bytes(4, "big"))
    for x, y in ((a, b), (b, a)):
        name, fields = x.channel.add_htlc(20_000_000, os.urandom(32), 600, bytes(1366), 500)
        y.channel.recv_update_add_htlc(fields)
    return a, b


def plausible(ch: Channel, name: str, fields: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Point the message at this channel, and often at HTLC ids that exist."""
    if "channel_id" in fields and rng.random() < 0.9:
        fields["channel_id"] = ch.channel_id
    if "id" in fields and rng.random() < 0.7:
        fields["id"] = rng.choice([0, 1, 2])
    if name == "update_fee" and rng.random() < 0.5:
        fields["feerate_per_kw"] = rng.choice([253, 2500, 10_000, 2**32 - 1])
    if name == "update_add_htlc" and rng.random() < 0.5:
        fields["amount_msat"] = rng.choice([0, 1, 1000, 10**6, 10**9, 2**64 - 1])
    return fields


@pytest.mark.parametrize("name", sorted(RECV))
@FUZZ
@given(seed=st.integers(0, 2**32), side=st.booleans())
def test_core_refuses_only_with_channel_errors(name, seed, side):
    rng = random.Random(seed)
    a, b = busy_pair(seed % 7)
    ch = (a if side else b).channel
    fields = plausible(ch, name, sample_message(SCHEMA, name, rng), rng)
    # what the peer could send: encode/decode as the wire would
    fields = SCHEMA.decode(SCHEMA.encode(name, fields)).fields
    try:
        RECV[name](ch, fields)
    except ChannelError:
        pass
