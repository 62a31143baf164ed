"""Blocks and headers: serialization, hashes, merkle roots, the BIP141 witness
commitment and compact difficulty targets."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .hashes import hash256
from .serialize import ByteReader, DeserializationError, ser_compact_size
from .tx import Tx

WITNESS_COMMITMENT_HEADER = bytes.fromhex("aa21a9ed")


@dataclass
class BlockHeader:
    version: int
    prev_hash: bytes     # internal byte order
    merkle_root: bytes   # internal byte order
    time: int
    bits: int
    nonce: int

    def serialize(self) -> bytes:
        return (struct.pack("<i", self.version) + self.prev_hash + self.merkle_root
                + struct.pack("<III", self.time, self.bits, self.nonce))

    @classmethod
    def read(cls, r: ByteReader) -> "BlockHeader":
        version = r.i32()
        prev = r.read(32)
        root = r.read(32)
        t, bits, nonce = r.u32(), r.u32(), r.u32()
        return cls(version, prev, root, t, bits, nonce)

    @classmethod
    def parse(cls, data: bytes) -> "BlockHeader":
        if len(data) != 80:
            raise DeserializationError("block header must be 80 bytes")
        return cls.read(ByteReader(data))

    def hash(self) -> bytes:
        return hash256(self.serialize())

    @property
    def hash_hex(self) -> str:
        return self.hash()[::-1].hex()

    @property
    def prev_hash_hex(self) -> str:
        return self.prev_hash[::-1].hex()


@dataclass
class Block:
    header: BlockHeader
    txs: list[Tx] = field(default_factory=list)

    def serialize(self) -> bytes:
        return self.header.serialize() + ser_compact_size(len(self.txs)) + b"".join(t.serialize() for t in self.txs)

    @classmethod
    def parse(cls, data: bytes) -> "Block":
        r = ByteReader(data)
        header = BlockHeader.read(r)
        n = r.compact_size()
        if n > r.remaining() // 60 + 1:
            raise DeserializationError("too many transactions for the data")
        txs = [Tx.read(r) for _ in range(n)]
        if not r.at_end():
            raise DeserializationError("trailing bytes after block")
        return cls(header, txs)

    def hash(self) -> bytes:
        return self.header.hash()

    @property
    def hash_hex(self) -> str:
        return self.header.hash_hex

    def weight(self) -> int:
        base = 80 + len(ser_compact_size(len(self.txs))) + sum(len(t.serialize(False)) for t in self.txs)
        total = len(self.serialize())
        return base * 3 + total


def merkle_root(hashes: list[bytes]) -> bytes:
    """Bitcoin merkle root of internal-order hashes (duplicating the last odd one)."""
    if not hashes:
        return b"\x00" * 32
    level = list(hashes)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hash256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def witness_commitment(txs: list[Tx], reserved: bytes = b"\x00" * 32) -> bytes:
    """BIP141 commitment: hash256(witness merkle root || witness reserved value);
    the coinbase's wtxid counts as zero."""
    wtxids = [b"\x00" * 32] + [t.wtxid() for t in txs[1:]]
    return hash256(merkle_root(wtxids) + reserved)


def witness_commitment_script(commitment: bytes) -> bytes:
    return b"\x6a\x24" + WITNESS_COMMITMENT_HEADER + commitment


def bits_to_target(bits: int) -> int:
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if exponent <= 3:
        return mantissa >> (8 * (3 - exponent))
    return mantissa << (8 * (exponent - 3))


def check_proof_of_work(header: BlockHeader) -> bool:
    return int.from_bytes(header.hash(), "little") <= bits_to_target(header.bits)
