"""The master's SQLite database: the only writer, WAL journal, fsync on
commit, numbered migrations.  Every subdaemon message that changes state is
handled inside one `db.transaction()`; a reply that depends on it is sent
only after the commit (persist before you reveal)."""
from __future__ import annotations

import contextlib
import sqlite3
from typing import Any, Callable, Iterator

from wire.legacy_json import upgrade_channel_row, upgrade_onchaind_state


def _declared_contracts(conn: sqlite3.Connection) -> None:
    """9: channels.summary, .core and .config and onchaind's saved state
    were JSON text; they are now the encodings of their declared subtypes
    (wire/csv/channeld.csv channel_summary, channeld_core, channeld_config;
    wire/csv/onchaind.csv onchaind_state), converted by wire/legacy_json.py.
    onchain_state.state_json is renamed state."""
    conn.execute("ALTER TABLE onchain_state RENAME COLUMN state_json TO state")
    for dbid, summary, core, config in conn.execute("SELECT dbid, summary, core, config FROM channels").fetchall():
        conn.execute("UPDATE channels SET summary = ?, core = ?, config = ? WHERE dbid = ?",
                     (*upgrade_channel_row(summary, core, config), dbid))
    for dbid, state in conn.execute("SELECT dbid, state FROM onchain_state").fetchall():
        conn.execute("UPDATE onchain_state SET state = ? WHERE dbid = ?", (upgrade_onchaind_state(state), dbid))


# Each entry is one migration (SQL, or a function of the connection for what
# SQL cannot do); never edit a shipped one, append a new one.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
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
]


def to_sql_u64(v: int) -> int:
    """A u64 identifier (a payment's partid, groupid) as SQLite's signed
    64-bit integer: two's complement, as Core Lightning's db_bind_u64.  Only
    for values matched by equality, never ordered or compared in SQL."""
    return v - 2 ** 64 if v >= 2 ** 63 else v


def from_sql_u64(v: int) -> int:
    """The inverse of to_sql_u64."""
    return v + 2 ** 64 if v < 0 else v


class Db:
    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._depth = 0
        self.migrate()

    def migrate(self) -> None:
        self.conn.execute("CREATE TABLE IF NOT EXISTS db_version (version INTEGER NOT NULL)")
        row = self.conn.execute("SELECT version FROM db_version").fetchone()
        version = row[0] if row else 0
        if row is None:
            self.conn.execute("INSERT INTO db_version VALUES (0)")
        if version > len(MIGRATIONS):
            raise RuntimeError(f"database {self.path} is version {version}, newer than this node "
                               f"({len(MIGRATIONS)}): refusing to downgrade")
        for i in range(version, len(MIGRATIONS)):
            with self.transaction():
                step = MIGRATIONS[i]
                if callable(step):
                    step(self.conn)
                else:
                    for stmt in _split_sql(step):
                        self.conn.execute(stmt)
                self.conn.execute("UPDATE db_version SET version = ?", (i + 1,))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Nested use joins the outer transaction; the outermost commits."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

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

    def close(self) -> None:
        self.conn.close()


def _split_sql(script: str) -> list[str]:
    """Statements of a migration (no semicolons inside our statements' strings)."""
    out = []
    for part in script.split(";"):
        lines = [ln for ln in part.splitlines() if ln.strip() and not ln.strip().startswith("--")]
        stmt = "\n".join(ln.split("--")[0] for ln in lines).strip()
        if stmt:
            out.append(stmt)
    return out
