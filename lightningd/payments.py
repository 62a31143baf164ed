"""Our payments: `sendpay` on a route the caller gives (Core Lightning's
sendpay/waitsendpay/listsendpays), `pay` that finds a route and retries,
`listpays`, `listforwards` (keysend sends through here too, with the
preimage in the final payload: lightningd/keysend.py).

A payment part is a row in `payments`; its HTLC on the first hop is a row in
`htlcs` (direction 'out', payment_id set).  Results arrive inside channeld's
persist transaction (payment_succeeded / payment_failed), waiters are woken
after the commit."""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import TYPE_CHECKING, Any

from bitcoin.keys import is_valid_pubkey, is_valid_secret
from common.onion import ROUTING_INFO_SIZE, create_onion, onion_frame_size
from common.onion_errors import (
    FailureCode,
    MalformedFailureMessage,
    UnknownFailureSource,
    decode_failure,
    decode_failure_data,
    failure_code_name,
)
from common.onion_payload import HopPayload, PaymentData, encode_payload
from common.scid import ShortChannelId
from wire import decode_bigsize

from . import channel as C
from . import params as P
from . import pay_command
from .db import from_sql_u64, to_sql_u64
from .htlc_engine import forward_json
from .jsonrpc import RequestContext
from .jsonrpc_errors import (
    INVALID_PARAMS,
    PAY_DESTINATION_PERM_FAIL,
    PAY_IN_PROGRESS,
    PAY_NO_SUCH_PAYMENT,
    PAY_RHASH_ALREADY_USED,
    PAY_TRY_OTHER_ROUTE,
    PAY_UNPARSEABLE_ONION,
    RpcError,
)
from .params import opt, req

if TYPE_CHECKING:
    from .lightningd import LightningD

_COLS = ("id", "payment_hash", "partid", "groupid", "destination", "amount_msat", "amount_sent_msat", "total_msat",
         "status", "created_at", "completed_at", "preimage", "bolt11", "label", "description", "shared_secrets",
         "route", "erroronion", "failure", "bolt12")


def _from_row(r: tuple) -> dict:
    p = dict(zip(_COLS, r))
    p["partid"], p["groupid"] = from_sql_u64(p["partid"]), from_sql_u64(p["groupid"])
    return p


