"""gossipd: owns the public channel graph.  It validates the gossip peers
send (funding outputs are asked of the master's chain view), keeps it in the
gossip store, relays what is new (staggered), answers gossip queries, makes
and signs (through hsmd) our own channel_updates and node_announcement, and
finds routes for `getroute` / `pay`.

Links: the master (fd 0), hsmd (fd 3, signing gossip), and connectd (a
socketpair the master passes with gossipd_connectd_link): peers' gossip
never goes through the master."""
from __future__ import annotations

import asyncio
import struct
import time


from bitcoin.script import multisig_2of2_script, p2wsh_script
from common.daemon import Daemon
from common.daemon_conn import DaemonConn, Msg, RequestFailed
from common.features import GOSSIP_QUERIES, has_feature
from common.msgconn import MsgConn
from common.scid import ShortChannelId, ShortChannelIdDir
from wire import DecodeError, bolt_schema
from wire.internal import internal_schema

from .graph import ACCEPTED, U_OFF, U_TS
from .manager import GossipManager
from .private import DONT_FORWARD, PrivateChannel, PrivateChannels, unsigned_update
from .queries import (TimestampFilter, answer_query_short_channel_ids, filtered_gossip, gossip_timestamp_filter,
                      parse_reply_channel_range, query_channel_range, query_short_channel_ids, reply_channel_range)
from .routing import ChannelLimit, ChannelPolicy, LocalChannel, RouteNotFound, Router
from .store import GossipStore
from .validate import (GossipError, check_channel_update, forwardable_node_announcement, parse_channel_announcement,
                       parse_channel_update, parse_node_announcement)

STORE_FILE = "gossip_store"
BROADCAST_INTERVAL = 60.0
FAST_BROADCAST_INTERVAL = 1.0
MAX_UNRELAYED = 10_000      # channel_announcements kept waiting for their first channel_update
# Our channel_updates are re-signed before they get this old, so that nobody
# prunes our channels (BOLT 7: SHOULD prune after two weeks without update).
REFRESH_AGE = 13 * 24 * 3600
PRUNE_AGE = 14 * 24 * 3600
MAINTENANCE_INTERVAL = 3600.0
# --dev-fast-gossip-prune, as Core Lightning: prune after 60 s, so a test can see it
FAST_PRUNE_AGE = 60
FAST_REFRESH_AGE = 20
FAST_MAINTENANCE_INTERVAL = 5.0


class PeerGossip:
    def __init__(self, node_id: bytes, features: bytes) -> None:
        self.id = node_id
        self.features = features
        self.filter: TimestampFilter | None = None
        self.queries = has_feature(features, GOSSIP_QUERIES)


