"""Channels between real nodes on the regtest chain: open, lock in, close."""
import pytest
from pyln.client import RpcError

from node_factory import db_provider_name, wait_for


def fund(node, sats=2_000_000):
    addr = node.rpc.newaddr("bech32")["bech32"]
    node.chain.fund(addr, sats)
    node.chain.mine(1)
    wait_for(lambda: any(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]))


def channel(node, peer):
    chans = node.rpc.listpeerchannels(peer.node_id)["channels"]
    return chans[0] if chans else None


def open_channel(l1, l2, amount=1_000_000, **kw):
    from node_factory import sync_blockheight
    sync_blockheight(l1)      # fundchannel refuses (304) while the node catches up with blocks just mined
    if not l1.is_connected(l2):
        l1.connect(l2)
    r = l1.rpc.fundchannel(l2.node_id, amount, **kw)
    l1.chain.mine(3)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    return r


def three_in_a_line(node_factory, opts=None):
    """l1 -> l2 -> l3 with 1,000,000-sat channels opened by the first of
    each pair, every node at the chain tip (for hand-built routes)."""
    from node_factory import sync_blockheight
    l1, l2, l3 = node_factory.get_nodes(3, opts=opts)
    fund(l1)
    fund(l2)
    open_channel(l1, l2, 1_000_000)
    open_channel(l2, l3, 1_000_000)
    sync_blockheight(l1, l2, l3)
    return l1, l2, l3


def test_open_and_mutual_close(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    l1.connect(l2)
    r = l1.rpc.fundchannel(l2.node_id, 1_000_000, push_msat=100_000_000)
    assert set(r) >= {"tx", "txid", "outnum", "channel_id", "channel_type"}
    assert r["txid"] in l1.chain.rpc.getrawmempool()
    assert channel(l1, l2)["state"] == "CHANNELD_AWAITING_LOCKIN"
    wait_for(lambda: channel(l2, l1) is not None)
    l1.chain.mine(3)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    c1, c2 = channel(l1, l2), channel(l2, l1)
    assert c1["short_channel_id"] == c2["short_channel_id"]
    assert c1["total_msat"] == 1_000_000_000
    assert c1["to_us_msat"] == 900_000_000 and c2["to_us_msat"] == 100_000_000
    assert c1["opener"] == "local" and c2["opener"] == "remote"
    assert l1.rpc.getinfo()["num_active_channels"] == 1
    funds = l1.rpc.listfunds()["channels"]
    assert funds[0]["our_amount_msat"] == 900_000_000 and funds[0]["amount_msat"] == 1_000_000_000
    # mutual close: each side gets exactly its balance (the opener pays the fee)
    res = l1.rpc.close(l2.node_id)
    assert res["type"] == "mutual"
    closing = l1.chain.rpc.decoderawtransaction(res["tx"])
    l1.chain.mine(1)
    outs = {o["scriptPubKey"]["hex"]: round(o["value"] * 100_000_000) for o in closing["vout"]}
    assert 100_000 in outs.values()
    fee = 1_000_000 - sum(outs.values())
    assert sorted(outs.values()) == sorted([100_000, 900_000 - fee])
    wait_for(lambda: channel(l1, l2)["state"] in ("ONCHAIN", "FUNDING_SPEND_SEEN"))


def test_fundchannel_errors(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    with pytest.raises(RpcError) as e:
        l1.rpc.fundchannel(l2.node_id, 100_000)
    assert e.value.error["code"] == 306  # unknown peer
    l1.connect(l2)
    with pytest.raises(RpcError) as e:
        l1.rpc.fundchannel(l2.node_id, 100_000)
    assert e.value.error["code"] == 301  # no funds
    assert channel(l1, l2) is None


def test_sendpay_direct_and_waitsendpay(node_factory):
    """A payment over one channel with a hand-built route, settled both sides."""
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    inv = l2.rpc.invoice(50_000_000, "lbl1", "desc")
    route = [{"id": l2.node_id, "channel": channel(l1, l2)["short_channel_id"], "amount_msat": 50_000_000,
              "delay": 18}]
    r = l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    assert r["status"] == "pending"
    res = l1.rpc.waitsendpay(inv["payment_hash"], 30)
    assert res["status"] == "complete"
    wait_for(lambda: l2.rpc.listinvoices("lbl1")["invoices"][0]["status"] == "paid")
    wait_for(lambda: channel(l1, l2)["to_us_msat"] == 950_000_000 and not channel(l1, l2)["htlcs"])
    assert channel(l2, l1)["to_us_msat"] == 50_000_000
    # pay via bolt11 too
    inv2 = l2.rpc.invoice(1_000_000, "lbl2", "desc2")
    p = l1.rpc.pay(inv2["bolt11"])
    assert p["status"] == "complete" and p["amount_msat"] == 1_000_000
    assert l1.rpc.listpays(inv2["bolt11"])["pays"][0]["status"] == "complete"


def test_two_channels_one_peer_and_channels_to_different_peers(node_factory):
    l1, l2, l3 = node_factory.get_nodes(3)
    for _ in range(3):   # one confirmed coin per funding transaction
        fund(l1, 2_000_000)
    wait_for(lambda: len(l1.rpc.listfunds()["outputs"]) == 3)
    l1.connect(l2)
    l1.connect(l3)
    r1 = l1.rpc.fundchannel(l2.node_id, 1_000_000)
    r2 = l1.rpc.fundchannel(l2.node_id, 700_000)
    r3 = l1.rpc.fundchannel(l3.node_id, 600_000)
    assert len({r1["channel_id"], r2["channel_id"], r3["channel_id"]}) == 3
    l1.chain.mine(3)

    def states(a, b):
        return sorted(c["state"] for c in a.rpc.listpeerchannels(b.node_id)["channels"])
    wait_for(lambda: states(l1, l2) == ["CHANNELD_NORMAL"] * 2 and states(l2, l1) == ["CHANNELD_NORMAL"] * 2)
    wait_for(lambda: states(l1, l3) == ["CHANNELD_NORMAL"] and states(l3, l1) == ["CHANNELD_NORMAL"])
    assert l1.rpc.getinfo()["num_active_channels"] == 3
    assert l1.rpc.listpeers(l2.node_id)["peers"][0]["num_channels"] == 2
    # each channel is its own process
    assert list(l1.subdaemon_pids_all().values()).count("channeld") == 3


def test_restart_both_nodes_channel_comes_back(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000, push_msat=10_000_000)
    scid = channel(l1, l2)["short_channel_id"]
    l1.restart()
    l2.restart()
    # l1 dialled l2 before: it reconnects by itself
    wait_for(lambda: l1.is_connected(l2), timeout=60)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l1, l2)["peer_connected"])
    c = channel(l1, l2)
    assert c["short_channel_id"] == scid and c["to_us_msat"] == 990_000_000
    wait_for(lambda: channel(l1, l2)["spendable_msat"] > 0)


