"""getroute: arithmetic on hand-built graphs, constraints, exclusions,
maxhops, local channels, a brute-force cross-check on random graphs, and a
synthetic graph."""
from __future__ import annotations

import itertools
import random

import pytest

from gossipd.graph import Graph
from gossipd.manager import GossipManager
from gossipd.routing import LocalChannel, RouteNotFound, Router
from gossipd.store import GossipStore
from synthetic_graph import build_store
from gossipd.validate import ChannelAnnouncement, ChannelUpdate, scid_str

NOW = 1_700_000_000
CAP = 10_000_000                      # sat


def nid(i: int) -> bytes:
    return b"\x02" + bytes([i + 1]) * 32          # ascending with i


def scid(k: int) -> int:
    return ((100 + k) << 40) | (1 << 16)


def policy(base=1000, prop=100, cltv=40, hmin=1, hmax=None, disabled=False, ts=NOW):
    return dict(base=base, prop=prop, cltv=cltv, hmin=hmin, hmax=hmax, disabled=disabled, ts=ts)


def set_policy(g: Graph, s: int, src: int, pol: dict, cap: int = CAP) -> None:
    n1, _n2 = g.channel_nodes(s)
    d = 0 if nid(src) == n1 else 1
    hmax = cap * 1000 if pol["hmax"] is None else pol["hmax"]
    g.apply_update(ChannelUpdate(b"", b"", s, pol["ts"], 1, d | (2 if pol["disabled"] else 0),
                                 pol["cltv"], pol["hmin"], pol["base"], pol["prop"], hmax))


def build(edges, cap: int = CAP) -> tuple[Graph, list[int]]:
    """edges: (a, b, policy a->b or None, policy b->a or None)."""
    g = Graph()
    scids = []
    for k, (a, b, ab, ba) in enumerate(edges):
        s = scid(k)
        n1, n2 = sorted((nid(a), nid(b)))
        g.add_channel(ChannelAnnouncement(b"", b"", b"", s, n1, n2, b"", b""), cap, NOW)
        for src, pol in ((a, ab), (b, ba)):
            if pol is not None:
                set_policy(g, s, src, pol, cap)
        scids.append(s)
    return g, scids


def route(g, a, b, amount, **kw):
    kw.setdefault("riskfactor", 0)
    kw.setdefault("fuzzpercent", 0)
    return Router(g).getroute(nid(a), nid(b), amount, **kw)


def path(r):
    return [h["id"] for h in r]


# --- exact arithmetic -----------------------------------------------------------------

def test_fee_and_cltv_arithmetic_exact():
    A, B, C, D = range(4)
    g, s = build([(A, B, policy(base=999_999, prop=999_999, cltv=500), None),   # source: free
                  (B, C, policy(base=1000, prop=1000, cltv=10), None),
                  (C, D, policy(base=500, prop=333, cltv=20), None)])
    r = route(g, A, D, 1_234_567, cltv=9)
    fee_c = 500 + 1_234_567 * 333 // 1_000_000                 # 500 + 411 (floor of 411.11)
    at_c = 1_234_567 + fee_c
    at_b = at_c + 1000 + at_c * 1000 // 1_000_000
    assert r == [
        {"id": nid(B).hex(), "channel": scid_str(s[0]), "direction": 0, "amount_msat": at_b,
         "delay": 9 + 20 + 10, "style": "tlv"},
        {"id": nid(C).hex(), "channel": scid_str(s[1]), "direction": 0, "amount_msat": at_c,
         "delay": 9 + 20, "style": "tlv"},
        {"id": nid(D).hex(), "channel": scid_str(s[2]), "direction": 0, "amount_msat": 1_234_567,
         "delay": 9, "style": "tlv"}]
    assert (fee_c, at_c, at_b) == (911, 1_235_478, 1_237_713)


def test_direction_follows_node_order():
    g, s = build([(3, 1, policy(), policy())])
    [hop] = route(g, 3, 1, 1000)
    assert hop["direction"] == 1 and hop["channel"] == scid_str(s[0]) and hop["delay"] == 9


# --- choices and constraints -------------------------------------------------------------

