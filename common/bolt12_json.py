"""The ``decode`` command's JSON of BOLT 12 strings, as Core Lightning prints it.

Fields keep the TLV names (``offer_amount_msat``, ``invreq_payer_id``,
``invoice_paths`` ...); whatever breaks a reader's rule adds a
``warning_*`` field and ``valid: false`` (the object decoded, but must not
be used).  Pure: the caller decodes the string (:func:`common.bolt12.decode`).
"""
from __future__ import annotations

from typing import Any

from bitcoin.bech32 import encode_segwit_address
from bitcoin.networks import network_by_chain_hash
from common.blindedpath import BlindedPath
from common.bolt12 import (
    INVOICE,
    INVREQ,
    OFFER,
    Bolt12,
    Payinfo,
    is_offer_response,
    unknown_even_bit,
)
from common.bolt12_merkle import verify

#: ISO 4217 minor units of common currencies (Core Lightning ships the whole table)
ISO4217_MINOR_UNIT = {
    "USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "CHF": 2, "CAD": 2, "AUD": 2, "CNY": 2, "INR": 2, "BRL": 2,
    "MXN": 2, "KRW": 0, "SEK": 2, "NOK": 2, "DKK": 2, "NZD": 2, "ZAR": 2, "SGD": 2, "HKD": 2, "ARS": 2,
    "TRY": 2, "PLN": 2, "CZK": 2, "HUF": 2, "ILS": 2, "THB": 2, "KWD": 3, "BHD": 3, "CLP": 0, "ISK": 0,
}


def _scid_str(v: int) -> str:
    return f"{v >> 40}x{(v >> 16) & 0xFFFFFF}x{v & 0xFFFF}"


def paths_json(paths: list[BlindedPath], payinfo: list[Payinfo] | None = None) -> list[dict]:
    out = []
    for i, p in enumerate(paths):
        d: dict[str, Any] = {}
        if p.intro_is_pubkey:
            d["first_node_id"] = p.first_node_id.hex()
        else:
            d["first_scid"] = _scid_str(int.from_bytes(p.first_node_id[1:], "big"))
            d["first_scid_dir"] = p.first_node_id[0]
        d["first_path_key"] = p.first_path_key.hex()
        if payinfo is not None and i < len(payinfo):
            pi = payinfo[i]
            d["payinfo"] = {"fee_base_msat": pi.fee_base_msat,
                            "fee_proportional_millionths": pi.fee_proportional_millionths,
                            "cltv_expiry_delta": pi.cltv_expiry_delta,
                            "htlc_minimum_msat": pi.htlc_minimum_msat,
                            "htlc_maximum_msat": pi.htlc_maximum_msat, "features": pi.features.hex()}
        d["path"] = [{"blinded_node_id": h.blinded_node_id.hex(),
                      "encrypted_recipient_data": h.encrypted_recipient_data.hex()} for h in p.hops]
        out.append(d)
    return out


def _paths_have_hops(paths: list[BlindedPath], js: dict) -> bool:
    for i, p in enumerate(paths):
        if not p.hops:
            js["warning_empty_blinded_path"] = f"blinded path {i} has 0 hops"
            return False
    return True


def _offer_fields(b: Bolt12, js: dict) -> bool:
    valid = True
    if b.offer_chains is not None:
        js["offer_chains"] = [c.hex() for c in b.offer_chains]
    if b.offer_metadata is not None:
        js["offer_metadata"] = b.offer_metadata.hex()
    if b.offer_currency is not None:
        js["offer_currency"] = b.offer_currency
        if b.offer_amount is not None:
            js["offer_amount"] = b.offer_amount
        unit = ISO4217_MINOR_UNIT.get(b.offer_currency)
        if unit is not None:
            js["currency_minor_unit"] = unit
        else:
            js["warning_unknown_offer_currency"] = "unknown currency code"
    elif b.offer_amount is not None:
        js["offer_amount_msat"] = b.offer_amount
    if b.offer_description is not None:
        js["offer_description"] = b.offer_description
    elif b.offer_amount is not None:
        js["warning_missing_offer_description"] = ("description is required if offer_amount is set (for the "
                                                   "user to know what it was they paid for)")
        valid = False
    if b.offer_issuer is not None:
        js["offer_issuer"] = b.offer_issuer
    if b.offer_features is not None:
        js["offer_features"] = b.offer_features.hex()
    if b.offer_absolute_expiry is not None:
        js["offer_absolute_expiry"] = b.offer_absolute_expiry
    if b.offer_paths is not None:
        js["offer_paths"] = paths_json(b.offer_paths)
        valid &= _paths_have_hops(b.offer_paths, js)
    if b.offer_quantity_max is not None:
        js["offer_quantity_max"] = b.offer_quantity_max
    if b.offer_issuer_id is not None:
        js["offer_issuer_id"] = b.offer_issuer_id.hex()
    if unknown_even_bit(b.offer_features) is not None or b.offer_amount == 0 or \
            (b.offer_currency is not None and b.offer_amount is None):
        valid = False
    return valid


def _invreq_fields(b: Bolt12, js: dict) -> bool:
    valid = True
    if b.invreq_metadata is not None:
        js["invreq_metadata"] = b.invreq_metadata.hex()
    else:
        js["warning_missing_invreq_metadata"] = "invreq_metadata required"
        valid = False
    if b.invreq_payer_id is not None:
        js["invreq_payer_id"] = b.invreq_payer_id.hex()
    if b.invreq_chain is not None:
        js["invreq_chain"] = b.invreq_chain.hex()
    if b.invreq_amount is not None:
        js["invreq_amount_msat"] = b.invreq_amount
    if b.invreq_features is not None:
        js["invreq_features"] = b.invreq_features.hex()
    if b.invreq_quantity is not None:
        js["invreq_quantity"] = b.invreq_quantity
    if b.invreq_payer_note is not None:
        js["invreq_payer_note"] = b.invreq_payer_note
    if b.invreq_paths is not None:
        js["invreq_paths"] = paths_json(b.invreq_paths)
        valid &= _paths_have_hops(b.invreq_paths, js)
    if b.invreq_bip_353_name is not None:
        name, domain = b.invreq_bip_353_name
        js["invreq_bip_353_name"] = {"name": name.decode("ascii", "replace"),
                                     "domain": domain.decode("ascii", "replace")}
    return valid


