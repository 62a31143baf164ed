"""BOLT 4 failure codes, onion errors and encrypted failure messages.

Three groups of things live here:

* :class:`FailureCode` and the flag bits: every ``failure_code`` of BOLT 4
  "Failure Messages", plus a table of their data fields so callers can build
  and parse ``failure_data`` without re-reading the spec.
* Exceptions raised while peeling an onion (:mod:`common.onion`) or parsing
  a hop payload (:mod:`common.onion_payload`).  Each carries the failure code
  the processing node must return, and the BADONION ones carry
  ``sha256_of_onion`` because those go back in ``update_fail_malformed_htlc``
  (the node could not derive the shared secret, so it cannot encrypt).
* The return path ("Returning Errors"): the erring node builds
  ``hmac || failure_len || failuremsg || pad_len || pad`` authenticated with
  the ``um`` key and XORs it with the ``ammag`` stream; every upstream hop XORs
  its own ``ammag`` stream on top; the origin peels those layers one by one
  until an HMAC matches, which identifies the erring hop.
"""
from __future__ import annotations

import hmac as _hmac
from enum import IntEnum
from typing import NamedTuple, Sequence

from common.onion_crypto import (
    KEY_AMMAG,
    KEY_UM,
    BigSizeError,
    chacha20_stream,
    decode_bigsize,
    encode_bigsize,
    generate_key,
    hmac_sha256,
    xor_bytes,
)

# --- failure codes ----------------------------------------------------------

#: Unparsable onion encrypted by the sending peer.
BADONION = 0x8000
#: Permanent failure (otherwise transient).
PERM = 0x4000
#: Node failure (otherwise channel).
NODE = 0x2000
#: Channel forwarding parameter was violated.
UPDATE = 0x1000


class FailureCode(IntEnum):
    """Every ``failure_code`` named by BOLT 4 (an ``int``, so it goes on the wire as is)."""

    TEMPORARY_NODE_FAILURE = NODE | 2
    PERMANENT_NODE_FAILURE = PERM | NODE | 2
    REQUIRED_NODE_FEATURE_MISSING = PERM | NODE | 3
    INVALID_ONION_VERSION = BADONION | PERM | 4
    INVALID_ONION_HMAC = BADONION | PERM | 5
    INVALID_ONION_KEY = BADONION | PERM | 6
    TEMPORARY_CHANNEL_FAILURE = UPDATE | 7
    PERMANENT_CHANNEL_FAILURE = PERM | 8
    REQUIRED_CHANNEL_FEATURE_MISSING = PERM | 9
    UNKNOWN_NEXT_PEER = PERM | 10
    AMOUNT_BELOW_MINIMUM = UPDATE | 11
    FEE_INSUFFICIENT = UPDATE | 12
    INCORRECT_CLTV_EXPIRY = UPDATE | 13
    EXPIRY_TOO_SOON = UPDATE | 14
    INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS = PERM | 15
    # Obsolete (folded into PERM|15 to stop probing); kept so that failures
    # from old nodes still decode to a name.  Never send these.
    INCORRECT_PAYMENT_AMOUNT = PERM | 16
    FINAL_EXPIRY_TOO_SOON = 17
    FINAL_INCORRECT_CLTV_EXPIRY = 18
    FINAL_INCORRECT_HTLC_AMOUNT = 19
    CHANNEL_DISABLED = UPDATE | 20
    EXPIRY_TOO_FAR = 21
    INVALID_ONION_PAYLOAD = PERM | 22
    MPP_TIMEOUT = 23
    INVALID_ONION_BLINDING = BADONION | PERM | 24


def failure_code_name(code: int) -> str:
    """Spec name of a failure code (``"unknown_0x...."`` if not defined)."""
    try:
        return FailureCode(code).name.lower()
    except ValueError:
        return f"unknown_{code:#06x}"


