"""The node's database beyond one file (issue 17): `--wallet=DSN` with
SQLite, SQLite plus a synchronous backup, and PostgreSQL; the `db_write`
hook; a PostgreSQL server that goes away in the middle of payments.

Every test looks at both peers' final state; the databases are compared
table by table, row by row (rowids included)."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pyln.client import RpcError

from contrib.postgres_testing import PostgresServer, pg_bindir
from lightningd.db import DbError, WalletSpec, open_wallet, parse_wallet
from common.msgconn import MsgConn
from lightningd.db_pipeline import CommitRecord, DbFatal, DbGate, expand_sql
from node_factory import wait_for
from test_channels import channel, fund, open_channel
from test_recovery import AMOUNT, CAPACITY, assert_settled, invoice, pay_all

DBLOG = str(Path(__file__).parent / "plugins" / "dblog.py")


# -- reading a node's database, whatever the engine ------------------------------------

def dump_sqlite(path: Path | str) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(str(path))
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name != 'sqlite_sequence' ORDER BY name")]
        out = {n: conn.execute(f'SELECT rowid, * FROM "{n}" ORDER BY rowid').fetchall() for n in names}
        try:
            out["sqlite_sequence"] = sorted(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        except sqlite3.OperationalError:
            out["sqlite_sequence"] = []
        return out
    finally:
        conn.close()


def dump_postgres(dsn: str) -> dict[str, list[tuple]]:
    with psycopg.connect(dsn) as conn:
        names = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                            "AND tablename NOT LIKE '\\_sqlite\\_%' ORDER BY tablename")]
        out = {n: [tuple(r) for r in conn.execute(f'SELECT * FROM "{n}" ORDER BY _rowid')] for n in names}
        out["sqlite_sequence"] = sorted(tuple(r) for r in conn.execute("SELECT name, seq FROM _sqlite_sequence"))
        return out


def node_db(node) -> dict[str, list[tuple]]:
    spec = parse_wallet(node.options.get("wallet"), str(node.lightning_dir / "lightningd.sqlite3"))
    return dump_postgres(spec.dsn) if spec.scheme == "postgres" else dump_sqlite(spec.path)


def pay_some(payer, payee, n: int, prefix: str) -> list[dict]:
    invs = [invoice(payee, f"{prefix}{i}") for i in range(n)]
    for inv in invs:
        assert payer.rpc.pay(inv["bolt11"])["status"] == "complete"
    return invs


# -- --wallet ---------------------------------------------------------------------------

def test_wallet_dsn_parsed_as_core_lightning():
    assert parse_wallet(None, "/d/lightningd.sqlite3").path == "/d/lightningd.sqlite3"
    s = parse_wallet("sqlite3:///a/main.sqlite3:/b/backup.sqlite3", "x")
    assert (s.scheme, s.path, s.backup) == ("sqlite3", "/a/main.sqlite3", "/b/backup.sqlite3")
    assert parse_wallet("sqlite3://rel.sqlite3", "x").backup is None
    s = parse_wallet("postgres://u:p@127.0.0.1:5432/db", "x")
    assert (s.scheme, s.dsn) == ("postgres", "postgres://u:p@127.0.0.1:5432/db")
    with pytest.raises(DbError, match="Unable to find DB driver"):
        parse_wallet("mysql://x", "x")
    with pytest.raises(DbError, match="missing"):
        parse_wallet("/just/a/path", "x")


def test_unknown_wallet_driver_refused_at_start(node_factory):
    # the refused start-up is logged as broken before the node exits
    l1 = node_factory.get_node({"wallet": "mysql://u@h/db"}, start=False, may_fail=True, allow_broken_log=True)
    with pytest.raises(RuntimeError, match="Unable to find DB driver for mysql://u@h/db"):
        l1.start()


def test_writes_expanded_exactly():
    """db_write's `writes` read back into SQLite as the same values (floats
    too: SQLite's own text-to-double is not always correctly rounded)."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b, c, d, e)")
    rows = [(1, 1712345678.1234567, "it's", b"\x00\xff", None), (-2 ** 63, 0.1, "?", b"", 2.5e-300),
            (2 ** 63 - 1, -3.0, ":x '?'", b"?", 1e300)]
    for r in rows:
        conn.execute(expand_sql("INSERT INTO t VALUES (?, ?, ?, ?, ?)", r))
    assert conn.execute("SELECT * FROM t").fetchall() == rows
    assert expand_sql("UPDATE t SET a = :v WHERE c = ':v'", {"v": 3}) == "UPDATE t SET a = 3 WHERE c = ':v'"


