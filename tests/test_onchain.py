"""Channels resolved on chain by onchaind (BOLT 5), between real nodes on the
regtest chain: every transaction is accepted by regtestd (Bitcoin Core's
rules).  Each test follows the funding output's spend tree on chain and
checks that what is left pays the nodes' wallets and adds up to the channel
capacity minus the fees; the fees and block counts are printed (-s).

The channels here are static_remotekey ones, opened with that explicit
channel_type: their commitment and HTLC transactions pay their own fees,
which these tests count.  Anchors channels (the default between our
nodes) have their own module, test_onchain_anchors.py; the penalty tests
run with both types."""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from bitcoin.hashes import sha256
from bitcoinrpc.authproxy import JSONRPCException
from node_factory import sync_blockheight, wait_for
from test_channels import channel, fund, open_channel

PLUGINS = Path(__file__).parent / "plugins"
HOLD = str(PLUGINS / "holdhtlcs.py")
DELAY = 5                         # watchtime-blocks: the to_self_delay each node imposes
OPTS = {"watchtime-blocks": DELAY}
CAPACITY = 1_000_000
ANCHOR_SAT = 330
STATIC_REMOTEKEY = [12]           # channel_type: option_static_remotekey
ANCHORS = [12, 22]                # channel_type: option_anchors (with static_remotekey)


# --- helpers ------------------------------------------------------------------------

def state(node, peer):
    c = channel(node, peer)
    if c is not None:
        return c["state"]
    closed = node.rpc.listclosedchannels()["closedchannels"]
    return "CLOSED" if closed else None


def height(node):
    return node.chain.rpc.getblockcount()


def mine(node, n, *nodes):
    """Mine n blocks one at a time (each node sees each), waiting for nodes to sync."""
    for _ in range(n):
        node.chain.mine(1)
        h = height(node)
        for x in nodes:
            wait_for(lambda: x.rpc.getinfo()["blockheight"] >= h)


def mine_many(node, n, *nodes):
    node.chain.mine(n)
    h = height(node)
    for x in nodes:
        wait_for(lambda: x.rpc.getinfo()["blockheight"] >= h, timeout=60)


def mempool(node):
    return set(node.chain.rpc.getrawmempool())


def wait_mempool(node, n=1, timeout=30):
    return wait_for(lambda: len(mempool(node)) >= n and mempool(node), timeout=timeout)


def sats(btc) -> int:
    return int(round(float(btc) * 100_000_000))


def spend_tree(node, funding_txid, funding_outnum, start):
    """Every tx descending from the funding output (mined from `start`):
    [(tx json, height, fee)], the unspent leaves {(txid, n): value}, and the
    value of the inputs from outside the tree (wallet coins paying fees:
    anchors' CPFP and zero-fee HTLC txs)."""
    rpc = node.chain.rpc
    funding = (funding_txid, funding_outnum)
    values = {funding: CAPACITY}         # outputs of the tree
    txs, external = [], 0
    # in chain order, parents come first: a tx is in the tree if it spends a tree output
    for h in range(start, rpc.getblockcount() + 1):
        for tx in rpc.getblock(rpc.getblockhash(h), 2)["tx"]:
            ops = [(i["txid"], i["vout"]) for i in tx["vin"] if "txid" in i]
            if not any(op in values for op in ops):
                continue
            ins = 0
            for op in ops:
                if op not in values:      # a wallet coin paying fees
                    v = sats(rpc.getrawtransaction(op[0], True)["vout"][op[1]]["value"])
                    external += v
                    ins += v
                else:
                    ins += values.pop(op)
            outs = [sats(o["value"]) for o in tx["vout"]]
            txs.append((tx, h, ins - sum(outs)))
            for n, v in enumerate(outs):
                values[(tx["txid"], n)] = v
    leaves = values                       # what is left unspent
    return sorted(txs, key=lambda t: t[1]), leaves, external