class Payments:
    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.waiters: dict[int, list[asyncio.Future]] = {}
        #: pays a BOLT 12 invoice string (pay_bolt12.register sets it; pay dispatches to it)
        self.bolt12_pay: Any = None
        # (payment_hash, groupid) of payments pay/xpay are still working on
        # (listpays shows them pending even between parts)
        self.active_groups: set[tuple[bytes, int]] = set()

    @property
    def db(self):
        return self.ld.db

    def row(self, pid: int) -> dict | None:
        r = self.db.one(f"SELECT {', '.join(_COLS)} FROM payments WHERE id = ?", (pid,))
        return _from_row(r) if r else None

    def rows(self, where: str = "", args: tuple = ()) -> list[dict]:
        return [_from_row(r) for r in self.db.query(f"SELECT {', '.join(_COLS)} FROM payments {where} "
                                                    "ORDER BY id", args)]

    # ------------------------------------------------------------------ results (inside persist tx)
    def payment_succeeded(self, pid: int, preimage: bytes) -> None:
        self.db.execute("UPDATE payments SET status = 'complete', preimage = ?, completed_at = ? WHERE id = ? "
                        "AND status = 'pending'", (preimage, int(time.time()), pid))
        asyncio.get_running_loop().call_soon(self._finished, pid)

    def fail_unoffered(self) -> None:
        """At start-up: a pending part with no outgoing HTLC row was never
        offered (a database from before a part and its HTLC were recorded
        together): it failed."""
        rows = self.db.query("SELECT id FROM payments WHERE status = 'pending' AND id NOT IN "
                             "(SELECT payment_id FROM htlcs WHERE payment_id IS NOT NULL)")
        with self.db.transaction():
            for (pid,) in rows:
                self.payment_failed(pid, None, 0x1007, lost=True)

    def payment_failed(self, pid: int, onion: bytes | None, code: int | None, lost: bool = False) -> None:
        p = self.row(pid)
        if p is None or p["status"] != "pending":
            return
        failure = self._decode(p, onion, code)
        if lost:
            failure["message"] = "First hop lost the HTLC (disconnected before it was committed)"
        self.db.execute("UPDATE payments SET status = 'failed', erroronion = ?, failure = ?, completed_at = ? "
                        "WHERE id = ?", (onion, json.dumps(failure), int(time.time()), pid))
        asyncio.get_running_loop().call_soon(self._finished, pid)

    def _decode(self, p: dict, onion: bytes | None, code: int | None) -> dict:
        route = json.loads(p["route"] or "[]")
        if onion is not None and not p["shared_secrets"]:
            # sendonion without shared_secrets: we cannot read the error
            return {"erring_index": None, "failcode": None, "unparseable": True}
        if onion is None:
            # the first hop said our onion was malformed
            return {"erring_index": 0, "failcode": code or 0, "erring_node": self.ld.node_id.hex(),
                    "erring_channel": route[0]["channel"] if route else None, "erring_direction": 0}
        ss = p["shared_secrets"] or b""
        secrets = [ss[i:i + 32] for i in range(0, len(ss), 32)]
        try:
            d = decode_failure(secrets, onion)
        except (UnknownFailureSource, MalformedFailureMessage, ValueError):
            return {"erring_index": None, "failcode": None, "unparseable": True}
        # the erring node's index in route terms: hop index (node route[index].id)
        # a BADONION error is reported on behalf of the next node, the one
        # that could not read its onion (Core Lightning's remote_routing_failure)
        blamed = d.index + 1 if d.failure_code & 0x8000 and d.index + 1 < len(route) else d.index
        out: dict[str, Any] = {"erring_index": d.index + 1, "failcode": d.failure_code,
                               "failcodename": "WIRE_" + failure_code_name(d.failure_code).upper(),
                               "erring_node": route[blamed]["id"] if blamed < len(route) else None}
        if d.index + 1 < len(route):
            out["erring_channel"] = route[d.index + 1]["channel"]
            out["erring_direction"] = route[d.index + 1].get("direction", 0)
        if d.failure_code == FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS and d.index == len(route) - 1:
            out["erring_index"] = len(route)
        try:
            fields, _ = decode_failure_data(d.failure_code, d.failure_data)
            if fields.get("channel_update"):
                out["raw_message"] = fields["channel_update"].hex()
        except ValueError:
            pass
        return out

    def _finished(self, pid: int) -> None:
        p = self.row(pid)
        if p is None:
            return
        for fut in self.waiters.pop(pid, []):
            if not fut.done():
                fut.set_result(p)
        j = self.json(p)
        if p["status"] == "complete":
            self.ld.plugins.notify("sendpay_success", {"sendpay_success": j})
        else:
            self.ld.plugins.notify("sendpay_failure", {"sendpay_failure": {
                "code": self._error_code(p), "message": "failed", "data": dict(j, **json.loads(p["failure"] or "{}"))}})

    def _error_code(self, p: dict) -> int:
        f = json.loads(p["failure"] or "{}")
        if f.get("unparseable"):
            return PAY_UNPARSEABLE_ONION
        route = json.loads(p["route"] or "[]")
        code = f.get("failcode") or 0
        if f.get("erring_index") == len(route) and code & 0x4000:
            return PAY_DESTINATION_PERM_FAIL
        return PAY_TRY_OTHER_ROUTE

    def json(self, p: dict) -> dict:
        d: dict[str, Any] = {"created_index": p["id"], "id": p["id"], "payment_hash": p["payment_hash"].hex(),
                             "groupid": p["groupid"], "status": p["status"], "amount_msat": p["amount_msat"],
                             "amount_sent_msat": p["amount_sent_msat"], "created_at": p["created_at"]}
        if p["partid"]:
            d["partid"] = p["partid"]
        if p["destination"]:
            d["destination"] = p["destination"].hex()
        if p["completed_at"]:
            d["completed_at"] = p["completed_at"]
        if p["preimage"]:
            d["payment_preimage"] = p["preimage"].hex()
        for k in ("bolt11", "bolt12", "label", "description"):
            if p[k]:
                d[k] = p[k]
        if p["erroronion"] and p["status"] == "failed":
            d["erroronion"] = p["erroronion"].hex()
        return d

    # ------------------------------------------------------------------ sending
    def _same_part(self, p: dict, what: str, amount_msat: int, destination: bytes | None) -> None:
        """A repeat of part ``p`` must be for the same amount and destination."""
        if p["amount_msat"] != amount_msat:
            raise RpcError(PAY_RHASH_ALREADY_USED, f"Already {what} with amount {p['amount_msat']}msat "
                           f"(not {amount_msat}msat)", self.json(p))
        if p["destination"] and destination and p["destination"] != destination:
            raise RpcError(PAY_RHASH_ALREADY_USED, f"Already {what} to {p['destination'].hex()}", self.json(p))

    def check_progress(self, payment_hash: bytes, partid: int, groupid: int, amount_msat: int, total_msat: int,
                       destination: bytes | None) -> dict | None:
        """Reconcile a new payment part with earlier ones for the same hash
        (Core Lightning's check_progress, shared by sendpay and sendonion):
        RpcError if it must not be sent.  `amount_msat` is what this part
        delivers, `total_msat` the whole payment's (0: not known, as for a
        sendonion without total_amount_msat).  An exact repeat of a completed
        part is a no-op answered with that payment (returned here), as Core
        Lightning does; a repeat of a pending one is refused (200).  Failed
        parts never block: their row is replaced by the new attempt."""
        have_complete = False
        pending_msat = 0
        for p in self.rows("WHERE payment_hash = ?", (payment_hash,)):
            if p["status"] == "complete":
                have_complete = True
                if p["partid"] != partid:
                    continue
                self._same_part(p, "succeeded", amount_msat, destination)
                return p
            if p["status"] != "pending":
                continue
            # at most one payment group in flight
            if p["groupid"] != groupid:
                raise RpcError(PAY_IN_PROGRESS, f"Payment with groupid={p['groupid']} still in progress, cannot "
                               "retry before that completes.", self.json(p))
            # no mixing of non-parallel (partid 0) and parallel parts
            if bool(p["partid"]) != bool(partid):
                raise RpcError(PAY_IN_PROGRESS, "Already have "
                               f"{'parallel' if p['partid'] else 'non-parallel'} payment in progress", self.json(p))
            if p["partid"] == partid:
                self._same_part(p, "pending", amount_msat, destination)
                raise RpcError(PAY_IN_PROGRESS, f"Already have parallel payment in progress with partid {partid}"
                               if partid else "Already have non-parallel payment in progress", self.json(p))
            if total_msat and p["total_msat"] != total_msat:
                raise RpcError(INVALID_PARAMS, f"msatoshi was previously {p['total_msat']}msat, now {total_msat}msat")
            pending_msat += p["amount_msat"]
        if have_complete:
            raise RpcError(PAY_RHASH_ALREADY_USED, "Already succeeded other parts")
        if total_msat and pending_msat >= total_msat:
            raise RpcError(PAY_IN_PROGRESS, f"Already have {pending_msat}msat of {total_msat}msat payments in progress")

    async def sendpay(self, route: list[dict], payment_hash: bytes, label: str | None, amount_msat: int | None,
                      bolt11: str | None, payment_secret: bytes | None, partid: int, groupid: int,
                      description: str | None, payment_metadata: bytes | None = None,
                      keysend_preimage: bytes | None = None, extra_tlvs: dict[int, bytes] | None = None) -> dict:
        if not route:
            raise RpcError(INVALID_PARAMS, "Empty route")
        final = route[-1]
        total = amount_msat if amount_msat is not None else final["amount_msat"]
        first = route[0]
        # Core Lightning: a route's delays are relative to the next block
        base = self.ld.blockheight + 1
        hops = []
        for i, hop in enumerate(route):
            if i == len(route) - 1:
                pl = HopPayload(amt_to_forward=hop["amount_msat"],
                                outgoing_cltv_value=cltv_expiry(base, hop["delay"], f"route[{i}]"),
                                payment_data=PaymentData(payment_secret, total) if payment_secret else None,
                                payment_metadata=payment_metadata, keysend_preimage=keysend_preimage,
                                unknown_odd=dict(extra_tlvs or {}))
            else:
                nxt = route[i + 1]
                pl = HopPayload(amt_to_forward=nxt["amount_msat"],
                                outgoing_cltv_value=cltv_expiry(base, nxt["delay"], f"route[{i + 1}]"),
                                short_channel_id=ShortChannelId.parse(nxt["channel"]).to_int())
            hops.append((bytes.fromhex(hop["id"]), encode_payload(pl)))
        payloads = sum(onion_frame_size(pl) for _, pl in hops)
        if payloads > ROUTING_INFO_SIZE:
            # too many hops, or a payment_metadata too large for the final hop
            raise RpcError(INVALID_PARAMS, f"Payloads exceed maximum onion packet size: {len(route)} hops need "
                                           f"{payloads} bytes of the {ROUTING_INFO_SIZE}")
        onion, secrets = create_onion(os.urandom(32), hops, payment_hash)
        return await self.send_onion(first, base + first["delay"], onion, list(secrets), payment_hash, partid,
                                     groupid, bytes.fromhex(final["id"]), final["amount_msat"], total, bolt11, label,
                                     description, route)

    async def sendpay_blinded(self, route: list[dict], blinded: list[tuple[bytes, bytes]], payment_hash: bytes,
                              amount_msat: int, destination: bytes, bolt12: str, label: str | None,
                              description: str | None, partid: int, groupid: int,
                              path_key: bytes | None = None) -> dict:
        """sendpay to a blinded path: ``route`` reaches its introduction
        point (the last hop, whose payload, with the rest of the path's, is
        ``blinded``: common.blindedpay.blinded_payloads); with ``path_key``
        the route is one hop to the node after us, we having been the
        introduction point (the key goes in its update_add_htlc)."""
        base = self.ld.blockheight + 1
        hops = []
        for i, hop in enumerate(route[:-1] if path_key is None else []):
            nxt = route[i + 1]
            pl = HopPayload(amt_to_forward=nxt["amount_msat"],
                            outgoing_cltv_value=cltv_expiry(base, nxt["delay"], f"route[{i + 1}]"),
                            short_channel_id=ShortChannelId.parse(nxt["channel"]).to_int())
            hops.append((bytes.fromhex(hop["id"]), encode_payload(pl)))
        hops += blinded
        if sum(onion_frame_size(pl) for _, pl in hops) > ROUTING_INFO_SIZE:
            raise RpcError(INVALID_PARAMS, "Payloads exceed maximum onion packet size (blinded path too long)")
        onion, secrets = create_onion(os.urandom(32), hops, payment_hash)
        # the error decoder's view: one entry per onion hop
        full = list(route) if path_key is None else []
        full += [{"id": k.hex(), "channel": None, "blinded": True, "amount_msat": amount_msat,
                  "delay": route[-1]["delay"]} for k, _ in blinded[0 if path_key is not None else 1:]]
        return await self.send_onion(route[0], base + route[0]["delay"], onion, list(secrets), payment_hash, partid,
                                     groupid, destination, amount_msat, amount_msat, None, label, description,
                                     full, bolt12=bolt12, path_key=path_key)

    async def send_onion(self, first_hop: dict, first_cltv: int, onion: bytes, secrets: list[bytes] | None,
                         payment_hash: bytes, partid: int, groupid: int, destination: bytes | None,
                         amount_msat: int, total: int, bolt11: str | None, label: str | None,
                         description: str | None, route: list[dict] | None, check_total: int | None = None,
                         bolt12: str | None = None, path_key: bytes | None = None) -> dict:
        """sendpay's and sendonion's common path (Core Lightning's
        send_payment_core): check earlier parts for this hash, pick the
        channel to `first_hop` ({id, channel (optional), amount_msat}),
        record the part, then offer the HTLC.  `check_total` is the total
        the duplicate checks go by (default `total`; 0 skips the total
        checks).  Nothing awaits between the checks and the record, so two
        concurrent calls cannot both pass."""
        cltv_expiry(first_cltv - first_hop["delay"], first_hop["delay"], "first_hop")
        done = self.check_progress(payment_hash, partid, groupid, amount_msat,
                                   total if check_total is None else check_total, destination)
        if done is not None:
            return self.json(done)
        chan = self.channel_for(first_hop)
        if chan is None or chan.state != C.NORMAL or chan.subd is None or not chan.subd.running:
            raise RpcError(PAY_TRY_OTHER_ROUTE, "First peer not ready")
        first_amount = first_hop["amount_msat"]
        first = {"amount_msat": first_amount, "channel": str(chan.scid_or_alias) if chan.scid_or_alias else ""}
        now = int(time.time())
        htlcs = self.ld.htlcs
        # the part and its outgoing HTLC's row in one transaction, before
        # channeld hears of it (HtlcEngine.offer, shared with forwards)
        with self.db.transaction():
            self.db.execute("DELETE FROM payments WHERE payment_hash = ? AND partid = ? AND groupid = ? AND "
                            "status = 'failed'", (payment_hash, to_sql_u64(partid), to_sql_u64(groupid)))
            cur = self.db.execute(
                "INSERT INTO payments(payment_hash, partid, groupid, destination, amount_msat, amount_sent_msat, "
                "total_msat, status, created_at, bolt11, label, description, shared_secrets, route, bolt12) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                (payment_hash, to_sql_u64(partid), to_sql_u64(groupid), destination, amount_msat, first_amount, total,
                 now, bolt11, label, description, b"".join(secrets) if secrets else None,
                 json.dumps(route) if route else None, bolt12))
            pid = cur.lastrowid
            out_row = htlcs.record_offer(chan.dbid, first_amount, payment_hash, first_cltv, payment_id=pid)
        refused = await htlcs.offer(chan, out_row, first_amount, payment_hash, first_cltv, onion, path_key)
        if refused is not None:
            with self.db.transaction():
                self.db.execute("UPDATE payments SET status = 'failed', completed_at = ?, failure = ? WHERE id = ?",
                                (int(time.time()), json.dumps({"erring_index": 0, "failcode": 0x1007,
                                                               "erring_node": self.ld.node_id.hex(),
                                                               "erring_channel": first["channel"],
                                                               "message": refused}), pid))
            self._finished(pid)
            raise RpcError(PAY_TRY_OTHER_ROUTE, f"First peer could not take the HTLC: {refused}")
        p = self.row(pid)
        assert p is not None
        out = self.json(p)
        out["message"] = "Monitor status with listpays or waitsendpay"
        return out

    def channel_for(self, hop: dict) -> "C.ChannelRecord | None":
        cands = [c for c in self.ld.channels.channels.values() if c.peer_id.hex() == hop["id"]]
        if hop.get("channel"):
            exact = [c for c in cands if c.names(hop["channel"])]
            if exact:
                return exact[0]
        normal = [c for c in cands if c.state == C.NORMAL]
        return normal[0] if normal else (cands[0] if cands else None)

    async def waitsendpay(self, payment_hash: bytes, timeout: int | None, partid: int, groupid: int | None) -> dict:
        where = "WHERE payment_hash = ? AND partid = ?" + (" AND groupid = ?" if groupid is not None else "")
        args: tuple = (payment_hash, to_sql_u64(partid)) + ((to_sql_u64(groupid),) if groupid is not None else ())
        rows = self.rows(where, args)
        if not rows:
            raise RpcError(PAY_NO_SUCH_PAYMENT, "Never attempted payment part")
        p = rows[-1]
        if p["status"] == "pending":
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            self.waiters.setdefault(p["id"], []).append(fut)
            try:
                p = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise RpcError(PAY_IN_PROGRESS, "Timed out while waiting") from None
        if p["status"] == "complete":
            return self.json(p)
        failure = json.loads(p["failure"] or "{}")
        code = self._error_code(p)
        data = dict(self.json(p), **{k: v for k, v in failure.items() if v is not None and k != "message"})
        msg = failure.get("message") or ("failed: " + failure.get("failcodename", "WIRE_UNKNOWN"))
        raise RpcError(code, msg, data)


