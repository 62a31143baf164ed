"""BOLT 7's requirements on the node answering gossip queries and relaying
gossip (docs/BOLT-RECEIVER-REQUIREMENTS.md lists them all):
query_channel_range / reply_channel_range, query_short_channel_ids /
reply_short_channel_ids_end, gossip_timestamp_filter, and what is relayed.

A scripted BOLT 8 peer (pyln-proto) announces a few public channels
between made-up nodes, whose funding outputs really are on the test chain
(the node checks them), then other scripted peers query the node."""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

import wire
from bitcoin.script import p2wsh_script
from common.scripts import funding_script
from gossipd import queries as Q
from synthetic_graph import (funding_secret, node_secret, pubkey, signed_channel_announcement,
                               signed_channel_update, signed_node_announcement)
from node_factory import NodeFactory, wait_for
from scripted_peer import ScriptedPeer

SCHEMA = wire.bolt_schema()
SEED = 7


@dataclass
class Chan:
    scid: int
    secrets: tuple[bytes, bytes]              # node_id_1's, node_id_2's
    funding: tuple[bytes, bytes]
    announcement: bytes
    updates: dict[int, bytes] = field(default_factory=dict)      # direction -> raw

    @property
    def block(self) -> int:
        return self.scid >> 40


def make_channel(node: Any, i: int, chain_hash: bytes) -> Chan:
    """Two made-up nodes and their 2-of-2 funding output, confirmed in a
    block of its own."""
    secrets = sorted((node_secret(SEED, 2 * i), node_secret(SEED, 2 * i + 1)), key=pubkey)
    funding = (funding_secret(SEED, i, 0), funding_secret(SEED, i, 1))
    spk = p2wsh_script(funding_script(pubkey(funding[0]), pubkey(funding[1])))
    txid, vout = node.chain.fund(spk, 100_000)
    [block] = node.chain.mine(1)
    rpc = node.chain.rpc
    b = rpc.getblock(block)
    scid = (b["height"] << 40) | (b["tx"].index(txid) << 16) | vout
    ann = signed_channel_announcement(chain_hash, scid, secrets, funding)
    return Chan(scid, (secrets[0], secrets[1]), funding, ann)


def update(ch: Chan, chain_hash: bytes, direction: int, timestamp: int, fee_base: int = 1000) -> bytes:
    raw = signed_channel_update(ch.secrets[direction], chain_hash, ch.scid, timestamp, direction,
                                fee_base=fee_base, htlc_max=50_000_000)
    ch.updates[direction] = raw
    return raw


def gossip(peer: ScriptedPeer, seconds: float, until: str | None = None) -> list[Any]:
    """The gossip messages the node sends within `seconds` (pings answered),
    or until a message named `until` (included)."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = SCHEMA.decode(peer.read_raw(max(0.1, deadline - time.monotonic())))
        except socket.timeout:
            break
        if msg.name == "ping":
            peer.send("pong", {"ignored": bytes(msg.fields["num_pong_bytes"])})
            continue
        out.append(msg)
        if msg.name == until:
            break
    return out


def range_replies(peer: ScriptedPeer, timeout: float = 15.0) -> list[Any]:
    """reply_channel_range messages up to the one with sync_complete."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in gossip(peer, deadline - time.monotonic(), until="reply_channel_range"):
            if m.name == "reply_channel_range":
                out.append(m.fields)
                if m.fields["sync_complete"]:
                    return out
    raise AssertionError(f"no complete reply_channel_range: {out}")


@dataclass
class Graph:
    node: Any
    chain_hash: bytes
    chans: list[Chan]
    now: int

    @property
    def listed(self) -> list[Chan]:
        """The channels a range query lists: those with a channel_update."""
        return [c for c in self.chans if c.updates]


