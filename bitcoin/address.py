"""Addresses <-> scriptPubKeys for each network."""
from __future__ import annotations

from .base58 import Base58Error, b58check_decode, b58check_encode
from .bech32 import Bech32Error, decode_segwit_address, encode_segwit_address
from .networks import Network
from .script import OP_0, OP_1, p2pkh_script, p2sh_script, witness_program


class AddressError(ValueError):
    pass


def address_to_script(addr: str, net: Network) -> bytes:
    """scriptPubKey for an address of `net`; AddressError says why it is not valid."""
    if addr.lower().startswith(net.bech32_hrp + "1"):
        try:
            ver, prog = decode_segwit_address(net.bech32_hrp, addr)
        except Bech32Error as e:
            raise AddressError(f"invalid address {addr!r}: {e}") from None
        return bytes([OP_0 if ver == 0 else OP_1 + ver - 1, len(prog)]) + prog
    try:
        raw = b58check_decode(addr)
    except Base58Error as e:
        raise AddressError(f"invalid address {addr!r}: {e}") from None
    if len(raw) == 21 and raw[0] == net.p2pkh_prefix:
        return p2pkh_script(raw[1:])
    if len(raw) == 21 and raw[0] == net.p2sh_prefix:
        return p2sh_script(raw[1:])
    raise AddressError(f"invalid address {addr!r} for network {net.name}")


def script_to_address(spk: bytes, net: Network) -> str | None:
    """Address for a standard scriptPubKey, None if it has none."""
    wp = witness_program(spk)
    if wp is not None:
        try:
            return encode_segwit_address(net.bech32_hrp, wp[0], wp[1])
        except Bech32Error:
            return None
    if len(spk) == 25 and spk[:3] == b"\x76\xa9\x14" and spk[23:] == b"\x88\xac":
        return b58check_encode(bytes([net.p2pkh_prefix]) + spk[3:23])
    if len(spk) == 23 and spk[:2] == b"\xa9\x14" and spk[22] == 0x87:
        return b58check_encode(bytes([net.p2sh_prefix]) + spk[2:22])
    return None
