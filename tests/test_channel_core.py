"""Targeted tests of the channeld core: one HTLC round trip step by step, each
BOLT 2 check on received updates (and its mirror on our own actions), bad
signatures, the persist-before-revoke rule, the state table, spendable /
receivable amounts, the signer's revocation rule and persistence."""
from __future__ import annotations

from typing import Any

import pytest

from bitcoin.hashes import sha256
from bitcoin.keys import sign_digest_compact
from channeld.core import (
    TRANSITIONS,
    Channel,
    ChannelParams,
    ChannelState,
    FeerateBounds,
    IllegalTransition,
    LocalSigner,
    PeerError,
    PeerWarning,
    RemovalKind,
    SignerError,
    UsageError,
)
from channel_testing import Node, Pipe, check_pair, make_pair, p2wpkh, roundtrip
from common.commitment import Side
from wire.internal import internal_schema

ONION = bytes(1366)
HEIGHT = 500
CLTV = 600


def rt(msg: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
    """The fields of ``msg`` as the peer decodes them."""
    assert msg is not None
    return roundtrip(msg)[1]


def add(node: Node, amount: int, preimage: bytes = b"\x42" * 32, cltv: int = CLTV):
    return node.channel.add_htlc(amount, sha256(preimage), cltv, ONION, HEIGHT)


def locked_htlc(amount: int = 5_000_000, **kw: Any) -> tuple[Node, Node, Pipe, bytes]:
    """A pair with one HTLC from A to B irrevocably committed."""
    a, b = make_pair(**kw)
    p = Pipe(a, b)
    preimage = b"\x01" * 32
    p.send("A", add(a, amount, preimage))
    p.deliver_all()
    assert [h.state for h in b.channel.htlcs()] == ["RCVD_ADD_ACK_REVOCATION"]
    return a, b, p, preimage


def states(node: Node) -> list[str]:
    return [h.state for h in node.channel.htlcs()]


# =====================================================================================
# the round trip, step by step
# =====================================================================================

def test_htlc_round_trip_states_changes_and_balances() -> None:
    a, b = make_pair(push_msat=1_000_000_000)
    A, B = a.channel, b.channel
    a0, b0 = A.to_us_msat, B.to_us_msat
    preimage = b"\x07" * 32

    msg = add(a, 7_000_000, preimage)
    assert msg[0] == "update_add_htlc" and msg[1]["id"] == 0
    assert states(a) == ["SENT_ADD_HTLC"]
    B.recv_update_add_htlc(rt(msg))
    assert states(b) == ["RCVD_ADD_HTLC"]

    cs = A.send_commitment()
    assert cs is not None and len(cs[1]["htlc_signature"]) == 1
    assert A.send_commitment() is None            # one outstanding commitment_signed
    assert states(a) == ["SENT_ADD_COMMIT"]
    pending = B.recv_commitment_signed(rt(cs))
    assert pending.commitment_number == 1 and states(b) == ["RCVD_ADD_COMMIT"]
    with pytest.raises(UsageError, match="persist"):
        B.revoke()
    B.mark_persisted()
    rev = B.revoke()
    assert rev.message[0] == "revoke_and_ack" and not rev.changes
    assert states(b) == ["SENT_ADD_REVOCATION"]
    assert not A.recv_revoke_and_ack(rt(rev.message))
    assert states(a) == ["RCVD_ADD_REVOCATION"]

    cs = B.send_commitment()
    assert states(b) == ["SENT_ADD_ACK_COMMIT"]
    A.recv_commitment_signed(rt(cs))
    assert states(a) == ["RCVD_ADD_ACK_COMMIT"]
    A.mark_persisted()
    rev = A.revoke()
    assert states(a) == ["SENT_ADD_ACK_REVOCATION"]
    assert [(h.direction, h.htlc_id) for h in rev.changes.locked_in] == [("out", 0)]
    changes = B.recv_revoke_and_ack(rt(rev.message))
    assert states(b) == ["RCVD_ADD_ACK_REVOCATION"]
    assert [(h.direction, h.amount_msat, h.payment_hash) for h in changes.locked_in] == \
        [("in", 7_000_000, sha256(preimage))]
    # in flight: still counted as the offerer's (Core Lightning's to_us_msat)
    assert A.to_us_msat == a0 and B.to_us_msat == b0

    ful = B.fulfill_htlc(0, preimage)
    assert states(b) == ["SENT_REMOVE_HTLC"]
    assert A.recv_update_fulfill_htlc(rt(ful)) == preimage
    assert states(a) == ["RCVD_REMOVE_HTLC"]
    cs = B.send_commitment()
    assert states(b) == ["SENT_REMOVE_COMMIT"]
    A.recv_commitment_signed(rt(cs))
    assert states(a) == ["RCVD_REMOVE_COMMIT"]
    A.mark_persisted()
    rev = A.revoke()
    assert states(a) == ["SENT_REMOVE_REVOCATION"] and not rev.changes
    B.recv_revoke_and_ack(rt(rev.message))
    assert states(b) == ["RCVD_REMOVE_REVOCATION"]
    cs = A.send_commitment()
    assert states(a) == ["SENT_REMOVE_ACK_COMMIT"]
    B.recv_commitment_signed(rt(cs))
    assert states(b) == ["RCVD_REMOVE_ACK_COMMIT"]
    B.mark_persisted()
    rev = B.revoke()
    assert [(h.direction, h.removal) for h in rev.changes.resolved] == [("in", RemovalKind.FULFILL)]
    changes = A.recv_revoke_and_ack(rt(rev.message))
    assert [(h.direction, h.removal, h.preimage) for h in changes.resolved] == \
        [("out", RemovalKind.FULFILL, preimage)]
    assert A.htlcs() == [] and B.htlcs() == []
    assert A.to_us_msat == a0 - 7_000_000 and B.to_us_msat == b0 + 7_000_000
    assert A.log.oldest == A.log.latest == [2, 2] == B.log.latest
    check_pair(a, b, signatures=True)


@pytest.mark.parametrize("how", ["fail", "fail_malformed"])
def test_failed_htlc_returns_the_money(how: str) -> None:
    a, b, p, _ = locked_htlc()
    a0, b0 = a.channel.to_us_msat, b.channel.to_us_msat
    if how == "fail":
        p.send("B", b.channel.fail_htlc(0, b"onion error blob"))
    else:
        p.send("B", b.channel.fail_malformed_htlc(0, sha256(ONION), 0x8000 | 0x4000 | 5))
    p.deliver_all()
    resolved = [h for c in a.changes for h in c.resolved]
    assert len(resolved) == 1
    if how == "fail":
        assert resolved[0].removal is RemovalKind.FAIL and resolved[0].fail_reason == b"onion error blob"
    else:
        assert resolved[0].removal is RemovalKind.FAIL_MALFORMED
        assert resolved[0].failure_code == 0xC005 and resolved[0].sha256_of_onion == sha256(ONION)
    assert (a.channel.to_us_msat, b.channel.to_us_msat) == (a0, b0)
    check_pair(a, b, signatures=True)


def test_many_htlcs_both_directions_and_fee_updates() -> None:
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    for i in range(6):
        p.send("A", add(a, 1_000_000 * (i + 1), bytes([i]) * 32))
        p.send("B", add(b, 400_000 * (i + 1), bytes([100 + i]) * 32))
    p.send("A", a.channel.update_fee(5000))
    p.deliver_all()
    assert a.channel.log.feerate(Side.LOCAL, a.channel.log.oldest[0]) == 5000
    assert len(a.channel.htlcs()) == 12
    check_pair(a, b, signatures=True)
    for node, name in ((a, "A"), (b, "B")):
        for h in node.channel.htlcs():
            if h.direction == "in":
                pre = bytes([h.htlc_id + (0 if name == "B" else 100)]) * 32
                p.send(name, node.channel.fulfill_htlc(h.htlc_id, pre))
    p.deliver_all()
    assert not a.channel.htlcs()
    moved = sum(1_000_000 * (i + 1) for i in range(6)) - sum(400_000 * (i + 1) for i in range(6))
    assert a.channel.to_us_msat == 7_000_000_000 - moved
    check_pair(a, b, signatures=True)


# =====================================================================================
# BOLT 2 checks on update_add_htlc: refused locally, rejected when received
# =====================================================================================

def _crafted_add(sender: Node, amount: int, **over: Any) -> dict[str, Any]:
    f = {"channel_id": sender.channel.channel_id, "id": sender.channel.log.next_id[Side.LOCAL],
         "amount_msat": amount, "payment_hash": sha256(b"x"), "cltv_expiry": CLTV,
         "onion_routing_packet": ONION, "tlvs": {}}
    f.update(over)
    return rt(("update_add_htlc", f))


@pytest.mark.parametrize("amount,cltv,opts,local_err,peer_err", [
    (0, CLTV, {}, "greater than 0", "greater than 0"),
    (999, CLTV, dict(accepter_overrides=dict(htlc_minimum_msat=1000)),
     "below htlc_minimum_msat 1000", "below htlc_minimum_msat 1000"),
    (1000, 500_000_000, {}, "must be below 500000000", "must be below 500000000"),
    (60_000_000, CLTV, dict(accepter_overrides=dict(max_htlc_value_in_flight_msat=50_000_000)),
     "over max_htlc_value_in_flight_msat", "over max_htlc_value_in_flight_msat"),
    (10_000_000_000, CLTV, {}, "unaffordable", "unaffordable"),
])
def test_add_checks(amount: int, cltv: int, opts: dict, local_err: str, peer_err: str) -> None:
    a, b = make_pair(**opts)
    with pytest.raises(UsageError, match=local_err):
        a.channel.add_htlc(amount, sha256(b"x"), cltv, ONION, HEIGHT)
    assert a.channel.log.next_id[Side.LOCAL] == 0 and not a.channel.htlcs()  # nothing changed
    with pytest.raises(PeerError, match=peer_err):
        b.channel.recv_update_add_htlc(_crafted_add(a, amount, cltv_expiry=cltv))


def test_add_max_accepted_htlcs() -> None:
    a, b = make_pair(accepter_overrides=dict(max_accepted_htlcs=2))
    for i in range(2):
        b.channel.recv_update_add_htlc(rt(add(a, 1_000_000, bytes([i]) * 32)))
    with pytest.raises(UsageError, match="over max_accepted_htlcs 2"):
        add(a, 1_000_000)
    with pytest.raises(PeerError, match="would offer 3 HTLCs, over max_accepted_htlcs 2"):
        b.channel.recv_update_add_htlc(_crafted_add(a, 1_000_000))


def test_add_wrong_id_and_repeated_id() -> None:
    a, b = make_pair()
    with pytest.raises(PeerError, match="id 1, expected 0"):
        b.channel.recv_update_add_htlc(_crafted_add(a, 1000, id=1))
    b.channel.recv_update_add_htlc(rt(add(a, 1000)))
    with pytest.raises(PeerError, match="id 0, expected 1"):
        b.channel.recv_update_add_htlc(_crafted_add(a, 1000, id=0))


def test_add_reserve_and_fee_of_non_opener_and_opener() -> None:
    # B (not the opener) holds 20_000 sat; A requires a 10_000 sat reserve of it.
    a, b = make_pair(push_msat=20_000_000)
    with pytest.raises(UsageError, match="needs 10000 sat for reserve"):
        add(b, 15_000_000)
    with pytest.raises(PeerError, match="needs 10000 sat for reserve"):
        a.channel.recv_update_add_htlc(_crafted_add(b, 15_000_000))
    b.channel.add_htlc(9_000_000, sha256(b"y"), CLTV, ONION, HEIGHT)   # within reserve: fine
    # A (opener) must also keep the commitment fee.
    a, b = make_pair(funding_sat=1_000_000, push_msat=985_000_000)  # A holds 15_000 sat
    fee = 724 * 2500 // 1000 + 172 * 2500 // 1000
    with pytest.raises(PeerError, match="reserve and commitment fee"):
        b.channel.recv_update_add_htlc(_crafted_add(a, (15_000 - 10_000 - fee + 1) * 1000))


def test_fee_spike_buffer_is_sending_policy_only() -> None:
    """BOLT 2: the opener SHOULD keep a buffer for twice the feerate and one
    more HTLC; the receiver only enforces reserve + fee.  So what we may not
    send is still accepted from a peer."""
    a, b = make_pair(funding_sat=1_000_000, push_msat=900_000_000, feerate_per_kw=10_000)
    spendable = a.channel.spendable_msat
    assert spendable > 0
    add(a, spendable)                 # exactly spendable: allowed
    a, b = make_pair(funding_sat=1_000_000, push_msat=900_000_000, feerate_per_kw=10_000)
    with pytest.raises(UsageError, match="could not pay the commitment fee"):
        add(a, spendable + 1)
    b.channel.recv_update_add_htlc(_crafted_add(a, spendable + 1000))   # accepted


def test_non_opener_does_not_add_what_the_opener_cannot_pay_fees_for() -> None:
    a, b = make_pair(funding_sat=1_000_000, push_msat=989_000_000)   # A: 11_000 sat
    with pytest.raises(UsageError, match="the opener could not pay the commitment fee"):
        add(b, 5_000_000)
    # the peer adding it anyway is not a protocol violation (the fee just shrinks)
    a.channel.recv_update_add_htlc(_crafted_add(b, 5_000_000))


def test_add_after_shutdown_rejected() -> None:
    a, b = make_pair()
    b.channel.recv_shutdown(rt(a.channel.shutdown()))
    with pytest.raises(UsageError, match="cannot add an HTLC in state shutting_down"):
        add(a, 1000)
    with pytest.raises(PeerError, match="update_add_htlc after shutdown"):
        b.channel.recv_update_add_htlc(_crafted_add(a, 1000))


def test_add_cltv_in_the_past_and_bad_onion_refused() -> None:
    a, _ = make_pair()
    with pytest.raises(UsageError, match="not after the current block"):
        a.channel.add_htlc(1000, sha256(b"x"), HEIGHT, ONION, HEIGHT)
    with pytest.raises(UsageError, match="onion must be 1366 bytes"):
        a.channel.add_htlc(1000, sha256(b"x"), CLTV, b"\x00" * 10, HEIGHT)


# =====================================================================================
# removals
# =====================================================================================

def test_fulfill_checks() -> None:
    a, b, p, preimage = locked_htlc()
    with pytest.raises(UsageError, match="preimage does not match"):
        b.channel.fulfill_htlc(0, b"\x00" * 32)
    with pytest.raises(UsageError, match="no incoming HTLC 5"):
        b.channel.fulfill_htlc(5, preimage)
    f = {"channel_id": a.channel.channel_id, "id": 0, "payment_preimage": b"\x00" * 32}
    with pytest.raises(PeerError, match="preimage does not match HTLC 0"):
        a.channel.recv_update_fulfill_htlc(rt(("update_fulfill_htlc", f)))
    with pytest.raises(PeerError, match="unknown HTLC id 9"):
        a.channel.recv_update_fulfill_htlc(rt(("update_fulfill_htlc", dict(f, id=9))))
    msg = b.channel.fulfill_htlc(0, preimage)
    with pytest.raises(UsageError, match="already being removed"):
        b.channel.fail_htlc(0, b"")
    a.channel.recv_update_fulfill_htlc(rt(msg))
    with pytest.raises(PeerError, match="already removed"):
        a.channel.recv_update_fail_htlc(rt(("update_fail_htlc", {"channel_id": a.channel.channel_id,
                                                                 "id": 0, "reason": b""})))


def test_removal_before_irrevocably_committed_rejected() -> None:
    a, b = make_pair()
    p = Pipe(a, b)
    preimage = b"\x03" * 32
    p.send("A", add(a, 2_000_000, preimage))
    p.send("A", a.channel.send_commitment())
    p.deliver("B")
    p.deliver("B")               # B holds the commitment with the HTLC, not revoked yet
    with pytest.raises(UsageError, match="not irrevocably committed"):
        b.channel.fulfill_htlc(0, preimage)
    f = {"channel_id": a.channel.channel_id, "id": 0, "payment_preimage": preimage}
    with pytest.raises(PeerError, match="not irrevocably committed"):
        a.channel.recv_update_fulfill_htlc(rt(("update_fulfill_htlc", f)))


def test_fail_malformed_needs_badonion() -> None:
    a, b, p, _ = locked_htlc()
    with pytest.raises(UsageError, match="BADONION"):
        b.channel.fail_malformed_htlc(0, sha256(ONION), 0x4005)
    f = {"channel_id": a.channel.channel_id, "id": 0, "sha256_of_onion": sha256(ONION),
         "failure_code": 0x4005}
    with pytest.raises(PeerError, match="lacks BADONION"):
        a.channel.recv_update_fail_malformed_htlc(rt(("update_fail_malformed_htlc", f)))


# =====================================================================================
# update_fee
# =====================================================================================

def test_update_fee_only_from_the_opener() -> None:
    a, b = make_pair()
    with pytest.raises(UsageError, match="non-opener"):
        b.channel.update_fee(3000)
    f = rt(("update_fee", {"channel_id": a.channel.channel_id, "feerate_per_kw": 3000}))
    with pytest.raises(PeerError, match="update_fee from the non-opener"):
        a.channel.recv_update_fee(f)


def test_update_fee_bounds_and_affordability() -> None:
    a, b = make_pair(funding_sat=1_000_000, push_msat=950_000_000,
                     fee_bounds=FeerateBounds(253, 1_000_000))   # A holds 50_000 sat
    b.channel.fee_bounds = FeerateBounds(1000, 50_000)
    msg = lambda rate: rt(("update_fee", {"channel_id": a.channel.channel_id, "feerate_per_kw": rate}))
    with pytest.raises(PeerError, match="outside acceptable"):
        b.channel.recv_update_fee(msg(999))
    with pytest.raises(PeerError, match="outside acceptable"):
        b.channel.recv_update_fee(msg(50_001))
    # 50_000 sat - 10_000 reserve pays 724 weight at up to ~55k sat/kw
    b.channel.fee_bounds = FeerateBounds(253, 10**6)
    with pytest.raises(UsageError, match="unaffordable"):
        a.channel.update_fee(60_000)
    with pytest.raises(PeerError, match="update_fee 60000 unaffordable"):
        b.channel.recv_update_fee(msg(60_000))
    b.channel.recv_update_fee(rt(a.channel.update_fee(40_000)))


def test_update_fee_outside_the_range_but_towards_it_is_accepted() -> None:
    """Core Lightning's feerate_same_or_better: our range moved since the
    peer's last update_fee (commitment at 2500 here); a rate outside it is
    refused only if it moves away from it, with a PeerWarning (BOLT 2: a
    warning and a disconnection, not a failed channel)."""
    msg = lambda a, rate: rt(("update_fee", {"channel_id": a.channel.channel_id, "feerate_per_kw": rate}))
    a, b = make_pair()
    b.channel.fee_bounds = FeerateBounds(3000, 50_000)      # estimates went up
    with pytest.raises(PeerWarning, match="update_fee 2400 outside acceptable .3000, 50000. .currently 2500."):
        b.channel.recv_update_fee(msg(a, 2400))
    b.channel.recv_update_fee(msg(a, 2800))
    a, b = make_pair()
    b.channel.fee_bounds = FeerateBounds(253, 2000)          # estimates went down
    with pytest.raises(PeerWarning, match="update_fee 2600 outside"):
        b.channel.recv_update_fee(msg(a, 2600))
    b.channel.recv_update_fee(msg(a, 2200))


def test_update_fee_round_trip_changes_the_commitment_fee() -> None:
    a, b = make_pair()
    p = Pipe(a, b)
    before = a.channel.local_commitment(0).tx.outputs
    p.send("A", a.channel.update_fee(5000))
    p.deliver_all()
    n = a.channel.log.latest[Side.LOCAL]
    after = a.channel.local_commitment(n).tx.outputs
    assert sum(o.value for o in before) - sum(o.value for o in after) == 724 * 5000 // 1000 - 724 * 2500 // 1000
    check_pair(a, b, signatures=True)


# =====================================================================================
# commitment_signed and revoke_and_ack
# =====================================================================================

def _with_htlcs() -> tuple[Node, Node, dict[str, Any]]:
    a, b = make_pair(push_msat=1_000_000_000)
    b.channel.recv_update_add_htlc(rt(add(a, 5_000_000, b"\x01" * 32)))
    b.channel.recv_update_add_htlc(rt(add(a, 6_000_000, b"\x02" * 32)))
    return a, b, rt(a.channel.send_commitment())


def test_bad_commitment_signature_rejected() -> None:
    a, b, cs = _with_htlcs()
    sig = bytearray(cs["signature"])
    sig[10] ^= 1
    with pytest.raises(PeerError, match="bad signature for our commitment 1"):
        b.channel.recv_commitment_signed(dict(cs, signature=bytes(sig)))
    assert not b.channel.revocation_pending       # nothing changed
    b.channel.recv_commitment_signed(cs)          # the genuine one still works


def test_bad_htlc_signature_rejected() -> None:
    a, b, cs = _with_htlcs()
    swapped = [cs["htlc_signature"][1], cs["htlc_signature"][0]]
    with pytest.raises(PeerError, match="bad HTLC signature 0"):
        b.channel.recv_commitment_signed(dict(cs, htlc_signature=swapped))
    # valid signature by the right key over another digest: still wrong
    forged = sign_digest_compact(sha256(b"not the htlc key"), b"\x11" * 32)
    with pytest.raises(PeerError, match="bad HTLC signature 1"):
        b.channel.recv_commitment_signed(dict(cs, htlc_signature=[cs["htlc_signature"][0], forged]))
    with pytest.raises(PeerError, match="1 HTLC signatures for 2 HTLC outputs"):
        b.channel.recv_commitment_signed(dict(cs, htlc_signature=cs["htlc_signature"][:1]))


def test_commitment_signed_without_updates_rejected() -> None:
    a, b = make_pair()
    fake = {"channel_id": a.channel.channel_id, "signature": bytes(64), "htlc_signature": []}
    with pytest.raises(PeerError, match="without any update"):
        b.channel.recv_commitment_signed(rt(("commitment_signed", fake)))
    assert a.channel.send_commitment() is None


def test_second_commitment_signed_before_revoking_rejected() -> None:
    a, b, cs = _with_htlcs()
    b.channel.recv_commitment_signed(cs)
    with pytest.raises(PeerError, match="before we revoked"):
        b.channel.recv_commitment_signed(cs)


def test_revoke_and_ack_checks() -> None:
    a, b, cs = _with_htlcs()
    raa = {"channel_id": a.channel.channel_id, "per_commitment_secret": b"\x01" * 32,
           "next_per_commitment_point": b.signer.per_commitment_point(2)}
    with pytest.raises(PeerError, match="unexpected revoke_and_ack"):
        b.channel.recv_revoke_and_ack(rt(("revoke_and_ack", raa)))
    b.channel.recv_commitment_signed(cs)
    b.channel.mark_persisted()
    good = rt(b.channel.revoke().message)
    with pytest.raises(PeerError, match="does not match commitment 0's point"):
        a.channel.recv_revoke_and_ack(dict(good, per_commitment_secret=b"\x01" * 32))
    with pytest.raises(PeerError, match="not a valid point"):
        a.channel.recv_revoke_and_ack(dict(good, next_per_commitment_point=b"\x02" + b"\x00" * 32))
    a.channel.recv_revoke_and_ack(good)
    assert a.channel.remote_secrets.get_commitment_secret(0) == good["per_commitment_secret"]


def test_revoke_requires_persistence_and_a_pending_commitment() -> None:
    a, b, cs = _with_htlcs()
    with pytest.raises(UsageError, match="no commitment to revoke"):
        b.channel.revoke()
    b.channel.recv_commitment_signed(cs)
    with pytest.raises(UsageError, match="persist the new commitment"):
        b.channel.revoke()
    assert b.channel.send_commitment() is None     # we owe a revocation first
    b.persist()
    b.crash()                                      # resuming from storage counts as persisted
    assert b.channel.revocation_pending
    # (disconnected after the restart: reestablish sends the revocation)


def test_latest_local_commitment_is_fully_signed() -> None:
    a, b, p, _ = locked_htlc(amount=8_000_000)
    check_pair(a, b, signatures=True)
    tx, htlc_txs = b.channel.latest_local_commitment_tx()
    assert len(htlc_txs) == 1 and htlc_txs[0].is_success
    assert len(tx.inputs[0].witness) == 4


# =====================================================================================
# state machine, persistence, queries, signer
# =====================================================================================

def test_state_transition_table() -> None:
    assert set(TRANSITIONS) == set(ChannelState)
    a, _ = make_pair(ready=False)
    ch = a.channel
    assert ch.state is ChannelState.AWAITING_LOCKIN
    with pytest.raises(IllegalTransition, match="awaiting_lockin -> closing_negotiation"):
        ch.set_state(ChannelState.CLOSING_NEGOTIATION)
    for s in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN, ChannelState.CLOSING_NEGOTIATION,
              ChannelState.CLOSED):
        ch.set_state(s)
    for s in ChannelState:
        with pytest.raises(IllegalTransition):
            ch.set_state(s)


