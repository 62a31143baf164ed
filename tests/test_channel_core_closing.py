"""Mutual close: shutdown with HTLCs draining, closing_signed negotiation with
fee_range (immediate agreement, counter-proposal, no overlap, legacy peers),
and both sides ending with the identical, validly signed closing tx."""
from __future__ import annotations

from typing import Any

import pytest

from bitcoin.hashes import sha256
from bitcoin.keys import verify_digest_der
from bitcoin.tx import SIGHASH_ALL, Tx
from channeld.core import ChannelState, ClosingFeeRange, PeerError, UsageError
from channel_testing import Node, Pipe, make_pair, p2wpkh, roundtrip
from common.commitment import Side

ONION = bytes(1366)


def rt(msg: tuple[str, dict[str, Any]] | None) -> dict[str, Any]:
    assert msg is not None
    return roundtrip(msg)[1]


def shut_down(a: Node, b: Node, p: Pipe) -> None:
    p.send("A", a.channel.shutdown())
    p.deliver_all()
    p.send("B", b.channel.shutdown())
    p.deliver_all()
    assert a.channel.state is b.channel.state is ChannelState.CLOSING_NEGOTIATION


def check_closing_tx(tx: Tx, a: Node) -> None:
    params = a.channel.params
    digest = tx.sighash_segwit_v0(0, params.funding_witness_script, params.funding_sat, SIGHASH_ALL)
    wit = tx.inputs[0].witness
    assert wit[0] == b"" and wit[3] == params.funding_witness_script
    keys = sorted([params.local.funding_pubkey, params.remote.funding_pubkey])
    for key, sig in zip(keys, wit[1:3]):
        assert sig[-1] == SIGHASH_ALL and verify_digest_der(key, sig[:-1], digest)
    assert tx.inputs[0].prevout == params.funding_outpoint and tx.locktime == 0
    assert tx.inputs[0].sequence == 0xFFFFFFFF
    assert [o.value for o in tx.outputs] == sorted(o.value for o in tx.outputs)


def negotiate(a: Node, b: Node, p: Pipe, fa: ClosingFeeRange, fb: ClosingFeeRange) -> list[str]:
    """Run the negotiation; return the (sender, fee) trace."""
    b.channel.start_closing(fb)
    trace = []
    first = a.channel.start_closing(fa)
    p.send("A", first)
    trace.append(f"A{first[1]['fee_satoshis']}")
    while p.pending("A") or p.pending("B"):
        for r in ("B", "A"):
            if p.pending(r):
                p.deliver(r)
                q = p.queues[p.peer_of(r)]
                if q:
                    from wire import bolt_schema
                    trace.append(f"{r}{bolt_schema().decode(q[-1]).fields['fee_satoshis']}")
    return trace


def test_agreement_in_one_round_trip() -> None:
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    shut_down(a, b, p)
    trace = negotiate(a, b, p, ClosingFeeRange(100, 500, 1000), ClosingFeeRange(200, 300, 600))
    assert trace == ["A500", "B500"]
    ta, tb = p.closing_results["A"].tx, p.closing_results["B"].tx
    assert ta.serialize() == tb.serialize()
    check_closing_tx(ta, a)
    values = {o.script_pubkey: o.value for o in ta.outputs}
    assert values == {p2wpkh(b"A"): 7_000_000 - 500, p2wpkh(b"B"): 3_000_000}
    assert a.channel.state is b.channel.state is ChannelState.CLOSED


def test_counter_proposal_is_echoed_by_the_opener() -> None:
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    shut_down(a, b, p)
    trace = negotiate(a, b, p, ClosingFeeRange(100, 150, 2000), ClosingFeeRange(300, 400, 800))
    assert trace == ["A150", "B300", "A300"]
    ta, tb = p.closing_results["A"].tx, p.closing_results["B"].tx
    assert ta.serialize() == tb.serialize()
    assert sum(o.value for o in ta.outputs) == 10_000_000 - 300
    check_closing_tx(ta, b)