@pytest.fixture(scope="module")
def graph(chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graph]:
    """Channels: 0 with both updates and both node announcements, 1 with
    node_id_2's update only, 2 with none, 3 with both; each in its own block."""
    nf = NodeFactory(tmp_path_factory.mktemp("bolt7"), chain)
    node = nf.get_node()
    gossiper = ScriptedPeer(node, seed=0x70)
    chain_hash = gossiper.chain_hash
    chans = [make_channel(node, i, chain_hash) for i in range(4)]
    chain.mine(6)
    wait_for(lambda: node.rpc.getinfo()["blockheight"] == chain.rpc.getblockcount())
    now = int(time.time()) - 1000
    for c in chans:
        gossiper.send_raw(c.announcement)
    for i, d in ((0, 0), (0, 1), (1, 1), (3, 0), (3, 1)):
        gossiper.send_raw(update(chans[i], chain_hash, d, now + 10 * i + d))
    wait_for(lambda: len(node.rpc.listchannels()["channels"]) == 5)
    for s in chans[0].secrets:
        gossiper.send_raw(signed_node_announcement(s, now, alias="c0"))
    wait_for(lambda: len([n for n in node.rpc.listnodes()["nodes"] if n.get("alias") == "c0"]) == 2)
    gossiper.close()
    yield Graph(node, chain_hash, chans, now)
    problems = nf.teardown()
    if problems:
        pytest.fail("node teardown: " + "; ".join(problems))


_seed = iter(range(0xa0, 0xf0))


def querier(g: Graph) -> ScriptedPeer:
    peer = ScriptedPeer(g.node, seed=next(_seed))
    wait_for(lambda: g.node.rpc.listpeers(peer.node_id)["peers"])
    return peer


def node_is_well(node: Any) -> None:
    assert node.rpc.getinfo()["id"] == node.node_id
    assert node.broken_lines() == []


# -- query_channel_range ---------------------------------------------------------------------
def _check(replies: list[dict], g: Graph, first: int, number: int, scids: list[int]) -> None:
    """BOLT 7's MUSTs on the replies to query_channel_range(first, number)."""
    assert all(r["chain_hash"] == g.chain_hash for r in replies)
    assert replies[0]["first_blocknum"] <= first
    assert replies[0]["first_blocknum"] + replies[0]["number_of_blocks"] > first
    for prev, cur in zip(replies, replies[1:]):
        assert cur["first_blocknum"] >= prev["first_blocknum"]
    assert [r["sync_complete"] for r in replies] == [0] * (len(replies) - 1) + [1]
    assert replies[-1]["first_blocknum"] + replies[-1]["number_of_blocks"] >= first + number
    for r in replies:
        assert r["encoded_short_ids"][:1] in (b"", b"\x00")          # encoding 0 only
    assert [s for r in replies for s in Q.decode_short_ids(r["encoded_short_ids"])] == scids


@pytest.mark.parametrize("first,number", [
    pytest.param(0, 0xFFFFFFFF, id="whole_chain"),
    pytest.param(1, 0xFFFFFFFF, id="from_1"),
    pytest.param(0x10, 0xFFFFFFFF, id="end_past_2^32"),
    pytest.param(0xFFFFFFF0, 0x100, id="near_the_u32_limit"),
])
def test_query_channel_range_covers_the_query_without_overflow(graph, first, number):
    """Replies to a query for the whole chain, or one whose end passes
    2^32: the first starts at or before `first_blocknum`, the last ends at
    or after first_blocknum + number_of_blocks (as integers, not wrapped
    to 32 bits), sync_complete only on the last, our channels with an
    update in ascending order, encoding 0."""
    peer = querier(graph)
    peer.send_raw(Q.query_channel_range(graph.chain_hash, first, number))
    replies = range_replies(peer)
    expect = sorted(c.scid for c in graph.listed if first <= c.block < first + number)
    _check(replies, graph, first, number, expect)
    assert replies[0]["first_blocknum"] == first
    assert replies[-1]["first_blocknum"] + replies[-1]["number_of_blocks"] == first + number
    assert all(r["tlvs"] == {} for r in replies)          # nothing asked, nothing added
    node_is_well(graph.node)


