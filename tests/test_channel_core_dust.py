"""max-dust-htlc-exposure-msat in the channel core (Core Lightning's
htlc_dust_ok): HTLCs too small to get an output (trimmed, at BOLT 2's
dust_buffer_feerate) may add up to at most the limit on either commitment.
We refuse to offer one more; one the peer offers is accepted and marked to
be failed once committed; we send no update_fee that trims past the limit."""
from __future__ import annotations

import os

import pytest

from channeld.core import FeerateBounds
from channeld.core.checks import dust_buffer_feerate
from channeld.core.errors import UsageError
from channel_testing import Pipe, make_pair
from channeld.core.state import Channel
from common.commitment import htlc_success_fee, htlc_timeout_fee

ONION = os.urandom(1366)
FEERATE = 2500
HEIGHT = 100


def add(pipe: Pipe, sender: str, amount_sat: int, n: int) -> None:
    node = pipe.nodes[sender]
    pipe.send(sender, node.channel.add_htlc(amount_sat * 1000, n.to_bytes(32, "big"), HEIGHT + 50, ONION, HEIGHT))


def test_dust_buffer_feerate():
    assert dust_buffer_feerate(2500) == 2500 + 2530      # the floor of 2530 perkw more
    assert dust_buffer_feerate(20_000) == 25_000          # else 125%


def test_amounts_used_here_are_dust_at_the_buffer_rate():
    rate = dust_buffer_feerate(FEERATE)
    assert 3000 < 546 + htlc_timeout_fee(rate, False) < 546 + htlc_success_fee(rate, False) < 5000
    # ... though not at the feerate itself: the buffer is what makes them count
    assert 3000 > 546 + htlc_success_fee(FEERATE, False)


def test_we_refuse_to_offer_past_the_limit():
    a, b = make_pair(push_msat=0, feerate_per_kw=FEERATE)
    a.channel.fee_bounds = FeerateBounds(max_dust_htlc_exposure_msat=20_000_000)
    pipe = Pipe(a, b)
    for i in range(6):                         # 6 x 3000 sat = 18,000 sat of dust: fine
        add(pipe, "A", 3000, i)
    with pytest.raises(UsageError, match="over max_dust_htlc_exposure_msat 20000000"):
        add(pipe, "A", 3000, 6)                # 21,000 sat
    add(pipe, "A", 100_000, 7)                 # not dust: no limit on those
    pipe.deliver_all()
    # the refused one left no trace: the peer has ids 0..6, in sequence
    assert sorted(h.htlc_id for h in b.channel.htlcs()) == list(range(7))


def test_peer_htlc_past_our_limit_is_marked_to_fail():
    a, b = make_pair(push_msat=0, feerate_per_kw=FEERATE)
    b.channel.fee_bounds = FeerateBounds(max_dust_htlc_exposure_msat=10_000_000)
    pipe = Pipe(a, b)
    for i in range(4):                         # the 4th makes 12,000 sat of dust on B's commitments
        add(pipe, "A", 3000, i)
    for _ in range(4):
        name, fields = pipe.deliver("B")
        assert name == "update_add_htlc"
    statuses = [h for h in b.channel.htlcs() if h.direction == "in"]
    assert [h.fail_immediate for h in sorted(statuses, key=lambda h: h.htlc_id)] == [False, False, False, True]
    # not a protocol violation: the channel goes on and locks the HTLCs in
    pipe.deliver_all()
    locked = [h for ch in b.changes for h in ch.locked_in]
    assert sorted((h.htlc_id, h.fail_immediate) for h in locked) == [(0, False), (1, False), (2, False),
                                                                      (3, True)]
    # the mark survives a restart (it is in the stored state)
    restored = Channel.from_dict(b.channel.to_dict(), b.signer)
    assert [h.fail_immediate for h in sorted(restored.htlcs(), key=lambda h: h.htlc_id)] == \
        [False, False, False, True]


def test_no_limit_means_no_check():
    a, b = make_pair(push_msat=0, feerate_per_kw=FEERATE)
    pipe = Pipe(a, b)
    for i in range(20):
        add(pipe, "A", 3000, i)
    pipe.deliver_all()
    assert not any(h.fail_immediate for h in b.channel.htlcs())


def test_no_update_fee_that_trims_past_the_limit():
    a, b = make_pair(push_msat=0, feerate_per_kw=FEERATE)
    a.channel.fee_bounds = FeerateBounds(min_per_kw=253, max_per_kw=10**6, max_dust_htlc_exposure_msat=10_000_000)
    pipe = Pipe(a, b)
    for i in range(3):                         # 5000 sat: an output at this feerate's buffer
        add(pipe, "A", 5000, i)
    pipe.deliver_all()
    with pytest.raises(UsageError, match="feerate 10000 would make 15000000 msat of dust"):
        a.channel.update_fee(10_000)
    pipe.send("A", a.channel.update_fee(2600))
    pipe.deliver_all()
