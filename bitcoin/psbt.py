"""BIP174 Partially Signed Bitcoin Transactions, version 0, with the BIP371
taproot fields.

Parsing is strict: bad magic, truncation, trailing bytes, duplicate keys, a
known type with key data of the wrong length, a malformed value, fields of
PSBT version 2 and unsigned transactions carrying scriptSigs or witnesses all
raise a `PsbtError` subclass naming the map and the field.  Records of unknown
types (and proprietary ones) are kept and written back.

Serialization follows Bitcoin Core's order (so a PSBT Core wrote comes back
byte for byte): per map, fields by type, entries of a typed map sorted as Core
sorts them, then proprietary records, then unknown ones sorted by key.

Roles: `PSBT.from_tx` (creator), field assignment (updater), `sign_input`
(P2WPKH, P2SH-P2WPKH, P2TR key path), `finalize`, `extract`.
"""
from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field
from typing import Optional

from coincurve import PublicKey

from .bip32 import Bip32Error, KeyOrigin, deserialize_extended_key
from .hashes import hash160
from .keys import pubkey_of, sign_digest_der
from .script import is_p2tr, is_p2wpkh, p2pkh_script_code, p2sh_script, push_data
from .serialize import ByteReader, DeserializationError, ser_bytes, ser_compact_size
from .taproot import SIGHASH_DEFAULT, TaprootError, sign_taproot_keypath, taproot_output_key, xonly_pubkey
from .tx import SIGHASH_ALL, OutPoint, Tx, TxIn, TxOut

MAGIC = b"psbt\xff"

GLOBAL_UNSIGNED_TX, GLOBAL_XPUB, GLOBAL_VERSION, PROPRIETARY = 0x00, 0x01, 0xFB, 0xFC
(IN_NON_WITNESS_UTXO, IN_WITNESS_UTXO, IN_PARTIAL_SIG, IN_SIGHASH_TYPE, IN_REDEEM_SCRIPT,
 IN_WITNESS_SCRIPT, IN_BIP32_DERIVATION, IN_FINAL_SCRIPTSIG, IN_FINAL_SCRIPTWITNESS) = range(9)
IN_RIPEMD160, IN_SHA256, IN_HASH160, IN_HASH256 = 0x0A, 0x0B, 0x0C, 0x0D
(IN_TAP_KEY_SIG, IN_TAP_SCRIPT_SIG, IN_TAP_LEAF_SCRIPT, IN_TAP_BIP32_DERIVATION,
 IN_TAP_INTERNAL_KEY, IN_TAP_MERKLE_ROOT) = range(0x13, 0x19)
OUT_REDEEM_SCRIPT, OUT_WITNESS_SCRIPT, OUT_BIP32_DERIVATION = 0x00, 0x01, 0x02
OUT_TAP_INTERNAL_KEY, OUT_TAP_TREE, OUT_TAP_BIP32_DERIVATION = 0x05, 0x06, 0x07

_GLOBAL_V2_ONLY = frozenset(range(0x02, 0x07))
_IN_V2_ONLY = frozenset(range(0x0E, 0x13))
_OUT_V2_ONLY = frozenset({0x03, 0x04})
# known input types kept as raw records (with their key lengths checked), in Core's order
_IN_RAW_TYPES = (IN_RIPEMD160, IN_SHA256, IN_HASH160, IN_HASH256, IN_TAP_SCRIPT_SIG, IN_TAP_LEAF_SCRIPT)
_IN_RAW_KEYLEN = {IN_RIPEMD160: 20, IN_SHA256: 32, IN_HASH160: 20, IN_HASH256: 32, IN_TAP_SCRIPT_SIG: 64}


class PsbtError(ValueError):
    """Any PSBT problem."""


class PsbtFormatError(PsbtError):
    """Not a PSBT, truncated, trailing data, maps missing, bad unsigned transaction."""


class PsbtDuplicateKeyError(PsbtError):
    """The same key twice in one map."""


class PsbtKeyLengthError(PsbtError):
    """A known type whose key data has the wrong length."""


class PsbtValueError(PsbtError):
    """A known type whose value is malformed, or a field PSBT version 0 excludes."""


