"""BOLT 12 between real nodes: offers, fetchinvoice over onion messages,
paying the invoice through its blinded path, invoice_error answers, single
use, expiry, an offer used many times, a restart between fetchinvoice and
pay, the refund direction (invoicerequest / sendinvoice), decode, and the
privacy of a node with only private channels.  Every node involved is
checked: the payee's invoices and offers, the router's forwards, the
payer's payments."""
import time
from pathlib import Path

import pytest
from node_factory import sync_blockheight, wait_for
from pyln.client import RpcError
from test_channels import channel, fund

from common import bolt12 as B

OFFER_EXPIRED, OFFER_BAD_INVREQ_REPLY = 1002, 1004
RECORDER = str(Path(__file__).parent / "plugins" / "recorder.py")


def public_line(node_factory, n=3, opts=None):
    """l1 -> l2 -> ... with announced channels, the graph known to everyone."""
    nodes = node_factory.get_nodes(n, opts=opts)
    for a in nodes[:-1]:
        fund(a, 3_000_000)
    for a, b in zip(nodes, nodes[1:]):
        a.connect(b)
        a.rpc.fundchannel(b.node_id, 1_000_000)
    nodes[0].chain.mine(6)
    for a, b in zip(nodes, nodes[1:]):
        wait_for(lambda a=a, b=b: channel(a, b)["state"] == "CHANNELD_NORMAL"
                 and channel(b, a)["state"] == "CHANNELD_NORMAL")
    sync_blockheight(*nodes)
    for node in nodes:
        wait_for(lambda node=node: len(node.rpc.listchannels()["channels"]) == 2 * (n - 1)
                 and len([x for x in node.rpc.listnodes()["nodes"] if "alias" in x]) == n)
    return nodes


def settled(*pairs):
    for a, b in pairs:
        wait_for(lambda a=a, b=b: not channel(a, b)["htlcs"] and not channel(b, a)["htlcs"])


def test_offer_fetchinvoice_pay_across_a_router(node_factory):
    """payer -> router -> payee: the offer, its invoice fetched over onion
    messages, paid through the invoice's blinded path; the payee's invoice is
    paid with local_offer_id (listinvoices, waitanyinvoice), the router
    forwarded it, the payer's pay is complete; an offer paid 20 times; decode."""
    l1, l2, l3 = public_line(node_factory, opts=[{}, {}, {"plugin": RECORDER}])
    off = l3.rpc.call("offer", {"amount": "10000msat", "description": "coffee", "label": "cafe"})
    assert off["created"] and off["active"] and not off["single_use"] and not off["used"]
    o = B.decode(off["bolt12"], B.OFFER)
    assert o.offer_issuer_id.hex() == l3.node_id and o.offer_amount == 10000      # a public node gives its id
    assert l3.rpc.call("offer", {"amount": "10000msat", "description": "coffee"})["created"] is False
    dec = l1.rpc.decode(off["bolt12"])
    assert dec["type"] == "bolt12 offer" and dec["valid"] and dec["offer_id"] == off["offer_id"]
    assert dec["offer_amount_msat"] == 10000 and dec["offer_description"] == "coffee"

    fetched = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"], "payer_note": "thanks"})
    assert fetched["changes"] == {}
    inv = l1.rpc.decode(fetched["invoice"])
    assert inv["type"] == "bolt12 invoice" and inv["valid"] and inv["invoice_amount_msat"] == 10000
    assert inv["invoice_node_id"] == l3.node_id and inv["offer_id"] == off["offer_id"]
    assert inv["invreq_payer_note"] == "thanks" and inv["invreq_payer_id"] != l1.node_id   # a transient key
    assert len(inv["invoice_paths"]) == 1
    # the payee stored it, unpaid, for the offer
    [mine] = l3.rpc.listinvoices(offer_id=off["offer_id"])["invoices"]
    assert mine["status"] == "unpaid" and mine["bolt12"] == fetched["invoice"]
    assert mine["local_offer_id"] == off["offer_id"] and mine["invreq_payer_note"] == "thanks"

    paid = l1.rpc.pay(fetched["invoice"])
    assert paid["status"] == "complete" and paid["amount_msat"] == 10000 and paid["destination"] == l3.node_id
    assert paid["amount_sent_msat"] > 10000            # the router's fee
    w = l3.rpc.waitanyinvoice(0, 30)
    assert w["label"] == mine["label"] and w["status"] == "paid" and w["local_offer_id"] == off["offer_id"]
    assert w["amount_received_msat"] == 10000 and w["pay_index"] == 1
    assert l3.rpc.call("listoffers", {"offer_id": off["offer_id"]})["offers"][0]["used"] is True
    [fwd] = l2.rpc.listforwards()["forwards"]
    assert fwd["status"] == "settled" and fwd["out_msat"] == 10000
    [p] = l1.rpc.listpays(fetched["invoice"])["pays"]
    assert p["status"] == "complete" and p["bolt12"] == fetched["invoice"]
    settled((l1, l2), (l2, l3))

    # the same offer, nineteen more times (each a new invoice)
    for i in range(19):
        f = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"]})
        assert l1.rpc.pay(f["invoice"])["status"] == "complete"
    invs = l3.rpc.listinvoices(offer_id=off["offer_id"])["invoices"]
    assert len(invs) == 20 and all(i["status"] == "paid" for i in invs)
    assert sorted(i["pay_index"] for i in invs) == list(range(1, 21))
    assert l3.rpc.waitanyinvoice(19, 30)["pay_index"] == 20
    assert sum(f["status"] == "settled" for f in l2.rpc.listforwards()["forwards"]) == 20
    # like any invoice: the invoice_payment (and invoice_creation) notifications, with the invoices' labels
    paid_labels = [e["payload"]["label"] for e in l3.rpc.call("recorded", {"topic": "invoice_payment"})["events"]]
    assert sorted(paid_labels) == sorted(i["label"] for i in invs)
    assert len(l3.rpc.call("recorded", {"topic": "invoice_creation"})["events"]) == 20
    assert len([p for p in l1.rpc.listpays()["pays"] if p["status"] == "complete"]) == 20
    settled((l1, l2), (l2, l3))


