"""BOLT 12 offers, invoice requests and invoices: strings, TLV streams, rules.

A BOLT 12 object is a TLV stream (``wire/csv/bolt12.csv``) written as bech32
characters without a checksum after a human-readable prefix (``lno``,
``lnr``, ``lni``), optionally broken with ``+`` and whitespace.  Each
stream's fields mirror the previous one's (an invoice_request copies the
offer's records, an invoice the request's), so a single :class:`Bolt12`
class with every field holds all three; :attr:`Bolt12.kind` says which.
Unknown odd records are kept byte for byte (they are copied and signed).

Reading is two steps: :func:`decode` checks the encoding (bech32, TLV
framing, known records' formats, type ranges, unknown even types); the
``check_*`` functions apply each reader's requirements.  Signatures are in
:mod:`common.bolt12_merkle`.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, NamedTuple

import coincurve

import wire
from bitcoin.bech32 import CHARSET, Bech32Error, convertbits
from bitcoin.networks import NETWORKS
from common.blindedpath import BlindedPath
from common.bolt12_merkle import is_signature_type, merkle_root, tlv_records, verify

OFFER, INVREQ, INVOICE = "offer", "invoice_request", "invoice"
HRP = {OFFER: "lno", INVREQ: "lnr", INVOICE: "lni"}
KIND_OF_HRP = {v: k for k, v in HRP.items()}
BITCOIN_CHAIN = NETWORKS["bitcoin"].chain_hash
#: default ``invoice_relative_expiry``
DEFAULT_INVOICE_EXPIRY = 7200
#: invoice feature bits we know (BOLT 12 "Invoice Features": MPP)
INVOICE_FEATURE_MPP = 16

_RANGES = {
    OFFER: ((1, 79), (1_000_000_000, 1_999_999_999)),
    INVREQ: ((0, 159), (1_000_000_000, 2_999_999_999)),
    INVOICE: ((0, 239), (1_000_000_000, 3_999_999_999)),
}
_OFFER_RANGES = _RANGES[OFFER]
_INVREQ_RANGES = _RANGES[INVREQ]


class Bolt12Error(ValueError):
    """A string or stream that is not a valid BOLT 12 object of its kind."""


# --- the string form ------------------------------------------------------------------

_JOIN = re.compile(r"(?<=[0-9A-Za-z])\+\s*(?=[0-9A-Za-z])")
_CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}


def string_to_data(text: str) -> tuple[str, bytes]:
    """``(hrp, TLV bytes)`` of a BOLT 12 string (``+`` joins removed, case checked)."""
    s = _JOIN.sub("", text)
    if "+" in s:
        raise Bolt12Error("'+' must be between two bech32 characters")
    if s != s.lower() and s != s.upper():
        raise Bolt12Error("mixed case")
    s = s.lower()
    sep = s.rfind("1")
    if sep < 1:
        raise Bolt12Error("no human-readable prefix")
    hrp, chars = s[:sep], s[sep + 1:]
    try:
        five = [_CHARSET_REV[c] for c in chars]
        data = bytes(convertbits(five, 5, 8, pad=False))
    except KeyError:
        raise Bolt12Error("invalid bech32 character") from None
    except Bech32Error as e:
        raise Bolt12Error(f"bech32: {e}") from None
    return hrp, data


def data_to_string(hrp: str, data: bytes) -> str:
    return hrp + "1" + "".join(CHARSET[v] for v in convertbits(data, 8, 5, pad=True))


# --- the fields --------------------------------------------------------------------------


class Payinfo(NamedTuple):
    """``blinded_payinfo``: what paying through one of ``invoice_paths`` costs."""

    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    htlc_maximum_msat: int
    features: bytes


class Fallback(NamedTuple):
    version: int
    address: bytes


def _one(inner: str) -> tuple[Callable[[dict], Any], Callable[[Any], dict]]:
    return (lambda v: v[inner]), (lambda x: {inner: x})


def _paths() -> tuple[Callable[[dict], Any], Callable[[Any], dict]]:
    return (lambda v: [BlindedPath.from_wire(p) for p in v["paths"]]), (lambda x: {"paths": [p.to_wire() for p in x]})


#: attribute -> (TLV type, record name, from codec value, to codec value)
_FIELDS: dict[str, tuple[int, Callable[[dict], Any], Callable[[Any], dict]]] = {
    "invreq_metadata": (0, *_one("blob")),
    "offer_chains": (2, *_one("chains")),
    "offer_metadata": (4, *_one("data")),
    "offer_currency": (6, *_one("iso4217")),
    "offer_amount": (8, *_one("amount")),
    "offer_description": (10, *_one("description")),
    "offer_features": (12, *_one("features")),
    "offer_absolute_expiry": (14, *_one("seconds_from_epoch")),
    "offer_paths": (16, *_paths()),
    "offer_issuer": (18, *_one("issuer")),
    "offer_quantity_max": (20, *_one("max")),
    "offer_issuer_id": (22, *_one("id")),
    "invreq_chain": (80, *_one("chain")),
    "invreq_amount": (82, *_one("msat")),
    "invreq_features": (84, *_one("features")),
    "invreq_quantity": (86, *_one("quantity")),
    "invreq_payer_id": (88, *_one("key")),
    "invreq_payer_note": (89, *_one("note")),
    "invreq_paths": (90, *_paths()),
    "invreq_bip_353_name": (91, (lambda v: (v["name"], v["domain"])), (lambda x: {"name": x[0], "domain": x[1]})),
    "invoice_paths": (160, *_paths()),
    "invoice_blindedpay": (162, (lambda v: [Payinfo(**p) for p in v["payinfo"]]),
                           (lambda x: {"payinfo": [p._asdict() for p in x]})),
    "invoice_created_at": (164, *_one("timestamp")),
    "invoice_relative_expiry": (166, *_one("seconds_from_creation")),
    "invoice_payment_hash": (168, *_one("payment_hash")),
    "invoice_amount": (170, *_one("msat")),
    "invoice_fallbacks": (172, (lambda v: [Fallback(f["version"], f["address"]) for f in v["fallbacks"]]),
                          (lambda x: {"fallbacks": [{"version": f.version, "address": f.address} for f in x]})),
    "invoice_features": (174, *_one("features")),
    "invoice_node_id": (176, *_one("node_id")),
    "signature": (240, *_one("sig")),
}
_TYPE_OF = {name: spec[0] for name, spec in _FIELDS.items()}


@dataclass
class Bolt12:
    """An offer, invoice_request or invoice (``kind``); None is an absent field."""

    kind: str
    invreq_metadata: bytes | None = None
    offer_chains: list[bytes] | None = None
    offer_metadata: bytes | None = None
    offer_currency: str | None = None
    offer_amount: int | None = None
    offer_description: str | None = None
    offer_features: bytes | None = None
    offer_absolute_expiry: int | None = None
    offer_paths: list[BlindedPath] | None = None
    offer_issuer: str | None = None
    offer_quantity_max: int | None = None
    offer_issuer_id: bytes | None = None
    invreq_chain: bytes | None = None
    invreq_amount: int | None = None
    invreq_features: bytes | None = None
    invreq_quantity: int | None = None
    invreq_payer_id: bytes | None = None
    invreq_payer_note: str | None = None
    invreq_paths: list[BlindedPath] | None = None
    invreq_bip_353_name: tuple[bytes, bytes] | None = None
    invoice_paths: list[BlindedPath] | None = None
    invoice_blindedpay: list[Payinfo] | None = None
    invoice_created_at: int | None = None
    invoice_relative_expiry: int | None = None
    invoice_payment_hash: bytes | None = None
    invoice_amount: int | None = None
    invoice_fallbacks: list[Fallback] | None = None
    invoice_features: bytes | None = None
    invoice_node_id: bytes | None = None
    signature: bytes | None = None
    #: records this code does not know (odd types, or any signature type), type -> value
    unknown: dict[int, bytes] = field(default_factory=dict)

    # -- encoding ---------------------------------------------------------------
    def encode(self) -> bytes:
        """The TLV stream."""
        v: dict = dict(self.unknown)
        for name, (_, _, to_codec) in _FIELDS.items():
            x = getattr(self, name)
            if x is not None:
                v[name] = to_codec(x)
        try:
            return wire.bolt12_schema().encode_tlv_stream(self.kind, v)
        except wire.EncodeError as e:
            raise Bolt12Error(f"cannot encode {self.kind}: {e}") from None

    def to_string(self) -> str:
        return data_to_string(HRP[self.kind], self.encode())

    def present_types(self) -> list[int]:
        return sorted([_TYPE_OF[f.name] for f in fields(self) if f.name in _TYPE_OF
                       and getattr(self, f.name) is not None] + list(self.unknown))

    # -- copies --------------------------------------------------------------------
    def as_kind(self, kind: str, drop_signatures: bool = True) -> "Bolt12":
        """A copy as another kind, every record kept (an invoice_request copies
        its offer, an invoice its request), signatures dropped."""
        b = replace(self, kind=kind, unknown={t: x for t, x in self.unknown.items()
                                              if not (drop_signatures and is_signature_type(t))})
        if drop_signatures:
            b.signature = None
        return b

    # -- derived values ------------------------------------------------------------
    def records_in(self, ranges: tuple[tuple[int, int], ...]) -> bytes:
        """The raw records whose type is in ``ranges``, concatenated."""
        return b"".join(r.raw for r in tlv_records(self.encode())
                        if any(lo <= r.type <= hi for lo, hi in ranges))

    @property
    def offer_id(self) -> bytes:
        """SHA256 of the offer's records (Core Lightning's offer_id: types 1..79
        and 1000000000..1999999999), the same for an offer and everything made from it."""
        return hashlib.sha256(self.records_in(_OFFER_RANGES)).digest()

    @property
    def invreq_id(self) -> bytes:
        """SHA256 of the invoice_request's records (types 0..159, 1000000000..2999999999)."""
        return hashlib.sha256(self.records_in(_INVREQ_RANGES)).digest()

    def merkle_root(self) -> bytes:
        return merkle_root(self.encode())

    def expected_amount(self) -> int | None:
        """``offer_amount`` times ``invreq_quantity`` (msat offers only)."""
        if self.offer_amount is None or self.offer_currency is not None:
            return None
        return self.offer_amount * (self.invreq_quantity or 1)

    def invoice_expires_at(self) -> int:
        assert self.invoice_created_at is not None
        rel = self.invoice_relative_expiry
        return self.invoice_created_at + (DEFAULT_INVOICE_EXPIRY if rel is None else rel)


