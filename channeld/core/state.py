"""The Channel: BOLT 2 normal operation as a pure state machine (no I/O).

Every method either returns the wire messages to send, as ``(name, fields)``
tuples for ``wire.bolt_schema().encode``, or raises:
:class:`~.errors.PeerError` when a received message breaks the protocol
(the shell sends ``error`` and fails the channel) or
:class:`~.errors.UsageError` when a local action is not allowed now (the
state is unchanged).

Persistence contract with the shell (Core Lightning's rule, STYLE.md #7):

* persist :meth:`to_dict` after every call that changes state, in the same
  database transaction as the master's own HTLC bookkeeping;
* in particular, persist **before sending** a ``commitment_signed``
  returned by :meth:`send_commitment` and before sending a
  ``revoke_and_ack`` returned by :meth:`revoke`;
* after :meth:`recv_commitment_signed`, persist, then call
  :meth:`mark_persisted`; :meth:`revoke` refuses to revoke our previous
  commitment before that, so a crash can never leave us with a revoked
  commitment and no signed replacement.

A typical round trip (A adds, B fulfills)::

    add = a.add_htlc(10_000, payment_hash, cltv, onion, blockheight)   # -> B
    b.recv_update_add_htlc(add[1])
    cs = a.send_commitment()                                  # persist A, -> B
    b.recv_commitment_signed(cs[1]); b.mark_persisted()      # after persisting B
    raa = b.revoke().message                                  # -> A
    a.recv_revoke_and_ack(raa[1])
    cs = b.send_commitment()                                  # -> A
    a.recv_commitment_signed(cs[1]); a.mark_persisted()
    a_rev = a.revoke()                                        # -> B
    b.recv_revoke_and_ack(a_rev.message[1]).locked_in         # [the HTLC]: forward it
    ful = b.fulfill_htlc(0, preimage)                         # ... and so on
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from bitcoin.keys import is_valid_pubkey
from bitcoin.tx import OutPoint, Tx
from common.commitment import Side
from common.htlc_tx import HtlcTx
from common.keyderive import KeyDerivationError, pubkey_from_secret
from common.shachain import ShachainError

from . import checks, commitments
from .base import _S, TRANSITIONS, ChannelState, FeerateBounds, WireMsg
from .errors import PeerError, UsageError
from .htlcs import HtlcLog
from .params import ChannelParams, ChannelType, PartyConfig
from .shutdown import ShutdownMixin
from .signer import Signer
from .status import HtlcChanges, HtlcStatus, htlc_status
from .updates import UpdatesMixin

__all__ = ["Channel", "ChannelState", "TRANSITIONS", "FeerateBounds", "PendingRevocation",
           "Revocation", "Reestablished"]


@dataclass
class PendingRevocation:
    """Returned by :meth:`Channel.recv_commitment_signed`: persist, then
    :meth:`Channel.mark_persisted`, then :meth:`Channel.revoke`."""

    commitment_number: int


@dataclass
class Revocation:
    message: WireMsg
    changes: HtlcChanges


@dataclass
class Reestablished:
    """Result of :meth:`Channel.recv_reestablish`: messages to send now, in
    order, and HTLC changes if a revocation completed while we were away."""

    messages: list[WireMsg]
    changes: HtlcChanges = field(default_factory=HtlcChanges)


class Channel(UpdatesMixin, ShutdownMixin):
    """One channel's BOLT 2 state.  Build with :meth:`new` or :meth:`from_dict`.

    The parts: :class:`~.base.ChannelBase` (attributes, state table, guards),
    :class:`~.updates.UpdatesMixin` (HTLC/fee updates both ways),
    :class:`~.shutdown.ShutdownMixin` (shutdown, closing negotiation); here:
    creation, queries, the commitment_signed/revoke_and_ack exchange,
    reconnection and persistence."""

    # ------------------------------------------------------------------ creation
    @classmethod
    def new(cls, params: ChannelParams, signer: Signer, *, push_msat: int, feerate_per_kw: int,
            remote_first_per_commitment_point: bytes, fee_bounds: FeerateBounds = FeerateBounds(),
            local_shutdown_script: bytes | None = None, max_to_self_delay: int | None = None) -> "Channel":
        """The channel right after open_channel/accept_channel: commitment 0 on
        both sides, the opener holding ``funding - push``."""
        if signer.funding_pubkey() != params.local.funding_pubkey or \
                signer.basepoints() != params.local.basepoints:
            raise UsageError("the signer's keys do not match our channel parameters")
        log = cls.check_opening(params, push_msat=push_msat, feerate_per_kw=feerate_per_kw,
                                remote_first_per_commitment_point=remote_first_per_commitment_point,
                                fee_bounds=fee_bounds, max_to_self_delay=max_to_self_delay)
        ch = cls(params, signer, log, fee_bounds=fee_bounds, local_shutdown_script=local_shutdown_script)
        ch.remote_points[0] = remote_first_per_commitment_point
        return ch

    @staticmethod
    def check_opening(params: ChannelParams, *, push_msat: int, feerate_per_kw: int,
                      remote_first_per_commitment_point: bytes, fee_bounds: FeerateBounds = FeerateBounds(),
                      max_to_self_delay: int | None = None) -> HtlcLog:
        """Every BOLT 2 check of a new channel that does not need the funding
        outpoint (so the shell can run them when open_channel/accept_channel
        arrives, with a placeholder outpoint); returns the initial HtlcLog."""
        if max_to_self_delay is None:
            params.validate()
        else:
            params.validate(max_to_self_delay)
        err = UsageError if params.opener is Side.LOCAL else PeerError
        if not 0 <= push_msat <= params.funding_msat:
            raise err(f"push_msat {push_msat} exceeds the funding amount")
        if not is_valid_pubkey(remote_first_per_commitment_point):
            raise PeerError("first_per_commitment_point is not a valid point")
        if params.opener is Side.REMOTE and not \
                fee_bounds.min_per_kw <= feerate_per_kw <= fee_bounds.max_per_kw:
            raise PeerError(f"feerate_per_kw {feerate_per_kw} outside [{fee_bounds.min_per_kw}, "
                            f"{fee_bounds.max_per_kw}]")
        bal = {params.opener: params.funding_msat - push_msat, params.opener.other: push_msat}
        log = HtlcLog(bal[Side.LOCAL], bal[Side.REMOTE], feerate_per_kw)
        fee = checks.commit_fee_sat(params, log.view(Side.LOCAL, 0))
        if bal[params.opener] < fee * 1000:
            raise err(f"the opener cannot pay the initial commitment fee of {fee} sat")
        if all(bal[s] <= params.party(s.other).channel_reserve_sat * 1000 for s in Side):
            raise err("both initial balances are at or below the channel reserve")
        return log

    @classmethod
    def from_open_accept(cls, signer: Signer, open_channel: Mapping[str, Any],
                         accept_channel: Mapping[str, Any], funding_outpoint: OutPoint, *,
                         we_opened: bool, anysegwit: bool = True,
                         fee_bounds: FeerateBounds = FeerateBounds(),
                         local_shutdown_script: bytes | None = None) -> "Channel":
        """:meth:`new` from the decoded ``open_channel`` and ``accept_channel``
        (ours and the peer's) and the funding outpoint of funding_created."""
        ours, theirs = (open_channel, accept_channel) if we_opened else (accept_channel, open_channel)
        types = [(m.get("tlvs") or {}).get("channel_type", {}).get("type")
                 for m in (open_channel, accept_channel)]
        if types[0] is None or types[1] is None:
            raise PeerError("open_channel/accept_channel without channel_type")
        if types[0] != types[1]:
            raise PeerError("accept_channel channel_type differs from open_channel's")
        params = ChannelParams(
            funding_outpoint=funding_outpoint, funding_sat=open_channel["funding_satoshis"],
            opener=Side.LOCAL if we_opened else Side.REMOTE,
            local=PartyConfig.from_wire(ours), remote=PartyConfig.from_wire(theirs),
            channel_type=ChannelType.from_wire(types[0]), anysegwit=anysegwit)
        return cls.new(params, signer, push_msat=open_channel["push_msat"],
                       feerate_per_kw=open_channel["feerate_per_kw"],
                       remote_first_per_commitment_point=theirs["first_per_commitment_point"],
                       fee_bounds=fee_bounds, local_shutdown_script=local_shutdown_script)

    def initial_remote_commitment_sig(self) -> bytes:
        """Our signature on the peer's commitment 0 (funding_created/funding_signed)."""
        if self.log.latest != [0, 0]:
            raise UsageError("the initial commitments are already past")
        c = self.remote_commitment(0)
        sig, htlc_sigs = commitments.sign_remote(self.params, self.signer, c)
        assert not htlc_sigs
        return sig

    def recv_initial_commitment_sig(self, sig: bytes) -> None:
        """Check the peer's funding_created/funding_signed signature on our commitment 0."""
        if self.log.latest != [0, 0]:
            raise UsageError("the initial commitments are already past")
        c = self.local_commitment(0)
        commitments.verify_local(self.params, c, sig, [])
        self.signer.validate_local_commitment(0, c.tx, self.params.funding_witness_script,
                                              self.params.funding_sat, sig)
        self.local_sig, self.local_htlc_sigs = sig, []

    def channel_ready_msg(self) -> WireMsg:
        """Our ``channel_ready`` (funding deep enough on our side)."""
        self._require_connected()
        if self.state is not _S.AWAITING_LOCKIN and not self.channel_ready_sent:
            raise UsageError(f"channel_ready in state {self.state.value}")
        self.channel_ready_sent = True
        self._maybe_normal()
        return ("channel_ready", {"channel_id": self.channel_id,
                                  "second_per_commitment_point": self.signer.per_commitment_point(1)})

    def recv_channel_ready(self, fields: Mapping[str, Any]) -> None:
        self._require_connected()
        self._check_channel_id("channel_ready", fields)
        point = fields["second_per_commitment_point"]
        if self.channel_ready_received:
            # BOLT 2: ignore a redundant channel_ready (after a reconnection).
            if self.log.latest[Side.REMOTE] == 0 and self.remote_points.get(1) != point:
                raise PeerError("channel_ready repeated with a different second_per_commitment_point")
            return
        if self.log.latest[Side.REMOTE] != 0 or self.local_sig is None:
            raise PeerError("channel_ready before the funding signatures were exchanged")
        if not is_valid_pubkey(point):
            raise PeerError("channel_ready second_per_commitment_point is not a valid point")
        self.remote_points[1] = point
        self.channel_ready_received = True
        self._maybe_normal()

    def _maybe_normal(self) -> None:
        if self.state is _S.AWAITING_LOCKIN and self.channel_ready_sent and self.channel_ready_received:
            self.set_state(_S.NORMAL)

    # ------------------------------------------------------------------ queries
    def local_commitment(self, n: int) -> commitments.BuiltCommitment:
        """Our commitment number ``n`` (unsigned), ``oldest..latest+1``."""
        return commitments.build(self.params, self.log.view(Side.LOCAL, n),
                                 self.signer.per_commitment_point(n))

    def remote_commitment(self, n: int) -> commitments.BuiltCommitment:
        """The peer's commitment ``n`` (unsigned), for ``n`` whose point we know."""
        if n not in self.remote_points:
            raise UsageError(f"no per-commitment point for the peer's commitment {n}")
        return commitments.build(self.params, self.log.view(Side.REMOTE, n), self.remote_points[n])

    def latest_local_commitment_tx(self) -> tuple[Tx, list[HtlcTx]]:
        """Our latest commitment with both signatures, ready to broadcast, and its
        HTLC transactions carrying the peer's signatures and ours (onchaind adds
        preimages).  Only for going on chain: signing it is what hsmd guards."""
        if self.local_sig is None:
            raise UsageError("no signed commitment yet")
        c = self.local_commitment(self.log.latest[Side.LOCAL])
        return commitments.complete_local(self.params, self.signer, c, self.local_sig,
                                          self.local_htlc_sigs)

    @property
    def to_us_msat(self) -> int:
        """Our balance on our current commitment, counting HTLCs we offered as
        still ours until fulfilled (Core Lightning's ``to_us_msat``)."""
        v = self._current_view()
        return v.local_msat + sum(h.amount_msat for h in v.offered_by(Side.LOCAL))

    @property
    def to_them_msat(self) -> int:
        v = self._current_view()
        return v.remote_msat + sum(h.amount_msat for h in v.offered_by(Side.REMOTE))

    @property
    def spendable_msat(self) -> int:
        """Largest HTLC we could add right now (0 if we cannot add any)."""
        if self.state is not _S.NORMAL:
            return 0
        return checks.max_addable_msat(self.params, self.log, Side.LOCAL, sending=True)

    @property
    def receivable_msat(self) -> int:
        """Largest HTLC the peer could add right now by BOLT 2's receiving rules."""
        if self.state is not _S.NORMAL or self.remote_shutdown_script is not None:
            return 0
        return checks.max_addable_msat(self.params, self.log, Side.REMOTE, sending=False)

    def htlcs(self) -> list[HtlcStatus]:
        """Every HTLC still in the channel, with Core Lightning's state names."""
        return [htlc_status(self.log, h) for h in self.log.live()]

    # ------------------------------------------------------------------ commitments
    def has_changes_to_sign(self) -> bool:
        """Updates not yet in a commitment_signed of ours (the commit timer
        runs only while this holds, as Core Lightning's does)."""
        return self.log.has_pending(Side.REMOTE)

    def send_commitment(self) -> WireMsg | None:
        """Sign the peer's next commitment.  None if there is nothing to sign,
        our previous commitment_signed is unanswered, or we owe a revocation
        (call :meth:`revoke` first).  Persist before sending the result."""
        self._require_updating("commitment_signed", UsageError)
        if self.awaiting_revocation or self.revocation_pending or not self.log.has_pending(Side.REMOTE):
            return None
        n = self.log.latest[Side.REMOTE] + 1
        if n not in self.remote_points:
            return None
        c = self.remote_commitment(n)
        sig, htlc_sigs = commitments.sign_remote(self.params, self.signer, c)
        self.log.commit(Side.REMOTE)
        msg: WireMsg = ("commitment_signed", {
            "channel_id": self.channel_id, "signature": sig, "htlc_signature": htlc_sigs,
            "tlvs": {"funding_txid": {"funding_txid": self.params.funding_outpoint.txid}},
        })
        self.outbox.record_commit(msg, n)
        return msg

    def recv_commitment_signed(self, fields: Mapping[str, Any]) -> PendingRevocation:
        """Verify the commitment signature and every HTLC signature on our next
        commitment and hold it; the revocation waits for :meth:`mark_persisted`."""
        self._check_recv_update("commitment_signed", fields)
        if self.revocation_pending:
            raise PeerError("commitment_signed before we revoked the previous commitment")
        if not self.log.has_pending(Side.LOCAL):
            raise PeerError("commitment_signed without any update")
        n = self.log.latest[Side.LOCAL] + 1
        c = self.local_commitment(n)
        sig, htlc_sigs = fields["signature"], list(fields["htlc_signature"])
        commitments.verify_local(self.params, c, sig, htlc_sigs)
        self.signer.validate_local_commitment(n, c.tx, self.params.funding_witness_script,
                                              self.params.funding_sat, sig)
        self.log.commit(Side.LOCAL)
        self.local_sig, self.local_htlc_sigs = sig, htlc_sigs
        self._revoke_persisted = False
        return PendingRevocation(n)

    def mark_persisted(self) -> None:
        """The shell stored :meth:`to_dict` after the last commitment_signed."""
        self._revoke_persisted = True

    def revoke(self) -> Revocation:
        """Revoke our previous commitment: ``revoke_and_ack`` plus what became irrevocable."""
        self._require_connected()
        if not self.revocation_pending:
            raise UsageError("no commitment to revoke")
        if not self._revoke_persisted:
            raise UsageError("persist the new commitment (mark_persisted) before revoking")
        msg, changes = self._do_revoke()
        self.outbox.record_revoke(msg, self.log.oldest[Side.LOCAL] - 1)
        self._maybe_closing()
        return Revocation(msg, changes)

    def _do_revoke(self) -> tuple[WireMsg, HtlcChanges]:
        old = self.log.oldest[Side.LOCAL]
        secret = self.signer.per_commitment_secret(old)
        msg: WireMsg = ("revoke_and_ack", {
            "channel_id": self.channel_id, "per_commitment_secret": secret,
            "next_per_commitment_point": self.signer.per_commitment_point(old + 2)})
        return msg, HtlcChanges.of(self.log, self.log.revoke(Side.LOCAL))

    def recv_revoke_and_ack(self, fields: Mapping[str, Any]) -> HtlcChanges:
        """Check the secret against the point of the peer's revoked commitment,
        store it, and return what became irrevocable (forward/settle it)."""
        self._check_recv_update("revoke_and_ack", fields)
        if not self.awaiting_revocation:
            raise PeerError("unexpected revoke_and_ack")
        old = self.log.oldest[Side.REMOTE]
        secret, nxt = fields["per_commitment_secret"], fields["next_per_commitment_point"]
        try:
            ok = pubkey_from_secret(secret) == self.remote_points[old]
        except KeyDerivationError:
            ok = False
        if not ok:
            raise PeerError(f"revoke_and_ack secret does not match commitment {old}'s point")
        if not is_valid_pubkey(nxt):
            raise PeerError("revoke_and_ack next_per_commitment_point is not a valid point")
        try:
            self.remote_secrets.insert_commitment_secret(old, secret)
        except ShachainError as e:
            raise PeerError(f"revoke_and_ack secret not from one shachain: {e}") from None
        del self.remote_points[old]
        self.remote_points[old + 2] = nxt
        changes = HtlcChanges.of(self.log, self.log.revoke(Side.REMOTE))
        self.outbox.peer_revoked(self.log.oldest[Side.REMOTE])
        self._maybe_closing()
        return changes

    # ------------------------------------------------------------------ reconnection
    def disconnect(self) -> list[HtlcStatus]:
        """The connection dropped: forget the peer's updates no commitment_signed
        covers (it will re-send them) and restart any closing negotiation.
        Returns the peer's HTLC adds that were dropped."""
        from .reestablish import on_disconnect
        return on_disconnect(self)

    def reestablish_msg(self) -> WireMsg:
        from .reestablish import reestablish_msg
        return reestablish_msg(self)

    def recv_reestablish(self, fields: Mapping[str, Any]) -> Reestablished:
        """Check the peer's ``channel_reestablish`` and return what to retransmit."""
        from .reestablish import handle_reestablish
        return handle_reestablish(self, fields)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        from .serialize import channel_to_dict
        return channel_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], signer: Signer, *,
                  fee_bounds: FeerateBounds = FeerateBounds()) -> "Channel":
        """Resume from :meth:`to_dict` output, disconnected (a restart is a new
        connection: call :meth:`reestablish_msg`)."""
        from .serialize import channel_from_dict
        return channel_from_dict(cls, d, signer, fee_bounds=fee_bounds)
