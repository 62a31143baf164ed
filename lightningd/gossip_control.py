"""The master's side of gossipd: start it (with its link to connectd),
answer its funding-output lookups from the chain, tell it about our own
channels and node, and the gossip RPC commands (listchannels, listnodes,
getroute)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import TYPE_CHECKING, Any

from bitcoin.block import Block
from common.daemon_conn import Msg, RequestFailed
from common.features import Context
from common.msgconn import ConnectionClosed
from common.scid import ShortChannelId
from common.wireaddr_bolt7 import encode_addresses
from wire.hsm_caps import CAP_ECDH, CAP_SIGN_GOSSIP
from wire.internal import internal_schema

from . import channel as C
from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, PAY_ROUTE_NOT_FOUND, RpcError
from .params import opt, req
from .subd import Subd
from .supervision import RestartBudget, restart

if TYPE_CHECKING:
    from .channel import ChannelRecord
    from .lightningd import LightningD


def listchannels_entry(c: dict) -> dict:
    """A gossip_channel (wire/csv/gossipd.csv) as Core Lightning's listchannels shows it."""
    return {"source": c["source"].hex(), "destination": c["destination"].hex(),
            "short_channel_id": str(ShortChannelId.from_bytes(c["short_channel_id"])), "direction": c["direction"],
            "public": c["public"], "amount_msat": c["amount_msat"], "message_flags": c["message_flags"],
            "channel_flags": c["channel_flags"], "active": not c["channel_flags"] & 2,
            "last_update": c["last_update"], "base_fee_millisatoshi": c["base_fee_millisatoshi"],
            "fee_per_millionth": c["fee_per_millionth"], "delay": c["delay"],
            "htlc_minimum_msat": c["htlc_minimum_msat"], "htlc_maximum_msat": c["htlc_maximum_msat"],
            "features": c["features"].hex()}


def listnodes_entry(n: dict) -> dict:
    """A gossip_node (wire/csv/gossipd.csv) as Core Lightning's listnodes shows it."""
    out: dict = {"nodeid": n["nodeid"].hex()}
    a = n["announcement"]
    if a is not None:
        out.update({"alias": a["alias"], "color": a["color"].hex(), "last_timestamp": a["last_timestamp"],
                    "features": a["features"].hex(), "addresses": [dict(x) for x in a["addresses"]]})
    return out