def test_channel_ready_exchange_and_updates_before_it() -> None:
    a, b = make_pair(ready=False)
    with pytest.raises(UsageError, match="awaiting_lockin"):
        add(a, 1000)
    ready = rt(a.channel.channel_ready_msg())
    b.channel.recv_channel_ready(ready)
    assert b.channel.state is ChannelState.AWAITING_LOCKIN
    a.channel.recv_channel_ready(rt(b.channel.channel_ready_msg()))
    assert a.channel.state is b.channel.state is ChannelState.NORMAL
    b.channel.recv_channel_ready(ready)          # redundant: ignored
    with pytest.raises(PeerError, match="different second_per_commitment_point"):
        b.channel.recv_channel_ready(dict(ready, second_per_commitment_point=a.signer.per_commitment_point(5)))


def test_serialization_round_trip_through_the_codec_is_lossless() -> None:
    a, b, p, preimage = locked_htlc()
    p.send("B", b.channel.fulfill_htlc(0, preimage))
    p.send("A", add(a, 3_000_000, b"\x09" * 32))
    p.send("A", a.channel.update_fee(3000))
    p.deliver_all()
    p.send("A", add(a, 1_000_000, b"\x0a" * 32))   # an unsigned update of ours
    for node in (a, b):
        schema = internal_schema("channeld")
        d = schema.decode_subtype("channeld_core", schema.encode_subtype("channeld_core", node.channel.to_dict()))
        back = Channel.from_dict(d, node.signer)
        assert back.to_dict() == node.channel.to_dict()
        assert back.connected is False
        assert [h.state for h in back.htlcs()] == [h.state for h in node.channel.htlcs()]


