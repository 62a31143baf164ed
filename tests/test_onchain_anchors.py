"""Anchors channels on chain (BOLT 3 option_anchors, BOLT 5): our commitment
pays the slow feerate and is CPFP'd through our anchor by the wallet; our
zero-fee HTLC transactions get wallet inputs to pay their fee.  Every
transaction is accepted by regtestd's mempool and mined.

Its own module: it sets the chain's fee estimates (2 sat/vB for 50 blocks
and more, 10 sat/vB below) so that the slow rate of the commitment is well
under the rate the package must reach."""
import os
from decimal import Decimal

import pytest
from bitcoinrpc.authproxy import JSONRPCException

from node_factory import wait_for
from test_channels import channel, fund, open_channel
from test_onchain import (ANCHOR_SAT, CAPACITY, DELAY, HOLD, OPTS, check_accounting, close_after_100_blocks, height,
                          held, mempool, mine, pay_status, sats, send_htlc, state, status, wait_mempool)

SLOW_PERKW = 500          # 2 sat/vB
FAST_PERKW = 2500         # 10 sat/vB: unilateral_anchor_close, htlc_resolution


@pytest.fixture(autouse=True)
def fee_estimates(chain):
    chain.rpc.setfeerate(Decimal("0.00002"))
    chain.rpc.setfeerate(Decimal("0.0001"), 2)
    chain.rpc.setfeerate(Decimal("0.00002"), 50)
    yield
    chain.rpc.setfeerate(None)


def decoded(node, txid):
    return node.chain.rpc.getrawtransaction(txid, True)


def fee_of(node, tx) -> int:
    ins = sum(sats(decoded(node, i["txid"])["vout"][i["vout"]]["value"]) for i in tx["vin"])
    return ins - sum(sats(o["value"]) for o in tx["vout"])


def open_anchors(l1, l2, push_msat):
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=push_msat, channel_type=[12, 22])
    funding = channel(l1, l2)
    assert "anchors/even" in funding["channel_type"]["names"]
    assert funding["feerate"]["perkw"] == SLOW_PERKW
    return funding


def cpfp_child(l1, funding):
    """(commitment, child) in the mempool: the child spends the commitment's
    330-sat anchor of l1 and a coin of l1's wallet, back to l1's wallet."""
    txs = [decoded(l1, t) for t in wait_mempool(l1, 2)]
    commitment = next(t for t in txs if t["vin"][0]["txid"] == funding["funding_txid"])
    child = next(t for t in txs if t is not commitment)
    anchor = child["vin"][0]
    assert anchor["txid"] == commitment["txid"]
    assert sats(commitment["vout"][anchor["vout"]]["value"]) == ANCHOR_SAT
    assert len(child["vin"]) >= 2 and len(child["vout"]) == 1
    assert wait_for(lambda: child["vout"][0]["scriptPubKey"]["address"] in
                    {a.get("p2tr") for a in l1.rpc.listaddresses()["addresses"]})
    return commitment, child


def test_anchors_commitment_cpfp_then_sweeps(node_factory):
    """l1 goes on chain alone: its commitment (at the slow rate) and a CPFP
    child bringing the package to the urgent rate enter the mempool together
    and are mined in the same block; then l1's to_local (after the delay) and
    l2's to_remote (1-block CSV) are swept; l2's anchor is left."""
    l1, l2 = node_factory.get_nodes(2, opts=OPTS)
    funding = open_anchors(l1, l2, 300_000_000)
    start = height(l1)
    l2.stop()
    l1.rpc.close(l2.node_id, unilateraltimeout=1)
    commitment, child = cpfp_child(l1, funding)
    commit_fee = CAPACITY - sum(sats(o["value"]) for o in commitment["vout"])
    assert commit_fee * 1000 // commitment["weight"] < FAST_PERKW
    child_fee = fee_of(l1, child)
    package = (commit_fee + child_fee) * 1000 // (commitment["weight"] + child["weight"])
    print(f"\n[anchors CPFP] commitment fee {commit_fee} sat ({commit_fee * 1000 // commitment['weight']} sat/kw), "
          f"child fee {child_fee} sat: package {package} sat/kw")
    assert FAST_PERKW <= package <= FAST_PERKW * 11 // 10
    l2.start()
    mine(l1, 1, l1, l2)
    conf = height(l1)
    block = l1.chain.rpc.getblock(l1.chain.rpc.getblockhash(conf))["tx"]
    assert commitment["txid"] in block and child["txid"] in block
    # the change of the child is l1's coin
    wait_for(lambda: (child["txid"], 0) in {(o["txid"], o["output"]) for o in l1.rpc.listfunds()["outputs"]})
    wait_for(lambda: state(l1, l2) == "ONCHAIN" and state(l2, l1) == "ONCHAIN")
    wait_for(lambda: any("ANCHORED_OUTPUT_TO_US" in s and "broadcast" in s for s in status(l2, l1)))
    wait_mempool(l1)                 # l2's to_remote sweep
    mine(l1, DELAY - 1, l1, l2)
    # l1's to_local sweep can go in the next block: broadcast once l1 has
    # processed the last one (which mine() does not wait for)
    wait_mempool(l1)
    mine(l1, 1, l1, l2)
    wait_for(lambda: not mempool(l1))
    close_after_100_blocks(l1, l1, l2, l1, l2)
    close_after_100_blocks(l1, l2, l1, l1, l2)
    print(f"[anchors] closed {height(l1) - conf + 1} blocks after the commitment")
    txs, leaves, owned = check_accounting({"l1": l1, "l2": l2}, funding, start, "anchors: CPFP, our/their unilateral",
                                          anchors=True)
    # l2's anchor, l1's to_local sweep and CPFP change, l2's to_remote sweep
    assert sorted(owned[op] for op in leaves) == ["anchor", "l1", "l1", "l2"]


