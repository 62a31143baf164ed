"""The per-hop ``payload`` TLV stream of payment onions (BOLT 4 "payload format").

A deliberately tiny, private TLV codec: the general wire codec lives in
``wire/`` and is being written independently, and the onion only needs this
one stream.  It applies BOLT 1's reader rules strictly because a lax reader
would let different nodes disagree on what an onion says:

* types and lengths are canonical BigSize, types strictly increasing;
* unknown even types are rejected, unknown odd types are kept (and re-encoded
  byte for byte, so a decoded payload round-trips);
* truncated integers (``tu32``/``tu64``) must be minimal and not too wide;
* fixed-size fields must have exactly their size.

Every parse failure raises :class:`~common.onion_errors.InvalidOnionPayload`
naming the offending type and its offset in the stream, which is exactly
what the ``invalid_onion_payload`` failure reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import coincurve

from common.onion_crypto import BigSizeError, decode_bigsize, encode_bigsize
from common.onion_errors import InvalidOnionPayload

# TLV types of the `payload` stream.
TLV_AMT_TO_FORWARD = 2
TLV_OUTGOING_CLTV_VALUE = 4
TLV_SHORT_CHANNEL_ID = 6
TLV_PAYMENT_DATA = 8
TLV_ENCRYPTED_RECIPIENT_DATA = 10
TLV_CURRENT_PATH_KEY = 12
TLV_PAYMENT_METADATA = 16
TLV_TOTAL_AMOUNT_MSAT = 18
#: keysend (bLIP 3): the payment preimage, chosen by the payer
TLV_KEYSEND_PREIMAGE = 5482373484


class PaymentData(NamedTuple):
    """Type 8 ``payment_data``: the invoice's secret and the total of an MPP set."""

    payment_secret: bytes
    total_msat: int


@dataclass
class HopPayload:
    """Decoded ``payload`` TLV stream; ``None`` means the record is absent."""

    amt_to_forward: int | None = None
    outgoing_cltv_value: int | None = None
    #: The BOLT 7 short_channel_id as its u64 (block << 40 | tx << 16 | output).
    short_channel_id: int | None = None
    payment_data: PaymentData | None = None
    encrypted_recipient_data: bytes | None = None
    current_path_key: bytes | None = None
    payment_metadata: bytes | None = None
    total_amount_msat: int | None = None
    keysend_preimage: bytes | None = None
    #: Unknown odd records (type -> raw value), preserved for re-encoding.
    unknown_odd: dict[int, bytes] = field(default_factory=dict)


# --- primitive encoders -----------------------------------------------------


def _tu(value: int, max_bytes: int) -> bytes:
    """Truncated unsigned int: big-endian with leading zero bytes removed."""
    if not 0 <= value < 1 << (8 * max_bytes):
        raise ValueError(f"value {value} does not fit in tu{8 * max_bytes}")
    return value.to_bytes(max_bytes, "big").lstrip(b"\x00")


def _read_tu(raw: bytes, max_bytes: int) -> int:
    """Inverse of :func:`_tu`; ValueError if too wide or not minimal."""
    if len(raw) > max_bytes:
        raise ValueError(f"tu{8 * max_bytes} longer than {max_bytes} bytes")
    if raw[:1] == b"\x00":
        raise ValueError("truncated integer has a leading zero")
    return int.from_bytes(raw, "big")


def _check_point(raw: bytes) -> bytes:
    if len(raw) != 33 or raw[0] not in (2, 3):
        raise ValueError("point must be 33 bytes, compressed")
    coincurve.PublicKey(raw)  # ValueError if not on the curve
    return raw


def _tlv_encode(records: dict[int, bytes]) -> bytes:
    """Serialize ``{type: value}`` as a TLV stream in increasing type order."""
    out = bytearray()
    for tlv_type in sorted(records):
        value = records[tlv_type]
        out += encode_bigsize(tlv_type) + encode_bigsize(len(value)) + value
    return bytes(out)