def test_query_channel_range_sub_range(graph):
    """Only the channels of the queried blocks (channel 3's block alone)."""
    c3 = graph.chans[3]
    peer = querier(graph)
    peer.send_raw(Q.query_channel_range(graph.chain_hash, c3.block, 1))
    replies = range_replies(peer)
    _check(replies, graph, c3.block, 1, [c3.scid])
    node_is_well(graph.node)


@pytest.mark.parametrize("flags", [1, 2, 3])
def test_query_channel_range_timestamps_and_checksums_when_asked(graph, flags):
    """query_option bit 0: timestamps_tlv, bit 1: checksums_tlv, one entry
    per short_channel_id, 0 for a direction without a channel_update; the
    checksum is the CRC32C of the update without signature and
    timestamp."""
    peer = querier(graph)
    peer.send_raw(Q.query_channel_range(graph.chain_hash, 0, 0xFFFFFFFF, flags))
    replies = range_replies(peer)
    listed = sorted(graph.listed, key=lambda c: c.scid)
    _check(replies, graph, 0, 0xFFFFFFFF, [c.scid for c in listed])
    tlvs = [r["tlvs"] for r in replies]
    assert all(("timestamps_tlv" in t) == bool(flags & 1) and ("checksums_tlv" in t) == bool(flags & 2)
               for t in tlvs)
    ts = [p for t in tlvs for p in Q.decode_timestamps_tlv(t["timestamps_tlv"])] if flags & 1 else None
    cs = [p for t in tlvs for p in Q.decode_checksums_tlv(t["checksums_tlv"])] if flags & 2 else None
    for k, c in enumerate(listed):
        for d in (0, 1):
            u = c.updates.get(d)
            if ts is not None:
                assert ts[k][d] == (struct.unpack(">I", u[2 + 64 + 32 + 8:2 + 64 + 32 + 12])[0] if u else 0)
            if cs is not None:
                assert cs[k][d] == (Q.update_checksum(u) if u else 0)
    node_is_well(graph.node)


def test_query_channel_range_for_another_chain(graph):
    """Answered all the same (BOLT 7: "MUST respond with one or more
    reply_channel_range", with the query's chain_hash): one empty reply,
    complete."""
    other = b"\x42" * 32
    peer = querier(graph)
    peer.send_raw(Q.query_channel_range(other, 0, 1000))
    [r] = range_replies(peer)
    assert r["chain_hash"] == other and (r["first_blocknum"], r["number_of_blocks"], r["sync_complete"]) == \
        (0, 1000, 1)
    assert Q.decode_short_ids(r["encoded_short_ids"]) == []
    assert peer.ping_ok()
    node_is_well(graph.node)


def test_query_channel_range_of_zero_blocks(graph):
    """number_of_blocks 0 (the sender MUST set 1 or more): answered as one
    block, so the reply still ends after the query's first block."""
    c3 = graph.chans[3]
    peer = querier(graph)
    peer.send_raw(Q.query_channel_range(graph.chain_hash, c3.block, 0))
    replies = range_replies(peer)
    _check(replies, graph, c3.block, 1, [c3.scid])
    node_is_well(graph.node)


# -- query_short_channel_ids ------------------------------------------------------------------
def _answer(peer: ScriptedPeer) -> list[Any]:
    out = [m for m in gossip(peer, 15, until="reply_short_channel_ids_end")
           if m.name in ("channel_announcement", "channel_update", "node_announcement",
                         "reply_short_channel_ids_end", "warning")]
    assert out and out[-1].name in ("reply_short_channel_ids_end", "warning"), out
    return out


def _what(m: Any) -> tuple:
    if m.name == "channel_announcement":
        return ("ann", int.from_bytes(m.fields["short_channel_id"], "big"))
    if m.name == "channel_update":
        return ("upd", int.from_bytes(m.fields["short_channel_id"], "big"), m.fields["channel_flags"] & 1)
    if m.name == "node_announcement":
        return ("node", m.fields["node_id"])
    return (m.name,)