def test_no_fee_range_overlap_fails() -> None:
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    shut_down(a, b, p)
    b.channel.start_closing(ClosingFeeRange(300, 400, 800))
    offer = rt(a.channel.start_closing(ClosingFeeRange(100, 150, 200)))
    with pytest.raises(PeerError, match="does not overlap"):
        b.channel.recv_closing_signed(offer)


def test_bad_closing_signatures_and_fees_rejected() -> None:
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    shut_down(a, b, p)
    offer = rt(a.channel.start_closing(ClosingFeeRange(100, 500, 1000)))
    sig = bytearray(offer["signature"])
    sig[3] ^= 1
    with pytest.raises(PeerError, match="bad signature for fee 500"):
        b.channel.recv_closing_signed(dict(offer, signature=bytes(sig)))
    with pytest.raises(PeerError, match="exceeds the opener's balance"):
        b.channel.recv_closing_signed(dict(offer, fee_satoshis=7_000_001))
    with pytest.raises(PeerError, match="outside its own fee_range"):
        b.channel.recv_closing_signed(dict(offer, tlvs={"fee_range": {"min_fee_satoshis": 600,
                                                                       "max_fee_satoshis": 900}}))
    assert b.channel.recv_closing_signed(offer).tx is not None


def _legacy_offer(a: Node, fee: int) -> dict[str, Any]:
    """A closing_signed from A as a peer without fee_range support would send it."""
    neg = a.channel.closing
    assert neg is not None
    return rt(("closing_signed", {"channel_id": a.channel.channel_id, "fee_satoshis": fee,
                                  "signature": neg._sign(neg._our_tx(fee))}))


def _legacy_setup() -> tuple[Node, Node]:
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    shut_down(a, b, p)
    b.channel.start_closing(ClosingFeeRange(200, 300, 600))
    a.channel.start_closing(ClosingFeeRange(100, 150, 1000))
    return a, b


def test_legacy_peer_without_fee_range() -> None:
    a, b = _legacy_setup()
    # above B's max: B does not pay, so it accepts
    res = b.channel.recv_closing_signed(_legacy_offer(a, 900))
    assert res.tx is not None and res.reply is not None and res.reply[1]["fee_satoshis"] == 900
    check_closing_tx(res.tx, b)

    a, b = _legacy_setup()
    res = b.channel.recv_closing_signed(_legacy_offer(a, 150))     # below B's min: counter
    assert res.tx is None and res.reply is not None and res.reply[1]["fee_satoshis"] == 200
    with pytest.raises(PeerError, match="not strictly between 150 and 200"):
        b.channel.recv_closing_signed(_legacy_offer(a, 120))
    res = b.channel.recv_closing_signed(_legacy_offer(a, 200))     # the legacy peer agrees
    assert res.tx is not None and res.reply is None
    check_closing_tx(res.tx, b)


def test_legacy_negotiation_that_cannot_converge_fails() -> None:
    a, b = _legacy_setup()
    b.channel.recv_closing_signed(_legacy_offer(a, 150))            # B counters 200
    with pytest.raises(PeerError, match="cannot go beyond 200"):
        b.channel.recv_closing_signed(_legacy_offer(a, 180))        # still below B's minimum


def test_output_below_dust_is_omitted() -> None:
    a, b = make_pair(push_msat=400_000)                # B: 400 sat, below 546
    p = Pipe(a, b)
    shut_down(a, b, p)
    negotiate(a, b, p, ClosingFeeRange(100, 500, 1000), ClosingFeeRange(100, 500, 1000))
    ta, tb = p.closing_results["A"].tx, p.closing_results["B"].tx
    assert ta.serialize() == tb.serialize()
    assert [(o.script_pubkey, o.value) for o in ta.outputs] == [(p2wpkh(b"A"), 9_999_600 - 500)]