#: Data fields of each failure code, in wire order: ``(name, kind)``.  Kinds:
#   u16/u32/u64  big-endian integers      sha256  32 raw bytes
#   bigsize      BOLT 1 BigSize           update  u16 length + channel_update
# Anything after the fields is the optional TLV stream (kept as raw bytes).
FAILURE_DATA_FIELDS: dict[int, tuple[tuple[str, str], ...]] = {
    FailureCode.INVALID_ONION_VERSION: (("sha256_of_onion", "sha256"),),
    FailureCode.INVALID_ONION_HMAC: (("sha256_of_onion", "sha256"),),
    FailureCode.INVALID_ONION_KEY: (("sha256_of_onion", "sha256"),),
    FailureCode.INVALID_ONION_BLINDING: (("sha256_of_onion", "sha256"),),
    FailureCode.TEMPORARY_CHANNEL_FAILURE: (("channel_update", "update"),),
    FailureCode.AMOUNT_BELOW_MINIMUM: (("htlc_msat", "u64"), ("channel_update", "update")),
    FailureCode.FEE_INSUFFICIENT: (("htlc_msat", "u64"), ("channel_update", "update")),
    FailureCode.INCORRECT_CLTV_EXPIRY: (("cltv_expiry", "u32"), ("channel_update", "update")),
    FailureCode.EXPIRY_TOO_SOON: (("channel_update", "update"),),
    FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS: (("htlc_msat", "u64"), ("height", "u32")),
    FailureCode.FINAL_INCORRECT_CLTV_EXPIRY: (("cltv_expiry", "u32"),),
    FailureCode.FINAL_INCORRECT_HTLC_AMOUNT: (("incoming_htlc_amt", "u64"),),
    FailureCode.CHANNEL_DISABLED: (
        ("disabled_flags", "u16"),
        ("channel_update", "update"),
    ),
    FailureCode.INVALID_ONION_PAYLOAD: (("type", "bigsize"), ("offset", "u16")),
}
_INT_WIDTH = {"u16": 2, "u32": 4, "u64": 8}


def encode_failure_data(code: int, tlvs: bytes = b"", **fields: int | bytes) -> bytes:
    """Serialize the data fields of ``code`` (named as in the spec), then ``tlvs``.

    ``channel_update`` defaults to empty (``len`` = 0): the spec no longer
    requires it, and sending it is discouraged as a fingerprinting vector.
    """
    out = bytearray()
    layout = FAILURE_DATA_FIELDS.get(code, ())
    unknown = set(fields) - {name for name, _ in layout}
    if unknown:
        raise ValueError(f"{failure_code_name(code)} has no field(s) {sorted(unknown)}")
    for name, kind in layout:
        if kind == "update":
            update = bytes(fields.get(name, b""))  # type: ignore[arg-type]
            out += len(update).to_bytes(2, "big") + update
            continue
        if name not in fields:
            raise ValueError(f"{failure_code_name(code)} needs field {name}")
        value = fields[name]
        if kind == "sha256":
            if not isinstance(value, bytes) or len(value) != 32:
                raise ValueError(f"{name} must be 32 bytes")
            out += value
        elif kind == "bigsize":
            out += encode_bigsize(int(value))  # type: ignore[arg-type]
        else:
            out += int(value).to_bytes(_INT_WIDTH[kind], "big")  # type: ignore[arg-type]
    return bytes(out) + tlvs


def decode_failure_data(code: int, data: bytes) -> tuple[dict[str, int | bytes], bytes]:
    """Parse ``failure_data`` of ``code``; return ``(fields, trailing_tlv_bytes)``.

    Raises ``ValueError`` if the data is shorter than the code's fields.
    Codes without fields (or unknown codes) return ``({}, data)``.
    """
    fields: dict[str, int | bytes] = {}
    pos = 0
    for name, kind in FAILURE_DATA_FIELDS.get(code, ()):
        if kind == "bigsize":
            try:
                fields[name], pos = decode_bigsize(data, pos)
            except BigSizeError as e:
                raise ValueError(f"{name}: {e}") from None
            continue
        if kind == "update":
            if pos + 2 > len(data):
                raise ValueError(f"{name}: truncated length")
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            width = n
        else:
            width = 32 if kind == "sha256" else _INT_WIDTH[kind]
        if pos + width > len(data):
            raise ValueError(f"{name}: truncated")
        raw = data[pos : pos + width]
        fields[name] = raw if kind in ("sha256", "update") else int.from_bytes(raw, "big")
        pos += width
    return fields, data[pos:]


# --- errors raised while processing an incoming onion -----------------------


