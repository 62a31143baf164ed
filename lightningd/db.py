"""The master's database: the only writer, numbered migrations, one
transaction per subdaemon message; a reply that depends on it is sent only
after the commit (persist before you reveal).

`--wallet=DSN` chooses where it lives (Core Lightning's values):

- `sqlite3://PATH` (default `lightningd.sqlite3`): the SQLite file, WAL,
  fsync on commit; its commit is durable when `transaction()` returns.
- `sqlite3://PATH:BACKUP`: every transaction is replayed into the second
  file and committed there, synchronously, before the first commits.
- `postgres://user:pass@host:port/db`: the master works on an in-memory
  SQLite copy loaded from the server at start; each committed transaction
  is written to the server by the database thread (`db_postgres.py`,
  `db_pipeline.py`), and everything the master reveals waits for that
  commit (`Db.gate`).

With a `db_write` plugin the SQLite engine works the same way (in-memory
copy, the file written after the plugin answered), so the plugin sees every
transaction before it is committed on any engine.  One schema and one
migration list for all of them: SQLite's; the server's tables follow it."""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from wire.legacy_json import upgrade_channel_row, upgrade_onchaind_state

from .db_pipeline import (CommitRecord, DbGate, DbWriteHook, Pipeline, SqliteFileStore, Statement,
                          StoreUnreachable, connect_file, expand_sql)
from .db_postgres import ChangeCapture, PgStore, read_schema, snapshot

U32 = 0xFFFFFFFF


def _declared_contracts(db: "Db") -> None:
    """9: channels.summary, .core and .config and onchaind's saved state
    were JSON text; they are now the encodings of their declared subtypes
    (wire/csv/channeld.csv channel_summary, channeld_core, channeld_config;
    wire/csv/onchaind.csv onchaind_state), converted by wire/legacy_json.py,
    stored as hex in the same TEXT columns (on every engine: PostgreSQL's
    TEXT holds no bytes).  onchain_state.state_json is renamed state."""
    db.execute("ALTER TABLE onchain_state RENAME COLUMN state_json TO state")
    for dbid, summary, core, config in db.query("SELECT dbid, summary, core, config FROM channels"):
        db.execute("UPDATE channels SET summary = ?, core = ?, config = ? WHERE dbid = ?",
                   (*(b.hex() for b in upgrade_channel_row(summary, core, config)), dbid))
    for dbid, state in db.query("SELECT dbid, state FROM onchain_state"):
        db.execute("UPDATE onchain_state SET state = ? WHERE dbid = ?", (upgrade_onchaind_state(state).hex(), dbid))


