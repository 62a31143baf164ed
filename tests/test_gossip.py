"""Gossip between real nodes: announcements at 6 confirmations, propagation,
queries, routing and `pay` across the network."""
from node_factory import sync_blockheight, wait_for

from test_channels import channel, fund


def line(node_factory, n, amount=1_000_000, opts=None):
    nodes = node_factory.get_nodes(n, opts=opts)
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
    # keysend across the line: no invoice, l4 makes one when it arrives
    k = l1.rpc.keysend(l4.node_id, 50_000)
    assert k["status"] == "complete" and k["amount_sent_msat"] == 50_000 + 1000 + 1000
    assert any(i["label"].startswith("keysend-") and i["status"] == "paid" and i["payment_hash"] == k["payment_hash"]
               for i in l4.rpc.listinvoices()["invoices"])


def diamond(node_factory):
    """l1 -> l2 -> l4 and l1 -> l3 -> l4, all public."""
    l1, l2, l3, l4 = node_factory.get_nodes(4)
    for n in (l1, l1, l2, l3):
        fund(n, 3_000_000)
    wait_for(lambda: len(l1.rpc.listfunds()["outputs"]) == 2)
    # fundchannel refuses (304) while a node catches up with the blocks
    # the other nodes' funding mined
    sync_blockheight(l1, l2, l3, l4)
    for a, b in ((l1, l2), (l1, l3), (l2, l4), (l3, l4)):
        if not a.is_connected(b):
            a.connect(b)
        a.rpc.fundchannel(b.node_id, 1_000_000)
    l1.chain.mine(6)
    for n in (l1, l2, l3, l4):
        wait_for(lambda: len(n.rpc.listchannels()["channels"]) == 8, timeout=90)
    return l1, l2, l3, l4


def test_diamond_cheaper_path_and_retry_around_a_channel_that_cannot_carry(node_factory):
    l1, l2, l3, l4 = diamond(node_factory)
    # l3 charges much more: routes go through l2
    l3.rpc.setchannel(channel(l3, l4)["short_channel_id"], feebase=50_000, feeppm=5000)
    wait_for(lambda: any(c["base_fee_millisatoshi"] == 50_000 for c in l1.rpc.listchannels()["channels"]))
    route = l1.rpc.getroute(l4.node_id, 1_000_000, 1, fuzzpercent=0)["route"]
    assert route[0]["id"] == l2.node_id
    # drain l2 -> l4 so it cannot carry 600,000 sat, then pay that much: pay
    # sends it in parts (presplit), those l2 cannot carry fail there and go
    # round through l3
    inv = l4.rpc.invoice(500_000_000, "drain", "drain")
    l2.rpc.pay(inv["bolt11"])
    big = l4.rpc.invoice(600_000_000, "big", "big")
    r = l1.rpc.pay(big["bolt11"], maxfee=5_000_000)
    assert r["status"] == "complete"
    fees = r["amount_sent_msat"] - r["amount_msat"]
    assert fees >= 50_000   # went through l3
    assert any(f["status"] == "settled" for f in l3.rpc.listforwards()["forwards"])
    assert "local_failed" in [f["status"] for f in l2.rpc.listforwards()["forwards"]]


def test_graph_kept_across_restart_and_late_joiner_syncs(node_factory):
    l1, l2, l3 = line(node_factory, 3)
    wait_for(lambda: len(l1.rpc.listchannels()["channels"]) == 4, timeout=90)
    wait_for(lambda: len(l1.rpc.listnodes()["nodes"]) == 3, timeout=90)
    l1.stop()
    l1.start()
    # straight from the gossip store, before any peer is back
    assert len(l1.rpc.listchannels()["channels"]) == 4
    assert len(l1.rpc.listnodes()["nodes"]) == 3
    late = node_factory.get_node()
    late.connect(l3)
    wait_for(lambda: len(late.rpc.listchannels()["channels"]) == 4, timeout=60)
    wait_for(lambda: len(late.rpc.listnodes()["nodes"]) == 3, timeout=60)


def test_forged_announcement_rejected_node_stays_up(node_factory):
    from pyln.proto.wire import PrivateKey, connect as pyln_connect

    from synthetic_graph import signed_channel_announcement
    l1, l2 = line(node_factory, 2)
    wait_for(lambda: len(l1.rpc.listchannels()["channels"]) == 2, timeout=90)
    conn = pyln_connect(PrivateKey(bytes([9] * 32)), bytes.fromhex(l1.node_id), "127.0.0.1", l1.port)
    conn.connection.settimeout(10)
    conn.read_message()
    conn.send_message(bytes.fromhex("00100000000100"))
    chain_hash = bytes.fromhex("06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f")
    ann = bytearray(signed_channel_announcement(chain_hash, (103 << 40) | (1 << 16) | 0,
                                                (bytes([1] * 32), bytes([2] * 32)), (bytes([3] * 32), bytes([4] * 32))))
    ann[10] ^= 1   # break node_signature_1
    conn.send_message(bytes(ann))
    l1.rpc.ping(l2.node_id)
    assert len(l1.rpc.listchannels()["channels"]) == 2
    assert l1.rpc.getinfo()["id"] == l1.node_id


