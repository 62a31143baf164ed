"""bitcoind's JSON renderings: amounts, scripts (asm, type, address,
descriptor), transactions, headers and blocks (core_write.cpp, blockchain.cpp).
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any

from bitcoin.address import script_to_address
from bitcoin.block import Block, BlockHeader
from bitcoin.networks import NETWORKS
from bitcoin.script import iter_script
from bitcoin.serialize import ser_compact_size
from bitcoin.tx import Tx

from .store import Coin
from .validation import COIN, solver

NET = NETWORKS["regtest"]
REGTEST_DIFFICULTY = 4.656542373906925e-10


class Amount:
    """Satoshis rendered as a JSON number with 8 decimals, as bitcoind does
    (python-bitcoinrpc parses those as Decimal)."""

    __slots__ = ("sats",)

    def __init__(self, sats: int) -> None:
        self.sats = int(sats)

    def __repr__(self) -> str:
        return f"Amount({self.sats})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Amount) and other.sats == self.sats


_AMOUNT_RE = re.compile(r'"@@amount:(-?\d+)@@"')


def _amount_default(o: Any) -> Any:
    if isinstance(o, Amount):
        return f"@@amount:{o.sats}@@"
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _fmt(m: re.Match[str]) -> str:
    sats = int(m.group(1))
    sign = "-" if sats < 0 else ""
    sats = abs(sats)
    return f"{sign}{sats // COIN}.{sats % COIN:08d}"


def dumps(obj: Any) -> str:
    """json.dumps with Amounts as exact 8-decimal numbers."""
    return _AMOUNT_RE.sub(_fmt, json.dumps(obj, default=_amount_default, separators=(",", ":")))


# -- scripts -------------------------------------------------------------------------
OPCODE_NAMES = {
    0x00: "0", 0x4F: "-1", 0x50: "OP_RESERVED", 0x61: "OP_NOP", 0x62: "OP_VER", 0x63: "OP_IF",
    0x64: "OP_NOTIF", 0x65: "OP_VERIF", 0x66: "OP_VERNOTIF", 0x67: "OP_ELSE", 0x68: "OP_ENDIF",
    0x69: "OP_VERIFY", 0x6A: "OP_RETURN", 0x6B: "OP_TOALTSTACK", 0x6C: "OP_FROMALTSTACK",
    0x6D: "OP_2DROP", 0x6E: "OP_2DUP", 0x6F: "OP_3DUP", 0x70: "OP_2OVER", 0x71: "OP_2ROT",
    0x72: "OP_2SWAP", 0x73: "OP_IFDUP", 0x74: "OP_DEPTH", 0x75: "OP_DROP", 0x76: "OP_DUP",
    0x77: "OP_NIP", 0x78: "OP_OVER", 0x79: "OP_PICK", 0x7A: "OP_ROLL", 0x7B: "OP_ROT",
    0x7C: "OP_SWAP", 0x7D: "OP_TUCK", 0x7E: "OP_CAT", 0x7F: "OP_SUBSTR", 0x80: "OP_LEFT",
    0x81: "OP_RIGHT", 0x82: "OP_SIZE", 0x83: "OP_INVERT", 0x84: "OP_AND", 0x85: "OP_OR",
    0x86: "OP_XOR", 0x87: "OP_EQUAL", 0x88: "OP_EQUALVERIFY", 0x89: "OP_RESERVED1",
    0x8A: "OP_RESERVED2", 0x8B: "OP_1ADD", 0x8C: "OP_1SUB", 0x8D: "OP_2MUL", 0x8E: "OP_2DIV",
    0x8F: "OP_NEGATE", 0x90: "OP_ABS", 0x91: "OP_NOT", 0x92: "OP_0NOTEQUAL", 0x93: "OP_ADD",
    0x94: "OP_SUB", 0x95: "OP_MUL", 0x96: "OP_DIV", 0x97: "OP_MOD", 0x98: "OP_LSHIFT",
    0x99: "OP_RSHIFT", 0x9A: "OP_BOOLAND", 0x9B: "OP_BOOLOR", 0x9C: "OP_NUMEQUAL",
    0x9D: "OP_NUMEQUALVERIFY", 0x9E: "OP_NUMNOTEQUAL", 0x9F: "OP_LESSTHAN", 0xA0: "OP_GREATERTHAN",
    0xA1: "OP_LESSTHANOREQUAL", 0xA2: "OP_GREATERTHANOREQUAL", 0xA3: "OP_MIN", 0xA4: "OP_MAX",
    0xA5: "OP_WITHIN", 0xA6: "OP_RIPEMD160", 0xA7: "OP_SHA1", 0xA8: "OP_SHA256", 0xA9: "OP_HASH160",
    0xAA: "OP_HASH256", 0xAB: "OP_CODESEPARATOR", 0xAC: "OP_CHECKSIG", 0xAD: "OP_CHECKSIGVERIFY",
    0xAE: "OP_CHECKMULTISIG", 0xAF: "OP_CHECKMULTISIGVERIFY", 0xB0: "OP_NOP1",
    0xB1: "OP_CHECKLOCKTIMEVERIFY", 0xB2: "OP_CHECKSEQUENCEVERIFY", 0xB3: "OP_NOP4", 0xB4: "OP_NOP5",
    0xB5: "OP_NOP6", 0xB6: "OP_NOP7", 0xB7: "OP_NOP8", 0xB8: "OP_NOP9", 0xB9: "OP_NOP10",
    0xBA: "OP_CHECKSIGADD", 0xFF: "OP_INVALIDOPCODE",
}
OPCODE_NAMES.update({0x50 + n: str(n) for n in range(1, 17)})
SIGHASH_NAMES = {0x01: "ALL", 0x02: "NONE", 0x03: "SINGLE", 0x81: "ALL|ANYONECANPAY",
                 0x82: "NONE|ANYONECANPAY", 0x83: "SINGLE|ANYONECANPAY"}


def _looks_like_der_sig(sig: bytes) -> bool:
    """IsValidSignatureEncoding's shape check (BIP66), enough to decode the sighash byte."""
    if not 9 <= len(sig) <= 73 or sig[0] != 0x30 or sig[1] != len(sig) - 3:
        return False
    len_r = sig[3]
    if 5 + len_r >= len(sig):
        return False
    len_s = sig[5 + len_r]
    return len_r + len_s + 7 == len(sig) and sig[2] == 0x02 and sig[4 + len_r] == 0x02