class PsbtVersionError(PsbtError):
    """PSBT_GLOBAL_VERSION other than 0."""


class PsbtFinalizeError(PsbtError):
    """An input the finalizer cannot complete."""


class PsbtExtractError(PsbtError):
    """Extraction asked of a PSBT with inputs not finalized."""


def _origin(data: bytes, what: str) -> KeyOrigin:
    try:
        return KeyOrigin.parse(data)
    except Bip32Error as e:
        raise PsbtValueError(f"{what}: {e}") from None


@dataclass(frozen=True)
class TapKeyOrigin:
    """BIP371 taproot derivation: the leaves the key signs for, then its origin."""
    leaf_hashes: tuple[bytes, ...]
    origin: KeyOrigin

    def serialize(self) -> bytes:
        return ser_compact_size(len(self.leaf_hashes)) + b"".join(self.leaf_hashes) + self.origin.serialize()

    @classmethod
    def parse(cls, data: bytes, what: str = "taproot key origin") -> "TapKeyOrigin":
        r = ByteReader(data)
        try:
            n = r.compact_size()
            hashes = tuple(r.read(32) for _ in range(n)) if n <= r.remaining() // 32 else None
        except DeserializationError:
            hashes = None
        if hashes is None:
            raise PsbtValueError(f"{what}: truncated leaf hash list")
        return cls(hashes, _origin(data[r.pos:], what))


@dataclass
class PsbtInput:
    non_witness_utxo: Optional[Tx] = None
    witness_utxo: Optional[TxOut] = None
    partial_sigs: dict[bytes, bytes] = field(default_factory=dict)       # pubkey -> sig
    sighash_type: Optional[int] = None
    redeem_script: Optional[bytes] = None
    witness_script: Optional[bytes] = None
    bip32_derivation: dict[bytes, KeyOrigin] = field(default_factory=dict)
    final_scriptsig: Optional[bytes] = None
    final_scriptwitness: Optional[list[bytes]] = None
    tap_key_sig: Optional[bytes] = None
    tap_bip32_derivation: dict[bytes, TapKeyOrigin] = field(default_factory=dict)
    tap_internal_key: Optional[bytes] = None
    tap_merkle_root: Optional[bytes] = None
    raw_fields: dict[bytes, bytes] = field(default_factory=dict)  # preimages, tap script sigs, leaf scripts
    proprietary: dict[bytes, bytes] = field(default_factory=dict)
    unknown: dict[bytes, bytes] = field(default_factory=dict)

    def is_final(self) -> bool:
        return self.final_scriptsig is not None or self.final_scriptwitness is not None


@dataclass
class PsbtOutput:
    redeem_script: Optional[bytes] = None
    witness_script: Optional[bytes] = None
    bip32_derivation: dict[bytes, KeyOrigin] = field(default_factory=dict)
    tap_internal_key: Optional[bytes] = None
    tap_tree: Optional[list[tuple[int, int, bytes]]] = None   # (depth, leaf version, script)
    tap_bip32_derivation: dict[bytes, TapKeyOrigin] = field(default_factory=dict)
    proprietary: dict[bytes, bytes] = field(default_factory=dict)
    unknown: dict[bytes, bytes] = field(default_factory=dict)


# --- field codecs --------------------------------------------------------------------

def _read_map(r: ByteReader, where: str) -> list[tuple[int, bytes, bytes, bytes]]:
    """[(type, key data, full key, value)] up to the 0x00 separator."""
    out, seen = [], set()
    try:
        while True:
            keylen = r.compact_size()
            if keylen == 0:
                return out
            key = r.read(keylen)
            value = r.var_bytes()
            kr = ByteReader(key)
            ktype = kr.compact_size()
            if key in seen:
                raise PsbtDuplicateKeyError(f"{where}: duplicate key {key.hex()}")
            seen.add(key)
            out.append((ktype, key[kr.pos:], key, value))
    except DeserializationError as e:
        raise PsbtFormatError(f"{where}: {e}") from None


