"""BOLT 4 route blinding: building blinded paths and reading our hop of one.

A blinded path is made by its final node (the recipient) for others to use:
it picks a random ``e_0`` and walks the route, deriving for every node
``N_i`` a shared secret ``ss_i = SHA256(e_i * N_i)``, the blinded id
``B_i = HMAC256("blinded_node_id", ss_i) * N_i`` the sender encrypts the
onion to, and the ``encrypted_recipient_data`` (the node's instructions, an
``encrypted_data_tlv`` stream under ChaCha20-Poly1305 keyed by
``rho_i = HMAC256("rho", ss_i)``).  ``e_{i+1} = SHA256(E_i || ss_i) * e_i``.

A node in the path learns ``E_i`` (the ``path_key``) with the message or
HTLC, computes ``ss_i = SHA256(k_i * E_i)`` (an ECDH: hsmd's business, hence
the ``ss`` parameters here), decrypts its instructions and hands the next
node ``E_{i+1}`` (or ``next_path_key_override``).

Everything here is pure: no keys beyond the ones passed in, no I/O.  The
``encrypted_data_tlv`` codec is the wire schema's (``wire/csv/bolt.csv``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import wire
from common.onion_crypto import KEY_BLINDED_NODE_ID, KEY_RHO, blind_pubkey, blinding_factor, hmac_sha256

_ZERO_NONCE = bytes(12)
_ENCDATA = "encrypted_data_tlv"


class BlindingError(ValueError):
    """Encrypted data that does not decrypt, does not parse, or breaks a rule."""


# --- keys -------------------------------------------------------------------


def rho_key(ss: bytes) -> bytes:
    """``HMAC256("rho", ss)``: the key of a hop's ``encrypted_recipient_data``."""
    return hmac_sha256(KEY_RHO, ss)


def blinded_node_id(node_id: bytes, ss: bytes) -> bytes:
    """``B_i = HMAC256("blinded_node_id", ss_i) * N_i``."""
    return blind_pubkey(node_id, hmac_sha256(KEY_BLINDED_NODE_ID, ss))


def blinded_privkey(node_privkey: bytes, ss: bytes) -> bytes:
    """``b_i = HMAC256("blinded_node_id", ss_i) * k_i``: the private key of ``B_i``
    (hsmd signs with it; tests check it against the vectors)."""
    tweak = hmac_sha256(KEY_BLINDED_NODE_ID, ss)
    return coincurve.PrivateKey(node_privkey).multiply(tweak).secret


def next_path_key(path_key: bytes, ss: bytes) -> bytes:
    """``E_{i+1} = SHA256(E_i || ss_i) * E_i``."""
    return blind_pubkey(path_key, blinding_factor(path_key, ss))


def encrypt_data(ss: bytes, plaintext: bytes) -> bytes:
    """ChaCha20-Poly1305 under ``rho(ss)`` with an all-zero nonce (16-byte tag appended)."""
    return ChaCha20Poly1305(rho_key(ss)).encrypt(_ZERO_NONCE, plaintext, b"")


def decrypt_data(ss: bytes, ciphertext: bytes) -> bytes:
    """Inverse of :func:`encrypt_data`; :class:`BlindingError` if it does not authenticate."""
    try:
        return ChaCha20Poly1305(rho_key(ss)).decrypt(_ZERO_NONCE, ciphertext, b"")
    except (InvalidTag, ValueError):
        raise BlindingError("encrypted_recipient_data does not decrypt") from None


# --- encrypted_data_tlv ---------------------------------------------------------


class PaymentRelay(NamedTuple):
    cltv_expiry_delta: int
    fee_proportional_millionths: int
    fee_base_msat: int


class PaymentConstraints(NamedTuple):
    max_cltv_expiry: int
    htlc_minimum_msat: int


