"""One plugin process: JSON-RPC over its stdin/stdout (plugin = server for
our requests, client for its notifications), its manifest and its state."""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from .jsonrpc import _JsonStreamSplitter
from .log import Logger, level_from_name


class PluginError(Exception):
    pass


@dataclass
class PluginOption:
    name: str
    type: str            # string, string-conceal, int, bool, flag
    default: Any
    description: str
    multi: bool = False
    dynamic: bool = False
    deprecated: bool = False


@dataclass
class Manifest:
    options: list[PluginOption] = field(default_factory=list)
    rpcmethods: list[dict] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    hooks: list[dict] = field(default_factory=list)      # {name, before, after}
    featurebits: dict[str, str] = field(default_factory=dict)
    notifications: list[str] = field(default_factory=list)
    dynamic: bool = False
    cancheck: bool = False
    nonnumericids: bool = False
    disable: str | None = None

    @classmethod
    def parse(cls, d: Any) -> "Manifest":
        if not isinstance(d, dict):
            raise PluginError("getmanifest result is not an object")
        m = cls()
        for o in d.get("options", []) or []:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise PluginError(f"bad option in manifest: {o!r}")
            t = o.get("type", "string")
            if t not in ("string", "string-conceal", "int", "bool", "flag"):
                raise PluginError(f"option {o['name']}: unknown type {t!r}")
            m.options.append(PluginOption(o["name"], t, o.get("default"), o.get("description", ""),
                                          bool(o.get("multi", False)), bool(o.get("dynamic", False)),
                                          bool(o.get("deprecated", False))))
        for r in d.get("rpcmethods", []) or []:
            if not isinstance(r, dict) or not isinstance(r.get("name"), str):
                raise PluginError(f"bad rpcmethod in manifest: {r!r}")
            if "usage" not in r:
                raise PluginError(f"rpcmethod {r['name']} has no usage")
            m.rpcmethods.append(r)
        m.subscriptions = [s for s in d.get("subscriptions", []) or [] if isinstance(s, str)]
        for h in d.get("hooks", []) or []:
            if isinstance(h, str):
                m.hooks.append({"name": h, "before": [], "after": []})
            elif isinstance(h, dict) and isinstance(h.get("name"), str):
                m.hooks.append({"name": h["name"], "before": h.get("before", []) or [],
                                "after": h.get("after", []) or []})
            else:
                raise PluginError(f"bad hook in manifest: {h!r}")
        fb = d.get("featurebits", {}) or {}
        m.featurebits = {k: v for k, v in fb.items() if isinstance(v, str)}
        m.notifications = [n["method"] for n in d.get("notifications", []) or []
                           if isinstance(n, dict) and isinstance(n.get("method"), str)]
        m.dynamic = bool(d.get("dynamic", False))
        m.cancheck = bool(d.get("cancheck", False))
        m.nonnumericids = bool(d.get("nonnumericids", False))
        m.disable = d.get("disable")
        return m


class PluginProcess:
    """Spawn, frame, request/response; knows nothing of lightningd's state."""

    def __init__(self, path: str, log: Logger, cwd: str, important: bool = False) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.log = log
        self.cwd = cwd
        self.important = important
        self.proc: asyncio.subprocess.Process | None = None
        self.manifest: Manifest | None = None
        self.active = False
        self._next_id = 0
        self._pending: dict[Any, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []
        self.exited = asyncio.Event()
        self.on_notification: Callable[["PluginProcess", str, Any], None] | None = None
        self.on_exit: Callable[["PluginProcess"], None] | None = None
        self.stopping = False
        self.checksum = 0      # of the file when started (PluginManager._checksum)

    async def spawn(self) -> None:
        env = dict(os.environ, LIGHTNINGD_PLUGIN="1", LIGHTNINGD_VERSION="v0.1.0")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.path, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=self.cwd, env=env, limit=64 * 1024 * 1024,
                # its own process group: a terminal's ^C reaches only us, and we
                # stop plugins in order (shutdown notification, then close)
                process_group=0)
        except OSError as e:
            raise PluginError(f"{self.path}: {e.strerror or e}") from None
        self._tasks = [asyncio.ensure_future(self._read_stdout()), asyncio.ensure_future(self._read_stderr())]

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            self.log.info(line.decode(errors="replace").rstrip())

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        splitter = _JsonStreamSplitter()
        try:
            while True:
                data = await self.proc.stdout.read(65536)
                if not data:
                    break
                splitter.feed(data)
                while True:
                    try:
                        raw = splitter.next_value()
                    except ValueError as e:
                        self.log.unusual(f"Killing plugin: bad JSON from plugin: {e}")
                        self.kill()
                        return
                    if raw is None:
                        break
                    self._on_message(raw)
        finally:
            await self._finish()

    def _on_message(self, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError as e:
            self.log.unusual(f"Killing plugin: invalid JSON: {e}")
            self.kill()
            return
        if not isinstance(msg, dict) or "jsonrpc" not in msg:
            self.log.unusual('Killing plugin: JSON-RPC message does not contain "jsonrpc" field')
            self.kill()
            return
        if "method" in msg and "id" not in msg:
            if self.on_notification is not None:
                self.on_notification(self, msg["method"], msg.get("params"))
            return
        if "id" in msg and ("result" in msg or "error" in msg):
            fut = self._pending.pop(msg["id"], None)
            if fut is None:
                self.log.unusual(f"response to unknown request id {msg['id']!r}")
            elif not fut.done():
                fut.set_result(msg)
            return
        self.log.unusual(f"unexpected message from plugin: {raw[:200]!r}")

    async def _finish(self) -> None:
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.kill()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(PluginError(f"plugin {self.name} terminated"))
        self._pending.clear()
        self.active = False
        self.exited.set()
        if self.on_exit is not None:
            self.on_exit(self)

    def send(self, obj: dict) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.stdin.is_closing():
            raise PluginError(f"plugin {self.name} is not running")
        self.proc.stdin.write(json.dumps(obj, default=_default).encode() + b"\n\n")

    async def request(self, method: str, params: Any, timeout: float | None = None) -> dict:
        """Full JSON-RPC response ({result} or {error})."""
        self._next_id += 1
        rid: Any = self._next_id
        if self.manifest is not None and self.manifest.nonnumericids:
            rid = f"cln:{method}#{self._next_id}"
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            if self.proc is not None and self.proc.stdin is not None:
                await self.proc.stdin.drain()
        except (PluginError, ConnectionError, OSError) as e:
            self._pending.pop(rid, None)
            raise PluginError(str(e)) from None
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(rid, None)

    def notify(self, method: str, params: Any) -> None:
        try:
            self.send({"jsonrpc": "2.0", "method": method, "params": params})
        except (PluginError, OSError):
            pass

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    async def stop(self, timeout: float = 5.0) -> None:
        """Close stdin (pyln plugins exit on EOF), then kill."""
        self.stopping = True
        if self.proc is None or self.exited.is_set():
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            await asyncio.wait_for(self.exited.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            await self.exited.wait()


def _default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return o.hex()
    return str(o)


def log_level_of(name: Any) -> int:
    try:
        return level_from_name(str(name))
    except ValueError:
        return level_from_name("info")
