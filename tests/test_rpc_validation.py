"""RPC parameter checking and payment bookkeeping against Core Lightning's
codes: bad parameters of pay/getroute are -32602 (never an internal error
or a routing error), sendonion shares sendpay's duplicate checks (200/201, an
exact repeat of a completed payment answered with it),
and setchannel's htlcmin/htlcmax are enforced on forwards."""
import time
from pathlib import Path

from pyln.client import RpcError

from node_factory import wait_for
from rpc_errors import assert_invalid, rpc_error
from test_channels import channel, fund, open_channel, three_in_a_line

PLUGINS = Path(__file__).parent / "plugins"
BAD_ID = "02" + "00" * 32   # well-formed hex, but no point on the curve has x = 0




def test_pay_and_getroute_bad_params_are_invalid_params(node_factory):
    """No channels at all: every bad parameter is -32602 before any routing,
    and the same calls with good parameters get as far as paying: 215, our
    channels cannot spend it (Core Lightning's pay checks that first)."""
    l1, l2 = node_factory.get_nodes(2)
    inv = l2.rpc.invoice(100_000, "v1", "validation")["bolt11"]
    anyamount = l2.rpc.invoice("any", "v2", "validation")["bolt11"]

    def pay(**kw):
        return l1.rpc.call("pay", dict({"bolt11": inv, "retry_for": 2}, **kw))

    for name, bad in (("maxfeepercent", "abc"), ("maxfeepercent", -1), ("maxfeepercent", [1]),
                      ("maxfeepercent", {"a": 1}), ("maxfeepercent", True), ("maxfeepercent", "nan"),
                      ("riskfactor", "abc"), ("riskfactor", -1), ("retry_for", "abc"), ("retry_for", -1),
                      ("retry_for", 1.5), ("maxdelay", "abc"), ("maxdelay", -5), ("exemptfee", "abc"),
                      ("exemptfee", -1), ("maxfee", "abc"), ("maxfee", "1.5msat"), ("exclude", "1x1x1/0"),
                      ("exclude", ["abc"]), ("exclude", [123]), ("exclude", [{"scid": "1x1x1"}]),
                      ("exclude", ["1x1x1"]), ("exclude", ["1x1x1/2"]), ("exclude", ["1x1x1/0", BAD_ID]),
                      ("partial_msat", "abc"), ("label", 5)):
        err = assert_invalid(pay, name=name, **{name: bad})
        assert "Internal error" not in err["message"]
    # the offending array element is named
    assert "'abc'" in assert_invalid(pay, exclude=["1x1x1/0", "abc"])["message"]
    assert_invalid(pay, name="amount_msat", bolt11=anyamount, amount_msat="abc")
    assert_invalid(pay, name="amount_msat", bolt11=anyamount)                # required
    assert_invalid(pay, name="amount_msat", amount_msat=1000)               # unnecessary
    assert_invalid(pay, name="partial_msat", partial_msat=100_001)
    # maxfee excludes maxfeepercent and exemptfee (Core Lightning)
    assert_invalid(pay, name="maxfee", maxfee=1000, maxfeepercent=1)
    assert_invalid(pay, name="maxfee", maxfee=1000, exemptfee=1000)
    # good parameters (fractions, numbers as strings, node ids and channel
    # directions to exclude) get as far as paying: nothing to spend here
    for kw in ({}, {"maxfeepercent": "1.5", "riskfactor": 0.5}, {"maxfeepercent": 0, "exemptfee": "1sat"},
               {"maxfee": "2sat"}, {"exclude": ["1x1x1/0", "103x2x1/1", l2.node_id.upper()]},
               {"maxdelay": 100, "retry_for": "2"}, {"partial_msat": 50_000}):
        err = rpc_error(pay, **kw)
        assert err["code"] == 215 and "spendable=0msat" in err["message"], (kw, err)
    err = rpc_error(pay, bolt11=anyamount, amount_msat="10sat")
    assert err["code"] == 215 and "payment=10000msat" in err["message"], err

    def getroute(**kw):
        return l1.rpc.call("getroute", dict({"id": l2.node_id, "amount_msat": 1000, "riskfactor": 1}, **kw))

    for name, bad in (("id", "abc"), ("id", BAD_ID), ("id", 5), ("amount_msat", "abc"), ("amount_msat", -1),
                      ("amount_msat", "1.5msat"), ("riskfactor", "abc"), ("riskfactor", -1), ("riskfactor", [1]),
                      ("cltv", "abc"), ("cltv", -1), ("fromid", "xyz"), ("fuzzpercent", "abc"),
                      ("fuzzpercent", -5), ("exclude", "103x1x0/0"), ("exclude", ["abc"]), ("exclude", [{}]),
                      ("exclude", ["103x1x0"]), ("maxhops", "abc"), ("maxhops", -1), ("maxhops", 2.5)):
        err = assert_invalid(getroute, name=name, **{name: bad})
        assert "Internal error" not in err["message"]
    # good parameters, no route: 205 (fuzzpercent above 100 is accepted, as
    # Core Lightning accepts any non-negative value)
    for kw in ({}, {"riskfactor": 0.5, "fuzzpercent": 150}, {"riskfactor": "2", "fuzzpercent": "0.5"},
               {"exclude": ["103x1x0/1", l2.node_id], "maxhops": 3, "cltv": 18}):
        err = rpc_error(getroute, **kw)
        assert err["code"] == 205, (kw, err)


