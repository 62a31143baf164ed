"""The JSON-RPC 2.0 server on the `lightning-rpc` Unix socket.

Requests are read as a JSON *stream* (pyln-client sends no newline), many may
be in flight on one connection, and every response ends with a blank line
(`\\n\\n`) as Core Lightning's clients expect.  Commands register themselves
in a `CommandRegistry` with their parameter declaration."""
from __future__ import annotations

import asyncio
import json
import math
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from common.ownfile import identity, unlink_if_ours

from .jsonrpc_errors import (
    INVALID_REQUEST,
    LIGHTNINGD,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
)
from .log import Logger
from .params import Param, reject_lone_surrogates, resolve_params

MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Deeper requests are refused (-32600) without being decoded: Python's JSON
# decoder recurses once per level, and no command takes anything this deep.
MAX_JSON_DEPTH = 100
# Commands one connection may have running before we stop reading from it.
MAX_INFLIGHT = 256
READ_CHUNK = 65536
# asyncio's StreamReader stops reading the socket once it buffers twice
# this: small, since we consume it in READ_CHUNKs (a large request only
# needs our splitter's buffer, bounded by MAX_REQUEST_BYTES).
READER_LIMIT = 4 * READ_CHUNK

Handler = Callable[..., Awaitable[Any]]


@dataclass
class Command:
    name: str
    handler: Handler
    params: list[Param]
    category: str = "utility"
    description: str = ""
    dev_only: bool = False
    deprecated: bool = False
    plugin: Any = None                 # the Plugin object for passthrough methods
    usage: str | None = None
    raw_params: bool = False           # handler(ctx, params) binds its own parameters

    def usage_text(self) -> str:
        if self.usage is not None:
            return self.usage
        return " ".join(p.name if p.required else f"[{p.name}]" for p in self.params)


@dataclass
class RequestContext:
    """What a handler knows about the call it serves."""

    id: Any
    method: str
    conn: "RpcConnection | None"
    raw_params: Any = None
    extra: dict = field(default_factory=dict)

    async def notify(self, method: str, params: dict) -> None:
        """Send a notification on this connection if the client enabled them."""
        if self.conn is not None and self.conn.notifications:
            await self.conn.send({"jsonrpc": "2.0", "method": method, "params": params})


