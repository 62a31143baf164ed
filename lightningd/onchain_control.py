"""The master's side of onchaind (Core Lightning's onchain_control.c): one
onchaind per channel whose funding output was spent, from that block until
every output is irrevocably resolved (the channel is then CLOSED).

- Start: `ChannelControl._funding_spent` calls us; a one-off channeld
  (mode 4) exports the channel as onchaind needs it (`onchain_channel`,
  wire/csv/onchain_channel.csv), we add what the database knows (every HTLC the
  channel carried, the preimages we know, our closing tx) and spawn onchaind
  with an hsmd client limited to CAP_SIGN_ONCHAIN_TX.  At our start-up,
  channels still resolving get their onchaind back from its saved state
  (table onchain_state).
- The chain: as a topology listener we record (table onchain_txs, inside
  the block's transaction) every tx spending the funding output, an output
  of such a tx, or an output of those (three levels: commitment, HTLC txs,
  sweeps), whether or not onchaind already asked, so nothing is missed while
  it starts.  onchaind asks to watch outpoints (`onchaind_watch`): a recorded
  spend is sent at once, later ones as their block arrives, then the block
  itself; reorgs forget the recorded txs and tell onchaind.
- Broadcasts: kept per outpoint (a new one replaces the old: RBF), sent once
  the tip reaches not_before_height - 1 and again on every block until the
  outpoint is spent (onchaind announces them again after a reorg or a
  restart).
- Results: preimages learned on chain and HTLCs failed on chain go to the
  HTLC engine (exactly once: onchaind re-sends until its state is stored, the
  engine ignores what is already settled); status lines go to
  listpeerchannels; `onchaind_all_resolved` closes the channel.
- Deadlines (BOLT 2): on each block, a channel still run by channeld whose
  offered HTLC is past cltv_expiry + 1, or whose HTLC we fulfilled is within
  half a cltv_expiry_delta of its expiry, goes on chain with our commitment
  (closing_control.unilateral); a commitment awaiting confirmation is
  broadcast again on each block.
"""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from bitcoin.block import Block
from bitcoin.coinselect import InsufficientFunds
from bitcoin.tx import OutPoint, Tx
from common.daemon_conn import Msg, RequestFailed
from wire.channeld_modes import MODE_EXPORT_ONCHAIN
from wire.codec import Sealed
from wire.hsm_caps import CAP_SIGN_ONCHAIN_TX
from wire.internal import internal_schema

from . import channel as C
from .closing_control import unilateral
from .subd import Subd
from .supervision import RestartBudget, restart

if TYPE_CHECKING:
    from .channel import ChannelRecord
    from .lightningd import LightningD

REASONABLE_DEPTH = 3             # confirmations before a timed-out HTLC is failed upstream
OFFERED_GRACE = 1                # BOLT 2 `G`: go on chain at cltv_expiry + G
RESTART_LIMIT = 5
MAX_DEPTH = 3                    # commitment, HTLC txs, sweeps
Outpoint = tuple[bytes, int]


@dataclass
class Resolver:
    """One channel being resolved, and its onchaind."""
    rec: "ChannelRecord"
    spend_txid: bytes
    subd: Subd | None = None
    requested: set[Outpoint] = field(default_factory=set)
    pending: dict[Outpoint, dict] = field(default_factory=dict)     # broadcasts in force
    preimages_sent: set[bytes] = field(default_factory=set)
    feerate_sent: int = 0
    all_resolved: bool = False
    restarts: RestartBudget = field(default_factory=lambda: RestartBudget(RESTART_LIMIT))

    @property
    def running(self) -> bool:
        return self.subd is not None and self.subd.running


