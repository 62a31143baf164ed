"""The master's HTLC decisions (lightningd/htlc_core.py), without processes."""
from __future__ import annotations

import pytest

from common.onion_errors import FailureCode as F
from lightningd.htlc_core import (INCOMING, OUTGOING, RESOLVED, HeldSet, HtlcState as S, Offering, OutChannel,
                                  can_move, check_final_onion, check_forward, reconcile)

GOOD = OutChannel(normal=True, ready=True, fee_ok=True, range_ok=True, cltv_delta=34)


def test_every_state_has_its_moves_and_resolutions_are_final():
    assert set(INCOMING) | set(OUTGOING) == set(S)
    for table in (INCOMING, OUTGOING):
        for state, nxt in table.items():
            assert nxt <= set(table), state      # nowhere to go outside the table
            if state in RESOLVED:
                assert not nxt
    assert can_move("in", "locked", "forwarded") and can_move("out", "offering", "offered")
    assert not can_move("in", "fulfilled", "failing")          # a preimage once given stays given
    assert not can_move("in", "fulfilling", "failing")
    assert not can_move("out", "fulfilled", "failed")
    assert not can_move("out", "offered", "offering")
    assert not can_move("in", "locked", "offered")              # not a state of incoming HTLCs


def test_held_parts_of_a_multipart_payment():
    s = HeldSet(total_msat=300)
    assert not s.add(1, 100)
    assert not s.add(2, 100)
    assert s.add(3, 150)                       # overpaying is fine (BOLT 4 MAY)
    assert s.parts == [1, 2, 3] and s.received_msat == 350


@pytest.mark.parametrize("out,cltv_in,cltv_out,height,want", [
    (None, 200, 100, 50, F.UNKNOWN_NEXT_PEER),
    (OutChannel(False, True, True, True, 34), 200, 100, 50, F.UNKNOWN_NEXT_PEER),
    (OutChannel(True, False, True, True, 34), 200, 100, 50, F.TEMPORARY_CHANNEL_FAILURE),
    (OutChannel(True, True, False, True, 34), 200, 100, 50, F.FEE_INSUFFICIENT),
    (OutChannel(True, True, True, False, 34), 200, 100, 50, F.TEMPORARY_CHANNEL_FAILURE),
    (GOOD, 133, 100, 50, F.INCORRECT_CLTV_EXPIRY),            # needs 100 + 34
    (GOOD, 134, 100, 50, None),
    (GOOD, 200, 52, 50, F.EXPIRY_TOO_SOON),                   # too close to the tip to be safe
    (GOOD, 200, 53, 50, None),
])
def test_forward_checks_in_core_lightnings_order(out, cltv_in, cltv_out, height, want):
    r = check_forward(out, 10_000, cltv_in, cltv_out, height)
    assert (r.code if r else None) == want


def test_forward_refusals_carry_their_fields():
    r = check_forward(OutChannel(True, True, False, True, 34), 12_345, 200, 100, 50)
    assert r.fields == {"htlc_msat": 12_345} and r.name == "WIRE_FEE_INSUFFICIENT"
    r = check_forward(GOOD, 10_000, 120, 100, 50)
    assert r.fields == {"cltv_expiry": 120}


def test_final_hop_onion_checks():
    assert check_final_onion(1000, 500, 1000, 500) is None
    assert check_final_onion(1000, 500, None, None) is None
    assert check_final_onion(1000, 500, 1001, 500).code == F.FINAL_INCORRECT_HTLC_AMOUNT
    assert check_final_onion(1000, 500, 1000, 501).fields == {"cltv_expiry": 500}


def h(hid: int, phash: bytes, amount: int, expiry: int) -> dict:
    return {"id": hid, "payment_hash": phash, "amount_msat": amount, "expiry": expiry}


def test_reconcile_matches_offering_rows_to_the_stored_state():
    a, b = b"\xaa" * 32, b"\xbb" * 32
    stored = [h(4, a, 1000, 500), h(5, a, 1000, 500), h(6, b, 2000, 600)]
    # row 10 is id 4 already; rows 11 and 12 were recorded, their ids lost with the daemon
    r = reconcile(stored, {4}, [Offering(11, a, 1000, 500), Offering(12, a, 1000, 500),
                                Offering(13, b, 2000, 601)], [], next_local_htlc_id=7)
    assert r.assign == [(11, 5)]           # two identical candidates, one HTLC left unclaimed
    assert r.never_committed == [12, 13]   # expiry differs: not that HTLC
    assert r.lost == []


def test_reconcile_finds_offered_rows_that_never_made_a_commitment():
    a = b"\xaa" * 32
    stored = [h(3, a, 1000, 500)]
    offered = [(20, 2), (21, 3), (22, 7), (23, 8)]
    r = reconcile(stored, {2, 3, 7, 8}, [], offered, next_local_htlc_id=7)
    # id 2: resolved and removed (below next id, not lost); 3: still there;
    # 7 and 8: ids the channel never used, so never committed
    assert r.lost == [(22, 7), (23, 8)]


def test_channel_state_table():
    from lightningd.channel import TRANSITIONS, ChannelRecord, ChannelState as CS, InvalidTransition
    assert set(TRANSITIONS) == set(CS)
    # every state can reach CLOSED, and CLOSED is the end
    for s in CS:
        seen, todo = set(), [s]
        while todo:
            x = todo.pop()
            seen.add(x)
            todo += [n for n in TRANSITIONS[x] if n not in seen]
        assert CS.CLOSED in seen, s
    assert not TRANSITIONS[CS.CLOSED]
    rec = ChannelRecord(1, b"", b"", CS.NORMAL, "local", b"", 0, 0, 3, {}, "", {}, 0, 0, 0, 0, 0)
    assert rec.set_state(CS.SHUTTING_DOWN, "user", "close")["old_state"] == CS.NORMAL
    assert rec.set_state(CS.SHUTTING_DOWN, "user", "again") is None
    with pytest.raises(InvalidTransition):
        rec.set_state(CS.NORMAL, "user", "back to normal")
    with pytest.raises(ValueError):
        rec.set_state("SOMETHING_ELSE", "user", "no such state")
