"""BOLT 7 gossip queries: the extended-queries vectors (semantic level),
CRC32C checksums, reply_channel_range splitting, answering queries."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import wire
from common.scid import ShortChannelId
from gossipd import queries as Q
from gossipd.graph import U_TS
from gossipd.manager import GossipManager
from gossipd.store import GossipStore
from synthetic_graph import pubkey, signed_node_announcement
from gossipd.validate import GossipError

from test_gossip_core import CHAIN, NOW, SK, add_channel, scid, upd

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "spec/bolts/bolt07/extended-queries.json").read_text())
BOLT = wire.bolt_schema()
ENC = {"UNCOMPRESSED": Q.ENCODING_UNCOMPRESSED, "COMPRESSED_ZLIB": Q.ENCODING_ZLIB}


@pytest.mark.parametrize("index", range(len(VECTORS)))
def test_extended_queries_vectors_semantic(index):
    v = VECTORS[index]
    raw, m = bytes.fromhex(v["hex"]), v["msg"]
    name, f = BOLT.decode(raw)
    if "shortChannelIds" in m:
        expect = [ShortChannelId.parse(s).to_int() for s in m["shortChannelIds"]["array"]]
        enc = ENC[m["shortChannelIds"]["encoding"]]
        assert Q.decode_short_ids(f["encoded_short_ids"]) == expect
        assert Q.encode_short_ids(expect, enc) == f["encoded_short_ids"]       # byte exact
    if "timestamps" in m:
        expect = [(t["timestamp1"], t["timestamp2"]) for t in m["timestamps"]["timestamps"]]
        rec = f["tlvs"]["timestamps_tlv"]
        assert Q.decode_timestamps_tlv(rec) == expect
        assert Q.timestamps_tlv(expect, ENC[m["timestamps"]["encoding"]]) == rec
    if "checksums" in m:
        expect = [(c["checksum1"], c["checksum2"]) for c in m["checksums"]["checksums"]]
        assert Q.decode_checksums_tlv(f["tlvs"]["checksums_tlv"]) == expect
        assert Q.checksums_tlv(expect) == f["tlvs"]["checksums_tlv"]
    if name == "reply_channel_range":
        r = Q.parse_reply_channel_range(raw)
        assert (r.first_blocknum, r.number_of_blocks, r.sync_complete) == (
            m["firstBlockNum"], m["numberOfBlocks"], m["complete"])
        # re-encoded from the semantic values, the message is byte exact
        again = BOLT.encode("reply_channel_range", {
            "chain_hash": bytes.fromhex(m["chainHash"]), "first_blocknum": r.first_blocknum,
            "number_of_blocks": r.number_of_blocks, "sync_complete": r.sync_complete,
            "encoded_short_ids": Q.encode_short_ids(r.scids, ENC[m["shortChannelIds"]["encoding"]]),
            "tlvs": {**({"timestamps_tlv": Q.timestamps_tlv(r.timestamps, ENC[m["timestamps"]["encoding"]])}
                        if r.timestamps else {}),
                     **({"checksums_tlv": Q.checksums_tlv(r.checksums)} if r.checksums else {})}})
        assert again == raw
    if name == "query_channel_range":
        records = m["tlvStream"]["records"]
        flags = (Q.QUERY_WANT_TIMESTAMPS | Q.QUERY_WANT_CHECKSUMS) if records else None
        assert Q.query_channel_range(bytes.fromhex(m["chainHash"]), m["firstBlockNum"],
                                     m["numberOfBlocks"], flags) == raw
    if name == "query_short_channel_ids":
        records = m["tlvStream"]["records"]
        scids = [ShortChannelId.parse(s).to_int() for s in m["shortChannelIds"]["array"]]
        enc = ENC[m["shortChannelIds"]["encoding"]]
        tlvs = {}
        if records:
            assert Q.decode_query_flags_tlv(f["tlvs"]["query_flags"]) == records[0]["array"]
            tlvs["query_flags"] = Q.query_flags_tlv(records[0]["array"], ENC[records[0]["encoding"]])
        assert BOLT.encode(name, {"chain_hash": bytes.fromhex(m["chainHash"]),
                                  "encoded_short_ids": Q.encode_short_ids(scids, enc),
                                  "tlvs": tlvs}) == raw
        if not records or ENC[records[0]["encoding"]] == enc:
            flags = records[0]["array"] if records else None
            assert Q.query_short_channel_ids(bytes.fromhex(m["chainHash"]), scids, flags, enc) == raw


def test_bad_encodings_warn():
    for bad in (b"\x02" + bytes(8), b"\x00" + bytes(7), b"\x01not zlib"):
        with pytest.raises(GossipError) as e:
            Q.decode_short_ids(bad)
        assert e.value.warn
    with pytest.raises(GossipError):
        Q.decode_query_flags_tlv({"encoding_type": 0, "encoded_query_flags": b"\xfd\x00"})
    assert Q.decode_short_ids(b"") == [] and Q.decode_short_ids(b"\x01") == []


def test_crc32c_and_update_checksum():
    assert Q.crc32c(b"123456789") == 0xE3069283                      # RFC 3720 check value
    assert Q.crc32c(bytes(32)) == 0x8A9136AA                          # RFC 3720 B.4
    assert Q.crc32c(b"\xff" * 32) == 0x62A8AB43
    raw = upd(0, 1, scid(700), 0, NOW, fee_base=5)
    body = raw[66:66 + 40] + raw[66 + 44:]                           # no type, sig, timestamp
    assert Q.update_checksum(raw) == Q.crc32c(body)
    # the timestamp and signature do not change it
    assert Q.update_checksum(upd(0, 1, scid(700), 0, NOW + 9, fee_base=5)) == Q.update_checksum(raw)
    assert Q.update_checksum(upd(0, 1, scid(700), 0, NOW, fee_base=6)) != Q.update_checksum(raw)


def _graph_with_blocks(tmp_path, blocks):
    m = GossipManager(GossipStore.open(tmp_path / "gs"), CHAIN)
    for i, (block, tx) in enumerate(blocks):
        s = scid(block, tx)
        a, b = i % 7, i % 7 + 1
        add_channel(m, a, b, s)
        m.handle_channel_update(upd(a, b, s, 0, NOW + i))
        if i % 2:
            m.handle_channel_update(upd(a, b, s, 1, NOW + 100 + i))
    return m


def _check_replies(replies, first, number, expect_scids):
    """BOLT 7's requirements on the replies to query_channel_range(first,
    number), plus ours: no overlap but for a block split over replies."""
    parsed = [Q.parse_reply_channel_range(r) for r in replies]
    assert all(BOLT.decode(r).fields["chain_hash"] == CHAIN for r in replies)
    assert all(len(r) <= Q.MAX_MESSAGE for r in replies)
    assert parsed[0].first_blocknum <= first < parsed[0].first_blocknum + parsed[0].number_of_blocks
    for prev, cur in zip(parsed, parsed[1:]):
        assert cur.first_blocknum >= prev.first_blocknum
        prev_end = prev.first_blocknum + prev.number_of_blocks
        if cur.first_blocknum < prev_end:
            # overlap only where one block is split: both hold channels of it
            assert cur.first_blocknum == prev_end - 1
            assert prev.scids[-1] >> 40 == cur.scids[0] >> 40 == cur.first_blocknum
        else:
            assert cur.first_blocknum == prev_end                                    # contiguous
    assert parsed[-1].first_blocknum + parsed[-1].number_of_blocks == first + max(1, number)
    assert [p.sync_complete for p in parsed] == [0] * (len(parsed) - 1) + [1]
    for p in parsed:
        assert 1 <= p.number_of_blocks <= 0xFFFFFFFF
        assert all(p.first_blocknum <= s >> 40 < p.first_blocknum + p.number_of_blocks
                   for s in p.scids)
    assert [s for p in parsed for s in p.scids] == expect_scids
    return parsed


def test_reply_channel_range_splitting(tmp_path):
    blocks = [(100, 1), (100, 2), (100, 3), (101, 1), (105, 1), (105, 2), (110, 1), (200, 1)]
    m = _graph_with_blocks(tmp_path, blocks)
    g = m.graph
    everything = sorted(scid(b, t) for b, t in blocks)
    for limit in (1, 2, 3, 4, 100):
        replies = Q.reply_channel_range(g, CHAIN, 50, 1000, 0, max_per_reply=limit)
        parsed = _check_replies(replies, 50, 1000, everything)
        assert all(len(p.scids) <= limit for p in parsed)
    # split at block boundaries: block 100's three channels stay together
    parsed = _check_replies(Q.reply_channel_range(g, CHAIN, 50, 1000, 0, max_per_reply=4), 50, 1000, everything)
    assert [(p.first_blocknum, p.number_of_blocks, len(p.scids)) for p in parsed] == \
        [(50, 55, 4), (105, 945, 4)]
    # a block with more channels than a reply holds is split, the only overlap
    parsed = _check_replies(Q.reply_channel_range(g, CHAIN, 50, 1000, 0, max_per_reply=2), 50, 1000, everything)
    assert [(p.first_blocknum, p.number_of_blocks) for p in parsed[:3]] == [(50, 51), (100, 5), (105, 5)]
    # sub-range: only the channels inside it
    replies = Q.reply_channel_range(g, CHAIN, 101, 5, 0, max_per_reply=1)
    _check_replies(replies, 101, 5, [scid(101, 1), scid(105, 1), scid(105, 2)])
    # nothing in range: one empty, complete reply covering it
    [empty] = Q.reply_channel_range(g, CHAIN, 300, 10, 0)
    r = Q.parse_reply_channel_range(empty)
    assert (r.first_blocknum, r.number_of_blocks, r.sync_complete, r.scids) == (300, 10, 1, [])
    # timestamps and checksums
    replies = Q.reply_channel_range(g, CHAIN, 0, 0xFFFFFFFF, 3, get_message=m.message,
                                    max_per_reply=3)
    parsed = _check_replies(replies, 0, 0xFFFFFFFF, everything)
    for p in parsed:
        for s, (t1, t2), (c1, c2) in zip(p.scids, p.timestamps, p.checksums):
            for d, t, c in ((0, t1, c1), (1, t2, c2)):
                half = g.half(s, d)
                if half is None:
                    assert t == 0 and c == 0
                else:
                    assert t == half[U_TS]
                    assert c == Q.update_checksum(m.message(half[-1]))
    # without a store the checksums are rebuilt from the fields: the same values
    no_store = Q.reply_channel_range(g, CHAIN, 0, 0xFFFFFFFF, 2, max_per_reply=3)
    assert [Q.parse_reply_channel_range(r).checksums for r in no_store] == [p.checksums for p in parsed]
    # nothing asked, nothing added
    assert all(Q.parse_reply_channel_range(r).timestamps is None and Q.parse_reply_channel_range(r).checksums
               is None for r in Q.reply_channel_range(g, CHAIN, 0, 0xFFFFFFFF, 0, max_per_reply=3))


@pytest.mark.parametrize("first,number", [(0, 0xFFFFFFFF), (1, 0xFFFFFFFF), (101, 0xFFFFFFFF),
                                          (0xFFFFFFFF, 0xFFFFFFFF), (150, 0), (0xFFFFFFF0, 0x20)])
@pytest.mark.parametrize("limit", [None, 1, 3])
def test_reply_channel_range_end_without_overflow(tmp_path, first, number, limit):
    """The last reply ends at first + number as integers, never wrapped to
    32 bits: a query for the whole chain (0, 0xFFFFFFFF) used to get
    replies whose end was capped at 2^32, short of what was asked when the
    query did not start at 0; number 0 is answered as 1 block."""
    blocks = [(100, 1), (100, 2), (101, 1), (150, 1), (150, 2)]
    m = _graph_with_blocks(tmp_path, blocks)
    expect = sorted(scid(b, t) for b, t in blocks if first <= b < first + max(1, number))
    replies = Q.reply_channel_range(m.graph, CHAIN, first, number, 0, max_per_reply=limit)
    parsed = _check_replies(replies, first, number, expect)
    assert parsed[0].first_blocknum == first


def test_reply_channel_range_skips_private_spent_and_update_less_channels(tmp_path):
    """As Core Lightning: only channels with a channel_update (and public,
    not spent) are listed."""
    m = GossipManager(GossipStore.open(tmp_path / "gs"), CHAIN)
    add_channel(m, 0, 1, scid(100))
    add_channel(m, 1, 2, scid(101))
    m.handle_channel_update(upd(1, 2, scid(101), 0, NOW))
    [r] = Q.reply_channel_range(m.graph, CHAIN, 0, 1000)
    assert Q.parse_reply_channel_range(r).scids == [scid(101)]


def test_reply_channel_range_for_another_chain_is_one_empty_complete_reply(tmp_path):
    m = _graph_with_blocks(tmp_path, [(100, 1)])
    other = b"\x42" * 32
    [r] = Q.reply_channel_range(m.graph, other, 10, 500, 3, known_chain=False)
    f = BOLT.decode(r).fields
    assert f["chain_hash"] == other
    assert (f["first_blocknum"], f["number_of_blocks"], f["sync_complete"]) == (10, 500, 1)
    assert Q.decode_short_ids(f["encoded_short_ids"]) == []


def test_reply_channel_range_default_fits_a_message(tmp_path):
    m = _graph_with_blocks(tmp_path, [(100, i + 1) for i in range(5)])
    replies = Q.reply_channel_range(m.graph, CHAIN, 0, 1000, 3, get_message=m.message)
    assert len(replies) == 1 and len(replies[0]) < Q.MAX_MESSAGE
    for flags, per_id in ((0, 8), (1, 16), (2, 16), (3, 24)):
        big = Q.max_scids_per_reply(flags)
        # type, chain_hash, first, number, complete, len, encoding, the ids; the TLVs' headers and bytes
        assert 2 + 32 + 4 + 4 + 1 + 2 + 1 + 8 * big + (per_id - 8) * big + 2 * 10 <= Q.MAX_MESSAGE


def test_answer_query_short_channel_ids(tmp_path):
    m = _graph_with_blocks(tmp_path, [(100, 1), (101, 1), (102, 1)])
    for i in range(4):
        m.handle_node_announcement(signed_node_announcement(SK[i], NOW, f"n{i}"))
    g = m.graph
    s0, s1 = scid(100, 1), scid(101, 1)
    query = Q.query_short_channel_ids(CHAIN, [s0, s1, scid(999)])
    out = Q.answer_query_short_channel_ids(g, CHAIN, query, m.message)
    names = [BOLT.decode(x).name for x in out]
    # s0 (nodes 0-1): ann, update dir 0, node 0, node 1; s1 (nodes 1-2): ann, 2 updates, node 2
    assert names == ["channel_announcement", "channel_update", "node_announcement",
                     "node_announcement", "channel_announcement", "channel_update",
                     "channel_update", "node_announcement", "reply_short_channel_ids_end"]
    assert BOLT.decode(out[-1]).fields["full_information"] == 1
    # with flags: only the update for node 2 of s1
    query = Q.query_short_channel_ids(CHAIN, [s0, s1], [0, Q.QF_UPDATE_2], Q.ENCODING_ZLIB)
    out = Q.answer_query_short_channel_ids(g, CHAIN, query, m.message)
    assert [BOLT.decode(x).name for x in out] == ["channel_update", "reply_short_channel_ids_end"]
    assert BOLT.decode(out[0]).fields["channel_flags"] & 1 == 1
    # wrong number of flags
    with pytest.raises(GossipError) as e:
        Q.answer_query_short_channel_ids(g, CHAIN, Q.query_short_channel_ids(CHAIN, [s0], [1, 1]),
                                         m.message)
    assert e.value.warn
    # another chain: nothing, full_information 0
    other = bytes(32)
    out = Q.answer_query_short_channel_ids(g, CHAIN, Q.query_short_channel_ids(other, [s0]),
                                           m.message)
    assert len(out) == 1 and BOLT.decode(out[0]).fields == {"chain_hash": other,
                                                            "full_information": 0}


def test_gossip_timestamp_filter(tmp_path):
    m = _graph_with_blocks(tmp_path, [(100, 1), (101, 1), (102, 1)])
    m.handle_node_announcement(signed_node_announcement(SK[0], NOW + 50, "zero"))
    raw = Q.gossip_timestamp_filter(CHAIN, NOW + 1, 100)
    flt = Q.TimestampFilter.from_message(raw, CHAIN)
    assert flt == (NOW + 1, 100)
    assert Q.TimestampFilter.from_message(raw, bytes(32)) is None
    out = [BOLT.decode(x) for x in Q.filtered_gossip(m.graph, flt, m.message)]
    # channel 0 has updates at NOW (out) only; channel 1: NOW+1 and NOW+101 (out); channel 2: NOW+2
    got = [(x.name, x.fields.get("timestamp"),
            struct.unpack(">Q", x.fields["short_channel_id"])[0] >> 40
            if "short_channel_id" in x.fields else None) for x in out]
    assert got == [("channel_announcement", None, 101), ("channel_update", NOW + 1, 101),
                   ("channel_announcement", None, 102), ("channel_update", NOW + 2, 102),
                   ("node_announcement", NOW + 50, None)]
    assert out[-1].fields["node_id"] == pubkey(SK[0])


def test_node_announcement_with_two_dns_hostnames_is_used_but_never_forwarded(tmp_path):
    """BOLT 7: "if more than one `type 5` address is announced: SHOULD
    ignore the additional data; MUST not forward the node_announcement":
    the graph keeps it (its first hostname), query answers and timestamp
    filters leave it out."""
    m = _graph_with_blocks(tmp_path, [(100, 1)])
    two = [{"type": "dns", "address": "a.example", "port": 9735},
           {"type": "dns", "address": "b.example", "port": 9735}]
    m.handle_node_announcement(signed_node_announcement(SK[0], NOW + 5, "two", addresses=two))
    m.handle_node_announcement(signed_node_announcement(SK[1], NOW + 5, "one", addresses=two[:1]))
    j = m.graph.node_view(pubkey(SK[0]))["announcement"]
    assert j["alias"] == "two" and [a["address"] for a in j["addresses"]] == ["a.example"]
    out = [BOLT.decode(x) for x in Q.filtered_gossip(m.graph, Q.TimestampFilter(0, 0xFFFFFFFF), m.message)]
    assert [x.fields["node_id"] for x in out if x.name == "node_announcement"] == [pubkey(SK[1])]
    query = Q.query_short_channel_ids(CHAIN, [scid(100, 1)])
    out = [BOLT.decode(x) for x in Q.answer_query_short_channel_ids(m.graph, CHAIN, query, m.message)]
    assert [x.fields["node_id"] for x in out if x.name == "node_announcement"] == [pubkey(SK[1])]