def onion_for(l1, l2, inv, amount):
    """createonion for a one-hop payment of `inv` to l2."""
    from common.onion_payload import HopPayload, PaymentData, encode_payload
    from wire import encode_bigsize
    height = l1.rpc.getinfo()["blockheight"]
    payload = encode_payload(HopPayload(amt_to_forward=amount, outgoing_cltv_value=height + 1 + 18,
                                        payment_data=PaymentData(bytes.fromhex(inv["payment_secret"]), amount)))
    return l1.rpc.createonion([{"pubkey": l2.node_id, "payload": (encode_bigsize(len(payload)) + payload).hex()}],
                              inv["payment_hash"])


def test_sendonion_refuses_duplicates_like_sendpay(node_factory):
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"plugin": str(PLUGINS / "hold_htlcs.py")})
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    inv = l2.rpc.invoice(50_000, "dup", "duplicates")
    ph = inv["payment_hash"]
    o = onion_for(l1, l2, inv, 50_000)
    hop = {"id": l2.node_id, "amount_msat": 50_000, "delay": 18}
    route = [dict(hop, channel=channel(l1, l2)["short_channel_id"])]

    def sendonion(**kw):
        return l1.rpc.call("sendonion", dict({"onion": o["onion"], "first_hop": hop, "payment_hash": ph,
                                              "shared_secrets": o["shared_secrets"]}, **kw))

    # bad parameters first: -32602, nothing recorded
    assert_invalid(sendonion, name="shared_secrets", shared_secrets=["zz"])
    assert_invalid(sendonion, name="shared_secrets", shared_secrets=["00" * 31])
    assert_invalid(sendonion, name="first_hop", first_hop={"id": l2.node_id, "amount_msat": 50_000})
    assert_invalid(sendonion, name="first_hop", first_hop=dict(hop, id=BAD_ID))
    assert_invalid(sendonion, name="first_hop", first_hop=dict(hop, amount_msat="abc"))
    assert_invalid(sendonion, name="onion", onion="00" * 100)
    assert_invalid(sendonion, name="onion", onion="01" + o["onion"][2:])                   # bad version
    assert_invalid(l1.rpc.sendpay, ["not a hop"], ph, name="route[0]")
    assert_invalid(l1.rpc.sendpay, [dict(route[0], delay="x")], ph, name="route[0]")
    assert l1.rpc.listsendpays(payment_hash=ph)["payments"] == []

    r = sendonion()
    assert r["status"] == "pending"
    wait_for(lambda: l2.rpc.held()["held"] == 1)
    # pending: the same part again, by sendonion or sendpay, is refused with
    # PAY_IN_PROGRESS; so is a parallel part, or another group
    err = rpc_error(sendonion)
    assert err["code"] == 200 and err["message"] == "Already have non-parallel payment in progress"
    err = rpc_error(l1.rpc.sendpay, route, ph, payment_secret=inv["payment_secret"])
    assert err["code"] == 200 and err["message"] == "Already have non-parallel payment in progress"
    err = rpc_error(sendonion, partid=1)
    assert err["code"] == 200 and err["message"] == "Already have non-parallel payment in progress"
    err = rpc_error(sendonion, groupid=7)
    assert err["code"] == 200 and "still in progress" in err["message"]
    # a different amount for the pending part: PAY_RHASH_ALREADY_USED
    err = rpc_error(sendonion, amount_msat=40_000)
    assert err["code"] == 201 and "Already pending with amount" in err["message"]
    # none of these sent an HTLC
    assert len(channel(l1, l2)["htlcs"]) == 1
    assert l2.rpc.held()["held"] == 1
    assert [p["status"] for p in l1.rpc.listsendpays(payment_hash=ph)["payments"]] == ["pending"]

    assert l2.rpc.release()["released"] == 1
    assert l1.rpc.waitsendpay(ph, 30)["status"] == "complete"
    # complete: an exact repeat is a no-op answered with the payment (as
    # Core Lightning), from either command; anything else PAY_RHASH_ALREADY_USED
    assert sendonion()["status"] == "complete"
    again = l1.rpc.sendpay(route, ph, payment_secret=inv["payment_secret"])
    assert again["status"] == "complete" and again["payment_hash"] == ph
    err = rpc_error(sendonion, amount_msat=40_000)
    assert err["code"] == 201 and "Already succeeded with amount" in err["message"]
    err = rpc_error(sendonion, partid=2)
    assert err["code"] == 201 and err["message"] == "Already succeeded other parts"
    wait_for(lambda: not channel(l1, l2)["htlcs"])
    assert len(l1.rpc.listsendpays(payment_hash=ph)["payments"]) == 1
    assert channel(l2, l1)["to_us_msat"] == 50_000


