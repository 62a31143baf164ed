"""BOLT 12 signatures: the Merkle tree over a TLV stream, BIP-340 tags.

``H(tag, msg) = SHA256(SHA256(tag) || SHA256(tag) || msg)``.  Every
non-signature record (types outside 240..1000) is a leaf paired with a nonce
leaf ``H("LnNonce" || first-record, type)``; pairs and inner nodes are
``H("LnBranch", lesser || greater)``; an odd count leaves the deepest tree on
the lowest types.  The signature of field ``f`` of stream ``m`` signs
``H("lightning" || m || f, root)`` with BIP-340.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple

import coincurve

from common.onion_crypto import BigSizeError, decode_bigsize, encode_bigsize

SIGNATURE_MIN, SIGNATURE_MAX = 240, 1000


class TlvRecord(NamedTuple):
    type: int
    raw: bytes        # the whole record: type, length, value
    value: bytes


def tlv_records(stream: bytes) -> list[TlvRecord]:
    """Split a TLV stream into its records (framing checked: canonical
    BigSizes, values inside the stream); ``ValueError`` otherwise."""
    out: list[TlvRecord] = []
    pos = 0
    while pos < len(stream):
        start = pos
        try:
            t, pos = decode_bigsize(stream, pos)
            n, pos = decode_bigsize(stream, pos)
        except BigSizeError as e:
            raise ValueError(f"TLV record at {start}: {e}") from None
        if n > len(stream) - pos:
            raise ValueError(f"TLV record {t} truncated")
        out.append(TlvRecord(t, stream[start:pos + n], stream[pos:pos + n]))
        pos += n
    return out


def is_signature_type(t: int) -> bool:
    return SIGNATURE_MIN <= t <= SIGNATURE_MAX


def tagged_hash(tag: bytes, msg: bytes) -> bytes:
    t = hashlib.sha256(tag).digest()
    return hashlib.sha256(t + t + msg).digest()


def _branch(a: bytes, b: bytes) -> bytes:
    return tagged_hash(b"LnBranch", min(a, b) + max(a, b))


def merkle_root(stream: bytes) -> bytes:
    """The Merkle root of a TLV stream's non-signature records."""
    records = [r for r in tlv_records(stream) if not is_signature_type(r.type)]
    if not records:
        raise ValueError("merkle_root: no records")
    nonce_tag = b"LnNonce" + records[0].raw
    nodes = [_branch(tagged_hash(b"LnLeaf", r.raw), tagged_hash(nonce_tag, encode_bigsize(r.type)))
             for r in records]
    step = 1
    while step < len(nodes):
        for i in range(0, len(nodes), 2 * step):
            if i + step < len(nodes):
                nodes[i] = _branch(nodes[i], nodes[i + step])
        step *= 2
    return nodes[0]


def sighash(messagename: str, fieldname: str, root: bytes) -> bytes:
    """``H("lightning" || messagename || fieldname, root)``: what the signature signs."""
    return tagged_hash(b"lightning" + messagename.encode() + fieldname.encode(), root)


def sign(privkey: bytes, messagename: str, fieldname: str, stream: bytes, aux_rand: bytes | None = None) -> bytes:
    """BIP-340 signature of the stream; without ``aux_rand``, 32 zero bytes (deterministic, as
    Core Lightning's hsmd signs)."""
    msg = sighash(messagename, fieldname, merkle_root(stream))
    return coincurve.PrivateKey(privkey).sign_schnorr(msg, aux_rand if aux_rand is not None else bytes(32))


def verify(pubkey: bytes, sig: bytes, messagename: str, fieldname: str, stream: bytes) -> bool:
    """Check a BIP-340 signature by the 33-byte ``pubkey`` (its x coordinate) over the stream."""
    if len(sig) != 64 or len(pubkey) != 33:
        return False
    try:
        msg = sighash(messagename, fieldname, merkle_root(stream))
        return coincurve.PublicKeyXOnly(pubkey[1:]).verify(sig, msg)
    except ValueError:
        return False
