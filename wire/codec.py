"""Composite wire types: field sequences (messages, subtypes, TLV records) and TLV streams.

A :class:`Struct` is an ordered list of :class:`Field` s.  The same class
encodes message payloads, subtypes (nested structs) and TLV record values,
because the CSV describes all three with identical ``FIELD,TYPE,COUNT`` rows.

Length fields
-------------
A field named as the COUNT of a later field is a *length field*.  Decoding
reads it, uses it, and leaves it out of the returned dict (it is redundant with
``len()`` of the array).  Encoding computes it from the array(s) it counts; if
the caller supplies it anyway it must agree, else :class:`EncodeError`.  This
keeps decoded dicts directly re-encodable and makes inconsistent lengths
impossible to send by accident.

TLV streams
-----------
A :class:`TlvStream` value is a dict keyed by record name (each value is the
record's field dict, ``{}`` for records without fields) plus, for unknown odd
records, int type -> raw bytes so a decode/encode round trip is byte exact.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import DecodeError, EncodeError, SchemaError
from .fundamental import FieldType, as_bytes, decode_bigsize, encode_bigsize

__all__ = ["REST", "Field", "Struct", "Sealed", "SealedStruct", "TlvRecord", "TlvStream", "MessageType"]

#: COUNT value meaning "as many elements as fit in the rest of the window" (``...``)
REST = ...


class Field:
    """One ``FIELD,TYPE,COUNT`` row, resolved.

    ``count`` is None (a single value), an int (fixed-size array), the name of
    an earlier length field, or :data:`REST`.  ``optional`` marks CLN's
    ``?type`` fields: a presence byte (0/1) precedes the value; None = absent.
    """

    __slots__ = ("name", "type", "count", "optional")

    def __init__(self, name: str, ftype: FieldType, count: int | str | None = None,
                 optional: bool = False) -> None:
        self.name, self.type, self.count, self.optional = name, ftype, count, optional

    @property
    def consumes_rest(self) -> bool:
        """True if decoding this field reads to the end of its window."""
        return self.count is REST or (self.count is None and self.type.consumes_rest)

    def __repr__(self) -> str:
        count = "" if self.count is None else f"[{'...' if self.count is REST else self.count}]"
        return f"Field({self.name}: {'?' if self.optional else ''}{self.type.name}{count})"


def _array_len(elem: FieldType, value: Any, what: str) -> int:
    """Number of elements the array ``value`` will encode (for length fields)."""
    if elem.text:
        if not isinstance(value, str):
            raise EncodeError(f"{what} needs str, got {type(value).__name__}")
        return len(value.encode("utf-8"))
    if elem.byte_like:
        return len(value if value.__class__ is bytes else as_bytes(value, what))
    if not isinstance(value, (list, tuple)):
        raise EncodeError(f"{what} needs a list, got {type(value).__name__}")
    return len(value)


def decode_array(elem: FieldType, n: int | None, buf: bytes, pos: int, end: int) -> tuple[Any, int]:
    """Decode ``n`` elements (or, if ``n`` is None, until ``end``)."""
    if elem.byte_like:
        stop = end if n is None else pos + n
        if stop > end:
            raise DecodeError(f"truncated {elem.name} array: need {n} bytes, have {end - pos}")
        data = bytes(buf[pos:stop])
        if elem.text:
            try:
                return data.decode("utf-8"), stop
            except UnicodeDecodeError:
                raise DecodeError("invalid utf8 string") from None
        return data, stop
    items: list[Any] = []
    size = elem.fixed_size
    if n is None:
        if size:
            if (end - pos) % size:
                raise DecodeError(f"{end - pos} bytes is not a whole number of {elem.name} ({size} bytes)")
        while pos < end:
            value, new_pos = elem.decode(buf, pos, end)
            if new_pos == pos:  # a zero-width element would loop forever
                raise DecodeError(f"empty {elem.name} element in a '...' array")
            pos = new_pos
            items.append(value)
        return items, pos
    # Reject impossible counts before looping: a hostile u64 count must not
    # make us spin (every element needs at least one byte, or its fixed size).
    if n * max(elem.min_size, 1) > end - pos:
        raise DecodeError(f"truncated {elem.name} array: {n} elements cannot fit in {end - pos} bytes")
    for index in range(n):
        try:
            value, pos = elem.decode(buf, pos, end)
        except DecodeError as err:
            raise err.within(f"[{index}]") from None
        items.append(value)
    return items, pos


def encode_array(elem: FieldType, value: Any, out: bytearray, what: str) -> None:
    """Append every element of the array ``value``."""
    if elem.text:
        out += value.encode("utf-8")  # type already checked by _array_len
    elif elem.byte_like:
        out += value if value.__class__ is bytes else as_bytes(value, what)
    else:
        for index, item in enumerate(value):
            try:
                elem.encode(item, out)
            except EncodeError as err:
                raise err.within(f"[{index}]") from None


class Struct(FieldType):
    """An ordered sequence of fields: message payload, subtype or TLV record."""

    def __init__(self, name: str, fields: list[Field]) -> None:
        self.name = name
        self.fields = fields
        self.by_name = {f.name: f for f in fields}
        self.field_names = set(self.by_name)
        #: length field name -> names of the array fields it counts
        self.length_fields: dict[str, list[str]] = {}
        self._validate()
        # each field's work, planned once: the hot loops of decode and
        # encode look nothing up but locals
        self._plan = [(f, f.name, f.type, f.type.decode, f.type.encode, f.optional, f.count,
                       f.name in self.length_fields, isinstance(f.type, TlvStream)) for f in fields]
        last = fields[-1] if fields else None
        self.consumes_rest = bool(last and last.consumes_rest)
        self.min_size = sum(self._field_min(f) for f in fields)
        sizes = [self._field_fixed(f) for f in fields]
        self.fixed_size = sum(sizes) if all(s is not None for s in sizes) and sum(sizes) > 0 else None  # type: ignore[misc]

    @staticmethod
    def _field_min(f: Field) -> int:
        if f.optional:
            return 1
        if f.count is None:
            return f.type.min_size
        return f.count * f.type.min_size if isinstance(f.count, int) else 0

    @staticmethod
    def _field_fixed(f: Field) -> int | None:
        if f.optional or f.type.fixed_size is None:
            return None
        if f.count is None:
            return f.type.fixed_size
        return f.count * f.type.fixed_size if isinstance(f.count, int) else None

    def _validate(self) -> None:
        seen: dict[str, Field] = {}
        for index, f in enumerate(self.fields):
            where = f"{self.name}.{f.name}"
            if f.name in seen:
                raise SchemaError(f"duplicate field {where}")
            if f.consumes_rest and index != len(self.fields) - 1:
                raise SchemaError(f"{where} reads to the end of its input, so it must be the last field")
            if f.count is not None and f.type.consumes_rest:
                raise SchemaError(f"{where}: cannot make an array of {f.type.name}")
            if f.optional and f.count is not None:
                raise SchemaError(f"{where}: optional arrays are not supported")
            if isinstance(f.count, str):
                ref = seen.get(f.count)
                if ref is None:
                    raise SchemaError(f"{where}: count {f.count!r} is not an earlier field")
                if not ref.type.is_integer or ref.count is not None or ref.optional or ref.type.consumes_rest:
                    raise SchemaError(f"{where}: count field {f.count!r} is not a plain integer")
                self.length_fields.setdefault(f.count, []).append(f.name)
            seen[f.name] = f

    # -- decoding -----------------------------------------------------------


    def decode(self, buf: bytes, pos: int, end: int,
               spans: dict[str, tuple[int, int]] | None = None) -> tuple[dict[str, Any], int]:
        """``spans``, if given, gets each field's (start, end) in ``buf``."""
        values: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        for f, name, ftype, dec, _enc, optional, count, is_length, _tlv in self._plan:
            start = pos
            try:
                if optional:
                    if pos >= end:
                        raise DecodeError("truncated presence flag")
                    flag = buf[pos]
                    pos += 1
                    if flag > 1:
                        raise DecodeError(f"invalid presence flag {flag}")
                    if not flag:
                        values[name] = None
                        if spans is not None:
                            spans[name] = (start, pos)
                        continue
                if count is None:
                    value, pos = dec(buf, pos, end)
                elif count is REST:
                    value, pos = decode_array(ftype, None, buf, pos, end)
                else:
                    n = count if isinstance(count, int) else lengths[count]
                    value, pos = decode_array(ftype, n, buf, pos, end)
            except DecodeError as err:
                raise err.within(name) from None
            if is_length:
                lengths[name] = value
            else:
                values[name] = value
            if spans is not None:
                spans[name] = (start, pos)
        return values, pos

    # -- encoding -----------------------------------------------------------

    def _lengths(self, values: Mapping[str, Any]) -> dict[str, int]:
        """Compute every length field from the arrays it counts."""
        lengths: dict[str, int] = {}
        for lname, arrays in self.length_fields.items():
            counts = set()
            for aname in arrays:
                if aname in values:
                    elem = self.by_name[aname].type
                    try:
                        counts.add(_array_len(elem, values[aname], elem.name))
                    except EncodeError as err:
                        raise err.within(aname) from None
            if len(counts) > 1:
                raise EncodeError(f"arrays {arrays} counted by {lname!r} differ in length")
            if not counts:
                continue  # the missing array is reported by encode()
            count = counts.pop()
            given = values.get(lname)
            if given is not None and given != count:
                raise EncodeError(f"{lname}={given!r} disagrees with array length {count}")
            lengths[lname] = count
        return lengths

    def encode(self, value: Any, out: bytearray) -> None:
        if value.__class__ is not dict and not isinstance(value, Mapping):
            raise EncodeError(f"{self.name} needs a dict of fields, got {type(value).__name__}")
        if not self.field_names.issuperset(value):
            unknown = set(value) - self.field_names
            raise EncodeError(f"{self.name} has no field(s) {sorted(map(str, unknown))}")
        lengths = self._lengths(value) if self.length_fields else _NO_LENGTHS
        for f, name, ftype, _dec, enc, optional, count, _is_length, is_tlv in self._plan:
            try:
                if name in lengths:
                    enc(lengths[name], out)
                    continue
                if name not in value:
                    if is_tlv:
                        continue  # an absent trailing TLV stream is simply empty
                    if optional:
                        out.append(0)
                        continue
                    raise EncodeError("missing field")
                item = value[name]
                if optional:
                    if item is None:
                        out.append(0)
                        continue
                    out.append(1)
                if count is None:
                    enc(item, out)
                else:
                    n = _array_len(ftype, item, ftype.name)
                    if isinstance(count, int) and n != count:
                        raise EncodeError(f"needs exactly {count} elements, got {n}")
                    encode_array(ftype, item, out, ftype.name)
            except EncodeError as err:
                raise err.within(name) from None


