"""`xpay invstring [amount_msat] [maxfee] [layers] [retry_for] [partial_msat]
[maxdelay]` (Core Lightning's xpay plugin, v24.11 to v26, built in) and its
`xpay-handle-pay` (pay calls served by xpay, answering as pay).
BOLT 12 invoices are paid through their blinded paths (pay_bolt12.py), an
offer's invoice being fetched first (fetchinvoice.py).

The parts are lightningd/pay_parts.py's, with xpay's choices: no
presplit (routes are split only where the liquidity asks for it, as
askrene's flows), maxfee defaults to 1% (at least 5000msat), maxdelay to
2016 blocks, and the answer comes at the first part that succeeds
(`xpay-slow-mode` waits for them all).  Unlike Core Lightning's xpay, a
failure is only reported once no part is in flight (as pay does): a
caller told "failed" may pay again safely.

Layers: askrene is not here; xpay's own layer names are accepted (what
they stand for is built in: our channels' real balances, what this
payment learnt), any other is an error."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from common import bolt12 as B
from common.bolt11 import Bolt11Error
from common.bolt11 import decode as decode_bolt11

from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import (
    INVALID_PARAMS,
    PAY_DESTINATION_PERM_FAIL,
    PAY_INJECTPAYMENTONION_ALREADY_PAID,
    PAY_INVOICE_EXPIRED,
    PAY_RHASH_ALREADY_USED,
    PAY_UNSPECIFIED_ERROR,
    RpcError,
)
from .fetchinvoice import fetch_invoice
from .params import opt, req
from .pay_parts import MultiPartPayment, PaymentFailed, PayOptions, previous_success
from .pay_routes import can_split, payment_request

if TYPE_CHECKING:
    from .lightningd import LightningD

DEFAULT_RETRY_FOR = 60
DEFAULT_MAXDELAY = 2016
DEFAULT_MAXFEE_MIN = 5000
# xpay's own layers and askrene's automatic ones: what they hold is built in
KNOWN_LAYERS = frozenset({"xpay", "auto.localchans", "auto.sourcefree", "auto.no_mpp_support"})


def xpay_maxfee(amount: int) -> int:
    """xpay's default: 1% of the amount, at least 5000msat."""
    return max(DEFAULT_MAXFEE_MIN, amount // 100)


async def xpay_core(ld: "LightningD", invstring: str, amount_msat: int | None, maxfee: int | None,
                    layers: list[str] | None, retry_for: int, partial_msat: int | None, maxdelay: int,
                    label: str | None, as_pay: bool) -> dict:
    if "@" in invstring:
        raise RpcError(INVALID_PARAMS, "invstring: BIP353 names cannot be paid here (no fetchbip353)")
    if invstring.lower().startswith(("lno1", "lni1")):
        return await xpay_bolt12(ld, invstring, amount_msat, maxfee, retry_for, partial_msat, maxdelay, label, as_pay)
    for layer in layers or []:
        if layer not in KNOWN_LAYERS:
            raise RpcError(INVALID_PARAMS, f"Unknown layer {layer}")
    try:
        inv = decode_bolt11(invstring)
    except Bolt11Error as e:
        raise RpcError(INVALID_PARAMS, f"Invalid bolt11 invoice: {e}") from None
    if inv.network is not None and getattr(inv.network, "name", ld.network.name) != ld.network.name:
        raise RpcError(INVALID_PARAMS, f"Invalid bolt11 invoice: invoice is for another network {inv.network.name}")
    if not inv.payment_secret:
        raise RpcError(INVALID_PARAMS, "need payment_secret")
    if inv.amount_msat is None and amount_msat is None:
        raise RpcError(INVALID_PARAMS, "amount_msat required")
    if inv.amount_msat is not None and amount_msat is not None:
        raise RpcError(INVALID_PARAMS, "amount_msat unnecessary")
    total = inv.amount_msat if inv.amount_msat is not None else amount_msat
    assert total is not None
    if total == 0:
        raise RpcError(INVALID_PARAMS, "Cannot pay bolt11 invoice with zero amount")
    if partial_msat is not None:
        if partial_msat > total:
            raise RpcError(INVALID_PARAMS, f"partial_msat must be less or equal to total amount {total}msat")
        if partial_msat == 0:
            raise RpcError(INVALID_PARAMS, "partial_msat must be non-zero")
    now = int(time.time())
    if now > inv.timestamp + inv.expiry:
        raise RpcError(PAY_INVOICE_EXPIRED, f"Invoice expired {now - inv.timestamp - inv.expiry} seconds ago")
    amount = partial_msat if partial_msat is not None else total
    done = previous_success(ld, inv.payment_hash)
    if done is not None:
        if as_pay:
            return done
        raise RpcError(PAY_INJECTPAYMENTONION_ALREADY_PAID, "Already paid this invoice successfully")
    request = payment_request(inv, invstring, total, amount, label, None)
    opts = PayOptions(max_fee=maxfee if maxfee is not None else xpay_maxfee(amount), retry_for=retry_for,
                      maxdelay=maxdelay, mpp=can_split(request),
                      return_on_success=not ld.cfg.get("xpay-slow-mode"))
    try:
        out = await MultiPartPayment(ld, request, opts).run()
    except PaymentFailed as f:
        raise xpay_error(f, amount) from None
    return xpay_result(out, amount, as_pay)


async def xpay_bolt12(ld: "LightningD", invstring: str, amount_msat: int | None, maxfee: int | None,
                      retry_for: int, partial_msat: int | None, maxdelay: int, label: str | None,
                      as_pay: bool, payer_note: str | None = None, localinvreqid: bytes | None = None) -> dict:
    """A BOLT 12 invoice (through its blinded paths: pay_bolt12.py), or an
    offer, whose invoice is fetched first (fetchinvoice), as Core Lightning's xpay."""
    if partial_msat is not None:
        raise RpcError(INVALID_PARAMS, "partial_msat: not supported for bolt12")
    if invstring.lower().startswith("lno1"):
        invstring = (await fetch_invoice(ld, invstring, amount_msat, payer_note=payer_note))["invoice"]
    elif amount_msat is not None:
        raise RpcError(INVALID_PARAMS, "amount_msat unnecessary")
    try:
        inv = B.decode(invstring, B.INVOICE)
    except B.Bolt12Error as e:
        raise RpcError(INVALID_PARAMS, f"Invalid bolt12 invoice: {e}") from None
    assert inv.invoice_payment_hash is not None
    if not as_pay and previous_success(ld, inv.invoice_payment_hash) is not None:
        raise RpcError(PAY_INJECTPAYMENTONION_ALREADY_PAID, "Already paid this invoice successfully")
    amount = inv.invoice_amount or 0
    out = await ld.payments.bolt12_pay(invstring, max_fee_override=maxfee if maxfee is not None
                                       else xpay_maxfee(amount), retry_for=retry_for, maxdelay=maxdelay, label=label,
                                       localinvreqid=localinvreqid)
    return xpay_result(out, amount, as_pay)


def xpay_result(out: dict, amount: int, as_pay: bool) -> dict:
    """A finished payment as xpay answers it, or as pay does when xpay
    handles pay (xpay-handle-pay)."""
    if as_pay:
        return {k: out[k] for k in ("payment_preimage", "amount_msat", "amount_sent_msat", "parts", "destination",
                                    "payment_hash", "status", "created_at")}
    return {"payment_preimage": out["payment_preimage"], "amount_msat": amount,
            "amount_sent_msat": out["amount_sent_msat"], "failed_parts": out["failed_parts"],
            "successful_parts": out["successful_parts"]}


def xpay_error(f: PaymentFailed, amount: int) -> RpcError:
    """xpay's wording of why it stopped."""
    e = f.error
    if f.kind == "destination":
        d = e.data if isinstance(e.data, dict) else {}
        name = (d.get("failcodename") or "").removeprefix("WIRE_").lower() or e.message
        return RpcError(PAY_DESTINATION_PERM_FAIL, f"Destination said it doesn't know invoice: {name}", e.data)
    if f.kind == "fatal":
        if e.code == PAY_RHASH_ALREADY_USED:
            return RpcError(PAY_INJECTPAYMENTONION_ALREADY_PAID, "Already paid this invoice successfully")
        return e
    if f.kind == "timeout":
        return RpcError(PAY_UNSPECIFIED_ERROR, f"Timed out after {f.attempts} attempts. {f.summary}".rstrip())
    if not f.attempts:
        return RpcError(e.code, f"Failed: {e.message}", e.data)
    what = "Then routing failed" if f.remaining >= amount else \
        f"Then routing for remaining {f.remaining}msat failed"
    return RpcError(PAY_UNSPECIFIED_ERROR, f"Failed after {f.attempts} attempts. {f.summary}{what}: {e.message}")


async def xpay_as_pay(ld: "LightningD", bolt11: str, amount_msat: int | None, label: str | None,
                      maxfeepercent: float | None, retry_for: int, maxdelay: int | None, exemptfee: int | None,
                      maxfee: int | None, partial_msat: int | None) -> dict:
    """A pay call served by xpay (xpay-handle-pay): pay's fee parameters
    become xpay's maxfee as Core Lightning's calc_maxfee does them; pay's
    other parameters (riskfactor, exclude, description...) are not xpay's
    and are ignored, as there."""
    if maxfee is None and (maxfeepercent is not None or exemptfee is not None):
        amount = amount_msat
        if amount is None:
            try:
                amount = decode_bolt11(bolt11).amount_msat
            except Bolt11Error:
                amount = None
        if amount is not None:
            pct = maxfeepercent if maxfeepercent is not None else 0.5
            maxfee = max(int(amount * pct / 100), exemptfee if exemptfee is not None else DEFAULT_MAXFEE_MIN)
    return await xpay_core(ld, bolt11, amount_msat, maxfee, None, retry_for, partial_msat,
                           maxdelay if maxdelay is not None else DEFAULT_MAXDELAY, label, as_pay=True)


def register(ld: "LightningD") -> None:
    @ld.registry.command(
        "xpay", [req("invstring", P.string), opt("amount_msat", P.msat), opt("maxfee", P.msat),
                 opt("layers", P.array_of(P.string)), opt("retry_for", P.u32, DEFAULT_RETRY_FOR),
                 opt("partial_msat", P.msat), opt("maxdelay", P.u32, DEFAULT_MAXDELAY), opt("payer_note", P.string),
                 opt("label", P.string), opt("localinvreqid", P.sha256_hex)],
        category="payment", description="Send a payment to {invstring}, splitting it where needed")
    async def xpay(ctx: RequestContext, invstring: str, amount_msat: int | None, maxfee: int | None,
                   layers: list[str] | None, retry_for: int, partial_msat: int | None, maxdelay: int,
                   payer_note: str | None, label: str | None, localinvreqid: Any) -> dict:
        if invstring.lower().startswith(("lno1", "lni1")):
            for layer in layers or []:
                if layer not in KNOWN_LAYERS:
                    raise RpcError(INVALID_PARAMS, f"Unknown layer {layer}")
            return await xpay_bolt12(ld, invstring, amount_msat, maxfee, retry_for, partial_msat, maxdelay, label,
                                     as_pay=False, payer_note=payer_note, localinvreqid=localinvreqid)
        if localinvreqid is not None:
            raise RpcError(INVALID_PARAMS, "Cannot use localinvreqid with BOLT11 payment")
        return await xpay_core(ld, invstring, amount_msat, maxfee, layers, retry_for, partial_msat, maxdelay, label,
                               as_pay=False)
