"""Bitcoin's consensus serialization helpers: CompactSize and a bounds-checked reader."""
from __future__ import annotations

import struct


class DeserializationError(ValueError):
    """Raised for any malformed Bitcoin serialization (truncated, non-canonical...)."""


def ser_compact_size(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative compact size")
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


def ser_bytes(b: bytes) -> bytes:
    """Length-prefixed byte string (scripts, witness items)."""
    return ser_compact_size(len(b)) + b


class ByteReader:
    """Reads little-endian Bitcoin fields from a buffer; every overrun raises
    DeserializationError rather than IndexError/struct.error."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = memoryview(bytes(buf))
        self.pos = pos

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise DeserializationError(f"truncated: need {n} bytes at offset {self.pos}, have {self.remaining()}")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def peek(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise DeserializationError("truncated")
        return bytes(self.buf[self.pos:self.pos + n])

    def u8(self) -> int:
        return self.read(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.read(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.read(4))[0]

    def i32(self) -> int:
        return struct.unpack("<i", self.read(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.read(8))[0]

    def i64(self) -> int:
        return struct.unpack("<q", self.read(8))[0]

    def compact_size(self) -> int:
        first = self.u8()
        if first < 0xFD:
            return first
        if first == 0xFD:
            n = self.u16()
            minimum = 0xFD
        elif first == 0xFE:
            n = self.u32()
            minimum = 0x10000
        else:
            n = self.u64()
            minimum = 0x100000000
        if n < minimum:
            raise DeserializationError("non-canonical compact size")
        return n

    def var_bytes(self) -> bytes:
        return self.read(self.compact_size())

    def at_end(self) -> bool:
        return self.pos == len(self.buf)