def _tlv_decode(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split a TLV stream into ``(type, offset, value)``, enforcing framing rules."""
    records: list[tuple[int, int, bytes]] = []
    pos = 0
    last_type = -1
    while pos < len(data):
        start = pos
        try:
            tlv_type, pos = decode_bigsize(data, pos)
        except BigSizeError as e:
            raise InvalidOnionPayload(f"type: {e}", 0, start) from None
        try:
            length, pos = decode_bigsize(data, pos)
        except BigSizeError as e:
            raise InvalidOnionPayload(f"length: {e}", tlv_type, start) from None
        if length > len(data) - pos:
            raise InvalidOnionPayload("value truncated", tlv_type, start)
        if tlv_type <= last_type:
            raise InvalidOnionPayload("types not strictly increasing", tlv_type, start)
        last_type = tlv_type
        records.append((tlv_type, start, data[pos : pos + length]))
        pos += length
    return records


# --- the payload stream -----------------------------------------------------


def encode_payload(payload: HopPayload) -> bytes:
    """Serialize a :class:`HopPayload` (no length prefix: ``create_onion`` adds it)."""
    records: dict[int, bytes] = {}
    if payload.amt_to_forward is not None:
        records[TLV_AMT_TO_FORWARD] = _tu(payload.amt_to_forward, 8)
    if payload.outgoing_cltv_value is not None:
        records[TLV_OUTGOING_CLTV_VALUE] = _tu(payload.outgoing_cltv_value, 4)
    if payload.short_channel_id is not None:
        records[TLV_SHORT_CHANNEL_ID] = payload.short_channel_id.to_bytes(8, "big")
    if payload.payment_data is not None:
        secret, total = payload.payment_data
        if len(secret) != 32:
            raise ValueError("payment_secret must be 32 bytes")
        records[TLV_PAYMENT_DATA] = secret + _tu(total, 8)
    if payload.encrypted_recipient_data is not None:
        records[TLV_ENCRYPTED_RECIPIENT_DATA] = payload.encrypted_recipient_data
    if payload.current_path_key is not None:
        records[TLV_CURRENT_PATH_KEY] = _check_point(payload.current_path_key)
    if payload.payment_metadata is not None:
        records[TLV_PAYMENT_METADATA] = payload.payment_metadata
    if payload.total_amount_msat is not None:
        records[TLV_TOTAL_AMOUNT_MSAT] = _tu(payload.total_amount_msat, 8)
    if payload.keysend_preimage is not None:
        records[TLV_KEYSEND_PREIMAGE] = _dec_preimage(payload.keysend_preimage)
    for tlv_type, value in payload.unknown_odd.items():
        if tlv_type % 2 == 0 or tlv_type in records or tlv_type in _DECODERS:
            raise ValueError(f"unknown_odd cannot hold type {tlv_type}")
        records[tlv_type] = value
    return _tlv_encode(records)


def _dec_payment_data(raw: bytes) -> PaymentData:
    if len(raw) < 32:
        raise ValueError("payment_data shorter than payment_secret")
    return PaymentData(raw[:32], _read_tu(raw[32:], 8))


def _dec_preimage(raw: bytes) -> bytes:
    if len(raw) != 32:
        raise ValueError("keysend preimage must be 32 bytes")
    return bytes(raw)


def _dec_scid(raw: bytes) -> int:
    if len(raw) != 8:
        raise ValueError("short_channel_id must be 8 bytes")
    return int.from_bytes(raw, "big")


# type -> (HopPayload attribute, value decoder raising ValueError)
_DECODERS = {
    TLV_AMT_TO_FORWARD: ("amt_to_forward", lambda raw: _read_tu(raw, 8)),
    TLV_OUTGOING_CLTV_VALUE: ("outgoing_cltv_value", lambda raw: _read_tu(raw, 4)),
    TLV_SHORT_CHANNEL_ID: ("short_channel_id", _dec_scid),
    TLV_PAYMENT_DATA: ("payment_data", _dec_payment_data),
    TLV_ENCRYPTED_RECIPIENT_DATA: ("encrypted_recipient_data", bytes),
    TLV_CURRENT_PATH_KEY: ("current_path_key", _check_point),
    TLV_PAYMENT_METADATA: ("payment_metadata", bytes),
    TLV_TOTAL_AMOUNT_MSAT: ("total_amount_msat", lambda raw: _read_tu(raw, 8)),
    TLV_KEYSEND_PREIMAGE: ("keysend_preimage", _dec_preimage),
}


def decode_payload(data: bytes) -> HopPayload:
    """Parse a ``payload`` TLV stream (as returned in ``PeeledOnion.payload``).

    Raises :class:`InvalidOnionPayload` (type + offset set) on any violation.
    Presence rules (which records a hop needs) are in :func:`check_payload`.
    """
    payload = HopPayload()
    for tlv_type, offset, raw in _tlv_decode(data):
        decoder = _DECODERS.get(tlv_type)
        if decoder is None:
            if tlv_type % 2 == 0:
                # "It's OK to be odd": unknown even types must be understood.
                raise InvalidOnionPayload("unknown even type", tlv_type, offset)
            payload.unknown_odd[tlv_type] = raw
            continue
        attr, decode = decoder
        try:
            setattr(payload, attr, decode(raw))
        except ValueError as e:
            raise InvalidOnionPayload(str(e), tlv_type, offset) from None
    return payload


def _fields_present(payload: HopPayload) -> set[int]:
    present = {t for t, (attr, _) in _DECODERS.items() if getattr(payload, attr) is not None}
    return present | set(payload.unknown_odd)


def check_payload(payload: HopPayload, *, is_final: bool, path_key_in_htlc: bool = False) -> None:
    """Apply the BOLT 4 reader's presence rules for a payment ``payload``.

    ``is_final`` comes from the onion (all-zero next HMAC);
    ``path_key_in_htlc`` says whether ``update_add_htlc`` carried a
    ``path_key``.  Raises :class:`InvalidOnionPayload` naming the first
    offending type (offset 0: the decoded form does not keep positions).
    Semantic checks against the HTLC (amounts, expiries, fees) and decryption
    of ``encrypted_recipient_data`` are the caller's job.
    """
    present = _fields_present(payload)

    def fail(detail: str, tlv_type: int) -> None:
        raise InvalidOnionPayload(detail, tlv_type, 0)

    if payload.encrypted_recipient_data is not None:
        # Inside a blinded route: the path key comes either with the HTLC or
        # (introduction point only) in the payload, never both.
        if path_key_in_htlc and payload.current_path_key is not None:
            fail("current_path_key with a path_key in the HTLC", TLV_CURRENT_PATH_KEY)
        if not path_key_in_htlc and payload.current_path_key is None:
            fail("blinded hop without a path key", TLV_CURRENT_PATH_KEY)
        allowed = {TLV_ENCRYPTED_RECIPIENT_DATA, TLV_CURRENT_PATH_KEY}
        if is_final:
            required = (TLV_AMT_TO_FORWARD, TLV_OUTGOING_CLTV_VALUE, TLV_TOTAL_AMOUNT_MSAT)
            allowed |= set(required)
            for tlv_type in required:
                if tlv_type not in present:
                    fail("missing in blinded final payload", tlv_type)
        for tlv_type in sorted(present - allowed):
            fail("not allowed in a blinded payload", tlv_type)
        return

    if path_key_in_htlc:
        fail("path_key in HTLC but no encrypted_recipient_data", TLV_ENCRYPTED_RECIPIENT_DATA)
    if payload.current_path_key is not None:
        fail("current_path_key outside a blinded route", TLV_CURRENT_PATH_KEY)
    if payload.amt_to_forward is None:
        fail("missing amt_to_forward", TLV_AMT_TO_FORWARD)
    if payload.outgoing_cltv_value is None:
        fail("missing outgoing_cltv_value", TLV_OUTGOING_CLTV_VALUE)
    if not is_final and payload.short_channel_id is None:
        fail("missing short_channel_id", TLV_SHORT_CHANNEL_ID)