def wallet_outputs(node):
    return {(o["txid"], o["output"]): o["amount_msat"] // 1000 for o in node.rpc.listfunds()["outputs"]}


def check_accounting(nodes, funding, start, label, anchors=False):
    """The leaves of the spend tree are the nodes' wallet coins and, with the
    fees, add up to the capacity.  Prints each tx's fee and height.
    `nodes`: {name: node}; `funding`: the channel (listpeerchannels)."""
    txs, leaves, external = spend_tree(next(iter(nodes.values())), funding["funding_txid"],
                                       funding["funding_outnum"], start)
    owned = {}
    for name, n in nodes.items():
        for op in wallet_outputs(n):
            owned[op] = name
    fees = sum(f for _, _, f in txs)
    assert sum(leaves.values()) + fees == CAPACITY + external
    for op, v in leaves.items():
        if op not in owned and v == ANCHOR_SAT and anchors:
            owned[op] = "anchor"          # anyone's after 16 blocks: left for CPFP
        assert op in owned, f"{op} ({v} sat) is in no wallet"
    first = txs[0][1]
    print(f"\n[{label}] spend tree from block {first}:")
    for tx, h, fee in txs:
        weight = tx["weight"]
        print(f"  +{h - first:3d} blocks  {tx['txid'][:16]}  fee {fee:6d} sat  "
              f"({fee * 1000 // weight} sat/kw, weight {weight})  -> "
              + ", ".join(f"{owned.get((tx['txid'], n), '?')}:{sats(o['value'])}" for n, o in enumerate(tx["vout"])
                          if (tx["txid"], n) in leaves))
    totals = {}
    for op, v in leaves.items():
        totals[owned[op]] = totals.get(owned[op], 0) + v
    print(f"  leaves {totals}, fees {fees}, total {sum(totals.values()) + fees} = capacity {CAPACITY}"
          + (f" + {external} from wallets" if external else ""))
    return txs, leaves, owned


def wait_closed(node, peer, timeout=60):
    wait_for(lambda: state(node, peer) == "CLOSED", timeout=timeout)


def chain_min_depth(node, peer):
    """Confirmations of node's latest resolution (None: not all resolved),
    once every status line agrees with the chain: getinfo's
    blockheight has a block before onchaind has told its depths (and
    maybe closed the channel), so a line read just after `mine` can be a
    block behind."""
    lines = status(node, peer)
    depths = []
    for s in lines:
        m = re.search(r"(?:([0-9a-f]{64}) )?\((\d+) confirmations\)", s)
        if m is None:
            return None
        # a line naming its tx ("resolved by IGNORED (n confirmations)" names none)
        if m.group(1) and int(m.group(2)) != node.chain.rpc.getrawtransaction(m.group(1), True)["confirmations"]:
            return None
        depths.append(int(m.group(2)))
    return min(depths) if depths else None


def close_after_100_blocks(miner, node, peer, *nodes):
    """node's channel with peer closes when its last resolution is 100 deep,
    not before (one already 100 deep, as the same tx as a peer's checked
    just before, closes without another block)."""
    d = wait_for(lambda: "closed" if state(node, peer) == "CLOSED" else chain_min_depth(node, peer))
    if d == "closed" or d >= 100:
        wait_closed(node, peer)
        return
    if d < 99:
        mine_many(miner, 99 - d, *nodes)
    wait_for(lambda: chain_min_depth(node, peer) == 99)
    assert state(node, peer) == "ONCHAIN"
    mine(miner, 1, *nodes)
    wait_closed(node, peer)


def status(node, peer):
    c = channel(node, peer)
    return c["status"] if c else []


# --- tests --------------------------------------------------------------------------------

def test_channel_export_contract():
    """channeld's export, parsed by onchaind, rebuilds every commitment that
    can appear on chain: each side's latest is classified exactly (ours /
    theirs), an older one of the peer as revoked.  Both go through the
    codec of channeld_export_onchain_reply and onchaind_init."""
    from channel_testing import Pipe, make_pair
    from channeld.onchain_export import export_onchain
    from onchaind.core import TxType, classify
    from onchaind.onchain_channel import parse_channel
    from wire.internal import internal_schema

    channeld, master, onchaind = (internal_schema("channeld"), internal_schema("channeld", keep_sealed=True),
                                  internal_schema("onchaind"))

    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    old = a.channel.latest_local_commitment_tx()[0]
    for i in range(3):
        p.send("A", a.channel.add_htlc(100_000_000 + i, sha256(b"a%d" % i), 500 + i, bytes(1366), 100))
        p.send("B", b.channel.add_htlc(200_000_000 + i, sha256(b"b%d" % i), 600 + i, bytes(1366), 100))
    p.send("A", a.channel.send_commitment())
    p.deliver_all()

    def onchain(node):
        reply = channeld.encode("channeld_export_onchain_reply", {"channel": export_onchain(node.channel)})
        extra = {"preimages": [], "past_htlcs": [], "mutual_close_txids": []}
        init = onchaind.decode(onchaind.encode("onchaind_init", {
            "channel": master.decode(reply).fields["channel"], "extra": extra, "spending_tx": b"",
            "spend_height": 0, "tip": 100, "sweep_script": bytes(22), "feerate_per_kw": 1000,
            "reasonable_depth": 3, "state": None})).fields
        doc = init["channel"]
        assert doc["revealed_secrets"] and len(doc["local_commitment"]["htlcs"]) == 6
        return parse_channel(doc, init["extra"], sweep_scriptpubkey=bytes(22), feerate_per_kw=1000,
                             block_height=100)
    ca, cb = onchain(a), onchain(b)
    tx = a.channel.latest_local_commitment_tx()[0]
    ours, theirs = classify(ca, tx), classify(cb, tx)
    assert (ours.kind, ours.exact) == (TxType.OUR_UNILATERAL, True)
    assert (theirs.kind, theirs.exact, theirs.which) == (TxType.THEIR_UNILATERAL, True, "current")
    assert sum(m.htlc is not None for m in theirs.outputs) == 6
    assert classify(cb, old).kind is TxType.THEIR_REVOKED_UNILATERAL


def test_our_and_their_unilateral_without_htlcs(node_factory):
    """l1 goes on chain while l2 is away: l1 sweeps its to_local after the
    delay, l2 (back later) sweeps its to_remote at once; both channels close
    100 blocks after the last resolution."""
    l1, l2 = node_factory.get_nodes(2, opts=OPTS)
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=300_000_000, channel_type=STATIC_REMOTEKEY)
    funding = channel(l1, l2)
    l2.stop()
    start = height(l1)
    r = l1.rpc.close(l2.node_id, unilateraltimeout=1)
    assert r["type"] == "unilateral"
    assert r["txid"] in wait_mempool(l1)
    mine(l1, 1, l1)
    conf = height(l1)
    wait_for(lambda: state(l1, l2) == "ONCHAIN")
    wait_for(lambda: any("OUR_UNILATERAL/DELAYED_OUTPUT_TO_US" in s for s in status(l1, l2)))
    # the to_local sweep is accepted from conf + DELAY - 1
    mine(l1, DELAY - 2, l1)
    assert not mempool(l1)
    mine(l1, 1, l1)
    sweep = wait_mempool(l1)
    mine(l1, 1, l1)
    assert not (sweep & mempool(l1))
    # l2 comes back: its to_remote is swept to its wallet
    l2.start()
    wait_for(lambda: state(l2, l1) == "ONCHAIN")
    wait_mempool(l1)
    mine(l1, 1, l1, l2)
    wait_for(lambda: any("swept to the wallet" in s for s in status(l2, l1)))
    close_after_100_blocks(l1, l1, l2, l1, l2)
    close_after_100_blocks(l1, l2, l1, l1, l2)
    print(f"\n[our/their unilateral] l1 closed {height(l1) - conf + 1} blocks after the commitment confirmed")
    txs, leaves, owned = check_accounting({"l1": l1, "l2": l2}, funding, start, "our/their unilateral, no HTLCs")
    assert len(txs) == 3          # commitment, to_local sweep, to_remote sweep
    assert sorted(owned[op] for op in leaves) == ["l1", "l2"]


