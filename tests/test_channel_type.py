"""channel_type negotiation (BOLT 2 "Defined Channel Types", BOLT 9 bits
22/23) and anchors as the default channel type.

Between our nodes a channel is `option_anchors` + `option_static_remotekey`
unless `fundchannel` asks for another type; a peer whose `init` lacks
option_anchors gets a static_remotekey channel; a peer proposing a type is
answered with that type if we run it, else with an error.  Both types are
opened and closed between our nodes, mutually and unilaterally; the peers
that are not our nodes are scripted BOLT 8 peers (tests/scripted_peer.py).

Fee estimates (set per module, as test_onchain_anchors does): 2 sat/vB for
50 blocks and more, 10 sat/vB below, so an anchors commitment (the `slow`
rate, 500 perkw) and a static_remotekey one (`unilateral_close`, 2500 perkw)
pay visibly different feerates."""
from __future__ import annotations

import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from channel_testing import party_config
from node_factory import sync_blockheight, wait_for
from pyln.client import RpcError
from scripted_peer import ScriptedPeer, open_channel_fields, open_unconfirmed_channel
from test_channels import channel, fund
from test_onchain import mempool, mine, sats, state, status, wait_mempool

from bitcoin.tx import OutPoint
from channeld.core import Channel, ChannelParams, ChannelType, PartyConfig
from common.commitment import Side, commit_tx_base_fee
from common.features import bits_from_features, features_from_bits

PLUGINS = Path(__file__).parent / "plugins"
SLOW_PERKW = 500               # 2 sat/vB: anchors commitments
UNILATERAL_PERKW = 2500        # 10 sat/vB: static_remotekey commitments
CAPACITY = 1_000_000
DELAY = 5
ANCHOR_SAT = 330
STATIC = {"bits": [12], "names": ["static_remotekey/even"]}
ANCHORS = {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]}
# option_anchors' pair in init / node_announcement: odd, as Core Lightning sets it
ANCHORS_BITS = {22, 23}


@pytest.fixture(autouse=True)
def fee_estimates(chain):
    chain.rpc.setfeerate(Decimal("0.00002"))
    chain.rpc.setfeerate(Decimal("0.0001"), 2)
    chain.rpc.setfeerate(Decimal("0.00002"), 50)
    yield
    chain.rpc.setfeerate(None)


def decoded(node, raw_or_txid: str) -> dict:
    rpc = node.chain.rpc
    return rpc.decoderawtransaction(raw_or_txid) if len(raw_or_txid) > 64 else rpc.getrawtransaction(raw_or_txid, True)


