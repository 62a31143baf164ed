"""The node: chain + mempool + notifications, and the operations RPCs need.

All state lives here and is touched only from the asyncio event loop thread
(the RPC server calls in synchronously), so no locking is needed.
"""
from __future__ import annotations

import logging
import subprocess
import time
from typing import Any, Callable

from bitcoin.block import Block
from bitcoin.serialize import DeserializationError
from bitcoin.tx import Tx

from .chain import Chain, ChainChange
from .config import Config
from .decode import Amount
from .errors import RPC_DESERIALIZATION_ERROR, RPC_MISC_ERROR, RPC_VERIFY_ALREADY_IN_CHAIN, RPC_VERIFY_ERROR, \
    RPC_VERIFY_REJECTED, RPCError
from .kernel import CONNECTED
from .mempool import Mempool, MempoolEntry, fee_for
from .store import Coin, Store
from .validation import TxReject, check_sequence_locks, check_transaction, check_tx_inputs, is_final, \
    is_unspendable, verify_scripts
from .zmq_pub import ZmqPublisher

log = logging.getLogger("regtestd")

DEFAULT_MAX_FEERATE = 10_000_000      # sat/kvB: sendrawtransaction's 0.10 BTC/kvB


def decode_tx(hexstr: str) -> tuple[Tx, bytes]:
    """DecodeHexTx; -22 on failure, with bitcoind's message."""
    try:
        raw = bytes.fromhex(hexstr)
        return Tx.parse(raw), raw
    except (ValueError, DeserializationError):
        raise RPCError(RPC_DESERIALIZATION_ERROR, "TX decode failed. Make sure the tx has at least one input.") \
            from None


