"""Fundamental wire types of BOLT 1 (plus a few conveniences for internal CSVs).

Each type is a :class:`FieldType` object with two methods:

* ``encode(value, out)`` appends the encoding of ``value`` to the bytearray
  ``out`` (raising :class:`~wire.errors.EncodeError` for bad values);
* ``decode(buf, pos, end)`` reads one value from ``buf[pos:end]`` and returns
  ``(value, new_pos)`` (raising :class:`~wire.errors.DecodeError`).

Decoders never read past ``end``: the window is how TLV records and trailing
TLV streams bound what an inner field may consume, and every read is bounds
checked explicitly so no IndexError/struct.error can escape.

Python values: integers are ``int``, fixed-size opaque types (hashes,
signatures, points, short_channel_id) are ``bytes``, ``bool`` is ``bool``.
A single ``byte``/``u8`` field is an ``int``; arrays of them are ``bytes`` and
arrays of ``utf8`` are ``str`` (handled by the array code in ``codec.py``).
"""
from __future__ import annotations

from typing import Any

from .errors import DecodeError, EncodeError

__all__ = [
    "FieldType", "IntType", "BoolType", "WireStringType", "TruncatedIntType", "BigSizeType",
    "FixedBytesType", "PointType", "ShortChannelIdType", "SciddirOrPubkeyType",
    "OpaqueType", "FUNDAMENTAL_TYPES", "INTERNAL_TYPES",
    "encode_bigsize", "decode_bigsize", "as_bytes",
]


class FieldType:
    """Base class: a named wire type with an encoder and a decoder."""

    name: str = "?"
    #: exact encoded size in bytes when it never varies, else None
    fixed_size: int | None = None
    #: smallest possible encoding; used to reject absurd counts before looping
    min_size: int = 0
    #: True if the decoder reads until the end of its window (tu*, TLV streams)
    consumes_rest: bool = False
    #: True for integer types, which may serve as a length/count field
    is_integer: bool = False
    #: arrays of this type are ``bytes`` (or ``str`` for utf8), not lists
    byte_like: bool = False
    #: arrays of this type are ``str`` (utf8)
    text: bool = False

    def encode(self, value: Any, out: bytearray) -> None:
        raise NotImplementedError

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[Any, int]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _need(buf_end: int, pos: int, size: int, what: str) -> None:
    """Raise DecodeError unless ``size`` bytes are available at ``pos``."""
    if pos + size > buf_end:
        raise DecodeError(f"truncated {what}: need {size} bytes, have {max(buf_end - pos, 0)}")


def _check_int(value: Any, lo: int, hi: int, what: str) -> int:
    # bool is an int subclass; accepting True as 1 is harmless and handy.
    if not isinstance(value, int):
        raise EncodeError(f"{what} needs an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise EncodeError(f"{value} out of range for {what} [{lo}, {hi}]")
    return value


def as_bytes(value: Any, what: str) -> bytes:
    """Coerce a bytes-like value (or an object with ``__bytes__``) to bytes.

    Integers and strings are refused: ``bytes(5)`` would silently produce five
    zero bytes, and text has no single obvious encoding for binary fields.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if hasattr(value, "__bytes__") and not isinstance(value, (int, str)):
        return bytes(value)
    raise EncodeError(f"{what} needs bytes, got {type(value).__name__}")


class IntType(FieldType):
    """Fixed-width big-endian integer (u8..u64, s8..s64, byte)."""

    is_integer = True

    def __init__(self, name: str, size: int, signed: bool = False) -> None:
        self.name, self.size, self.signed = name, size, signed
        self.fixed_size = self.min_size = size
        self.byte_like = size == 1 and not signed
        bits = 8 * size
        self.lo = -(1 << (bits - 1)) if signed else 0
        self.hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, int) or not self.lo <= value <= self.hi:
            _check_int(value, self.lo, self.hi, self.name)     # raises
        out += value.to_bytes(self.size, "big", signed=self.signed)

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[int, int]:
        stop = pos + self.size
        if stop > end:
            _need(end, pos, self.size, self.name)              # raises
        return int.from_bytes(buf[pos:stop], "big", signed=self.signed), stop


class Utf8Type(IntType):
    """``utf8``: one byte of a UTF-8 string; arrays of it decode to ``str``."""

    text = True

    def __init__(self) -> None:
        super().__init__("utf8", 1)


class BoolType(FieldType):
    """One byte, strictly 0 or 1 (CLN's ``bool``; not a BOLT type)."""

    name = "bool"
    fixed_size = min_size = 1

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, int) or value not in (0, 1):
            raise EncodeError(f"bool needs True/False, got {value!r}")
        out.append(1 if value else 0)

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[bool, int]:
        _need(end, pos, 1, "bool")
        if buf[pos] > 1:
            raise DecodeError(f"invalid bool byte {buf[pos]}")
        return buf[pos] == 1, pos + 1


class WireStringType(FieldType):
    """``wirestring``: a u16 byte length, then that many bytes of UTF-8; a
    ``str``.  (Core Lightning's wirestring is NUL-terminated; ours is
    length-prefixed, so it may hold any text.)"""

    name = "wirestring"
    min_size = 2

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, str):
            raise EncodeError(f"wirestring needs str, got {type(value).__name__}")
        data = value.encode("utf-8")
        if len(data) > 0xFFFF:
            raise EncodeError(f"wirestring too long ({len(data)} bytes)")
        out += len(data).to_bytes(2, "big")
        out += data

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[str, int]:
        _need(end, pos, 2, self.name)
        n = int.from_bytes(buf[pos:pos + 2], "big")
        _need(end, pos + 2, n, self.name)
        try:
            return bytes(buf[pos + 2:pos + 2 + n]).decode("utf-8"), pos + 2 + n
        except UnicodeDecodeError:
            raise DecodeError("invalid utf8 string") from None


