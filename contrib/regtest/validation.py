"""Transaction checks, named and ordered as bitcoind's (consensus/tx_check.cpp,
consensus/tx_verify.cpp, policy/policy.cpp, validation.cpp).

Scripts are verified by the kernel (libbitcoinkernel's script interpreter with
every consensus flag); everything around them -- finality, relative locks,
coinbase maturity, amounts, standardness -- is checked here, because the
kernel only validates whole blocks and a bad transaction must be refused
before it can make a mined block invalid.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pbk

from bitcoin.script import OP_16, OP_RETURN, iter_script, witness_program
from bitcoin.tx import Tx

from .store import Coin

COIN = 100_000_000
MAX_MONEY = 21_000_000 * COIN
MAX_BLOCK_WEIGHT = 4_000_000
MAX_STANDARD_TX_WEIGHT = 400_000
MAX_STANDARD_SCRIPTSIG_SIZE = 1650
MAX_OP_RETURN_RELAY = 83
MIN_STANDARD_TX_NONWITNESS_SIZE = 65
COINBASE_MATURITY = 100
DUST_RELAY_FEE = 3000           # sat/kvB
LOCKTIME_THRESHOLD = 500_000_000
SEQUENCE_FINAL = 0xFFFFFFFF
SEQUENCE_LOCKTIME_DISABLE_FLAG = 1 << 31
SEQUENCE_LOCKTIME_TYPE_FLAG = 1 << 22
SEQUENCE_LOCKTIME_MASK = 0x0000FFFF
SEQUENCE_LOCKTIME_GRANULARITY = 9
MEMPOOL_HEIGHT = 0x7FFFFFFF     # "height" of a coin created by a mempool transaction

SCRIPT_FLAGS = pbk.ScriptVerificationFlags.ALL


class TxReject(Exception):
    """A transaction refused by a check: bitcoind's reject reason and debug text.

    `missing_inputs` marks bitcoind's TX_MISSING_INPUTS result, which
    sendrawtransaction reports with RPC_VERIFY_ERROR (-25) rather than -26.
    """

    def __init__(self, reason: str, debug: str = "", missing_inputs: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.debug = debug
        self.missing_inputs = missing_inputs

    def __str__(self) -> str:
        return f"{self.reason}, {self.debug}" if self.debug else self.reason


def format_money(sats: int) -> str:
    sign = "-" if sats < 0 else ""
    sats = abs(sats)
    return f"{sign}{sats // COIN}.{sats % COIN:08d}"


def is_unspendable(spk: bytes) -> bool:
    """Outputs that never enter the UTXO set (OP_RETURN or oversized)."""
    return (len(spk) > 0 and spk[0] == OP_RETURN) or len(spk) > 10_000


# -- context-free checks (CheckTransaction) -----------------------------------------
def check_transaction(tx: Tx) -> None:
    if not tx.inputs:
        raise TxReject("bad-txns-vin-empty")
    if not tx.outputs:
        raise TxReject("bad-txns-vout-empty")
    if len(tx.serialize(include_witness=False)) * 4 > MAX_BLOCK_WEIGHT:
        raise TxReject("bad-txns-oversize")
    total = 0
    for o in tx.outputs:
        if o.value < 0:
            raise TxReject("bad-txns-vout-negative")
        if o.value > MAX_MONEY:
            raise TxReject("bad-txns-vout-toolarge")
        total += o.value
        if total > MAX_MONEY:
            raise TxReject("bad-txns-txouttotal-toolarge")
    seen = set()
    for i in tx.inputs:
        key = (i.prevout.txid, i.prevout.index)
        if key in seen:
            raise TxReject("bad-txns-inputs-duplicate")
        seen.add(key)
    if tx.is_coinbase():
        if not 2 <= len(tx.inputs[0].script_sig) <= 100:
            raise TxReject("bad-cb-length")
    elif any(i.prevout.txid == b"\x00" * 32 and i.prevout.index == 0xFFFFFFFF for i in tx.inputs):
        raise TxReject("bad-txns-prevout-null")


# -- standardness (IsStandardTx) ----------------------------------------------------------
def solver(spk: bytes) -> str:
    """bitcoind's output type name (as decodescript/getrawtransaction print it)."""
    wp = witness_program(spk)
    if wp is not None:
        ver, prog = wp
        if ver == 0 and len(prog) == 20:
            return "witness_v0_keyhash"
        if ver == 0 and len(prog) == 32:
            return "witness_v0_scripthash"
        if ver == 1 and len(prog) == 32:
            return "witness_v1_taproot"
        if ver == 1 and prog == b"\x4e\x73":
            return "anchor"
        if ver != 0:
            return "witness_unknown"
        return "nonstandard"
    if len(spk) == 23 and spk[0] == 0xA9 and spk[1] == 20 and spk[22] == 0x87:
        return "scripthash"
    if len(spk) == 25 and spk[:3] == b"\x76\xa9\x14" and spk[23:] == b"\x88\xac":
        return "pubkeyhash"
    if (len(spk) == 35 and spk[0] == 33 or len(spk) == 67 and spk[0] == 65) and spk[-1] == 0xAC:
        return "pubkey"
    if spk and spk[0] == OP_RETURN:
        try:
            if all(op <= OP_16 for op, _ in iter_script(spk[1:])):
                return "nulldata"
        except ValueError:
            pass
        return "nonstandard"
    if _multisig(spk) is not None:
        return "multisig"
    return "nonstandard"


