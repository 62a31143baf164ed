"""BOLT 4 route blinding and onion messages against the spec's vectors, byte for byte.

* ``bolt04/route-blinding-test.json``: building a blinded route (two
  concatenated ones), and unblinding it hop by hop;
* ``bolt04/blinded-payment-onion-test.json``: a payment onion to a blinded
  route, peeled by every hop, the relay arithmetic of each;
* ``bolt04/blinded-onion-message-onion-test.json``: an onion message along a
  blinded path with a prefix hop, peeled and forwarded by every hop.

Plus the rules of a blinded hop (payments and onion messages) and dummy hops.
"""
from __future__ import annotations

import json
from pathlib import Path

import coincurve
import pytest

import wire
from common.blindedpath import (
    BlindedPath,
    BlindingError,
    EncryptedData,
    PaymentConstraints,
    PaymentRelay,
    aggregate_payinfo,
    blinded_node_id,
    blinded_privkey,
    create_blinded_path,
    decrypt_data,
    encrypt_data,
    payinfo_fee,
    read_encrypted_data,
    relay_amount,
)
from common.blindedpay import blinded_hop, blinded_payloads
from common.onion import create_onion, peel_onion_with_privkey
from common.onion_crypto import ecdh_with
from common.onion_message import (
    Final,
    Forward,
    OnionMessageError,
    OnionMsgTlv,
    build_onion_message,
    encode_onion_message,
    peel_onion_message,
)
from common.onion_payload import HopPayload, check_payload, decode_payload, encode_payload

SPEC = Path(__file__).resolve().parent.parent / "spec" / "bolts" / "bolt04"
if not SPEC.exists():
    SPEC = Path("/work/shared/spec/bolts/bolt04")
ROUTE = json.loads((SPEC / "route-blinding-test.json").read_text())
PAY = json.loads((SPEC / "blinded-payment-onion-test.json").read_text())
OMSG = json.loads((SPEC / "blinded-onion-message-onion-test.json").read_text())

H = bytes.fromhex


def _scid(text: str) -> int:
    b, t, o = (int(x) for x in text.split("x"))
    return b << 40 | t << 16 | o


