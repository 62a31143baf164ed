"""ECDSA signing helpers over coincurve: low-S DER signatures, the 64-byte
compact form Lightning uses on the wire, and conversions between them."""
from __future__ import annotations

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, der_to_cdata, deserialize_compact, serialize_compact


def pubkey_of(secret: bytes) -> bytes:
    """Compressed public key of a 32-byte secret."""
    return PrivateKey(secret).public_key.format(compressed=True)


def sign_digest_der(secret: bytes, digest: bytes) -> bytes:
    """DER signature (low-S, RFC6979) over a precomputed 32-byte digest."""
    return PrivateKey(secret).sign(digest, hasher=None)


def sign_digest_compact(secret: bytes, digest: bytes) -> bytes:
    """64-byte r||s signature as carried in Lightning messages."""
    return der_to_compact(sign_digest_der(secret, digest))


def der_to_compact(der: bytes) -> bytes:
    return serialize_compact(der_to_cdata(der))


def compact_to_der(sig64: bytes) -> bytes:
    return cdata_to_der(deserialize_compact(sig64))


def verify_digest_compact(pubkey: bytes, sig64: bytes, digest: bytes) -> bool:
    """Verify a 64-byte signature; any malformed input is just 'not valid'."""
    try:
        return PublicKey(pubkey).verify(compact_to_der(sig64), digest, hasher=None)
    except Exception:
        return False


def verify_digest_der(pubkey: bytes, der: bytes, digest: bytes) -> bool:
    try:
        return PublicKey(pubkey).verify(der, digest, hasher=None)
    except Exception:
        return False


def is_valid_pubkey(pubkey: bytes) -> bool:
    try:
        PublicKey(pubkey)
    except Exception:
        return False
    return len(pubkey) == 33


def is_valid_secret(secret: bytes) -> bool:
    """A usable private key: 32 bytes, 0 < key < the group order."""
    try:
        PrivateKey(secret)
    except Exception:
        return False
    return len(secret) == 32