def test_channel_forgotten_when_funding_spent(node_factory):
    l1, l2, l3 = line(node_factory, 3)
    wait_for(lambda: len(l1.rpc.listchannels()["channels"]) == 4, timeout=90)
    scid = channel(l2, l3)["short_channel_id"]
    l2.rpc.close(l3.node_id)
    l1.chain.mine(80)
    wait_for(lambda: not l1.rpc.listchannels(scid)["channels"], timeout=90)
    assert len(l1.rpc.listchannels()["channels"]) == 2


def test_stale_channel_pruned_while_live_ones_are_kept_alive(node_factory):
    """--dev-fast-gossip-prune: a channel without a fresh update for 60 s
    is pruned (two weeks normally); our own channels are re-signed in time."""
    import time
    l1, l2, l3 = line(node_factory, 3, opts={"dev-fast-gossip-prune": None})
    wait_for(lambda: len(l3.rpc.listchannels()["channels"]) == 4, timeout=90)
    gone = channel(l1, l2)["short_channel_id"]
    live = channel(l2, l3)["short_channel_id"]
    first = {c["direction"]: c["last_update"] for c in l3.rpc.listchannels(live)["channels"]}
    l1.stop()   # nobody refreshes l1's side of l1-l2 any more
    t0 = time.monotonic()
    wait_for(lambda: not l3.rpc.listchannels(gone)["channels"], timeout=120)
    assert time.monotonic() - t0 > 20   # not before it went stale
    # l2 and l3 kept re-signing theirs
    kept = {c["direction"]: c["last_update"] for c in l3.rpc.listchannels(live)["channels"]}
    assert set(kept) == {0, 1} and all(kept[d] > first[d] for d in (0, 1))


def test_pay_retries_with_the_channel_update_in_an_onion_error(node_factory):
    """l2 raises its fee but its gossip is held back (dev-suppress-gossip):
    l1's first attempt pays the old fee and l2 fails it with
    fee_insufficient carrying its new channel_update (signed, type prefix
    included, as Core Lightning); pay checks it and retries with that fee
    for this payment only: l1's graph still shows the old fee."""
    from pyln.client import RpcError
    l1, l2, l3 = line(node_factory, 3)
    wait_for(lambda: len(l1.rpc.listchannels()["channels"]) == 4, timeout=90)
    scid23 = channel(l2, l3)["short_channel_id"]
    l2.rpc.call("dev-suppress-gossip")
    l2.rpc.setchannel(scid23, feebase=20_000, feeppm=100, enforcedelay=0)
    # a hand-built route with the old fee shows what l2 answers
    inv = l3.rpc.invoice(100_000, "probe", "probe")
    route = l1.rpc.getroute(l3.node_id, 100_000, 1, fuzzpercent=0)["route"]
    assert route[0]["amount_msat"] == 100_000 + 1001
    l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    try:
        l1.rpc.waitsendpay(inv["payment_hash"], 30)
        raise AssertionError("the old fee was accepted")
    except RpcError as e:
        err = e.error["data"]
    assert err["failcodename"] == "WIRE_FEE_INSUFFICIENT" and err["erring_channel"] == scid23
    update = bytes.fromhex(err["raw_message"])
    assert update[:2] == b"\x01\x02" and len(update) == 2 + 136
    from wire import bolt_schema
    fields = bolt_schema().decode(update).fields
    assert (fields["fee_base_msat"], fields["fee_proportional_millionths"]) == (20_000, 100)
    # pay: one failed attempt, then the new fee
    inv2 = l3.rpc.invoice(100_000, "pay", "pay")
    r = l1.rpc.pay(inv2["bolt11"], maxfee=50_000)
    assert r["status"] == "complete" and r["amount_sent_msat"] == 100_000 + 20_000 + 10
    parts = l1.rpc.listsendpays(payment_hash=inv2["payment_hash"])["payments"]
    assert [p["status"] for p in sorted(parts, key=lambda p: p["id"])] == ["failed", "complete"]
    # never applied to l1's graph
    ours = [c for c in l1.rpc.listchannels(scid23)["channels"] if c["source"] == l2.node_id]
    assert ours[0]["base_fee_millisatoshi"] == 1000
