"""BOLT 1's requirements on the receiving node that the other peer-message
tests do not already cover (docs/BOLT-RECEIVER-REQUIREMENTS.md lists
them all): the `init` exchange (feature bits in `features` and
`globalfeatures`, dependencies, networks, nothing before `init`), TLV
streams, and `error`/`warning` for channels that exist or not.

Driven by a scripted BOLT 8 peer (pyln-proto); one node serves the module
(each case uses a peer of its own) and is checked after each case."""
from __future__ import annotations

import os
import socket
import time
from typing import Any, Iterator

import pytest

import wire
from common.features import features_from_bits
from node_factory import NodeFactory, wait_for
from scripted_peer import ScriptedPeer, open_channel_fields, open_unconfirmed_channel
from test_peer_messages import node_is_well, warned_and_closed

SCHEMA = wire.bolt_schema()
GOSSIP_QUERIES_ODD = 7


@pytest.fixture(scope="module")
def node(chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    nf = NodeFactory(tmp_path_factory.mktemp("bolt1"), chain)
    yield nf.get_node()
    problems = nf.teardown()
    if problems:
        pytest.fail("node teardown: " + "; ".join(problems))


_seed = iter(range(0x90, 0xd0))


def greeted(node: Any) -> ScriptedPeer:
    """A connection that has read the node's init and sent nothing yet."""
    return ScriptedPeer(node, seed=next(_seed), init=False)


def our_bits(peer: ScriptedPeer) -> set[int]:
    from common.features import bits_from_features
    return bits_from_features(peer.their_features)


def send_init(peer: ScriptedPeer, features: set[int], globalfeatures: set[int] = frozenset(),
              tlvs: dict | None = None) -> None:
    peer.send("init", {"globalfeatures": features_from_bits(globalfeatures),
                       "features": features_from_bits(features), "tlvs": tlvs or {}})


def stays_connected(node: Any, peer: ScriptedPeer) -> None:
    assert peer.ping_ok()
    assert node.rpc.listpeers(peer.node_id)["peers"][0]["connected"]


def never_connected(node: Any, peer: ScriptedPeer) -> None:
    assert not node.rpc.listpeers(peer.node_id)["peers"]


# -- init: feature bits ---------------------------------------------------------------------
@pytest.mark.parametrize("field", ["features", "globalfeatures"])
@pytest.mark.parametrize("bit", [28, 62, 100])   # option_dual_fund, option_splice: not ours; 100: unassigned
def test_init_with_an_even_bit_we_do_not_offer_closes(node, field, bit):
    """BOLT 1: "upon receiving unknown _even_ feature bits that are non-zero:
    MUST close the connection" (a feature the peer requires that we do not
    offer is unknown to us, whether BOLT 9 names it or not), in either
    field, since the two are combined."""
    peer = greeted(node)
    bits = our_bits(peer)
    if field == "features":
        send_init(peer, bits | {bit})
    else:
        send_init(peer, bits, {bit})
    assert f"Unsupported feature {bit}" in warned_and_closed(peer)
    never_connected(node, peer)
    node_is_well(node)


@pytest.mark.parametrize("bit", [29, 63, 101])
def test_init_with_odd_bits_we_do_not_know_is_accepted(node, bit):
    """BOLT 1: "upon receiving unknown _odd_ feature bits that are non-zero:
    MUST ignore the bit" (and a known feature outside its BOLT 9 context is
    ignored too: option_payment_metadata's odd bit 49 is for invoices)."""
    peer = greeted(node)
    send_init(peer, our_bits(peer) | {bit, 49})
    stays_connected(node, peer)
    node_is_well(node)


@pytest.mark.parametrize("bits", [
    pytest.param({15}, id="payment_secret_without_var_onion_optin"),
    pytest.param({9, 17}, id="basic_mpp_without_payment_secret"),
    pytest.param({9, 15, 17, 51}, id="zeroconf_without_scid_alias"),
])
def test_init_missing_a_dependency_closes(node, bits):
    """BOLT 1: "if the feature vector does not set all known, transitive
    dependencies: MUST close the connection"."""
    peer = greeted(node)
    send_init(peer, bits)
    assert any("requires" in w for w in warned_and_closed(peer))
    never_connected(node, peer)
    node_is_well(node)


def test_init_features_and_globalfeatures_are_combined(node):
    """BOLT 1: "MUST combine (bitwise OR) the two feature bitmaps": a
    dependency met only through globalfeatures is met, and gossip_queries
    set only there is honoured (the node then sends its gossip queries;
    without the bit in either field it sends none)."""
    plain = greeted(node)
    send_init(plain, {9, 15})
    assert plain.ping_ok()
    quiet = [SCHEMA.decode(m).name for m in _raw_for(plain, 2.0)]
    assert "query_channel_range" not in quiet and "gossip_timestamp_filter" not in quiet

    split = greeted(node)
    send_init(split, {15}, {9, GOSSIP_QUERIES_ODD})
    names = [SCHEMA.decode(m).name for m in _raw_for(split, 5.0)]
    assert "gossip_timestamp_filter" in names and "query_channel_range" in names
    stays_connected(node, split)
    node_is_well(node)


def _raw_for(peer: ScriptedPeer, seconds: float) -> list[bytes]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(peer.read_raw(max(0.1, deadline - time.monotonic())))
        except socket.timeout:
            break
    return out


def test_init_known_feature_bits_are_honoured(node):
    """BOLT 1: "MUST respond to known feature bits as specified in BOLT 9":
    option_support_large_channel not negotiated (we do not offer it), so a
    2^24 sat open is refused (BOLT 2), while the same peer's smaller open
    is accepted."""
    peer = greeted(node)
    send_init(peer, our_bits(peer) | {19})         # they offer large channels, we do not
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    temp = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp, funding_sat=2**24,
                                                  channel_reserve_satoshis=2**24 // 100))
    err = peer.expect("error")
    assert err["channel_id"] == temp and b"option_support_large_channel" in err["data"]
    stays_connected(node, peer)
    node_is_well(node)


def test_init_without_a_common_network_closes(node):
    """BOLT 1: "upon receiving `networks` containing no common chains: MAY
    close the connection" (we do)."""
    peer = greeted(node)
    send_init(peer, our_bits(peer), tlvs={"networks": {"chains": [b"\x42" * 32]}})
    assert any("No common chain" in w for w in warned_and_closed(peer))
    never_connected(node, peer)
    node_is_well(node)


def test_nothing_but_init_before_the_peers_init(node):
    """BOLT 1: "MUST wait to receive `init` before sending any other
    messages": a peer with gossip_queries hears nothing more until its own
    init, then the node's gossip queries (an unknown odd message before
    init is ignored, BOLT 1's rule for odd types)."""
    peer = greeted(node)
    peer.send_raw((32769).to_bytes(2, "big") + b"before init")
    assert _raw_for(peer, 3.0) == []
    never_connected(node, peer)
    send_init(peer, our_bits(peer))
    names = [SCHEMA.decode(m).name for m in _raw_for(peer, 5.0)]
    assert "gossip_timestamp_filter" in names
    stays_connected(node, peer)
    node_is_well(node)


# -- TLV streams ------------------------------------------------------------------------------
def test_message_without_a_tlv_stream_is_accepted(node):
    """BOLT 1: "if zero bytes remain before parsing a `type`: MUST stop
    parsing the `tlv_stream`": an init that ends after `features` (no TLV
    stream at all) is a complete init."""
    peer = greeted(node)
    raw = SCHEMA.encode("init", {"globalfeatures": b"", "features": peer.their_features, "tlvs": {}})
    assert raw.endswith(peer.their_features)
    peer.send_raw(raw)
    stays_connected(node, peer)
    node_is_well(node)


@pytest.mark.parametrize("tlv", [
    pytest.param(b"\x01\x1f" + bytes(31), id="networks_31_bytes"),
    pytest.param(b"\x01\x21" + bytes(33), id="networks_33_bytes"),
])
def test_known_tlv_with_the_wrong_length_closes(node, tlv):
    """BOLT 1: "if `length` is not exactly equal to that required for the
    known encoding for `type`: MUST fail to parse the `tlv_stream`" (init's
    networks is a whole number of 32-byte chain hashes): the connection
    closes."""
    peer = greeted(node)
    raw = SCHEMA.encode("init", {"globalfeatures": b"", "features": peer.their_features, "tlvs": {}})
    peer.send_raw(raw + tlv)
    warned_and_closed(peer)
    never_connected(node, peer)
    node_is_well(node)


def test_known_tlv_with_a_non_minimal_field_closes(node):
    """BOLT 1: "if variable-length fields within the known encoding for
    `type` are not minimal: MUST fail to parse the `tlv_stream`":
    query_channel_range's query_option is a bigsize, here 1 written in
    three bytes."""
    peer = greeted(node)
    send_init(peer, our_bits(peer))
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    raw = SCHEMA.encode("query_channel_range", {"chain_hash": peer.chain_hash, "first_blocknum": 0,
                                                "number_of_blocks": 10, "tlvs": {}})
    peer.send_raw(raw + b"\x01\x03\xfd\x00\x01")
    warned_and_closed(peer)
    node_is_well(node)


def test_unknown_odd_tlv_is_skipped(node):
    """BOLT 1: "if `type` is odd: MUST discard the next `length` bytes": an
    open_channel carrying an unknown odd record (and init carrying one)
    is handled as without it."""
    peer = greeted(node)
    raw = SCHEMA.encode("init", {"globalfeatures": b"", "features": peer.their_features, "tlvs": {}})
    peer.send_raw(raw + b"\x05\x03abc")
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    temp = os.urandom(32)
    fields = open_channel_fields(peer, temp)
    fields["tlvs"] = {}
    peer.send_raw(SCHEMA.encode("open_channel", fields) + b"\x00\x00" + b"\x01\x02\x10\x00" + b"\x07\x02hi")
    assert peer.expect("accept_channel")["temporary_channel_id"] == temp
    peer.close()
    node_is_well(node)


# -- error and warning --------------------------------------------------------------------------
def _two_channels(node: Any) -> tuple[ScriptedPeer, list[bytes]]:
    """A peer with two channels awaiting their (never confirmed) funding."""
    peer = greeted(node)
    send_init(peer, our_bits(peer))
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    ids = []
    for _ in range(2):
        ch = open_unconfirmed_channel(peer)
        assert ch is not None
        ids.append(ch.channel_id)
    wait_for(lambda: len(node.rpc.listpeerchannels(peer.node_id)["channels"]) == 2)
    return peer, ids


def _states(node: Any, peer: ScriptedPeer) -> dict[str, str]:
    return {c["channel_id"]: c["state"] for c in node.rpc.listpeerchannels(peer.node_id)["channels"]}


FAILED = ("AWAITING_UNILATERAL", "FUNDING_SPEND_SEEN", "ONCHAIN", "CLOSED")


def test_error_for_one_channel_fails_that_channel_only(node):
    """BOLT 1: upon receiving `error` with a `channel_id`: "MUST fail the
    channel referred to by `channel_id`, if that channel is with the
    sending node"; the peer's other channel stays."""
    peer, (a, b) = _two_channels(node)
    peer.send("error", {"channel_id": a, "data": b"go away"})
    wait_for(lambda: _states(node, peer)[a.hex()] in FAILED)
    time.sleep(1)
    assert _states(node, peer)[b.hex()] == "CHANNELD_AWAITING_LOCKIN"
    peer.close()
    node_is_well(node)


def test_error_with_channel_id_zero_fails_every_channel(node):
    """BOLT 1: upon receiving `error` with an all-zero `channel_id`: "MUST
    fail all channels with the sending node"."""
    peer, ids = _two_channels(node)
    peer.send("error", {"channel_id": bytes(32), "data": b"all of them"})
    wait_for(lambda: all(s in FAILED for s in _states(node, peer).values()))
    peer.close()
    node_is_well(node)


@pytest.mark.parametrize("kind", ["error", "warning"])
def test_error_or_warning_for_an_unknown_channel_is_ignored(node, kind):
    """BOLT 1: "if no existing channel is referred to by `channel_id`: MUST
    ignore the message": the peer's channels and the connection stay."""
    peer, ids = _two_channels(node)
    peer.send(kind, {"channel_id": os.urandom(32), "data": b"who?"})
    assert peer.ping_ok()
    time.sleep(1)
    assert set(_states(node, peer).values()) == {"CHANNELD_AWAITING_LOCKIN"}
    stays_connected(node, peer)
    peer.close()
    node_is_well(node)
