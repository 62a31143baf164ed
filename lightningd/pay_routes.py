"""What a payment is (an invoice decoded as pay and xpay check it) and the
route pieces pay, xpay and keysend share: a channel_update from an onion
error checked before use, and a route through an invoice's route hint."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bitcoin.hashes import hash256
from bitcoin.keys import verify_digest_compact
from common.bolt11 import Bolt11Error, Invoice
from common.bolt11 import decode as decode_bolt11
from common.features import BASIC_MPP, has_feature
from common.scid import ShortChannelId
from wire import DecodeError, bolt_schema

from . import channel as C
from .jsonrpc_errors import INVALID_PARAMS, PAY_INVOICE_EXPIRED, RpcError

if TYPE_CHECKING:
    from .lightningd import LightningD

# Blocks added to the invoice's min_final_cltv_expiry: a payee whose view of
# the chain is a block or two ahead of ours would otherwise refuse the HTLC as
# too close to expiry (LND pads by 3 for the same reason).
FINAL_CLTV_PADDING = 3


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
    features: bytes = b""             # the invoice's
    extra_tlvs: dict[int, bytes] = field(default_factory=dict)    # keysend's extratlvs, in the final payload


def decode_invoice(ld: "LightningD", bolt11: str, amount_msat: int | None, partial_msat: int | None) \
        -> tuple[Invoice, int, int]:
    """The invoice, what it asks in all and what this command sends of it;
    RpcError as pay and xpay answer a bad one."""
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
    if inv.timestamp + inv.expiry < time.time():
        raise RpcError(PAY_INVOICE_EXPIRED, "Invoice expired")
    # what this command sends (all of the invoice, or the caller's part of it)
    return inv, total, partial_msat if partial_msat is not None else total


def payment_request(inv: Invoice, bolt11: str, total: int, amount: int, label: str | None,
                    description: str | None) -> PaymentRequest:
    hints = [[{"pubkey": h.pubkey.hex() if isinstance(h.pubkey, bytes) else h.pubkey,
               "short_channel_id": h.short_channel_id, "fee_base_msat": h.fee_base_msat,
               "fee_proportional_millionths": h.fee_proportional_millionths,
               "cltv_expiry_delta": h.cltv_expiry_delta} for h in hint] for hint in (inv.route_hints or [])]
    return PaymentRequest(payee=inv.payee, payment_hash=inv.payment_hash, amount_msat=amount, total_msat=total,
                          min_final_cltv=inv.min_final_cltv_expiry, payment_secret=inv.payment_secret,
                          metadata=inv.metadata, bolt11=bolt11, label=label, description=description, hints=hints,
                          features=inv.features or b"")


def can_split(req: PaymentRequest) -> bool:
    """BOLT 4/11: parts only if the invoice has basic_mpp (and a payment_secret)."""
    return req.payment_secret is not None and has_feature(req.features, BASIC_MPP)


def policy_from_error(raw: bytes, erring_node: str | None, channel: str, chain_hash: bytes) -> dict | None:
    """The channel_update an erring node put in its onion error, as a policy
    for gossipd's getroutes, if it is valid: on our chain, for the channel
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


def hint_route(ld: "LightningD", destination: bytes, amount_msat: int, final_cltv: int, exclude: set[str],
               hints: list, policies: dict[str, dict], spendable: dict[str, int]) -> list[dict] | None:
    """A route through one of the invoice's route hints that starts at one
    of our peers, carrying the whole amount (delays relative to the next
    block, as sendpay takes them).  ``policies``: channel policies learnt
    from this payment's onion errors, over the hints'; ``spendable``: what
    each of our channels (by scid) may send for this payment."""
    for hint in hints:
        if not hint:
            continue
        # hint: [first hop from a node we may reach ... last hop to destination]
        peer = _pk(hint[0]["pubkey"])
        amt, dl = amount_msat, final_cltv
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
                          "delay": dl, "direction": 0 if _pk(h["pubkey"]) < nxt_id else 1})
            amt = amt + h["fee_base_msat"] + amt * h["fee_proportional_millionths"] // 1_000_000
            dl = dl + h["cltv_expiry_delta"]
        chain.reverse()
        if any(hp["channel"] in exclude or f"{hp['channel']}/{hp['direction']}" in exclude for hp in chain):
            continue
        for c in ld.channels.by_peer(peer):
            direction = 0 if ld.node_id < c.peer_id else 1
            if (c.state == C.NORMAL and c.scid_or_alias is not None and ld.is_connected(c.peer_id)
                    and not {f"{c.scid_or_alias}/{direction}", str(c.scid_or_alias), peer.hex()} & exclude
                    and spendable.get(str(c.scid_or_alias), 0) >= amt):
                return [{"id": peer.hex(), "channel": str(c.scid_or_alias), "direction": direction, "amount_msat": amt,
                         "delay": dl}] + chain
    return None


def _pk(v: Any) -> bytes:
    return bytes.fromhex(v) if isinstance(v, str) else v


def _scid_str(v: Any) -> str:
    if isinstance(v, int):
        return str(ShortChannelId.from_int(v))
    if isinstance(v, (bytes, bytearray)):
        return str(ShortChannelId.from_bytes(bytes(v)))
    return str(v)
