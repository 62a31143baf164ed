"""The master's HTLC bookkeeping decisions, with no I/O (Core Lightning's
peer_htlcs.c, its pure parts): the states of an `htlcs` row and the moves
between them, the checks a forward or a final hop must pass, the
multi-part sets held until they add up, and how rows recorded before
channeld answered are matched to the channel's stored state.

`HtlcEngine` (htlc_engine.py) is the shell: it reads and writes the
database, talks to channeld, runs hooks; every decision comes from here."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from common.onion_errors import FailureCode as F


class HtlcState(StrEnum):
    """`htlcs.state` (stored by value)."""
    # incoming: committed by the peer, then decided by us
    LOCKED = "locked"            # irrevocably committed, not decided yet
    HELD = "held"                # a part of a multi-part payment, waiting for the rest
    FORWARDED = "forwarded"      # its outgoing HTLC is recorded (and offered)
    FULFILLING = "fulfilling"    # we have the preimage; channeld is told until it is committed
    FAILING = "failing"          # failed by us; likewise
    # outgoing (our payments and forwards)
    OFFERING = "offering"        # recorded, channeld asked; its id not known yet
    OFFERED = "offered"          # channeld took it (id known)
    # both: the resolution is irrevocable
    FULFILLED = "fulfilled"
    FAILED = "failed"


S = HtlcState

# Prefix of the SET clause of every statement that changes an HTLC's state:
# listhtlcs's `updated_index`, one past the highest so far (Core Lightning's
# wait index "htlcs"/"updated"), in the same statement so it cannot be missed.
UPDATED = "updated_index = (SELECT COALESCE(MAX(updated_index), 0) + 1 FROM htlcs), "

INCOMING: dict[HtlcState, frozenset[HtlcState]] = {
    S.LOCKED: frozenset({S.HELD, S.FORWARDED, S.FULFILLING, S.FAILING}),
    # at start-up a held part is decided again (the set was in memory)
    S.HELD: frozenset({S.LOCKED, S.FULFILLING, S.FAILING}),
    S.FORWARDED: frozenset({S.FULFILLING, S.FAILING}),
    S.FULFILLING: frozenset({S.FULFILLED}),
    S.FAILING: frozenset({S.FAILED}),
    S.FULFILLED: frozenset(),
    S.FAILED: frozenset(),
}
OUTGOING: dict[HtlcState, frozenset[HtlcState]] = {
    S.OFFERING: frozenset({S.OFFERED, S.FAILED}),
    S.OFFERED: frozenset({S.FULFILLED, S.FAILED}),
    S.FULFILLED: frozenset(),
    S.FAILED: frozenset(),
}
RESOLVED = frozenset({S.FULFILLED, S.FAILED})


def can_move(direction: str, old: HtlcState | str, new: HtlcState | str) -> bool:
    table = INCOMING if direction == "in" else OUTGOING
    return HtlcState(new) in table.get(HtlcState(old), frozenset())


# ---------------------------------------------------------------------- forwards
@dataclass(frozen=True)
class OutChannel:
    """What a forward needs to know about the channel it would leave by."""
    normal: bool                 # exists and is CHANNELD_NORMAL
    ready: bool                  # peer connected and its daemon running
    fee_ok: bool                 # our fee (this policy, or the previous during enforcedelay)
    range_ok: bool               # within our htlc_minimum/maximum
    cltv_delta: int


@dataclass(frozen=True)
class Refusal:
    """Why an HTLC is failed back, as BOLT 4 names it, with the fields its
    failure message carries (an UPDATE error also gets our channel_update)."""
    code: F
    fields: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"WIRE_{self.code.name}"


def check_forward(out: OutChannel | None, amount_in: int, cltv_in: int, cltv_out: int,
                  blockheight: int) -> Refusal | None:
    """BOLT 4's checks of a forward, in Core Lightning's order; None: forward it."""
    if out is None or not out.normal:
        return Refusal(F.UNKNOWN_NEXT_PEER)
    if not out.ready:
        return Refusal(F.TEMPORARY_CHANNEL_FAILURE)
    if not out.fee_ok:
        return Refusal(F.FEE_INSUFFICIENT, {"htlc_msat": amount_in})
    if not out.range_ok:
        # Core Lightning fails either htlc bound with temporary_channel_failure
        return Refusal(F.TEMPORARY_CHANNEL_FAILURE)
    if cltv_in < cltv_out + out.cltv_delta:
        return Refusal(F.INCORRECT_CLTV_EXPIRY, {"cltv_expiry": cltv_in})
    if cltv_out <= blockheight + 2:
        return Refusal(F.EXPIRY_TOO_SOON)
    return None


def check_final_onion(amount: int, cltv: int, amt_to_forward: int | None,
                      outgoing_cltv_value: int | None) -> Refusal | None:
    """BOLT 4: the final hop's payload must not ask for more than arrived."""
    if amt_to_forward is not None and amt_to_forward > amount:
        return Refusal(F.FINAL_INCORRECT_HTLC_AMOUNT, {"incoming_htlc_amt": amount})
    if outgoing_cltv_value is not None and outgoing_cltv_value > cltv:
        return Refusal(F.FINAL_INCORRECT_CLTV_EXPIRY, {"cltv_expiry": cltv})
    return None


# ---------------------------------------------------------------------- multi-part
@dataclass
class HeldSet:
    """Parts of one multi-part payment waiting for the total to arrive
    (basic_mpp); the shell owns the timer (MPP_TIMEOUT)."""
    total_msat: int
    parts: list[int] = field(default_factory=list)     # htlcs.id
    received_msat: int = 0

    def add(self, row_id: int, amount: int) -> bool:
        """True once the parts add up to the total."""
        self.parts.append(row_id)
        self.received_msat += amount
        return self.received_msat >= self.total_msat


# ---------------------------------------------------------------------- reconciling offers
@dataclass(frozen=True)
class Offering:
    row_id: int
    payment_hash: bytes
    amount_msat: int
    cltv_expiry: int


@dataclass
class Reconciled:
    assign: list[tuple[int, int]] = field(default_factory=list)   # (row id, the channel's htlc id)
    never_committed: list[int] = field(default_factory=list)      # 'offering' rows the state does not have
    lost: list[tuple[int, int]] = field(default_factory=list)     # 'offered' (row id, htlc id) never committed


def reconcile(stored_out: list[dict], claimed_ids: set[int], offering: list[Offering],
              offered: list[tuple[int, int]], next_local_htlc_id: int) -> Reconciled:
    """Our offered HTLCs against a channel's stored state (taken with no
    daemon running, so it is the truth).  `stored_out`: its outgoing HTLCs
    (summary_htlc: {id, payment_hash, amount_msat, expiry, ...}); `claimed_ids`: the ids
    our rows already carry.  An 'offering' row is the stored HTLC with the
    same hash, amount and expiry that no row claims, else it was never
    committed; an 'offered' row whose id the state does not have and the
    channel has not used yet was never committed either (BOLT 2 has the
    peer forget it too)."""
    out = Reconciled()
    claimed = set(claimed_ids)
    for o in offering:
        h = next((h for h in stored_out if h["id"] not in claimed and h["payment_hash"] == o.payment_hash
                  and h["amount_msat"] == o.amount_msat and h["expiry"] == o.cltv_expiry), None)
        if h is None:
            out.never_committed.append(o.row_id)
        else:
            claimed.add(h["id"])
            out.assign.append((o.row_id, h["id"]))
    known = {h["id"] for h in stored_out}
    out.lost = [(rid, hid) for rid, hid in offered if hid not in known and hid >= next_local_htlc_id]
    return out
