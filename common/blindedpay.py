"""Payments through a blinded path (BOLT 4 "Route Blinding", payload rules).

Sender side: :func:`blinded_payloads` gives the onion hops of a blinded path
(the sender prepends the unblinded route to its introduction point).
Reader side: :func:`blinded_hop` applies a blinded hop's rules to an HTLC
once its ``encrypted_recipient_data`` is decrypted, and says where and how
much to forward.  Every failure here is a :class:`BlindingError`: inside a
blinded path the only error a node returns is ``invalid_onion_blinding``.
"""
from __future__ import annotations

from typing import NamedTuple

from common.blindedpath import BlindedPath, BlindingError, EncryptedData, relay_amount
from common.onion_payload import HopPayload, encode_payload


def blinded_payloads(path: BlindedPath, amount_msat: int, final_cltv: int,
                     total_msat: int | None = None, path_key_in_htlc: bool = False) -> list[tuple[bytes, bytes]]:
    """``[(onion key, payload), ...]`` for the hops of ``path``.

    The introduction point is addressed by its real id with the path's first
    key as ``current_path_key`` (an unblinded onion up to it, as BOLT 4
    recommends for payments); the others by their blinded ids.  The final hop
    gets ``amt_to_forward``/``outgoing_cltv_value``/``total_amount_msat``.
    With ``path_key_in_htlc`` the first hop gets the path key in the
    update_add_htlc instead (the sender was the introduction point itself
    and read its own hop): it is addressed by its blinded id too.
    """
    if not path.intro_is_pubkey and not path_key_in_htlc:
        raise ValueError("blinded_payloads: resolve the introduction point's sciddir first")
    out = []
    last = len(path.hops) - 1
    for i, hop in enumerate(path.hops):
        p = HopPayload(encrypted_recipient_data=hop.encrypted_recipient_data)
        if i == 0 and not path_key_in_htlc:
            p.current_path_key = path.first_path_key
        if i == last:
            p.amt_to_forward = amount_msat
            p.outgoing_cltv_value = final_cltv
            p.total_amount_msat = amount_msat if total_msat is None else total_msat
        key = path.first_node_id if i == 0 and not path_key_in_htlc else hop.blinded_node_id
        out.append((key, encode_payload(p)))
    return out


class BlindedForward(NamedTuple):
    """Where a non-final blinded hop sends the HTLC."""

    amount_msat: int
    cltv_expiry: int
    #: exactly one of these
    short_channel_id: int | None
    next_node_id: bytes | None


def _check_common(data: EncryptedData, amount_msat: int, cltv_expiry: int) -> None:
    c = data.payment_constraints
    if c is not None:
        if cltv_expiry > c.max_cltv_expiry:
            raise BlindingError(f"cltv_expiry {cltv_expiry} > max_cltv_expiry {c.max_cltv_expiry}")
        if amount_msat < c.htlc_minimum_msat:
            raise BlindingError(f"amount {amount_msat} < htlc_minimum_msat {c.htlc_minimum_msat}")
    # we know no feature that may be used inside a blinded path: any bit is unknown
    if data.allowed_features and any(data.allowed_features):
        raise BlindingError("allowed_features has an unknown bit")
    if data.short_channel_id is not None and data.next_node_id is not None:
        raise BlindingError("both short_channel_id and next_node_id")


def blinded_hop(data: EncryptedData, payload: HopPayload, amount_msat: int, cltv_expiry: int,
                is_final: bool) -> BlindedForward | None:
    """Check an incoming HTLC against our decrypted ``encrypted_data_tlv``.

    ``payload``'s presence rules were checked already
    (:func:`common.onion_payload.check_payload`).  Returns the forward for a
    non-final hop, None for the final one (whose amount and expiry checks,
    and ``path_id``, are the recipient's).  Raises :class:`BlindingError`.
    """
    _check_common(data, amount_msat, cltv_expiry)
    if is_final:
        return None
    if data.path_id is not None:
        raise BlindingError("path_id in a non-final hop")
    if data.short_channel_id is None and data.next_node_id is None:
        raise BlindingError("neither short_channel_id nor next_node_id")
    relay = data.payment_relay
    if relay is None:
        raise BlindingError("no payment_relay")
    out_amount = relay_amount(amount_msat, relay)
    out_cltv = cltv_expiry - relay.cltv_expiry_delta
    if out_amount <= 0 or out_cltv <= 0:
        raise BlindingError("amount or expiry too small to relay")
    return BlindedForward(out_amount, out_cltv, data.short_channel_id, data.next_node_id)