def send_htlc(src, dst, amount_msat, preimage, delay):
    """src pays dst directly with a hash dst has no invoice for (the hold
    plugin keeps it); returns the payment hash (hex)."""
    h = sha256(preimage).hex()
    route = [{"id": dst.node_id, "channel": channel(src, dst)["short_channel_id"], "amount_msat": amount_msat,
              "delay": delay}]
    src.rpc.sendpay(route, h)
    return h


def held(node):
    return node.rpc.call("holdhtlcs-list")["held"]


def pay_status(node, h):
    pays = node.rpc.listsendpays(payment_hash=h)["payments"]
    return pays[0]["status"] if pays else None


def test_our_unilateral_with_htlcs_both_ways(node_factory):
    """l1 goes on chain (close timing out: l2 is there but HTLCs are held)
    with an HTLC each way: l1 claims l2's HTLC with its HTLC-success tx, l2
    claims l1's HTLC directly from l1's commitment; each learns the other's
    preimage on chain and its payment completes.  Second-stage outputs are
    swept after the delay."""
    l1, l2 = node_factory.get_nodes(2, opts=dict(OPTS, plugin=HOLD))
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=400_000_000, channel_type=STATIC_REMOTEKEY)
    funding = channel(l1, l2)
    pa, pb = os.urandom(32), os.urandom(32)
    ha = send_htlc(l1, l2, 100_000_000, pa, 14)
    hb = send_htlc(l2, l1, 50_000_000, pb, 30)
    wait_for(lambda: held(l2) == [ha] and held(l1) == [hb])
    start = height(l1)
    assert l1.rpc.close(l2.node_id, unilateraltimeout=1)["type"] == "unilateral"
    # channeld is gone: these preimages can only travel on chain
    l1.rpc.call("holdhtlcs-release", [hb, pb.hex()])
    wait_mempool(l1)
    mine(l1, 1, l1, l2)
    conf = height(l1)
    wait_for(lambda: state(l1, l2) == "ONCHAIN" and state(l2, l1) == "ONCHAIN")
    # l1's HTLC-success tx goes out at once; l2 claims its HTLC directly
    l2.rpc.call("holdhtlcs-release", [ha, pa.hex()])
    wait_for(lambda: any("OUR_HTLC_SUCCESS_TX" in s and "broadcast" in s for s in status(l1, l2)))
    wait_mempool(l1, 3)      # l1's HTLC-success, l2's HTLC claim and to_remote sweep
    mine(l1, 1, l1, l2)
    wait_for(lambda: pay_status(l2, hb) == "complete" and pay_status(l1, ha) == "complete")
    assert l1.rpc.listsendpays(payment_hash=ha)["payments"][0]["payment_preimage"] == pa.hex()
    assert l2.rpc.listsendpays(payment_hash=hb)["payments"][0]["payment_preimage"] == pb.hex()
    # l1's to_local, then its HTLC-success output, after the delay
    mine(l1, DELAY + 1, l1, l2)
    wait_for(lambda: not mempool(l1))
    last = height(l1)
    close_after_100_blocks(l1, l1, l2, l1, l2)
    close_after_100_blocks(l1, l2, l1, l1, l2)
    print(f"\n[HTLCs both ways] last sweep mined within {last - conf + 1} blocks of the commitment")
    txs, leaves, owned = check_accounting({"l1": l1, "l2": l2}, funding, start, "our unilateral, HTLCs both ways")
    # commitment, HTLC-success + its sweep, to_local sweep, l2's direct HTLC claim, l2's to_remote sweep
    assert len(txs) == 6


