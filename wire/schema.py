"""MessageSchema: a set of messages, TLV streams and subtypes loaded from CSV.

One class serves both the BOLT peer protocol and the internal
master<->subdaemon protocols, which CLN declares in CSV files of the same
format.  A message on the wire is a 2-byte big-endian type followed by its
payload.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

from .codec import MessageType, Struct, TlvStream
from .csvload import load_csv_text
from .errors import DecodeError, EncodeError, SchemaError, UnknownMessageError
from .fundamental import FieldType

__all__ = ["Message", "MessageSchema", "accept_message", "encode_raw_message", "peek_type"]


@dataclass(frozen=True)
class Message:
    """A decoded message.

    Iterating yields ``(name, fields)`` so ``name, fields = schema.decode(raw)``
    works.  For a type the schema does not know, ``name`` is None, ``fields``
    is empty and ``known`` is False; apply :func:`accept_message` to follow
    the "it's OK to be odd" rule.
    """

    name: str | None
    fields: dict[str, Any]
    type: int
    #: the payload (everything after the 2-byte type)
    payload: bytes = field(repr=False, default=b"")
    #: trailing bytes beyond the known fields that the schema did not parse
    #: (a BOLT 1 extension on a message that declares no TLV stream)
    extension: bytes = b""
    #: where each field's encoding is in ``payload`` (start, end)
    spans: dict[str, tuple[int, int]] = field(repr=False, default_factory=dict)

    def field_bytes(self, name: str) -> bytes:
        """Field ``name`` as it was encoded (e.g. a subtype to store as is)."""
        start, end = self.spans[name]
        return self.payload[start:end]

    @property
    def known(self) -> bool:
        """True if the schema defines this message type."""
        return self.name is not None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.name, self.fields))


def accept_message(msg: Message) -> bool:
    """Apply BOLT 1's rule for unknown message types.

    Returns True for a known message (process it), False for an unknown odd
    type (ignore it); raises :class:`UnknownMessageError` (a DecodeError) for
    an unknown even type, which means the connection must fail.
    """
    if msg.known:
        return True
    if msg.type % 2:
        return False
    raise UnknownMessageError(f"unknown even message type {msg.type}", msgtype=msg.type)


def peek_type(raw: bytes) -> int:
    """The 16-bit type of the encoded message ``raw``."""
    if len(raw) < 2:
        raise DecodeError(f"message too short for its type ({len(raw)} bytes)")
    return int.from_bytes(raw[:2], "big")


def encode_raw_message(msgtype: int, payload: bytes) -> bytes:
    """Frame an already-encoded payload (e.g. an unknown message being relayed)."""
    if not isinstance(msgtype, int) or not 0 <= msgtype <= 0xFFFF:
        raise EncodeError(f"message type {msgtype!r} does not fit in 16 bits")
    return msgtype.to_bytes(2, "big") + bytes(payload)


class MessageSchema:
    """Messages, TLV streams and subtypes of one protocol.

    Build it with :meth:`from_csv` (a path) or :meth:`from_csv_text`.  Message
    type numbers must be unique within a schema.  With
    ``allow_trailing=False`` a known message with bytes beyond its fields is a
    DecodeError (useful for internal protocols); otherwise (the BOLT 1 peer
    rule) they are kept in :attr:`Message.extension` and otherwise ignored.
    """

    def __init__(self, messages: Iterable[MessageType],
                 tlv_streams: Mapping[str, TlvStream] | None = None,
                 subtypes: Mapping[str, Struct] | None = None, *,
                 allow_trailing: bool = True, opaque_types: Iterable[str] = ()) -> None:
        self.messages: dict[str, MessageType] = {}
        self.by_number: dict[int, MessageType] = {}
        for msg in messages:
            if msg.name in self.messages:
                raise SchemaError(f"duplicate message name {msg.name}")
            other = self.by_number.get(msg.number)
            if other is not None:
                raise SchemaError(f"messages {other.name} and {msg.name} share type {msg.number}")
            self.messages[msg.name] = msg
            self.by_number[msg.number] = msg
        self.tlv_streams: dict[str, TlvStream] = dict(tlv_streams or {})
        self.subtypes: dict[str, Struct] = dict(subtypes or {})
        self.allow_trailing = allow_trailing
        #: type names the CSV used without defining; their values are raw bytes
        self.opaque_types = frozenset(opaque_types)

    # -- construction ----------------------------------------------------------

    @classmethod
    def from_csv_text(cls, text: str, *, include: Iterable[str] | None = None,
                      exclude: Iterable[str] = (), extra_types: Mapping[str, FieldType] | None = None,
                      implicit_tlvs: bool = True, allow_trailing: bool = True,
                      keep_sealed: bool = False) -> "MessageSchema":
        """Load a schema from CSV text.

        ``include``/``exclude`` select messages by name (TLV streams and
        subtypes are always all kept): the BOLT CSV mixes peer messages with
        BOLT 4 failure messages whose numbers collide (e.g. 18 is both
        ``ping`` and ``final_incorrect_cltv_expiry``).  ``extra_types`` adds
        named types (see :data:`wire.INTERNAL_TYPES`).  ``keep_sealed``:
        values of sealed subtypes decode to :class:`~wire.codec.Sealed`,
        unread (for a reader that only stores them).
        """
        resolved = load_csv_text(text, extra_types, implicit_tlvs, keep_sealed)
        wanted = None if include is None else set(include)
        unwanted = set(exclude)
        names = {m.name for m in resolved.messages}
        missing = ((wanted or set()) | unwanted) - names
        if missing:
            raise SchemaError(f"no such message(s): {sorted(missing)}")
        messages = [m for m in resolved.messages
                    if (wanted is None or m.name in wanted) and m.name not in unwanted]
        return cls(messages, resolved.tlv_streams, resolved.subtypes,
                   allow_trailing=allow_trailing, opaque_types=resolved.opaque_types)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], **options: Any) -> "MessageSchema":
        """Load a schema from a CSV file; ``options`` as for :meth:`from_csv_text`."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_csv_text(fh.read(), **options)

    # -- lookups ---------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self.messages

    def message(self, name: str) -> MessageType:
        """The definition of message ``name``."""
        try:
            return self.messages[name]
        except KeyError:
            raise SchemaError(f"no message named {name!r}") from None

    def type_number(self, name: str) -> int:
        """The 16-bit type number of message ``name``."""
        return self.message(name).number

    def subtype(self, name: str) -> Any:
        """The codec of subtype ``name`` (a Struct, or a SealedStruct)."""
        try:
            return self.subtypes[name]
        except KeyError:
            raise SchemaError(f"no subtype named {name!r}") from None

    def encode_subtype(self, name: str, value: Mapping[str, Any]) -> bytes:
        """A value of subtype ``name`` on its own (for storage), checked as in
        a message; a sealed subtype's fields, without its length."""
        codec = self.subtype(name)
        struct = getattr(codec, "struct", codec)
        out = bytearray()
        try:
            struct.encode(value, out)
        except EncodeError as err:
            raise err.within(name) from None
        return bytes(out)

    def decode_subtype(self, name: str, data: bytes) -> dict[str, Any]:
        """The inverse of :meth:`encode_subtype` (all of ``data``, checked)."""
        codec = self.subtype(name)
        struct = getattr(codec, "struct", codec)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"{name} needs bytes, got {type(data).__name__}")
        data = bytes(data)
        try:
            value, used = struct.decode(data, 0, len(data))
        except DecodeError as err:
            raise err.within(name) from None
        if used != len(data):
            raise DecodeError(f"{len(data) - used} trailing bytes", (name,))
        return value

    def tlv_stream(self, name: str) -> TlvStream:
        """The definition of TLV stream ``name``."""
        try:
            return self.tlv_streams[name]
        except KeyError:
            raise SchemaError(f"no TLV stream named {name!r}") from None

    # -- messages --------------------------------------------------------------

    def encode_payload(self, name: str, fields: Mapping[str, Any] | None = None) -> bytes:
        """Encode message ``name``'s payload, without the 2-byte type."""
        msg = self.messages.get(name)
        if msg is None:
            raise EncodeError(f"no message named {name!r}")
        out = bytearray()
        try:
            msg.struct.encode({} if fields is None else fields, out)
        except EncodeError as err:
            raise err.within(name) from None
        return bytes(out)

    def encode(self, name: str, fields: Mapping[str, Any] | None = None) -> bytes:
        """Encode message ``name``: 2-byte big-endian type + payload.

        Length fields may be omitted (they are computed); a trailing TLV
        stream field may be omitted (encoded empty).
        """
        payload = self.encode_payload(name, fields)
        return self.messages[name].number.to_bytes(2, "big") + payload

    def decode_payload(self, name: str, payload: bytes) -> dict[str, Any]:
        """Decode the payload of message ``name`` (the type already stripped).

        Trailing bytes beyond the known fields are dropped (or, with
        ``allow_trailing=False``, rejected); use :meth:`decode` to keep them.
        """
        msg = self.messages.get(name)
        if msg is None:
            raise SchemaError(f"no message named {name!r}")
        fields, _ = self._decode_fields(msg, bytes(payload))
        return fields

    def _decode_fields(self, msg: MessageType, payload: bytes,
                       spans: dict[str, tuple[int, int]] | None = None) -> tuple[dict[str, Any], bytes]:
        try:
            fields, pos = msg.struct.decode(payload, 0, len(payload), spans)
        except DecodeError as err:
            raise err.within(msg.name) from None
        extension = payload[pos:]
        if extension and not self.allow_trailing:
            raise DecodeError(f"{len(extension)} unexpected trailing bytes", (msg.name,))
        return fields, extension

    def decode(self, raw: bytes) -> Message:
        """Decode a whole message (type + payload).

        Unknown types are not an error here: the result has ``known`` False
        (see :func:`accept_message`).  Malformed known messages raise
        :class:`DecodeError`.
        """
        raw = bytes(raw)
        number = peek_type(raw)
        payload = raw[2:]
        msg = self.by_number.get(number)
        if msg is None:
            return Message(None, {}, number, payload)
        spans: dict[str, tuple[int, int]] = {}
        fields, extension = self._decode_fields(msg, payload, spans)
        return Message(msg.name, fields, number, payload, extension, spans)

    # -- bare TLV streams ------------------------------------------------------

    def encode_tlv_stream(self, stream: str, values: Mapping[Any, Any]) -> bytes:
        """Encode a TLV stream; ``values`` keyed by record name (or odd int -> raw bytes)."""
        out = bytearray()
        try:
            self.tlv_stream(stream).encode(values, out)
        except EncodeError as err:
            raise err.within(stream) from None
        return bytes(out)

    def decode_tlv_stream(self, stream: str, raw: bytes) -> dict[Any, Any]:
        """Decode a whole buffer as TLV stream ``stream``."""
        raw = bytes(raw)
        codec = self.tlv_stream(stream)
        try:
            values, _ = codec.decode(raw, 0, len(raw))
        except DecodeError as err:
            raise err.within(stream) from None
        return values
