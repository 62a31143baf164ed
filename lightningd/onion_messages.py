"""Onion messages in the master (Core Lightning's lightningd/onion_message.c
and the sending side of its offers plugin).

Receiving: connectd peels and hands us ``connectd_got_onionmsg_to_us``; the
``onion_message_recv`` hook runs for a message that did not come through a
path of ours, ``onion_message_recv_secret`` (with ``pathsecret``) for one
that did; if every plugin answers ``continue`` the built-in BOLT 12 handlers
see it (``offers.py``).

Sending: an onion is built here starting at ourselves (the route to the
destination or to a blinded path's introduction point comes from the gossip
graph; a node we cannot route to is connected to directly, as Core
Lightning's fetchinvoice does) and injected into connectd, which peels our
own hop and sends the rest.  ``reply_path`` makes the blinded path back to us
along the same nodes, with a secret ``path_id``.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from common.blindedpath import BlindedPath, EncryptedData, create_blinded_path, dummy_hop, pad_to_same_length
from common.daemon_conn import Msg
from common.onion_message import OnionMessageError, OnionMsgTlv, build_onion_message

from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, LIGHTNINGD, RpcError
from .params import req

if TYPE_CHECKING:
    from .lightningd import LightningD

Handler = Callable[[OnionMsgTlv, "bytes | None", bytes], Awaitable[None]]


class OnionMessages:
    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        #: the built-in handler of messages no plugin took (offers.py)
        self.handler: Handler | None = None

    # -- from connectd -------------------------------------------------------------------
    async def got_to_us(self, msg: Msg) -> None:
        f = msg.fields
        secret = f["path_secret"] if f["has_path_secret"] else None
        try:
            payload = OnionMsgTlv.decode(f["payload"])
        except OnionMessageError as e:
            self.ld.log.unusual(f"onion message for us with a bad payload: {e}")
            return
        self.ld.log.debug("Got onionmsg" + (" with pathsecret" if secret else "")
                          + (" reply_path" if payload.reply_path else ""))
        hooks = self.ld.plugins.hooks
        name = "onion_message_recv_secret" if secret is not None else "onion_message_recv"
        if hooks.has(name):
            res = await hooks.call(name, {"onion_message": hook_payload(payload, secret)})
            if res.get("result") != "continue":
                return
        if self.handler is not None:
            await self.handler(payload, secret, f["path_key"])

    def to_scid(self, msg: Msg) -> None:
        f = msg.fields
        # BOLT 4: an announced short_channel_id or our alias of a channel
        chan = next((c for c in self.ld.channels.channels.values() if c.forwards_by(f["short_channel_id"])), None)
        if chan is None or not self.ld.is_connected(chan.peer_id):
            self.ld.log.debug(f"onion message to unknown or offline channel {f['short_channel_id']}: dropped")
            return
        self.ld.connectd.send_onionmsg(chan.peer_id, f["path_key"], f["onion"])

    # -- sending -------------------------------------------------------------------------
    async def route_nodes(self, dest: bytes) -> list[bytes]:
        """Node ids from us to ``dest`` (both included) for an onion message:
        a direct peer, a route in the graph, or a new direct connection."""
        ld = self.ld
        if dest == ld.node_id:
            return [dest]
        if ld.is_connected(dest):
            return [ld.node_id, dest]
        try:
            route = await ld.find_route(dest, 1, 9, set())
            nodes = [ld.node_id] + [bytes.fromhex(h["id"]) for h in route]
            if ld.is_connected(nodes[1]):
                return nodes
        except RpcError:
            pass
        addrs = await ld.reconnector.addresses(dest)
        if not addrs:
            raise RpcError(LIGHTNINGD, f"No route to {dest.hex()} for an onion message, and no address known")
        try:
            await ld.connectd.connect(dest, addrs, timeout=30)
        except Exception as e:
            raise RpcError(LIGHTNINGD, f"Could not connect to {dest.hex()}: {e}") from None
        return [ld.node_id, dest]

    async def send(self, payload: OnionMsgTlv, path: BlindedPath | None = None, dest: bytes | None = None,
                   route: list[bytes] | None = None) -> list[bytes]:
        """Send ``payload`` along ``path`` (or to the node ``dest``); returns
        the node ids it travels up to the path (for a reply path back).
        RpcError if there is no way."""
        if path is not None:
            intro = self.resolve_intro(path)
            path = BlindedPath(intro, path.first_path_key, path.hops)
            target = intro
        else:
            assert dest is not None
            target = dest
        nodes = route if route is not None else await self.route_nodes(target)
        # the onion starts at us: our own hop (if any) is peeled by connectd
        prefix = nodes[:-1] if path is not None else nodes
        if path is not None and target == self.ld.node_id:
            prefix = []
        try:
            out = build_onion_message(os.urandom(32), os.urandom(32), prefix, path, payload)
        except ValueError as e:
            raise RpcError(INVALID_PARAMS, f"Creating onion failed: {e}") from None
        err = await self.ld.connectd.inject_onionmsg(out.path_key, out.packet)
        if err:
            raise RpcError(LIGHTNINGD, err)
        return nodes

    def resolve_intro(self, path: BlindedPath) -> bytes:
        """A path's introduction point as a node id (a sciddir is one of our
        channels' ends, or a public channel's in the direction given)."""
        if path.intro_is_pubkey:
            return path.first_node_id
        scid = int.from_bytes(path.first_node_id[1:], "big")
        for c in self.ld.channels.channels.values():
            if c.scid is not None and c.scid.to_int() == scid:
                ends = sorted([self.ld.node_id, c.peer_id])
                return ends[path.first_node_id[0]]
        raise RpcError(LIGHTNINGD, f"Unknown introduction channel {scid}")

    def reply_path(self, back: list[bytes], secret: bytes) -> BlindedPath:
        """The blinded path to us through the nodes ``back`` (in the order the
        reply travels, without us), ending at us with ``secret`` as path_id.
        No nodes: just us."""
        me = self.ld.node_id
        hops = [(n, EncryptedData(next_node_id=(back[i + 1] if i + 1 < len(back) else me)))
                for i, n in enumerate(back)]
        hops.append((me, EncryptedData(path_id=secret)))
        return blinded_path(hops)

    async def inject(self, path_key: bytes, message: bytes) -> None:
        err = await self.ld.connectd.inject_onionmsg(path_key, message)
        if err:
            raise RpcError(LIGHTNINGD, err)


def blinded_path(hops: list[tuple[bytes, EncryptedData]], dummies: int = 0, payment: bool = False) -> BlindedPath:
    """Blind ``hops`` (node id, data) with ``dummies`` dummy hops of the final
    node before its own data (relaying at no cost for a ``payment`` path),
    every hop's data padded to one length."""
    if dummies:
        final_node = hops[-1][0]
        hops = hops[:-1] + [(final_node, dummy_hop(final_node, payment))] * dummies + [hops[-1]]
    tlvs = pad_to_same_length([d for _, d in hops])
    return create_blinded_path(os.urandom(32), [(n, t) for (n, _), t in zip(hops, tlvs)]).path


def hook_payload(payload: OnionMsgTlv, secret: bytes | None) -> dict[str, Any]:
    """The ``onion_message`` object of the onion message hooks (Core Lightning's)."""
    js: dict[str, Any] = {}
    if secret is not None:
        js["pathsecret"] = secret.hex()
    if payload.reply_path is not None:
        js["reply_blindedpath"] = payload.reply_path.to_json()
    for name in ("invoice_request", "invoice", "invoice_error"):
        v = getattr(payload, name)
        if v is not None:
            js[name] = v.hex()
    js["unknown_fields"] = [{"number": t, "value": v.hex()} for t, v in sorted(payload.unknown.items())]
    return js


def register(ld: "LightningD") -> None:
    cmd = ld.registry.command

    @cmd("injectonionmessage", [req("path_key", P.node_id), req("message", P.hex_bytes)], category="utility",
         description="Inject an onion message {message} (its first hop is us) with {path_key}")
    async def injectonionmessage(ctx: RequestContext, path_key: bytes, message: bytes) -> dict:
        if len(message) > 65535:
            raise RpcError(INVALID_PARAMS, "onion message too long")
        await ld.onion_messages.inject(path_key, message)
        return {}