def test_receiver_vanished_htlc_times_out_on_chain(node_factory):
    """l2 takes an HTLC and vanishes: at cltv_expiry + 1 l1 goes on chain by
    itself, times the HTLC out with its HTLC-timeout tx and the payment fails
    once that is 3 deep.  (l2 comes back at the end to sweep its balance.)"""
    l1, l2 = node_factory.get_nodes(2, opts=[OPTS, dict(OPTS, plugin=HOLD)])
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=200_000_000, channel_type=STATIC_REMOTEKEY)
    funding = channel(l1, l2)
    preimage = os.urandom(32)
    h = send_htlc(l1, l2, 150_000_000, preimage, 10)
    wait_for(lambda: held(l2) == [h])
    expiry = channel(l1, l2)["htlcs"][0]["expiry"]
    start = height(l1)
    l2.may_fail = True
    l2.kill()
    wait_for(lambda: not l1.is_connected(l2))
    mine_many(l1, expiry - height(l1), l1)
    assert state(l1, l2) == "CHANNELD_NORMAL" and not mempool(l1)
    mine(l1, 1, l1)                          # expiry + 1: the deadline
    wait_for(lambda: state(l1, l2) == "AWAITING_UNILATERAL")
    wait_mempool(l1)
    mine(l1, 1, l1)
    conf = height(l1)
    wait_for(lambda: state(l1, l2) == "ONCHAIN")
    wait_mempool(l1)                          # the HTLC-timeout tx (locktime expiry: valid now)
    mine(l1, 1, l1)
    assert pay_status(l1, h) == "pending"
    mine(l1, 2, l1)                           # 3 confirmations
    wait_for(lambda: pay_status(l1, h) == "failed")
    failed_at = height(l1)
    pay = l1.rpc.listsendpays(payment_hash=h)["payments"][0]
    assert pay["status"] == "failed"
    mine(l1, DELAY, l1)
    wait_for(lambda: not mempool(l1))
    l2.start()
    wait_for(lambda: state(l2, l1) == "ONCHAIN")
    wait_mempool(l1)
    mine(l1, 1, l1, l2)
    last = height(l1)
    close_after_100_blocks(l1, l1, l2, l1, l2)
    close_after_100_blocks(l1, l2, l1, l1, l2)
    print(f"\n[receiver vanished] deadline at {expiry + 1}, commitment mined at +{conf - expiry - 1}, payment "
          f"failed {failed_at - conf} blocks after it; last sweep at +{last - conf} blocks")
    txs, _, _ = check_accounting({"l1": l1, "l2": l2}, funding, start, "receiver vanished: HTLC timed out")
    assert len(txs) == 5      # commitment, HTLC-timeout + its sweep, to_local sweep, l2's to_remote sweep