def _check_key(kd: bytes, spec, where: str, name: str) -> bytes:
    """spec None: no key data; "pubkey": a valid 33/65-byte key; an int: that many bytes."""
    if spec is None:
        if kd:
            raise PsbtKeyLengthError(f"{where}: {name} key must have no key data, has {len(kd)} bytes")
    elif spec == "pubkey":
        if len(kd) not in (33, 65):
            raise PsbtKeyLengthError(f"{where}: {name} key must be a 33 or 65-byte public key, got {len(kd)} bytes")
        try:
            PublicKey(kd)
        except ValueError:
            raise PsbtValueError(f"{where}: {name} key is not a valid public key") from None
    elif len(kd) != spec:
        raise PsbtKeyLengthError(f"{where}: {name} key data must be {spec} bytes, got {len(kd)}")
    return kd


def _fixed(*sizes: int):
    def dec(value: bytes, what: str) -> bytes:
        if len(value) not in sizes:
            raise PsbtValueError(f"{what} value must be {' or '.join(map(str, sizes))} bytes, got {len(value)}")
        return value
    return dec


def _whole(read):
    """Decoder from a ByteReader function that must consume the whole value."""
    def dec(value: bytes, what: str):
        r = ByteReader(value)
        try:
            obj = read(r)
            if not r.at_end():
                raise DeserializationError("trailing bytes")
        except (DeserializationError, ValueError) as e:
            raise PsbtValueError(f"bad {what}: {e}") from None
        return obj
    return dec


def _read_unsigned_tx(r: ByteReader) -> Tx:
    """A transaction in the non-witness serialization (no 0x00 0x01 marker)."""
    version = r.i32()
    n_in = r.compact_size()
    if n_in > r.remaining() // 41:
        raise DeserializationError("too many inputs for the data")
    inputs = []
    for _ in range(n_in):
        txid, idx, ss, seq = r.read(32), r.u32(), r.var_bytes(), r.u32()
        if ss:
            raise DeserializationError("unsigned transaction has a non-empty scriptSig")
        inputs.append(TxIn(OutPoint(txid, idx), b"", seq))
    n_out = r.compact_size()
    if n_out > r.remaining() // 9:
        raise DeserializationError("too many outputs for the data")
    outputs = [_read_txout(r) for _ in range(n_out)]
    return Tx(version, inputs, outputs, r.u32())


def _copy_tx(tx: Tx) -> Tx:
    """Deep copy that also works for transactions without inputs."""
    return Tx(tx.version, [TxIn(i.prevout, i.script_sig, i.sequence, list(i.witness)) for i in tx.inputs],
              [TxOut(o.value, o.script_pubkey) for o in tx.outputs], tx.locktime)


def _read_txout(r: ByteReader) -> TxOut:
    return TxOut(r.i64(), r.var_bytes())


def _read_witness(r: ByteReader) -> list[bytes]:
    n = r.compact_size()
    if n > r.remaining():
        raise DeserializationError("too many witness items")
    return [r.var_bytes() for _ in range(n)]


def _read_tap_tree(r: ByteReader) -> list[tuple[int, int, bytes]]:
    leaves = []
    while not r.at_end():
        depth, ver, script = r.u8(), r.u8(), r.var_bytes()
        if depth > 128:
            raise DeserializationError("tap tree depth above 128")
        leaves.append((depth, ver, script))
    if not leaves:
        raise DeserializationError("empty tap tree")
    return leaves


_U32 = (lambda v, what: struct.unpack("<I", _fixed(4)(v, what))[0], lambda x: struct.pack("<I", x))
_SCRIPT = (lambda v, what: v, bytes)
_X32 = (_fixed(32), bytes)
_ORIGIN = (_origin, KeyOrigin.serialize)
_TAP_ORIGIN = (lambda v, what: TapKeyOrigin.parse(v, what), TapKeyOrigin.serialize)


class _F:
    """One typed field: key spec (see _check_key), attribute, decoder/encoder; keyed fields are dicts."""
    def __init__(self, t: int, attr: str, name: str, key, codec, keyed: bool = False, order=None):
        self.t, self.attr, self.name, self.key, self.keyed, self.order = t, attr, name, key, keyed, order
        self.dec, self.enc = codec