def cltv_expiry(base: int, delay: int, what: str) -> int:
    """The absolute expiry of a hop `delay` blocks after `base`: it travels as
    a u32 (update_add_htlc's cltv_expiry, the onion's outgoing_cltv_value),
    so a delay that overflows it is the caller's bad parameter."""
    cltv = base + delay
    if cltv > 0xFFFFFFFF:
        raise RpcError(INVALID_PARAMS, f"{what}: delay {delay} overflows a 32-bit block height at height {base}")
    return cltv


def _route_hop(h: Any, name: str, need_channel: bool = True) -> dict:
    """One hop of a route as getroute gives it ({id, channel, amount_msat,
    delay, direction}), checked: RpcError -32602 naming what is wrong."""
    if not isinstance(h, dict):
        raise RpcError(INVALID_PARAMS, f"{name}: should be an object")
    try:
        hop = {"id": P.node_id(h["id"]).hex(),
               "channel": str(P.short_channel_id(h["channel"])) if need_channel or h.get("channel") is not None
               else None,
               "amount_msat": P.msat(h.get("amount_msat", h.get("msatoshi"))),
               "delay": P.u32(h["delay"]), "direction": h.get("direction", 0)}
    except KeyError as e:
        raise RpcError(INVALID_PARAMS, f"{name}: {e.args[0]} is required") from None
    except P.BadType as e:
        raise RpcError(INVALID_PARAMS, f"{name}: {e}") from None
    if hop["direction"] not in (0, 1):
        raise RpcError(INVALID_PARAMS, f"{name}: direction should be 0 or 1")
    return hop