class OnionError(Exception):
    """Processing an onion failed; ``failure_code``/``failure_data`` say what to return."""

    failure_code: FailureCode = FailureCode.TEMPORARY_NODE_FAILURE

    @property
    def failure_data(self) -> bytes:
        """The ``failure_data`` that goes after ``failure_code`` in the failure message."""
        return b""


class BadOnionError(OnionError):
    """A BADONION failure: the onion could not be authenticated/decrypted.

    These are returned with ``update_fail_malformed_htlc`` (we have no shared
    secret to encrypt a normal failure with), which carries
    ``sha256_of_onion``: SHA256 of the whole onion packet as received.
    """

    def __init__(self, sha256_of_onion: bytes, detail: str = "") -> None:
        super().__init__(f"{failure_code_name(self.failure_code)}: {detail}".rstrip(": "))
        self.sha256_of_onion = sha256_of_onion

    @property
    def failure_data(self) -> bytes:
        return self.sha256_of_onion


class InvalidOnionVersion(BadOnionError):
    """The onion ``version`` byte is not 0."""

    failure_code = FailureCode.INVALID_ONION_VERSION


class InvalidOnionHmac(BadOnionError):
    """The onion HMAC did not verify (tampering, wrong key or wrong associated data)."""

    failure_code = FailureCode.INVALID_ONION_HMAC


class InvalidOnionKey(BadOnionError):
    """The onion ephemeral ``public_key`` is not a valid point."""

    failure_code = FailureCode.INVALID_ONION_KEY


class InvalidOnionBlinding(BadOnionError):
    """Something about the blinded path (e.g. the ``path_key``) is invalid.

    Inside a blinded route every error is reported as this one, so that
    implementation differences cannot be used to unblind the route.
    """

    failure_code = FailureCode.INVALID_ONION_BLINDING


class InvalidOnionPayload(OnionError):
    """The (authenticated) per-hop payload is malformed or incomplete.

    Not BADONION: the HMAC verified, so the shared secret is known and the
    failure goes back encrypted in ``update_fail_htlc``; peeling fills in
    ``shared_secret`` when it has one.  ``tlv_type``/``offset`` narrow the
    problem down as the spec allows (0/0 when it is the framing itself).
    """

    failure_code = FailureCode.INVALID_ONION_PAYLOAD

    def __init__(
        self, detail: str, tlv_type: int = 0, offset: int = 0, shared_secret: bytes | None = None
    ) -> None:
        super().__init__(f"invalid_onion_payload: {detail} (type {tlv_type}, offset {offset})")
        self.tlv_type = tlv_type
        self.offset = offset
        self.shared_secret = shared_secret

    @property
    def failure_data(self) -> bytes:
        return encode_bigsize(self.tlv_type) + min(self.offset, 0xFFFF).to_bytes(2, "big")


# --- the return path --------------------------------------------------------

#: BOLT 4: failure_len + pad_len MUST be >= 256 and SHOULD be exactly 256.
FAILURE_PAD_TO = 256
#: The origin keeps peeling this many layers whatever the route length, so
#: the erring node cannot time the origin to learn its position ("Origin node").
FAILURE_DECRYPT_ROUNDS = 27
_HMAC_LEN = 32


class FailureDecodeError(ValueError):
    """The origin could not make sense of a returned failure."""


class UnknownFailureSource(FailureDecodeError):
    """No hop's ``um`` HMAC matched: the packet was corrupted (or is not ours)."""


class MalformedFailureMessage(FailureDecodeError):
    """A hop's HMAC matched but its framing is broken; blame that hop."""

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(f"hop {index}: {detail}")
        self.index = index


class DecodedFailure(NamedTuple):
    """A failure the origin attributed to hop ``index`` (0 = first hop of the route)."""

    index: int
    failure_code: int
    failure_data: bytes


def encode_failuremsg(failure_code: int, failure_data: bytes = b"") -> bytes:
    """``failuremsg``: the 2-byte code followed by its data (and optional TLVs)."""
    return failure_code.to_bytes(2, "big") + failure_data


