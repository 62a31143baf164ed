"""connectd: listens and dials, runs the BOLT 8 handshake (ECDH asked of
hsmd), `init`, keepalive pings, and routes each peer's messages.

Routing table: messages carrying a `channel_id` go to the daemon registered
for that channel (`channel_routes`, filled when channels exist); gossip goes
to gossipd; the rest is handled here."""
from __future__ import annotations

import asyncio
import socket

from common.daemon import Daemon
from common.daemon_conn import DaemonConn, Msg
from common.features import OPTION_ONION_MESSAGES, has_feature
from common.noise import HandshakeError
from common.noise_async import ConnectionClosed, handshake_initiator, handshake_responder
from common.wireaddr import AddressParseError, WireAddr, parse_wireaddr
from wire.internal import internal_schema

from common.msgconn import MsgConn

from .channel_link import ChannelLink
from .dev_disconnect import DevDisconnect
from .onion_message import OnionMessenger
from .peer import GOSSIP_MSGS, InitError, Peer, random_pong_len

CONNECT_ALL_ADDRESSES_FAILED = 401
CONNECT_TIMEOUT = 10.0


def _nodelay(writer: asyncio.StreamWriter) -> None:
    """Lightning is request/response over small messages: Nagle's algorithm
    plus delayed ACKs would add ~40 ms to every commitment round trip."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _close(fd: int) -> None:
    import os
    try:
        os.close(fd)
    except OSError:
        pass


class Connectd:
    # Every master -> connectd message of the schema, and its handler.
    MASTER_HANDLERS = {
        "connectd_init": "handle_init",
        "connectd_activate": "handle_activate",
        "connectd_connect_to_peer": "handle_connect_to_peer",
        "connectd_discard_peer": "handle_discard_peer",
        "connectd_ping": "handle_ping",
        "connectd_send_peer_error": "handle_send_peer_error",
        "connectd_peer_connect_subd": "handle_peer_connect_subd",
        "connectd_peer_activate": "handle_peer_activate",
        "connectd_gossipd_link": "handle_gossipd_link",
        "connectd_send_onionmsg": "handle_send_onionmsg",
        "connectd_inject_onionmsg": "handle_inject_onionmsg",
    }

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.status = d.status
        self.schema = internal_schema("connectd")
        handlers = {name: getattr(self, meth) for name, meth in self.MASTER_HANDLERS.items()}
        self.master = DaemonConn(d.master, self.schema, handlers,
                                 on_error=lambda e: self.status.broken(f"master link: {e}"))
        assert d.hsm is not None, "connectd needs its hsmd link on fd 3"
        self.hsm = DaemonConn(d.hsm, internal_schema("hsmd"), {},
                              on_error=lambda e: self.status.broken(f"hsmd link: {e}"))
        self.peers: dict[bytes, Peer] = {}
        self.peer_tasks: dict[bytes, asyncio.Task] = {}
        self.dialing: dict[bytes, asyncio.Task] = {}
        # (peer id, channel_id) -> the channel daemon's link; messages for a
        # channel nobody handles go to the master (connectd_peer_spoke)
        self.channel_routes: dict[tuple[bytes, bytes], ChannelLink] = {}
        self.dev_disconnect: DevDisconnect | None = None
        self.gossipd: DaemonConn | None = None
        self.servers: list[asyncio.base_events.Server] = []
        self.listen_socks: list[socket.socket] = []
        self.bound: list[WireAddr] = []
        self.node_id = b""
        self.chain_hash = b""
        self.our_features = b""
        self.ping_interval = 60
        self.handshake_timeout = 60
        self.log_io = False
        self.onion = OnionMessenger(lambda: self.node_id, self._ecdh, self.peers, self.master, self.status)

    async def run(self) -> None:
        self.master.start()
        self.hsm.start()
        await self.master.wait_closed()
        for p in list(self.peers.values()):
            p.close()

    # -- master requests ---------------------------------------------------------------
    def handle_init(self, msg: Msg) -> None:
        f = msg.fields
        self.node_id = f["id"]
        self.chain_hash = f["chain_hash"]
        self.our_features = f["our_features"]
        self.ping_interval = f["ping_interval"]
        self.handshake_timeout = f["handshake_timeout"]
        self.log_io = f["log_io"]
        if f["dev_disconnect"]:
            self.dev_disconnect = DevDisconnect(f["dev_disconnect"])
        # Bind now (so the master can report failures at start) but accept
        # only after connectd_activate.
        try:
            for a in f["bind"]:
                addr = parse_wireaddr(a["addr"], 0)
                self.listen_socks.append(self._bind(addr))
        except (OSError, AddressParseError) as e:
            for s in self.listen_socks:
                s.close()
            self.listen_socks = []
            self.master.send("connectd_init_fail", {"reason": f"Failed to bind on {a['addr']}: {e}"})
            return
        self.master.send("connectd_init_reply", {"bound": [{"addr": str(b)} for b in self.bound]})
        asyncio.ensure_future(self._keepalive())

    def _bind(self, addr: WireAddr) -> socket.socket:
        family = socket.AF_INET6 if addr.kind == "ipv6" else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr.host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), addr.port))
        s.listen(128)
        s.setblocking(False)
        host, port = s.getsockname()[:2]
        self.bound.append(WireAddr(addr.host or host, port))
        return s

    async def handle_activate(self, msg: Msg) -> None:
        if msg["listen"]:
            for s in self.listen_socks:
                self.servers.append(await asyncio.start_server(self._on_incoming, sock=s))
        else:
            for s in self.listen_socks:
                s.close()
        self.listen_socks = []
        self.master.send("connectd_activate_reply", {})

    def handle_connect_to_peer(self, msg: Msg) -> None:
        node_id = msg["id"]
        if node_id in self.peers:
            # Already connected: tell the master again (it may have missed nothing,
            # but the connect command is waiting for this).
            p = self.peers[node_id]
            self._send_connected(p)
            return
        if node_id in self.dialing:
            return
        addrs = [a["addr"] for a in msg["addrs"]]
        self.dialing[node_id] = asyncio.ensure_future(self._dial(node_id, addrs))

    async def handle_discard_peer(self, msg: Msg) -> None:
        p = self.peers.get(msg["id"])
        if p is not None:
            p.close()
            await p.closed.wait()

    async def handle_ping(self, msg: Msg) -> None:
        f = msg.fields
        p = self.peers.get(f["id"])
        if p is None:
            self.master.send("connectd_ping_fail", {"reqid": f["reqid"], "reason": "No such peer"})
            return

        async def do_ping() -> None:
            try:
                totlen = await p.ping(f["num_pong_bytes"], f["len"])
            except Exception as e:  # any failure must answer, or the ping command hangs
                self.master.send("connectd_ping_fail", {"reqid": f["reqid"],
                                                        "reason": f"Ping failed: {type(e).__name__}"})
                return
            self.master.send("connectd_ping_reply", {"reqid": f["reqid"], "totlen": totlen})
        asyncio.ensure_future(do_ping())  # don't hold the master queue while waiting

    def handle_peer_connect_subd(self, msg: Msg) -> None:
        node_id, cid = msg["id"], msg["channel_id"]
        if len(msg.fds) != 1:
            self.status.broken(f"connect_subd with {len(msg.fds)} fds", node_id)
            for fd in msg.fds:
                _close(fd)
            return
        peer = self.peers.get(node_id)
        conn = MsgConn.from_fd(msg.fds[0])
        if peer is None:
            # gone meanwhile: closing the link tells the channel daemon
            conn.close()
            return
        old = self.channel_routes.get((node_id, cid))
        if old is not None:
            old.close()
        link = ChannelLink(peer, conn, cid, self.status, self.dev_disconnect,
                           on_route=lambda lk, c: self._add_route(lk, c), on_close=self._link_closed)
        self.channel_routes[(node_id, cid)] = link
        peer.links.append(link)

    def _add_route(self, link: ChannelLink, cid: bytes) -> None:
        self.channel_routes[(link.peer.id, cid)] = link

    def _link_closed(self, link: ChannelLink) -> None:
        for cid in link.channel_ids:
            if self.channel_routes.get((link.peer.id, cid)) is link:
                del self.channel_routes[(link.peer.id, cid)]
        if link in link.peer.links:
            link.peer.links.remove(link)

    def handle_peer_activate(self, msg: Msg) -> None:
        peer = self.peers.get(msg["id"])
        if peer is not None:
            peer.activated.set()
            self._to_gossipd("gl_peer_connected", {"id": peer.id, "features": peer.features})

    def handle_gossipd_link(self, msg: Msg) -> None:
        if len(msg.fds) != 1:
            return
        if self.gossipd is not None:
            self.gossipd.close()
        self.gossipd = DaemonConn(MsgConn.from_fd(msg.fds[0]), internal_schema("gossip_link"),
                                  {"gl_send": self._gossip_send},
                                  on_error=lambda e: self.status.broken(f"gossipd link: {e}"))
        self.gossipd.start()
        for p in self.peers.values():   # a new gossipd learns who is here
            if p.activated.is_set():
                self._to_gossipd("gl_peer_connected", {"id": p.id, "features": p.features})

    def _to_gossipd(self, name: str, fields: dict) -> None:
        if self.gossipd is not None and not self.gossipd.conn.closed:
            try:
                self.gossipd.send(name, fields)
            except ConnectionClosed:
                pass

    async def _gossip_send(self, msg: Msg) -> None:
        p = self.peers.get(msg["id"])
        if p is not None and p.activated.is_set():
            try:
                await p.send(msg["msg"])
            except (ConnectionClosed, OSError):
                pass

    async def handle_send_peer_error(self, msg: Msg) -> None:
        f = msg.fields
        p = self.peers.get(f["id"])
        if p is None:
            return
        await p.send_warning(f["text"], f["channel_id"], error=not f["warning"])
        if f["disconnect"]:
            p.close()

    def handle_send_onionmsg(self, msg: Msg) -> None:
        f = msg.fields
        if not self.onion.send(f["id"], f["path_key"], f["onion"]):
            self.status.debug("onion message to a peer that is gone: dropped", f["id"])

    async def handle_inject_onionmsg(self, msg: Msg) -> None:
        err = await self.onion.inject(msg["path_key"], msg["onion"])
        self.master.send("connectd_inject_onionmsg_reply", {"err": err})

    # -- connections -------------------------------------------------------------------
    async def _ecdh(self, point: bytes) -> bytes:
        reply = await self.hsm.request("hsmd_ecdh_req", {"point": point})
        return reply["ss"]

    async def _on_incoming(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        peername = writer.get_extra_info("peername")
        addr = f"[{peername[0]}]:{peername[1]}" if ":" in str(peername[0]) else f"{peername[0]}:{peername[1]}"
        try:
            conn = await handshake_responder(reader, writer, self.node_id, self._ecdh,
                                             timeout=self.handshake_timeout)
        except HandshakeError as e:
            self.status.debug(f"incoming handshake from {addr} failed: {e}")
            return
        await self._start_peer(conn, True, addr)

    async def _dial(self, node_id: bytes, addrs: list[str]) -> None:
        errors: list[str] = []
        try:
            for a in addrs:
                try:
                    wa = parse_wireaddr(a, 9735)
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(wa.host, wa.port),
                                                            CONNECT_TIMEOUT)
                    _nodelay(writer)
                except (OSError, asyncio.TimeoutError, AddressParseError) as e:
                    errors.append(f"{a}: {type(e).__name__}: {e}")
                    continue
                try:
                    conn = await handshake_initiator(reader, writer, self.node_id, self._ecdh, node_id,
                                                     timeout=self.handshake_timeout)
                except HandshakeError as e:
                    errors.append(f"{a}: Cryptographic handshake: {e}")
                    continue
                err = await self._start_peer(conn, False, str(wa))
                if err is None:
                    return
                errors.append(f"{a}: {err}")
            reason = "All addresses failed: " + ". ".join(errors) if errors else "No addresses"
            self.master.send("connectd_connect_failed", {"id": node_id, "errcode": CONNECT_ALL_ADDRESSES_FAILED,
                                                         "reason": reason})
        finally:
            self.dialing.pop(node_id, None)

    async def _start_peer(self, conn, incoming: bool, addr: str) -> str | None:
        """Exchange init and register the peer; returns an error string on failure."""
        node_id = conn.remote_pubkey
        peer = Peer(node_id, conn, incoming, addr, self.status, self.log_io)
        try:
            await peer.exchange_init(self.our_features, self.chain_hash, self.handshake_timeout)
        except InitError as e:
            self.status.unusual(f"init failed: {e.warning}", node_id)
            await peer.send_warning(e.warning)
            peer.close()
            return e.warning
        except (ConnectionClosed, asyncio.TimeoutError, OSError) as e:
            peer.close()
            return f"init: {type(e).__name__}"
        old = self.peers.get(node_id)
        if old is not None:
            # A reconnect replaces the old connection (Core Lightning does the same).
            self.status.debug("peer reconnected: dropping the old connection", node_id)
            old.close()
            task = self.peer_tasks.get(node_id)
            if task is not None:
                await asyncio.wait([task])
        self.peers[node_id] = peer
        self.status.debug(f"connected {'in' if incoming else 'out'} {addr}", node_id)
        self._send_connected(peer)
        self.peer_tasks[node_id] = asyncio.ensure_future(self._peer_main(peer))
        return None

    def _send_connected(self, peer: Peer) -> None:
        self.master.send("connectd_peer_connected", {"id": peer.id, "incoming": peer.incoming,
                                                     "addr": {"addr": peer.addr}, "features": peer.features})

    async def _peer_main(self, peer: Peer) -> None:
        try:
            # Nothing is read from the peer before the master has accepted it
            # and routed its channels (so no message races its channel daemon).
            closed = asyncio.ensure_future(peer.closed.wait())
            activated = asyncio.ensure_future(peer.activated.wait())
            await asyncio.wait([closed, activated], return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            activated.cancel()
            if peer.activated.is_set() and not peer.closed.is_set():
                await peer.run(self._route)
        finally:
            peer.close()
            peer.closed.set()
            for link in list(peer.links):
                link.close()
            if self.peers.get(peer.id) is peer:
                del self.peers[peer.id]
                self.peer_tasks.pop(peer.id, None)
            self.status.debug("disconnected", peer.id)
            if peer.activated.is_set():
                self._to_gossipd("gl_peer_disconnected", {"id": peer.id})
            if not self.master.conn.closed:
                self.master.send("connectd_peer_disconnected", {"id": peer.id})

    def _route(self, peer: Peer, name: str, fields: dict, raw: bytes):
        if name in ("warning", "error"):
            # the master logs it (sanitized): the raw bytes go up as they came
            self.master.send("connectd_peer_error", {"id": peer.id, "channel_id": fields["channel_id"],
                                                     "warning": name == "warning", "data": fields["data"]})
            target = self.channel_routes.get((peer.id, fields["channel_id"]))
            if target is not None:
                target.deliver(raw)
            elif fields["channel_id"] == b"\x00" * 32 and name == "error":
                for link in list(peer.links):  # an error for all channels
                    link.deliver(raw)
            return None
        if name == "onion_message":
            if has_feature(self.our_features, OPTION_ONION_MESSAGES):
                return self.onion.from_peer(peer, fields)
            return None
        if name in GOSSIP_MSGS and name != "announcement_signatures":
            self._to_gossipd("gl_peer_msg", {"id": peer.id, "msg": raw})
            return None
        cid = fields.get("channel_id", fields.get("temporary_channel_id")) if isinstance(fields, dict) else None
        if cid is not None:
            target = self.channel_routes.get((peer.id, cid))
            if target is not None:
                target.deliver(raw)
            else:
                # the master decides: a new channel, or one whose daemon isn't running
                self.master.send("connectd_peer_spoke", {"id": peer.id, "msg": raw})
            return None
        self.status.debug(f"unhandled message {name}", peer.id)
        return None

    async def _keepalive(self) -> None:
        """Ping a peer that has been silent for ping_interval; no pong within
        half that and the connection is considered dead."""
        import time
        while True:
            await asyncio.sleep(max(1, self.ping_interval // 4))
            now = time.monotonic()
            for p in list(self.peers.values()):
                if now - p.last_rx >= self.ping_interval and not p.pings:
                    asyncio.ensure_future(self._keepalive_ping(p))

    async def _keepalive_ping(self, p: Peer) -> None:
        try:
            await p.ping(random_pong_len(), 0, timeout=max(2, self.ping_interval / 2))
        except asyncio.TimeoutError:
            self.status.unusual("ping timeout: disconnecting", p.id)
            p.close()
        except (ConnectionClosed, OSError):
            pass
