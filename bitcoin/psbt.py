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

from .bip32 import Bip32Error, deserialize_extended_key, format_path
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


@dataclass(frozen=True)
class KeyOrigin:
    """Master key fingerprint and derivation path (BIP32 derivation values)."""
    fingerprint: bytes
    path: tuple[int, ...] = ()

    def serialize(self) -> bytes:
        return self.fingerprint + b"".join(struct.pack("<I", i) for i in self.path)

    @classmethod
    def parse(cls, data: bytes, what: str = "key origin") -> "KeyOrigin":
        if len(data) < 4 or len(data) % 4:
            raise PsbtValueError(f"{what}: value of {len(data)} bytes is not a fingerprint and path")
        return cls(data[:4], tuple(struct.unpack(f"<{len(data) // 4 - 1}I", data[4:])))

    def __str__(self) -> str:
        return f"[{self.fingerprint.hex()}{format_path(self.path)[1:]}]"


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
        return cls(hashes, KeyOrigin.parse(data[r.pos:], what))


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


# --- low-level helpers -----------------------------------------------------------

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


def _no_keydata(kd: bytes, where: str, name: str) -> None:
    if kd:
        raise PsbtKeyLengthError(f"{where}: {name} key must have no key data, has {len(kd)} bytes")


def _pubkey_keydata(kd: bytes, where: str, name: str) -> bytes:
    if len(kd) not in (33, 65):
        raise PsbtKeyLengthError(f"{where}: {name} key must be a 33 or 65-byte public key, got {len(kd)} bytes")
    try:
        PublicKey(kd)
    except ValueError:
        raise PsbtValueError(f"{where}: {name} key is not a valid public key") from None
    return kd


def _keylen(kd: bytes, n: int, where: str, name: str) -> bytes:
    if len(kd) != n:
        raise PsbtKeyLengthError(f"{where}: {name} key data must be {n} bytes, got {len(kd)}")
    return kd


def _fixed(value: bytes, n: tuple[int, ...], where: str, name: str) -> bytes:
    if len(value) not in n:
        raise PsbtValueError(f"{where}: {name} value must be {' or '.join(map(str, n))} bytes, got {len(value)}")
    return value


def _parse_whole(parse, value: bytes, where: str, name: str):
    r = ByteReader(value)
    try:
        obj = parse(r)
        if not r.at_end():
            raise DeserializationError("trailing bytes")
    except (DeserializationError, ValueError) as e:
        raise PsbtValueError(f"{where}: bad {name}: {e}") from None
    return obj


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


def _rec(ktype: int, kd: bytes, value: bytes) -> bytes:
    return ser_bytes(ser_compact_size(ktype) + kd) + ser_bytes(value)