def diamond(b_pol, c_pol, b_first=None, c_first=None):
    """A -> B -> D and A -> C -> D; the policies are B->D's and C->D's."""
    A, B, C, D = range(4)
    return build([(A, B, b_first or policy(), None), (A, C, c_first or policy(), None),
                  (B, D, b_pol, None), (C, D, c_pol, None)])


def test_cheaper_path_chosen():
    g, _ = diamond(policy(base=2000), policy(base=1000))
    assert path(route(g, 0, 3, 50_000)) == [nid(2).hex(), nid(3).hex()]
    g, _ = diamond(policy(base=1000), policy(base=2000))
    assert path(route(g, 0, 3, 50_000)) == [nid(1).hex(), nid(3).hex()]
    # proportional fee dominates for a large amount
    g, _ = diamond(policy(base=0, prop=2000), policy(base=5000, prop=10))
    assert path(route(g, 0, 3, 10_000_000))[0] == nid(2).hex()
    assert path(route(g, 0, 3, 1000))[0] == nid(1).hex()


def test_htlc_limits_disabled_and_capacity():
    cheap, dear = policy(base=1), policy(base=5000)
    g, _ = diamond(dear, policy(base=1, hmax=49_999))
    assert path(route(g, 0, 3, 50_000))[0] == nid(1).hex()            # htlc_maximum
    assert path(route(g, 0, 3, 49_999))[0] == nid(2).hex()
    g, _ = diamond(dear, policy(base=1, hmin=60_000))
    assert path(route(g, 0, 3, 50_000))[0] == nid(1).hex()            # htlc_minimum
    g, _ = diamond(dear, policy(base=1, disabled=True))
    assert path(route(g, 0, 3, 50_000))[0] == nid(1).hex()            # disabled
    g, _ = diamond(dear, policy(base=1, hmax=CAP * 1000 + 1))
    assert path(route(g, 0, 3, 50_000))[0] == nid(1).hex()            # htlc_max > capacity
    # the source's own channel limits apply too (but not its fees)
    g, _ = diamond(dear, cheap, c_first=policy(base=10**6, hmax=40_000))
    assert path(route(g, 0, 3, 50_000))[0] == nid(1).hex()
    g, _ = diamond(dear, cheap, c_first=policy(base=10**6))
    assert path(route(g, 0, 3, 50_000))[0] == nid(2).hex()
    # no direction usable at all
    g, _ = diamond(policy(disabled=True), policy(disabled=True))
    with pytest.raises(RouteNotFound):
        route(g, 0, 3, 50_000)
    # missing update: that direction is unusable; the other direction works
    g, _ = build([(0, 1, None, policy())])
    with pytest.raises(RouteNotFound):
        route(g, 0, 1, 1000)
    assert route(g, 1, 0, 1000)


def test_exclude_nodes_and_directions():
    g, s = diamond(policy(base=2000), policy(base=1000))
    assert path(route(g, 0, 3, 50_000))[0] == nid(2).hex()
    assert path(route(g, 0, 3, 50_000, exclude=[nid(2).hex()]))[0] == nid(1).hex()
    assert path(route(g, 0, 3, 50_000, exclude=[nid(2)]))[0] == nid(1).hex()
    assert path(route(g, 0, 3, 50_000, exclude=[f"{scid_str(s[3])}/0"]))[0] == nid(1).hex()
    assert path(route(g, 0, 3, 50_000, exclude=[f"{scid_str(s[1])}/0"]))[0] == nid(1).hex()
    assert path(route(g, 0, 3, 50_000, exclude=[f"{scid_str(s[3])}/1"]))[0] == nid(2).hex()
    with pytest.raises(RouteNotFound):
        route(g, 0, 3, 50_000, exclude=[nid(1).hex(), nid(2).hex()])
    with pytest.raises(ValueError):
        route(g, 0, 3, 50_000, exclude=["nonsense"])


def test_riskfactor_trades_fees_for_cltv():
    g, _ = diamond(policy(base=10, prop=0, cltv=144), policy(base=20, prop=0, cltv=10))
    assert path(route(g, 0, 3, 100_000_000, riskfactor=0))[0] == nid(1).hex()
    assert path(route(g, 0, 3, 100_000_000, riskfactor=1))[0] == nid(2).hex()


