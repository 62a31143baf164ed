"""RPC commands of invoices: invoice, listinvoices, waitinvoice,
waitanyinvoice, delinvoice, delexpiredinvoice, autoclean-once,
autoclean-status, decodepay, decode, and dev-resolve-invoice (developer: the
final-hop sequence of the HTLC engine without an HTLC, for tests).

Route hints and their warnings come from `lightningd/routehints.py`
(Core Lightning's choice of incoming channels, `exposeprivatechannels`)."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Sequence

from coincurve.ecdsa import cdata_to_der, deserialize_compact

from bitcoin.address import AddressError, address_to_script
from bitcoin.bech32 import CHARSET
from bitcoin.hashes import sha256
from bitcoin.networks import NETWORKS
from common.bolt11 import (
    Bolt11Error,
    Fallback,
    Invoice,
    InvoiceFields,
    encode,
)
from common.bolt11 import decode as decode_bolt11
from common.bolt12 import Bolt12Error
from common.bolt12 import decode as decode_bolt12
from common.bolt12_json import bolt12_json
from common.features import Context

from . import params as P
from .invoices import AUTOCLEAN_SUBSYSTEMS, InvoiceError
from .jsonrpc import RequestContext
from .jsonrpc_errors import (
    INVALID_PARAMS,
    LIGHTNINGD,
    ParamError,
    RpcError,
)
from .params import opt, req
from .routehints import RouteHints

if TYPE_CHECKING:
    from .lightningd import LightningD

DEFAULT_EXPIRY = 604800           # one week
MAX_LABEL_LEN = 128
BOLT11_FIELD_BYTE_LIMIT = 639     # 1023 words of 5 bits


# -- parameter checkers ---------------------------------------------------------------

def positive_msat_or_any(v: Any) -> int | None:
    if v == "any":
        return None
    try:
        m = P.msat(v)
    except P.BadType:
        m = 0
    if m <= 0:
        raise P.BadType("should be positive msat or 'any'")
    return m


def preimage32(v: Any) -> bytes:
    try:
        b = P.hex_bytes(v)
    except P.BadType:
        b = b""
    if len(b) != 32:
        raise P.BadType("should be 64 hex digits")
    return b


def chanhints(v: Any) -> bool | list:
    """exposeprivatechannels: true/false, a short channel id or a list of them."""
    if isinstance(v, bool) or v in ("true", "false"):
        return P.boolean(v)
    if isinstance(v, list):
        return [P.short_channel_id(x) for x in v]
    return [P.short_channel_id(v)]


def bolt11_string(v: Any) -> Invoice | dict:
    """decode's `string`: a BOLT 11 invoice, or a BOLT 12 offer, invoice_request
    or invoice (as its JSON: common.bolt12_json); runes and emergency recovery
    strings are not supported here."""
    text = P.string(v)
    if text.strip()[:4].lower() in ("lno1", "lnr1", "lni1"):
        try:
            return bolt12_json(decode_bolt12(text))
        except Bolt12Error as e:
            raise P.BadType(f"Invalid bolt12: {e}") from None
    try:
        return decode_bolt11(text)
    except Bolt11Error as e:
        raise P.BadType(f"Invalid bolt11: {e}") from None


# -- helpers --------------------------------------------------------------------------

def invoice_error(e: InvoiceError) -> RpcError:
    return RpcError(e.code, e.message, e.data)


def parse_fallback(ld: "LightningD", addr: Any) -> Fallback:
    if not isinstance(addr, str):
        raise RpcError(LIGHTNINGD, "Fallback address not valid")
    try:
        return Fallback.from_address(addr, ld.network)
    except Bolt11Error:
        pass
    for net in NETWORKS.values():
        try:
            address_to_script(addr, net)
        except AddressError:
            continue
        raise RpcError(LIGHTNINGD, f"Fallback address does not match our network {ld.network.name}")
    raise RpcError(LIGHTNINGD, "Fallback address not valid")


async def sign_bolt11(ld: "LightningD", fields: InvoiceFields) -> str:
    """Encode and have hsmd sign: encode() wants a synchronous signer, so
    the words to sign are captured by a first pass and the signature hsmd
    gives for them is replayed by a second pass over the same fields."""
    seen: list[tuple[str, list[int]]] = []

    def capture(hrp: str, words: Sequence[int]) -> bytes:
        seen.append((hrp, list(words)))
        return bytes(65)
    encode(fields, capture)
    hrp, words = seen[0]
    sig = await ld.hsm.sign_invoice(hrp, words)

    def replay(h: str, w: Sequence[int]) -> bytes:
        if (h, list(w)) != (hrp, words):
            raise Bolt11Error("invoice fields changed between the two encodings")
        return sig
    out = encode(fields, replay)
    if decode_bolt11(out).payee != ld.node_id:
        raise RpcError(LIGHTNINGD, "hsmd's invoice signature is not by our node key")
    return out


def bolt11_json(inv: Invoice) -> dict:
    """Core Lightning's json_add_bolt11 (decodepay, decode)."""
    out: dict[str, Any] = {"currency": inv.currency, "created_at": inv.timestamp, "expiry": inv.expiry,
                           "payee": inv.payee.hex()}
    if inv.amount_msat is not None:
        out["amount_msat"] = inv.amount_msat
    if inv.description is not None:
        out["description"] = inv.description
    if inv.description_hash is not None:
        out["description_hash"] = inv.description_hash.hex()
    out["min_final_cltv_expiry"] = inv.min_final_cltv_expiry
    out["payment_secret"] = inv.payment_secret.hex()
    if inv.metadata is not None:
        out["payment_metadata"] = inv.metadata.hex()
    if inv.fallbacks:
        out["fallbacks"] = [_fallback_json(f, inv) for f in inv.fallbacks]
    if inv.route_hints:
        out["routes"] = [[{"pubkey": h.pubkey.hex(), "short_channel_id": str(h.short_channel_id),
                           "fee_base_msat": h.fee_base_msat,
                           "fee_proportional_millionths": h.fee_proportional_millionths,
                           "cltv_expiry_delta": h.cltv_expiry_delta} for h in route] for route in inv.route_hints]
    if inv.unknown_fields:
        out["extra"] = [{"tag": f.tag, "data": "".join(CHARSET[w] for w in f.data)} for f in inv.unknown_fields]
    out["payment_hash"] = inv.payment_hash.hex()
    out["signature"] = cdata_to_der(deserialize_compact(inv.signature[:64])).hex()
    if inv.features:
        out["features"] = inv.features.hex()
    return out