class Node:
    """Everything regtestd knows, and what changes it."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        cfg.chaindir.mkdir(parents=True, exist_ok=True)
        self.store = Store(cfg.chaindir / "index.sqlite")
        self.chain = Chain(cfg.chaindir, self.store)
        self.mempool = Mempool(cfg, self.chain)
        self.zmq = ZmqPublisher(cfg.zmq, cfg.zmq_hwm)
        self.mempool.on_added.append(self._tx_added)
        self.mempool.on_removed.append(self._tx_removed)
        self.started = time.time()
        self.feerates: dict[int, int] = {}          # setfeerate per conf_target, sat/kvB
        self.default_feerate: int | None = cfg.fallbackfee
        self.request_stop: Callable[[], None] = lambda: None
        self._children: list[subprocess.Popen[bytes]] = []

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        change = self.chain.open(reindex=self.cfg.reindex)
        if change:
            log.info("index caught up with the kernel: -%d +%d blocks",
                     len(change.disconnected), len(change.connected))
        if self.cfg.persistmempool:
            loaded = 0
            for raw, t in self.store.load_mempool():
                try:
                    tx = Tx.parse(raw)
                    entry, replaced = self.mempool.check(tx, raw, bypass_limits=True)
                except (TxReject, DeserializationError) as e:
                    log.info("mempool.dat: dropped a transaction: %s", e)
                    continue
                entry.time = t
                self.mempool.add(entry, replaced, notify=False)
                loaded += 1
            log.info("loaded %d mempool transactions", loaded)
        self.store.clear_mempool()
        log.info("chain tip %d %s", self.chain.height, self.chain.tip[::-1].hex())

    def shutdown(self) -> None:
        if self.cfg.persistmempool:
            self.store.save_mempool([(e.raw, e.time) for e in self.mempool.entries.values()])
        self.chain.close()
        self.store.close()
        self.zmq.close()

    def run_notify(self, cmd: str | None, block_hash: str = "") -> None:
        """-blocknotify & co: fire and forget, reaping earlier children."""
        self._children = [p for p in self._children if p.poll() is None]
        if cmd:
            self._children.append(subprocess.Popen(cmd.replace("%s", block_hash), shell=True))

    # -- notifications -----------------------------------------------------------------------
    def _tx_added(self, e: MempoolEntry, seq: int) -> None:
        self.zmq.transaction(e.raw, e.txid)
        self.zmq.sequence_tx(e.txid, True, seq)

    def _tx_removed(self, e: MempoolEntry, reason: str, seq: int) -> None:
        if reason != "block":        # bitcoind: block inclusion is implied by the block's "C"
            self.zmq.sequence_tx(e.txid, False, seq)

    def _after_change(self, change: ChainChange) -> None:
        """Publish a chain change and bring the mempool in line with it."""
        for block in change.disconnected:
            for tx in block.txs:
                self.zmq.transaction(tx.serialize(), tx.txid())
            self.zmq.sequence_block(block.hash(), False)
        for block, raw in change.connected:
            for tx in block.txs:
                self.zmq.transaction(tx.serialize(), tx.txid())
            self.zmq.sequence_block(block.hash(), True)
            self.mempool.remove_for_block(block.txs)
            self.zmq.block(raw, block.hash())
        if change.disconnected:
            resurrected = [tx for block in reversed(change.disconnected) for tx in block.txs[1:]]
            self.mempool.update_for_reorg(resurrected)
        if change and self.cfg.blocknotify:
            self.run_notify(self.cfg.blocknotify, self.chain.tip[::-1].hex())

    # -- blocks --------------------------------------------------------------------------
    def submit_block(self, block: Block, raw: bytes) -> str | None:
        """submitblock: None when accepted, else bitcoind's result string."""
        outcome, change = self.chain.submit_block(block, raw)
        self._after_change(change)
        if outcome.status == CONNECTED:
            return None
        if outcome.status == "stale":
            return "inconclusive"
        return outcome.reason or outcome.status

    def mine(self, spk: bytes, txs: list[Tx], fees: int) -> Block:
        block = self.chain.build_block(spk, txs, fees)
        outcome, change = self.chain.submit_block(block, block.serialize())
        self._after_change(change)
        if outcome.status != CONNECTED:
            raise RPCError(RPC_MISC_ERROR, f"libbitcoinkernel did not connect the generated block "
                                           f"{block.hash_hex}: {outcome.reason or outcome.status}")
        return block

    def generate(self, spk: bytes, nblocks: int) -> list[str]:
        """generatetoaddress: blocks with the mempool's transactions."""
        hashes = []
        for _ in range(nblocks):
            entries, fees = self.mempool.select_for_block()
            try:
                block = self.mine(spk, [e.tx for e in entries], fees)
            except RPCError as e:
                if not entries:
                    raise
                # Our mempool let through what the kernel refuses: evict it so
                # mining can go on, and report loudly.
                for entry in entries:
                    self.mempool.remove_recursive(entry.txid, "conflict")
                log.error("%s; evicted %d mempool transactions", e.message, len(entries))
                raise RPCError(e.code, f"{e.message}; evicted its {len(entries)} mempool transactions") from None
            hashes.append(block.hash_hex)
        return hashes

    def generate_block(self, spk: bytes, items: list[str], submit: bool) -> dict[str, Any]:
        """generateblock: exactly `items` (raw hex or mempool txids), consensus-checked."""
        txs: list[Tx] = []
        for item in items:
            if isinstance(item, str) and len(item) == 64:
                try:
                    e = self.mempool.entries.get(bytes.fromhex(item)[::-1])
                except ValueError:
                    e = None
                if e is None:
                    raise RPCError(-5, f"Transaction {item} not in mempool.")
                txs.append(e.tx)
                continue
            try:
                txs.append(Tx.parse(bytes.fromhex(item)))
            except (ValueError, DeserializationError, TypeError):
                raise RPCError(RPC_DESERIALIZATION_ERROR, f"Transaction decode failed for {item}. "
                               "Make sure the tx has at least one input.") from None
        fees = self._check_block_txs(txs)
        block = self.chain.build_block(spk, txs, fees)
        raw = block.serialize()
        if not submit:
            return {"hash": block.hash_hex, "hex": raw.hex()}
        outcome, change = self.chain.submit_block(block, raw)
        self._after_change(change)
        if outcome.status != CONNECTED:
            raise RPCError(RPC_VERIFY_ERROR, f"TestBlockValidity failed: {outcome.reason or outcome.status}")
        return {"hash": block.hash_hex}

    def _check_block_txs(self, txs: list[Tx]) -> int:
        """Consensus checks for transactions forced into a block; returns their fees."""
        height = self.chain.height + 1
        tip_mtp = self.chain.mtp()
        created: dict[tuple[bytes, int], Coin] = {}
        spent: set[tuple[bytes, int]] = set()
        fees = 0
        for tx in txs:
            try:
                check_transaction(tx)
                if tx.is_coinbase():
                    raise TxReject("bad-cb-multiple")
                if not is_final(tx, height, tip_mtp):
                    raise TxReject("bad-txns-nonfinal")
                coins = []
                for i in tx.inputs:
                    key = (i.prevout.txid, i.prevout.index)
                    coin = created.get(key) or self.chain.get_coin(*key)
                    if coin is None or key in spent:
                        raise TxReject("bad-txns-inputs-missingorspent")
                    spent.add(key)
                    coins.append(coin)
                check_sequence_locks(tx, coins, height, tip_mtp, self.chain.mtp)
                fees += check_tx_inputs(tx, coins, height)
                verify_scripts(tx.serialize(), coins)
            except TxReject as e:
                raise RPCError(RPC_VERIFY_ERROR, f"TestBlockValidity failed: {e}") from None
            txid = tx.txid()
            for n, o in enumerate(tx.outputs):
                created[(txid, n)] = Coin(o.value, o.script_pubkey, height, False)
        return fees

    def invalidate(self, h: bytes) -> None:
        self._after_change(self.chain.invalidate(h))

    def reconsider(self, h: bytes) -> None:
        self._after_change(self.chain.reconsider(h))

    # -- transactions --------------------------------------------------------------------------
    def send_raw(self, hexstr: str, max_feerate: int, max_burn: int) -> str:
        """sendrawtransaction, following bitcoind's BroadcastTransaction."""
        tx, raw = decode_tx(hexstr)
        for o in tx.outputs:
            if is_unspendable(o.script_pubkey) and o.value > max_burn:
                raise RPCError(RPC_VERIFY_ERROR, "Unspendable output exceeds maximum configured by user "
                                                 "(maxburnamount)")
        txid = tx.txid()
        if any(self.chain.get_coin(txid, n) is not None for n in range(len(tx.outputs))):
            raise RPCError(RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set")
        if txid in self.mempool.entries:
            return tx.txid_hex              # already known: bitcoind just re-announces it
        try:
            entry, replaced = self.mempool.check(tx, raw)
        except TxReject as e:
            if e.missing_inputs:
                raise RPCError(RPC_VERIFY_ERROR, "bad-txns-inputs-missingorspent") from None
            raise RPCError(RPC_VERIFY_REJECTED, str(e)) from None
        if max_feerate and entry.fee > fee_for(max_feerate, entry.vsize):
            raise RPCError(RPC_VERIFY_ERROR, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)")
        self.mempool.add(entry, replaced)
        return tx.txid_hex

    def test_accept(self, rawtxs: list[str], max_feerate: int) -> list[dict[str, Any]]:
        """testmempoolaccept: each tx checked with the earlier ones as unconfirmed parents."""
        decoded = [decode_tx(h) if isinstance(h, str) else decode_tx("") for h in rawtxs]
        package: dict[bytes, MempoolEntry] = {}
        results = []
        for tx, raw in decoded:
            r: dict[str, Any] = {"txid": tx.txid_hex, "wtxid": tx.wtxid()[::-1].hex()}
            try:
                entry, _ = self.mempool.check(tx, raw, package=package)
            except TxReject as e:
                r.update({"allowed": False, "reject-reason": "missing-inputs" if e.missing_inputs else e.reason,
                          "reject-details": str(e)})
                results.append(r)
                continue
            if max_feerate and entry.fee > fee_for(max_feerate, entry.vsize):
                r.update({"allowed": False, "reject-reason": "max-fee-exceeded"})
            else:
                r.update({"allowed": True, "vsize": entry.vsize,
                          "fees": {"base": Amount(entry.fee),
                                   "effective-feerate": Amount(entry.fee * 1000 // entry.vsize),
                                   "effective-includes": [r["wtxid"]]}})
                package[entry.txid] = entry
            results.append(r)
        return results

    # -- fees ----------------------------------------------------------------------------------
    def estimate_feerate(self, target: int) -> int | None:
        """sat/kvB for `target`, from setfeerate or -fallbackfee; None if unset."""
        rate: int | None
        if self.feerates:
            eligible = [t for t in self.feerates if t <= target]
            rate = self.feerates[max(eligible)] if eligible else self.feerates[min(self.feerates)]
        else:
            rate = self.default_feerate
        if rate is None:
            return None
        return max(rate, self.cfg.minrelaytxfee)