def test_spendable_and_receivable_are_exact() -> None:
    for anchors in (False, True):
        a, b = make_pair(push_msat=2_000_000_000, anchors=anchors)
        s = a.channel.spendable_msat
        assert 0 < s < a.channel.to_us_msat
        assert b.channel.receivable_msat >= s
        with pytest.raises(UsageError):
            add(a, s + 1)
        add(a, s)
        assert a.channel.spendable_msat == 0
        sb = b.channel.spendable_msat
        with pytest.raises(UsageError):
            add(b, sb + 1)
        add(b, sb)


def test_new_channel_checks() -> None:
    a, b = make_pair()
    pb = b.channel.params
    with pytest.raises(PeerError, match="push_msat"):
        Channel.new(pb, b.signer, push_msat=pb.funding_msat + 1, feerate_per_kw=2500,
                    remote_first_per_commitment_point=a.signer.per_commitment_point(0))
    with pytest.raises(PeerError, match="cannot pay the initial commitment fee"):
        Channel.new(pb, b.signer, push_msat=pb.funding_msat - 1000, feerate_per_kw=2500,
                    remote_first_per_commitment_point=a.signer.per_commitment_point(0))
    with pytest.raises(PeerError, match="feerate_per_kw 100 outside"):
        Channel.new(pb, b.signer, push_msat=0, feerate_per_kw=100,
                    remote_first_per_commitment_point=a.signer.per_commitment_point(0))
    with pytest.raises(UsageError, match="signer's keys"):
        Channel.new(pb, a.signer, push_msat=0, feerate_per_kw=2500,
                    remote_first_per_commitment_point=a.signer.per_commitment_point(0))
    from dataclasses import replace
    for field, value, err in [("max_accepted_htlcs", 484, "not in 1..483"),
                              ("dust_limit_sat", 353, "below 354"),
                              ("channel_reserve_sat", 500, "below local dust_limit_satoshis"),
                              ("to_self_delay", 5000, "unreasonably large")]:
        bad = ChannelParams(pb.funding_outpoint, pb.funding_sat, pb.opener, pb.local,
                            replace(pb.remote, **{field: value}), pb.channel_type)
        with pytest.raises(PeerError, match=err):
            bad.validate()


