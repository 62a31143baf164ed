"""Cryptographic building blocks shared by the BOLT 4 onion code.

Everything here is a thin wrapper over vetted primitives (``hmac``/``hashlib``
for HMAC-SHA256 and SHA256, ``cryptography`` for ChaCha20, ``coincurve`` for
secp256k1): the point of the module is to name the BOLT 4 operations once so
that construction (:mod:`common.onion`), failure messages
(:mod:`common.onion_errors`) and attribution data
(:mod:`onion_attribution`) cannot drift apart.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Callable

import coincurve
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

# Key types of BOLT 4 "Key Generation" (no trailing NUL byte), plus the
# failure-return key types of "Returning Errors".
KEY_RHO = b"rho"
KEY_MU = b"mu"
KEY_UM = b"um"
KEY_PAD = b"pad"
KEY_AMMAG = b"ammag"
KEY_AMMAGEXT = b"ammagext"
KEY_BLINDED_NODE_ID = b"blinded_node_id"

# ChaCha20 in `cryptography` takes a 16-byte "nonce" that is really the
# RFC 7539 block: 4-byte little-endian block counter followed by the 12-byte
# nonce.  BOLT 4 fixes the nonce to zero and the stream starts at block 0.
_CHACHA_ZERO_NONCE = bytes(16)

#: An ECDH oracle: takes a 33-byte compressed point, returns the BOLT 4
#: shared secret SHA256(compressed(k * P)) computed with the node's key k.
EcdhFn = Callable[[bytes], bytes]


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256(key, msg)."""
    return hmac.new(key, msg, hashlib.sha256).digest()


def sha256(data: bytes) -> bytes:
    """SHA256(data)."""
    return hashlib.sha256(data).digest()


def generate_key(key_type: bytes, secret: bytes) -> bytes:
    """Derive a BOLT 4 sub-key: HMAC-SHA256 keyed by the key type over the secret."""
    return hmac_sha256(key_type, secret)


def chacha20_stream(key: bytes, length: int) -> bytes:
    """BOLT 4 pseudo-random byte stream: ChaCha20 over ``length`` zero bytes."""
    encryptor = Cipher(algorithms.ChaCha20(key, _CHACHA_ZERO_NONCE), mode=None).encryptor()
    return encryptor.update(bytes(length)) + encryptor.finalize()


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """XOR two equal-length byte strings (via big ints: much faster than per-byte)."""
    if len(a) != len(b):
        raise ValueError("xor_bytes: length mismatch")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def ecdh(privkey: bytes, pubkey: bytes) -> bytes:
    """BOLT 4 shared secret: SHA256 of the compressed point privkey * pubkey.

    That is exactly libsecp256k1's default ECDH hash, which coincurve exposes.
    """
    return coincurve.PrivateKey(privkey).ecdh(pubkey)


def ecdh_with(privkey: bytes) -> EcdhFn:
    """Build an ECDH callback bound to a private key (for tests and non-HSM use)."""
    key = coincurve.PrivateKey(privkey)
    return key.ecdh


def blinding_factor(pubkey: bytes, shared_secret: bytes) -> bytes:
    """SHA256(epk || ss): the tweak turning one hop's ephemeral key into the next's."""
    return sha256(pubkey + shared_secret)


def blind_pubkey(pubkey: bytes, factor: bytes) -> bytes:
    """Scalar-multiply a compressed point by a 32-byte factor."""
    return coincurve.PublicKey(pubkey).multiply(factor).format(compressed=True)


# --- BigSize (BOLT 1) -------------------------------------------------------
# Not cryptography, but every onion module needs it (hop length prefixes, TLV
# types/lengths, the `invalid_onion_payload` data) and the general codec in
# `wire/` is being written separately: this private copy keeps the onion code
# self-contained.


class BigSizeError(ValueError):
    """A BigSize was truncated or not minimally encoded."""


def encode_bigsize(value: int) -> bytes:
    """Encode ``value`` as a BOLT 1 BigSize (big-endian, minimal)."""
    if value < 0:
        raise ValueError("BigSize cannot be negative")
    if value < 0xFD:
        return bytes([value])
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return b"\xfe" + value.to_bytes(4, "big")
    if value <= 0xFFFFFFFFFFFFFFFF:
        return b"\xff" + value.to_bytes(8, "big")
    raise ValueError("BigSize exceeds 64 bits")


def decode_bigsize(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode a BigSize at ``offset``; return ``(value, offset_after)``.

    Raises :class:`BigSizeError` if truncated or non-canonical: BOLT 1 requires
    readers to reject non-minimal encodings so that every value has exactly one
    serialization (otherwise e.g. a hop payload could be re-framed).
    """
    if offset >= len(data):
        raise BigSizeError("BigSize: no data")
    first = data[offset]
    if first < 0xFD:
        return first, offset + 1
    width, minimum = {0xFD: (2, 0xFD), 0xFE: (4, 0x10000), 0xFF: (8, 0x100000000)}[first]
    end = offset + 1 + width
    if end > len(data):
        raise BigSizeError("BigSize: truncated")
    value = int.from_bytes(data[offset + 1 : end], "big")
    if value < minimum:
        raise BigSizeError("BigSize: not minimally encoded")
    return value, end