def test_maxhops_falls_back_to_shorter_route():
    free = policy(base=0, prop=0, cltv=1)
    A, B, X1, X2, X3, D = range(6)
    g, _ = build([(A, B, free, None), (B, D, policy(base=100_000), None),
                  (A, X1, free, None), (X1, X2, free, None), (X2, X3, free, None),
                  (X3, D, free, None)])
    assert len(route(g, A, D, 1000)) == 4
    assert path(route(g, A, D, 1000, maxhops=2)) == [nid(B).hex(), nid(D).hex()]
    with pytest.raises(RouteNotFound):
        route(g, A, D, 1000, maxhops=1)


def test_local_channels_override_the_public_view():
    g, s = diamond(policy(base=2000), policy(base=1000))
    assert path(route(g, 0, 3, 50_000))[0] == nid(2).hex()
    low = [LocalChannel(s[1], nid(2), spendable_msat=40_000)]
    assert path(route(g, 0, 3, 50_000, local_channels=low))[0] == nid(1).hex()
    low_str = [LocalChannel(scid_str(s[1]), nid(2), spendable_msat=40_000)]
    assert path(route(g, 0, 3, 50_000, local_channels=low_str))[0] == nid(1).hex()
    off = [LocalChannel(s[1], nid(2), spendable_msat=10**9, enabled=False)]
    assert path(route(g, 0, 3, 50_000, local_channels=off))[0] == nid(1).hex()
    # a private channel straight to the destination, unknown to the graph
    direct = [LocalChannel(scid(77), nid(3), spendable_msat=10**9)]
    r = route(g, 0, 3, 50_000, local_channels=direct)
    assert r == [{"id": nid(3).hex(), "channel": scid_str(scid(77)), "direction": 0,
                  "amount_msat": 50_000, "delay": 9, "style": "tlv"}]
    # a source unknown to the graph, with only private channels
    r = Router(g).getroute(nid(9), nid(3), 50_000, riskfactor=0, fuzzpercent=0,
                           local_channels=[LocalChannel(scid(78), nid(1), 10**9)])
    assert path(r) == [nid(1).hex(), nid(3).hex()] and r[0]["direction"] == 1


def test_fuzz_is_seeded():
    g, _ = diamond(policy(base=1000), policy(base=1001))
    routes = {Router(g, seed=k).getroute(nid(0), nid(3), 10_000, fuzzpercent=50)[0]["id"]
              for k in range(40)}
    assert routes == {nid(1).hex(), nid(2).hex()}
    for k in range(5):
        r1 = Router(g, seed=k).getroute(nid(0), nid(3), 10_000, fuzzpercent=50)
        r2 = Router(g).getroute(nid(0), nid(3), 10_000, fuzzpercent=50, seed=k)
        assert r1 == r2
        # fuzz only picks the path: the amounts are the real fees
        assert r1[0]["amount_msat"] == 10_000 + (1000 if r1[0]["id"] == nid(1).hex() else 1001) + 1


def test_router_follows_graph_changes():
    g, s = diamond(policy(base=2000), policy(base=1000))
    r = Router(g)
    assert r.getroute(nid(0), nid(3), 50_000, 0, fuzzpercent=0)[0]["id"] == nid(2).hex()
    set_policy(g, s[3], 2, policy(base=3000, ts=NOW + 1))
    assert r.getroute(nid(0), nid(3), 50_000, 0, fuzzpercent=0)[0]["id"] == nid(1).hex()
    g.remove_channel(s[2])
    assert r.getroute(nid(0), nid(3), 50_000, 0, fuzzpercent=0)[0]["id"] == nid(2).hex()
    with pytest.raises(RouteNotFound):
        r.getroute(nid(0), nid(3), 50_000, 0, fuzzpercent=0, exclude=[nid(2).hex()])


def test_errors():
    g, _ = diamond(policy(), policy())
    with pytest.raises(RouteNotFound):
        route(g, 0, 9, 1000)
    with pytest.raises(RouteNotFound):
        route(g, 0, 0, 1000)
    with pytest.raises(ValueError):
        route(g, 0, 3, 0)