@pytest.mark.parametrize("channel_type", [STATIC_REMOTEKEY, ANCHORS], ids=["static_remotekey", "anchors"])
def test_revoked_commitment_with_htlcs_is_punished(node_factory, channel_type):
    """l1 keeps a signed commitment holding an HTLC each way, the HTLCs are
    then failed (the commitment revoked), and l1 broadcasts it: l2 takes
    l1's balance and both HTLC outputs with penalty txs at once, and sweeps
    its own balance (with anchors, after its 1-block CSV): l2 ends with the
    whole capacity minus fees (and the two anchors, left for anyone)."""
    anchors = channel_type == ANCHORS
    l1, l2 = node_factory.get_nodes(2, opts=dict(OPTS, plugin=HOLD))
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=300_000_000, channel_type=channel_type)
    funding = channel(l1, l2)
    hx = send_htlc(l1, l2, 120_000_000, os.urandom(32), 30)
    hy = send_htlc(l2, l1, 80_000_000, os.urandom(32), 30)
    wait_for(lambda: held(l2) == [hx] and held(l1) == [hy])
    old = l1.rpc.call("dev-sign-last-tx", [l2.node_id])["tx"]
    l2.rpc.call("holdhtlcs-fail", [hx])
    l1.rpc.call("holdhtlcs-fail", [hy])
    wait_for(lambda: not channel(l1, l2)["htlcs"] and not channel(l2, l1)["htlcs"])
    wait_for(lambda: pay_status(l1, hx) == "failed" and pay_status(l2, hy) == "failed")
    start = height(l1)
    l1.chain.rpc.sendrawtransaction(old)
    mine(l1, 1, l1, l2)
    conf = height(l1)
    wait_for(lambda: state(l2, l1) == "ONCHAIN")
    wait_for(lambda: any("THEIR_REVOKED_UNILATERAL" in s for s in status(l2, l1)))
    wait_mempool(l1, 4)           # three penalty txs and the to_remote sweep
    mine(l1, 1, l1, l2)
    wait_for(lambda: not mempool(l1))
    lines = status(l2, l1)
    # the two anchors are nobody's business here: l1's ignored, l2's left to the wallet
    anchor_lines = [s for s in lines if "/ANCHOR_TO_" in s]
    assert len(anchor_lines) == (2 if anchors else 0), "\n".join(lines)
    assert all("OUR_PENALTY_TX" in s or "FUNDING" in s or "swept to the wallet" in s or "OUTPUT_TO_US" in s
               for s in lines if s not in anchor_lines), "\n".join(lines)
    close_after_100_blocks(l1, l2, l1, l1, l2)
    print(f"\n[revoked] penalties mined 1 block after the revoked commitment; l2 closed "
          f"{height(l1) - conf + 1} blocks after it")
    txs, leaves, owned = check_accounting({"l1": l1, "l2": l2}, funding, start,
                                          f"revoked {channel_type} commitment: penalty", anchors=anchors)
    assert sorted(owned[op] for op in leaves if owned[op] != "l2") == (["anchor", "anchor"] if anchors else [])
    assert len(txs) == 5


