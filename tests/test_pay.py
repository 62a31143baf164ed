"""Payments between real nodes: sendpay on hand-built routes, failures with
the right codes, the waitanyinvoice queue, held HTLCs, MPP, restarts."""
import concurrent.futures
import os
import signal
from pathlib import Path

import pytest
from pyln.client import RpcError

from node_factory import sync_blockheight, wait_for
from test_channels import channel, fund, open_channel, three_in_a_line

PLUGINS = Path(__file__).parent / "plugins"


def pay_route(l1, l2, amount, delay=18):
    return [{"id": l2.node_id, "channel": channel(l1, l2)["short_channel_id"], "amount_msat": amount,
             "delay": delay}]


def test_failures_have_the_right_codes(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)

    def attempt(route, ph, secret):
        l1.rpc.sendpay(route, ph, payment_secret=secret)
        with pytest.raises(RpcError) as e:
            l1.rpc.waitsendpay(ph, 30)
        return e.value.error
    inv = l2.rpc.invoice(100_000, "f1", "d")
    # unknown hash
    err = attempt(pay_route(l1, l2, 100_000), os.urandom(32).hex(), inv["payment_secret"])
    assert err["code"] == 203 and err["data"]["failcodename"] == "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
    # wrong payment secret
    err = attempt(pay_route(l1, l2, 100_000), inv["payment_hash"], "22" * 32)
    assert err["data"]["failcode"] == 0x400F
    # too little
    err = attempt(pay_route(l1, l2, 99_000), inv["payment_hash"], inv["payment_secret"])
    assert err["data"]["failcode"] == 0x400F
    # cltv too close to the tip (the invoice wants 18 blocks)
    err = attempt(pay_route(l1, l2, 100_000, delay=3), inv["payment_hash"], inv["payment_secret"])
    assert err["data"]["failcode"] == 0x400F
    # expired invoice
    exp = l2.rpc.invoice(100_000, "f2", "d", expiry=1)
    import time
    time.sleep(2)
    with pytest.raises(RpcError) as e:
        l1.rpc.pay(exp["bolt11"])
    assert e.value.error["code"] == 207
    err = attempt(pay_route(l1, l2, 100_000), exp["payment_hash"], exp["payment_secret"])
    assert err["data"]["failcode"] == 0x400F
    # finally the right payment works; repeating it is a no-op (Core
    # Lightning: "repeat payments are NOPs"), another amount is refused
    l1.rpc.sendpay(pay_route(l1, l2, 100_000), inv["payment_hash"], payment_secret=inv["payment_secret"], groupid=9)
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30, groupid=9)["status"] == "complete"
    again = l1.rpc.sendpay(pay_route(l1, l2, 100_000), inv["payment_hash"], payment_secret=inv["payment_secret"])
    assert again["status"] == "complete"
    with pytest.raises(RpcError) as e:
        l1.rpc.sendpay(pay_route(l1, l2, 120_000), inv["payment_hash"], payment_secret=inv["payment_secret"])
    assert e.value.error["code"] == 201
    # nothing stuck: no HTLC left, balances moved by exactly one payment
    wait_for(lambda: not channel(l1, l2)["htlcs"] and not channel(l2, l1)["htlcs"])
    assert channel(l2, l1)["to_us_msat"] == 100_000


def test_waitanyinvoice_queue_under_concurrent_payments(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    invs = [l2.rpc.invoice(10_000 + i, f"q{i}", "queue") for i in range(20)]

    def pay(inv):
        return l1.rpc.pay(inv["bolt11"])["status"]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(pay, invs))
    assert results == ["complete"] * 20
    seen = []
    idx = 0
    while len(seen) < 20:
        r = l2.rpc.waitanyinvoice(idx, 10)
        assert r["pay_index"] == idx + 1
        idx = r["pay_index"]
        seen.append(r["label"])
    assert sorted(seen) == sorted(f"q{i}" for i in range(20))
    with pytest.raises(RpcError) as e:
        l2.rpc.waitanyinvoice(idx, 1)
    assert e.value.error["code"] == 904