class OnchainControl:
    # onchaind -> master messages that are not replies, and their handlers
    HANDLERS = {
        "onchaind_persist": "handle_persist",
        "onchaind_watch": "handle_watch",
        "onchaind_fee_inputs": "handle_fee_inputs",
        "onchaind_broadcast": "handle_broadcast",
        "onchaind_preimage_learned": "handle_preimage_learned",
        "onchaind_htlc_failed": "handle_htlc_failed",
        "onchaind_resolved": "handle_resolved",
        "onchaind_warn": "handle_warn",
        "onchaind_all_resolved": "handle_all_resolved",
    }

    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.resolvers: dict[int, Resolver] = {}
        #: outpoints whose spends we record -> (channel dbid, level of the tx holding them)
        self.watched: dict[Outpoint, tuple[int, int]] = {}
        #: recorded spends: outpoint -> (channel dbid, spending tx, height)
        self.spent_by: dict[Outpoint, tuple[int, Tx, int]] = {}
        self._loaded = False
        self._reorg_floor: int | None = None     # reorgs before the resolvers started
        self._going_onchain: set[int] = set()
        self.subds: list[Subd] = []


    @property
    def db(self):
        assert self.ld.db is not None
        return self.ld.db

    # ------------------------------------------------------------------ start-up
    def _load(self) -> None:
        """The recorded txs of channels not closed yet (lazily: the first
        block may come before start())."""
        if self._loaded:
            return
        self._loaded = True
        self._rebuild_index()

    def _rebuild_index(self) -> None:
        self.watched.clear()
        self.spent_by.clear()
        live = {d for d, c in self.ld.channels.channels.items() if c.state != C.CLOSED}
        for dbid, raw, height, level in self.db.query(
                "SELECT dbid, raw, height, level FROM onchain_txs ORDER BY height, level"):
            if dbid in live:
                self._index(dbid, Tx.parse(raw), height, level)
        for r in self.resolvers.values():
            for key in r.requested:
                self.watched.setdefault(key, (r.rec.dbid, MAX_DEPTH - 1))

    async def start(self) -> None:
        """After the chain caught up: resume every channel still resolving."""
        self._load()
        for rec in list(self.ld.channels.channels.values()):
            if rec.state in (C.FUNDING_SPEND_SEEN, C.ONCHAIN) and rec.spend_txid is not None \
                    and rec.dbid not in self.resolvers:
                row = self.db.one("SELECT status_json FROM onchain_state WHERE dbid = ?", (rec.dbid,))
                if row is not None:
                    rec.onchain_status = json.loads(row[0])
                await self._start_resolver(rec)
        self._reorg_floor = None

    # ------------------------------------------------------------------ the chain (topology listener)
    def _index(self, dbid: int, tx: Tx, height: int, level: int) -> None:
        txid = tx.txid()
        for i in tx.inputs:
            key = (i.prevout.txid, i.prevout.index)
            w = self.watched.get(key)
            if w is not None and w[0] == dbid:
                self.spent_by[key] = (dbid, tx, height)
        if level < MAX_DEPTH:
            for n, o in enumerate(tx.outputs):
                if not self.ld.wallet.is_ours(o.script_pubkey):
                    self.watched.setdefault((txid, n), (dbid, level))

    def _record(self, dbid: int, tx: Tx, height: int, level: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO onchain_txs(dbid, txid, raw, height, level) VALUES (?, ?, ?, ?, ?)",
                        (dbid, tx.txid(), tx.serialize(), height, level))
        self._index(dbid, tx, height, level)

    def block_connected(self, height: int, block: Block) -> None:
        self._load()
        funding = {(c.funding_txid, c.funding_outnum): c.dbid for c in self.ld.channels.channels.values()
                   if c.state != C.CLOSED}
        spends: list[tuple[int, Outpoint, Tx]] = []
        for tx in block.txs:
            hits: dict[int, int] = {}
            for i in tx.inputs:
                key = (i.prevout.txid, i.prevout.index)
                dbid = funding.get(key)
                if dbid is not None:
                    hits[dbid] = 1
                w = self.watched.get(key)
                if w is not None:
                    hits[w[0]] = min(hits.get(w[0], MAX_DEPTH), w[1] + 1)
                    spends.append((w[0], key, tx))
            for dbid, level in hits.items():
                self._record(dbid, tx, height, level)
        asyncio.get_running_loop().call_soon(self._after_block, height, spends)

    def block_disconnected(self, height: int) -> None:
        self._load()
        self.db.execute("DELETE FROM onchain_txs WHERE height >= ?", (height,))
        self._rebuild_index()
        if not any(r.running for r in self.resolvers.values()):
            self._reorg_floor = height if self._reorg_floor is None else min(self._reorg_floor, height)
        # after what earlier blocks queued for onchaind
        asyncio.get_running_loop().call_soon(self._after_disconnect, height)

    def _after_disconnect(self, height: int) -> None:
        for r in self.resolvers.values():
            self._send(r, "onchaind_block_disconnected", {"height": height})

    def _after_block(self, height: int, spends: list[tuple[int, Outpoint, Tx]]) -> None:
        for dbid, key, tx in spends:
            r = self.resolvers.get(dbid)
            if r is None:
                continue
            r.pending.pop(key, None)
            if key in r.requested:
                self._send(r, "onchaind_spent", {"txid": key[0], "outnum": key[1], "tx": tx.serialize(),
                                                 "height": height})
        feerate = self._feerate()
        for r in list(self.resolvers.values()):
            if not r.running:
                continue
            if feerate != r.feerate_sent:
                r.feerate_sent = feerate
                self._send(r, "onchaind_feerate", {"feerate_per_kw": feerate})
            self._send(r, "onchaind_block", {"height": height})
            self._send_preimages(r)
            self._broadcast_due(r)
            if r.rec.spend_txid is None:
                # a reorg took the funding spend away: if it is ours, send it again
                for raw in (r.rec.last_tx, r.rec.closing_tx):
                    if raw is not None and Tx.parse(raw).txid() == r.spend_txid:
                        asyncio.ensure_future(self._rebroadcast(r.rec, raw, "funding spend"))
        self._check_deadlines(height)

    # ------------------------------------------------------------------ spawning
    def funding_spent(self, rec: "ChannelRecord") -> None:
        asyncio.ensure_future(self._funding_spent(rec))

    async def _funding_spent(self, rec: "ChannelRecord") -> None:
        r = self.resolvers.get(rec.dbid)
        if r is not None:
            if r.spend_txid == rec.spend_txid:
                # the same spend mined again after a reorg
                if r.running and rec.spend_height is not None:
                    self._send(r, "onchaind_tx_confirmed", {"txid": rec.spend_txid, "height": rec.spend_height})
                return
            # a reorg replaced the spend: start over with the new one
            self.ld.log.unusual(f"channel {rec.dbid}: funding now spent by {_hex(rec.spend_txid)}: "
                                "restarting onchaind")
            del self.resolvers[rec.dbid]
            r.all_resolved = True    # no restart of the old one
            if r.subd is not None:
                await r.subd.stop()
            with self.db.transaction():
                self.db.execute("DELETE FROM onchain_state WHERE dbid = ?", (rec.dbid,))
        await self._start_resolver(rec)

    async def _start_resolver(self, rec: "ChannelRecord", r: Resolver | None = None) -> None:
        assert rec.spend_txid is not None
        if r is None:
            r = self.resolvers[rec.dbid] = Resolver(rec, rec.spend_txid)
        row = self.db.one("SELECT state FROM onchain_state WHERE dbid = ?", (rec.dbid,))
        saved = Sealed("onchaind_state", bytes.fromhex(row[0])) if row else None
        spend = await self._spending_tx(rec)
        if spend is None:
            self.ld.log.broken(f"channel {rec.dbid}: cannot find the tx {_hex(rec.spend_txid)} spending "
                               "its funding output")
            return
        channel = extra = None
        if saved is None:
            try:
                channel = await self._export(rec)
            except Exception as e:
                if self.ld.stopping:
                    return
                self.ld.log.broken(f"channel {rec.dbid}: cannot export the channel for onchaind: {e}")
                rec.onchain_status = [f"cannot resolve on chain: {e}"]
                return
            extra = self._extra(rec)
            self._fail_uncommitted(rec, channel)
        if self.resolvers.get(rec.dbid) is not r or self.ld.stopping:
            return
        hsm_fd = await self.ld.hsm.client_fd(f"onchaind-{rec.dbid}", CAP_SIGN_ONCHAIN_TX, rec.peer_id, rec.dbid)
        handlers = {name: self._bind(r, meth) for name, meth in self.HANDLERS.items()}
        subd = Subd("onchaind", internal_schema("onchaind", keep_sealed=True), handlers,
                    self.ld.log.child(f"onchaind-chan#{rec.dbid}", rec.peer_id.hex()),
                    on_exit=lambda s, rc: self._on_exit(r, s, rc), node_id=rec.peer_id.hex(),
                    spawner=self.ld.zygote, gate=self.ld.db_gate)
        try:
            subd.start(hsm_fd=hsm_fd)
        finally:
            os.close(hsm_fd)
        r.subd = subd
        r.requested.clear()
        self.subds.append(subd)
        tip = self.ld.topology.tip_height
        r.feerate_sent = self._feerate()
        subd.send("onchaind_init", {
            "channel": channel, "extra": extra, "spending_tx": spend.serialize(),
            "spend_height": rec.spend_height or 0, "tip": tip, "sweep_script": self._sweep_script(rec),
            "feerate_per_kw": r.feerate_sent, "reasonable_depth": REASONABLE_DEPTH, "state": saved})
        if saved is not None:
            if self._reorg_floor is not None:
                self._send(r, "onchaind_block_disconnected", {"height": self._reorg_floor})
            if rec.spend_height is not None:
                self._send(r, "onchaind_tx_confirmed", {"txid": rec.spend_txid, "height": rec.spend_height})
            self._send(r, "onchaind_block", {"height": tip})
        self._send_preimages(r)

    def _bind(self, r: Resolver, meth: str) -> Callable[[Msg], Any]:
        fn = getattr(self, meth)
        return lambda msg: fn(r, msg)

    async def _on_exit(self, r: Resolver, subd: Subd, rc: int) -> None:
        if subd in self.subds:
            self.subds.remove(subd)
        if r.subd is subd:
            r.subd = None
        await restart(self.ld, f"onchaind for channel {r.rec.dbid}", lambda: self._start_resolver(r.rec, r),
                      r.restarts, wanted=lambda: not r.all_resolved and self.resolvers.get(r.rec.dbid) is r
                      and r.subd is None)

    async def _spending_tx(self, rec: "ChannelRecord") -> Tx | None:
        row = self.db.one("SELECT raw FROM onchain_txs WHERE dbid = ? AND txid = ?", (rec.dbid, rec.spend_txid))
        if row is not None:
            return Tx.parse(row[0])
        if rec.spend_height is None:
            return None
        blk = await self.ld.backend.getrawblockbyheight(rec.spend_height)
        if blk.get("block") is None:
            return None
        for tx in Block.parse(bytes.fromhex(blk["block"])).txs:
            if tx.txid() == rec.spend_txid:
                with self.db.transaction():
                    self._record(rec.dbid, tx, rec.spend_height, 1)
                return tx
        return None

    async def _export(self, rec: "ChannelRecord") -> dict[str, Any]:
        """The channel as onchaind needs it, from a one-off channeld (the
        master cannot read channeld's state)."""
        subd, fd = await self.ld.channels.spawn(rec.peer_id, rec.dbid, MODE_EXPORT_ONCHAIN, rec.config, rec.core)
        os.close(fd)
        self.subds.append(subd)     # a shutdown meanwhile stops it before hsmd
        try:
            r = await subd.request("channeld_export_onchain", {}, timeout=30)
        except RequestFailed as e:
            raise RuntimeError(e.msg.fields.get("reason")) from None
        finally:
            await subd.stop()
            self.subds.remove(subd)
        return r["channel"]

    def _extra(self, rec: "ChannelRecord") -> dict[str, Any]:
        """What the master adds to channeld's export (`onchain_extra`,
        wire/csv/onchaind.csv).  HTLC rows with a placeholder id (negative:
        an offer never committed) were never in a commitment."""
        past, preimages = [], set()
        for htlc_id, direction, amount, phash, cltv, preimage in self.db.query(
                "SELECT htlc_id, direction, amount_msat, payment_hash, cltv_expiry, preimage FROM htlcs "
                "WHERE channel_dbid = ? AND htlc_id >= 0", (rec.dbid,)):
            past.append({"offerer": "local" if direction == "out" else "remote", "id": htlc_id,
                         "amount_msat": amount, "payment_hash": phash, "cltv_expiry": cltv})
            if preimage is not None:
                preimages.add(preimage)
        closing = [Tx.parse(rec.closing_tx).txid()] if rec.closing_tx else []
        return {"past_htlcs": past, "preimages": sorted(preimages), "mutual_close_txids": closing}

    def _fail_uncommitted(self, rec: "ChannelRecord", doc: dict) -> None:
        """Our HTLCs in no commitment that can still confirm can never be on
        chain: fail them upstream now."""
        live = set()
        for key in ("local_commitment", "remote_commitment", "remote_next_commitment"):
            for h in (doc[key] or {"htlcs": []})["htlcs"]:
                if h["offerer"] == "local":
                    live.add(h["id"])
        rows = self.db.query("SELECT htlc_id FROM htlcs WHERE channel_dbid = ? AND direction = 'out' AND "
                             "state = 'offered'", (rec.dbid,))
        gone = [hid for (hid,) in rows if hid not in live]
        if gone:
            with self.db.transaction():
                for hid in gone:
                    self.ld.log.info(f"channel {rec.dbid}: HTLC {hid} in no commitment: failing it")
                    self.ld.htlcs.onchain_htlc_failed(rec.dbid, hid)

    def _sweep_script(self, rec: "ChannelRecord") -> bytes:
        key = f"onchain_sweep_keyidx_{rec.dbid}"
        idx = self.db.get_var(key)
        if idx is None:
            idx = self.ld.wallet.new_keyidx("bech32")
            with self.db.transaction():
                self.db.set_var(key, idx)
        return self.ld.wallet.scripts_for(int(idx))["p2wpkh"]

    def _feerate(self) -> int:
        f = self.ld.feerates
        rates = [f.perkw(n) for n in ("htlc_resolution", "penalty", "delayed_to_us")]
        return max([x for x in rates if x] or [f.floor_perkw()])

    def _send(self, r: Resolver, name: str, fields: dict) -> None:
        if r.running:
            assert r.subd is not None
            try:
                r.subd.send(name, fields)
            except Exception as e:   # it is dying: its restart replays everything
                self.ld.log.debug(f"onchaind of channel {r.rec.dbid}: {name} not sent: {e}")

    def preimage_known(self, dbid: int) -> None:
        """The master learned a preimage of an incoming HTLC of channel
        dbid: its running onchaind gets it at once (else at its start)."""
        r = self.resolvers.get(dbid)
        if r is not None and r.running:
            self._send_preimages(r)

    def _send_preimages(self, r: Resolver) -> None:
        """Preimages the master learned (incoming HTLCs of this channel
        fulfilled off-chain, payments) that onchaind may need to claim."""
        for phash, preimage in self.db.query("SELECT payment_hash, preimage FROM htlcs WHERE channel_dbid = ? AND "
                                             "preimage IS NOT NULL", (r.rec.dbid,)):
            if phash not in r.preimages_sent:
                r.preimages_sent.add(phash)
                self._send(r, "onchaind_preimage", {"payment_hash": phash, "preimage": preimage})

    # ------------------------------------------------------------------ broadcasting
    def _broadcast_due(self, r: Resolver) -> None:
        tip = self.ld.topology.tip_height
        for key, b in list(r.pending.items()):
            if tip >= b["not_before"] - 1 and key not in self.spent_by:
                asyncio.ensure_future(self._broadcast(r, key, b))

    async def _broadcast(self, r: Resolver, key: Outpoint, b: dict) -> None:
        tx: Tx = b["tx"]
        res = await self.ld.backend.sendrawtransaction(tx.to_hex())
        what = f"channel {r.rec.dbid}: {b['reason']} {tx.txid_hex} (fee {b['fee']} sat, {b['feerate']} sat/kw)"
        if res.get("success"):
            if not b["sent"]:
                self.ld.log.info(f"broadcast {what}")
            b["sent"] = True
        elif not b["sent"] and "already" not in str(res.get("errmsg", "")):
            self.ld.log.debug(f"broadcast of {what} failed: {res.get('errmsg')}")

    # ------------------------------------------------------------------ onchaind messages
    async def handle_persist(self, r: Resolver, msg: Msg) -> None:
        rec = r.rec
        try:
            lines = msg["status"]
            with self.db.transaction():
                self.db.execute("INSERT INTO onchain_state(dbid, state, status_json) VALUES (?, ?, ?) "
                                "ON CONFLICT(dbid) DO UPDATE SET state = excluded.state, "
                                "status_json = excluded.status_json", (rec.dbid, msg["state"].data.hex(),
                                                                       json.dumps(lines)))
        except Exception as e:
            self.ld.log.broken(f"channel {rec.dbid}: storing onchaind's state failed: {e}")
            if r.subd is not None:
                r.subd.send("onchaind_persist_fail", {"reason": str(e)})
            return
        rec.onchain_status = lines
        if r.subd is not None and r.subd.running:
            r.subd.send("onchaind_persist_reply", {})
        if r.all_resolved:
            self.ld.channels.set_state(rec, C.CLOSED, "onchain", "all outputs irrevocably resolved")
            with self.db.transaction():
                self.db.execute("DELETE FROM onchain_txs WHERE dbid = ?", (rec.dbid,))
            rec.onchain_status = []
            self.resolvers.pop(rec.dbid, None)
            for key in [k for k, w in self.watched.items() if w[0] == rec.dbid]:
                del self.watched[key]
            if r.subd is not None:
                await r.subd.stop()

    def handle_watch(self, r: Resolver, msg: Msg) -> None:
        key = (msg["txid"], msg["outnum"])
        r.requested.add(key)
        if key not in self.watched:
            self.watched[key] = (r.rec.dbid, MAX_DEPTH - 1)
        spent = self.spent_by.get(key)
        if spent is not None and spent[0] == r.rec.dbid:
            self._send(r, "onchaind_spent", {"txid": key[0], "outnum": key[1], "tx": spent[1].serialize(),
                                             "height": spent[2]})

    def handle_fee_inputs(self, r: Resolver, msg: Msg) -> None:
        """Wallet coins for an anchors zero-fee HTLC tx (lightningd/anchors.py)."""
        op = OutPoint(msg["txid"], msg["outnum"])
        try:
            coins, script, change = self.ld.anchors.fee_inputs(r.rec.dbid, op, msg["weight"], msg["feerate_per_kw"],
                                                               msg["not_before_height"])
        except InsufficientFunds as e:
            # onchaind asks again on the next block (the wallet may have coins confirmed by then)
            self.ld.log.unusual(f"channel {r.rec.dbid}: cannot pay for the HTLC tx spending {op}: {e}")
            self._send(r, "onchaind_fee_inputs_fail", {"reason": str(e)})
            return
        self._send(r, "onchaind_fee_inputs_reply", {
            "inputs": [{"txid": u.txid, "outnum": u.outnum, "amount_sat": u.value_sat} for u in coins],
            "change_script": script, "change_sat": change})

    def handle_broadcast(self, r: Resolver, msg: Msg) -> None:
        if msg["wallet_inputs"]:
            asyncio.ensure_future(self._sign_fee_inputs(r, msg))
            return
        self._pend(r, msg, Tx.parse(msg["tx"]))

    async def _sign_fee_inputs(self, r: Resolver, msg: Msg) -> None:
        try:
            tx = await self.ld.anchors.sign_fee_inputs(Tx.parse(msg["tx"]), msg["wallet_inputs"], msg["spent_sat"],
                                                       msg["spent_script"])
        except Exception as e:
            self.ld.log.broken(f"channel {r.rec.dbid}: cannot sign the wallet inputs of {msg['reason']}: "
                               f"{getattr(e, 'msg', e)}")
            return
        self._pend(r, msg, tx)

    def _pend(self, r: Resolver, msg: Msg, tx: Tx) -> None:
        key = (msg["txid"], msg["outnum"])
        self.ld.log.debug(f"channel {r.rec.dbid}: {msg['reason']} {tx.txid_hex} to broadcast from height "
                          f"{msg['not_before_height']}")
        b = {"tx": tx, "not_before": msg["not_before_height"], "reason": msg["reason"],
             "fee": msg["fee_sat"], "feerate": msg["feerate_per_kw"], "sent": False}
        r.pending[key] = b
        if key in self.spent_by:
            return     # onchaind does not know yet
        if self.ld.topology.tip_height >= b["not_before"] - 1:
            asyncio.ensure_future(self._broadcast(r, key, b))

    def handle_preimage_learned(self, r: Resolver, msg: Msg) -> None:
        self.ld.log.info(f"channel {r.rec.dbid}: preimage of {msg['payment_hash'].hex()} learned on chain")
        with self.db.transaction():
            self.ld.htlcs.onchain_preimage(r.rec.dbid, msg["payment_hash"], msg["preimage"])

    def handle_htlc_failed(self, r: Resolver, msg: Msg) -> None:
        self.ld.log.info(f"channel {r.rec.dbid}: our HTLC {msg['htlc_id']} failed on chain")
        with self.db.transaction():
            self.ld.htlcs.onchain_htlc_failed(r.rec.dbid, msg["htlc_id"])

    def handle_resolved(self, r: Resolver, msg: Msg) -> None:
        by = "itself" if msg["by_txid"] == bytes(32) else _hex(msg["by_txid"])
        self.ld.log.info(f"channel {r.rec.dbid}: {_hex(msg['txid'])}:{msg['outnum']} resolved by "
                         f"{msg['resolved_by']} {by} at height {msg['height']}")

    def handle_warn(self, r: Resolver, msg: Msg) -> None:
        self.ld.log.unusual(f"channel {r.rec.dbid}: {msg['message']}")

    def handle_all_resolved(self, r: Resolver, msg: Msg) -> None:
        r.all_resolved = True      # closed once the state that says so is stored

    # ------------------------------------------------------------------ going on chain by ourselves
    def _check_deadlines(self, height: int) -> None:
        for rec in list(self.ld.channels.channels.values()):
            if rec.state == C.AWAITING_UNILATERAL and rec.last_tx is not None:
                asyncio.ensure_future(self.ld.anchors.broadcast_commitment(rec, rec.last_tx, "our commitment"))
                continue
            htlcs = rec.summary["htlcs"]
            if rec.state not in C.ACTIVE or not htlcs or rec.dbid in self._going_onchain:
                continue
            rows = {(d, hid): (state, pre) for hid, d, state, pre in self.db.query(
                "SELECT htlc_id, direction, state, preimage FROM htlcs WHERE channel_dbid = ?", (rec.dbid,))}
            half = (rec.cltv_delta + 1) // 2
            for h in htlcs:
                state, preimage = rows.get((h["direction"], h["id"]), (None, None))
                if h["direction"] == "out" and state == "offered" and height >= h["expiry"] + OFFERED_GRACE:
                    reason = f"Offered HTLC {h['id']} cltv {h['expiry']} hit deadline"
                elif h["direction"] == "in" and preimage is not None and height >= h["expiry"] - half:
                    reason = f"Fulfilled HTLC {h['id']} cltv {h['expiry']} hit deadline"
                else:
                    continue
                self._going_onchain.add(rec.dbid)
                asyncio.ensure_future(self._go_onchain(rec, reason))
                break

    async def _go_onchain(self, rec: "ChannelRecord", reason: str) -> None:
        self.ld.log.unusual(f"channel {rec.dbid}: {reason}: going on chain")
        if self.ld.is_connected(rec.peer_id):
            # BOLT 2: an HTLC past its deadline "SHOULD send an `error` to the
            # [offering / receiving] peer (if connected)"; the channel daemon
            # is stopped before it could (connectd queues it before anything
            # the next daemon says)
            self.ld.connectd.send_error(rec.peer_id, reason, warning=False, channel_id=rec.channel_id)
        try:
            await unilateral(self.ld, rec, reason)
        except Exception as e:
            self.ld.log.broken(f"channel {rec.dbid}: cannot go on chain: {e}")
            self._going_onchain.discard(rec.dbid)

    async def _rebroadcast(self, rec: "ChannelRecord", raw: bytes, what: str) -> None:
        res = await self.ld.backend.sendrawtransaction(raw.hex())
        if not res.get("success"):
            self.ld.log.debug(f"channel {rec.dbid}: rebroadcast of {what}: {res.get('errmsg')}")


def _hex(txid: bytes | None) -> str:
    return txid[::-1].hex() if txid else "?"