def decode_stream(kind: str, raw: bytes) -> Bolt12:
    """Parse a TLV stream of ``kind``; :class:`Bolt12Error` on bad framing or
    formats, a type outside the kind's ranges, or an unknown even type."""
    try:
        v = wire.bolt12_schema().decode_tlv_stream(kind, raw)
    except wire.DecodeError as e:
        raise Bolt12Error(f"invalid {kind}: {e}") from None
    b = Bolt12(kind)
    for name, value in v.items():
        if isinstance(name, int):
            b.unknown[name] = value
        else:
            setattr(b, name, _FIELDS[name][1](value))
    for t in b.present_types():
        if is_signature_type(t) and kind != OFFER:
            continue
        if not any(lo <= t <= hi for lo, hi in _RANGES[kind]):
            raise Bolt12Error(f"invalid {kind}: type {t} out of range")
    for paths in (b.offer_paths, b.invreq_paths, b.invoice_paths):
        if paths is not None and not paths:
            raise Bolt12Error(f"invalid {kind}: empty paths")
    if b.offer_chains is not None and not b.offer_chains:
        raise Bolt12Error(f"invalid {kind}: offer_chains without any chain")
    # the codec checks a point's prefix only: every key must be on the curve
    points = [b.offer_issuer_id, b.invreq_payer_id, b.invoice_node_id]
    for p in (b.offer_paths or []) + (b.invreq_paths or []) + (b.invoice_paths or []):
        points += ([p.first_node_id] if p.intro_is_pubkey else []) + [p.first_path_key]
        points += [h.blinded_node_id for h in p.hops]
    for pt in points:
        if pt is not None and not _on_curve(pt):
            raise Bolt12Error(f"invalid {kind}: {pt.hex()} is not a point")
    return b