def test_hand_built_route_through_a_forwarder(node_factory):
    l1, l2, l3 = three_in_a_line(node_factory)
    l2.rpc.setchannel(channel(l2, l3)["short_channel_id"], feebase=2000, feeppm=1000, enforcedelay=0)
    inv = l3.rpc.invoice(500_000, "fw", "forward")
    fee = 2000 + 500_000 * 1000 // 1_000_000
    route = [{"id": l2.node_id, "channel": channel(l1, l2)["short_channel_id"], "amount_msat": 500_000 + fee,
              "delay": 18 + 34},
             {"id": l3.node_id, "channel": channel(l2, l3)["short_channel_id"], "amount_msat": 500_000, "delay": 18}]
    l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30)["status"] == "complete"
    fw = l2.rpc.listforwards()["forwards"]
    assert len(fw) == 1 and fw[0]["status"] == "settled" and fw[0]["fee_msat"] == fee
    assert fw[0]["in_channel"] == channel(l2, l1)["short_channel_id"]
    assert fw[0]["out_channel"] == channel(l2, l3)["short_channel_id"]
    assert l2.rpc.getinfo()["fees_collected_msat"] == fee
    # one msat too little fee: refused at l2 with fee_insufficient
    inv2 = l3.rpc.invoice(500_000, "fw2", "forward")
    route[0]["amount_msat"] -= 1
    l1.rpc.sendpay(route, inv2["payment_hash"], payment_secret=inv2["payment_secret"])
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(inv2["payment_hash"], 30)
    assert e.value.error["code"] == 204 and e.value.error["data"]["failcodename"] == "WIRE_FEE_INSUFFICIENT"
    assert e.value.error["data"]["erring_node"] == l2.node_id


def test_held_htlc_released_later_by_a_plugin(node_factory):
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"plugin": str(PLUGINS / "hold_htlcs.py")})
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    inv = l2.rpc.invoice(50_000, "held", "held")
    l1.rpc.sendpay(pay_route(l1, l2, 50_000), inv["payment_hash"], payment_secret=inv["payment_secret"])
    wait_for(lambda: l2.rpc.held()["held"] == 1)
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(inv["payment_hash"], 2)
    assert e.value.error["code"] == 200   # still in progress: the HTLC is held
    assert l2.rpc.listinvoices("held")["invoices"][0]["status"] == "unpaid"
    assert l2.rpc.release()["released"] == 1
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30)["status"] == "complete"
    # and a plugin can fail one
    inv2 = l2.rpc.invoice(50_000, "held2", "held")
    l1.rpc.sendpay(pay_route(l1, l2, 50_000), inv2["payment_hash"], payment_secret=inv2["payment_secret"])
    wait_for(lambda: l2.rpc.held()["held"] == 1)
    l2.rpc.release("fail")
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(inv2["payment_hash"], 30)
    assert e.value.error["data"]["failcode"] == 0x2002


def test_mpp_in_two_parts(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    inv = l2.rpc.invoice(300_000, "mpp", "two parts")
    for partid, amt in ((1, 100_000), (2, 200_000)):
        route = pay_route(l1, l2, amt)
        l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"], partid=partid,
                       amount_msat=300_000)
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30, partid=1)["status"] == "complete"
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30, partid=2)["status"] == "complete"
    got = l2.rpc.listinvoices("mpp")["invoices"][0]
    assert got["status"] == "paid" and got["amount_received_msat"] == 300_000