def _tlvs_to_data(t: dict) -> EncryptedData:
    """The vectors' readable tlvs as an EncryptedData."""
    d = EncryptedData()
    for k, v in t.items():
        if k == "padding":
            d.padding = H(v)
        elif k == "short_channel_id":
            d.short_channel_id = _scid(v)
        elif k == "next_node_id":
            d.next_node_id = H(v)
        elif k == "path_id":
            d.path_id = H(v)
        elif k == "next_path_key_override":
            d.next_path_key_override = H(v)
        elif k == "payment_relay":
            d.payment_relay = PaymentRelay(v["cltv_expiry_delta"], v["fee_proportional_millionths"],
                                           v.get("fee_base_msat", 0))
        elif k == "payment_constraints":
            d.payment_constraints = PaymentConstraints(v["max_cltv_expiry"], v["htlc_minimum_msat"])
        elif k == "allowed_features":
            bits = v["features"]
            n = (max(bits) // 8 + 1) if bits else 0
            f = bytearray(n)
            for b in bits:
                f[n - 1 - b // 8] |= 1 << (b % 8)
            d.allowed_features = bytes(f)
        elif k.startswith("unknown_tag_"):
            d.unknown[int(k[len("unknown_tag_"):])] = H(v)
        elif k == "path_key_override_secret":
            continue
        else:
            raise AssertionError(k)
    return d


# --- route-blinding-test.json ---------------------------------------------------


def test_encrypted_data_tlv_encoding() -> None:
    for hop in ROUTE["generate"]["hops"]:
        data = _tlvs_to_data(hop["tlvs"])
        assert data.encode().hex() == hop["encoded_tlvs"], hop["alias"]
        back = EncryptedData.decode(H(hop["encoded_tlvs"]))
        assert back == data


def test_generate_concatenated_route() -> None:
    hops = ROUTE["generate"]["hops"]
    # Bob builds Bob -> Carol, concatenated with Eve's Dave -> Eve.
    first = create_blinded_path(H(hops[0]["session_key"]),
                                [(H(h["node_id"]), H(h["encoded_tlvs"])) for h in hops[:2]])
    second = create_blinded_path(H(hops[2]["session_key"]),
                                 [(H(h["node_id"]), H(h["encoded_tlvs"])) for h in hops[2:]])
    # Carol's override is Dave's first path key.
    assert second.path.first_path_key.hex() == hops[1]["tlvs"]["next_path_key_override"]
    for sec, hop in zip(first.secrets + second.secrets, hops):
        assert sec.path_privkey.hex() == hop["path_privkey"], hop["alias"]
        assert sec.path_key.hex() == hop["path_key"]
        assert sec.shared_secret.hex() == hop["shared_secret"]
        assert sec.encrypted_data.hex() == hop["encrypted_data"]
        assert sec.blinded_node_id.hex() == hop["blinded_node_id"]
    route = ROUTE["route"]
    combined = BlindedPath(first.path.first_node_id, first.path.first_path_key,
                           first.path.hops + second.path.hops)
    assert combined.first_node_id.hex() == route["first_node_id"]
    assert combined.first_path_key.hex() == route["first_path_key"]
    assert [(h.blinded_node_id.hex(), h.encrypted_recipient_data.hex()) for h in combined.hops] == \
        [(h["blinded_node_id"], h["encrypted_data"]) for h in route["hops"]]


def test_unblind_every_hop() -> None:
    route = ROUTE["route"]["hops"]
    path_key = H(ROUTE["route"]["first_path_key"])
    for hop, enc in zip(ROUTE["unblind"]["hops"], route):
        assert hop["path_key"] == path_key.hex(), hop["alias"]
        priv = H(hop["node_privkey"])
        ss = coincurve.PrivateKey(priv).ecdh(path_key)
        assert blinded_privkey(priv, ss).hex() == hop["blinded_privkey"]
        node_id = coincurve.PrivateKey(priv).public_key.format()
        assert blinded_node_id(node_id, ss).hex() == enc["blinded_node_id"]
        out = read_encrypted_data(path_key, ss, H(enc["encrypted_data"]))
        assert out.data.encode().hex() == hop["decrypted_data"]
        if "next_path_key_override" in hop:
            assert out.data.next_path_key_override.hex() == hop["next_path_key_override"]
            assert out.next_path_key.hex() == hop["next_path_key_override"]
        else:
            assert out.next_path_key.hex() == hop["next_path_key"]
        path_key = out.next_path_key


def test_decrypt_rejects_tampering_and_wrong_key() -> None:
    ss = bytes(range(32))
    enc = encrypt_data(ss, b"\x02\x08" + bytes(8))
    assert decrypt_data(ss, enc) == b"\x02\x08" + bytes(8)
    with pytest.raises(BlindingError):
        decrypt_data(ss, enc[:-1] + bytes([enc[-1] ^ 1]))
    with pytest.raises(BlindingError):
        decrypt_data(bytes(32), enc)
    with pytest.raises(BlindingError):      # unknown even type inside
        EncryptedData.decode(b"\x10\x00")


def test_blinded_path_wire_roundtrip() -> None:
    path = create_blinded_path(b"\x07" * 32, [(coincurve.PrivateKey(bytes([i]) * 32).public_key.format(), b"")
                                              for i in (1, 2, 3)]).path
    raw = path.serialize()
    assert len(raw) == 33 + 33 + 1 + 3 * (33 + 2 + 16)
    assert BlindedPath.parse(raw) == path
    with pytest.raises(wire.DecodeError):
        BlindedPath.parse(raw[:-1])


# --- blinded-payment-onion-test.json --------------------------------------------


def test_payinfo_aggregates_the_route() -> None:
    g = PAY["generate"]
    relays = []
    for hop in g["full_route"]["hops"][1:-1]:
        r = hop["tlvs"]["encrypted_recipient_data"]["payment_relay"]
        relays.append(PaymentRelay(r["cltv_expiry_delta"], r["fee_proportional_millionths"], r.get("fee_base_msat", 0)))
    info = aggregate_payinfo(relays)
    exp = g["blinded_payinfo"]
    assert info == (exp["fee_base_msat"], exp["fee_proportional_millionths"], exp["cltv_expiry_delta"])
    alice = g["full_route"]["hops"][0]["tlvs"]
    assert g["final_amount_msat"] + payinfo_fee(info, g["final_amount_msat"]) == alice["amt_to_forward"]
    assert g["final_cltv"] + info.cltv_expiry_delta == alice["outgoing_cltv_value"]


def test_blinded_route_encrypted_data() -> None:
    """The blinded route of the payment vector is the route-blinding construction."""
    g = PAY["generate"]
    hops = g["full_route"]["hops"][1:]
    ids = [h["node_id"] for h in ROUTE["generate"]["hops"]]
    tlvs = [_tlvs_to_data(h["tlvs"]["encrypted_recipient_data"]).encode() for h in hops]
    first = create_blinded_path(H("02" * 32), list(zip(map(H, ids[:2]), tlvs[:2])))
    second = create_blinded_path(H("01" * 32), list(zip(map(H, ids[2:]), tlvs[2:])))
    got = [h.encrypted_recipient_data.hex() for h in first.path.hops + second.path.hops]
    assert got == [h["encrypted_data"] for h in g["blinded_route"]["hops"]]


def _vector_path() -> BlindedPath:
    br = PAY["generate"]["blinded_route"]
    from common.blindedpath import BlindedHop
    return BlindedPath(H(br["first_node_id"]), H(br["first_path_key"]),
                       tuple(BlindedHop(H(h["blinded_node_id"]), H(h["encrypted_data"])) for h in br["hops"]))


def test_payment_payloads_and_onion() -> None:
    g = PAY["generate"]
    full = g["full_route"]["hops"]
    eve = full[-1]["tlvs"]
    hops = blinded_payloads(_vector_path(), eve["amt_to_forward"], eve["outgoing_cltv_value"],
                            eve["total_amount_msat"])
    alice = full[0]["tlvs"]
    alice_payload = encode_payload(HopPayload(amt_to_forward=alice["amt_to_forward"],
                                              outgoing_cltv_value=alice["outgoing_cltv_value"],
                                              short_channel_id=_scid(alice["outgoing_channel_id"])))
    # the vector's payloads carry their length prefix
    from common.onion_crypto import encode_bigsize
    assert (encode_bigsize(len(alice_payload)) + alice_payload).hex() == full[0]["payload"]
    for (key, payload), hop in zip(hops, full[1:]):
        assert key.hex() == hop["pubkey"], hop["alias"]
        assert (encode_bigsize(len(payload)) + payload).hex() == hop["payload"], hop["alias"]
    onion = create_onion(H(g["session_key"]), [(H(full[0]["pubkey"]), alice_payload)] + hops,
                         H(g["associated_data"])).packet
    assert onion.hex() == g["onion"]


def test_payment_peel_every_hop() -> None:
    hops = PAY["decrypt"]["hops"]
    full = PAY["generate"]["full_route"]["hops"]
    assoc = H(PAY["generate"]["associated_data"])
    path_key = None          # Alice: unblinded; Bob learns it from current_path_key
    amount, cltv = full[0]["tlvs"]["amt_to_forward"], full[0]["tlvs"]["outgoing_cltv_value"]
    for i, hop in enumerate(hops):
        priv = H(hop["node_privkey"])
        peeled = peel_onion_with_privkey(H(hop["onion"]), assoc, priv, path_key=path_key)
        payload = decode_payload(peeled.payload)
        check_payload(payload, is_final=peeled.is_final, path_key_in_htlc=path_key is not None)
        if i + 1 < len(hops):
            assert peeled.next_packet.hex() == hops[i + 1]["onion"], hop["alias"]
        if i == 0:
            assert path_key is None and payload.encrypted_recipient_data is None
            continue
        key = path_key or payload.current_path_key
        ss = coincurve.PrivateKey(priv).ecdh(key)
        out = read_encrypted_data(key, ss, payload.encrypted_recipient_data)
        assert out.next_path_key.hex() == hop["next_path_key"], hop["alias"]
        fwd = blinded_hop(out.data, payload, amount, cltv, peeled.is_final)
        if peeled.is_final:
            assert fwd is None
            assert payload.amt_to_forward == 100000 and payload.total_amount_msat == 150000
            assert out.data.path_id.hex() == "c9cf92f45ade68345bc20ae672e2012f4af487ed4415"
        else:
            assert fwd is not None
            amount, cltv = fwd.amount_msat, fwd.cltv_expiry
        path_key = out.next_path_key
    # the amounts each hop forwarded land exactly on the final amount
    assert amount == 100000 and cltv == 749000


def test_relay_amount_inverts_the_fee() -> None:
    r = PaymentRelay(40, 250, 1000)
    for amt in (1, 999, 10_000, 123_456_789):
        received = amt + r.fee_base_msat + amt * r.fee_proportional_millionths // 1_000_000
        assert relay_amount(received, r) >= amt


def test_blinded_hop_rules() -> None:
    relay = PaymentRelay(10, 0, 0)
    cons = PaymentConstraints(1000, 500)
    p = HopPayload(encrypted_recipient_data=b"x", current_path_key=b"\x02" * 33)
    ok = EncryptedData(short_channel_id=1, payment_relay=relay, payment_constraints=cons)
    assert blinded_hop(ok, p, 600, 900, False) == (600, 890, 1, None)
    bad = [
        (EncryptedData(short_channel_id=1, payment_relay=relay, payment_constraints=cons), 600, 1001),  # expiry
        (EncryptedData(short_channel_id=1, payment_relay=relay, payment_constraints=cons), 499, 900),   # minimum
        (EncryptedData(short_channel_id=1, next_node_id=b"\x02" * 33, payment_relay=relay), 600, 900),
        (EncryptedData(payment_relay=relay), 600, 900),                                   # no next hop
        (EncryptedData(short_channel_id=1), 600, 900),                                    # no relay
        (EncryptedData(short_channel_id=1, payment_relay=relay, allowed_features=b"\x01"), 600, 900),
        (EncryptedData(short_channel_id=1, payment_relay=relay, path_id=b"x"), 600, 900),
    ]
    for data, amt, cltv in bad:
        with pytest.raises(BlindingError):
            blinded_hop(data, p, amt, cltv, False)
    # the final hop: constraints still apply, relay not needed
    assert blinded_hop(EncryptedData(path_id=b"x", allowed_features=b""), p, 1, 1, True) is None


# --- blinded-onion-message-onion-test.json ---------------------------------------


def test_onion_message_dave_path() -> None:
    hops = OMSG["generate"]["hops"]
    for hop in hops:
        assert _tlvs_to_data(hop["tlvs"]).encode().hex() == hop["encrypted_data_tlv"], hop["alias"]
    # Dave's path Bob -> Carol -> Dave
    nodes = [coincurve.PrivateKey(H(OMSG["decrypt"]["hops"][i]["privkey"])).public_key.format() for i in (1, 2, 3)]
    dave = create_blinded_path(H(hops[1]["path_key_secret"]),
                               [(n, H(hops[i]["encrypted_data_tlv"])) for n, i in zip(nodes, (1, 2, 3))])
    for sec, hop in zip(dave.secrets, hops[1:]):
        assert sec.shared_secret.hex() == hop["ss"], hop["alias"]
        assert sec.path_key.hex() == hop["E"]
        assert sec.blinded_node_id.hex() == hop["blinded_node_id"]
        assert sec.encrypted_data.hex() == hop["encrypted_recipient_data"]
    route = OMSG["route"]
    assert [h.blinded_node_id.hex() for h in dave.path.hops] == [h["blinded_node_id"] for h in route["hops"][1:]]


def _dave_path() -> BlindedPath:
    from common.blindedpath import BlindedHop
    r = OMSG["route"]["hops"]
    bob = coincurve.PrivateKey(H(OMSG["decrypt"]["hops"][1]["privkey"])).public_key.format()
    return BlindedPath(bob, H(OMSG["generate"]["hops"][1]["E"]),
                       tuple(BlindedHop(H(h["blinded_node_id"]), H(h["encrypted_recipient_data"])) for h in r[1:]))


def test_onion_message_build_matches_vector() -> None:
    g = OMSG["generate"]
    alice = coincurve.PrivateKey(H(OMSG["decrypt"]["hops"][0]["privkey"])).public_key.format()
    # Alice's prefix hop as the vector encodes it: next node Bob, and Dave's first key for Bob
    final = OnionMsgTlv(unknown={1: H(OMSG["onionmessage"]["unknown_tag_1"])})
    out = build_onion_message(H(g["session_key"]), H(g["hops"][0]["path_key_secret"]), [alice], _dave_path(), final)
    assert out.first_node_id == alice
    assert out.path_key.hex() == g["hops"][0]["E"]
    assert out.packet.hex() == OMSG["onionmessage"]["onion_message_packet"]
    assert encode_onion_message(out.path_key, out.packet).hex() == OMSG["decrypt"]["hops"][0]["onion_message"]


def test_onion_message_peel_every_hop() -> None:
    hops = OMSG["decrypt"]["hops"]
    schema = wire.bolt_schema()
    for i, hop in enumerate(hops):
        _, msg = schema.decode(H(hop["onion_message"]))
        res = peel_onion_message(msg["onion_message_packet"], msg["path_key"], ecdh_with(H(hop["privkey"])))
        if i + 1 < len(hops):
            assert isinstance(res, Forward), hop["alias"]
            assert res.next_node_id.hex() == hop["next_node_id"]
            assert encode_onion_message(res.path_key, res.packet).hex() == hops[i + 1]["onion_message"]
        else:
            assert isinstance(res, Final)
            assert res.payload.unknown == {1: H(hop["tlvs"]["unknown_tag_1"])}
            assert res.payload.encrypted_recipient_data.hex() == hop["tlvs"]["encrypted_recipient_data"]
            assert res.data.path_id.hex() == OMSG["generate"]["hops"][3]["tlvs"]["path_id"]
            assert res.path_secret == res.data.path_id


def _keys(n: int) -> list[coincurve.PrivateKey]:
    return [coincurve.PrivateKey(bytes([0x30 + i]) * 32) for i in range(n)]


def _walk(out, keys) -> tuple[int, Final]:
    """Deliver an outgoing message hop by hop; return (hops travelled, final)."""
    by_id = {k.public_key.format(): k for k in keys}
    node, path_key, packet = out.first_node_id, out.path_key, out.packet
    for n in range(20):
        res = peel_onion_message(packet, path_key, by_id[node].ecdh)
        if isinstance(res, Final):
            return n + 1, res
        node, path_key, packet = res.next_node_id, res.path_key, res.packet
    raise AssertionError("loop")


def test_onion_message_direct_and_via_path_with_reply() -> None:
    keys = _keys(5)
    ids = [k.public_key.format() for k in keys]
    # to a node id over a 3-hop route: the destination has no path_id
    n, fin = _walk(build_onion_message(b"\x01" * 32, b"\x02" * 32, ids[:3], None, OnionMsgTlv(unknown={77: b"x"})),
                   keys)
    assert n == 3 and fin.payload.unknown == {77: b"x"} and fin.path_secret is None
    # to a path made by node 4 (intro node 2), from node 0 through 1; with a reply path back to 0
    secret = b"\x55" * 32
    path = create_blinded_path(b"\x03" * 32, [(ids[2], EncryptedData(next_node_id=ids[3]).encode()),
                                              (ids[3], EncryptedData(next_node_id=ids[4]).encode()),
                                              (ids[4], EncryptedData(path_id=secret).encode())]).path
    reply = create_blinded_path(b"\x04" * 32, [(ids[1], EncryptedData(next_node_id=ids[0]).encode()),
                                               (ids[0], EncryptedData(path_id=b"\x66" * 32).encode())]).path
    out = build_onion_message(b"\x05" * 32, b"\x06" * 32, ids[:2], path,
                              OnionMsgTlv(reply_path=reply, invoice_request=b"\x00\x01\x02"))
    n, fin = _walk(out, keys)
    assert n == 5 and fin.path_secret == secret and fin.payload.invoice_request == b"\x00\x01\x02"
    assert fin.payload.reply_path == reply
    # the reply: from node 4 along the reply path (intro node 1)
    n, back = _walk(build_onion_message(b"\x07" * 32, b"\x08" * 32, [ids[4]], fin.payload.reply_path,
                                        OnionMsgTlv(invoice=b"\x09")), keys)
    assert n == 3 and back.path_secret == b"\x66" * 32 and back.payload.invoice == b"\x09"


def test_onion_message_forwarding_rules() -> None:
    keys = _keys(3)
    ids = [k.public_key.format() for k in keys]

    def first_hop(data: EncryptedData, extra: dict | None = None) -> object:
        path = create_blinded_path(b"\x03" * 32, [(ids[0], data.encode()), (ids[1], b"")]).path
        tlv0 = OnionMsgTlv(encrypted_recipient_data=path.hops[0].encrypted_recipient_data, unknown=extra or {})
        tlv1 = OnionMsgTlv(encrypted_recipient_data=path.hops[1].encrypted_recipient_data)
        packet = create_onion(b"\x01" * 32, [(path.hops[0].blinded_node_id, tlv0.encode()),
                                             (path.hops[1].blinded_node_id, tlv1.encode())], b"").packet
        return peel_onion_message(packet, path.first_path_key, keys[0].ecdh)

    assert isinstance(first_hop(EncryptedData(next_node_id=ids[1])), Forward)
    assert first_hop(EncryptedData(short_channel_id=42)).short_channel_id == 42
    for bad, extra in [(EncryptedData(), None),                                  # no next hop
                       (EncryptedData(next_node_id=ids[1], path_id=b"x"), None),  # path_id while forwarding
                       (EncryptedData(next_node_id=ids[1], allowed_features=b"\x02"), None),
                       (EncryptedData(next_node_id=ids[1]), {1: b"x"})]:          # another field
        with pytest.raises(OnionMessageError):
            first_hop(bad, extra)
    # wrong path key: the onion does not even decrypt
    path = create_blinded_path(b"\x03" * 32, [(ids[0], b"")]).path
    packet = create_onion(b"\x01" * 32, [(path.hops[0].blinded_node_id,
                                          OnionMsgTlv(encrypted_recipient_data=path.hops[0].encrypted_recipient_data)
                                          .encode())], b"").packet
    with pytest.raises(OnionMessageError):
        peel_onion_message(packet, ids[2], keys[0].ecdh)
    assert isinstance(peel_onion_message(packet, path.first_path_key, keys[0].ecdh), Final)


def test_dummy_hops_and_padding_payment() -> None:
    """A recipient adds two dummy hops after itself: a sender cannot tell; the
    recipient peels them itself (its own id as next node) and reaches its path_id."""
    from common.blindedpath import dummy_hop, pad_to_same_length
    keys = _keys(2)
    intro, me = (k.public_key.format() for k in keys)
    relay = PaymentRelay(40, 100, 1000)
    datas = [EncryptedData(next_node_id=me, payment_relay=relay,
                           payment_constraints=PaymentConstraints(10_000, 1)),
             dummy_hop(me, True), dummy_hop(me, True), EncryptedData(path_id=b"\x42" * 32)]
    tlvs = pad_to_same_length(datas)
    assert len({len(t) for t in tlvs}) == 1
    built = create_blinded_path(b"\x09" * 32, list(zip([intro, me, me, me], tlvs)))
    assert len({len(h.encrypted_recipient_data) for h in built.path.hops}) == 1
    info = aggregate_payinfo([relay, PaymentRelay(0, 0, 0), PaymentRelay(0, 0, 0)], 18)
    assert info == aggregate_payinfo([relay], 18)
    amount, final_cltv = 50_000, 500
    onion = create_onion(b"\x0a" * 32, blinded_payloads(built.path, amount, final_cltv), b"\x00" * 32).packet
    # the introduction point
    peeled = peel_onion_with_privkey(onion, b"\x00" * 32, keys[0].secret)
    p = decode_payload(peeled.payload)
    ss = keys[0].ecdh(p.current_path_key)
    hop = read_encrypted_data(p.current_path_key, ss, p.encrypted_recipient_data)
    amt = amount + payinfo_fee(info, amount)
    fwd = blinded_hop(hop.data, p, amt, final_cltv + info.cltv_expiry_delta, peeled.is_final)
    assert fwd.next_node_id == me and fwd.amount_msat == amount and fwd.cltv_expiry == final_cltv + 18
    # the recipient, three times
    packet, path_key, seen = peeled.next_packet, hop.next_path_key, 0
    while True:
        peeled = peel_onion_with_privkey(packet, b"\x00" * 32, keys[1].secret, path_key=path_key)
        p = decode_payload(peeled.payload)
        check_payload(p, is_final=peeled.is_final, path_key_in_htlc=True)
        hop = read_encrypted_data(path_key, peeled.path_key_shared_secret, p.encrypted_recipient_data)
        f = blinded_hop(hop.data, p, fwd.amount_msat, fwd.cltv_expiry, peeled.is_final)
        if peeled.is_final:
            break
        assert f.next_node_id == me and f.amount_msat == fwd.amount_msat and f.cltv_expiry == fwd.cltv_expiry
        packet, path_key, seen = peeled.next_packet, hop.next_path_key, seen + 1
    assert seen == 2 and hop.data.path_id == b"\x42" * 32
    assert p.amt_to_forward == amount and p.outgoing_cltv_value == final_cltv
