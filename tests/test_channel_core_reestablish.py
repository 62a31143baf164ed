"""channel_reestablish: retransmission after a disconnection (or a crash) at
every step of an HTLC round trip, the exact messages and their order, and
detection of lost state on either side."""
from __future__ import annotations

from typing import Any

import pytest

import wire
from bitcoin.hashes import sha256
from channeld.core import (
    ChannelState,
    DataLossError,
    LocalSigner,
    PeerError,
    RemovalKind,
    SignerError,
    UsageError,
)
from channel_testing import Node, Pipe, check_pair, make_pair, roundtrip

ONION = bytes(1366)
AMOUNT = 12_000_000
PREIMAGE = b"\x5a" * 32


def enc(msg: tuple[str, dict[str, Any]]) -> bytes:
    return wire.bolt_schema().encode(*msg)


def rt(msg: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
    assert msg is not None
    return roundtrip(msg)[1]


# -- a scripted round trip -----------------------------------------------------------------
#: (action, node): A pays B, B fulfills; one message per delivery.
SCRIPT = [
    ("add", "A"), ("deliver", "B"), ("commit", "A"), ("deliver", "B"), ("revoke", "B"),
    ("deliver", "A"), ("commit", "B"), ("deliver", "A"), ("revoke", "A"), ("deliver", "B"),
    ("fulfill", "B"), ("deliver", "A"), ("commit", "B"), ("deliver", "A"), ("revoke", "A"),
    ("deliver", "B"), ("commit", "A"), ("deliver", "B"), ("revoke", "B"), ("deliver", "A"),
]


def run_step(p: Pipe, action: str, name: str) -> None:
    node = p.nodes[name]
    ch = node.channel
    if action == "add":
        p.send(name, ch.add_htlc(AMOUNT, sha256(PREIMAGE), 700, ONION, 500))
    elif action == "fulfill":
        p.send(name, ch.fulfill_htlc(0, PREIMAGE))
    elif action == "commit":
        cs = ch.send_commitment()
        assert cs is not None
        node.persist()
        p.send(name, cs)
    elif action == "revoke":
        node.persist()
        ch.mark_persisted()
        rev = ch.revoke()
        node.changes.append(rev.changes)
        node.persist()
        p.send(name, rev.message)
    else:
        p.deliver(name)


def finish(p: Pipe) -> None:
    """What both shells do after reconnecting: answer, sign, fulfill when possible."""
    a, b = p.nodes["A"], p.nodes["B"]
    for _ in range(20):
        p.deliver_all()
        ready = [h for h in b.channel.htlcs() if h.direction == "in" and h.state == "RCVD_ADD_ACK_REVOCATION"]
        for h in ready:
            p.send("B", b.channel.fulfill_htlc(h.htlc_id, PREIMAGE))
        if not ready and not a.channel.htlcs() and not b.channel.htlcs():
            return
    raise AssertionError("round trip did not complete")


@pytest.mark.parametrize("mode", ["disconnect", "crash A", "crash B"])
@pytest.mark.parametrize("cut", range(len(SCRIPT) + 1))
def test_interruption_at_every_step(cut: int, mode: str) -> None:
    """Interrupt after ``cut`` steps (in-flight messages are lost); a crashed
    side resumes from what it had to persist.  The payment completes exactly
    once, or (if the crash lost the never-committed add) not at all."""
    a, b = make_pair(push_msat=1_000_000_000)
    p = Pipe(a, b)
    a0, b0 = a.channel.to_us_msat, b.channel.to_us_msat
    for action, name in SCRIPT[:cut]:
        run_step(p, action, name)
    p.disconnect()
    if mode != "disconnect":
        p.nodes[mode[-1]].crash()
    p.reconnect()
    finish(p)
    check_pair(a, b, signatures=True)
    paid = a.channel.to_us_msat == a0 - AMOUNT
    assert paid == (b.channel.to_us_msat == b0 + AMOUNT)
    assert paid or a.channel.to_us_msat == a0
    # no add sent yet, or A losing its unsigned add, are the only ways not to pay
    assert paid == (cut >= 1 and not (mode == "crash A" and cut <= 2))
    for node, direction in ((a, "out"), (b, "in")):
        resolved = [h for c in node.changes for h in c.resolved]
        locked = [h for c in node.changes for h in c.locked_in]
        assert len(resolved) == len(locked) == int(paid)
        assert all(h.direction == direction and h.removal is RemovalKind.FULFILL for h in resolved)


# -- exact retransmissions -----------------------------------------------------------------
def test_lost_commitment_signed_resent_identically_with_its_updates() -> None:
    a, b = make_pair()
    add1 = a.channel.add_htlc(5_000_000, sha256(b"1"), 700, ONION, 500)
    add2 = a.channel.add_htlc(6_000_000, sha256(b"2"), 700, ONION, 500)
    cs = a.channel.send_commitment()
    add3 = a.channel.add_htlc(7_000_000, sha256(b"3"), 700, ONION, 500)   # after the commitment
    p = Pipe(a, b)
    p.disconnect()
    ra, rb = a.channel.reestablish_msg(), b.channel.reestablish_msg()
    res = a.channel.recv_reestablish(rt(rb))
    # B never got a commitment_signed: channel_ready goes again first (BOLT 2)
    assert res.messages[0][0] == "channel_ready"
    assert [enc(m) for m in res.messages[1:]] == [enc(add1), enc(add2), enc(cs), enc(add3)]
    b.channel.recv_reestablish(rt(ra))
    p.send("A", *res.messages)
    p.deliver_all()
    assert len(b.channel.htlcs()) == 3
    check_pair(a, b, signatures=True)


def test_lost_revoke_and_ack_resent() -> None:
    a, b = make_pair()
    b.channel.recv_update_add_htlc(rt(a.channel.add_htlc(5_000_000, sha256(b"1"), 700, ONION, 500)))
    b.channel.recv_commitment_signed(rt(a.channel.send_commitment()))
    b.channel.mark_persisted()
    raa = b.channel.revoke().message
    p = Pipe(a, b)
    p.disconnect()
    ra, rb = a.channel.reestablish_msg(), b.channel.reestablish_msg()
    assert ra[1]["next_revocation_number"] == 0 and rb[1]["next_commitment_number"] == 2
    res = b.channel.recv_reestablish(rt(ra))
    assert [enc(m) for m in res.messages] == [enc(raa)]
    assert a.channel.recv_reestablish(rt(rb)).messages == []
    p.send("B", *res.messages)
    p.deliver_all()
    check_pair(a, b, signatures=True)


@pytest.mark.parametrize("order", ["revoke_then_commit", "commit_then_revoke"])
def test_lost_revoke_and_commit_keep_their_order(order: str) -> None:
    a, b = make_pair(push_msat=1_000_000_000)
    A, B = a.channel, b.channel
    if order == "revoke_then_commit":
        B.recv_update_add_htlc(rt(A.add_htlc(5_000_000, sha256(b"1"), 700, ONION, 500)))
        B.recv_commitment_signed(rt(A.send_commitment()))
        B.mark_persisted()
        first = B.revoke().message
        second = B.send_commitment()       # signs A's add into A's commitment
        expected = [first, second]
    else:
        add_b = B.add_htlc(3_000_000, sha256(b"2"), 700, ONION, 500)
        first = B.send_commitment()
        B.recv_update_add_htlc(rt(A.add_htlc(5_000_000, sha256(b"1"), 700, ONION, 500)))
        B.recv_commitment_signed(rt(A.send_commitment()))
        B.mark_persisted()
        second = B.revoke().message
        expected = [add_b, first, second]
    p = Pipe(a, b)
    p.disconnect()
    ra, rb = A.reestablish_msg(), B.reestablish_msg()
    res = B.recv_reestablish(rt(ra))
    assert [m[0] for m in res.messages] == [m[0] for m in expected]
    assert [enc(m) for m in res.messages] == [enc(m) for m in expected]
    A.recv_reestablish(rt(rb))
    p.send("B", *res.messages)
    p.deliver_all()
    check_pair(a, b, signatures=True)
    assert len(A.htlcs()) == (1 if order == "revoke_then_commit" else 2)


def test_owed_revocation_sent_on_reconnection() -> None:
    a, b = make_pair()
    b.channel.recv_update_add_htlc(rt(a.channel.add_htlc(5_000_000, sha256(b"1"), 700, ONION, 500)))
    b.channel.recv_commitment_signed(rt(a.channel.send_commitment()))
    b.persist()
    b.channel.mark_persisted()
    p = Pipe(a, b)
    p.disconnect()
    res = b.channel.recv_reestablish(rt(a.channel.reestablish_msg()))
    assert [m[0] for m in res.messages] == ["revoke_and_ack"]
    assert not b.channel.revocation_pending


def test_unpersisted_revocation_waits_for_the_shell() -> None:
    a, b = make_pair()
    b.channel.recv_update_add_htlc(rt(a.channel.add_htlc(5_000_000, sha256(b"1"), 700, ONION, 500)))
    b.channel.recv_commitment_signed(rt(a.channel.send_commitment()))
    p = Pipe(a, b)
    p.disconnect()
    res = b.channel.recv_reestablish(rt(a.channel.reestablish_msg()))
    assert res.messages == [] and b.channel.revocation_pending
    with pytest.raises(UsageError, match="persist"):
        b.channel.revoke()


def test_crash_after_revoke_and_ack_left_completes_the_revocation() -> None:
    a, b = make_pair()
    b.channel.recv_update_add_htlc(rt(a.channel.add_htlc(5_000_000, sha256(b"1"), 700, ONION, 500)))
    b.channel.recv_commitment_signed(rt(a.channel.send_commitment()))
    b.persist()                                    # stored before revoking...
    b.channel.mark_persisted()
    a.channel.recv_revoke_and_ack(rt(b.channel.revoke().message))
    b.crash()                                      # ...but not after
    assert b.channel.revocation_pending
    a.channel.disconnect()
    ra, rb = a.channel.reestablish_msg(), b.channel.reestablish_msg()
    res = b.channel.recv_reestablish(rt(ra))
    assert res.messages == [] and not b.channel.revocation_pending
    assert [h.direction for h in res.changes.locked_in] == []   # A's add locks in later
    a.channel.recv_reestablish(rt(rb))
    p = Pipe(a, b)
    p.deliver_all()
    check_pair(a, b, signatures=True)
    assert [h.state for h in b.channel.htlcs()] == ["RCVD_ADD_ACK_REVOCATION"]


def test_peer_uncommitted_updates_dropped_then_resent_with_same_ids() -> None:
    a, b = make_pair()
    b.channel.recv_update_add_htlc(rt(a.channel.add_htlc(5_000_000, sha256(b"1"), 700, ONION, 500)))
    b.channel.recv_update_fee(rt(a.channel.update_fee(4000)))
    p = Pipe(a, b)
    p.disconnect()                                  # B drops them, A keeps them
    assert b.channel.htlcs() == [] and b.channel.log.next_id == [0, 0] and not b.channel.log.fee_updates
    p.reconnect()
    p.deliver_all()
    assert [h.htlc_id for h in b.channel.htlcs()] == [0]
    assert b.channel.log.feerate(b.channel.log.oldest[0], b.channel.log.oldest[0]) in (2500, 4000)
    check_pair(a, b, signatures=True)


def test_channel_ready_and_shutdown_retransmitted() -> None:
    a, b = make_pair()
    p = Pipe(a, b)
    p.disconnect()
    ra, rb = a.channel.reestablish_msg(), b.channel.reestablish_msg()
    res = a.channel.recv_reestablish(rt(rb))
    assert [m[0] for m in res.messages] == ["channel_ready"]
    b.channel.recv_reestablish(rt(ra))
    p.send("A", *res.messages)
    p.deliver_all()                                  # redundant channel_ready ignored
    sd = a.channel.shutdown()
    p.disconnect()
    p.reconnect()
    assert [raw for raw in p.queues["B"]][-1] == enc(sd)
    p.deliver_all()
    assert b.channel.remote_shutdown_script == sd[1]["scriptpubkey"]
    p.send("B", b.channel.shutdown())
    p.deliver_all()
    assert a.channel.state is ChannelState.CLOSING_NEGOTIATION


# -- lost state ------------------------------------------------------------------------------
def _busy_pair() -> tuple[Node, Node, Pipe]:
    a, b = make_pair(push_msat=1_000_000_000)
    p = Pipe(a, b)
    for i in range(3):
        p.send("A", a.channel.add_htlc(1_000_000, sha256(bytes([i])), 700, ONION, 500))
        p.deliver_all()
    return a, b, p


def test_we_lost_state_is_detected_and_not_broadcast() -> None:
    a, b, p = _busy_pair()
    b.persist()
    stale = b.db
    p.send("A", a.channel.add_htlc(1_000_000, sha256(b"x"), 700, ONION, 500))
    p.deliver_all()
    p.send("B", b.channel.fail_htlc(0, b""))
    p.deliver_all()
    p.disconnect()
    b.db = stale
    # The same hsmd knows better: it refuses the revoked commitment outright.
    with pytest.raises(SignerError, match="already revoked"):
        b.crash()
    # A node restored on a new machine (fresh signer state) learns it from the peer.
    b.signer = LocalSigner.from_seed(b"pairB")
    b.crash()
    ra, rb = a.channel.reestablish_msg(), b.channel.reestablish_msg()
    with pytest.raises(DataLossError, match="do NOT broadcast"):
        b.channel.recv_reestablish(rt(ra))
    with pytest.raises(PeerError, match="it lost state"):
        a.channel.recv_reestablish(rt(rb))


def test_bogus_reestablish_values_rejected() -> None:
    a, b, p = _busy_pair()
    p.disconnect()
    good = rt(b.channel.reestablish_msg())
    n = good["next_revocation_number"]
    assert n >= 2
    cases = [
        (dict(good, next_revocation_number=n + 1), "peer expects revocation"),
        (dict(good, your_last_per_commitment_secret=b"\x01" * 32), "is not our secret"),
        (dict(good, next_commitment_number=0), "next_commitment_number 0"),
        (dict(good, next_commitment_number=good["next_commitment_number"] + 1), "only signed up to"),
        (dict(good, next_revocation_number=0, your_last_per_commitment_secret=bytes(32)), "it lost state"),
    ]
    for fields, err in cases:
        with pytest.raises(PeerError, match=err):
            a.channel.recv_reestablish(fields)
        assert not a.channel.connected
    a.channel.recv_reestablish(good)
    with pytest.raises(UsageError, match="while connected"):
        a.channel.recv_reestablish(good)


def test_replayed_update_fee_still_accepted_after_peer_adds_were_acked() -> None:
    """A (opener) sends update_fee while B concurrently adds HTLCs.  A then
    revokes, acking B's HTLCs into B's next commitment, and the connection
    drops before A signs the fee.  The re-sent update_fee meets a next
    commitment that now holds B's HTLCs: judged on it, the fee would look
    unaffordable and B would fail the channel over a fee it had accepted.
    Receiver checks leave out the receiver's own unsigned HTLCs, so the
    verdict is the same as the first time."""
    from channeld.core import FeerateBounds
    bounds = FeerateBounds(253, 500_000)
    a, b = make_pair(funding_sat=1_000_000, push_msat=900_000_000, fee_bounds=bounds)  # A: 100k sat
    p = Pipe(a, b)
    fee = a.channel.update_fee(100_000)            # 724 weight: 72_400 sat of A's 90_000 room
    for i in range(3):                             # concurrently, B adds 3 non-dust HTLCs
        # 100_000 sat: above the 546 + 66_300 sat trimming threshold at this feerate
        p.send("B", b.channel.add_htlc(100_000_000, sha256(bytes([i])), 700, ONION, 500))
    p.send("B", b.channel.send_commitment())
    p.deliver_all(auto=False)                      # A: B's adds and commitment_signed
    a.persist()
    a.channel.mark_persisted()
    raa = a.channel.revoke().message               # acks B's HTLCs into B's next commitment
    a.persist()
    b.channel.recv_update_fee(rt(fee))             # accepted: B's HTLCs not in its commitment yet
    b.channel.recv_revoke_and_ack(rt(raa))
    # with B's 3 HTLCs the fee (1240 weight: 124_000 sat) would exceed A's room
    p.disconnect()                                 # B drops the uncommitted update_fee
    p.reconnect()                                  # A re-sends it
    p.deliver_all()                                # ... and B accepts it again
    assert b.channel.log.feerate(0, b.channel.log.oldest[0]) == 100_000
    check_pair(a, b, signatures=True)