def test_dev_sign_last_tx_is_valid_on_chain(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    tx = l1.rpc.call("dev-sign-last-tx", [l2.node_id])["tx"]
    res = l1.chain.rpc.testmempoolaccept([tx])[0]
    assert res["allowed"], res


def pay_and_check(payer, payee, label, amount_msat=1_000_000):
    inv = payee.rpc.invoice(amount_msat, label, label)
    assert payer.rpc.pay(inv["bolt11"])["status"] == "complete"


def test_kill9_connectd_peers_come_back(node_factory):
    import os
    import signal
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    pay_and_check(l1, l2, "before")
    old = l1.subdaemon_pids()["connectd"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: l1.subdaemon_pids().get("connectd") not in (None, old))
    wait_for(lambda: l1.is_connected(l2), timeout=60)
    wait_for(lambda: channel(l1, l2)["peer_connected"] and channel(l1, l2)["spendable_msat"] > 0, timeout=60)
    pay_and_check(l1, l2, "after")
    wait_for(lambda: channel(l2, l1)["to_us_msat"] == 2_000_000)


def test_kill9_master_subdaemons_exit_and_channel_comes_back(node_factory):
    from node_factory import pid_alive
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    pay_and_check(l1, l2, "before")
    children = list(l1.subdaemon_pids_all())
    assert "channeld" in l1.subdaemon_pids_all().values()
    l1.kill()
    # every subdaemon notices its master is gone and exits
    wait_for(lambda: not any(pid_alive(p) for p in children))
    l1.start()
    wait_for(lambda: l1.is_connected(l2), timeout=60)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l1, l2)["spendable_msat"] > 0,
             timeout=60)
    pay_and_check(l1, l2, "after")
    wait_for(lambda: channel(l1, l2)["to_us_msat"] == 998_000_000)


