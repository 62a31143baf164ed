"""A channel daemon's end of a peer connection inside connectd: the
socketpair the master handed us, carrying that channel's plaintext peer
messages both ways, plus in-band control (wire/csv/peer_stream.csv)."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable

from common.msgconn import ConnectionClosed, MsgConn
from wire import DecodeError, bolt_schema
from wire.internal import internal_schema

from .dev_disconnect import DevDisconnect

if TYPE_CHECKING:
    from common.status import Status

    from .peer import Peer

CONTROL_FIRST = 65000
# every message of wire/csv/peer_stream.csv is handled in ChannelLink._control
CONTROL_HANDLED = frozenset({"stream_route_channel_id", "stream_disconnect"})


class ChannelLink:
    def __init__(self, peer: "Peer", conn: MsgConn, channel_id: bytes, status: "Status",
                 dev_disconnect: DevDisconnect | None, on_route: Callable[["ChannelLink", bytes], None],
                 on_close: Callable[["ChannelLink"], None]) -> None:
        self.peer = peer
        self.conn = conn
        self.channel_ids = {channel_id}
        self.status = status
        self.dev = dev_disconnect
        self.on_route = on_route
        self.on_close = on_close
        self.task = asyncio.ensure_future(self._run())
        self.blackholed = False

    def deliver(self, raw: bytes) -> None:
        """A message from the peer for this channel."""
        try:
            self.conn.send(raw)
        except ConnectionClosed:
            pass

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.conn.recv()
                raw = frame.msg
                if len(raw) < 2:
                    continue
                t = int.from_bytes(raw[:2], "big")
                if t >= CONTROL_FIRST:
                    self._control(raw)
                    continue
                await self._to_peer(raw, t)
        except ConnectionClosed:
            pass
        finally:
            self.conn.close()
            self.on_close(self)

    def _control(self, raw: bytes) -> None:
        try:
            m = internal_schema("peer_stream").decode(raw)
        except DecodeError as e:
            self.status.broken(f"bad in-band control message: {e}", self.peer.id)
            return
        if m.name == "stream_route_channel_id":
            cid = m.fields["channel_id"]
            self.channel_ids.add(cid)
            self.on_route(self, cid)
        elif m.name == "stream_disconnect":
            self.peer.close()
        else:  # every message of the schema has a case above
            self.status.broken(f"unhandled in-band message {m.name}", self.peer.id)

    async def _to_peer(self, raw: bytes, msgtype: int) -> None:
        if self.blackholed:
            return
        action = None
        if self.dev is not None:
            m = bolt_schema().by_number.get(msgtype)
            action = self.dev.check(m.name if m is not None else str(msgtype))
        if action == "-":
            self.status.debug(f"dev-disconnect: before sending type {msgtype}", self.peer.id)
            self.peer.close()
            return
        if action == "@":
            self.status.debug(f"dev-disconnect: blackhole from type {msgtype}", self.peer.id)
            self.blackholed = True
            return
        try:
            await self.peer.send(raw)
        except (EOFError, OSError):   # the peer's connection closed (noise_async's ConnectionClosed is an EOFError)
            return
        if action == "+":
            self.status.debug(f"dev-disconnect: after sending type {msgtype}", self.peer.id)
            self.peer.close()

    def close(self) -> None:
        self.conn.close()
