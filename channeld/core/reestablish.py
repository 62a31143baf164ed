"""Disconnection and ``channel_reestablish`` (BOLT 2 "Message Retransmission").

With ``oL <= lL`` our oldest unrevoked / latest local commitment numbers
and ``oR <= lR`` the peer's, our message says:

* ``next_commitment_number = lL + 1``: the next commitment_signed we expect;
* ``next_revocation_number = oR``: the peer's commitment we expect it to revoke next;
* ``your_last_per_commitment_secret``: the secret of ``oR - 1`` (zeros if none);
* ``my_current_per_commitment_point``: our point for ``lL``.

From the peer's values we derive what it lacks: our last commitment_signed
if it expects ``lR`` again, our last revoke_and_ack if it expects ``oL - 1``
revoked; updates it never saw committed are always re-sent (it dropped
them).  A peer claiming revocations we never made, and proving it with a
secret of ours, means *we* lost data: :class:`~.errors.DataLossError`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from common.commitment import Side
from common.keyderive import KeyDerivationError, pubkey_from_secret
from common.shachain import MAX_INDEX

from .errors import DataLossError, PeerError, UsageError
from .status import HtlcChanges, HtlcStatus, htlc_status

if TYPE_CHECKING:
    from .state import Channel, Reestablished

WireMsg = tuple[str, dict[str, Any]]
_ZERO32 = b"\x00" * 32


def on_disconnect(ch: "Channel") -> list[HtlcStatus]:
    dropped = ch.log.drop_unsigned_from(Side.REMOTE)
    ch.connected = False
    ch.closing = None                      # negotiation restarts on reconnection
    ch._reconnected_since_shutdown = True  # the peer must retransmit its shutdown
    return [htlc_status(ch.log, h) for h in dropped]


def reestablish_msg(ch: "Channel") -> WireMsg:
    if ch.connected:
        raise UsageError("channel_reestablish only after a disconnection")
    log = ch.log
    o_r = log.oldest[Side.REMOTE]
    last_secret = ch.remote_secrets.get_commitment_secret(o_r - 1) if o_r > 0 else None
    return ("channel_reestablish", {
        "channel_id": ch.channel_id,
        "next_commitment_number": log.latest[Side.LOCAL] + 1,
        "next_revocation_number": o_r,
        "your_last_per_commitment_secret": last_secret or _ZERO32,
        "my_current_per_commitment_point": ch.signer.per_commitment_point(log.latest[Side.LOCAL]),
    })


def _secret_is_ours(ch: "Channel", n: int, secret: bytes) -> bool:
    if not 0 <= n <= MAX_INDEX:
        return False   # a number from the peer no commitment of ours can have: don't ask the signer
    try:
        return pubkey_from_secret(secret) == ch.signer.per_commitment_point(n)
    except KeyDerivationError:
        return False


def handle_reestablish(ch: "Channel", fields: Mapping[str, Any]) -> "Reestablished":
    from .state import Reestablished   # state imports this module

    if ch.connected:
        raise UsageError("channel_reestablish received while connected")
    ch._check_channel_id("channel_reestablish", fields)
    log = ch.log
    ncn, nrn = fields["next_commitment_number"], fields["next_revocation_number"]
    secret = fields["your_last_per_commitment_secret"]
    o_l, l_l = log.oldest[Side.LOCAL], log.latest[Side.LOCAL]
    o_r, l_r = log.oldest[Side.REMOTE], log.latest[Side.REMOTE]
    pending = l_l != o_l

    # --- what the peer knows of our revocations --------------------------------
    # A revoke_and_ack we produced may have reached the peer even though the
    # state after it was not stored, but only if the state before was stored.
    max_nrn = o_l + (1 if pending and ch._revoke_persisted else 0)
    if nrn > max_nrn:
        if nrn >= 1 and _secret_is_ours(ch, nrn - 1, secret):
            raise DataLossError(f"peer proves we revoked commitment {nrn - 1}, we are at {o_l}: "
                                f"we lost state, do NOT broadcast our commitment")
        raise PeerError(f"peer expects revocation {nrn}, we only revoked up to {o_l - 1}")
    if nrn == 0:
        if secret != _ZERO32:
            raise PeerError("your_last_per_commitment_secret must be zero before any revocation")
    elif not _secret_is_ours(ch, nrn - 1, secret):
        raise PeerError(f"your_last_per_commitment_secret is not our secret {nrn - 1}")
    if nrn < o_l - 1:
        raise PeerError(f"peer expects revocation {nrn} but we revoked up to {o_l - 1}: it lost state")
    resend_revoke = nrn == o_l - 1
    if resend_revoke and (pending or ch.outbox.revoke is None or ch.outbox.revoke.number != nrn):
        raise PeerError(f"peer lacks our revocation of {nrn}, which it must have had to sign "
                        f"our commitment {l_l}")

    # --- what the peer knows of our commitment_signed -------------------------
    if ncn == 0:
        raise PeerError("next_commitment_number 0: the peer failed the channel")
    resend_commit = False
    if ncn == l_r and l_r == o_r + 1:
        resend_commit = True
        if ch.outbox.commit is None or ch.outbox.commit.number != l_r:
            raise PeerError(f"cannot retransmit commitment_signed {l_r}: not recorded")
    elif ncn > l_r + 1:
        raise PeerError(f"peer expects commitment {ncn} but we only signed up to {l_r}")
    elif ncn != l_r + 1:
        raise PeerError(f"peer expects commitment {ncn} but we signed {l_r}: it lost state")

    messages: list[WireMsg] = []
    if ncn == 1 and l_l == 0 and ch.channel_ready_sent:
        messages.append(("channel_ready", {
            "channel_id": ch.channel_id,
            "second_per_commitment_point": ch.signer.per_commitment_point(1)}))
    messages += ch.outbox.lost(ncn, resend_commit, resend_revoke)

    changes = HtlcChanges()
    ch.connected = True
    if pending and nrn == o_l + 1:
        # Our revoke_and_ack got there before we could store the state after
        # it: complete the revocation silently.
        msg, changes = ch._do_revoke()
        ch.outbox.record_revoke(msg, o_l)
    elif pending and ch._revoke_persisted:
        # It never got the revoke_and_ack we owe (we may never have sent it).
        rev = ch.revoke()
        messages.append(rev.message)
        changes = rev.changes
    ch._maybe_closing()
    return Reestablished(messages, changes)