class GossipControl:
    # gossipd -> master messages that are not replies, and their handlers.
    HANDLERS = {"gossipd_get_txout": "handle_get_txout",
                "gossipd_remote_channel_update": "handle_remote_channel_update"}

    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.subd: Subd | None = None
        self.restarts = RestartBudget()
        self.watched: dict[tuple[bytes, int], int] = {}   # public funding outpoints -> scid

    async def start(self) -> None:
        handlers = {name: getattr(self, meth) for name, meth in self.HANDLERS.items()}
        hsm_fd = await self.ld.hsm.client_fd("gossipd", CAP_SIGN_GOSSIP | CAP_ECDH)
        self.subd = Subd("gossipd", internal_schema("gossipd"), handlers, self.ld.log.child("gossipd"),
                         on_exit=self._on_exit, spawner=self.ld.zygote, gate=self.ld.db_gate)
        try:
            self.subd.start(hsm_fd=hsm_fd)
        finally:
            os.close(hsm_fd)
        await self.subd.request("gossipd_init", {"id": self.ld.node_id, "chain_hash": self.ld.network.chain_hash,
                                                 "dev_fast_gossip": bool(self.ld.cfg.get("dev-fast-gossip")),
                                                 "dev_fast_gossip_prune": bool(self.ld.cfg.get("dev-fast-gossip-prune")),
                                                 "blockheight": self.ld.blockheight}, timeout=120)
        self.link_connectd()
        self.send_node_info()

    def link_connectd(self) -> None:
        """A fresh socketpair between connectd and gossipd (after either started)."""
        c = self.ld.connectd.subd
        if self.subd is None or not self.subd.running or c is None or not c.running:
            return
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.subd.send("gossipd_connectd_link", {}, fds=[a.fileno()])
            c.send("connectd_gossipd_link", {}, fds=[b.fileno()])
        finally:
            a.close()
            b.close()

    def send_node_info(self) -> None:
        if self.subd is None or not self.subd.running:
            return
        self.subd.send("gossipd_node_info", {
            "alias": self.ld.alias.encode()[:32].ljust(32, b"\x00"), "rgb": self.ld.color,
            "features": self.ld.our_features(Context.NODE_ANNOUNCEMENT),
            "addresses": encode_addresses(self.ld.announce_addrs())})

    def new_blockheight(self, height: int) -> None:
        if self.subd is not None and self.subd.running:
            self.subd.send("gossipd_new_blockheight", {"blockheight": height})

    def local_channel(self, rec: "ChannelRecord") -> None:
        """Tell gossipd about one of our channels (and our policy) once it
        has an scid or an alias (a zero-conf channel before its funding
        confirms has only the alias)."""
        if self.subd is None or not self.subd.running or (rec.scid is None and rec.alias_local is None):
            return
        ann = rec.config["channel_announcement"] if rec.announce else b""
        enabled = rec.state == C.NORMAL and self.ld.is_connected(rec.peer_id)
        self.subd.send("gossipd_local_channel", {
            "scid": rec.scid.to_int() if rec.scid else 0, "peer_id": rec.peer_id, "capacity_sat": rec.funding_sat,
            "announcement": ann, "enabled": enabled, "fee_base_msat": rec.fee_base_msat, "fee_ppm": rec.fee_ppm,
            "cltv_delta": rec.cltv_delta, "htlc_minimum_msat": rec.htlc_minimum_msat,
            "htlc_maximum_msat": rec.htlc_maximum_msat, "local_alias": rec.alias_local or 0,
            "remote_alias": rec.alias_remote or 0, "peer_synced": self.ld.is_connected(rec.peer_id) and rec.reestablished})

    def handle_remote_channel_update(self, msg: Msg) -> None:
        """The peer's policy for its direction of an unannounced channel
        (listpeerchannels' updates.remote, our route hints)."""
        rec = self.ld.channels.by_alias_or_scid(msg["peer_id"], msg["scid"])
        if rec is None:
            return
        old = rec.remote_update
        if old is not None and old.get("timestamp", 0) >= msg["timestamp"]:
            return
        rec.remote_update = {"fee_base_msat": msg["fee_base_msat"], "fee_proportional_millionths": msg["fee_ppm"],
                             "cltv_expiry_delta": msg["cltv_delta"], "htlc_minimum_msat": msg["htlc_minimum_msat"],
                             "htlc_maximum_msat": msg["htlc_maximum_msat"], "timestamp": msg["timestamp"],
                             "enabled": msg["enabled"]}
        assert self.ld.db is not None
        with self.ld.db.transaction():
            self.ld.db.execute("UPDATE channels SET remote_update = ? WHERE dbid = ?",
                               (json.dumps(rec.remote_update), rec.dbid))

    async def handle_get_txout(self, msg: Msg) -> None:
        """The funding output of a short channel id, from the chain (block,
        tx index, output), and whether it is still unspent."""
        scid = ShortChannelId.from_int(msg["scid"])
        assert self.subd is not None
        try:
            blk = await self.ld.backend.getrawblockbyheight(scid.block)
            if not blk.get("block"):
                raise LookupError("no such block")
            block = Block.parse(bytes.fromhex(blk["block"]))
            tx = block.txs[scid.txindex]
            out = tx.outputs[scid.outnum]
            utxo = await self.ld.backend.getutxout(tx.txid_hex, scid.outnum)
            spent = utxo.get("amount") is None
        except (LookupError, IndexError, Exception) as e:
            self.ld.log.debug(f"txout {scid}: {e}")
            self.subd.send("gossipd_get_txout_fail", {"scid": msg["scid"]})
            return
        if not spent:
            self.watched[(tx.txid(), scid.outnum)] = msg["scid"]
        self.subd.send("gossipd_get_txout_reply", {"scid": msg["scid"], "satoshis": out.value, "spent": spent,
                                                   "script": out.script_pubkey})

    # topology listener: spends of public channels' funding outputs
    def block_connected(self, height: int, block: Block) -> None:
        if not self.watched:
            return
        spent = []
        for tx in block.txs:
            for i in tx.inputs:
                scid = self.watched.pop((i.prevout.txid, i.prevout.index), None)
                if scid is not None:
                    spent.append(scid)
        if spent and self.subd is not None and self.subd.running:
            self.subd.send("gossipd_outpoints_spent", {"scids": spent})

    def block_disconnected(self, height: int) -> None:
        return None

    async def getroutes(self, request: dict) -> list[list[dict]]:
        """gossipd's routes (wire/csv/gossipd.csv gossipd_getroutes, the
        fields of ``request``), as getroute's hops; RpcError 205 if none."""
        assert self.subd is not None
        try:
            r = await self.subd.request("gossipd_getroutes", request, timeout=60)
        except RequestFailed as e:
            raise RpcError(PAY_ROUTE_NOT_FOUND, e.msg.fields.get("reason", "Could not find a route")) from None
        return [[{"id": h["id"].hex(), "channel": str(ShortChannelId.from_int(h["scid"])), "direction": h["direction"],
                  "amount_msat": h["amount_msat"], "delay": h["delay"], "style": "tlv"} for h in route["hops"]]
                for route in r["routes"]]

    async def channel_update(self, scid: int | None, local_alias: int = 0) -> bytes:
        """Our channel_update for an onion error: the latest of a public
        channel; of an unannounced one (its `local_alias`), one naming it by
        `scid`, the short channel id the onion used.  Empty if there is
        none, or gossipd cannot say."""
        if scid is None or self.subd is None or not self.subd.running:
            return b""
        try:
            r = await self.subd.request("gossipd_get_channel_update", {"scid": scid, "local_alias": local_alias},
                                        timeout=10)
        except (RequestFailed, asyncio.TimeoutError, ConnectionClosed):
            return b""
        return r["update"]

    async def listnodes(self, node_id: bytes | None = None) -> list[dict]:
        """gossipd's listnodes (of one node): [] if it does not know it; as
        Core Lightning's listnodes shows them."""
        if self.subd is None or not self.subd.running:
            return []
        r = await self.subd.request("gossipd_listnodes", {"id": node_id}, timeout=60)
        return [listnodes_entry(n) for n in r["nodes"]]

    async def listchannels(self, source: bytes | None = None, *, short_channel_id: int | None = None,
                           destination: bytes | None = None) -> list[dict]:
        """gossipd's listchannels (from ``source``, to ``destination``, or of
        one short channel id; all of them without any), as Core Lightning's
        listchannels shows them."""
        if self.subd is None or not self.subd.running:
            return []
        r = await self.subd.request("gossipd_listchannels", {"short_channel_id": short_channel_id, "source": source,
                                                             "destination": destination}, timeout=60)
        return [listchannels_entry(c) for c in r["channels"]]

    async def dev_suppress(self) -> None:
        if self.subd is not None and self.subd.running:
            self.subd.send("gossipd_dev_suppress", {})

    async def stop(self) -> None:
        if self.subd is not None:
            await self.subd.stop()

    async def _on_exit(self, subd: Subd, rc: int) -> None:
        async def start() -> None:
            await self.start()
            for rec in self.ld.channels.channels.values():
                self.local_channel(rec)
        await restart(self.ld, "gossipd", start, self.restarts)


