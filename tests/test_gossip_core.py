"""gossipd's pure core: validation, graph rules, gossip store, manager."""
from __future__ import annotations

import os

import pytest

import wire
from bitcoin.networks import NETWORKS
from gossipd import graph as G
from gossipd.manager import GossipManager
from gossipd.store import (
    FLAG_DELETED, FLAG_PRIVATE, HEADER_LEN, GossipStore, StoreError, channel_amount_msg,
)
from synthetic_graph import (
    build_store, pubkey, sign, signed_channel_announcement, signed_channel_update,
    signed_node_announcement,
)
from gossipd.validate import (
    GossipError, SigVerifier, check_channel_announcement, check_channel_update, check_funding,
    check_node_announcement, decode_addresses, encode_address, hash256,
    parse_channel_announcement, parse_channel_update, parse_node_announcement,
)

CHAIN = NETWORKS["regtest"].chain_hash
OTHER_CHAIN = NETWORKS["bitcoin"].chain_hash
SK = [bytes([i + 1]) * 32 for i in range(8)]            # node secrets
BK = [bytes([0x40 + i]) * 32 for i in range(8)]         # funding secrets
NOW = 1_700_000_000


def scid(block, tx=1, out=0):
    return (block << 40) | (tx << 16) | out


def ann(a, b, s, chain=CHAIN, features=b""):
    return signed_channel_announcement(chain, s, (SK[a], SK[b]), (BK[a], BK[b]), features)


def signer(a, b, direction):
    """Secret of the node updating direction ``direction`` of channel a-b."""
    lo, hi = sorted((a, b), key=lambda i: pubkey(SK[i]))
    return SK[lo] if direction == 0 else SK[hi]


def upd(a, b, s, direction, ts=NOW, **kw):
    return signed_channel_update(signer(a, b, direction), CHAIN, s, ts, direction, **kw)


def script_of(raw):
    return parse_channel_announcement(raw).funding_script()


# --- validation ------------------------------------------------------------------

def test_parsers_agree_with_the_wire_codec():
    schema = wire.bolt_schema()
    raw = ann(0, 1, scid(700), features=b"\x02")
    a = check_channel_announcement(raw, CHAIN)
    _, f = schema.decode(raw)
    assert (a.scid.to_bytes(8, "big"), a.node_id_1, a.node_id_2, a.bitcoin_key_1, a.bitcoin_key_2,
            a.features, a.chain_hash) == (f["short_channel_id"], f["node_id_1"], f["node_id_2"],
                                          f["bitcoin_key_1"], f["bitcoin_key_2"], f["features"],
                                          f["chain_hash"])
    assert a.node_id_1 < a.node_id_2
    raw = upd(0, 1, scid(700), 1, cltv=144, htlc_min=7, fee_base=3, fee_prop=11, htlc_max=9999,
              disabled=True)
    u = parse_channel_update(raw)
    _, f = schema.decode(raw)
    assert (u.timestamp, u.message_flags, u.channel_flags, u.cltv_expiry_delta, u.htlc_minimum_msat,
            u.fee_base_msat, u.fee_proportional_millionths, u.htlc_maximum_msat) == (
        f["timestamp"], f["message_flags"], f["channel_flags"], f["cltv_expiry_delta"],
        f["htlc_minimum_msat"], f["fee_base_msat"], f["fee_proportional_millionths"],
        f["htlc_maximum_msat"])
    assert u.direction == 1 and u.disabled
    addrs = [{"type": "ipv4", "address": "10.1.2.3", "port": 9735},
             {"type": "ipv6", "address": "2001:db8::1", "port": 9736}]
    raw = signed_node_announcement(SK[2], NOW, "alice", b"\x01\x02\x03", addrs, b"\x80\x00")
    n = check_node_announcement(raw)
    _, f = schema.decode(raw)
    assert (n.node_id, n.timestamp, n.alias, n.rgb_color, n.features, n.addresses) == (
        f["node_id"], f["timestamp"], f["alias"], f["rgb_color"], f["features"], f["addresses"])
    assert decode_addresses(n.addresses) == addrs


@pytest.mark.parametrize("which", range(4))
def test_each_forged_channel_announcement_signature_is_rejected(which):
    raw = bytearray(ann(0, 1, scid(700)))
    names = ["node_signature_1", "node_signature_2", "bitcoin_signature_1", "bitcoin_signature_2"]
    # a valid signature, but of another message: the right form, the wrong content
    raw[2 + 64 * which:2 + 64 * (which + 1)] = sign(SK[5], hash256(b"something else"))
    with pytest.raises(GossipError) as e:
        check_channel_announcement(bytes(raw), CHAIN)
    assert e.value.warn and names[which] in e.value.reason