class TruncatedIntType(FieldType):
    """``tu16``/``tu32``/``tu64``: minimal big-endian, fills the rest of a TLV record.

    BOLT 1: leading zeros MUST be omitted, so zero is the empty string and a
    leading 0x00 byte is a non-minimal (rejected) encoding.
    """

    consumes_rest = True
    is_integer = True

    def __init__(self, name: str, max_size: int) -> None:
        self.name, self.max_size = name, max_size
        self.hi = (1 << (8 * max_size)) - 1

    def encode(self, value: Any, out: bytearray) -> None:
        _check_int(value, 0, self.hi, self.name)
        out += value.to_bytes((value.bit_length() + 7) // 8, "big")

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[int, int]:
        size = end - pos
        if size > self.max_size:
            raise DecodeError(f"{self.name} too long: {size} bytes > {self.max_size}")
        if size and buf[pos] == 0:
            raise DecodeError(f"{self.name} not minimally encoded")
        return int.from_bytes(buf[pos:end], "big"), end


def encode_bigsize(value: int) -> bytes:
    """Encode ``value`` as a BOLT 1 BigSize (1, 3, 5 or 9 bytes)."""
    _check_int(value, 0, (1 << 64) - 1, "bigsize")
    if value < 0xFD:
        return bytes((value,))
    if value < 0x10000:
        return b"\xfd" + value.to_bytes(2, "big")
    if value < 0x100000000:
        return b"\xfe" + value.to_bytes(4, "big")
    return b"\xff" + value.to_bytes(8, "big")


# prefix byte -> (payload size, smallest value that needs this size)
_BIGSIZE_WIDE = {0xFD: (2, 0xFD), 0xFE: (4, 0x10000), 0xFF: (8, 0x100000000)}


def decode_bigsize(buf: bytes, pos: int = 0, end: int | None = None) -> tuple[int, int]:
    """Decode a BigSize at ``buf[pos:end]``; returns ``(value, new_pos)``.

    Rejects truncated input and non-canonical (non-minimal) encodings, as
    BOLT 1 Appendix A requires.
    """
    if end is None:
        end = len(buf)
    _need(end, pos, 1, "bigsize")
    first = buf[pos]
    if first < 0xFD:
        return first, pos + 1
    size, minimum = _BIGSIZE_WIDE[first]
    _need(end, pos + 1, size, "bigsize")
    value = int.from_bytes(buf[pos + 1:pos + 1 + size], "big")
    if value < minimum:
        raise DecodeError("decoded bigsize is not canonical")
    return value, pos + 1 + size


class BigSizeType(FieldType):
    """``bigsize`` as a field type."""

    name = "bigsize"
    min_size = 1
    is_integer = True

    def encode(self, value: Any, out: bytearray) -> None:
        out += encode_bigsize(value)

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[int, int]:
        return decode_bigsize(buf, pos, end)


class FixedBytesType(FieldType):
    """An opaque fixed-size byte string (hashes, signatures, channel ids...)."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.fixed_size = self.min_size = size
        #: any bytes of the right size are valid (no subclass check in to_bytes)
        self._plain = type(self).to_bytes is FixedBytesType.to_bytes

    def to_bytes(self, value: Any) -> bytes:
        data = as_bytes(value, self.name)
        if len(data) != self.size:
            raise EncodeError(f"{self.name} must be {self.size} bytes, got {len(data)}")
        return data

    def encode(self, value: Any, out: bytearray) -> None:
        if value.__class__ is bytes and len(value) == self.size and self._plain:
            out += value                                        # the common case, checked
        else:
            out += self.to_bytes(value)

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
        stop = pos + self.size
        if stop > end:
            _need(end, pos, self.size, self.name)              # raises
        return bytes(buf[pos:stop]), stop


class PointType(FixedBytesType):
    """33-byte compressed secp256k1 point, kept as bytes.

    Only the SEC1 prefix (0x02/0x03) is checked: enough to reject the
    uncompressed-prefix vector of BOLT 1 Appendix B cheaply.  Full on-curve
    validation is left to whoever uses the key (it costs an EC operation).
    """

    def __init__(self, name: str = "point") -> None:
        super().__init__(name, 33)

    def to_bytes(self, value: Any) -> bytes:
        data = super().to_bytes(value)
        if data[0] not in (2, 3):
            raise EncodeError(f"{self.name} must start with 0x02 or 0x03")
        return data

    def encode(self, value: Any, out: bytearray) -> None:
        if value.__class__ is bytes and len(value) == 33 and value[0] in (2, 3):
            out += value
        else:
            out += self.to_bytes(value)

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
        data, stop = super().decode(buf, pos, end)
        if data[0] not in (2, 3):
            raise DecodeError(f"{self.name} is not a valid compressed point (prefix {data[0]:#04x})")
        return data, stop


class ShortChannelIdType(FixedBytesType):
    """8-byte ``short_channel_id``; decodes to bytes, also encodes from an int."""

    def __init__(self) -> None:
        super().__init__("short_channel_id", 8)

    def to_bytes(self, value: Any) -> bytes:
        if isinstance(value, int):
            return _check_int(value, 0, (1 << 64) - 1, self.name).to_bytes(8, "big")
        return super().to_bytes(value)


class SciddirOrPubkeyType(FieldType):
    """``sciddir_or_pubkey``: 9 bytes (0|1 + scid) or a 33-byte point (02|03 ...)."""

    name = "sciddir_or_pubkey"
    min_size = 9

    def encode(self, value: Any, out: bytearray) -> None:
        data = as_bytes(value, self.name)
        if not data or (data[0] in (0, 1) and len(data) != 9) or \
                (data[0] in (2, 3) and len(data) != 33) or data[0] > 3:
            raise EncodeError(f"{self.name} must be 0|1 + 8-byte scid or a 33-byte point")
        out += data

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
        _need(end, pos, 1, self.name)
        first = buf[pos]
        if first > 3:
            raise DecodeError(f"invalid {self.name} prefix {first:#04x}")
        size = 9 if first < 2 else 33
        _need(end, pos, size, self.name)
        return bytes(buf[pos:pos + size]), pos + size


class OpaqueType(FieldType):
    """A type the schema names but does not define, kept as the raw bytes.

    Only allowed as the final field of a TLV record (whose length bounds it):
    e.g. the BOLT 12 ``tlv_invoice_request`` carried inside ``onionmsg_tlv``.
    """

    consumes_rest = True

    def __init__(self, name: str) -> None:
        self.name = name

    def encode(self, value: Any, out: bytearray) -> None:
        out += as_bytes(value, self.name)

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
        return bytes(buf[pos:end]), end


def _build_fundamentals() -> dict[str, FieldType]:
    types: list[FieldType] = [
        IntType("byte", 1), IntType("u8", 1), IntType("u16", 2), IntType("u32", 4),
        IntType("u64", 8), IntType("s8", 1, True), IntType("s16", 2, True),
        IntType("s32", 4, True), IntType("s64", 8, True), Utf8Type(),
        TruncatedIntType("tu16", 2), TruncatedIntType("tu32", 4), TruncatedIntType("tu64", 8),
        BigSizeType(), FixedBytesType("chain_hash", 32), FixedBytesType("channel_id", 32),
        FixedBytesType("sha256", 32), FixedBytesType("signature", 64),
        FixedBytesType("bip340sig", 64), FixedBytesType("point32", 32), PointType(),
        ShortChannelIdType(), SciddirOrPubkeyType(),
    ]
    return {t.name: t for t in types}


#: Every fundamental type of BOLT 1, by CSV name.
FUNDAMENTAL_TYPES: dict[str, FieldType] = _build_fundamentals()

#: Extra names used by Core Lightning's internal (master<->subdaemon) CSVs.
#: Not loaded by default; pass ``extra_types=INTERNAL_TYPES`` to opt in.
INTERNAL_TYPES: dict[str, FieldType] = {
    "bool": BoolType(),
    "wirestring": WireStringType(),
    "amount_msat": IntType("amount_msat", 8),
    "amount_sat": IntType("amount_sat", 8),
    "node_id": PointType("node_id"),
    "pubkey": PointType("pubkey"),
    "secret": FixedBytesType("secret", 32),
    "privkey": FixedBytesType("privkey", 32),
    "preimage": FixedBytesType("preimage", 32),
    "bitcoin_txid": FixedBytesType("bitcoin_txid", 32),
    "bitcoin_blkid": FixedBytesType("bitcoin_blkid", 32),
    "secp256k1_ecdsa_signature": FixedBytesType("secp256k1_ecdsa_signature", 64),
}