def test_initial_commitment_signatures() -> None:
    a, b = make_pair(ready=False)
    sig = bytearray(a.channel.initial_remote_commitment_sig())
    sig[5] ^= 1
    fresh_b = Channel.new(b.channel.params, LocalSigner.from_seed(b"pairB"), push_msat=0,
                          feerate_per_kw=2500, remote_first_per_commitment_point=a.signer.per_commitment_point(0))
    with pytest.raises(PeerError, match="bad signature for our commitment 0"):
        fresh_b.recv_initial_commitment_sig(bytes(sig))


def test_signer_revocation_rule() -> None:
    a, b, cs = _with_htlcs()
    signer = b.signer
    with pytest.raises(SignerError, match="no validated commitment 1"):
        signer.per_commitment_secret(0)
    b.channel.recv_commitment_signed(cs)           # validates commitment 1
    with pytest.raises(SignerError, match="no validated commitment 2"):
        signer.per_commitment_secret(1)
    old, new = b.channel.local_commitment(0), b.channel.local_commitment(1)
    b.channel.mark_persisted()
    b.channel.revoke()                             # releases secret 0
    params = b.channel.params
    with pytest.raises(SignerError, match="revoked commitment 0"):
        signer.sign_local_commitment(0, old.tx, params.funding_witness_script, params.funding_sat)
    with pytest.raises(SignerError, match="revoked commitment 0"):
        signer.sign_local_htlc_tx(0, new.htlc_txs[0])
    with pytest.raises(SignerError, match="already revoked"):
        signer.validate_local_commitment(0, old.tx, params.funding_witness_script, params.funding_sat,
                                         b.channel.local_sig)
    assert len(signer.sign_local_commitment(1, new.tx, params.funding_witness_script,
                                            params.funding_sat)) == 64


