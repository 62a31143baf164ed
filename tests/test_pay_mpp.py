"""Sending in parts (issue 14): pay and xpay split a payment no single
route can carry, over parallel channels and disjoint routes, re-route a
part that fails midway, honour the payee's basic_mpp, and show one
payment with its parts in listpays / listsendpays."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pyln.client import RpcError

from node_factory import sync_blockheight, wait_for
from test_channels import channel, fund

PLUGINS = Path(__file__).parent / "plugins"
SAT = 1000


def fund_coins(node, n: int, sats: int = 1_000_000) -> None:
    """n confirmed coins (one per funding transaction)."""
    for _ in range(n):
        fund(node, sats)
    wait_for(lambda: sum(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]) >= n)


def open_channels(pairs: list[tuple[Any, Any, int]], announce: bool = False) -> None:
    """Open every (opener, peer, sats) channel, then mine them in together
    (6 blocks if they are to be announced)."""
    for a, b, sats in pairs:
        sync_blockheight(a)
        if not a.is_connected(b):
            a.connect(b)
        a.rpc.fundchannel(b.node_id, sats)
    pairs[0][0].chain.mine(6 if announce else 3)
    for a, b, _ in pairs:
        wait_for(lambda: all(c["state"] == "CHANNELD_NORMAL" for c in a.rpc.listpeerchannels(b.node_id)["channels"])
                 and all(c["state"] == "CHANNELD_NORMAL" for c in b.rpc.listpeerchannels(a.node_id)["channels"]))


def parallel(node_factory, n: int, sats: int, opts: dict | None = None):
    """l1 with n channels of `sats` to l2."""
    l1, l2 = node_factory.get_nodes(2, opts=opts)
    fund_coins(l1, n, sats + 100_000)
    open_channels([(l1, l2, sats)] * n)
    wait_for(lambda: all(c["spendable_msat"] > 0 for c in l1.rpc.listpeerchannels(l2.node_id)["channels"]))
    return l1, l2


def parts_of(node, payment_hash: str) -> list[dict]:
    return node.rpc.listsendpays(payment_hash=payment_hash)["payments"]


def settled(l1, l2) -> None:
    wait_for(lambda: not any(c["htlcs"] for c in l1.rpc.listpeerchannels(l2.node_id)["channels"]))


@pytest.mark.parametrize("n", [2, 3])
def test_pay_splits_over_parallel_channels_each_too_small(node_factory, n):
    l1, l2 = parallel(node_factory, n, 60_000)
    spendable = [c["spendable_msat"] for c in l1.rpc.listpeerchannels(l2.node_id)["channels"]]
    amount = sum(spendable) - 5_000 * SAT         # more than any one channel, less than all
    assert amount > max(spendable)
    inv = l2.rpc.invoice(amount, "mpp", "too big for one channel")
    r = l1.rpc.pay(inv["bolt11"])
    assert r["status"] == "complete" and r["amount_msat"] == amount and r["amount_sent_msat"] == amount
    assert r["parts"] >= n
    got = l2.rpc.listinvoices("mpp")["invoices"][0]
    assert got["status"] == "paid" and got["amount_received_msat"] == amount
    parts = parts_of(l1, inv["payment_hash"])
    done = [p for p in parts if p["status"] == "complete"]
    assert len(done) >= n and sum(p["amount_msat"] for p in done) == amount
    assert len({p["groupid"] for p in parts}) == 1 and len({p["partid"] for p in parts}) == len(parts)
    # each channel carried at most what it could
    settled(l1, l2)
    assert sum(c["to_us_msat"] for c in l2.rpc.listpeerchannels(l1.node_id)["channels"]) == amount
    pays = l1.rpc.listpays(inv["bolt11"])["pays"]
    assert len(pays) == 1 and pays[0]["status"] == "complete" and pays[0]["number_of_parts"] == len(done)
    assert pays[0]["amount_msat"] == amount and pays[0]["preimage"] == r["payment_preimage"]


def diamond(node_factory, caps: dict[str, int], opts=None):
    """l1 -> l2 -> l4 and l1 -> l3 -> l4, all public, with capacities in sat
    keyed "12", "13", "24", "34" (each opened by the first node)."""
    l1, l2, l3, l4 = node_factory.get_nodes(4, opts=opts)
    nodes = {"1": l1, "2": l2, "3": l3, "4": l4}
    for k, sats in caps.items():
        fund(nodes[k[0]], sats + 200_000)
    wait_for(lambda: len(l1.rpc.listfunds()["outputs"]) >= 2)
    open_channels([(nodes[k[0]], nodes[k[1]], sats) for k, sats in caps.items()], announce=True)
    for n in (l1, l2, l3, l4):
        wait_for(lambda: len(n.rpc.listchannels()["channels"]) == 8, timeout=90)
    sync_blockheight(l1, l2, l3, l4)
    return l1, l2, l3, l4


def spendable(a, b) -> int:
    return sum(c["spendable_msat"] for c in a.rpc.listpeerchannels(b.node_id)["channels"])


def test_xpay_splits_over_two_disjoint_routes(node_factory):
    from test_invoices import check_schema
    l1, l2, l3, l4 = diamond(node_factory, {"12": 60_000, "13": 60_000, "24": 60_000, "34": 60_000})
    # more than either route can carry: l1's own side of each channel is the narrowest
    most = min(spendable(l1, l2), spendable(l2, l4))
    amount = most + 20_000 * SAT
    inv = l4.rpc.invoice(amount, "two", "two routes")
    # the parts' fees together are over these budgets: nothing is sent
    with pytest.raises(RpcError) as e:
        l1.rpc.xpay(inv["bolt11"], maxfee=2000)
    assert e.value.error["code"] == 206 and "Fee exceeds our fee budget" in e.value.error["message"]
    with pytest.raises(RpcError) as e:
        l1.rpc.pay(inv["bolt11"], maxfeepercent=0, exemptfee=2000)
    assert e.value.error["code"] == 206
    with pytest.raises(RpcError) as e:
        l1.rpc.xpay(inv["bolt11"], maxdelay=20)
    assert e.value.error["code"] == 206 and "CLTV delay" in e.value.error["message"]
    assert not parts_of(l1, inv["payment_hash"])
    r = l1.rpc.xpay(inv["bolt11"])
    check_schema("xpay", r)
    assert set(r) == {"payment_preimage", "failed_parts", "successful_parts", "amount_msat", "amount_sent_msat"}
    assert r["amount_msat"] == amount and r["successful_parts"] >= 2
    assert r["amount_sent_msat"] > amount                   # fees of l2 and l3
    wait_for(lambda: l4.rpc.listinvoices("two")["invoices"][0]["status"] == "paid")
    assert l4.rpc.listinvoices("two")["invoices"][0]["amount_received_msat"] == amount
    # both routes carried a part
    assert any(f["status"] == "settled" for f in l2.rpc.listforwards()["forwards"])
    assert any(f["status"] == "settled" for f in l3.rpc.listforwards()["forwards"])
    parts = parts_of(l1, inv["payment_hash"])
    assert len({p["groupid"] for p in parts}) == 1
    assert len(parts) == r["successful_parts"] + r["failed_parts"]
    for p in parts:
        check_schema("listsendpays", {"payments": [p]})
    pays = l1.rpc.listpays(payment_hash=inv["payment_hash"])["pays"]
    check_schema("listpays", {"pays": pays})
    assert len(pays) == 1 and pays[0]["number_of_parts"] == r["successful_parts"]
    assert pays[0]["amount_sent_msat"] == r["amount_sent_msat"]
    # paying again: xpay says it is paid already, pay answers the old success
    with pytest.raises(RpcError) as e:
        l1.rpc.xpay(inv["bolt11"])
    assert e.value.error["code"] == 219
    again = l1.rpc.pay(inv["bolt11"])
    assert again["status"] == "complete" and again["payment_preimage"] == r["payment_preimage"]
    assert again["amount_msat"] == amount


def test_pay_reroutes_a_part_that_fails_midway(node_factory):
    """l2 -> l4 looks big enough (its capacity) but l2 spent most of it: the
    part sent that way fails at l2, and pay learns how little it can carry
    and sends the rest through l3."""
    l1, l2, l3, l4 = diamond(node_factory, {"12": 1_000_000, "13": 250_000, "24": 1_000_000, "34": 1_000_000})
    l3.rpc.setchannel(channel(l3, l4)["short_channel_id"], feebase=5000, feeppm=1000)
    wait_for(lambda: any(c["base_fee_millisatoshi"] == 5000 for c in l1.rpc.listchannels()["channels"]))
    drain = l4.rpc.invoice(850_000 * SAT, "drain", "drain")
    l2.rpc.pay(drain["bolt11"])
    left = spendable(l2, l4)
    assert left < 200_000 * SAT
    amount = 300_000 * SAT        # more than l2 -> l4 has left, more than l1 -> l3 can carry
    inv = l4.rpc.invoice(amount, "midway", "midway")
    r = l1.rpc.pay(inv["bolt11"], maxfee=10_000 * SAT)
    assert r["status"] == "complete" and r["amount_msat"] == amount
    parts = parts_of(l1, inv["payment_hash"])
    failed = [p for p in parts if p["status"] == "failed"]
    assert failed, parts                                     # at least one part failed at l2...
    assert any(f["status"] == "local_failed" for f in l2.rpc.listforwards()["forwards"])
    ok = [p for p in parts if p["status"] == "complete"]
    assert sum(p["amount_msat"] for p in ok) == amount       # ...and the rest went round
    assert any(f["status"] == "settled" for f in l3.rpc.listforwards()["forwards"])
    assert r["parts"] == len(parts)
    wait_for(lambda: l4.rpc.listinvoices("midway")["invoices"][0]["status"] == "paid")


def test_part_failed_by_a_plugin_at_a_forwarder_is_sent_another_way(node_factory):
    """A forwarder holds the part, then fails it (temporary_node_failure):
    the payment goes through the other side of the diamond."""
    l1, l2, l3, l4 = diamond(node_factory, {"12": 200_000, "13": 200_000, "24": 200_000, "34": 200_000},
                             opts=[{}, {"plugin": str(PLUGINS / "hold_htlcs.py")}, {}, {}])
    l3.rpc.setchannel(channel(l3, l4)["short_channel_id"], feebase=5000, feeppm=1000)
    wait_for(lambda: any(c["base_fee_millisatoshi"] == 5000 for c in l1.rpc.listchannels()["channels"]))
    inv = l4.rpc.invoice(50_000 * SAT, "held", "held at l2")
    results: dict[str, Any] = {}
    t = threading.Thread(target=lambda: results.update(r=l1.rpc.xpay(inv["bolt11"])))
    t.start()
    wait_for(lambda: l2.rpc.held()["held"] >= 1)
    assert l1.rpc.listpays(inv["bolt11"])["pays"][0]["status"] == "pending"
    l2.rpc.release("fail")
    t.join(60)
    assert results["r"]["failed_parts"] >= 1 and results["r"]["successful_parts"] >= 1
    wait_for(lambda: l4.rpc.listinvoices("held")["invoices"][0]["status"] == "paid")
    assert any(f["status"] == "settled" for f in l3.rpc.listforwards()["forwards"])
    assert not any(f["status"] == "settled" for f in l2.rpc.listforwards()["forwards"])


def test_payments_over_a_four_node_graph_with_mixed_capacities(node_factory):
    """l1 -> l2 big, l1 -> l3 small, l2 -> l4 small, l3 -> l4 big, l2 -> l3
    middle: payments of every size reach l4, split where they must be, and
    each node's balances move by exactly what was paid and forwarded."""
    l1, l2, l3, l4 = node_factory.get_nodes(4)
    caps = {(l1, l2): 1_000_000, (l1, l3): 300_000, (l2, l4): 300_000, (l3, l4): 1_000_000, (l2, l3): 400_000}
    for (a, _b), sats in caps.items():
        fund(a, sats + 200_000)
    wait_for(lambda: len(l1.rpc.listfunds()["outputs"]) >= 2)
    open_channels([(a, b, sats) for (a, b), sats in caps.items()], announce=True)
    for n in (l1, l2, l3, l4):
        wait_for(lambda: len(n.rpc.listchannels()["channels"]) == 10, timeout=90)
    sync_blockheight(l1, l2, l3, l4)
    total = 0
    # (400,000 sat fits no single route: every one goes through a channel of
    # at most 400,000 sat, less its reserve and fees)
    for i, (sats, how) in enumerate([(1_000, "pay"), (120_000, "pay"), (400_000, "xpay"), (90_000, "xpay"),
                                     (50_000, "pay")]):
        inv = l4.rpc.invoice(sats * SAT, f"m{i}", "mixed")
        if how == "pay":
            r = l1.rpc.pay(inv["bolt11"], maxfee=5_000 * SAT)
        else:
            r = l1.rpc.xpay(inv["bolt11"], maxfee=5_000 * SAT)
        assert r["amount_msat"] == sats * SAT
        total += sats * SAT
        wait_for(lambda: l4.rpc.listinvoices(f"m{i}")["invoices"][0]["status"] == "paid")
    settled(l1, l2)
    settled(l1, l3)
    received = sum(c["to_us_msat"] for c in l4.rpc.listpeerchannels()["channels"])
    assert received == total
    fees = sum(n.rpc.getinfo()["fees_collected_msat"] for n in (l2, l3))
    sent = sum(p["amount_sent_msat"] for p in l1.rpc.listpays()["pays"])
    assert sent == total + fees
    assert all(p["status"] == "complete" for p in l1.rpc.listpays()["pays"])


