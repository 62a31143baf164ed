"""BIP340/341/86 for the wallet: the TapTweak of an internal key (BIP86 key-only
outputs or a script tree's merkle root), the tweaked private key, the BIP341
signature message and hash (key path; script path and annex are supported as
BIP341/342 define them), and Schnorr signing/verification.

Curve work is libsecp256k1's, through coincurve: x-only tweaks with
`PublicKeyXOnly.tweak_add`, the private tweak (with the negation BIP341 asks
for when the internal point has an odd y) with `secp256k1_keypair_xonly_tweak_add`.
"""
from __future__ import annotations

import struct
from typing import Optional, Sequence

from coincurve import PrivateKey, PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from .hashes import sha256, tagged_hash
from .script import p2tr_script
from .serialize import ser_bytes
from .tx import SIGHASH_ALL, SIGHASH_ANYONECANPAY, SIGHASH_NONE, SIGHASH_SINGLE, Tx, TxOut

SIGHASH_DEFAULT = 0x00
VALID_HASH_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83})
TAPROOT_LEAF_TAPSCRIPT = 0xC0

__all__ = [
    "SIGHASH_DEFAULT", "SIGHASH_ALL", "SIGHASH_NONE", "SIGHASH_SINGLE", "SIGHASH_ANYONECANPAY",
    "TaprootError", "xonly_pubkey", "tap_tweak", "taproot_output_key", "taproot_output_script",
    "taproot_tweak_seckey", "tapleaf_hash", "tapbranch_hash", "taproot_sigmsg", "sighash_taproot",
    "schnorr_sign", "schnorr_verify", "sign_taproot_keypath", "verify_taproot_keypath",
]


class TaprootError(ValueError):
    """Invalid key, tweak, hash type or input for a BIP341 computation."""


# --- keys and tweaks -----------------------------------------------------------

def xonly_pubkey(secret: bytes) -> bytes:
    """32-byte BIP340 public key of a private key."""
    return PrivateKey(secret).public_key_xonly.format()


def tap_tweak(internal_xonly: bytes, merkle_root: Optional[bytes] = None) -> bytes:
    """t = hash_TapTweak(P || merkle_root); BIP86 (no script tree) uses no merkle root."""
    if len(internal_xonly) != 32:
        raise TaprootError("internal key must be 32 bytes (x-only)")
    if merkle_root is not None and len(merkle_root) != 32:
        raise TaprootError("merkle root must be 32 bytes")
    return tagged_hash("TapTweak", internal_xonly + (merkle_root or b""))


def taproot_output_key(internal_xonly: bytes, merkle_root: Optional[bytes] = None) -> tuple[bytes, int]:
    """Q = lift_x(P) + t*G: (x-only Q, parity of Q's y) — the parity goes into a control block."""
    t = tap_tweak(internal_xonly, merkle_root)
    try:
        key = PublicKeyXOnly(internal_xonly)
        key.tweak_add(t)
    except ValueError as e:
        raise TaprootError(f"cannot tweak internal key: {e}") from None
    return key.format(), int(key.parity)


def taproot_output_script(internal_xonly: bytes, merkle_root: Optional[bytes] = None) -> bytes:
    """OP_1 <Q>: the scriptPubKey of a BIP86 (or script-tree) taproot output."""
    return p2tr_script(taproot_output_key(internal_xonly, merkle_root)[0])


def taproot_tweak_seckey(secret: bytes, merkle_root: Optional[bytes] = None) -> bytes:
    """The private key of the output key: d' = (d or n-d, making P's y even) + t."""
    if len(secret) != 32:
        raise TaprootError("private key must be 32 bytes")
    ctx = GLOBAL_CONTEXT.ctx
    keypair = ffi.new("secp256k1_keypair *")
    if not lib.secp256k1_keypair_create(ctx, keypair, bytes(secret)):
        raise TaprootError("invalid private key")
    t = tap_tweak(xonly_pubkey(secret), merkle_root)
    if not lib.secp256k1_keypair_xonly_tweak_add(ctx, keypair, t):
        raise TaprootError("tweak out of range")
    out = ffi.new("unsigned char[32]")
    lib.secp256k1_keypair_sec(ctx, out, keypair)
    return bytes(ffi.buffer(out, 32))


def tapleaf_hash(script: bytes, leaf_version: int = TAPROOT_LEAF_TAPSCRIPT) -> bytes:
    return tagged_hash("TapLeaf", bytes([leaf_version & 0xFE]) + ser_bytes(script))


def tapbranch_hash(a: bytes, b: bytes) -> bytes:
    lo, hi = sorted((a, b))
    return tagged_hash("TapBranch", lo + hi)


# --- signature message (BIP341 "Common signature message") ----------------------