def _chacha20_stream_not_in_place(key: bytes, dest) -> None:
    """pyln-proto's chacha20_stream encrypts with update_into(dest, dest),
    which cryptography >= 46 refuses ("data and buf must not overlap"): the
    same stream, written back after the fact."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    enc = Cipher(algorithms.ChaCha20(key, b"\x00" * 16), None).encryptor()
    dest[:] = enc.update(bytes(dest))


def test_onion_checked_by_pyln_proto_and_paid_with_sendonion(node_factory, monkeypatch):
    """Our createonion's packet, peeled by pyln-proto (independent code) with
    the payee's key, then paid with sendonion: our peeling must accept it."""
    import pyln.proto.onion
    from pyln.proto.onion import RoutingOnion, TlvPayload
    from pyln.proto.primitives import PrivateKey
    # only the cipher primitive is replaced; the peeling logic stays pyln-proto's
    monkeypatch.setattr(pyln.proto.onion, "chacha20_stream", _chacha20_stream_not_in_place)
    key = "11" * 32
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"dev-force-privkey": key})
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    inv = l2.rpc.invoice(70_000, "onion", "onion")
    height = l1.rpc.getinfo()["blockheight"]
    from common.onion_payload import HopPayload, PaymentData, encode_payload
    from wire import encode_bigsize
    payload = encode_payload(HopPayload(amt_to_forward=70_000, outgoing_cltv_value=height + 1 + 18,
                                        payment_data=PaymentData(bytes.fromhex(inv["payment_secret"]), 70_000)))
    o = l1.rpc.createonion([{"pubkey": l2.node_id, "payload": (encode_bigsize(len(payload)) + payload).hex()}],
                           inv["payment_hash"])
    peeled, nxt = RoutingOnion.from_hex(o["onion"]).unwrap(PrivateKey(bytes.fromhex(key)),
                                                            bytes.fromhex(inv["payment_hash"]))
    assert nxt is None and isinstance(peeled, TlvPayload)
    assert peeled.to_bytes(include_prefix=False) == payload
    l1.rpc.call("sendonion", {"onion": o["onion"], "first_hop": {"id": l2.node_id, "amount_msat": 70_000,
                                                                "delay": 18},
                              "payment_hash": inv["payment_hash"], "shared_secrets": o["shared_secrets"]})
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30)["status"] == "complete"


