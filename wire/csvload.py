"""Parse CSV schema text (BOLT ``extract-formats`` / CLN format) into codec objects.

Row kinds::

    msgtype,NAME,NUM              NUM may be "PERM|NODE|2" (BOLT 4 failure flags)
    msgdata,MSG,FIELD,TYPE,COUNT
    tlvtype,STREAM,RECORD,NUM
    tlvdata,STREAM,RECORD,FIELD,TYPE,COUNT
    subtype,NAME[,sealed]
    subtypedata,SUBTYPE,FIELD,TYPE,COUNT

COUNT is empty (one value), a number, an earlier field's name, or ``...``.
A TYPE prefixed with ``?`` is optional (CLN convention: a presence byte
precedes it).  A ``sealed`` subtype is carried as a u32 length and its
fields, so that a reader that does not own it can keep it unread (see
:class:`~wire.codec.SealedStruct`).  Blank lines and lines starting with ``#`` are ignored.

Parsing happens in two passes because the CSV may use a subtype before the
row that defines it (``witness`` in ``tx_signatures`` for instance).
"""
from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .codec import REST, Field, MessageType, SealedStruct, Struct, TlvRecord, TlvStream
from .errors import SchemaError
from .fundamental import FUNDAMENTAL_TYPES, FieldType, OpaqueType

__all__ = ["MSGTYPE_FLAGS", "ResolvedSchema", "parse_csv", "load_csv_text"]

#: Symbolic bits allowed in a ``msgtype`` number (BOLT 4 failure codes).
MSGTYPE_FLAGS = {"BADONION": 0x8000, "PERM": 0x4000, "NODE": 0x2000, "UPDATE": 0x1000}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class _FieldDef:
    name: str
    typename: str
    count: str
    line: int


@dataclass
class _Defs:
    # name -> (number, fields, line); dicts keep CSV order
    messages: dict[str, tuple[int, list[_FieldDef], int]] = field(default_factory=dict)
    subtypes: dict[str, tuple[list[_FieldDef], int]] = field(default_factory=dict)
    tlvs: dict[str, dict[str, tuple[int, list[_FieldDef], int]]] = field(default_factory=dict)
    sealed: set[str] = field(default_factory=set)


@dataclass
class ResolvedSchema:
    """Everything a CSV defines, as codec objects."""

    messages: list[MessageType]
    tlv_streams: dict[str, TlvStream]
    subtypes: dict[str, Struct]
    #: type names used but not defined, carried as raw bytes (see OpaqueType)
    opaque_types: set[str]


def _number(text: str, line: int) -> int:
    value = 0
    for token in text.split("|"):
        token = token.strip()
        if token in MSGTYPE_FLAGS:
            value |= MSGTYPE_FLAGS[token]
            continue
        try:
            value |= int(token, 0)
        except ValueError:
            raise SchemaError(f"line {line}: bad type number {text!r}") from None
    return value


def _name(text: str, line: int) -> str:
    if not _IDENT.match(text):
        raise SchemaError(f"line {line}: bad name {text!r}")
    return text


def parse_csv(text: str) -> _Defs:
    """First pass: collect the rows by kind, checking their shape."""
    defs = _Defs()
    for line, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        kind = row[0].strip()
        cells = [c.strip() for c in row[1:]] + [""] * 5  # pad optional trailing columns
        if kind == "msgtype":
            name = _name(cells[0], line)
            if name in defs.messages:
                raise SchemaError(f"line {line}: duplicate message {name}")
            defs.messages[name] = (_number(cells[1], line), [], line)
        elif kind == "msgdata":
            if cells[0] not in defs.messages:
                raise SchemaError(f"line {line}: msgdata for undeclared message {cells[0]!r}")
            defs.messages[cells[0]][1].append(
                _FieldDef(_name(cells[1], line), cells[2], cells[3], line))
        elif kind == "tlvtype":
            stream = defs.tlvs.setdefault(_name(cells[0], line), {})
            record = _name(cells[1], line)
            if record in stream:
                raise SchemaError(f"line {line}: duplicate TLV record {cells[0]}.{record}")
            stream[record] = (_number(cells[2], line), [], line)
        elif kind == "tlvdata":
            record_def = defs.tlvs.get(cells[0], {}).get(cells[1])
            if record_def is None:
                raise SchemaError(f"line {line}: tlvdata for undeclared record {cells[0]}.{cells[1]}")
            record_def[1].append(_FieldDef(_name(cells[2], line), cells[3], cells[4], line))
        elif kind == "subtype":
            name = _name(cells[0], line)
            if name in defs.subtypes:
                raise SchemaError(f"line {line}: duplicate subtype {name}")
            defs.subtypes[name] = ([], line)
            if cells[1] == "sealed":
                defs.sealed.add(name)
            elif cells[1]:
                raise SchemaError(f"line {line}: unknown subtype flag {cells[1]!r}")
        elif kind == "subtypedata":
            if cells[0] not in defs.subtypes:
                raise SchemaError(f"line {line}: subtypedata for undeclared subtype {cells[0]!r}")
            defs.subtypes[cells[0]][0].append(
                _FieldDef(_name(cells[1], line), cells[2], cells[3], line))
        else:
            raise SchemaError(f"line {line}: unknown row kind {kind!r}")
    for name in defs.subtypes:
        if name in defs.tlvs:
            raise SchemaError(f"{name!r} is both a subtype and a TLV stream")
    return defs