def test_onchain_preimage_completes_upstream_forward(node_factory):
    """l1 -> l2 -> l3, l3 holds the HTLC; l3 goes on chain, then reveals the
    preimage in its HTLC-success tx: l2 learns it from the chain and
    fulfils l1's HTLC off-chain, so l1's payment completes."""
    l1, l2, l3 = node_factory.get_nodes(3, opts=[OPTS, OPTS, dict(OPTS, plugin=HOLD)])
    fund(l1)
    fund(l2)
    open_channel(l1, l2, CAPACITY, channel_type=STATIC_REMOTEKEY)
    open_channel(l2, l3, CAPACITY, channel_type=STATIC_REMOTEKEY)
    sync_blockheight(l1, l2, l3)
    funding = channel(l2, l3)
    preimage = os.urandom(32)
    h = sha256(preimage).hex()
    amount = 100_000_000
    route = [{"id": l2.node_id, "channel": channel(l1, l2)["short_channel_id"], "amount_msat": amount + 10_000,
              "delay": 60},
             {"id": l3.node_id, "channel": funding["short_channel_id"], "amount_msat": amount, "delay": 20}]
    l1.rpc.sendpay(route, h)
    wait_for(lambda: held(l3) == [h])
    start = height(l2)
    assert l3.rpc.close(l2.node_id, unilateraltimeout=1)["type"] == "unilateral"
    wait_mempool(l3)
    mine(l3, 1, l1, l2, l3)
    conf = height(l3)
    wait_for(lambda: state(l2, l3) == "ONCHAIN" and state(l3, l2) == "ONCHAIN")
    assert pay_status(l1, h) == "pending"
    l3.rpc.call("holdhtlcs-release", [h, preimage.hex()])     # its channeld is gone: on chain only
    # l3's onchaind gets the preimage at once and broadcasts its HTLC-success
    wait_for(lambda: any("OUR_HTLC_SUCCESS_TX" in s and "broadcast" in s for s in status(l3, l2)))
    mine(l3, 1, l1, l2, l3)                                   # (with l2's to_remote sweep, if not in yet)
    wait_for(lambda: pay_status(l1, h) == "complete")
    learned = height(l3)
    assert l1.rpc.listsendpays(payment_hash=h)["payments"][0]["payment_preimage"] == preimage.hex()
    wait_for(lambda: l2.rpc.listforwards()["forwards"][0]["status"] == "settled")
    wait_for(lambda: channel(l1, l2)["htlcs"] == [] and channel(l1, l2)["to_us_msat"] < CAPACITY * 1000 - amount)
    mine(l3, DELAY + 1, l1, l2, l3)
    wait_for(lambda: not mempool(l3))
    last = height(l3)
    close_after_100_blocks(l3, l2, l3, l1, l2, l3)
    close_after_100_blocks(l3, l3, l2, l1, l2, l3)
    print(f"\n[forward] preimage revealed {learned - conf} blocks after l3's commitment; l1's payment completed "
          f"then; last sweep at +{last - conf}")
    txs, _, _ = check_accounting({"l2": l2, "l3": l3}, funding, start, "l2-l3 on chain, preimage completes the forward")
    assert len(txs) == 4      # commitment, HTLC-success + its sweep, l2's to_remote sweep (l3 had no balance)


def test_restart_and_reorg_during_resolution(node_factory):
    """onchaind is killed, then l1 restarts, while waiting to sweep its
    to_local (onchaind comes back from its saved state both times); after the sweep is mined, a reorg takes the
    commitment's block away and the commitment is mined 2 blocks later:
    the sweep waits for the new delay, is sent again and mined."""
    l1, l2 = node_factory.get_nodes(2, opts=OPTS)
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=100_000_000, channel_type=STATIC_REMOTEKEY)
    funding = channel(l1, l2)
    l2.stop()
    start = height(l1)
    l1.rpc.close(l2.node_id, unilateraltimeout=1)
    commitment = wait_mempool(l1)
    mine(l1, 1, l1)
    conf = height(l1)
    wait_for(lambda: state(l1, l2) == "ONCHAIN")
    mine(l1, 2, l1)
    wait_for(lambda: any(f"waiting {DELAY - 3} more blocks" in s for s in status(l1, l2)))
    # onchaind killed: the master restarts it from its saved state
    pid = l1.subdaemon_pids()["onchaind"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: l1.subdaemon_pids().get("onchaind", pid) != pid)
    mine(l1, 1, l1)
    wait_for(lambda: any(f"waiting {DELAY - 4} more blocks" in s for s in status(l1, l2)))
    # and the whole node restarts
    l1.restart()
    assert state(l1, l2) == "ONCHAIN"
    wait_for(lambda: any(f"waiting {DELAY - 4} more blocks" in s for s in status(l1, l2)))
    wait_for(lambda: "onchaind" in l1.subdaemon_pids().keys())
    assert not mempool(l1)
    mine(l1, 1, l1)
    sweep = wait_mempool(l1)
    mine(l1, 1, l1)
    assert not (sweep & mempool(l1))
    # the reorg: the commitment's block goes; on the new chain (longer than
    # the old one only from conf + 7) it is mined 4 blocks later
    rpc = l1.chain.rpc
    old_tip = height(l1)
    rpc.invalidateblock(rpc.getblockhash(conf))
    assert commitment <= mempool(l1)
    empty = lambda n: [rpc.generateblock(l1.chain.faucet_address, []) for _ in range(n)]  # noqa: E731
    empty(4)
    mine(l1, 1)
    reconf = height(l1)
    assert reconf == conf + 4 and not (commitment & mempool(l1))
    empty(old_tip + 1 - height(l1))
    tip = old_tip + 1
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == tip)
    # the sweep is unconfirmed again, valid from reconf + DELAY: sent once
    # the tip is one block before
    txid = next(iter(sweep))
    wait_for(lambda: any(f"DELAYED_OUTPUT_TO_US: unconfirmed OUR_DELAYED_RETURN_TO_WALLET {txid}" in s
                         for s in status(l1, l2)))
    mine(l1, reconf + DELAY - 2 - tip, l1)
    assert not (sweep & mempool(l1))
    mine(l1, 1, l1)
    wait_for(lambda: sweep <= mempool(l1))
    mine(l1, 1, l1)
    swept = height(l1)
    assert swept == reconf + DELAY
    l2.start()
    wait_for(lambda: state(l2, l1) == "ONCHAIN")
    wait_mempool(l1)
    mine(l1, 1, l1, l2)
    close_after_100_blocks(l1, l1, l2, l1, l2)
    close_after_100_blocks(l1, l2, l1, l1, l2)
    print(f"\n[restart/reorg] commitment re-mined at +4 after a {old_tip - conf + 1}-block reorg, to_local swept "
          f"{swept - reconf} blocks after it")
    txs, _, _ = check_accounting({"l1": l1, "l2": l2}, funding, start, "restart and reorg")
    assert len(txs) == 3


