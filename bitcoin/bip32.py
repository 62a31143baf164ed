"""BIP32 hierarchical deterministic keys: master key from a seed, private and
public child derivation, xprv/xpub/tprv/tpub serialization and strict parsing.

All curve operations go through coincurve (libsecp256k1): a child private key
is `PrivateKey.add(IL)`, a child public key `PublicKey.add(IL)` (K + IL*G).

Paths are written "m/86h/0h/0h/0/5" (``h``, ``H`` or ``'`` mark a hardened
step; the leading ``m/`` is optional) or given as a list of integers with
hardened indices >= 0x80000000.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from coincurve import PrivateKey, PublicKey

from .base58 import Base58Error, b58check_decode, b58check_encode
from .hashes import hash160

HARDENED = 0x80000000
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # group order (range checks only)

# version bytes: (private, public)
MAINNET_VERSIONS = (0x0488ADE4, 0x0488B21E)  # xprv, xpub
TESTNET_VERSIONS = (0x04358394, 0x043587CF)  # tprv, tpub
_PRIVATE_VERSIONS = {MAINNET_VERSIONS[0]: "bitcoin", TESTNET_VERSIONS[0]: "testnet"}
_PUBLIC_VERSIONS = {MAINNET_VERSIONS[1]: "bitcoin", TESTNET_VERSIONS[1]: "testnet"}

Path = Union[str, Sequence[int]]


class Bip32Error(ValueError):
    """Invalid seed, path, derivation or serialized extended key."""


def _versions(network: str) -> tuple[int, int]:
    """xprv/xpub on mainnet ("bitcoin"), tprv/tpub on every test network."""
    if network in ("bitcoin", "main", "mainnet"):
        return MAINNET_VERSIONS
    if network in ("testnet", "signet", "regtest", "test", "testnet4"):
        return TESTNET_VERSIONS
    raise Bip32Error(f"unknown network {network!r}")


def parse_path(path: Path) -> list[int]:
    """"m/0h/1/2'" -> [0x80000000, 1, 0x80000002]; a sequence of ints is checked and copied."""
    if not isinstance(path, str):
        out = [int(i) for i in path]
        for i in out:
            if not 0 <= i <= 0xFFFFFFFF:
                raise Bip32Error(f"path index {i} out of range")
        return out
    s = path.strip()
    if s in ("", "m", "M"):
        return []
    parts = s.split("/")
    if parts[0] in ("m", "M"):
        parts = parts[1:]
    out = []
    for p in parts:
        hardened = p[-1:] in ("h", "H", "'")
        digits = p[:-1] if hardened else p
        if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
            raise Bip32Error(f"invalid path element {p!r} in {path!r}")
        n = int(digits)
        if n >= HARDENED:
            raise Bip32Error(f"path element {p!r} out of range (must be < 2^31)")
        out.append(n + HARDENED if hardened else n)
    return out


def format_path(indices: Iterable[int], hardened_marker: str = "h") -> str:
    """[0x80000056, 0] -> "m/86h/0"."""
    parts = ["m"]
    for i in indices:
        parts.append(f"{i - HARDENED}{hardened_marker}" if i >= HARDENED else str(i))
    return "/".join(parts)


def _hmac512(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha512).digest()


def _check_index(index: int) -> None:
    if not 0 <= index <= 0xFFFFFFFF:
        raise Bip32Error(f"child index {index} out of range")


@dataclass(frozen=True)
class ExtendedPublicKey:
    pubkey: bytes             # 33-byte compressed
    chain_code: bytes
    depth: int = 0
    parent_fingerprint: bytes = b"\x00" * 4
    child_number: int = 0
    network: str = "bitcoin"  # "bitcoin" (xpub) or any test network (tpub)

    @property
    def identifier(self) -> bytes:
        return hash160(self.pubkey)

    @property
    def fingerprint(self) -> bytes:
        """First 4 bytes of HASH160(pubkey): what children carry as parent fingerprint."""
        return self.identifier[:4]

    @property
    def xonly(self) -> bytes:
        """BIP340 x-only form (BIP86 internal key)."""
        return self.pubkey[1:]

    def derive_child(self, index: int) -> "ExtendedPublicKey":
        """CKDpub: non-hardened steps only."""
        _check_index(index)
        if index >= HARDENED:
            raise Bip32Error("cannot derive a hardened child from a public key")
        i = _hmac512(self.chain_code, self.pubkey + struct.pack(">I", index))
        il, ir = i[:32], i[32:]
        if int.from_bytes(il, "big") >= _N:
            raise Bip32Error(f"invalid child {index} (IL >= n): use the next index")
        try:
            child = PublicKey(self.pubkey).add(il)
        except ValueError:
            raise Bip32Error(f"invalid child {index} (point at infinity): use the next index") from None
        return ExtendedPublicKey(child.format(compressed=True), ir, self.depth + 1, self.fingerprint,
                                 index, self.network)

    def derive(self, path: Path) -> "ExtendedPublicKey":
        k = self
        for i in parse_path(path):
            k = k.derive_child(i)
        return k

    def serialize(self) -> bytes:
        """The 78-byte BIP32 structure (no checksum)."""
        return _serialize(_versions(self.network)[1], self.depth, self.parent_fingerprint,
                          self.child_number, self.chain_code, self.pubkey)

    def to_string(self) -> str:
        return b58check_encode(self.serialize())

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def parse(cls, s: str) -> "ExtendedPublicKey":
        k = parse_extended_key(s)
        if not isinstance(k, ExtendedPublicKey):
            raise Bip32Error("expected an extended public key, got a private one")
        return k

    @classmethod
    def from_bytes(cls, data: bytes) -> "ExtendedPublicKey":
        k = deserialize_extended_key(data)
        if not isinstance(k, ExtendedPublicKey):
            raise Bip32Error("expected an extended public key, got a private one")
        return k


@dataclass(frozen=True, repr=False)
class ExtendedPrivateKey:
    secret: bytes             # 32 bytes
    chain_code: bytes
    depth: int = 0
    parent_fingerprint: bytes = b"\x00" * 4
    child_number: int = 0
    network: str = "bitcoin"

    def __repr__(self) -> str:  # never print the secret
        return (f"ExtendedPrivateKey(depth={self.depth}, child_number={self.child_number:#x}, "
                f"fingerprint={self.fingerprint.hex()}, network={self.network!r})")

    @classmethod
    def from_seed(cls, seed: bytes, network: str = "bitcoin") -> "ExtendedPrivateKey":
        """Master key: HMAC-SHA512("Bitcoin seed", seed); seeds of 16..64 bytes."""
        if not 16 <= len(seed) <= 64:
            raise Bip32Error(f"seed must be 16 to 64 bytes, got {len(seed)}")
        _versions(network)
        i = _hmac512(b"Bitcoin seed", seed)
        il, ir = i[:32], i[32:]
        if not 0 < int.from_bytes(il, "big") < _N:
            raise Bip32Error("invalid master key for this seed")
        return cls(il, ir, network=network)

    @property
    def private_key(self) -> PrivateKey:
        return PrivateKey(self.secret)

    @property
    def pubkey(self) -> bytes:
        return PublicKey.from_valid_secret(self.secret).format(compressed=True)

    @property
    def fingerprint(self) -> bytes:
        return hash160(self.pubkey)[:4]

    @property
    def xonly(self) -> bytes:
        return self.pubkey[1:]

    def public(self) -> ExtendedPublicKey:
        """Neuter: the extended public key of the same node."""
        return ExtendedPublicKey(self.pubkey, self.chain_code, self.depth, self.parent_fingerprint,
                                 self.child_number, self.network)

    def derive_child(self, index: int) -> "ExtendedPrivateKey":
        """CKDpriv, hardened (index >= 2^31) or normal."""
        _check_index(index)
        if index >= HARDENED:
            data = b"\x00" + self.secret + struct.pack(">I", index)
        else:
            data = self.pubkey + struct.pack(">I", index)
        i = _hmac512(self.chain_code, data)
        il, ir = i[:32], i[32:]
        if int.from_bytes(il, "big") >= _N:
            raise Bip32Error(f"invalid child {index} (IL >= n): use the next index")
        try:
            child = PrivateKey(self.secret).add(il)
        except ValueError:
            raise Bip32Error(f"invalid child {index} (zero key): use the next index") from None
        return ExtendedPrivateKey(child.secret, ir, self.depth + 1, self.fingerprint, index, self.network)

    def derive(self, path: Path) -> "ExtendedPrivateKey":
        k = self
        for i in parse_path(path):
            k = k.derive_child(i)
        return k

    def serialize(self) -> bytes:
        return _serialize(_versions(self.network)[0], self.depth, self.parent_fingerprint,
                          self.child_number, self.chain_code, b"\x00" + self.secret)

    def to_string(self) -> str:
        return b58check_encode(self.serialize())

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def parse(cls, s: str) -> "ExtendedPrivateKey":
        k = parse_extended_key(s)
        if not isinstance(k, ExtendedPrivateKey):
            raise Bip32Error("expected an extended private key, got a public one")
        return k

    @classmethod
    def from_bytes(cls, data: bytes) -> "ExtendedPrivateKey":
        k = deserialize_extended_key(data)
        if not isinstance(k, ExtendedPrivateKey):
            raise Bip32Error("expected an extended private key, got a public one")
        return k


ExtendedKey = Union[ExtendedPrivateKey, ExtendedPublicKey]


@dataclass(frozen=True)
class KeyOrigin:
    """Master key fingerprint and derivation path, serialized as PSBT's BIP32
    derivation values: fingerprint || little-endian u32 indices."""
    fingerprint: bytes
    path: tuple[int, ...] = ()

    def serialize(self) -> bytes:
        return self.fingerprint + b"".join(struct.pack("<I", i) for i in self.path)

    @classmethod
    def parse(cls, data: bytes) -> "KeyOrigin":
        if len(data) < 4 or len(data) % 4:
            raise Bip32Error(f"value of {len(data)} bytes is not a fingerprint and path")
        return cls(data[:4], tuple(struct.unpack(f"<{len(data) // 4 - 1}I", data[4:])))

    def __str__(self) -> str:
        """Descriptor notation: [d34db33f/84h/0h/0h]."""
        return f"[{self.fingerprint.hex()}{format_path(self.path)[1:]}]"


def _serialize(version: int, depth: int, parent_fp: bytes, child: int, chain_code: bytes,
               key: bytes) -> bytes:
    if not 0 <= depth <= 255:
        raise Bip32Error(f"depth {depth} does not fit a byte")
    return (struct.pack(">IB", version, depth) + parent_fp + struct.pack(">I", child)
            + chain_code + key)


def deserialize_extended_key(data: bytes) -> ExtendedKey:
    """Parse the 78-byte structure with every check BIP32 asks of an importer."""
    if len(data) != 78:
        raise Bip32Error(f"extended key must be 78 bytes, got {len(data)}")
    version, depth = struct.unpack(">IB", data[:5])
    parent_fp = data[5:9]
    child = struct.unpack(">I", data[9:13])[0]
    chain_code = data[13:45]
    key = data[45:78]
    if depth == 0 and parent_fp != b"\x00" * 4:
        raise Bip32Error("zero depth with non-zero parent fingerprint")
    if depth == 0 and child != 0:
        raise Bip32Error("zero depth with non-zero index")
    if version in _PRIVATE_VERSIONS:
        if key[0] != 0:
            raise Bip32Error(f"invalid private key prefix {key[0]:02x} (public key data in a private version?)")
        if not 0 < int.from_bytes(key[1:], "big") < _N:
            raise Bip32Error("private key not in 1..n-1")
        return ExtendedPrivateKey(key[1:], chain_code, depth, parent_fp, child, _PRIVATE_VERSIONS[version])
    if version in _PUBLIC_VERSIONS:
        if key[0] not in (2, 3):
            raise Bip32Error(f"invalid public key prefix {key[0]:02x}")
        try:
            PublicKey(key)
        except ValueError:
            raise Bip32Error("public key is not a point on the curve") from None
        return ExtendedPublicKey(key, chain_code, depth, parent_fp, child, _PUBLIC_VERSIONS[version])
    raise Bip32Error(f"unknown extended key version {version:08x}")


def parse_extended_key(s: str) -> ExtendedKey:
    """xprv/xpub/tprv/tpub string -> key; Bip32Error says what is wrong."""
    try:
        raw = b58check_decode(s.strip())
    except Base58Error as e:
        raise Bip32Error(f"invalid extended key: {e}") from None
    return deserialize_extended_key(raw)
