"""Read-only HTLC snapshots with Core Lightning's HTLC state names.

Every update travels the same five steps (BOLT 2 "Normal Operation"); for
an update *we* sent, Core Lightning names them::

    SENT_x_HTLC         sent, not in any commitment_signed yet
    SENT_x_COMMIT       in the peer's commitment we signed
    RCVD_x_REVOCATION   the peer revoked its previous commitment
    RCVD_x_ACK_COMMIT   in our commitment the peer signed
    SENT_x_ACK_REVOCATION  we revoked ours: irrevocably committed

with SENT/RCVD swapped for updates the peer sent, and x = ADD or REMOVE.
An HTLC's state is its removal's state once removal started.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.commitment import Side

from .htlcs import Htlc, HtlcLog, Irrevocable, RemovalKind

_STEPS = ("{a}_{x}_HTLC", "{a}_{x}_COMMIT", "{b}_{x}_REVOCATION", "{b}_{x}_ACK_COMMIT",
          "{a}_{x}_ACK_REVOCATION")


@dataclass(frozen=True)
class HtlcStatus:
    """A snapshot of one HTLC for the master (``direction`` is "out" if we offered it)."""

    direction: str
    htlc_id: int
    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    state: str
    onion: bytes = field(repr=False)
    removal: RemovalKind | None = None
    preimage: bytes | None = None
    fail_reason: bytes | None = None
    failure_code: int | None = None
    sha256_of_onion: bytes | None = None
    fail_immediate: bool = False     # see Htlc.fail_immediate
    #: route blinding: the update_add_htlc's path_key, if any
    blinding_point: bytes | None = None

    @property
    def offered_by_us(self) -> bool:
        return self.direction == "out"


def _step(log: HtlcLog, sender: Side, at: list[int | None]) -> int:
    """0..4 as in the module docstring for an update sent by ``sender``."""
    first, second = sender.other, sender
    a1, a2 = at[first], at[second]
    if a1 is None or a1 > log.latest[first]:
        return 0
    if a1 > log.oldest[first]:
        return 1
    if a2 is None or a2 > log.latest[second]:
        return 2
    if a2 > log.oldest[second]:
        return 3
    return 4


def state_name(log: HtlcLog, h: Htlc) -> str:
    if h.removal is not None:
        sender, kind, at = h.offerer.other, "REMOVE", h.removal.at
    else:
        sender, kind, at = h.offerer, "ADD", h.add_at
    a, b = ("SENT", "RCVD") if sender is Side.LOCAL else ("RCVD", "SENT")
    return _STEPS[_step(log, sender, at)].format(a=a, b=b, x=kind)


def htlc_status(log: HtlcLog, h: Htlc) -> HtlcStatus:
    r = h.removal
    return HtlcStatus(
        direction="out" if h.offerer is Side.LOCAL else "in",
        htlc_id=h.htlc_id, amount_msat=h.amount_msat, payment_hash=h.payment_hash,
        cltv_expiry=h.cltv_expiry, state=state_name(log, h), onion=h.onion,
        removal=r.kind if r else None, preimage=r.preimage if r else None,
        fail_reason=r.reason if r else None, failure_code=r.failure_code if r else None,
        sha256_of_onion=r.sha256_of_onion if r else None, fail_immediate=h.fail_immediate,
        blinding_point=h.blinding_point,
    )


@dataclass
class HtlcChanges:
    """What became irrevocably committed (every unrevoked commitment of both
    sides agrees), each HTLC reported once:

    * ``locked_in``: adds.  An incoming one may now be forwarded or
      settled; an outgoing one can no longer vanish.
    * ``resolved``: removals.  An outgoing one fulfilled or failed by the
      peer: settle or fail upstream; an incoming one we removed: done.
    """

    locked_in: list[HtlcStatus] = field(default_factory=list)
    resolved: list[HtlcStatus] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.locked_in or self.resolved)

    def extend(self, other: "HtlcChanges") -> None:
        self.locked_in.extend(other.locked_in)
        self.resolved.extend(other.resolved)

    @classmethod
    def of(cls, log: HtlcLog, irr: Irrevocable) -> "HtlcChanges":
        return cls([htlc_status(log, h) for h in irr.locked_in],
                   [htlc_status(log, h) for h in irr.resolved])