def test_query_short_channel_ids_without_flags(graph):
    """Each known short_channel_id: its channel_announcement, the latest
    channel_update of each end, then the node_announcements; an unknown
    one is skipped; then reply_short_channel_ids_end with
    full_information 1."""
    c0, c1, c3 = graph.chans[0], graph.chans[1], graph.chans[3]
    unknown = (c3.block + 500) << 40
    peer = querier(graph)
    peer.send_raw(Q.query_short_channel_ids(graph.chain_hash, sorted([c0.scid, c1.scid, unknown])))
    got = [_what(m) for m in _answer(peer)]
    n1, n2 = (pubkey(s) for s in c0.secrets)
    assert got == [("ann", c0.scid), ("upd", c0.scid, 0), ("upd", c0.scid, 1), ("node", n1), ("node", n2),
                   ("ann", c1.scid), ("upd", c1.scid, 1), ("reply_short_channel_ids_end",)]
    assert _answer_end_fields(peer, graph, [c3.scid])["full_information"] == 1
    node_is_well(graph.node)


def _answer_end_fields(peer: ScriptedPeer, g: Graph, scids: list[int], chain_hash: bytes | None = None) -> dict:
    peer.send_raw(Q.query_short_channel_ids(chain_hash or g.chain_hash, scids))
    return _answer(peer)[-1].fields


@pytest.mark.parametrize("flag,expect", [
    (Q.QF_ANNOUNCEMENT, [("ann", 0)]),
    (Q.QF_UPDATE_1, [("upd", 0, 0)]),
    (Q.QF_UPDATE_2, [("upd", 0, 1)]),
    (Q.QF_NODE_1, [("node", 0)]),
    (Q.QF_NODE_2, [("node", 1)]),
    (Q.QF_UPDATE_1 | Q.QF_NODE_2, [("upd", 0, 0), ("node", 1)]),
    (0, []),
])
def test_query_short_channel_ids_with_query_flags(graph, flag, expect):
    """encoded_query_flags: bit 0 the channel_announcement, bits 1 and 2 the
    channel_update of node_id_1 / node_id_2, bits 3 and 4 their
    node_announcements; nothing else."""
    c0 = graph.chans[0]
    peer = querier(graph)
    peer.send_raw(Q.query_short_channel_ids(graph.chain_hash, [c0.scid], [flag]))
    ids = [pubkey(s) for s in c0.secrets]
    want = [(w[0], c0.scid, *w[2:]) if w[0] != "node" else ("node", ids[w[1]]) for w in expect]
    assert [_what(m) for m in _answer(peer)] == want + [("reply_short_channel_ids_end",)]
    node_is_well(graph.node)


def test_query_short_channel_ids_for_another_chain(graph):
    """BOLT 7: "if does not maintain up-to-date channel information for
    chain_hash: MUST set full_information to 0"."""
    peer = querier(graph)
    other = b"\x42" * 32
    f = _answer_end_fields(peer, graph, [graph.chans[0].scid], other)
    assert f == {"chain_hash": other, "full_information": 0}
    node_is_well(graph.node)


@pytest.mark.parametrize("encoded", [
    pytest.param(b"\x02" + bytes(8), id="unknown_encoding"),
    pytest.param(b"\x00" + bytes(7), id="not_whole_scids"),
])
def test_query_short_channel_ids_badly_encoded_gets_a_warning(graph, encoded):
    """MAY send a warning (we do), MAY close (we do not)."""
    peer = querier(graph)
    peer.send("query_short_channel_ids", {"chain_hash": graph.chain_hash, "encoded_short_ids": encoded,
                                          "tlvs": {}})
    assert [m.name for m in _answer(peer)][-1] == "warning"
    assert peer.ping_ok()
    node_is_well(graph.node)


