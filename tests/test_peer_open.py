"""A peer opening channels badly (BOLT 2 "The receiving node MUST fail the
channel if"), too often, or then going silent: the node refuses with an
`error` for that temporary_channel_id at once, starts no channel, keeps the
connection, and never logs BROKEN.  Also the funder's side: an
`accept_channel` BOLT 2 says the funder must reject fails `fundchannel`
with the reason instead of hanging.

The peer is a scripted BOLT 8 peer (pyln-proto, tests/scripted_peer.py).
One node per module serves the parametrized cases (each case uses a peer
of its own); its log is checked for BROKEN lines after every case."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterator

import pytest
from pyln.client import RpcError

from bitcoin.keys import is_valid_pubkey
from common.features import bits_from_features, features_from_bits
from channel_testing import party_config
from node_factory import NodeFactory, wait_for
from scripted_peer import ScriptedPeer, channelds_of, open_channel_fields, open_unconfirmed_channel

OPENING_TIMEOUT = 3
NOT_A_POINT = b"\x02" + bytes(32)        # x = 0 is not on secp256k1
assert not is_valid_pubkey(NOT_A_POINT)


@pytest.fixture(scope="module")
def node(chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    nf = NodeFactory(tmp_path_factory.mktemp("peer_open"), chain)
    n = nf.get_node({"dev-opening-timeout-secs": OPENING_TIMEOUT})
    yield n
    problems = nf.teardown()
    if problems:
        pytest.fail("node teardown: " + "; ".join(problems))


_seed = iter(range(0x60, 0xff))


def fresh_peer(node: Any) -> ScriptedPeer:
    peer = ScriptedPeer(node, seed=next(_seed))
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    return peer


def no_channel_left(node: Any, peer: ScriptedPeer) -> None:
    """Nothing was started, or what was is gone again."""
    wait_for(lambda: not channelds_of(node), timeout=15)
    assert node.rpc.listpeerchannels(peer.node_id)["channels"] == []
    assert node.rpc.getinfo()["id"] == node.node_id
    assert node.broken_lines() == []


def expect_error_for(peer: ScriptedPeer, temp_id: bytes) -> str:
    fields = peer.expect("error")
    assert fields["channel_id"] == temp_id, fields
    return fields["data"].decode()


# -- open_channel that BOLT 2 says the receiver MUST fail ------------------------------------
def _keys(name: str) -> dict[str, Any]:
    return {name: NOT_A_POINT}


# case -> (open_channel fields that differ from a valid one, what the error must say)
BAD_OPENS = {
    "dust_limit_below_354": (dict(dust_limit_satoshis=353), "dust_limit_satoshis 353 below 354"),
    "dust_limit_above_channel_reserve": (dict(dust_limit_satoshis=20_000, channel_reserve_satoshis=10_000),
                                         "dust_limit_satoshis 20000 greater than channel_reserve_satoshis"),
    "max_accepted_htlcs_above_483": (dict(max_accepted_htlcs=484), "max_accepted_htlcs 484"),
    "large_channel_not_negotiated": (dict(funding_satoshis=2**24, channel_reserve_satoshis=2**24 // 100),
                                     "option_support_large_channel"),
    "funding_pubkey_invalid": (_keys("funding_pubkey"), "not a valid pubkey"),
    "revocation_basepoint_invalid": (_keys("revocation_basepoint"), "not a valid pubkey"),
    "payment_basepoint_invalid": (_keys("payment_basepoint"), "not a valid pubkey"),
    "delayed_payment_basepoint_invalid": (_keys("delayed_payment_basepoint"), "not a valid pubkey"),
    "htlc_basepoint_invalid": (_keys("htlc_basepoint"), "not a valid pubkey"),
    "first_per_commitment_point_invalid": (_keys("first_per_commitment_point"),
                                           "first_per_commitment_point is not a valid point"),
    "push_msat_above_funding": (dict(push_msat=1_000_000 * 1000 + 1), "push_msat"),
    "to_self_delay_above_max_locktime": (dict(to_self_delay=2017), "to_self_delay 2017 unreasonably large"),
    "chain_hash_unknown": (dict(chain_hash=b"\x42" * 32), "Unknown chain-hash"),
    "channel_reserve_below_our_dust_limit": (dict(dust_limit_satoshis=354, channel_reserve_satoshis=400),
                                             "channel_reserve_satoshis 400 below local dust_limit_satoshis"),
    "funder_cannot_pay_the_fee": (dict(push_msat=1_000_000 * 1000 - 1000),
                                  "cannot pay the initial commitment fee"),
    "reserves_exceed_funding": (dict(channel_reserve_satoshis=995_000), "too large for funding"),
    # funder keeps 10,000 sat (our 1% reserve), we get 990,000 (their reserve asks 995,000)
    "both_balances_at_or_below_reserve": (dict(push_msat=990_000_000, channel_reserve_satoshis=995_000),
                                          "both initial balances are at or below the channel reserve"),
    "feerate_too_low": (dict(feerate_per_kw=100), "feerate_per_kw 100 outside"),
    "channel_type_missing": (dict(channel_type=None), "open_channel without a channel_type"),
    "channel_type_unknown": (dict(channel_type=[12, 14]), "unsupported channel_type [12, 14]"),
    # (a zero-conf type from a peer the openchannel hook gave no mindepth 0)
    "channel_type_zeroconf": (dict(channel_type=[12, 50]), "You required zeroconf, but you're not on our allowlist"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPENS))
def test_bad_open_channel_is_refused_at_once(node, case):
    peer = fresh_peer(node)
    temp_id = os.urandom(32)
    overrides, reason = BAD_OPENS[case]
    peer.send("open_channel", open_channel_fields(peer, temp_id, **overrides))
    assert reason in expect_error_for(peer, temp_id)
    no_channel_left(node, peer)
    assert peer.ping_ok()   # the connection is fine
    peer.close()


def test_to_self_delay_up_to_max_locktime_blocks_is_accepted(node_factory):
    """--max-locktime-blocks above the default 2016 is what both the early
    checks and the channel created at funding_created allow."""
    n = node_factory.get_node({"max-locktime-blocks": 3000})
    peer = ScriptedPeer(n)
    wait_for(lambda: n.rpc.listpeers(peer.node_id)["peers"])
    assert open_unconfirmed_channel(peer, to_self_delay=2500) is not None
    wait_for(lambda: [c["state"] for c in n.rpc.listpeerchannels(peer.node_id)["channels"]]
             == ["CHANNELD_AWAITING_LOCKIN"])
    temp_id = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp_id, to_self_delay=3001))
    assert "to_self_delay 3001 unreasonably large" in expect_error_for(peer, temp_id)


def test_good_open_channel_is_accepted(node):
    """The baseline the cases above differ from: accepted, and with no
    funding_created it is forgotten after --dev-opening-timeout-secs with
    an INFO line (no BROKEN, no traceback), an error for its temporary id,
    and the connection still up for another open."""
    peer = fresh_peer(node)
    temp_id = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp_id))
    acc = peer.expect("accept_channel")
    assert acc["temporary_channel_id"] == temp_id
    assert len(channelds_of(node)) == 1
    start = time.monotonic()
    # silence: the node gives up on its own
    text = expect_error_for(peer, temp_id)
    assert "timed out" in text
    assert time.monotonic() - start < OPENING_TIMEOUT + 10
    no_channel_left(node, peer)
    log = node.log_text()
    assert "Traceback" not in log and "TimeoutError" not in log
    assert any(" INFO " in ln and "timed out" in ln and "funding_created" in ln for ln in log.splitlines())
    assert peer.ping_ok()
    # the pending open is forgotten: a new one on the same connection works
    temp2 = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp2))
    assert peer.expect("accept_channel")["temporary_channel_id"] == temp2
    peer.close()
    no_channel_left(node, peer)


def test_many_open_channel_start_one_daemon(node):
    """40 open_channel back to back: one channeld, one accept_channel, and
    an error naming each refused temporary id (BOLT 1: it fails that
    channel only); the open in progress and the connection survive."""
    peer = fresh_peer(node)
    temp_ids = [os.urandom(32) for _ in range(40)]
    for t in temp_ids:
        peer.send("open_channel", open_channel_fields(peer, t))
    most = 0
    accepted, refused = [], []
    deadline = time.monotonic() + 30
    while len(accepted) + len(refused) < len(temp_ids) and time.monotonic() < deadline:
        most = max(most, len(channelds_of(node)))
        name, fields = peer.read()
        if name == "accept_channel":
            accepted.append(fields["temporary_channel_id"])
        elif name == "error":
            refused.append(fields["channel_id"])
        else:
            assert name == "warning", (name, fields)
    most = max(most, len(channelds_of(node)))
    assert accepted == [temp_ids[0]]
    assert refused == temp_ids[1:]
    assert most == 1
    assert peer.ping_ok()
    peer.close()
    no_channel_left(node, peer)


# -- accept_channel that BOLT 2 says the funder MUST (or MAY) reject ------------------------
BAD_ACCEPTS = {
    "minimum_depth_unreasonable": (dict(minimum_depth=1000), "minimum_depth 1000 unreasonably large"),
    "channel_reserve_below_our_dust_limit": (dict(channel_reserve_satoshis=500, dust_limit_satoshis=400),
                                             "channel_reserve_satoshis 500 below local dust_limit_satoshis"),
    "dust_limit_above_our_reserve": (dict(dust_limit_satoshis=20_000, channel_reserve_satoshis=20_000),
                                     "local channel_reserve_satoshis 10000 below remote dust_limit_satoshis"),
    "max_accepted_htlcs_above_483": (dict(max_accepted_htlcs=484), "max_accepted_htlcs 484"),
    "funding_pubkey_invalid": (_keys("funding_pubkey"), "not a valid pubkey"),
    "first_per_commitment_point_invalid": (_keys("first_per_commitment_point"),
                                           "first_per_commitment_point is not a valid point"),
    "to_self_delay_above_max_locktime": (dict(to_self_delay=5000), "to_self_delay 5000 unreasonably large"),
    "channel_type_missing": (dict(channel_type=None), "accept_channel without a channel_type"),
    "channel_type_different": (dict(channel_type="different"), "channel_type"),
}


@pytest.fixture(scope="module")
def funded(node) -> Any:
    addr = node.rpc.newaddr("bech32")["bech32"]
    node.chain.fund(addr, 5_000_000)
    node.chain.mine(1)
    wait_for(lambda: any(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]))
    wait_for(lambda: node.rpc.getinfo()["blockheight"] >= node.chain.rpc.getblockcount())
    return node


@pytest.mark.parametrize("case", sorted(BAD_ACCEPTS))
def test_bad_accept_channel_fails_fundchannel(funded, case):
    node = funded
    peer = fresh_peer(node)
    result: dict[str, Any] = {}

    def fund() -> None:
        try:
            result["ok"] = node.rpc.fundchannel(peer.node_id, 1_000_000)
        except RpcError as e:
            result["error"] = e.error
    t = threading.Thread(target=fund)
    t.start()
    oc = peer.expect("open_channel")
    overrides, reason = dict(BAD_ACCEPTS[case][0]), BAD_ACCEPTS[case][1]
    channel_type = overrides.pop("channel_type", "same")
    local = party_config(peer.signer)
    tlvs: dict[str, Any] = {"upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}
    if channel_type == "same":
        tlvs["channel_type"] = oc["tlvs"]["channel_type"]
    elif channel_type == "different":      # anchors added or removed
        tlvs["channel_type"] = {"type": features_from_bits(bits_from_features(oc["tlvs"]["channel_type"]["type"])
                                                           ^ {22})}
    fields = {"temporary_channel_id": oc["temporary_channel_id"], **local.wire_fields(), "minimum_depth": 3,
              "first_per_commitment_point": peer.signer.per_commitment_point(0), "tlvs": tlvs}
    fields.update(overrides)
    peer.send("accept_channel", fields)
    assert reason in expect_error_for(peer, oc["temporary_channel_id"])
    t.join(30)
    assert not t.is_alive(), "fundchannel hangs"
    # Core Lightning fails the command with LIGHTNINGD (-1) and the reason
    assert "error" in result, result
    assert result["error"]["code"] == -1, result
    assert reason in result["error"]["message"]
    # no coin stays reserved by the failed open
    assert not any(o.get("reserved") for o in node.rpc.listfunds()["outputs"])
    no_channel_left(node, peer)
    assert peer.ping_ok()
    peer.close()


def test_funding_signed_with_a_bad_signature_fails_fundchannel_and_broadcasts_nothing(funded):
    """BOLT 2 (funding_signed recipient): "if `signature` is incorrect OR
    non-compliant with LOW-S-standard rule: MUST send a `warning` and close
    the connection, or send an `error` and fail the channel", and "MUST NOT
    broadcast the funding transaction before receipt of a valid
    `funding_signed`": fundchannel fails, nothing reaches the mempool, no
    coin stays reserved."""
    from bitcoin.script import p2wsh_script
    from bitcoin.tx import OutPoint, Tx
    from channeld.core import Channel, ChannelParams, ChannelType, PartyConfig
    from common.commitment import Side
    from common.scripts import funding_script
    node = funded
    peer = fresh_peer(node)
    result: dict[str, Any] = {}

    def fund() -> None:
        try:
            result["ok"] = node.rpc.fundchannel(peer.node_id, 1_000_000)
        except RpcError as e:
            result["error"] = e.error
    t = threading.Thread(target=fund)
    t.start()
    oc = peer.expect("open_channel")
    local = party_config(peer.signer)
    peer.send("accept_channel", {"temporary_channel_id": oc["temporary_channel_id"], **local.wire_fields(),
                                 "minimum_depth": 3, "first_per_commitment_point": peer.signer.per_commitment_point(0),
                                 "tlvs": {"channel_type": oc["tlvs"]["channel_type"],
                                          "upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}})
    fc = peer.expect("funding_created")
    ct = ChannelType(anchors=22 in bits_from_features(oc["tlvs"]["channel_type"]["type"]))
    params = ChannelParams(OutPoint(fc["funding_txid"], fc["funding_output_index"]), oc["funding_satoshis"],
                           Side.REMOTE, local, PartyConfig.from_wire(oc), ct)
    ch = Channel.new(params, peer.signer, push_msat=oc["push_msat"], feerate_per_kw=oc["feerate_per_kw"],
                     remote_first_per_commitment_point=oc["first_per_commitment_point"])
    ch.recv_initial_commitment_sig(fc["signature"])
    sig = ch.initial_remote_commitment_sig()
    peer.send("funding_signed", {"channel_id": ch.channel_id, "signature": sig[:40] + bytes([sig[40] ^ 1]) + sig[41:]})
    err = peer.expect("error")
    assert err["channel_id"] in (oc["temporary_channel_id"], ch.channel_id), err
    t.join(30)
    assert not t.is_alive() and "error" in result, result
    spk = p2wsh_script(funding_script(oc["funding_pubkey"], local.funding_pubkey))
    time.sleep(1)
    for txid in node.chain.rpc.getrawmempool():
        tx = Tx.parse(bytes.fromhex(node.chain.rpc.getrawtransaction(txid)))
        assert all(o.script_pubkey != spk for o in tx.outputs), "funding transaction broadcast"
    assert not any(o.get("reserved") for o in node.rpc.listfunds()["outputs"])
    no_channel_left(node, peer)
    assert peer.ping_ok()
    peer.close()
