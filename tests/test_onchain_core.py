"""onchaind core (BOLT 5) scenarios: every transaction it produces is checked
by Bitcoin Core's script interpreter and the toy chain's timelock rules
(see test_onchain_core_chain.py) at the height it claims, and not before."""
from __future__ import annotations

from dataclasses import replace

import pytest

from bitcoin.tx import OutPoint, Tx, TxIn, TxOut
from common.commitment import OutputKind, Side
from onchaind.core import (
    AllResolved,
    BlockConnected,
    Broadcast,
    HtlcFailed,
    OnchainState,
    OutputSpent,
    OutputType,
    PreimageKnown,
    PreimageLearned,
    Resolved,
    TxConfirmed,
    TxType,
    Warn,
    Watch,
)
from wire.internal import internal_schema
from test_onchain_core_chain import (
    CLOSE_HEIGHT,
    FUNDING_SAT,
    H_NEXT,
    H_OLD_OURS,
    H_OLD_THEIRS,
    H_OURS_A,
    H_OURS_B,
    H_OURS_DUST,
    H_THEIRS_A,
    H_THEIRS_B,
    HTLCS,
    OUR_DELAY,
    PREIMAGES,
    REVOKED_HTLCS,
    THEIR_DELAY,
    Driver,
    PartyPair,
    sweep_fee_ok,
)


def outpoint_of(tx: Tx, outs, pred) -> OutPoint:
    (i,) = [i for i, o in enumerate(outs) if pred(o)]
    return OutPoint(tx.txid(), i)


def htlc_op(tx, outs, h):
    return outpoint_of(tx, outs, lambda o: o.htlc == h)


def kind_op(tx, outs, kind):
    return outpoint_of(tx, outs, lambda o: o.kind is kind)


def latest(d: Driver) -> dict[OutPoint, Broadcast]:
    bs: dict[OutPoint, Broadcast] = {}
    for b in d.of(Broadcast):
        bs[b.outpoint] = b
    return bs


def check_fees(d: Driver) -> None:
    for b in d.of(Broadcast):
        if "->OUR_HTLC_" not in b.reason or "_TO_US" in b.reason:   # our own sweeps
            if all(i.prevout in d.chain.utxos for i in b.tx.inputs):
                sweep_fee_ok(b, d.chain)


def failed_ids(d: Driver) -> list[int]:
    return [o.htlc_id for o in d.of(HtlcFailed)]


# --- our unilateral close -----------------------------------------------------------------

