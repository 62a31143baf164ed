"""Route finding for ``getroute``, with Core Lightning's semantics.

The search runs Dijkstra *backwards*, from the destination to the source,
because amounts and CLTVs are fixed at the destination and grow towards the
source.  The label of a node ``v`` is what an HTLC must carry into ``v``:

- ``amt[v]``: msat arriving at ``v`` (``amount_msat`` at the destination);
- ``dly[v]``: CLTV delay at ``v`` (``cltv`` at the destination);
- relaxing the channel ``u -> v`` (``u``'s policy): the channel carries
  ``amt[v]``, which must lie within its htlc_minimum/htlc_maximum (capped by
  the capacity), and ``u`` charges
  ``fee = fee_base_msat + amt[v] * fee_proportional_millionths // 1_000_000``,
  so ``amt[u] = amt[v] + fee`` and ``dly[u] = dly[v] + cltv_expiry_delta``.
  The source pays itself nothing: its own channel adds no fee and no delay.

Cost (what Dijkstra minimises; Core Lightning's ``route_score_cheaper``):
``score(u) = cost(u) + risk(u)``, where ``cost`` is ``amt`` with every fee
multiplied by ``1 + fuzz * r(channel)`` (``r`` in [-1, 1], a hash of the
channel and the router's seed; ``fuzz = fuzzpercent / 100``), and
``risk(u) = amt[u] * dly[u] * riskfactor / (BLOCKS_PER_YEAR * 100)``:
``riskfactor`` is the yearly percentage the sender would pay to not have
its funds locked, charged on the amount for the number of blocks it may be
locked.  Ties go to fewer hops.  Scores never decrease along a path, so
Dijkstra is exact for it (with riskfactor 0 and no fuzz it finds the route
whose source amount is lowest).  If the cheapest route is longer than
``maxhops`` the search is repeated minimising hops first (Core Lightning's
``route_score_shorter`` fallback); still too long -> RouteNotFound.

Speed: the graph is mirrored into per-node tuples of incoming edges
``(u, fee_base, fee_prop, cltv, htlc_min, htlc_max, r, half)`` for the usable
directions only (updated, not disabled, htlc_maximum within capacity), kept
up to date incrementally through the graph's dirty set.  The inner loop
unpacks one tuple per edge and allocates only heap entries.  Exclusions and
the caller's local channels are applied per call as an overlay of a few
nodes' edge tuples.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, replace

from common.scid import ShortChannelId, ShortChannelIdDir

from .graph import CF_UNROUTABLE, Graph
from .validate import scid_str

BLOCKS_PER_YEAR = 52_596
_MASK64 = (1 << 64) - 1
_INF = float("inf")
_SHORTEST_WEIGHT = 1e18          # per hop, dominates any cost in the fallback


class RouteNotFound(Exception):
    """No route (Core Lightning's PAY_ROUTE_NOT_FOUND, code 205)."""


@dataclass(frozen=True)
class LocalChannel:
    """One of the source's channels with its real state: the route may send
    at most ``spendable_msat`` through it (overriding the public view; a
    channel absent from the graph, e.g. private, is added)."""

    scid: int                 # u64 (a "BLOCKxTXxOUT" string is accepted too)
    peer_id: bytes
    spendable_msat: int
    htlc_minimum_msat: int = 0
    enabled: bool = True


@dataclass(frozen=True)
class ChannelPolicy:
    """A channel direction's policy to use for this one search instead of
    the graph's: ``pay`` learnt it from a channel_update in an onion error
    (BOLT 4: for retries of that payment only, never applied to the graph)."""

    scid: int
    direction: int
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int
    htlc_minimum_msat: int
    htlc_maximum_msat: int
    enabled: bool = True


@dataclass(frozen=True)
class ChannelLimit:
    """What one payment knows of a channel direction, for ``getroutes``:
    at most ``max_msat`` can pass it in all (learnt from a failure; 2^64-1
    if nothing was), of which its parts in flight already use
    ``reserved_msat``."""

    scid: int
    direction: int
    max_msat: int
    reserved_msat: int = 0


def _fuzz_r(seed: int, scid: int, direction: int) -> float:
    """Deterministic value in [-1, 1] (splitmix64 of seed, scid, direction)."""
    z = (seed * 0x9E3779B97F4A7C15 + scid * 2 + direction) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return z / 2**63 - 1.0


class Router:
    def __init__(self, graph: Graph, seed: int = 0) -> None:
        self.graph = graph
        self.seed = seed
        self._inc: list[tuple] = []
        self._dirty = graph.dirty_set()
        self._local_peers: list[int | None] = []

    # -- the incoming-edge mirror ------------------------------------------------
    def _refresh(self) -> None:
        g = self.graph
        if len(self._inc) < len(g._nid):
            self._inc.extend([()] * (len(g._nid) - len(self._inc)))
        if not self._dirty:
            return
        upd, n1, n2, cap, cflag, nchans, scids = g._upd, g._n1, g._n2, g._cap, g._cflag, \
            g._nchans, g._scid
        seed, inc = self.seed, self._inc
        for v in self._dirty:
            chans = nchans[v] if v < len(nchans) else None
            if not chans:
                inc[v] = ()
                continue
            edges = []
            for c in chans:
                if cflag[c] & CF_UNROUTABLE:
                    continue
                d = 0 if n2[c] == v else 1           # direction 0: node_1 -> node_2
                u = upd[2 * c + d]
                if u is None or u[2] & 2:
                    continue
                hmax, hmin = u[7], u[4]
                if cap[c] and hmax > cap[c] * 1000:
                    continue                           # BOLT 7: ignore such a channel
                if hmax < hmin:
                    continue
                edges.append((n1[c] if d == 0 else n2[c], u[5], u[6], u[3], hmin, hmax,
                              _fuzz_r(seed, scids[c], d), 2 * c + d))
            inc[v] = tuple(edges)
        self._dirty.clear()

    def reseed(self, seed: int) -> None:
        if seed != self.seed:
            self.seed = seed
            self._dirty.update(range(len(self.graph._nid)))

    # -- getroute ----------------------------------------------------------------
    def getroute(self, source: bytes, destination: bytes, amount_msat: int,
                 riskfactor: float = 10.0, cltv: int = 9, exclude=(),
                 fuzzpercent: float = 5.0, maxhops: int = 20,
                 local_channels: list[LocalChannel] | None = None,
                 seed: int | None = None, policies: list[ChannelPolicy] | None = None) -> list[dict]:
        """Core Lightning's getroute: the hops ``{id, channel, direction,
        amount_msat, delay, style}`` from ``source`` to ``destination``;
        each hop's amount is what its channel carries, its delay the CLTV at
        its node.  ``exclude``: ``"BLOCKxTXxOUT/DIR"`` strings or node ids
        (hex or bytes).  ``fuzzpercent`` 0 makes the search deterministic
        whatever the seed.  ``policies`` replace the graph's policy of
        those channel directions for this search."""
        if amount_msat <= 0:
            raise ValueError("amount_msat must be positive")
        src, dst, overlay, locals_ = self._prepare(source, destination, riskfactor, fuzzpercent, exclude,
                                                   local_channels, policies, seed)
        self._quick_checks(src, dst, amount_msat, overlay)
        rf = riskfactor / (BLOCKS_PER_YEAR * 100)
        fz = fuzzpercent / 100
        route = self._search(src, dst, amount_msat, cltv, rf, fz, 0.0, overlay)
        if route is None:
            raise RouteNotFound("Could not find a route")
        if len(route[0]) > maxhops:
            route = self._search(src, dst, amount_msat, cltv, rf, fz, _SHORTEST_WEIGHT, overlay)
            if route is None or len(route[0]) > maxhops:
                raise RouteNotFound(f"Shortest route was {len(route[0]) if route else 0} hops, "
                                    f"more than maxhops {maxhops}")
        return self._hops(source, route, locals_)

    def getroutes(self, source: bytes, destination: bytes, amounts: list[int],
                  riskfactor: float = 10.0, cltv: int = 9, exclude=(),
                  fuzzpercent: float = 5.0, maxhops: int = 20,
                  local_channels: list[LocalChannel] | None = None,
                  policies: list[ChannelPolicy] | None = None, limits: list[ChannelLimit] | None = None,
                  maxparts: int = 1, seed: int | None = None) -> list[list[dict]]:
        """Routes (each as getroute's) that together deliver ``sum(amounts)``
        (a multi-part payment), at most ``maxparts`` of them.

        Every channel direction has a liquidity for this search: our local
        channels' ``spendable_msat``, else the channel's capacity, lowered
        by ``limits`` (what the payment learnt, less what its parts in
        flight reserve).  Each amount, in order, takes the cheapest route
        whose channels can all still carry it, and what it carries is taken
        from their liquidity.  An amount no route can carry whole is split:
        the path that can carry the most (its narrowest channel, fees
        included) takes as much as it can (the cheapest route for that much
        if there is one), and the rest is routed the same way.  A greedy
        splitter, not a min-cost flow: it finds a split whenever the
        channels' liquidity allows one path after another."""
        if not amounts or any(a <= 0 for a in amounts):
            raise ValueError("amounts must be positive")
        if maxparts < 1:
            raise ValueError("maxparts must be positive")
        src, dst, overlay, locals_ = self._prepare(source, destination, riskfactor, fuzzpercent, exclude,
                                                   local_channels, policies, seed)
        liq = self._limit(src, overlay, limits or ())
        rf = riskfactor / (BLOCKS_PER_YEAR * 100)
        fz = fuzzpercent / 100
        todo = list(amounts)
        routes: list[list[dict]] = []
        while todo:
            amount = todo.pop(0)
            if len(routes) >= maxparts:
                raise RouteNotFound(f"Could not find a route: {sum(todo) + amount}msat left over after "
                                    f"{maxparts} parts")
            found = self._best(src, dst, amount, cltv, rf, fz, maxhops, overlay)
            if found is None:
                widest = self._widest(src, dst, amount, cltv, overlay) if len(routes) + 1 < maxparts else None
                if widest is None:
                    raise RouteNotFound(f"Could not find a route for {amount}msat"
                                        + (f" (after {len(routes)} parts)" if routes else ""))
                part, found = widest
                if part < amount:
                    todo.insert(0, amount - part)
                    found = self._best(src, dst, part, cltv, rf, fz, maxhops, overlay) or found
            hops = self._hops(source, found, locals_)
            self._consume(src, found[0], hops, liq, overlay)
            routes.append(hops)
        return routes

    def _prepare(self, source: bytes, destination: bytes, riskfactor: float, fuzzpercent: float, exclude,
                 local_channels, policies, seed) -> tuple[int, int, dict[int, tuple], list[LocalChannel]]:
        """Checks and the per-call overlay: (src, dst, overlay, locals)."""
        if not 0 <= fuzzpercent <= 100:
            raise ValueError("fuzzpercent must be within 0..100")
        if riskfactor < 0:
            raise ValueError("riskfactor must be non-negative")
        if seed is not None:
            self.reseed(seed)
        self._refresh()
        g = self.graph
        src, dst = g._nidx.get(source), g._nidx.get(destination)
        if dst is None:
            raise RouteNotFound(f"Unknown destination {destination.hex()}")
        if src is None and not local_channels:
            raise RouteNotFound(f"Unknown source {source.hex()}")
        if source == destination:
            raise RouteNotFound("Cannot route to ourselves")
        locals_ = [lc if isinstance(lc.scid, int) else
                   replace(lc, scid=ShortChannelId.parse(str(lc.scid)).to_int())
                   for lc in local_channels or ()]
        if src is None:                       # a source with only private channels
            src = len(self._inc)
        overlay = self._overlay(src, exclude, locals_)
        self._apply_policies(overlay, policies or ())
        self._local_peers = [g._nidx.get(lc.peer_id) for lc in locals_]
        return src, dst, overlay, locals_

    def _overlay(self, src: int, exclude, locals_: list[LocalChannel]) -> dict[int, tuple]:
        """Per-call replacement edge tuples for the few nodes concerned."""
        g, inc = self.graph, self._inc
        bad_halves: set[int] = set()
        bad_nodes: set[int] = set()
        for item in exclude:
            if isinstance(item, bytes) or (isinstance(item, str) and len(item) == 66):
                n = g._nidx.get(bytes.fromhex(item) if isinstance(item, str) else item)
                if n is not None:
                    bad_nodes.add(n)
                continue
            sd = ShortChannelIdDir.parse(item) if isinstance(item, str) else item
            c = g._cidx.get(sd.scid.to_int())
            if c is not None:
                bad_halves.add(2 * c + sd.direction)
        def own(lc: LocalChannel) -> int | None:
            """The graph's channel index of a local channel, if it is there."""
            c = g._cidx.get(lc.scid)
            return c if c is not None and src in (g._n1[c], g._n2[c]) else None

        local_scids = {lc.scid for lc in locals_}
        touched: set[int] = set()
        for h in bad_halves:
            c = h >> 1
            touched.add(g._n2[c] if h & 1 == 0 else g._n1[c])
        for n in bad_nodes:
            touched.update(g._n1[c] if g._n2[c] == n else g._n2[c] for c in g._nchans[n])
        for lc in locals_:
            c = own(lc)
            if c is not None:
                touched.add(g._n2[c] if g._n1[c] == src else g._n1[c])
        overlay: dict[int, tuple] = {}
        for v in touched:
            overlay[v] = tuple(e for e in (inc[v] if v < len(inc) else ())
                               if e[7] not in bad_halves and e[0] not in bad_nodes
                               and not (e[0] == src and g._scid[e[7] >> 1] in local_scids))
        for n in bad_nodes:
            overlay[n] = ()
        for i, lc in enumerate(locals_):
            peer = g._nidx.get(lc.peer_id)
            if peer is None or not lc.enabled or peer in bad_nodes:
                continue
            c = own(lc)
            half = 2 * c + (0 if g._n1[c] == src else 1) if c is not None else -1 - i
            if half in bad_halves:
                continue
            edge = (src, 0, 0, 0, lc.htlc_minimum_msat, lc.spendable_msat, 0.0, half)
            overlay[peer] = overlay.get(peer, inc[peer] if peer < len(inc) else ()) + (edge,)
        return overlay

    def _apply_policies(self, overlay: dict[int, tuple], policies) -> None:
        """Swap the fee, delay and htlc range of the edges of ``policies``
        (or drop them if disabled) in the overlay."""
        g, inc = self.graph, self._inc
        for p in policies:
            c = g._cidx.get(p.scid)
            if c is None:
                continue
            half = 2 * c + p.direction
            u, v = (g._n1[c], g._n2[c]) if p.direction == 0 else (g._n2[c], g._n1[c])
            edges = overlay.get(v, inc[v] if v < len(inc) else ())
            old = next((e for e in edges if e[7] == half), None)
            if old is None:
                continue        # not usable (or excluded) in this search anyway
            kept = tuple(e for e in edges if e[7] != half)
            if p.enabled:
                kept += ((u, p.fee_base_msat, p.fee_proportional_millionths, p.cltv_expiry_delta,
                          p.htlc_minimum_msat, min(p.htlc_maximum_msat, old[5]), old[6], half),)
            overlay[v] = kept

    # -- liquidity for getroutes -------------------------------------------------
    def _target(self, h: int) -> int:
        """The node a channel direction (half) leads to."""
        if h < 0:
            peer = self._local_peers[-1 - h]
            assert peer is not None
            return peer
        g, c = self.graph, h >> 1
        return g._n2[c] if h & 1 == 0 else g._n1[c]

    def _edge(self, h: int, overlay: dict[int, tuple]) -> tuple | None:
        v = self._target(h)
        return next((e for e in overlay.get(v, self._inc[v] if v < len(self._inc) else ()) if e[7] == h), None)

    def _cap_edge(self, h: int, most: int, overlay: dict[int, tuple]) -> None:
        """At most ``most`` msat through half ``h`` in the rest of this search."""
        v = self._target(h)
        edges = overlay.get(v, self._inc[v] if v < len(self._inc) else ())
        overlay[v] = tuple(e if e[7] != h else e[:5] + (min(e[5], most),) + e[6:]
                           for e in edges if e[7] != h or most > 0)

    def _liquidity0(self, src: int, e: tuple) -> int:
        """A half's liquidity before this search takes any: our spendable for
        our own channels (already the edge's maximum), else the capacity."""
        if e[0] == src or e[7] < 0:
            return e[5]
        cap = self.graph._cap[e[7] >> 1]
        return cap * 1000 if cap else e[5]

    def _limit(self, src: int, overlay: dict[int, tuple], limits) -> dict[int, int]:
        """Apply the payment's limits; the liquidity left per half touched."""
        g, liq = self.graph, {}
        for lim in limits:
            c = g._cidx.get(lim.scid)
            if c is None:
                continue
            h = 2 * c + lim.direction
            e = self._edge(h, overlay)
            if e is None:
                continue
            liq[h] = max(0, min(lim.max_msat, self._liquidity0(src, e)) - lim.reserved_msat)
            self._cap_edge(h, liq[h], overlay)
        return liq

    def _consume(self, src: int, path: list[int], hops: list[dict], liq: dict[int, int],
                 overlay: dict[int, tuple]) -> None:
        """What a route carries is no longer available to the next ones."""
        for h, hop in zip(path, hops):
            if h not in liq:
                e = self._edge(h, overlay)
                if e is None:
                    continue
                liq[h] = self._liquidity0(src, e)
            liq[h] = max(0, liq[h] - hop["amount_msat"])
            self._cap_edge(h, liq[h], overlay)

    def _best(self, src, dst, amount, cltv, rf, fz, maxhops, overlay):
        """The cheapest route (maxhops respected), or None."""
        route = self._search(src, dst, amount, cltv, rf, fz, 0.0, overlay)
        if route is not None and len(route[0]) > maxhops:
            route = self._search(src, dst, amount, cltv, rf, fz, _SHORTEST_WEIGHT, overlay)
            if route is not None and len(route[0]) > maxhops:
                return None
        return route

    def _widest(self, src, dst, amount, cltv, overlay):
        """The path whose narrowest channel is widest (a max-bottleneck
        Dijkstra backwards from dst, fees aside), and the most up to
        ``amount`` it can deliver with fees: (part, route) or None."""
        inc = self._inc
        n = max(len(inc), src + 1)
        width = [0] * n
        nxt = [0] * n
        done = bytearray(n)
        unroutable = self.graph.unroutable_nodes
        width[dst] = amount
        heap = [(-amount, 0, dst)]
        pop, push, get = heapq.heappop, heapq.heappush, overlay.get
        while heap:
            w, hp, v = pop(heap)
            if done[v]:
                continue
            done[v] = 1
            if v == src:
                break
            if v != dst and v in unroutable:
                continue
            w = -w
            for e in get(v, inc[v] if v < len(inc) else ()):
                u = e[0]
                wu = min(w, e[5])
                if wu > width[u] and not done[u]:
                    width[u], nxt[u] = wu, e[7]
                    push(heap, (-wu, hp + 1, u))
        if not done[src] or width[src] <= 0:
            return None
        path, v = [], src
        while v != dst:
            path.append(nxt[v])
            v = self._target(nxt[v])
        edges = [self._edge(h, overlay) for h in path]

        def along(d: int):
            """(path, amt, dly) delivering d along the path, or None."""
            amt, dly = {dst: d}, {dst: cltv}
            a, dl = d, cltv
            for e in reversed(edges):
                if not e[4] <= a <= e[5]:
                    return None
                u = e[0]
                if u != src:
                    a, dl = a + e[1] + a * e[2] // 1000000, dl + e[3]
                amt[u], dly[u] = a, dl
            return path, amt, dly

        hi = width[src]
        if along(hi) is None:
            lo = 0                      # the most that passes every maximum, fees included
            while lo < hi - 1:
                mid = (lo + hi) // 2
                if self._fits(mid, edges, src):
                    lo = mid
                else:
                    hi = mid
            hi = lo
        route = along(hi) if hi > 0 else None
        return (hi, route) if route is not None else None

    @staticmethod
    def _fits(d: int, edges: list[tuple], src: int) -> bool:
        """Does delivering d keep every channel of the path within its maximum?"""
        a = d
        for e in reversed(edges):
            if a > e[5]:
                return False
            if e[0] != src:
                a += e[1] + a * e[2] // 1000000
        return True

    def _quick_checks(self, src: int, dst: int, amount: int, overlay: dict[int, tuple]) -> None:
        """Fail fast, without exploring the graph, when no channel into the
        destination can carry the amount or none out of the source can
        carry at least it (every hop carries the amount plus fees)."""
        inc, g = self._inc, self.graph

        def edges(v):
            return overlay.get(v, inc[v] if v < len(inc) else ())

        if not any(e[4] <= amount <= e[5] for e in edges(dst)):
            raise RouteNotFound("Could not find a route: no channel to the destination "
                                f"can carry {amount}msat")
        peers = {g._n1[c] if g._n2[c] == src else g._n2[c]
                 for c in (g._nchans[src] or ())} if src < len(g._nchans) else set()
        peers.update(v for v, es in overlay.items() if any(e[0] == src for e in es))
        if not any(e[0] == src and e[5] >= amount for v in peers for e in edges(v)):
            raise RouteNotFound("Could not find a route: no channel of the source "
                                f"can carry {amount}msat")

    def _search(self, src, dst, amount, cltv, rf, fz, hop_weight, overlay):
        """Backward Dijkstra; (path of halves from src, amt, dly) or None."""
        inc = self._inc
        n = max(len(inc), src + 1)
        best = [_INF] * n
        amt = [0] * n
        dly = [0] * n
        cost = [0.0] * n
        nxt = [0] * n
        done = bytearray(n)
        unroutable = self.graph.unroutable_nodes
        best[dst] = s0 = amount + amount * cltv * rf
        amt[dst], dly[dst], cost[dst] = amount, cltv, float(amount)
        heap = [(s0, 0, dst)]
        pop, push, get = heapq.heappop, heapq.heappush, overlay.get
        while heap:
            s, hp, v = pop(heap)
            if done[v]:
                continue
            done[v] = 1
            if v == src:
                break
            if v != dst and v in unroutable:
                continue
            av, dv, cv = amt[v], dly[v], cost[v]
            hp1 = hp + 1
            for u, base, prop, cl, hmin, hmax, r, h in get(v, inc[v] if v < len(inc) else ()):
                if av < hmin or av > hmax:
                    continue
                if u == src:                  # our own channel: no fee, no delay
                    su = s + hop_weight
                    if su < best[u]:
                        best[u], amt[u], dly[u], cost[u], nxt[u] = su, av, dv, cv, h
                        push(heap, (su, hp1, u))
                    continue
                fee = base + av * prop // 1000000
                au = av + fee
                du = dv + cl
                cu = cv + fee * (1.0 + fz * r)
                su = cu + au * du * rf + hp1 * hop_weight
                if su < best[u]:
                    best[u], amt[u], dly[u], cost[u], nxt[u] = su, au, du, cu, h
                    push(heap, (su, hp1, u))
        if not done[src]:
            return None
        path, v, g = [], src, self.graph
        while v != dst:
            h = nxt[v]
            path.append(h)
            if h < 0:
                v = self._local_peers[-1 - h]
            else:
                c = h >> 1
                v = g._n2[c] if h & 1 == 0 else g._n1[c]
        return path, amt, dly

    def _hops(self, source: bytes, route, locals_: list[LocalChannel]) -> list[dict]:
        path, amt, dly = route
        g = self.graph
        hops = []
        for h in path:
            if h < 0:                                  # a local channel not in the graph
                lc = locals_[-1 - h]
                v, scid, d = g._nidx[lc.peer_id], lc.scid, 0 if source < lc.peer_id else 1
            else:
                c, d = h >> 1, h & 1
                v, scid = (g._n2[c] if d == 0 else g._n1[c]), g._scid[c]
            hops.append({"id": g._nid[v].hex(), "channel": scid_str(scid), "direction": d,
                         "amount_msat": amt[v], "delay": dly[v], "style": "tlv"})
        return hops