def test_anchors_htlc_txs_paid_by_the_wallet(node_factory):
    """Anchors HTLC txs carry no fee: l1's HTLC-success (preimage known) and
    HTLC-timeout (the peer never claims) each get a wallet coin and a change
    output, pay the HTLC-resolution rate, and confirm; the payments settle
    (l2 learns the preimage on chain) and fail (after the timeout is 3 deep)."""
    l1, l2 = node_factory.get_nodes(2, opts=dict(OPTS, plugin=HOLD))
    funding = open_anchors(l1, l2, 400_000_000)
    # a second (taproot) coin: the CPFP child, then the two HTLC txs, each take the largest free coin
    l1.chain.fund(l1.rpc.newaddr("p2tr")["p2tr"], 50_000)
    l1.chain.mine(1)
    wait_for(lambda: len([o for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]) == 2)
    pa, pb = os.urandom(32), os.urandom(32)
    ha = send_htlc(l1, l2, 100_000_000, pa, 14)
    hb = send_htlc(l2, l1, 50_000_000, pb, 40)
    wait_for(lambda: held(l2) == [ha] and held(l1) == [hb])
    expiry = next(h["expiry"] for h in channel(l1, l2)["htlcs"] if h["payment_hash"] == ha)
    start = height(l1)
    assert l1.rpc.close(l2.node_id, unilateraltimeout=1)["type"] == "unilateral"
    l1.rpc.call("holdhtlcs-release", [hb, pb.hex()])    # only the chain can carry it now
    cpfp_child(l1, funding)
    mine(l1, 1, l1, l2)
    conf = height(l1)
    wait_for(lambda: state(l1, l2) == "ONCHAIN" and state(l2, l1) == "ONCHAIN")

    def htlc_tx(kind):
        wait_for(lambda: any(kind in s and "broadcast" in s for s in status(l1, l2)), timeout=60)
        for t in mempool(l1):
            try:
                tx = decoded(l1, t)
            except JSONRPCException:     # mined or replaced since getrawmempool
                continue
            if len(tx["vin"]) >= 2 and len(tx["vin"][0]["txinwitness"]) == 5:   # 0, two sigs, preimage/empty, script
                return tx
        return None

    success = wait_for(lambda: htlc_tx("OUR_HTLC_SUCCESS_TX"))
    fee = fee_of(l1, success)
    print(f"\n[anchors HTLC-success] {len(success['vin'])} inputs, fee {fee} sat "
          f"({fee * 1000 // success['weight']} sat/kw), {height(l1) - conf + 1} blocks after the commitment")
    assert FAST_PERKW <= fee * 1000 // success["weight"] <= FAST_PERKW * 11 // 10
    assert success["vin"][0]["sequence"] == 1                  # the anchors CSV of 1
    mine(l1, 1, l1, l2)
    assert success["txid"] in l1.chain.rpc.getblock(l1.chain.rpc.getblockhash(height(l1)))["tx"]
    wait_for(lambda: pay_status(l2, hb) == "complete")
    assert l2.rpc.listsendpays(payment_hash=hb)["payments"][0]["payment_preimage"] == pb.hex()
    # a restart before the HTLC-timeout can be mined: the coin reserved for it
    # (the 50,000-sat one) is the one it spends, not another
    l1.restart()
    wait_for(lambda: state(l1, l2) == "ONCHAIN")

    # ha: l2 never releases it; l1 times it out with its HTLC-timeout at expiry
    while height(l1) < expiry - 1:
        mine(l1, 1, l1, l2)
    assert pay_status(l1, ha) == "pending"
    assert not [t for t in mempool(l1) if len(decoded(l1, t)["vin"]) >= 2]   # too early: locktime
    mine(l1, 1, l1, l2)
    timeout = wait_for(lambda: htlc_tx("OUR_HTLC_TIMEOUT_TX"))
    fee = fee_of(l1, timeout)
    print(f"[anchors HTLC-timeout] {len(timeout['vin'])} inputs, fee {fee} sat "
          f"({fee * 1000 // timeout['weight']} sat/kw), locktime {timeout['locktime']}")
    assert timeout["locktime"] == expiry
    assert [sats(decoded(l1, i["txid"])["vout"][i["vout"]]["value"]) for i in timeout["vin"][1:]] == [50_000]
    # listpeerchannels names the transaction broadcast, not the zero-fee one the peer signed
    wait_for(lambda: any(timeout["txid"] in s and "wallet inputs" in s for s in status(l1, l2)))
    assert FAST_PERKW <= fee * 1000 // timeout["weight"] <= FAST_PERKW * 11 // 10
    mine(l1, 1, l1, l2)
    assert timeout["txid"] in l1.chain.rpc.getblock(l1.chain.rpc.getblockhash(height(l1)))["tx"]
    mine(l1, 2, l1, l2)
    wait_for(lambda: pay_status(l1, ha) == "failed")

    # the delayed outputs of both HTLC txs and to_local are swept to l1's wallet
    mine(l1, DELAY + 1, l1, l2)
    wait_for(lambda: not mempool(l1))
    close_after_100_blocks(l1, l1, l2, l1, l2)
    close_after_100_blocks(l1, l2, l1, l1, l2)
    txs, leaves, owned = check_accounting({"l1": l1, "l2": l2}, funding, start, "anchors: HTLC txs with wallet inputs",
                                          anchors=True)
    # commitment, CPFP, HTLC-success + its sweep, HTLC-timeout + its sweep, to_local sweep, l2's to_remote sweep
    assert len(txs) == 8