def test_their_unilateral_our_htlc_timed_out_directly(node_factory):
    """l2 holds l1's HTLC and goes on chain with its commitment: l1 takes the
    HTLC back from l2's commitment with a direct timeout spend at
    cltv_expiry + 1, and the payment fails 3 blocks later."""
    l1, l2 = node_factory.get_nodes(2, opts=[OPTS, dict(OPTS, plugin=HOLD)])
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=250_000_000, channel_type=STATIC_REMOTEKEY)
    funding = channel(l1, l2)
    h = send_htlc(l1, l2, 120_000_000, os.urandom(32), 12)
    wait_for(lambda: held(l2) == [h])
    expiry = channel(l1, l2)["htlcs"][0]["expiry"]
    start = height(l1)
    assert l2.rpc.close(l1.node_id, unilateraltimeout=1)["type"] == "unilateral"
    wait_mempool(l1)
    mine(l1, 1, l1, l2)
    conf = height(l1)
    wait_for(lambda: state(l1, l2) == "ONCHAIN" and state(l2, l1) == "ONCHAIN")
    wait_mempool(l1)                                   # l1's to_remote sweep
    mine(l1, 1, l1, l2)
    assert any("THEIR_UNILATERAL/OUR_HTLC" in s and "OUR_HTLC_TIMEOUT_TO_US" in s for s in status(l1, l2))
    mine(l1, DELAY, l1, l2)                            # l2's to_local
    wait_for(lambda: not mempool(l1))
    mine_many(l1, expiry - 1 - height(l1), l1, l2)
    assert not mempool(l1) and pay_status(l1, h) == "pending"
    mine(l1, 1, l1, l2)                                # tip = expiry: the timeout is valid in the next block
    wait_mempool(l1)
    mine(l1, 1, l1, l2)
    timed_out = height(l1)
    mine(l1, 2, l1, l2)
    wait_for(lambda: pay_status(l1, h) == "failed")
    close_after_100_blocks(l1, l1, l2, l1, l2)
    close_after_100_blocks(l1, l2, l1, l1, l2)
    print(f"\n[their unilateral, HTLC timeout] expiry {expiry}: HTLC taken back at +{timed_out - conf} blocks "
          f"(expiry + {timed_out - expiry}), payment failed 3 blocks later")
    txs, _, _ = check_accounting({"l1": l1, "l2": l2}, funding, start, "their unilateral: our HTLC timed out")
    assert len(txs) == 4      # l2's commitment, l1's to_remote sweep and HTLC timeout, l2's to_local sweep