def test_invoice_error_single_use_expiry_and_disable(node_factory):
    """The payee answers what it will not invoice with an invoice_error
    (fetchinvoice fails with its text): a disabled offer, a single-use offer
    already paid; an expired offer is refused by the payer itself."""
    l1, l2 = public_line(node_factory, 2)
    once = l2.rpc.call("offer", {"amount": "5000msat", "description": "once", "single_use": True})
    assert once["single_use"]
    f = l1.rpc.call("fetchinvoice", {"offer": once["bolt12"]})
    # a second invoice may be fetched before the first is paid; once one is paid, the other expires
    f2 = l1.rpc.call("fetchinvoice", {"offer": once["bolt12"]})
    assert l1.rpc.pay(f["invoice"])["status"] == "complete"
    with pytest.raises(RpcError) as e:
        l1.rpc.call("fetchinvoice", {"offer": once["bolt12"]})
    assert e.value.error["code"] == OFFER_BAD_INVREQ_REPLY and e.value.error["data"]["error"] == "Offer already used"
    invs = {i["bolt12"]: i["status"] for i in l2.rpc.listinvoices(offer_id=once["offer_id"])["invoices"]}
    assert invs == {f["invoice"]: "paid", f2["invoice"]: "expired"}
    with pytest.raises(RpcError):
        l1.rpc.pay(f2["invoice"])
    with pytest.raises(RpcError):
        l2.rpc.call("enableoffer", {"offer_id": once["offer_id"]})
    # disabled: an invoice_error; enabled again: an invoice
    off = l2.rpc.call("offer", {"amount": "any", "description": "tips"})
    assert l2.rpc.call("disableoffer", {"offer_id": off["offer_id"]})["active"] is False
    with pytest.raises(RpcError) as e:
        l1.rpc.call("fetchinvoice", {"offer": off["bolt12"], "amount_msat": 3000})
    assert e.value.error["code"] == OFFER_BAD_INVREQ_REPLY
    assert e.value.error["data"]["error"] == "Offer no longer available"
    assert l2.rpc.call("listoffers", {"active_only": True})["offers"] == []
    assert l2.rpc.call("enableoffer", {"offer_id": off["offer_id"]})["active"] is True
    with pytest.raises(RpcError) as e:
        l1.rpc.call("fetchinvoice", {"offer": off["bolt12"]})           # 'any' needs an amount
    assert e.value.error["code"] == -32602
    f = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"], "amount_msat": 3000, "payer_metadata": "01" * 16})
    assert f["changes"] == {"amount_msat": 3000}
    # the same request again (as a payer resending after a lost answer would): the same invoice
    again = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"], "amount_msat": 3000, "payer_metadata": "01" * 16})
    assert again["invoice"] == f["invoice"]
    assert len(l2.rpc.listinvoices(offer_id=off["offer_id"])["invoices"]) == 1
    assert l1.rpc.pay(f["invoice"])["status"] == "complete"
    # expiry: the payer refuses an expired offer
    soon = l2.rpc.call("offer", {"amount": "1000msat", "description": "soon",
                                 "absolute_expiry": int(time.time()) + 3})
    assert l1.rpc.call("fetchinvoice", {"offer": soon["bolt12"]})["invoice"]
    time.sleep(4)
    with pytest.raises(RpcError) as e:
        l1.rpc.call("fetchinvoice", {"offer": soon["bolt12"]})
    assert e.value.error["code"] == OFFER_EXPIRED
    # recurrence is refused clearly
    for extra, word in (({"recurrence": "1month"}, "recurrence"), ({"optional_recurrence": True}, "recurrence"),
                        ({"fronting_nodes": [l1.node_id]}, "fronting_nodes")):
        with pytest.raises(RpcError) as e:
            l2.rpc.call("offer", {"amount": "1000msat", "description": "monthly", **extra})
        assert e.value.error["code"] == -32602 and word in e.value.error["message"]
    # the same parameters in Core Lightning's positions: single_use, proportional_amount,
    # optional_recurrence (false) and fronting_nodes (empty) are fine
    o = l2.rpc.call("offer", ["1000msat", "positional", None, None, None, None, None, None, None, None,
                              True, None, False, []])
    assert o["single_use"] is True
    settled((l1, l2))


