"""What happens to a transaction after the working database committed it.

With the plain SQLite engine nothing: its commit is the durable one.  With
a PostgreSQL server, or a `db_write` plugin, the master keeps working on a
local SQLite copy (reads and writes stay synchronous, on the event loop)
and every committed transaction becomes a `CommitRecord` that this
pipeline takes, in order, through the `db_write` hook and then to the
durable store (the server, or the SQLite file), on the master's one
database thread.  `DbGate` counts both: `committed` (working copy) and
`durable` (hook answered and store committed).  Everything the master
reveals waits for the gate: messages to subdaemons (`common/msgconn.py`),
RPC answers, broadcasts.  So a `revoke_and_ack` goes out only after the
transaction that stored the new commitment is committed on the server.

A store that cannot be reached (a PostgreSQL server restarting) is
retried every second, the gate held shut meanwhile; any other failure of
the store, or of the hook, is fatal: the node stops rather than diverge."""
from __future__ import annotations

import asyncio
import json
import math
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

Params = tuple | dict
Statement = tuple[str, Params]


class DbFatal(Exception):
    """The durable store or a db_write plugin failed: the node must stop."""


class StoreUnreachable(Exception):
    """The durable store cannot be reached now; the same batch is retried."""


@dataclass
class CommitRecord:
    seq: int                       # working-copy commit number (DbGate.committed)
    data_version: int              # Core Lightning's data_version after this transaction
    statements: list[Statement]    # as executed, with their parameters
    rows: Any = None               # row changes, for a PostgreSQL store (db_postgres.RowChanges)
    t_commit: float = 0.0          # perf_counter at the working copy's commit (NODE_DB_STATS)


class DurableStore(Protocol):
    def apply(self, records: list[CommitRecord]) -> None:
        """Commit these records as one transaction (worker thread); raise
        StoreUnreachable to be retried, anything else is fatal."""

    def close(self) -> None: ...


class DbGate:
    """Commit numbers: what the working copy committed, what is durable."""

    def __init__(self) -> None:
        self.committed = 0
        self.durable = 0
        self.failed: str | None = None
        self._waiters: list[tuple[int, Callable[[], None]]] = []
        self._futures: list[tuple[int, asyncio.Future]] = []
        self.held_ms: list[float] | None = None     # NODE_DB_STATS: how long held frames waited

    def call_when_durable(self, seq: int, cb: Callable[[], None]) -> None:
        """`cb()` once `seq` is durable (never, if the database failed)."""
        if seq <= self.durable:
            cb()
            return
        if self.held_ms is not None:
            t0, held, inner = time.perf_counter(), self.held_ms, cb

            def cb() -> None:
                held.append((time.perf_counter() - t0) * 1000)
                inner()
        self._waiters.append((seq, cb))

    async def wait(self, seq: int | None = None) -> None:
        """Until everything committed so far (or up to `seq`) is durable;
        raises DbFatal if it never will be."""
        target = self.committed if seq is None else seq
        if target <= self.durable:
            return
        if self.failed is not None:
            raise DbFatal(self.failed)
        fut = asyncio.get_running_loop().create_future()
        self._futures.append((target, fut))
        await fut

    def advance(self, seq: int) -> None:
        self.durable = max(self.durable, seq)
        ready = [cb for s, cb in self._waiters if s <= self.durable]
        self._waiters = [(s, cb) for s, cb in self._waiters if s > self.durable]
        for s, fut in self._futures:
            if s <= self.durable and not fut.done():
                fut.set_result(None)
        self._futures = [(s, f) for s, f in self._futures if s > self.durable]
        for cb in ready:
            cb()

    def fail(self, why: str) -> None:
        """Nothing committed after this is ever released: held messages stay
        held, `wait`ers get DbFatal."""
        self.failed = why
        for _s, fut in self._futures:
            if not fut.done():
                fut.set_exception(DbFatal(why))
        self._futures = []


DbWriteHook = Callable[[int, list[str]], Awaitable[None]]


