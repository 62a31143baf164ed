"""BOLT 2 amount, fee and limit checks on HTLC adds and fee updates.

Which commitment is checked matters, because both peers must reach the same
verdict, even when an update is re-sent after a reconnection: BOLT 2's
receiver rules are applied to :meth:`HtlcLog.check_view` (the receiver's
next commitment without its own not-yet-signed HTLCs, plus the new update).
Both peers compute it identically when the update is sent and received, and
a re-sent update can only find it more favourable.  (The sender's balance
there is its floor in every later commitment: the receiver's removals only
refund it, and its own fulfills are acked no later than the adds that follow
them.  So no balance ever goes negative.)

When *we* send, :func:`check_add` and :func:`check_fee_update` additionally
apply sending-only policy (``sending=True``) on the full next commitments of
both sides: the opener's fee spike buffer (BOLT 2 recommends affording twice
the feerate plus one more HTLC), the fee counting every pending HTLC, and
the opener's ability to pay the fee for an HTLC we (non-opener) add.  So we
never send what the peer would reject.
"""
from __future__ import annotations

from dataclasses import replace

from common.commitment import (
    HtlcInfo,
    Side,
    commit_tx_base_fee,
    htlc_is_trimmed,
    htlc_success_fee,
    htlc_timeout_fee,
)
from common.scripts import ANCHOR_OUTPUT_SAT

from .errors import ChannelError
from .htlcs import CommitmentView, HtlcLog
from .params import ChannelParams

#: BOLT 2: cltv_expiry values at or above this would be a time, not a height.
CLTV_EXPIRY_LIMIT = 500_000_000
#: BOLT 2 "fee spike buffer": the opener keeps enough to pay this multiple of
#: the feerate with one more HTLC.
FEE_SPIKE_MULTIPLE = 2


def anchors_sat(params: ChannelParams) -> int:
    return 2 * ANCHOR_OUTPUT_SAT if params.option_anchors else 0


def untrimmed_count(params: ChannelParams, view: CommitmentView, feerate: int | None = None) -> int:
    rate = view.feerate_per_kw if feerate is None else feerate
    dust = params.party(view.holder).dust_limit_sat
    return sum(not htlc_is_trimmed(h.offered_by(view.holder), h.amount_msat, dust, rate,
                                   params.option_anchors) for h in view.htlcs)


def commit_fee_sat(params: ChannelParams, view: CommitmentView, *, feerate: int | None = None,
                   extra_htlcs: int = 0) -> int:
    """What the opener pays on this commitment: base fee plus both anchors.

    ``extra_htlcs`` adds hypothetical untrimmed HTLCs (fee spike buffer)."""
    rate = view.feerate_per_kw if feerate is None else feerate
    n = untrimmed_count(params, view) + extra_htlcs
    return commit_tx_base_fee(rate, n, params.option_anchors) + anchors_sat(params)


def with_htlc(view: CommitmentView, h: HtlcInfo) -> CommitmentView:
    """``view`` with one more in-flight HTLC taken from its offerer's balance."""
    if h.offerer is Side.LOCAL:
        return replace(view, local_msat=view.local_msat - h.amount_msat, htlcs=view.htlcs + (h,))
    return replace(view, remote_msat=view.remote_msat - h.amount_msat, htlcs=view.htlcs + (h,))


def _opener_room_msat(params: ChannelParams, view: CommitmentView) -> int:
    """Opener's balance above the reserve its peer requires (may be negative)."""
    opener = params.opener
    return view.balance(opener) - params.party(opener.other).channel_reserve_sat * 1000