def test_restart_between_fetchinvoice_and_pay(node_factory):
    """The invoice is all the payer needs: both nodes restart in between, it is still paid."""
    l1, l2 = public_line(node_factory, 2)
    off = l2.rpc.call("offer", {"amount": "7000msat", "description": "later"})
    f = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"]})
    l1.restart()
    l2.restart()
    wait_for(lambda: channel(l1, l2)["peer_connected"] and channel(l1, l2)["state"] == "CHANNELD_NORMAL")
    assert l1.rpc.pay(f["invoice"])["status"] == "complete"
    [inv] = l2.rpc.listinvoices(offer_id=off["offer_id"])["invoices"]
    assert inv["status"] == "paid" and inv["amount_received_msat"] == 7000
    # xpay takes BOLT 12 too: an invoice, and an offer (its invoice fetched first)
    f2 = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"]})
    x = l1.rpc.call("xpay", {"invstring": f2["invoice"]})
    assert x["amount_msat"] == 7000 and x["successful_parts"] == 1 and x["failed_parts"] == 0
    with pytest.raises(RpcError) as e:
        l1.rpc.call("xpay", {"invstring": f2["invoice"]})
    assert "Already paid" in e.value.error["message"]
    x = l1.rpc.call("xpay", {"invstring": off["bolt12"], "payer_note": "by xpay"})
    assert x["amount_msat"] == 7000
    notes = [i.get("invreq_payer_note") for i in l2.rpc.listinvoices(offer_id=off["offer_id"])["invoices"]]
    assert notes == [None, None, "by xpay"]
    assert all(i["status"] == "paid" for i in l2.rpc.listinvoices(offer_id=off["offer_id"])["invoices"])
    settled((l1, l2))


