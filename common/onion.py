"""BOLT 4 Sphinx onion packets: construction (origin) and peeling (each hop).

Packet layout: ``version (1) || public_key (33) || hop_payloads (R) || hmac (32)``
with R = 1300 for payment onions (``update_add_htlc``) and any size for onion
messages, so the size is a parameter here (peeling infers it).

``hop_payloads`` is a sequence of frames ``bigsize(len) || payload || hmac``:
each hop XORs the whole field with its ``rho`` stream, reads its frame from
the front, and shifts the rest left, appending (pseudo-random) filler so the
packet keeps its size and no hop can tell its position in the route.

The node's private key lives in hsmd, so peeling takes an ECDH callback
instead of a key; :func:`peel_onion_with_privkey` is the direct variant.

Failure messages for the way back are in :mod:`common.onion_errors`, hop
payload TLVs in :mod:`common.onion_payload`.
"""
from __future__ import annotations

import hmac as _hmac
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import coincurve

from common.onion_crypto import (
    KEY_BLINDED_NODE_ID,
    KEY_MU,
    KEY_PAD,
    KEY_RHO,
    BigSizeError,
    EcdhFn,
    blind_pubkey,
    blinding_factor,
    chacha20_stream,
    decode_bigsize,
    ecdh_with,
    encode_bigsize,
    generate_key,
    hmac_sha256,
    sha256,
    xor_bytes,
)
from common.onion_errors import (
    InvalidOnionBlinding,
    InvalidOnionHmac,
    InvalidOnionKey,
    InvalidOnionPayload,
    InvalidOnionVersion,
)

#: The only onion version defined.
ONION_VERSION = 0
#: ``hop_payloads`` size of a payment onion (and of a "small" onion message).
ROUTING_INFO_SIZE = 1300
_HMAC_LEN = 32
_PUBKEY_LEN = 33
#: Bytes around ``hop_payloads``: version + public_key + hmac.
ONION_OVERHEAD = 1 + _PUBKEY_LEN + _HMAC_LEN
#: Serialized payment onion (``onion_routing_packet``): 1366 bytes.
ONION_PACKET_LEN = ONION_OVERHEAD + ROUTING_INFO_SIZE
#: The larger onion message size the spec recommends (32834 bytes in total).
ONION_MESSAGE_LARGE_LEN = 32834
#: Payment payloads are TLV streams of at least one record, hence >= 2 bytes
#: (0 was the legacy format, 1 is reserved).  Onion messages allow 0.
MIN_PAYMENT_PAYLOAD_LEN = 2
MIN_ONION_MESSAGE_PAYLOAD_LEN = 0

_ZERO_HMAC = bytes(_HMAC_LEN)


class OnionConstruction(NamedTuple):
    """Result of :func:`create_onion`: unpacks as ``packet, shared_secrets``."""

    packet: bytes
    #: One per hop, in route order; keep them to decode a returned failure.
    shared_secrets: list[bytes]


@dataclass(frozen=True)
class PeeledOnion:
    """What a hop learns from peeling one layer."""

    #: This hop's payload (TLV stream, without the bigsize length prefix).
    payload: bytes
    #: ECDH secret with the origin: needed to encrypt a failure back.
    shared_secret: bytes
    #: HMAC for the next hop; all zero means we are the final node.
    next_hmac: bytes
    #: The onion to forward (same size as ours), or None if we are final.
    next_packet: bytes | None
    #: ECDH(path_key, node key) when peeled with a ``path_key`` (route
    #: blinding): the secret for decrypting ``encrypted_recipient_data`` and
    #: deriving the next path key (:func:`next_path_key`).
    path_key_shared_secret: bytes | None = None

    @property
    def is_final(self) -> bool:
        """True if no hop follows (``next_hmac`` is all zero)."""
        return self.next_packet is None


def _hop_frame(payload: bytes) -> bytes:
    """``bigsize(len) || payload``; the 32-byte HMAC is appended later."""
    return encode_bigsize(len(payload)) + payload


def onion_frame_size(payload: bytes) -> int:
    """Bytes of the routing info a hop's payload takes (length prefix,
    payload, HMAC): a route fits when these sum to at most the onion size."""
    return len(_hop_frame(payload)) + _HMAC_LEN