def _fallback_json(f: Fallback, inv: Invoice) -> dict:
    kind = {17: "P2PKH", 18: "P2SH"}.get(f.version)
    if f.version == 0:
        kind = "P2WPKH" if len(f.program) == 20 else "P2WSH"
    elif f.version == 1 and len(f.program) == 32:
        kind = "P2TR"
    out: dict[str, Any] = {}
    if kind is not None:
        out["type"] = kind
        addr = f.address(inv.network)
        if addr is not None:
            out["addr"] = addr
    out["hex"] = f.script().hex()
    return out


# -- commands -------------------------------------------------------------------------

KEYSEND_MIN_FINAL_CLTV = 9     # BOLT 11's default: a keysend payer picks its own final CLTV


async def keysend_invoice(ld: "LightningD", amount_msat: int, preimage: bytes) -> bytes:
    """A keysend arrived (its preimage in the onion): an invoice for it, as
    Core Lightning's keysend plugin makes ("keysend-SECS.NSECS" label), so
    that it is paid, listed and notified like any other; its payment secret
    (the keysend payer sends none) is returned for the final-hop checks."""
    now_ns = time.time_ns()
    label = f"keysend-{now_ns // 10**9}.{now_ns % 10**9:09d}"
    payment_hash = sha256(preimage)
    payment_secret = os.urandom(32)
    now = now_ns // 10**9
    fields = InvoiceFields(
        network=ld.network, timestamp=now, payment_hash=payment_hash, payment_secret=payment_secret,
        amount_msat=amount_msat, description="keysend", description_hash=None, expiry=DEFAULT_EXPIRY,
        min_final_cltv_expiry=KEYSEND_MIN_FINAL_CLTV, fallbacks=[], route_hints=[],
        features=ld.our_features(Context.INVOICE))
    bolt11 = await sign_bolt11(ld, fields)
    ld.invoices.create(label, preimage, payment_hash, payment_secret, amount_msat, "keysend", bolt11, now,
                       now + DEFAULT_EXPIRY, KEYSEND_MIN_FINAL_CLTV)
    ld.plugins.notify("invoice_creation", {"msat": amount_msat, "preimage": preimage.hex(), "label": label})
    return payment_secret