def test_usage_while_disconnected() -> None:
    a, b = make_pair()
    a.channel.disconnect()
    with pytest.raises(UsageError, match="disconnected"):
        add(a, 1000)
    with pytest.raises(UsageError, match="after a disconnection"):
        b.channel.reestablish_msg()


def test_shutdown_script_checks() -> None:
    a, b = make_pair()
    msg = lambda script: rt(("shutdown", {"channel_id": a.channel.channel_id, "scriptpubkey": script}))
    p2pkh = b"\x76\xa9\x14" + b"\x01" * 20 + b"\x88\xac"
    with pytest.raises(PeerError, match="not an allowed form"):
        b.channel.recv_shutdown(msg(p2pkh))
    with pytest.raises(UsageError, match="not a standard segwit output"):
        a.channel.shutdown(p2pkh)
    taproot = b"\x51\x20" + b"\x02" * 32
    b.channel.recv_shutdown(msg(taproot))          # anysegwit
    with pytest.raises(PeerError, match="multiple shutdown"):
        b.channel.recv_shutdown(msg(taproot))
    # upfront_shutdown_script must be honoured
    a, b = make_pair(opener_overrides=dict(upfront_shutdown_script=p2wpkh(b"U")))
    with pytest.raises(PeerError, match="upfront_shutdown_script"):
        b.channel.recv_shutdown(msg(p2wpkh(b"V")))
    with pytest.raises(UsageError, match="upfront_shutdown_script"):
        a.channel.shutdown(p2wpkh(b"V"))
    b.channel.recv_shutdown(rt(a.channel.shutdown()))