def test_sqlite_backup_is_kept_identical(node_factory):
    """sqlite3://PATH:BACKUP: every transaction goes to the backup too; a
    stale backup is replaced by a copy of the main file at start."""
    d = node_factory.directory
    main, backup = d / "main.sqlite3", d / "backup.sqlite3"
    l1 = node_factory.get_node({"wallet": f"sqlite3://{main}:{backup}"})
    l2 = node_factory.get_node()
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    shutil.copy(backup, d / "stale.sqlite3")
    pay_some(l1, l2, 3, "b")
    wait_for(lambda: channel(l2, l1)["to_us_msat"] == 3 * AMOUNT and not channel(l1, l2)["htlcs"])
    l1.stop()
    assert dump_sqlite(main) == dump_sqlite(backup)
    shutil.copy(d / "stale.sqlite3", backup)
    for suffix in ("-wal", "-shm"):
        (d / f"backup.sqlite3{suffix}").unlink(missing_ok=True)
    assert dump_sqlite(main) != dump_sqlite(backup)
    l1.start()
    wait_for(lambda: channel(l1, l2)["peer_connected"] and channel(l2, l1)["peer_connected"])
    pay_some(l1, l2, 1, "c")
    wait_for(lambda: channel(l1, l2)["state"] == channel(l2, l1)["state"] == "CHANNELD_NORMAL"
             and channel(l2, l1)["to_us_msat"] == 4 * AMOUNT and not channel(l1, l2)["htlcs"])
    assert channel(l1, l2)["to_us_msat"] == CAPACITY * 1000 - 4 * AMOUNT
    l1.stop()
    assert dump_sqlite(main) == dump_sqlite(backup)


# -- db_write ---------------------------------------------------------------------------

def test_db_write_replica_identical_after_open_payments_close(node_factory):
    """A plugin replaying `writes` into its own SQLite file ends with the
    node's database, row for row (on PostgreSQL too: the same rows)."""
    replica = node_factory.directory / "replica.sqlite3"
    l1 = node_factory.get_node({"plugin": DBLOG, "dblog-file": str(replica)})
    l2 = node_factory.get_node()
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    pay_some(l1, l2, 3, "to2-")
    wait_for(lambda: channel(l2, l1)["to_us_msat"] == 3 * AMOUNT and not channel(l1, l2)["htlcs"]
             and not channel(l2, l1)["htlcs"])
    l1.rpc.close(l2.node_id)
    wait_for(lambda: channel(l1, l2)["state"] == "CLOSINGD_COMPLETE" and channel(l2, l1)["state"]
             == "CLOSINGD_COMPLETE")
    l1.chain.mine(1)
    wait_for(lambda: channel(l1, l2)["state"] == "ONCHAIN" and channel(l2, l1)["state"] == "ONCHAIN")
    status = l1.rpc.call("dblog-status")
    a, b = channel(l1, l2), channel(l2, l1)
    assert a["to_us_msat"] + b["to_us_msat"] == CAPACITY * 1000
    assert b["to_us_msat"] == 3 * AMOUNT
    l1.stop()
    ours, theirs = node_db(l1), dump_sqlite(replica)
    assert ours.keys() == theirs.keys()
    for table in ours:
        assert ours[table] == theirs[table], table
    # (the plugin outlives the database at shutdown: it saw the last writes too)
    version = int(dict((r[1], r[2]) for r in ours["vars"])["data_version"])
    assert version >= status["data_version"] and version == int(dict((r[1], r[2]) for r in theirs["vars"])
                                                                  ["data_version"])


