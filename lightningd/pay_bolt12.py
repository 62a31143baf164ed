"""Paying a BOLT 12 invoice: through one of its blinded paths.

The route reaches the path's introduction point through the graph (or our
channel to it); the introduction point's payload gives it the path's first
key (``current_path_key``) and every hop of the path its encrypted data
(common/blindedpay.py); the amount it must receive adds the path's
aggregated fee (``blinded_payinfo``), its expiry the path's CLTV delta.  If
we are the introduction point ourselves, we read our own hop (hsmd's ECDH)
and send to the next node with the next path key in update_add_htlc.

Failures before the introduction point are learnt from as ``pay`` does
(the channel is excluded, a channel_update in the error is used); a failure
at or beyond it (invalid_onion_blinding) means that path: the next one is
tried, in the invoice's order of preference.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from common import bolt12 as B
from common.blindedpath import BlindedPath, BlindingError, read_encrypted_data, relay_amount
from common.blindedpay import blinded_payloads
from common.bolt12 import Bolt12
from common.daemon_conn import RequestFailed

from . import channel as C
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
from .pay_command import DEFAULT_RETRY_FOR, fee_budget
from .pay_parts import next_groupid, previous_success
from .pay_routes import FINAL_CLTV_PADDING

if TYPE_CHECKING:
    from .lightningd import LightningD


async def route_to(ld: "LightningD", dest: bytes, amount: int, delay: int, exclude: set[str],
                   riskfactor: float) -> list[dict] | None:
    """A route to ``dest`` carrying ``amount`` (delays relative to the next
    block): our channel with it, else the graph's (gossipd's getroute)."""
    direct = []
    for c in ld.channels.by_peer(dest):
        direction = 0 if ld.node_id < c.peer_id else 1
        if (c.state == C.NORMAL and c.scid is not None and ld.is_connected(c.peer_id)
                and not {f"{c.scid}/{direction}", str(c.scid), dest.hex()} & exclude
                and c.summary["spendable_msat"] >= amount):
            direct.append((c.summary["spendable_msat"], c, direction))
    if direct:
        _, c, direction = max(direct, key=lambda x: x[0])
        return [{"id": dest.hex(), "channel": str(c.scid), "direction": direction, "amount_msat": amount,
                 "delay": delay}]
    try:
        return await ld.find_route(dest, amount, delay, exclude, riskfactor=int(riskfactor))
    except RpcError:
        return None


def check_payable(ld: "LightningD", inv: Bolt12) -> None:
    """What ``pay`` checks of a BOLT 12 invoice before sending anything."""
    try:
        B.check_invoice(inv)
    except B.Bolt12Error as e:
        raise RpcError(INVALID_PARAMS, f"Invalid bolt12 invoice: {e}") from None
    if B.chain_of_invreq(inv) != ld.network.chain_hash:
        raise RpcError(INVALID_PARAMS, "Invoice is for another network")
    if time.time() > inv.invoice_expires_at():
        raise RpcError(PAY_INVOICE_EXPIRED, "Invoice expired")


async def _hop_of_ours(ld: "LightningD", path: BlindedPath, amount: int, cltv: int) -> tuple[dict, bytes]:
    """We are the introduction point: our hop's forward (a route of one hop)
    and the path key for the next node."""
    try:
        ss = await ld.hsm.ecdh(path.first_path_key)
        hop = read_encrypted_data(path.first_path_key, ss, path.hops[0].encrypted_recipient_data)
    except (BlindingError, RequestFailed, ValueError) as e:
        raise BlindingError(f"our own hop: {e}") from None
    d = hop.data
    if d.payment_relay is None or len(path.hops) < 2:
        raise BlindingError("our own hop does not relay")
    nxt = d.next_node_id
    if nxt is None and d.short_channel_id is not None:
        nxt = next((c.peer_id for c in ld.channels.channels.values() if c.forwards_by(d.short_channel_id)), None)
    if nxt is None:
        raise BlindingError("our own hop names no next node we know")
    chans = [c for c in ld.channels.by_peer(nxt) if c.scid is not None and c.state == C.NORMAL]
    if not chans:
        raise BlindingError("no channel to the next node of our own hop")
    c = max(chans, key=lambda c: c.summary["spendable_msat"])
    out_amount = relay_amount(amount, d.payment_relay)
    return ({"id": nxt.hex(), "channel": str(c.scid), "amount_msat": out_amount,
             "delay": cltv - d.payment_relay.cltv_expiry_delta - (ld.blockheight + 1)}, hop.next_path_key)


async def pay_invoice(ld: "LightningD", inv: Bolt12, text: str | None = None, label: str | None = None,
                      maxfee: int | None = None, maxfeepercent: float | None = None, exemptfee: int | None = None,
                      retry_for: int = DEFAULT_RETRY_FOR, maxdelay: int | None = None, riskfactor: float = 10,
                      exclude: list[str] | None = None, localinvreqid: bytes | None = None,
                      description: str | None = None, max_fee_override: int | None = None) -> dict:
    """Pay ``inv`` (one part at a time, one payment group); pay's answer,
    with xpay's **failed_parts** / **successful_parts**."""
    check_payable(ld, inv)
    amount = inv.invoice_amount
    phash = inv.invoice_payment_hash
    assert amount is not None and phash is not None and inv.invoice_node_id is not None
    text = text or inv.to_string()
    done = previous_success(ld, phash)
    if done is not None:
        return dict(done, failed_parts=0, successful_parts=done["parts"])
    max_fee = fee_budget(amount, maxfee, maxfeepercent, exemptfee) if max_fee_override is None else max_fee_override
    paths = B.usable_paths(inv)
    excluded = set(exclude or [])
    log = ld.log.child(f"pay {phash.hex()[:16]}", inv.invoice_node_id.hex())
    deadline = time.monotonic() + retry_for
    started = int(time.time())
    groupid = next_groupid(ld, phash)
    ld.payments.active_groups.add((phash, groupid))
    try:
        return await _attempts(ld, inv, text, label, max_fee, deadline, maxdelay, riskfactor, excluded,
                               localinvreqid, description, paths, groupid, log, started)
    finally:
        ld.payments.active_groups.discard((phash, groupid))