def test_insufficient_balance_is_reported_with_the_figures(node_factory):
    l1, l2 = parallel(node_factory, 2, 60_000)
    have = spendable(l1, l2)
    inv = l2.rpc.invoice(have + 1_000 * SAT, "toomuch", "too much")
    for method in ("pay", "xpay"):
        with pytest.raises(RpcError) as e:
            l1.rpc.call(method, {"bolt11" if method == "pay" else "invstring": inv["bolt11"]})
        assert e.value.error["code"] == 215
        assert f"spendable={have}msat" in e.value.error["message"]
        assert f"payment={have + 1_000 * SAT}msat" in e.value.error["message"]
    assert not parts_of(l1, inv["payment_hash"])             # nothing was tried


def test_unreachable_destination_is_no_route(node_factory):
    l1, l2 = parallel(node_factory, 1, 200_000)
    l3 = node_factory.get_node()
    inv = l3.rpc.invoice(10_000 * SAT, "far", "nobody knows the way")
    for method in ("pay", "xpay"):
        with pytest.raises(RpcError) as e:
            l1.rpc.call(method, [inv["bolt11"]])
        assert e.value.error["code"] == 205, e.value.error


def test_only_split_when_the_invoice_has_basic_mpp(node_factory):
    """The same payment that two channels carry in parts cannot be paid to
    an invoice without basic_mpp: one part per payment (BOLT 4), and the
    error says why; an amount one channel can carry is paid in one part."""
    from common.bolt11 import InvoiceFields
    from common.bolt11 import decode as decode_bolt11
    from common.bolt11 import encode as encode_bolt11
    from common.features import BASIC_MPP, bits_from_features, features_from_bits
    key = "41" * 32
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"dev-force-privkey": key})
    fund_coins(l1, 2, 160_000)
    open_channels([(l1, l2, 60_000)] * 2)
    wait_for(lambda: all(c["spendable_msat"] > 0 for c in l1.rpc.listpeerchannels(l2.node_id)["channels"]))
    one = max(c["spendable_msat"] for c in l1.rpc.listpeerchannels(l2.node_id)["channels"])

    def without_mpp(inv: dict) -> str:
        d = decode_bolt11(inv["bolt11"])
        bits = bits_from_features(d.features) - {BASIC_MPP, BASIC_MPP + 1}
        return encode_bolt11(InvoiceFields(network="regtest", timestamp=d.timestamp, payment_hash=d.payment_hash,
                                           payment_secret=d.payment_secret, amount_msat=d.amount_msat,
                                           description=d.description, expiry=d.expiry,
                                           min_final_cltv_expiry=d.min_final_cltv_expiry,
                                           features=features_from_bits(bits)), bytes.fromhex(key))
    big = without_mpp(l2.rpc.invoice(one + 10_000 * SAT, "big", "no mpp"))
    assert "basic_mpp" not in str(l1.rpc.decodepay(big))
    for method in ("pay", "xpay"):
        with pytest.raises(RpcError) as e:
            l1.rpc.call(method, [big])
        assert e.value.error["code"] == 205 and "basic_mpp" in e.value.error["message"], e.value.error
    # with basic_mpp, as much goes through in parts
    ok = l2.rpc.invoice(one + 10_000 * SAT, "mpp", "mpp")
    assert l1.rpc.pay(ok["bolt11"])["parts"] >= 2
    small = l2.rpc.invoice(20_000 * SAT, "small", "no mpp")
    r = l1.rpc.pay(without_mpp(small))
    assert r["status"] == "complete" and r["parts"] == 1
    assert len(parts_of(l1, small["payment_hash"])) == 1