# --- brute force ---------------------------------------------------------------------------

def brute_force(edges, src, dst, amount, maxhops):
    """Lowest amount the source must send, over every simple path."""
    out = {}
    for a, b, ab, ba in edges:
        for u, v, pol in ((a, b, ab), (b, a, ba)):
            if pol is not None and not pol["disabled"] and pol["hmax"] <= CAP * 1000 \
                    and pol["hmin"] <= pol["hmax"]:
                out.setdefault(u, []).append((v, pol))
    best = None

    def walk(node, seen, hops):
        nonlocal best
        if node == dst:
            amt = amount
            for u, pol in reversed(hops):
                if not pol["hmin"] <= amt <= pol["hmax"]:
                    return
                if u != src:
                    amt += pol["base"] + amt * pol["prop"] // 1_000_000
            if best is None or amt < best:
                best = amt
            return
        if len(hops) == maxhops:
            return
        for v, pol in out.get(node, ()):
            if v not in seen:
                walk(v, seen | {v}, hops + [(node, pol)])

    walk(src, {src}, [])
    return best


def random_edges(rng, n_nodes, n_chans):
    pairs = rng.sample(list(itertools.combinations(range(n_nodes), 2)), n_chans)

    def pol():
        if rng.random() < 0.15:
            return None
        return policy(base=rng.choice([0, 1, 1000, 2500]), prop=rng.choice([0, 10, 500, 5000]),
                      cltv=rng.choice([6, 40, 144]), hmin=rng.choice([1, 1, 5_000, 60_000]),
                      hmax=rng.choice([CAP * 1000, 200_000, 80_000]), disabled=rng.random() < 0.1)
    return [(a, b, pol(), pol()) for a, b in pairs]


def test_matches_brute_force_on_random_graphs():
    rng = random.Random(7)
    checked = 0
    for _ in range(150):
        edges = random_edges(rng, 7, rng.randrange(6, 16))
        g, _ = build(edges)
        src, dst = rng.sample(range(7), 2)
        amount = rng.choice([1000, 30_000, 70_000, 150_000])
        expect = brute_force(edges, src, dst, amount, 20)
        if not (g.has_node(nid(src)) and g.has_node(nid(dst))):
            continue
        try:
            r = route(g, src, dst, amount)
        except RouteNotFound:
            assert expect is None
            continue
        checked += 1
        assert expect is not None and r[0]["amount_msat"] == expect
        assert r[-1]["amount_msat"] == amount and r[-1]["delay"] == 9
    assert checked > 50


# --- synthetic graph -----------------------------------------------------------------------

def test_routes_on_a_synthetic_graph_are_consistent(tmp_path):
    info = build_store(tmp_path / "syn", nodes=120, channels=360, seed=2)
    m = GossipManager(GossipStore.open(tmp_path / "syn"), bytes.fromhex(info.chain_hash_hex))
    m.load(verify=False)
    g = m.graph
    router = Router(g, seed=1)
    ids = sorted(g.node_ids())
    rng = random.Random(3)
    found = 0
    for _ in range(40):
        a, b = rng.sample(ids, 2)
        amount = rng.choice([10_000, 1_000_000, 50_000_000])
        try:
            r = router.getroute(a, b, amount, riskfactor=10, cltv=18)
        except RouteNotFound:
            continue
        found += 1
        assert r[-1]["id"] == b.hex() and r[-1]["amount_msat"] == amount and r[-1]["delay"] == 18
        prev = a
        for i, hop in enumerate(r):
            s = int.from_bytes(bytes.fromhex("%016x" % _parse(hop["channel"])), "big")
            n1, n2 = g.channel_nodes(s)
            assert {prev, bytes.fromhex(hop["id"])} == {n1, n2}
            assert hop["direction"] == (0 if prev == n1 else 1)
            half = g.half(s, hop["direction"])
            assert half[4] <= hop["amount_msat"] <= half[7] and not half[2] & 2
            if i + 1 < len(r):
                nxt = r[i + 1]
                s2 = _parse(nxt["channel"])
                h2 = g.half(s2, nxt["direction"])
                fee = h2[5] + nxt["amount_msat"] * h2[6] // 1_000_000
                assert hop["amount_msat"] == nxt["amount_msat"] + fee
                assert hop["delay"] == nxt["delay"] + h2[3]
            prev = bytes.fromhex(hop["id"])
    assert found > 20


