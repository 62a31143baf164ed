"""Bitcoin transactions: serialization (with and without witness), txid/wtxid,
weight, and the BIP143 segwit v0 signature hash."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .hashes import hash256
from .serialize import ByteReader, DeserializationError, ser_bytes, ser_compact_size

SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80

SEQUENCE_FINAL = 0xFFFFFFFF


@dataclass(frozen=True)
class OutPoint:
    """A previous output. `txid` is in internal byte order (as serialized)."""

    txid: bytes
    index: int

    def serialize(self) -> bytes:
        return self.txid + struct.pack("<I", self.index)

    @property
    def txid_hex(self) -> str:
        """Display order (byte-reversed), as bitcoind prints it."""
        return self.txid[::-1].hex()

    @classmethod
    def from_hex(cls, txid_hex: str, index: int) -> "OutPoint":
        return cls(bytes.fromhex(txid_hex)[::-1], index)

    def __str__(self) -> str:
        return f"{self.txid_hex}:{self.index}"


@dataclass
class TxIn:
    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = SEQUENCE_FINAL
    witness: list[bytes] = field(default_factory=list)


@dataclass
class TxOut:
    value: int  # satoshis
    script_pubkey: bytes

    def serialize(self) -> bytes:
        return struct.pack("<q", self.value) + ser_bytes(self.script_pubkey)


@dataclass
class Tx:
    version: int = 2
    inputs: list[TxIn] = field(default_factory=list)
    outputs: list[TxOut] = field(default_factory=list)
    locktime: int = 0

    # -- serialization ---------------------------------------------------------
    def has_witness(self) -> bool:
        return any(i.witness for i in self.inputs)

    def serialize(self, include_witness: bool = True) -> bytes:
        with_wit = include_witness and self.has_witness()
        out = bytearray(struct.pack("<i", self.version))
        if with_wit:
            out += b"\x00\x01"
        out += ser_compact_size(len(self.inputs))
        for i in self.inputs:
            out += i.prevout.serialize() + ser_bytes(i.script_sig) + struct.pack("<I", i.sequence)
        out += ser_compact_size(len(self.outputs))
        for o in self.outputs:
            out += o.serialize()
        if with_wit:
            for i in self.inputs:
                out += ser_compact_size(len(i.witness))
                for item in i.witness:
                    out += ser_bytes(item)
        out += struct.pack("<I", self.locktime)
        return bytes(out)

    def to_hex(self) -> str:
        return self.serialize().hex()

    @classmethod
    def parse(cls, data: bytes) -> "Tx":
        r = ByteReader(data)
        tx = cls.read(r)
        if not r.at_end():
            raise DeserializationError("trailing bytes after transaction")
        return tx

    @classmethod
    def from_hex(cls, h: str) -> "Tx":
        try:
            raw = bytes.fromhex(h)
        except ValueError as e:
            raise DeserializationError(f"not hex: {e}") from None
        return cls.parse(raw)

    @classmethod
    def read(cls, r: ByteReader) -> "Tx":
        version = r.i32()
        n_in = r.compact_size()
        segwit = False
        if n_in == 0:
            flag = r.u8()
            if flag != 1:
                raise DeserializationError("bad segwit flag")
            segwit = True
            n_in = r.compact_size()
        if n_in > r.remaining() // 41 + 1:
            raise DeserializationError("too many inputs for the data")
        inputs = []
        for _ in range(n_in):
            txid = r.read(32)
            idx = r.u32()
            ss = r.var_bytes()
            seq = r.u32()
            inputs.append(TxIn(OutPoint(txid, idx), ss, seq))
        n_out = r.compact_size()
        if n_out > r.remaining() // 9 + 1:
            raise DeserializationError("too many outputs for the data")
        outputs = []
        for _ in range(n_out):
            value = r.i64()
            outputs.append(TxOut(value, r.var_bytes()))
        if segwit:
            for i in inputs:
                n = r.compact_size()
                if n > r.remaining() + 1:
                    raise DeserializationError("too many witness items")
                i.witness = [r.var_bytes() for _ in range(n)]
            if not any(i.witness for i in inputs):
                raise DeserializationError("superfluous witness flag")
        locktime = r.u32()
        return cls(version, inputs, outputs, locktime)

    # -- identifiers and size --------------------------------------------------
    def txid(self) -> bytes:
        """Internal byte order."""
        return hash256(self.serialize(include_witness=False))

    @property
    def txid_hex(self) -> str:
        return self.txid()[::-1].hex()

    def wtxid(self) -> bytes:
        return hash256(self.serialize(include_witness=True))

    def weight(self) -> int:
        base = len(self.serialize(include_witness=False))
        total = len(self.serialize(include_witness=True))
        return base * 3 + total

    def vsize(self) -> int:
        return (self.weight() + 3) // 4

    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].prevout.txid == b"\x00" * 32 \
            and self.inputs[0].prevout.index == 0xFFFFFFFF

    def copy(self) -> "Tx":
        return Tx.parse(self.serialize())

    # -- signature hashes --------------------------------------------------------
    def sighash_segwit_v0(self, input_index: int, script_code: bytes, amount: int,
                          sighash: int = SIGHASH_ALL) -> bytes:
        """BIP143 digest for input `input_index` spending `amount` satoshis."""
        base = sighash & 0x1F
        anyone = bool(sighash & SIGHASH_ANYONECANPAY)
        zero = b"\x00" * 32
        hash_prevouts = zero if anyone else hash256(b"".join(i.prevout.serialize() for i in self.inputs))
        if anyone or base in (SIGHASH_SINGLE, SIGHASH_NONE):
            hash_sequence = zero
        else:
            hash_sequence = hash256(b"".join(struct.pack("<I", i.sequence) for i in self.inputs))
        if base not in (SIGHASH_SINGLE, SIGHASH_NONE):
            hash_outputs = hash256(b"".join(o.serialize() for o in self.outputs))
        elif base == SIGHASH_SINGLE and input_index < len(self.outputs):
            hash_outputs = hash256(self.outputs[input_index].serialize())
        else:
            hash_outputs = zero
        txin = self.inputs[input_index]
        preimage = (
            struct.pack("<i", self.version)
            + hash_prevouts
            + hash_sequence
            + txin.prevout.serialize()
            + ser_bytes(script_code)
            + struct.pack("<q", amount)
            + struct.pack("<I", txin.sequence)
            + hash_outputs
            + struct.pack("<I", self.locktime)
            + struct.pack("<I", sighash)
        )
        return hash256(preimage)
