"""lightningd/routehints.py driven with stand-in channels and gossip: which
of our channels an invoice hints, by which short channel id, and the
warnings (Core Lightning's routehint.c / invoice.c rules)."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from coincurve import PrivateKey

from common.scid import ShortChannelId
from lightningd.channel import ChannelRecord, ChannelState
from lightningd.jsonrpc_errors import RpcError
from lightningd.routehints import RouteHints
from wire.codec import Sealed

PEERS = [PrivateKey(bytes([i]) * 32).public_key.format() for i in range(1, 5)]
POLICY = {"fee_base_msat": 1000, "fee_proportional_millionths": 10, "cltv_expiry_delta": 34,
          "htlc_minimum_msat": 1, "htlc_maximum_msat": 10**12, "timestamp": 1, "enabled": True}


def rec(dbid, peer, *, announce=False, scid=True, alias_type=False, remote_alias=True, receivable=500_000_000,
        policy=True):
    r = ChannelRecord(dbid, peer, bytes(32), ChannelState.NORMAL, "remote", bytes(32), 0, 1_000_000, 3,
                      {"receivable_msat": receivable, "our_reserve_sat": 10_000, "their_reserve_sat": 10_000,
                       "channel_type": {"bits": [12, 22] + ([46] if alias_type else [])}},
                      Sealed("channeld_core", b""), {}, 0, 0, 0, 0, 0,
                      announce=announce)
    if scid:
        r.funding_height, r.funding_txindex = 100 + dbid, 1
    r.alias_local = 0x1000 + dbid
    r.alias_remote = 0x2000 + dbid if remote_alias else None
    r.remote_update = dict(POLICY) if policy else None
    r.subd = SimpleNamespace(running=True)
    return r


class Gossip:
    """listchannels: every peer has a public channel into it (no dead end)
    unless listed in `deadends`; public channels' peer halves from `public`."""
    def __init__(self, deadends=(), public=None):
        self.deadends = set(deadends)
        self.public = public or {}

    async def listchannels(self, source=None, *, short_channel_id=None, destination=None):
        if destination is not None:
            return [] if destination in self.deadends else [
                {"short_channel_id": "1x1x1", "active": True, "htlc_maximum_msat": 10**9, "source": "02" * 33}]
        return self.public.get(short_channel_id, [])


def hints(recs, gossip=None, connected=lambda p: True):
    channels = SimpleNamespace(channels={r.dbid: r for r in recs})
    return RouteHints(channels, gossip or Gossip(), connected)


def run(h, amount=10_000_000, expose=None):
    routes, warnings = asyncio.run(h.for_invoice(amount, expose))
    return [[(hop.pubkey, str(hop.short_channel_id)) for hop in r] for r in routes], sorted(warnings)


def alias(n):
    return str(ShortChannelId.from_int(n))


def test_hint_names_the_channel_as_the_peer_forwards_by_it():
    private = rec(1, PEERS[0])                            # private: the peer's alias
    assert run(hints([private])) == ([[(PEERS[0], alias(0x2001))]], [])
    scid_alias = rec(2, PEERS[0], alias_type=True, remote_alias=False)
    assert run(hints([scid_alias])) == ([], ["warning_capacity"])   # BOLT 2: never the real scid
    unconfirmed = rec(3, PEERS[0], scid=False)             # zero-conf before the funding confirms
    assert run(hints([unconfirmed])) == ([[(PEERS[0], alias(0x2003))]], [])
    no_alias = rec(4, PEERS[0], remote_alias=False)         # a peer that sent none: the real scid
    assert run(hints([no_alias])) == ([[(PEERS[0], "104x1x0")]], [])
    no_policy = rec(5, PEERS[0], policy=False)             # the peer told us nothing of its side
    assert run(hints([no_policy])) == ([], ["warning_capacity"])


def test_private_channels_only_without_public_ones():
    priv, pub = rec(1, PEERS[0]), rec(2, PEERS[1], announce=True)
    g = Gossip(public={pub.scid.to_int(): [{"source": PEERS[1].hex(), "base_fee_millisatoshi": 7,
                                            "fee_per_millionth": 8, "delay": 9, "htlc_maximum_msat": 10**10}]})
    h = hints([priv, pub], g)
    assert run(h) == ([[(PEERS[1], "102x1x0")]], [])       # the public one, its gossip policy
    assert asyncio.run(h.for_invoice(1, None))[0][0][0].fee_base_msat == 7
    assert run(h, expose=False) == ([[(PEERS[1], "102x1x0")]], [])
    assert run(h, expose=[ShortChannelId.parse(alias(0x2001))]) == ([[(PEERS[0], alias(0x2001))]], [])
    assert run(h, expose=[priv.scid]) == ([[(PEERS[0], alias(0x2001))]], [])   # by the real scid too
    with pytest.raises(RpcError) as e:
        run(h, expose=[ShortChannelId.parse("1x1x1")])
    assert e.value.code == 902
    seen = {run(h, expose=True)[0][0][0][1] for _ in range(40)}
    assert seen == {"102x1x0", alias(0x2001)}
    # only private ones, not exposed
    assert run(hints([priv]), expose=False) == ([], ["warning_private_unused"])


def test_dead_ends_and_offline_peers_left_out_with_warnings():
    dead, off = rec(1, PEERS[0]), rec(2, PEERS[1])
    h = hints([dead, off], Gossip(deadends=[PEERS[0]]), connected=lambda p: p != PEERS[1])
    assert run(h) == ([], ["warning_offline"])
    assert run(hints([dead], Gossip(deadends=[PEERS[0]]))) == ([], ["warning_deadends"])
    # named in exposeprivatechannels: a dead end is used anyway
    assert run(hints([dead], Gossip(deadends=[PEERS[0]])), expose=[dead.scid])[0] == [[(PEERS[0], alias(0x2001))]]


def test_several_hints_round_robin_when_none_can_take_it_all():
    recs = [rec(i + 1, PEERS[i], receivable=4_000_000) for i in range(3)]
    h = hints(recs)
    routes, warnings = run(h, amount=7_000_000)
    assert routes == [[(PEERS[0], alias(0x2001))], [(PEERS[1], alias(0x2002))]] and warnings == ["warning_mpp"]
    routes, _ = run(h, amount=7_000_000)                    # least recently used first
    assert routes == [[(PEERS[2], alias(0x2003))], [(PEERS[0], alias(0x2001))]]
    routes, warnings = run(h, amount=20_000_000)
    assert len(routes) == 3 and warnings == ["warning_capacity", "warning_mpp"]