@pytest.mark.skipif(db_provider_name() != "sqlite3", reason="restores the SQLite file")
def test_restored_old_database_never_broadcasts_revoked_state(node_factory):
    """option_data_loss_protect: l1 comes back from an old backup.  l2 proves
    l1 is behind; l1 must not broadcast its (revoked) commitment, l2 closes,
    and l1 still gets its balance from l2's commitment."""
    import shutil
    l1, l2 = node_factory.get_nodes(2)
    l1.allow_broken_log = True    # l1 learns it lost data: Core Lightning logs that as broken too
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    l1.stop()
    db = l1.lightning_dir / "lightningd.sqlite3"
    backup = l1.lightning_dir / "backup.sqlite3"
    shutil.copy(db, backup)
    l1.start()
    wait_for(lambda: channel(l1, l2)["peer_connected"] and channel(l1, l2)["spendable_msat"] > 0, timeout=60)
    for i in range(2):
        inv = l2.rpc.invoice(50_000_000, f"p{i}", "advance the state")
        l1.rpc.pay(inv["bolt11"])
    wait_for(lambda: channel(l2, l1)["to_us_msat"] == 100_000_000)
    l1.stop()
    for suffix in ("-wal", "-shm"):
        (l1.lightning_dir / f"lightningd.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, db)
    mempool_before = set(l1.chain.rpc.getrawmempool())
    l1.start()
    wallet_before = sum(o["amount_msat"] for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed")
    wait_for(lambda: channel(l1, l2)["state"] == "AWAITING_UNILATERAL", timeout=60)
    # l2 was told to close, and did so with its latest commitment
    wait_for(lambda: channel(l2, l1)["state"] in ("AWAITING_UNILATERAL", "FUNDING_SPEND_SEEN", "ONCHAIN"))
    spends = wait_for(lambda: set(l1.chain.rpc.getrawmempool()) - mempool_before)
    assert len(spends) == 1
    l2_commit = l1.chain.rpc.getrawtransaction(spends.pop(), True)
    # an anchors channel (the default): its to_remote pays l1 its current
    # balance, 900,000 sat less the commitment fee and the two 330-sat
    # anchors l1 pays as the opener
    outs = sorted(round(o["value"] * 100_000_000) for o in l2_commit["vout"])
    assert outs[:3] == [330, 330, 100_000] and 890_000 < outs[-1] < 900_000 - 660 and len(outs) == 4
    l1.chain.mine(1)
    wait_for(lambda: channel(l1, l2)["state"] in ("FUNDING_SPEND_SEEN", "ONCHAIN"), timeout=60)
    # onchaind recognises only our to_remote (static_remotekey; with anchors
    # its 1-block CSV) and sweeps it to the wallet
    wait_for(lambda: l1.chain.rpc.getrawmempool(), timeout=60)
    l1.chain.mine(1)
    wait_for(lambda: sum(o["amount_msat"] for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed")
             >= wallet_before + (outs[-1] - 5_000) * 1000, timeout=60)


def test_listpeerchannels_by_channel_id_and_one_filter_at_most(node_factory):
    """listpeerchannels takes id, short_channel_id or channel_id, at most
    one of them (Core Lightning: -32602 otherwise)."""
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2)
    ch = channel(l1, l2)
    assert [c["channel_id"] for c in l1.rpc.listpeerchannels(channel_id=ch["channel_id"])["channels"]] == \
        [ch["channel_id"]]
    assert l1.rpc.listpeerchannels(channel_id="00" * 32)["channels"] == []
    for two in ({"id": l2.node_id, "short_channel_id": ch["short_channel_id"]},
                {"short_channel_id": ch["short_channel_id"], "channel_id": ch["channel_id"]}):
        with pytest.raises(RpcError) as e:
            l1.rpc.call("listpeerchannels", two)
        assert e.value.error == {"code": -32602,
                                 "message": "Must not specify more than one of short_channel_id, channel_id or id"}
    with pytest.raises(RpcError) as e:
        l1.rpc.call("listpeerchannels", {"channel_id": "zz"})
    assert e.value.error["code"] == -32602 and e.value.error["message"].startswith("channel_id: should be a channel id")