@pytest.mark.parametrize("channel_type", [STATIC_REMOTEKEY, ANCHORS], ids=["static_remotekey", "anchors"])
def test_revoked_commitment_without_htlcs_and_mutual_close(node_factory, channel_type):
    """A revoked commitment without HTLCs: the penalty takes l1's balance.
    And a mutual close is resolved (and closed) by onchaind too."""
    anchors = channel_type == ANCHORS
    l1, l2, l3 = node_factory.get_nodes(3, opts=OPTS)
    fund(l1)
    fund(l1)
    wait_for(lambda: len(l1.rpc.listfunds()["outputs"]) == 2)
    open_channel(l1, l2, CAPACITY, push_msat=300_000_000, channel_type=channel_type)
    open_channel(l1, l3, CAPACITY, channel_type=channel_type)
    funding = channel(l1, l2)
    old = l1.rpc.call("dev-sign-last-tx", [l2.node_id])["tx"]
    # two payments nobody can take (l2 fails them): two commitments later the old one is revoked
    for _ in range(2):
        h = send_htlc(l1, l2, 10_000_000, os.urandom(32), 20)
        wait_for(lambda: pay_status(l1, h) == "failed" and not channel(l1, l2)["htlcs"])
    start = height(l1)
    l1.chain.rpc.sendrawtransaction(old)
    closing = l1.rpc.close(l3.node_id)
    assert closing["type"] == "mutual"
    mine(l1, 1, l1, l2, l3)
    conf = height(l1)
    wait_for(lambda: state(l2, l1) == "ONCHAIN" and state(l3, l1) == "ONCHAIN")
    wait_mempool(l1, 2)                                 # penalty and l2's to_remote sweep
    mine(l1, 1, l1, l2, l3)
    assert not mempool(l1)
    close_after_100_blocks(l1, l1, l3, l1, l2, l3)      # the closing tx 100 deep
    close_after_100_blocks(l1, l3, l1, l1, l2, l3)
    close_after_100_blocks(l1, l2, l1, l1, l2, l3)
    print(f"\n[revoked, no HTLCs] penalty mined 1 block after the revoked commitment; mutual close closed "
          f"{height(l1) - conf + 1} blocks after it confirmed")
    txs, leaves, owned = check_accounting({"l1": l1, "l2": l2}, funding, start,
                                          f"revoked {channel_type} commitment, no HTLCs", anchors=anchors)
    assert sorted(owned[op] for op in leaves if owned[op] != "l2") == (["anchor", "anchor"] if anchors else [])
    assert len(txs) == 3


@pytest.mark.parametrize("channel_type", [STATIC_REMOTEKEY, ANCHORS], ids=["static_remotekey", "anchors"])
def test_penalty_fee_raised_by_rbf_while_unconfirmed(node_factory, channel_type):
    """A penalty has a deadline (the cheater's to_self_delay): while blocks
    pass without it (empty blocks here), onchaind rebuilds it at a higher
    feerate on each block and the new tx replaces the old in the mempool;
    the last one confirms."""
    l1, l2 = node_factory.get_nodes(2, opts=OPTS)
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=300_000_000, channel_type=channel_type)
    old = l1.rpc.call("dev-sign-last-tx", [l2.node_id])["tx"]
    for _ in range(2):
        h = send_htlc(l1, l2, 10_000_000, os.urandom(32), 20)
        wait_for(lambda: pay_status(l1, h) == "failed" and not channel(l1, l2)["htlcs"])
    old_txid = l1.chain.rpc.sendrawtransaction(old)
    mine(l1, 1, l1, l2)
    wait_for(lambda: state(l2, l1) == "ONCHAIN")

    def penalty():
        for t in mempool(l1):
            try:
                tx = l1.chain.rpc.getrawtransaction(t, True)
            except JSONRPCException:      # replaced (RBF) since getrawmempool
                continue
            w = tx["vin"][0].get("txinwitness", [])
            if tx["vin"][0]["txid"] == old_txid and len(w) == 3 and w[1] == "01":
                return tx
        return None

    seen = [wait_for(penalty)]
    for _ in range(3):
        l1.chain.rpc.generateblock(l1.chain.faucet_address, [])
        h = height(l1)
        for n in (l1, l2):
            wait_for(lambda: n.rpc.getinfo()["blockheight"] >= h)
        seen.append(wait_for(lambda: (p := penalty()) is not None and p["txid"] != seen[-1]["txid"] and p))
    commitment = l1.chain.rpc.getrawtransaction(old_txid, True)
    fees = [sats(commitment["vout"][p["vin"][0]["vout"]]["value"]) - sum(sats(o["value"]) for o in p["vout"])
            for p in seen]
    print(f"\n[penalty RBF] fees {fees} sat ({[f * 1000 // p['weight'] for f, p in zip(fees, seen)]} sat/kw) "
          f"over {len(seen) - 1} empty blocks")
    assert all(b > a for a, b in zip(fees, fees[1:]))
    assert len({p["txid"] for p in seen}) == len(seen)
    mine(l1, 1, l1, l2)
    block = l1.chain.rpc.getblock(l1.chain.rpc.getblockhash(height(l1)))["tx"]
    assert seen[-1]["txid"] in block and not any(p["txid"] in block for p in seen[:-1])
