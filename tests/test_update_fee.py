"""update_fee: the opener follows the chain's fee estimate (its own module:
it changes the shared regtest chain's estimate)."""
from node_factory import wait_for
from test_channels import channel, fund, open_channel


def test_opener_follows_the_fee_estimate_with_update_fee(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    before = channel(l1, l2)["feerate"]["perkw"]
    l1.chain.rpc.setfeerate("0.001")   # 100 sat/vB: 25,000 perkw, 4x the fallback
    wait_for(lambda: l1.rpc.feerates("perkw")["perkw"]["unilateral_close"] > 2 * before)
    # the opener sends update_fee; once committed both sides show it
    wait_for(lambda: channel(l1, l2)["feerate"]["perkw"] > 2 * before, timeout=60)
    wait_for(lambda: channel(l2, l1)["feerate"]["perkw"] == channel(l1, l2)["feerate"]["perkw"])
    # the channel still works at the new rate, and the commitment is valid on chain
    inv = l2.rpc.invoice(10_000_000, "afterfee", "after update_fee")
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    tx = l1.rpc.call("dev-sign-last-tx", [l2.node_id])["tx"]
    assert l1.chain.rpc.testmempoolaccept([tx])[0]["allowed"]
    # the non-opener never sends update_fee: l2's view only changed by l1's update
    assert channel(l2, l1)["opener"] == "remote"