def _generate_filler(frame_sizes: Sequence[int], shared_secrets: Sequence[bytes], size: int) -> bytes:
    """The filler: what hops 0..n-2 shift into the tail while peeling.

    Each hop i appends ``frame_size_i`` bytes of its ``rho`` stream (XOR
    zeros) on the right, and later hops XOR their own streams over whatever
    was appended before.  The origin must reproduce those bytes exactly since
    the inner HMACs cover them.  Done in place over the final length (the sum
    of those frame sizes) rather than the spec's illustrative full buffer.
    """
    filler_len = sum(frame_sizes[:-1])
    filler = bytes(filler_len)
    used = 0  # bytes already appended by earlier hops
    for i in range(len(frame_sizes) - 1):
        stream = chacha20_stream(generate_key(KEY_RHO, shared_secrets[i]), 2 * size)
        # After hop i peels, stream bytes [size - used, size + frame_i) land
        # on the tail region [0, used + frame_i) of the filler.
        chunk = stream[size - used : size + frame_sizes[i]]
        filler = xor_bytes(filler[: len(chunk)], chunk) + filler[len(chunk) :]
        used += frame_sizes[i]
    return filler


def create_onion(
    session_key: bytes,
    hops: Sequence[tuple[bytes, bytes]],
    associated_data: bytes,
    *,
    routing_info_size: int = ROUTING_INFO_SIZE,
) -> OnionConstruction:
    """Build a Sphinx onion (origin side).

    ``hops`` is ``[(node_pubkey33, payload), ...]`` in route order, where
    ``payload`` is the hop's TLV stream *without* its length prefix (this
    function adds the bigsize length).  ``associated_data`` is committed to by
    every HMAC (the payment hash for HTLCs, empty for onion messages).
    ``session_key`` must be fresh random 32 bytes per onion: it seeds the
    ephemeral keys and the initial padding.

    Returns the ``ONION_OVERHEAD + routing_info_size``-byte packet and the
    per-hop shared secrets.  Raises ``ValueError`` if the frames do not fit or
    a key is invalid.
    """
    if not hops:
        raise ValueError("create_onion: empty route")
    frames = [_hop_frame(payload) for _, payload in hops]
    frame_sizes = [onion_frame_size(payload) for _, payload in hops]
    if sum(frame_sizes) > routing_info_size:
        raise ValueError(f"create_onion: payloads need {sum(frame_sizes)} > {routing_info_size} bytes")

    # Walk the route deriving each hop's ECDH secret; the ephemeral key is
    # re-blinded at each hop so hops cannot link packets by public key.
    ephemeral = coincurve.PrivateKey(session_key)
    first_pubkey = ephemeral.public_key.format(compressed=True)
    shared_secrets: list[bytes] = []
    for node_id, _ in hops:
        epk = ephemeral.public_key.format(compressed=True)
        secret = ephemeral.ecdh(node_id)
        shared_secrets.append(secret)
        ephemeral = ephemeral.multiply(blinding_factor(epk, secret))

    filler = _generate_filler(frame_sizes, shared_secrets, routing_info_size)

    # Start from pseudo-random bytes (not zeros) so the unused tail seen by
    # the last hop does not reveal how long the route is.
    mix = chacha20_stream(generate_key(KEY_PAD, session_key), routing_info_size)
    next_hmac = _ZERO_HMAC  # all-zero HMAC tells the last hop it is final
    for i in reversed(range(len(hops))):
        rho = generate_key(KEY_RHO, shared_secrets[i])
        mu = generate_key(KEY_MU, shared_secrets[i])
        # Right-shift and prepend our frame (its HMAC authenticates the next hop's view).
        mix = (frames[i] + next_hmac + mix)[:routing_info_size]
        mix = xor_bytes(mix, chacha20_stream(rho, routing_info_size))
        if i == len(hops) - 1 and filler:
            # What every hop's peeling will have appended by the time the
            # last hop sees the packet: overwrite so the HMACs match.
            mix = mix[: routing_info_size - len(filler)] + filler
        next_hmac = hmac_sha256(mu, mix + associated_data)

    packet = bytes([ONION_VERSION]) + first_pubkey + mix + next_hmac
    return OnionConstruction(packet, shared_secrets)


def _valid_point(data: bytes) -> bool:
    """True if ``data`` is a 33-byte compressed point on the curve."""
    if len(data) != _PUBKEY_LEN or data[0] not in (2, 3):
        return False
    try:
        coincurve.PublicKey(data)
    except ValueError:
        return False
    return True


def blinded_node_tweak(path_key_shared_secret: bytes) -> bytes:
    """``HMAC256("blinded_node_id", ss)``: the factor turning N_i into B_i (route blinding)."""
    return hmac_sha256(KEY_BLINDED_NODE_ID, path_key_shared_secret)


def next_path_key(path_key: bytes, path_key_shared_secret: bytes) -> bytes:
    """``E_{i+1} = SHA256(E_i || ss_i) * E_i``: the path key to hand the next blinded hop."""
    return blind_pubkey(path_key, blinding_factor(path_key, path_key_shared_secret))