def test_kill9_and_restart_in_the_middle_of_a_multihop_payment(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    l3 = node_factory.get_node(options={"plugin": str(PLUGINS / "hold_htlcs.py")})
    for n in (l1, l2, l3):
        n.allow_broken_log = True    # kill -9 mid-payment: the peers log the lost link as broken
        n.may_fail = True
    fund(l1)
    fund(l2)
    open_channel(l1, l2, 1_000_000)
    open_channel(l2, l3, 1_000_000)
    sync_blockheight(l1, l2, l3)
    inv = l3.rpc.invoice(40_000, "k9", "kill")
    fee = 1000 + 40_000 * 10 // 1_000_000
    route = [{"id": l2.node_id, "channel": channel(l1, l2)["short_channel_id"], "amount_msat": 40_000 + fee,
              "delay": 18 + 34},
             {"id": l3.node_id, "channel": channel(l2, l3)["short_channel_id"], "amount_msat": 40_000, "delay": 18}]
    l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    wait_for(lambda: l3.rpc.held()["held"] == 1)
    # the forwarder dies hard with the HTLC in flight on both sides, and comes back
    l2.proc.send_signal(signal.SIGKILL)
    l2.proc.wait()
    l2.start()
    l3.rpc.release()
    assert l1.rpc.waitsendpay(inv["payment_hash"], 90)["status"] == "complete"
    assert l3.rpc.listinvoices("k9")["invoices"][0]["status"] == "paid"
    # the payer restarts: its record of the payment is intact
    l1.restart()
    assert l1.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "complete"
    wait_for(lambda: l2.rpc.listforwards()["forwards"] and l2.rpc.listforwards()["forwards"][0]["status"] == "settled")


def test_payment_notifications_on_payer_forwarder_and_payee(node_factory):
    opts = {"plugin": str(PLUGINS / "recorder.py")}
    l1, l2, l3 = three_in_a_line(node_factory, opts=opts)
    opened = l2.rpc.recorded("channel_opened")["events"]
    assert {e["payload"]["id"] for e in opened} == {l1.node_id}   # l2 was the fundee only of l1's channel
    assert any(e["payload"]["new_state"] == "CHANNELD_NORMAL" for e in l1.rpc.recorded("channel_state_changed")["events"])
    inv = l3.rpc.invoice(300_000, "note", "notifications")
    fee = 1000 + 300_000 // 100_000   # l2's default policy: 1 sat base, 10 ppm
    route = [{"id": l2.node_id, "channel": channel(l1, l2)["short_channel_id"], "amount_msat": 300_000 + fee,
              "delay": 18 + 34},
             {"id": l3.node_id, "channel": channel(l2, l3)["short_channel_id"], "amount_msat": 300_000, "delay": 18}]
    l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30)["status"] == "complete"

    ok = wait_for(lambda: l1.rpc.recorded("sendpay_success")["events"])
    assert ok[0]["payload"]["payment_hash"] == inv["payment_hash"]
    assert ok[0]["payload"]["status"] == "complete"
    assert ok[0]["payload"]["amount_msat"] == 300_000
    fw = wait_for(lambda: [e["payload"] for e in l2.rpc.recorded("forward_event")["events"]
                           if e["payload"]["status"] == "settled"])
    assert fw[0]["payment_hash"] == inv["payment_hash"]
    assert fw[0]["in_channel"] == channel(l2, l1)["short_channel_id"]
    assert fw[0]["out_channel"] == channel(l2, l3)["short_channel_id"]
    assert fw[0]["in_msat"] - fw[0]["out_msat"] == fw[0]["fee_msat"] > 0
    assert [e["payload"]["status"] for e in l2.rpc.recorded("forward_event")["events"]] == ["offered", "settled"]
    assert [e["payload"]["label"] for e in l3.rpc.recorded("invoice_creation")["events"]] == ["note"]
    paid = wait_for(lambda: l3.rpc.recorded("invoice_payment")["events"])
    assert paid[0]["payload"]["label"] == "note"

    # a failure: unknown payment hash at l3, reported to l1 and to l2's forward_event
    bad = "42" * 32
    l1.rpc.sendpay(route, bad, payment_secret=inv["payment_secret"])
    with pytest.raises(RpcError):
        l1.rpc.waitsendpay(bad, 30)
    fail = wait_for(lambda: l1.rpc.recorded("sendpay_failure")["events"])
    assert fail[0]["payload"]["data"]["payment_hash"] == bad
    assert fail[0]["payload"]["code"] == 203   # PAY_DESTINATION_PERM_FAIL: the final node refused
    assert fail[0]["payload"]["data"]["failcodename"] == "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
    wait_for(lambda: [e for e in l2.rpc.recorded("forward_event")["events"] if e["payload"]["status"] == "failed"])
    assert len(l1.rpc.recorded("sendpay_success")["events"]) == 1


def test_channel_update_from_an_onion_error_is_checked():
    """pay only uses a channel_update from an onion error if it is signed by
    the erring node, for the channel that failed, on our chain; with or
    without the type prefix."""
    from coincurve import PrivateKey

    from bitcoin.hashes import hash256
    from bitcoin.networks import network_by_name
    from common.scid import ShortChannelId
    from lightningd.pay_command import policy_from_error
    from wire import bolt_schema
    chain = network_by_name("regtest").chain_hash
    key = PrivateKey(bytes([5] * 32))
    node = key.public_key.format().hex()
    scid = ShortChannelId.parse("104x2x0")
    fields = {"signature": bytes(64), "chain_hash": chain, "short_channel_id": scid.to_bytes(),
              "timestamp": 1_700_000_000, "message_flags": 1, "channel_flags": 1, "cltv_expiry_delta": 40,
              "htlc_minimum_msat": 1, "fee_base_msat": 20_000, "fee_proportional_millionths": 100,
              "htlc_maximum_msat": 10**9}
    unsigned = bolt_schema().encode("channel_update", fields)
    sig = key.sign_recoverable(hash256(unsigned[66:]), hasher=None)[:64]
    raw = unsigned[:2] + sig + unsigned[66:]
    pol = policy_from_error(raw, node, "104x2x0", chain)
    assert pol == {"scid": scid.to_int(), "direction": 1, "fee_base_msat": 20_000,
                   "fee_proportional_millionths": 100, "cltv_expiry_delta": 40, "htlc_minimum_msat": 1,
                   "htlc_maximum_msat": 10**9, "enabled": True}
    assert policy_from_error(raw[2:], node, "104x2x0", chain) == pol            # LND leaves the type out
    other = PrivateKey(bytes([6] * 32)).public_key.format().hex()
    assert policy_from_error(raw, other, "104x2x0", chain) is None             # not the erring node's
    assert policy_from_error(raw, node, "104x2x1", chain) is None              # another channel
    assert policy_from_error(raw, node, "104x2x0", bytes(32)) is None          # another chain
    tampered = raw[:-1] + b"\x01"
    assert policy_from_error(tampered, node, "104x2x0", chain) is None
    assert policy_from_error(b"\x01\x02junk", node, "104x2x0", chain) is None


