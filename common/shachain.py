"""BOLT 3 per-commitment secrets: generation from a seed and compact storage.

The sender derives secret ``I`` from a single seed by walking the 48 bits of
``I`` from the top, flipping a bit and hashing for every set bit.  Because the
first secret has index 2^48-1 and indices count down, a secret whose index ends
in ``k`` zero bits lets the receiver re-derive the secrets of all indices sharing
its 48-k bit prefix -- exactly those revealed before it -- so 49 (index, secret)
slots suffice to keep them all.

Commitment number ``n`` uses index ``2^48 - 1 - n`` (see
:func:`commitment_index`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bitcoin.hashes import sha256

from .keyderive import pubkey_from_secret

SHACHAIN_BITS = 48
MAX_INDEX = (1 << SHACHAIN_BITS) - 1  # index of the first secret ever used
_NUM_SLOTS = SHACHAIN_BITS + 1


class ShachainError(ValueError):
    """An inserted secret does not chain with the stored ones, or a bad index."""


def _flip_and_hash(value: bytearray, bit: int) -> bytearray:
    # "flip(B) alternates the (B mod 8) bit of the (B div 8) byte"
    value[bit // 8] ^= 1 << (bit % 8)
    return bytearray(sha256(bytes(value)))


def derive_secret(base: bytes, bits: int, index: int) -> bytes:
    """Derive secret ``index`` from ``base`` whose index shares bits ``bits..47``."""
    p = bytearray(base)
    for b in range(bits - 1, -1, -1):
        if (index >> b) & 1:
            p = _flip_and_hash(p, b)
    return bytes(p)


def generate_from_seed(seed: bytes, index: int) -> bytes:
    """The spec's ``generate_from_seed(seed, I)``."""
    if len(seed) != 32:
        raise ShachainError("seed must be 32 bytes")
    if not 0 <= index <= MAX_INDEX:
        raise ShachainError(f"index {index} out of range")
    return derive_secret(seed, SHACHAIN_BITS, index)


def commitment_index(commitment_number: int) -> int:
    """Shachain index of commitment number ``n`` (commitment 0 uses 2^48-1)."""
    if not 0 <= commitment_number <= MAX_INDEX:
        raise ShachainError(f"commitment number {commitment_number} out of range")
    return MAX_INDEX - commitment_number


def per_commitment_secret(seed: bytes, commitment_number: int) -> bytes:
    """Secret revealed (in revoke_and_ack) to revoke commitment ``commitment_number``."""
    return generate_from_seed(seed, commitment_index(commitment_number))


def per_commitment_point(seed: bytes, commitment_number: int) -> bytes:
    """``per_commitment_secret * G`` for commitment ``commitment_number``."""
    return pubkey_from_secret(per_commitment_secret(seed, commitment_number))


def where_to_put_secret(index: int) -> int:
    """Number of trailing zero bits of ``index`` (48 for index 0)."""
    for b in range(SHACHAIN_BITS):
        if (index >> b) & 1:
            return b
    return SHACHAIN_BITS


@dataclass
class ShachainStore:
    """Receiver-side compact storage of the peer's revealed per-commitment secrets.

    ``known[b]`` holds the last received secret whose index has exactly ``b``
    trailing zeros; every older secret can be re-derived from one of them.
    Secrets must be inserted in strictly decreasing index order, as they are
    revealed on the wire.
    """

    known: list[tuple[int, bytes] | None] = field(default_factory=lambda: [None] * _NUM_SLOTS)
    #: lowest index inserted so far (None before the first insertion)
    min_index: int | None = None

    def insert_secret(self, secret: bytes, index: int) -> None:
        """Store ``secret`` for ``index``; raise :class:`ShachainError` if it does not
        derive every previously stored secret it should (i.e. a different seed)."""
        if len(secret) != 32:
            raise ShachainError("secret must be 32 bytes")
        if not 0 <= index <= MAX_INDEX:
            raise ShachainError(f"index {index} out of range")
        if self.min_index is not None and index >= self.min_index:
            raise ShachainError(f"index {index} not below previous {self.min_index}")
        pos = where_to_put_secret(index)
        # Every slot below `pos` holds an index under this one's prefix: check
        # we can re-derive it, otherwise the peer is not using one seed.
        for b in range(pos):
            entry = self.known[b]
            if entry is None:
                continue
            known_index, known_secret = entry
            if derive_secret(secret, pos, known_index) != known_secret:
                raise ShachainError(f"secret for index {index} is inconsistent with stored secrets")
        self.known[pos] = (index, bytes(secret))
        self.min_index = index

    def insert_commitment_secret(self, commitment_number: int, secret: bytes) -> None:
        """Insert the secret revoking commitment ``commitment_number``."""
        self.insert_secret(secret, commitment_index(commitment_number))

    def get_secret(self, index: int) -> bytes | None:
        """Secret for ``index`` if it was received (directly or derivably), else None."""
        if self.min_index is None or not self.min_index <= index <= MAX_INDEX:
            return None
        for b, entry in enumerate(self.known):
            if entry is None:
                continue
            known_index, known_secret = entry
            mask = ~((1 << b) - 1)
            if (index & mask) == known_index:
                return derive_secret(known_secret, b, index)
        return None

    def get_commitment_secret(self, commitment_number: int) -> bytes | None:
        return self.get_secret(commitment_index(commitment_number))

    # -- persistence: the `shachain` subtype of wire/csv/shachain.csv ----------
    def to_value(self) -> dict:
        return {"min_index": self.min_index,
                "known": [{"slot": b, "index": e[0], "secret": e[1]} for b, e in enumerate(self.known)
                          if e is not None]}

    @classmethod
    def from_value(cls, value: dict) -> "ShachainStore":
        store = cls(min_index=value["min_index"])
        for e in value["known"]:
            b = e["slot"]
            if b >= _NUM_SLOTS or where_to_put_secret(e["index"]) != b or store.known[b] is not None:
                raise ShachainError("bad shachain slot")
            if len(e["secret"]) != 32:
                raise ShachainError("secret must be 32 bytes")
            store.known[b] = (e["index"], e["secret"])
        return store