def check_add(params: ChannelParams, log: HtlcLog, h: HtlcInfo, *, sending: bool,
              err: type[ChannelError]) -> None:
    """Raise ``err`` if ``h`` (offered by ``h.offerer``) may not be added now.

    ``sending`` applies our sending policy on top of BOLT 2's receiver checks."""
    sender, receiver = h.offerer, h.offerer.other
    limits = params.limits_on(sender)
    if h.amount_msat <= 0:
        raise err("update_add_htlc amount_msat must be greater than 0")
    if h.amount_msat < limits.htlc_minimum_msat:
        raise err(f"update_add_htlc amount_msat {h.amount_msat} below htlc_minimum_msat "
                  f"{limits.htlc_minimum_msat}")
    if not 0 <= h.cltv_expiry < CLTV_EXPIRY_LIMIT:
        raise err(f"update_add_htlc cltv_expiry {h.cltv_expiry} must be below {CLTV_EXPIRY_LIMIT}")
    if len(h.payment_hash) != 32:
        raise err("update_add_htlc payment_hash must be 32 bytes")

    view = with_htlc(log.check_view(receiver), h)
    offered = view.offered_by(sender)
    if len(offered) > limits.max_accepted_htlcs:
        raise err(f"update_add_htlc would offer {len(offered)} HTLCs, over max_accepted_htlcs "
                  f"{limits.max_accepted_htlcs}")
    in_flight = sum(x.amount_msat for x in offered)
    if in_flight > limits.max_htlc_value_in_flight_msat:
        raise err(f"update_add_htlc would put {in_flight} msat in flight, over "
                  f"max_htlc_value_in_flight_msat {limits.max_htlc_value_in_flight_msat}")
    balance = view.balance(sender)
    need_sat = limits.channel_reserve_sat
    if sender is params.opener:
        need_sat += commit_fee_sat(params, view)
    if balance < need_sat * 1000:
        raise err(f"update_add_htlc of {h.amount_msat} msat unaffordable: sender balance would be "
                  f"{balance} msat, needs {need_sat} sat for reserve"
                  + (" and commitment fee" if sender is params.opener else ""))
    if not sending:
        return

    # --- sending-only policy --------------------------------------------------
    theirs = with_htlc(log.next_view(receiver), h)
    own = with_htlc(log.view(sender, log.latest[sender] + 1, assume_acked=sender), h)
    for v in (view, theirs, own):
        room = _opener_room_msat(params, v)
        fee = commit_fee_sat(params, v)
        if sender is params.opener:
            # BOLT 2 fee spike buffer: stay able to pay for one more HTLC at
            # twice the feerate, so the channel cannot get stuck.
            fee = max(fee, commit_fee_sat(params, v, feerate=FEE_SPIKE_MULTIPLE * v.feerate_per_kw,
                                          extra_htlcs=1))
        if room < fee * 1000:
            who = "we" if sender is params.opener else "the opener"
            raise err(f"cannot add HTLC of {h.amount_msat} msat: {who} could not pay the "
                      f"commitment fee of {fee} sat above the reserve")
        if v.balance(sender) < 0:
            raise err(f"cannot add HTLC of {h.amount_msat} msat: balance too low")


#: BOLT 2's ``dust_buffer_feerate`` floor: dust is judged at the larger of
#: 125% of the feerate or the feerate plus this, so a fee rise cannot
#: suddenly trim HTLCs past the limit (Core Lightning's HTLC_FEE_MIN_RANGE).
DUST_BUFFER_MIN_RANGE = 2530