def test_keysend_refused_to_a_node_announcing_unknown_even_features(node_factory):
    """BOLT 7 (node_announcement receiver): unknown even `features` bits:
    "Unless paying a BOLT 11 invoice which does not have the same bit(s)
    set, MUST NOT attempt to send payments _to_ the node".  l2 announces
    bit 202 (a plugin's node feature): a keysend to it is refused before any
    HTLC leaves; its invoice (without the bit) is paid."""
    from common.features import bits_from_features
    l1, l2 = node_factory.get_nodes(2, opts=[{}, {"plugin": str(PLUGINS / "even_node_feature.py")}])
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    l1.chain.mine(3)                     # 6 confirmations: the channel and its nodes are announced

    def announced_features() -> set[int] | None:
        nodes = l1.rpc.listnodes(l2.node_id)["nodes"]
        return bits_from_features(bytes.fromhex(nodes[0]["features"])) if nodes and "features" in nodes[0] else None
    wait_for(lambda: announced_features() is not None)
    assert 202 in announced_features()
    with pytest.raises(RpcError) as e:
        l1.rpc.keysend(l2.node_id, 50_000)
    assert e.value.error["code"] == 205 and "option_unknown_202/even" in e.value.error["message"]
    assert l1.rpc.listsendpays()["payments"] == []
    inv = l2.rpc.invoice(50_000, "with-invoice", "no even bit in it")
    assert 202 not in bits_from_features(bytes.fromhex(l1.rpc.decode(inv["bolt11"]).get("features", "")))
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"