def test_signature_over_a_modified_message_is_rejected():
    raw = bytearray(ann(0, 1, scid(700)))
    raw[-1] ^= 1                                     # bitcoin_key_2 changed after signing
    with pytest.raises(GossipError) as e:
        check_channel_announcement(bytes(raw), CHAIN)
    assert e.value.warn


def test_wrong_chain_is_ignored_without_warning():
    with pytest.raises(GossipError) as e:
        check_channel_announcement(ann(0, 1, scid(700), chain=OTHER_CHAIN), CHAIN)
    assert not e.value.warn and "unknown chain" in e.value.reason
    raw = signed_channel_update(SK[0], OTHER_CHAIN, scid(700), NOW, 0)
    with pytest.raises(GossipError) as e:
        check_channel_update(raw, CHAIN, pubkey(SK[0]))
    assert not e.value.warn


def test_channel_update_and_node_announcement_signatures():
    s = scid(700)
    a = parse_channel_announcement(ann(0, 1, s))
    raw = upd(0, 1, s, 0)
    assert check_channel_update(raw, CHAIN, a.node_id_1).scid == s
    with pytest.raises(GossipError) as e:               # signed by the other end
        check_channel_update(raw, CHAIN, a.node_id_2)
    assert e.value.warn
    na = bytearray(signed_node_announcement(SK[3], NOW, "x"))
    na[-1] ^= 1                                          # alias byte changed
    with pytest.raises(GossipError) as e:
        check_node_announcement(bytes(na))
    assert e.value.warn
    bad_id = bytearray(signed_node_announcement(SK[3], NOW, "x"))
    p = 68 + 0 + 4                                       # flen 0: node_id after timestamp
    bad_id[p:p + 33] = b"\x05" + bytes(32)
    with pytest.raises(GossipError) as e:
        check_node_announcement(bytes(bad_id))
    assert e.value.warn and "invalid node_id" in e.value.reason


def test_high_s_signature_rejected():
    s = scid(700)
    raw = bytearray(upd(0, 1, s, 0))
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high = n - int.from_bytes(raw[34:66], "big")
    raw[34:66] = high.to_bytes(32, "big")
    node = parse_channel_announcement(ann(0, 1, s)).node_id_1
    with pytest.raises(GossipError):
        check_channel_update(bytes(raw), CHAIN, node)


