"""The mempool: acceptance (bitcoind's AcceptToMemoryPool order of checks),
replacement (full RBF as in bitcoind 28, BIP125 rules 2-6), block template
selection and the updates after blocks and reorgs.

Insertion order is kept topological (a transaction enters only after its
parents), so a block can take entries in order.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from bitcoin.tx import Tx

from .chain import Chain
from .config import Config
from .store import Coin
from .validation import MAX_BLOCK_WEIGHT, MEMPOOL_HEIGHT, MIN_STANDARD_TX_NONWITNESS_SIZE, TxReject, \
    check_sequence_locks, check_standard, check_transaction, check_tx_inputs, format_money, is_final, \
    signals_rbf, verify_scripts

log = logging.getLogger("regtestd")

MAX_REPLACEMENT_CANDIDATES = 100
INCREMENTAL_RELAY_FEE = 1000          # sat/kvB
BLOCK_TX_WEIGHT_BUDGET = MAX_BLOCK_WEIGHT - 8000   # room for header and coinbase, as bitcoind


@dataclass
class MempoolEntry:
    tx: Tx
    raw: bytes
    txid: bytes
    wtxid: bytes
    fee: int
    vsize: int
    weight: int
    time: int
    height: int          # chain height when it entered
    coins: list[Coin]    # the coins it spends, in input order

    @property
    def txid_hex(self) -> str:
        return self.txid[::-1].hex()


def fee_for(rate_per_kvb: int, vsize: int) -> int:
    """CFeeRate::GetFee: rounded up."""
    return math.ceil(rate_per_kvb * vsize / 1000)


def format_feerate(fee: int, vsize: int) -> str:
    return f"{format_money(fee * 1000 // vsize if vsize else 0)} BTC/kvB"


class Mempool:
    """Unconfirmed transactions over the chain's UTXO set."""

    def __init__(self, cfg: Config, chain: Chain) -> None:
        self.cfg = cfg
        self.chain = chain
        self.entries: dict[bytes, MempoolEntry] = {}
        self.spenders: dict[tuple[bytes, int], bytes] = {}   # outpoint -> txid spending it
        self.sequence = 0                                     # bitcoind's mempool_sequence
        self.on_added: list[Callable[[MempoolEntry, int], None]] = []
        self.on_removed: list[Callable[[MempoolEntry, str, int], None]] = []

    # -- views -----------------------------------------------------------------------
    def get_coin(self, txid: bytes, vout: int, package: dict[bytes, MempoolEntry] | None = None) -> Coin | None:
        """A coin from the chain or an unconfirmed output (height MEMPOOL_HEIGHT)."""
        e = self.entries.get(txid) or (package or {}).get(txid)
        if e is not None:
            if vout < len(e.tx.outputs):
                o = e.tx.outputs[vout]
                return Coin(o.value, o.script_pubkey, MEMPOOL_HEIGHT, False)
            return None
        return self.chain.get_coin(txid, vout)

    def parents(self, e: MempoolEntry) -> set[bytes]:
        return {i.prevout.txid for i in e.tx.inputs if i.prevout.txid in self.entries}

    def children(self, e: MempoolEntry) -> set[bytes]:
        out = set()
        for vout in range(len(e.tx.outputs)):
            s = self.spenders.get((e.txid, vout))
            if s is not None:
                out.add(s)
        return out

    def ancestors(self, e: MempoolEntry) -> set[bytes]:
        seen: set[bytes] = set()
        todo = list(self.parents(e))
        while todo:
            t = todo.pop()
            if t not in seen:
                seen.add(t)
                todo.extend(self.parents(self.entries[t]))
        return seen

    def descendants(self, e: MempoolEntry) -> set[bytes]:
        seen: set[bytes] = set()
        todo = list(self.children(e))
        while todo:
            t = todo.pop()
            if t not in seen:
                seen.add(t)
                todo.extend(self.children(self.entries[t]))
        return seen

    def __len__(self) -> int:
        return len(self.entries)

    # -- acceptance ------------------------------------------------------------------
    def check(self, tx: Tx, raw: bytes, *, bypass_limits: bool = False,
              package: dict[bytes, MempoolEntry] | None = None) -> tuple[MempoolEntry, set[bytes]]:
        """Everything AcceptToMemoryPool checks; returns the entry and the txids it replaces.

        Raises TxReject with bitcoind's reject reason.
        """
        txid, wtxid = tx.txid(), tx.wtxid()
        check_transaction(tx)
        if tx.is_coinbase():
            raise TxReject("coinbase")
        if not self.cfg.acceptnonstdtxn:
            check_standard(tx)
        if len(tx.serialize(include_witness=False)) < MIN_STANDARD_TX_NONWITNESS_SIZE:
            raise TxReject("tx-size-small")
        next_height = self.chain.height + 1
        tip_mtp = self.chain.mtp()
        if not is_final(tx, next_height, tip_mtp):
            raise TxReject("non-final")
        if txid in self.entries:
            if self.entries[txid].wtxid == wtxid:
                raise TxReject("txn-already-in-mempool")
            raise TxReject("txn-same-nonwitness-data-in-mempool")

        conflicts = {self.spenders[k] for k in ((i.prevout.txid, i.prevout.index) for i in tx.inputs)
                     if k in self.spenders}
        if conflicts and not self.cfg.mempoolfullrbf and \
                not any(signals_rbf(self.entries[c].tx) for c in conflicts):
            raise TxReject("txn-mempool-conflict")

        coins: list[Coin] = []
        for i in tx.inputs:
            coin = self.get_coin(i.prevout.txid, i.prevout.index, package)
            if coin is None:
                if self.chain.store.has_any_output(txid):
                    raise TxReject("txn-already-known")
                raise TxReject("bad-txns-inputs-missingorspent", missing_inputs=True)
            coins.append(coin)

        check_sequence_locks(tx, coins, next_height, tip_mtp, self.chain.mtp)
        fee = check_tx_inputs(tx, coins, next_height)
        weight = tx.weight()
        vsize = (weight + 3) // 4
        if not bypass_limits:
            need = fee_for(self.cfg.minrelaytxfee, vsize)
            if fee < need:
                raise TxReject("min relay fee not met", f"{fee} < {need}")
        entry = MempoolEntry(tx, raw, txid, wtxid, fee, vsize, weight, int(time.time()),
                             self.chain.height, coins)
        replaced = self._replacement_checks(entry, conflicts) if conflicts else set()
        verify_scripts(raw, coins)
        return entry, replaced

    def _replacement_checks(self, new: MempoolEntry, conflicts: set[bytes]) -> set[bytes]:
        """bitcoind's ReplacementChecks; returns every tx the replacement evicts."""
        txid_hex = new.txid_hex
        evicted = set(conflicts)
        for c in conflicts:
            evicted |= self.descendants(self.entries[c])
        if len(evicted) > MAX_REPLACEMENT_CANDIDATES:
            raise TxReject("too many potential replacements",
                           f"rejecting replacement {txid_hex}; too many potential replacements "
                           f"({len(evicted)} > {MAX_REPLACEMENT_CANDIDATES})")
        conflict_parents = set()
        for c in conflicts:
            conflict_parents |= {i.prevout.txid for i in self.entries[c].tx.inputs}
        for i in new.tx.inputs:
            if i.prevout.txid in self.entries and i.prevout.txid not in conflict_parents:
                raise TxReject("replacement-adds-unconfirmed",
                               f"replacement {txid_hex} adds unconfirmed input, idx {new.tx.inputs.index(i)}")
        ancestors = set()
        for i in new.tx.inputs:
            if i.prevout.txid in self.entries:
                ancestors |= {i.prevout.txid} | self.ancestors(self.entries[i.prevout.txid])
        if ancestors & evicted:
            spent = next(iter(ancestors & evicted))[::-1].hex()
            raise TxReject("bad-txns-spends-conflicting-tx",
                           f"{txid_hex} spends conflicting transaction {spent}")
        for c in conflicts:
            old = self.entries[c]
            if new.fee * old.vsize <= old.fee * new.vsize:
                raise TxReject("insufficient fee",
                               f"rejecting replacement {txid_hex}; new feerate {format_feerate(new.fee, new.vsize)}"
                               f" <= old feerate {format_feerate(old.fee, old.vsize)}")
        old_fees = sum(self.entries[t].fee for t in evicted)
        if new.fee < old_fees:
            raise TxReject("insufficient fee", f"rejecting replacement {txid_hex}, less fees than conflicting "
                                               f"txs; {format_money(new.fee)} < {format_money(old_fees)}")
        extra = new.fee - old_fees
        need = fee_for(INCREMENTAL_RELAY_FEE, new.vsize)
        if extra < need:
            raise TxReject("insufficient fee", f"rejecting replacement {txid_hex}, not enough additional fees "
                                               f"to relay; {format_money(extra)} < {format_money(need)}")
        return evicted

    def add(self, entry: MempoolEntry, replaced: Iterable[bytes] = (), notify: bool = True) -> None:
        """Insert an accepted entry, evicting what it replaces."""
        for t in list(replaced):
            if t in self.entries:
                self._remove(self.entries[t], "replaced")
        self.entries[entry.txid] = entry
        for i in entry.tx.inputs:
            self.spenders[(i.prevout.txid, i.prevout.index)] = entry.txid
        self.sequence += 1
        if notify:
            for cb in self.on_added:
                cb(entry, self.sequence)

    def accept(self, tx: Tx, raw: bytes, bypass_limits: bool = False) -> MempoolEntry:
        entry, replaced = self.check(tx, raw, bypass_limits=bypass_limits)
        self.add(entry, replaced)
        return entry

    # -- removal -----------------------------------------------------------------------
    def _remove(self, e: MempoolEntry, reason: str, notify: bool = True) -> None:
        del self.entries[e.txid]
        for i in e.tx.inputs:
            key = (i.prevout.txid, i.prevout.index)
            if self.spenders.get(key) == e.txid:
                del self.spenders[key]
        self.sequence += 1
        if notify:
            for cb in self.on_removed:
                cb(e, reason, self.sequence)

    def remove_recursive(self, txid: bytes, reason: str) -> None:
        e = self.entries.get(txid)
        if e is None:
            return
        for d in self.descendants(e) | {txid}:
            if d in self.entries:
                self._remove(self.entries[d], reason)

    def remove_for_block(self, txs: list[Tx]) -> None:
        """A block confirmed `txs`: drop them, and what conflicts with them."""
        for tx in txs[1:]:
            txid = tx.txid()
            if txid in self.entries:
                self._remove(self.entries[txid], "block")
            for i in tx.inputs:
                other = self.spenders.get((i.prevout.txid, i.prevout.index))
                if other is not None and other != txid:
                    self.remove_recursive(other, "conflict")

    def update_for_reorg(self, resurrected: list[Tx]) -> None:
        """After blocks were disconnected: re-check everything against the new tip.

        Transactions of disconnected blocks come first (they are the parents),
        then the previous mempool; what fails now (non-final, immature
        coinbase, missing inputs, ...) is dropped, as bitcoind's
        MaybeUpdateMempoolForReorg does. Limits are bypassed as in bitcoind.
        """
        old = list(self.entries.values())
        self.entries.clear()
        self.spenders.clear()
        now = int(time.time())
        candidates = [(tx, tx.serialize(), now, False) for tx in resurrected if not tx.is_coinbase()]
        candidates += [(e.tx, e.raw, e.time, True) for e in old]
        for tx, raw, t, was_in in candidates:
            try:
                entry, replaced = self.check(tx, raw, bypass_limits=True)
            except TxReject as err:
                log.info("reorg: dropped %s from the mempool: %s", tx.txid_hex, err)
                if was_in:
                    for cb in self.on_removed:
                        self.sequence += 1
                        cb(MempoolEntry(tx, raw, tx.txid(), tx.wtxid(), 0, 0, 0, t, 0, []), "reorg",
                           self.sequence)
                continue
            if replaced:
                continue
            entry.time = t
            self.add(entry, notify=not was_in)

    # -- mining ------------------------------------------------------------------------
    def select_for_block(self) -> tuple[list[MempoolEntry], int]:
        """Entries for the next block (parents first, within the weight limit), and their fees."""
        chosen: list[MempoolEntry] = []
        included: set[bytes] = set()
        weight = 0
        for e in self.entries.values():
            if any(p not in included for p in self.parents(e)):
                continue              # a parent did not fit
            if weight + e.weight > BLOCK_TX_WEIGHT_BUDGET:
                continue
            chosen.append(e)
            included.add(e.txid)
            weight += e.weight
        return chosen, sum(e.fee for e in chosen)