def test_emergency_reserve_kept_while_anchor_channels_exist(node_factory):
    """Core Lightning's min-emergency-msat (25,000 sat): with an anchors
    channel, withdraw and fundchannel "all" leave it in the wallet, and a
    spend that cannot keep it fails with 313."""
    from pyln.client import RpcError
    l1, l2, l3 = node_factory.get_nodes(3, opts=OPTS)
    funding = open_anchors(l1, l2, 0)
    assert funding["state"] == "CHANNELD_NORMAL"
    addr = l2.rpc.newaddr("bech32")["bech32"]
    res = l1.rpc.withdraw(addr, "all")
    outs = sorted(sats(o["value"]) for o in decoded(l1, res["txid"])["vout"])
    assert outs[0] == 25_000 and len(outs) == 2                 # the reserve, and everything else
    mine(l1, 1, l1)
    wait_for(lambda: [o["amount_msat"] for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]
             == [25_000_000])
    with pytest.raises(RpcError) as e:
        l1.rpc.withdraw(addr, 10_000)
    assert e.value.error["code"] == 313
    assert "min-emergency-msat" in e.value.error["message"]
    # fundchannel "all" of another anchors channel keeps it too
    fund(l1, 500_000)
    wait_for(lambda: len([o for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]) == 2)
    l1.connect(l3)
    r = l1.rpc.fundchannel(l3.node_id, "all", channel_type=[12, 22])
    tx = decoded(l1, r["txid"])
    assert sats(tx["vout"][r["outnum"]]["value"]) > 490_000          # the rest of the wallet, less the fee
    spent = {(i["txid"], i["vout"]) for i in tx["vin"]}
    left = [o for o in l1.rpc.listfunds()["outputs"] if (o["txid"], o["output"]) not in spent]
    assert sum(o["amount_msat"] for o in left) >= 25_000_000           # as a coin left alone, or as change
