"""An incoming HTLC inside a blinded path (BOLT 4 route blinding), in the master.

channeld gave the onion's shared secret (computed with the blinded key when
the HTLC came with a ``path_key``); once the payload is read, the hop's
``encrypted_recipient_data`` is decrypted with ``ECDH(path_key)`` (hsmd) and
applied (:mod:`common.blindedpay`).  The result is where to forward, or, for
the final hop, the ``path_id`` the recipient put there.  A hop that names
ourselves as next node is one of our own dummy hops: the next layer is
peeled here too, until the real final hop.

Every failure is a :class:`~common.blindedpath.BlindingError`: the caller
answers ``invalid_onion_blinding`` (htlc_engine's rule for blinded HTLCs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from common.blindedpath import BlindingError, read_encrypted_data
from common.blindedpay import blinded_hop
from common.onion import PeeledOnion, blinded_node_tweak, peel_onion
from common.onion_crypto import blind_pubkey
from common.onion_errors import OnionError
from common.onion_payload import HopPayload, check_payload, decode_payload

#: our own dummy hops followed in one HTLC, at most
MAX_DUMMY_HOPS = 16

Ecdh = Callable[[bytes], Awaitable[bytes]]


@dataclass(frozen=True)
class BlindedFinal:
    """We are the recipient: the final payload and our ``path_id``."""

    payload: HopPayload
    path_id: bytes | None


@dataclass(frozen=True)
class BlindedForward:
    amount_msat: int
    cltv_expiry: int
    short_channel_id: int | None
    next_node_id: bytes | None
    next_path_key: bytes
    next_onion: bytes


async def unwrap(ecdh: Ecdh, our_id: bytes, payment_hash: bytes, peeled: PeeledOnion, payload: HopPayload,
                 path_key: bytes | None, amount_msat: int, cltv_expiry: int) -> BlindedFinal | BlindedForward:
    """Apply our blinded hop(s) to an HTLC of ``amount_msat`` / ``cltv_expiry``.

    ``path_key`` is the update_add_htlc's (None: we are the introduction
    point, the key is the payload's ``current_path_key``).  ``ecdh`` is
    hsmd's (async).  Raises :class:`BlindingError`.
    """
    key = path_key if path_key is not None else payload.current_path_key
    if key is None or payload.encrypted_recipient_data is None:
        raise BlindingError("not a blinded hop")
    for _ in range(MAX_DUMMY_HOPS + 1):
        ss = await _ecdh(ecdh, key)
        hop = read_encrypted_data(key, ss, payload.encrypted_recipient_data)
        fwd = blinded_hop(hop.data, payload, amount_msat, cltv_expiry, peeled.is_final)
        if fwd is None:
            return BlindedFinal(payload, hop.data.path_id)
        assert peeled.next_packet is not None
        if fwd.next_node_id != our_id:
            return BlindedForward(fwd.amount_msat, fwd.cltv_expiry, fwd.short_channel_id, fwd.next_node_id,
                                  hop.next_path_key, peeled.next_packet)
        # one of our dummy hops: peel the next layer as the next node would
        key, amount_msat, cltv_expiry = hop.next_path_key, fwd.amount_msat, fwd.cltv_expiry
        path_ss = await _ecdh(ecdh, key)
        try:
            point = blind_pubkey(peeled.next_packet[1:34], blinded_node_tweak(path_ss))
        except ValueError as e:
            raise BlindingError(f"dummy hop: {e}") from None
        onion_ss = await _ecdh(ecdh, point)
        try:
            peeled = peel_onion(peeled.next_packet, payment_hash, lambda _p, s=onion_ss: s)
            payload = decode_payload(peeled.payload)
            check_payload(payload, is_final=peeled.is_final, path_key_in_htlc=True)
        except (OnionError, ValueError) as e:
            raise BlindingError(f"dummy hop: {e}") from None
    raise BlindingError("too many dummy hops")


async def _ecdh(ecdh: Ecdh, point: bytes) -> bytes:
    try:
        return await ecdh(point)
    except Exception as e:  # hsmd refuses a point that is not one
        raise BlindingError(f"ECDH with {point.hex()}: {e}") from None
