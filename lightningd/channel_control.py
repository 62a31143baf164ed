"""The master's side of channeld: one daemon per channel, spawned when a
channel opens or its peer (re)connects, fed the stored state, and persisted
for on every request (one database transaction each, reply after commit).

Also watches the chain for each channel: funding confirmations (depth and
short channel id) and the spend of the funding output."""
from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from bitcoin.block import Block
from bitcoin.coinselect import Target
from common.daemon_conn import Msg, RequestFailed
from common.features import OPTION_ANCHORS, Context, supported_channel_types
from wire.channeld_modes import MODE_RESUME, MODE_SIGN_LAST
from wire.hsm_caps import CAP_COMMITMENT_POINT, CAP_ECDH, CAP_SIGN_CLOSING_TX, CAP_SIGN_GOSSIP, CAP_SIGN_REMOTE_TX
from wire.codec import Sealed
from wire.internal import internal_schema

from . import channel as C
from .channel import ChannelRecord
from .db import to_sql_u64
from .feerates import FEERATE_FLOOR_PERKW, MAX_FEERATE, commitment_feerate_name
from .jsonrpc_errors import LIGHTNINGD, RpcError
from .subd import Subd

if TYPE_CHECKING:
    from .lightningd import LightningD
    from .withdraw import Prepared

# ECDH: channeld computes each incoming HTLC's onion shared secret (as Core Lightning's)
# SIGN_GOSSIP: channeld signs its channel's announcement (node and funding keys)
CHANNELD_CAPS = CAP_COMMITMENT_POINT | CAP_SIGN_REMOTE_TX | CAP_SIGN_CLOSING_TX | CAP_ECDH | CAP_SIGN_GOSSIP


def send_to_channeld(subd: Subd | None, name: str, fields: dict) -> bool:
    """Fire and forget to a channel daemon, which may be on its way out: its
    peer left, and its link closes before the process is reaped.  What it
    misses it is sent again when it is started next (state, feerates,
    funding depth, pending HTLC resolutions), so a closed link is not an
    error here, and must not become one in the caller (a fee refresh for
    every channel, after a block, once killed the chain loop).  True if
    sent (Subd.send itself drops what a closed link cannot take)."""
    if subd is None or not subd.running:
        return False
    return subd.send(name, fields)


@dataclass
class PendingOpen:
    """A channel being opened (not in the database until funding is signed)."""
    dbid: int
    peer_id: bytes
    temp_id: bytes
    config: dict
    policy: dict
    subd: Subd | None = None
    done: asyncio.Future | None = None
    funding: "Prepared | None" = None
    funding_sat: int = 0
    announce: bool = True
    result: dict = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)   # compared with the peer's connected_at