def test_shutdown_needs_our_updates_signed_first() -> None:
    a, b = make_pair()
    msg = add(a, 1_000_000)
    with pytest.raises(UsageError, match="send commitment_signed first"):
        a.channel.shutdown()
    b.channel.recv_update_add_htlc(rt(msg))
    sd = {"channel_id": a.channel.channel_id, "scriptpubkey": p2wpkh(b"A")}
    with pytest.raises(PeerError, match="updates are pending on our commitment"):
        b.channel.recv_shutdown(rt(("shutdown", sd)))


def test_channel_from_open_and_accept_messages() -> None:
    """The opening handshake's fields, through the codec, give two channels
    that agree (the shell does the handshake itself)."""
    from bitcoin.tx import OutPoint
    from channeld.core import ChannelType
    from channel_testing import party_config
    sa, sb = LocalSigner.from_seed(b"openA"), LocalSigner.from_seed(b"openB")
    ctype = ChannelType(anchors=True).to_wire()
    open_msg = rt(("open_channel", dict(
        party_config(sa).wire_fields(), chain_hash=bytes(32), temporary_channel_id=bytes(32),
        funding_satoshis=2_000_000, push_msat=100_000_000, feerate_per_kw=3000,
        first_per_commitment_point=sa.per_commitment_point(0), channel_flags=1,
        tlvs={"channel_type": {"type": ctype}})))
    accept_msg = rt(("accept_channel", dict(
        party_config(sb, dust_limit_sat=600).wire_fields(), temporary_channel_id=bytes(32),
        minimum_depth=3, first_per_commitment_point=sb.per_commitment_point(0),
        tlvs={"channel_type": {"type": ctype}})))
    outpoint = OutPoint(sha256(b"funding tx"), 0)
    A = Channel.from_open_accept(sa, open_msg, accept_msg, outpoint, we_opened=True,
                                 local_shutdown_script=p2wpkh(b"A"))
    B = Channel.from_open_accept(sb, open_msg, accept_msg, outpoint, we_opened=False,
                                 local_shutdown_script=p2wpkh(b"B"))
    assert A.params.option_anchors and B.params.opener is Side.REMOTE
    assert B.params.local.dust_limit_sat == 600 == A.params.remote.dust_limit_sat
    assert (A.to_us_msat, B.to_us_msat) == (1_900_000_000, 100_000_000)
    assert A.channel_id == B.channel_id
    B.recv_initial_commitment_sig(A.initial_remote_commitment_sig())     # funding_created
    A.recv_initial_commitment_sig(B.initial_remote_commitment_sig())     # funding_signed
    B.recv_channel_ready(rt(A.channel_ready_msg()))
    A.recv_channel_ready(rt(B.channel_ready_msg()))
    a, b = Node("A", sa, A), Node("B", sb, B)
    p = Pipe(a, b)
    p.send("A", add(a, 50_000_000, b"\x77" * 32))
    p.deliver_all()
    p.send("B", B.fulfill_htlc(0, b"\x77" * 32))
    p.deliver_all()
    assert (A.to_us_msat, B.to_us_msat) == (1_850_000_000, 150_000_000)
    check_pair(a, b, signatures=True)
    bad = dict(accept_msg, tlvs={"channel_type": {"type": ChannelType().to_wire()}})
    with pytest.raises(PeerError, match="channel_type differs"):
        Channel.from_open_accept(sa, open_msg, bad, outpoint, we_opened=True)
    with pytest.raises(PeerError, match="unsupported channel_type"):
        ChannelType.from_wire(bytes([0x40, 0, 0]))   # bit 22 without static_remotekey (12)


