"""BOLT 12 encoding, reader rules and signatures against the spec's vectors.

* ``bolt12/format-string-test.json``: bech32 without checksum, case, ``+`` joins;
* ``bolt12/offers-test.json``: every offer, valid (its exact records) or not;
* ``bolt12/signature-test.json``: the Merkle leaves, branches and root of
  each case, and the invoice_request's BIP-340 signature.

Plus round trips of requests and invoices made from offers (fields copied,
unknown ones included), the invoice reader's rules, and ids.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import bolt12 as B
from common.blindedpath import create_blinded_path
from common.bolt12_merkle import merkle_root, sighash, sign, tagged_hash, tlv_records
from common.onion_crypto import encode_bigsize

SPEC = Path(__file__).resolve().parent.parent / "spec" / "bolts" / "bolt12"
FORMAT = json.loads((SPEC / "format-string-test.json").read_text())
OFFERS = json.loads((SPEC / "offers-test.json").read_text())
SIGS = json.loads((SPEC / "signature-test.json").read_text())
H = bytes.fromhex


@pytest.mark.parametrize("case", FORMAT, ids=[c["comment"] for c in FORMAT])
def test_format_string(case: dict) -> None:
    if case["valid"]:
        hrp, data = B.string_to_data(case["string"])
        assert hrp == "lno"
        offer = B.decode(case["string"])
        B.check_offer(offer)
        assert offer.to_string() == FORMAT[0]["string"]
    else:
        with pytest.raises(B.Bolt12Error):
            B.decode(case["string"])


def _offer_checked(text: str) -> B.Bolt12:
    o = B.decode(text, B.OFFER)
    B.check_offer(o)
    return o


@pytest.mark.parametrize("case", OFFERS, ids=[c["description"] for c in OFFERS])
def test_offers_vectors(case: dict) -> None:
    if not case["valid"]:
        with pytest.raises(B.Bolt12Error):
            _offer_checked(case["bolt12"])
        return
    o = _offer_checked(case["bolt12"])
    records = tlv_records(B.string_to_data(case["bolt12"])[1])
    assert [(r.type, len(r.value), r.value.hex()) for r in records] == \
        [(f["type"], f["length"], f["hex"]) for f in case["fields"]]
    # re-encoding is byte exact (unknown odd records included), and so is the string
    assert o.to_string() == case["bolt12"]


def test_offers_vectors_field_values() -> None:
    by = {c["description"]: B.decode(c["bolt12"]) for c in OFFERS if c["valid"]}
    assert by["with amount"].offer_amount == 10000
    assert by["with currency"].offer_currency == "USD"
    assert time.gmtime(by["with expiry"].offer_absolute_expiry).tm_year in (2034, 2035)
    assert by["with issuer"].offer_issuer == "https://bolt12.org BOLT12 industries"
    assert by["with quantity"].offer_quantity_max == 5
    assert by["with unlimited (or unknown) quantity"].offer_quantity_max == 0
    assert by["unknown odd field"].unknown == {33: b"helloworld"}
    assert by["unknown odd experimental field"].unknown == {1000000033: b"helloworld"}
    p = by["with blinded path via Bob (0x424242...), path_key 020202..."].offer_paths
    assert len(p) == 1 and len(p[0].hops) == 2 and p[0].hops[1].encrypted_recipient_data == b"\x11" * 8
    sciddir = by["same, with blinded path first_node_id using sciddir"].offer_paths[0]
    assert sciddir.first_node_id == b"\x00" + (0x2A).to_bytes(8, "big") and not sciddir.intro_is_pubkey
    two = by["... and with second blinded path via 1x2x3 (direction 1), path_key 020202..."].offer_paths
    assert two[1].first_node_id == b"\x01" + (1 << 40 | 2 << 16 | 3).to_bytes(8, "big")
    assert by["for testnet"].offer_chains == [H("43497fd7f826957108f4a30fd9cec3aeba79972084e90ead01ea330900000000")]
    assert by["with no issuer_id and blinded path via Bob (0x424242...), path_key 020202..."].offer_issuer_id is None


@pytest.mark.parametrize("case", SIGS, ids=[c["comment"][:40] for c in SIGS])
def test_signature_vectors(case: dict) -> None:
    if "bolt12" in case:
        stream = B.string_to_data(case["bolt12"])[1]
    else:
        # the n1 cases: the stream is the leaves' records
        stream = b"".join(H(next(k for k in leaf if k.startswith("H(`LnLeaf`"))[len("H(`LnLeaf`,"):-1])
                          for leaf in case["leaves"])
    records = [r for r in tlv_records(stream) if not 240 <= r.type <= 1000]
    assert records[0].raw.hex() == case["first-tlv"]
    for r, leaf in zip(records, case["leaves"]):
        values = list(leaf.values())
        assert tagged_hash(b"LnLeaf", r.raw).hex() == values[0]
        nonce = tagged_hash(b"LnNonce" + records[0].raw, encode_bigsize(r.type))
        assert nonce.hex() == values[1]
    assert merkle_root(stream).hex() == case["merkle"]
    if "signature" in case:
        assert sighash("invoice_request", "signature", H(case["merkle"])).hex() == case["H(signature_tag,merkle)"]
        req = B.decode(case["bolt12"], B.INVREQ)
        B.check_invreq(req)
        assert req.signature.hex() == case["signature"]
        bob = coincurve.PrivateKey(b"\x42" * 32)
        assert req.invreq_payer_id == bob.public_key.format()
        assert sign(bob.secret, "invoice_request", "signature", req.as_kind(B.INVREQ).encode()).hex() == \
            case["signature"]
        assert req.offer_issuer_id == coincurve.PrivateKey(b"\x41" * 32).public_key.format()


# --- requests and invoices made from offers ----------------------------------------

ALICE = coincurve.PrivateKey(b"\x41" * 32)
BOB = coincurve.PrivateKey(b"\x42" * 32)


def _offer(**kw) -> B.Bolt12:
    o = B.Bolt12(B.OFFER, offer_description="coffee", offer_amount=1000, offer_issuer_id=ALICE.public_key.format(),
                 **kw)
    B.check_offer(o)
    return o


def _request(offer: B.Bolt12, **kw) -> B.Bolt12:
    r = offer.as_kind(B.INVREQ)
    r.invreq_metadata = b"\x01" * 16
    r.invreq_payer_id = BOB.public_key.format()
    for k, v in kw.items():
        setattr(r, k, v)
    r.signature = sign(BOB.secret, B.INVREQ, "signature", r.encode())
    return r


def _invoice(req: B.Bolt12, key: coincurve.PrivateKey = ALICE, **kw) -> B.Bolt12:
    inv = req.as_kind(B.INVOICE)
    path = create_blinded_path(b"\x05" * 32, [(key.public_key.format(), b"")]).path
    inv.invoice_paths = [path]
    inv.invoice_blindedpay = [B.Payinfo(0, 0, 18, 1, 10**9, b"")]
    inv.invoice_created_at = int(time.time())
    inv.invoice_payment_hash = b"\x33" * 32
    inv.invoice_amount = req.invreq_amount or req.expected_amount()
    inv.invoice_node_id = key.public_key.format()
    for k, v in kw.items():
        setattr(inv, k, v)
    inv.signature = sign(key.secret, B.INVOICE, "signature", inv.encode())
    return inv


def test_request_and_invoice_from_offer_round_trip() -> None:
    offer = _offer(offer_quantity_max=5, unknown={33: b"odd", 1000000033: b"exp"})
    req = _request(offer, invreq_quantity=2, invreq_payer_note="thanks")
    back = B.decode(req.to_string(), B.INVREQ)
    B.check_invreq(back)
    assert back.unknown == {33: b"odd", 1000000033: b"exp"}
    assert B.invreq_matches_offer(back, offer) and back.offer_id == offer.offer_id
    assert back.expected_amount() == 2000
    inv = _invoice(back)
    got = B.decode(inv.to_string(), B.INVOICE)
    B.check_invoice(got)
    assert B.invoice_matches_request(got, back) and got.invreq_id == back.invreq_id
    assert got.offer_id == offer.offer_id
    assert got.invoice_amount == 2000 and got.invoice_expires_at() == got.invoice_created_at + 7200


def test_invoice_request_reader_rules() -> None:
    offer = _offer()
    good = _request(offer)
    B.check_invreq(good)
    tampered = B.decode(good.to_string())
    tampered.invreq_payer_note = "changed"
    with pytest.raises(B.Bolt12Error, match="signature"):
        B.check_invreq(tampered)
    no_payer = good.as_kind(B.INVREQ)
    no_payer.invreq_payer_id = None
    with pytest.raises(B.Bolt12Error):
        B.check_invreq(no_payer)
    with pytest.raises(B.Bolt12Error, match="feature"):
        B.check_invreq(_request(offer, invreq_features=b"\x01\x00"))   # bit 8: even, unknown
    B.check_invreq(_request(offer, invreq_features=b"\x02\x00"))       # bit 9: odd, ignored
    # a request without an offer: needs an amount, no offer_chains/features/quantity_max
    bare = B.Bolt12(B.INVREQ, offer_description="refund", invreq_metadata=b"\x02" * 8,
                    invreq_payer_id=BOB.public_key.format(), invreq_amount=500)
    B.check_invreq(bare)
    bare.invreq_amount = None
    with pytest.raises(B.Bolt12Error):
        B.check_invreq(bare)
    # type 160 (an invoice field) is out of an invoice_request's range
    with pytest.raises(B.Bolt12Error, match="range"):
        B.decode_stream(B.INVREQ, B.Bolt12(B.INVREQ, invreq_metadata=b"\x01", unknown={161: b""}).encode())


def test_invoice_reader_rules() -> None:
    req = _request(_offer())
    B.check_invoice(_invoice(req))
    for change in [dict(invoice_amount=None), dict(invoice_node_id=None), dict(invoice_payment_hash=None),
                   dict(invoice_blindedpay=[]), dict(invoice_features=b"\x04\x00\x00\x00"),  # bit 26, even
                   dict(invoice_blindedpay=[B.Payinfo(0, 0, 18, 1, 10**9, b"\x01")])]:   # only path unusable
        with pytest.raises(B.Bolt12Error):
            inv = _invoice(req, **{k: v for k, v in change.items() if k != "invoice_node_id"})
            if "invoice_node_id" in change:
                inv.invoice_node_id = None
            B.check_invoice(inv)
    B.check_invoice(_invoice(req, invoice_features=b"\x01\x00\x00"))   # MPP compulsory is known
    forged = _invoice(req, key=BOB)
    forged.invoice_node_id = ALICE.public_key.format()
    with pytest.raises(B.Bolt12Error, match="signature"):
        B.check_invoice(forged)
    # an invoice that changed a request field does not match the request
    other = _invoice(req)
    other.invreq_payer_note = "x"
    assert not B.invoice_matches_request(other, req)


def test_ids_and_secrets() -> None:
    offer = _offer()
    # the offer_id is the same from the offer, its requests and their invoices
    req = _request(offer)
    assert req.offer_id == offer.offer_id == _invoice(req).offer_id
    assert len(offer.offer_id) == 32 and offer.offer_id != _offer(offer_issuer="x").offer_id
    base = b"\x07" * 32
    assert B.path_secret(base, offer.offer_id) != B.path_secret(base, req.invreq_id)
    t = B.alias_tweak(base, b"meta")
    assert B.tweak_add_pubkey(ALICE.public_key.format(), t) == \
        coincurve.PrivateKey(ALICE.add(t).secret).public_key.format()


def test_string_joins_and_bad_strings() -> None:
    o = _offer().to_string()
    assert B.decode(o[:10] + "+\n  " + o[10:]).offer_description == "coffee"
    assert B.decode(o.upper()).offer_amount == 1000
    for bad in ["", "lno", "lno1", o + "b", "lnx1" + o[4:], o[:10] + "++" + o[10:], o[:10] + " " + o[10:]]:
        with pytest.raises(B.Bolt12Error):
            B.check_offer(B.decode(bad))


def test_decode_json() -> None:
    from common.bolt12_json import bolt12_json
    for case in OFFERS:
        try:
            o = B.decode(case["bolt12"])
        except B.Bolt12Error:
            assert not case["valid"]
            continue
        js = bolt12_json(o)
        assert js["type"] == "bolt12 offer" and js["valid"] == case["valid"], case["description"]
        assert js["offer_id"] == o.offer_id.hex()
    offer = _offer(offer_quantity_max=0, unknown={33: b"odd"})
    js = bolt12_json(offer)
    assert js["offer_amount_msat"] == 1000 and js["offer_description"] == "coffee" and js["offer_quantity_max"] == 0
    assert js["unknown_offer_tlvs"] == [{"type": 33, "length": 3, "value": b"odd".hex()}]
    req = _request(offer, invreq_quantity=3)
    js = bolt12_json(req)
    assert js["type"] == "bolt12 invoice_request" and js["valid"] and js["invreq_quantity"] == 3
    assert js["offer_id"] == offer.offer_id.hex() and js["signature"] == req.signature.hex()
    req.invreq_payer_note = "tampered"
    assert bolt12_json(req)["warning_invalid_invoice_request_signature"] and not bolt12_json(req)["valid"]
    inv = _invoice(_request(offer, invreq_quantity=3), invoice_fallbacks=[B.Fallback(0, b"\x01" * 20)])
    js = bolt12_json(inv)
    assert js["valid"] and js["invoice_amount_msat"] == 3000 and js["invoice_paths"][0]["payinfo"]["cltv_expiry_delta"] == 18
    assert js["invoice_fallbacks"][0]["address"].startswith("bc1q")
    assert js["invoice_node_id"] == ALICE.public_key.format().hex()



@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([B.OFFER, B.INVREQ, B.INVOICE]))
def test_decoding_random_streams_only_raises_bolt12error(raw: bytes, kind: str) -> None:
    from common.bolt12_json import bolt12_json
    try:
        b = B.decode_stream(kind, raw)
    except B.Bolt12Error:
        return
    bolt12_json(b)                      # decode's JSON never fails on what parses
    for check in (B.check_offer, B.check_invreq, B.check_invoice):
        try:
            check(b)
        except B.Bolt12Error:
            pass
    assert B.decode_stream(kind, b.encode()).encode() == b.encode()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_decoding_random_strings_only_raises_bolt12error(text: str) -> None:
    try:
        B.decode(text)
    except B.Bolt12Error:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_onion_message_payloads_and_packets(raw: bytes) -> None:
    from common.onion_message import OnionMessageError, OnionMsgTlv, peel_onion_message
    try:
        OnionMsgTlv.decode(raw)
    except OnionMessageError:
        pass
    try:
        peel_onion_message(b"\x00" + ALICE.public_key.format() + raw + bytes(32), BOB.public_key.format(), ALICE.ecdh)
    except OnionMessageError:
        pass
