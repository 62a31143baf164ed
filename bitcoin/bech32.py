"""Bech32 (BIP173) and Bech32m (BIP350) encoding, following the reference
implementation, plus the bit-regrouping helper BOLT 11 also needs."""
from __future__ import annotations

from enum import Enum

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}
BECH32M_CONST = 0x2BC830A3


class Encoding(Enum):
    BECH32 = 1
    BECH32M = 2


class Bech32Error(ValueError):
    pass


def _polymod(values: list[int]) -> int:
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((b >> i) & 1) else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def _create_checksum(hrp: str, data: list[int], spec: Encoding) -> list[int]:
    const = BECH32M_CONST if spec == Encoding.BECH32M else 1
    polymod = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ const
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]


def bech32_encode(hrp: str, data: list[int], spec: Encoding = Encoding.BECH32) -> str:
    combined = list(data) + _create_checksum(hrp, list(data), spec)
    return hrp + "1" + "".join(CHARSET[d] for d in combined)


def bech32_decode(bech: str, max_length: int | None = 90) -> tuple[str, list[int], Encoding]:
    """Decode and verify checksum; raises Bech32Error with the reason.

    `max_length=None` lifts BIP173's 90 character limit (BOLT 11 invoices are longer)."""
    if any(ord(x) < 33 or ord(x) > 126 for x in bech):
        raise Bech32Error("invalid character")
    if bech.lower() != bech and bech.upper() != bech:
        raise Bech32Error("mixed case")
    bech = bech.lower()
    pos = bech.rfind("1")
    if pos < 1:
        raise Bech32Error("missing separator or empty human-readable part")
    if pos + 7 > len(bech):
        raise Bech32Error("too short checksum")
    if max_length is not None and len(bech) > max_length:
        raise Bech32Error("too long")
    hrp = bech[:pos]
    try:
        data = [_CHARSET_REV[x] for x in bech[pos + 1:]]
    except KeyError:
        raise Bech32Error("invalid data character") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const == 1:
        spec = Encoding.BECH32
    elif const == BECH32M_CONST:
        spec = Encoding.BECH32M
    else:
        raise Bech32Error("invalid checksum")
    return hrp, data[:-6], spec


def convertbits(data: bytes | list[int], frombits: int, tobits: int, pad: bool = True) -> list[int]:
    """General power-of-2 base conversion; raises Bech32Error on invalid padding."""
    acc = 0
    bits = 0
    ret: list[int] = []
    maxv = (1 << tobits) - 1
    max_acc = (1 << (frombits + tobits - 1)) - 1
    for value in data:
        if value < 0 or (value >> frombits):
            raise Bech32Error("value out of range")
        acc = ((acc << frombits) | value) & max_acc
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise Bech32Error("invalid padding")
    return ret


def decode_segwit_address(hrp: str, addr: str) -> tuple[int, bytes]:
    """(witness version, program) or Bech32Error."""
    hrpgot, data, spec = bech32_decode(addr)
    if hrpgot != hrp:
        raise Bech32Error(f"wrong network prefix {hrpgot!r}, expected {hrp!r}")
    if not data:
        raise Bech32Error("empty data")
    decoded = bytes(convertbits(data[1:], 5, 8, False))
    if len(decoded) < 2 or len(decoded) > 40:
        raise Bech32Error("invalid program length")
    if data[0] > 16:
        raise Bech32Error("invalid witness version")
    if data[0] == 0 and len(decoded) not in (20, 32):
        raise Bech32Error("invalid program length for witness version 0")
    if (data[0] == 0 and spec != Encoding.BECH32) or (data[0] != 0 and spec != Encoding.BECH32M):
        raise Bech32Error("wrong checksum variant for witness version")
    return data[0], decoded


def encode_segwit_address(hrp: str, witver: int, witprog: bytes) -> str:
    spec = Encoding.BECH32 if witver == 0 else Encoding.BECH32M
    ret = bech32_encode(hrp, [witver] + convertbits(witprog, 8, 5), spec)
    decode_segwit_address(hrp, ret)  # guard against producing an invalid address
    return ret