def test_messages_for_another_channel_rejected() -> None:
    a, b = make_pair()
    other = bytes(32)
    msg = rt(add(a, 1_000_000))
    with pytest.raises(PeerError, match="update_add_htlc for another channel_id"):
        b.channel.recv_update_add_htlc(dict(msg, channel_id=other))
    with pytest.raises(PeerError, match="shutdown for another channel_id"):
        b.channel.recv_shutdown({"channel_id": other, "scriptpubkey": p2wpkh(b"A")})
    b.channel.recv_update_add_htlc(msg)


class NotAShachainSigner(LocalSigner):
    """A peer whose per-commitment secrets are independent (each matches its
    point, but they do not come from one BOLT 3 shachain)."""

    def per_commitment_secret(self, n: int) -> bytes:
        super().per_commitment_secret(n)           # keep the revocation rule
        return sha256(b"independent" + bytes([n]))

    def per_commitment_point(self, n: int) -> bytes:
        from common.keyderive import pubkey_from_secret
        return pubkey_from_secret(sha256(b"independent" + bytes([n])))


def test_secrets_not_from_a_shachain_rejected() -> None:
    from channel_testing import party_config
    from bitcoin.tx import OutPoint
    sa, sb = LocalSigner.from_seed(b"shaA"), NotAShachainSigner.from_seed(b"shaB")
    ca, cb = party_config(sa), party_config(sb)
    out = OutPoint(sha256(b"f"), 0)
    from channeld.core import ChannelType
    A = Channel.new(ChannelParams(out, 1_000_000, Side.LOCAL, ca, cb, ChannelType()), sa, push_msat=0,
                    feerate_per_kw=2500, remote_first_per_commitment_point=sb.per_commitment_point(0))
    B = Channel.new(ChannelParams(out, 1_000_000, Side.REMOTE, cb, ca, ChannelType()), sb, push_msat=0,
                    feerate_per_kw=2500, remote_first_per_commitment_point=sa.per_commitment_point(0))
    B.recv_initial_commitment_sig(A.initial_remote_commitment_sig())
    A.recv_initial_commitment_sig(B.initial_remote_commitment_sig())
    B.recv_channel_ready(rt(A.channel_ready_msg()))
    A.recv_channel_ready(rt(B.channel_ready_msg()))
    a, b = Node("A", sa, A), Node("B", sb, B)
    p = Pipe(a, b)
    with pytest.raises(PeerError, match="not from one shachain"):
        for i in range(8):            # the first secrets may happen to be storable
            p.send("A", add(a, 1_000_000, bytes([i]) * 32))
            p.deliver_all()


def test_revoke_and_ack_with_invalid_secret_rejected() -> None:
    a, b, cs = _with_htlcs()
    b.channel.recv_commitment_signed(cs)
    b.channel.mark_persisted()
    good = rt(b.channel.revoke().message)
    with pytest.raises(PeerError, match="does not match"):
        a.channel.recv_revoke_and_ack(dict(good, per_commitment_secret=bytes(32)))
