"""Our channels as gossip between the two peers alone (BOLT 7): a channel
that is not announced (private, or public before its announcement) has a
`channel_update` for the peer only, with `dont_forward` set and the
short_channel_id the peer knows it by (the alias it sent us in
channel_ready, else the real one); the peer's such update for its
direction is what our invoices' route hints carry; an onion error about a
private channel carries an update naming it as the onion did.

Pure: the shell (gossipd.py) signs through hsmd and sends."""
from __future__ import annotations

import struct
from dataclasses import dataclass

#: channel_update message_flags: must_be_one (htlc_maximum_msat present), dont_forward
MUST_BE_ONE, DONT_FORWARD = 1, 2
#: channel_flags: direction, disable
DIRECTION, DISABLE = 1, 2
CHANNEL_UPDATE = 258
#: peers' updates naming a channel we are not told of yet (the master's
#: gossipd_local_channel and the peer's update race), kept until it is
MAX_EARLY = 64


def unsigned_update(chain_hash: bytes, scid: int, timestamp: int, message_flags: int, channel_flags: int,
                    pol: dict) -> bytes:
    """A channel_update with a zero signature (hsmd signs it): `pol` has
    cltv_delta, htlc_minimum_msat, fee_base_msat, fee_ppm, htlc_maximum_msat."""
    body = chain_hash + struct.pack(">QIBBHQIIQ", scid, timestamp, message_flags, channel_flags, pol["cltv_delta"],
                                    pol["htlc_minimum_msat"], pol["fee_base_msat"], pol["fee_ppm"],
                                    pol["htlc_maximum_msat"])
    return struct.pack(">H", CHANNEL_UPDATE) + b"\x00" * 64 + body


def same_update(a: bytes, b: bytes) -> bool:
    """Equal but for signature and timestamp (Core Lightning's channel_update_same)."""
    # type 2, signature 64, chain_hash 32, scid 8, timestamp 4, then the rest
    return a[2 + 64:2 + 64 + 40] == b[2 + 64:2 + 64 + 40] and a[2 + 64 + 44:] == b[2 + 64 + 44:]


@dataclass
class PrivateChannel:
    """What the master told us of one of our channels (gossipd_local_channel)."""
    peer_id: bytes
    scid: int               # 0 before the funding confirms
    local_alias: int
    remote_alias: int       # 0 until the peer's channel_ready
    announced: bool         # its channel_announcement exists: public gossip from now on
    enabled: bool           # usable: normal and the peer connected
    policy: dict

    def peer_scid(self) -> int:
        """How the peer names the channel: the alias it gave us, else the real scid."""
        return self.remote_alias or self.scid


class PrivateChannels:
    def __init__(self, our_id: bytes, chain_hash: bytes) -> None:
        self.our_id = our_id
        self.chain_hash = chain_hash
        self.by_alias: dict[int, PrivateChannel] = {}
        self.sent: dict[int, bytes] = {}        # local alias -> the last update the peer got
        self.early: dict[tuple[bytes, int], bytes] = {}   # (peer id, scid) -> its update

    def direction(self, peer_id: bytes) -> int:
        """BOLT 7: 0 if we are node_1 (the lesser node id)."""
        return 0 if self.our_id < peer_id else 1

    def set(self, ch: PrivateChannel) -> None:
        old = self.by_alias.get(ch.local_alias)
        if old is not None and old.peer_scid() != ch.peer_scid():
            self.sent.pop(ch.local_alias, None)
        self.by_alias[ch.local_alias] = ch

    def keep_early(self, peer_id: bytes, scid: int, raw: bytes) -> None:
        """A peer's update of a channel we may not be told of yet."""
        if len(self.early) >= MAX_EARLY:
            self.early.pop(next(iter(self.early)))
        self.early[(peer_id, scid)] = raw

    def take_early(self, ch: PrivateChannel) -> list[bytes]:
        """The early updates that name `ch` (now that we know it)."""
        keys = [k for k in self.early if k[0] == ch.peer_id and k[1] and k[1] in (ch.local_alias, ch.scid)]
        return [self.early.pop(k) for k in keys]

    def peer_disconnected(self, peer_id: bytes) -> None:
        """What it got is sent again on the next connection (it may be lost)."""
        for alias, ch in self.by_alias.items():
            if ch.peer_id == peer_id:
                self.sent.pop(alias, None)

    def to_send(self, local_alias: int, timestamp: int) -> bytes | None:
        """Our unsigned update for the peer of this channel, if it should
        get one (not announced, usable, a scid it knows) that differs from
        what it got last."""
        ch = self.by_alias.get(local_alias)
        if ch is None or ch.announced or not ch.enabled or not ch.peer_scid():
            return None
        # always enabled: a peer receiving it means it is (Core Lightning)
        upd = unsigned_update(self.chain_hash, ch.peer_scid(), timestamp, MUST_BE_ONE | DONT_FORWARD,
                              self.direction(ch.peer_id), ch.policy)
        last = self.sent.get(local_alias)
        if last is not None and same_update(last, upd):
            return None
        return upd

    def mark_sent(self, local_alias: int, signed: bytes) -> None:
        self.sent[local_alias] = signed

    def for_error(self, local_alias: int, scid: int, timestamp: int) -> bytes | None:
        """Unsigned update of an unannounced channel for an onion error,
        naming it by `scid`, as the incoming onion did (BOLT 4)."""
        ch = self.by_alias.get(local_alias)
        if ch is None:
            return None
        flags = self.direction(ch.peer_id) | (0 if ch.enabled else DISABLE)
        return unsigned_update(self.chain_hash, scid, timestamp, MUST_BE_ONE | DONT_FORWARD, flags, ch.policy)

    def match(self, peer_id: bytes, scid: int) -> PrivateChannel | None:
        """The unannounced channel with `peer_id` an update of its names by
        `scid`: our alias (the one we sent it), or the real short channel id."""
        for ch in self.by_alias.values():
            if ch.peer_id == peer_id and not ch.announced and scid in (ch.local_alias, ch.scid) and scid:
                return ch
        return None
