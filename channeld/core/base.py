"""Channel attributes, the state transition table and the guards shared by
the parts of :class:`~.state.Channel` (updates, shutdown, commitments).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from common.commitment import Side
from common.shachain import ShachainStore

from .closing import ClosingNegotiation
from .errors import IllegalTransition, PeerError, UsageError
from .htlcs import CommitmentView, HtlcLog
from .outbox import Outbox
from .params import ChannelParams
from .signer import Signer

WireMsg = tuple[str, dict[str, Any]]

ONION_SIZE = 1366
#: BOLT 4: failure_code flag of update_fail_malformed_htlc
BADONION = 0x8000


class ChannelState(Enum):
    """Stored by value: keep the strings stable."""

    AWAITING_LOCKIN = "awaiting_lockin"          # funded, channel_ready not exchanged
    NORMAL = "normal"
    SHUTTING_DOWN = "shutting_down"              # shutdown sent or received; HTLCs drain
    CLOSING_NEGOTIATION = "closing_negotiation"  # no HTLCs left: closing_signed exchange
    CLOSED = "closed"                            # mutually closed, or failed by the shell


_S = ChannelState
TRANSITIONS: dict[ChannelState, frozenset[ChannelState]] = {
    _S.AWAITING_LOCKIN: frozenset({_S.NORMAL, _S.SHUTTING_DOWN, _S.CLOSED}),
    _S.NORMAL: frozenset({_S.SHUTTING_DOWN, _S.CLOSED}),
    _S.SHUTTING_DOWN: frozenset({_S.CLOSING_NEGOTIATION, _S.CLOSED}),
    _S.CLOSING_NEGOTIATION: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}
#: states in which commitments keep being exchanged
_UPDATING = (_S.NORMAL, _S.SHUTTING_DOWN)


@dataclass(frozen=True)
class FeerateBounds:
    """Our fee policy: the peer's ``update_fee`` range (BOLT 2: too low for
    timely processing, or unreasonably large), which the shell updates from
    estimates, and the most HTLC value we let be trimmed (dust) on either
    commitment, Core Lightning's ``max-dust-htlc-exposure-msat`` (None: no
    limit) - what dust is depends on the feerate."""

    min_per_kw: int = 253
    max_per_kw: int = 100_000
    max_dust_htlc_exposure_msat: int | None = None


class ChannelBase:
    """State shared by the parts of :class:`~.state.Channel`; not used alone."""

    def __init__(self, params: ChannelParams, signer: Signer, log: HtlcLog, *,
                 fee_bounds: FeerateBounds = FeerateBounds(),
                 local_shutdown_script: bytes | None = None) -> None:
        self.params = params
        self.signer = signer
        self.log = log
        self.fee_bounds = fee_bounds
        self.state = ChannelState.AWAITING_LOCKIN
        #: peer's per-commitment points by commitment number (oldest unrevoked, next)
        self.remote_points: dict[int, bytes] = {}
        self.remote_secrets = ShachainStore()
        #: the peer's signatures on our latest commitment (``log.latest[LOCAL]``)
        self.local_sig: bytes | None = None
        self.local_htlc_sigs: list[bytes] = []
        self.outbox = Outbox()
        self.channel_ready_sent = False
        self.channel_ready_received = False
        upfront = params.local.upfront_shutdown_script
        if upfront and local_shutdown_script and local_shutdown_script != upfront:
            raise UsageError("local shutdown script differs from our upfront_shutdown_script")
        self.local_shutdown_script = upfront or local_shutdown_script or None
        self.shutdown_sent = False
        self.remote_shutdown_script: bytes | None = None
        self.closing: ClosingNegotiation | None = None
        self.connected = True
        self._revoke_persisted = True
        self._reconnected_since_shutdown = False

    # ------------------------------------------------------------------ state
    def set_state(self, new: ChannelState) -> None:
        """Move to ``new``; anything not in :data:`TRANSITIONS` raises."""
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"illegal channel state transition {self.state.value} -> {new.value}")
        self.state = new

    def fail(self) -> None:
        """The shell failed the channel (error sent/received, going on chain)."""
        if self.state is not _S.CLOSED:
            self.set_state(_S.CLOSED)

    @property
    def channel_id(self) -> bytes:
        return self.params.channel_id

    def _check_channel_id(self, what: str, fields: Mapping[str, Any]) -> None:
        """Every received message must be for this channel (the shell routes by
        channel_id, but a confused route must not touch this state)."""
        if fields.get("channel_id") != self.channel_id:
            raise PeerError(f"{what} for another channel_id")

    def _require_connected(self) -> None:
        if not self.connected:
            raise UsageError("peer disconnected: exchange channel_reestablish first")

    def _require_updating(self, what: str, err: type[Exception]) -> None:
        self._require_connected()
        if self.state not in _UPDATING:
            raise err(f"{what} not allowed in state {self.state.value}")

    @property
    def revocation_pending(self) -> bool:
        """We received a commitment_signed and still owe the revoke_and_ack."""
        return self.log.latest[Side.LOCAL] != self.log.oldest[Side.LOCAL]

    @property
    def awaiting_revocation(self) -> bool:
        """We sent a commitment_signed and wait for the peer's revoke_and_ack."""
        return self.log.latest[Side.REMOTE] != self.log.oldest[Side.REMOTE]

    def _current_view(self) -> CommitmentView:
        return self.log.view(Side.LOCAL, self.log.oldest[Side.LOCAL])

    def _maybe_closing(self) -> None:
        """BOLT 2: negotiation starts once both shutdowns were exchanged, no HTLC
        remains and both commitments hold every update (nothing owed)."""
        if self.state is _S.SHUTTING_DOWN and self.shutdown_sent and \
                self.remote_shutdown_script is not None and not self.log.htlcs and \
                not self.log.fee_updates and not self.awaiting_revocation and \
                not self.revocation_pending:
            self.set_state(_S.CLOSING_NEGOTIATION)
