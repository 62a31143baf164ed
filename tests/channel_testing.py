"""Test support for the channel core: the in-process pair
(channeld/core/pair.py) and the invariants that must hold between two
channels at any moment."""
from __future__ import annotations

from common.commitment import HtlcInfo, Side

from channeld.core.htlcs import CommitmentView
from channeld.core.pair import Node, Pipe, WireMsg, make_pair, p2wpkh, party_config, roundtrip  # noqa: F401
from channeld.core.state import Channel


# --- invariants ------------------------------------------------------------------------
def _mirror(v: CommitmentView) -> CommitmentView:
    """The same commitment described from the other node (sides swapped)."""
    return CommitmentView(v.holder.other, v.number, v.feerate_per_kw, v.remote_msat, v.local_msat,
                          tuple(sorted((HtlcInfo(h.offerer.other, h.amount_msat, h.payment_hash,
                                                 h.cltv_expiry, h.htlc_id) for h in v.htlcs),
                                       key=_htlc_key)))


def _htlc_key(h: HtlcInfo) -> tuple:
    return (h.offerer, h.htlc_id)


def _views_in_range(ch: Channel, holder: Side) -> list[int]:
    lo, hi = ch.log.oldest[holder], ch.log.latest[holder] + 1
    return list(range(lo, hi + 1))


def check_pair(a: Node, b: Node, *, signatures: bool = False, seen: set | None = None) -> None:
    """Assert what must hold between two channels at any moment:

    * both build byte-identical transactions for every commitment both hold;
    * every commitment either may build conserves the funding amount;
    * their HTLC logs agree on every HTLC both know;
    * (``signatures``) each side's latest commitment and HTLC transactions
      carry valid signatures, and revealed secrets verify against the shachain.
    """
    from common.shachain import per_commitment_secret
    funding = a.channel.params.funding_msat
    for x, y in ((a, b), (b, a)):
        cx, cy = x.channel, y.channel
        # identical transactions for the commitments both sides know
        lo = max(cx.log.oldest[Side.LOCAL], cy.log.oldest[Side.REMOTE])
        hi = min(cx.log.latest[Side.LOCAL], cy.log.latest[Side.REMOTE])
        for n in range(lo, hi + 1):
            vx = cx.log.view(Side.LOCAL, n)
            vx = CommitmentView(vx.holder, n, vx.feerate_per_kw, vx.local_msat, vx.remote_msat,
                                tuple(sorted(vx.htlcs, key=_htlc_key)))
            vy = _mirror(cy.log.view(Side.REMOTE, n))
            assert vx == vy, f"{x.name}'s commitment {n} differs from {y.name}'s view:\n{vx}\n{vy}"
            assert cy.remote_points[n] == x.signer.per_commitment_point(n)
            key = (x.name, vx)
            if seen is not None and key in seen:
                continue
            built = cx.local_commitment(n)
            mine = built.tx.serialize()
            theirs = cy.remote_commitment(n).tx.serialize()
            assert mine == theirs, f"{x.name}'s commitment {n} tx differs from {y.name}'s"
            values = [o.value for o in built.tx.outputs]
            assert values and min(values) > 0 and sum(values) <= cx.params.funding_sat
            if seen is not None:
                seen.add(key)
        # conservation and sanity of every view
        for holder in Side:
            for n in _views_in_range(cx, holder):
                v = cx.log.view(holder, n)
                total = v.local_msat + v.remote_msat + sum(h.amount_msat for h in v.htlcs)
                assert total == funding, f"{x.name} {holder.name} {n}: {total} != {funding}"
                assert v.local_msat >= 0 and v.remote_msat >= 0, f"{x.name} negative balance in {v}"
        # HTLCs known to both agree
        for h in cx.log.live():
            other = cy.log.get(h.offerer.other, h.htlc_id)
            if other is not None:
                assert (other.amount_msat, other.payment_hash, other.cltv_expiry) == \
                    (h.amount_msat, h.payment_hash, h.cltv_expiry), f"HTLC {h.key} differs"
        assert cx.to_us_msat + cx.to_them_msat == funding
        if signatures:
            _check_signed_local(cx)
            o = cx.log.oldest[Side.REMOTE]
            for k in {0, o // 2, o - 1} if o > 0 else ():
                assert cx.remote_secrets.get_commitment_secret(k) == \
                    per_commitment_secret(y.signer._seed, k)


def _check_signed_local(ch: Channel) -> None:
    from bitcoin.keys import verify_digest_der
    from bitcoin.tx import SIGHASH_ALL
    from common.commitment import commitment_sighash
    if ch.local_sig is None:
        return
    tx, htlc_txs = ch.latest_local_commitment_tx()
    c = ch.local_commitment(ch.log.latest[Side.LOCAL])
    assert tx.txid() == c.tx.txid()
    wit = tx.inputs[0].witness
    digest = commitment_sighash(c.tx, c.params)
    pks = sorted([ch.params.local.funding_pubkey, ch.params.remote.funding_pubkey])
    for pk, sig in zip(pks, wit[1:3]):
        assert sig[-1] == SIGHASH_ALL and verify_digest_der(pk, sig[:-1], digest)
    keys = c.params.keys
    for h in htlc_txs:
        w = h.tx.inputs[0].witness
        assert h.tx.inputs[0].prevout.txid == tx.txid()
        theirs, ours = w[1], w[2]
        assert h.verify_counterparty_sig(keys.counterparty_htlc_pubkey, theirs[:-1])
        assert verify_digest_der(keys.holder_htlc_pubkey, ours[:-1], h.sighash(SIGHASH_ALL))