def _parse(s: str) -> int:
    b, t, o = map(int, s.split("x"))
    return (b << 40) | (t << 16) | o


def test_policies_from_onion_errors_apply_to_one_search_only():
    """A channel_update learnt from an onion error changes the policy of that
    direction for the search it is given to, never the graph."""
    from gossipd.routing import ChannelPolicy
    g, s = diamond(policy(base=1000), policy(base=2000))
    assert path(route(g, 0, 3, 50_000)) == [nid(1).hex(), nid(3).hex()]
    dearer = ChannelPolicy(s[2], 0, 5000, 0, 40, 1, CAP * 1000)
    r = route(g, 0, 3, 50_000, policies=[dearer])
    assert path(r) == [nid(2).hex(), nid(3).hex()]
    # through B anyway (C excluded): B's new fee is what the route pays
    r = route(g, 0, 3, 50_000, policies=[dearer], exclude=[nid(2).hex()])
    assert r[0]["amount_msat"] == 50_000 + 5000 and r[0]["delay"] == 9 + 40
    disabled = ChannelPolicy(s[2], 0, 1000, 100, 40, 1, CAP * 1000, enabled=False)
    assert path(route(g, 0, 3, 50_000, policies=[disabled])) == [nid(2).hex(), nid(3).hex()]
    # the graph itself is unchanged
    assert path(route(g, 0, 3, 50_000)) == [nid(1).hex(), nid(3).hex()]


# --- getroutes: payments in parts ---------------------------------------------------------

def routes(g, a, b, amounts, **kw):
    kw.setdefault("riskfactor", 0)
    kw.setdefault("fuzzpercent", 0)
    kw.setdefault("maxparts", 16)
    return Router(g).getroutes(nid(a), nid(b), amounts, **kw)


def delivered(rs) -> int:
    return sum(r[-1]["amount_msat"] for r in rs)


def carried(rs) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rs:
        for h in r:
            out[h["channel"]] = out.get(h["channel"], 0) + h["amount_msat"]
    return out


def test_getroutes_one_route_when_one_can_carry_it():
    A, B, C, D = range(4)
    g, s = diamond(policy(base=1000), policy(base=2000))
    rs = routes(g, A, D, [50_000])
    assert len(rs) == 1 and rs == [route(g, A, D, 50_000)]


def test_getroutes_splits_over_two_disjoint_routes_within_capacity():
    A, B, C, D = range(4)
    g, s = build([(A, B, policy(), None), (B, D, policy(), None), (A, C, policy(), None), (C, D, policy(), None)],
                 cap=60_000)
    rs = routes(g, A, D, [100_000_000])
    assert len(rs) == 2 and delivered(rs) == 100_000_000
    for chan, amt in carried(rs).items():
        assert amt <= 60_000_000, chan
    # every route is a valid getroute answer for its own amount (fees, delays)
    for r in rs:
        assert r == route(g, A, D, r[-1]["amount_msat"], exclude=[n.hex() for n in (nid(B), nid(C))
                                                                  if n.hex() not in [h["id"] for h in r]])
    with pytest.raises(RouteNotFound):
        routes(g, A, D, [121_000_000])                   # more than both routes
    with pytest.raises(RouteNotFound):
        routes(g, A, D, [100_000_000], maxparts=1)       # one part cannot carry it


def test_getroutes_parallel_local_channels_use_their_spendable():
    A, B = range(2)
    g, s = build([(A, B, policy(), policy()), (A, B, policy(), policy()), (A, B, policy(), policy())], cap=60_000)
    local = [LocalChannel(s[0], nid(B), 50_000_000), LocalChannel(s[1], nid(B), 40_000_000),
             LocalChannel(s[2], nid(B), 30_000_000)]
    rs = routes(g, A, B, [100_000_000], local_channels=local)
    assert delivered(rs) == 100_000_000 and len(rs) == 3
    assert carried(rs) == {scid_str(s[0]): 50_000_000, scid_str(s[1]): 40_000_000, scid_str(s[2]): 10_000_000}
    with pytest.raises(RouteNotFound):
        routes(g, A, B, [120_000_001], local_channels=local)