def _on_curve(pt: bytes) -> bool:
    try:
        coincurve.PublicKey(pt)
    except ValueError:
        return False
    return True


def decode(text: str, kind: str | None = None) -> Bolt12:
    """Parse a BOLT 12 string (of ``kind`` if given)."""
    hrp, data = string_to_data(text)
    k = KIND_OF_HRP.get(hrp)
    if k is None or (kind is not None and k != kind):
        raise Bolt12Error(f"unexpected prefix {hrp!r}")
    if not data:
        raise Bolt12Error("empty")
    return decode_stream(k, data)


# --- readers' requirements ---------------------------------------------------------------


def unknown_even_bit(features: bytes | None, known: frozenset[int] = frozenset()) -> int | None:
    """The lowest even bit set that is not in ``known``, or None."""
    if not features:
        return None
    n = len(features) * 8
    value = int.from_bytes(features, "big")
    for bit in range(0, n, 2):
        if value >> bit & 1 and bit not in known:
            return bit
    return None


def _check_paths(paths: list[BlindedPath] | None, what: str) -> None:
    for p in paths or []:
        if not p.hops:
            raise Bolt12Error(f"{what}: a blinded path has no hops")


def _check_offer_fields(b: Bolt12) -> None:
    bit = unknown_even_bit(b.offer_features)
    if bit is not None:
        raise Bolt12Error(f"unknown offer feature {bit}")
    if b.offer_amount is not None:
        if b.offer_description is None:
            raise Bolt12Error("offer_amount without offer_description")
        if b.offer_amount == 0:
            raise Bolt12Error("offer_amount is zero")
    elif b.offer_currency is not None:
        raise Bolt12Error("offer_currency without offer_amount")
    _check_paths(b.offer_paths, "offer_paths")