def _unknown(b: Bolt12, js: dict, key: str) -> None:
    extra = [{"type": t, "length": len(v), "value": v.hex()} for t, v in sorted(b.unknown.items())]
    if extra:
        js[key] = extra


def _fallbacks(b: Bolt12, js: dict) -> bool:
    valid = True
    chain = (b.offer_chains or [None])[0] if b.invreq_chain is None else b.invreq_chain
    net = network_by_chain_hash(chain) if chain is not None else None
    hrp = net.bech32_hrp if net is not None else "bc"
    out = []
    for f in b.invoice_fallbacks or []:
        d: dict[str, Any] = {"version": f.version, "hex": f.address.hex()}
        if f.version > 16:
            d["warning_invalid_invoice_fallbacks_version"] = "invoice fallback version > 16"
            valid = False
        elif not 2 <= len(f.address) <= 40:
            d["warning_invalid_invoice_fallbacks_address"] = "invoice fallback address bad length"
            valid = False
        else:
            try:
                d["address"] = encode_segwit_address(hrp, f.version, f.address)
            except ValueError:
                d["warning_invalid_invoice_fallbacks_address"] = "invalid fallback address for this version"
                valid = False
        out.append(d)
    js["invoice_fallbacks"] = out
    return valid


def bolt12_json(b: Bolt12) -> dict:
    """``decode``'s answer for an offer, invoice_request or invoice."""
    js: dict[str, Any] = {"type": f"bolt12 {b.kind}"}
    if b.kind == OFFER or is_offer_response(b):
        js["offer_id"] = b.offer_id.hex()
    valid = _offer_fields(b, js)
    if b.kind == OFFER:
        if b.offer_issuer_id is None and not b.offer_paths:
            js["warning_missing_offer_issuer_id"] = "offers without an issuer_id or paths are invalid"
            valid = False
        _unknown(b, js, "unknown_offer_tlvs")
        js["valid"] = valid
        return js
    valid &= _invreq_fields(b, js)
    if b.kind == INVREQ:
        if b.invreq_payer_id is None:
            js["warning_missing_invreq_payer_id"] = "invreq_payer_id required"
            valid = False
        if b.signature is not None:
            if b.invreq_payer_id is not None and not verify(b.invreq_payer_id, b.signature, INVREQ, "signature",
                                                            b.encode()):
                js["warning_invalid_invoice_request_signature"] = "Bad signature"
                valid = False
            else:
                js["signature"] = b.signature.hex()
        else:
            js["warning_missing_invoice_request_signature"] = "Missing signature"
            valid = False
        _unknown(b, js, "unknown_invoice_request_tlvs")
        js["valid"] = valid
        return js
    assert b.kind == INVOICE
    if b.invoice_paths is not None:
        js["invoice_paths"] = paths_json(b.invoice_paths, b.invoice_blindedpay)
        valid &= _paths_have_hops(b.invoice_paths, js)
        if b.invoice_blindedpay is not None and len(b.invoice_blindedpay) != len(b.invoice_paths):
            js["warning_invalid_invoice_blindedpay"] = (f"invoice has {len(b.invoice_blindedpay)} "
                                                        f"blinded_payinfo but {len(b.invoice_paths)} paths")
            valid = False
    for name, key in (("invoice_created_at", "invoice_created_at"),
                      ("invoice_relative_expiry", "invoice_relative_expiry"),
                      ("invoice_amount", "invoice_amount_msat")):
        if getattr(b, name) is not None:
            js[key] = getattr(b, name)
    if b.invoice_payment_hash is not None:
        js["invoice_payment_hash"] = b.invoice_payment_hash.hex()
    if b.invoice_fallbacks is not None:
        valid &= _fallbacks(b, js)
    if b.invoice_features is not None:
        js["invoice_features"] = b.invoice_features.hex()
    if b.invoice_node_id is not None:
        js["invoice_node_id"] = b.invoice_node_id.hex()
    missing = [("invoice_paths", "warning_missing_invoice_paths", "invoices without a invoice_paths are invalid"),
               ("invoice_blindedpay", "warning_missing_invoice_blindedpay",
                "invoices with paths without blindedpay are invalid"),
               ("invoice_created_at", "warning_missing_invoice_created_at", "invoices without created_at are invalid"),
               ("invoice_payment_hash", "warning_missing_invoice_payment_hash",
                "invoices without a payment_hash are invalid"),
               ("invoice_amount", "warning_missing_invoice_amount", "invoices without an amount are invalid"),
               ("invoice_node_id", "warning_missing_invoice_node_id", "invoices without an invoice_node_id are invalid")]
    for name, key, text in missing:
        if getattr(b, name) is None:
            js[key] = text
            valid = False
    if b.signature is None:
        js["warning_missing_invoice_signature"] = "Missing signature"
        valid = False
    elif b.invoice_node_id is not None and not verify(b.invoice_node_id, b.signature, INVOICE, "signature",
                                                      b.encode()):
        js["warning_invalid_invoice_signature"] = "Bad signature"
        valid = False
    else:
        js["signature"] = b.signature.hex()
    _unknown(b, js, "unknown_invoice_tlvs")
    js["valid"] = valid
    return js