# in Bitcoin Core's serialization order; ints are known types kept as raw records
_INPUT_FIELDS = [
    _F(IN_NON_WITNESS_UTXO, "non_witness_utxo", "non-witness utxo", None, (_whole(Tx.read), Tx.serialize)),
    _F(IN_WITNESS_UTXO, "witness_utxo", "witness utxo", None, (_whole(_read_txout), TxOut.serialize)),
    _F(IN_PARTIAL_SIG, "partial_sigs", "partial signature", "pubkey", _SCRIPT, True, lambda kv: hash160(kv[0])),
    _F(IN_SIGHASH_TYPE, "sighash_type", "sighash type", None, _U32),
    _F(IN_REDEEM_SCRIPT, "redeem_script", "redeemScript", None, _SCRIPT),
    _F(IN_WITNESS_SCRIPT, "witness_script", "witnessScript", None, _SCRIPT),
    _F(IN_BIP32_DERIVATION, "bip32_derivation", "BIP32 derivation", "pubkey", _ORIGIN, True),
    IN_RIPEMD160, IN_SHA256, IN_HASH160, IN_HASH256,
    _F(IN_TAP_KEY_SIG, "tap_key_sig", "tap key signature", None, (_fixed(64, 65), bytes)),
    IN_TAP_SCRIPT_SIG, IN_TAP_LEAF_SCRIPT,
    _F(IN_TAP_BIP32_DERIVATION, "tap_bip32_derivation", "tap BIP32 derivation", 32, _TAP_ORIGIN, True),
    _F(IN_TAP_INTERNAL_KEY, "tap_internal_key", "tap internal key", None, _X32),
    _F(IN_TAP_MERKLE_ROOT, "tap_merkle_root", "tap merkle root", None, _X32),
    _F(IN_FINAL_SCRIPTSIG, "final_scriptsig", "final scriptSig", None, _SCRIPT),
    _F(IN_FINAL_SCRIPTWITNESS, "final_scriptwitness", "final scriptWitness", None,
       (_whole(_read_witness), lambda w: ser_compact_size(len(w)) + b"".join(map(ser_bytes, w)))),
]
_OUTPUT_FIELDS = [
    _F(OUT_REDEEM_SCRIPT, "redeem_script", "redeemScript", None, _SCRIPT),
    _F(OUT_WITNESS_SCRIPT, "witness_script", "witnessScript", None, _SCRIPT),
    _F(OUT_BIP32_DERIVATION, "bip32_derivation", "BIP32 derivation", "pubkey", _ORIGIN, True),
    _F(OUT_TAP_INTERNAL_KEY, "tap_internal_key", "tap internal key", None, _X32),
    _F(OUT_TAP_TREE, "tap_tree", "tap tree", None,
       (_whole(_read_tap_tree), lambda tree: b"".join(bytes([d, v]) + ser_bytes(s) for d, v, s in tree))),
    _F(OUT_TAP_BIP32_DERIVATION, "tap_bip32_derivation", "tap BIP32 derivation", 32, _TAP_ORIGIN, True),
]


def _parse_map(r: ByteReader, where: str, obj, fields, v2_only) -> None:
    table = {f.t: f for f in fields if isinstance(f, _F)}
    for t, kd, key, value in _read_map(r, where):
        f = table.get(t)
        if f is not None:
            k = _check_key(kd, f.key, where, f.name)
            v = f.dec(value, f"{where}: {f.name}")
            if f.keyed:
                getattr(obj, f.attr)[k] = v
            else:
                setattr(obj, f.attr, v)
        elif fields is _INPUT_FIELDS and t in _IN_RAW_TYPES:
            if t != IN_TAP_LEAF_SCRIPT:
                _check_key(kd, _IN_RAW_KEYLEN[t], where, f"type {t:#04x}")
                if t == IN_TAP_SCRIPT_SIG:
                    _fixed(64, 65)(value, f"{where}: tap script signature")
            elif len(kd) < 33 or (len(kd) - 33) % 32 or len(kd) > 33 + 32 * 128 or not value:
                raise PsbtKeyLengthError(f"{where}: control block of {len(kd)} bytes (or empty leaf script)")
            obj.raw_fields[key] = value
        elif t in v2_only:
            raise PsbtValueError(f"{where}: field type {t:#04x} is only allowed in PSBT version 2")
        elif t == PROPRIETARY:
            obj.proprietary[key] = value
        else:
            obj.unknown[key] = value