def register(ld: "LightningD") -> None:
    pay = ld.payments
    cmd = ld.registry.command

    @cmd("sendpay", [req("route", P.array), req("payment_hash", P.sha256_hex), opt("label", P.string),
                     opt("amount_msat", P.msat), opt("bolt11", P.string), opt("payment_secret", P.sha256_hex),
                     opt("partid", P.u64, 0), opt("localinvreqid", P.string), opt("groupid", P.u64, 0),
                     opt("payment_metadata", P.hex_bytes), opt("description", P.string)], category="payment",
         description="Send along {route} in return for preimage of {payment_hash}")
    async def sendpay(ctx: RequestContext, route: list, payment_hash: bytes, label: str | None,
                      amount_msat: int | None, bolt11: str | None, payment_secret: bytes | None, partid: int,
                      localinvreqid: str | None, groupid: int, payment_metadata: bytes | None,
                      description: str | None) -> dict:
        hops = [_route_hop(h, f"route[{i}]") for i, h in enumerate(route)]
        return await pay.sendpay(hops, payment_hash, label, amount_msat, bolt11, payment_secret, partid, groupid,
                                 description, payment_metadata)

    @cmd("waitsendpay", [req("payment_hash", P.sha256_hex), opt("timeout", P.u32), opt("partid", P.u64, 0),
                         opt("groupid", P.u64)], category="payment",
         description="Wait for payment attempt on {payment_hash} to succeed or fail, but only up to {timeout} seconds.")
    async def waitsendpay(ctx: RequestContext, payment_hash: bytes, timeout: int | None, partid: int,
                          groupid: int | None) -> dict:
        return await pay.waitsendpay(payment_hash, timeout, partid, groupid)

    @cmd("listsendpays", [opt("bolt11", P.string), opt("payment_hash", P.sha256_hex),
                          opt("status", P.one_of("pending", "complete", "failed")), opt("index", P.string),
                          opt("start", P.u64_bound), opt("limit", P.u32)], category="payment",
         description="Show sendpay, old and current, optionally limiting to {bolt11} or {payment_hash}.")
    async def listsendpays(ctx: RequestContext, bolt11: str | None, payment_hash: bytes | None, status: str | None,
                           index: str | None, start: int | None, limit: int | None) -> dict:
        conds, args = [], []
        if bolt11:
            conds.append("bolt11 = ?")
            args.append(bolt11)
        if payment_hash:
            conds.append("payment_hash = ?")
            args.append(payment_hash)
        if status:
            conds.append("status = ?")
            args.append(status)
        if start is not None:
            conds.append("id >= ?")
            args.append(start)
        rows = pay.rows(("WHERE " + " AND ".join(conds)) if conds else "", tuple(args))
        if limit is not None:
            rows = rows[:limit]
        return {"payments": [pay.json(p) for p in rows]}

    @cmd("listforwards", [opt("status", P.one_of("offered", "settled", "failed", "local_failed")),
                          opt("in_channel", P.short_channel_id), opt("out_channel", P.short_channel_id),
                          opt("index", P.one_of("created", "updated")), opt("start", P.u64_bound),
                          opt("limit", P.u32)], category="channels",
         description="List all forwarded payments and their information optionally filtering by [status], "
                     "[in_channel] and [out_channel]")
    async def listforwards(ctx: RequestContext, status: str | None, in_channel: Any, out_channel: Any,
                           index: str | None, start: int | None, limit: int | None) -> dict:
        # created_index: the incoming HTLC's row; updated_index: when that
        # HTLC last changed (forwarded, then resolved: the forward's status)
        order = "h.updated_index" if index == "updated" else "f.in_htlc"
        where, args = "", ()
        if index is not None and start is not None:
            where, args = f"WHERE {order} >= ?", (start,)
        out = []
        for row in ld.db.query("SELECT f.in_channel, f.out_channel, f.in_msat, f.out_msat, f.fee_msat, f.status, "
                               "f.failcode, f.failreason, f.received_time, f.resolved_time, f.in_htlc, "
                               "h.updated_index, h.htlc_id, o.htlc_id FROM forwards f JOIN htlcs h ON h.id = f.in_htlc "
                               f"LEFT JOIN htlcs o ON o.id = f.out_htlc {where} ORDER BY {order}, f.in_htlc", args):
            j = {"created_index": row[10], **({"updated_index": row[11]} if row[11] else {}),
                 **forward_json(row[:10], None), "in_htlc_id": row[12]}
            if row[13] is not None and row[13] >= 0:      # (an HTLC being offered has no id yet)
                j["out_htlc_id"] = row[13]
            if status and j["status"] != status:
                continue
            if in_channel is not None and j["in_channel"] != str(in_channel):
                continue
            if out_channel is not None and j.get("out_channel") != str(out_channel):
                continue
            out.append(j)
            if index is not None and limit is not None and len(out) >= limit:
                break
        if index is None and limit is not None:
            out = out[:limit]
        return {"forwards": out}

    @cmd("createonion", [req("hops", P.array), req("assocdata", P.hex_bytes), opt("session_key", P.sha256_hex),
                         opt("onion_size", P.u16, 1300)], category="payment",
         description="Create an onion going through the provided nodes, each with its own payload")
    async def createonion(ctx: RequestContext, hops: list, assocdata: bytes, session_key: bytes | None,
                          onion_size: int) -> dict:
        try:
            hs = [(P.node_id(h["pubkey"]), P.hex_bytes(h["payload"])) for h in hops]
        except (KeyError, TypeError, P.BadType) as e:
            raise RpcError(INVALID_PARAMS, f"hops: each needs pubkey and payload (hex): {e}") from None
        # payloads arrive with their bigsize length prefix (Core Lightning's form): strip it
        stripped = []
        for pk, pl in hs:
            try:
                n, pos = decode_bigsize(pl)
            except ValueError:
                raise RpcError(INVALID_PARAMS, "hops: payload must start with its length") from None
            if pos + n != len(pl):
                raise RpcError(INVALID_PARAMS, "hops: payload length prefix does not match")
            stripped.append((pk, pl[pos:]))
        if session_key is not None and not is_valid_secret(session_key):
            raise RpcError(INVALID_PARAMS, "session_key: should be a valid secret key (0 < key < curve order)")
        try:
            packet, secrets = create_onion(session_key or os.urandom(32), stripped, assocdata,
                                           routing_info_size=onion_size)
        except ValueError as e:
            raise RpcError(INVALID_PARAMS, f"Payloads exceed maximum onion packet size: {e}") from None
        return {"onion": packet.hex(), "shared_secrets": [s.hex() for s in secrets]}

    @cmd("sendonion", [req("onion", P.hex_bytes), req("first_hop", P.obj), req("payment_hash", P.sha256_hex),
                       opt("label", P.string), opt("shared_secrets", P.array), opt("partid", P.u64, 0),
                       opt("bolt11", P.string), opt("amount_msat", P.msat), opt("destination", P.node_id),
                       opt("localinvreqid", P.string), opt("groupid", P.u64, 0), opt("description", P.string),
                       opt("total_amount_msat", P.msat)], category="payment",
         description="Send a payment with a custom onion packet")
    async def sendonion(ctx: RequestContext, onion: bytes, first_hop: dict, payment_hash: bytes, label: str | None,
                        shared_secrets: list | None, partid: int, bolt11: str | None, amount_msat: int | None,
                        destination: bytes | None, localinvreqid: str | None, groupid: int,
                        description: str | None, total_amount_msat: int | None) -> dict:
        if len(onion) != 1366:
            raise RpcError(INVALID_PARAMS, "onion: must be 1366 bytes")
        # Core Lightning parses the packet first: version 0 and a valid ephemeral key
        if onion[0] != 0:
            raise RpcError(INVALID_PARAMS, "Could not parse the onion. Parsing failed with "
                           f"failcode={int(FailureCode.INVALID_ONION_VERSION)}")
        if not is_valid_pubkey(onion[1:34]):
            raise RpcError(INVALID_PARAMS, "Could not parse the onion. Parsing failed with "
                           f"failcode={int(FailureCode.INVALID_ONION_KEY)}")
        hop = _route_hop(first_hop, "first_hop", need_channel=False)
        secrets = None
        if shared_secrets is not None:
            try:
                secrets = [P.sha256_hex(s) for s in shared_secrets]
            except P.BadType:
                raise RpcError(INVALID_PARAMS, "shared_secrets: should be an array of 32 byte hex secrets") from None
        amount = amount_msat if amount_msat is not None else hop["amount_msat"]
        return await pay.send_onion(hop, ld.blockheight + 1 + hop["delay"], onion, secrets, payment_hash, partid,
                                    groupid, destination, amount, total_amount_msat or amount, bolt11, label,
                                    description, None, check_total=total_amount_msat or 0)

    pay_command.register(ld)
