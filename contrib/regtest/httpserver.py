"""bitcoind's HTTP JSON-RPC front: HTTP/1.1 keep-alive on asyncio, Basic
auth (rpcuser/rpcpassword, cookie, rpcauth), JSON-RPC 1.0 and 2.0 envelopes
and batches.

The RPC methods run synchronously on the event loop, one request at a time,
which is what keeps the node's state consistent without locks.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from .decode import dumps
from .errors import RPC_INTERNAL_ERROR, RPC_INVALID_REQUEST, RPC_METHOD_NOT_FOUND, RPC_PARSE_ERROR, RPCError
from .rpc import call

log = logging.getLogger("regtestd")

MAX_BODY = 64 * 1024 * 1024
REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error"}


class Auth:
    """The credentials bitcoind would accept."""

    def __init__(self, user: str | None, password: str | None, rpcauth: list[str]) -> None:
        self.pairs: list[tuple[str, str]] = []
        if password:                           # bitcoind: rpcuser defaults to ""
            self.pairs.append((user or "", password))
        self.rpcauth: list[tuple[str, str, str]] = []
        for entry in rpcauth:                  # user:salt$hmac-sha256(salt, password)
            user_part, _, rest = entry.partition(":")
            salt, _, digest = rest.partition("$")
            if user_part and salt and digest:
                self.rpcauth.append((user_part, salt, digest))
        self.cookie_path: Path | None = None

    def write_cookie(self, path: Path) -> None:
        """bitcoind's cookie: ``__cookie__:<64 hex>``, readable by the owner only."""
        secret = secrets.token_hex(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"__cookie__:{secret}")
        tmp.chmod(0o600)
        tmp.replace(path)
        self.pairs.append(("__cookie__", secret))
        self.cookie_path = path

    def remove_cookie(self) -> None:
        if self.cookie_path is not None:
            self.cookie_path.unlink(missing_ok=True)
            self.cookie_path = None

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok = False
        for u, p in self.pairs:   # no early exit: constant time over the candidates
            ok |= hmac.compare_digest(u.encode(), user.encode()) & hmac.compare_digest(p.encode(), password.encode())
        for u, salt, digest in self.rpcauth:
            mine = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
            ok |= (u == user) & hmac.compare_digest(mine, digest)
        return ok


def _error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


class RpcServer:
    """Serves JSON-RPC for `node` on the given addresses."""

    def __init__(self, node: Any, auth: Auth, on_stop: Callable[[], None]) -> None:
        self.node = node
        self.auth = auth
        self.on_stop = on_stop
        self.servers: list[asyncio.base_events.Server] = []
        self.stopping = False
        self._writers: set[asyncio.StreamWriter] = set()

    async def listen(self, binds: list[tuple[str, int]]) -> None:
        for host, port in binds:
            srv = await asyncio.start_server(self._client, host, port, reuse_address=True)
            self.servers.append(srv)
            log.info("Binding RPC on address %s port %d", host, port)

    async def close(self) -> None:
        for srv in self.servers:
            srv.close()
        for w in list(self._writers):
            w.close()
        for srv in self.servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass

    # -- HTTP --------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Responses go out in one write; no Nagle delay against the client's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._writers.add(writer)
        try:
            while not self.stopping:
                line = await reader.readline()
                if not line:
                    break
                parts = line.decode("latin-1").split()
                if len(parts) != 3:
                    await self._respond(writer, 400, b"", "text/plain", False)
                    break
                verb, _path, version = parts
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                conn = headers.get("connection", "").lower()
                keep = (version == "HTTP/1.1" and conn != "close") or conn == "keep-alive"
                length = int(headers.get("content-length", "0") or 0)
                if length > MAX_BODY:
                    await self._respond(writer, 413, b"", "text/plain", False)
                    break
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await reader.readexactly(length) if length else b""
                if not self.auth.check(headers.get("authorization")):
                    log.info("ThreadRPCServer incorrect password attempt")
                    await self._respond(writer, 401, b"", "text/html", keep,
                                        extra='WWW-Authenticate: Basic realm="jsonrpc"\r\n')
                elif verb != "POST":
                    await self._respond(writer, 405, b"JSONRPC server handles only POST requests",
                                        "text/html", keep)
                else:
                    status, payload = self._handle(body)
                    await self._respond(writer, status, payload, "application/json", keep)
                if self.stopping:
                    self.on_stop()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str, keep: bool,
                       extra: str = "") -> None:
        head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n{extra}\r\n")
        writer.write(head.encode() + body)
        await writer.drain()

    # -- JSON-RPC ----------------------------------------------------------------------
    def _handle(self, body: bytes) -> tuple[int, bytes]:
        try:
            req = json.loads(body, parse_float=Decimal)
        except ValueError:
            return 500, (dumps({"result": None, "error": _error(RPC_PARSE_ERROR, "Parse error"), "id": None})
                         + "\n").encode()
        if isinstance(req, list):
            replies = [self._one(r, in_batch=True)[1] for r in req]
            return 200, (dumps([r for r in replies if r is not None]) + "\n").encode()
        if not isinstance(req, dict):
            return 400, (dumps({"result": None, "error": _error(RPC_INVALID_REQUEST, "Invalid Request object"),
                                "id": None}) + "\n").encode()
        status, reply = self._one(req)
        if reply is None:               # a JSON-RPC 2.0 notification
            return 204, b""
        return status, (dumps(reply) + "\n").encode()

    def _one(self, req: Any, in_batch: bool = False) -> tuple[int, dict[str, Any] | None]:
        """One request -> (HTTP status for a single legacy request, reply).

        Batch replies always carry both "result" and "error": python-bitcoinrpc's
        batch_() sends JSON-RPC 2.0 items but reads reply["error"] unconditionally.
        """
        if not isinstance(req, dict):
            return 400, {"result": None, "error": _error(RPC_INVALID_REQUEST, "Invalid Request object"), "id": None}
        v2 = req.get("jsonrpc") == "2.0"
        rid = req.get("id")
        method = req.get("method")
        try:
            result = call(self.node, method, req.get("params"))
            err = None
        except RPCError as e:
            result, err = None, _error(e.code, e.message)
        except Exception as e:  # a bug: answer it, log it, keep serving
            log.exception("RPC %s failed", method)
            result, err = None, _error(RPC_INTERNAL_ERROR, f"internal error: {e}")
        if v2:
            if "id" not in req:
                return 200, None
            reply = {"jsonrpc": "2.0", "id": rid}
            if in_batch:
                reply.update({"result": result, "error": err})
            else:
                reply.update({"error": err} if err else {"result": result})
            return 200, reply
        status = 200
        if err is not None:
            status = 404 if err["code"] == RPC_METHOD_NOT_FOUND else (
                400 if err["code"] == RPC_INVALID_REQUEST else 500)
        return status, {"result": result, "error": err, "id": rid}
