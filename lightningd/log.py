"""The master's log: every daemon's lines end up here (subdaemons send theirs
as status messages).  Level filters per subsystem and per file, several
outputs, a ring buffer for `getlog`, SIGHUP reopening, and a hook for the
`log` notification to plugins."""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, TextIO

from common.logtext import printable

# Ordered as Core Lightning: lower is more verbose.
LEVELS = ["io", "trace", "debug", "info", "unusual", "broken"]
LEVEL_NUM = {name: i for i, name in enumerate(LEVELS)}
IO = LEVEL_NUM["io"]
TRACE = LEVEL_NUM["trace"]
DEBUG = LEVEL_NUM["debug"]
INFO = LEVEL_NUM["info"]
UNUSUAL = LEVEL_NUM["unusual"]
BROKEN = LEVEL_NUM["broken"]
TYPE_NAME = {IO: "IO_IN", TRACE: "TRACE", DEBUG: "DEBUG", INFO: "INFO", UNUSUAL: "UNUSUAL", BROKEN: "BROKEN"}


def level_from_name(name: str) -> int:
    try:
        return LEVEL_NUM[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level '{name}' (io, trace, debug, info, unusual, broken)") from None


@dataclass(frozen=True)
class LevelFilter:
    level: int
    subsystem: str | None = None   # substring of the entry's source or node id
    path: str | None = None        # applies to that log file only

    @classmethod
    def parse(cls, text: str) -> "LevelFilter":
        """`LEVEL`, `LEVEL:SUBSYSTEM` or `LEVEL:SUBSYSTEM:PATH`."""
        parts = text.split(":", 2)
        level = level_from_name(parts[0])
        sub = parts[1] if len(parts) > 1 and parts[1] else None
        path = parts[2] if len(parts) > 2 and parts[2] else None
        return cls(level, sub, path)


@dataclass
class LogEntry:
    time: float
    level: int
    source: str
    message: str
    node_id: str | None = None
    io_out: bool | None = None   # for io entries: direction
    data: bytes | None = None

    def size(self) -> int:
        return len(self.message) + len(self.source) + 48 + (len(self.data) if self.data else 0)


class _Output:
    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: TextIO = sys.stdout if path == "-" else self._open()

    def _open(self) -> TextIO:
        # a line quoting client input may hold a lone surrogate: escape it, never drop the line
        return open(self.path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)

    def reopen(self) -> None:
        if self.path != "-":
            self.stream.close()
            self.stream = self._open()

    def write(self, line: str) -> None:
        try:
            self.stream.write(line)
            if self.path == "-":
                self.stream.flush()
        except (OSError, ValueError):
            pass  # a full disk or closed stdout must not take the node down

    def close(self) -> None:
        if self.path != "-":
            self.stream.close()


class LogBook:
    """Owns outputs, filters and the ring buffer; `Logger`s write into it."""

    def __init__(self, default_level: int = INFO, prefix: str = "", timestamps: bool = True,
                 max_bytes: int = 10 * 1024 * 1024) -> None:
        self.created_at = time.time()
        self.default_level = default_level
        self.filters: list[LevelFilter] = []
        self.prefix = prefix
        self.timestamps = timestamps
        self.outputs: list[_Output] = []
        self.ring: deque[LogEntry] = deque()
        self.ring_bytes = 0
        self.max_bytes = max_bytes
        self.num_skipped = 0
        self.listeners: list[Callable[[LogEntry], None]] = []

    # -- configuration -----------------------------------------------------------
    def configure(self, levels: list[str], files: list[str], prefix: str, timestamps: bool) -> None:
        self.prefix = prefix
        self.timestamps = timestamps
        for text in levels:
            f = LevelFilter.parse(text)
            if f.subsystem is None and f.path is None:
                self.default_level = f.level
            else:
                self.filters.append(f)
        for path in files or ["-"]:
            self.outputs.append(_Output(path))

    def reopen(self) -> None:
        """SIGHUP: logrotate moved our files away."""
        for o in self.outputs:
            o.reopen()

    def close(self) -> None:
        for o in self.outputs:
            o.close()
        self.outputs = []

    # -- filtering ---------------------------------------------------------------
    def level_for(self, source: str, node_id: str | None, path: str | None = None) -> int:
        level = self.default_level
        for f in self.filters:
            if f.path is not None and f.path != path:
                continue
            if f.subsystem is None or f.subsystem in source or (node_id and f.subsystem in node_id):
                level = f.level
        return level

    def min_level(self) -> int:
        """Most verbose level anything wants (subdaemons skip lines below it)."""
        return min([self.default_level] + [f.level for f in self.filters])

    # -- writing -----------------------------------------------------------------
    def format(self, e: LogEntry) -> str:
        ts = ""
        if self.timestamps:
            t = time.gmtime(e.time)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int((e.time % 1) * 1000):03d}Z "
        name = TYPE_NAME[e.level] if e.level != IO else ("IO_OUT" if e.io_out else "IO_IN")
        who = f"{e.node_id}-{e.source}" if e.node_id else e.source
        msg = e.message
        if e.data is not None:
            msg = f"{msg}{e.data.hex()}"
        return f"{self.prefix}{ts}{name:<7} {who}: {msg}\n"

    def add(self, e: LogEntry) -> None:
        # The ring keeps debug and up even when printing less (getlog debug
        # after the fact is what an operator wants); io only when asked for.
        if e.level < min(DEBUG, self.min_level()):
            return
        # Every line is printable ASCII, whoever wrote it (Core Lightning's
        # logv): a peer's text can neither break a line nor fake one.
        e.message = printable(e.message)
        self.ring.append(e)
        self.ring_bytes += e.size()
        while self.ring_bytes > self.max_bytes and self.ring:
            old = self.ring.popleft()
            self.ring_bytes -= old.size()
            self.num_skipped += 1
        line = None
        for o in self.outputs:
            if e.level >= self.level_for(e.source, e.node_id, o.path):
                line = line or self.format(e)
                o.write(line)
        if e.level >= INFO or e.level >= self.default_level:
            for cb in list(self.listeners):
                try:
                    cb(e)
                except Exception:  # a broken listener must not break logging
                    pass

    def logger(self, source: str, node_id: str | None = None) -> "Logger":
        return Logger(self, source, node_id)

    # -- getlog ------------------------------------------------------------------
    def getlog(self, min_level: int) -> dict:
        entries: list[dict] = []
        skipped = self.num_skipped
        for e in self.ring:
            if e.level < min_level:
                skipped += 1
                continue
            if skipped:
                entries.append({"type": "SKIPPED", "num_skipped": skipped})
                skipped = 0
            d: dict = {"type": TYPE_NAME[e.level] if e.level != IO else ("IO_OUT" if e.io_out else "IO_IN"),
                       "time": f"{e.time - self.created_at:.9f}", "source": e.source, "log": e.message}
            if e.node_id:
                d["node_id"] = e.node_id
            if e.data is not None:
                d["data"] = e.data.hex()
            entries.append(d)
        if skipped:
            entries.append({"type": "SKIPPED", "num_skipped": skipped})
        return {"created_at": f"{self.created_at:.9f}", "bytes_used": self.ring_bytes,
                "bytes_max": self.max_bytes, "log": entries}


class Logger:
    """A source-bound handle: `log.info("...")`."""

    def __init__(self, book: LogBook, source: str, node_id: str | None = None) -> None:
        self.book = book
        self.source = source
        self.node_id = node_id

    def log(self, level: int, msg: str, node_id: str | None = None) -> None:
        self.book.add(LogEntry(time.time(), level, self.source, msg, node_id or self.node_id))

    def io(self, msg: str, data: bytes, out: bool, node_id: str | None = None) -> None:
        self.book.add(LogEntry(time.time(), IO, self.source, msg, node_id or self.node_id, out, data))

    def trace(self, msg: str) -> None:
        self.log(TRACE, msg)

    def debug(self, msg: str) -> None:
        self.log(DEBUG, msg)

    def info(self, msg: str) -> None:
        self.log(INFO, msg)

    def unusual(self, msg: str) -> None:
        self.log(UNUSUAL, msg)

    def broken(self, msg: str) -> None:
        self.log(BROKEN, msg)

    def child(self, source: str, node_id: str | None = None) -> "Logger":
        return Logger(self.book, source, node_id or self.node_id)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