def check_offer(b: Bolt12) -> None:
    """The requirements on a reader of an offer (those that do not depend on
    our chain or the time): :class:`Bolt12Error` means "MUST NOT respond"."""
    _check_offer_fields(b)
    if b.offer_issuer_id is None and not b.offer_paths:
        raise Bolt12Error("neither offer_issuer_id nor offer_paths")


def chains_of_offer(b: Bolt12) -> list[bytes]:
    """The chains an offer (or a request/invoice made from one) is for; bitcoin if unset."""
    return b.offer_chains if b.offer_chains is not None else [BITCOIN_CHAIN]


def chain_of_invreq(b: Bolt12) -> bytes:
    """The chain an invoice_request (or invoice) is for; bitcoin if unset."""
    return b.invreq_chain if b.invreq_chain is not None else BITCOIN_CHAIN


def is_offer_response(b: Bolt12) -> bool:
    """An invoice_request (or invoice) made from an offer, not a bare request."""
    return b.offer_issuer_id is not None or b.offer_paths is not None


_BIP353_OK = re.compile(rb"^[0-9A-Za-z._-]*$")


def check_invreq(b: Bolt12) -> None:
    """The invoice_request reader's requirements, signature included."""
    if b.invreq_payer_id is None or b.invreq_metadata is None:
        raise Bolt12Error("invoice_request without invreq_payer_id or invreq_metadata")
    bit = unknown_even_bit(b.invreq_features)
    if bit is not None:
        raise Bolt12Error(f"unknown invoice_request feature {bit}")
    _check_paths(b.invreq_paths, "invreq_paths")
    if b.invreq_bip_353_name is not None and not all(_BIP353_OK.match(x) for x in b.invreq_bip_353_name):
        raise Bolt12Error("invreq_bip_353_name has invalid characters")
    if is_offer_response(b):
        if b.signature is None or not verify(b.invreq_payer_id, b.signature, INVREQ, "signature", b.encode()):
            raise Bolt12Error("invoice_request signature invalid")
        _check_offer_fields(b)
    else:
        if b.offer_chains is not None or b.offer_features is not None or b.offer_quantity_max is not None:
            raise Bolt12Error("invoice_request without offer has offer_chains, offer_features or offer_quantity_max")
        if b.invreq_amount is None:
            raise Bolt12Error("invoice_request without offer needs invreq_amount")


