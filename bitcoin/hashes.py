"""Hash functions used throughout Bitcoin and Lightning."""
from __future__ import annotations

import hashlib


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash256(data: bytes) -> bytes:
    """Bitcoin's double SHA256 (txids, block hashes, BIP143 intermediates)."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def ripemd160(data: bytes) -> bytes:
    try:
        h = hashlib.new("ripemd160")
    except ValueError:  # OpenSSL 3 may hide the legacy digest
        from cryptography.hazmat.primitives import hashes

        d = hashes.Hash(hashes.RIPEMD160())
        d.update(data)
        return d.finalize()
    h.update(data)
    return h.digest()


def hash160(data: bytes) -> bytes:
    return ripemd160(sha256(data))


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340 tagged hash."""
    t = sha256(tag.encode())
    return sha256(t + t + data)
