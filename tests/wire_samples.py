"""Random but valid values for any schema type (for round-trip tests and fuzzing).

``sample_message(schema, name, rng)`` returns a fields dict that
``schema.encode(name, ...)`` accepts and that decodes back to itself.  Values
are biased toward boundaries (0, 1, max) because that is where codecs break.
"""
from __future__ import annotations

import random
from typing import Any

from wire.codec import REST, Field, Struct, TlvStream
from wire.fundamental import (
    BigSizeType, BoolType, FieldType, FixedBytesType, IntType, OpaqueType, PointType,
    SciddirOrPubkeyType, TruncatedIntType,
)
from wire.schema import MessageSchema

__all__ = ["sample_value", "sample_struct", "sample_tlv_stream", "sample_message"]


def _int(rng: random.Random, lo: int, hi: int) -> int:
    choice = rng.random()
    if choice < 0.15:
        return lo
    if choice < 0.3:
        return hi
    if choice < 0.45:
        return min(hi, max(lo, rng.choice((0, 1, 0xFC, 0xFD, 0xFFFF, 0x10000))))
    bits = rng.randint(0, (hi - lo).bit_length())
    return lo + rng.getrandbits(bits) % (hi - lo + 1)


def _bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def sample_value(ftype: FieldType, rng: random.Random, depth: int = 0) -> Any:
    """One random valid value of a single (non-array) field of type ``ftype``."""
    if isinstance(ftype, BoolType):
        return rng.random() < 0.5
    if isinstance(ftype, IntType):
        return _int(rng, ftype.lo, ftype.hi)
    if isinstance(ftype, TruncatedIntType):
        return _int(rng, 0, ftype.hi)
    if isinstance(ftype, BigSizeType):
        return _int(rng, 0, (1 << 64) - 1)
    if isinstance(ftype, PointType):
        return bytes((rng.choice((2, 3)),)) + _bytes(rng, 32)
    if isinstance(ftype, FixedBytesType):
        return _bytes(rng, ftype.size)
    if isinstance(ftype, SciddirOrPubkeyType):
        first = rng.randint(0, 3)
        return bytes((first,)) + _bytes(rng, 8 if first < 2 else 32)
    if isinstance(ftype, OpaqueType):
        return _bytes(rng, rng.randint(0, 40))
    if isinstance(ftype, Struct):
        return sample_struct(ftype, rng, depth + 1)
    if isinstance(ftype, TlvStream):
        return sample_tlv_stream(ftype, rng, depth + 1)
    raise TypeError(f"no sampler for {ftype!r}")


def _sample_array(f: Field, n: int | None, rng: random.Random, depth: int) -> Any:
    if n is None:  # '...': any number of elements
        n = rng.randint(0, 24 if f.type.byte_like else 3)
    if f.type.text:
        # n counts UTF-8 bytes, so pick characters that exactly fill it.
        chars: list[str] = []
        left = n
        while left:
            char = rng.choice([c for c in "a é€😀" if len(c.encode()) <= left])
            chars.append(char)
            left -= len(char.encode())
        return "".join(chars)
    if f.type.byte_like:
        return _bytes(rng, n)
    return [sample_value(f.type, rng, depth) for _ in range(n)]


def sample_struct(struct: Struct, rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """Random field values for ``struct`` (length fields are left out)."""
    counts: dict[str, int] = {}
    values: dict[str, Any] = {}
    for f in struct.fields:
        if f.name in struct.length_fields:
            # Keep nested arrays small so samples stay cheap, but respect the
            # length field's range (a single byte cannot count 300 elements).
            byte_arrays = all(struct.by_name[a].type.byte_like for a in struct.length_fields[f.name])
            hi = 0 if depth >= 3 else 40 if byte_arrays else 3
            counts[f.name] = rng.randint(0, hi)
            continue
        if f.optional and rng.random() < 0.3:
            values[f.name] = None
        elif f.count is None:
            values[f.name] = sample_value(f.type, rng, depth)
        elif f.count is REST:
            values[f.name] = _sample_array(f, None, rng, depth)
        else:
            n = f.count if isinstance(f.count, int) else counts[f.count]
            values[f.name] = _sample_array(f, n, rng, depth)
    return values


def sample_tlv_stream(stream: TlvStream, rng: random.Random, depth: int = 0,
                      unknown_odd: bool = True) -> dict[Any, Any]:
    """A random subset of ``stream``'s records, plus maybe an unknown odd one."""
    values: dict[Any, Any] = {}
    for rec in stream.records:
        if rng.random() < 0.6 and depth < 4:
            values[rec.name] = sample_struct(rec.struct, rng, depth)
    if unknown_odd and rng.random() < 0.3:
        number = _int(rng, 0, (1 << 63) - 1) * 2 + 1
        if number not in stream.by_number:
            values[number] = _bytes(rng, rng.randint(0, 10))
    return values


def sample_message(schema: MessageSchema, name: str, rng: random.Random) -> dict[str, Any]:
    """Random fields for message ``name`` of ``schema``."""
    return sample_struct(schema.message(name).struct, rng)