def test_pay_waits_for_every_part_in_flight_past_retry_for(node_factory):
    """retry_for bounds new parts, not the wait for those in flight: with
    two parts held by the payee's plugin, pay answers only once they are
    resolved, and says what really happened."""
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"plugin": str(PLUGINS / "hold_htlcs.py")})
    fund_coins(l1, 2, 160_000)
    open_channels([(l1, l2, 60_000)] * 2)
    wait_for(lambda: all(c["spendable_msat"] > 0 for c in l1.rpc.listpeerchannels(l2.node_id)["channels"]))
    amount = spendable(l1, l2) - 5_000 * SAT
    for outcome in ("fail", "continue"):
        inv = l2.rpc.invoice(amount, outcome, "held")
        results: dict[str, Any] = {}

        def pay(bolt11=inv["bolt11"]):
            try:
                results["r"] = l1.rpc.pay(bolt11, retry_for=2)["status"]
            except RpcError as e:
                results["r"] = e.error["code"]
        t = threading.Thread(target=pay)
        t.start()
        wait_for(lambda: l2.rpc.held()["held"] == 2)
        t.join(5)                      # well past retry_for
        assert t.is_alive() and not results
        assert l1.rpc.listpays(inv["bolt11"])["pays"][0]["status"] == "pending"
        l2.rpc.release(outcome)
        t.join(60)
        status = l2.rpc.listinvoices(outcome)["invoices"][0]["status"]
        parts = parts_of(l1, inv["payment_hash"])
        if outcome == "continue":
            assert results["r"] == "complete" and status == "paid"
        else:
            # both failed, past retry_for: no new part, a definite failure
            assert results["r"] == 210 and status == "unpaid"
            assert [p["status"] for p in parts] == ["failed", "failed"]
            assert l1.rpc.listpays(inv["bolt11"])["pays"][0]["status"] == "failed"


