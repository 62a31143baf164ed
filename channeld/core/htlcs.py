"""HTLC and fee bookkeeping by commitment number (Electrum's HTLCManager idea).

Every update (an HTLC add, its removal, an ``update_fee``) records, for each
side, the *commitment number* of that side's first commitment which
includes it (``at[side]``), or None while it is not yet scheduled there.
BOLT 2's flow fixes the order:

* an update sent by X goes first into the **receiver**'s next commitment:
  ``at[X.other] = latest[X.other] + 1`` as soon as it is sent/received;
* when X.other revokes the commitment before one that includes it (X.other
  sends ``revoke_and_ack``), it is "acked": it goes into X's next
  commitment, ``at[X] = latest[X] + 1``.

So "is HTLC h in commitment n of side s" is just
``h.add_at[s] <= n < h.removal.at[s]`` (missing values meaning +infinity),
and both peers compute identical commitments from identical logs.  An update
is *irrevocably committed* once ``at[s] <= oldest[s]`` for both sides, i.e.
every unrevoked commitment has it.

Commitment numbers per side: ``oldest[s]`` is the oldest unrevoked one;
``latest[s]`` is ``oldest[s]`` or ``oldest[s] + 1`` (a newer one was signed
and the older one is not revoked yet).  Only commitments in
``oldest..latest+1`` are ever built, so fully resolved HTLCs are folded
into ``base_msat`` and forgotten (:meth:`HtlcLog._prune`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator

from common.commitment import HtlcInfo, Side


class RemovalKind(Enum):
    """Stored values are explicit strings (persisted)."""

    FULFILL = "fulfill"
    FAIL = "fail"
    FAIL_MALFORMED = "fail_malformed"


@dataclass
class Removal:
    """The removal of an HTLC, sent by the party that did *not* offer it."""

    kind: RemovalKind
    at: list[int | None] = field(default_factory=lambda: [None, None])
    preimage: bytes | None = None          # FULFILL
    reason: bytes | None = None            # FAIL: the onion error blob
    sha256_of_onion: bytes | None = None   # FAIL_MALFORMED
    failure_code: int | None = None        # FAIL_MALFORMED


@dataclass
class Htlc:
    """One HTLC and where its add/removal stand in each side's commitments."""

    offerer: Side
    htlc_id: int
    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    onion: bytes
    blinding_point: bytes | None = None
    add_at: list[int | None] = field(default_factory=lambda: [None, None])
    removal: Removal | None = None
    #: an incoming HTLC over our dust exposure limit: accepted (refusing it
    #: would fail the channel), to be failed back as soon as it is committed
    fail_immediate: bool = False

    @property
    def key(self) -> tuple[Side, int]:
        return (self.offerer, self.htlc_id)

    def info(self) -> HtlcInfo:
        return HtlcInfo(self.offerer, self.amount_msat, self.payment_hash, self.cltv_expiry,
                        self.htlc_id)


@dataclass
class FeeUpdate:
    """An ``update_fee`` (always sent by the opener)."""

    sender: Side
    feerate_per_kw: int
    at: list[int | None] = field(default_factory=lambda: [None, None])


@dataclass(frozen=True)
class CommitmentView:
    """The content of one commitment, before fees: balances exclude in-flight
    HTLCs; ``local_msat + remote_msat + sum(htlcs) == funding_msat``."""

    holder: Side
    number: int
    feerate_per_kw: int
    local_msat: int
    remote_msat: int
    htlcs: tuple[HtlcInfo, ...]

    def balance(self, side: Side) -> int:
        return self.local_msat if side is Side.LOCAL else self.remote_msat

    def offered_by(self, side: Side) -> list[HtlcInfo]:
        return [h for h in self.htlcs if h.offerer is side]


def _le(at: int | None, n: int) -> bool:
    return at is not None and at <= n


@dataclass
class Irrevocable:
    """HTLCs whose add or removal became irrevocably committed in one revocation."""

    locked_in: list[Htlc] = field(default_factory=list)
    resolved: list[Htlc] = field(default_factory=list)