class _Resolver:
    """Second pass: turn type names into FieldType objects (memoised, cycle-safe)."""

    def __init__(self, defs: _Defs, extra_types: Mapping[str, FieldType], keep_sealed: bool = False) -> None:
        self.defs = defs
        self.keep_sealed = keep_sealed
        self.builtin = {**FUNDAMENTAL_TYPES, **extra_types}
        for name in list(defs.subtypes) + list(defs.tlvs):
            if name in self.builtin:
                raise SchemaError(f"{name!r} redefines a built-in type")
        self.done: dict[str, FieldType] = {}
        self.busy: set[str] = set()
        self.opaque: set[str] = set()

    def type(self, name: str, line: int) -> FieldType | None:
        if name in self.builtin:
            return self.builtin[name]
        if name in self.done:
            return self.done[name]
        if name in self.busy:
            raise SchemaError(f"line {line}: type {name!r} contains itself")
        if name in self.defs.subtypes:
            self.busy.add(name)
            fdefs, _ = self.defs.subtypes[name]
            built: FieldType = Struct(name, self.fields(name, fdefs, in_tlv_record=False))
            if name in self.defs.sealed:
                built = SealedStruct(built, self.keep_sealed)  # type: ignore[arg-type]
        elif name in self.defs.tlvs:
            self.busy.add(name)
            built = self.stream(name)
        else:
            return None
        self.busy.discard(name)
        self.done[name] = built
        return built

    def stream(self, name: str) -> TlvStream:
        records = [
            TlvRecord(rname, number, Struct(f"{name}.{rname}", self.fields(f"{name}.{rname}", fdefs, True)))
            for rname, (number, fdefs, _) in self.defs.tlvs[name].items()
        ]
        return TlvStream(name, records)

    def fields(self, owner: str, fdefs: list[_FieldDef], in_tlv_record: bool) -> list[Field]:
        out = []
        for index, fd in enumerate(fdefs):
            typename, optional = fd.typename, fd.typename.startswith("?")
            if optional:
                typename = typename[1:]
            ftype = self.type(typename, fd.line)
            if ftype is None:
                # An undefined type is tolerable only where a TLV length bounds
                # it (e.g. BOLT 12 streams nested in onionmsg_tlv): keep bytes.
                if in_tlv_record and index == len(fdefs) - 1 and not fd.count and not optional:
                    ftype = OpaqueType(typename)
                    self.opaque.add(typename)
                else:
                    raise SchemaError(f"line {fd.line}: {owner}.{fd.name} has unknown type {typename!r}")
            out.append(Field(fd.name, ftype, _count(fd.count, fd.line), optional))
        try:
            Struct(owner, out)  # validate (ordering of length fields etc.) early
        except SchemaError as err:
            raise SchemaError(f"line {fdefs[0].line}: {err}") from None
        return out


def _count(text: str, line: int) -> int | str | None:
    if not text:
        return None
    if text == "...":
        return REST  # type: ignore[return-value]
    if text.isdigit():
        return int(text)
    return _name(text, line)


def load_csv_text(text: str, extra_types: Mapping[str, FieldType] | None = None,
                  implicit_tlvs: bool = True, keep_sealed: bool = False) -> ResolvedSchema:
    """Parse and resolve CSV ``text``.

    With ``implicit_tlvs``, a message without a trailing TLV field gets one
    named ``tlvs`` if the CSV defines a stream called ``<message>_tlvs``: the
    BOLT text declares e.g. ``update_add_htlc_tlvs`` right after
    ``update_add_htlc`` as its extension but the extracted CSV lacks the
    ``msgdata`` row that would attach it.
    """
    defs = parse_csv(text)
    res = _Resolver(defs, extra_types or {}, keep_sealed)
    streams = {name: res.type(name, 0) for name in defs.tlvs}
    subtypes = {name: res.type(name, 0) for name in defs.subtypes}
    messages = []
    for name, (number, fdefs, line) in defs.messages.items():
        fields = res.fields(name, fdefs, in_tlv_record=False)
        implicit = streams.get(f"{name}_tlvs")
        if (implicit_tlvs and implicit is not None and "tlvs" not in {f.name for f in fields}
                and not (fields and fields[-1].consumes_rest)):
            fields.append(Field("tlvs", implicit))
        messages.append(MessageType(name, number, Struct(name, fields)))
    return ResolvedSchema(messages, streams, subtypes, res.opaque)  # type: ignore[arg-type]
