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


def test_reorg_to_a_shorter_chain(node_factory):
    """invalidateblock without mining: the backend's chain is now shorter
    than ours and our tip is not on it; we follow it down."""
    l1 = node_factory.get_node()
    chain = l1.chain
    addr = l1.rpc.newaddr("bech32")["bech32"]
    cb = chain.mine(1, addr)[0]
    height = chain.rpc.getblockcount()
    wait_for(lambda: funds(l1, "immature") and l1.rpc.getinfo()["blockheight"] == height)
    chain.rpc.invalidateblock(cb)
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == height - 1)
    wait_for(lambda: not funds(l1))
    chain.mine(1)   # and on from there
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == height)
    assert not funds(l1)


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
    # the first estimates may arrive just after the node is ready
    pk = wait_for(lambda: (p := l1.rpc.feerates("perkw")["perkw"])["estimates"] and p)
    assert any(e["blockcount"] == 12 for e in pk["estimates"])
    kb = l1.rpc.feerates("perkb")["perkb"]
    assert kb["opening"] == pk["opening"] * 4
    assert "onchain_fee_estimates" in r


def fund_node(node, amounts, kind="bech32"):
    before = len(funds(node, "confirmed"))
    txids = []
    for a in amounts:
        addr = node.rpc.newaddr(kind)[kind]
        txids.append(node.chain.fund(addr, a)[0])
    node.chain.mine(1)
    wait_for(lambda: len(funds(node, "confirmed")) >= before + len(amounts))
    return txids


def chain_tx(chain, txid):
    return chain.rpc.getrawtransaction(txid, True)


def test_withdraw_with_change_exact_amounts(node_factory):
    l1 = node_factory.get_node()
    chain = l1.chain
    fund_node(l1, [1_000_000], "bech32")
    fund_node(l1, [2_000_000], "p2tr")
    dest = chain.faucet_address
    r = l1.rpc.withdraw(dest, 1_500_000, "2000perkw")
    assert set(r) == {"tx", "txid", "psbt"}
    # accepted by the chain (Bitcoin Core's rules) and mined
    assert r["txid"] in chain.rpc.getrawmempool()
    chain.mine(1)
    tx = chain_tx(chain, r["txid"])
    outs = {o["scriptPubKey"]["address"]: int(Decimal(str(o["value"])) * 100_000_000) for o in tx["vout"]}
    assert outs[dest] == 1_500_000
    ins = sum(int(Decimal(str(chain_tx(chain, i["txid"])["vout"][i["vout"]]["value"])) * 100_000_000)
              for i in tx["vin"])
    fee = ins - sum(outs.values())
    weight = tx["weight"]
    # the fee is what the feerate asks for the transaction's real weight (the estimate uses
    # the maximum signature size, so it can only be a little above)
    assert 2000 * weight // 1000 <= fee <= 2000 * (weight + 10) // 1000
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == chain.rpc.getblockcount())
    mine = [o for o in funds(l1) if o["status"] == "confirmed"]
    change = [o for o in mine if o["txid"] == r["txid"]]
    assert len(change) == 1 and change[0]["amount_msat"] == (ins - 1_500_000 - fee) * 1000
    assert sum(o["amount_msat"] for o in funds(l1)) == (3_000_000 - 1_500_000 - fee) * 1000
    txs = l1.rpc.listtransactions()["transactions"]
    assert any(t["hash"] == r["txid"] for t in txs)


def test_withdraw_all_and_refusals(node_factory):
    l1 = node_factory.get_node()
    chain = l1.chain
    fund_node(l1, [300_000, 200_000])
    with pytest.raises(RpcError) as e:
        l1.rpc.withdraw(chain.faucet_address, 10_000_000)
    assert e.value.error["code"] == 301
    with pytest.raises(RpcError) as e:
        l1.rpc.withdraw("bcrt1qnotanaddress", 10_000)
    assert e.value.error["code"] == -32602
    with pytest.raises(RpcError) as e:
        l1.rpc.withdraw(chain.faucet_address, 100)
    assert e.value.error["code"] == 302
    with pytest.raises(RpcError) as e:
        l1.rpc.withdraw(chain.faucet_address, 10_000, utxos=["00" * 32 + ":0"])
    assert e.value.error["code"] == -32602
    # nothing reserved or spent by the failures
    assert all(not o["reserved"] and o["status"] == "confirmed" for o in funds(l1))
    r = l1.rpc.withdraw(chain.faucet_address, "all")
    tx = chain.rpc.decoderawtransaction(r["tx"])
    assert len(tx["vin"]) == 2 and len(tx["vout"]) == 1
    chain.mine(1)
    wait_for(lambda: not [o for o in funds(l1) if o["status"] != "spent"])


