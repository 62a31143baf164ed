"""Gossip between real nodes: announcements at 6 confirmations, propagation,
queries, routing and `pay` across the network."""
from node_factory import wait_for

from test_channels import channel, fund


def line(node_factory, n, amount=1_000_000):
    nodes = node_factory.get_nodes(n)
    for a in nodes[:-1]:
        fund(a, 3_000_000)
    for a, b in zip(nodes, nodes[1:]):
        a.connect(b)
        a.rpc.fundchannel(b.node_id, amount)
    nodes[0].chain.mine(6)
    for a, b in zip(nodes, nodes[1:]):
        wait_for(lambda: channel(a, b)["state"] == "CHANNELD_NORMAL" and channel(b, a)["state"] == "CHANNELD_NORMAL")
    return nodes


def test_line_gossip_propagates_and_pay_across(node_factory):
    l1, l2, l3, l4 = line(node_factory, 4)
    # every node learns every channel, both directions, and every node
    for n in (l1, l4):
        wait_for(lambda: len(n.rpc.listchannels()["channels"]) == 6, timeout=90)
        wait_for(lambda: len(n.rpc.listnodes()["nodes"]) == 4, timeout=90)
    nodes = {x["nodeid"]: x for x in l1.rpc.listnodes()["nodes"]}
    assert nodes[l4.node_id]["alias"] == "node4"
    route = l1.rpc.getroute(l4.node_id, 100_000, 1)["route"]
    assert [h["id"] for h in route] == [l2.node_id, l3.node_id, l4.node_id]
    # fees of l2 and l3 (default policy 1000msat + 10ppm)
    assert route[0]["amount_msat"] == 100_000 + 1001 + 1001
    inv = l4.rpc.invoice(100_000, "across", "across the line")
    r = l1.rpc.pay(inv["bolt11"])
    assert r["status"] == "complete"
    assert r["amount_sent_msat"] == route[0]["amount_msat"]
    wait_for(lambda: l2.rpc.getinfo()["fees_collected_msat"] == 1001)
    fw = l2.rpc.listforwards()["forwards"]
    assert fw[0]["status"] == "settled" and fw[0]["fee_msat"] == 1001
