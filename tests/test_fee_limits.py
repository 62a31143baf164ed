"""The feerates the node accepts from a peer in open_channel and update_fee
(BOLT 2: "too small for timely processing or unreasonably large"), as Core
Lightning: from half our lowest recent estimate (never below the floor,
253 perkw when mempools are empty) to ten times our highest, anything above
the floor while there is no estimate yet, the floor itself for an anchors
channel's update_fee, anything with --ignore-fee-limits
(test_cln_option_effects.py) or the channel's `setchannel ignorefeelimits`.

Its own module: it changes the test chain's fee estimates."""
from __future__ import annotations

import os
from typing import Any

import pytest

from node_factory import wait_for
from scripted_peer import (PeerClosed, ScriptedPeer, commit_dance, open_channel_fields, open_funded_channel,
                           reconnect)

_seed = iter(range(0x20, 0x80))


def set_estimate(node: Any, btc_per_kvb: str | None) -> None:
    node.chain.rpc.setfeerate(btc_per_kvb)


def bounds(node: Any) -> tuple[int, int]:
    f = node.rpc.feerates("perkw")["perkw"]
    return f["min_acceptable"], f["max_acceptable"]


def open_answer(node: Any, feerate: int) -> tuple[str, bytes]:
    """What a fresh peer's open_channel at `feerate` gets: accept_channel, or
    the error's text."""
    peer = ScriptedPeer(node, seed=next(_seed))
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    temp = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp, feerate_per_kw=feerate))
    while True:
        name, fields = peer.read()
        if name in ("accept_channel", "error"):
            break
    peer.close()
    assert fields.get("temporary_channel_id", fields.get("channel_id")) == temp
    return name, fields.get("data", b"")


def test_open_channel_feerate_from_the_floor_with_empty_mempools(node_factory):
    """Estimates at the relay floor (1 sat/vB, mempools empty): 253 perkw,
    what peers then open with, is accepted, up to ten times the highest
    estimate; above that, refused."""
    n = node_factory.get_node()
    set_estimate(n, "0.00001")
    # the last three refreshes count: wait until the old estimates are gone
    wait_for(lambda: bounds(n) == (253, 2530), timeout=30)
    assert open_answer(n, 253)[0] == "accept_channel"
    assert open_answer(n, 2530)[0] == "accept_channel"
    name, text = open_answer(n, 2531)
    assert name == "error" and b"feerate_per_kw 2531 outside [253, 2530]" in text
    # estimates rise to 20 sat/vB (5000 perkw): half of that is the minimum
    set_estimate(n, "0.0002")
    wait_for(lambda: bounds(n) == (2500, 50_000), timeout=30)
    name, text = open_answer(n, 253)
    assert name == "error" and b"feerate_per_kw 253 outside [2500, 50000]" in text
    assert open_answer(n, 2500)[0] == "accept_channel"
    set_estimate(n, "0.00025")


def test_open_channel_any_feerate_above_the_floor_without_estimates(node_factory):
    """No estimate yet (a node started while the backend has none): Core
    Lightning accepts anything from the floor up."""
    set_estimate_chain = node_factory.chain.rpc.setfeerate
    set_estimate_chain(None)
    try:
        n = node_factory.get_node()
        assert bounds(n) == (253, 0xFFFFFFFF)
        assert n.rpc.feerates("perkb")["perkb"]["max_acceptable"] == 0xFFFFFFFF
        assert open_answer(n, 253)[0] == "accept_channel"
        assert open_answer(n, 500_000)[0] == "accept_channel"
        name, text = open_answer(n, 252)
        assert name == "error" and b"feerate_per_kw 252 outside [253, 4294967295]" in text
    finally:
        set_estimate_chain("0.00025")


def test_update_fee_outside_the_range_warns_and_ignorefeelimits_accepts_it(node_factory):
    """An update_fee below our range (and moving away from it) gets a
    warning and a disconnection, the channel stays (BOLT 2 allows either;
    Core Lightning warns); `setchannel PEER ignorefeelimits=true` (stored,
    shown by listpeerchannels) makes the same update_fee acceptable."""
    n = node_factory.get_node()
    wait_for(lambda: bounds(n) == (3125, 62_500), timeout=30)      # the chain's 25 sat/vB
    peer = ScriptedPeer(n, seed=next(_seed))
    ch = open_funded_channel(peer, feerate_per_kw=7500)
    peer.send(*ch.update_fee(1000))
    warning = peer.expect("warning")
    assert b"update_fee 1000 outside acceptable [3125, 62500]" in warning["data"]
    with pytest.raises(PeerClosed):
        peer.read(10)
    wait_for(lambda: not n.rpc.listpeers(peer.node_id)["peers"][0]["connected"])
    chan = n.rpc.listpeerchannels(peer.node_id)["channels"][0]
    assert chan["state"] == "CHANNELD_NORMAL" and "ignore_fee_limits" not in chan

    r = n.rpc.setchannel(peer.node_id, ignorefeelimits=True)["channels"]
    assert [c["ignore_fee_limits"] for c in r] == [True]
    assert n.rpc.listpeerchannels(peer.node_id)["channels"][0]["ignore_fee_limits"] is True
    peer = reconnect(peer, ch)       # our update_fee, never committed, is sent again
    commit_dance(peer, ch)
    wait_for(lambda: n.rpc.listpeerchannels(peer.node_id)["channels"][0]["feerate"]["perkw"] == 1000)
    # kept across a restart
    peer.close()
    n.restart()
    assert n.rpc.listpeerchannels(peer.node_id)["channels"][0]["ignore_fee_limits"] is True
    assert n.broken_lines() == []


def test_anchors_channel_update_fee_down_to_the_floor(node_factory):
    """An anchors commitment only needs to relay (it is CPFP'd): its
    update_fee may go down to the floor, below the range of other
    channels (Core Lightning's channel_update_feerates)."""
    n = node_factory.get_node()
    wait_for(lambda: bounds(n) == (3125, 62_500), timeout=30)
    peer = ScriptedPeer(n, seed=next(_seed))
    ch = open_funded_channel(peer, anchors=True, feerate_per_kw=3125)
    wait_for(lambda: "anchors/even" in n.rpc.listpeerchannels(peer.node_id)["channels"][0]["channel_type"]["names"])
    peer.send(*ch.update_fee(253))
    commit_dance(peer, ch)
    wait_for(lambda: n.rpc.listpeerchannels(peer.node_id)["channels"][0]["feerate"]["perkw"] == 253)
    peer.send(*ch.update_fee(252))
    assert b"update_fee 252 outside acceptable [253, 62500]" in peer.expect("warning")["data"]
    assert n.rpc.listpeerchannels(peer.node_id)["channels"][0]["state"] == "CHANNELD_NORMAL"
    assert n.broken_lines() == []
