"""RPC commands about peers: connect, disconnect, listpeers, ping."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from common.daemon_conn import RequestFailed
from common.wireaddr import AddressParseError, parse_wireaddr

from . import channel as C
from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import (
    CONNECT_DISCONNECTED_DURING,
    CONNECT_NO_KNOWN_ADDRESS,
    INVALID_PARAMS,
    LIGHTNINGD,
    RpcError,
)
from .log import level_from_name
from .params import opt, req

if TYPE_CHECKING:
    from .lightningd import LightningD, PeerState


def register(ld: "LightningD") -> None:
    cmd = ld.registry.command

    @cmd("connect", [req("id", P.string), opt("host", P.string), opt("port", P.u16)], category="network",
         description="Connect to {id} at {host} (which can end in ':port' if not default). "
                     "{id} can also be of the form id@host[:port].")
    async def connect(ctx: RequestContext, id: str, host: str | None, port: int | None) -> dict:
        node_text, _, at_host = id.partition("@")
        if at_host:
            if host is not None or port is not None:
                raise RpcError(INVALID_PARAMS, "Can't specify host or port in both id and host/port")
            host = at_host
        try:
            node_id = P.node_id(node_text)
        except P.BadType:
            raise RpcError(INVALID_PARAMS, f"id: should be a node id: invalid token '{node_text}'") from None
        if node_id == ld.node_id:
            raise RpcError(LIGHTNINGD, "Connecting to myself is not wise.")
        if port is not None and host is None:
            raise RpcError(INVALID_PARAMS, "Can't specify port without host")
        addrs: list[str] = []
        if host is not None:
            try:
                wa = parse_wireaddr(host, ld.network.default_port)
            except AddressParseError as e:
                raise RpcError(INVALID_PARAMS, f"host: {e}") from None
            if port is not None:
                wa = type(wa)(wa.host, port)
            addrs.append(str(wa))
        p = ld.peers.get(node_id)
        if not (p is not None and p.connected):
            if not addrs:
                addrs = await ld.reconnector.addresses(node_id)
            if not addrs:
                raise RpcError(CONNECT_NO_KNOWN_ADDRESS, "Unable to connect, no address known for peer")
            try:
                await ld.connectd.connect(node_id, addrs)
            except asyncio.TimeoutError:
                raise RpcError(LIGHTNINGD, "Connection timed out") from None
            p = ld.peers.get(node_id)
            if p is None or not p.connected:
                raise RpcError(CONNECT_DISCONNECTED_DURING, "Peer disconnected while connecting")
        return {"id": node_id.hex(), "features": p.features.hex(), "direction": "in" if p.incoming else "out",
                "address": _addr_json(p.addr)}

    @cmd("disconnect", [req("id", P.node_id), opt("force", P.boolean, False)], category="network",
         description="Disconnect from {id} that has previously been connected to using connect; "
                     "with {force} set, even if it has active channels")
    async def disconnect(ctx: RequestContext, id: bytes, force: bool) -> dict:
        p = ld.peers.get(id)
        if p is None or not p.connected:
            raise RpcError(LIGHTNINGD, "Peer not connected")
        if not force and any(c.active for c in ld.channels.by_peer(id)):
            raise RpcError(LIGHTNINGD, "Peer has active channel, use force=true to disconnect")
        waiter = ld.wait_peer_disconnected(id)
        ld.reconnector.disconnect_requested(id)    # asked for: not undone by a redial
        ld.connectd.discard(id)
        try:
            await asyncio.wait_for(waiter, 30)
        except asyncio.TimeoutError:
            raise RpcError(LIGHTNINGD, "Timed out waiting for disconnect") from None
        return {}

    @cmd("listpeers", [opt("id", P.node_id), opt("level", P.one_of("io", "trace", "debug", "info", "unusual"))],
         category="network", description="Show current peers, if {level} is set, include logs for {id}")
    async def listpeers(ctx: RequestContext, id: bytes | None, level: str | None) -> dict:
        peers = [p for p in ld.peers.values() if id is None or p.id == id]
        return {"peers": [_peer_json(ld, p, level) for p in peers]}

    @cmd("ping", [req("id", P.node_id), opt("len", P.u16, 128), opt("pongbytes", P.u16, 128)], category="network",
         description="Send peer {id} a ping of length {len} (default 128) asking for {pongbytes} (default 128)")
    async def ping(ctx: RequestContext, id: bytes, len: int, pongbytes: int) -> dict:
        # BOLT 1: the whole ping message (type + 2 lengths + ignored) must fit 65535
        if len + 6 > 65535:
            raise RpcError(INVALID_PARAMS, "Ping would have been too long")
        p = ld.peers.get(id)
        if p is None or not p.connected:
            raise RpcError(LIGHTNINGD, "Peer not connected")
        try:
            totlen = await ld.connectd.ping(id, pongbytes, len)
        except RequestFailed as e:
            raise RpcError(LIGHTNINGD, e.msg.fields.get("reason", "Ping failed")) from None
        return {"totlen": totlen}


def _addr_json(addr: str) -> dict:
    try:
        return parse_wireaddr(addr, 0).to_json()
    except ValueError:
        return {"type": "local socket", "socket": addr}


def _peer_json(ld: "LightningD", p: "PeerState", level: str | None) -> dict[str, Any]:
    num = len([c for c in ld.channels.by_peer(p.id) if c.state != C.CLOSED])
    d: dict[str, Any] = {"id": p.id.hex(), "connected": p.connected, "num_channels": num}
    if p.connected:
        d["netaddr"] = [p.addr]
        d["features"] = p.features.hex()
    if level is not None:
        entries = ld.log_book.getlog(level_from_name(level))["log"]
        d["log"] = [e for e in entries if e.get("node_id") == p.id.hex()]
    return d
