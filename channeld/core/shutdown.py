"""Shutdown and the closing_signed negotiation, as seen from the Channel."""
from __future__ import annotations

from typing import Any, Mapping

from common.commitment import Side

from .base import _S, ChannelBase, WireMsg
from .closing import ClosingFeeRange, ClosingNegotiation, ClosingResult, closing_weight, \
    is_valid_shutdown_script
from .errors import PeerError, PeerWarning, UsageError


class ShutdownMixin(ChannelBase):
    """Part of :class:`~.state.Channel`: shutdown and closing negotiation."""

    @property
    def needs_shutdown_reply(self) -> bool:
        """The peer sent shutdown and we have not answered yet (BOLT 2 MUST reply
        once no updates of ours are pending: sign them first, then :meth:`shutdown`)."""
        return self.remote_shutdown_script is not None and not self.shutdown_sent

    def shutdown(self, script: bytes | None = None) -> WireMsg:
        """Send ``shutdown``: no new HTLCs after it; the channel closes once empty."""
        self._require_connected()
        if self.shutdown_sent:
            raise UsageError("shutdown already sent")
        if self.state not in (_S.AWAITING_LOCKIN, _S.NORMAL, _S.SHUTTING_DOWN):
            raise UsageError(f"cannot shut down in state {self.state.value}")
        if self.log.has_pending(Side.REMOTE):
            raise UsageError("updates are pending on the peer's commitment: send commitment_signed first")
        script = script if script is not None else self.local_shutdown_script
        if not script:
            raise UsageError("no shutdown script")
        upfront = self.params.local.upfront_shutdown_script
        if upfront and script != upfront:
            raise UsageError("shutdown script differs from our upfront_shutdown_script")
        if not is_valid_shutdown_script(script, self.params.anysegwit):
            raise UsageError("shutdown script is not a standard segwit output")
        self.local_shutdown_script, self.shutdown_sent = script, True
        if self.state is not _S.SHUTTING_DOWN:
            self.set_state(_S.SHUTTING_DOWN)
        msg: WireMsg = ("shutdown", {"channel_id": self.channel_id, "scriptpubkey": script})
        self.outbox.record_shutdown(msg)
        self._maybe_closing()
        return msg

    def recv_shutdown(self, fields: Mapping[str, Any]) -> None:
        """Record the peer's shutdown; then see :attr:`needs_shutdown_reply`."""
        self._require_connected()
        self._check_channel_id("shutdown", fields)
        script = fields["scriptpubkey"]
        if self.remote_shutdown_script is not None:
            if script == self.remote_shutdown_script and self._reconnected_since_shutdown:
                self._reconnected_since_shutdown = False   # the mandatory retransmission
                return
            raise PeerError("multiple shutdown messages")
        if self.state not in (_S.AWAITING_LOCKIN, _S.NORMAL, _S.SHUTTING_DOWN):
            raise PeerError(f"shutdown in state {self.state.value}")
        # BOLT 2: a script not in an allowed form "SHOULD send a warning"; one
        # other than the upfront script "MAY send a warning, MUST fail the
        # connection": a warning and a disconnection, as Core Lightning
        # (peer_failed_warn), never a failed channel
        if not is_valid_shutdown_script(script, self.params.anysegwit):
            raise PeerWarning(f"shutdown scriptpubkey {script.hex()} is not an allowed form")
        upfront = self.params.remote.upfront_shutdown_script
        if upfront and script != upfront:
            raise PeerWarning(f"shutdown scriptpubkey {script.hex()} differs from its upfront_shutdown_script "
                              f"{upfront.hex()}")
        if self.log.has_pending(Side.LOCAL):
            raise PeerError("shutdown while updates are pending on our commitment")
        self.remote_shutdown_script = script
        self._reconnected_since_shutdown = False
        if self.state is not _S.SHUTTING_DOWN:
            self.set_state(_S.SHUTTING_DOWN)
        self._maybe_closing()

    def default_closing_fees(self) -> ClosingFeeRange:
        """Fee range from the current commitment feerate: ideal at that rate,
        from the 253 sat/kw floor up to twice it."""
        assert self.local_shutdown_script and self.remote_shutdown_script
        weight = closing_weight(self.params, {Side.LOCAL: self.local_shutdown_script,
                                              Side.REMOTE: self.remote_shutdown_script})
        rate = self.log.feerate(Side.LOCAL, self.log.oldest[Side.LOCAL])
        return ClosingFeeRange.from_feerates(weight, min(253, rate), rate, 2 * rate)

    def start_closing(self, fees: ClosingFeeRange | None = None) -> WireMsg | None:
        """Begin fee negotiation (after a reconnection too).  The opener gets its
        first ``closing_signed`` to send; the other side gets None and waits."""
        self._require_connected()
        if self.state is not _S.CLOSING_NEGOTIATION:
            raise UsageError(f"closing negotiation not possible in state {self.state.value}")
        self.closing = self._new_negotiation(fees)
        return self.closing.first_offer() if self.params.opener is Side.LOCAL else None

    def _new_negotiation(self, fees: ClosingFeeRange | None) -> ClosingNegotiation:
        assert self.local_shutdown_script and self.remote_shutdown_script
        v = self._current_view()
        return ClosingNegotiation(
            self.params, self.signer,
            {Side.LOCAL: self.local_shutdown_script, Side.REMOTE: self.remote_shutdown_script},
            {Side.LOCAL: v.local_msat, Side.REMOTE: v.remote_msat},
            fees or self.default_closing_fees())

    def recv_closing_signed(self, fields: Mapping[str, Any]) -> ClosingResult:
        """Negotiate; once agreed, ``result.tx`` is the signed closing tx and the
        channel is CLOSED (send ``result.reply`` first if there is one).  Without
        :meth:`start_closing` first, our range is :meth:`default_closing_fees`."""
        self._require_connected()
        self._check_channel_id("closing_signed", fields)
        if self.state is not _S.CLOSING_NEGOTIATION:
            raise PeerError(f"closing_signed in state {self.state.value}")
        if self.closing is None:
            # The peer spoke first: answer it, without an offer of our own.
            self.closing = self._new_negotiation(None)
        result = self.closing.recv(fields)
        if result.tx is not None:
            self.set_state(_S.CLOSED)
        return result
