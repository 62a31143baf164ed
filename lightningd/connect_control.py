"""The master's side of connectd: start/init/activate, restart after a
crash, and turn connectd's events into peer state, hooks and notifications."""
from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from common.daemon_conn import Msg, RequestFailed
from common.features import Context
from common.logtext import fit_utf8, peer_data
from wire.hsm_caps import CAP_ECDH
from wire.internal import internal_schema

from .jsonrpc_errors import CONNECT_DISCONNECTED_DURING, RpcError
from .subd import Subd
from .supervision import RestartBudget, restart

if TYPE_CHECKING:
    from .lightningd import LightningD


# a BOLT 1 error/warning: u16 type, 32-byte channel_id, u16 length, then data
MAX_ERROR_DATA = 65535 - 2 - 32 - 2


class StartupError(Exception):
    pass


class ConnectControl:
    # connectd -> master messages that are not replies, and their handlers.
    HANDLERS = {
        "connectd_peer_connected": "handle_peer_connected",
        "connectd_connect_failed": "handle_connect_failed",
        "connectd_peer_disconnected": "handle_peer_disconnected",
        "connectd_peer_error": "handle_peer_error",
        "connectd_peer_spoke": "handle_peer_spoke",
        "connectd_got_onionmsg_to_us": "handle_got_onionmsg_to_us",
        "connectd_onionmsg_to_scid": "handle_onionmsg_to_scid",
    }

    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.subd: Subd | None = None
        self.binding: list[str] = []
        self.waiters: dict[bytes, list[asyncio.Future]] = {}
        self._reqid = 0
        self.restarts = RestartBudget()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, activate: bool = False) -> None:
        handlers = {name: getattr(self, meth) for name, meth in self.HANDLERS.items()}
        hsm_fd = await self.ld.hsm.client_fd("connectd", CAP_ECDH)
        self.subd = Subd("connectd", internal_schema("connectd"), handlers, self.ld.log.child("connectd"),
                         on_exit=self._on_exit, spawner=self.ld.zygote, gate=self.ld.db_gate)
        try:
            self.subd.start(hsm_fd=hsm_fd)
        finally:
            os.close(hsm_fd)
        cfg = self.ld.cfg
        try:
            reply = await self.subd.request("connectd_init", {
                "id": self.ld.node_id,
                "chain_hash": self.ld.network.chain_hash,
                "our_features": self.ld.our_features(Context.INIT),
                "bind": [{"addr": str(a)} for a in self.ld.listen_addrs()],
                "dev_allow_localhost": bool(cfg.get("dev-allow-localhost")),
                "ping_interval": 60,
                "handshake_timeout": 60,
                "log_io": self.ld.log.book.min_level() == 0,
                "dev_disconnect": self._dev_disconnect_script(),
            }, timeout=60)
        except RequestFailed as e:
            raise StartupError(e.msg.fields.get("reason", "connectd failed")) from None
        self.binding = [b["addr"] for b in reply["bound"]]
        if activate:
            await self.activate()

    def _dev_disconnect_script(self) -> str:
        path = self.ld.cfg.get("dev-disconnect") if self.ld.cfg.developer else None
        if not path:
            return ""
        try:
            with open(os.path.expanduser(path)) as f:
                return f.read()
        except OSError as e:
            raise StartupError(f"--dev-disconnect: {e}") from None

    async def activate(self) -> None:
        assert self.subd is not None
        listen = not self.ld.cfg.get("offline")
        await self.subd.request("connectd_activate", {"listen": listen}, timeout=60)
        if not listen:
            self.binding = []

    async def stop(self) -> None:
        if self.subd is not None:
            await self.subd.stop()

    async def _on_exit(self, subd: Subd, rc: int) -> None:
        if self.ld.stopping:
            return
        # Every peer connection lived in connectd: they are gone.
        for pid in [p.id for p in self.ld.peers.values() if p.connected]:
            self.ld.peer_disconnected(pid)
        for node_id, futs in list(self.waiters.items()):
            for f in futs:
                if not f.done():
                    f.set_exception(RpcError(CONNECT_DISCONNECTED_DURING, "connectd died during connect"))
        self.waiters.clear()

        async def start() -> None:
            await self.start(activate=True)
            self.ld.gossipd.link_connectd()
        await restart(self.ld, "connectd", start, self.restarts)

    # -- requests ----------------------------------------------------------------------
    async def connect(self, node_id: bytes, addrs: list[str], timeout: float = 90.0) -> None:
        """Dial (or find already connected) `node_id`; raises RpcError."""
        if self.subd is None or not self.subd.running:
            # died and not restarted yet: nothing would ever answer
            raise RpcError(CONNECT_DISCONNECTED_DURING, "connectd is restarting")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(node_id, []).append(fut)
        self.subd.send("connectd_connect_to_peer", {"id": node_id, "addrs": [{"addr": a} for a in addrs]})
        await asyncio.wait_for(fut, timeout)

    async def handle_got_onionmsg_to_us(self, msg: Msg) -> None:
        await self.ld.onion_messages.got_to_us(msg)

    def handle_onionmsg_to_scid(self, msg: Msg) -> None:
        self.ld.onion_messages.to_scid(msg)

    def send_onionmsg(self, node_id: bytes, path_key: bytes, onion: bytes) -> None:
        if self.subd is not None and self.subd.running:
            self.subd.send("connectd_send_onionmsg", {"id": node_id, "path_key": path_key, "onion": onion})

    async def inject_onionmsg(self, path_key: bytes, onion: bytes) -> str:
        """connectd processes an onion we made (its first hop is us); the
        reason it could not send it, or ""."""
        if self.subd is None or not self.subd.running:
            return "connectd is restarting"
        try:
            r = await self.subd.request("connectd_inject_onionmsg", {"path_key": path_key, "onion": onion})
        except (RequestFailed, ConnectionError, EOFError) as e:
            return f"connectd: {e}"
        return r["err"]

    def discard(self, node_id: bytes) -> None:
        if self.subd is not None and self.subd.running:
            self.subd.send("connectd_discard_peer", {"id": node_id})

    def send_error(self, node_id: bytes, text: str, warning: bool = True, disconnect: bool = False,
                   channel_id: bytes = b"\x00" * 32) -> None:
        if self.subd is not None and self.subd.running:
            # the text may quote a plugin or a peer: it must fit the message (and the peer's)
            self.subd.send("connectd_send_peer_error", {"id": node_id, "channel_id": channel_id,
                                                        "warning": warning, "disconnect": disconnect,
                                                        "text": fit_utf8(text, MAX_ERROR_DATA)})

    async def ping(self, node_id: bytes, num_pong_bytes: int, length: int) -> int:
        assert self.subd is not None
        self._reqid += 1
        reply = await self.subd.request("connectd_ping", {"reqid": self._reqid, "id": node_id,
                                                          "num_pong_bytes": num_pong_bytes, "len": length})
        return reply["totlen"]

    def _resolve(self, node_id: bytes, exc: Exception | None) -> None:
        for f in self.waiters.pop(node_id, []):
            if not f.done():
                f.set_exception(exc) if exc is not None else f.set_result(None)

    # -- events ------------------------------------------------------------------------
    async def handle_peer_connected(self, msg: Msg) -> None:
        f = msg.fields
        node_id = f["id"]
        err = await self.ld.peer_connected(node_id, f["incoming"], f["addr"]["addr"], f["features"])
        if err is None and self.subd is not None and self.subd.running:
            # route its channels to their daemons first, then let connectd read
            for channel_id, fd in await self.ld.peer_channel_fds(node_id):
                try:
                    self.subd.send("connectd_peer_connect_subd", {"id": node_id, "channel_id": channel_id},
                                   fds=[fd])
                finally:
                    os.close(fd)
            self.subd.send("connectd_peer_activate", {"id": node_id})
        self._resolve(node_id, err)

    def handle_connect_failed(self, msg: Msg) -> None:
        f = msg.fields
        self._resolve(f["id"], RpcError(f["errcode"], f["reason"]))

    async def handle_peer_spoke(self, msg: Msg) -> None:
        await self.ld.peer_spoke(msg["id"], msg["msg"])

    def attach_channel(self, node_id: bytes, channel_id: bytes, fd: int) -> None:
        """Route a (new) channel daemon's socketpair end for a connected peer."""
        assert self.subd is not None
        try:
            self.subd.send("connectd_peer_connect_subd", {"id": node_id, "channel_id": channel_id}, fds=[fd])
        finally:
            os.close(fd)

    def handle_peer_disconnected(self, msg: Msg) -> None:
        self.ld.peer_disconnected(msg["id"])

    def handle_peer_error(self, msg: Msg) -> None:
        f = msg.fields
        kind = "warning" if f["warning"] else "error"
        self.ld.log.child("connectd", f["id"].hex()).info(f"peer sent {kind}: {peer_data(f['data'])}")
