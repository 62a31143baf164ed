"""A blocking request/response client of hsmd, for the per-channel daemons.

channeld and onchaind sign through hsmd synchronously, as Core Lightning's
do: the request is small, hsmd answers in well under a millisecond, and the
daemon has nothing else to do for its one channel meanwhile."""
from __future__ import annotations

import socket
from typing import Any

from wire.internal import FAIL_OFFSET, REPLY_OFFSET, internal_schema

from .msgconn import HEADER


class HsmError(Exception):
    """hsmd refused (its failure message's reason) or answered nonsense."""


class HsmLinkBroken(Exception):
    """The link to hsmd is gone (hsmd died: the node is going down).  Not an
    HsmError on purpose: nothing may treat it as a refusal to sign and act on
    the channel (fail it, tell the peer); the daemon just stops."""


class SyncHsm:
    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self.schema = internal_schema("hsmd")

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise HsmLinkBroken("hsmd closed the connection")
            buf += chunk
        return bytes(buf)

    def call(self, name: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        msg = self.schema.encode(name, fields or {})
        try:
            self.sock.sendall(HEADER.pack(len(msg), 0) + msg)
            length, nfds = HEADER.unpack(self._recv_exact(HEADER.size))
            raw = self._recv_exact(length)
        except OSError as e:
            raise HsmLinkBroken(f"hsmd link: {e}") from None
        m = self.schema.decode(raw)
        req = self.schema.messages[name].number
        if m.type == req + REPLY_OFFSET:
            return m.fields
        if m.type == req + FAIL_OFFSET:
            raise HsmError(m.fields.get("reason", f"{name} refused"))
        raise HsmError(f"unexpected answer {m.name} to {name}")

    def close(self) -> None:
        self.sock.close()


