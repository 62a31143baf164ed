"""Answering an invoice_request for one of our offers with an invoice
(Core Lightning's offers_invreq_hook.c), and making a BOLT 12 invoice
(shared with ``sendinvoice``).

An invoice_request is checked as BOLT 12's reader must (signature, the offer
fields exactly those of an active, unexpired offer of ours, quantity,
amount, chain, and the path it came by: an offer with paths only answers
through them, one without never through a blinded path).  What breaks a
rule is answered with an ``invoice_error`` along the reply path; what we
must ignore is dropped.  The invoice copies every field of the request, is
signed by hsmd (our node key, or our blinded key of the offer's path when
the offer has no issuer id) and stored before it is sent.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import wire
from bitcoin.hashes import sha256
from common import bolt12 as B
from common.blindedpath import BlindedPath, blinded_node_id
from common.bolt12 import Bolt12, Bolt12Error
from common.features import features_from_bits
from common.onion_message import OnionMsgTlv

from .jsonrpc_errors import RpcError

if TYPE_CHECKING:
    from .lightningd import LightningD

#: invoice_relative_expiry of the invoices we issue for offers (BOLT 12's default)
INVOICE_EXPIRY = B.DEFAULT_INVOICE_EXPIRY
#: invoice_features: we take multi-part payments (MPP/optional)
INVOICE_FEATURES = features_from_bits({B.INVOICE_FEATURE_MPP + 1})


class InvreqRefused(Exception):
    """Answer with an invoice_error carrying this text (and the field at fault)."""

    def __init__(self, text: str, field: int | None = None) -> None:
        super().__init__(text)
        self.field = field


class Ignored(Exception):
    """Drop it without an answer (BOLT 12: MUST ignore)."""


async def make_invoice(ld: "LightningD", req: Bolt12, amount_msat: int, label: str, *,
                       local_offer_id: bytes | None = None, path_key: bytes | None = None,
                       node_id: bytes | None = None, expiry: int = INVOICE_EXPIRY,
                       tweak: bytes | None = None) -> Bolt12:
    """The invoice for ``req`` (every field copied), with a payment path to us,
    signed and stored as an unpaid invoice (its ``payment_secret`` is the
    path_id).  ``node_id``: the invoice_node_id (our id, the offer's issuer
    id, or with ``tweak`` our transient key for it); None with ``path_key``:
    our blinded id on the path the request came by."""
    offers = ld.offers
    preimage = os.urandom(32)
    payment_hash = sha256(preimage)
    inv = req.as_kind(B.INVOICE)
    now = int(time.time())
    inv.invoice_created_at = now
    if expiry != B.DEFAULT_INVOICE_EXPIRY:
        inv.invoice_relative_expiry = expiry
    inv.invoice_payment_hash = payment_hash
    inv.invoice_amount = amount_msat
    inv.invoice_features = INVOICE_FEATURES
    private = not await offers.public()
    path, payinfo = await offers.payment_path(payment_hash, amount_msat, expiry, private)
    inv.invoice_paths = [path]
    inv.invoice_blindedpay = [payinfo]
    if node_id is None:
        assert path_key is not None
        node_id = blinded_node_id(ld.node_id, await ld.hsm.ecdh(path_key))
    inv.invoice_node_id = node_id
    if tweak is not None:
        sig, pub = await ld.hsm.sign_bolt12(B.INVOICE, inv.encode(), publictweak=tweak)
    elif node_id != ld.node_id:
        assert path_key is not None
        sig, pub = await ld.hsm.sign_bolt12(B.INVOICE, inv.encode(), path_key=path_key)
    else:
        sig, pub = await ld.hsm.sign_bolt12(B.INVOICE, inv.encode())
    if pub != node_id:
        raise RpcError(-1, "hsmd signed with another key than the invoice_node_id")
    inv.signature = sig
    text = inv.to_string()
    ld.invoices.create(label, preimage, payment_hash, B.path_secret(offers.invoice_base, payment_hash),
                       amount_msat, req.offer_description or "", "", now, inv.invoice_expires_at(),
                       int(ld.cfg.get("cltv-final", 18)), bolt12=text, local_offer_id=local_offer_id,
                       invreq_payer_note=req.invreq_payer_note)
    ld.plugins.notify("invoice_creation", {"msat": amount_msat, "preimage": preimage.hex(), "label": label})
    return inv


def check_invreq_for_offer(ld: "LightningD", req: Bolt12, secret: bytes | None) -> tuple[dict, Bolt12, int]:
    """(our offer's row, the offer, the amount to invoice), or InvreqRefused / Ignored."""
    offers = ld.offers
    row = offers.offer(req.offer_id)
    if row is None:
        raise InvreqRefused("Unknown offer")
    offer = B.decode(row["bolt12"], B.OFFER)
    # BOLT 12: an offer with paths answers only through them; one without never through a blinded path
    if offer.offer_paths is not None:
        if secret != offers.offer_path_secret(offer):
            raise Ignored("invoice_request did not come through the offer's paths")
    elif secret is not None:
        raise Ignored("invoice_request for an offer without paths came through a blinded path")
    if row["single_use"] and row["used"]:
        raise InvreqRefused("Offer already used")
    if not row["active"]:
        raise InvreqRefused("Offer no longer available")
    if offer.offer_absolute_expiry is not None and time.time() > offer.offer_absolute_expiry:
        raise InvreqRefused("Offer expired")
    if B.chain_of_invreq(req) != ld.network.chain_hash:
        raise InvreqRefused("Wrong chain", 80)
    if offer.offer_quantity_max is not None:
        if req.invreq_quantity is None or req.invreq_quantity == 0:
            raise InvreqRefused("quantity is required", 86)
        if offer.offer_quantity_max and req.invreq_quantity > offer.offer_quantity_max:
            raise InvreqRefused(f"quantity above {offer.offer_quantity_max}", 86)
    elif req.invreq_quantity is not None:
        raise InvreqRefused("quantity is not allowed", 86)
    expected = req.expected_amount()
    if expected is None:
        if req.invreq_amount is None:
            raise InvreqRefused("invreq_amount is required", 82)
        amount = req.invreq_amount
    else:
        if req.invreq_amount is not None and req.invreq_amount < expected:
            raise InvreqRefused(f"invreq_amount below {expected}msat", 82)
        amount = req.invreq_amount if req.invreq_amount is not None else expected
    return row, offer, amount


async def answer_invreq(ld: "LightningD", raw: bytes, reply: BlindedPath | None, secret: bytes | None,
                        path_key: bytes) -> None:
    """An invoice_request reached us: answer with an invoice, or an invoice_error."""
    log = ld.log.child("offers")
    try:
        req = B.decode_stream(B.INVREQ, raw)
        B.check_invreq(req)
    except Bolt12Error as e:
        log.debug(f"invoice_request refused: {e}")
        if reply is not None and req_parsed(raw):
            await send_error(ld, reply, f"Invalid invoice_request: {e}")
        return
    if reply is None:
        log.debug("invoice_request without a reply path: ignored")
        return
    if not B.is_offer_response(req):
        log.debug("invoice_request without an offer: not ours to answer")
        return
    try:
        row, offer, amount = check_invreq_for_offer(ld, req, secret)
    except Ignored as e:
        log.debug(f"invoice_request ignored: {e}")
        return
    except InvreqRefused as e:
        log.debug(f"invoice_request refused: {e}")
        await send_error(ld, reply, str(e), e.field)
        return
    label = f"{req.offer_id.hex()}-{req.invreq_payer_id.hex()}-{req.invreq_id.hex()[:16]}"  # type: ignore[union-attr]
    again = ld.invoices.by_label(label)
    if again is not None and again["bolt12"] is not None:
        if offer.offer_issuer_id is not None:
            # the same request again (the payer did not get our answer): BOLT 12 MAY answer
            # with the same invoice, for an offer with an issuer id (and MUST NOT otherwise)
            log.debug(f"invoice_request {req.invreq_id.hex()} again: sending its invoice again")
            try:
                await ld.onion_messages.send(OnionMsgTlv(invoice=B.decode(again["bolt12"]).encode()), path=reply)
            except RpcError as e:
                log.debug(f"could not send the invoice: {e.message}")
            return
        n = 1
        while ld.invoices.by_label(f"{label}-{n}") is not None:
            n += 1
        label = f"{label}-{n}"
    try:
        inv = await make_invoice(ld, req, amount, label, local_offer_id=row["offer_id"],
                                 path_key=path_key if offer.offer_issuer_id is None else None,
                                 node_id=offer.offer_issuer_id)
    except Exception as e:  # a duplicate request (same invreq_id), hsmd, storage
        log.unusual(f"cannot make an invoice for invoice_request {req.invreq_id.hex()}: {e}")
        await send_error(ld, reply, "Could not create invoice")
        return
    try:
        await ld.onion_messages.send(OnionMsgTlv(invoice=inv.encode()), path=reply)
    except RpcError as e:
        log.debug(f"could not send the invoice: {e.message}")


def req_parsed(raw: bytes) -> bool:
    try:
        B.decode_stream(B.INVREQ, raw)
    except Bolt12Error:
        return False
    return True


async def send_error(ld: "LightningD", reply: BlindedPath, text: str, field: int | None = None) -> None:
    v: dict = {"error": {"msg": text}}
    if field is not None:
        v["erroneous_field"] = {"tlv_fieldnum": field}
    err = wire.bolt12_schema().encode_tlv_stream("invoice_error", v)
    try:
        await ld.onion_messages.send(OnionMsgTlv(invoice_error=err), path=reply)
    except RpcError as e:
        ld.log.debug(f"could not send invoice_error: {e.message}")