async def _attempts(ld: "LightningD", inv: Bolt12, text: str, label: str | None, max_fee: int, deadline: float,
                    maxdelay: int | None, riskfactor: float, excluded: set[str], localinvreqid: bytes | None,
                    description: str | None, paths: list, groupid: int, log: Any, started: int) -> dict:
    amount, phash = inv.invoice_amount, inv.invoice_payment_hash
    assert amount is not None and phash is not None and inv.invoice_node_id is not None
    attempts, idx = 0, 0
    last: RpcError | None = None
    while time.monotonic() < deadline:
        if idx >= len(paths):
            if last is not None:
                raise RpcError(PAY_STOPPED_RETRYING, f"Ran out of routes to try after {attempts} attempts: "
                               f"{last.message}", last.data)
            raise RpcError(PAY_ROUTE_NOT_FOUND, "Could not find a route to any of the invoice's blinded paths")
        path, info = paths[idx]
        if not info.htlc_minimum_msat <= amount <= info.htlc_maximum_msat:
            idx += 1
            continue
        try:
            intro = ld.onion_messages.resolve_intro(path)
        except RpcError:
            idx += 1
            continue
        path = BlindedPath(intro, path.first_path_key, path.hops)
        intro_amount = amount + info.fee_base_msat + amount * info.fee_proportional_millionths // 1_000_000
        base = ld.blockheight + 1
        final_cltv = base + FINAL_CLTV_PADDING
        path_key = None
        if intro == ld.node_id:
            try:
                hop, path_key = await _hop_of_ours(ld, path, intro_amount, final_cltv + info.cltv_expiry_delta)
            except BlindingError as e:
                log.debug(f"path {idx}: {e}")
                idx += 1
                continue
            route: list[dict] | None = [hop]
            blinded = blinded_payloads(BlindedPath(path.hops[1].blinded_node_id, path_key, path.hops[1:]),
                                       amount, final_cltv, path_key_in_htlc=True)
        else:
            route = await route_to(ld, intro, intro_amount, info.cltv_expiry_delta + FINAL_CLTV_PADDING, excluded,
                                   riskfactor)
            if route is None:
                log.debug(f"path {idx}: no route to its introduction point {intro.hex()}")
                idx += 1
                continue
            blinded = blinded_payloads(path, amount, final_cltv)
        fee = route[0]["amount_msat"] - amount
        if fee > max_fee:
            raise RpcError(PAY_ROUTE_TOO_EXPENSIVE, f"Fee exceeds our fee budget: {fee}msat > {max_fee}msat")
        if maxdelay is not None and route[0]["delay"] > maxdelay:
            raise RpcError(PAY_ROUTE_TOO_EXPENSIVE,
                           f"CLTV delay exceeds our CLTV budget: {route[0]['delay']} > {maxdelay}")
        attempts += 1
        log.debug(f"attempt {attempts}: {amount}msat via blinded path {idx} (introduction point {intro.hex()}), "
                  f"fee {fee}msat")
        sent = False
        try:
            await ld.payments.sendpay_blinded(route, blinded, phash, amount, inv.invoice_node_id, text, label,
                                              description or inv.offer_description, attempts, groupid, path_key)
            sent = True
            res = await ld.payments.waitsendpay(phash, None, attempts, groupid)
        except RpcError as e:
            last = e
            data = e.data if isinstance(e.data, dict) else {}
            if e.code == PAY_DESTINATION_PERM_FAIL or (not sent and e.code in (PAY_IN_PROGRESS,
                                                                                PAY_RHASH_ALREADY_USED,
                                                                                INVALID_PARAMS)):
                raise
            index = data.get("erring_index")
            if e.data is None or (index == 0 and data.get("failcode") == 0x1007):
                # our own first hop could not take it (peer reconnecting...): try again shortly
                await asyncio.sleep(1)
                continue
            unblinded = len(route) - 1 if path_key is None else 0
            if path_key is not None or index is None or index > unblinded:
                # at or inside the blinded path: that path does not work, try the next
                log.debug(f"attempt {attempts}: blinded path {idx} failed ({data.get('failcodename')})")
                idx += 1
                continue
            ch = data.get("erring_channel")
            if ch:
                excluded.add(f"{ch}/{data.get('erring_direction', 0)}")
            continue
        if localinvreqid is not None:
            ld.offers.invreq_used(localinvreqid)
        return {"destination": inv.invoice_node_id.hex(), "payment_hash": phash.hex(), "created_at": started,
                "parts": 1, "amount_msat": amount, "amount_sent_msat": res["amount_sent_msat"],
                "payment_preimage": res["payment_preimage"], "status": "complete",
                "failed_parts": attempts - 1, "successful_parts": 1}
    raise RpcError(PAY_STOPPED_RETRYING, f"Ran out of time after {attempts} attempts"
                   + (f": {last.message}" if last else ""))


def register(ld: "LightningD") -> None:
    """``pay`` of an ``lni1...`` string comes here."""
    async def pay_text(text: str, **kw: object) -> dict:
        try:
            inv = B.decode(text, B.INVOICE)
        except B.Bolt12Error as e:
            raise RpcError(INVALID_PARAMS, f"Invalid bolt12: {e}") from None
        return await pay_invoice(ld, inv, text, **kw)  # type: ignore[arg-type]
    ld.payments.bolt12_pay = pay_text