_NO_LENGTHS: dict[str, int] = {}


class Sealed:
    """The encoding of a *sealed* subtype, unread: what a reader holds that
    keeps sealed values shut (the master storing a daemon's private state,
    see :class:`SealedStruct`).  Encodes back byte for byte, only as a
    value of the same subtype."""

    __slots__ = ("type_name", "data")

    def __init__(self, type_name: str, data: bytes) -> None:
        self.type_name, self.data = type_name, bytes(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and (other.type_name, other.data) == (self.type_name, self.data)

    def __hash__(self) -> int:
        return hash((self.type_name, self.data))

    def __repr__(self) -> str:
        return f"Sealed({self.type_name}, {len(self.data)} bytes)"


class SealedStruct(FieldType):
    """A subtype declared ``subtype,NAME,sealed``: a u32 byte length, then
    the subtype's fields.  The daemon that owns it encodes a dict (checked
    field by field) and decodes it back to one; a schema built with
    ``keep_sealed`` decodes it to a :class:`Sealed` without reading it
    (only its length), and encodes such a value back as it came."""

    min_size = 4

    def __init__(self, struct: Struct, keep_sealed: bool = False) -> None:
        self.struct = struct
        self.name = struct.name
        self.keep_sealed = keep_sealed

    def encode(self, value: Any, out: bytearray) -> None:
        if isinstance(value, Sealed):
            if value.type_name != self.name:
                raise EncodeError(f"a sealed {value.type_name} is not a {self.name}")
            data = value.data
        elif isinstance(value, Mapping):
            body = bytearray()
            self.struct.encode(value, body)
            data = bytes(body)
        else:
            raise EncodeError(f"{self.name} needs a dict of fields or a Sealed value, got {type(value).__name__}")
        if len(data) > 0xFFFFFFFF:
            raise EncodeError(f"{self.name} too long ({len(data)} bytes)")
        out += len(data).to_bytes(4, "big")
        out += data

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[Any, int]:
        if end - pos < 4:
            raise DecodeError(f"truncated {self.name} length")
        n = int.from_bytes(buf[pos:pos + 4], "big")
        start, stop = pos + 4, pos + 4 + n
        if stop > end:
            raise DecodeError(f"truncated {self.name}: need {n} bytes, have {end - start}")
        if self.keep_sealed:
            return Sealed(self.name, bytes(buf[start:stop])), stop
        value, used = self.struct.decode(buf, start, stop)
        if used != stop:
            raise DecodeError(f"{stop - used} trailing bytes in {self.name}")
        return value, stop

    def seal(self, value: Mapping[str, Any]) -> Sealed:
        """``value`` encoded (and so checked), as a :class:`Sealed`."""
        body = bytearray()
        try:
            self.struct.encode(value, body)
        except EncodeError as err:
            raise err.within(self.name) from None
        return Sealed(self.name, bytes(body))

    def unseal(self, value: Sealed) -> dict[str, Any]:
        """The fields of a :class:`Sealed` of this subtype (checked)."""
        if value.type_name != self.name:
            raise DecodeError(f"a sealed {value.type_name} is not a {self.name}")
        try:
            fields, used = self.struct.decode(value.data, 0, len(value.data))
        except DecodeError as err:
            raise err.within(self.name) from None
        if used != len(value.data):
            raise DecodeError(f"{len(value.data) - used} trailing bytes", (self.name,))
        return fields


class TlvRecord:
    """A known record type in a TLV stream: its number and its value's fields."""

    __slots__ = ("name", "number", "struct")

    def __init__(self, name: str, number: int, struct: Struct) -> None:
        self.name, self.number, self.struct = name, number, struct

    def __repr__(self) -> str:
        return f"TlvRecord({self.name}={self.number})"


class TlvStream(FieldType):
    """A BOLT 1 TLV stream: it always consumes the rest of its window."""

    consumes_rest = True

    def __init__(self, name: str, records: list[TlvRecord]) -> None:
        self.name = name
        self.records = records
        self.by_name: dict[str, TlvRecord] = {}
        self.by_number: dict[int, TlvRecord] = {}
        for rec in records:
            if rec.name in self.by_name or rec.number in self.by_number:
                raise SchemaError(f"duplicate TLV record {name}.{rec.name} ({rec.number})")
            if not 0 <= rec.number < 1 << 64:
                raise SchemaError(f"TLV type {rec.number} of {name}.{rec.name} out of range")
            self.by_name[rec.name] = rec
            self.by_number[rec.number] = rec

    def decode(self, buf: bytes, pos: int, end: int) -> tuple[dict[Any, Any], int]:
        result: dict[Any, Any] = {}
        last = -1
        while pos < end:
            rtype, pos = decode_bigsize(buf, pos, end)
            length, pos = decode_bigsize(buf, pos, end)
            if length > end - pos:
                raise DecodeError(f"TLV {rtype}: value truncated ({length} > {end - pos} bytes)")
            # Strictly increasing types: rejects both misordering and duplicates.
            if rtype <= last:
                raise DecodeError(f"TLV {rtype} {'duplicated' if rtype == last else 'out of order'}")
            last = rtype
            stop = pos + length
            rec = self.by_number.get(rtype)
            if rec is None:
                if rtype % 2 == 0:
                    raise DecodeError(f"unknown even TLV type {rtype}")
                result[rtype] = bytes(buf[pos:stop])  # it's OK to be odd: keep raw
            else:
                try:
                    value, used = rec.struct.decode(buf, pos, stop)
                except DecodeError as err:
                    raise err.within(rec.name) from None
                if used != stop:
                    raise DecodeError(f"length {length} exceeds the encoding of the record", (rec.name,))
                result[rec.name] = value
            pos = stop
        return result, pos

    def encode(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, Mapping):
            raise EncodeError(f"TLV stream {self.name} needs a dict, got {type(value).__name__}")
        records: list[tuple[int, bytes]] = []
        for key, item in value.items():
            if item is None:
                continue  # None means "record absent": convenient for optional records
            if isinstance(key, str):
                rec = self.by_name.get(key)
                if rec is None:
                    raise EncodeError(f"TLV stream {self.name} has no record {key!r}")
                data = bytearray()
                try:
                    rec.struct.encode(item, data)
                except EncodeError as err:
                    raise err.within(key) from None
                records.append((rec.number, bytes(data)))
            elif isinstance(key, int) and not isinstance(key, bool):
                if key in self.by_number:
                    raise EncodeError(f"raw TLV {key} is the known record {self.by_number[key].name!r}: use its name")
                if key % 2 == 0 or not 0 < key < 1 << 64:
                    # Sending an unknown even type would make the peer fail us.
                    raise EncodeError(f"raw TLV type {key} must be an odd number < 2^64")
                records.append((key, as_bytes(item, f"TLV {key}")))
            else:
                raise EncodeError(f"TLV stream {self.name}: bad key {key!r}")
        records.sort(key=lambda r: r[0])
        for number, data in records:
            out += encode_bigsize(number)
            out += encode_bigsize(len(data))
            out += data


class MessageType:
    """A message: its 16-bit type number and its payload fields."""

    __slots__ = ("name", "number", "struct")

    def __init__(self, name: str, number: int, struct: Struct) -> None:
        if not 0 <= number <= 0xFFFF:
            raise SchemaError(f"message {name}: type {number} does not fit in 16 bits")
        self.name, self.number, self.struct = name, number, struct

    @property
    def fields(self) -> list[Field]:
        """The payload fields, in wire order."""
        return self.struct.fields

    def __repr__(self) -> str:
        return f"MessageType({self.name}={self.number})"
