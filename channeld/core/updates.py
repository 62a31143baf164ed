"""HTLC and fee updates: the ones we send (checked by our sending policy) and
the ones we receive (checked against BOLT 2, raising :class:`PeerError`)."""
from __future__ import annotations

from typing import Any, Mapping

from bitcoin.hashes import sha256
from common.commitment import HtlcInfo, Side

from . import checks
from .base import _S, BADONION, ONION_SIZE, ChannelBase, WireMsg
from .errors import PeerError, PeerWarning, UsageError
from .htlcs import Htlc, Removal, RemovalKind
from .status import HtlcStatus, htlc_status


class UpdatesMixin(ChannelBase):
    """Part of :class:`~.state.Channel`: HTLC adds/removals and update_fee."""

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
        too_dusty = checks.dust_exposure_exceeded(self.params, self.log, info,
                                                  self.fee_bounds.max_dust_htlc_exposure_msat)
        if too_dusty:
            raise UsageError(too_dusty)
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
        too_dusty = checks.fee_update_dust_exceeded(self.params, self.log, feerate_per_kw,
                                                    self.fee_bounds.max_dust_htlc_exposure_msat)
        if too_dusty:
            raise UsageError(too_dusty)
        fu = self.log.update_fee(Side.LOCAL, feerate_per_kw)
        return self._sent_update(("update_fee", {"channel_id": self.channel_id,
                                                 "feerate_per_kw": feerate_per_kw}),
                                 fu.at[Side.REMOTE])

    def _sent_update(self, msg: WireMsg, remote_number: int | None) -> WireMsg:
        assert remote_number is not None
        self.outbox.record_update(msg, remote_number)
        return msg

    # ------------------------------------------------------------------ received updates
    def _check_recv_update(self, what: str, fields: Mapping[str, Any]) -> None:
        self._check_channel_id(what, fields)
        self._require_updating(what, PeerError)

    def recv_update_add_htlc(self, fields: Mapping[str, Any]) -> HtlcStatus:
        self._check_recv_update("update_add_htlc", fields)
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
        # Over our dust limit: not a protocol violation (the peer may not
        # know our limit), so accept it and have it failed once committed,
        # as Core Lightning does.
        too_dusty = checks.dust_exposure_exceeded(self.params, self.log, info,
                                                  self.fee_bounds.max_dust_htlc_exposure_msat)
        blinding = ((fields.get("tlvs") or {}).get("blinded_path") or {}).get("path_key")
        h = self.log.add(Side.REMOTE, info.amount_msat, info.payment_hash, info.cltv_expiry,
                         onion, blinding)
        h.fail_immediate = too_dusty is not None
        return htlc_status(self.log, h)

    def _their_removal(self, what: str, fields: Mapping[str, Any]) -> Htlc:
        self._check_recv_update(what, fields)
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
        self._check_recv_update("update_fee", fields)
        if self.params.opener is not Side.REMOTE:
            raise PeerError("update_fee from the non-opener")
        if self.state is _S.SHUTTING_DOWN and not self.log.htlcs:
            raise PeerError("update_fee after shutdown with no HTLCs left")
        rate = fields["feerate_per_kw"]
        b = self.fee_bounds
        # Core Lightning's feerate_same_or_better: outside the range is fine
        # as long as it moves our commitment's feerate towards it (our
        # estimates may have moved since the peer's last update_fee)
        current = self.log.feerate(Side.LOCAL, self.log.latest[Side.LOCAL])
        if (rate < b.min_per_kw and rate < current) or (rate > b.max_per_kw and rate > current):
            raise PeerWarning(f"update_fee {rate} outside acceptable [{b.min_per_kw}, {b.max_per_kw}] "
                              f"(currently {current})")
        checks.check_fee_update(self.params, self.log, Side.REMOTE, rate, sending=False, err=PeerError)
        self.log.update_fee(Side.REMOTE, rate)
