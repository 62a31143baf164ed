"""``fetchinvoice`` and ``sendinvoice`` (Core Lightning's fetchinvoice plugin)
and the built-in handler of BOLT 12 onion messages (its offers plugin).

fetchinvoice: an invoice_request for an offer (signed with a transient payer
key: our node key tweaked by ``SHA256(node-alias-base || invreq_metadata)``)
goes out as an onion message with a reply path to us whose ``path_id`` is a
fresh secret; the reply arriving with that secret is the answer (an invoice,
checked as BOLT 12's reader must, or an invoice_error), else a timeout.

sendinvoice: the other direction, for an invoice_request we were given (a
refund): our invoice goes to the requester, and we wait until it is paid.
An invoice for one of *our* invoice requests arriving that way is paid at
once (``pay`` with ``localinvreqid``).
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import wire
from common import bolt12 as B
from common.bolt12 import Bolt12, Bolt12Error
from common.onion_message import OnionMsgTlv

from . import params as P
from .invoices import InvoiceError
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, RpcError
from .offers import OFFER_BAD_INVREQ_REPLY, OFFER_EXPIRED, OFFER_ROUTE_NOT_FOUND, OFFER_TIMEOUT
from .offers_invreq import answer_invreq, make_invoice, send_error
from .params import opt, req

if TYPE_CHECKING:
    from .lightningd import LightningD


#: seconds before an unanswered invoice_request (or invoice) is sent again; doubled each time
RESEND_FIRST = 2.0


class Bolt12Messages:
    """Replies we wait for (by the secret of the reply path we gave), and the
    dispatch of the BOLT 12 payloads no plugin took."""

    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.waiters: dict[bytes, asyncio.Future] = {}
        #: payment hashes of invoices for our invoice_requests being paid (a resent invoice is paid once)
        self.paying: set[bytes] = set()
        ld.onion_messages.handler = self.on_message

    def expect(self, secret: bytes) -> asyncio.Future:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiters[secret] = fut
        return fut

    async def on_message(self, payload: OnionMsgTlv, secret: bytes | None, path_key: bytes) -> None:
        kinds = [k for k in ("invoice_request", "invoice", "invoice_error") if getattr(payload, k) is not None]
        if len(kinds) != 1:
            return     # BOLT 4: more than one payload field, or none we know: ignore
        if secret is not None and secret in self.waiters:
            fut = self.waiters.pop(secret)
            if not fut.done():
                fut.set_result(payload)
            return
        if payload.invoice_request is not None:
            await answer_invreq(self.ld, payload.invoice_request, payload.reply_path, secret, path_key)
        elif payload.invoice is not None:
            await self.invoice_for_our_invreq(payload.invoice, payload.reply_path, secret)

    async def invoice_for_our_invreq(self, raw: bytes, reply: Any, secret: bytes | None) -> None:
        """An invoice for an invoice_request we published: check it, pay it."""
        ld, offers = self.ld, self.ld.offers
        log = ld.log.child("offers")
        try:
            inv = B.decode_stream(B.INVOICE, raw)
            B.check_invoice(inv)
        except Bolt12Error as e:
            log.debug(f"invoice refused: {e}")
            return
        row = offers.invreq(inv.invreq_id)
        if row is None:
            log.debug("invoice for an unknown invoice_request: ignored")
            return
        ours = B.decode(row["bolt12"], B.INVREQ)
        if (ours.invreq_paths is not None and secret != offers.invreq_path_secret(ours)) or \
                (ours.invreq_paths is None and secret is not None):
            log.debug("invoice did not come the way our invoice_request said: ignored")
            return
        problem = None
        if not row["active"]:
            problem = "invoice_request no longer active"
        elif not B.invoice_matches_request(inv, ours):
            problem = "invoice does not match the invoice_request"
        elif inv.invoice_amount != ours.invreq_amount:
            problem = "invoice_amount is not invreq_amount"
        elif time.time() > inv.invoice_expires_at():
            problem = "invoice expired"
        if problem is not None:
            log.debug(f"invoice for our invoice_request refused: {problem}")
            if reply is not None:
                await send_error(ld, reply, problem)
            return
        assert inv.invoice_payment_hash is not None
        if inv.invoice_payment_hash in self.paying:
            return
        self.paying.add(inv.invoice_payment_hash)
        asyncio.ensure_future(self._pay(inv, row["invreq_id"], log))

    async def _pay(self, inv: Bolt12, invreq_id: bytes, log: Any) -> None:
        try:
            await self.ld.payments.bolt12_pay(inv.to_string(), localinvreqid=invreq_id)
        except RpcError as e:
            log.unusual(f"paying the invoice for our invoice_request {invreq_id.hex()} failed: {e.message}")
        finally:
            assert inv.invoice_payment_hash is not None
            self.paying.discard(inv.invoice_payment_hash)


async def send_and_wait(ld: "LightningD", payload: OnionMsgTlv, bolt12: Bolt12, paths: list | None,
                        dest: bytes | None, timeout: float) -> tuple[OnionMsgTlv, Any]:
    """Send ``payload`` (with a reply path to us) through the first of
    ``paths`` we can reach, or to ``dest``; the reply and the path used."""
    msgs: Bolt12Messages = ld.bolt12_messages
    secret = os.urandom(32)
    errors = []
    for path in (paths or [None]):
        target = dest if path is None else ld.onion_messages.resolve_intro(path)
        try:
            nodes = await ld.onion_messages.route_nodes(target)  # type: ignore[arg-type]
        except RpcError as e:
            errors.append(e.message)
            continue
        back = list(reversed(nodes[1:])) if path is not None else list(reversed(nodes[1:-1]))
        payload.reply_path = ld.onion_messages.reply_path(back, secret)
        fut = msgs.expect(secret)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        resend = RESEND_FIRST
        try:
            while True:
                # onion messages are unreliable (a peer over its rate limit drops
                # them): no answer for a while, send again (BOLT 4: SHOULD retry)
                await ld.onion_messages.send(payload, path=path, dest=dest, route=nodes)
                left = deadline - loop.time()
                if left <= 0:
                    raise asyncio.TimeoutError
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(left, resend)), path
                except asyncio.TimeoutError:
                    if loop.time() >= deadline:
                        raise
                    resend *= 2
        except RpcError as e:
            errors.append(e.message)
            continue
        except asyncio.TimeoutError:
            raise RpcError(OFFER_TIMEOUT, "Timeout waiting for response") from None
        finally:
            msgs.waiters.pop(secret, None)
    raise RpcError(OFFER_ROUTE_NOT_FOUND, "Failed: could not route or connect: " + "; ".join(errors))


def invoice_error_data(raw: bytes) -> dict:
    try:
        v = wire.bolt12_schema().decode_tlv_stream("invoice_error", raw)
    except wire.DecodeError:
        return {"invoice_error_hex": raw.hex()}
    d: dict = {"invoice_error_hex": raw.hex()}
    if "erroneous_field" in v:
        d["erroneous_field"] = v["erroneous_field"]["tlv_fieldnum"]
    if "suggested_value" in v:
        d["suggested_value"] = v["suggested_value"]["value"].hex()
    d["error"] = v.get("error", {}).get("msg", "")
    return d


async def fetch_invoice(ld: "LightningD", offer: str, amount_msat: int | None = None, quantity: int | None = None,
                        timeout: float = 60, payer_note: str | None = None, payer_metadata: bytes | None = None,
                        bip353: str | None = None) -> dict:
    """fetchinvoice's work (also xpay's, for an offer): the invoice and its changes from the offer."""
    offers = ld.offers
    try:
        o = B.decode(offer, B.OFFER)
        B.check_offer(o)
    except Bolt12Error as e:
        raise RpcError(INVALID_PARAMS, f"offer: {e}") from None
    if ld.network.chain_hash not in B.chains_of_offer(o):
        raise RpcError(INVALID_PARAMS, "offer: not for our chain")
    if o.offer_absolute_expiry is not None and time.time() > o.offer_absolute_expiry:
        raise RpcError(OFFER_EXPIRED, "Offer expired")
    r = o.as_kind(B.INVREQ)
    if o.offer_currency is not None and amount_msat is None:
        raise RpcError(INVALID_PARAMS, "amount_msat parameter required (the offer is in a currency)")
    if o.offer_amount is None and amount_msat is None:
        raise RpcError(INVALID_PARAMS, "amount_msat parameter required")
    r.invreq_amount = amount_msat
    if o.offer_quantity_max is not None:
        if quantity is None:
            raise RpcError(INVALID_PARAMS, "quantity parameter required")
        if quantity == 0:
            raise RpcError(INVALID_PARAMS, "quantity parameter must be non-zero")
        if o.offer_quantity_max and quantity > o.offer_quantity_max:
            raise RpcError(INVALID_PARAMS, f"quantity must be <= {o.offer_quantity_max}")
        r.invreq_quantity = quantity
    elif quantity is not None:
        raise RpcError(INVALID_PARAMS, "quantity parameter unnecessary")
    expected = r.expected_amount()
    if expected is not None and amount_msat is not None and amount_msat < expected:
        raise RpcError(INVALID_PARAMS, f"amount_msat below the offer's {expected}msat")
    r.invreq_metadata = payer_metadata if payer_metadata is not None else os.urandom(16)
    r.invreq_payer_id = B.tweak_add_pubkey(ld.node_id, B.alias_tweak(offers.alias_base, r.invreq_metadata))
    r.invreq_payer_note = payer_note
    if bip353 is not None:
        name, _, domain = bip353.lstrip("₿").partition("@")
        r.invreq_bip_353_name = (name.encode(), domain.encode())
    offers.chain_fields(r, B.INVREQ)
    r.signature, pub = await ld.hsm.sign_bolt12(B.INVREQ, r.encode(), publictweak=r.invreq_metadata)
    assert pub == r.invreq_payer_id
    reply, path = await send_and_wait(ld, OnionMsgTlv(invoice_request=r.encode()), r, o.offer_paths,
                                      o.offer_issuer_id, timeout)
    if reply.invoice_error is not None:
        raise RpcError(OFFER_BAD_INVREQ_REPLY, "Remote node sent failure message",
                       invoice_error_data(reply.invoice_error))
    if reply.invoice is None:
        raise RpcError(OFFER_BAD_INVREQ_REPLY, "Neither invoice nor invoice_error in reply")
    try:
        inv = B.decode_stream(B.INVOICE, reply.invoice)
        B.check_invoice(inv)
    except Bolt12Error as e:
        raise RpcError(OFFER_BAD_INVREQ_REPLY, f"Invalid invoice: {e}",
                       {"invoice": B.data_to_string("lni", reply.invoice)}) from None
    bad = _check_answer(inv, r, o, path)
    if bad is not None:
        raise RpcError(OFFER_BAD_INVREQ_REPLY, f"Incorrect {bad}", {"invoice": inv.to_string()})
    changes: dict[str, Any] = {}
    if expected is None or inv.invoice_amount != expected:
        changes["amount_msat"] = inv.invoice_amount
    return {"invoice": inv.to_string(), "changes": changes}


def register(ld: "LightningD") -> None:
    cmd = ld.registry.command

    @cmd("fetchinvoice", [req("offer", P.string), opt("amount_msat", P.msat), opt("quantity", P.u64),
                          opt("recurrence_counter", P.u64), opt("recurrence_start", P.anything),
                          opt("recurrence_label", P.string), opt("timeout", P.nonneg_number, 60),
                          opt("payer_note", P.string), opt("payer_metadata", P.hex_bytes), opt("bip353", P.string),
                          opt("dev_reply_path", P.anything), opt("dev_path_use_scidd", P.anything)],
         category="payment", description="Request a BOLT 12 invoice for {offer}")
    async def fetchinvoice(ctx: RequestContext, offer: str, amount_msat: int | None, quantity: int | None,
                           recurrence_counter: int | None, recurrence_start: Any, recurrence_label: str | None,
                           timeout: float, payer_note: str | None, payer_metadata: bytes | None,
                           bip353: str | None, dev_reply_path: Any, dev_path_use_scidd: Any) -> dict:
        if any(x is not None for x in (recurrence_counter, recurrence_start, recurrence_label)):
            raise RpcError(INVALID_PARAMS, "recurrence is not supported")
        return await fetch_invoice(ld, offer, amount_msat, quantity, timeout, payer_note, payer_metadata, bip353)

    @cmd("sendinvoice", [req("invreq", P.string), req("label", P.label), opt("amount_msat", P.msat),
                         opt("timeout", P.u32, 90), opt("quantity", P.u64)], category="payment",
         description="Send an invoice for {invreq} (an invoice_request for money to us) and wait until it is paid")
    async def sendinvoice(ctx: RequestContext, invreq: str, label: str, amount_msat: int | None, timeout: int,
                          quantity: int | None) -> dict:
        offers = ld.offers
        try:
            r = B.decode(invreq, B.INVREQ)
            B.check_invreq(r)
        except Bolt12Error as e:
            raise RpcError(INVALID_PARAMS, f"invreq: {e}") from None
        if B.is_offer_response(r):
            raise RpcError(INVALID_PARAMS, "invreq: this is a request for one of an offer's invoices, not for money")
        if B.chain_of_invreq(r) != ld.network.chain_hash:
            raise RpcError(INVALID_PARAMS, "invreq: not for our chain")
        if quantity is not None:
            raise RpcError(INVALID_PARAMS, "quantity parameter unnecessary")
        if r.offer_absolute_expiry is not None and time.time() > r.offer_absolute_expiry:
            raise RpcError(OFFER_EXPIRED, "invoice_request expired")
        amount = r.invreq_amount
        assert amount is not None
        if amount_msat is not None and amount_msat != amount:
            raise RpcError(INVALID_PARAMS, f"amount_msat must be the invoice_request's {amount}msat")
        if ld.invoices.by_label(label) is not None:
            raise RpcError(900, f"Duplicate label '{label}'")
        public = await offers.public()
        node_id = ld.node_id if public else B.tweak_add_pubkey(
            ld.node_id, B.alias_tweak(offers.alias_base, r.invreq_id))
        inv = await make_invoice(ld, r, amount, label, node_id=node_id, expiry=timeout,
                                 tweak=None if public else r.invreq_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting = asyncio.ensure_future(ld.invoices.wait_one(label))
        sent = asyncio.ensure_future(send_and_wait(ld, OnionMsgTlv(invoice=inv.encode()), inv, r.invreq_paths,
                                                   None if r.invreq_paths else r.invreq_payer_id, timeout))
        try:
            done, _ = await asyncio.wait([waiting, sent], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done:
                return waiting.result()
            if sent in done:
                try:
                    reply, _ = sent.result()
                except RpcError as e:
                    if e.code != OFFER_TIMEOUT:
                        raise
                    reply = None     # no answer: none was needed, the payment is what we wait for
                if reply is not None and reply.invoice_error is not None:
                    raise RpcError(OFFER_BAD_INVREQ_REPLY, "Remote node sent failure message",
                                   invoice_error_data(reply.invoice_error))
                return await asyncio.wait_for(waiting, max(0.1, deadline - loop.time()))
            raise RpcError(OFFER_TIMEOUT, "Timeout waiting for payment")
        except asyncio.TimeoutError:
            raise RpcError(OFFER_TIMEOUT, "Timeout waiting for payment") from None
        except InvoiceError as e:
            raise RpcError(e.code, e.message, e.data) from None
        finally:
            waiting.cancel()
            sent.cancel()


def _check_answer(inv: Bolt12, r: Bolt12, o: Bolt12, path: Any) -> str | None:
    """What is wrong with the invoice answering our request ``r`` for offer ``o``, if anything."""
    if not B.invoice_matches_request(inv, r):
        return "invoice: fields do not match the invoice_request"
    if o.offer_issuer_id is not None:
        if inv.invoice_node_id != o.offer_issuer_id:
            return "invoice_node_id: not the offer's issuer id"
    elif path is None or inv.invoice_node_id != path.final_blinded_node_id:
        return "invoice_node_id: not the path's final blinded node id"
    if r.invreq_amount is not None and inv.invoice_amount != r.invreq_amount:
        return "invoice_amount: not our invreq_amount"
    expected = r.expected_amount()
    if r.invreq_amount is None and expected is not None and (inv.invoice_amount or 0) < expected:
        return "invoice_amount: below the offer's amount"
    if time.time() > inv.invoice_expires_at():
        return "invoice: expired"
    return None