def _tail(proprietary: dict[bytes, bytes], unknown: dict[bytes, bytes]) -> list[bytes]:
    return ([ser_bytes(k) + ser_bytes(v) for k, v in sorted(proprietary.items())]
            + [ser_bytes(k) + ser_bytes(v) for k, v in sorted(unknown.items())])


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
        tx, xpubs, version, prop, unk = None, {}, None, {}, {}
        for t, kd, key, value in _read_map(r, "global"):
            if t == GLOBAL_UNSIGNED_TX:
                _no_keydata(kd, "global", "unsigned tx")
                try:
                    tx = _parse_whole(_read_unsigned_tx, value, "global", "unsigned transaction")
                except PsbtValueError as e:
                    raise PsbtFormatError(str(e)) from None
            elif t == GLOBAL_XPUB:
                _keylen(kd, 78, "global", "xpub")
                try:
                    depth = deserialize_extended_key(kd).depth
                except Bip32Error as e:
                    raise PsbtValueError(f"global: bad xpub: {e}") from None
                origin = KeyOrigin.parse(value, "global xpub")
                if len(origin.path) != depth:
                    raise PsbtValueError(f"global: xpub of depth {depth} with a path of {len(origin.path)}")
                xpubs[kd] = origin
            elif t == GLOBAL_VERSION:
                _no_keydata(kd, "global", "version")
                version = struct.unpack("<I", _fixed(value, (4,), "global", "version"))[0]
            elif t in _GLOBAL_V2_ONLY:
                raise PsbtValueError(f"global: field type {t:#04x} is only allowed in PSBT version 2")
            elif t == PROPRIETARY:
                prop[key] = value
            else:
                unk[key] = value
        if version not in (None, 0):
            raise PsbtVersionError(f"unsupported PSBT version {version}")
        if tx is None:
            raise PsbtFormatError("global: no unsigned transaction")
        inputs = [cls._parse_input(r, i, tx) for i in range(len(tx.inputs))]
        outputs = [cls._parse_output(r, i) for i in range(len(tx.outputs))]
        if not r.at_end():
            raise PsbtFormatError(f"{r.remaining()} bytes of extra data after the PSBT")
        return cls(tx, inputs, outputs, xpubs, version, prop, unk)

    @staticmethod
    def _parse_input(r: ByteReader, n: int, tx: Tx) -> PsbtInput:
        where = f"input {n}"
        if r.at_end():
            raise PsbtFormatError(f"{where}: missing input map")
        inp = PsbtInput()
        for t, kd, key, value in _read_map(r, where):
            if t == IN_NON_WITNESS_UTXO:
                _no_keydata(kd, where, "non-witness utxo")
                inp.non_witness_utxo = _parse_whole(Tx.read, value, where, "non-witness utxo")
            elif t == IN_WITNESS_UTXO:
                _no_keydata(kd, where, "witness utxo")
                inp.witness_utxo = _parse_whole(_read_txout, value, where, "witness utxo")
            elif t == IN_PARTIAL_SIG:
                inp.partial_sigs[_pubkey_keydata(kd, where, "partial signature")] = value
            elif t == IN_SIGHASH_TYPE:
                _no_keydata(kd, where, "sighash type")
                inp.sighash_type = struct.unpack("<I", _fixed(value, (4,), where, "sighash type"))[0]
            elif t == IN_REDEEM_SCRIPT:
                _no_keydata(kd, where, "redeemScript")
                inp.redeem_script = value
            elif t == IN_WITNESS_SCRIPT:
                _no_keydata(kd, where, "witnessScript")
                inp.witness_script = value
            elif t == IN_BIP32_DERIVATION:
                pk = _pubkey_keydata(kd, where, "BIP32 derivation")
                inp.bip32_derivation[pk] = KeyOrigin.parse(value, f"{where} BIP32 derivation")
            elif t == IN_FINAL_SCRIPTSIG:
                _no_keydata(kd, where, "final scriptSig")
                inp.final_scriptsig = value
            elif t == IN_FINAL_SCRIPTWITNESS:
                _no_keydata(kd, where, "final scriptWitness")
                inp.final_scriptwitness = _parse_whole(_read_witness, value, where, "final scriptWitness")
            elif t in _IN_RAW_TYPES:
                if t == IN_TAP_LEAF_SCRIPT:
                    if len(kd) < 33 or (len(kd) - 33) % 32 or len(kd) > 33 + 32 * 128:
                        raise PsbtKeyLengthError(f"{where}: control block of {len(kd)} bytes")
                    if not value:
                        raise PsbtValueError(f"{where}: empty tap leaf script")
                else:
                    _keylen(kd, _IN_RAW_KEYLEN[t], where, f"type {t:#04x}")
                    if t == IN_TAP_SCRIPT_SIG:
                        _fixed(value, (64, 65), where, "tap script signature")
                inp.raw_fields[key] = value
            elif t == IN_TAP_KEY_SIG:
                _no_keydata(kd, where, "tap key sig")
                inp.tap_key_sig = _fixed(value, (64, 65), where, "tap key signature")
            elif t == IN_TAP_BIP32_DERIVATION:
                xo = _keylen(kd, 32, where, "tap BIP32 derivation")
                inp.tap_bip32_derivation[xo] = TapKeyOrigin.parse(value, f"{where} tap BIP32 derivation")
            elif t == IN_TAP_INTERNAL_KEY:
                _no_keydata(kd, where, "tap internal key")
                inp.tap_internal_key = _fixed(value, (32,), where, "tap internal key")
            elif t == IN_TAP_MERKLE_ROOT:
                _no_keydata(kd, where, "tap merkle root")
                inp.tap_merkle_root = _fixed(value, (32,), where, "tap merkle root")
            elif t in _IN_V2_ONLY:
                raise PsbtValueError(f"{where}: field type {t:#04x} is only allowed in PSBT version 2")
            elif t == PROPRIETARY:
                inp.proprietary[key] = value
            else:
                inp.unknown[key] = value
        prev = tx.inputs[n].prevout
        utxo_tx = inp.non_witness_utxo
        if utxo_tx is not None and (utxo_tx.txid() != prev.txid or prev.index >= len(utxo_tx.outputs)):
            raise PsbtValueError(f"{where}: non-witness utxo does not match the outpoint {prev}")
        return inp

    @staticmethod
    def _parse_output(r: ByteReader, n: int) -> PsbtOutput:
        where = f"output {n}"
        if r.at_end():
            raise PsbtFormatError(f"{where}: missing output map")
        out = PsbtOutput()
        for t, kd, key, value in _read_map(r, where):
            if t == OUT_REDEEM_SCRIPT:
                _no_keydata(kd, where, "redeemScript")
                out.redeem_script = value
            elif t == OUT_WITNESS_SCRIPT:
                _no_keydata(kd, where, "witnessScript")
                out.witness_script = value
            elif t == OUT_BIP32_DERIVATION:
                pk = _pubkey_keydata(kd, where, "BIP32 derivation")
                out.bip32_derivation[pk] = KeyOrigin.parse(value, f"{where} BIP32 derivation")
            elif t == OUT_TAP_INTERNAL_KEY:
                _no_keydata(kd, where, "tap internal key")
                out.tap_internal_key = _fixed(value, (32,), where, "tap internal key")
            elif t == OUT_TAP_TREE:
                _no_keydata(kd, where, "tap tree")
                out.tap_tree = _parse_whole(_read_tap_tree, value, where, "tap tree")
            elif t == OUT_TAP_BIP32_DERIVATION:
                xo = _keylen(kd, 32, where, "tap BIP32 derivation")
                out.tap_bip32_derivation[xo] = TapKeyOrigin.parse(value, f"{where} tap BIP32 derivation")
            elif t in _OUT_V2_ONLY:
                raise PsbtValueError(f"{where}: field type {t:#04x} is only allowed in PSBT version 2")
            elif t == PROPRIETARY:
                out.proprietary[key] = value
            else:
                out.unknown[key] = value
        return out

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
        for xpub, origin in sorted(self.xpubs.items(), key=lambda kv: (kv[1].fingerprint, kv[1].path, kv[0])):
            out.append(_rec(GLOBAL_XPUB, xpub, origin.serialize()))
        if self.version is not None:
            out.append(_rec(GLOBAL_VERSION, b"", struct.pack("<I", self.version)))
        out += _tail(self.proprietary, self.unknown)
        out.append(b"\x00")
        for inp in self.inputs:
            out += self._input_records(inp)
            out.append(b"\x00")
        for o in self.outputs:
            if o.redeem_script is not None:
                out.append(_rec(OUT_REDEEM_SCRIPT, b"", o.redeem_script))
            if o.witness_script is not None:
                out.append(_rec(OUT_WITNESS_SCRIPT, b"", o.witness_script))
            out += [_rec(OUT_BIP32_DERIVATION, pk, ko.serialize()) for pk, ko in sorted(o.bip32_derivation.items())]
            if o.tap_internal_key is not None:
                out.append(_rec(OUT_TAP_INTERNAL_KEY, b"", o.tap_internal_key))
            if o.tap_tree is not None:
                tree = b"".join(bytes([d, v]) + ser_bytes(s) for d, v, s in o.tap_tree)
                out.append(_rec(OUT_TAP_TREE, b"", tree))
            out += [_rec(OUT_TAP_BIP32_DERIVATION, xo, tko.serialize())
                    for xo, tko in sorted(o.tap_bip32_derivation.items())]
            out += _tail(o.proprietary, o.unknown)
            out.append(b"\x00")
        return b"".join(out)

    @staticmethod
    def _input_records(inp: PsbtInput) -> list[bytes]:
        out = []
        if inp.non_witness_utxo is not None:
            out.append(_rec(IN_NON_WITNESS_UTXO, b"", inp.non_witness_utxo.serialize()))
        if inp.witness_utxo is not None:
            out.append(_rec(IN_WITNESS_UTXO, b"", inp.witness_utxo.serialize()))
        # Core keys partial signatures by HASH160(pubkey)
        for pk, sig in sorted(inp.partial_sigs.items(), key=lambda kv: hash160(kv[0])):
            out.append(_rec(IN_PARTIAL_SIG, pk, sig))
        if inp.sighash_type is not None:
            out.append(_rec(IN_SIGHASH_TYPE, b"", struct.pack("<I", inp.sighash_type)))
        if inp.redeem_script is not None:
            out.append(_rec(IN_REDEEM_SCRIPT, b"", inp.redeem_script))
        if inp.witness_script is not None:
            out.append(_rec(IN_WITNESS_SCRIPT, b"", inp.witness_script))
        out += [_rec(IN_BIP32_DERIVATION, pk, ko.serialize()) for pk, ko in sorted(inp.bip32_derivation.items())]
        raw = {t: [] for t in _IN_RAW_TYPES}
        for key, value in inp.raw_fields.items():
            kr = ByteReader(key)
            raw[kr.compact_size()].append((key, value))
        for t in (IN_RIPEMD160, IN_SHA256, IN_HASH160, IN_HASH256):
            out += [ser_bytes(k) + ser_bytes(v) for k, v in sorted(raw[t])]
        if inp.tap_key_sig is not None:
            out.append(_rec(IN_TAP_KEY_SIG, b"", inp.tap_key_sig))
        out += [ser_bytes(k) + ser_bytes(v) for k, v in sorted(raw[IN_TAP_SCRIPT_SIG])]
        # leaf scripts: by (script, leaf version), then shorter control blocks first
        for k, v in sorted(raw[IN_TAP_LEAF_SCRIPT], key=lambda kv: (kv[1][:-1], kv[1][-1], len(kv[0]), kv[0])):
            out.append(ser_bytes(k) + ser_bytes(v))
        out += [_rec(IN_TAP_BIP32_DERIVATION, xo, tko.serialize())
                for xo, tko in sorted(inp.tap_bip32_derivation.items())]
        if inp.tap_internal_key is not None:
            out.append(_rec(IN_TAP_INTERNAL_KEY, b"", inp.tap_internal_key))
        if inp.tap_merkle_root is not None:
            out.append(_rec(IN_TAP_MERKLE_ROOT, b"", inp.tap_merkle_root))
        if inp.final_scriptsig is not None:
            out.append(_rec(IN_FINAL_SCRIPTSIG, b"", inp.final_scriptsig))
        if inp.final_scriptwitness is not None:
            wit = ser_compact_size(len(inp.final_scriptwitness)) + b"".join(map(ser_bytes, inp.final_scriptwitness))
            out.append(_rec(IN_FINAL_SCRIPTWITNESS, b"", wit))
        return out + _tail(inp.proprietary, inp.unknown)

    def to_base64(self) -> str:
        return base64.b64encode(self.serialize()).decode()

    def __str__(self) -> str:
        return self.to_base64()

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