def test_payee_receives_parts_from_two_payers_with_total_msat(node_factory):
    """partial_msat: two payers pay one invoice between them; the payee
    holds the first part until total_msat has arrived.  Parts that disagree
    on total_msat are refused, the whole set (BOLT 4)."""
    l1, l2, l3 = node_factory.get_nodes(3)
    fund(l1)
    fund(l3)
    open_channels([(l1, l2, 500_000), (l3, l2, 500_000)])
    sync_blockheight(l1, l2, l3)
    inv = l2.rpc.invoice(100_000 * SAT, "shared", "shared")
    results: dict[str, Any] = {}
    t = threading.Thread(target=lambda: results.update(r1=l1.rpc.pay(inv["bolt11"], partial_msat=60_000 * SAT)))
    t.start()
    wait_for(lambda: any(h["state"] == "RCVD_ADD_ACK_REVOCATION" for h in channel(l2, l1)["htlcs"]))
    assert l2.rpc.listinvoices("shared")["invoices"][0]["status"] == "unpaid"
    r3 = l3.rpc.pay(inv["bolt11"], partial_msat=40_000 * SAT)
    t.join(60)
    assert results["r1"]["status"] == r3["status"] == "complete"
    got = l2.rpc.listinvoices("shared")["invoices"][0]
    assert got["status"] == "paid" and got["amount_received_msat"] == 100_000 * SAT
    # two parts claiming different totals: both refused
    inv = l2.rpc.invoice(100_000 * SAT, "mismatch", "mismatch")
    for node, amt, total in ((l1, 60_000, 100_000), (l3, 50_000, 110_000)):
        route = [{"id": l2.node_id, "channel": channel(node, l2)["short_channel_id"], "amount_msat": amt * SAT,
                  "delay": 18 + 3}]
        node.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"], partid=1,
                         amount_msat=total * SAT)
    for node in (l1, l3):
        with pytest.raises(RpcError) as e:
            node.rpc.waitsendpay(inv["payment_hash"], 60, partid=1)
        assert e.value.error["data"]["failcodename"] == "WIRE_FINAL_INCORRECT_HTLC_AMOUNT"
    assert l2.rpc.listinvoices("mismatch")["invoices"][0]["status"] == "unpaid"


def test_xpay_handle_pay_serves_pay_calls(node_factory):
    l1, l2 = parallel(node_factory, 2, 60_000, opts={"xpay-handle-pay": "true"})
    amount = spendable(l1, l2) - 5_000 * SAT
    inv = l2.rpc.invoice(amount, "xp", "via xpay")
    r = l1.rpc.pay(inv["bolt11"], maxfeepercent=1)
    assert set(r) == {"payment_preimage", "amount_msat", "amount_sent_msat", "parts", "destination",
                      "payment_hash", "status", "created_at"}
    assert r["status"] == "complete" and r["amount_msat"] == amount and r["parts"] >= 2
    # (a pay parameter xpay does not take is ignored, as in Core Lightning)
    inv2 = l2.rpc.invoice(1_000 * SAT, "xp2", "via xpay")
    assert l1.rpc.pay(inv2["bolt11"], riskfactor=5)["status"] == "complete"
    assert l1.rpc.listconfigs("xpay-handle-pay")["configs"]["xpay-handle-pay"]["value_bool"] is True
