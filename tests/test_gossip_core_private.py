"""gossipd/private.py: our channels as gossip between the two peers alone
(BOLT 7 channel_update of an unannounced channel), driven directly."""
from __future__ import annotations

import struct

from gossipd.private import DONT_FORWARD, MUST_BE_ONE, PrivateChannel, PrivateChannels, same_update, unsigned_update
from gossipd.validate import parse_channel_update

US, PEER, OTHER = b"\x02" + b"\x01" * 32, b"\x03" + b"\x02" * 32, b"\x02" + b"\x03" * 32
CHAIN = bytes(range(32))
POLICY = {"cltv_delta": 34, "htlc_minimum_msat": 1, "fee_base_msat": 1000, "fee_ppm": 10,
          "htlc_maximum_msat": 990_000_000}
SCID, LOCAL, REMOTE = 0x6500010001, 0x1122334455667788, 0x99AABBCCDDEEFF00


def chan(**kw) -> PrivateChannel:
    d = dict(peer_id=PEER, scid=SCID, local_alias=LOCAL, remote_alias=REMOTE, announced=False, enabled=True,
             policy=POLICY)
    d.update(kw)
    return PrivateChannel(**d)


def test_unsigned_update_fields():
    raw = unsigned_update(CHAIN, SCID, 1234, MUST_BE_ONE | DONT_FORWARD, 1, POLICY)
    assert raw[:2] == struct.pack(">H", 258) and raw[2:66] == bytes(64)
    u = parse_channel_update(raw)
    assert (u.chain_hash, u.scid, u.timestamp, u.message_flags, u.channel_flags) == (CHAIN, SCID, 1234, 3, 1)
    assert (u.cltv_expiry_delta, u.htlc_minimum_msat, u.fee_base_msat, u.fee_proportional_millionths,
            u.htlc_maximum_msat) == (34, 1, 1000, 10, 990_000_000)
    # equal but for the timestamp (and signature)
    assert same_update(raw, unsigned_update(CHAIN, SCID, 9999, 3, 1, POLICY))
    assert not same_update(raw, unsigned_update(CHAIN, SCID, 1234, 3, 1, dict(POLICY, fee_ppm=11)))
    assert not same_update(raw, unsigned_update(CHAIN, SCID + 1, 1234, 3, 1, POLICY))


def test_peer_gets_our_update_by_its_alias_once():
    p = PrivateChannels(US, CHAIN)
    p.set(chan())
    raw = p.to_send(LOCAL, 100)
    u = parse_channel_update(raw)
    # named as the peer knows it, dont_forward, our direction (we are node_1), enabled
    assert u.scid == REMOTE and u.message_flags == MUST_BE_ONE | DONT_FORWARD
    assert u.channel_flags == 0
    p.mark_sent(LOCAL, raw)
    assert p.to_send(LOCAL, 101) is None                        # nothing new
    p.set(chan(policy=dict(POLICY, fee_base_msat=5)))
    assert parse_channel_update(p.to_send(LOCAL, 102)).fee_base_msat == 5
    p.mark_sent(LOCAL, p.to_send(LOCAL, 102))
    p.peer_disconnected(PEER)                                  # sent again on the next connection
    assert p.to_send(LOCAL, 103) is not None


def test_when_the_peer_gets_no_update():
    p = PrivateChannels(PEER, CHAIN)                            # we are node_2 this time
    p.set(chan(peer_id=US, remote_alias=0))
    assert parse_channel_update(p.to_send(LOCAL, 1)).scid == SCID        # no alias yet: the real scid
    assert parse_channel_update(p.to_send(LOCAL, 1)).channel_flags == 1
    p.set(chan(peer_id=US, remote_alias=0, scid=0))
    assert p.to_send(LOCAL, 1) is None                          # nothing it knows it by
    p.set(chan(announced=True))
    assert p.to_send(LOCAL, 1) is None                          # public gossip now
    p.set(chan(enabled=False))
    assert p.to_send(LOCAL, 1) is None
    assert p.to_send(LOCAL + 1, 1) is None                      # unknown channel


def test_error_update_names_the_channel_as_the_onion_did():
    p = PrivateChannels(US, CHAIN)
    p.set(chan(enabled=False))
    u = parse_channel_update(p.for_error(LOCAL, LOCAL, 7))
    assert u.scid == LOCAL and u.message_flags & DONT_FORWARD and u.disabled
    assert parse_channel_update(p.for_error(LOCAL, SCID, 7)).scid == SCID
    assert p.for_error(LOCAL + 1, LOCAL, 7) is None


def test_peer_updates_matched_by_our_alias_or_the_real_scid():
    p = PrivateChannels(US, CHAIN)
    c = chan()
    p.set(c)
    assert p.match(PEER, LOCAL) is c and p.match(PEER, SCID) is c
    assert p.match(PEER, REMOTE) is None                        # its own alias: not how it names it to us
    assert p.match(OTHER, LOCAL) is None                        # another peer
    p.set(chan(announced=True))
    assert p.match(PEER, LOCAL) is None                         # announced: ordinary gossip
    p.set(chan(scid=0))
    assert p.match(PEER, 0) is None


def test_early_updates_wait_for_their_channel():
    p = PrivateChannels(US, CHAIN)
    p.keep_early(PEER, LOCAL, b"upd-by-alias")
    p.keep_early(OTHER, LOCAL, b"other-peer")
    p.keep_early(PEER, 12345, b"unrelated")
    assert p.take_early(chan()) == [b"upd-by-alias"]
    assert p.take_early(chan()) == []
    for i in range(100):
        p.keep_early(PEER, i + 1, b"x")
    assert len(p.early) <= 64