def test_db_write_refusal_stops_the_node_before_commit(node_factory):
    """A plugin that answers anything but `continue` stops the node; what it
    refused was never committed and never answered."""
    replica = node_factory.directory / "replica.sqlite3"
    # the plugin's refusal stops the node with a broken line, by design
    l1 = node_factory.get_node({"plugin": DBLOG, "dblog-file": str(replica)}, may_fail=True,
                               allow_broken_log=True)
    l1.rpc.call("dblog-refuse-next")
    with pytest.raises((RpcError, OSError, ValueError)):   # no answer: the connection closes
        l1.rpc.invoice(1000, "refused", "x")
    assert l1.proc.wait(30) == 1
    assert "database failed: db_write hook: plugin dblog.py answered" in l1.log_text()
    l1.start()
    assert l1.rpc.listinvoices()["invoices"] == []
    inv = l1.rpc.invoice(1000, "accepted", "x")
    assert [i["label"] for i in l1.rpc.listinvoices()["invoices"]] == ["accepted"]
    assert inv["payment_hash"]


def test_db_write_only_for_plugins_started_with_the_node(node_factory):
    l1 = node_factory.get_node()
    with pytest.raises(RpcError, match="db_write hook is only for plugins started with lightningd"):
        l1.rpc.plugin_start(DBLOG)
    assert all("dblog" not in p["name"] for p in l1.rpc.plugin_list()["plugins"])


# -- PostgreSQL ------------------------------------------------------------------------

@pytest.fixture
def own_server() -> Any:
    """A PostgreSQL server of this test alone (it is stopped and started)."""
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed")
    s = PostgresServer()
    s.start()
    yield s
    s.cleanup()


def test_postgres_holds_the_same_rows_as_the_working_copy(node_factory, postgres):
    """Start, restart: the server's tables are the node's (SQLite schema,
    one migration list); nothing is lost over a restart."""
    dsn = postgres.create_db("same")
    l1 = node_factory.get_node({"wallet": dsn})
    l2 = node_factory.get_node()
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    pay_some(l1, l2, 2, "pg")
    wait_for(lambda: channel(l2, l1)["to_us_msat"] == 2 * AMOUNT and not channel(l1, l2)["htlcs"])
    before = dump_postgres(dsn)
    assert before["channels"] and len(before["invoices"]) == 0 and len(before["payments"]) == 2
    cols = {r[0] for r in psycopg.connect(dsn).execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'channels'")}
    assert {"_rowid", "dbid", "state", "funding_txid", "ignore_fee_limits"} <= cols
    l1.restart()
    wait_for(lambda: channel(l1, l2)["state"] == channel(l2, l1)["state"] == "CHANNELD_NORMAL"
             and channel(l1, l2)["peer_connected"])
    assert channel(l1, l2)["to_us_msat"] == CAPACITY * 1000 - 2 * AMOUNT
    assert channel(l2, l1)["to_us_msat"] == 2 * AMOUNT
    assert len(l1.rpc.listsendpays()["payments"]) == 2
    pay_some(l1, l2, 1, "after")
    wait_for(lambda: channel(l2, l1)["to_us_msat"] == 3 * AMOUNT)


def _in_flight(l1, l2) -> bool:
    return bool(channel(l1, l2)["htlcs"]) or bool(channel(l2, l1)["htlcs"])


@pytest.mark.parametrize("then", ["server-returns", "node-killed-while-down", "node-killed-server-up"])
def test_postgres_server_lost_mid_payment(node_factory, own_server, then):
    """The server stops (or the node is killed -9) while payments are in
    flight: the node never acknowledges a state it did not commit; after
    the server is back and the node restarts, both peers are in
    CHANNELD_NORMAL with nothing lost."""
    l1 = node_factory.get_node({"wallet": own_server.create_db("lost")}, may_fail=True)
    l2 = node_factory.get_node()
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    invoices = [invoice(l2, f"inv{i}") for i in range(12)]
    results: dict[str, Any] = {}
    threads = pay_all(l1, invoices, results)
    wait_for(lambda: _in_flight(l1, l2) or results, timeout=60, interval=0.01)
    if then == "node-killed-server-up":
        l1.proc.kill()
        l1.proc.wait()
    else:
        own_server.stop("immediate")
        time.sleep(3)                      # the node holds everything meanwhile
        assert l1.proc.poll() is None      # waiting, not dead
        if then == "node-killed-while-down":
            l1.proc.kill()
            l1.proc.wait()
        own_server.start()
    for t in threads:
        t.join(120)
    if then == "server-returns":
        assert all(r == "complete" for r in results.values()), results
        l1.restart()
    else:
        l1.start()
    assert_settled(l1, l2, invoices, results)
    if then == "server-returns":
        assert sum(i["status"] == "paid" for i in l2.rpc.listinvoices()["invoices"]) == len(invoices)


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, level: str) -> Any:
        return lambda msg: self.lines.append(f"{level}: {msg}")


