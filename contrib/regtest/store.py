"""SQLite persistence: every block we ever accepted, the active chain, the UTXO
set with undo data, the transaction index and the saved mempool.

This store is the source of truth: the kernel's own datadir can always be
rebuilt by replaying the stored blocks (that is how invalidateblock and
crash recovery work), so raw blocks are kept even when they leave the chain.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# Block status values are stored: keep them explicit and never renumber.
STATUS_VALID = 0        # accepted by the kernel (maybe on a stale branch)
STATUS_INVALID = 1      # rejected by the kernel's validation
STATUS_INVALIDATED = 2  # invalidateblock (or a descendant of such a block)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- seq is the arrival order: replaying blocks in seq order always sees parents first.
CREATE TABLE IF NOT EXISTS blocks(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hash BLOB NOT NULL UNIQUE,
    prev BLOB NOT NULL,
    height INTEGER NOT NULL,
    header BLOB NOT NULL,
    raw BLOB NOT NULL,
    status INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chain(height INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS utxo(
    txid BLOB NOT NULL, vout INTEGER NOT NULL, value INTEGER NOT NULL, spk BLOB NOT NULL,
    height INTEGER NOT NULL, coinbase INTEGER NOT NULL, PRIMARY KEY(txid, vout)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS utxo_spk ON utxo(spk);
-- Coins spent by each active block, in input order, to disconnect it.
CREATE TABLE IF NOT EXISTS undo(
    block BLOB NOT NULL, n INTEGER NOT NULL, txid BLOB NOT NULL, vout INTEGER NOT NULL,
    value INTEGER NOT NULL, spk BLOB NOT NULL, height INTEGER NOT NULL, coinbase INTEGER NOT NULL,
    PRIMARY KEY(block, n)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS txindex(
    txid BLOB PRIMARY KEY, block BLOB NOT NULL, pos INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mempool(seq INTEGER PRIMARY KEY, raw BLOB NOT NULL, time INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Coin:
    """An unspent output: value in satoshis, scriptPubKey, confirmation height."""

    value: int
    spk: bytes
    height: int
    coinbase: bool


@dataclass
class StoredBlock:
    """A row of the blocks table, without the raw block."""

    seq: int
    hash: bytes
    prev: bytes
    height: int
    header: bytes
    status: int


class Store:
    """Thin typed wrapper around the SQLite database (one connection, one thread)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        # WAL + synchronous=NORMAL: a commit per block costs no fsync, and a
        # crash loses at most the last blocks, which the kernel replay repairs.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------
    def begin(self) -> None:
        self.db.execute("BEGIN")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # -- meta -----------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    # -- blocks ---------------------------------------------------------------------
    def add_block(self, h: bytes, prev: bytes, height: int, header: bytes, raw: bytes, status: int) -> int:
        cur = self.db.execute(
            "INSERT INTO blocks(hash, prev, height, header, raw, status) VALUES(?,?,?,?,?,?)",
            (h, prev, height, header, raw, status))
        return int(cur.lastrowid or 0)

    def set_block_status(self, h: bytes, status: int) -> None:
        self.db.execute("UPDATE blocks SET status=? WHERE hash=?", (status, h))

    def all_blocks(self) -> Iterator[StoredBlock]:
        for row in self.db.execute("SELECT seq, hash, prev, height, header, status FROM blocks ORDER BY seq"):
            yield StoredBlock(*row)

    def raw_block(self, h: bytes) -> bytes | None:
        row = self.db.execute("SELECT raw FROM blocks WHERE hash=?", (h,)).fetchone()
        return row[0] if row else None

    def replay_blocks(self) -> Iterator[tuple[bytes, bytes]]:
        """(hash, raw) of every block not known invalid, parents first."""
        cur = self.db.execute("SELECT hash, raw FROM blocks WHERE status=? ORDER BY seq", (STATUS_VALID,))
        yield from cur

    # -- active chain ---------------------------------------------------------------
    def chain_hashes(self) -> list[bytes]:
        return [r[0] for r in self.db.execute("SELECT hash FROM chain ORDER BY height")]

    def set_chain(self, height: int, h: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO chain(height, hash) VALUES(?, ?)", (height, h))

    def truncate_chain(self, height: int) -> None:
        """Forget the active chain above `height`."""
        self.db.execute("DELETE FROM chain WHERE height>?", (height,))

    # -- UTXO set -------------------------------------------------------------------
    def get_coin(self, txid: bytes, vout: int) -> Coin | None:
        row = self.db.execute("SELECT value, spk, height, coinbase FROM utxo WHERE txid=? AND vout=?",
                              (txid, vout)).fetchone()
        return Coin(row[0], row[1], row[2], bool(row[3])) if row else None

    def has_any_output(self, txid: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM utxo WHERE txid=? LIMIT 1", (txid,)).fetchone() is not None

    def add_coins(self, rows: list[tuple[bytes, int, int, bytes, int, int]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO utxo(txid, vout, value, spk, height, coinbase) "
                            "VALUES(?,?,?,?,?,?)", rows)

    def delete_coins(self, outpoints: list[tuple[bytes, int]]) -> None:
        self.db.executemany("DELETE FROM utxo WHERE txid=? AND vout=?", outpoints)

    def coins_by_spk(self, spks: list[bytes]) -> list[tuple[bytes, int, Coin]]:
        out = []
        for spk in spks:
            for txid, vout, value, s, height, cb in self.db.execute(
                    "SELECT txid, vout, value, spk, height, coinbase FROM utxo WHERE spk=?", (spk,)):
                out.append((txid, vout, Coin(value, s, height, bool(cb))))
        return out

    def utxo_stats(self) -> tuple[int, int]:
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(value), 0) FROM utxo").fetchone()
        return int(row[0]), int(row[1])

    # -- undo -----------------------------------------------------------------------
    def add_undo(self, block: bytes, rows: list[tuple[bytes, int, Coin]]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO undo(block, n, txid, vout, value, spk, height, coinbase) VALUES(?,?,?,?,?,?,?,?)",
            [(block, n, txid, vout, c.value, c.spk, c.height, int(c.coinbase))
             for n, (txid, vout, c) in enumerate(rows)])

    def get_undo(self, block: bytes) -> list[tuple[bytes, int, Coin]]:
        return [(r[0], r[1], Coin(r[2], r[3], r[4], bool(r[5]))) for r in self.db.execute(
            "SELECT txid, vout, value, spk, height, coinbase FROM undo WHERE block=? ORDER BY n", (block,))]

    def delete_undo(self, block: bytes) -> None:
        self.db.execute("DELETE FROM undo WHERE block=?", (block,))

    # -- transaction index ------------------------------------------------------------
    def add_txindex(self, rows: list[tuple[bytes, bytes, int]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO txindex(txid, block, pos) VALUES(?,?,?)", rows)

    def delete_txindex(self, txids: list[bytes]) -> None:
        self.db.executemany("DELETE FROM txindex WHERE txid=?", [(t,) for t in txids])

    def find_tx(self, txid: bytes) -> tuple[bytes, int] | None:
        row = self.db.execute("SELECT block, pos FROM txindex WHERE txid=?", (txid,)).fetchone()
        return (row[0], row[1]) if row else None

    # -- mempool persistence ------------------------------------------------------------
    def save_mempool(self, txs: list[tuple[bytes, int]]) -> None:
        self.begin()
        self.db.execute("DELETE FROM mempool")
        self.db.executemany("INSERT INTO mempool(raw, time) VALUES(?, ?)", txs)
        self.commit()

    def load_mempool(self) -> list[tuple[bytes, int]]:
        return [(r[0], r[1]) for r in self.db.execute("SELECT raw, time FROM mempool ORDER BY seq")]

    def clear_mempool(self) -> None:
        self.db.execute("DELETE FROM mempool")
