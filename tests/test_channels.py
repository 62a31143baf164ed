"""Channels between real nodes on the regtest chain: open, lock in, close."""
import pytest
from pyln.client import RpcError

from node_factory import wait_for


def fund(node, sats=2_000_000):
    addr = node.rpc.newaddr("bech32")["bech32"]
    node.chain.fund(addr, sats)
    node.chain.mine(1)
    wait_for(lambda: any(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]))


def channel(node, peer):
    chans = node.rpc.listpeerchannels(peer.node_id)["channels"]
    return chans[0] if chans else None


def open_channel(l1, l2, amount=1_000_000, **kw):
    if not l1.is_connected(l2):
        l1.connect(l2)
    r = l1.rpc.fundchannel(l2.node_id, amount, **kw)
    l1.chain.mine(3)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    return r


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