class HtlcLog:
    """Pure bookkeeping of updates and commitment numbers; no checks of
    amounts or signatures (those live in :mod:`.checks` and the Channel)."""

    def __init__(self, local_msat: int, remote_msat: int, feerate_per_kw: int) -> None:
        self.oldest: list[int] = [0, 0]
        self.latest: list[int] = [0, 0]
        #: balances with every HTLC still in the log counted as not added
        self.base_msat: list[int] = [local_msat, remote_msat]
        #: feerate of every commitment not covered by ``fee_updates``
        self.base_feerate: int = feerate_per_kw
        self.fee_updates: list[FeeUpdate] = []
        self.htlcs: dict[tuple[Side, int], Htlc] = {}
        self.next_id: list[int] = [0, 0]

    # -- recording updates ------------------------------------------------------
    def add(self, offerer: Side, amount_msat: int, payment_hash: bytes, cltv_expiry: int,
            onion: bytes, blinding_point: bytes | None = None) -> Htlc:
        """Record an ``update_add_htlc`` sent by ``offerer`` with the next id."""
        h = Htlc(offerer, self.next_id[offerer], amount_msat, payment_hash, cltv_expiry, onion,
                 blinding_point)
        h.add_at[offerer.other] = self.latest[offerer.other] + 1
        self.htlcs[h.key] = h
        self.next_id[offerer] += 1
        return h

    def remove(self, htlc: Htlc, removal: Removal) -> None:
        """Record a removal, sent by the non-offerer: it goes into the offerer's
        commitment first."""
        assert htlc.removal is None
        removal.at = [None, None]
        removal.at[htlc.offerer] = self.latest[htlc.offerer] + 1
        htlc.removal = removal

    def update_fee(self, sender: Side, feerate_per_kw: int) -> FeeUpdate:
        fu = FeeUpdate(sender, feerate_per_kw)
        fu.at[sender.other] = self.latest[sender.other] + 1
        self.fee_updates.append(fu)
        return fu

    # -- queries -----------------------------------------------------------------
    def _updates(self) -> Iterator[tuple[Side, list[int | None]]]:
        """(sender, at) of every update still in the log."""
        for h in self.htlcs.values():
            yield h.offerer, h.add_at
            if h.removal is not None:
                yield h.offerer.other, h.removal.at
        for fu in self.fee_updates:
            yield fu.sender, fu.at

    def has_pending(self, holder: Side) -> bool:
        """Whether ``holder``'s next commitment would differ from its latest by
        at least one update (BOLT 2: no commitment_signed without updates)."""
        nxt = self.latest[holder] + 1
        return any(at[holder] == nxt for _, at in self._updates())

    def feerate(self, holder: Side, n: int) -> int:
        rate = self.base_feerate
        for fu in self.fee_updates:
            if _le(fu.at[holder], n):
                rate = fu.feerate_per_kw
        return rate

    def get(self, offerer: Side, htlc_id: int) -> Htlc | None:
        return self.htlcs.get((offerer, htlc_id))

    def view(self, holder: Side, n: int, *, assume_acked: Side | None = None,
             skip_new_adds_of_holder: bool = False) -> CommitmentView:
        """Commitment ``n`` of ``holder``.

        ``assume_acked=X`` also counts X's updates not yet scheduled on
        ``holder``'s side as if they were (a pessimistic look ahead used by
        our sending policy).  ``skip_new_adds_of_holder`` leaves out the
        holder's own HTLCs first scheduled at ``n`` (see :meth:`check_view`)."""
        bal = list(self.base_msat)
        htlcs: list[HtlcInfo] = []

        def included(sender: Side, at: list[int | None]) -> bool:
            if at[holder] is None:
                return sender is assume_acked and at[sender.other] is not None
            return at[holder] <= n

        for h in self.htlcs.values():
            if not included(h.offerer, h.add_at):
                continue
            if skip_new_adds_of_holder and h.offerer is holder and h.add_at[holder] == n:
                continue
            bal[h.offerer] -= h.amount_msat
            if h.removal is not None and included(h.offerer.other, h.removal.at):
                if h.removal.kind is RemovalKind.FULFILL:
                    bal[h.offerer.other] += h.amount_msat
                else:
                    bal[h.offerer] += h.amount_msat
            else:
                htlcs.append(h.info())
        rate = self.base_feerate
        for fu in self.fee_updates:
            if included(fu.sender, fu.at):
                rate = fu.feerate_per_kw
        return CommitmentView(holder, n, rate, bal[Side.LOCAL], bal[Side.REMOTE], tuple(htlcs))

    def check_view(self, receiver: Side) -> CommitmentView:
        """The commitment BOLT 2's receiver checks of a new update are made on:
        the receiver's next commitment, minus the receiver's own HTLCs acked
        since its latest commitment.

        Why not the plain next commitment: an update may be re-sent after a
        reconnection, and by then the receiver may have processed a
        revoke_and_ack the sender sent *after* the update, acking more of the
        receiver's HTLCs into that commitment.  They would raise the fee the
        opener must afford and could flip the verdict on a replay.  Without
        them, later acks only apply the receiver's removals, which refund the
        sender or free its slots: a verdict can only turn from "refuse" to
        "accept", and what the sender checked when sending still passes.

        The sender's balance here is still its floor in every later
        commitment (the receiver's HTLCs never touch it), so no balance can
        go negative; only the fee may count fewer HTLCs, which BOLT 2
        tolerates (the fee then shrinks).  Senders checking the full next
        commitment are stricter, so peers never see us reject their valid
        updates.
        """
        return self.view(receiver, self.latest[receiver] + 1, skip_new_adds_of_holder=True)

    def next_view(self, holder: Side) -> CommitmentView:
        """The commitment ``holder`` would get next, with every scheduled update."""
        return self.view(holder, self.latest[holder] + 1)

    def add_locked_in(self, h: Htlc) -> bool:
        return _le(h.add_at[Side.LOCAL], self.oldest[Side.LOCAL]) and \
            _le(h.add_at[Side.REMOTE], self.oldest[Side.REMOTE])

    def removal_locked_in(self, h: Htlc) -> bool:
        return h.removal is not None and \
            _le(h.removal.at[Side.LOCAL], self.oldest[Side.LOCAL]) and \
            _le(h.removal.at[Side.REMOTE], self.oldest[Side.REMOTE])

    # -- commitment number transitions ------------------------------------------
    def commit(self, holder: Side) -> int:
        """A new commitment for ``holder`` was signed (sent or received)."""
        if self.latest[holder] != self.oldest[holder]:
            raise AssertionError("a signed commitment is already awaiting revocation")
        self.latest[holder] += 1
        return self.latest[holder]

    def revoke(self, holder: Side) -> Irrevocable:
        """``holder`` revoked its oldest commitment: updates it received that
        are now in its current commitment are acked into the sender's next one.
        Returns what became irrevocable; prunes what no commitment needs."""
        if self.latest[holder] != self.oldest[holder] + 1:
            raise AssertionError("no newer commitment to revoke towards")
        before_add = {k for k, h in self.htlcs.items() if self.add_locked_in(h)}
        before_rm = {k for k, h in self.htlcs.items() if self.removal_locked_in(h)}
        self.oldest[holder] += 1
        cur, sender = self.oldest[holder], holder.other
        for s, at in self._updates():
            if s is sender and at[sender] is None and _le(at[holder], cur):
                at[sender] = self.latest[sender] + 1
        changes = Irrevocable()
        for k, h in self.htlcs.items():
            if k not in before_add and self.add_locked_in(h):
                changes.locked_in.append(h)
            if k not in before_rm and self.removal_locked_in(h):
                changes.resolved.append(h)
        self._prune()
        return changes

    def _prune(self) -> None:
        for k, h in list(self.htlcs.items()):
            if self.removal_locked_in(h):
                assert h.removal is not None
                if h.removal.kind is RemovalKind.FULFILL:
                    self.base_msat[h.offerer] -= h.amount_msat
                    self.base_msat[h.offerer.other] += h.amount_msat
                del self.htlcs[k]
        last_done = -1
        for i, fu in enumerate(self.fee_updates):
            if all(_le(fu.at[s], self.oldest[s]) for s in Side):
                last_done = i
        if last_done >= 0:
            self.base_feerate = self.fee_updates[last_done].feerate_per_kw
            del self.fee_updates[:last_done + 1]

    def drop_unsigned_from(self, sender: Side) -> list[Htlc]:
        """Forget ``sender``'s updates that no received commitment_signed covers
        (BOLT 2: on disconnection, reverse the peer's uncommitted updates).

        Only meaningful for ``sender = REMOTE``; returns the dropped adds."""
        receiver = sender.other
        lim = self.latest[receiver]
        dropped = [h for h in self.htlcs.values()
                   if h.offerer is sender and not _le(h.add_at[receiver], lim)]
        for h in dropped:
            del self.htlcs[h.key]
        if dropped:
            # ids are sequential, so the dropped ones are the newest: the peer
            # will re-send them with the same ids (BOLT 2 allows repeated ids
            # after reconnection).
            self.next_id[sender] = min(h.htlc_id for h in dropped)
        for h in self.htlcs.values():
            if h.offerer is receiver and h.removal is not None \
                    and not _le(h.removal.at[receiver], lim):
                h.removal = None
        self.fee_updates = [fu for fu in self.fee_updates
                            if not (fu.sender is sender and not _le(fu.at[receiver], lim))]
        return dropped

    def live(self) -> list[Htlc]:
        return list(self.htlcs.values())