def test_shutdown_with_htlcs_in_flight() -> None:
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    preimage = b"\x33" * 32
    p.send("A", a.channel.add_htlc(50_000_000, sha256(preimage), 700, ONION, 500))
    p.deliver_all()
    p.send("A", a.channel.shutdown())
    p.deliver_all()
    assert a.channel.state is ChannelState.SHUTTING_DOWN and b.channel.needs_shutdown_reply
    p.send("B", b.channel.shutdown())
    p.deliver_all()
    assert b.channel.state is ChannelState.SHUTTING_DOWN      # the HTLC holds it open
    with pytest.raises(UsageError, match="cannot add an HTLC in state shutting_down"):
        b.channel.add_htlc(1000, sha256(b"x"), 700, ONION, 500)
    p.send("A", a.channel.update_fee(3000))                  # still allowed: an HTLC remains
    p.send("B", b.channel.fulfill_htlc(0, preimage))
    p.deliver_all()
    assert a.channel.state is b.channel.state is ChannelState.CLOSING_NEGOTIATION
    with pytest.raises(UsageError, match="update_fee not allowed in state closing_negotiation"):
        a.channel.update_fee(4000)
    negotiate(a, b, p, ClosingFeeRange(100, 700, 1000), ClosingFeeRange(100, 500, 1000))
    ta = p.closing_results["A"].tx
    values = {o.script_pubkey: o.value for o in ta.outputs}
    assert values == {p2wpkh(b"A"): 7_000_000 - 50_000 - 700, p2wpkh(b"B"): 3_000_000 + 50_000}


def test_reconnection_restarts_negotiation() -> None:
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    shut_down(a, b, p)
    p.send("A", a.channel.start_closing(ClosingFeeRange(100, 500, 1000)))
    p.disconnect()                                  # the offer is lost
    p.reconnect()                                   # shutdowns are retransmitted
    p.deliver_all()
    assert a.channel.state is ChannelState.CLOSING_NEGOTIATION and a.channel.closing is None
    negotiate(a, b, p, ClosingFeeRange(100, 400, 1000), ClosingFeeRange(100, 500, 1000))
    assert p.closing_results["A"].tx.serialize() == p.closing_results["B"].tx.serialize()


def test_closing_negotiation_only_when_ready() -> None:
    a, b = make_pair()
    with pytest.raises(UsageError, match="not possible in state normal"):
        a.channel.start_closing()
    with pytest.raises(PeerError, match="closing_signed in state normal"):
        b.channel.recv_closing_signed({"channel_id": b.channel.channel_id, "fee_satoshis": 1,
                                       "signature": bytes(64), "tlvs": {}})
    with pytest.raises(UsageError, match="only the opener"):
        p = Pipe(a, b)
        shut_down(a, b, p)
        b.channel.start_closing()
        assert b.channel.closing is not None
        b.channel.closing.first_offer()


def test_default_fee_range_follows_the_commitment_feerate() -> None:
    a, b = make_pair(push_msat=3_000_000_000, feerate_per_kw=2000)
    p = Pipe(a, b)
    shut_down(a, b, p)
    fees = a.channel.default_closing_fees()
    assert fees.min_sat < fees.ideal_sat < fees.max_sat
    p.send("A", a.channel.start_closing())
    p.deliver_all()
    tx = p.closing_results["B"].tx
    fee = 10_000_000 - sum(o.value for o in tx.outputs)
    assert fee == fees.ideal_sat
    # roughly 2000 sat/kw over the real weight of the signed transaction
    assert abs(fee * 1000 // tx.weight() - 2000) < 50
    assert b.channel.params.opener is Side.REMOTE


def test_non_opener_speaking_first_is_answered() -> None:
    """Legacy non-openers may send closing_signed first; the opener, which has
    not offered anything yet, answers within its default range."""
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    shut_down(a, b, p)
    b.channel.start_closing(ClosingFeeRange(100, 300, 600))
    neg = b.channel.closing
    assert neg is not None
    fees = a.channel.default_closing_fees()
    fee = fees.ideal_sat
    first = {"channel_id": b.channel.channel_id, "fee_satoshis": fee,
             "signature": neg._sign(neg._our_tx(fee)),
             "tlvs": {"fee_range": {"min_fee_satoshis": fees.min_sat, "max_fee_satoshis": fees.max_sat}}}
    res = a.channel.recv_closing_signed(rt(("closing_signed", first)))
    assert res.tx is not None and res.reply is not None and res.reply[1]["fee_satoshis"] == fee
    check_closing_tx(res.tx, a)
