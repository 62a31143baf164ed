"""Script construction and inspection: opcodes, pushes and the standard output templates."""
from __future__ import annotations

import struct
from typing import Iterator, Union

from .hashes import hash160, sha256

OP_0 = 0x00
OP_FALSE = OP_0
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1NEGATE = 0x4F
OP_1 = 0x51
OP_TRUE = OP_1
OP_2 = 0x52
OP_3 = 0x53
OP_16 = 0x60
OP_NOP = 0x61
OP_IF = 0x63
OP_NOTIF = 0x64
OP_ELSE = 0x67
OP_ENDIF = 0x68
OP_VERIFY = 0x69
OP_RETURN = 0x6A
OP_TOALTSTACK = 0x6B
OP_FROMALTSTACK = 0x6C
OP_IFDUP = 0x73
OP_DROP = 0x75
OP_DUP = 0x76
OP_NIP = 0x77
OP_OVER = 0x78
OP_SWAP = 0x7C
OP_SIZE = 0x82
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88
OP_1ADD = 0x8B
OP_ADD = 0x93
OP_NOT = 0x91
OP_RIPEMD160 = 0xA6
OP_SHA256 = 0xA8
OP_HASH160 = 0xA9
OP_HASH256 = 0xAA
OP_CHECKSIG = 0xAC
OP_CHECKSIGVERIFY = 0xAD
OP_CHECKMULTISIG = 0xAE
OP_CHECKMULTISIGVERIFY = 0xAF
OP_CHECKLOCKTIMEVERIFY = 0xB1
OP_CHECKSEQUENCEVERIFY = 0xB2

ScriptItem = Union[int, bytes]


def push_data(data: bytes) -> bytes:
    """Minimal push of a byte string (BIP62 minimal push rules)."""
    n = len(data)
    if n == 0:
        return bytes([OP_0])
    if n == 1 and 1 <= data[0] <= 16:
        return bytes([OP_1 + data[0] - 1])
    if n == 1 and data[0] == 0x81:
        return bytes([OP_1NEGATE])
    if n < OP_PUSHDATA1:
        return bytes([n]) + data
    if n <= 0xFF:
        return bytes([OP_PUSHDATA1, n]) + data
    if n <= 0xFFFF:
        return bytes([OP_PUSHDATA2]) + struct.pack("<H", n) + data
    return bytes([OP_PUSHDATA4]) + struct.pack("<I", n) + data


def script_num(n: int) -> bytes:
    """CScriptNum encoding (little-endian, sign bit in the top byte)."""
    if n == 0:
        return b""
    neg = n < 0
    a = abs(n)
    out = bytearray()
    while a:
        out.append(a & 0xFF)
        a >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0)
    elif neg:
        out[-1] |= 0x80
    return bytes(out)


def push_int(n: int) -> bytes:
    """Push a number the way Bitcoin Core's CScript << int64 does."""
    if n == 0:
        return bytes([OP_0])
    if n == -1 or 1 <= n <= 16:
        return bytes([OP_1 + n - 1]) if n > 0 else bytes([OP_1NEGATE])
    b = script_num(n)
    return bytes([len(b)]) + b


def build_script(items: list[ScriptItem]) -> bytes:
    """Build a script: ints are opcodes, bytes are data pushes."""
    out = bytearray()
    for it in items:
        if isinstance(it, int):
            out.append(it)
        else:
            out += push_data(it)
    return bytes(out)


def iter_script(script: bytes) -> Iterator[tuple[int, bytes | None]]:
    """Yield (opcode, pushed data or None); raises ValueError on a truncated push."""
    i = 0
    n = len(script)
    while i < n:
        op = script[i]
        i += 1
        if op < OP_PUSHDATA1:
            size = op
        elif op == OP_PUSHDATA1:
            if i + 1 > n:
                raise ValueError("truncated PUSHDATA1")
            size = script[i]
            i += 1
        elif op == OP_PUSHDATA2:
            if i + 2 > n:
                raise ValueError("truncated PUSHDATA2")
            size = struct.unpack_from("<H", script, i)[0]
            i += 2
        elif op == OP_PUSHDATA4:
            if i + 4 > n:
                raise ValueError("truncated PUSHDATA4")
            size = struct.unpack_from("<I", script, i)[0]
            i += 4
        else:
            yield op, None
            continue
        if i + size > n:
            raise ValueError("truncated push")
        yield op, script[i:i + size]
        i += size


# --- standard output scripts -------------------------------------------------

def p2pkh_script(pubkey_hash: bytes) -> bytes:
    return bytes([OP_DUP, OP_HASH160, 20]) + pubkey_hash + bytes([OP_EQUALVERIFY, OP_CHECKSIG])


def p2sh_script(script_hash: bytes) -> bytes:
    return bytes([OP_HASH160, 20]) + script_hash + bytes([OP_EQUAL])


def p2wpkh_script(pubkey: bytes) -> bytes:
    """P2WPKH scriptPubKey for a compressed public key."""
    return bytes([OP_0, 20]) + hash160(pubkey)


def p2wpkh_script_from_hash(h: bytes) -> bytes:
    return bytes([OP_0, 20]) + h


def p2wsh_script(witness_script: bytes) -> bytes:
    return bytes([OP_0, 32]) + sha256(witness_script)


def p2tr_script(xonly_output_key: bytes) -> bytes:
    return bytes([OP_1, 32]) + xonly_output_key


def p2pkh_script_code(pubkey: bytes) -> bytes:
    """BIP143 scriptCode for spending a P2WPKH output."""
    return p2pkh_script(hash160(pubkey))


def op_return_script(data: bytes) -> bytes:
    return bytes([OP_RETURN]) + push_data(data)


def witness_program(spk: bytes) -> tuple[int, bytes] | None:
    """(version, program) if spk is a segwit output script, else None."""
    if len(spk) < 4 or len(spk) > 42:
        return None
    v = spk[0]
    if v != OP_0 and not (OP_1 <= v <= OP_16):
        return None
    if spk[1] != len(spk) - 2 or not (2 <= spk[1] <= 40):
        return None
    return (0 if v == OP_0 else v - OP_1 + 1), spk[2:]


def is_p2wpkh(spk: bytes) -> bool:
    return len(spk) == 22 and spk[0] == OP_0 and spk[1] == 20


def is_p2wsh(spk: bytes) -> bool:
    return len(spk) == 34 and spk[0] == OP_0 and spk[1] == 32


def is_p2tr(spk: bytes) -> bool:
    return len(spk) == 34 and spk[0] == OP_1 and spk[1] == 32


def multisig_2of2_script(pubkey1: bytes, pubkey2: bytes) -> bytes:
    """BOLT 3 funding output witness script: keys in lexicographic order."""
    a, b = sorted([pubkey1, pubkey2])
    return build_script([OP_2, a, b, OP_2, OP_CHECKMULTISIG])