def peel_onion(
    packet: bytes,
    associated_data: bytes,
    ecdh: EcdhFn,
    *,
    path_key: bytes | None = None,
    min_payload_len: int = MIN_PAYMENT_PAYLOAD_LEN,
) -> PeeledOnion:
    """Remove one layer of ``packet`` (processing-node side).

    ``ecdh(point33) -> SHA256(compressed(k * point))`` performs the ECDH with
    the node key ``k`` (wherever it lives).  ``path_key`` is the route
    blinding key from ``update_add_htlc``/``onion_message``, if any.
    ``min_payload_len`` is 2 for payment onions and 0 for onion messages.
    The ``hop_payloads`` size is inferred from ``len(packet)``.

    Raises (checked in the spec's order):

    * :class:`InvalidOnionVersion` / :class:`InvalidOnionKey` /
      :class:`InvalidOnionHmac` (BADONION, carry ``sha256_of_onion``),
    * :class:`InvalidOnionBlinding` if ``path_key`` is not a valid point,
    * :class:`InvalidOnionPayload` (with ``shared_secret`` set) if the
      authenticated frame is malformed,
    * ``ValueError`` if ``packet`` is too short to be an onion at all.
    """
    if len(packet) < ONION_OVERHEAD:
        raise ValueError(f"onion packet too short: {len(packet)} bytes")
    onion_hash = sha256(packet)
    if packet[0] != ONION_VERSION:
        raise InvalidOnionVersion(onion_hash, f"version {packet[0]}")
    public_key = packet[1 : 1 + _PUBKEY_LEN]
    if not _valid_point(public_key):
        raise InvalidOnionKey(onion_hash, "ephemeral key is not a valid point")
    hop_payloads = packet[1 + _PUBKEY_LEN : -_HMAC_LEN]
    hmac = packet[-_HMAC_LEN:]

    ecdh_point = public_key
    path_ss: bytes | None = None
    if path_key is not None:
        # The sender encrypted to our blinded id B = tweak * N; tweaking the
        # ephemeral key instead of our private key is equivalent and keeps
        # the private key inside the ECDH oracle.
        if not _valid_point(path_key):
            raise InvalidOnionBlinding(onion_hash, "path_key is not a valid point")
        path_ss = ecdh(path_key)
        ecdh_point = blind_pubkey(public_key, blinded_node_tweak(path_ss))
    shared_secret = ecdh(ecdh_point)

    mu = generate_key(KEY_MU, shared_secret)
    expected = hmac_sha256(mu, hop_payloads + associated_data)
    if not _hmac.compare_digest(expected, hmac):
        raise InvalidOnionHmac(onion_hash, "HMAC mismatch")

    size = len(hop_payloads)
    # Decrypt with twice the length: the second half turns the appended
    # zeros into the next hop's filler.
    rho = generate_key(KEY_RHO, shared_secret)
    unwrapped = xor_bytes(hop_payloads + bytes(size), chacha20_stream(rho, 2 * size))

    def bad(detail: str) -> InvalidOnionPayload:
        return InvalidOnionPayload(detail, shared_secret=shared_secret)

    try:
        payload_len, pos = decode_bigsize(unwrapped)
    except BigSizeError as e:
        raise bad(f"payload length: {e}") from None
    if payload_len < min_payload_len:
        raise bad(f"payload length {payload_len} < {min_payload_len}")
    end = pos + payload_len
    # The spec's remaining-length checks amount to: our frame must fit in
    # hop_payloads, so the next hop still gets `size` authentic-or-filler bytes.
    if end + _HMAC_LEN > size:
        raise bad(f"payload length {payload_len} overflows hop_payloads")
    payload = unwrapped[pos:end]
    next_hmac = unwrapped[end : end + _HMAC_LEN]
    if next_hmac == _ZERO_HMAC:
        return PeeledOnion(payload, shared_secret, next_hmac, None, path_ss)

    next_public_key = blind_pubkey(public_key, blinding_factor(public_key, shared_secret))
    next_payloads = unwrapped[end + _HMAC_LEN : end + _HMAC_LEN + size]
    next_packet = bytes([ONION_VERSION]) + next_public_key + next_payloads + next_hmac
    return PeeledOnion(payload, shared_secret, next_hmac, next_packet, path_ss)


def peel_onion_with_privkey(
    packet: bytes,
    associated_data: bytes,
    privkey: bytes,
    *,
    path_key: bytes | None = None,
    min_payload_len: int = MIN_PAYMENT_PAYLOAD_LEN,
) -> PeeledOnion:
    """:func:`peel_onion` with the node's 32-byte private key at hand."""
    return peel_onion(
        packet, associated_data, ecdh_with(privkey), path_key=path_key, min_payload_len=min_payload_len
    )