def dust_buffer_feerate(feerate_per_kw: int) -> int:
    return max(feerate_per_kw + feerate_per_kw // 4, feerate_per_kw + DUST_BUFFER_MIN_RANGE)


def dust_exposure_msat(params: ChannelParams, view: CommitmentView, feerate_per_kw: int) -> int:
    """Value of the HTLCs that would be trimmed (go to fees) on ``view``'s
    holder's commitment at ``feerate_per_kw``."""
    dust = params.party(view.holder).dust_limit_sat
    return sum(h.amount_msat for h in view.htlcs
               if htlc_is_trimmed(h.offered_by(view.holder), h.amount_msat, dust, feerate_per_kw,
                                  params.option_anchors))


def dust_exposure_exceeded(params: ChannelParams, log: HtlcLog, h: HtlcInfo, limit: int | None) -> str | None:
    """Core Lightning's htlc_dust_ok for a new HTLC: on both sides' next
    commitments with ``h``, at their dust buffer feerates, the trimmed HTLCs
    must stay within ``limit``.  Returns why not, or None."""
    if limit is None:
        return None
    for side in (Side.LOCAL, Side.REMOTE):
        view = with_htlc(log.next_view(side), h)
        exposure = dust_exposure_msat(params, view, dust_buffer_feerate(view.feerate_per_kw))
        if exposure > limit:
            return (f"HTLC of {h.amount_msat} msat would make {exposure} msat of dust on the "
                    f"{side.name.lower()} commitment, over max_dust_htlc_exposure_msat {limit}")
    return None


def fee_update_dust_exceeded(params: ChannelParams, log: HtlcLog, feerate_per_kw: int,
                             limit: int | None) -> str | None:
    """Core Lightning will not send an update_fee that trims HTLCs past the
    limit on either commitment (at the new rate's dust buffer)."""
    if limit is None:
        return None
    for side in (Side.LOCAL, Side.REMOTE):
        exposure = dust_exposure_msat(params, log.next_view(side), dust_buffer_feerate(feerate_per_kw))
        if exposure > limit:
            return (f"feerate {feerate_per_kw} would make {exposure} msat of dust on the "
                    f"{side.name.lower()} commitment, over max_dust_htlc_exposure_msat {limit}")
    return None


def check_fee_update(params: ChannelParams, log: HtlcLog, sender: Side, feerate_per_kw: int, *,
                     sending: bool, err: type[ChannelError]) -> None:
    """Raise ``err`` if the opener cannot afford ``feerate_per_kw`` (BOLT 2: on
    the receiving node's next commitment, above its reserve)."""
    if sender is not params.opener:
        raise err("update_fee from the non-opener")
    if feerate_per_kw <= 0:
        raise err("update_fee feerate_per_kw must be positive")
    views = [log.check_view(sender.other)]
    if sending:
        views.append(log.next_view(sender.other))
        views.append(log.view(sender, log.latest[sender] + 1, assume_acked=sender))
    for v in views:
        v = replace(v, feerate_per_kw=feerate_per_kw)
        fee = commit_fee_sat(params, v)
        if _opener_room_msat(params, v) < fee * 1000:
            raise err(f"update_fee {feerate_per_kw} unaffordable: opener balance "
                      f"{v.balance(params.opener)} msat cannot pay {fee} sat fee above the reserve")


def htlc_trim_thresholds_msat(params: ChannelParams, log: HtlcLog, sender: Side) -> list[int]:
    """Amounts at which a new HTLC from ``sender`` stops being trimmed on either
    commitment (the fee it adds jumps there, so affordability is not monotone)."""
    out = set()
    for v in (log.next_view(Side.LOCAL), log.next_view(Side.REMOTE), log.check_view(sender.other)):
        dust = params.party(v.holder).dust_limit_sat
        offered = v.holder is sender
        fee = (htlc_timeout_fee if offered else htlc_success_fee)(v.feerate_per_kw,
                                                                   params.option_anchors)
        out.add((dust + fee) * 1000)
    return sorted(out)


def max_addable_msat(params: ChannelParams, log: HtlcLog, sender: Side, *, sending: bool,
                     cltv_expiry: int = 0) -> int:
    """Largest amount for which :func:`check_add` passes now (0 if none).

    Affordability is monotone between the trimming thresholds, so a binary
    search per interval is exact; this is what ``spendable_msat`` /
    ``receivable_msat`` report, so they never promise what would be refused."""
    probe_hash = b"\x00" * 32
    upper = log.check_view(sender.other).balance(sender)
    if upper <= 0:
        return 0

    def ok(amount: int) -> bool:
        try:
            check_add(params, log, HtlcInfo(sender, amount, probe_hash, cltv_expiry,
                                            log.next_id[sender]),
                      sending=sending, err=ChannelError)
        except ChannelError:
            return False
        return True

    bounds = [1] + [t for t in htlc_trim_thresholds_msat(params, log, sender) if 1 < t <= upper]
    edges = sorted(set(bounds)) + [upper + 1]
    best = 0
    for lo, hi in zip(edges, edges[1:]):          # interval [lo, hi)
        lo = max(lo, params.limits_on(sender).htlc_minimum_msat, 1)
        if lo >= hi or not ok(lo):
            continue
        a, b = lo, hi - 1                          # ok(a) holds; find the last ok
        while a < b:
            mid = (a + b + 1) // 2
            if ok(mid):
                a = mid
            else:
                b = mid - 1
        best = max(best, a)
    return best