def test_concurrent_withdraws_never_share_coins(node_factory):
    import concurrent.futures
    l1 = node_factory.get_node()
    chain = l1.chain
    fund_node(l1, [100_000] * 6)

    def w(_):
        try:
            return l1.rpc.withdraw(chain.faucet_address, 60_000)["txid"]
        except RpcError as e:
            return e.error["code"]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(w, range(8)))
    txids = [r for r in results if isinstance(r, str)]
    assert len(txids) == 6 and results.count(301) == 2
    spent = [i["txid"] + str(i["vout"]) for t in txids for i in chain.rpc.decoderawtransaction(
        chain.rpc.getrawtransaction(t))["vin"]]
    assert len(spent) == len(set(spent)) == 6
    chain.mine(1)
    assert all(t not in chain.rpc.getrawmempool() for t in txids)


def test_txprepare_send_discard_and_unconfirmed_change(node_factory):
    l1 = node_factory.get_node()
    chain = l1.chain
    fund_node(l1, [500_000])
    p = l1.rpc.txprepare([{chain.faucet_address: 100_000}])
    assert all(o["reserved"] for o in funds(l1))
    d = l1.rpc.txdiscard(p["txid"])
    assert d["txid"] == p["txid"]
    assert not any(o["reserved"] for o in funds(l1))
    p = l1.rpc.txprepare([{chain.faucet_address: 100_000}])
    s = l1.rpc.txsend(p["txid"])
    assert s["txid"] == p["txid"] and s["txid"] in chain.rpc.getrawmempool()
    # the unconfirmed change can be spent right away with minconf=0
    r = l1.rpc.withdraw(chain.faucet_address, 50_000, minconf=0)
    assert r["txid"] in chain.rpc.getrawmempool()
    chain.mine(1)
    wait_for(lambda: len(funds(l1, "confirmed")) == 1)


def test_backend_outage_and_recovery(node_factory):
    l1 = node_factory.get_node()
    chain = l1.chain
    h = l1.rpc.getinfo()["blockheight"]
    chain.stop()
    # the node keeps answering while the backend is gone, and says so once
    assert l1.rpc.getinfo()["blockheight"] == h
    wait_for(lambda: any("unavailable" in e.get("log", "") for e in l1.rpc.getlog("unusual")["log"]))
    assert l1.rpc.getinfo()["id"] == l1.node_id
    chain.start()
    chain.mine(2)
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == h + 2, timeout=60)
    log = l1.rpc.getlog("unusual")["log"]
    assert sum("unavailable" in e.get("log", "") for e in log) == 1


def test_kill9_during_withdraw_loses_nothing(node_factory):
    import signal
    import threading
    l1 = node_factory.get_node(may_fail=True)
    chain = l1.chain
    fund_node(l1, [400_000, 400_000])
    total = sum(o["amount_msat"] for o in funds(l1))

    def go():
        try:
            l1.rpc.withdraw(chain.faucet_address, 100_000)
        except Exception:
            pass
    t = threading.Thread(target=go)
    t.start()
    l1.proc.send_signal(signal.SIGKILL)
    t.join(10)
    l1.proc.wait()
    l1.start()
    chain.mine(1)
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == chain.rpc.getblockcount())
    # either the withdraw happened (and its change is ours) or it did not: never both, never lost
    outs = [o for o in funds(l1) if o["status"] != "spent"]
    mine_total = sum(o["amount_msat"] for o in outs)
    assert mine_total == total or total - mine_total >= 100_000_000
    assert total - mine_total <= 100_000_000 + 10_000_000


def test_backend_replaced_by_plugin(node_factory):
    """A plugin registering the five backend methods is the only chain source."""
    import os
    from pathlib import Path
    plugin = str(Path(__file__).parent / "plugins" / "bcli_proxy.py")
    chain = node_factory.chain
    l1 = node_factory.get_node(options={"plugin": plugin, "proxy-url": chain.url,
                                        # a bitcoind the node could not use: only the plugin works
                                        "bitcoin-rpcport": 1, "bitcoin-retry-timeout": 1})
    assert l1.rpc.proxycalls()["n"] > 0
    addr = l1.rpc.newaddr("bech32")["bech32"]
    chain.fund(addr, 300_000)
    chain.mine(1)
    wait_for(lambda: funds(l1, "confirmed"))
    r = l1.rpc.withdraw(chain.faucet_address, 100_000)
    assert r["txid"] in chain.rpc.getrawmempool()
    assert os.path.exists(plugin)
