"""PostgreSQL as the node's database (`--wallet=postgres://user:pass@host:port/db`).

The schema and the migrations are the SQLite ones (`lightningd/db.py`):
the master works on a local SQLite copy and the server holds the same
tables, column for column, each with the SQLite rowid as `_rowid`.  This
module is the one place that knows how SQLite's schema reads in
PostgreSQL (`pg_type`, `pg_table_ddl`) and how rows travel:

- `ChangeCapture`: temporary triggers on the working copy log the rowid of
  every row a transaction inserts, updates or deletes; at commit the rows
  are read back (and their types checked against the server's columns).
- `PgStore.apply`: one server transaction, in one round trip, per batch
  of committed transactions: row upserts by `_rowid` and deletes, after
  checking `vars.data_version` (Core Lightning's optimistic lock: another
  node writing the same database stops us).  Re-applying a batch whose
  commit answer was lost is detected by the same number.
- `PgStore.load` / `full_sync`: start-up reads every table into the
  working copy (the SQLite schema text is kept in `_sqlite_schema`); when
  migrations ran, the server's tables are rebuilt from the working copy in
  one transaction.

Declared PRIMARY KEY and UNIQUE constraints are kept on the server as
DEFERRABLE INITIALLY DEFERRED unique constraints (rows arrive in rowid
order, not statement order), other indexes as indexes.

psycopg 3 is blocking here: every method of PgStore runs on the master's
database thread, never on the event loop."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql as pgsql

from .db_pipeline import CommitRecord, DbFatal, StoreUnreachable

U32 = 0xFFFFFFFF


def pg_type(declared: str) -> str:
    """SQLite's type affinity rules, as PostgreSQL column types."""
    d = declared.upper()
    if "INT" in d:
        return "BIGINT"
    if "CHAR" in d or "CLOB" in d or "TEXT" in d:
        return "TEXT"
    if "BLOB" in d or not d:
        return "BYTEA"
    if "REAL" in d or "FLOA" in d or "DOUB" in d:
        return "DOUBLE PRECISION"
    return "NUMERIC"


# what a value read from the working copy must be, per server column type
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "BIGINT": (int,), "TEXT": (str,), "BYTEA": (bytes,), "DOUBLE PRECISION": (float, int), "NUMERIC": (int, float),
}


@dataclass
class Table:
    name: str
    cols: list[str]
    types: list[str]                      # server types
    notnull: list[bool]
    uniques: list[list[str]] = field(default_factory=list)
    indexes: list[tuple[str, list[str]]] = field(default_factory=list)


def read_schema(conn: sqlite3.Connection) -> dict[str, Table]:
    """The working copy's tables (not SQLite's own)."""
    out: dict[str, Table] = {}
    names = [r[0] for r in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    for name in names:
        info = conn.execute(f'PRAGMA main.table_info("{name}")').fetchall()
        t = Table(name, [r[1] for r in info], [pg_type(r[2]) for r in info], [bool(r[3]) for r in info])
        pk = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        if pk:
            t.uniques.append(pk)
        for _seq, iname, unique, origin, partial in conn.execute(f'PRAGMA main.index_list("{name}")').fetchall():
            cols = [r[2] for r in conn.execute(f'PRAGMA main.index_info("{iname}")').fetchall()]
            if partial or origin == "pk" or None in cols:
                continue
            if unique:
                if cols not in t.uniques:
                    t.uniques.append(cols)
            else:
                t.indexes.append((iname, cols))
        out[name] = t
    return out


def snapshot(conn: sqlite3.Connection) -> tuple[list[tuple[str, str, str]], dict[str, Table],
                                                 dict[str, list[tuple]], list[tuple]]:
    """Everything PgStore.full_sync needs of the working copy: its schema
    text, tables, rows (rowid first) and AUTOINCREMENT counters."""
    schema_sql = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                              "AND name NOT LIKE 'sqlite_%' ORDER BY rowid").fetchall()
    tables = read_schema(conn)
    rows = {name: conn.execute(f'SELECT rowid, {", ".join(f"{chr(34)}{c}{chr(34)}" for c in t.cols)} '
                               f'FROM "{name}" ORDER BY rowid').fetchall() for name, t in tables.items()}
    has_seq = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
    seq = conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall() if has_seq else []
    return schema_sql, tables, rows, seq