def test_keysend_extratlvs_and_routehints(node_factory):
    """keysend's extratlvs (odd records for the final payload, which the
    recipient's htlc_accepted hook sees) and routehints (reaching l3 behind
    a private channel the gossip does not show), as Core Lightning."""
    from common.onion_payload import decode_payload
    from wire import decode_bigsize
    l1, l2, l3 = node_factory.get_nodes(3, opts=[{}, {}, {"plugin": str(PLUGINS / "onion_payloads.py")}])
    fund(l1)
    fund(l2)
    open_channel(l1, l2, 1_000_000)
    open_channel(l2, l3, 1_000_000, announce=False)
    sync_blockheight(l1, l2, l3)
    scid = channel(l2, l3)["alias"]["local"]            # (a private channel is used by its alias)
    with pytest.raises(RpcError) as e:
        l1.rpc.keysend(l3.node_id, 10_000, retry_for=5)
    assert e.value.error["code"] == 205                      # no route without the hint
    hint = [[{"id": l2.node_id, "scid": scid, "feebase": 1, "feeprop": 10, "expirydelta": 6}]]
    r = l1.rpc.call("keysend", {"destination": l3.node_id, "amount_msat": 10_000, "routehints": hint,
                                "extratlvs": {"7629169": "7b7d", "65537": "00ff"}})
    assert r["status"] == "complete" and r["amount_msat"] == 10_000
    raw = bytes.fromhex(l3.rpc.payloads()["payloads"][-1])
    n, pos = decode_bigsize(raw)            # the hook's payload has its length prefix, as Core Lightning's
    assert pos + n == len(raw)
    payload = decode_payload(raw[pos:])
    assert payload.unknown_odd == {7629169: b"\x7b\x7d", 65537: b"\x00\xff"}
    assert payload.keysend_preimage == bytes.fromhex(r["payment_preimage"])
    # the hook may continue with another payload: one with an unknown even record fails the HTLC
    unknown_even = bytes([0xff]) + (2**33).to_bytes(8, "big") + b"\x00"          # past every type in it
    l3.rpc.call("replace_payload", {"payload": (raw[pos:] + unknown_even).hex()})
    with pytest.raises(RpcError) as e:
        l1.rpc.call("keysend", {"destination": l3.node_id, "amount_msat": 10_000, "routehints": hint})
    assert e.value.error["data"]["failcodename"] == "WIRE_INVALID_ONION_PAYLOAD"
    for bad in ({"7629168": "00"}, {"x": "00"}, {"7629169": "zz"}, ["7629169"]):
        with pytest.raises(RpcError) as e:
            l1.rpc.call("keysend", {"destination": l3.node_id, "amount_msat": 10_000, "extratlvs": bad})
        assert e.value.error["code"] == -32602 and e.value.error["message"].startswith("extratlvs: ")
    with pytest.raises(RpcError) as e:
        l1.rpc.call("keysend", {"destination": l3.node_id, "amount_msat": 10_000, "routehints": [[{"id": "02"}]]})
    assert e.value.error["code"] == -32602 and "routehints[0][0]" in e.value.error["message"]


def test_keysend_paid_without_an_invoice(node_factory):
    """keysend: l1 picks the preimage and puts it in the onion (type
    5482373484); l2 makes an invoice for it on arrival (label keysend-...),
    which waitanyinvoice hands out like any other.  A keysend whose preimage
    does not match the hash, or for a hash that already has an invoice, is
    refused with incorrect_or_unknown_payment_details."""
    from bitcoin.hashes import sha256
    from common.onion_payload import HopPayload, encode_payload
    from wire import encode_bigsize
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    r = l1.rpc.keysend(l2.node_id, 123_456)
    assert r["status"] == "complete" and r["amount_msat"] == 123_456 and r["destination"] == l2.node_id
    assert sha256(bytes.fromhex(r["payment_preimage"])).hex() == r["payment_hash"]
    paid = l2.rpc.waitanyinvoice(0, 30)
    assert paid["label"].startswith("keysend-") and paid["status"] == "paid"
    assert paid["payment_hash"] == r["payment_hash"] and paid["amount_received_msat"] == 123_456
    assert paid["description"] == "keysend"
    assert l1.rpc.listpays(payment_hash=r["payment_hash"])["pays"][0]["status"] == "complete"

    height = l1.rpc.getinfo()["blockheight"]

    def keysend_onion(preimage, payment_hash):
        payload = encode_payload(HopPayload(amt_to_forward=50_000, outgoing_cltv_value=height + 1 + 22,
                                            keysend_preimage=preimage))
        o = l1.rpc.createonion([{"pubkey": l2.node_id, "payload": (encode_bigsize(len(payload)) + payload).hex()}],
                               payment_hash)
        l1.rpc.call("sendonion", {"onion": o["onion"], "payment_hash": payment_hash,
                                  "first_hop": {"id": l2.node_id, "amount_msat": 50_000, "delay": 22},
                                  "shared_secrets": o["shared_secrets"]})
        with pytest.raises(RpcError) as e:
            l1.rpc.waitsendpay(payment_hash, 30)
        return e.value.error["data"]["failcodename"]
    assert keysend_onion(os.urandom(32), os.urandom(32).hex()) == "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
    pre = os.urandom(32)
    l2.rpc.invoice(50_000, "existing", "existing", preimage=pre.hex())
    assert keysend_onion(pre, sha256(pre).hex()) == "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
    assert len(l2.rpc.listinvoices()["invoices"]) == 2          # no invoice made for either
