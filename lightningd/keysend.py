"""keysend (bLIP 3): pay a node without an invoice.  We pick the preimage,
put it in the final hop's onion payload (type 5482373484) and pay its hash
with pay's route-and-retry loop; the receiving side (htlc_engine) makes an
invoice for it on arrival, as Core Lightning's keysend plugin does."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from bitcoin.hashes import sha256
from common.features import cln_feature_name, unknown_even_bits

from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, PAY_ROUTE_NOT_FOUND, RpcError
from .params import opt, req
from .pay_command import DEFAULT_RETRY_FOR, PaymentRequest, fee_budget, send_payment
from .pay_parts import PayOptions

if TYPE_CHECKING:
    from .lightningd import LightningD

KEYSEND_FINAL_CLTV = 22           # Core Lightning's keysend plugin


def register(ld: "LightningD") -> None:
    @ld.registry.command(
        "keysend", [req("destination", P.node_id), req("amount_msat", P.msat), opt("label", P.string),
                    opt("maxfeepercent", P.nonneg_number), opt("retry_for", P.u32, DEFAULT_RETRY_FOR),
                    opt("maxdelay", P.u32), opt("exemptfee", P.msat), opt("extratlvs", P.extra_tlvs),
                    opt("routehints", P.routehint_array), opt("maxfee", P.msat)],
        category="payment", description="Send a payment of {amount_msat} to {destination} without an invoice")
    async def keysend(ctx: RequestContext, destination: bytes, amount_msat: int, label: str | None,
                      maxfeepercent: float | None, retry_for: int, maxdelay: int | None, exemptfee: int | None,
                      extratlvs: dict[int, bytes] | None, routehints: list | None, maxfee: int | None) -> dict:
        if amount_msat <= 0:
            raise RpcError(INVALID_PARAMS, "amount_msat: must be positive")
        if destination == ld.node_id:
            raise RpcError(INVALID_PARAMS, "destination: cannot pay ourselves")
        await refuse_unknown_even_node_features(ld, destination)
        preimage = os.urandom(32)
        req_ = PaymentRequest(payee=destination, payment_hash=sha256(preimage), amount_msat=amount_msat,
                              total_msat=amount_msat, min_final_cltv=KEYSEND_FINAL_CLTV, label=label,
                              keysend_preimage=preimage, extra_tlvs=extratlvs or {}, hints=routehints or [])
        # one part: a keysend carries no payment_secret to tie parts together
        return await send_payment(ld, req_, PayOptions(max_fee=fee_budget(amount_msat, maxfee, maxfeepercent,
                                                                          exemptfee),
                                                       retry_for=retry_for, maxdelay=maxdelay))


async def refuse_unknown_even_node_features(ld: "LightningD", destination: bytes) -> None:
    """BOLT 7 (node_announcement receiver): if its `features` contain unknown
    even bits, "unless paying a BOLT 11 invoice which does not have the same
    bit(s) set, MUST NOT attempt to send payments _to_ the node".  A keysend
    has no invoice, so it is refused before any HTLC (`pay` is within the
    exception: an invoice with an even bit we do not know fails to decode)."""
    for node in await ld.gossipd.listnodes(destination):
        bits = unknown_even_bits(bytes.fromhex(node.get("features", "")))
        if bits:
            names = ", ".join(cln_feature_name(b) for b in bits)
            raise RpcError(PAY_ROUTE_NOT_FOUND,
                           f"Destination {destination.hex()} requires features we do not know ({names}):"
                           " cannot pay it without an invoice")