def check_invoice(b: Bolt12) -> None:
    """The invoice reader's requirements that need nothing but the invoice
    (the time, the request it answers and the path it came by are the caller's)."""
    for name in ("invoice_amount", "invoice_created_at", "invoice_payment_hash", "invoice_node_id"):
        if getattr(b, name) is None:
            raise Bolt12Error(f"invoice without {name}")
    bit = unknown_even_bit(b.invoice_features, frozenset({INVOICE_FEATURE_MPP}))
    if bit is not None:
        raise Bolt12Error(f"unknown invoice feature {bit}")
    if not b.invoice_paths:
        raise Bolt12Error("invoice without invoice_paths")
    _check_paths(b.invoice_paths, "invoice_paths")
    if b.invoice_blindedpay is None or len(b.invoice_blindedpay) != len(b.invoice_paths):
        raise Bolt12Error("invoice_blindedpay does not match invoice_paths")
    if not usable_paths(b):
        raise Bolt12Error("no invoice path has only known features")
    assert b.invoice_node_id is not None
    if b.signature is None or not verify(b.invoice_node_id, b.signature, INVOICE, "signature", b.encode()):
        raise Bolt12Error("invoice signature invalid")


def usable_paths(b: Bolt12) -> list[tuple[BlindedPath, Payinfo]]:
    """The invoice's paths (in its order of preference) whose payinfo has no unknown even feature."""
    return [(p, i) for p, i in zip(b.invoice_paths or [], b.invoice_blindedpay or [])
            if unknown_even_bit(i.features) is None]


def invoice_matches_request(inv: Bolt12, req: Bolt12) -> bool:
    """Every record of the request (types 0..159, 1000000000..2999999999) is in the invoice, unchanged."""
    return inv.records_in(_INVREQ_RANGES) == req.records_in(_INVREQ_RANGES)


def invreq_matches_offer(req: Bolt12, offer: Bolt12) -> bool:
    """The request's offer records are exactly the offer's."""
    return req.records_in(_OFFER_RANGES) == offer.records_in(_OFFER_RANGES)


# --- keys ---------------------------------------------------------------------------------


def alias_tweak(base: bytes, public_tweak: bytes) -> bytes:
    """``SHA256(base || public_tweak)``: the tweak of a transient payer key
    (Core Lightning's bolt12_alias_tweak with its node-alias base secret)."""
    return hashlib.sha256(base + public_tweak).digest()


def tweak_add_pubkey(pubkey: bytes, tweak: bytes) -> bytes:
    """``P + tweak * G``."""
    return coincurve.PublicKey(pubkey).add(tweak).format()


def path_secret(base: bytes, data: bytes) -> bytes:
    """``SHA256(base || data)``: the ``path_id`` we put in a path we make (for an
    offer: its offer_id; for an invoice: its payment_hash), so we recognise it."""
    return hashlib.sha256(base + data).digest()