def check_commitment(node, peer, expected: dict, push_msat: int = 0) -> dict:
    """node's latest commitment (it opened the channel, no HTLCs) as BOLT 3
    builds it for the channel's type: its feerate; with option_anchors a
    330-sat anchor for each side that has an output, both paid by the
    opener with the fee."""
    c = channel(node, peer)
    anchors = expected == ANCHORS
    rate = c["feerate"]["perkw"]
    assert rate == (SLOW_PERKW if anchors else UNILATERAL_PERKW)
    tx = decoded(node, node.rpc.call("dev-sign-last-tx", [peer.node_id])["tx"])
    outs = sorted(sats(o["value"]) for o in tx["vout"])
    fee = commit_tx_base_fee(rate, 0, anchors)
    opener = CAPACITY - push_msat // 1000 - fee - (2 * ANCHOR_SAT if anchors else 0)
    balances = [opener] + ([push_msat // 1000] if push_msat else [])
    assert outs == sorted(([ANCHOR_SAT] * len(balances) if anchors else []) + balances)
    return tx


# -- between our nodes ---------------------------------------------------------------------

@pytest.mark.parametrize("requested", [None, [12], [12, 22]], ids=["default", "static_remotekey", "anchors"])
def test_open_and_mutual_close_each_type(node_factory, requested):
    """fundchannel opens an anchors channel by default, the type it is asked
    for otherwise; both sides list it with Core Lightning's bits and names;
    payments work; a mutual close pays each side its balance (no anchors
    in a closing tx).  Our node_announcement offers option_anchors."""
    expected = STATIC if requested == [12] else ANCHORS
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    sync_blockheight(l1)
    l1.connect(l2)
    kw = {} if requested is None else {"channel_type": requested}
    r = l1.rpc.fundchannel(l2.node_id, CAPACITY, **kw)
    assert r["channel_type"] == expected
    l1.chain.mine(6)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    for a, b in ((l1, l2), (l2, l1)):
        c = channel(a, b)
        assert c["channel_type"] == expected
        assert c["features"] == ["option_static_remotekey"] + (["option_anchors"] if expected == ANCHORS else [])
    check_commitment(l1, l2, expected)
    if requested is None:
        # the node_announcement l2 learns from gossip offers option_anchors (odd) as our init does
        node = wait_for(lambda: [n for n in l2.rpc.listnodes(l1.node_id)["nodes"] if "features" in n], timeout=60)[0]
        assert node["features"] == l1.rpc.getinfo()["our_features"]["node"]
        assert bits_from_features(bytes.fromhex(node["features"])) & ANCHORS_BITS == {23}
    inv = l2.rpc.invoice(100_000_000, "paid", "before the close")
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    wait_for(lambda: channel(l2, l1)["to_us_msat"] == 100_000_000)
    close = l1.rpc.close(l2.node_id)
    assert close["type"] == "mutual"
    tx = decoded(l1, close["tx"])
    outs = sorted(sats(o["value"]) for o in tx["vout"])
    assert len(outs) == 2 and outs[0] == 100_000        # l2's balance, whole: the opener pays the fee
    assert CAPACITY - 100_000 - 5_000 < outs[1] < CAPACITY - 100_000
    mine(l1, 1, l1, l2)
    wait_for(lambda: any(o["amount_msat"] == 100_000_000 and o["status"] == "confirmed"
                         for o in l2.rpc.listfunds()["outputs"]))
    wait_for(lambda: state(l1, l2) == "ONCHAIN" and state(l2, l1) == "ONCHAIN")


@pytest.mark.parametrize("requested", [None, [12]], ids=["default_anchors", "static_remotekey"])
def test_unilateral_close_each_type(node_factory, requested):
    """l1 goes on chain alone with the commitment of the channel's type
    (anchors: two 330-sat anchors, the slow rate); l2, back later, sweeps its
    to_remote (after the 1-block CSV with anchors), l1 its to_local after
    the delay: both balances reach the wallets."""
    anchors = requested is None
    l1, l2 = node_factory.get_nodes(2, opts={"watchtime-blocks": DELAY})
    fund(l1)
    sync_blockheight(l1)
    l1.connect(l2)
    kw = {} if requested is None else {"channel_type": requested}
    l1.rpc.fundchannel(l2.node_id, CAPACITY, push_msat=300_000_000, **kw)
    l1.chain.mine(3)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    signed = check_commitment(l1, l2, ANCHORS if anchors else STATIC, push_msat=300_000_000)
    before = {n: {(o["txid"], o["output"]) for o in n.rpc.listfunds()["outputs"]} for n in (l1, l2)}
    l2.stop()
    r = l1.rpc.close(l2.node_id, unilateraltimeout=1)
    assert r["type"] == "unilateral"
    assert r["txid"] in wait_mempool(l1)
    commitment = decoded(l1, r["txid"])
    assert sorted(o["value"] for o in commitment["vout"]) == sorted(o["value"] for o in signed["vout"])
    to_local = max(sats(o["value"]) for o in commitment["vout"])
    # with anchors the wallet may add a CPFP child (test_onchain_anchors checks it): mine what is there
    mine(l1, 1, l1)
    assert r["txid"] not in mempool(l1)
    wait_for(lambda: state(l1, l2) == "ONCHAIN")
    l2.start()
    wait_for(lambda: state(l2, l1) == "ONCHAIN")

    def new_coin(node, wallet, low, high):
        return any((o["txid"], o["output"]) not in wallet and o["status"] == "confirmed"
                   and low < o["amount_msat"] // 1000 < high for o in node.rpc.listfunds()["outputs"])
    # l2's to_remote at once (anchors: one block after the commitment), l1's
    # to_local after its delay (l2's watchtime-blocks): block by block
    for _ in range(DELAY + 3):
        if new_coin(l2, before[l2], 295_000, 300_000) and new_coin(l1, before[l1], to_local - 5_000, to_local):
            break
        mine(l1, 1, l1, l2)
        sync_blockheight(l1, l2)
    else:
        raise AssertionError(f"balances never reached the wallets: {status(l1, l2)} {status(l2, l1)}")
    for n, peer in ((l1, l2), (l2, l1)):
        assert any(("swept to the wallet" if n is l2 and not anchors else "OUTPUT_TO_US") in s
                   for s in status(n, peer)), status(n, peer)


# -- a peer that is not one of our nodes ---------------------------------------------------

def fundee(peer: ScriptedPeer, oc: dict, channel_type: bytes | None = None) -> Channel:
    """The peer accepts the open (with `channel_type`, default the one
    proposed) and signs the node's first commitment."""
    ctype = oc["tlvs"]["channel_type"]["type"] if channel_type is None else channel_type
    local = party_config(peer.signer)
    peer.send("accept_channel", {
        "temporary_channel_id": oc["temporary_channel_id"], **local.wire_fields(), "minimum_depth": 3,
        "first_per_commitment_point": peer.signer.per_commitment_point(0),
        "tlvs": {"channel_type": {"type": ctype}, "upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}})
    fc = peer.expect("funding_created")
    params = ChannelParams(OutPoint(fc["funding_txid"], fc["funding_output_index"]), oc["funding_satoshis"],
                           Side.REMOTE, local, PartyConfig.from_wire(oc), ChannelType.from_wire(ctype))
    ch = Channel.new(params, peer.signer, push_msat=oc["push_msat"], feerate_per_kw=oc["feerate_per_kw"],
                     remote_first_per_commitment_point=oc["first_per_commitment_point"])
    ch.recv_initial_commitment_sig(fc["signature"])
    peer.send("funding_signed", {"channel_id": ch.channel_id, "signature": ch.initial_remote_commitment_sig()})
    return ch


def fundchannel_in_thread(node, peer: ScriptedPeer, amount: int, **kw: Any) -> tuple[threading.Thread, dict]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["ok"] = node.rpc.fundchannel(peer.node_id, amount, **kw)
        except RpcError as e:
            result["error"] = e.error
    t = threading.Thread(target=run)
    t.start()
    return t, result


def static_only_peer(node, seed: int) -> ScriptedPeer:
    """A peer like the node but without option_anchors in its init (an
    implementation that predates anchors)."""
    ours = bits_from_features(bytes.fromhex(node.rpc.getinfo()["our_features"]["init"]))
    assert ours & ANCHORS_BITS == {23}
    peer = ScriptedPeer(node, seed=seed, features=features_from_bits(ours - ANCHORS_BITS))
    assert peer.their_features == bytes.fromhex(node.rpc.getinfo()["our_features"]["init"])
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    return peer


def test_peer_without_anchors_gets_static_remotekey(node_factory):
    """A peer whose init lacks bits 22/23 is proposed static_remotekey (at
    the non-anchors commitment rate), and the channel opens as such.
    Without an anchors channel the wallet keeps no min-emergency-msat: the
    funding may take what an anchors open could not (test_fundchannel_
    preflight).  A type asked for explicitly is sent as asked, as Core
    Lightning does; a peer refusing it fails fundchannel."""
    node = node_factory.get_node()
    fund(node, 200_000)
    sync_blockheight(node)
    peer = static_only_peer(node, 0x71)
    t, result = fundchannel_in_thread(node, peer, 190_000)
    oc = peer.expect("open_channel")
    assert bits_from_features(oc["tlvs"]["channel_type"]["type"]) == {12}
    assert oc["feerate_per_kw"] == UNILATERAL_PERKW
    fundee(peer, oc)
    t.join(30)
    assert result.get("ok", {}).get("channel_type") == STATIC, result
    c = node.rpc.listpeerchannels(peer.node_id)["channels"][0]
    assert c["channel_type"] == STATIC and c["features"] == ["option_static_remotekey"]
    # 190,000 sat of a 200,000-sat wallet: less than min-emergency-msat (25,000 sat) left
    assert result["ok"]["txid"] in node.chain.rpc.getrawmempool()
    assert sum(o["amount_msat"] for o in node.rpc.listfunds()["outputs"] if o["status"] != "spent") < 25_000_000
    peer.close()

    # anchors asked for explicitly: proposed all the same; the peer says no
    fund(node, 500_000)
    sync_blockheight(node)
    peer = static_only_peer(node, 0x72)
    t, result = fundchannel_in_thread(node, peer, 100_000, channel_type=[12, 22])
    oc = peer.expect("open_channel")
    assert bits_from_features(oc["tlvs"]["channel_type"]["type"]) == {12, 22}
    assert oc["feerate_per_kw"] == SLOW_PERKW
    peer.send("error", {"channel_id": oc["temporary_channel_id"], "data": b"channel_type not supported"})
    t.join(30)
    assert not t.is_alive()
    assert "channel_type not supported" in result["error"]["message"], result
    assert node.rpc.listpeerchannels(peer.node_id)["channels"] == []
    peer.close()


def test_fundchannel_channel_type_parameter(node_factory):
    """fundchannel's channel_type must be a type we run (Core Lightning's
    channel_type_accept): -32602 before anything reaches the peer.  The
    variations our init offers (scid_alias, zeroconf) are types we run: a
    private channel proposed with option_scid_alias has it (a plugin
    offering the same bit again changes nothing)."""
    l1 = node_factory.get_node(options={"plugin": str(PLUGINS / "offer_scid_alias.py")})
    l2 = node_factory.get_node()
    assert 47 in bits_from_features(bytes.fromhex(l1.rpc.getinfo()["our_features"]["init"]))
    fund(l1)
    sync_blockheight(l1)
    l1.connect(l2)
    for bad in ([], [22], [13], [12, 23], [12, 14], [12, 47], [12, 22, 51], [12, 20], [12, 2**32 - 1]):
        with pytest.raises(RpcError) as e:
            l1.rpc.fundchannel(l2.node_id, 100_000, channel_type=bad)
        assert e.value.error["code"] == -32602 and "channel_type" in e.value.error["message"], (bad, e.value.error)
    assert l2.rpc.listpeerchannels()["channels"] == [] and "open_channel" not in l2.log_text()
    r = l1.rpc.fundchannel(l2.node_id, 100_000, channel_type=[12, 22, 46], announce=False)
    assert r["channel_type"] == {"bits": [12, 22, 46], "names": ["static_remotekey/even", "anchors/even",
                                                                  "scid_alias/even"]}
    c = wait_for(lambda: l2.rpc.listpeerchannels()["channels"])[0]
    assert c["channel_type"] == r["channel_type"] and "option_scid_alias" in c["features"]


def test_funder_refuses_another_type_in_accept_channel(node_factory):
    """BOLT 2: accept_channel must carry the channel_type of open_channel;
    a peer answering static_remotekey to our anchors proposal fails the
    open (an error for its temporary id, fundchannel fails with the reason)."""
    node = node_factory.get_node()
    fund(node)
    sync_blockheight(node)
    peer = ScriptedPeer(node, seed=0x73)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    t, result = fundchannel_in_thread(node, peer, 100_000)
    oc = peer.expect("open_channel")
    assert bits_from_features(oc["tlvs"]["channel_type"]["type"]) == {12, 22}
    local = party_config(peer.signer)
    peer.send("accept_channel", {
        "temporary_channel_id": oc["temporary_channel_id"], **local.wire_fields(), "minimum_depth": 3,
        "first_per_commitment_point": peer.signer.per_commitment_point(0),
        "tlvs": {"channel_type": {"type": features_from_bits({12})},
                 "upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}})
    err = peer.expect("error")
    assert err["channel_id"] == oc["temporary_channel_id"]
    assert b"channel_type [12] differs" in err["data"]
    t.join(30)
    assert "differs" in result["error"]["message"], result
    assert not any(o["reserved"] for o in node.rpc.listfunds()["outputs"])
    assert peer.ping_ok()
    peer.close()


@pytest.mark.parametrize("bits", [[12], [12, 22]], ids=["static_remotekey", "anchors"])
def test_accepter_takes_the_proposed_type(node_factory, bits):
    """The node accepts a type it runs with that very type in accept_channel,
    whatever the proposer's own init (the check is against our features, as
    Core Lightning's), and keeps the channel as that type."""
    node = node_factory.get_node()
    like_us = ScriptedPeer(node, seed=0x74)
    wait_for(lambda: node.rpc.listpeers(like_us.node_id)["peers"])
    for peer in (like_us, static_only_peer(node, 0x75)):
        ch = open_unconfirmed_channel(peer, channel_type=bits)
        assert ch is not None and ch.params.option_anchors == (22 in bits)
        c = wait_for(lambda: node.rpc.listpeerchannels(peer.node_id)["channels"])[0]
        assert c["channel_type"] == (ANCHORS if 22 in bits else STATIC)
        assert c["state"] == "CHANNELD_AWAITING_LOCKIN"
        peer.close()


def test_accepter_refuses_types_it_does_not_run(node_factory):
    """BOLT 2: a channel_type that is not a defined type, or has a variation
    by its odd bit, or is the obsolete anchor_outputs (20), gets an error
    for that temporary id: no channel, the connection stays.  So does a
    zero-conf type from a peer no openchannel hook trusts (Core Lightning's
    message), and option_scid_alias for a public channel (its sender MUST
    NOT); a private one with it is taken."""
    node = node_factory.get_node()
    refused = [(bits, f"unsupported channel_type {sorted(bits)}", 0)
               for bits in ([22], [13], [12, 23], [12, 22, 47], [12, 22, 51], [12, 20], [20, 12, 22], [])]
    refused += [([12, 22, 50], "You required zeroconf, but you're not on our allowlist", 0),
                ([12, 22, 46], "option_scid_alias in the channel_type of a public channel", 1)]
    for seed, (bits, message, flags) in enumerate(refused, start=0x80):
        peer = ScriptedPeer(node, seed=seed)
        wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
        temp_id = os.urandom(32)
        peer.send("open_channel", open_channel_fields(peer, temp_id, channel_type=bits, channel_flags=flags))
        err = peer.expect("error")
        assert err["channel_id"] == temp_id
        assert message.encode() in err["data"], (bits, err)
        wait_for(lambda: node.rpc.listpeerchannels(peer.node_id)["channels"] == [])
        assert peer.ping_ok()
        peer.close()
    peer = ScriptedPeer(node, seed=0x90)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    assert open_unconfirmed_channel(peer, channel_type=[12, 22, 46]) is not None
    c = wait_for(lambda: node.rpc.listpeerchannels(peer.node_id)["channels"])[0]
    assert c["channel_type"]["bits"] == [12, 22, 46] and c["private"]
    peer.close()
    assert node.broken_lines() == []


def test_openchannel_hook_sees_the_channel_type(node_factory):
    """The openchannel hook's payload carries the proposed channel_type
    (Core Lightning 25.09): a plugin accepting only anchors channels
    refuses a static_remotekey open with its message and lets an anchors
    one through."""
    node = node_factory.get_node(options={"plugin": str(PLUGINS / "anchors_only.py")})
    peer = ScriptedPeer(node, seed=0x78)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    temp_id = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp_id, channel_type=[12]))
    err = peer.expect("error")
    assert err["channel_id"] == temp_id and err["data"] == b"anchors channels only"
    assert open_unconfirmed_channel(peer, channel_type=[12, 22]) is not None
    assert node.rpc.call("seen_channel_types")["channel_types"] == [STATIC, ANCHORS]
    wait_for(lambda: [c["channel_type"] for c in node.rpc.listpeerchannels(peer.node_id)["channels"]] == [ANCHORS])
    peer.close()
