"""BOLT 11 invoices: decoding (with every reader check the spec asks for) and
signed encoding.

Layout: bech32(hrp = "ln" + currency + [amount], data = timestamp(35 bits) +
tagged fields + 65-byte recoverable signature).  The signature commits to
sha256(hrp as UTF-8 || data words packed into bytes, zero padded).

Signing goes through a callback ``(hrp, data_words) -> 65 bytes`` because the
node key lives in hsmd (another process); hsmd can recompute
:func:`signing_hash` itself from what it is asked to sign, like Core
Lightning's ``hsmd_sign_invoice``.  :func:`privkey_signer` makes such a
callback from a raw key.

Decoded invoices keep every raw tagged field in order (``tagged_fields``), so
:meth:`Invoice.reencode` reproduces the exact string even for unusual field
orders, non-minimal encodings or skipped fields.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

from bitcoin.address import AddressError, address_to_script, script_to_address
from bitcoin.bech32 import CHARSET, Bech32Error, Encoding, bech32_decode, bech32_encode, convertbits
from bitcoin.hashes import sha256
from bitcoin.keys import is_valid_pubkey
from bitcoin.networks import NETWORKS, Network, network_by_name
from bitcoin.script import OP_0, OP_1, p2pkh_script, p2sh_script, witness_program
from common.amount import AmountError, bolt11_amount_decode, bolt11_amount_encode
from common.features import Context, bits_from_features, missing_dependencies, unknown_even_bits, validate_features
from common.scid import ShortChannelId

DEFAULT_EXPIRY = 3600                 # seconds, when there is no `x`
DEFAULT_MIN_FINAL_CLTV_EXPIRY = 18    # blocks, when there is no `c`
MAX_FIELD_WORDS = 1023                # 10-bit data_length
SIG_WORDS = 104                       # 520 bits: r || s || recovery id
TIMESTAMP_WORDS = 7                   # 35 bits
ROUTE_HOP_LEN = 51                    # 33 + 8 + 4 + 4 + 2 bytes
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# Canonical order we write known fields in when no explicit order is given.
_CANONICAL_ORDER = "psdhmnxcfr9"
# Fields with a fixed data_length (in words); other lengths are skipped.
_FIXED_WORDS = {"p": 52, "s": 52, "h": 52, "n": 53}

SignFn = Callable[[str, Sequence[int]], bytes]
"""(hrp, data words without signature) -> 64-byte r||s + 1-byte recovery id."""


class Bolt11Error(ValueError):
    """Invoice rejected (decode) or not encodable; the message says why."""


@dataclass(frozen=True)
class TaggedField:
    """A raw tagged field: its bech32 type character and 5-bit data words."""

    tag: str
    data: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.tag) != 1 or self.tag not in CHARSET:
            raise Bolt11Error(f"invalid tag {self.tag!r}")
        if len(self.data) > MAX_FIELD_WORDS:
            raise Bolt11Error(f"{self.tag} field too long: {len(self.data)} words, at most {MAX_FIELD_WORDS}")
        if any(not 0 <= w < 32 for w in self.data):
            raise Bolt11Error(f"{self.tag} field data is not 5-bit words")

    def words(self) -> list[int]:
        n = len(self.data)
        return [CHARSET.index(self.tag), n >> 5, n & 31, *self.data]


@dataclass(frozen=True)
class RouteHintHop:
    """One `r` entry: the channel from ``pubkey`` towards the payee."""

    pubkey: bytes
    short_channel_id: ShortChannelId
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int

    def __post_init__(self) -> None:
        if not is_valid_pubkey(self.pubkey):
            raise Bolt11Error(f"route hint: invalid pubkey {self.pubkey.hex()}")
        for name, bits in (("fee_base_msat", 32), ("fee_proportional_millionths", 32),
                           ("cltv_expiry_delta", 16)):
            if not 0 <= getattr(self, name) < (1 << bits):
                raise Bolt11Error(f"route hint: {name} {getattr(self, name)} out of range")

    def to_bytes(self) -> bytes:
        return self.pubkey + self.short_channel_id.to_bytes() + struct.pack(
            ">IIH", self.fee_base_msat, self.fee_proportional_millionths, self.cltv_expiry_delta)

    @classmethod
    def from_bytes(cls, b: bytes) -> RouteHintHop:
        return cls(b[:33], ShortChannelId.from_bytes(b[33:41]), *struct.unpack(">IIH", b[41:51]))


@dataclass(frozen=True)
class Fallback:
    """An `f` on-chain fallback: witness version 0-16 with its program, or 17
    (P2PKH) / 18 (P2SH) with the 20-byte hash."""

    version: int
    program: bytes

    def __post_init__(self) -> None:
        n = len(self.program)
        if self.version in (17, 18) and n != 20:
            raise Bolt11Error(f"fallback version {self.version} needs a 20-byte hash, got {n}")
        if self.version == 0 and n not in (20, 32):
            raise Bolt11Error(f"fallback witness v0 program of bad length {n}")
        if not 0 <= self.version <= 18 or (self.version <= 16 and not 2 <= n <= 40):
            raise Bolt11Error(f"invalid fallback: version {self.version}, program of {n} bytes")

    def script(self) -> bytes:
        if self.version == 17:
            return p2pkh_script(self.program)
        if self.version == 18:
            return p2sh_script(self.program)
        op = OP_0 if self.version == 0 else OP_1 + self.version - 1
        return bytes([op, len(self.program)]) + self.program

    def address(self, network: Network) -> str | None:
        return script_to_address(self.script(), network)

    @classmethod
    def from_address(cls, address: str, network: Network) -> Fallback:
        try:
            spk = address_to_script(address, network)
        except AddressError as e:
            raise Bolt11Error(f"invalid fallback address: {e}") from None
        wp = witness_program(spk)
        if wp is not None:
            return cls(*wp)
        # address_to_script only returns segwit, P2PKH (25 bytes) or P2SH.
        return cls(17, spk[3:23]) if len(spk) == 25 else cls(18, spk[2:22])


@dataclass
class InvoiceFields:
    """What :func:`encode` writes.  ``None`` / empty means "omit the field"
    (readers then use the defaults: expiry 3600, min_final_cltv_expiry 18).

    ``field_order`` optionally fixes the layout: a tag character places the
    field(s) of that kind there, a :class:`TaggedField` is written verbatim
    (an unknown tag, or a deliberately unusual encoding).  Kinds it does not
    mention follow in canonical order.
    """

    network: Network | str
    timestamp: int
    payment_hash: bytes
    payment_secret: bytes
    amount_msat: int | None = None
    description: str | None = None
    description_hash: bytes | None = None
    expiry: int | None = None
    min_final_cltv_expiry: int | None = None
    payee: bytes | None = None          # written as `n` (else readers recover it)
    fallbacks: list[Fallback] = field(default_factory=list)
    route_hints: list[list[RouteHintHop]] = field(default_factory=list)
    features: bytes = b""               # normally common.features.our_features("9")
    metadata: bytes | None = None
    field_order: Sequence[str | TaggedField] | None = None


@dataclass
class Invoice:
    """A decoded, signature-checked invoice."""

    network: Network
    hrp: str
    amount_msat: int | None
    timestamp: int
    payment_hash: bytes
    payment_secret: bytes
    description: str | None
    description_hash: bytes | None
    payee: bytes                         # from `n`, or recovered from the signature
    payee_in_invoice: bool               # whether a valid `n` field was present
    expiry: int
    min_final_cltv_expiry: int
    fallbacks: list[Fallback]
    route_hints: list[list[RouteHintHop]]
    features: bytes                      # wire form (big-endian bytes)
    metadata: bytes | None
    signature: bytes                     # 64-byte r||s + recovery id
    unknown_fields: list[TaggedField]    # unknown tags and skipped fields, in order
    tagged_fields: list[TaggedField]     # every field as written, in order

    @property
    def currency(self) -> str:
        return self.network.bolt11_prefix

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry

    def is_expired(self, now: int) -> bool:
        return now >= self.expires_at

    def reencode(self, signer: bytes | SignFn) -> str:
        """Re-sign the exact fields that were decoded (same string if the
        signer is deterministic and holds the same key)."""
        return encode_tagged(self.hrp, self.timestamp, self.tagged_fields, signer)


# --- 5-bit helpers -------------------------------------------------------

def _int_to_words(n: int) -> list[int]:
    """Minimal big-endian 5-bit words (0 -> no words)."""
    return [(n >> (5 * i)) & 31 for i in reversed(range((n.bit_length() + 4) // 5))]


def _words_to_int(words: Sequence[int]) -> int:
    n = 0
    for w in words:
        n = (n << 5) | w
    return n


def _words_to_bytes(words: Sequence[int]) -> bytes:
    """Pack 5-bit words into bytes, dropping the trailing partial byte (the
    writer's zero padding), as every implementation does."""
    total = len(words) * 5
    nbytes = total // 8
    return (_words_to_int(words) >> (total - nbytes * 8)).to_bytes(nbytes, "big")


def _bytes_to_words(b: bytes) -> list[int]:
    return convertbits(b, 8, 5, True)


def signing_hash(hrp: str, data_words: Sequence[int]) -> bytes:
    """BOLT 11: sha256 of the hrp (UTF-8) and the data part without the
    signature, packed into bytes with zero bits appended to a byte boundary."""
    return sha256(hrp.encode() + bytes(convertbits(list(data_words), 5, 8, True)))


def privkey_signer(privkey: bytes) -> SignFn:
    """A SignFn for a raw 32-byte key: deterministic RFC6979, low-S, as the
    spec examples are generated."""
    key = PrivateKey(privkey)

    def sign(hrp: str, data_words: Sequence[int]) -> bytes:
        return key.sign_recoverable(signing_hash(hrp, data_words), hasher=None)
    return sign


# --- encoding ------------------------------------------------------------

def _sign(hrp: str, timestamp: int, fields: Sequence[TaggedField],
          signer: bytes | SignFn) -> tuple[list[int], bytes]:
    """(data words without signature, 65-byte signature)."""
    if not 0 <= timestamp < (1 << 35):
        raise Bolt11Error(f"timestamp {timestamp} does not fit in 35 bits")
    data = _int_to_words(timestamp)
    data = [0] * (TIMESTAMP_WORDS - len(data)) + data
    for f in fields:
        data += f.words()
    sign = privkey_signer(signer) if isinstance(signer, (bytes, bytearray)) else signer
    sig = bytes(sign(hrp, data))
    if len(sig) != 65 or sig[64] > 3:
        raise Bolt11Error("signer must return 64-byte r||s followed by a recovery id 0-3")
    return data, sig


def encode_tagged(hrp: str, timestamp: int, fields: Sequence[TaggedField],
                  signer: bytes | SignFn) -> str:
    """Low-level: sign and bech32-encode raw fields, without semantic checks
    (also how tests build deliberately invalid invoices)."""
    data, sig = _sign(hrp, timestamp, fields, signer)
    return bech32_encode(hrp, data + _bytes_to_words(sig), Encoding.BECH32)


def _semantic_fields(inv: InvoiceFields) -> dict[str, list[TaggedField]]:
    """Each known kind -> its encoded field(s), validating values."""
    def raw(tag: str, b: bytes) -> TaggedField:
        return TaggedField(tag, tuple(_bytes_to_words(b)))

    def fixed(tag: str, name: str, b: bytes, size: int) -> TaggedField:
        if len(b) != size:
            raise Bolt11Error(f"{name} must be {size} bytes, got {len(b)}")
        return raw(tag, b)

    def uint(tag: str, name: str, n: int, bits: int) -> TaggedField:
        if not 0 <= n < (1 << bits):
            raise Bolt11Error(f"{name} {n} out of range")
        return TaggedField(tag, tuple(_int_to_words(n)))    # minimal, as required

    out: dict[str, list[TaggedField]] = {
        "p": [fixed("p", "payment_hash", inv.payment_hash, 32)],
        "s": [fixed("s", "payment_secret", inv.payment_secret, 32)],
    }
    if (inv.description is None) == (inv.description_hash is None):
        raise Bolt11Error("exactly one of description and description_hash is required")
    if inv.description is not None:
        out["d"] = [raw("d", inv.description.encode())]
    if inv.description_hash is not None:
        out["h"] = [fixed("h", "description_hash", inv.description_hash, 32)]
    if inv.metadata is not None:
        out["m"] = [raw("m", inv.metadata)]
    if inv.payee is not None:
        out["n"] = [fixed("n", "payee", inv.payee, 33)]
    if inv.expiry is not None:
        out["x"] = [uint("x", "expiry", inv.expiry, 64)]
    if inv.min_final_cltv_expiry is not None:
        out["c"] = [uint("c", "min_final_cltv_expiry", inv.min_final_cltv_expiry, 32)]
    for fb in inv.fallbacks:
        out.setdefault("f", []).append(TaggedField("f", (fb.version, *_bytes_to_words(fb.program))))
    for route in inv.route_hints:
        if not route:
            raise Bolt11Error("empty route hint")
        out.setdefault("r", []).append(raw("r", b"".join(h.to_bytes() for h in route)))
    bits = bits_from_features(inv.features)
    if bits:      # BOLT 11: omit `9` altogether when no bits are set
        err = validate_features(bits, Context.INVOICE)
        if err:
            raise Bolt11Error(f"invalid invoice features: {err}")
        out["9"] = [TaggedField("9", tuple(_int_to_words(int.from_bytes(inv.features, "big"))))]
    return out


def encode(inv: InvoiceFields, signer: bytes | SignFn) -> str:
    """Encode and sign an invoice.  ``signer`` is a 32-byte private key or a
    :data:`SignFn` callback (e.g. a request to hsmd)."""
    network = network_by_name(inv.network) if isinstance(inv.network, str) else inv.network
    hrp = "ln" + network.bolt11_prefix
    if inv.amount_msat is not None:
        try:
            hrp += bolt11_amount_encode(inv.amount_msat)
        except AmountError as e:
            raise Bolt11Error(str(e)) from None
    kinds = _semantic_fields(inv)
    fields: list[TaggedField] = []
    placed: set[str] = set()
    for item in inv.field_order or ():
        if isinstance(item, TaggedField):
            fields.append(item)
            continue
        if item in placed or item not in kinds:
            raise Bolt11Error(f"field_order: {item!r} repeated or has no value to place")
        fields += kinds[item]
        placed.add(item)
    for tag in _CANONICAL_ORDER:
        if tag in kinds and tag not in placed:
            fields += kinds[tag]
    data, sig = _sign(hrp, inv.timestamp, fields, signer)
    if inv.payee is not None:
        # Catch a signer holding another key before anyone sees the invoice.
        try:
            _check_signature(hrp, data, sig, inv.payee)
        except Bolt11Error as e:
            raise Bolt11Error(f"signer's signature does not verify against payee: {e}") from None
    return bech32_encode(hrp, data + _bytes_to_words(sig), Encoding.BECH32)


# --- decoding ------------------------------------------------------------

def _parse_hrp(hrp: str) -> tuple[Network, int | None]:
    if not hrp.startswith("ln"):
        raise Bolt11Error(f"prefix {hrp!r} does not start with 'ln'")
    # The currency is everything before the first digit; the rest is amount.
    i = 2
    while i < len(hrp) and not hrp[i].isdigit():
        i += 1
    network = next((n for n in NETWORKS.values() if n.bolt11_prefix == hrp[2:i]), None)
    if network is None:
        raise Bolt11Error(f"unknown currency prefix {hrp[:i]!r}")
    if i == len(hrp):
        return network, None
    try:
        return network, bolt11_amount_decode(hrp[i:])
    except AmountError as e:
        raise Bolt11Error(str(e)) from None


_UINT_NAMES = {"x": "expiry", "c": "min_final_cltv_expiry", "9": "features"}


def _uint_field(f: TaggedField, bits: int) -> int:
    # BOLT 11: a `c`, `x` or `9` with leading 0 words SHOULD make the invoice
    # invalid; a writer that gets this wrong may get other things wrong too.
    if f.data and f.data[0] == 0:
        raise Bolt11Error(f"{f.tag} field ({_UINT_NAMES[f.tag]}) has non-minimal data_length")
    n = _words_to_int(f.data)
    if n >= (1 << bits):
        raise Bolt11Error(f"{f.tag} field ({_UINT_NAMES[f.tag]}) value {n} too large")
    return n


def _parse_fallback(f: TaggedField) -> Fallback | None:
    if not f.data:
        raise Bolt11Error("f field is empty")
    if f.data[0] > 18:
        return None          # unknown version: MUST skip
    try:
        return Fallback(f.data[0], _words_to_bytes(f.data[1:]))
    except Bolt11Error as e:
        raise Bolt11Error(f"f field: {e}") from None


def _parse_route(f: TaggedField) -> list[RouteHintHop]:
    b = _words_to_bytes(f.data)
    if not b or len(b) % ROUTE_HOP_LEN:
        raise Bolt11Error(f"r field of {len(b)} bytes is not a whole number of {ROUTE_HOP_LEN}-byte hops")
    try:
        return [RouteHintHop.from_bytes(b[i:i + ROUTE_HOP_LEN]) for i in range(0, len(b), ROUTE_HOP_LEN)]
    except Bolt11Error as e:
        raise Bolt11Error(f"r field: {e}") from None


def _split_fields(words: Sequence[int]) -> list[TaggedField]:
    fields, i = [], 0
    while i < len(words):
        if i + 3 > len(words):
            raise Bolt11Error("truncated tagged field header")
        n = (words[i + 1] << 5) | words[i + 2]
        if i + 3 + n > len(words):
            raise Bolt11Error(f"tagged field {CHARSET[words[i]]!r} longer than the remaining data")
        fields.append(TaggedField(CHARSET[words[i]], tuple(words[i + 3:i + 3 + n])))
        i += 3 + n
    return fields


def decode(invoice: str, description: str | None = None) -> Invoice:
    """Decode and check a BOLT 11 invoice (a ``lightning:`` prefix is allowed).

    If ``description`` is given and the invoice has `h`, it must hash to it.
    Raises :class:`Bolt11Error` with the reason for every rejection.
    """
    if not isinstance(invoice, str):
        raise Bolt11Error("invoice must be a string")
    if invoice[:10].lower() == "lightning:":
        invoice = invoice[10:]
    try:
        hrp, words, spec = bech32_decode(invoice, max_length=None)
    except Bech32Error as e:
        reason = str(e)
        raise Bolt11Error(reason if reason == "invalid checksum" else f"malformed bech32 string: {reason}") from None
    if spec != Encoding.BECH32:
        raise Bolt11Error("invalid checksum: bech32m is not used by BOLT 11")
    network, amount_msat = _parse_hrp(hrp)
    if len(words) < TIMESTAMP_WORDS + SIG_WORDS:
        raise Bolt11Error("invoice too short: no room for timestamp and signature")
    body, sig = words[:-SIG_WORDS], _words_to_bytes(words[-SIG_WORDS:])
    timestamp = _words_to_int(body[:TIMESTAMP_WORDS])
    raw_fields = _split_fields(body[TIMESTAMP_WORDS:])

    # First valid field of each kind wins (BOLT 11: "SHOULD use the first p
    # field"); later ones are kept in unknown_fields like Core Lightning does.
    blobs: dict[str, bytes] = {}          # p, s, h, n, m, d (raw bytes)
    uints: dict[str, int] = {}            # x, c, 9
    unknown: list[TaggedField] = []
    fallbacks: list[Fallback] = []
    routes: list[list[RouteHintHop]] = []
    for f in raw_fields:
        t = f.tag
        # Skipped: unknown tags, repeats, p/s/h/n of the wrong length (the
        # spec's "fields which must be ignored" example), invalid `n` keys.
        if t not in _CANONICAL_ORDER or t in blobs or t in uints \
                or (t in _FIXED_WORDS and len(f.data) != _FIXED_WORDS[t]) \
                or (t == "n" and not is_valid_pubkey(_words_to_bytes(f.data))):
            unknown.append(f)
        elif t == "f":
            fb = _parse_fallback(f)
            if fb is None:                   # unknown version: MUST skip
                unknown.append(f)
            else:
                fallbacks.append(fb)
        elif t == "r":
            routes.append(_parse_route(f))
        elif t in "xc9":
            uints[t] = _uint_field(f, {"x": 64, "c": 32, "9": len(f.data) * 5}[t])
        else:
            blobs[t] = _words_to_bytes(f.data)

    payment_hash, payment_secret = blobs.get("p"), blobs.get("s")
    desc_hash, payee = blobs.get("h"), blobs.get("n")
    try:
        desc = blobs["d"].decode("utf-8") if "d" in blobs else None
    except UnicodeDecodeError:
        raise Bolt11Error("d field (description) is not valid UTF-8") from None
    n9 = uints.get("9", 0)
    features = n9.to_bytes((n9.bit_length() + 7) // 8, "big")
    if payment_hash is None:
        raise Bolt11Error("missing required p field (payment_hash)")
    if payment_secret is None:
        raise Bolt11Error("missing required s field (payment_secret)")
    if (desc is None) == (desc_hash is None):
        raise Bolt11Error("both d and h fields present" if desc is not None else "missing d or h field")
    if description is not None and desc_hash is not None and sha256(description.encode()) != desc_hash:
        raise Bolt11Error("description does not match the h field (description hash)")
    bad_even = unknown_even_bits(features)
    if bad_even:
        raise Bolt11Error(f"unknown required feature bit(s) {', '.join(map(str, bad_even))}")
    deps = missing_dependencies(features)
    if deps:
        raise Bolt11Error("missing feature dependency: " + "; ".join(f"{a} requires {b}" for a, b in deps))

    return Invoice(
        network=network, hrp=hrp, amount_msat=amount_msat, timestamp=timestamp,
        payment_hash=payment_hash, payment_secret=payment_secret,
        description=desc, description_hash=desc_hash,
        payee=_check_signature(hrp, body, sig, payee), payee_in_invoice=payee is not None,
        expiry=uints.get("x", DEFAULT_EXPIRY),
        min_final_cltv_expiry=uints.get("c", DEFAULT_MIN_FINAL_CLTV_EXPIRY),
        fallbacks=fallbacks, route_hints=routes, features=features, metadata=blobs.get("m"), signature=sig,
        unknown_fields=unknown, tagged_fields=raw_fields)


def _check_signature(hrp: str, body: Sequence[int], sig: bytes, payee: bytes | None) -> bytes:
    """Verify against `n` (low-S required) or recover the payee (either S)."""
    digest = signing_hash(hrp, body)
    recid = sig[64]
    if recid > 3:
        raise Bolt11Error(f"signature is not recoverable: recovery id {recid} out of range")
    if payee is not None:
        # BOLT 11: with `n`, a signature that is not low-S MUST fail (it is
        # malleable); libsecp256k1's verify would reject it anyway, this just
        # gives the precise reason.
        if int.from_bytes(sig[32:64], "big") > _SECP256K1_N // 2:
            raise Bolt11Error("signature is not low-S (high-S) while an n field is present")
        try:
            ok = PublicKey(payee).verify(cdata_to_der(deserialize_compact(sig[:64])), digest, hasher=None)
        except Exception:
            ok = False
        if not ok:
            raise Bolt11Error("signature does not match the payee in the n field")
        return payee
    try:
        return PublicKey.from_signature_and_message(sig, digest, hasher=None).format(compressed=True)
    except Exception:
        raise Bolt11Error("signature is not recoverable") from None
