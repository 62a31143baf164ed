"""`pay bolt11`: decode, find a route, send, learn from failures, retry
(Core Lightning's pay plugin, built in), and `listpays`."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bitcoin.hashes import hash256
from bitcoin.keys import verify_digest_compact
from common.bolt11 import Bolt11Error
from common.bolt11 import decode as decode_bolt11
from common.scid import ShortChannelId
from wire import DecodeError, bolt_schema

from . import channel as C
from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import (
    INVALID_PARAMS,
    PAY_DESTINATION_PERM_FAIL,
    PAY_IN_PROGRESS,
    PAY_INVOICE_EXPIRED,
    PAY_RHASH_ALREADY_USED,
    PAY_ROUTE_NOT_FOUND,
    PAY_ROUTE_TOO_EXPENSIVE,
    PAY_STOPPED_RETRYING,
    RpcError,
)
from .params import opt, req

if TYPE_CHECKING:
    from .lightningd import LightningD

DEFAULT_RETRY_FOR = 60
DEFAULT_MAXFEEPERCENT = 0.5
DEFAULT_EXEMPTFEE = 5000
# Blocks added to the invoice's min_final_cltv_expiry: a payee whose view of
# the chain is a block or two ahead of ours would otherwise refuse the HTLC as
# too close to expiry (LND pads by 3 for the same reason).
FINAL_CLTV_PADDING = 3


def policy_from_error(raw: bytes, erring_node: str | None, channel: str, chain_hash: bytes) -> dict | None:
    """The channel_update an erring node put in its onion error, as a policy
    for gossipd's getroute, if it is valid: on our chain, for the channel
    that failed, signed by that node.  With or without the 0x0102 type
    prefix (Core Lightning and eclair send it, LND does not)."""
    if raw[:2] != b"\x01\x02":
        raw = b"\x01\x02" + raw
    try:
        f = bolt_schema().decode(raw).fields
        pub = bytes.fromhex(erring_node or "")
    except (DecodeError, ValueError):
        return None
    scid = ShortChannelId.from_bytes(f["short_channel_id"])
    if f["chain_hash"] != chain_hash or str(scid) != channel or len(pub) != 33:
        return None
    try:
        if not verify_digest_compact(pub, f["signature"], hash256(raw[2 + 64:])):
            return None
    except ValueError:
        return None
    return {"scid": scid.to_int(), "direction": f["channel_flags"] & 1,
            "fee_base_msat": f["fee_base_msat"], "fee_proportional_millionths": f["fee_proportional_millionths"],
            "cltv_expiry_delta": f["cltv_expiry_delta"], "htlc_minimum_msat": f["htlc_minimum_msat"],
            "htlc_maximum_msat": f["htlc_maximum_msat"], "enabled": not f["channel_flags"] & 2}


async def route_to(ld: "LightningD", destination: bytes, amount_msat: int, final_cltv: int, exclude: set[str],
                   hints: list, riskfactor: float = 10, policies: dict[str, dict] | None = None) -> list[dict] | None:
    """A route as sendpay takes it (delays relative to the next block).
    Direct channel first, then route hints through a peer, then the gossip
    graph (gossipd's getroute).  ``policies``: channel policies learnt from
    this payment's onion errors (by channel), over the hints' and the graph's."""
    policies = policies or {}
    delay = final_cltv

    def usable(c) -> bool:
        return (c.state == C.NORMAL and c.scid is not None and ld.is_connected(c.peer_id)
                and f"{c.scid}/{0 if ld.node_id < c.peer_id else 1}" not in exclude and str(c.scid) not in exclude
                and c.peer_id.hex() not in exclude
                and c.summary["spendable_msat"] >= amount_msat)
    direct = [c for c in ld.channels.by_peer(destination) if usable(c)]
    if direct:
        c = max(direct, key=lambda c: c.summary["spendable_msat"])
        return [{"id": destination.hex(), "channel": str(c.scid), "amount_msat": amount_msat, "delay": delay,
                 "direction": 0 if ld.node_id < c.peer_id else 1}]
    for hint in hints:
        if not hint:
            continue
        # hint: [first hop from a node we may reach ... last hop to destination]
        first = hint[0]
        peer = bytes.fromhex(first["pubkey"]) if isinstance(first["pubkey"], str) else first["pubkey"]
        hops_after = []
        amt, dl = amount_msat, delay
        # walk the hint backwards computing what each hop must carry
        chain = []
        for i in range(len(hint) - 1, -1, -1):
            h = hint[i]
            pol = policies.get(_scid_str(h["short_channel_id"]))
            if pol is not None:
                h = dict(h, fee_base_msat=pol["fee_base_msat"], cltv_expiry_delta=pol["cltv_expiry_delta"],
                         fee_proportional_millionths=pol["fee_proportional_millionths"])
            nxt_id = destination if i == len(hint) - 1 else _pk(hint[i + 1]["pubkey"])
            chain.append({"id": nxt_id.hex(), "channel": _scid_str(h["short_channel_id"]), "amount_msat": amt,
                          "delay": dl})
            amt = amt + h["fee_base_msat"] + amt * h["fee_proportional_millionths"] // 1_000_000
            dl = dl + h["cltv_expiry_delta"]
        chain.reverse()
        if any(hp["channel"] in exclude or f"{hp['channel']}/0" in exclude or f"{hp['channel']}/1" in exclude
               for hp in chain):
            continue
        to_peer = [c for c in ld.channels.by_peer(peer) if usable(c) and c.summary["spendable_msat"] >= amt]
        if to_peer:
            c = to_peer[0]
            hops_after = [{"id": peer.hex(), "channel": str(c.scid), "amount_msat": amt, "delay": dl}] + chain
            return hops_after
    try:
        return await ld.find_route(destination, amount_msat, final_cltv, exclude, riskfactor=riskfactor,
                                   policies=list(policies.values()))
    except RpcError:
        return None


def _pk(v: Any) -> bytes:
    return bytes.fromhex(v) if isinstance(v, str) else v


def _scid_str(v: Any) -> str:
    if isinstance(v, int):
        return str(ShortChannelId.from_int(v))
    if isinstance(v, (bytes, bytearray)):
        return str(ShortChannelId.from_bytes(bytes(v)))
    return str(v)


def fee_budget(amount: int, maxfee: int | None, maxfeepercent: float | None, exemptfee: int | None) -> int:
    """Core Lightning's: maxfee, or maxfeepercent of the amount (0.5%) but at
    least exemptfee (5000 msat)."""
    if maxfee is not None and (maxfeepercent is not None or exemptfee is not None):
        raise RpcError(INVALID_PARAMS, "If you specify maxfee, cannot specify maxfeepercent or exemptfee.")
    if maxfee is not None:
        return maxfee
    pct = maxfeepercent if maxfeepercent is not None else DEFAULT_MAXFEEPERCENT
    exempt = exemptfee if exemptfee is not None else DEFAULT_EXEMPTFEE
    return max(exempt, int(amount * pct / 100))


@dataclass
class PaymentRequest:
    """What pay (an invoice) or keysend (a preimage of our own) sends."""
    payee: bytes
    payment_hash: bytes
    amount_msat: int                  # what this command delivers
    total_msat: int                   # the whole payment's (MPP: all parts)
    min_final_cltv: int
    payment_secret: bytes | None = None
    metadata: bytes | None = None
    bolt11: str | None = None
    label: str | None = None
    description: str | None = None
    hints: list = field(default_factory=list)
    keysend_preimage: bytes | None = None


async def pay_with_retries(ld: "LightningD", req: PaymentRequest, max_fee: int, retry_for: int,
                           maxdelay: int | None, riskfactor: float, excluded: set[str]) -> dict:
    """Route, send, wait; on failure learn from the error and try again until
    ``retry_for`` seconds have passed (Core Lightning's pay, one part)."""
    pay = ld.payments
    amount = req.amount_msat
    log = ld.log.child(f"pay {req.payment_hash.hex()[:16]}", req.payee.hex())
    policies: dict[str, dict] = {}    # channel -> policy from an onion error (this payment only)
    deadline = time.monotonic() + retry_for
    attempts = 0
    last_error: RpcError | None = None
    started = int(time.time())
    while time.monotonic() < deadline:
        final_cltv = req.min_final_cltv + FINAL_CLTV_PADDING
        route = await route_to(ld, req.payee, amount, final_cltv, excluded, req.hints, riskfactor, policies)
        if route is None:
            if last_error is not None:
                raise RpcError(PAY_STOPPED_RETRYING, f"Ran out of routes to try after {attempts} attempts: "
                               f"{last_error.message}", last_error.data)
            raise RpcError(PAY_ROUTE_NOT_FOUND, "Could not find a route")
        fee = route[0]["amount_msat"] - amount
        if fee > max_fee:
            raise RpcError(PAY_ROUTE_TOO_EXPENSIVE, f"Fee exceeds our fee budget: {fee}msat > {max_fee}msat")
        if maxdelay is not None and route[0]["delay"] > maxdelay:
            raise RpcError(PAY_ROUTE_TOO_EXPENSIVE,
                           f"CLTV delay exceeds our CLTV budget: {route[0]['delay']} > {maxdelay}")
        attempts += 1
        log.debug(f"attempt {attempts}: {amount}msat via "
                  + " -> ".join(f"{h['channel']}" for h in route) + f", fee {fee}msat, delay {route[0]['delay']}")
        sent = False
        try:
            await pay.sendpay(route, req.payment_hash, req.label, req.total_msat, req.bolt11, req.payment_secret,
                              0, attempts, req.description, req.metadata, keysend_preimage=req.keysend_preimage)
            sent = True
            # No timeout: once an HTLC is out, only its resolution tells whether
            # the payment happened.  retry_for bounds new attempts, not this
            # wait (as Core Lightning): a pay that gave up with a part in flight
            # could see it succeed, and its caller pay twice.
            res = await pay.waitsendpay(req.payment_hash, None, 0, attempts)
        except RpcError as e:
            last_error = e
            d = e.data if isinstance(e.data, dict) else {}
            log.debug(f"attempt {attempts} failed: {e.message}"
                      + (f" (at {d.get('erring_channel')}, {d.get('failcodename')})" if d.get("erring_channel") else ""))
            if e.code == PAY_DESTINATION_PERM_FAIL:
                raise
            if not sent and e.code in (PAY_IN_PROGRESS, PAY_RHASH_ALREADY_USED, INVALID_PARAMS):
                # sendpay's duplicate checks: already paid, or another attempt still in flight;
                # or what we were asked to send cannot be sent (an onion too large, an overflowing cltv)
                raise
            data = e.data if isinstance(e.data, dict) else {}
            if e.data is None or (data.get("erring_index") == 0 and data.get("failcode") == 0x1007):
                # our own first hop could not take it (peer reconnecting...): try again shortly
                await asyncio.sleep(1)
                continue
            ch = data.get("erring_channel")
            raw = data.get("raw_message")
            if ch and raw and ch not in policies:
                # BOLT 4: the erring node's channel_update may be used for retries
                # of this payment (once per channel: a second failure excludes it)
                pol = policy_from_error(bytes.fromhex(raw), data.get("erring_node"), ch, ld.network.chain_hash)
                if pol is not None:
                    policies[ch] = pol
                    ld.log.debug(f"pay {req.payment_hash.hex()}: retrying with the channel_update of {ch} "
                                 f"from {data.get('failcodename')}")
                    continue
            # gossipd excludes channel directions: "BLOCKxTXxOUT/DIR"
            if ch:
                excluded.add(f"{ch}/{data.get('erring_direction', 0)}")
            else:
                excluded.update(f"{h['channel']}/{h.get('direction', 0)}" for h in route)
            continue
        log.debug(f"attempt {attempts} succeeded: {res['amount_sent_msat']}msat sent")
        return {"destination": req.payee.hex(), "payment_hash": req.payment_hash.hex(), "created_at": started,
                "parts": 1, "amount_msat": amount, "amount_sent_msat": res["amount_sent_msat"],
                "payment_preimage": res["payment_preimage"], "status": "complete"}
    raise RpcError(PAY_STOPPED_RETRYING, f"Ran out of time after {attempts} attempts"
                   + (f": {last_error.message}" if last_error else ""))


def register(ld: "LightningD") -> None:
    pay = ld.payments
    cmd = ld.registry.command

    @cmd("pay", [req("bolt11", P.string), opt("amount_msat", P.msat), opt("label", P.string),
                 opt("riskfactor", P.nonneg_number, 10), opt("maxfeepercent", P.nonneg_number),
                 opt("retry_for", P.u32, DEFAULT_RETRY_FOR), opt("maxdelay", P.u32), opt("exemptfee", P.msat),
                 opt("localinvreqid", P.string), opt("exclude", P.route_exclusions), opt("maxfee", P.msat),
                 opt("description", P.string), opt("partial_msat", P.msat)], category="payment",
         description="Send payment specified by {bolt11}")
    async def pay_cmd(ctx: RequestContext, bolt11: str, amount_msat: int | None, label: str | None,
                      riskfactor: float, maxfeepercent: float | None, retry_for: int, maxdelay: int | None,
                      exemptfee: int | None, localinvreqid: str | None, exclude: list[str] | None,
                      maxfee: int | None, description: str | None, partial_msat: int | None) -> dict:
        try:
            inv = decode_bolt11(bolt11)
        except Bolt11Error as e:
            raise RpcError(INVALID_PARAMS, f"Invalid bolt11: {e}") from None
        if inv.network is not None and getattr(inv.network, "name", ld.network.name) != ld.network.name:
            raise RpcError(INVALID_PARAMS, f"Invoice is for another network {inv.network.name}")
        if inv.amount_msat is not None and amount_msat is not None:
            raise RpcError(INVALID_PARAMS, "amount_msat parameter unnecessary")
        if inv.amount_msat is None and amount_msat is None:
            raise RpcError(INVALID_PARAMS, "amount_msat parameter required")
        total = inv.amount_msat if inv.amount_msat is not None else amount_msat
        assert total is not None
        if total == 0:
            raise RpcError(INVALID_PARAMS, "amount_msat: must be positive")
        if partial_msat == 0:
            raise RpcError(INVALID_PARAMS, "partial_msat: must be positive")
        if partial_msat is not None and partial_msat > total:
            raise RpcError(INVALID_PARAMS, f"partial_msat must be less or equal to total amount {total}msat")
        # what this command sends (all of the invoice, or the caller's part of it)
        amount = partial_msat if partial_msat is not None else total
        if inv.timestamp + inv.expiry < time.time():
            raise RpcError(PAY_INVOICE_EXPIRED, "Invoice expired")
        max_fee = fee_budget(amount, maxfee, maxfeepercent, exemptfee)
        hints = [[{"pubkey": h.pubkey.hex() if isinstance(h.pubkey, bytes) else h.pubkey,
                   "short_channel_id": h.short_channel_id, "fee_base_msat": h.fee_base_msat,
                   "fee_proportional_millionths": h.fee_proportional_millionths,
                   "cltv_expiry_delta": h.cltv_expiry_delta} for h in hint] for hint in (inv.route_hints or [])]
        return await pay_with_retries(ld, PaymentRequest(
            payee=inv.payee, payment_hash=inv.payment_hash, amount_msat=amount, total_msat=total,
            min_final_cltv=inv.min_final_cltv_expiry, payment_secret=inv.payment_secret, metadata=inv.metadata,
            bolt11=bolt11, label=label, description=description, hints=hints),
            max_fee, retry_for, maxdelay, riskfactor, set(exclude or []))

    @cmd("listpays", [opt("bolt11", P.string), opt("payment_hash", P.sha256_hex),
                      opt("status", P.one_of("pending", "complete", "failed")), opt("index", P.string),
                      opt("start", P.u64), opt("limit", P.u32)], category="payment",
         description="List result of payment {bolt11} or {payment_hash}, or all")
    async def listpays(ctx: RequestContext, bolt11: str | None, payment_hash: bytes | None, status: str | None,
                       index: str | None, start: int | None, limit: int | None) -> dict:
        groups: dict[bytes, list[dict]] = {}
        for p in pay.rows():
            if bolt11 and p["bolt11"] != bolt11:
                continue
            if payment_hash and p["payment_hash"] != payment_hash:
                continue
            groups.setdefault(p["payment_hash"], []).append(p)
        out = []
        for ph, parts in groups.items():
            st = "complete" if any(p["status"] == "complete" for p in parts) else \
                "pending" if any(p["status"] == "pending" for p in parts) else "failed"
            if status and st != status:
                continue
            last = max(parts, key=lambda p: p["groupid"])
            d: dict[str, Any] = {"payment_hash": ph.hex(), "status": st, "created_at": min(p["created_at"] for p in parts)}
            if last["destination"]:
                d["destination"] = last["destination"].hex()
            for k in ("label", "bolt11", "description"):
                if last[k]:
                    d[k] = last[k]
            if st == "complete":
                ok = [p for p in parts if p["status"] == "complete"]
                d["amount_msat"] = sum(p["amount_msat"] for p in ok)
                d["amount_sent_msat"] = sum(p["amount_sent_msat"] for p in ok)
                d["preimage"] = ok[0]["preimage"].hex()
                d["completed_at"] = max(p["completed_at"] or 0 for p in ok)
                d["number_of_parts"] = len(ok)
            out.append(d)
        if limit is not None:
            out = out[:limit]
        return {"pays": out}