def test_query_flags_not_one_per_scid_gets_a_warning(graph):
    peer = querier(graph)
    peer.send_raw(Q.query_short_channel_ids(graph.chain_hash, [graph.chans[0].scid], [1, 1]))
    assert [m.name for m in _answer(peer)][-1] == "warning"
    assert peer.ping_ok()
    node_is_well(graph.node)


# -- gossip_timestamp_filter --------------------------------------------------------------------
def test_gossip_timestamp_filter_sends_what_it_passes(graph):
    """What the filter passes: a channel_announcement only with a channel
    update (channel 2 has none) and before it, with that update's
    timestamp; node_announcements after the channels; the filter's
    bounds: first_timestamp <= timestamp < first_timestamp + range."""
    g = graph
    peer = querier(g)
    peer.send("gossip_timestamp_filter", {"chain_hash": g.chain_hash, "first_timestamp": 0,
                                          "timestamp_range": 0xFFFFFFFF})
    got = [_what(m) for m in gossip(peer, 4) if m.name in ("channel_announcement", "channel_update",
                                                            "node_announcement")]
    c0, c1, c2, c3 = g.chans
    for c in (c0, c1, c3):
        assert ("ann", c.scid) in got
        for d in c.updates:
            assert got.index(("ann", c.scid)) < got.index(("upd", c.scid, d))
    assert ("ann", c2.scid) not in got
    nodes = [i for i, w in enumerate(got) if w[0] == "node"]
    assert len(nodes) == 2 and min(nodes) > max(got.index(("ann", c0.scid)), got.index(("upd", c0.scid, 1)))
    # only channel 3's updates (now + 30, now + 31) pass [now + 30, now + 32)
    peer2 = querier(g)
    peer2.send("gossip_timestamp_filter", {"chain_hash": g.chain_hash, "first_timestamp": g.now + 30,
                                           "timestamp_range": 2})
    got2 = [_what(m) for m in gossip(peer2, 4) if m.name in ("channel_announcement", "channel_update",
                                                              "node_announcement")]
    assert got2 == [("ann", c3.scid), ("upd", c3.scid, 0), ("upd", c3.scid, 1)]
    node_is_well(g.node)


def test_relay_waits_for_the_filter_and_for_an_update(graph):
    """A peer that sent no gossip_timestamp_filter gets no gossip it did not
    ask for; one that did gets a new channel_announcement only once the
    channel has an update, immediately before it, and not before."""
    g = graph
    node = g.node
    quiet = querier(g)
    listener = querier(g)
    listener.send("gossip_timestamp_filter", {"chain_hash": g.chain_hash, "first_timestamp": g.now + 100,
                                              "timestamp_range": 0xFFFFFFFF - g.now - 100})
    gossip(listener, 2)                       # whatever passes the filter today: nothing
    new = make_channel(node, 10, g.chain_hash)
    node.chain.mine(6)
    wait_for(lambda: node.rpc.getinfo()["blockheight"] == node.chain.rpc.getblockcount())
    gossiper = ScriptedPeer(node, seed=0x71)
    gossiper.send_raw(new.announcement)
    relayed = [_what(m) for m in gossip(listener, 4) if m.name.startswith(("channel_", "node_"))]
    assert ("ann", new.scid) not in relayed       # no update yet
    gossiper.send_raw(update(new, g.chain_hash, 1, g.now + 200))
    wait_for(lambda: any(c["short_channel_id"] == f"{new.block}x{(new.scid >> 16) & 0xFFFFFF}x{new.scid & 0xFFFF}"
                         for c in node.rpc.listchannels()["channels"]))
    relayed = [_what(m) for m in gossip(listener, 5, until="channel_update") if m.name.startswith("channel_")]
    assert relayed == [("ann", new.scid), ("upd", new.scid, 1)]
    assert [m.name for m in gossip(quiet, 1) if m.name.startswith(("channel_", "node_"))] == []
    gossiper.close()
    node_is_well(node)