# Each entry is one migration (SQL, or a function of the database for what
# SQL cannot do); never edit a shipped one, append a new one.
MIGRATIONS: list[str | Callable[["Db"], None]] = [
    # 1: key/value settings, recent block headers, wallet
    """
    CREATE TABLE vars (name TEXT PRIMARY KEY, val TEXT NOT NULL);
    CREATE TABLE blocks (
        height INTEGER PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        prev_hash BLOB NOT NULL
    );
    CREATE TABLE addresses (
        keyidx INTEGER PRIMARY KEY,
        addrtype TEXT NOT NULL,           -- 'bech32', 'p2tr' or 'all' as issued
        created_at INTEGER NOT NULL
    );
    CREATE TABLE scripts (
        script BLOB PRIMARY KEY,
        keyidx INTEGER NOT NULL,
        addrtype TEXT NOT NULL             -- 'p2wpkh' or 'p2tr'
    );
    CREATE TABLE outputs (
        txid BLOB NOT NULL,                -- internal byte order
        outnum INTEGER NOT NULL,
        value_sat INTEGER NOT NULL,
        script BLOB NOT NULL,
        keyidx INTEGER NOT NULL,
        addrtype TEXT NOT NULL,
        blockheight INTEGER,               -- NULL: not confirmed
        is_coinbase INTEGER NOT NULL DEFAULT 0,
        spend_txid BLOB,                   -- NULL: unspent
        spend_height INTEGER,              -- NULL: spend not confirmed
        reserved_til INTEGER,              -- block height a reservation lasts until
        PRIMARY KEY (txid, outnum)
    );
    CREATE TABLE transactions (
        txid BLOB PRIMARY KEY,
        raw BLOB NOT NULL,
        blockheight INTEGER,
        txindex INTEGER,
        ours INTEGER NOT NULL DEFAULT 0,   -- we built it (rebroadcast until confirmed)
        prepared INTEGER NOT NULL DEFAULT 0  -- txprepare'd, not sent yet
    );
    """,
    # 2: peers we have channels with, and channels
    """
    CREATE TABLE peers (
        node_id BLOB PRIMARY KEY,
        address TEXT                       -- where we last reached it (host:port), for reconnects
    );
    CREATE TABLE channels (
        dbid INTEGER PRIMARY KEY,
        peer_id BLOB NOT NULL,
        channel_id BLOB NOT NULL UNIQUE,
        state TEXT NOT NULL,               -- Core Lightning's state name
        opener TEXT NOT NULL,              -- 'local' | 'remote'
        funding_txid BLOB NOT NULL,        -- internal byte order
        funding_outnum INTEGER NOT NULL,
        funding_sat INTEGER NOT NULL,
        funding_height INTEGER,            -- block the funding tx is in (NULL: unconfirmed)
        funding_txindex INTEGER,
        minimum_depth INTEGER NOT NULL,
        announce INTEGER NOT NULL DEFAULT 1,
        summary TEXT NOT NULL,             -- channeld's summary (JSON)
        core TEXT NOT NULL,                -- channeld's full state (JSON, opaque here)
        config TEXT NOT NULL,              -- our policy given to channeld (JSON)
        fee_base_msat INTEGER NOT NULL,
        fee_ppm INTEGER NOT NULL,
        htlc_minimum_msat INTEGER NOT NULL,
        htlc_maximum_msat INTEGER NOT NULL,
        cltv_delta INTEGER NOT NULL,
        closer TEXT,
        close_cause TEXT,
        closing_tx BLOB,                   -- mutual close, once agreed
        last_tx BLOB,                      -- our latest signed commitment (to go on chain)
        spend_txid BLOB,                   -- what spent the funding output
        spend_height INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE channel_state_changes (
        dbid INTEGER NOT NULL,
        timestamp TEXT NOT NULL,
        old_state TEXT NOT NULL,
        new_state TEXT NOT NULL,
        cause TEXT NOT NULL,
        message TEXT NOT NULL
    );
    """,
    # HTLCs through our channels, our payments (sendpay) and forwards
    """
    CREATE TABLE htlcs (
        id INTEGER PRIMARY KEY,
        channel_dbid INTEGER NOT NULL,
        htlc_id INTEGER NOT NULL,
        direction TEXT NOT NULL,           -- 'in' | 'out'
        amount_msat INTEGER NOT NULL,
        payment_hash BLOB NOT NULL,
        cltv_expiry INTEGER NOT NULL,
        state TEXT NOT NULL,               -- in: locked, held, forwarded, fulfilling, failing, fulfilled, failed
                                           -- out: offered, fulfilled, failed
        onion BLOB,
        shared_secret BLOB,
        preimage BLOB,
        failure BLOB,                      -- in: what to fail it with, out: the error received
        failure_code INTEGER,
        sha256_of_onion BLOB,
        origin INTEGER,                    -- out: the incoming htlcs.id it forwards (NULL: our payment)
        payment_id INTEGER,                -- out: payments.id when it is our payment
        received_time REAL NOT NULL,
        resolved_time REAL,
        UNIQUE (channel_dbid, direction, htlc_id)
    );
    CREATE TABLE payments (
        id INTEGER PRIMARY KEY,
        payment_hash BLOB NOT NULL,
        partid INTEGER NOT NULL,
        groupid INTEGER NOT NULL,
        destination BLOB,
        amount_msat INTEGER NOT NULL,
        amount_sent_msat INTEGER NOT NULL,
        total_msat INTEGER NOT NULL,
        status TEXT NOT NULL,              -- pending | complete | failed
        created_at INTEGER NOT NULL,
        completed_at INTEGER,
        preimage BLOB,
        bolt11 TEXT,
        label TEXT,
        description TEXT,
        shared_secrets BLOB,               -- 32 bytes per hop, to decode errors
        route TEXT,                        -- JSON
        erroronion BLOB,
        failure TEXT,                      -- JSON of the decoded failure
        UNIQUE (payment_hash, partid, groupid)
    );
    CREATE TABLE forwards (
        in_htlc INTEGER PRIMARY KEY,
        out_htlc INTEGER,
        in_channel TEXT NOT NULL,
        out_channel TEXT,
        in_msat INTEGER NOT NULL,
        out_msat INTEGER,
        fee_msat INTEGER,
        status TEXT NOT NULL,              -- offered | settled | failed | local_failed
        failcode INTEGER,
        failreason TEXT,
        received_time REAL NOT NULL,
        resolved_time REAL
    );
    """,
    # invoices (lightningd/invoices.py); the counters next_pay_index and
    # invoices_updated_index live in vars
    """
    CREATE TABLE invoices (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- created_index (never reused)
        state INTEGER NOT NULL,            -- 0 unpaid, 1 paid, 2 expired (Core Lightning's values)
        label TEXT NOT NULL UNIQUE,
        payment_hash BLOB NOT NULL UNIQUE,
        preimage BLOB NOT NULL,
        payment_secret BLOB NOT NULL,
        amount_msat INTEGER,               -- NULL: any amount
        description TEXT,                  -- NULL once deleted (delinvoice desconly)
        bolt11 TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        min_final_cltv_expiry INTEGER NOT NULL,
        pay_index INTEGER UNIQUE,          -- set when paid: 1, 2, 3...
        amount_received_msat INTEGER,
        paid_at INTEGER,
        updated_index INTEGER UNIQUE       -- NULL: unchanged since creation
    );
    CREATE INDEX invoices_expiry ON invoices (state, expires_at);
    """,
    # onchaind (lightningd/onchain_control.py): its saved state per channel,
    # and the transactions of each channel's resolution (replayed to it)
    """
    CREATE TABLE onchain_state (
        dbid INTEGER PRIMARY KEY,          -- channels.dbid
        state_json TEXT NOT NULL,          -- onchaind's saved state (onchaind/onchaind.py)
        status_json TEXT NOT NULL          -- listpeerchannels status lines (JSON list of strings)
    );
    CREATE TABLE onchain_txs (
        dbid INTEGER NOT NULL,             -- channels.dbid
        txid BLOB NOT NULL,                -- internal byte order
        raw BLOB NOT NULL,
        height INTEGER NOT NULL,           -- block it is in (rows of blocks reorged out are deleted)
        level INTEGER NOT NULL,            -- 1: spends the funding output, 2: an output of a level-1 tx, 3...
        PRIMARY KEY (dbid, txid)
    );
    """,
    # 6: setchannel's ignorefeelimits (Core Lightning's channel->ignore_fee_limits)
    """
    ALTER TABLE channels ADD COLUMN ignore_fee_limits INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: BOLT 12 and route blinding.  htlcs: an incoming HTLC's path_key
    # (update_add_htlc's, we are inside a blinded path) and whether we were
    # the introduction point of one (every error is then
    # invalid_onion_blinding); outgoing: the path_key we gave the next node.
    # invoices: BOLT 12 invoices (payment_secret holds the path_id of the
    # invoice's paths).  offers / invoicerequests: ours (offers.py).
    """
    ALTER TABLE htlcs ADD COLUMN path_key BLOB;
    ALTER TABLE htlcs ADD COLUMN blinded_intro INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE invoices ADD COLUMN bolt12 TEXT;
    ALTER TABLE invoices ADD COLUMN local_offer_id BLOB;
    ALTER TABLE invoices ADD COLUMN invreq_payer_note TEXT;
    ALTER TABLE payments ADD COLUMN bolt12 TEXT;
    CREATE TABLE offers (
        offer_id BLOB PRIMARY KEY,
        bolt12 TEXT NOT NULL,
        label TEXT,
        single_use INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE invoicerequests (
        invreq_id BLOB PRIMARY KEY,
        bolt12 TEXT NOT NULL,
        label TEXT,
        single_use INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL
    );
    """,
    # 8: short channel id aliases (BOLT 2 channel_ready's alias): ours, that
    # we recognize for forwards into the channel; the peer's, for our route
    # hints; and the peer's policy for its direction of a channel that is
    # not announced (its channel_update sent to us only), as JSON
    """
    ALTER TABLE channels ADD COLUMN alias_local INTEGER;
    ALTER TABLE channels ADD COLUMN alias_remote INTEGER;
    ALTER TABLE channels ADD COLUMN remote_update TEXT;
    """,
    # 9: the JSON documents of channeld and onchaind become their declared encodings
    _declared_contracts,
    # 10: listhtlcs's updated_index (0: never changed since it was created)
    """
    ALTER TABLE htlcs ADD COLUMN updated_index INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX htlcs_updated_index ON htlcs (updated_index);
    """,
]


def to_sql_u64(v: int) -> int:
    """A u64 identifier (a payment's partid, groupid) as SQLite's signed
    64-bit integer: two's complement, as Core Lightning's db_bind_u64.  Only
    for values matched by equality, never ordered or compared in SQL."""
    return v - 2 ** 64 if v >= 2 ** 63 else v


def from_sql_u64(v: int) -> int:
    """The inverse of to_sql_u64."""
    return v + 2 ** 64 if v < 0 else v


class DbError(Exception):
    pass


@dataclass(frozen=True)
class WalletSpec:
    scheme: str                   # "sqlite3" | "postgres"
    path: str = ""
    backup: str | None = None
    dsn: str = ""


def parse_wallet(dsn: str | None, default_path: str) -> WalletSpec:
    """`--wallet` as Core Lightning reads it (relative paths: from the
    network directory, our working directory)."""
    if not dsn:
        return WalletSpec("sqlite3", default_path)
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        raise DbError(f'{dsn} doesn\'t look like a valid data-source name (missing "://" separator.')
    if scheme == "sqlite3":
        path, _, backup = rest.partition(":")
        if not path:
            raise DbError(f"{dsn}: no database file")
        return WalletSpec("sqlite3", path, backup or None)
    if scheme in ("postgres", "postgresql"):
        return WalletSpec("postgres", dsn=dsn)
    raise DbError(f"Unable to find DB driver for {dsn}")


def _is_read(sql: str) -> bool:
    return sql.lstrip()[:4].upper() in ("SELE", "WITH", "PRAG", "EXPL")


def _versions(conn: sqlite3.Connection) -> tuple[int, int]:
    """(data_version, schema version) of a database, 0 for what is missing."""
    out = []
    for q in ("SELECT val FROM vars WHERE name = 'data_version'", "SELECT version FROM db_version"):
        try:
            row = conn.execute(q).fetchone()
        except sqlite3.OperationalError:
            row = None
        out.append(int(row[0]) if row else 0)
    return out[0], out[1]


class Db:
    def __init__(self, path: str, backup: str | None = None) -> None:
        self._setup(connect_file(path), path)
        if backup is not None:
            self.backup = connect_file(backup)
            if _versions(self.backup) != _versions(self.conn):
                self.conn.backup(self.backup)   # Core Lightning: copy the main database over
        self.migrate()

    @classmethod
    def working_copy(cls, name: str) -> "Db":
        """An in-memory database in front of a durable store (open_wallet)."""
        db = cls.__new__(cls)
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA foreign_keys=ON")
        db._setup(conn, name)
        return db

    def _setup(self, conn: sqlite3.Connection, name: str) -> None:
        self.path = name
        self.conn = conn
        self.backup: sqlite3.Connection | None = None
        self.gate: DbGate | None = None          # set when a store commits after us
        self.pipeline: Pipeline | None = None
        self.capture: ChangeCapture | None = None
        self.record_statements = False
        self._held: list[CommitRecord] | None = None   # start-up records, before the pipeline runs
        self._depth = 0
        self._stmts: list[Statement] = []
        self._changes0 = 0
        self.data_version = _versions(conn)[0]

    def migrate(self) -> int:
        """Run what is missing of MIGRATIONS; how many ran."""
        with self.transaction():
            if self.one("SELECT 1 FROM sqlite_master WHERE name = 'db_version'") is None:
                self.execute("CREATE TABLE db_version (version INTEGER NOT NULL)")
            row = self.one("SELECT version FROM db_version")
            version = row[0] if row else 0
            if row is None:
                self.execute("INSERT INTO db_version VALUES (0)")
        if version > len(MIGRATIONS):
            raise RuntimeError(f"database {self.path} is version {version}, newer than this node "
                               f"({len(MIGRATIONS)}): refusing to downgrade")
        for i in range(version, len(MIGRATIONS)):
            with self.transaction():
                step = MIGRATIONS[i]
                if callable(step):
                    step(self)
                else:
                    for stmt in _split_sql(step):
                        self.execute(stmt)
                self.execute("UPDATE db_version SET version = ?", (i + 1,))
        return len(MIGRATIONS) - version

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Nested use joins the outer transaction; the outermost commits."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
            self._stmts = []
            self._changes0 = self.conn.total_changes
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
            raise
        else:
            if self._depth == 1:
                try:
                    self._commit()       # still at depth 1: its own statements join
                finally:
                    self._depth = 0
            else:
                self._depth -= 1

    def _commit(self) -> None:
        if self.conn.total_changes == self._changes0 and not self._stmts:
            self.conn.execute("COMMIT")
            return
        before = self.data_version
        try:
            self._bump_version()
            rec = None
            if self.gate is not None:
                rows = self.capture.collect() if self.capture is not None else None
                rec = CommitRecord(self.gate.committed + 1, self.data_version, self._stmts, rows)
            if self.backup is not None:
                self._replay(self.backup, self._stmts)
            self.conn.execute("COMMIT")
        except BaseException:
            self.data_version = before
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        finally:
            self._stmts = []
        if rec is not None:
            assert self.gate is not None
            self.gate.committed = rec.seq
            if self._held is not None:
                self._held.append(rec)
            else:
                assert self.pipeline is not None
                self.pipeline.push(rec)

    def _bump_version(self) -> None:
        """Core Lightning's data_version, +1 per write transaction, as an
        optimistic lock (nobody else wrote since we read it)."""
        nv = (self.data_version + 1) & U32
        try:
            cur = self.execute("UPDATE vars SET val = ? WHERE name = 'data_version' AND val = ?",
                               (str(nv), str(self.data_version)))
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return                  # before the first migration: no vars table yet
            raise
        if cur.rowcount != 1:
            if self.one("SELECT 1 FROM vars WHERE name = 'data_version'") is not None:
                raise DbError("Optimistic lock on the database failed. There may be a concurrent access "
                              "to the database. Aborting since concurrent access is unsafe.")
            self.execute("INSERT INTO vars(name, val) VALUES ('data_version', ?)", (str(nv),))
        self.data_version = nv

    @staticmethod
    def _replay(conn: sqlite3.Connection, stmts: list[Statement]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in stmts:
                conn.execute(sql, params)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        if self._depth == 0 and not _is_read(sql):
            with self.transaction():       # a write is always a (captured) transaction
                return self.execute(sql, params)
        cur = self.conn.execute(sql, params)
        if (self.record_statements or self.backup is not None) and not _is_read(sql):
            self._stmts.append((sql, params))
        return cur

    def query(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | dict = ()) -> tuple | None:
        return self.conn.execute(sql, params).fetchone()

    def get_var(self, name: str, default: Any = None) -> str | None:
        row = self.one("SELECT val FROM vars WHERE name = ?", (name,))
        return row[0] if row else default

    def set_var(self, name: str, val: Any) -> None:
        self.execute("INSERT INTO vars(name, val) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET val = excluded.val",
                     (name, str(val)))

    def restore(self, schema: list[tuple[str, str, str]], rows: dict[str, tuple[list[str], list[tuple]]],
                seq: list[tuple]) -> None:
        """Fill the (empty) working copy with what a store holds."""
        c = self.conn
        c.execute("PRAGMA foreign_keys=OFF")     # tables arrive in name order
        c.execute("BEGIN")
        for typ, _name, sql in schema:
            if typ == "table":
                c.execute(sql)
        for name, (cols, data) in rows.items():
            names = ", ".join(["rowid"] + [f'"{x}"' for x in cols[1:]])
            c.executemany(f'INSERT INTO "{name}" ({names}) VALUES ({", ".join("?" * len(cols))})', data)
        for typ, _name, sql in schema:
            if typ != "table":
                c.execute(sql)
        if seq:
            c.execute("DELETE FROM sqlite_sequence")
            c.executemany("INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)", seq)
        c.execute("COMMIT")
        c.execute("PRAGMA foreign_keys=ON")
        self.data_version = _versions(c)[0]

    def close(self) -> None:
        self.conn.close()
        if self.backup is not None:
            self.backup.close()

    async def aclose(self, timeout: float = 30.0) -> bool:
        """Close, after what was committed is durable (False: it was not in
        `timeout`; nothing that depends on it was revealed)."""
        done = True
        if self.pipeline is not None:
            done = await self.pipeline.drain(timeout)
            self.pipeline.cancel()
            if not done and self.gate is not None and self.gate.failed is None:
                self.gate.fail("closed before its last transactions were committed")   # waiters: no answer
            await asyncio.get_running_loop().run_in_executor(self.pipeline.executor, self.pipeline.close_store)
            self.pipeline.executor.shutdown(wait=False)
        self.close()
        return done


async def open_wallet(spec: WalletSpec, log: Any, hook: DbWriteHook | None,
                      on_fatal: Callable[[str], None]) -> Db:
    """The node's database as `--wallet` says; with a store behind a working
    copy, migrations are committed there (and shown to the hook) before this
    returns."""
    if spec.scheme == "sqlite3" and hook is None:
        return Db(spec.path, spec.backup)
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(1, thread_name_prefix="lightningd-db")
    db = Db.working_copy(spec.dsn or spec.path)
    store: SqliteFileStore | PgStore
    if spec.scheme == "sqlite3":
        fstore = SqliteFileStore([spec.path] + ([spec.backup] if spec.backup else []))
        src = connect_file(spec.path)
        try:
            if spec.backup is not None:
                with contextlib.closing(connect_file(spec.backup)) as b:
                    if _versions(b) != _versions(src):
                        src.backup(b)
            src.backup(db.conn)
        finally:
            src.close()
        db.data_version = _versions(db.conn)[0]
        await loop.run_in_executor(executor, fstore.open)
        store = fstore
    else:
        pstore = PgStore(spec.dsn, log)
        try:
            schema, rows, seq = await loop.run_in_executor(executor, pstore.load)
        except StoreUnreachable as e:
            executor.shutdown(wait=False)
            raise DbError(f"database server: {e}") from None
        db.restore(schema, rows, seq)
        store = pstore
    db.gate = DbGate()
    db.record_statements = hook is not None or spec.scheme == "sqlite3"
    db._held = []
    migrated = db.migrate()
    for rec in db._held:
        if hook is not None:
            await hook(rec.data_version, _expanded(rec))
    try:
        if isinstance(store, PgStore):
            if migrated:          # the server's tables rebuilt from the working copy
                await loop.run_in_executor(executor, store.full_sync, *snapshot(db.conn), db.data_version)
            store.schema = read_schema(db.conn)
            db.capture = ChangeCapture(db.conn)
            db.capture.install()
        elif db._held:
            await loop.run_in_executor(executor, store.apply, db._held)
    except StoreUnreachable as e:
        executor.shutdown(wait=False)
        raise DbError(f"database server: {e}") from None
    db.gate.advance(db.gate.committed)
    db._held = None
    db.pipeline = Pipeline(db.gate, store, hook, executor, log, on_fatal)
    return db


def _expanded(rec: CommitRecord) -> list[str]:
    return [expand_sql(s, p) for s, p in rec.statements]


def _split_sql(script: str) -> list[str]:
    """Statements of a migration (no semicolons inside our statements' strings)."""
    out = []
    for part in script.split(";"):
        lines = [ln for ln in part.splitlines() if ln.strip() and not ln.strip().startswith("--")]
        stmt = "\n".join(ln.split("--")[0] for ln in lines).strip()
        if stmt:
            out.append(stmt)
    return out