def register(ld: "LightningD") -> None:
    g = ld.gossipd
    cmd = ld.registry.command

    @cmd("dev-suppress-gossip", [], category="developer", dev_only=True,
         description="Stop this node from sending any more gossip.")
    async def dev_suppress_gossip(ctx: RequestContext) -> dict:
        await g.dev_suppress()
        return {}

    @cmd("listchannels", [opt("short_channel_id", P.short_channel_id), opt("source", P.node_id),
                          opt("destination", P.node_id)], category="channels",
         description="Show channel {short_channel_id} or {source} (or all known channels, if not specified)")
    async def listchannels(ctx: RequestContext, short_channel_id: Any, source: bytes | None,
                           destination: bytes | None) -> dict:
        if sum(x is not None for x in (short_channel_id, source, destination)) > 1:
            raise RpcError(INVALID_PARAMS, "Can only specify one of short_channel_id, source or destination")
        return {"channels": await g.listchannels(
            source, short_channel_id=short_channel_id.to_int() if short_channel_id is not None else None,
            destination=destination)}

    @cmd("listnodes", [opt("id", P.node_id)], category="network",
         description="Show node {id} (or all known nodes, if not specified)")
    async def listnodes(ctx: RequestContext, id: bytes | None) -> dict:
        return {"nodes": await g.listnodes(id)}

    @cmd("getroute", [req("id", P.node_id), req("amount_msat", P.msat), req("riskfactor", P.nonneg_number),
                      opt("cltv", P.u32, 9), opt("fromid", P.node_id), opt("fuzzpercent", P.nonneg_number, 5),
                      opt("exclude", P.route_exclusions), opt("maxhops", P.u32, 20)], category="channels",
         description="Show route to {id} for {amount_msat}, using {riskfactor} and optional {cltv} (default 9). "
                     "If specified search from {fromid} otherwise use this node as source.")
    async def getroute(ctx: RequestContext, id: bytes, amount_msat: int, riskfactor: float, cltv: int,
                       fromid: bytes | None, fuzzpercent: float, exclude: list[str] | None, maxhops: int) -> dict:
        # Parameters are all checked above (-32602): whatever gossipd refuses
        # from here on means there is no route (205).  Core Lightning accepts
        # any non-negative fuzzpercent (and ignores it); ours fuzzes fees by
        # at most 100%.
        route = await ld.find_route(id, amount_msat, cltv, set(exclude or []),
                                    riskfactor=riskfactor, fuzzpercent=min(fuzzpercent, 100), maxhops=maxhops,
                                    source=fromid)
        return {"route": route}
