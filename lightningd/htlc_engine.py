"""HTLCs through our channels, in the master (Core Lightning's peer_htlcs.c).

An HTLC becomes the master's business once channeld reports it irrevocably
committed (inside the persist transaction that stores it: exactly once).
Incoming HTLCs are peeled (channeld gave the onion's shared secret) and then
paid to an invoice, forwarded on the outgoing channel, or failed with the
right BOLT 4 error; results of outgoing HTLCs travel back (fulfill with the
preimage, or the error wrapped with the incoming shared secret), or complete
our own payments (payments.py).

Every step's outcome is in the `htlcs` table before it is sent anywhere; on
start-up and whenever a channel daemon comes back, pending resolutions are
re-sent, so an incoming HTLC is resolved exactly once and a preimage learned
downstream always reaches the incoming side."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from bitcoin.hashes import sha256
from common.daemon_conn import RequestFailed
from common.blindedpath import BlindingError
from common.msgconn import ConnectionClosed
from common.onion import peel_onion
from common.onion_errors import (
    UPDATE,
    FailureCode,
    InvalidOnionHmac,
    InvalidOnionKey,
    InvalidOnionPayload,
    InvalidOnionVersion,
    create_failure_message,
    encode_failure_data,
    wrap_failure,
)
from common.onion_payload import check_payload, decode_payload
from common.scid import ShortChannelId
from wire import encode_bigsize

from . import channel as C
from .channel_control import send_to_channeld
from .htlc_core import (
    RESOLVED,
    UPDATED,
    HeldSet,
    Offering,
    OutChannel,
    Refusal,
    check_final_onion,
    check_forward,
    reconcile,
)
from .htlc_core import HtlcState as S
from .blinded_htlc import BlindedFinal, unwrap
from .invoice_commands import keysend_invoice

if TYPE_CHECKING:
    from .channel import ChannelRecord
    from .lightningd import LightningD

MPP_TIMEOUT = 60.0
# Core Lightning gives a channel 30 seconds to put an HTLC we offered into a
# commitment_signed; a channel that cannot (stuck awaiting the peer's
# revoke_and_ack) has its connection killed, to reestablish (peer_htlcs.c
# htlc_offer_timeout).  --dev-no-htlc-timeout turns that off.
HTLC_OFFER_TIMEOUT = 30.0
F = FailureCode


class ForwardTo(NamedTuple):
    """Where and how to forward an incoming HTLC (from its payload, or its blinded hop)."""

    amount_msat: int
    cltv_expiry: int
    short_channel_id: int | None
    next_node_id: bytes | None
    path_key: bytes | None
    onion: bytes


class HtlcEngine:
    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.held: dict[bytes, HeldSet] = {}
        self.held_timers: dict[bytes, asyncio.TimerHandle] = {}
        self.processing: set[int] = set()

    @property
    def db(self):
        return self.ld.db

    def _trace(self, row_id: int, what: str) -> None:
        """A debug line for an HTLC's state change, under its channel and peer
        (an operator following a payment in a --log-level=debug file)."""
        row = self.db.one("SELECT channel_dbid, direction, htlc_id, amount_msat, payment_hash FROM htlcs WHERE id = ?",
                          (row_id,))
        if row is None:
            return
        dbid, direction, hid, amount, phash = row
        rec = self.ld.channels.channels.get(dbid)
        log = self.ld.log.child(f"chan#{dbid}", rec.peer_id.hex() if rec is not None else None)
        log.debug(f"HTLC {direction} {hid if hid >= 0 else '(new)'} {amount}msat {phash.hex()[:16]}: {what}")

    # ------------------------------------------------------------------ events (inside the persist tx)
    def on_persist(self, rec: "ChannelRecord", locked_in: list[dict], resolved: list[dict],
                   fulfilled: dict | None) -> None:
        """What a channeld_persist says of HTLCs (wire/csv/channeld.csv:
        locked_htlc, resolved_htlc, htlc_fulfilled), inside its transaction."""
        now = time.time()
        if fulfilled is not None:
            self._outgoing_fulfilled(rec, fulfilled["id"], fulfilled["preimage"])
        for h in locked_in:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO htlcs(channel_dbid, htlc_id, direction, amount_msat, payment_hash, "
                "cltv_expiry, state, onion, shared_secret, received_time, path_key) VALUES (?, ?, 'in', ?, ?, ?, "
                "?, ?, ?, ?, ?)", (rec.dbid, h["id"], h["amount_msat"], h["payment_hash"], h["cltv_expiry"],
                                   S.LOCKED, h["onion"], h["shared_secret"], now, h["path_key"]))
            if cur.rowcount:
                self._trace(cur.lastrowid, f"locked in (expiry {h['cltv_expiry']})")
                asyncio.get_running_loop().call_soon(
                    self._fail_immediate if h["fail_immediate"] else self._spawn_process, cur.lastrowid)
        for h in resolved:
            if h["outgoing"]:
                if h["preimage"] is not None:
                    self._outgoing_fulfilled(rec, h["id"], h["preimage"])
                else:
                    self._outgoing_failed(rec, h["id"], h["fail_reason"] or None, h["failure_code"],
                                          h["sha256_of_onion"])
            else:
                # our fulfill/fail of an incoming HTLC is now irrevocable
                self.db.execute("UPDATE htlcs SET " + UPDATED +
                                "state = CASE state WHEN ? THEN ? WHEN ? THEN ? ELSE state END, "
                                "resolved_time = ? WHERE channel_dbid = ? AND direction = 'in' AND htlc_id = ?",
                                (S.FULFILLING, S.FULFILLED, S.FAILING, S.FAILED, now, rec.dbid, h["id"]))
                self.ld.log.child(f"chan#{rec.dbid}", rec.peer_id.hex()).debug(
                    f"HTLC in {h['id']}: resolution irrevocably committed")

    def _spawn_process(self, row_id: int) -> None:
        if row_id in self.processing:
            return
        self.processing.add(row_id)
        t = asyncio.ensure_future(self._process_incoming(row_id))
        t.add_done_callback(lambda _t, r=row_id: self.processing.discard(r))

    def _fail_immediate(self, row_id: int) -> None:
        """channeld took this HTLC over our max-dust-htlc-exposure-msat:
        fail it now it is committed, without looking at it (Core
        Lightning: temporary_node_failure)."""
        row = self.db.one("SELECT shared_secret, state, htlc_id FROM htlcs WHERE id = ?", (row_id,))
        if row is None or row[1] != S.LOCKED:
            return
        if row[0] is None:                 # no onion key to wrap an error with: the onion is bad anyway
            self._spawn_process(row_id)
            return
        self.ld.log.debug(f"incoming htlc {row[2]}: over our dust exposure limit, failing it")
        self._fail(row_id, row[0], F.TEMPORARY_NODE_FAILURE, b"")

    # ------------------------------------------------------------------ incoming
    async def _process_incoming(self, row_id: int) -> None:
        row = self.db.one("SELECT channel_dbid, htlc_id, amount_msat, payment_hash, cltv_expiry, onion, "
                          "shared_secret, state, path_key FROM htlcs WHERE id = ?", (row_id,))
        if row is None or row[7] != S.LOCKED:
            return
        chan_dbid, htlc_id, amount, phash, cltv, onion, ss, _, path_key = row
        in_rec = self.ld.channels.channels.get(chan_dbid)
        if ss is None:
            self._fail_malformed(row_id, F.INVALID_ONION_KEY, onion)
            return
        try:
            peeled = peel_onion(onion, phash, lambda _point: ss)
        except (InvalidOnionVersion, InvalidOnionHmac, InvalidOnionKey) as e:
            self._fail_malformed(row_id, e.failure_code, onion)
            return
        except InvalidOnionPayload as e:
            self._fail(row_id, ss, F.INVALID_ONION_PAYLOAD, encode_failure_data(
                F.INVALID_ONION_PAYLOAD, type=e.tlv_type or 0, offset=e.offset or 0))
            return
        except ValueError:
            self._fail_malformed(row_id, F.INVALID_ONION_VERSION, onion)
            return
        try:
            payload = decode_payload(peeled.payload)
            check_payload(payload, is_final=peeled.is_final, path_key_in_htlc=path_key is not None)
        except InvalidOnionPayload as e:
            self._fail(row_id, ss, F.INVALID_ONION_PAYLOAD, encode_failure_data(
                F.INVALID_ONION_PAYLOAD, type=e.tlv_type or 0, offset=e.offset or 0))
            return
        # plugins may decide (and may take as long as they like: the HTLC is held)
        hook = await self._htlc_accepted_hook(in_rec, htlc_id, amount, phash, cltv, peeled, payload, ss)
        if hook is not None and hook.get("result") != "continue":
            self._apply_hook_result(row_id, ss, hook)
            return
        if hook is not None and isinstance(hook.get("payload"), str):
            # Core Lightning: "continue" with a payload (no length prefix) replaces the onion's
            try:
                payload = decode_payload(bytes.fromhex(hook["payload"]))
                check_payload(payload, is_final=peeled.is_final, path_key_in_htlc=path_key is not None)
            except InvalidOnionPayload as e:
                self._fail(row_id, ss, F.INVALID_ONION_PAYLOAD, encode_failure_data(
                    F.INVALID_ONION_PAYLOAD, type=e.tlv_type or 0, offset=e.offset or 0))
                return
            except ValueError:
                self.ld.log.unusual(f"htlc_accepted hook: bad payload {hook['payload']!r}: failing the HTLC")
                self._fail(row_id, ss, F.TEMPORARY_NODE_FAILURE, b"")
                return
        if payload.encrypted_recipient_data is not None:
            await self._blinded(row_id, in_rec, amount, phash, cltv, peeled, payload, ss, path_key)
        elif peeled.is_final:
            await self._final_hop(row_id, amount, phash, cltv, payload, ss)
        else:
            assert peeled.next_packet is not None
            await self._forward(row_id, in_rec, amount, cltv, ForwardTo(payload.amt_to_forward or 0,
                                                                         payload.outgoing_cltv_value or 0,
                                                                         payload.short_channel_id, None, None,
                                                                         peeled.next_packet), phash, ss)

    async def _blinded(self, row_id: int, in_rec, amount: int, phash: bytes, cltv: int, peeled, payload, ss: bytes,
                       path_key: bytes | None) -> None:
        """A hop of a blinded path (blinded_htlc.py): from here on every error is invalid_onion_blinding."""
        if path_key is None and not peeled.is_final:
            with self.db.transaction():
                self.db.execute("UPDATE htlcs SET blinded_intro = 1 WHERE id = ?", (row_id,))
        try:
            res = await unwrap(self.ld.hsm.ecdh, self.ld.node_id, phash, peeled, payload, path_key, amount, cltv)
        except BlindingError as e:
            self._trace(row_id, f"blinded hop refused: {e}")
            self._fail(row_id, ss, F.INVALID_ONION_BLINDING, b"")
            return
        if isinstance(res, BlindedFinal):
            await self._final_hop(row_id, amount, phash, cltv, res.payload, ss, path_id=res.path_id, blinded=True)
        else:
            await self._forward(row_id, in_rec, amount, cltv, ForwardTo(res.amount_msat, res.cltv_expiry,
                                                                         res.short_channel_id, res.next_node_id,
                                                                         res.next_path_key, res.next_onion), phash, ss)

    async def _htlc_accepted_hook(self, in_rec, htlc_id, amount, phash, cltv, peeled, payload, ss) -> dict | None:
        hooks = self.ld.plugins.hooks
        if not hooks.has("htlc_accepted"):
            return None
        # the payload with its length prefix, as Core Lightning's raw_payload
        raw = encode_bigsize(len(peeled.payload)) + peeled.payload
        onion: dict[str, Any] = {"payload": raw.hex(), "type": "tlv", "shared_secret": ss.hex()}
        if payload.short_channel_id is not None:
            onion["short_channel_id"] = str(ShortChannelId.from_int(payload.short_channel_id))
        if payload.amt_to_forward is not None:
            onion["forward_msat"] = payload.amt_to_forward
        if payload.outgoing_cltv_value is not None:
            onion["outgoing_cltv_value"] = payload.outgoing_cltv_value
        if payload.payment_data is not None:
            onion["payment_secret"] = payload.payment_data.payment_secret.hex()
            onion["total_msat"] = payload.payment_data.total_msat
        if peeled.next_packet is not None:
            onion["next_onion"] = peeled.next_packet.hex()
        htlc = {"id": htlc_id, "amount_msat": amount, "cltv_expiry": cltv,
                "cltv_expiry_relative": cltv - self.ld.blockheight, "payment_hash": phash.hex()}
        if in_rec is not None and in_rec.scid_or_alias is not None:
            htlc["short_channel_id"] = str(in_rec.scid_or_alias)
        answers = await hooks.call_chain("htlc_accepted", {"onion": onion, "htlc": htlc})
        if answers and answers[-1].get("result") != "continue":
            return answers[-1]
        # all continue: the last payload one of them gave replaces the onion's
        payloads = [a["payload"] for a in answers if "payload" in a]
        return {"result": "continue", "payload": payloads[-1]} if payloads else {"result": "continue"}

    def _apply_hook_result(self, row_id: int, ss: bytes, res: dict) -> None:
        kind = res.get("result")
        if kind == "resolve" and res.get("payment_key"):
            self._fulfill_incoming(row_id, bytes.fromhex(res["payment_key"]))
        elif kind == "fail":
            if res.get("failure_onion"):
                self._set_failing(row_id, failure=bytes.fromhex(res["failure_onion"]))
            else:
                msg = bytes.fromhex(res.get("failure_message", "2002"))
                code = int.from_bytes(msg[:2], "big")
                self._fail(row_id, ss, code, msg[2:])
        else:
            self.ld.log.unusual(f"htlc_accepted hook: bad result {res}: failing the HTLC")
            self._fail(row_id, ss, F.TEMPORARY_NODE_FAILURE, b"")

    async def _final_hop(self, row_id: int, amount: int, phash: bytes, cltv: int, payload, ss: bytes,
                         path_id: bytes | None = None, blinded: bool = False) -> None:
        """``blinded``: the HTLC came through a blinded path, its ``path_id``
        stands for the payment secret (a BOLT 12 invoice's, never a BOLT 11's)."""
        height = self.ld.blockheight
        refusal = check_final_onion(amount, cltv, payload.amt_to_forward, payload.outgoing_cltv_value)
        if refusal is not None:
            self._fail(row_id, ss, refusal.code, encode_failure_data(refusal.code, **refusal.fields))
            return
        pd = payload.payment_data
        total = pd.total_msat if pd is not None else amount
        secret = pd.payment_secret if pd is not None else None
        if blinded:
            total = payload.total_amount_msat or amount
            secret = path_id
        inv = self.ld.invoices
        if payload.keysend_preimage is not None and pd is None:
            # keysend: the payer chose the preimage; an invoice is made for it
            # (none may exist for this hash already)
            if sha256(payload.keysend_preimage) != phash or inv.by_hash(phash) is not None:
                self._fail(row_id, ss, F.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, _unknown_details(amount, height))
                return
            secret = await keysend_invoice(self.ld, amount, payload.keysend_preimage)
        preimage, code = inv.check_payment(phash, amount, total, secret, cltv, height, blinded=blinded)
        if code is not None:
            self._fail(row_id, ss, code, _unknown_details(amount, height) if code == F.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
                       else b"")
            return
        held = self.held.get(phash)
        if held is not None and held.total_msat != total:
            # BOLT 4: SHOULD fail the entire HTLC set if total_msat is not the
            # same for all HTLCs in the set (Core Lightning's code and data)
            self.ld.log.unusual(f"Failing HTLC set {phash.hex()}: total_msat {held.total_msat}msat, new HTLC's "
                                f"{total}msat")
            self.held_timers.pop(phash).cancel()
            del self.held[phash]
            for r in held.parts + [row_id]:
                self._fail(r, self._ss(r), F.FINAL_INCORRECT_HTLC_AMOUNT,
                           encode_failure_data(F.FINAL_INCORRECT_HTLC_AMOUNT, incoming_htlc_amt=amount))
            return
        if total > amount:   # basic_mpp: hold until the parts add up
            if held is None:
                held = self.held[phash] = HeldSet(total)
                self.held_timers[phash] = asyncio.get_running_loop().call_later(MPP_TIMEOUT, self._mpp_timeout,
                                                                                phash)
            complete = held.add(row_id, amount)
            self.db.execute("UPDATE htlcs SET " + UPDATED + "state = ? WHERE id = ?", (S.HELD, row_id))
            self._trace(row_id, f"held: {held.received_msat} of {held.total_msat}msat of the payment arrived")
            if not complete:
                return
            self.held_timers.pop(phash).cancel()
            del self.held[phash]
            parts, received = held.parts, held.received_msat
        else:
            parts, received = [row_id], amount
        code = await inv.run_invoice_payment_hook(phash, received)
        if code is not None:
            for r in parts:
                self._fail(r, self._ss(r), code, _unknown_details(received, height))
            return
        with self.db.transaction():
            inv.mark_paid(phash, received)
            for r in parts:
                self._fulfill_incoming(r, preimage, commit=False)
        inv.notify_paid(phash)
        for r in parts:
            self._send_resolution(r)

    def _mpp_timeout(self, phash: bytes) -> None:
        self.held_timers.pop(phash, None)
        held = self.held.pop(phash, None)
        if held is None:
            return
        for r in held.parts:
            self._fail(r, self._ss(r), F.MPP_TIMEOUT, b"")

    def _ss(self, row_id: int) -> bytes:
        row = self.db.one("SELECT shared_secret FROM htlcs WHERE id = ?", (row_id,))
        return row[0] if row and row[0] else b"\x00" * 32

    async def _forward(self, row_id: int, in_rec, amount: int, cltv: int, to: "ForwardTo",
                       phash: bytes, ss: bytes) -> None:
        cc = self.ld.channels
        out_amt, out_cltv, scid, next_onion = to.amount_msat, to.cltv_expiry, to.short_channel_id, to.onion
        if scid is not None:
            # BOLT 2: our alias names the channel; its real short channel id
            # too, unless its type is option_scid_alias
            out = next((c for c in cc.channels.values() if c.forwards_by(scid)), None)
        else:
            # a blinded hop names the next node: our best channel with it
            out = self._channel_to(to.next_node_id, out_amt)
            scid = out.scid_or_alias.to_int() if out is not None and out.scid_or_alias is not None else None
        in_scid = str(in_rec.scid_or_alias) if in_rec is not None and in_rec.scid_or_alias else ""
        out_scid = str(out.scid_or_alias) if out is not None and out.scid_or_alias else \
            str(ShortChannelId.from_int(scid)) if scid is not None else ""
        now = time.time()

        async def local_fail(refusal: Refusal) -> None:
            code, fields = refusal.code, dict(refusal.fields)
            # UPDATE errors carry our channel_update of the outgoing channel,
            # naming it as the onion did (BOLT 4): a payer may retry with it
            if code & UPDATE and out is not None and scid is not None:
                announced = out.announce and out.config["channel_announcement"] and \
                    out.scid is not None and out.scid.to_int() == scid
                fields["channel_update"] = await self.ld.gossipd.channel_update(  # type: ignore
                    scid, 0 if announced else out.alias_local or 0)
            data = encode_failure_data(code, **fields) if code & UPDATE or fields else b""
            with self.db.transaction():
                self.db.execute("INSERT OR REPLACE INTO forwards(in_htlc, in_channel, out_channel, in_msat, out_msat, "
                                "status, failcode, failreason, received_time, resolved_time) VALUES (?, ?, ?, ?, ?, "
                                "'local_failed', ?, ?, ?, ?)", (row_id, in_scid, out_scid, amount, out_amt, code,
                                                                refusal.name, now, now))
                self._fail(row_id, ss, code, data, commit=False)
            self._send_resolution(row_id)
            self._notify_forward(row_id)

        facts = None
        if out is not None:
            # our policy for the outgoing channel (setchannel; the previous one
            # too during enforcedelay)
            fee_ok, range_ok = out.forward_allowed(amount, out_amt, time.monotonic())
            facts = OutChannel(normal=out.state == C.NORMAL,
                               ready=self.ld.is_connected(out.peer_id) and out.subd is not None and out.subd.running,
                               fee_ok=fee_ok, range_ok=range_ok, cltv_delta=out.cltv_delta)
        refusal = check_forward(facts, amount, cltv, out_cltv, self.ld.blockheight)
        if refusal is not None:
            await local_fail(refusal)
            return
        assert out is not None
        # The outgoing row exists before channeld hears of the HTLC, in the
        # transaction that marks the incoming one forwarded: a crash at any
        # point leaves a record that reconcile() can settle, never an HTLC
        # in a commitment we know nothing about (nor a second forward).
        with self.db.transaction():
            out_row = self.record_offer(out.dbid, out_amt, phash, out_cltv, origin=row_id)
            self.db.execute("UPDATE htlcs SET " + UPDATED + "state = ? WHERE id = ?", (S.FORWARDED, row_id))
            self.db.execute("INSERT OR REPLACE INTO forwards(in_htlc, out_htlc, in_channel, out_channel, in_msat, "
                            "out_msat, fee_msat, status, received_time) VALUES (?, ?, ?, ?, ?, ?, ?, 'offered', ?)",
                            (row_id, out_row, in_scid, out_scid, amount, out_amt, amount - out_amt, now))
        self._trace(row_id, f"forwarded to chan#{out.dbid}")
        refused = await self.offer(out, out_row, out_amt, phash, out_cltv, next_onion, to.path_key)
        if refused is not None:
            self.ld.log.debug(f"forward of htlc {row_id} refused by channeld: {refused}")
            await local_fail(Refusal(F.TEMPORARY_CHANNEL_FAILURE))
            return
        self._notify_forward(row_id)

    # ------------------------------------------------------------------ offering outgoing HTLCs
    def record_offer(self, chan_dbid: int, amount: int, phash: bytes, cltv: int, origin: int | None = None,
                     payment_id: int | None = None) -> int:
        """The outgoing HTLC's row, in the caller's transaction, before
        channeld is asked to offer it: state 'offering', its channel id not
        known yet (a placeholder, minus the row id, keeps it unique)."""
        cur = self.db.execute(
            "INSERT INTO htlcs(id, channel_dbid, htlc_id, direction, amount_msat, payment_hash, cltv_expiry, state, "
            "origin, payment_id, received_time) SELECT m, ?, -m, 'out', ?, ?, ?, ?, ?, ?, ? "
            "FROM (SELECT COALESCE(MAX(id), 0) + 1 AS m FROM htlcs)",
            (chan_dbid, amount, phash, cltv, S.OFFERING, origin, payment_id, time.time()))
        return cur.lastrowid

    def _channel_to(self, node_id: bytes | None, amount: int) -> "ChannelRecord | None":
        """Our usable channel with ``node_id`` that can carry ``amount`` (the most spendable)."""
        best = None
        for c in self.ld.channels.channels.values():
            if c.peer_id != node_id or c.state != C.NORMAL or c.scid_or_alias is None:
                continue
            spendable = c.summary["spendable_msat"]
            if best is None or spendable > best[0]:
                best = (spendable, c)
        return best[1] if best is not None else None

    async def offer(self, chan: "ChannelRecord", out_row: int, amount: int, phash: bytes, cltv: int,
                    onion: bytes, path_key: bytes | None = None) -> str | None:
        """Ask chan's channeld to offer the recorded HTLC.  None: it has it
        (the row now carries its id), or its daemon went away before
        answering (the row stays 'offering' until reconcile() learns from
        the channel's stored state whether it was committed).  A string:
        channeld refused it, the HTLC never existed and its row is gone (and
        the channel's summary has the spendable amount channeld gave)."""
        subd = chan.subd
        if subd is None or not subd.running:
            return self._drop_offer(out_row, "channel daemon not running")
        try:
            r = await subd.request("channeld_offer_htlc", {
                "amount_msat": amount, "payment_hash": phash, "cltv_expiry": cltv, "onion": onion,
                "blockheight": self.ld.blockheight, "path_key": path_key})
        except RequestFailed as e:
            if e.msg.fields.get("spendable_msat") is not None:
                # channeld's own figure, fresher than its last summary
                chan.summary["spendable_msat"] = e.msg.fields["spendable_msat"]
            return self._drop_offer(out_row, e.msg.fields.get("reason") or "refused")
        except ConnectionClosed:
            return None
        with self.db.transaction():
            self.db.execute("UPDATE htlcs SET " + UPDATED + "htlc_id = ?, state = ? WHERE id = ? AND state = ?",
                            (r["htlc_id"], S.OFFERED, out_row, S.OFFERING))
        self._trace(out_row, f"offered (expiry {cltv})")
        if not self.ld.cfg.get("dev-no-htlc-timeout"):
            asyncio.get_running_loop().call_later(HTLC_OFFER_TIMEOUT, self._offer_timeout, chan, subd, out_row,
                                                  r["htlc_id"])
        return None

    def _offer_timeout(self, chan: "ChannelRecord", subd: Any, out_row: int, htlc_id: int) -> None:
        """HTLC_OFFER_TIMEOUT after channeld took our HTLC: if it is still
        in no commitment we signed (SENT_ADD_HTLC, or channeld has not
        stored it yet), drop the peer's connection, as Core Lightning's
        channel_fail_transient; the reconnection reestablishes the channel.
        A daemon that went away meanwhile was dealt with by reconcile()."""
        if self.ld.stopping or chan.subd is not subd or not subd.running or chan.state not in C.ACTIVE:
            return
        row = self.db.one("SELECT state FROM htlcs WHERE id = ?", (out_row,))
        if row is None or row[0] != S.OFFERED:
            return
        h = next((h for h in chan.summary["htlcs"] if h["direction"] == "out" and h["id"] == htlc_id),
                 None)
        if h is not None and h["state"] != "SENT_ADD_HTLC":
            return
        self.ld.log.child("lightningd", chan.peer_id.hex()).unusual(
            f"Adding HTLC {htlc_id} too slow: killing connection")
        chan.billboard = "Adding HTLC timed out: killed connection"
        self.ld.connectd.discard(chan.peer_id)

    def _drop_offer(self, out_row: int, reason: str) -> str:
        self._trace(out_row, f"refused by channeld: {reason}")
        with self.db.transaction():
            self.db.execute("DELETE FROM htlcs WHERE id = ? AND state = ?", (out_row, S.OFFERING))
            self.db.execute("UPDATE forwards SET out_htlc = NULL WHERE out_htlc = ?", (out_row,))
        return reason

    # ------------------------------------------------------------------ outgoing results (inside persist tx)
    def _outgoing_fulfilled(self, rec: "ChannelRecord", htlc_id: int, preimage: bytes) -> None:
        row = self.db.one("SELECT id, origin, payment_id, state, amount_msat FROM htlcs WHERE channel_dbid = ? AND "
                          "direction = 'out' AND htlc_id = ?", (rec.dbid, htlc_id))
        if row is None or row[3] == S.FULFILLED:
            return
        out_id, origin, payment_id, _, amount = row
        now = time.time()
        self.db.execute("UPDATE htlcs SET " + UPDATED + "state = ?, preimage = ?, resolved_time = ? WHERE id = ?",
                        (S.FULFILLED, preimage, now, out_id))
        self._trace(out_id, "fulfilled")
        if origin is not None:
            self._fulfill_incoming(origin, preimage, commit=False)
            fee = self.db.one("SELECT fee_msat FROM forwards WHERE in_htlc = ?", (origin,))
            self.db.execute("UPDATE forwards SET status = 'settled', resolved_time = ? WHERE in_htlc = ?",
                            (now, origin))
            self.ld.fees_collected_msat += fee[0] if fee and fee[0] else 0
            self.db.set_var("fees_collected_msat", self.ld.fees_collected_msat)
            asyncio.get_running_loop().call_soon(self._send_resolution, origin)
            asyncio.get_running_loop().call_soon(self._notify_forward, origin)
        if payment_id is not None:
            self.ld.payments.payment_succeeded(payment_id, preimage)

    def _outgoing_failed(self, rec: "ChannelRecord", htlc_id: int, reason: bytes | None, code: int | None,
                         sha256_of_onion: bytes | None = None, lost: bool = False) -> None:
        """Our HTLC failed: by the peer (its onion error `reason`, or
        `code` and `sha256_of_onion` if it found our onion malformed), or
        `lost` (never committed)."""
        row = self.db.one("SELECT id, origin, payment_id, state FROM htlcs WHERE channel_dbid = ? AND "
                          "direction = 'out' AND htlc_id = ?", (rec.dbid, htlc_id))
        if row is None or row[3] in RESOLVED:
            return
        out_id, origin, payment_id, _ = row
        now = time.time()
        self.db.execute("UPDATE htlcs SET " + UPDATED + "state = ?, failure = ?, failure_code = ?, resolved_time = ? "
                        "WHERE id = ?", (S.FAILED, reason, code, now, out_id))
        self._trace(out_id, "lost: never committed" if lost else "failed" + (f" ({_code_name(code)})" if code else ""))
        if origin is not None:
            ss = self._ss(origin)
            if lost:
                # our own failure towards the incoming side (the HTLC never left)
                self._fail(origin, ss, F.TEMPORARY_CHANNEL_FAILURE,
                           encode_failure_data(F.TEMPORARY_CHANNEL_FAILURE), commit=False)
            elif reason is not None:
                self._set_failing(origin, failure=wrap_failure(ss, reason), commit=False)
            else:
                # downstream said our onion was malformed: BOLT 4 has us report it
                sha = sha256_of_onion or b"\x00" * 32
                self._fail(origin, ss, code or F.INVALID_ONION_HMAC,
                           encode_failure_data(code or F.INVALID_ONION_HMAC, sha256_of_onion=sha), commit=False)
            self.db.execute("UPDATE forwards SET status = 'failed', failcode = ?, resolved_time = ? WHERE in_htlc = ?",
                            (code, now, origin))
            asyncio.get_running_loop().call_soon(self._send_resolution, origin)
            asyncio.get_running_loop().call_soon(self._notify_forward, origin)
        if payment_id is not None:
            self.ld.payments.payment_failed(payment_id, None if lost else reason, code, lost)

    # ------------------------------------------------------------------ outgoing results learned on chain (onchaind)
    def onchain_preimage(self, channel_dbid: int, payment_hash: bytes, preimage: bytes) -> None:
        """onchaind took `preimage` from the peer's spend of our HTLC output:
        our offered HTLCs with that hash are fulfilled (call inside a db transaction)."""
        rec = self.ld.channels.channels.get(channel_dbid)
        if rec is None:
            return
        for (htlc_id,) in self.db.query("SELECT htlc_id FROM htlcs WHERE channel_dbid = ? AND direction = 'out' "
                                        "AND payment_hash = ? AND state = ?", (channel_dbid, payment_hash, S.OFFERED)):
            self._outgoing_fulfilled(rec, htlc_id, preimage)

    def onchain_htlc_failed(self, channel_dbid: int, htlc_id: int) -> None:
        """Our offered HTLC timed out on chain (or is in no commitment that
        confirmed): a forward fails upstream with permanent_channel_failure,
        our payment fails (call inside a db transaction)."""
        row = self.db.one("SELECT id, origin, payment_id, state FROM htlcs WHERE channel_dbid = ? AND "
                          "direction = 'out' AND htlc_id = ?", (channel_dbid, htlc_id))
        if row is None or row[3] in RESOLVED:
            return
        out_id, origin, payment_id, _ = row
        code = int(F.PERMANENT_CHANNEL_FAILURE)
        now = time.time()
        self.db.execute("UPDATE htlcs SET " + UPDATED + "state = ?, failure_code = ?, resolved_time = ? WHERE id = ?",
                        (S.FAILED, code, now, out_id))
        if origin is not None:
            self._fail(origin, self._ss(origin), code, b"", commit=False)
            self.db.execute("UPDATE forwards SET status = 'failed', failcode = ?, failreason = ?, resolved_time = ? "
                            "WHERE in_htlc = ?", (code, "WIRE_PERMANENT_CHANNEL_FAILURE", now, origin))
            asyncio.get_running_loop().call_soon(self._send_resolution, origin)
            asyncio.get_running_loop().call_soon(self._notify_forward, origin)
        if payment_id is not None:
            self.ld.payments.payment_failed(payment_id, None, code)

    # ------------------------------------------------------------------ resolving incoming HTLCs
    def _fulfill_incoming(self, row_id: int, preimage: bytes, commit: bool = True) -> None:
        def do() -> None:
            self.db.execute("UPDATE htlcs SET " + UPDATED +
                            "state = ?, preimage = ? WHERE id = ? AND state NOT IN (?, ?)",
                            (S.FULFILLING, preimage, row_id, S.FULFILLED, S.FULFILLING))
            self._trace(row_id, "fulfilling")
        if commit:
            with self.db.transaction():
                do()
            self._send_resolution(row_id)
        else:
            do()

    def _fail(self, row_id: int, ss: bytes, code: int, data: bytes, commit: bool = True) -> None:
        self._set_failing(row_id, failure=create_failure_message(ss, int(code), data), code=int(code), commit=commit)

    def _set_failing(self, row_id: int, failure: bytes, code: int | None = None, commit: bool = True) -> None:
        def do() -> None:
            blinded = self.db.one("SELECT path_key, blinded_intro, onion, shared_secret FROM htlcs WHERE id = ?",
                                  (row_id,))
            if blinded is not None and blinded[0] is not None:
                # inside a blinded path: any error is an update_fail_malformed_htlc
                # with invalid_onion_blinding (BOLT 2), nothing about what went wrong
                self.db.execute("UPDATE htlcs SET " + UPDATED +
                                "state = ?, failure = NULL, failure_code = ?, sha256_of_onion = ? "
                                "WHERE id = ? AND state NOT IN (?, ?, ?)",
                                (S.FAILING, int(F.INVALID_ONION_BLINDING), sha256(blinded[2]), row_id, S.FULFILLED,
                                 S.FULFILLING, S.FAILED))
                self._trace(row_id, "failing (invalid_onion_blinding, inside a blinded path)")
                return
            nonlocal failure, code
            if blinded is not None and blinded[1]:
                # the introduction point: our own invalid_onion_blinding instead of any error
                code = int(F.INVALID_ONION_BLINDING)
                failure = create_failure_message(blinded[3], code, encode_failure_data(
                    F.INVALID_ONION_BLINDING, sha256_of_onion=sha256(blinded[2])))
            self.db.execute("UPDATE htlcs SET " + UPDATED + "state = ?, failure = ?, failure_code = ? WHERE id = ? AND "
                            "state NOT IN (?, ?, ?)", (S.FAILING, failure, code, row_id, S.FULFILLED, S.FULFILLING,
                                                       S.FAILED))
            self._trace(row_id, f"failing ({_code_name(code)})" if code is not None else "failing (downstream's error)")
        if commit:
            with self.db.transaction():
                do()
            self._send_resolution(row_id)
        else:
            do()

    def _fail_malformed(self, row_id: int, code: int, onion: bytes) -> None:
        with self.db.transaction():
            row = self.db.one("SELECT path_key FROM htlcs WHERE id = ?", (row_id,))
            if row is not None and row[0] is not None:
                code = F.INVALID_ONION_BLINDING     # inside a blinded path, whatever was wrong
            self.db.execute("UPDATE htlcs SET " + UPDATED +
                            "state = ?, failure = NULL, failure_code = ?, sha256_of_onion = ? "
                            "WHERE id = ?", (S.FAILING, int(code), sha256(onion), row_id))
        self._send_resolution(row_id)

    def _send_resolution(self, row_id: int) -> None:
        """Tell the incoming channel's daemon (if it runs; else when it comes back)."""
        row = self.db.one("SELECT channel_dbid, htlc_id, state, preimage, failure, failure_code, sha256_of_onion "
                          "FROM htlcs WHERE id = ?", (row_id,))
        if row is None:
            return
        chan_dbid, htlc_id, state, preimage, failure, code, sha = row
        if state == "fulfilling":
            # a channel on chain: its onchaind may claim the HTLC with it now
            self.ld.onchain.preimage_known(chan_dbid)
        rec = self.ld.channels.channels.get(chan_dbid)
        if rec is None:
            return
        if state == S.FULFILLING:
            send_to_channeld(rec.subd, "channeld_fulfill_htlc", {"htlc_id": htlc_id, "preimage": preimage})
        elif state == S.FAILING:
            send_to_channeld(rec.subd, "channeld_fail_htlc", {"htlc_id": htlc_id, "failure_code": code or 0,
                                                              "sha256_of_onion": sha or b"\x00" * 32,
                                                              "reason": failure or b""})

    def reconcile(self, rec: "ChannelRecord") -> None:
        """Call with no daemon running for rec (then its stored state is the
        truth): our offered HTLCs settled against it (htlc_core.reconcile);
        those never committed fail back, once."""
        stored_out = [h for h in rec.summary["htlcs"] if h["direction"] == "out"]
        claimed = {hid for (hid,) in self.db.query(
            "SELECT htlc_id FROM htlcs WHERE channel_dbid = ? AND direction = 'out' AND htlc_id >= 0", (rec.dbid,))}
        offering = [Offering(*r) for r in self.db.query(
            "SELECT id, payment_hash, amount_msat, cltv_expiry FROM htlcs WHERE channel_dbid = ? AND direction = 'out' "
            "AND state = ? ORDER BY id", (rec.dbid, S.OFFERING))]
        offered = self.db.query("SELECT id, htlc_id FROM htlcs WHERE channel_dbid = ? AND direction = 'out' AND "
                                "state = ?", (rec.dbid, S.OFFERED))
        r = reconcile(stored_out, claimed, offering, offered, rec.summary["next_local_htlc_id"])
        if not (r.assign or r.never_committed or r.lost):
            return
        code = int(F.TEMPORARY_CHANNEL_FAILURE)
        with self.db.transaction():
            for rid, hid in r.assign:
                self.db.execute("UPDATE htlcs SET " + UPDATED +
                                "htlc_id = ?, state = ? WHERE id = ?", (hid, S.OFFERED, rid))
                self._trace(rid, "offered (its id learned from the channel's stored state)")
            for rid in r.never_committed:
                self._outgoing_failed(rec, -rid, None, code, lost=True)
            for rid, hid in r.lost:
                self._outgoing_failed(rec, hid, None, code, lost=True)
                # the channel will reuse this id: keep the row, out of the way
                self.db.execute("UPDATE htlcs SET htlc_id = ? WHERE id = ?", (-rid, rid))

    def channel_started(self, rec: "ChannelRecord") -> None:
        """A channel daemon (re)started: re-send what is pending on it."""
        for (row_id,) in self.db.query("SELECT id FROM htlcs WHERE channel_dbid = ? AND direction = 'in' AND "
                                       "state IN (?, ?)", (rec.dbid, S.FULFILLING, S.FAILING)):
            self._send_resolution(row_id)

    def restart(self) -> None:
        """At start-up (no channel daemon runs yet): our offered HTLCs are
        settled against each channel's stored state, and incoming HTLCs not
        yet decided are processed again."""
        for rec in list(self.ld.channels.channels.values()):
            self.reconcile(rec)
        for (row_id,) in self.db.query("SELECT id FROM htlcs WHERE direction = 'in' AND state IN (?, ?)",
                                       (S.LOCKED, S.HELD)):
            self.db.execute("UPDATE htlcs SET " + UPDATED + "state = ? WHERE id = ?", (S.LOCKED, row_id))
            self._spawn_process(row_id)

    def _notify_forward(self, in_id: int) -> None:
        row = self.db.one("SELECT in_channel, out_channel, in_msat, out_msat, fee_msat, status, failcode, failreason, "
                          "received_time, resolved_time FROM forwards WHERE in_htlc = ?", (in_id,))
        if row is None:
            return
        ph = self.db.one("SELECT payment_hash FROM htlcs WHERE id = ?", (in_id,))
        self.ld.plugins.notify("forward_event", {"forward_event": forward_json(row, ph[0] if ph else None)})


def _code_name(code: int) -> str:
    try:
        return FailureCode(code).name
    except ValueError:
        return f"{code:#06x}"


def forward_json(row: tuple, payment_hash: bytes | None) -> dict:
    in_ch, out_ch, in_msat, out_msat, fee, status, failcode, failreason, received, resolved = row
    d: dict[str, Any] = {"in_channel": in_ch, "in_msat": in_msat, "status": status, "received_time": received,
                         "style": "tlv"}
    if payment_hash is not None:
        d["payment_hash"] = payment_hash.hex()
    if out_ch:
        d["out_channel"] = out_ch
    if out_msat is not None:
        d["out_msat"] = out_msat
        d["fee_msat"] = in_msat - out_msat
    if resolved is not None:
        d["resolved_time"] = resolved
    if failcode is not None:
        d["failcode"] = failcode
    if failreason:
        d["failreason"] = failreason
    return d


def _unknown_details(amount: int, height: int) -> bytes:
    return encode_failure_data(F.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, htlc_msat=amount, height=height)
