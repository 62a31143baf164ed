"""channeld: one channel's daemon.  It owns the channel's BOLT 2 state (the
pure core in channeld/core), talks to its peer through the socketpair whose
other end connectd holds (fd 4), signs through hsmd (fd 3, synchronous) and
asks the master to persist before it sends anything that commits us.

Every operation on the channel takes `self.lock`, so the peer's messages and
the master's requests never interleave inside the state machine."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from common.commitment import Side
from common.daemon import Daemon
from common.daemon_conn import DaemonConn, Msg, RequestFailed
from common.logtext import MAX_PEER_TEXT, fit_utf8, peer_data
from common.msgconn import ConnectionClosed, MsgConn
from common.sync_hsm import SyncHsm
from wire import DecodeError, bolt_schema
from wire.channeld_modes import MODE_EXPORT_ONCHAIN, MODE_FUNDEE, MODE_FUNDER, MODE_RESUME, MODE_SIGN_LAST
from wire.internal import internal_schema

from . import opening
from .core import (Channel, ChannelError, ChannelState, ClosingFeeRange, DataLossError, FeerateBounds, HtlcChanges,
                   PeerError, PeerWarning, SignerError, UsageError)
from .announce import Announcer
from .hsm_signer import HsmSigner
from .summary import locked_in, resolved, summary

BALANCE_REFRESH = 0.5       # seconds between recomputations of spendable/receivable under load
# --commit-time (Core Lightning's default 10 ms): updates arriving together share one commitment
COMMIT_DELAY = 0.010
TEMPORARY_CHANNEL_FAILURE = 0x1007
REESTABLISH_TIMEOUT = 120.0  # seconds the peer has to answer our channel_reestablish
FAILED_STATES = (ChannelState.CLOSED,)


class ChannelFailed(Exception):
    pass


class ChannelDaemon:
    MASTER_HANDLERS = {
        "channeld_init": "handle_init",
        "channeld_funding_depth": "handle_funding_depth",
        "channeld_offer_htlc": "handle_offer_htlc",
        "channeld_fulfill_htlc": "handle_fulfill_htlc",
        "channeld_fail_htlc": "handle_fail_htlc",
        "channeld_shutdown": "handle_shutdown",
        "channeld_feerates": "handle_feerates",
        "channeld_sign_last_tx": "handle_sign_last_tx",
        "channeld_export_onchain": "handle_export_onchain",
    }

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.status = d.status
        handlers = {name: getattr(self, meth) for name, meth in self.MASTER_HANDLERS.items()}
        self.master = DaemonConn(d.master, internal_schema("channeld"), handlers,
                                 on_error=lambda e: self.status.broken(f"master link: {e}"))
        assert d.hsm_fd is not None and d.extra_fds, "channeld needs hsmd (fd 3) and its peer (fd 4)"
        self.hsm = SyncHsm(d.hsm_fd)
        self.peer = MsgConn.from_fd(d.extra_fds[0])
        self.schema = bolt_schema()
        self.lock = asyncio.Lock()
        self.ch: Channel | None = None
        self.temp_id: bytes | None = None
        self._data_lost = False   # the peer proved our state is old: never broadcast it
        self.signer: HsmSigner = None  # type: ignore[assignment]
        self.init: dict[str, Any] = {}
        self.init_event = asyncio.Event()
        self.peer_id = b""
        self.chain_hash = b""
        self.fee_bounds = FeerateBounds()
        self.minimum_depth = 3
        self.opening_timeout = 0.0    # seconds the peer has for each opening message (channeld_init)
        self.scid: int | None = None
        self.local_alias: int | None = None    # ours, sent in channel_ready (the master chose it)
        self.funding_depth = 0
        self._commit_timer: asyncio.TimerHandle | None = None
        self._progress_scheduled = False
        self.commit_delay = COMMIT_DELAY
        self._shutdown_request: dict | None = None
        self._inbox: asyncio.Queue[tuple[str, dict] | None] = asyncio.Queue()
        # HTLC resolutions from the master that arrived before the channel was
        # ready (resuming, reestablishing): applied once it is
        self._deferred: list = []
        self.ready = False
        self.done = asyncio.Event()
        self.loaded = asyncio.Event()    # modes 3 and 4: the channel is loaded
        self.announcer: Announcer | None = None
        self._bal: tuple[int, int] | None = None
        self._bal_at = 0.0
        self._bal_key: tuple = ()
        self._bal_timer: asyncio.TimerHandle | None = None
        self._bal_task: asyncio.Future | None = None

    # ------------------------------------------------------------------ plumbing
    def billboard(self, text: str) -> None:
        self.status.billboard(text)

    async def send_peer(self, name: str, fields: dict) -> None:
        # Core Lightning's debug line per peer message (the bytes are connectd's io lines)
        self.status.debug(f"peer_out WIRE_{name.upper()}", self.peer_id)
        try:
            self.peer.send(self.schema.encode(name, fields))
        except ConnectionClosed:
            raise ChannelFailed("peer disconnected") from None

    def route_channel_id(self, cid: bytes) -> None:
        """Tell connectd (in-band, before the message that uses it) to route cid to us."""
        self.peer.send(internal_schema("peer_stream").encode("stream_route_channel_id", {"channel_id": cid}))

    async def _peer_reader(self) -> None:
        try:
            while True:
                frame = await self.peer.recv()
                try:
                    m = self.schema.decode(frame.msg)
                except DecodeError as e:
                    self.status.unusual(f"malformed peer message: {e}", self.peer_id)
                    await self._inbox.put(("_malformed", {"error": str(e)}))
                    continue
                if m.name is None:
                    if m.type % 2 == 0:
                        await self._inbox.put(("_malformed", {"error": f"unknown even message {m.type}"}))
                    continue
                self.status.debug(f"peer_in WIRE_{m.name.upper()}", self.peer_id)
                await self._inbox.put((m.name, m.fields))
        except ConnectionClosed:
            await self._inbox.put(None)

    async def expect_peer(self, name: str, cid: bytes) -> dict:
        """During opening: the next message must be `name` (errors end it).
        A peer that goes silent is forgotten after `opening_timeout` seconds:
        an open is cheap to start and must not hold a process forever."""
        while True:
            try:
                item = await asyncio.wait_for(self._inbox.get(), self.opening_timeout)
            except asyncio.TimeoutError:
                raise ChannelFailed(f"timed out after {self.opening_timeout:g}s waiting for {name}") from None
            if item is None:
                raise ChannelFailed("peer disconnected during opening")
            mname, fields = item
            if mname == "error":
                raise ChannelFailed(f"peer sent error: {peer_data(fields['data'])}")
            if mname == "warning":
                self.status.unusual(f"peer warning: {peer_data(fields['data'])}", self.peer_id)
                continue
            if mname != name:
                raise PeerError(f"expected {name}, got {mname}")
            got = fields.get("channel_id", fields.get("temporary_channel_id"))
            if got != cid:
                raise PeerError(f"{name} for channel {got.hex() if got else '?'}, expected {cid.hex()}")
            return fields

    def _balances(self, ch: Channel) -> tuple[int, int]:
        """spendable/receivable for the master's summary.  Computing them is a
        search over the BOLT 2 checks: under load they are refreshed at most
        every BALANCE_REFRESH seconds, and once more when things calm down;
        exact whenever the channel turns busy or idle (a payer starting its
        next payment right after the last sees what it can really send).  A
        payer planning on a stale figure learns the exact one when its HTLC
        is refused (handle_offer_htlc)."""
        now = time.monotonic()
        key = (ch.state, ch.connected, not ch.log.htlcs)
        if self._bal is None or now - self._bal_at >= BALANCE_REFRESH or key != self._bal_key:
            self._bal = (ch.spendable_msat, ch.receivable_msat)
            self._bal_at = now
            self._bal_key = key
        elif self._bal_timer is None:
            self._bal_timer = asyncio.get_running_loop().call_later(BALANCE_REFRESH, self._start_refresh)
        return self._bal

    def _start_refresh(self) -> None:
        self._bal_task = asyncio.ensure_future(self._refresh_balances())

    async def stop_balance_refresh(self) -> None:
        """At exit: no refresh left pending (or destroyed half-way)."""
        if self._bal_timer is not None:
            self._bal_timer.cancel()
            self._bal_timer = None
        task, self._bal_task = self._bal_task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def _refresh_balances(self) -> None:
        self._bal_timer = None
        ch = self.ch
        if ch is None or not ch.connected:
            return
        async with self.lock:
            self._bal = None
            try:
                await self.persist(ch)
            except ChannelFailed:
                pass

    async def persist(self, ch: Channel, changes: HtlcChanges | None = None, *, fulfilled: dict | None = None,
                      funding: dict | None = None, closing_tx: bytes = b"", announcement: bytes = b"",
                      remote_alias: int | None = None) -> None:
        """Have the master store the state (and act on what happened with it:
        `channeld_persist` in wire/csv/channeld.csv) in one transaction;
        return once it is on disk."""
        try:
            await self.master.request("channeld_persist", {
                "summary": summary(ch, self._balances(ch)),
                "core": ch.to_dict(),
                "locked_in": locked_in(changes, self.shared_secret) if changes else [],
                "resolved": resolved(changes) if changes else [],
                "fulfilled": fulfilled, "funding": funding, "closing_tx": closing_tx,
                "channel_announcement": announcement, "remote_alias": remote_alias})
        except RequestFailed as e:
            raise ChannelFailed(f"master refused to persist: {e.msg.fields.get('reason')}") from None

    def shared_secret(self, onion: bytes, path_key: bytes | None = None) -> bytes | None:
        """BOLT 4 shared secret of an incoming onion (hsmd does the ECDH);
        None if its public key (or the path_key) is invalid (the master fails
        it).  With a route blinding path_key, the onion was encrypted to our
        blinded id B = HMAC256("blinded_node_id", ECDH(path_key)) * N: the
        ephemeral key is tweaked instead, which needs only ECDHs of hsmd."""
        from common.onion import blinded_node_tweak
        from common.onion_crypto import blind_pubkey
        from common.sync_hsm import HsmError
        try:
            point = onion[1:34]
            if path_key is not None:
                path_ss = self.hsm.call("hsmd_ecdh_req", {"point": path_key})["ss"]
                point = blind_pubkey(point, blinded_node_tweak(path_ss))
            return self.hsm.call("hsmd_ecdh_req", {"point": point})["ss"]
        except (HsmError, ValueError):    # (HsmLinkBroken stops the daemon)
            return None

    async def funding_needed(self, funding_sat: int, script: bytes) -> tuple[bytes, int]:
        try:
            r = await self.master.request("channeld_funding_needed", {"funding_sat": funding_sat, "script": script})
        except RequestFailed as e:
            raise ChannelFailed(f"funding: {e.msg.fields.get('reason')}") from None
        return r["funding_txid"], r["funding_outnum"]

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        self.master.start()
        # The master may close our link before init reaches us (the peer was
        # already gone again, and a reconnection replaces this daemon): the
        # link closing is then the only news we get, and it means exit.
        init = asyncio.ensure_future(self.init_event.wait())
        closed = asyncio.ensure_future(self.master.wait_closed())
        await asyncio.wait([init, closed], return_when=asyncio.FIRST_COMPLETED)
        init.cancel()
        closed.cancel()
        if not self.init_event.is_set():
            return
        reader = asyncio.ensure_future(self._peer_reader())
        main = asyncio.ensure_future(self._run_channel())
        # the master closing our link means stop now (it stores everything itself)
        master_gone = asyncio.ensure_future(self.master.wait_closed())
        await asyncio.wait([main, master_gone], return_when=asyncio.FIRST_COMPLETED)
        if not main.done():
            main.cancel()
            reader.cancel()
            return
        master_gone.cancel()
        try:
            await main
        except ChannelFailed as e:
            self.status.info(f"channel stopped: {e}", self.peer_id)
            if self.ch is None and self.temp_id is not None:
                await self._abort_opening(str(e), tell_peer="disconnected" not in str(e))
        except PeerWarning as e:
            # BOLT 2 lets us warn and disconnect instead of failing the
            # channel; the peer's uncommitted updates are dropped with the
            # connection (Core Lightning's peer_failed_warn)
            self.status.unusual(f"peer broke a rule: {e}; warning and disconnecting", self.peer_id)
            if self.ch is not None and self.ch.state is not ChannelState.CLOSED:
                self.ch.disconnect()
            self._warn_and_disconnect(str(e))
        except (PeerError, ChannelError, SignerError) as e:
            if self._disconnected_meanwhile(e):
                self.status.info(f"channel stopped: {e}", self.peer_id)
            elif self.ch is None and self.temp_id is not None:
                # nothing is committed yet: refuse this open, keep the connection
                self.status.info(f"opening refused: {e}", self.peer_id)
                await self._abort_opening(str(e), tell_peer=True)
            else:
                await self._fail_channel(str(e), data_loss=isinstance(e, DataLossError))
        finally:
            reader.cancel()
            await self.master.conn.drain()

    async def _run_channel(self) -> None:
        i = self.init
        cfg = i["config"]
        self.signer = HsmSigner(self.hsm)
        self.announcer = Announcer(self, cfg["our_node_id"], cfg["announce"], bool(cfg["channel_announcement"]))
        if i["mode"] == MODE_FUNDER:
            self.ch = await opening.open_as_funder(self, cfg)
            self.billboard("Funding signed: waiting for the funding transaction to confirm")
        elif i["mode"] == MODE_FUNDEE:
            oc = self.schema.decode(i["open_msg"]).fields
            self.ch = await opening.open_as_fundee(self, cfg, oc)
            self.billboard("Funding signed: waiting for the funding transaction to confirm")
        elif i["mode"] in (MODE_SIGN_LAST, MODE_EXPORT_ONCHAIN):
            # only to sign our latest commitment for the master (peer gone),
            # or to export the channel for onchaind
            self.ch = Channel.from_dict(self._stored_core(), self.signer, fee_bounds=self.fee_bounds)
            self._revalidate()
            self.loaded.set()
            await self.master.wait_closed()
            raise ChannelFailed("signing done")
        else:
            self.ch = Channel.from_dict(self._stored_core(), self.signer, fee_bounds=self.fee_bounds)
            self.loaded.set()
            self.minimum_depth = cfg["minimum_depth"]
            self.scid = cfg["scid"] or None
            self.funding_depth = cfg["funding_depth"]
            await self._resume()
        await self._main_loop()

    def _stored_core(self) -> dict:
        core = self.init["core"]
        if core is None:
            raise UsageError(f"mode {self.init['mode']} needs the channel's stored state")
        return core

    def _revalidate(self) -> None:
        """hsmd forgets across restarts which of our commitments it saw signed:
        show it the latest again, or it refuses to revoke the previous one."""
        ch = self.ch
        assert ch is not None
        if ch.local_sig is not None:
            n = ch.log.latest[0]
            c = ch.local_commitment(n)
            self.signer.validate_local_commitment(n, c.tx, ch.params.funding_witness_script,
                                                  ch.params.funding_sat, ch.local_sig)

    async def _resume(self) -> None:
        ch = self.ch
        assert ch is not None
        self._revalidate()
        await self.send_peer(*ch.reestablish_msg())
        self.billboard("Reconnected: waiting for channel_reestablish")
        while True:
            try:
                item = await asyncio.wait_for(self._inbox.get(), REESTABLISH_TIMEOUT)
            except asyncio.TimeoutError:
                # the channel is intact: its next channel_reestablish (routed
                # to the master while we are gone) starts a new channeld
                raise ChannelFailed("timed out waiting for channel_reestablish") from None
            if item is None:
                raise ChannelFailed("peer disconnected during reestablish")
            name, fields = item
            if name == "channel_reestablish":
                break
            if name == "error":
                await self._handle_peer_error(fields)
                return
            if name in ("warning",):
                continue
            # a peer out of step (its daemon restarted): both reestablish on a
            # new connection; never a reason to close the channel
            raise PeerWarning(f"expected channel_reestablish, got {name}")
        async with self.lock:
            r = ch.recv_reestablish(fields)
            for m in r.messages:
                if m[0] == "channel_ready":
                    m = self._with_alias(m)
                await self.send_peer(*m)
            if r.changes:
                await self.persist(ch, r.changes)
        self.master.send("channeld_reestablished", {})
        self._after_progress()

    async def _main_loop(self) -> None:
        assert self.ch is not None
        self.ready = True
        for op in self._deferred:
            await self._remove(op)
        self._deferred.clear()
        self.billboard(self._state_text())
        if self.funding_depth >= self.minimum_depth:
            await self._maybe_channel_ready()
        await self._maybe_announce()
        while True:
            item = await self._inbox.get()
            if item is None:
                async with self.lock:
                    if self.ch.state is not ChannelState.CLOSED:
                        self.ch.disconnect()
                raise ChannelFailed("peer disconnected")
            name, fields = item
            async with self.lock:
                await self._handle_peer(name, fields)
            if self.ch.state is ChannelState.CLOSED:
                return

    def _state_text(self) -> str:
        assert self.ch is not None
        return {ChannelState.AWAITING_LOCKIN: "Funding: waiting for lock-in",
                ChannelState.NORMAL: "Channel ready for use.",
                ChannelState.SHUTTING_DOWN: "Shutting down: waiting for HTLCs to clear",
                ChannelState.CLOSING_NEGOTIATION: "Negotiating closing fee",
                ChannelState.CLOSED: "Closed"}.get(self.ch.state, self.ch.state.value)

    # ------------------------------------------------------------------ peer messages
    async def _handle_peer(self, name: str, f: dict) -> None:
        ch = self.ch
        assert ch is not None
        if name == "update_add_htlc":
            ch.recv_update_add_htlc(f)
        elif name == "update_fulfill_htlc":
            preimage = ch.recv_update_fulfill_htlc(f)
            # the preimage is ours to use upstream at once: store and tell the master
            await self.persist(ch, fulfilled={"id": f["id"], "preimage": preimage})
        elif name == "update_fail_htlc":
            ch.recv_update_fail_htlc(f)
        elif name == "update_fail_malformed_htlc":
            ch.recv_update_fail_malformed_htlc(f)
        elif name == "update_fee":
            ch.recv_update_fee(f)
        elif name == "commitment_signed":
            ch.recv_commitment_signed(f)
            # persist before reveal: the new commitment is on disk before hsmd
            # revokes the old one (a crash in between leaves a state hsmd agrees with)
            await self.persist(ch)
            ch.mark_persisted()
            rev = ch.revoke()
            # ...and the revocation and what it locks in before the peer sees the secret
            await self.persist(ch, rev.changes)
            await self.send_peer(*rev.message)
        elif name == "revoke_and_ack":
            changes = ch.recv_revoke_and_ack(f)
            await self.persist(ch, changes)
            self._arm_commit_timer()        # (Core Lightning re-arms it here, whatever is pending)
        elif name == "channel_ready":
            ch.recv_channel_ready(f)
            alias = ((f.get("tlvs") or {}).get("short_channel_id") or {}).get("alias")
            # (a redundant channel_ready may still bring a new alias)
            await self.persist(ch, remote_alias=int.from_bytes(alias, "big") if alias else None)
            asyncio.ensure_future(self._maybe_announce())
        elif name == "announcement_signatures":
            assert self.announcer is not None
            await self.announcer.recv(f)
        elif name == "shutdown":
            ch.recv_shutdown(f)
            await self.persist(ch)
        elif name == "closing_signed":
            result = ch.recv_closing_signed(f)
            if result.tx is not None:
                await self.persist(ch, closing_tx=result.tx.serialize())
            if result.reply is not None:
                await self.send_peer(*result.reply)
        elif name == "channel_reestablish":
            raise PeerWarning("unexpected channel_reestablish")    # (likewise)
        elif name == "error":
            await self._handle_peer_error(f)
            return
        elif name == "warning":
            self.status.unusual(f"peer warning: {peer_data(f['data'])}", self.peer_id)
        elif name == "_malformed":
            raise PeerError(f["error"])
        else:
            self.status.debug(f"ignoring {name}", self.peer_id)
        self._after_progress()

    async def _handle_peer_error(self, f: dict) -> None:
        text = peer_data(f["data"])
        self.status.unusual(f"peer sent error: {text}", self.peer_id)
        await self._go_onchain(f"peer sent error: {text}")

    # ------------------------------------------------------------------ progress
    def _after_progress(self) -> None:
        """Something changed: move shutdown/closing along at once, and send
        our commitment when the commit timer fires (--commit-time, batching
        updates).  As Core Lightning's start_commit_timer, the timer is
        armed by a change to sign, and re-armed after we send a commitment
        or receive a revocation; never by an unrelated message (a warning,
        a channel_ready): an HTLC offered then waits the whole commit time."""
        loop = asyncio.get_running_loop()
        ch = self.ch
        if ch is not None and ch.has_changes_to_sign():
            self._arm_commit_timer()
        if not self._progress_scheduled:
            self._progress_scheduled = True
            loop.call_soon(lambda: asyncio.ensure_future(self._progress(commit=False)))
        self.billboard(self._state_text())

    def _arm_commit_timer(self) -> None:
        if self._commit_timer is None:
            self._commit_timer = asyncio.get_running_loop().call_later(self.commit_delay, self._commit_due)

    def _commit_due(self) -> None:
        self._commit_timer = None
        asyncio.ensure_future(self._progress(commit=True))

    async def _progress(self, commit: bool) -> None:
        if not commit:
            self._progress_scheduled = False
        ch = self.ch
        if ch is None or ch.state is ChannelState.CLOSED or not ch.connected:
            return
        async with self.lock:
            try:
                if commit and ch.state in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN):
                    msg = ch.send_commitment()
                    if msg is not None:
                        await self.persist(ch)   # we remember what we signed before the peer has it
                        await self.send_peer(*msg)
                        self._arm_commit_timer()     # (re-armed after each commitment, as Core Lightning)
                await self._progress_shutdown()
            except (PeerError, ChannelError, SignerError) as e:
                if not self._disconnected_meanwhile(e):
                    await self._fail_channel(str(e))
            except ChannelFailed:
                pass

    def _disconnected_meanwhile(self, e: Exception) -> bool:
        """The peer went away while we waited (for the master's "saved", say):
        what we were about to send is refused by the core, which is no
        reason to fail the channel; both sides reestablish on reconnection."""
        return isinstance(e, UsageError) and self.ch is not None and not self.ch.connected

    async def _progress_shutdown(self) -> None:
        ch = self.ch
        assert ch is not None
        want = self._shutdown_request
        if (want is not None or ch.needs_shutdown_reply) and not ch.shutdown_sent:
            script = want["script"] if want and want["script"] else None
            if script is None and ch.local_shutdown_script is None:
                script = self.init["config"]["shutdown_script"]
            try:
                msg = ch.shutdown(script)
            except UsageError:
                return   # updates pending: after the next commitment round
            await self.persist(ch)
            await self.send_peer(*msg)
        if ch.state is ChannelState.CLOSING_NEGOTIATION and ch.closing is None:
            fees = None
            if want and want["feerate"]:
                base = ch.default_closing_fees()
                fees = ClosingFeeRange(min(base.min_sat, base.ideal_sat), base.ideal_sat, base.max_sat)
            first = ch.start_closing(fees)
            await self.persist(ch)
            if first is not None:
                await self.send_peer(*first)

    async def _maybe_channel_ready(self) -> None:
        ch = self.ch
        assert ch is not None
        async with self.lock:
            if ch.state is ChannelState.AWAITING_LOCKIN and not ch.channel_ready_sent and ch.connected:
                msg = ch.channel_ready_msg()
                await self.persist(ch)
                await self.send_peer(*self._with_alias(msg))
        self.billboard(self._state_text())

    def _with_alias(self, msg: tuple[str, dict]) -> tuple[str, dict]:
        """channel_ready with our alias for the channel (BOLT 2: MUST with
        option_scid_alias, MAY otherwise; Core Lightning always sends it):
        the short_channel_id the peer puts in its invoices' route hints."""
        alias = self.local_alias if self.local_alias is not None else self.scid
        if alias is not None:
            msg[1]["tlvs"] = {"short_channel_id": {"alias": alias.to_bytes(8, "big")}}
        return msg

    async def _abort_opening(self, reason: str, tell_peer: bool) -> None:
        """An open that cannot go on, before any commitment exists (Core
        Lightning's negotiation_failed): an `error` for its temporary id, so
        the peer forgets it too, and the master forgets the pending open (a
        `fundchannel` gets the reason).  The connection stays: other
        channels with this peer are not concerned."""
        assert self.temp_id is not None
        if tell_peer:
            try:
                await self.send_peer("error", {"channel_id": self.temp_id,
                                               "data": reason.encode("utf-8", "replace")[:MAX_PEER_TEXT]})
            except ChannelFailed:
                pass
        self.master.send("channeld_failed", {"tx": b"", "reason": fit_utf8(reason), "data_loss": False})

    async def _fail_channel(self, reason: str, data_loss: bool = False) -> None:
        """BOLT 2: a misbehaving peer gets an error and we go on chain.  If the
        peer proved we lost data, the error asks it to close: our commitment
        is revoked and broadcasting it would hand it every satoshi."""
        self.status.unusual(f"failing channel: {reason}", self.peer_id)
        cid = self.ch.channel_id if self.ch is not None else (self.temp_id or b"\x00" * 32)
        try:
            await self.send_peer("error", {"channel_id": cid, "data": reason.encode()[:60000]})
        except ChannelFailed:
            pass
        await self._go_onchain(reason, data_loss)

    def _warn_and_disconnect(self, reason: str) -> None:
        cid = self.ch.channel_id if self.ch is not None else (self.temp_id or b"\x00" * 32)
        try:
            self.peer.send(self.schema.encode("warning", {"channel_id": cid, "data": reason.encode()[:1000]}))
            self.peer.send(internal_schema("peer_stream").encode("stream_disconnect", {}))
        except ConnectionClosed:
            pass

    async def _go_onchain(self, reason: str, data_loss: bool = False) -> None:
        tx = b""
        ch = self.ch
        self._data_lost = self._data_lost or data_loss
        if self._data_lost:
            self.status.broken(f"we lost data ({reason}): not broadcasting our revoked commitment, "
                               "waiting for the peer to close", self.peer_id)
        if ch is not None and ch.local_sig is not None and ch.state is not ChannelState.CLOSED:
            if not self._data_lost:
                try:
                    tx = ch.latest_local_commitment_tx()[0].serialize()
                except (SignerError, UsageError) as e:
                    self.status.broken(f"cannot sign our commitment: {e}", self.peer_id)
            ch.fail()
        self.master.send("channeld_failed", {"tx": tx, "reason": fit_utf8(reason), "data_loss": self._data_lost})
        try:
            self.peer.send(internal_schema("peer_stream").encode("stream_disconnect", {}))
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------------ master requests
    def handle_init(self, msg: Msg) -> None:
        self.init = dict(msg.fields)
        self.peer_id = msg["peer_id"]
        self.chain_hash = msg["chain_hash"]
        cfg = msg["config"]
        self.opening_timeout = float(cfg["opening_timeout"])
        self.local_alias = cfg["local_alias"]
        self.fee_bounds = FeerateBounds(cfg["feerate_min"], cfg["feerate_max"], cfg["max_dust_htlc_exposure_msat"])
        self.commit_delay = cfg["commit_time_ms"] / 1000
        self.init_event.set()

    async def handle_funding_depth(self, msg: Msg) -> None:
        self.funding_depth = msg["depth"]
        if msg["scid"]:
            self.scid = msg["scid"]
        if self.ch is not None and self.funding_depth >= self.minimum_depth:
            try:
                await self._maybe_channel_ready()
                await self._maybe_announce()
            except ChannelFailed:
                pass

    async def _maybe_announce(self) -> None:
        if self.announcer is None or self.ch is None:
            return
        async with self.lock:
            try:
                await self.announcer.maybe_send()
            except ChannelFailed:
                pass

    async def handle_offer_htlc(self, msg: Msg) -> None:
        f = msg.fields
        ch = await self._loaded_channel()
        async with self.lock:
            try:
                if ch is None:
                    raise UsageError("channel not open")
                upd = ch.add_htlc(f["amount_msat"], f["payment_hash"], f["cltv_expiry"], f["onion"],
                                  f["blockheight"], blinding_point=f["path_key"])
            except (UsageError, ChannelError) as e:
                # with what the channel could take now (the master's summary
                # of it may be up to BALANCE_REFRESH old): payers re-plan on it
                self.master.send("channeld_offer_htlc_fail", {"failure_code": TEMPORARY_CHANNEL_FAILURE,
                                                              "reason": str(e),
                                                              "spendable_msat": ch.spendable_msat if ch else 0})
                return
            self.master.send("channeld_offer_htlc_reply", {"htlc_id": upd[1]["id"]})
            try:
                await self.send_peer(*upd)
            except ChannelFailed:
                return
        self._after_progress()

    async def handle_fulfill_htlc(self, msg: Msg) -> None:
        await self._remove(lambda ch: ch.fulfill_htlc(msg["htlc_id"], msg["preimage"]))

    async def handle_fail_htlc(self, msg: Msg) -> None:
        f = msg.fields
        # update_fail_malformed_htlc only for an onion we could not read
        # ourselves (no failure message); a BADONION code downstream gave
        # us travels inside the failure message we made of it (BOLT 2: in
        # an update_fail_htlc to the link the HTLC came from)
        if f["failure_code"] & 0x8000 and not f["reason"]:
            await self._remove(lambda ch: ch.fail_malformed_htlc(f["htlc_id"], f["sha256_of_onion"],
                                                                 f["failure_code"]))
        else:
            await self._remove(lambda ch: ch.fail_htlc(f["htlc_id"], f["reason"]))

    async def _remove(self, op) -> None:
        ch = self.ch
        if ch is None or not self.ready:
            self._deferred.append(op)
            return
        async with self.lock:
            try:
                upd = op(ch)
            except (UsageError, ChannelError) as e:
                # the master retries resolutions on reconnection from its own records
                self.status.unusual(f"cannot resolve HTLC now: {e}", self.peer_id)
                return
            # No persist here: the master keeps the resolution in its own
            # records and re-sends it if we restart before committing it.
            try:
                await self.send_peer(*upd)
            except ChannelFailed:
                return
        self._after_progress()

    def handle_shutdown(self, msg: Msg) -> None:
        f = msg.fields
        self._shutdown_request = f          # channeld_shutdown: script (may be empty), feerates
        self._after_progress()

    async def handle_feerates(self, msg: Msg) -> None:
        f = msg.fields
        self.fee_bounds = dataclasses.replace(self.fee_bounds, min_per_kw=f["min_feerate"],
                                              max_per_kw=f["max_feerate"])
        ch = self.ch
        if ch is None:
            return
        ch.fee_bounds = self.fee_bounds
        if ch.params.opener is Side.LOCAL and ch.state is ChannelState.NORMAL and ch.connected:
            current = ch.log.feerate(Side.REMOTE, ch.log.latest[Side.REMOTE])
            if f["feerate"] and abs(f["feerate"] - current) * 10 > current:   # >10% change
                async with self.lock:
                    try:
                        await self.send_peer(*ch.update_fee(f["feerate"]))
                    except (UsageError, ChannelError, ChannelFailed) as e:
                        self.status.debug(f"no update_fee: {e}", self.peer_id)
                        return
                self._after_progress()

    async def _loaded_channel(self) -> Channel | None:
        """The channel, once loaded (modes 2, 3 and 4 load it after init, in
        run(): a master request can arrive first, e.g. an HTLC offered to a
        channeld just restarted)."""
        await self.init_event.wait()
        if self.ch is None and self.init["mode"] in (MODE_RESUME, MODE_SIGN_LAST, MODE_EXPORT_ONCHAIN):
            try:
                await asyncio.wait_for(self.loaded.wait(), 30)
            except asyncio.TimeoutError:
                pass
        return self.ch

    async def handle_sign_last_tx(self, msg: Msg) -> None:
        ch = await self._loaded_channel()
        async with self.lock:
            try:
                if ch is None:
                    raise UsageError("channel not open")
                tx = ch.latest_local_commitment_tx()[0]
            except (UsageError, SignerError) as e:
                self.master.send("channeld_sign_last_tx_fail", {"reason": str(e)})
                return
        self.master.send("channeld_sign_last_tx_reply", {"tx": tx.serialize()})

    async def handle_export_onchain(self, msg: Msg) -> None:
        """The channel as onchaind needs it (channeld/onchain_export.py)."""
        from .onchain_export import export_onchain
        ch = await self._loaded_channel()
        try:
            if ch is None:
                raise UsageError("channel not loaded")
            doc = export_onchain(ch)
        except (UsageError, SignerError, KeyError, ValueError) as e:
            self.master.send("channeld_export_onchain_fail", {"reason": str(e)})
            return
        self.master.send("channeld_export_onchain_reply", {"channel": doc})


async def main(d: Daemon) -> None:
    cd = ChannelDaemon(d)
    try:
        await cd.run()
    finally:
        await cd.stop_balance_refresh()


