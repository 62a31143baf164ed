"""The on-chain wallet: which outputs are ours, their confirmations, spends
and reservations, kept in the database and updated from every block (and
rewound on reorgs).  Keys: the master only holds hsmd's BIP32 *public* key
(xpub of m/0/0) and derives addresses from it; hsmd signs.

Derivation: key index k is the public key at m/0/0/k of hsmd's BIP32 seed;
`bech32` addresses are P2WPKH of that key, `p2tr` addresses are BIP86-style
key-path-only taproot outputs of it (TapTweak with no script tree)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from bitcoin.address import script_to_address
from bitcoin.bip32 import ExtendedPublicKey
from bitcoin.block import Block
from bitcoin.networks import Network
from bitcoin.script import p2tr_script, p2wpkh_script
from bitcoin.taproot import taproot_output_key
from bitcoin.tx import OutPoint, Tx

from .db import Db

if TYPE_CHECKING:
    from .log import Logger

COINBASE_MATURITY = 100
RESERVATION_BLOCKS = 72          # Core Lightning's default reserve


@dataclass
class Utxo:
    txid: bytes
    outnum: int
    value_sat: int
    script: bytes
    keyidx: int
    addrtype: str                 # 'p2wpkh' | 'p2tr'
    blockheight: int | None
    is_coinbase: bool
    spend_txid: bytes | None
    spend_height: int | None
    reserved_til: int | None

    @property
    def outpoint(self) -> OutPoint:
        return OutPoint(self.txid, self.outnum)


def _row_to_utxo(r: tuple) -> Utxo:
    return Utxo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10])


_COLS = "txid, outnum, value_sat, script, keyidx, addrtype, blockheight, is_coinbase, spend_txid, spend_height, " \
        "reserved_til"


class Wallet:
    def __init__(self, db: Db, network: Network, log: "Logger") -> None:
        self.db = db
        self.net = network
        self.log = log
        self.xpub = None              # bitcoin.bip32.ExtendedPublicKey of m/0/0, set by set_xpub
        self.tip_height = 0
        self._scripts: dict[bytes, tuple[int, str]] = {}
        self._ours: set[tuple[bytes, int]] = set()
        for script, keyidx, addrtype in db.query("SELECT script, keyidx, addrtype FROM scripts"):
            self._scripts[script] = (keyidx, addrtype)
        for txid, outnum in db.query("SELECT txid, outnum FROM outputs WHERE spend_height IS NULL"):
            self._ours.add((txid, outnum))

    # -- keys and addresses ------------------------------------------------------------
    def set_xpub(self, xpub_text: str) -> None:
        self.xpub = ExtendedPublicKey.parse(xpub_text)

    def pubkey(self, keyidx: int) -> bytes:
        assert self.xpub is not None, "wallet xpub not set"
        return self.xpub.derive(f"{keyidx}").pubkey

    def scripts_for(self, keyidx: int) -> dict[str, bytes]:
        pub = self.pubkey(keyidx)
        out_key, _parity = taproot_output_key(pub[1:], None)
        return {"p2wpkh": p2wpkh_script(pub), "p2tr": p2tr_script(out_key)}

    def new_keyidx(self, addrtype: str) -> int:
        """Issue the next key index and start watching its scripts (before the
        address is revealed: a crash after showing it must not lose coins)."""
        with self.db.transaction():
            row = self.db.one("SELECT MAX(keyidx) FROM addresses")
            idx = 0 if row is None or row[0] is None else row[0] + 1
            self.db.execute("INSERT INTO addresses(keyidx, addrtype, created_at) VALUES (?, ?, ?)",
                            (idx, addrtype, int(time.time())))
            for kind, script in self.scripts_for(idx).items():
                self.db.execute("INSERT OR IGNORE INTO scripts(script, keyidx, addrtype) VALUES (?, ?, ?)",
                                (script, idx, kind))
                self._scripts[script] = (idx, kind)
        return idx

    def address(self, keyidx: int, kind: str) -> str:
        addr = script_to_address(self.scripts_for(keyidx)[kind], self.net)
        assert addr is not None
        return addr

    def is_ours(self, script: bytes) -> bool:
        return script in self._scripts

    def listaddresses(self, start: int = 0, limit: int | None = None) -> list[dict]:
        rows = self.db.query("SELECT keyidx, addrtype FROM addresses WHERE keyidx >= ? ORDER BY keyidx LIMIT ?",
                             (start, -1 if limit is None else limit))
        out = []
        for keyidx, addrtype in rows:
            d: dict = {"keyidx": keyidx}
            if addrtype in ("bech32", "all"):
                d["bech32"] = self.address(keyidx, "p2wpkh")
            if addrtype in ("p2tr", "all"):
                d["p2tr"] = self.address(keyidx, "p2tr")
            out.append(d)
        return out

    # -- chain -----------------------------------------------------------------------------
    def block_connected(self, height: int, block: Block) -> None:
        self.tip_height = height
        for txindex, tx in enumerate(block.txs):
            self._add_tx(tx, height, txindex, coinbase=(txindex == 0))

    def block_disconnected(self, height: int) -> None:
        """A reorg removed `height`: what it confirmed is unconfirmed again."""
        self.db.execute("UPDATE outputs SET blockheight = NULL WHERE blockheight = ?", (height,))
        self.db.execute("UPDATE outputs SET spend_height = NULL WHERE spend_height = ?", (height,))
        self.db.execute("UPDATE transactions SET blockheight = NULL, txindex = NULL WHERE blockheight = ?", (height,))
        # a coinbase of a vanished block can never confirm again: forget it
        gone = self.db.query("SELECT txid, outnum FROM outputs WHERE is_coinbase = 1 AND blockheight IS NULL")
        for txid, outnum in gone:
            self._ours.discard((txid, outnum))
        self.db.execute("DELETE FROM outputs WHERE is_coinbase = 1 AND blockheight IS NULL")
        for txid, outnum in self.db.query("SELECT txid, outnum FROM outputs WHERE spend_height IS NULL"):
            self._ours.add((txid, outnum))
        self.tip_height = height - 1

    def _add_tx(self, tx: Tx, height: int | None, txindex: int | None, coinbase: bool = False,
                ours: bool = False) -> bool:
        """Record what `tx` does to our wallet; True if it touched it."""
        txid = tx.txid()
        touched = False
        if not coinbase:
            for i in tx.inputs:
                key = (i.prevout.txid, i.prevout.index)
                if key in self._ours:
                    self.db.execute("UPDATE outputs SET spend_txid = ?, spend_height = ?, reserved_til = NULL "
                                    "WHERE txid = ? AND outnum = ?", (txid, height, key[0], key[1]))
                    if height is not None:
                        self._ours.discard(key)
                    touched = True
        for n, o in enumerate(tx.outputs):
            found = self._scripts.get(o.script_pubkey)
            if found is None:
                continue
            keyidx, kind = found
            self.db.execute(f"INSERT INTO outputs({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL) "
                            "ON CONFLICT(txid, outnum) DO UPDATE SET blockheight = excluded.blockheight",
                            (txid, n, o.value, o.script_pubkey, keyidx, kind, height, int(coinbase)))
            self._ours.add((txid, n))
            touched = True
        if touched or ours:
            self.db.execute("INSERT INTO transactions(txid, raw, blockheight, txindex, ours) VALUES (?, ?, ?, ?, ?) "
                            "ON CONFLICT(txid) DO UPDATE SET blockheight = excluded.blockheight, "
                            "txindex = excluded.txindex", (txid, tx.serialize(), height, txindex, int(ours)))
        return touched

    def add_own_tx(self, tx: Tx) -> None:
        """A transaction we are about to broadcast: its change is ours (spendable
        with minconf=0) and its inputs are spent (pending confirmation)."""
        with self.db.transaction():
            self._add_tx(tx, None, None, ours=True)

    def forget_own_tx(self, tx: Tx) -> None:
        """Undo add_own_tx for a transaction that could not be broadcast."""
        txid = tx.txid()
        with self.db.transaction():
            for n in range(len(tx.outputs)):
                self._ours.discard((txid, n))
            self.db.execute("DELETE FROM outputs WHERE txid = ? AND blockheight IS NULL", (txid,))
            self.db.execute("UPDATE outputs SET spend_txid = NULL, spend_height = NULL WHERE spend_txid = ?", (txid,))
            self.db.execute("DELETE FROM transactions WHERE txid = ? AND blockheight IS NULL", (txid,))

    def unconfirmed_own_txs(self) -> list[Tx]:
        return [Tx.parse(r[0]) for r in self.db.query(
            "SELECT raw FROM transactions WHERE ours = 1 AND blockheight IS NULL AND prepared = 0")]

    # -- queries ------------------------------------------------------------------------------
    def utxos(self, include_spent: bool = False) -> list[Utxo]:
        where = "" if include_spent else "WHERE spend_txid IS NULL"
        return [_row_to_utxo(r) for r in self.db.query(f"SELECT {_COLS} FROM outputs {where} ORDER BY blockheight, txid")]

    def status(self, u: Utxo) -> str:
        if u.spend_txid is not None:
            return "spent"
        if u.blockheight is None:
            return "unconfirmed"
        if u.is_coinbase and self.tip_height - u.blockheight + 1 < COINBASE_MATURITY:
            return "immature"
        return "confirmed"

    def confirmations(self, u: Utxo) -> int:
        return 0 if u.blockheight is None else self.tip_height - u.blockheight + 1

    def is_reserved(self, u: Utxo) -> bool:
        return u.reserved_til is not None and u.reserved_til >= self.tip_height

    def spendable(self, minconf: int) -> list[Utxo]:
        out = []
        for u in self.utxos():
            st = self.status(u)
            if st in ("spent", "immature") or self.is_reserved(u):
                continue
            if self.confirmations(u) < minconf:
                continue
            out.append(u)
        return out

    def get(self, txid: bytes, outnum: int) -> Utxo | None:
        r = self.db.one(f"SELECT {_COLS} FROM outputs WHERE txid = ? AND outnum = ?", (txid, outnum))
        return _row_to_utxo(r) if r else None

    def reserve(self, outpoints: Iterable[OutPoint], blocks: int = RESERVATION_BLOCKS) -> None:
        with self.db.transaction():
            for op in outpoints:
                self.db.execute("UPDATE outputs SET reserved_til = ? WHERE txid = ? AND outnum = ?",
                                (self.tip_height + blocks, op.txid, op.index))

    def unreserve(self, outpoints: Iterable[OutPoint]) -> None:
        with self.db.transaction():
            for op in outpoints:
                self.db.execute("UPDATE outputs SET reserved_til = NULL WHERE txid = ? AND outnum = ? "
                                "AND spend_txid IS NULL", (op.txid, op.index))

    def output_json(self, u: Utxo) -> dict:
        d: dict = {"txid": u.txid[::-1].hex(), "output": u.outnum, "amount_msat": u.value_sat * 1000,
                   "scriptpubkey": u.script.hex(), "address": script_to_address(u.script, self.net),
                   "status": self.status(u), "reserved": self.is_reserved(u)}
        if u.blockheight is not None:
            d["blockheight"] = u.blockheight
        if d["reserved"]:
            d["reserved_to_block"] = u.reserved_til
        return d