@dataclass
class EncryptedData:
    """A decoded ``encrypted_data_tlv``; None is an absent record."""

    padding: bytes | None = None
    short_channel_id: int | None = None
    next_node_id: bytes | None = None
    path_id: bytes | None = None
    next_path_key_override: bytes | None = None
    payment_relay: PaymentRelay | None = None
    payment_constraints: PaymentConstraints | None = None
    allowed_features: bytes | None = None
    #: unknown odd records, type -> raw value (kept for re-encoding)
    unknown: dict[int, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The TLV stream (records in type order)."""
        v: dict = {}
        if self.padding is not None:
            v["padding"] = {"padding": self.padding}
        if self.short_channel_id is not None:
            v["short_channel_id"] = {"short_channel_id": self.short_channel_id}
        if self.next_node_id is not None:
            v["next_node_id"] = {"node_id": self.next_node_id}
        if self.path_id is not None:
            v["path_id"] = {"data": self.path_id}
        if self.next_path_key_override is not None:
            v["next_path_key_override"] = {"path_key": self.next_path_key_override}
        if self.payment_relay is not None:
            v["payment_relay"] = self.payment_relay._asdict()
        if self.payment_constraints is not None:
            v["payment_constraints"] = self.payment_constraints._asdict()
        if self.allowed_features is not None:
            v["allowed_features"] = {"features": self.allowed_features}
        v.update(self.unknown)
        return wire.bolt_schema().encode_tlv_stream(_ENCDATA, v)

    @classmethod
    def decode(cls, raw: bytes) -> "EncryptedData":
        """Parse; :class:`BlindingError` on a malformed stream or an unknown even type."""
        try:
            v = wire.bolt_schema().decode_tlv_stream(_ENCDATA, raw)
        except wire.DecodeError as e:
            raise BlindingError(f"bad encrypted_data_tlv: {e}") from None
        d = cls(unknown={k: val for k, val in v.items() if isinstance(k, int)})
        if "padding" in v:
            d.padding = v["padding"]["padding"]
        if "short_channel_id" in v:
            d.short_channel_id = int.from_bytes(v["short_channel_id"]["short_channel_id"], "big")
        if "next_node_id" in v:
            d.next_node_id = v["next_node_id"]["node_id"]
        if "path_id" in v:
            d.path_id = v["path_id"]["data"]
        if "next_path_key_override" in v:
            d.next_path_key_override = v["next_path_key_override"]["path_key"]
        if "payment_relay" in v:
            d.payment_relay = PaymentRelay(**v["payment_relay"])
        if "payment_constraints" in v:
            d.payment_constraints = PaymentConstraints(**v["payment_constraints"])
        if "allowed_features" in v:
            d.allowed_features = v["allowed_features"]["features"]
        return d


# --- blinded_path -----------------------------------------------------------------


@dataclass(frozen=True)
class BlindedHop:
    blinded_node_id: bytes
    encrypted_recipient_data: bytes


@dataclass(frozen=True)
class BlindedPath:
    """The ``blinded_path`` subtype.  ``first_node_id`` is a 33-byte node id or
    a 9-byte ``sciddir`` (direction byte 0/1 + short_channel_id)."""

    first_node_id: bytes
    first_path_key: bytes
    hops: tuple[BlindedHop, ...]

    @property
    def final_blinded_node_id(self) -> bytes:
        return self.hops[-1].blinded_node_id

    @property
    def intro_is_pubkey(self) -> bool:
        return len(self.first_node_id) == 33

    def to_wire(self) -> dict:
        """The codec's value of a ``blinded_path`` (for TLV streams that carry paths)."""
        return {"first_node_id": self.first_node_id, "first_path_key": self.first_path_key,
                "path": [{"blinded_node_id": h.blinded_node_id,
                          "encrypted_recipient_data": h.encrypted_recipient_data} for h in self.hops]}

    @classmethod
    def from_wire(cls, v: dict) -> "BlindedPath":
        return cls(v["first_node_id"], v["first_path_key"],
                   tuple(BlindedHop(h["blinded_node_id"], h["encrypted_recipient_data"]) for h in v["path"]))

    def serialize(self) -> bytes:
        out = bytearray()
        wire.bolt_schema().subtypes["blinded_path"].encode(self.to_wire(), out)
        return bytes(out)

    @classmethod
    def parse(cls, raw: bytes) -> "BlindedPath":
        """One serialized ``blinded_path`` (all of ``raw``); ``wire.DecodeError`` if malformed."""
        v, end = wire.bolt_schema().subtypes["blinded_path"].decode(raw, 0, len(raw))
        if end != len(raw):
            raise wire.DecodeError("trailing bytes after blinded_path")
        return cls.from_wire(v)

    def to_json(self) -> dict:
        """Core Lightning's JSON form (``reply_blindedpath`` of the onion message hooks)."""
        d: dict = {}
        if self.intro_is_pubkey:
            d["first_node_id"] = self.first_node_id.hex()
        else:
            d["first_scid"] = _scid_str(int.from_bytes(self.first_node_id[1:], "big"))
            d["first_scid_dir"] = self.first_node_id[0]
        d["first_path_key"] = self.first_path_key.hex()
        d["hops"] = [{"blinded_node_id": h.blinded_node_id.hex(),
                      "encrypted_recipient_data": h.encrypted_recipient_data.hex()} for h in self.hops]
        return d


def _scid_str(v: int) -> str:
    return f"{v >> 40}x{(v >> 16) & 0xFFFFFF}x{v & 0xFFFF}"


class HopSecrets(NamedTuple):
    """What the path's creator derived for one hop (tests compare them with the vectors)."""

    path_privkey: bytes  # e_i
    path_key: bytes      # E_i
    shared_secret: bytes
    blinded_node_id: bytes
    encrypted_data: bytes


class PathConstruction(NamedTuple):
    path: BlindedPath
    secrets: list[HopSecrets]


def create_blinded_path(session_key: bytes, hops: Sequence[tuple[bytes, bytes]],
                        first_node_id: bytes | None = None) -> PathConstruction:
    """Blind the route ``hops = [(node_id, encrypted_data_tlv bytes), ...]``.

    ``session_key`` is ``e_0`` (fresh random bytes); ``first_node_id``
    replaces the introduction point's id in the result (e.g. a sciddir).
    A hop whose tlv carries ``next_path_key_override`` does not change the
    key chain here: the override is the first key of a path concatenated
    after this one by the caller.
    """
    if not hops:
        raise ValueError("create_blinded_path: empty route")
    e = coincurve.PrivateKey(session_key)
    first_key = e.public_key.format()
    out_hops, secrets = [], []
    for node_id, tlv in hops:
        big_e = e.public_key.format()
        ss = e.ecdh(node_id)
        bid = blinded_node_id(node_id, ss)
        enc = encrypt_data(ss, tlv)
        out_hops.append(BlindedHop(bid, enc))
        secrets.append(HopSecrets(e.secret, big_e, ss, bid, enc))
        e = e.multiply(blinding_factor(big_e, ss))
    return PathConstruction(BlindedPath(first_node_id or hops[0][0], first_key, tuple(out_hops)), secrets)


class UnblindedHop(NamedTuple):
    """What a node of the path reads with its ``path_key``."""

    data: EncryptedData
    next_path_key: bytes


def read_encrypted_data(path_key: bytes, ss: bytes, encrypted: bytes) -> UnblindedHop:
    """Decrypt and parse our ``encrypted_recipient_data`` (``ss = ECDH(k, path_key)``)
    and derive the next path key (``next_path_key_override`` wins)."""
    data = EncryptedData.decode(decrypt_data(ss, encrypted))
    nxt = data.next_path_key_override or next_path_key(path_key, ss)
    return UnblindedHop(data, nxt)


# --- payments: aggregated fees and relay arithmetic --------------------------------


class BlindedPayinfo(NamedTuple):
    """The route's total costs (``blinded_payinfo``, less its limits and features)."""

    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int


def aggregate_payinfo(relays: Sequence[PaymentRelay], min_final_cltv_expiry_delta: int = 0) -> BlindedPayinfo:
    """Total fee and CLTV delta of the non-final hops ``relays`` (BOLT 4's
    formulas, rounding up: the sender never underpays any hop)."""
    base, prop = 0, 0
    for r in reversed(relays):
        base = (r.fee_base_msat * 1_000_000 + base * (1_000_000 + r.fee_proportional_millionths)
                + 1_000_000 - 1) // 1_000_000
        prop = ((prop + r.fee_proportional_millionths) * 1_000_000 + prop * r.fee_proportional_millionths
                + 1_000_000 - 1) // 1_000_000
    cltv = sum(r.cltv_expiry_delta for r in relays) + min_final_cltv_expiry_delta
    return BlindedPayinfo(base, prop, cltv)


def payinfo_fee(info: BlindedPayinfo, amount_msat: int) -> int:
    """The fee a sender adds to deliver ``amount_msat`` through the path."""
    return info.fee_base_msat + amount_msat * info.fee_proportional_millionths // 1_000_000


def relay_amount(amount_msat: int, relay: PaymentRelay) -> int:
    """``amt_to_forward`` of a blinded hop that received ``amount_msat``."""
    ppm = relay.fee_proportional_millionths
    return ((amount_msat - relay.fee_base_msat) * 1_000_000 + 1_000_000 + ppm - 1) // (1_000_000 + ppm)


def dummy_hop(our_id: bytes, payment: bool) -> EncryptedData:
    """The data of a dummy hop: a hop of ours that names ourselves as next, so
    the path looks longer than it is (BOLT 4: the creator MAY add dummy hops
    at the end, ignored on receipt).  A reader that finds its own id as the
    next node peels the following layer itself.  For payments it relays at
    no fee and no CLTV delta, so amounts pass through unchanged."""
    return EncryptedData(next_node_id=our_id, payment_relay=PaymentRelay(0, 0, 0) if payment else None)


def pad_to_same_length(datas: Sequence[EncryptedData]) -> list[bytes]:
    """Encode ``datas`` with ``padding`` so that every ciphertext has the same
    length (BOLT 4 SHOULD: the sender cannot tell the hops apart by size)."""
    raw = [d.encode() for d in datas]
    target = max(len(r) for r in raw)
    out = []
    for d, r in zip(datas, raw):
        if len(r) < target:
            # a padding record costs 2 bytes of header (type, length < 253) before its content
            base = len(r) if d.padding is None else len(r) - len(d.padding) - 2
            need = target - base - 2
            d = EncryptedData(**{**d.__dict__, "padding": bytes(max(need, 0))})
            r = d.encode()
        out.append(r)
    return out