class CommandRegistry:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    def add(self, cmd: Command) -> None:
        if cmd.name in self.commands:
            raise ValueError(f"command {cmd.name} already registered")
        self.commands[cmd.name] = cmd

    def remove(self, name: str) -> None:
        self.commands.pop(name, None)

    def command(self, name: str, params: list[Param] | None = None, category: str = "utility",
                description: str = "", dev_only: bool = False, raw_params: bool = False,
                usage: str | None = None, deprecated: bool = False) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.command("getinfo", [...])`."""
        def deco(fn: Handler) -> Handler:
            self.add(Command(name, fn, params or [], category, description or (fn.__doc__ or "").strip(), dev_only,
                             deprecated=deprecated, usage=usage, raw_params=raw_params))
            return fn
        return deco


class _TooDeep:
    """What the splitter returns for a value nested deeper than it accepts."""


TOO_DEEP = _TooDeep()


class _JsonStreamSplitter:
    """Finds where each top-level JSON value ends in a byte stream, so a
    request needs no delimiter and a partial one waits for more bytes.  Scan
    state persists across reads: a large request is scanned once.

    A value nested deeper than `max_depth` is consumed whole and returned as
    TOO_DEEP: Python's decoder recurses once per level, so such a value must
    never reach it, and consuming it keeps the connection usable."""

    def __init__(self, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.depth = 0
        self.max_depth = max_depth
        self.too_deep = False
        self.in_str = False
        self.escape = False
        self.started = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_value(self) -> bytes | _TooDeep | None:
        """The next complete value's bytes (TOO_DEEP if nested too deep), or
        None if incomplete.  Raises ValueError if the stream cannot be JSON
        (top level not an object/array)."""
        buf = self.buf
        n = len(buf)
        i = self.pos
        while i < n:
            c = buf[i]
            if not self.started:
                if c in b" \t\r\n":
                    i += 1
                    continue
                if c not in b"{[":
                    raise ValueError("expected a JSON object")
                self.started = True
                self.depth = 1
                i += 1
                continue
            if self.in_str:
                if self.escape:
                    self.escape = False
                elif c == 0x5C:  # backslash
                    self.escape = True
                elif c == 0x22:
                    self.in_str = False
            elif c == 0x22:
                self.in_str = True
            elif c in b"{[":
                self.depth += 1
                if self.depth > self.max_depth:
                    self.too_deep = True
            elif c in b"}]":
                self.depth -= 1
                if self.depth == 0:
                    value: bytes | _TooDeep = TOO_DEEP if self.too_deep else bytes(buf[:i + 1])
                    del buf[:i + 1]
                    self.pos = 0
                    self.started = False
                    self.too_deep = False
                    return value
            i += 1
        self.pos = i
        return None

    def pending(self) -> int:
        return len(self.buf)


class RpcConnection:
    """One client.  Requests run concurrently, but the connection applies
    backpressure: it reads no more while its writes are not drained or
    MAX_INFLIGHT commands are still running, so a client that pipelines
    without reading its answers costs bounded memory (its own socket buffer
    fills up instead of ours)."""

    def __init__(self, server: "RpcServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 num: int) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.num = num
        self.notifications = False
        self.tasks: set[asyncio.Task] = set()
        self.write_lock = asyncio.Lock()
        self.closed = False
        self.linger = False     # kept open through shutdown (the `stop` caller)
        self._room = asyncio.Event()     # set whenever a command finishes

    async def send(self, obj: dict) -> None:
        data = json.dumps(obj, separators=(",", ":"), default=_json_default).encode() + b"\n\n"
        async with self.write_lock:
            # checked under the lock: once one write found the client gone,
            # the others queued behind it write nothing (asyncio would log
            # every write to a lost connection)
            if self.closed or self.writer.is_closing():
                self.closed = True
                return
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionError, OSError):
                self.closed = True

    async def _wait_for_room(self) -> None:
        """Backpressure: return once our answers are drained (or below the
        transport's high-water mark) and fewer than MAX_INFLIGHT commands run."""
        while not self.closed:
            if len(self.tasks) >= MAX_INFLIGHT:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                await self.writer.drain()
            except (ConnectionError, OSError):
                self.closed = True
            return

    async def run(self) -> None:
        splitter = _JsonStreamSplitter()
        try:
            while not self.closed:
                await self._wait_for_room()
                if self.closed:
                    break
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    break
                splitter.feed(data)
                while True:
                    try:
                        raw = splitter.next_value()
                    except ValueError as e:
                        # answer what came before the garbage, then say why we hang up
                        if self.tasks:
                            await asyncio.wait(list(self.tasks))
                        await self.send({"jsonrpc": "2.0", "id": None,
                                         "error": {"code": PARSE_ERROR, "message": f"Parse error: {e}"}})
                        return
                    if raw is None:
                        break
                    self._dispatch_raw(raw)
                if splitter.pending() > MAX_REQUEST_BYTES:
                    await self.send({"jsonrpc": "2.0", "id": None,
                                     "error": {"code": INVALID_REQUEST, "message": "Request too large"}})
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            # A client may half-close after its request: still answer it.
            if self.tasks and not self.closed:
                await asyncio.wait(list(self.tasks))
            self.closed = True
            try:
                self.writer.close()
            except Exception:
                pass

    def abort(self) -> None:
        """Shutdown: cancel what still runs (a pending `waitanyinvoice`...)
        and hang up; the client sees the connection close."""
        self.closed = True
        for t in list(self.tasks):
            t.cancel()
        try:
            self.writer.close()
        except Exception:
            pass

    def _dispatch_raw(self, raw: bytes | _TooDeep) -> None:
        if raw is TOO_DEEP:
            t = asyncio.ensure_future(self.send({"jsonrpc": "2.0", "id": None, "error": {
                "code": INVALID_REQUEST, "message": f"Request nested deeper than {MAX_JSON_DEPTH} levels"}}))
        else:
            assert isinstance(raw, bytes)
            try:
                req = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError) as e:
                t = asyncio.ensure_future(self.send({"jsonrpc": "2.0", "id": None,
                                                     "error": {"code": PARSE_ERROR, "message": f"Parse error: {e}"}}))
            else:
                t = asyncio.ensure_future(self.handle(req))
        self.tasks.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task) -> None:
        self.tasks.discard(t)
        self._room.set()
        if not t.cancelled() and t.exception() is not None:
            # handle() answers every error itself: this is a bug in the server
            self.server.log.broken(f"RPC connection {self.num}: {type(t.exception()).__name__}: {t.exception()}")
    async def handle(self, req: Any) -> None:
        if not isinstance(req, dict):
            await self.send({"jsonrpc": "2.0", "id": None,
                             "error": {"code": INVALID_REQUEST, "message": "Expected {} for json command"}})
            return
        rid = req.get("id")
        if isinstance(rid, (dict, list)) or (isinstance(rid, float) and not math.isfinite(rid)):
            await self.send({"jsonrpc": "2.0", "id": None,
                             "error": {"code": INVALID_REQUEST, "message": "Expected string or number for id"}})
            return
        method = req.get("method")
        if not isinstance(method, str):
            await self.send({"jsonrpc": "2.0", "id": rid,
                             "error": {"code": INVALID_REQUEST, "message": "method must be a string"}})
            return
        if "id" not in req:
            # A notification from the client: only `notifications` is one we act on.
            return
        if method == "notifications":
            params = req.get("params") or {}
            enable = params.get("enable") if isinstance(params, dict) else None
            self.notifications = bool(enable)
            await self.send({"jsonrpc": "2.0", "id": rid, "result": {}})
            return
        ctx = RequestContext(rid, method, self, req.get("params"))
        resp = await self.server.execute(ctx, method, req.get("params"))
        resp["id"] = rid
        if self.server.durable is not None:
            # the answer may reveal what the command wrote: not before the
            # database committed it (a database that failed: no answer)
            try:
                await self.server.durable()
            except Exception as e:  # noqa: BLE001 - DbFatal: the node is stopping
                self.server.log.unusual(f"RPC {method}: not answered, the database failed: {e}")
                return
        await self.send(resp)


def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    if hasattr(o, "to_json"):
        return o.to_json()
    return str(o)


class RpcServer:
    """Listens on the socket and executes commands through the registry; the
    `rpc_command` hook (plugins) may intercept each call."""

    def __init__(self, registry: CommandRegistry, log: Logger, developer: bool = False,
                 allow_deprecated: bool = True) -> None:
        self.registry = registry
        self.log = log
        self.developer = developer
        self.allow_deprecated = allow_deprecated      # --allow-deprecated-apis
        self.server: asyncio.base_events.Server | None = None
        self.path: str | None = None
        self._identity: tuple[int, int] | None = None
        self.conns: dict[RpcConnection, asyncio.Task] = {}     # each with the task serving it
        self._next_conn = 0
        # set by the plugin layer: async (ctx, method, params) -> replacement response or None
        self.rpc_command_hook: Callable[[RequestContext, str, Any], Awaitable[dict | None]] | None = None
        # set by lightningd when the database commits after the working copy
        # (db_pipeline.DbGate.wait): answers wait for it
        self.durable: Callable[[], Awaitable[None]] | None = None

    async def listen(self, path: str, mode: int = 0o600) -> None:
        if os.path.exists(path):
            os.unlink(path)
        old = os.umask(0o777 & ~mode)
        try:
            self.server = await asyncio.start_unix_server(self._on_client, path=path, limit=READER_LIMIT)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        self.path = path
        self._identity = identity(path)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next_conn += 1
        conn = RpcConnection(self, reader, writer, self._next_conn)
        task = asyncio.current_task()
        assert task is not None
        self.conns[conn] = task
        try:
            await conn.run()
        except asyncio.CancelledError:
            # shutdown (close() below), or the loop closing with this client
            # still connected: end quietly (Python 3.11's stream callback would
            # report a cancelled handler as an exception)
            pass
        finally:
            self.conns.pop(conn, None)

    async def close(self) -> None:
        """Stop listening and end every connection but the lingering ones
        (the `stop` caller's, see finish_lingering), cancelling commands
        still running: a `waitanyinvoice` at shutdown ends quietly, its
        client sees the connection close."""
        if self.server is not None:
            self.server.close()
            self.server = None
        await self._end([c for c in self.conns if not c.linger])
        if self.path:
            unlink_if_ours(self.path, self._identity)   # (a new node's socket is not ours to remove)

    async def finish_lingering(self, timeout: float = 10.0) -> None:
        """Let the connections kept through shutdown send their answers."""
        tasks = [t for c in self.conns if c.linger for t in c.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        await self._end([c for c in self.conns if c.linger])

    async def _end(self, conns: list[RpcConnection]) -> None:
        """Cancel these connections' commands, hang up, and wait until the
        tasks serving them are done: nothing is left for the event loop's
        teardown to cancel (which would print tracebacks)."""
        current = asyncio.current_task()
        tasks = [self.conns[c] for c in conns if c in self.conns]
        for c in conns:
            c.abort()
        tasks = [t for t in tasks if t is not current]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def execute(self, ctx: RequestContext, method: str, params: Any) -> dict:
        """Run one command (also used internally, e.g. by plugins' RPC calls
        which arrive on their own connections anyway)."""
        cmd = self.registry.commands.get(method)
        if cmd is None:
            return {"jsonrpc": "2.0", "error": {"code": METHOD_NOT_FOUND, "message": f"Unknown command '{method}'"}}
        if cmd.dev_only and not self.developer:
            return {"jsonrpc": "2.0", "error": {"code": METHOD_NOT_FOUND,
                                                "message": f"Command '{method}' is developer-only"}}
        if cmd.deprecated and not self.allow_deprecated:
            return {"jsonrpc": "2.0", "error": {"code": METHOD_NOT_FOUND, "message": f"Command {method} is deprecated"}}
        try:
            # not a string anything could store or encode: refused for every command
            reject_lone_surrogates(cmd.params, params)
            if self.rpc_command_hook is not None:
                replaced = await self.rpc_command_hook(ctx, method, params)
                if replaced is not None:
                    if "result" in replaced:
                        return {"jsonrpc": "2.0", "result": replaced["result"]}
                    if "error" in replaced:
                        return {"jsonrpc": "2.0", "error": replaced["error"]}
                    # a replacement request
                    method = replaced.get("method", method)
                    params = replaced.get("params", params)
                    cmd = self.registry.commands.get(method)
                    if cmd is None:
                        return {"jsonrpc": "2.0",
                                "error": {"code": METHOD_NOT_FOUND, "message": f"Unknown command '{method}'"}}
            if cmd.plugin is not None or cmd.raw_params:
                result = await cmd.handler(ctx, params)
            else:
                bound = resolve_params(cmd.params, params)
                result = await cmd.handler(ctx, **bound)
            return {"jsonrpc": "2.0", "result": result if result is not None else {}}
        except RpcError as e:
            return {"jsonrpc": "2.0", "error": e.to_json()}
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in one command must not take the node down
            self.log.broken(f"command {method} crashed: {type(e).__name__}: {e}")
            for line in traceback.format_exc().splitlines():
                self.log.broken(line)
            return {"jsonrpc": "2.0", "error": {"code": LIGHTNINGD, "message": f"Internal error: {e}"}}
