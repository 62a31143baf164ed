"""Channels resolved on chain by onchaind (BOLT 5), between real nodes on the
regtest chain: every transaction is accepted by regtestd (Bitcoin Core's
rules).  Each test follows the funding output's spend tree on chain and
checks that what is left pays the nodes' wallets and adds up to the channel
capacity minus the fees; the fees and block counts are printed (-s)."""
from __future__ import annotations

import os
from pathlib import Path

from bitcoin.hashes import sha256
from node_factory import wait_for
from test_channels import channel, fund, open_channel

PLUGINS = Path(__file__).parent / "plugins"
HOLD = str(PLUGINS / "holdhtlcs.py")
DELAY = 5                         # watchtime-blocks: the to_self_delay each node imposes
OPTS = {"watchtime-blocks": DELAY}
CAPACITY = 1_000_000


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
    [(tx json, height, fee)], and the unspent leaves {(txid, n): value}."""
    rpc = node.chain.rpc
    spender = {}
    for h in range(start, rpc.getblockcount() + 1):
        for tx in rpc.getblock(rpc.getblockhash(h), 2)["tx"]:
            for vin in tx["vin"]:
                if "txid" in vin:
                    spender[(vin["txid"], vin["vout"])] = (tx, h)
    values = {(funding_txid, funding_outnum): CAPACITY}
    txs, leaves, seen = [], {}, set()
    stack = [(funding_txid, funding_outnum)]
    while stack:
        op = stack.pop()
        s = spender.get(op)
        if s is None:
            leaves[op] = values[op]
            continue
        tx, h = s
        if tx["txid"] in seen:
            continue
        seen.add(tx["txid"])
        outs = [sats(o["value"]) for o in tx["vout"]]
        ins = sum(values[(i["txid"], i["vout"])] for i in tx["vin"])
        txs.append((tx, h, ins - sum(outs)))
        for n, v in enumerate(outs):
            values[(tx["txid"], n)] = v
            stack.append((tx["txid"], n))
    return sorted(txs, key=lambda t: t[1]), leaves


def wallet_outputs(node):
    return {(o["txid"], o["output"]): o["amount_msat"] // 1000 for o in node.rpc.listfunds()["outputs"]}


def check_accounting(nodes, funding_txid, funding_outnum, start, label):
    """The leaves of the spend tree are the nodes' wallet coins and, with the
    fees, add up to the capacity.  Prints each tx's fee and height."""
    txs, leaves = spend_tree(nodes[0], funding_txid, funding_outnum, start)
    owned = {}
    for i, n in enumerate(nodes):
        for op in wallet_outputs(n):
            owned[op] = f"l{i + 1}"
    fees = sum(f for _, _, f in txs)
    assert sum(leaves.values()) + fees == CAPACITY
    for op, v in leaves.items():
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
    print(f"  leaves {totals}, fees {fees}, total {sum(totals.values()) + fees} = capacity {CAPACITY}")
    return txs, leaves, owned


def wait_closed(node, peer, timeout=60):
    wait_for(lambda: state(node, peer) == "CLOSED", timeout=timeout)


def status(node, peer):
    c = channel(node, peer)
    return c["status"] if c else []


# --- tests --------------------------------------------------------------------------------

def test_our_and_their_unilateral_without_htlcs(node_factory):
    """l1 goes on chain while l2 is away: l1 sweeps its to_local after the
    delay, l2 (back later) sweeps its to_remote at once; both channels close
    100 blocks after the last resolution."""
    l1, l2 = node_factory.get_nodes(2, opts=OPTS)
    fund(l1)
    open_channel(l1, l2, CAPACITY, push_msat=300_000_000)
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
    mine_many(l1, 98, l1, l2)
    assert state(l1, l2) == "ONCHAIN"
    mine(l1, 1, l1, l2)
    wait_closed(l1, l2)
    wait_closed(l2, l1)
    print(f"\n[our/their unilateral] l1 closed {height(l1) - conf + 1} blocks after the commitment confirmed")
    txs, leaves, owned = check_accounting([l1, l2], funding["funding_txid"], funding["funding_outnum"], start,
                                          "our/their unilateral, no HTLCs")
    assert len(txs) == 3          # commitment, to_local sweep, to_remote sweep
    assert sorted(owned[op] for op in leaves) == ["l1", "l2"]