def test_postgres_batches_check_data_version(postgres):
    """Each batch is one server round trip whose first statement checks
    data_version: a batch already committed (its answer lost) is skipped,
    a server another writer moved on stops the node before anything
    depends on the batch; nothing of a refused batch is written."""
    dsn = postgres.create_db("dv")

    async def main() -> None:
        fatal: list[str] = []
        db = await open_wallet(WalletSpec("postgres", dsn=dsn), _Log(), None, fatal.append)
        assert db.pipeline is not None and db.gate is not None
        records: list[CommitRecord] = []
        push = db.pipeline.push
        db.pipeline.push = lambda rec: (records.append(rec), push(rec))[1]     # type: ignore[method-assign]
        for i in range(5):
            db.set_var(f"k{i}", i)
        await asyncio.wait_for(db.gate.wait(), 30)
        server = psycopg.connect(dsn, autocommit=True)

        def server_var(name: str) -> str | None:
            row = server.execute("SELECT val FROM vars WHERE name = %s", (name,)).fetchone()
            return row[0] if row else None
        assert [server_var(f"k{i}") for i in range(5)] == ["0", "1", "2", "3", "4"]
        assert server_var("data_version") == str(db.data_version)
        # the last two again, as after a connection lost before COMMIT's answer
        db.pipeline.store.apply(records[-2:])            # type: ignore[union-attr]
        assert server_var("data_version") == str(db.data_version) and not fatal
        # another writer
        server.execute("UPDATE vars SET val = (val::BIGINT + 7)::TEXT WHERE name = 'data_version'")
        db.set_var("after", 1)
        with pytest.raises(DbFatal, match="Optimistic lock"):
            await asyncio.wait_for(db.gate.wait(), 30)
        assert fatal and "Optimistic lock" in fatal[0]
        assert server_var("after") is None
        assert int(server_var("data_version") or 0) == db.data_version - 1 + 7
        server.close()
        await db.aclose(5)
    asyncio.run(main())


def test_frames_wait_for_the_database_gate():
    """A frame queued after commit n leaves only once n is durable; frames
    keep their order, fds included (common/msgconn.py with DbGate)."""
    async def main() -> None:
        a, b = socket.socketpair()
        gate = DbGate()
        out, inp = MsgConn(a, gate=gate), MsgConn(b)
        out.send(b"before")                  # nothing pending: goes at once
        assert (await asyncio.wait_for(inp.recv(), 5)).msg == b"before"
        gate.committed = 1
        r, w = os.pipe()
        out.send(b"after-1", [r])
        os.close(r)
        gate.committed = 2
        out.send(b"after-2")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(inp.recv(), 0.3)
        gate.advance(1)
        f = await asyncio.wait_for(inp.recv(), 5)
        assert f.msg == b"after-1" and len(f.fds) == 1
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(inp.recv(), 0.3)
        gate.advance(2)
        assert (await asyncio.wait_for(inp.recv(), 5)).msg == b"after-2"
        os.close(f.fds[0])
        os.close(w)
        out.close()
        inp.close()
    asyncio.run(main())