class ChannelControl:
    # channeld -> master messages that are not replies, and their handlers
    HANDLERS = {
        "channeld_funding_needed": "handle_funding_needed",
        "channeld_persist": "handle_persist",
        "channeld_failed": "handle_failed",
        "channeld_reestablished": "handle_reestablished",
    }

    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.channels: dict[int, ChannelRecord] = {}
        self.pending: dict[int, PendingOpen] = {}
        # peers whose open_channel is being considered (hook running, daemon
        # starting): no PendingOpen yet, but a second open must wait
        self.opening_peers: set[bytes] = set()
        self._next_dbid = 1
        self.close_waiters: dict[int, list[asyncio.Future]] = {}
        # `close` asked for these channels (dbid -> shutdown script and feerate):
        # sent to their channeld now, or when it next starts
        self.close_requests: dict[int, dict] = {}

    # ------------------------------------------------------------------ start-up
    def load(self) -> None:
        db = self.ld.db
        assert db is not None
        for r in db.query(f"SELECT {', '.join(ChannelRecord.COLUMNS)} FROM channels"):
            rec = ChannelRecord.from_row(r)
            rec.state_changes = [dict(zip(("timestamp", "old_state", "new_state", "cause", "message"), x))
                                 for x in db.query("SELECT timestamp, old_state, new_state, cause, message FROM "
                                                   "channel_state_changes WHERE dbid = ? ORDER BY rowid",
                                                   (rec.dbid,))]
            self.channels[rec.dbid] = rec
            self._next_dbid = max(self._next_dbid, rec.dbid + 1)
            if rec.state != C.CLOSED:
                self.ld.peer_has_channel(rec.peer_id)
        for rec in self.channels.values():
            if rec.alias_local is None and rec.state != C.CLOSED:
                # a channel stored before aliases: it gets one (sent in the
                # channel_ready of its next reestablish, if that happens)
                rec.alias_local = self.new_alias()
                db.execute("UPDATE channels SET alias_local = ? WHERE dbid = ?",
                           (to_sql_u64(rec.alias_local), rec.dbid))

    def new_alias(self) -> int:
        """A local short channel id alias (Core Lightning's random_scid): 64
        random bits, unrelated to the real short channel id (BOLT 2 MUST for
        unannounced channels), colliding with no scid or alias of ours."""
        taken = {a for c in self.channels.values() for a in (c.alias_local, c.scid.to_int() if c.scid else None)}
        taken |= {po.config["local_alias"] for po in self.pending.values()}
        while True:
            alias = int.from_bytes(os.urandom(8), "big")
            if alias not in taken:
                return alias

    def by_alias_or_scid(self, peer_id: bytes, scid: int) -> ChannelRecord | None:
        """Our channel with `peer_id` that `scid` names: its real short
        channel id, or our alias (what the peer's channel_updates use)."""
        for c in self.by_peer(peer_id):
            if c.alias_local == scid or (c.scid is not None and c.scid.to_int() == scid):
                return c
        return None

    def new_dbid(self) -> int:
        d = self._next_dbid
        self._next_dbid += 1
        return d

    def by_peer(self, peer_id: bytes) -> list[ChannelRecord]:
        return [c for c in self.channels.values() if c.peer_id == peer_id]

    def find(self, text: str) -> ChannelRecord | None:
        """By peer id (its active channel), channel id, short channel id or our alias."""
        for c in self.channels.values():
            if c.channel_id.hex() == text or c.names(text):
                return c
        if len(text) == 66:
            live = [c for c in self.channels.values() if c.peer_id.hex() == text and c.state != C.CLOSED]
            return live[0] if live else None
        return None

    def count(self, kind: str) -> int:
        n = 0
        for c in self.channels.values():
            if kind == "pending" and c.state == C.AWAITING_LOCKIN:
                n += 1
            elif kind == "active" and c.state == C.NORMAL and self.ld.is_connected(c.peer_id):
                n += 1
            elif kind == "inactive" and c.state not in (C.AWAITING_LOCKIN, C.CLOSED) and \
                    not (c.state == C.NORMAL and self.ld.is_connected(c.peer_id)):
                n += 1
        return n + (len(self.pending) if kind == "pending" else 0)

    # ------------------------------------------------------------------ spawning
    async def spawn(self, peer_id: bytes, dbid: int, mode: int, config: dict, core: Sealed | None = None,
                    open_msg: bytes = b"", on_exit: Callable[[Subd, int], Any] | None = None,
                    channel_id: bytes | None = None) -> tuple[Subd, int]:
        """Start a channeld; returns it and connectd's end of its peer socketpair."""
        hsm_fd = await self.ld.hsm.client_fd(f"channeld-{dbid}", CHANNELD_CAPS, peer_id, dbid)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handlers = {name: self._bind(dbid, meth) for name, meth in self.HANDLERS.items()}
        subd = Subd("channeld", internal_schema("channeld", keep_sealed=True), handlers,
                    self.ld.log.child(f"channeld-chan#{dbid}", peer_id.hex()), on_exit=on_exit,
                    node_id=peer_id.hex(), spawner=self.ld.zygote, gate=self.ld.db_gate)
        try:
            subd.start(hsm_fd=hsm_fd, extra_fds=[theirs.fileno()])
        finally:
            os.close(hsm_fd)
            theirs.close()
        peer = self.ld.peers.get(peer_id)
        subd.send("channeld_init", {
            "mode": mode, "peer_id": peer_id, "dbid": dbid, "chain_hash": self.ld.network.chain_hash,
            "their_features": peer.features if peer else b"", "config": config,
            "core": core, "open_msg": open_msg})
        fd = os.dup(ours.fileno())
        ours.close()
        return subd, fd

    def _bind(self, dbid: int, meth: str) -> Callable[[Msg], Any]:
        fn = getattr(self, meth)
        return lambda msg: fn(dbid, msg)

    def fee_bounds(self, rec: ChannelRecord | None = None) -> tuple[int, int]:
        """The feerates (perkw) we accept from a peer in open_channel (no
        `rec` yet) and update_fee, as Core Lightning: our estimates' bounds
        (Feerates.min_acceptable/max_acceptable: from the floor when
        mempools are empty, anything above it while we have no estimate);
        an anchors channel only needs its commitment to relay, so the floor
        is its minimum; anything (1..0xFFFFFFFF) with --ignore-fee-limits or
        the channel's setchannel ignorefeelimits."""
        if self.ld.cfg.get("ignore-fee-limits") or (rec is not None and rec.ignore_fee_limits):
            return 1, MAX_FEERATE
        f = self.ld.feerates
        if f is None:
            return FEERATE_FLOOR_PERKW, MAX_FEERATE
        anchors = rec is not None and rec.anchors
        return (f.floor_perkw() if anchors else f.min_acceptable()), f.max_acceptable()

    def channel_config(self, **extra: Any) -> dict:
        """A new channel's `channeld_config` (wire/csv/channeld.csv) from our
        options; `extra` sets fields (announce, funder, ...)."""
        cfg = self.ld.cfg
        lo, hi = self.fee_bounds()
        d = {
            "our_node_id": self.ld.node_id, "announce": False, "channel_announcement": b"",
            "minimum_depth": int(cfg.get("funding-confirms")), "scid": 0, "funding_depth": 0,
            "feerate_min": lo, "feerate_max": hi, "commit_time_ms": int(cfg.get("commit-time")),
            "max_dust_htlc_exposure_msat": int(cfg.get("max-dust-htlc-exposure-msat")),
            "opening_timeout": int(cfg.get("dev-opening-timeout-secs") or 120) if cfg.developer else 120,
            "shutdown_script": self.ld.wallet.scripts_for(self.ld.wallet.new_keyidx("p2tr"))["p2tr"]
            if self.ld.wallet.xpub is not None else b"",
            "upfront_shutdown_script": b"",
            "our": {"dust_limit_sat": 546, "max_htlc_value_in_flight_msat": 2**63 // 1000 * 1000,
                    "htlc_minimum_msat": max(1, int(cfg.get("htlc-minimum-msat") or 0)),
                    "to_self_delay": int(cfg.get("watchtime-blocks")),
                    "max_accepted_htlcs": int(cfg.get("max-concurrent-htlcs")), "reserve_sat": None},
            "max_to_self_delay": int(cfg.get("max-locktime-blocks")),
            "min_funding_sat": int(cfg.get("min-capacity-sat")),
            "large_channels": False,
            # BOLT 2: the types we run, as our init offers them (channeld refuses any other)
            "channel_types": [{"bits": sorted(t)} for t in supported_channel_types(self.ld.our_features(Context.INIT))],
            "funder": None,
            "local_alias": self.new_alias(),
        }
        d.update(extra)
        return d

    async def start_channeld(self, rec: ChannelRecord) -> int | None:
        """Resume a stored channel's daemon for a new connection; returns
        connectd's fd.  A daemon still running from the previous connection
        (the peer came back before it noticed) is stopped first."""
        old = rec.subd
        if old is not None and old.running:
            await old.stop()
        self.ld.htlcs.reconcile(rec)
        depth = self.depth(rec)
        lo, hi = self.fee_bounds(rec)
        # what the options say now, not what they said when the channel was opened
        config = dict(rec.config, scid=rec.scid.to_int() if rec.scid else 0, funding_depth=depth,
                      local_alias=rec.alias_local,
                      minimum_depth=rec.minimum_depth, announce=rec.announce, our_node_id=self.ld.node_id,
                      feerate_min=lo, feerate_max=hi, commit_time_ms=int(self.ld.cfg.get("commit-time")),
                      max_dust_htlc_exposure_msat=int(self.ld.cfg.get("max-dust-htlc-exposure-msat")))
        subd, fd = await self.spawn(rec.peer_id, rec.dbid, MODE_RESUME, config, rec.core,
                                    on_exit=lambda s, rc, r=rec: self._on_channeld_exit(r, s, rc))
        rec.subd = subd
        self.ld.htlcs.channel_started(rec)   # resolutions it must (re)send once ready
        return fd

    def send_feerates(self, recs: Iterable[ChannelRecord] | None = None) -> None:
        """Every running channeld (or those of `recs`) learns the current
        commitment feerate and the acceptable range; channeld of a channel
        we opened sends update_fee when the estimate moved by more than 10%.
        Anchor channels can be CPFP'd, so their commitments use the slow
        estimate."""
        f = self.ld.feerates
        if f is None:
            return
        for rec in (self.channels.values() if recs is None else recs):
            if rec.subd is None or not rec.subd.running or not rec.active:
                continue
            lo, hi = self.fee_bounds(rec)
            rate = f.perkw(commitment_feerate_name(rec.anchors)) or 0
            send_to_channeld(rec.subd, "channeld_feerates", {"feerate": max(lo, min(rate, hi)) if rate else 0,
                                                             "min_feerate": lo, "max_feerate": hi})

    def depth(self, rec: ChannelRecord) -> int:
        if rec.funding_height is None:
            return 0
        return self.ld.topology.tip_height - rec.funding_height + 1

    async def peer_channel_fds(self, peer_id: bytes) -> list[tuple[bytes, int]]:
        out = []
        for rec in self.by_peer(peer_id):
            if rec.active:
                fd = await self.start_channeld(rec)
                if fd is not None:
                    out.append((rec.channel_id, fd))
        return out

    async def _on_channeld_exit(self, rec: ChannelRecord, subd: Subd, rc: int) -> None:
        if rec.subd is subd:
            rec.subd = None
        self.ld.htlcs.reconcile(rec)
        rec.billboard = None
        if self.ld.stopping or not rec.active or subd._stopping:
            return
        if rc != 0 and self.ld.is_connected(rec.peer_id):
            # A crash while the peer is still connected: what the peer sent it
            # and what it had half-sent are lost, so the stream is in an
            # unknown state.  (A clean exit has already hung up if it had to.)
            # As Core Lightning: drop the connection; both sides reestablish
            # from their stored state when it comes back (we redial with
            # backoff), and the new connection gets a new channeld.
            self.ld.log.child("lightningd", rec.peer_id.hex()).info(
                f"channeld of channel {rec.dbid} exited ({rc}) with the peer connected: reconnecting")
            self.ld.connectd.discard(rec.peer_id)

    # ------------------------------------------------------------------ channeld requests
    async def handle_funding_needed(self, dbid: int, msg: Msg) -> None:
        po = self.pending.get(dbid)
        subd = po.subd if po else None
        if po is None or subd is None:
            return
        try:
            anchors = OPTION_ANCHORS in po.config["funder"]["channel_type"]["bits"]
            prep = self.ld.spender.prepare([Target(msg["script"], msg["funding_sat"])], po.policy["feerate"],
                                           po.policy["minconf"], po.policy["utxos"],
                                           self.ld.spender.emergency_reserve(opening_anchors=anchors))
        except RpcError as e:
            if po.done is not None and not po.done.done():
                po.done.set_exception(e)   # fundchannel answers with the wallet's error code
            # channeld tells the peer the open failed: nothing about our wallet goes with it
            subd.send("channeld_funding_needed_fail", {"code": e.code, "reason": "could not fund the channel"})
            return
        outnum = next(i for i, o in enumerate(prep.tx.outputs) if o.script_pubkey == msg["script"])
        po.funding = prep
        subd.send("channeld_funding_needed_reply", {"funding_txid": prep.tx.txid(), "funding_outnum": outnum})

    async def handle_persist(self, dbid: int, msg: Msg) -> None:
        rec = self.channels.get(dbid)
        po = self.pending.get(dbid)
        subd = rec.subd if rec is not None else (po.subd if po else None)
        if subd is None:
            return
        try:
            if rec is None:
                assert po is not None
                rec = self._create(po, msg)
                rec.subd = po.subd
                subd.on_exit = lambda s, rc, r=rec: self._on_channeld_exit(r, s, rc)
            else:
                self._update(rec, msg)
        except Exception as e:  # nothing was committed: channeld must not go on
            self.ld.log.broken(f"persist for channel {dbid} failed: {e}")
            subd.send("channeld_persist_fail", {"reason": str(e)})
            return
        # after the commit: things that talk to the outside
        if msg["funding"] is not None and po is not None and rec.opener == "local":
            await self._broadcast_funding(po, rec)
        if msg["closing_tx"]:
            await self._broadcast(msg["closing_tx"], f"closing tx of channel {dbid}")
        if po is not None and rec is not None and dbid in self.pending and msg["funding"] is not None:
            del self.pending[dbid]
            if po.done is not None and not po.done.done():
                po.done.set_result(rec)
        subd.send("channeld_persist_reply", {})

    def _create(self, po: PendingOpen, msg: Msg) -> ChannelRecord:
        cfg = self.ld.cfg
        summary, funding = msg["summary"], msg["funding"]
        if funding is None:
            raise ValueError("a new channel's first persist must say its funding is signed")
        rec = ChannelRecord(
            dbid=po.dbid, peer_id=po.peer_id, channel_id=summary["channel_id"],
            state=C.AWAITING_LOCKIN, opener=summary["opener"], funding_txid=summary["funding_txid"],
            funding_outnum=summary["funding_outnum"], funding_sat=summary["funding_sat"],
            minimum_depth=funding["minimum_depth"], summary=summary, core=msg["core"], config=po.config,
            fee_base_msat=int(cfg.get("fee-base")), fee_ppm=int(cfg.get("fee-per-satoshi")),
            htlc_minimum_msat=max(1, int(cfg.get("htlc-minimum-msat") or 0)),
            # the option's default (2^64-1) means "no limit": the channel's capacity
            htlc_maximum_msat=min(int(cfg.get("htlc-maximum-msat")), summary["funding_sat"] * 1000),
            cltv_delta=int(cfg.get("cltv-delta")), ignore_fee_limits=bool(cfg.get("ignore-fee-limits")),
            alias_local=po.config["local_alias"],
            announce=po.announce if summary["opener"] == "local" else bool(funding["channel_flags"] & 1))
        rec.state_changes.append({"timestamp": _now(), "old_state": C.AWAITING_LOCKIN,
                                  "new_state": C.AWAITING_LOCKIN, "cause": "user" if rec.opener == "local"
                                  else "remote", "message": "new channel opened"})
        db = self.ld.db
        assert db is not None
        with db.transaction():
            db.execute(f"INSERT INTO channels({', '.join(ChannelRecord.COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(ChannelRecord.COLUMNS))})", rec.row())
            self._save_state_change(rec.dbid, rec.state_changes[-1])
            addr = self.ld.peers.get(rec.peer_id)
            db.execute("INSERT INTO peers(node_id, address) VALUES (?, ?) ON CONFLICT(node_id) DO NOTHING",
                       (rec.peer_id, addr.addr if addr is not None and not addr.incoming else None))
        self.channels[rec.dbid] = rec
        self.ld.peer_has_channel(rec.peer_id)
        # gossipd knows our alias before the peer's channel_update names the channel by it
        asyncio.get_running_loop().call_soon(self.ld.gossipd.local_channel, rec)
        self.ld.log.info(f"channel {rec.dbid} with {rec.peer_id.hex()}: funding {rec.funding_txid_hex}:"
                         f"{rec.funding_outnum} ({rec.funding_sat} sat)")
        if rec.opener == "remote":   # as Core Lightning: "a peer successfully funded a channel with us"
            self.ld.plugins.notify("channel_opened", {"id": rec.peer_id.hex(), "funding_msat": rec.funding_sat * 1000,
                                                      "funding_txid": rec.funding_txid_hex,
                                                      "channel_ready": False})
        return rec

    def _update(self, rec: ChannelRecord, msg: Msg) -> None:
        db = self.ld.db
        assert db is not None
        summary = msg["summary"]
        with db.transaction():
            rec.summary, rec.core = summary, msg["core"]
            new_state = C.FROM_CORE.get(summary["state"], rec.state)
            if rec.state in C.ACTIVE:
                change = rec.set_state(new_state, "user" if rec.opener == "local" else "remote",
                                       f"channeld: {summary['state']}")
                if change:
                    self._save_state_change(rec.dbid, change)
                    self._notify_state(rec, change)
                    asyncio.get_running_loop().call_soon(self.ld.gossipd.local_channel, rec)
            if msg["closing_tx"]:
                rec.closing_tx = msg["closing_tx"]
                asked = rec.dbid in self.close_requests
                rec.closer = rec.closer or ("local" if asked else "remote")
                rec.close_cause = rec.close_cause or ("user" if asked else "remote")
            self.ld.htlcs.on_persist(rec, msg["locked_in"], msg["resolved"], msg["fulfilled"])
            if msg["remote_alias"] is not None and msg["remote_alias"] != rec.alias_remote:
                # the peer's alias, for our route hints (and its updates to us)
                rec.alias_remote = msg["remote_alias"]
                db.execute("UPDATE channels SET alias_remote = ? WHERE dbid = ?",
                           (to_sql_u64(rec.alias_remote), rec.dbid))
                asyncio.get_running_loop().call_soon(self.ld.gossipd.local_channel, rec)
            if msg["channel_announcement"]:
                rec.config["channel_announcement"] = msg["channel_announcement"]
                db.execute("UPDATE channels SET config = ? WHERE dbid = ?", (rec.config_blob(), rec.dbid))
                asyncio.get_running_loop().call_soon(self.ld.gossipd.local_channel, rec)
            # the summary as channeld encoded it (the codec checked it): stored as is
            db.execute("UPDATE channels SET state = ?, summary = ?, core = ?, closing_tx = ?, closer = ?, "
                       "close_cause = ? WHERE dbid = ?", (rec.state, msg.field_bytes("summary").hex(),
                                                          rec.core.data.hex(), rec.closing_tx, rec.closer,
                                                          rec.close_cause, rec.dbid))
        if rec.closing_tx is not None:
            for fut in self.close_waiters.pop(rec.dbid, []):
                if not fut.done():
                    fut.set_result("mutual")

    def _save_state_change(self, dbid: int, ch: dict) -> None:
        assert self.ld.db is not None
        self.ld.db.execute("INSERT INTO channel_state_changes(dbid, timestamp, old_state, new_state, cause, "
                           "message) VALUES (?, ?, ?, ?, ?, ?)", (dbid, ch["timestamp"], ch["old_state"],
                                                                  ch["new_state"], ch["cause"], ch["message"]))

    def _notify_state(self, rec: ChannelRecord, change: dict) -> None:
        self.ld.plugins.notify("channel_state_changed", {
            "peer_id": rec.peer_id.hex(), "channel_id": rec.channel_id.hex(),
            "short_channel_id": str(rec.scid) if rec.scid else None, "timestamp": change["timestamp"],
            "old_state": change["old_state"], "new_state": change["new_state"], "cause": change["cause"],
            "message": change["message"]})

    def set_state(self, rec: ChannelRecord, new: str, cause: str, message: str) -> None:
        change = rec.set_state(new, cause, message)
        if change is None:
            return
        assert self.ld.db is not None
        with self.ld.db.transaction():
            self.ld.db.execute("UPDATE channels SET state = ? WHERE dbid = ?", (rec.state, rec.dbid))
            self._save_state_change(rec.dbid, change)
        self._notify_state(rec, change)

    async def _broadcast_funding(self, po: PendingOpen, rec: ChannelRecord) -> None:
        assert po.funding is not None
        try:
            signed = await self.ld.spender.send(po.funding)
            po.result.update({"tx": signed.to_hex(), "txid": signed.txid_hex})
        except RpcError as e:
            self.ld.log.broken(f"funding broadcast for channel {rec.dbid} failed: {e.message}")
            po.result["error"] = e

    async def _broadcast(self, raw: bytes, what: str) -> None:
        r = await self.ld.backend.sendrawtransaction(raw.hex())
        if not r.get("success"):
            self.ld.log.unusual(f"broadcast of {what} failed: {r.get('errmsg')}")

    def handle_reestablished(self, dbid: int, msg: Msg) -> None:
        rec = self.channels.get(dbid)
        if rec is not None:
            rec.reestablished = True
            self.ld.gossipd.local_channel(rec)     # our private channel_update may go now

    async def handle_failed(self, dbid: int, msg: Msg) -> None:
        rec = self.channels.get(dbid)
        reason = msg["reason"]
        if rec is None:
            po = self.pending.pop(dbid, None)
            if po is not None and po.done is not None and not po.done.done():
                po.done.set_exception(ChannelOpenFailed(reason))
            return
        if msg["data_loss"]:
            # Our state is behind the peer's: our commitment is revoked.  Never
            # broadcast it (nor rebroadcast an older one at restart); the
            # peer was asked to close and onchaind will sweep what it pays us.
            self.ld.log.broken(f"channel {dbid} with {rec.peer_id.hex()}: {reason}; we lost data, "
                               "waiting for the peer to close")
            rec.last_tx = None
            assert self.ld.db is not None
            with self.ld.db.transaction():
                self.ld.db.execute("UPDATE channels SET last_tx = NULL, close_cause = ? WHERE dbid = ?",
                                   (reason, rec.dbid))
            self.set_state(rec, C.AWAITING_UNILATERAL, "protocol", reason)
        elif msg["tx"]:
            rec.last_tx = msg["tx"]
            assert self.ld.db is not None
            with self.ld.db.transaction():
                self.ld.db.execute("UPDATE channels SET last_tx = ?, close_cause = ? WHERE dbid = ?",
                                   (rec.last_tx, reason, rec.dbid))
            self.set_state(rec, C.AWAITING_UNILATERAL, "protocol", reason)
            if not await self.ld.anchors.broadcast_commitment(rec, rec.last_tx, "our commitment"):
                self.ld.log.unusual(f"broadcast of our commitment of channel {dbid} failed")
        for fut in self.close_waiters.pop(rec.dbid, []):
            if not fut.done():
                fut.set_result("unilateral")

    async def sign_last_tx(self, rec: ChannelRecord) -> bytes:
        """Our latest commitment signed by both (running channeld, or a one-off
        channeld started just to sign it: the master never holds keys)."""
        subd = rec.subd
        temp = None
        if subd is None or not subd.running:
            temp, fd = await self.spawn(rec.peer_id, rec.dbid, MODE_SIGN_LAST, rec.config, rec.core)
            os.close(fd)
            subd = temp
        try:
            r = await subd.request("channeld_sign_last_tx", {}, timeout=30)
        except RequestFailed as e:
            raise RpcError(LIGHTNINGD, f"cannot sign: {e.msg.fields.get('reason')}") from None
        finally:
            if temp is not None:
                await temp.stop()
        return r["tx"]

    # ------------------------------------------------------------------ the chain
    def block_connected(self, height: int, block: Block) -> None:
        watched = {c.funding_txid: c for c in self.channels.values()
                   if c.funding_height is None and c.state != C.CLOSED}
        outpoints = {(c.funding_txid, c.funding_outnum): c for c in self.channels.values()
                     if c.spend_txid is None and c.state != C.CLOSED}
        db = self.ld.db
        assert db is not None
        for idx, tx in enumerate(block.txs):
            txid = tx.txid() if watched or outpoints else b""
            rec = watched.get(txid)
            if rec is not None:
                rec.funding_height, rec.funding_txindex = height, idx
                db.execute("UPDATE channels SET funding_height = ?, funding_txindex = ? WHERE dbid = ?",
                           (height, idx, rec.dbid))
                # a zero-conf channel in use already gets its real short channel id
                asyncio.get_running_loop().call_soon(self.ld.gossipd.local_channel, rec)
            for i in tx.inputs:
                rec = outpoints.get((i.prevout.txid, i.prevout.index))
                if rec is not None:
                    rec.spend_txid, rec.spend_height = txid, height
                    db.execute("UPDATE channels SET spend_txid = ?, spend_height = ? WHERE dbid = ?",
                               (txid, height, rec.dbid))
                    asyncio.get_running_loop().call_soon(self._funding_spent, rec)
        asyncio.get_running_loop().call_soon(self._after_block, height)

    def block_disconnected(self, height: int) -> None:
        db = self.ld.db
        assert db is not None
        for c in self.channels.values():
            if c.funding_height is not None and c.funding_height >= height:
                c.funding_height = c.funding_txindex = None
                db.execute("UPDATE channels SET funding_height = NULL, funding_txindex = NULL WHERE dbid = ?",
                           (c.dbid,))
            if c.spend_height is not None and c.spend_height >= height:
                c.spend_txid = c.spend_height = None
                db.execute("UPDATE channels SET spend_txid = NULL, spend_height = NULL WHERE dbid = ?", (c.dbid,))

    def _after_block(self, height: int) -> None:
        for c in list(self.channels.values()):
            if c.funding_height is not None and c.subd is not None and c.subd.running and c.active:
                depth = height - c.funding_height + 1
                # several blocks connected in one go run these afterwards: a
                # funding tx in a later block of the batch has no depth yet here
                if 1 <= depth <= max(c.minimum_depth, 6) + 1:
                    send_to_channeld(c.subd, "channeld_funding_depth",
                                     {"depth": depth, "scid": c.scid.to_int() if c.scid else 0})

    def _funding_spent(self, rec: ChannelRecord) -> None:
        cause = "onchain"
        if rec.state not in (C.ONCHAIN, C.CLOSED):   # (seen again after a reorg: already resolving)
            self.set_state(rec, C.FUNDING_SPEND_SEEN, cause, f"funding spent by {rec.spend_txid[::-1].hex()}")
            self.set_state(rec, C.ONCHAIN, cause, "resolving on chain")
        if rec.subd is not None:
            asyncio.ensure_future(rec.subd.stop())
        self.ld.onchain.funding_spent(rec)

    def send_shutdown(self, rec: ChannelRecord) -> None:
        """The `close` asked for rec goes to its channeld, if one runs."""
        r = self.close_requests.get(rec.dbid)
        if r is not None:
            send_to_channeld(rec.subd, "channeld_shutdown", {"script": r["script"], "min_feerate": 0,
                                                             "max_feerate": 0, "feerate": r["feerate"]})


class ChannelOpenFailed(Exception):
    pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