def script_asm(script: bytes, sighash_decode: bool = False) -> str:
    """ScriptToAsmStr: small pushes as numbers, data as hex, [ALL] after signatures in scriptSigs."""
    out = []
    try:
        for op, data in iter_script(script):
            if data is not None and op <= 0x4E and op != 0:
                if len(data) <= 4:
                    out.append(str(_decode_num(data)))
                elif sighash_decode and _looks_like_der_sig(data) and data[-1] in SIGHASH_NAMES:
                    out.append(data[:-1].hex() + f"[{SIGHASH_NAMES[data[-1]]}]")
                else:
                    out.append(data.hex())
            else:
                out.append(OPCODE_NAMES.get(op, "OP_UNKNOWN"))
    except ValueError:
        out.append("[error]")
    return " ".join(out)


def _decode_num(data: bytes) -> int:
    if not data:
        return 0
    n = int.from_bytes(data, "little")
    if data[-1] & 0x80:
        return -(n & ~(0x80 << (8 * (len(data) - 1))))
    return n

_INPUT_CHARSET = "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ "
_CHECKSUM_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = [0xF5DEE51989, 0xA9FDCA3312, 0x1BAB10E32D, 0x3706B1677A, 0x644D626FFD]


def _descsum_polymod(symbols: list[int]) -> int:
    chk = 1
    for value in symbols:
        top = chk >> 35
        chk = (chk & 0x7FFFFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GENERATOR[i] if ((top >> i) & 1) else 0
    return chk


def descriptor_checksum(desc: str) -> str:
    """BIP380 descriptor checksum."""
    symbols: list[int] = []
    groups: list[int] = []
    for c in desc:
        v = _INPUT_CHARSET.find(c)
        if v < 0:
            raise ValueError(f"invalid character in descriptor: {c!r}")
        symbols.append(v & 31)
        groups.append(v >> 5)
        if len(groups) == 3:
            symbols.append(groups[0] * 9 + groups[1] * 3 + groups[2])
            groups = []
    if len(groups) == 1:
        symbols.append(groups[0])
    elif len(groups) == 2:
        symbols.append(groups[0] * 3 + groups[1])
    chk = _descsum_polymod(symbols + [0] * 8) ^ 1
    return "".join(_CHECKSUM_CHARSET[(chk >> (5 * (7 - i))) & 31] for i in range(8))


def add_checksum(desc: str) -> str:
    return f"{desc}#{descriptor_checksum(desc)}"


@functools.lru_cache(maxsize=4096)
def infer_descriptor(spk: bytes) -> str:
    """InferDescriptor for an output we hold no keys for (cached: the checksum is slow in Python)."""
    kind = solver(spk)
    if kind == "pubkey":
        return add_checksum(f"pk({spk[1:-1].hex()})")
    addr = script_to_address(spk, NET)
    if addr is not None and kind != "nonstandard":
        return add_checksum(f"addr({addr})")
    return add_checksum(f"raw({spk.hex()})")


def script_pubkey_json(spk: bytes) -> dict[str, Any]:
    kind = solver(spk)
    out: dict[str, Any] = {"asm": script_asm(spk), "desc": infer_descriptor(spk), "hex": spk.hex()}
    addr = script_to_address(spk, NET) if kind not in ("nonstandard", "pubkey", "multisig", "nulldata") else None
    if addr is not None:
        out["address"] = addr
    out["type"] = kind
    return out


# -- transactions ------------------------------------------------------------------
def tx_json(tx: Tx, coins: list[Coin] | None = None, verbosity: int = 1,
            fee: int | None = None) -> dict[str, Any]:
    """TxToUniv. With verbosity >= 2 and known spent `coins`: fee and each input's prevout."""
    raw_len = len(tx.serialize())
    out: dict[str, Any] = {
        "txid": tx.txid_hex, "hash": tx.wtxid()[::-1].hex(), "version": tx.version,
        "size": raw_len, "vsize": tx.vsize(), "weight": tx.weight(), "locktime": tx.locktime,
    }
    vin = []
    coinbase = tx.is_coinbase()
    for n, i in enumerate(tx.inputs):
        if coinbase:
            d: dict[str, Any] = {"coinbase": i.script_sig.hex()}
        else:
            d = {"txid": i.prevout.txid_hex, "vout": i.prevout.index,
                 "scriptSig": {"asm": script_asm(i.script_sig, sighash_decode=True), "hex": i.script_sig.hex()}}
        if i.witness:
            d["txinwitness"] = [w.hex() for w in i.witness]
        if verbosity >= 2 and coins is not None and not coinbase:
            c = coins[n]
            d["prevout"] = {"generated": c.coinbase, "height": c.height, "value": Amount(c.value),
                            "scriptPubKey": script_pubkey_json(c.spk)}
        d["sequence"] = i.sequence
        vin.append(d)
    out["vin"] = vin
    out["vout"] = [{"value": Amount(o.value), "n": n, "scriptPubKey": script_pubkey_json(o.script_pubkey)}
                   for n, o in enumerate(tx.outputs)]
    if verbosity >= 2 and not coinbase:
        if fee is None and coins is not None:
            fee = sum(c.value for c in coins) - sum(o.value for o in tx.outputs)
        if fee is not None:
            out["fee"] = Amount(fee)
    return out


# -- headers and blocks ------------------------------------------------------------
def bits_hex(bits: int) -> str:
    return f"{bits:08x}"


def header_json(header: BlockHeader, height: int, confirmations: int, mediantime: int, chainwork: str,
                n_tx: int | None, next_hash: bytes | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hash": header.hash_hex, "confirmations": confirmations, "height": height,
        "version": header.version, "versionHex": f"{header.version & 0xFFFFFFFF:08x}",
        "merkleroot": header.merkle_root[::-1].hex(), "time": header.time, "mediantime": mediantime,
        "nonce": header.nonce, "bits": bits_hex(header.bits), "difficulty": REGTEST_DIFFICULTY,
        "chainwork": chainwork,
    }
    if n_tx is not None:
        out["nTx"] = n_tx
    if height > 0:
        out["previousblockhash"] = header.prev_hash_hex
    if next_hash is not None:
        out["nextblockhash"] = next_hash[::-1].hex()
    return out


def block_sizes(block: Block) -> dict[str, int]:
    total = len(block.serialize())
    stripped = 80 + len(ser_compact_size(len(block.txs))) + sum(len(t.serialize(False)) for t in block.txs)
    return {"strippedsize": stripped, "size": total, "weight": stripped * 3 + total}