class Gossipd:
    # Every master -> gossipd message of the schema, and its handler.
    MASTER_HANDLERS = {
        "gossipd_init": "handle_init",
        "gossipd_new_blockheight": "handle_new_blockheight",
        "gossipd_outpoints_spent": "handle_outpoints_spent",
        "gossipd_local_channel": "handle_local_channel",
        "gossipd_getroutes": "handle_getroutes",
        "gossipd_listchannels": "handle_listchannels",
        "gossipd_listnodes": "handle_listnodes",
        "gossipd_node_info": "handle_node_info",
        "gossipd_connectd_link": "handle_connectd_link",
        "gossipd_get_channel_update": "handle_get_channel_update",
        "gossipd_dev_suppress": "handle_dev_suppress",
    }
    # Every connectd -> gossipd message of wire/csv/gossip_link.csv.
    LINK_HANDLERS = {
        "gl_peer_connected": "handle_peer_connected",
        "gl_peer_disconnected": "handle_peer_disconnected",
        "gl_peer_msg": "handle_peer_msg",
    }

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.status = d.status
        handlers = {name: getattr(self, meth) for name, meth in self.MASTER_HANDLERS.items()}
        self.master = DaemonConn(d.master, internal_schema("gossipd"), handlers,
                                 on_error=lambda e: self.status.broken(f"master link: {e}"))
        self.hsm = DaemonConn(d.hsm, internal_schema("hsmd"), {}) if d.hsm is not None else None
        self.link: DaemonConn | None = None
        self.node_id = b""
        self.chain_hash = b""
        self.blockheight = 0
        self.mgr: GossipManager | None = None
        self.router: Router | None = None
        self.peers: dict[bytes, PeerGossip] = {}
        self.to_broadcast: list[tuple[bytes, int]] = []    # (message, timestamp)
        #: accepted channel_announcements not relayed yet: no channel_update so far
        self.unrelayed: dict[int, bytes] = {}
        self.interval = BROADCAST_INTERVAL
        self.prune_age, self.refresh_age, self.maintenance_interval = PRUNE_AGE, REFRESH_AGE, MAINTENANCE_INTERVAL
        self.local: dict[int, dict] = {}                   # our channels: scid -> policy
        self.local_updates: dict[int, bytes] = {}          # our latest channel_update of each
        self.private = PrivateChannels(b"", b"")           # our channels as between us and the peer
        self.suppressed = False                            # dev-suppress-gossip
        self.node_info: dict | None = None
        self._last_ts = 0

    async def run(self) -> None:
        self.master.start()
        if self.hsm is not None:
            self.hsm.start()
        await self.master.wait_closed()
        if self.mgr is not None and self.mgr.store is not None:
            self.mgr.store.close()

    # ------------------------------------------------------------------ master
    def handle_init(self, msg: Msg) -> None:
        self.node_id = msg["id"]
        self.chain_hash = msg["chain_hash"]
        self.blockheight = msg["blockheight"]
        self.private = PrivateChannels(self.node_id, self.chain_hash)
        if msg["dev_fast_gossip"]:
            self.interval = FAST_BROADCAST_INTERVAL
        if msg["dev_fast_gossip_prune"]:
            self.prune_age, self.refresh_age = FAST_PRUNE_AGE, FAST_REFRESH_AGE
            self.maintenance_interval = FAST_MAINTENANCE_INTERVAL
        store = GossipStore.open(STORE_FILE)
        if store.report and (store.report.truncated_bytes or store.report.reason):
            self.status.unusual(f"gossip store: {store.report}")
        self.mgr = GossipManager(store, self.chain_hash)
        t0 = time.monotonic()
        stats = self.mgr.load(verify=False)   # our own store: trusted, as Core Lightning does
        self.router = Router(self.mgr.graph)
        self.status.info(f"gossip store loaded: {stats.channels} channels, {stats.nodes} nodes, "
                         f"{stats.updates} updates in {time.monotonic() - t0:.2f}s")
        self.master.send("gossipd_init_reply", {})
        asyncio.ensure_future(self._broadcaster())   # now that the interval is known
        asyncio.ensure_future(self._maintenance())

    def handle_connectd_link(self, msg: Msg) -> None:
        if len(msg.fds) != 1:
            return
        if self.link is not None:
            self.link.close()
        handlers = {name: getattr(self, meth) for name, meth in self.LINK_HANDLERS.items()}
        self.link = DaemonConn(MsgConn.from_fd(msg.fds[0]), internal_schema("gossip_link"), handlers,
                               on_error=lambda e: self.status.broken(f"connectd link: {e}"))
        self.link.start()
        self.peers.clear()   # a new connectd reports its peers again

    def handle_new_blockheight(self, msg: Msg) -> None:
        self.blockheight = msg["blockheight"]
        if self.mgr is not None:
            self.mgr.new_blockheight(self.blockheight)

    def handle_outpoints_spent(self, msg: Msg) -> None:
        assert self.mgr is not None
        for scid in msg["scids"]:
            self.mgr.funding_spent(scid, self.blockheight)

    async def handle_local_channel(self, msg: Msg) -> None:
        f = msg.fields
        if f["local_alias"]:
            pol = {k: f[k] for k in ("cltv_delta", "htlc_minimum_msat", "fee_base_msat", "fee_ppm",
                                     "htlc_maximum_msat")}
            ch = PrivateChannel(f["peer_id"], f["scid"], f["local_alias"], f["remote_alias"],
                                bool(f["announcement"]), f["enabled"], pol)
            self.private.set(ch)
            for raw in self.private.take_early(ch):
                try:
                    self._peer_private_update(ch.peer_id, raw)
                except GossipError as e:
                    self.status.debug(f"bad channel_update: {e}", ch.peer_id)
        if f["scid"]:
            await self._local_channel_in_graph(f)
        if f["local_alias"] and f["peer_synced"]:
            await self._send_peer_update(f["local_alias"], f["peer_id"])

    async def _local_channel_in_graph(self, f: dict) -> None:
        """One of our channels with its real short channel id: in the graph
        (public with its announcement, or private), with our channel_update."""
        mgr = self.mgr
        assert mgr is not None
        scid = f["scid"]
        now = int(time.time())
        if f["announcement"] and mgr.graph.has_channel(scid) and mgr.graph.is_private(scid):
            # it was private until both sides signed the announcement: replace it
            mgr.graph.remove_channel(scid)
            mgr._forget([scid])
        if not mgr.graph.has_channel(scid):
            if f["announcement"]:
                try:
                    if mgr.handle_channel_announcement(f["announcement"], now) is not None:
                        ann = parse_channel_announcement(f["announcement"])
                        spk = p2wsh_script(multisig_2of2_script(ann.bitcoin_key_1, ann.bitcoin_key_2))
                        if mgr.handle_txout(scid, f["capacity_sat"], spk, False):
                            self._queue(f["announcement"], now)
                except GossipError as e:
                    self.status.broken(f"our own channel_announcement {ShortChannelId.from_int(scid)} refused: {e}")
            else:
                mgr.add_private_channel(scid, self.node_id, f["peer_id"], f["capacity_sat"], now)
        self.local[scid] = dict(f)
        await self._sign_local_update(scid)
        if f["announcement"]:
            await self._maybe_node_announcement()

    async def _sign(self, unsigned: bytes, what: str) -> bytes | None:
        """hsmd's signature on a channel_update of ours; the signed message."""
        assert self.hsm is not None
        try:
            r = await self.hsm.request("hsmd_sign_gossip", {"msg": unsigned})
        except RequestFailed as e:
            self.status.broken(f"hsmd refused our {what}: {e}")
            return None
        return unsigned[:2] + r["sig"] + unsigned[66:]

    async def _send_peer_update(self, local_alias: int, peer_id: bytes) -> None:
        """BOLT 7: the peer of an unannounced channel may get our
        channel_update (dont_forward), naming the channel as it does: its
        invoices' route hints need our fees."""
        ts = max(int(time.time()), self._last_ts + 1)
        unsigned = self.private.to_send(local_alias, ts)
        if unsigned is None or peer_id not in self.peers:
            return
        self._last_ts = ts
        signed = await self._sign(unsigned, "private channel_update")
        if signed is not None:
            self.private.mark_sent(local_alias, signed)
            self._send(peer_id, signed)

    async def _sign_local_update(self, scid: int) -> None:
        """Our channel_update for our direction of `scid`, signed by hsmd."""
        mgr = self.mgr
        assert mgr is not None and self.hsm is not None
        pol = self.local[scid]
        n1, n2 = mgr.graph.channel_nodes(scid)
        direction = 0 if n1 == self.node_id else 1
        ts = max(int(time.time()), self._last_ts + 1)
        self._last_ts = ts
        raw = await self._sign(unsigned_update(self.chain_hash, scid, ts, 1, direction | (0 if pol["enabled"] else 2),
                                               pol), "channel_update")
        if raw is None:
            return
        try:
            status = mgr.handle_channel_update(raw)
        except GossipError as e:
            self.status.broken(f"our own channel_update refused: {e}")
            return
        if status == ACCEPTED:
            self.local_updates[scid] = raw
            if not mgr.graph.is_private(scid):
                self._queue(raw, ts)

    async def handle_get_channel_update(self, msg: Msg) -> None:
        """For an onion error: our update of a public channel; of an
        unannounced one (`local_alias` set), one signed now that names it
        by the short channel id the onion used (`scid`)."""
        mgr = self.mgr
        scid = msg["scid"]
        if msg["local_alias"]:
            ts = max(int(time.time()), self._last_ts + 1)
            self._last_ts = ts
            unsigned = self.private.for_error(msg["local_alias"], scid, ts)
            raw = (await self._sign(unsigned, "private channel_update")) if unsigned is not None else None
            self.master.send("gossipd_get_channel_update_reply", {"update": raw or b""})
            return
        raw = self.local_updates.get(scid, b"")
        if mgr is None or not mgr.graph.has_channel(scid) or mgr.graph.is_private(scid):
            raw = b""
        self.master.send("gossipd_get_channel_update_reply", {"update": raw})

    def handle_dev_suppress(self, msg: Msg) -> None:
        self.status.unusual("dev-suppress-gossip: sending no more gossip")
        self.suppressed = True

    def handle_node_info(self, msg: Msg) -> None:
        self.node_info = dict(msg.fields)

    async def _maybe_node_announcement(self) -> None:
        if self.node_info is None or self.hsm is None or self.mgr is None:
            return
        if not any(not self.mgr.graph.is_private(s) for s in self.mgr.graph.channels_of(self.node_id)):
            return
        ni = self.node_info
        ts = max(int(time.time()), self._last_ts + 1)
        self._last_ts = ts
        body = (struct.pack(">H", len(ni["features"])) + ni["features"] + struct.pack(">I", ts) + self.node_id
                + ni["rgb"] + ni["alias"] + struct.pack(">H", len(ni["addresses"])) + ni["addresses"])
        unsigned = struct.pack(">H", 257) + b"\x00" * 64 + body
        try:
            r = await self.hsm.request("hsmd_sign_gossip", {"msg": unsigned})
        except RequestFailed as e:
            self.status.broken(f"hsmd refused our node_announcement: {e}")
            return
        raw = struct.pack(">H", 257) + r["sig"] + body
        try:
            if self.mgr.handle_node_announcement(raw) == ACCEPTED:
                self._queue(raw, ts)
        except GossipError as e:
            self.status.broken(f"our own node_announcement refused: {e}")

    def handle_getroutes(self, msg: Msg) -> None:
        assert self.router is not None
        f = msg.fields
        locals_ = [LocalChannel(lc["scid"], lc["peer_id"], lc["spendable_msat"], lc["htlc_minimum_msat"],
                                lc["enabled"]) for lc in f["local_channels"]]
        policies = [ChannelPolicy(**p) for p in f["policies"]]
        exclude = [ShortChannelIdDir(ShortChannelId.from_int(x["scid"]), x["direction"])
                   for x in f["excluded_channels"]] + list(f["excluded_nodes"])
        riskfactor, fuzzpercent = f["riskfactor_millionths"] / 1e6, f["fuzz_millionths"] / 1e4
        try:
            if len(f["amounts"]) == 1 and f["maxparts"] == 1:
                # one route: getroute's own checks and messages
                routes = [self.router.getroute(f["source"], f["destination"], f["amounts"][0], riskfactor,
                                               f["final_cltv"], exclude, fuzzpercent, f["maxhops"], locals_,
                                               policies=policies)]
            else:
                routes = self.router.getroutes(
                    f["source"], f["destination"], f["amounts"], riskfactor, f["final_cltv"], exclude, fuzzpercent,
                    f["maxhops"], locals_, policies,
                    [ChannelLimit(x["scid"], x["direction"], x["max_msat"], x["reserved_msat"]) for x in f["limits"]],
                    f["maxparts"])
        except (RouteNotFound, ValueError) as e:
            self.master.send("gossipd_getroutes_fail", {"reason": str(e)})
            return
        self.master.send("gossipd_getroutes_reply", {"routes": [{"hops": [
            {"id": bytes.fromhex(h["id"]), "scid": ShortChannelId.parse(h["channel"]).to_int(),
             "direction": h["direction"], "amount_msat": h["amount_msat"], "delay": h["delay"]} for h in r]}
            for r in routes]})

    def handle_listchannels(self, msg: Msg) -> None:
        assert self.mgr is not None
        g = self.mgr.graph
        scid, source, destination = msg["short_channel_id"], msg["source"], msg["destination"]
        out = []
        if scid is not None:
            scid = int.from_bytes(scid, "big")
            scids = [scid] if g.has_channel(scid) else []
        elif source is not None:
            scids = g.channels_of(source)
        elif destination is not None:
            scids = g.channels_of(destination)
        else:
            scids = g.scids()
        for s in scids:
            for c in g.channel_views(s):
                if source is not None and c["source"] != source:
                    continue
                if destination is not None and c["destination"] != destination:
                    continue
                out.append(c)
        self.master.send("gossipd_listchannels_reply", {"channels": out})

    def handle_listnodes(self, msg: Msg) -> None:
        assert self.mgr is not None
        g = self.mgr.graph
        ids = [msg["id"]] if msg["id"] is not None else g.node_ids()
        self.master.send("gossipd_listnodes_reply", {"nodes": [v for v in map(g.node_view, ids) if v is not None]})

    # ------------------------------------------------------------------ peers (via connectd)
    def _send(self, peer_id: bytes, raw: bytes) -> None:
        if self.suppressed:
            return
        if self.link is not None and not self.link.conn.closed:
            self.link.send("gl_send", {"id": peer_id, "msg": raw})

    def handle_peer_connected(self, msg: Msg) -> None:
        p = PeerGossip(msg["id"], msg["features"])
        self.status.debug(f"peer connected (gossip_queries: {p.queries})", p.id)
        self.peers[p.id] = p
        if p.queries:
            # everything it has (initial sync), then new gossip as it comes
            self._send(p.id, gossip_timestamp_filter(self.chain_hash, 0, 0xFFFFFFFF))
            self._send(p.id, query_channel_range(self.chain_hash, 0, 0xFFFFFFFF))
        # (our channel_update of a private channel with it waits for the
        # master's gossipd_local_channel with peer_synced: after reestablish)

    def handle_peer_disconnected(self, msg: Msg) -> None:
        self.peers.pop(msg["id"], None)
        self.private.peer_disconnected(msg["id"])

    async def handle_peer_msg(self, msg: Msg) -> None:
        peer_id, raw = msg["id"], msg["msg"]
        mgr = self.mgr
        if mgr is None:
            return
        try:
            name = bolt_schema().decode(raw).name
        except DecodeError as e:
            self._warn(peer_id, f"malformed gossip: {e}")
            return
        now = int(time.time())
        self.status.debug(f"gossip {name}", peer_id)
        try:
            if name == "channel_announcement":
                scid = mgr.handle_channel_announcement(raw, now)
                if scid is not None:
                    asyncio.ensure_future(self._lookup_txout(scid, raw, now))
            elif name == "channel_update":
                if self._peer_private_update(peer_id, raw):
                    return
                if mgr.handle_channel_update(raw, now) == ACCEPTED and \
                        not mgr.graph.is_private(parse_channel_update(raw).scid):
                    self._queue(raw, parse_channel_update(raw).timestamp)
            elif name == "node_announcement":
                if mgr.handle_node_announcement(raw, now) == ACCEPTED:
                    self._queue(raw, parse_node_announcement(raw).timestamp)
            elif name == "query_channel_range":
                # BOLT 7: always answered, a chain we do not know with one empty reply
                f = bolt_schema().decode(raw).fields
                flags = (f.get("tlvs") or {}).get("query_option", {}).get("query_option_flags", 0)
                for r in reply_channel_range(mgr.graph, f["chain_hash"], f["first_blocknum"],
                                             f["number_of_blocks"], flags, mgr.message,
                                             known_chain=f["chain_hash"] == self.chain_hash):
                    self._send(peer_id, r)
            elif name == "reply_channel_range":
                rr = parse_reply_channel_range(raw)
                unknown = [s for s in rr.scids if not mgr.graph.has_channel(s)]
                if unknown:
                    self._send(peer_id, query_short_channel_ids(self.chain_hash, unknown))
            elif name == "query_short_channel_ids":
                for m in answer_query_short_channel_ids(mgr.graph, self.chain_hash, raw, mgr.message):
                    self._send(peer_id, m)
            elif name == "reply_short_channel_ids_end":
                pass
            elif name == "gossip_timestamp_filter":
                flt = TimestampFilter.from_message(raw, self.chain_hash)
                p = self.peers.get(peer_id)
                if p is not None:
                    p.filter = flt
                    if flt is not None:
                        for m in filtered_gossip(mgr.graph, flt, mgr.message):
                            self._send(peer_id, m)
            else:
                self.status.debug(f"ignoring {name} from gossip", peer_id)
        except GossipError as e:
            self.status.debug(f"bad gossip {name}: {e}", peer_id)
            if e.warn:
                self._warn(peer_id, f"{name}: {e}")

    def _peer_private_update(self, peer_id: bytes, raw: bytes) -> bool:
        """The peer's channel_update of one of our unannounced channels with
        it (by our alias or the real scid): its policy goes to the master
        (route hints).  True if that is all there is to it: named by our
        alias, or `dont_forward` (BOLT 7: never relayed, nor put in the
        graph others query); False if it is gossip too (the peer's public
        update of a channel announced meanwhile)."""
        upd = parse_channel_update(raw)
        ch = self.private.match(peer_id, upd.scid)
        if ch is None:
            if upd.message_flags & DONT_FORWARD or self.mgr is None or not self.mgr.graph.has_channel(upd.scid):
                # (it may be ours, the master not having told us of it yet)
                self.private.keep_early(peer_id, upd.scid, raw)
            return bool(upd.message_flags & DONT_FORWARD)
        check_channel_update(raw, self.chain_hash, peer_id)    # signed by the peer (GossipError)
        self.master.send("gossipd_remote_channel_update", {
            "peer_id": peer_id, "scid": upd.scid, "timestamp": upd.timestamp, "enabled": not upd.disabled,
            "cltv_delta": upd.cltv_expiry_delta, "htlc_minimum_msat": upd.htlc_minimum_msat,
            "fee_base_msat": upd.fee_base_msat, "fee_ppm": upd.fee_proportional_millionths,
            "htlc_maximum_msat": upd.htlc_maximum_msat})
        return bool(upd.message_flags & DONT_FORWARD) or upd.scid != ch.scid

    def _warn(self, peer_id: bytes, text: str) -> None:
        self._send(peer_id, bolt_schema().encode("warning", {"channel_id": b"\x00" * 32,
                                                             "data": text.encode()[:1000]}))

    async def _lookup_txout(self, scid: int, raw: bytes, ts: int) -> None:
        assert self.mgr is not None
        try:
            r = await self.master.request("gossipd_get_txout", {"scid": scid}, timeout=60)
            ok = self.mgr.handle_txout(scid, r["satoshis"], r["script"], r["spent"])
        except (RequestFailed, asyncio.TimeoutError):
            ok = self.mgr.handle_txout(scid, None, None, True)
        if ok:
            self._queue(raw, ts)
            self._queue_known(scid)

    def _queue_known(self, scid: int) -> None:
        """Updates and node announcements the manager held until the channel
        was accepted were applied without us: relay them too."""
        g = self.mgr.graph
        for d in (0, 1):
            h = g.half(scid, d)
            if h is not None and h[U_OFF] >= 0:
                self._queue(self.mgr.message(h[U_OFF]), h[U_TS])
        for node in g.channel_nodes(scid):
            na = g.node_announcement(node)
            if na is not None and na[5] >= 0:
                self._queue(self.mgr.message(na[5]), na[0])

    # ------------------------------------------------------------------ maintenance
    async def _maintenance(self) -> None:
        """Keepalive for our channels, then prune what nobody refreshed."""
        while True:
            try:
                await self._refresh_and_prune(int(time.time()))
            except Exception as e:   # never let housekeeping kill gossipd
                self.status.broken(f"gossip maintenance failed: {e!r}")
            await asyncio.sleep(self.maintenance_interval)

    async def _refresh_and_prune(self, now: int) -> None:
        mgr = self.mgr
        assert mgr is not None
        for scid in list(self.local):
            if not mgr.graph.has_channel(scid):
                continue
            n1, _ = mgr.graph.channel_nodes(scid)
            ours = mgr.graph.half(scid, 0 if n1 == self.node_id else 1)
            if ours is None or ours[U_TS] < now - self.refresh_age:
                await self._sign_local_update(scid)
        gone = mgr.prune(now, max_age=self.prune_age)
        if gone:
            self.status.debug(f"pruned {len(gone)} channels without an update for {self.prune_age} s: "
                              + ", ".join(str(ShortChannelId.from_int(s)) for s in gone[:10]))

    # ------------------------------------------------------------------ relay
    def _queue(self, raw: bytes, ts: int) -> None:
        """Relay `raw` at the next flush to peers whose filter passes `ts`
        (the message's timestamp).  BOLT 7: a channel_announcement goes out
        only once it has a channel_update, right before it, with that
        update's timestamp; until then it waits."""
        kind = int.from_bytes(raw[:2], "big")
        if kind == 256:
            scid = parse_channel_announcement(raw).scid
            g = self.mgr.graph if self.mgr is not None else None
            halves = [h for h in (g.half(scid, 0), g.half(scid, 1)) if h is not None] if g is not None else []
            if not halves:
                if len(self.unrelayed) >= MAX_UNRELAYED:
                    self.unrelayed.pop(next(iter(self.unrelayed)))
                self.unrelayed[scid] = raw
                return
            ts = max(h[U_TS] for h in halves)
        elif kind == 257 and not forwardable_node_announcement(raw):
            return
        elif kind == 258:
            ann = self.unrelayed.pop(parse_channel_update(raw).scid, None)
            if ann is not None:
                self.to_broadcast.append((ann, ts))
        self.to_broadcast.append((raw, ts))

    async def _broadcaster(self) -> None:
        """Staggered relay: what became known in the last interval goes to
        every peer whose gossip_timestamp_filter lets it through."""
        while True:
            await asyncio.sleep(self.interval)
            batch, self.to_broadcast = self.to_broadcast, []
            if batch:
                self.status.debug(f"relaying {len(batch)} messages to {len(self.peers)} peers "
                                  f"({sum(p.filter is not None for p in self.peers.values())} with a filter)")
            for p in list(self.peers.values()):
                if p.filter is None:
                    continue
                for raw, ts in batch:
                    if p.filter.passes(ts):
                        self._send(p.id, raw)
            if self.mgr is not None:
                self.mgr.compact_if_needed()


