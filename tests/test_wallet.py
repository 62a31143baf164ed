"""The on-chain wallet on the regtest chain: receive, withdraw, reorgs, restarts."""
from decimal import Decimal

import pytest
from pyln.client import RpcError

from node_factory import wait_for


def funds(node, status=None):
    outs = node.rpc.listfunds()["outputs"]
    return [o for o in outs if status is None or o["status"] == status]


def test_newaddr_types_and_listaddresses(node_factory):
    l1 = node_factory.get_node()
    a = l1.rpc.newaddr()
    assert set(a) == {"p2tr"} and a["p2tr"].startswith("bcrt1p")
    b = l1.rpc.newaddr("bech32")
    assert set(b) == {"bech32"} and b["bech32"].startswith("bcrt1q")
    c = l1.rpc.newaddr("all")
    assert set(c) == {"bech32", "p2tr"}
    addrs = l1.rpc.call("listaddresses")["addresses"]
    assert [x["keyidx"] for x in addrs] == [0, 1, 2]
    assert addrs[2] == {"keyidx": 2, **c}
    with pytest.raises(RpcError):
        l1.rpc.newaddr("p2pkh")


def test_receive_ordinary_and_coinbase(node_factory):
    l1 = node_factory.get_node()
    chain = l1.chain
    addr = l1.rpc.newaddr("bech32")["bech32"]
    taddr = l1.rpc.newaddr("p2tr")["p2tr"]
    txid, vout = chain.fund(addr, 1_000_000)
    txid2, vout2 = chain.fund(taddr, 250_000)
    chain.mine(1)
    wait_for(lambda: len(funds(l1, "confirmed")) == 2)
    o = {f["txid"]: f for f in funds(l1)}
    assert o[txid]["amount_msat"] == 1_000_000_000 and o[txid]["output"] == vout and o[txid]["address"] == addr
    assert o[txid2]["amount_msat"] == 250_000_000 and o[txid2]["address"] == taddr
    assert o[txid]["blockheight"] == chain.rpc.getblockcount()
    # a coinbase to us is immature until 100 confirmations
    cb_addr = l1.rpc.newaddr("bech32")["bech32"]
    chain.mine(1, cb_addr)
    wait_for(lambda: len(funds(l1, "immature")) == 1)
    chain.mine(99)
    wait_for(lambda: len(funds(l1, "immature")) == 0 and len(funds(l1, "confirmed")) == 3)


def test_deposit_reorged_out_and_confirmed_again(node_factory):
    l1 = node_factory.get_node()
    chain = l1.chain
    addr = l1.rpc.newaddr("bech32")["bech32"]
    txid, _ = chain.fund(addr, 500_000)
    blockhash = chain.mine(1)[0]
    height = chain.rpc.getblockcount()
    wait_for(lambda: funds(l1, "confirmed"))
    chain.rpc.invalidateblock(blockhash)
    chain.mine(2)  # a longer chain without our deposit's block (the tx goes back in the mempool first)
    # regtestd re-mines the deposit in the new chain: it is confirmed again, maybe at another height
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == height + 1)
    wait_for(lambda: [f for f in funds(l1) if f["txid"] == txid and f["status"] == "confirmed"])
    assert len(funds(l1)) == 1


def test_deposit_removed_by_reorg(node_factory):
    l1 = node_factory.get_node()
    chain = l1.chain
    addr = l1.rpc.newaddr("bech32")["bech32"]
    cb = chain.mine(1, addr)[0]  # a coinbase to us: gone for good if its block is
    wait_for(lambda: funds(l1, "immature"))
    chain.rpc.invalidateblock(cb)
    chain.mine(2)
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == chain.rpc.getblockcount())
    wait_for(lambda: not funds(l1))


def test_wallet_survives_restart(node_factory):
    l1 = node_factory.get_node()
    addr = l1.rpc.newaddr("bech32")["bech32"]
    l1.chain.fund(addr, 123_456)
    l1.chain.mine(1)
    wait_for(lambda: funds(l1, "confirmed"))
    before = funds(l1)
    l1.restart()
    assert funds(l1) == before
    assert l1.rpc.newaddr("bech32")["bech32"] != addr
    l1.chain.mine(5)
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == l1.chain.rpc.getblockcount())
    assert Decimal(sum(o["amount_msat"] for o in funds(l1))) == 123_456_000


def test_feerates(node_factory):
    l1 = node_factory.get_node()
    r = l1.rpc.feerates("perkw")
    pk = r["perkw"]
    assert pk["opening"] >= 253 and pk["min_acceptable"] <= pk["opening"] <= pk["max_acceptable"]
    assert pk["floor"] >= 253
    assert any(e["blockcount"] == 12 for e in pk["estimates"])
    kb = l1.rpc.feerates("perkb")["perkb"]
    assert kb["opening"] == pk["opening"] * 4
    assert "onchain_fee_estimates" in r
