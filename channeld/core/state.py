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
from enum import Enum
from typing import Any, Mapping

from bitcoin.hashes import sha256
from bitcoin.keys import is_valid_pubkey
from bitcoin.tx import Tx
from common.commitment import HtlcInfo, Side
from common.htlc_tx import HtlcTx
from common.keyderive import KeyDerivationError, pubkey_from_secret
from common.shachain import ShachainError, ShachainStore

from . import checks, commitments
from .closing import ClosingFeeRange, ClosingNegotiation, ClosingResult, closing_weight, \
    is_valid_shutdown_script
from .errors import IllegalTransition, PeerError, UsageError
from .htlcs import Htlc, HtlcLog, Removal, RemovalKind
from .outbox import Outbox
from .params import ChannelParams
from .signer import Signer
from .status import HtlcChanges, HtlcStatus, htlc_status

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
    """Policy for the peer's ``update_fee`` (BOLT 2: too low for timely
    processing, or unreasonably large); the shell updates it from estimates."""

    min_per_kw: int = 253
    max_per_kw: int = 100_000


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


class Channel:
    """One channel's BOLT 2 state.  Build with :meth:`new` or :meth:`from_dict`."""

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

    # ------------------------------------------------------------------ creation
    @classmethod
    def new(cls, params: ChannelParams, signer: Signer, *, push_msat: int, feerate_per_kw: int,
            remote_first_per_commitment_point: bytes, fee_bounds: FeerateBounds = FeerateBounds(),
            local_shutdown_script: bytes | None = None) -> "Channel":
        """The channel right after open_channel/accept_channel: commitment 0 on
        both sides, the opener holding ``funding - push``."""
        params.validate()
        if signer.funding_pubkey() != params.local.funding_pubkey or \
                signer.basepoints() != params.local.basepoints:
            raise UsageError("the signer's keys do not match our channel parameters")
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
        ch = cls(params, signer, log, fee_bounds=fee_bounds, local_shutdown_script=local_shutdown_script)
        ch.remote_points[0] = remote_first_per_commitment_point
        fee = checks.commit_fee_sat(params, log.view(Side.LOCAL, 0))
        if bal[params.opener] < fee * 1000:
            raise err(f"the opener cannot pay the initial commitment fee of {fee} sat")
        if all(bal[s] <= params.party(s.other).channel_reserve_sat * 1000 for s in Side):
            raise err("both initial balances are at or below the channel reserve")
        return ch

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

    def _require_connected(self) -> None:
        if not self.connected:
            raise UsageError("peer disconnected: exchange channel_reestablish first")

    def _require_updating(self, what: str, err: type[Exception]) -> None:
        self._require_connected()
        if self.state not in _UPDATING:
            raise err(f"{what} not allowed in state {self.state.value}")

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

    def _current_view(self):
        return self.log.view(Side.LOCAL, self.log.oldest[Side.LOCAL])

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

    @property
    def revocation_pending(self) -> bool:
        """We received a commitment_signed and still owe the revoke_and_ack."""
        return self.log.latest[Side.LOCAL] != self.log.oldest[Side.LOCAL]

    @property
    def awaiting_revocation(self) -> bool:
        """We sent a commitment_signed and wait for the peer's revoke_and_ack."""
        return self.log.latest[Side.REMOTE] != self.log.oldest[Side.REMOTE]

    # ------------------------------------------------------------------ local updates
    def add_htlc(self, amount_msat: int, payment_hash: bytes, cltv_expiry: int, onion: bytes,
                 blockheight: int, *, blinding_point: bytes | None = None) -> WireMsg:
        """Offer an HTLC; returns ``update_add_htlc`` (its ``id`` is the HTLC id)."""
        self._require_connected()
        if self.state is not _S.NORMAL:
            raise UsageError(f"cannot add an HTLC in state {self.state.value}")
        if len(onion) != ONION_SIZE:
            raise UsageError(f"onion must be {ONION_SIZE} bytes")
        if cltv_expiry <= blockheight:
            raise UsageError(f"cltv_expiry {cltv_expiry} is not after the current block {blockheight}")
        info = HtlcInfo(Side.LOCAL, amount_msat, payment_hash, cltv_expiry, self.log.next_id[Side.LOCAL])
        checks.check_add(self.params, self.log, info, sending=True, err=UsageError)
        h = self.log.add(Side.LOCAL, amount_msat, payment_hash, cltv_expiry, onion, blinding_point)
        fields: dict[str, Any] = {
            "channel_id": self.channel_id, "id": h.htlc_id, "amount_msat": amount_msat,
            "payment_hash": payment_hash, "cltv_expiry": cltv_expiry, "onion_routing_packet": onion,
            "tlvs": {"blinded_path": {"path_key": blinding_point}} if blinding_point else {},
        }
        return self._sent_update(("update_add_htlc", fields), h.add_at[Side.REMOTE])

    def _removable(self, htlc_id: int) -> Htlc:
        self._require_updating("removing an HTLC", UsageError)
        h = self.log.get(Side.REMOTE, htlc_id)
        if h is None:
            raise UsageError(f"no incoming HTLC {htlc_id}")
        if h.removal is not None:
            raise UsageError(f"incoming HTLC {htlc_id} is already being removed")
        if not self.log.add_locked_in(h):
            raise UsageError(f"incoming HTLC {htlc_id} is not irrevocably committed yet")
        return h

    def _remove(self, h: Htlc, removal: Removal, msg: WireMsg) -> WireMsg:
        self.log.remove(h, removal)
        return self._sent_update(msg, removal.at[Side.REMOTE])

    def fulfill_htlc(self, htlc_id: int, preimage: bytes) -> WireMsg:
        h = self._removable(htlc_id)
        if sha256(preimage) != h.payment_hash:
            raise UsageError(f"preimage does not match the payment_hash of HTLC {htlc_id}")
        return self._remove(h, Removal(RemovalKind.FULFILL, preimage=preimage), (
            "update_fulfill_htlc", {"channel_id": self.channel_id, "id": htlc_id,
                                    "payment_preimage": preimage}))

    def fail_htlc(self, htlc_id: int, reason: bytes) -> WireMsg:
        h = self._removable(htlc_id)
        return self._remove(h, Removal(RemovalKind.FAIL, reason=reason), (
            "update_fail_htlc", {"channel_id": self.channel_id, "id": htlc_id, "reason": reason}))

    def fail_malformed_htlc(self, htlc_id: int, sha256_of_onion: bytes, failure_code: int) -> WireMsg:
        if not failure_code & BADONION:
            raise UsageError(f"failure_code {failure_code:#x} lacks the BADONION bit")
        h = self._removable(htlc_id)
        return self._remove(h, Removal(RemovalKind.FAIL_MALFORMED, sha256_of_onion=sha256_of_onion,
                                       failure_code=failure_code), (
            "update_fail_malformed_htlc", {"channel_id": self.channel_id, "id": htlc_id,
                                           "sha256_of_onion": sha256_of_onion,
                                           "failure_code": failure_code}))

    def update_fee(self, feerate_per_kw: int) -> WireMsg:
        """Opener only: propose a new commitment feerate."""
        self._require_updating("update_fee", UsageError)
        if self.state is _S.SHUTTING_DOWN and not self.log.htlcs:
            raise UsageError("no updates once shutdown left no HTLCs")
        checks.check_fee_update(self.params, self.log, Side.LOCAL, feerate_per_kw, sending=True,
                                err=UsageError)
        fu = self.log.update_fee(Side.LOCAL, feerate_per_kw)
        return self._sent_update(("update_fee", {"channel_id": self.channel_id,
                                                 "feerate_per_kw": feerate_per_kw}),
                                 fu.at[Side.REMOTE])

    def _sent_update(self, msg: WireMsg, remote_number: int | None) -> WireMsg:
        assert remote_number is not None
        self.outbox.record_update(msg, remote_number)
        return msg

    # ------------------------------------------------------------------ received updates
    def _check_recv_update(self, what: str) -> None:
        self._require_updating(what, PeerError)

    def recv_update_add_htlc(self, fields: Mapping[str, Any]) -> HtlcStatus:
        self._check_recv_update("update_add_htlc")
        if self.remote_shutdown_script is not None:
            raise PeerError("update_add_htlc after shutdown")
        htlc_id = fields["id"]
        if htlc_id != self.log.next_id[Side.REMOTE]:
            raise PeerError(f"update_add_htlc id {htlc_id}, expected {self.log.next_id[Side.REMOTE]}")
        onion = fields["onion_routing_packet"]
        if len(onion) != ONION_SIZE:
            raise PeerError("update_add_htlc onion_routing_packet of the wrong size")
        info = HtlcInfo(Side.REMOTE, fields["amount_msat"], fields["payment_hash"],
                        fields["cltv_expiry"], htlc_id)
        checks.check_add(self.params, self.log, info, sending=False, err=PeerError)
        blinding = ((fields.get("tlvs") or {}).get("blinded_path") or {}).get("path_key")
        h = self.log.add(Side.REMOTE, info.amount_msat, info.payment_hash, info.cltv_expiry,
                         onion, blinding)
        return htlc_status(self.log, h)

    def _their_removal(self, what: str, fields: Mapping[str, Any]) -> Htlc:
        self._check_recv_update(what)
        htlc_id = fields["id"]
        h = self.log.get(Side.LOCAL, htlc_id)
        if h is None:
            raise PeerError(f"{what} for unknown HTLC id {htlc_id}")
        if not self.log.add_locked_in(h):
            raise PeerError(f"{what} for HTLC {htlc_id} not irrevocably committed")
        if h.removal is not None:
            raise PeerError(f"{what} for HTLC {htlc_id} already removed")
        return h

    def recv_update_fulfill_htlc(self, fields: Mapping[str, Any]) -> bytes:
        """Returns the preimage: the master may settle upstream at once."""
        h = self._their_removal("update_fulfill_htlc", fields)
        preimage = fields["payment_preimage"]
        if sha256(preimage) != h.payment_hash:
            raise PeerError(f"update_fulfill_htlc preimage does not match HTLC {h.htlc_id}")
        self.log.remove(h, Removal(RemovalKind.FULFILL, preimage=preimage))
        return preimage

    def recv_update_fail_htlc(self, fields: Mapping[str, Any]) -> None:
        h = self._their_removal("update_fail_htlc", fields)
        self.log.remove(h, Removal(RemovalKind.FAIL, reason=fields["reason"]))

    def recv_update_fail_malformed_htlc(self, fields: Mapping[str, Any]) -> None:
        h = self._their_removal("update_fail_malformed_htlc", fields)
        code = fields["failure_code"]
        if not code & BADONION:
            raise PeerError(f"update_fail_malformed_htlc failure_code {code:#x} lacks BADONION")
        self.log.remove(h, Removal(RemovalKind.FAIL_MALFORMED, sha256_of_onion=fields["sha256_of_onion"],
                                   failure_code=code))

    def recv_update_fee(self, fields: Mapping[str, Any]) -> None:
        self._check_recv_update("update_fee")
        if self.params.opener is not Side.REMOTE:
            raise PeerError("update_fee from the non-opener")
        if self.state is _S.SHUTTING_DOWN and not self.log.htlcs:
            raise PeerError("update_fee after shutdown with no HTLCs left")
        rate = fields["feerate_per_kw"]
        b = self.fee_bounds
        if not b.min_per_kw <= rate <= b.max_per_kw:
            raise PeerError(f"update_fee {rate} outside acceptable [{b.min_per_kw}, {b.max_per_kw}]")
        checks.check_fee_update(self.params, self.log, Side.REMOTE, rate, sending=False, err=PeerError)
        self.log.update_fee(Side.REMOTE, rate)

    # ------------------------------------------------------------------ commitments
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
        self._check_recv_update("commitment_signed")
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
        self._check_recv_update("revoke_and_ack")
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

    # ------------------------------------------------------------------ shutdown and close
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
        script = fields["scriptpubkey"]
        if self.remote_shutdown_script is not None:
            if script == self.remote_shutdown_script and self._reconnected_since_shutdown:
                self._reconnected_since_shutdown = False   # the mandatory retransmission
                return
            raise PeerError("multiple shutdown messages")
        if self.state not in (_S.AWAITING_LOCKIN, _S.NORMAL, _S.SHUTTING_DOWN):
            raise PeerError(f"shutdown in state {self.state.value}")
        if not is_valid_shutdown_script(script, self.params.anysegwit):
            raise PeerError(f"shutdown scriptpubkey {script.hex()} is not an allowed form")
        upfront = self.params.remote.upfront_shutdown_script
        if upfront and script != upfront:
            raise PeerError("shutdown scriptpubkey differs from its upfront_shutdown_script")
        if self.log.has_pending(Side.LOCAL):
            raise PeerError("shutdown while updates are pending on our commitment")
        self.remote_shutdown_script = script
        self._reconnected_since_shutdown = False
        if self.state is not _S.SHUTTING_DOWN:
            self.set_state(_S.SHUTTING_DOWN)
        self._maybe_closing()

    def _maybe_closing(self) -> None:
        """BOLT 2: negotiation starts once both shutdowns were exchanged, no HTLC
        remains and both commitments hold every update (nothing owed)."""
        if self.state is _S.SHUTTING_DOWN and self.shutdown_sent and \
                self.remote_shutdown_script is not None and not self.log.htlcs and \
                not self.log.fee_updates and not self.awaiting_revocation and \
                not self.revocation_pending:
            self.set_state(_S.CLOSING_NEGOTIATION)

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
        assert self.local_shutdown_script and self.remote_shutdown_script
        v = self._current_view()
        self.closing = ClosingNegotiation(
            self.params, self.signer,
            {Side.LOCAL: self.local_shutdown_script, Side.REMOTE: self.remote_shutdown_script},
            {Side.LOCAL: v.local_msat, Side.REMOTE: v.remote_msat},
            fees or self.default_closing_fees())
        return self.closing.first_offer() if self.params.opener is Side.LOCAL else None

    def recv_closing_signed(self, fields: Mapping[str, Any]) -> ClosingResult:
        """Negotiate; once agreed, ``result.tx`` is the signed closing tx and the
        channel is CLOSED (send ``result.reply`` first if there is one)."""
        self._require_connected()
        if self.state is not _S.CLOSING_NEGOTIATION:
            raise PeerError(f"closing_signed in state {self.state.value}")
        if self.closing is None:
            self.start_closing()
        assert self.closing is not None
        result = self.closing.recv(fields)
        if result.tx is not None:
            self.set_state(_S.CLOSED)
        return result

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