def test_refund_invoicerequest_sendinvoice(node_factory):
    """The merchant-pays-user direction: l1 publishes an invoice_request; l2
    sends it an invoice; l1 checks it against its request and pays it;
    sendinvoice returns once paid; l1's request is used."""
    l1, l2 = public_line(node_factory, 2)
    ir = l1.rpc.call("invoicerequest", {"amount": "20000msat", "description": "refund #7", "label": "r7"})
    assert ir["active"] and ir["single_use"] and not ir["used"] and ir["label"] == "r7"
    dec = l2.rpc.decode(ir["bolt12"])
    assert dec["type"] == "bolt12 invoice_request" and dec["invreq_amount_msat"] == 20000
    assert dec["invreq_payer_id"] == l1.node_id          # a public node gives its id
    got = l2.rpc.call("sendinvoice", {"invreq": ir["bolt12"], "label": "refund-7"})
    assert got["status"] == "paid" and got["label"] == "refund-7" and got["amount_received_msat"] == 20000
    wait_for(lambda: [p["status"] for p in l1.rpc.listpays()["pays"]] == ["complete"])
    [r] = l1.rpc.call("listinvoicerequests", {"invreq_id": ir["invreq_id"]})["invoicerequests"]
    assert r["used"] and not r["active"]
    # a second invoice for a used single-use request is not paid
    with pytest.raises(RpcError):
        l2.rpc.call("sendinvoice", {"invreq": ir["bolt12"], "label": "again", "timeout": 5})
    assert l2.rpc.listinvoices("again")["invoices"][0]["status"] != "paid"
    settled((l1, l2))


def test_private_payee_reached_through_a_blinded_path(node_factory):
    """payer -> router -> payee where the payee has only a private channel:
    its offer and invoice carry a blinded path through the router (plus a
    dummy hop) and never its node id; the payment goes through the path."""
    l1, l2, l3 = node_factory.get_nodes(3)
    fund(l1, 3_000_000)
    fund(l2, 3_000_000)
    l1.connect(l2)
    l1.rpc.fundchannel(l2.node_id, 1_000_000)
    l2.connect(l3)
    l2.rpc.fundchannel(l3.node_id, 1_000_000, announce=False, push_msat=100_000_000)
    l1.chain.mine(6)
    wait_for(lambda: channel(l2, l3)["state"] == "CHANNELD_NORMAL" and channel(l1, l2)["state"] == "CHANNELD_NORMAL")
    sync_blockheight(l1, l2, l3)
    for node in (l1, l2, l3):
        wait_for(lambda node=node: len([n for n in node.rpc.listnodes()["nodes"] if "alias" in n]) == 2)
    assert [n for n in l3.rpc.listnodes(l3.node_id)["nodes"] if "alias" in n] == []      # l3 is not public
    off = l3.rpc.call("offer", {"amount": "12000msat", "description": "private"})
    o = B.decode(off["bolt12"], B.OFFER)
    assert o.offer_issuer_id is None and len(o.offer_paths) == 1
    assert o.offer_paths[0].first_node_id.hex() == l2.node_id
    assert l3.node_id not in str(l1.rpc.decode(off["bolt12"]))
    f = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"]})
    inv = l1.rpc.decode(f["invoice"])
    assert inv["valid"] and inv["invoice_node_id"] != l3.node_id
    assert inv["invoice_node_id"] == o.offer_paths[0].hops[-1].blinded_node_id.hex()
    [path] = inv["invoice_paths"]
    assert path["first_node_id"] == l2.node_id and len(path["path"]) == 3     # router, payee, a dummy hop
    assert l3.node_id not in f["invoice"] and l3.node_id not in str(inv)
    paid = l1.rpc.pay(f["invoice"])
    assert paid["status"] == "complete" and paid["destination"] == inv["invoice_node_id"]
    [mine] = l3.rpc.listinvoices(offer_id=off["offer_id"])["invoices"]
    assert mine["status"] == "paid" and mine["amount_received_msat"] == 12000
    [fwd] = l2.rpc.listforwards()["forwards"]
    assert fwd["status"] == "settled" and fwd["out_channel"] == channel(l2, l3)["short_channel_id"]
    # the same request twice: an offer without issuer id never answers with a previous invoice (BOLT 12)
    a = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"], "payer_metadata": "02" * 16})["invoice"]
    b = l1.rpc.call("fetchinvoice", {"offer": off["bolt12"], "payer_metadata": "02" * 16})["invoice"]
    assert a != b and len(l3.rpc.listinvoices(offer_id=off["offer_id"])["invoices"]) == 3
    settled((l1, l2), (l2, l3))