@pytest.mark.parametrize("anchors", [False, True])
def test_our_unilateral(anchors):
    tc = PartyPair(anchors)
    commit, params, outs, _ = tc.commitment(Side.LOCAL, tc.local_n, HTLCS)
    d = Driver(tc, commit)
    st = d.state
    assert st.classification.kind is TxType.OUR_UNILATERAL and st.classification.exact
    to_local = kind_op(commit, outs, OutputKind.TO_LOCAL)
    a, b = htlc_op(commit, outs, H_OURS_A), htlc_op(commit, outs, H_OURS_B)
    ta, tb = htlc_op(commit, outs, H_THEIRS_A), htlc_op(commit, outs, H_THEIRS_B)
    csv = 1 if anchors else 0

    assert ("OUR_UNILATERAL/DELAYED_OUTPUT_TO_US: waiting 143 more blocks to broadcast "
            "OUR_DELAYED_RETURN_TO_WALLET") in st.status_lines()
    bs = latest(d)
    assert set(bs) == {to_local, a, b, ta}           # no preimage for tb
    assert bs[to_local].not_before_height == CLOSE_HEIGHT + OUR_DELAY
    assert bs[to_local].tx.inputs[0].sequence == OUR_DELAY
    assert (bs[a].not_before_height, bs[a].tx.locktime) == (H_OURS_A.cltv_expiry + 1, 600)
    assert bs[b].not_before_height == H_OURS_B.cltv_expiry + 1
    assert bs[ta].not_before_height == CLOSE_HEIGHT + csv
    assert all(bs[x].needs_fee_inputs == anchors for x in (a, b, ta))
    assert {w.outpoint for w in d.of(Watch)} == {to_local, a, b, ta, tb}
    with pytest.raises(ValueError):
        st.bump(a, 10_000)                           # pre-signed by the peer

    d.run_to(CLOSE_HEIGHT + 1)
    assert failed_ids(d) == []
    d.run_to(CLOSE_HEIGHT + 2)    # commitment 3 deep: the HTLCs it lacks (trimmed, next only)
    assert failed_ids(d) == [H_OURS_DUST.htlc_id, H_NEXT.htlc_id]
    # HTLC-success went out; its output waits for our delay
    assert st.resolution(ta).resolved_by is TxType.OUR_HTLC_SUCCESS_TX
    child = latest(d)[OutPoint(st.resolution(ta).resolved_txid, 0)]
    assert child.reason == "OUR_HTLC_SUCCESS_TX/DELAYED_OUTPUT_TO_US->OUR_DELAYED_RETURN_TO_WALLET"
    assert child.not_before_height == CLOSE_HEIGHT + 1 + OUR_DELAY

    # the peer takes HTLC b with the preimage before it times out
    ws = next(o.witness_script for o in outs if o.htlc == H_OURS_B)
    spend = tc.their_direct_spend(commit, b.index, ws, tc.us.per_commitment_point(tc.local_n),
                                  H_OURS_B.amount_msat // 1000, PREIMAGES[H_OURS_B.payment_hash])
    new = d.mine(spend, 605)
    assert PreimageLearned(H_OURS_B.payment_hash, PREIMAGES[H_OURS_B.payment_hash]) in new
    assert st.resolution(b).resolved_by is TxType.THEIR_HTLC_FULFILL_TO_THEM

    d.run_to(H_OURS_A.cltv_expiry + 2)               # HTLC-timeout mined at 601
    assert st.resolution(a).resolved_by is TxType.OUR_HTLC_TIMEOUT_TX
    assert H_OURS_A.htlc_id not in failed_ids(d)
    d.run_to(H_OURS_A.cltv_expiry + 3)               # 3 deep: fail it upstream
    assert failed_ids(d) == [H_OURS_DUST.htlc_id, H_NEXT.htlc_id, H_OURS_A.htlc_id]

    d.run_to(640)
    lines = st.status_lines()
    assert any(x.startswith("OUR_UNILATERAL/OUR_HTLC: resolved by OUR_HTLC_TIMEOUT_TX ") and
               x.endswith(" (40 confirmations)") for x in lines)
    assert ("OUR_HTLC_TIMEOUT_TX/DELAYED_OUTPUT_TO_US: waiting 104 more blocks to broadcast "
            "OUR_DELAYED_RETURN_TO_WALLET") in lines
    r = st.resolution(tb)
    assert (r.resolved_by, r.note) == (TxType.IGNORED, "expired without preimage")
    # the peer times it out after all: recorded
    ws = next(o.witness_script for o in outs if o.htlc == H_THEIRS_B)
    d.mine(tc.their_direct_spend(commit, tb.index, ws, tc.us.per_commitment_point(tc.local_n),
                                 H_THEIRS_B.amount_msat // 1000, b"", locktime=630), 641)
    assert st.resolution(tb).resolved_by is TxType.THEIR_HTLC_TIMEOUT_TO_THEM

    d.run_to(H_OURS_A.cltv_expiry + 1 + OUR_DELAY + 98)
    assert not d.of(AllResolved)
    assert not [r for r in st.resolutions() if not r.is_resolved]
    d.run_to(H_OURS_A.cltv_expiry + 1 + OUR_DELAY + 99)
    assert d.of(AllResolved) == [AllResolved()]
    assert sorted(failed_ids(d)) == [0, 2, 3]
    assert [p.payment_hash for p in d.of(PreimageLearned)] == [H_OURS_B.payment_hash]
    check_fees(d)
    assert d.state.block(d.state.tip + 1) == []      # nothing more to say


# --- their unilateral close ---------------------------------------------------------------

@pytest.mark.parametrize("which", ["current", "next"])
@pytest.mark.parametrize("anchors", [False, True])
def test_their_unilateral(anchors, which):
    tc = PartyPair(anchors)
    n = tc.remote_n + (which == "next")
    htlcs = HTLCS + ((H_NEXT,) if which == "next" else ())
    commit, params, outs, _ = tc.commitment(Side.REMOTE, n, htlcs)
    d = Driver(tc, commit)
    st = d.state
    assert (st.classification.kind, st.classification.which) == (TxType.THEIR_UNILATERAL, which)
    csv = 1 if anchors else 0
    a, b = htlc_op(commit, outs, H_OURS_A), htlc_op(commit, outs, H_OURS_B)
    ta, tb = htlc_op(commit, outs, H_THEIRS_A), htlc_op(commit, outs, H_THEIRS_B)
    to_remote = kind_op(commit, outs, OutputKind.TO_REMOTE)
    bs = latest(d)
    expect = {a, b, ta} | ({htlc_op(commit, outs, H_NEXT)} if which == "next" else set())
    if anchors:
        expect.add(to_remote)
        assert bs[to_remote].not_before_height == CLOSE_HEIGHT + 1
        assert bs[to_remote].tx.inputs[0].sequence == 1
    else:
        r = st.resolution(to_remote)
        assert (r.output_type, r.resolved_by) == (OutputType.OUTPUT_TO_US, TxType.SELF)
        assert Resolved(to_remote, TxType.SELF, None, CLOSE_HEIGHT) in d.outs
    assert set(bs) == expect
    assert (bs[a].tx.locktime, bs[a].not_before_height) == (600, 601)
    assert bs[ta].not_before_height == CLOSE_HEIGHT + csv
    assert bs[ta].tx.inputs[0].witness[1] == PREIMAGES[H_THEIRS_A.payment_hash]

    # they claim HTLC a with their HTLC-success: we learn the preimage
    new = d.mine(tc.their_htlc_tx(n, htlcs, H_OURS_A), 550)
    assert PreimageLearned(H_OURS_A.payment_hash, PREIMAGES[H_OURS_A.payment_hash]) in new
    assert st.resolution(a).resolved_by is TxType.THEIR_HTLC_SUCCESS_TX
    d.run_to(700)
    assert st.resolution(b).resolved_by is TxType.OUR_HTLC_TIMEOUT_TO_US
    assert st.resolution(ta).resolved_by is TxType.OUR_HTLC_SUCCESS_TO_US
    assert st.resolution(tb).resolved_by is TxType.IGNORED
    # the dust HTLC and (current only) the next-only one are missing: failed at depth 3
    # (b timed out by us; the next-only HTLC either timed out or absent)
    assert sorted(failed_ids(d)) == sorted([H_OURS_DUST.htlc_id, H_OURS_B.htlc_id, H_NEXT.htlc_id])
    assert failed_ids(d)[0] == H_OURS_DUST.htlc_id
    if which == "current":
        assert failed_ids(d)[:2] == [H_OURS_DUST.htlc_id, H_NEXT.htlc_id]
    d.run_to(800)
    assert d.of(AllResolved) == [AllResolved()]
    check_fees(d)


# --- revoked commitments --------------------------------------------------------------------

@pytest.mark.parametrize("anchors", [False, True])
def test_revoked_penalty_spends_every_output(anchors):
    tc = PartyPair(anchors)
    commit, params, outs, _ = tc.commitment(Side.REMOTE, 3, REVOKED_HTLCS, 500_000)
    d = Driver(tc, commit)
    st = d.state
    assert st.classification.kind is TxType.THEIR_REVOKED_UNILATERAL
    to_local = kind_op(commit, outs, OutputKind.TO_LOCAL)
    oo, ot = htlc_op(commit, outs, H_OLD_OURS), htlc_op(commit, outs, H_OLD_THEIRS)
    bs = latest(d)
    assert {to_local, oo, ot} <= set(bs)
    for op in (to_local, oo, ot):
        assert bs[op].reason.endswith("->OUR_PENALTY_TX")
        assert bs[op].not_before_height == CLOSE_HEIGHT and len(bs[op].tx.inputs) == 1
    assert bs[to_local].tx.inputs[0].witness[1] == b"\x01"
    assert bs[oo].tx.inputs[0].witness[1] == params.keys.revocation_pubkey
    assert bs[to_local].deadline == CLOSE_HEIGHT + THEIR_DELAY
    d.run_to(CLOSE_HEIGHT + 3)
    for op in (to_local, oo, ot):
        assert st.resolution(op).resolved_by is TxType.OUR_PENALTY_TX
    # every live HTLC of ours is absent from this old commitment
    assert sorted(failed_ids(d)) == [0, 1, 2, 3]
    d.run_to(CLOSE_HEIGHT + 1 + 98)
    assert not d.of(AllResolved)
    d.run_to(CLOSE_HEIGHT + 1 + 99)
    assert d.of(AllResolved) == [AllResolved()]
    check_fees(d)
    # all of it came back to us, less fees (under 1000 sat/kw * 1000 weight each)
    ours = sum(c.out.value for c in d.chain.utxos.values() if c.out.script_pubkey == tc.wallet_spk)
    theirs = FUNDING_SAT - 500_000 - 15_000 - 2_500 * (1124 if anchors else 724 + 2 * 172) // 1000
    assert ours > theirs - 4 * 1000


@pytest.mark.parametrize("anchors", [False, True])
def test_revoked_second_stage_punished(anchors):
    tc = PartyPair(anchors)
    commit, params, outs, _ = tc.commitment(Side.REMOTE, 3, REVOKED_HTLCS, 500_000)
    d = Driver(tc, commit)
    st = d.state
    oo, ot = htlc_op(commit, outs, H_OLD_OURS), htlc_op(commit, outs, H_OLD_THEIRS)
    # they beat our penalty with an HTLC-success (they know the preimage)
    success = tc.their_htlc_tx(3, REVOKED_HTLCS, H_OLD_OURS, 500_000)
    new = d.mine(success, CLOSE_HEIGHT + 1)
    assert PreimageLearned(H_OLD_OURS.payment_hash, PREIMAGES[H_OLD_OURS.payment_hash]) in new
    child = OutPoint(success.txid(), 0)
    b = [x for x in new if isinstance(x, Broadcast)]
    assert [x.outpoint for x in b] == [child]
    assert b[0].reason == "THEIR_HTLC_SUCCESS_TX/DELAYED_CHEAT_OUTPUT_TO_THEM->OUR_PENALTY_TX"
    assert b[0].deadline == CLOSE_HEIGHT + 1 + THEIR_DELAY
    # and with an HTLC-timeout of their HTLC once it expired (our penalty held back)
    d.run_to(H_OLD_THEIRS.cltv_expiry, skip={ot})
    bumped = [x for x in d.of(Broadcast) if x.outpoint == ot]
    assert len(bumped) > 1                           # deadline near: RBF bumps
    assert [x.feerate_per_kw for x in bumped] == sorted({x.feerate_per_kw for x in bumped})
    timeout = tc.their_htlc_tx(3, REVOKED_HTLCS, H_OLD_THEIRS, 500_000)
    new = d.mine(timeout, H_OLD_THEIRS.cltv_expiry + 1)
    assert [x.outpoint for x in new if isinstance(x, Broadcast)] == [OutPoint(timeout.txid(), 0)]
    d.run_to(H_OLD_THEIRS.cltv_expiry + 3)
    for op, by in ((oo, TxType.THEIR_HTLC_SUCCESS_TX), (ot, TxType.THEIR_HTLC_TIMEOUT_TX),
                   (child, TxType.OUR_PENALTY_TX), (OutPoint(timeout.txid(), 0), TxType.OUR_PENALTY_TX)):
        assert st.resolution(op).resolved_by is by
    d.run_to(H_OLD_THEIRS.cltv_expiry + 1 + 99)
    assert d.of(AllResolved) == [AllResolved()]
    check_fees(d)


# --- preimages, dust, bumps ----------------------------------------------------------------

def test_preimage_arrives_later():
    tc = PartyPair(False)
    commit, _, outs, _ = tc.commitment(Side.LOCAL, tc.local_n, HTLCS)
    d = Driver(tc, commit)
    tb = htlc_op(commit, outs, H_THEIRS_B)
    assert tb not in latest(d)
    pre = PREIMAGES[H_THEIRS_B.payment_hash]
    with pytest.raises(ValueError):
        d.state.preimage(H_THEIRS_B.payment_hash, b"\x00" * 32)
    new = d.feed(d.state.preimage(H_THEIRS_B.payment_hash, pre))
    (b,) = [x for x in new if isinstance(x, Broadcast)]
    assert b.outpoint == tb and b.tx.inputs[0].witness[3] == pre
    assert not [x for x in new if isinstance(x, PreimageLearned)]    # the master told us
    assert d.state.handle(PreimageKnown(H_THEIRS_B.payment_hash, pre)) == []


def test_dust_output_not_swept():
    tc = PartyPair(False)
    commit, _, outs, _ = tc.commitment(Side.REMOTE, tc.remote_n, HTLCS)
    d = Driver(tc, commit, tc.onchain_channel(feerate_per_kw=5000))
    a, b = htlc_op(commit, outs, H_OURS_A), htlc_op(commit, outs, H_OURS_B)
    r = d.state.resolution(a)
    assert r.dust and r.resolved_by is TxType.IGNORED and "dust: 3000 sat" in r.note
    assert a not in latest(d) and b in latest(d)
    assert latest(d)[b].fee_sat > 2000
    # watched still: a preimage spend would be noticed; failed upstream once expired
    assert Watch(a) in d.outs
    d.run_to(H_OURS_A.cltv_expiry + 1, mine=False)
    assert H_OURS_A.htlc_id not in failed_ids(d)
    d.run_to(H_OURS_A.cltv_expiry + 2, mine=False)
    assert H_OURS_A.htlc_id in failed_ids(d)


def test_bump_replaces_contested_sweep():
    tc = PartyPair(False)
    commit, _, outs, _ = tc.commitment(Side.REMOTE, tc.remote_n, HTLCS)
    d = Driver(tc, commit)
    b = htlc_op(commit, outs, H_OURS_B)
    first = latest(d)[b]
    assert first.deadline == first.not_before_height == 621
    d.run_to(620, skip={b})
    assert latest(d)[b] == first                     # not yet mineable: no bump
    d.run_to(621, skip={b})                          # missed block 621: bump
    second = latest(d)[b]
    assert second.feerate_per_kw == first.feerate_per_kw + 253
    assert second.tx.inputs[0].prevout == first.tx.inputs[0].prevout
    assert second.fee_sat > first.fee_sat
    assert d.state.block(621) == []                  # once per block
    new = d.feed(d.state.bump(b, 1_000_000))        # capped: output stays above dust
    (third,) = [x for x in new if isinstance(x, Broadcast)]
    assert 294 <= third.tx.outputs[0].value < 294 + 10
    check_fees(d)
    d.run_to(622)
    assert d.state.resolution(b).resolved_txid == third.tx.txid()


# --- persistence, idempotence, reorgs -----------------------------------------------------------

def test_serialization_round_trip_mid_resolution():
    tc = PartyPair(True)
    commit, _, _, _ = tc.commitment(Side.LOCAL, tc.local_n, HTLCS)
    d = Driver(tc, commit)
    d.run_to(610)
    schema = internal_schema("onchaind")
    state = dict(d.state.to_value(), to_us=[], core_all_resolved=False)
    saved = schema.encode_subtype("onchaind_state", state)       # as onchaind_persist carries it
    restored = OnchainState.from_value(schema.decode_subtype("onchaind_state", saved), tc.us)
    assert restored.to_value() == d.state.to_value()
    assert restored.status_lines() == d.state.status_lines()
    assert restored.block(610) == []                 # nothing re-announced
    for h in range(611, 660):
        assert restored.block(h) == d.state.block(h)
    pre = PREIMAGES[H_THEIRS_B.payment_hash]
    assert restored.preimage(H_THEIRS_B.payment_hash, pre) == \
        d.state.preimage(H_THEIRS_B.payment_hash, pre)
    assert restored.to_value() == d.state.to_value()


def test_idempotence_and_reorg():
    tc = PartyPair(False)
    commit, _, outs, _ = tc.commitment(Side.REMOTE, tc.remote_n, HTLCS)
    d = Driver(tc, commit)
    st = d.state
    a = htlc_op(commit, outs, H_OURS_A)
    assert st.handle(TxConfirmed(commit.txid(), CLOSE_HEIGHT)) == []
    assert st.handle(BlockConnected(CLOSE_HEIGHT)) == []
    d.run_to(600)
    timeout = latest(d)[a].tx
    d.run_to(601)
    assert st.resolution(a).resolved_txid == timeout.txid()
    assert st.output_spent(a, timeout, 601) == []    # same event again: nothing
    assert st.output_spent(a, timeout, None) == []   # mempool echo: keeps the height
    assert st.tx_confirmed(timeout.txid(), 601) == []
    # block 601 disappears: the timeout is unconfirmed again, announced again
    new = st.block_disconnected(601)
    assert [x.tx for x in new if isinstance(x, Broadcast)] == [timeout]
    assert not st.resolution(a).is_resolved and st.resolution(a).pending_spend_txid == timeout.txid()
    assert st.block_disconnected(601) == []
    # a new block 601 without it: contested, so it is bumped (RBF)
    (bumped,) = [x for x in st.block(601) if isinstance(x, Broadcast)]
    assert bumped.outpoint == a and bumped.feerate_per_kw > latest(d)[a].feerate_per_kw
    assert st.block(601) == []
    # the first version gets mined after all: still ours
    assert st.handle(OutputSpent(a, timeout, 602)) == []
    assert st.resolution(a).resolved_by is TxType.OUR_HTLC_TIMEOUT_TO_US
    assert st.resolution(a).resolved_height == 602
    # the commitment itself reorged out and mined one block later
    st.block_disconnected(CLOSE_HEIGHT)
    assert all(r.proposal is None or r.proposal.not_before_height is None or r.is_resolved
               for r in st.resolutions() if r.output_type is OutputType.OUR_HTLC and r.outpoint != a)
    new = st.tx_confirmed(commit.txid(), CLOSE_HEIGHT + 1)
    assert Resolved(d.channel.setup.funding_outpoint, TxType.THEIR_UNILATERAL, commit.txid(),
                    CLOSE_HEIGHT + 1) not in new     # same (outpoint, txid): said already
    assert st.resolution(d.channel.setup.funding_outpoint).resolved_height == CLOSE_HEIGHT + 1


# --- other spends -----------------------------------------------------------------------------

def test_mutual_close_and_unknown_spend():
    tc = PartyPair(False)
    close = Tx(inputs=[TxIn(tc.setup.funding_outpoint, b"", 0xFFFFFFFF)],
               outputs=[TxOut(FUNDING_SAT - 1000, tc.wallet_spk)])
    ch = tc.onchain_channel(mutual_close_txids=(close.txid(),), local=replace(
        tc.onchain_channel().local, htlcs=()), remote=replace(tc.onchain_channel().remote, htlcs=()),
        remote_next=None)
    st, outs = OnchainState.start(ch, close, CLOSE_HEIGHT, tc.us)
    assert outs == [Resolved(tc.setup.funding_outpoint, TxType.MUTUAL_CLOSE, close.txid(), CLOSE_HEIGHT)]
    assert st.block(CLOSE_HEIGHT + 98) == []
    assert st.block(CLOSE_HEIGHT + 99) == [AllResolved()]

    st, outs = OnchainState.start(tc.onchain_channel(), close, CLOSE_HEIGHT, tc.us)
    warns = [o for o in outs if isinstance(o, Warn)]
    assert len(warns) == 1 and "funds may be lost" in warns[0].message
    assert not [o for o in outs if isinstance(o, HtlcFailed)]


@pytest.mark.parametrize("anchors", [False, True])
def test_unknown_commitment_recovers_to_remote(anchors):
    tc = PartyPair(anchors)
    commit, _, outs, _ = tc.commitment(Side.REMOTE, 9, HTLCS)     # from the future
    d = Driver(tc, commit)
    assert d.state.classification.kind is TxType.UNKNOWN_UNILATERAL
    to_remote = kind_op(commit, outs, OutputKind.TO_REMOTE)
    assert len(d.of(Warn)) == 1
    if anchors:
        assert list(latest(d)) == [to_remote]
        d.run_to(CLOSE_HEIGHT + 2)
        assert d.state.resolution(to_remote).resolved_by is TxType.OUR_TO_REMOTE_SWEEP
    else:
        assert d.state.resolution(to_remote).resolved_by is TxType.SELF


def test_bad_peer_htlc_signature_is_not_broadcast():
    tc = PartyPair(False)
    commit, _, outs, _ = tc.commitment(Side.LOCAL, tc.local_n, HTLCS)
    good = tc.onchain_channel()
    bad = replace(good, local=replace(good.local, htlc_signatures=good.local.htlc_signatures[::-1]))
    d = Driver(tc, commit, bad)
    a = htlc_op(commit, outs, H_OURS_A)
    assert a not in latest(d)
    assert d.state.resolution(a).proposal.error
    assert any("cannot build OUR_HTLC_TIMEOUT_TX: the peer's HTLC signature does not verify" in x
               for x in d.state.status_lines())