def register(ld: "LightningD") -> None:
    cmd = ld.registry.command
    made: list[RouteHints] = []

    def hints() -> RouteHints:
        """Made at the first invoice (registration needs only the registry),
        kept for its round-robin state."""
        if not made:
            made.append(RouteHints(ld.channels, ld.gossipd, ld.is_connected))
        return made[0]

    @cmd("invoice", [req("amount_msat", positive_msat_or_any), req("label", P.label), req("description", P.string),
                     opt("expiry", P.u64, DEFAULT_EXPIRY), opt("fallbacks", P.array), opt("preimage", preimage32),
                     opt("exposeprivatechannels", chanhints), opt("cltv", P.u32), opt("deschashonly", P.boolean, False)],
         category="payment", description="Create an invoice for {amount_msat} with {label} and {description} with "
                                         "optional {expiry} seconds (default 1 week), optional {fallbacks} address "
                                         "list (default empty list) and optional {preimage} (default autogenerated)")
    async def invoice(ctx: RequestContext, amount_msat: int | None, label: str, description: str, expiry: int,
                      fallbacks: list | None, preimage: bytes | None, exposeprivatechannels: Any, cltv: int | None,
                      deschashonly: bool) -> dict:
        if len(label.encode()) > MAX_LABEL_LEN:
            raise RpcError(INVALID_PARAMS, f"Label '{label}' over {MAX_LABEL_LEN} bytes")
        desc_len = len(description.encode())
        if desc_len > BOLT11_FIELD_BYTE_LIMIT and not deschashonly:
            raise RpcError(INVALID_PARAMS, f"Descriptions greater than {BOLT11_FIELD_BYTE_LIMIT} bytes not yet "
                                           f"supported (description length {desc_len})")
        now = int(time.time())
        if now + expiry >= 2 ** 63:
            raise ParamError(f"expiry: {expiry} is too large")
        fbs = [parse_fallback(ld, a) for a in fallbacks or []]
        preimage = preimage if preimage is not None else os.urandom(32)
        payment_hash = sha256(preimage)
        try:
            ld.invoices.check_new(label, payment_hash)
        except InvoiceError as e:
            raise invoice_error(e) from None
        routes, warnings = await hints().for_invoice(amount_msat, exposeprivatechannels)
        min_final = cltv if cltv is not None else int(ld.cfg.get("cltv-final", 18))
        payment_secret = os.urandom(32)
        fields = InvoiceFields(
            network=ld.network, timestamp=now, payment_hash=payment_hash, payment_secret=payment_secret,
            amount_msat=amount_msat, description=None if deschashonly else description,
            description_hash=sha256(description.encode()) if deschashonly else None, expiry=expiry,
            min_final_cltv_expiry=min_final, fallbacks=fbs, route_hints=routes,
            features=ld.our_features(Context.INVOICE))
        try:
            bolt11 = await sign_bolt11(ld, fields)
        except Bolt11Error as e:
            raise RpcError(LIGHTNINGD, f"Cannot encode invoice: {e}") from None
        try:
            inv = ld.invoices.create(label, preimage, payment_hash, payment_secret, amount_msat, description,
                                     bolt11, now, now + expiry, min_final)
        except InvoiceError as e:
            raise invoice_error(e) from None
        note: dict[str, Any] = {"msat": amount_msat} if amount_msat is not None else {}
        ld.plugins.notify("invoice_creation", {**note, "preimage": preimage.hex(), "label": label})
        return {"payment_hash": inv["payment_hash"], "expires_at": inv["expires_at"], "bolt11": bolt11,
                "payment_secret": payment_secret.hex(), "created_index": inv["created_index"], **warnings}

    @cmd("listinvoices", [opt("label", P.label), opt("invstring", P.string), opt("payment_hash", P.sha256_hex),
                          opt("offer_id", P.sha256_hex), opt("index", P.one_of("created", "updated")),
                          opt("start", P.u64_bound, 0), opt("limit", P.u32)],
         category="payment", description="Show invoice matching {label}, {invstring}, {payment_hash} or {offer_id} "
                                         "(or all, if no query parameter specified)")
    async def listinvoices(ctx: RequestContext, label: str | None, invstring: str | None,
                           payment_hash: bytes | None, offer_id: bytes | None, index: str | None, start: int,
                           limit: int | None) -> dict:
        if sum(x is not None for x in (label, invstring, payment_hash, offer_id)) > 1:
            raise RpcError(INVALID_PARAMS, "Can only specify one of {label}, {invstring}, {payment_hash} or "
                                           "{offer_id}")
        if start != 0 and index is None:
            raise RpcError(INVALID_PARAMS, "Can only specify {start} with {index}")
        if limit is not None and index is None:
            raise RpcError(INVALID_PARAMS, "Can only specify {limit} with {index}")
        if invstring is not None:
            try:
                payment_hash = decode_bolt12(invstring, "invoice").invoice_payment_hash \
                    if invstring[:4].lower() == "lni1" else decode_bolt11(invstring).payment_hash
            except (Bolt11Error, Bolt12Error):
                raise RpcError(INVALID_PARAMS, "Invalid invstring") from None
        invs = ld.invoices
        if label is not None or payment_hash is not None:
            row = invs.by_label(label) if label is not None else invs.by_hash(payment_hash)  # type: ignore[arg-type]
            return {"invoices": [invs.to_json(row)] if row is not None else []}
        if offer_id is not None:
            return {"invoices": [i for i in invs.listing() if i.get("local_offer_id") == offer_id.hex()]}
        return {"invoices": invs.listing(index, start, limit)}

    @cmd("waitinvoice", [req("label", P.label)], category="payment",
         description="Wait for an incoming payment matching the invoice with {label}, or if the invoice expires")
    async def waitinvoice(ctx: RequestContext, label: str) -> dict:
        try:
            return await ld.invoices.wait_one(label)
        except InvoiceError as e:
            raise invoice_error(e) from None

    @cmd("waitanyinvoice", [opt("lastpay_index", P.u64_bound, 0), opt("timeout", P.u64)], category="payment",
         description="Wait for the next invoice to be paid, after {lastpay_index} (if supplied).  If {timeout} "
                     "seconds is reached while waiting, fail with an error.")
    async def waitanyinvoice(ctx: RequestContext, lastpay_index: int, timeout: int | None) -> dict:
        try:
            return await ld.invoices.wait_any(lastpay_index, timeout)
        except InvoiceError as e:
            raise invoice_error(e) from None

    @cmd("delinvoice", [req("label", P.label), req("status", P.string), opt("desconly", P.boolean, False)],
         category="payment", description="Delete unpaid invoice {label} with {status}")
    async def delinvoice(ctx: RequestContext, label: str, status: str, desconly: bool) -> dict:
        try:
            return ld.invoices.delete(label, status, desconly)
        except InvoiceError as e:
            raise invoice_error(e) from None

    @cmd("delexpiredinvoice", [opt("maxexpirytime", P.u64_bound)], category="payment",
         description="Delete all expired invoices that expired as of given {maxexpirytime} (a UNIX epoch time), "
                     "or all expired invoices if not specified")
    async def delexpiredinvoice(ctx: RequestContext, maxexpirytime: int | None) -> dict:
        now = int(time.time())
        ld.invoices.delete_expired(now if maxexpirytime is None else maxexpirytime, now)
        return {}

    @cmd("autoclean-once", [req("subsystem", P.one_of(*AUTOCLEAN_SUBSYSTEMS)), req("age", P.u64)],
         category="utility", description="Perform a single run of autocleaning on one subsystem")
    async def autoclean_once(ctx: RequestContext, subsystem: str, age: int) -> dict:
        if age == 0:
            raise ParamError("age: Must be non-zero: invalid token 0")
        return {"autoclean": {subsystem: ld.invoices.autoclean_once(subsystem, age)}}

    @cmd("autocleaninvoice", [opt("cycle_seconds", P.u64, 3600), opt("expired_by", P.u64, 86400)],
         category="payment", deprecated=True,
         description="Set up autoclean of expired invoices: every {cycle_seconds} (0: never), delete those "
                     "expired for {expired_by} seconds (deprecated: the autoclean-* options and "
                     "autoclean-once do it)")
    async def autocleaninvoice(ctx: RequestContext, cycle_seconds: int, expired_by: int) -> dict:
        ld.invoices.set_autoclean_expired(cycle_seconds, expired_by)
        if cycle_seconds == 0:
            return {"enabled": False}
        return {"enabled": True, "cycle_seconds": cycle_seconds, "expired_by": expired_by}

    @cmd("autoclean-status", [opt("subsystem", P.one_of(*AUTOCLEAN_SUBSYSTEMS))], category="utility",
         description="Show status of autocleaning")
    async def autoclean_status(ctx: RequestContext, subsystem: str | None) -> dict:
        subs = [subsystem] if subsystem is not None else list(AUTOCLEAN_SUBSYSTEMS)
        return {"autoclean": {s: ld.invoices.autoclean_status(s) for s in subs}}

    @cmd("decodepay", [req("bolt11", P.string), opt("description", P.string)], category="payment",
         description="Decode {bolt11}, using {description} if necessary")
    async def decodepay(ctx: RequestContext, bolt11: str, description: str | None) -> dict:
        try:
            return bolt11_json(decode_bolt11(bolt11, description))
        except Bolt11Error as e:
            raise RpcError(LIGHTNINGD, f"Invalid bolt11: {e}") from None

    @cmd("decode", [req("string", bolt11_string)], category="utility",
         description="Decode {string} message, returning all the fields")
    async def decode(ctx: RequestContext, string: Invoice | dict) -> dict:
        if isinstance(string, dict):
            return string
        return {"type": "bolt11 invoice", "valid": True, **bolt11_json(string)}

    @cmd("dev-resolve-invoice", [req("payment_hash", P.sha256_hex), req("amount_msat", P.msat),
                                 opt("payment_secret", P.sha256_hex), opt("cltv_expiry", P.u32)],
         category="developer", dev_only=True,
         description="Pay invoice {payment_hash} with {amount_msat} as an incoming HTLC would, without one")
    async def dev_resolve_invoice(ctx: RequestContext, payment_hash: bytes, amount_msat: int,
                                  payment_secret: bytes | None, cltv_expiry: int | None) -> dict:
        invs = ld.invoices
        row = invs.by_hash(payment_hash)
        if payment_secret is None and row is not None:
            payment_secret = row["payment_secret"]
        height = ld.blockheight
        if cltv_expiry is None:
            cltv_expiry = height + (row["min_final_cltv_expiry"] if row is not None else 0)
        _, code = invs.check_payment(payment_hash, amount_msat, amount_msat, payment_secret, cltv_expiry, height)
        if code is None:
            code = await invs.run_invoice_payment_hook(payment_hash, amount_msat)
        if code is not None:
            raise RpcError(LIGHTNINGD, f"Payment refused with failure code {code:#06x}", {"failure_code": code})
        assert ld.db is not None
        with ld.db.transaction():
            inv = invs.mark_paid(payment_hash, amount_msat)
        invs.notify_paid(payment_hash)
        return inv