def test_setchannel_htlc_range_enforced_on_forwards(node_factory):
    l1, l2, l3 = three_in_a_line(node_factory)
    scid12 = channel(l1, l2)["short_channel_id"]
    scid23 = channel(l2, l3)["short_channel_id"]
    local = channel(l2, l3)["updates"]["local"]
    assert set(local) == {"htlc_minimum_msat", "htlc_maximum_msat", "cltv_expiry_delta", "fee_base_msat",
                          "fee_proportional_millionths"}
    assert local["htlc_maximum_msat"] == 1_000_000_000

    # parameter checks (Core Lightning: htlcmax < htlcmin is -1, feebase must fit in 32 bits)
    assert rpc_error(l2.rpc.setchannel, scid23, htlcmin=5000, htlcmax=4000)["code"] == -1
    assert_invalid(l2.rpc.setchannel, scid23, feebase=2 ** 32, name="feebase")
    assert_invalid(l2.rpc.setchannel, scid23, htlcmax="abc", name="htlcmax")
    r = l2.rpc.setchannel(scid23, htlcmax=2_000_000_000)["channels"][0]
    assert r["maximum_htlc_out_msat"] == 1_000_000_000 and "warning_htlcmax_too_high" in r

    r = l2.rpc.setchannel(scid23, htlcmin=2_000, htlcmax=100_000, enforcedelay=0)["channels"][0]
    assert (r["minimum_htlc_out_msat"], r["maximum_htlc_out_msat"]) == (2_000, 100_000)
    local = channel(l2, l3)["updates"]["local"]
    assert (local["htlc_minimum_msat"], local["htlc_maximum_msat"]) == (2_000, 100_000)
    assert (local["fee_base_msat"], local["fee_proportional_millionths"]) == (1000, 10)
    # the other channel keeps its own policy
    assert channel(l2, l1)["updates"]["local"]["htlc_maximum_msat"] == 1_000_000_000

    def forward(amount, label):
        inv = l3.rpc.invoice(amount, label, label)
        fee = 1000 + amount * 10 // 1_000_000
        route = [{"id": l2.node_id, "channel": scid12, "amount_msat": amount + fee, "delay": 18 + 34},
                 {"id": l3.node_id, "channel": scid23, "amount_msat": amount, "delay": 18}]
        l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
        return inv["payment_hash"]

    for amount, label in ((100_001, "above"), (1_999, "below")):
        err = rpc_error(l1.rpc.waitsendpay, forward(amount, label), 30)
        assert err["code"] == 204, err
        assert err["data"]["failcode"] == 0x1007 and err["data"]["failcodename"] == "WIRE_TEMPORARY_CHANNEL_FAILURE"
        assert err["data"]["erring_node"] == l2.node_id and err["data"]["erring_channel"] == scid23
    fw = l2.rpc.listforwards()["forwards"]
    assert [(f["status"], f["failreason"], f["out_channel"]) for f in fw] == \
        [("local_failed", "WIRE_TEMPORARY_CHANNEL_FAILURE", scid23)] * 2
    # both bounds are inclusive
    for amount, label in ((100_000, "max"), (2_000, "min")):
        assert l1.rpc.waitsendpay(forward(amount, label), 30)["status"] == "complete"
    assert [f["status"] for f in l2.rpc.listforwards()["forwards"]][2:] == ["settled", "settled"]
    wait_for(lambda: not channel(l1, l2)["htlcs"] and not channel(l2, l3)["htlcs"])

    # once announced, l1's getroute sees the new range: good parameters give
    # a route, or 205 when no channel can carry the amount
    l1.chain.mine(3)
    wait_for(lambda: [c["htlc_maximum_msat"] for c in l1.rpc.listchannels(scid23)["channels"]
                      if c["source"] == l2.node_id] == [100_000], timeout=90)
    route = l1.rpc.getroute(l3.node_id, 50_000, riskfactor=0.5, fuzzpercent=150)["route"]
    assert [(h["id"], h["channel"]) for h in route] == [(l2.node_id, scid12), (l3.node_id, scid23)]
    assert rpc_error(l1.rpc.getroute, l3.node_id, 100_001, 1)["code"] == 205
    assert rpc_error(l1.rpc.getroute, l3.node_id, 50_000, 1, exclude=[l2.node_id])["code"] == 205
    assert rpc_error(l1.rpc.getroute, l3.node_id, 50_000, 1, maxhops=1)["code"] == 205
    inv = l3.rpc.invoice(50_000, "pay", "pay")["bolt11"]
    assert rpc_error(l1.rpc.pay, inv, exclude=[f"{scid23}/{route[1]['direction']}"])["code"] == 205
    assert l1.rpc.pay(inv, riskfactor=0.5, maxfeepercent="2.5")["status"] == "complete"