def test_getroutes_chunks_share_the_liquidity_and_limits_apply():
    """Presplit chunks are routed in turn, each taking what it carries from
    the channels; a payment's limits (learnt maximum, reserved by parts in
    flight) lower a channel's liquidity for this search only."""
    from gossipd.routing import ChannelLimit
    A, B, C, D = range(4)
    g, s = build([(A, B, policy(base=0, prop=0), None), (B, D, policy(base=0, prop=0), None),
                  (A, C, policy(base=100, prop=0), None), (C, D, policy(base=100, prop=0), None)], cap=60_000)
    rs = routes(g, A, D, [25_000_000] * 4)
    assert len(rs) == 4 and delivered(rs) == 100_000_000
    assert carried(rs)[scid_str(s[1])] == 50_000_000            # two chunks fit the cheap side...
    assert carried(rs)[scid_str(s[3])] == 50_000_000            # ...the other two go round
    bd = 0 if nid(B) < nid(D) else 1
    limited = routes(g, A, D, [50_000_000], limits=[ChannelLimit(s[1], bd, 40_000_000, 10_000_000)])
    assert carried(limited).get(scid_str(s[1]), 0) <= 30_000_000
    assert delivered(limited) == 50_000_000
    assert routes(g, A, D, [50_000_000]) == [route(g, A, D, 50_000_000)]     # the graph is unchanged


def test_getroutes_split_counts_fees_against_capacity():
    """The widest path takes as much as fits once the fees of the hops
    after a channel are added to what it carries."""
    A, B, C, D = range(4)
    fee = policy(base=10_000, prop=100_000)                      # 10 sat + 10%
    g, s = build([(A, B, policy(), None), (B, D, fee, None), (A, C, policy(), None), (C, D, fee, None)],
                 cap=60_000)
    rs = routes(g, A, D, [100_000_000])
    assert delivered(rs) == 100_000_000
    for chan, amt in carried(rs).items():
        assert amt <= 60_000_000, (chan, amt)


def test_getroutes_htlc_maximum_is_per_part():
    """A channel whose htlc_maximum_msat is below the amount still carries
    it, in several parts (its capacity is for all of them together)."""
    A, B, C = range(3)
    g, s = build([(A, B, policy(), None), (B, C, policy(hmax=30_000_000), None)], cap=1_000_000)
    rs = routes(g, A, C, [100_000_000])
    assert delivered(rs) == 100_000_000 and len(rs) == 4
    assert all(r[-1]["amount_msat"] <= 30_000_000 for r in rs)
    with pytest.raises(RouteNotFound):
        routes(g, A, C, [100_000_000], maxparts=3)


def test_no_route_through_a_node_with_unknown_even_features():
    """BOLT 7 (node_announcement receiver): "if `features` field contains
    _unknown even bits_: ... MUST NOT route a payment _through_ the node"
    (a route *to* it is the caller's decision: BOLT 7 lets an invoice
    without those bits be paid)."""
    from common.features import features_from_bits
    from gossipd.validate import NodeAnnouncement
    A, B, C = range(3)
    g, _ = build([(A, B, policy(), policy()), (B, C, policy(), policy())])

    def announce(bits: set[int], ts: int) -> None:
        g.apply_node_announcement(NodeAnnouncement(b"", features_from_bits(bits), ts, nid(B), b"\0\0\0",
                                                   bytes(32), b""))
    announce({100}, NOW)
    with pytest.raises(RouteNotFound):
        route(g, A, C, 1000)
    assert path(route(g, A, B, 1000)) == [nid(B).hex()]
    announce({101}, NOW + 1)                           # odd: fine
    assert path(route(g, A, C, 1000)) == [nid(B).hex(), nid(C).hex()]