def _rec(ktype: int, kd: bytes, value: bytes) -> bytes:
    return ser_bytes(ser_compact_size(ktype) + kd) + ser_bytes(value)


def _write_map(obj, fields) -> bytes:
    out = []
    raw_by_type: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in getattr(obj, "raw_fields", {}).items():
        raw_by_type.setdefault(ByteReader(key).compact_size(), []).append((key, value))
    for f in fields:
        if not isinstance(f, _F):
            recs = raw_by_type.get(f, [])
            if f == IN_TAP_LEAF_SCRIPT:  # Core: by (script, leaf version), shorter control blocks first
                recs.sort(key=lambda kv: (kv[1][:-1], kv[1][-1:], len(kv[0]), kv[0]))
            out += [ser_bytes(k) + ser_bytes(v) for k, v in (recs if f == IN_TAP_LEAF_SCRIPT else sorted(recs))]
            continue
        v = getattr(obj, f.attr)
        if f.keyed:
            out += [_rec(f.t, k, f.enc(x)) for k, x in sorted(v.items(), key=f.order)]
        elif v is not None:
            out.append(_rec(f.t, b"", f.enc(v)))
    out += [ser_bytes(k) + ser_bytes(v) for k, v in sorted(obj.proprietary.items())]
    out += [ser_bytes(k) + ser_bytes(v) for k, v in sorted(obj.unknown.items())]
    return b"".join(out) + b"\x00"


# --- the PSBT ----------------------------------------------------------------------