def _multisig(spk: bytes) -> tuple[int, int] | None:
    """(m, n) of a bare multisig script, else None."""
    try:
        ops = list(iter_script(spk))
    except ValueError:
        return None
    if len(ops) < 4 or ops[-1][0] != 0xAE:
        return None
    m_op, n_op = ops[0][0], ops[-2][0]
    if not (0x51 <= m_op <= 0x60 and 0x51 <= n_op <= 0x60):
        return None
    keys = ops[1:-2]
    m, n = m_op - 0x50, n_op - 0x50
    if len(keys) != n or m > n or any(d is None or len(d) not in (33, 65) for _, d in keys):
        return None
    return m, n


def dust_threshold(spk: bytes) -> int:
    """GetDustThreshold with the default -dustrelayfee (3 sat/vB)."""
    if is_unspendable(spk):
        return 0
    size = 8 + len(_compact(len(spk))) + len(spk)
    size += (32 + 4 + 1 + 107 // 4 + 4) if witness_program(spk) is not None else (32 + 4 + 1 + 107 + 4)
    return DUST_RELAY_FEE * size // 1000


def _compact(n: int) -> bytes:
    return bytes([n]) if n < 0xFD else b"\xfd\x00\x00"


def check_standard(tx: Tx) -> None:
    if not 1 <= tx.version <= 3:
        raise TxReject("version")
    if tx.weight() > MAX_STANDARD_TX_WEIGHT:
        raise TxReject("tx-size")
    for i in tx.inputs:
        if len(i.script_sig) > MAX_STANDARD_SCRIPTSIG_SIZE:
            raise TxReject("scriptsig-size")
        try:
            push_only = all(op <= OP_16 for op, _ in iter_script(i.script_sig))
        except ValueError:
            push_only = False
        if not push_only:
            raise TxReject("scriptsig-not-pushonly")
    n_data = 0
    for o in tx.outputs:
        kind = solver(o.script_pubkey)
        if kind == "nonstandard":
            raise TxReject("scriptpubkey")
        if kind == "nulldata":
            if len(o.script_pubkey) > MAX_OP_RETURN_RELAY:
                raise TxReject("scriptpubkey")
            n_data += 1
        elif kind == "multisig":
            ms = _multisig(o.script_pubkey)
            if ms is None or ms[1] > 3:
                raise TxReject("scriptpubkey")
        elif o.value < dust_threshold(o.script_pubkey):
            raise TxReject("dust")
    if n_data > 1:
        raise TxReject("multi-op-return")


# -- contextual checks ------------------------------------------------------------------
def is_final(tx: Tx, height: int, time: int) -> bool:
    """IsFinalTx for a block at `height` whose locktime cutoff is `time` (the MTP)."""
    if tx.locktime == 0:
        return True
    limit = height if tx.locktime < LOCKTIME_THRESHOLD else time
    if tx.locktime < limit:
        return True
    return all(i.sequence == SEQUENCE_FINAL for i in tx.inputs)


def check_sequence_locks(tx: Tx, coins: Sequence[Coin], height: int, tip_mtp: int,
                         mtp_at: Callable[[int], int]) -> None:
    """BIP68 relative locks for a block at `height` on a tip whose MTP is `tip_mtp`.

    A coin confirmed at height h is timed from the MTP of block h-1; a
    mempool coin counts as confirmed in the next block.
    """
    if tx.version < 2:
        return
    min_height, min_time = -1, -1
    for txin, coin in zip(tx.inputs, coins):
        seq = txin.sequence
        if seq & SEQUENCE_LOCKTIME_DISABLE_FLAG:
            continue
        coin_height = height if coin.height == MEMPOOL_HEIGHT else coin.height
        if seq & SEQUENCE_LOCKTIME_TYPE_FLAG:
            coin_time = mtp_at(max(coin_height - 1, 0))
            min_time = max(min_time, coin_time + ((seq & SEQUENCE_LOCKTIME_MASK) << SEQUENCE_LOCKTIME_GRANULARITY) - 1)
        else:
            min_height = max(min_height, coin_height + (seq & SEQUENCE_LOCKTIME_MASK) - 1)
    if min_height >= height or min_time >= tip_mtp:
        raise TxReject("non-BIP68-final")


def check_tx_inputs(tx: Tx, coins: Sequence[Coin], spend_height: int) -> int:
    """Consensus::CheckTxInputs: maturity and amounts; returns the fee."""
    value_in = 0
    for coin in coins:
        if coin.coinbase and spend_height - coin.height < COINBASE_MATURITY:
            raise TxReject("bad-txns-premature-spend-of-coinbase",
                           f"tried to spend coinbase at depth {spend_height - coin.height}")
        value_in += coin.value
        if not 0 <= coin.value <= MAX_MONEY or value_in > MAX_MONEY:
            raise TxReject("bad-txns-inputvalues-outofrange")
    value_out = sum(o.value for o in tx.outputs)
    if value_in < value_out:
        raise TxReject("bad-txns-in-belowout",
                       f"value in ({format_money(value_in)}) < value out ({format_money(value_out)})")
    fee = value_in - value_out
    if not 0 <= fee <= MAX_MONEY:
        raise TxReject("bad-txns-fee-outofrange")
    return fee


def verify_scripts(raw: bytes, coins: Sequence[Coin]) -> None:
    """Every input's script, by libbitcoinkernel with all consensus flags."""
    try:
        ktx = pbk.Transaction(raw)
    except Exception as e:
        raise TxReject("mandatory-script-verify-flag-failed (transaction not decodable by the kernel)",
                       str(e)) from None
    spent = [pbk.TransactionOutput(pbk.ScriptPubkey(c.spk), c.value) for c in coins]
    precomputed = pbk.script.PrecomputedTransactionData(ktx, spent)
    for n, coin in enumerate(coins):
        try:
            ok = pbk.ScriptPubkey(coin.spk).verify(coin.value, ktx, precomputed, n, SCRIPT_FLAGS)
        except pbk.ScriptVerifyException as e:
            raise TxReject(f"mandatory-script-verify-flag-failed ({e.status.name} on input {n})") from None
        if not ok:
            raise TxReject(f"mandatory-script-verify-flag-failed (Script evaluation failed on input {n})")


def signals_rbf(tx: Tx) -> bool:
    """BIP125 opt-in: some input has nSequence < 0xfffffffe."""
    return any(i.sequence < 0xFFFFFFFE for i in tx.inputs)
