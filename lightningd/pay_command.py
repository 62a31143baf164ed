"""`pay bolt11` (Core Lightning's pay plugin, built in: the parts and their
retries are lightningd/pay_parts.py) and `listpays`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, PAY_ROUTE_TOO_EXPENSIVE, PAY_STOPPED_RETRYING, RpcError
from .params import opt, req
from .pay_parts import MultiPartPayment, PaymentFailed, PayOptions, previous_success
from .pay_routes import PaymentRequest, can_split, decode_invoice, payment_request, policy_from_error
from .xpay import xpay_as_pay

if TYPE_CHECKING:
    from .lightningd import LightningD

__all__ = ["DEFAULT_RETRY_FOR", "PaymentRequest", "fee_budget", "policy_from_error", "send_payment", "register"]

DEFAULT_RETRY_FOR = 60
DEFAULT_MAXFEEPERCENT = 0.5
DEFAULT_EXEMPTFEE = 5000


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


async def send_payment(ld: "LightningD", req: PaymentRequest, opts: PayOptions) -> dict:
    """pay's (and keysend's) answer: the payment in parts, or pay's error
    once nothing is in flight (Core Lightning's pay plugin)."""
    try:
        out = await MultiPartPayment(ld, req, opts).run()
    except PaymentFailed as f:
        e = f.error
        if f.kind in ("destination", "fatal") or (f.kind == "route" and (not f.attempts
                                                                          or e.code == PAY_ROUTE_TOO_EXPENSIVE)):
            raise e from None
        if f.kind == "route":
            raise RpcError(PAY_STOPPED_RETRYING, f"Ran out of routes to try after {f.attempts} attempts: "
                           + (f.last_error.message if f.last_error else e.message),
                           f.last_error.data if f.last_error else e.data) from None
        raise RpcError(PAY_STOPPED_RETRYING, e.message, f.last_error.data if f.last_error else None) from None
    for k in ("failed_parts", "successful_parts"):
        out.pop(k)
    return out


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
        if bolt11[:4].lower() == "lni1" and pay.bolt12_pay is not None:
            # a BOLT 12 invoice: through its blinded paths (pay_bolt12.py)
            if amount_msat is not None:
                raise RpcError(INVALID_PARAMS, "amount_msat parameter unnecessary")
            if partial_msat is not None:
                raise RpcError(INVALID_PARAMS, "partial_msat: not supported for bolt12 invoices")
            try:
                invreq_id = bytes.fromhex(localinvreqid) if localinvreqid is not None else None
            except ValueError:
                raise RpcError(INVALID_PARAMS, "localinvreqid: should be a hex invreq_id") from None
            out = await pay.bolt12_pay(bolt11, maxfee=maxfee, maxfeepercent=maxfeepercent,
                                       exemptfee=exemptfee, label=label, retry_for=retry_for, maxdelay=maxdelay,
                                       riskfactor=riskfactor, exclude=exclude, localinvreqid=invreq_id,
                                       description=description)
            for k in ("failed_parts", "successful_parts"):
                out.pop(k, None)
            return out
        if ld.cfg.get("xpay-handle-pay") and xpay_takes_over(ctx, maxfee, maxfeepercent, exemptfee):
            # Core Lightning's xpay-handle-pay: xpay serves it, answering as pay
            return await xpay_as_pay(ld, bolt11, amount_msat, label, maxfeepercent, retry_for, maxdelay, exemptfee,
                                     maxfee, partial_msat)
        inv, total, amount = decode_invoice(ld, bolt11, amount_msat, partial_msat)
        max_fee = fee_budget(amount, maxfee, maxfeepercent, exemptfee)
        done = previous_success(ld, inv.payment_hash)
        if done is not None:
            return done          # "Once a payment has succeeded, calls to pay with the same bolt11 will succeed"
        request = payment_request(inv, bolt11, total, amount, label, description)
        mpp = can_split(request) and not ld.cfg.get("disable-mpp")
        return await send_payment(ld, request, PayOptions(
            max_fee=max_fee, retry_for=retry_for, maxdelay=maxdelay, riskfactor=riskfactor, exclude=set(exclude or []),
            mpp=mpp, presplit=mpp))

    @cmd("listpays", [opt("bolt11", P.string), opt("payment_hash", P.sha256_hex),
                      opt("status", P.one_of("pending", "complete", "failed")), opt("index", P.string),
                      opt("start", P.u64), opt("limit", P.u32)], category="payment",
         description="List result of payment {bolt11} or {payment_hash}, or all")
    async def listpays(ctx: RequestContext, bolt11: str | None, payment_hash: bytes | None, status: str | None,
                       index: str | None, start: int | None, limit: int | None) -> dict:
        # Core Lightning's (plugins/xpay/listpays.c): the parts listsendpays
        # gives (filtered by status) merged by payment_hash and groupid
        groups: dict[tuple[bytes, int], list[dict]] = {}
        for p in pay.rows():
            if bolt11 and bolt11 not in (p["bolt11"], p["bolt12"]):
                continue
            if payment_hash and p["payment_hash"] != payment_hash:
                continue
            if status and p["status"] != status:
                continue
            groups.setdefault((p["payment_hash"], p["groupid"]), []).append(p)
        out = [pays_entry(key, parts, key in pay.active_groups) for key, parts in groups.items()]
        if limit is not None:
            out = out[:limit]
        return {"pays": out}


def xpay_takes_over(ctx: RequestContext, maxfee: int | None, maxfeepercent: float | None,
                    exemptfee: int | None) -> bool:
    """Which pay calls xpay serves (Core Lightning's handle_rpc_command):
    not positional ones beyond bolt11 and amount, nor maxfee given with
    maxfeepercent or exemptfee (pay refuses those)."""
    if isinstance(ctx.raw_params, list) and len(ctx.raw_params) > 2:
        return False
    return maxfee is None or (maxfeepercent is None and exemptfee is None)


def pays_entry(key: tuple[bytes, int], parts: list[dict], ongoing: bool) -> dict:
    """One listpays entry: a payment (hash, group) and its parts."""
    first = parts[0]
    live = [p for p in parts if p["status"] in ("complete", "pending")]
    ok = [p for p in parts if p["status"] == "complete"]
    st = "complete" if ok else "pending" if live or ongoing else "failed"
    d: dict[str, Any] = {}
    if first["bolt11"]:
        d["bolt11"] = first["bolt11"]
    if first["bolt12"]:
        d["bolt12"] = first["bolt12"]
    for p in parts:
        if p["description"]:
            d["description"] = p["description"]
            break
    if first["destination"]:
        d["destination"] = first["destination"].hex()
    d.update(payment_hash=key[0].hex(), status=st, created_at=first["created_at"])
    if ok:
        d["completed_at"] = min(p["completed_at"] or 0 for p in ok)
    if first["label"]:
        d["label"] = first["label"]
    if ok:
        d["preimage"] = ok[-1]["preimage"].hex()
    if live:
        d["amount_msat"] = sum(p["amount_msat"] for p in live)
    d["amount_sent_msat"] = sum(p["amount_sent_msat"] for p in live)
    if len(live) > 1:
        d["number_of_parts"] = len(live)
    d["created_index"] = min(p["id"] for p in parts)
    return d