def taproot_sigmsg(tx: Tx, input_index: int, spent_outputs: Sequence[TxOut],
                   hash_type: int = SIGHASH_DEFAULT, annex: Optional[bytes] = None,
                   leaf_hash: Optional[bytes] = None, key_version: int = 0,
                   codesep_pos: int = 0xFFFFFFFF) -> bytes:
    """SigMsg(hash_type, ext_flag) with its BIP342 extension when `leaf_hash` is given
    (script path); without the leading epoch byte."""
    if hash_type not in VALID_HASH_TYPES:
        raise TaprootError(f"invalid taproot hash type {hash_type:#x}")
    if len(spent_outputs) != len(tx.inputs):
        raise TaprootError(f"need the {len(tx.inputs)} spent outputs, got {len(spent_outputs)}")
    if not 0 <= input_index < len(tx.inputs):
        raise TaprootError(f"input index {input_index} out of range")
    if annex is not None and (not annex or annex[0] != 0x50):
        raise TaprootError("annex must start with 0x50")
    base = hash_type & 0x03
    anyone = bool(hash_type & SIGHASH_ANYONECANPAY)
    if base == SIGHASH_SINGLE and input_index >= len(tx.outputs):
        raise TaprootError("SIGHASH_SINGLE without a corresponding output")

    msg = bytearray([hash_type])
    msg += struct.pack("<iI", tx.version, tx.locktime)
    if not anyone:
        msg += sha256(b"".join(i.prevout.serialize() for i in tx.inputs))
        msg += sha256(b"".join(struct.pack("<q", o.value) for o in spent_outputs))
        msg += sha256(b"".join(ser_bytes(o.script_pubkey) for o in spent_outputs))
        msg += sha256(b"".join(struct.pack("<I", i.sequence) for i in tx.inputs))
    if base not in (SIGHASH_NONE, SIGHASH_SINGLE):
        msg += sha256(b"".join(o.serialize() for o in tx.outputs))
    ext_flag = 1 if leaf_hash is not None else 0
    msg.append(ext_flag * 2 + (1 if annex is not None else 0))
    if anyone:
        txin = tx.inputs[input_index]
        spent = spent_outputs[input_index]
        msg += txin.prevout.serialize()
        msg += struct.pack("<q", spent.value) + ser_bytes(spent.script_pubkey)
        msg += struct.pack("<I", txin.sequence)
    else:
        msg += struct.pack("<I", input_index)
    if annex is not None:
        msg += sha256(ser_bytes(annex))
    if base == SIGHASH_SINGLE:
        msg += sha256(tx.outputs[input_index].serialize())
    if leaf_hash is not None:
        if len(leaf_hash) != 32:
            raise TaprootError("leaf hash must be 32 bytes")
        msg += leaf_hash + bytes([key_version]) + struct.pack("<I", codesep_pos)
    return bytes(msg)


def sighash_taproot(tx: Tx, input_index: int, spent_outputs: Sequence[TxOut],
                    hash_type: int = SIGHASH_DEFAULT, annex: Optional[bytes] = None,
                    leaf_hash: Optional[bytes] = None, key_version: int = 0,
                    codesep_pos: int = 0xFFFFFFFF) -> bytes:
    """hash_TapSighash(0x00 || SigMsg): the 32 bytes a BIP340 signature commits to."""
    return tagged_hash("TapSighash", b"\x00" + taproot_sigmsg(
        tx, input_index, spent_outputs, hash_type, annex, leaf_hash, key_version, codesep_pos))


# --- Schnorr -------------------------------------------------------------------

def schnorr_sign(secret: bytes, msg32: bytes, aux_rand: Optional[bytes] = None) -> bytes:
    """BIP340 signature. `aux_rand` None means fresh randomness; pass 32 bytes
    (e.g. zeros) for a deterministic signature."""
    if len(msg32) != 32:
        raise TaprootError("message must be 32 bytes")
    return PrivateKey(secret).sign_schnorr(msg32, b"" if aux_rand is None else aux_rand)


def schnorr_verify(xonly: bytes, sig: bytes, msg32: bytes) -> bool:
    """BIP340 verification; malformed keys or signatures are simply invalid."""
    try:
        return PublicKeyXOnly(xonly).verify(sig, msg32)
    except (ValueError, TypeError):
        return False


def sign_taproot_keypath(internal_secret: bytes, tx: Tx, input_index: int,
                         spent_outputs: Sequence[TxOut], hash_type: int = SIGHASH_DEFAULT,
                         merkle_root: Optional[bytes] = None, aux_rand: Optional[bytes] = None,
                         annex: Optional[bytes] = None) -> bytes:
    """The key-path witness signature for an output whose internal key is
    `internal_secret`'s: 64 bytes for SIGHASH_DEFAULT, else 65 with the hash type."""
    digest = sighash_taproot(tx, input_index, spent_outputs, hash_type, annex)
    sig = schnorr_sign(taproot_tweak_seckey(internal_secret, merkle_root), digest, aux_rand)
    return sig if hash_type == SIGHASH_DEFAULT else sig + bytes([hash_type])


def verify_taproot_keypath(tx: Tx, input_index: int, spent_outputs: Sequence[TxOut],
                           witness_sig: bytes, annex: Optional[bytes] = None) -> bool:
    """Check a key-path signature against the spent P2TR output's key (BIP341 rules
    on the 64/65-byte forms included)."""
    spk = spent_outputs[input_index].script_pubkey
    if len(spk) != 34 or spk[:2] != b"\x51\x20":
        return False
    if len(witness_sig) == 64:
        hash_type = SIGHASH_DEFAULT
    elif len(witness_sig) == 65 and witness_sig[64] != SIGHASH_DEFAULT:
        hash_type = witness_sig[64]
    else:
        return False
    try:
        digest = sighash_taproot(tx, input_index, spent_outputs, hash_type, annex)
    except TaprootError:
        return False
    return schnorr_verify(spk[2:], witness_sig[:64], digest)