def pad_failuremsg(failuremsg: bytes, pad_to: int = FAILURE_PAD_TO) -> bytes:
    """``failure_len || failuremsg || pad_len || pad`` with failure_len+pad_len >= ``pad_to``.

    The padding hides which failure (hence which position in the route) this
    is; a message already longer than ``pad_to`` gets no padding.
    """
    if len(failuremsg) > 0xFFFF:
        raise ValueError("failuremsg too long")
    pad_len = max(0, pad_to - len(failuremsg))
    return (
        len(failuremsg).to_bytes(2, "big") + failuremsg + pad_len.to_bytes(2, "big") + bytes(pad_len)
    )


def build_error_packet(shared_secret: bytes, failuremsg: bytes, pad_to: int = FAILURE_PAD_TO) -> bytes:
    """The erring node's return packet *before* obfuscation: ``HMAC_um(body) || body``."""
    body = pad_failuremsg(failuremsg, pad_to)
    return hmac_sha256(generate_key(KEY_UM, shared_secret), body) + body


def wrap_failure(shared_secret: bytes, packet: bytes) -> bytes:
    """XOR a return packet with this hop's ``ammag`` stream.

    The erring node does it once after building the packet; every hop on the
    way back does it again with its own shared secret (so the packet is
    unrecognisable between hops).  XOR makes it its own inverse, which is
    also how the origin peels layers.
    """
    stream = chacha20_stream(generate_key(KEY_AMMAG, shared_secret), len(packet))
    return xor_bytes(packet, stream)


def create_failure_message(
    shared_secret: bytes,
    failure_code: int,
    failure_data: bytes = b"",
    *,
    pad_to: int = FAILURE_PAD_TO,
) -> bytes:
    """Build the obfuscated return packet the erring node puts in ``update_fail_htlc``.

    ``failure_data`` is everything after the code (fields and any TLV stream),
    e.g. from :func:`encode_failure_data`.
    """
    packet = build_error_packet(shared_secret, encode_failuremsg(failure_code, failure_data), pad_to)
    return wrap_failure(shared_secret, packet)


def _parse_error_body(index: int, packet: bytes) -> DecodedFailure:
    body = packet[_HMAC_LEN:]
    if len(body) < 2:
        raise MalformedFailureMessage(index, "no failure_len")
    failure_len = int.from_bytes(body[:2], "big")
    if failure_len < 2 or 2 + failure_len > len(body):
        raise MalformedFailureMessage(index, f"bad failure_len {failure_len}")
    # Trailing pad_len/pad are ignored: the HMAC already covers them, and the
    # spec tells the origin to ignore extra bytes.
    msg = body[2 : 2 + failure_len]
    return DecodedFailure(index, int.from_bytes(msg[:2], "big"), msg[2:])


def decode_failure(shared_secrets: Sequence[bytes], packet: bytes) -> DecodedFailure:
    """Origin side: find which hop sent ``packet`` and extract its failure.

    ``shared_secrets`` are in route order (as returned by ``create_onion``).
    Hop ``i`` is the sender if, after removing the ``ammag`` layers of hops
    ``0..i``, the leading HMAC matches ``HMAC_um_i`` of the rest.

    Always runs :data:`FAILURE_DECRYPT_ROUNDS` (or more) rounds, with dummy
    keys after the real ones, so the time taken does not reveal the erring
    node's position to a node that can observe retries.

    Raises :class:`UnknownFailureSource` if no HMAC matches and
    :class:`MalformedFailureMessage` if the matching hop's framing is broken.
    """
    found: tuple[int, bytes] | None = None
    rounds = max(FAILURE_DECRYPT_ROUNDS, len(shared_secrets))
    dummy = bytes(32)
    for i in range(rounds):
        real = i < len(shared_secrets)
        secret = shared_secrets[i] if real else dummy
        packet = wrap_failure(secret, packet)
        if len(packet) < _HMAC_LEN:
            continue
        expected = hmac_sha256(generate_key(KEY_UM, secret), packet[_HMAC_LEN:])
        # Constant-time comparison; only the first (closest) match counts.
        if _hmac.compare_digest(expected, packet[:_HMAC_LEN]) and real and found is None:
            found = (i, packet)
    if found is None:
        raise UnknownFailureSource("no hop's HMAC matches the failure packet")
    return _parse_error_body(*found)