def test_setchannel_enforcedelay_keeps_the_old_fee_for_a_while(node_factory):
    """Core Lightning's enforcedelay (600 s by default): after a fee change
    the previous fee is still accepted on forwards for that long, since the
    new channel_update takes time to reach payers; then it is refused."""
    l1, l2, l3 = three_in_a_line(node_factory)
    scid12, scid23 = channel(l1, l2)["short_channel_id"], channel(l2, l3)["short_channel_id"]

    def forward(fee_base, label):
        amount = 50_000
        inv = l3.rpc.invoice(amount, label, label)
        route = [{"id": l2.node_id, "channel": scid12, "amount_msat": amount + fee_base, "delay": 18 + 34},
                 {"id": l3.node_id, "channel": scid23, "amount_msat": amount, "delay": 18}]
        l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
        try:
            return l1.rpc.waitsendpay(inv["payment_hash"], 30)["status"]
        except RpcError as e:
            return e.error["data"]["failcodename"]

    l2.rpc.setchannel(scid23, feebase=5000, feeppm=0)                     # default enforcedelay: 600 s
    assert forward(1000, "old fee, in the grace period") == "complete"
    assert forward(5000, "new fee") == "complete"
    # a grace long enough for one forward on a loaded machine
    l2.rpc.setchannel(scid23, feebase=9000, feeppm=0, enforcedelay=5)
    changed = time.monotonic()
    assert forward(5000, "previous fee, five seconds grace") == "complete"
    time.sleep(max(0.0, changed + 5.5 - time.monotonic()))
    assert forward(5000, "previous fee, grace over") == "WIRE_FEE_INSUFFICIENT"
    assert forward(1000, "the fee before") == "WIRE_FEE_INSUFFICIENT"
    assert forward(9000, "current fee") == "complete"
