"""A typed link between two of the node's processes: a `MsgConn` plus the
schema of the messages on it.

- `send(name, fields, fds)` encodes with the schema;
- `request(name, fields)` returns the reply (request number + 100) or raises
  `RequestFailed` with the failure message (request number + 200);
- every other incoming message goes to the handler registered for its name,
  one at a time in arrival order (a per-link queue, so a handler may itself
  await a request without blocking the reader); a message with no handler is
  a protocol error, never silently dropped."""
from __future__ import annotations

import asyncio
import inspect
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from wire import DecodeError, Message, MessageSchema
from wire.internal import FAIL_OFFSET, REPLY_OFFSET, is_status, status_schema

from .msgconn import ConnectionClosed, MsgConn


@dataclass
class Msg:
    name: str
    fields: dict[str, Any]
    fds: list[int] = field(default_factory=list)
    #: the decoded message (its payload and where each field is in it)
    message: Message | None = None

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def field_bytes(self, name: str) -> bytes:
        """Field `name` as it was encoded (a record to store as is)."""
        assert self.message is not None
        return self.message.field_bytes(name)


class RequestFailed(Exception):
    def __init__(self, msg: Msg) -> None:
        super().__init__(f"{msg.name}: {msg.fields}")
        self.msg = msg


class ProtocolError(Exception):
    """The other side sent something this side's schema or dispatch rejects."""


Handler = Callable[[Msg], Awaitable[None] | None]


class DaemonConn:
    def __init__(self, conn: MsgConn, schema: MessageSchema, handlers: dict[str, Handler] | None = None,
                 on_status: Callable[[Msg], None] | None = None,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self.conn = conn
        self.schema = schema
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.on_status = on_status
        self.on_error = on_error
        # request number -> waiting (reqid or None, future), oldest first
        self._pending: dict[int, deque[tuple[Any, asyncio.Future]]] = {}
        self._queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._worker: asyncio.Task | None = None
        self.closed = asyncio.Event()

    # -- sending -------------------------------------------------------------------
    def send(self, name: str, fields: dict[str, Any] | None = None, fds: list[int] | tuple[int, ...] = ()) -> None:
        self.conn.send(self.schema.encode(name, fields or {}), fds)

    async def request(self, name: str, fields: dict[str, Any] | None = None,
                      fds: list[int] | tuple[int, ...] = (), timeout: float | None = None) -> Msg:
        """Send `name` and wait for its reply.  Replies are matched by their
        `reqid` field when the message has one (requests that may complete
        out of order, e.g. pings to different peers), else in order."""
        num = self.schema.messages[name].number
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        entry = ((fields or {}).get("reqid"), fut)
        self._pending.setdefault(num, deque()).append(entry)
        try:
            self.send(name, fields, fds)
        except ConnectionClosed:
            self._pending[num].remove(entry)
            raise
        if timeout is None:
            return await fut
        return await asyncio.wait_for(fut, timeout)

    # -- receiving -----------------------------------------------------------------
    def start(self) -> None:
        self._reader = asyncio.ensure_future(self._read_loop())
        self._worker = asyncio.ensure_future(self._work_loop())

    async def wait_closed(self) -> None:
        await self.closed.wait()

    def close(self) -> None:
        self.conn.close()
        for t in (self._reader, self._worker):
            if t is not None and not t.done():
                t.cancel()
        self._fail_pending()
        self.closed.set()

    def _fail_pending(self) -> None:
        for futs in self._pending.values():
            while futs:
                _, f = futs.popleft()
                if not f.done():
                    f.set_exception(ConnectionClosed())

    def _match_reply(self, num: int, msg: Msg) -> bool:
        for offset, ok in ((REPLY_OFFSET, True), (FAIL_OFFSET, False)):
            futs = self._pending.get(num - offset)
            if futs:
                reqid = msg.fields.get("reqid")
                entry = next((e for e in futs if e[0] == reqid), None) if reqid is not None else futs[0]
                if entry is None:
                    return False
                futs.remove(entry)
                fut = entry[1]
                if not fut.done():
                    fut.set_result(msg) if ok else fut.set_exception(RequestFailed(msg))
                return True
        return False

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self.conn.recv()
                raw = frame.msg
                try:
                    if len(raw) >= 2 and is_status(int.from_bytes(raw[:2], "big")):
                        m = status_schema().decode(raw)
                        msg = Msg(m.name, m.fields, frame.fds)
                        if self.on_status is None:
                            raise ProtocolError(f"unexpected status message {m.name}")
                        self.on_status(msg)
                        continue
                    m = self.schema.decode(raw)
                    if not m.known:
                        raise ProtocolError(f"unknown message type {m.type}")
                except (DecodeError, ProtocolError) as e:
                    for fd in frame.fds:
                        _close_fd(fd)
                    self._error(ProtocolError(f"bad message: {e}"))
                    continue
                msg = Msg(m.name, m.fields, frame.fds, m)
                if self._match_reply(m.type, msg):
                    continue
                if m.name not in self.handlers:
                    self._error(ProtocolError(f"no handler for {m.name}"))
                    continue
                self._queue.put_nowait(msg)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            return
        self._fail_pending()
        self._queue.put_nowait(None)

    async def _work_loop(self) -> None:
        try:
            while True:
                msg = await self._queue.get()
                if msg is None:
                    break
                try:
                    r = self.handlers[msg.name](msg)
                    if inspect.isawaitable(r):
                        await r
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # a handler bug is reported, the link survives
                    self._error(e)
        except asyncio.CancelledError:
            return
        finally:
            self.closed.set()

    def _error(self, e: Exception) -> None:
        if self.on_error is not None:
            self.on_error(e)


def _close_fd(fd: int) -> None:
    import os
    try:
        os.close(fd)
    except OSError:
        pass