class PipelineStats:
    """With NODE_DB_STATS=DIR (benchmarks): where a transaction's time
    between the working copy's commit and the gate opening goes, written to
    `DIR/db-<pid>.json` when the database closes."""

    KEYS = ("queued_ms", "handoff_in_ms", "apply_ms", "apply_cpu_ms", "handoff_out_ms", "commit_to_durable_ms")

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.samples: dict[str, list[float]] = {k: [] for k in self.KEYS}
        self.batch_records: list[int] = []
        self.batch_rows: list[int] = []

    def batch(self, batch: list[CommitRecord], t_start: float, t_thread: float, t_done: float,
              t_back: float) -> None:
        s = self.samples
        s["queued_ms"].extend((t_start - r.t_commit) * 1000 for r in batch)
        s["handoff_in_ms"].append((t_thread - t_start) * 1000)
        s["apply_ms"].append((t_done - t_thread) * 1000)
        s["handoff_out_ms"].append((t_back - t_done) * 1000)
        s["commit_to_durable_ms"].extend((t_back - r.t_commit) * 1000 for r in batch)
        self.batch_records.append(len(batch))
        self.batch_rows.append(sum(len(v) for r in batch for v in (r.rows or {}).values()))

    def write(self) -> None:
        def summary(xs: list[float]) -> dict:
            if not xs:
                return {}
            xs = sorted(xs)
            return {"n": len(xs), "mean": round(sum(xs) / len(xs), 3), "p50": round(xs[len(xs) // 2], 3),
                    "p95": round(xs[int(len(xs) * 0.95)], 3), "max": round(xs[-1], 3)}
        out = {k: summary(v) for k, v in self.samples.items()}
        out["batches"] = len(self.batch_records)
        out["records_per_batch"] = summary([float(x) for x in self.batch_records])
        out["rows_per_batch"] = summary([float(x) for x in self.batch_rows])
        with open(os.path.join(self.out_dir, f"db-{os.getpid()}.json"), "w") as f:
            json.dump(out, f, indent=1)


class Pipeline:
    """Takes committed records through the hook, then the store, in order.

    Without a hook the database thread runs the whole cycle itself: it
    blocks on an inbox the loop `push`es each record into, takes whatever
    piled up as one batch, commits it and tells the loop which commit is
    durable (`call_soon_threadsafe`), then takes the next batch at once.
    A record committed while a batch is on the server so waits only for
    that batch, not also for two hand-offs through the event loop (which,
    busy with a payment's other messages, answers late).  With a hook the
    event loop drives each record (the plugin is called from it), through
    `run_in_executor`."""

    def __init__(self, gate: DbGate, store: DurableStore | None, hook: DbWriteHook | None,
                 executor: ThreadPoolExecutor, log: Any, on_fatal: Callable[[str], None]) -> None:
        self.gate = gate
        self.store = store
        self.hook = hook
        self.executor = executor
        self.log = log
        self.on_fatal = on_fatal
        self._pending: deque[CommitRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.retry_delay = 1.0
        # the database thread's own cycle (no hook): records in, stop flag
        self._direct = hook is None and store is not None
        self._inbox: queue.SimpleQueue[CommitRecord | None] = queue.SimpleQueue()   # None: stop
        self._stop = threading.Event()
        self._worker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        out = os.environ.get("NODE_DB_STATS")
        self.stats = PipelineStats(out) if out else None
        if self.stats is not None:
            gate.held_ms = self.stats.samples["frame_held_ms"] = []

    def push(self, rec: CommitRecord) -> None:
        if self.stats is not None:
            rec.t_commit = time.perf_counter()
        if self._direct:
            if self._worker is None:
                self._loop = asyncio.get_running_loop()
                self._worker = self.executor.submit(self._thread_main)
            self._inbox.put(rec)
            return
        self._pending.append(rec)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending and self.gate.failed is None:
                    batch = list(self._pending)
                    if self.hook is not None:
                        # one record at a time: the plugin sees each
                        # transaction before the store commits it
                        batch = batch[:1]
                        await self.hook(batch[0].data_version, [expand_sql(s, p) for s, p in batch[0].statements])
                    if self.store is not None:
                        await self._apply(batch)
                    for _ in batch:
                        self._pending.popleft()
                    self.gate.advance(batch[-1].seq)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the node stops on anything
            why = f"{type(e).__name__}: {e}" if not isinstance(e, DbFatal) else str(e)
            self.gate.fail(why)
            self.on_fatal(why)

    async def _apply(self, batch: list[CommitRecord]) -> None:
        assert self.store is not None
        loop = asyncio.get_running_loop()
        waiting = False
        while True:
            try:
                if self.stats is not None:
                    await self._apply_timed(batch)
                else:
                    await loop.run_in_executor(self.executor, self.store.apply, batch)
                break
            except StoreUnreachable as e:
                if not waiting:
                    self.log.unusual(f"database unreachable ({e}): holding every reply that depends on "
                                     f"{len(self._pending)} uncommitted transaction(s), retrying every "
                                     f"{self.retry_delay:g}s")
                    waiting = True
                await asyncio.sleep(self.retry_delay)
        if waiting:
            self.log.info("database reachable again: committed, replies released")

    async def _apply_timed(self, batch: list[CommitRecord]) -> None:
        assert self.store is not None and self.stats is not None
        store = self.store
        marks: list[float] = []

        def timed() -> None:
            marks.append(time.perf_counter())
            store.apply(batch)
            marks.append(time.perf_counter())
        t_start = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self.executor, timed)
        self.stats.batch(batch, t_start, marks[0], marks[1], time.perf_counter())

    # -- the database thread's cycle (no hook) ------------------------------------------
    def _thread_main(self) -> None:
        """On the database thread, until cancel() or a fatal error."""
        loop = self._loop
        assert loop is not None and self.store is not None
        try:
            while True:
                first = self._inbox.get()       # wakes at the first push
                if first is None:
                    return                      # cancel()
                batch = [first]
                while True:           # what piled up meanwhile joins the batch
                    try:
                        rec = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    if rec is None:
                        return
                    batch.append(rec)
                t_start, cpu0 = time.perf_counter(), time.thread_time()
                if not self._apply_retrying(batch):
                    return            # stopped while the server was away
                if self.stats is not None:
                    self.stats.samples["apply_cpu_ms"].append((time.thread_time() - cpu0) * 1000)
                    loop.call_soon_threadsafe(self._durable_timed, batch, t_start, time.perf_counter())
                else:
                    loop.call_soon_threadsafe(self.gate.advance, batch[-1].seq)
        except Exception as e:  # noqa: BLE001 - the node stops on anything
            why = f"{type(e).__name__}: {e}" if not isinstance(e, DbFatal) else str(e)
            loop.call_soon_threadsafe(self._fatal, why)

    def _apply_retrying(self, batch: list[CommitRecord]) -> bool:
        """Commit `batch`, retrying while the server is unreachable; False
        if the pipeline was stopped meanwhile."""
        assert self.store is not None and self._loop is not None
        waiting = False
        while True:
            try:
                self.store.apply(batch)
                break
            except StoreUnreachable as e:
                if not waiting:
                    # the log belongs to the event loop
                    self._loop.call_soon_threadsafe(
                        self.log.unusual, f"database unreachable ({e}): holding every reply that depends on "
                        f"{len(batch) + self._inbox.qsize()} uncommitted transaction(s), retrying every "
                        f"{self.retry_delay:g}s")
                    waiting = True
                if self._stop.wait(self.retry_delay):
                    return False
        if waiting:
            self._loop.call_soon_threadsafe(self.log.info, "database reachable again: committed, replies released")
        return True

    def _durable_timed(self, batch: list[CommitRecord], t_start: float, t_done: float) -> None:
        assert self.stats is not None
        self.stats.batch(batch, t_start, t_start, t_done, time.perf_counter())
        self.gate.advance(batch[-1].seq)

    def _fatal(self, why: str) -> None:
        if self.gate.failed is None:
            self.gate.fail(why)
            self.on_fatal(why)

    async def drain(self, timeout: float) -> bool:
        """Until every committed record is durable (stop); False if not in time."""
        try:
            await asyncio.wait_for(self.gate.wait(), timeout)
            return True
        except (asyncio.TimeoutError, DbFatal):
            return False

    def cancel(self) -> None:
        """Stop taking records (the batch on the server finishes first)."""
        if self._task is not None:
            self._task.cancel()
        self._stop.set()
        self._inbox.put(None)

    def close_store(self) -> None:
        """On the database thread."""
        if self.stats is not None:
            self.stats.write()
        if self.store is not None:
            self.store.close()


class SqliteFileStore:
    """The SQLite file(s) as the durable store behind a working copy (when a
    db_write plugin must see each transaction before it is committed):
    the statements are replayed as executed, backup file first."""

    def __init__(self, paths: list[str]) -> None:
        self.conns: list[sqlite3.Connection] = []
        self.paths = paths

    def open(self) -> None:
        self.conns = [connect_file(p, check_same_thread=False) for p in self.paths]

    def apply(self, records: list[CommitRecord]) -> None:
        for conn in reversed(self.conns):     # the backup (last) first
            conn.execute("BEGIN IMMEDIATE")
            try:
                for r in records:
                    for sql, params in r.statements:
                        conn.execute(sql, params)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        for c in self.conns:
            c.close()


def connect_file(path: str, check_same_thread: bool = True) -> sqlite3.Connection:
    """A SQLite database file as the node uses it: WAL, fsync on commit."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


# -- statements as text, for the db_write hook ----------------------------------------

def sql_literal(v: Any) -> str:
    """A value as SQLite reads it back exactly."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isfinite(v) and v.is_integer() and abs(v) < 2 ** 53:
            return f"{int(v)}.0"
        if math.isfinite(v):
            # SQLite's text-to-double is not always correctly rounded: an
            # exact quotient of two exactly representable numbers is
            m, e = math.frexp(v)
            mant, exp = int(m * 2 ** 53), e - 53
            if -1000 < exp < 0:
                return f"({mant}.0/{2 ** -exp})" if -exp <= 62 else repr(v)
        return repr(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"X'{bytes(v).hex().upper()}'"
    return "'" + str(v).replace("'", "''") + "'"


def expand_sql(sql: str, params: Params) -> str:
    """`sql` with its `?` / `:name` parameters replaced by literals (outside
    quoted strings), as Core Lightning gives db_write its `writes`."""
    if not params:
        return sql
    out: list[str] = []
    i, n, pos = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = sql.index(c, i + 1)
            while j + 1 < n and sql[j + 1] == c:     # doubled quote inside
                j = sql.index(c, j + 2)
            out.append(sql[i:j + 1])
            i = j + 1
        elif c == "?":
            assert isinstance(params, (tuple, list))
            out.append(sql_literal(params[pos]))
            pos += 1
            i += 1
        elif c == ":" and isinstance(params, dict) and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(sql_literal(params[sql[i + 1:j]]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)