def pg_table_ddl(t: Table) -> list[pgsql.Composable]:
    cols = [pgsql.SQL("{} BIGINT PRIMARY KEY").format(pgsql.Identifier("_rowid"))]
    for c, typ, nn in zip(t.cols, t.types, t.notnull):
        cols.append(pgsql.SQL("{} " + typ + (" NOT NULL" if nn else "")).format(pgsql.Identifier(c)))
    for u in t.uniques:
        cols.append(pgsql.SQL("UNIQUE ({}) DEFERRABLE INITIALLY DEFERRED").format(
            pgsql.SQL(", ").join(map(pgsql.Identifier, u))))
    out: list[pgsql.Composable] = [pgsql.SQL("CREATE TABLE {} ({})").format(pgsql.Identifier(t.name),
                                                                             pgsql.SQL(", ").join(cols))]
    for iname, icols in t.indexes:
        out.append(pgsql.SQL("CREATE INDEX {} ON {} ({})").format(
            pgsql.Identifier(iname), pgsql.Identifier(t.name), pgsql.SQL(", ").join(map(pgsql.Identifier, icols))))
    return out


# table -> {rowid: row values, or None once deleted}; "sqlite_sequence" -> {name: seq}
RowChanges = dict[str, dict[Any, Any]]


class ChangeCapture:
    """Which rows each transaction of the working copy touched."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.schema: dict[str, Table] = {}
        self._seq: dict[str, int] = {}

    def install(self) -> None:
        """(Re)create the triggers for the current tables (after migrations)."""
        c = self.conn
        c.execute("PRAGMA recursive_triggers = ON")    # REPLACE's deletions fire delete triggers
        # no constraint: the conflict clause of the statement that fires a
        # trigger overrides the trigger's own (an OR IGNORE would not hold)
        c.execute("CREATE TEMP TABLE IF NOT EXISTS _changes (tbl TEXT NOT NULL, rid INTEGER NOT NULL)")
        for (name,) in c.execute("SELECT name FROM temp.sqlite_master WHERE type = 'trigger'").fetchall():
            c.execute(f'DROP TRIGGER temp."{name}"')
        self.schema = read_schema(c)
        for name in self.schema:
            log = f"INSERT INTO _changes VALUES ('{name}', %s.rowid);"
            c.execute(f'CREATE TEMP TRIGGER "_ins_{name}" AFTER INSERT ON "{name}" BEGIN {log % "new"} END')
            c.execute(f'CREATE TEMP TRIGGER "_upd_{name}" AFTER UPDATE ON "{name}" BEGIN '
                      f'{log % "old"} {log % "new"} END')
            c.execute(f'CREATE TEMP TRIGGER "_del_{name}" AFTER DELETE ON "{name}" BEGIN {log % "old"} END')
        c.execute("DELETE FROM temp._changes")
        self._seq = self._sequences()

    def _sequences(self) -> dict[str, int]:
        try:
            return dict(self.conn.execute("SELECT name, seq FROM main.sqlite_sequence").fetchall())
        except sqlite3.OperationalError:      # no AUTOINCREMENT table
            return {}

    def collect(self) -> RowChanges:
        """Inside the transaction, before it commits."""
        c = self.conn
        touched: dict[str, list[int]] = {}
        for tbl, rid in c.execute("SELECT DISTINCT tbl, rid FROM temp._changes").fetchall():
            touched.setdefault(tbl, []).append(rid)
        c.execute("DELETE FROM temp._changes")
        out: RowChanges = {}
        for tbl, rids in touched.items():
            t = self.schema[tbl]
            rows: dict[Any, Any] = dict.fromkeys(rids)
            cols = ", ".join(f'"{x}"' for x in t.cols)
            for i in range(0, len(rids), 500):
                part = rids[i:i + 500]
                for r in c.execute(f'SELECT rowid, {cols} FROM "{tbl}" WHERE rowid IN '
                                   f'({", ".join("?" * len(part))})', part):
                    _check_types(t, r)
                    rows[r[0]] = r
            out[tbl] = rows
        seq = self._sequences()
        if seq != self._seq:
            out["sqlite_sequence"] = {k: v for k, v in seq.items() if self._seq.get(k) != v}
            self._seq = seq
        return out


def _check_types(t: Table, row: tuple) -> None:
    for c, typ, v in zip(t.cols, t.types, row[1:]):
        if v is not None and not isinstance(v, _PY_TYPES[typ]):
            raise TypeError(f"{t.name}.{c} is {typ} on the server: {type(v).__name__} {v!r} does not fit")


class PgStore:
    """The server side; every method runs on the database thread."""

    def __init__(self, dsn: str, log: Any) -> None:
        self.dsn = dsn
        self.log = log
        self.conn: psycopg.Connection | None = None
        self.schema: dict[str, Table] = {}

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            try:
                # autocommit: apply() sends its own BEGIN and COMMIT inside
                # its pipeline (psycopg's would cost a Sync and a round trip);
                # every statement prepared on first use (a handful, reused)
                conn = psycopg.connect(self.dsn, connect_timeout=10, keepalives=1, keepalives_idle=10,
                                       keepalives_interval=5, keepalives_count=3, autocommit=True,
                                       prepare_threshold=0)
                conn.execute(_CHECK_VERSION)
                self.conn = conn
            except psycopg.OperationalError as e:
                raise StoreUnreachable(_short(e)) from None
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    # -- start-up ---------------------------------------------------------------------
    def load(self) -> tuple[list[tuple[str, str, str]], dict[str, tuple[list[str], list[tuple]]], list[tuple]]:
        """(schema statements, rows of every table, sqlite_sequence rows);
        nothing for a database this node never wrote."""
        conn = self._connection()
        with conn.transaction():
            cur = conn.execute("SELECT to_regclass('_sqlite_schema') IS NOT NULL")
            if not cur.fetchone()[0]:
                return [], {}, []
            schema = conn.execute("SELECT type, name, sql FROM _sqlite_schema ORDER BY ord").fetchall()
            rows: dict[str, tuple[list[str], list[tuple]]] = {}
            for typ, name, _sql in schema:
                if typ != "table":
                    continue
                cur = conn.execute(pgsql.SQL("SELECT * FROM {} ORDER BY _rowid").format(pgsql.Identifier(name)))
                cols = [d.name for d in (cur.description or [])]
                rows[name] = (cols, cur.fetchall())
            seq = conn.execute("SELECT name, seq FROM _sqlite_sequence").fetchall()
        return schema, rows, seq

    def full_sync(self, schema_sql: list[tuple[str, str, str]], schema: dict[str, Table],
                  rows: dict[str, list[tuple]], seq: list[tuple], data_version: int) -> None:
        """Replace the server's tables by the working copy's (after migrations)."""
        conn = self._connection()
        try:
            with conn.transaction():
                conn.execute("DROP TABLE IF EXISTS _sqlite_schema, _sqlite_sequence")
                old = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = "
                                                  "current_schema()").fetchall()]
                for name in set(old) & set(schema):
                    conn.execute(pgsql.SQL("DROP TABLE {} CASCADE").format(pgsql.Identifier(name)))
                conn.execute("CREATE TABLE _sqlite_schema (ord INTEGER PRIMARY KEY, type TEXT NOT NULL, "
                             "name TEXT NOT NULL, sql TEXT NOT NULL)")
                conn.execute("CREATE TABLE _sqlite_sequence (name TEXT PRIMARY KEY, seq BIGINT NOT NULL)")
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO _sqlite_schema VALUES (%s, %s, %s, %s)",
                                    [(i, *r) for i, r in enumerate(schema_sql)])
                    cur.executemany("INSERT INTO _sqlite_sequence VALUES (%s, %s)", seq)
                for t in schema.values():
                    for stmt in pg_table_ddl(t):
                        conn.execute(stmt)
                    with conn.cursor() as cur:
                        with cur.copy(pgsql.SQL("COPY {} ({}) FROM STDIN").format(
                                pgsql.Identifier(t.name),
                                pgsql.SQL(", ").join(map(pgsql.Identifier, ["_rowid"] + t.cols)))) as cp:
                            for r in rows[t.name]:
                                cp.write_row(r)
        except psycopg.OperationalError as e:
            conn.close()
            self.conn = None
            raise StoreUnreachable(_short(e)) from None
        self.schema = schema
        self.log.debug(f"database server: {len(schema)} tables written (data_version {data_version})")

    # -- each batch of transactions ----------------------------------------------------
    def apply(self, records: list[CommitRecord]) -> None:
        """One round trip: BEGIN, the data_version check, every upsert and
        delete, COMMIT, sent as one pipeline and answered at its Sync (the
        check raises on the server, so nothing after it waits for its
        answer).  Every round trip costs the database thread a wake-up
        and the GIL back from a busy event loop, on top of the server's
        work; there were four per batch (BEGIN, SELECT, the writes,
        COMMIT)."""
        conn = self._connection()
        first_prev = (records[0].data_version - 1) & U32
        last = records[-1].data_version
        try:
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    conn.execute("SELECT pg_temp.lightningd_check_version(%s)", (first_prev,))
                    self._write(conn, _merge(records))
                    conn.execute("COMMIT")
            except psycopg.errors.RaiseException:
                # the check failed: nothing of the batch was written
                conn.execute("ROLLBACK")
                row = conn.execute("SELECT val FROM vars WHERE name = 'data_version'").fetchone()
                have = int(row[0]) if row else 0
                if have == last:
                    return        # committed already: our connection died before its answer
                raise DbFatal(f"Optimistic lock on the database failed: data_version is {have} on the "
                              f"server, {first_prev} here.  There may be a concurrent access to the "
                              "database; aborting since concurrent access is unsafe.") from None
            except psycopg.Error:
                if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                raise
        except psycopg.OperationalError as e:
            conn.close()
            self.conn = None
            raise StoreUnreachable(_short(e)) from None

    def _write(self, conn: psycopg.Connection, changes: RowChanges) -> None:
        with conn.cursor() as cur:
            for tbl, rows in changes.items():
                if tbl == "sqlite_sequence":
                    cur.executemany("INSERT INTO _sqlite_sequence VALUES (%s, %s) ON CONFLICT (name) "
                                    "DO UPDATE SET seq = EXCLUDED.seq", list(rows.items()))
                    continue
                t = self.schema[tbl]
                gone = [rid for rid, r in rows.items() if r is None]
                if gone:
                    cur.execute(_delete_sql(t), (gone,))
                live = [r for r in rows.values() if r is not None]
                if live:
                    cur.executemany(_upsert_sql(t), live)


# Raises (so the rest of the pipeline is skipped, the transaction aborted)
# unless the server's data_version is the one before the batch; the row
# stays locked until the commit, so no other writer slips in between.
_CHECK_VERSION = """
CREATE OR REPLACE FUNCTION pg_temp.lightningd_check_version(want BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE have TEXT;
BEGIN
    SELECT val INTO have FROM vars WHERE name = 'data_version' FOR UPDATE;
    IF COALESCE(have, '0')::BIGINT <> want THEN
        RAISE EXCEPTION 'data_version is % on the server, % expected', COALESCE(have, '0'), want;
    END IF;
END $$"""


def _delete_sql(t: Table) -> bytes:
    key = ("delete", t.name)
    if key not in _SQL_CACHE:
        _SQL_CACHE[key] = pgsql.SQL("DELETE FROM {} WHERE _rowid = ANY(%s)").format(
            pgsql.Identifier(t.name)).as_bytes(None)
    return _SQL_CACHE[key]


# composed once per table (and its columns): a batch reuses the bytes, and
# psycopg's prepared statements are keyed by them
_SQL_CACHE: dict[tuple, bytes] = {}


def _upsert_sql(t: Table) -> bytes:
    key = ("upsert", t.name, tuple(t.cols))
    if key not in _SQL_CACHE:
        _SQL_CACHE[key] = _compose_upsert(t).as_bytes(None)
    return _SQL_CACHE[key]


def _compose_upsert(t: Table) -> pgsql.Composable:
    cols = ["_rowid"] + t.cols
    return pgsql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (_rowid) DO UPDATE SET {}").format(
        pgsql.Identifier(t.name), pgsql.SQL(", ").join(map(pgsql.Identifier, cols)),
        pgsql.SQL(", ").join(pgsql.Placeholder() * len(cols)),
        pgsql.SQL(", ").join(pgsql.SQL("{0} = EXCLUDED.{0}").format(pgsql.Identifier(c)) for c in t.cols))


def _merge(records: list[CommitRecord]) -> RowChanges:
    out: RowChanges = {}
    for r in records:
        for tbl, rows in (r.rows or {}).items():
            out.setdefault(tbl, {}).update(rows)
    return out


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
