"""Onion messages in connectd (Core Lightning's connectd/onion_message.c).

A peer's ``onion_message`` is rate-limited per peer (a token bucket: one
message per 250 ms on average, bursts of four; the excess is dropped and the
peer warned once), peeled with hsmd's ECDH (:mod:`common.onion_message`),
then forwarded to the next peer, handed to the master if it is for us, or
dropped (onion messages get no error back).  A hop naming ourselves as the
next node (our own dummy hops, or an onion the master made that starts at
us: ``connectd_inject_onionmsg``) is peeled again here.  A next hop named by
short_channel_id goes to the master, which knows our channels.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from common.onion import ONION_OVERHEAD, blinded_node_tweak
from common.onion_crypto import blind_pubkey
from common.onion_message import Final, OnionMessageError, encode_onion_message, peel_onion_message

if TYPE_CHECKING:
    from common.daemon_conn import DaemonConn
    from common.status import Status

    from .peer import Peer

ONION_MSG_MSEC = 250
ONION_MSG_TOKENS_MAX = 4 * ONION_MSG_MSEC
#: hops of ours peeled in a row (dummy hops, an injected onion's first hop)
MAX_LOCAL_HOPS = 16


class TokenBucket:
    """Core Lightning's per-peer allowance: a message costs ONION_MSG_MSEC
    tokens, a millisecond of time earns one, at most ONION_MSG_TOKENS_MAX."""

    def __init__(self, now_ms: float) -> None:
        self.tokens = float(ONION_MSG_TOKENS_MAX)
        self.last = now_ms
        self.warned = False

    def take(self, now_ms: float) -> bool:
        self.tokens = min(ONION_MSG_TOKENS_MAX, self.tokens + max(0.0, now_ms - self.last))
        self.last = now_ms
        if self.tokens < ONION_MSG_MSEC:
            return False
        self.tokens -= ONION_MSG_MSEC
        return True


class OnionMessenger:
    def __init__(self, node_id: Callable[[], bytes], ecdh: Callable[[bytes], Awaitable[bytes]],
                 peers: dict[bytes, "Peer"], master: "DaemonConn", status: "Status") -> None:
        self.node_id = node_id
        self.ecdh = ecdh
        self.peers = peers
        self.master = master
        self.status = status
        self.dropped = 0

    # -- from peers -----------------------------------------------------------------
    async def from_peer(self, peer: "Peer", fields: dict) -> None:
        now = time.monotonic() * 1000
        bucket = peer.onionmsg_bucket
        if bucket is None:   # per connection: a new one starts with a full bucket
            bucket = peer.onionmsg_bucket = TokenBucket(now)
        if not bucket.take(now):
            self.dropped += 1
            if not bucket.warned:
                bucket.warned = True
                await peer.send_warning(f"Ratelimited onion_message: exceeded one per {ONION_MSG_MSEC}msec")
            return
        err = await self.handle(peer.id, fields["path_key"], fields["onion_message_packet"])
        if err is not None:
            self.status.debug(f"onion message dropped: {err}", peer.id)

    # -- the master's --------------------------------------------------------------
    async def inject(self, path_key: bytes, onion: bytes) -> str:
        err = await self.handle(None, path_key, onion)
        return err or ""

    def send(self, peer_id: bytes, path_key: bytes, onion: bytes) -> bool:
        peer = self.peers.get(peer_id)
        if peer is None or not peer.activated.is_set():
            return False
        asyncio.ensure_future(_send_quietly(peer, encode_onion_message(path_key, onion)))
        return True

    # -- peeling ---------------------------------------------------------------------
    async def _peel(self, path_key: bytes, packet: bytes) -> object:
        """peel_onion_message with hsmd's ECDHs (both asked first: the peeling itself is synchronous)."""
        if len(packet) < ONION_OVERHEAD:
            raise OnionMessageError("onion too short")
        try:
            path_ss = await self.ecdh(path_key)
            point = blind_pubkey(packet[1:34], blinded_node_tweak(path_ss))
            onion_ss = await self.ecdh(point)
        except Exception as e:   # an invalid point: hsmd refuses it, coincurve raises
            raise OnionMessageError(f"bad key: {e}") from None
        secrets = {path_key: path_ss, point: onion_ss}
        return peel_onion_message(packet, path_key, lambda p: secrets[p])

    async def handle(self, source: bytes | None, path_key: bytes, packet: bytes) -> str | None:
        """Peel and act; returns why the message was dropped, or None."""
        for _ in range(MAX_LOCAL_HOPS):
            try:
                res = await self._peel(path_key, packet)
            except OnionMessageError as e:
                return str(e)
            if isinstance(res, Final):
                secret = res.path_secret
                self.master.send("connectd_got_onionmsg_to_us", {
                    "path_key": res.path_key, "has_path_secret": secret is not None,
                    "path_secret": secret or bytes(32), "payload": res.payload.encode()})
                return None
            if res.next_node_id == self.node_id():
                path_key, packet = res.path_key, res.packet        # ours again: peel the next layer
                continue
            if res.next_node_id is None:
                self.master.send("connectd_onionmsg_to_scid", {"short_channel_id": res.short_channel_id,
                                                               "path_key": res.path_key, "onion": res.packet})
                return None
            if not self.send(res.next_node_id, res.path_key, res.packet):
                return f"next peer {res.next_node_id.hex()} not connected"
            return None
        return "too many hops of our own"


async def _send_quietly(peer: "Peer", msg: bytes) -> None:
    try:
        await peer.send(msg)
    except (OSError, EOFError):    # the peer went away (ConnectionClosed): onion messages are unreliable
        pass