@dataclass
class PSBT:
    tx: Tx
    inputs: list[PsbtInput]
    outputs: list[PsbtOutput]
    xpubs: dict[bytes, KeyOrigin] = field(default_factory=dict)  # 78-byte xpub -> origin
    version: Optional[int] = None
    proprietary: dict[bytes, bytes] = field(default_factory=dict)
    unknown: dict[bytes, bytes] = field(default_factory=dict)

    # -- creator --------------------------------------------------------------------
    @classmethod
    def from_tx(cls, tx: Tx) -> "PSBT":
        """A PSBT for an unsigned transaction (empty scriptSigs and witnesses)."""
        if any(i.script_sig or i.witness for i in tx.inputs):
            raise PsbtValueError("the transaction of a PSBT must have empty scriptSigs and witnesses")
        return cls(_copy_tx(tx), [PsbtInput() for _ in tx.inputs], [PsbtOutput() for _ in tx.outputs])

    # -- parsing ----------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes) -> "PSBT":
        if not data.startswith(MAGIC):
            raise PsbtFormatError("not a PSBT: bad magic bytes")
        r = ByteReader(data, len(MAGIC))
        p = cls(Tx(), [], [])
        tx = None
        for t, kd, key, value in _read_map(r, "global"):
            if t == GLOBAL_UNSIGNED_TX:
                _check_key(kd, None, "global", "unsigned tx")
                try:
                    tx = _whole(_read_unsigned_tx)(value, "global: unsigned transaction")
                except PsbtValueError as e:
                    raise PsbtFormatError(str(e)) from None
            elif t == GLOBAL_XPUB:
                _check_key(kd, 78, "global", "xpub")
                try:
                    depth = deserialize_extended_key(kd).depth
                except Bip32Error as e:
                    raise PsbtValueError(f"global: bad xpub: {e}") from None
                origin = _origin(value, "global xpub")
                if len(origin.path) != depth:
                    raise PsbtValueError(f"global: xpub of depth {depth} with a path of {len(origin.path)}")
                p.xpubs[kd] = origin
            elif t == GLOBAL_VERSION:
                _check_key(kd, None, "global", "version")
                p.version = _U32[0](value, "global: version")
            elif t in _GLOBAL_V2_ONLY:
                raise PsbtValueError(f"global: field type {t:#04x} is only allowed in PSBT version 2")
            elif t == PROPRIETARY:
                p.proprietary[key] = value
            else:
                p.unknown[key] = value
        if p.version not in (None, 0):
            raise PsbtVersionError(f"unsupported PSBT version {p.version}")
        if tx is None:
            raise PsbtFormatError("global: no unsigned transaction")
        p.tx = tx
        for kind, items, cls_, fields, v2 in (("input", tx.inputs, PsbtInput, _INPUT_FIELDS, _IN_V2_ONLY),
                                              ("output", tx.outputs, PsbtOutput, _OUTPUT_FIELDS, _OUT_V2_ONLY)):
            for n in range(len(items)):
                if r.at_end():
                    raise PsbtFormatError(f"{kind} {n}: missing {kind} map")
                obj = cls_()
                _parse_map(r, f"{kind} {n}", obj, fields, v2)
                (p.inputs if kind == "input" else p.outputs).append(obj)
        if not r.at_end():
            raise PsbtFormatError(f"{r.remaining()} bytes of extra data after the PSBT")
        for n, inp in enumerate(p.inputs):
            prev, utxo_tx = tx.inputs[n].prevout, inp.non_witness_utxo
            if utxo_tx is not None and (utxo_tx.txid() != prev.txid or prev.index >= len(utxo_tx.outputs)):
                raise PsbtValueError(f"input {n}: non-witness utxo does not match the outpoint {prev}")
        return p

    @classmethod
    def from_base64(cls, s: str) -> "PSBT":
        try:
            raw = base64.b64decode(s.strip(), validate=True)
        except (binascii.Error, ValueError) as e:
            raise PsbtFormatError(f"not base64: {e}") from None
        return cls.parse(raw)

    # -- serialization ------------------------------------------------------------------
    def serialize(self) -> bytes:
        if len(self.inputs) != len(self.tx.inputs) or len(self.outputs) != len(self.tx.outputs):
            raise PsbtFormatError("input/output maps do not match the unsigned transaction")
        out = [MAGIC, _rec(GLOBAL_UNSIGNED_TX, b"", self.tx.serialize(include_witness=False))]
        # Core orders xpubs by key origin
        for xpub, origin in sorted(self.xpubs.items(), key=lambda kv: (kv[1].fingerprint, kv[1].path, kv[0])):
            out.append(_rec(GLOBAL_XPUB, xpub, origin.serialize()))
        if self.version is not None:
            out.append(_rec(GLOBAL_VERSION, b"", _U32[1](self.version)))
        out += [ser_bytes(k) + ser_bytes(v) for k, v in sorted(self.proprietary.items())]
        out += [ser_bytes(k) + ser_bytes(v) for k, v in sorted(self.unknown.items())]
        out.append(b"\x00")
        out += [_write_map(i, _INPUT_FIELDS) for i in self.inputs]
        out += [_write_map(o, _OUTPUT_FIELDS) for o in self.outputs]
        return b"".join(out)

    def to_base64(self) -> str:
        return base64.b64encode(self.serialize()).decode()

    # -- what is being spent ------------------------------------------------------------
    def spent_output(self, n: int) -> TxOut:
        inp = self.inputs[n]
        if inp.witness_utxo is not None:
            return inp.witness_utxo
        if inp.non_witness_utxo is not None:
            return inp.non_witness_utxo.outputs[self.tx.inputs[n].prevout.index]
        raise PsbtError(f"input {n}: no witness or non-witness utxo")

    def spent_outputs(self) -> list[TxOut]:
        return [self.spent_output(n) for n in range(len(self.inputs))]

    def fee(self) -> int:
        return sum(o.value for o in self.spent_outputs()) - sum(o.value for o in self.tx.outputs)

    # -- signer (for the holder of the keys) --------------------------------------------
    def sign_input(self, n: int, secret: bytes, hash_type: Optional[int] = None,
                   aux_rand: Optional[bytes] = None) -> None:
        """Sign input n: P2WPKH / P2SH-P2WPKH with `secret`'s key (a partial signature),
        or P2TR key path with `secret` the internal key (tweaked by tap_merkle_root)."""
        inp, spk = self.inputs[n], self.spent_output(n).script_pubkey
        if is_p2tr(spk):
            ht = hash_type if hash_type is not None else (inp.sighash_type or SIGHASH_DEFAULT)
            if taproot_output_key(xonly_pubkey(secret), inp.tap_merkle_root)[0] != spk[2:]:
                raise PsbtError(f"input {n}: key does not match the taproot output")
            try:
                inp.tap_key_sig = sign_taproot_keypath(secret, self.tx, n, self.spent_outputs(), ht,
                                                       inp.tap_merkle_root, aux_rand)
            except TaprootError as e:
                raise PsbtError(f"input {n}: {e}") from None
            return
        program = self._p2wpkh_program(n, spk)
        pub = pubkey_of(secret)
        if hash160(pub) != program:
            raise PsbtError(f"input {n}: key does not match the P2WPKH output")
        ht = hash_type if hash_type is not None else (inp.sighash_type or SIGHASH_ALL)
        digest = self.tx.sighash_segwit_v0(n, p2pkh_script_code(pub), self.spent_output(n).value, ht)
        inp.partial_sigs[pub] = sign_digest_der(secret, digest) + bytes([ht])

    def _p2wpkh_program(self, n: int, spk: bytes) -> bytes:
        if is_p2wpkh(spk):
            return spk[2:]
        rs = self.inputs[n].redeem_script
        if rs is not None and is_p2wpkh(rs) and spk == p2sh_script(hash160(rs)):
            return rs[2:]
        raise PsbtError(f"input {n}: not a P2WPKH, P2SH-P2WPKH or P2TR output ({spk.hex()})")

    # -- finalizer and extractor ----------------------------------------------------------
    def finalize_input(self, n: int) -> None:
        inp = self.inputs[n]
        if inp.is_final():
            return
        try:
            spk = self.spent_output(n).script_pubkey
        except PsbtError as e:
            raise PsbtFinalizeError(str(e)) from None
        scriptsig = None
        if is_p2tr(spk):
            sig = inp.tap_key_sig
            if sig is None:
                raise PsbtFinalizeError(f"input {n}: no taproot key-path signature")
            ht = SIGHASH_DEFAULT if len(sig) == 64 else sig[64]
            if len(sig) == 65 and ht == SIGHASH_DEFAULT:
                raise PsbtFinalizeError(f"input {n}: 65-byte signature with hash type 0")
            if inp.sighash_type is not None and inp.sighash_type != ht:
                raise PsbtFinalizeError(f"input {n}: signature hash type {ht} is not {inp.sighash_type}")
            witness = [sig]
        else:
            try:
                program = self._p2wpkh_program(n, spk)
            except PsbtError as e:
                raise PsbtFinalizeError(f"cannot finalize: {e}") from None
            found = [(pk, s) for pk, s in inp.partial_sigs.items() if len(pk) == 33 and hash160(pk) == program]
            if not found:
                raise PsbtFinalizeError(f"input {n}: no signature for the P2WPKH key")
            pk, sig = found[0]
            if not sig or (inp.sighash_type is not None and sig[-1] != inp.sighash_type):
                raise PsbtFinalizeError(f"input {n}: signature hash type does not match {inp.sighash_type}")
            witness = [sig, pk]
            if not is_p2wpkh(spk):
                scriptsig = push_data(inp.redeem_script)
        self.inputs[n] = PsbtInput(non_witness_utxo=inp.non_witness_utxo, witness_utxo=inp.witness_utxo,
                                   final_scriptsig=scriptsig, final_scriptwitness=witness,
                                   proprietary=inp.proprietary, unknown=inp.unknown)

    def finalize(self) -> None:
        """Finalize every input that can be; PsbtFinalizeError lists those that cannot."""
        errors = []
        for n in range(len(self.inputs)):
            try:
                self.finalize_input(n)
            except PsbtFinalizeError as e:
                errors.append(str(e))
        if errors:
            raise PsbtFinalizeError("; ".join(errors))

    def is_finalized(self) -> bool:
        return all(i.is_final() for i in self.inputs)

    def extract(self) -> Tx:
        """The network transaction, from the finalized scriptSigs and witnesses."""
        missing = [n for n, i in enumerate(self.inputs) if not i.is_final()]
        if missing:
            raise PsbtExtractError(f"inputs not finalized: {missing}")
        tx = _copy_tx(self.tx)
        for txin, inp in zip(tx.inputs, self.inputs):
            txin.script_sig = inp.final_scriptsig or b""
            txin.witness = list(inp.final_scriptwitness or [])
        return tx
