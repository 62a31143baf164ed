"""Wire codec: BOLT messages and TLV streams, driven by CSV schemas.

Quick start::

    import wire

    schema = wire.bolt_schema()                 # peer messages from wire/csv/bolt.csv
    raw = schema.encode("ping", {"num_pong_bytes": 4, "ignored": b""})
    name, fields = schema.decode(raw)           # ("ping", {"num_pong_bytes": 4, "ignored": b""})
    tlv = schema.encode_tlv_stream("init_tlvs", {"networks": {"chains": [chain_hash]}})
    schema.decode_tlv_stream("init_tlvs", tlv)  # {"networks": {"chains": [chain_hash]}}

API
---
``bolt_schema() -> MessageSchema``
    BOLT peer messages + every TLV stream/subtype in the spec CSV (cached).
``bolt12_schema() -> MessageSchema``
    The BOLT 12 TLV streams (offer, invoice_request, invoice, invoice_error).
``onion_failure_schema() -> MessageSchema``
    BOLT 4 failure messages (their type numbers collide with peer messages).
``MessageSchema.from_csv(path, **opts)`` / ``MessageSchema.from_csv_text(text, **opts)``
    Load any CSV of the same format (internal master<->subdaemon protocols);
    options: ``include``, ``exclude``, ``extra_types`` (e.g. ``INTERNAL_TYPES``),
    ``implicit_tlvs``, ``allow_trailing``.
``schema.encode(name, fields) -> bytes``; ``schema.encode_payload(name, fields) -> bytes``
    2-byte big-endian type + payload / payload only.
``schema.decode(raw) -> Message``; ``schema.decode_payload(name, payload) -> dict``
    ``Message`` unpacks as ``(name, fields)``; also has ``.type``, ``.known``,
    ``.payload`` and ``.extension`` (unparsed trailing bytes).  Unknown types
    decode to ``Message(name=None, known=False)``; ``accept_message(msg)``
    then returns False for odd (ignore) and raises ``UnknownMessageError``
    for even.
``schema.encode_tlv_stream(stream, values) -> bytes``; ``schema.decode_tlv_stream(stream, raw) -> dict``
``schema.encode_subtype(name, value) -> bytes``; ``schema.decode_subtype(name, raw) -> dict``
    A subtype's value on its own (how the master stores the records it keeps).
``Message.field_bytes(name) -> bytes``
    A decoded field as it was encoded.
``subtype,NAME,sealed`` (``wire.codec.Sealed``, ``SealedStruct``)
    A daemon's private state: a u32 length and the fields; schemas built with
    ``keep_sealed`` (``wire.internal.internal_schema(d, keep_sealed=True)``,
    the master's) decode it to ``Sealed`` bytes, unread.
``encode_bigsize(n) -> bytes``; ``decode_bigsize(buf, pos=0, end=None) -> (n, pos)``
``peek_type(raw) -> int``; ``encode_raw_message(type, payload) -> bytes``

Values
------
Integers (u*, s*, tu*, bigsize, a single ``byte``) are ``int``; byte arrays
and fixed-size types (hashes, signatures, points, short_channel_id) are
``bytes``; ``utf8`` arrays are ``str``; other arrays are lists; subtypes are
dicts; a TLV stream is a dict keyed by record name whose values are the
record's field dicts (``{}`` for a record without fields), plus ``int`` type
-> raw ``bytes`` for unknown odd records, so round trips are byte exact.

Length fields (a field used as the COUNT of a later array) are *omitted* from
decoded dicts and *computed* on encode; if supplied they must match, else
``EncodeError``.  A message's trailing TLV stream may be omitted on encode
(empty) and is always present (maybe ``{}``) on decode.

Errors: every malformed input raises ``DecodeError`` (a ``ValueError``);
bad values to encode raise ``EncodeError``; bad CSVs ``SchemaError``.
"""
from .bolt import ONION_FAILURE_MESSAGES, bolt12_schema, bolt_csv_text, bolt_schema, onion_failure_schema
from .codec import Field, MessageType, Struct, TlvRecord, TlvStream
from .errors import DecodeError, EncodeError, SchemaError, UnknownMessageError, WireError
from .fundamental import FUNDAMENTAL_TYPES, INTERNAL_TYPES, FieldType, decode_bigsize, encode_bigsize
from .schema import Message, MessageSchema, accept_message, encode_raw_message, peek_type

__all__ = [
    "ONION_FAILURE_MESSAGES", "bolt12_schema", "bolt_csv_text", "bolt_schema", "onion_failure_schema",
    "Field", "MessageType", "Struct", "TlvRecord", "TlvStream",
    "DecodeError", "EncodeError", "SchemaError", "UnknownMessageError", "WireError",
    "FUNDAMENTAL_TYPES", "INTERNAL_TYPES", "FieldType", "decode_bigsize", "encode_bigsize",
    "Message", "MessageSchema", "accept_message", "encode_raw_message", "peek_type",
]