def test_truncated_messages_warn():
    for raw, parse in ((ann(0, 1, scid(700)), parse_channel_announcement),
                       (upd(0, 1, scid(700), 0), parse_channel_update),
                       (signed_node_announcement(SK[0], NOW, "a"), parse_node_announcement)):
        for cut in (1, 10, len(raw) // 2, len(raw) - 1):
            with pytest.raises(GossipError) as e:
                parse(raw[:cut])
            assert e.value.warn


def test_addresses():
    entries = [{"type": "ipv4", "address": "1.2.3.4", "port": 9735},
               {"type": "ipv6", "address": "::1", "port": 1},
               {"type": "torv3", "address": "a" * 56 + ".onion", "port": 9735},
               {"type": "dns", "address": "node.example.com", "port": 9735}]
    raw = b"".join(encode_address(e) for e in entries)
    assert decode_addresses(raw) == entries
    port0 = encode_address({"type": "ipv4", "address": "1.2.3.4", "port": 0})
    assert decode_addresses(port0 + raw[:7]) == entries[:1]       # port 0 ignored
    assert decode_addresses(raw[:7] + b"\x09\x01\x02") == entries[:1]   # unknown type: stop
    second_dns = encode_address({"type": "dns", "address": "b.example", "port": 1})
    assert decode_addresses(raw + second_dns) == entries          # second dns ignored
    short = signed_node_announcement(SK[1], NOW, "a", addresses=entries[:1])
    cut = bytearray(short)                                        # addrlen 7 -> 6: too short
    cut[-9:-7] = (6).to_bytes(2, "big")
    with pytest.raises(GossipError) as e:
        parse_node_announcement(bytes(cut[:-1]))
    assert e.value.warn


def test_funding_output_check():
    a = parse_channel_announcement(ann(0, 1, scid(700)))
    check_funding(a, a.funding_script())
    for script, spent in ((None, False), (a.funding_script(), True), (b"\x00\x20" + bytes(32), False)):
        with pytest.raises(GossipError) as e:
            check_funding(a, script, spent)
        assert not e.value.warn


def test_batch_verifier_threads_agree():
    v = SigVerifier()
    jobs = []
    for i in range(200):
        d = hash256(bytes([i]))
        sig = sign(SK[i % 8], d)
        if i % 7 == 0:
            d = hash256(b"x" + d)
        jobs.append((pubkey(SK[i % 8]), sig, d, i % 2 == 0))
    expect = [i % 7 != 0 for i in range(200)]
    assert v.verify_many(jobs) == expect
    assert v.verify_many(jobs, threads=3) == expect
    assert v.verify_many([(b"\x02" + bytes(32), bytes(64), bytes(32), True)]) == [False]


# --- manager and graph rules ------------------------------------------------------

def new_manager(tmp_path=None):
    store = GossipStore.open(tmp_path / "gossip_store") if tmp_path else None
    return GossipManager(store, CHAIN)


def add_channel(m, a, b, s, cap=1_000_000):
    raw = ann(a, b, s)
    assert m.handle_channel_announcement(raw, NOW) == s
    assert m.handle_txout(s, cap, script_of(raw))


def test_channel_lifecycle_and_timestamps(tmp_path):
    m = new_manager(tmp_path)
    s = scid(700)
    add_channel(m, 0, 1, s)
    assert m.handle_channel_announcement(ann(0, 1, s), NOW) is None     # duplicate
    assert m.graph.capacity_sat(s) == 1_000_000
    assert m.handle_channel_update(upd(0, 1, s, 0, NOW)) == G.ACCEPTED
    assert m.handle_channel_update(upd(0, 1, s, 0, NOW)) == G.OLD           # equal
    assert m.handle_channel_update(upd(0, 1, s, 0, NOW - 5)) == G.OLD       # older
    assert m.handle_channel_update(upd(0, 1, s, 0, NOW + 5, fee_base=7)) == G.ACCEPTED
    assert m.graph.half(s, 0)[G.U_BASE] == 7
    assert m.graph.half(s, 1) is None
    assert m.handle_channel_update(upd(0, 1, s, 1, NOW + 90_000), now=NOW) == "future"
    assert m.handle_channel_update(upd(0, 1, s, 1, NOW + 80_000), now=NOW) == G.ACCEPTED
    assert not m.handle_txout(scid(999), 1000, b"")                     # nothing pending
    # the superseded update is deleted in the store
    live = [r.msg for r in GossipStore.open(m.store.path).records()]
    assert upd(0, 1, s, 0, NOW) not in live and upd(0, 1, s, 0, NOW + 5, fee_base=7) in live


def test_funding_mismatch_rejects_the_announcement():
    m = new_manager()
    s = scid(700)
    assert m.handle_channel_announcement(ann(0, 1, s), NOW) == s
    assert not m.handle_txout(s, 1000, b"\x00\x20" + bytes(32))
    assert not m.graph.has_channel(s)


def test_update_before_announcement_is_kept_pending():
    m = new_manager()
    s = scid(700)
    assert m.handle_channel_update(upd(0, 1, s, 1, NOW)) == G.UNKNOWN
    assert m.handle_channel_update(upd(0, 1, s, 1, NOW + 1, fee_base=9)) == G.UNKNOWN
    forged = signed_channel_update(SK[7], CHAIN, s, NOW + 2, 0)     # wrong signer
    assert m.handle_channel_update(forged) == G.UNKNOWN
    add_channel(m, 0, 1, s)
    assert m.graph.half(s, 1)[G.U_BASE] == 9                        # the newest pending one
    assert m.graph.half(s, 0) is None                               # the forgery was dropped


def test_node_announcement_rules():
    m = new_manager()
    lonely = signed_node_announcement(SK[5], NOW, "lonely")
    assert m.handle_node_announcement(lonely) == G.UNKNOWN
    assert not m.graph.has_node(pubkey(SK[5]))
    s = scid(700)
    raw = ann(0, 1, s)
    m.handle_channel_announcement(raw, NOW)
    # while the channel waits for its txout the announcement is kept
    assert m.handle_node_announcement(signed_node_announcement(SK[0], NOW, "zero")) == G.UNKNOWN
    m.handle_txout(s, 1000, script_of(raw))
    assert m.graph.node_view(pubkey(SK[0]))["announcement"]["alias"] == "zero"
    assert m.handle_node_announcement(signed_node_announcement(SK[0], NOW, "old")) == G.OLD
    assert m.handle_node_announcement(signed_node_announcement(SK[0], NOW - 1, "old")) == G.OLD
    assert m.handle_node_announcement(signed_node_announcement(SK[0], NOW + 1, "new")) == G.ACCEPTED
    info = m.graph.node_view(pubkey(SK[0]))["announcement"]
    assert info["alias"] == "new" and info["last_timestamp"] == NOW + 1


def test_prune_stale_channels():
    m = new_manager()
    day = 86400
    for i, (t0, t1) in enumerate([(NOW, NOW), (NOW - 15 * day, NOW), (NOW - 15 * day, NOW - 16 * day)]):
        s = scid(700 + i)
        add_channel(m, i, i + 1, s)
        m.handle_channel_update(upd(i, i + 1, s, 0, t0))
        m.handle_channel_update(upd(i, i + 1, s, 1, t1))
    both = m.graph.prune(NOW + 60, require_both_stale=True)
    assert both == [scid(702)]
    assert sorted(m.prune(NOW + 60)) == [scid(701)]                  # oldest side stale
    assert m.graph.scids() == [scid(700)]
    assert m.graph.node_count == 2                                   # nodes 0 and 1 only


def test_spent_channel_is_forgotten_after_72_blocks(tmp_path):
    m = new_manager(tmp_path)
    s = scid(700)
    add_channel(m, 0, 1, s)
    m.handle_node_announcement(signed_node_announcement(SK[0], NOW, "zero"))
    m.handle_channel_update(upd(0, 1, s, 0, NOW))
    assert m.funding_spent(s, 800)
    assert m.handle_channel_update(upd(0, 1, s, 0, NOW + 1)) == G.SPENT
    assert m.handle_channel_update(upd(0, 1, s, 0, NOW + 2, disabled=True)) == G.ACCEPTED
    assert m.new_blockheight(871) == []
    assert m.new_blockheight(872) == [s]
    assert m.graph.channel_count == 0 and m.graph.node_count == 0
    assert list(GossipStore.open(m.store.path).records()) == []     # everything deleted


def test_unknown_even_feature_channel_is_kept_but_not_routed():
    m = new_manager()
    s = scid(700)
    raw = ann(0, 1, s, features=b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    m.handle_channel_announcement(raw, NOW)
    m.handle_txout(s, 1000, script_of(raw))
    assert m.graph._cflag[m.graph._cidx[s]] & G.CF_UNROUTABLE


# --- gossip store ------------------------------------------------------------------

def test_store_round_trip_flags_and_compaction(tmp_path):
    path = tmp_path / "gs"
    with GossipStore.open(path) as st:
        offs = [st.append(b"\x01\x02" + bytes([i]) * i, NOW + i) for i in range(10)]
        priv = st.append(b"\x01\x02private", NOW, FLAG_PRIVATE)
        st.delete(offs[3])
        st.delete(offs[3])                                   # idempotent
    st = GossipStore.open(path)
    assert st.report.records == 11 and st.report.deleted == 1 and not st.report.truncated_bytes
    recs = list(st.records())
    assert [r.offset for r in recs] == offs[:3] + offs[4:] + [priv]
    assert recs[0].timestamp == NOW and recs[-1].flags == FLAG_PRIVATE
    assert st.read(offs[5]) == b"\x01\x02" + bytes([5]) * 5
    size = os.path.getsize(path)
    mapping = st.compact()
    assert os.path.getsize(path) == size - (HEADER_LEN + 5)
    assert offs[3] not in mapping and st.read(mapping[offs[5]]) == b"\x01\x02" + bytes([5]) * 5
    st.append(b"\x01\x02after", NOW)
    st.close()
    again = GossipStore.open(path)
    assert [r.msg for r in again.records()][-1] == b"\x01\x02after"
    assert again.report.deleted == 0


@pytest.mark.parametrize("tail", [3, HEADER_LEN, HEADER_LEN + 4])
def test_store_torn_write_is_truncated(tmp_path, tail):
    path = tmp_path / "gs"
    with GossipStore.open(path) as st:
        st.append(b"\x01\x02good", NOW)
        good_end = st.end
    full = bytes.fromhex("0000") + (10).to_bytes(2, "big") + bytes(8) + b"0123456789"
    with open(path, "ab") as f:
        f.write(full[:tail])
    st = GossipStore.open(path)
    assert st.report.truncated_bytes == tail and "torn" in st.report.reason
    assert os.path.getsize(path) == good_end
    assert [r.msg for r in st.records()] == [b"\x01\x02good"]
    st.append(b"\x01\x02next", NOW)
    st.close()
    assert [r.msg for r in GossipStore.open(path).records()] == [b"\x01\x02good", b"\x01\x02next"]


def test_store_bad_crc_is_truncated(tmp_path):
    path = tmp_path / "gs"
    with GossipStore.open(path) as st:
        a = st.append(b"\x01\x02one", NOW)
        b = st.append(b"\x01\x02two", NOW)
        st.append(b"\x01\x02three", NOW)
    data = bytearray(path.read_bytes())
    data[b + HEADER_LEN + 2] ^= 0xFF                      # corrupt "two"
    path.write_bytes(bytes(data))
    st = GossipStore.open(path)
    assert "bad checksum" in st.report.reason and os.path.getsize(path) == b
    assert [r.offset for r in st.records()] == [a]


def test_store_version_mismatch(tmp_path):
    path = tmp_path / "gs"
    path.write_bytes(b"\x7f")
    with pytest.raises(StoreError):
        GossipStore.open(path)


def test_manager_load_rebuilds_the_same_graph_and_drops_forgeries(tmp_path):
    m = new_manager(tmp_path)
    for i in range(4):
        add_channel(m, i, i + 1, scid(700 + i), cap=10_000 * (i + 1))
        m.handle_channel_update(upd(i, i + 1, scid(700 + i), 0, NOW, fee_base=i))
        m.handle_channel_update(upd(i, i + 1, scid(700 + i), 1, NOW, fee_prop=i))
        m.handle_node_announcement(signed_node_announcement(SK[i], NOW, f"n{i}"))
    m.handle_channel_update(upd(0, 1, scid(700), 0, NOW + 10, fee_base=77))
    m.add_private_channel(scid(900), pubkey(SK[0]), pubkey(SK[6]), 5000, NOW)
    m.handle_channel_update(signed_channel_update(
        signer(0, 6, 0 if pubkey(SK[0]) < pubkey(SK[6]) else 1), CHAIN, scid(900), NOW,
        0 if pubkey(SK[0]) < pubkey(SK[6]) else 1))
    # a forged update written straight into the store (valid CRC, bad signature)
    forged = bytearray(upd(1, 2, scid(701), 0, NOW + 20))
    forged[-1] ^= 1
    m.store.append(bytes(forged), NOW + 20)
    # an announcement without its amount record
    m.store.append(ann(5, 6, scid(950)), NOW)
    m.store.close()

    for threads in (1, 2):
        st = GossipStore.open(tmp_path / "gossip_store")
        m2 = GossipManager(st, CHAIN)
        stats = m2.load(verify=True, threads=threads, chunk=3)
        if threads == 1:
            assert stats.rejected == 2
        assert sorted(m2.graph.scids()) == sorted(m.graph.scids())
        for s in m.graph.scids():
            assert m2.graph.channel_views(s) == m.graph.channel_views(s)
        for n in m.graph.node_ids():
            assert m2.graph.node_view(n) == m.graph.node_view(n)
        assert m2.graph.half(scid(700), 0)[G.U_BASE] == 77
        assert m2.graph.is_private(scid(900))
        st.close()
    flags = [r.flags for r in GossipStore.open(tmp_path / "gossip_store").records()]
    assert FLAG_PRIVATE in flags and not any(f & FLAG_DELETED for f in flags)


def test_manager_compaction_keeps_offsets_valid(tmp_path):
    m = new_manager(tmp_path)
    s = scid(700)
    add_channel(m, 0, 1, s)
    for t in range(20):
        m.handle_channel_update(upd(0, 1, s, 0, NOW + t))
    m.funding_spent(s, 800)
    before = m.store.end
    assert m.compact_if_needed(force=True)
    assert m.store.end < before
    assert m.message(m.graph.half(s, 0)[G.U_OFF]) == upd(0, 1, s, 0, NOW + 19)
    assert m.message(m.graph.ann_offset(s)) == ann(0, 1, s)
    # forgetting the channel after compaction deletes exactly its records
    assert m.new_blockheight(872) == [s]
    assert list(GossipStore.open(m.store.path).records()) == []


def test_synthetic_store_loads_fully(tmp_path):
    info = build_store(tmp_path / "syn", nodes=60, channels=150, seed=3)
    assert build_store(tmp_path / "syn", nodes=60, channels=150, seed=3) == info   # cached
    st = GossipStore.open(tmp_path / "syn")
    m = GossipManager(st, bytes.fromhex(info.chain_hash_hex))
    stats = m.load(verify=True)
    assert stats == (150, 300, 60, 0)
    assert m.graph.node_count == 60
    assert all(m.graph.capacity_sat(s) >= 20_000 for s in m.graph.scids())
    assert st.report.records == 150 * 4 + 60
    # the store's amount record follows each announcement
    rec = st.read_record(m.graph.ann_offset(m.graph.scids()[0]))
    nxt = st.read(rec.offset + HEADER_LEN + len(rec.msg))
    assert nxt == channel_amount_msg(m.graph.capacity_sat(m.graph.scids()[0]))
