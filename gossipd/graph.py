"""The in-memory public graph (pure: no I/O; ``gossipd/manager.py`` ties it
to validation and the gossip store).

Representation, chosen for memory and for the route finder's inner loop:

- nodes are small integers: ``_nid[i]`` node id, ``_nidx`` id -> index,
  ``_nchans[i]`` the node's channel indices, ``_nann[i]`` a tuple for its
  latest node_announcement (timestamp, features, rgb, alias, addresses,
  store offset) or None;
- channels are small integers too, with parallel ``array`` columns (scid,
  node indices, capacity in sat, announcement offset and time, flags);
- the two directions of channel ``c`` are halves ``2c`` and ``2c + 1``;
  ``_upd[h]`` is a tuple (timestamp, message_flags, channel_flags,
  cltv_expiry_delta, htlc_minimum_msat, fee_base_msat,
  fee_proportional_millionths, htlc_maximum_msat, store offset) or None.

Raw messages are not kept: they live in the gossip store, the graph keeps
their offsets.  Every mutation that makes a stored message obsolete appends
its offset to ``dead_offsets`` for the owner to delete from the store, and
every node whose incoming edges change is added to the route finders'
dirty sets (``dirty_set()``).

Rules (BOLT 7): an update or node_announcement not newer than the one held
is ignored; a node_announcement needs a channel; a spent channel accepts
only disabling updates and is forgotten 72 blocks after the spend; a
channel is pruned when its oldest direction is older than two weeks (BOLT 7
and Core Lightning: "both ends must refresh"; ``require_both_stale=True``
prunes only when both directions are stale).  Local (private) channels are
never pruned.
"""
from __future__ import annotations

from array import array

from common.features import KNOWN_BITS

from .validate import ChannelAnnouncement, ChannelUpdate, NodeAnnouncement, decode_addresses

TWO_WEEKS = 1_209_600
SPENT_DELAY_BLOCKS = 72

# channel flags (_cflag)
CF_PRIVATE = 1          # local/unannounced channel
CF_UNROUTABLE = 2       # unknown even feature bit in the announcement
CF_DYING = 4            # funding spent, waiting SPENT_DELAY_BLOCKS

# apply_update / apply_node_announcement results
ACCEPTED = "accepted"
OLD = "old"             # not newer than what we hold: ignored
UNKNOWN = "unknown"     # no such channel / node without channel
SPENT = "spent"         # update of a spent channel that does not disable it

_KNOWN_MASK = sum(1 << b for b in KNOWN_BITS)


def has_unknown_even_bits(features: bytes) -> bool:
    """BOLT 9: an unknown even (compulsory) bit (fast: one int mask)."""
    if not features:
        return False
    v = int.from_bytes(features, "big") & ~_KNOWN_MASK
    return bool(v & int("55" * len(features), 16))


# _upd tuple fields
U_TS, U_MFLAGS, U_CFLAGS, U_CLTV, U_HMIN, U_BASE, U_PROP, U_HMAX, U_OFF = range(9)


class Graph:
    def __init__(self) -> None:
        self._nid: list[bytes | None] = []
        self._nidx: dict[bytes, int] = {}
        self._nchans: list[list[int] | None] = []
        self._nann: list[tuple | None] = []
        self._free_nodes: list[int] = []
        self._cidx: dict[int, int] = {}
        self._scid = array("Q")
        self._n1 = array("l")
        self._n2 = array("l")
        self._cap = array("q")
        self._aoff = array("q")
        self._ats = array("L")
        self._cflag = bytearray()
        self._feat: dict[int, bytes] = {}
        self._dying: dict[int, int] = {}
        self._free_chans: list[int] = []
        self._upd: list[tuple | None] = []
        self._dirty: list[set[int]] = []
        self.unroutable_nodes: set[int] = set()     # unknown even node feature bits
        self.dead_offsets: list[int] = []

    # -- sizes and lookups -----------------------------------------------------
    @property
    def node_count(self) -> int:
        return len(self._nidx)

    @property
    def channel_count(self) -> int:
        return len(self._cidx)

    def node_ids(self) -> list[bytes]:
        return list(self._nidx)

    def scids(self) -> list[int]:
        return list(self._cidx)

    def has_channel(self, scid: int) -> bool:
        return scid in self._cidx

    def has_node(self, node_id: bytes) -> bool:
        return node_id in self._nidx

    def channel_nodes(self, scid: int) -> tuple[bytes, bytes]:
        c = self._cidx[scid]
        return self._nid[self._n1[c]], self._nid[self._n2[c]]

    def capacity_sat(self, scid: int) -> int:
        return self._cap[self._cidx[scid]]

    def ann_offset(self, scid: int) -> int:
        return self._aoff[self._cidx[scid]]

    def half(self, scid: int, direction: int) -> tuple | None:
        """The _upd tuple of one direction (see U_* indices) or None."""
        c = self._cidx.get(scid)
        return None if c is None else self._upd[2 * c + direction]

    def channels_of(self, node_id: bytes) -> list[int]:
        n = self._nidx.get(node_id)
        return [] if n is None else [self._scid[c] for c in self._nchans[n]]

    def node_announcement(self, node_id: bytes) -> tuple | None:
        """(timestamp, features, rgb, alias, addresses, offset) or None."""
        n = self._nidx.get(node_id)
        return None if n is None else self._nann[n]

    def is_private(self, scid: int) -> bool:
        return bool(self._cflag[self._cidx[scid]] & CF_PRIVATE)

    def dirty_set(self) -> set[int]:
        """A set the graph fills with node indices whose incoming edges
        changed (one per route finder)."""
        s: set[int] = set(range(len(self._nid)))
        self._dirty.append(s)
        return s

    def _touch(self, n: int) -> None:
        for s in self._dirty:
            s.add(n)

    # -- nodes -----------------------------------------------------------------
    def _node(self, node_id: bytes) -> int:
        n = self._nidx.get(node_id)
        if n is not None:
            return n
        if self._free_nodes:
            n = self._free_nodes.pop()
            self._nid[n], self._nchans[n], self._nann[n] = node_id, [], None
        else:
            n = len(self._nid)
            self._nid.append(node_id)
            self._nchans.append([])
            self._nann.append(None)
        self._nidx[node_id] = n
        self._touch(n)
        return n

    def _drop_node_if_bare(self, n: int) -> None:
        if self._nchans[n]:
            return
        ann = self._nann[n]
        if ann is not None and ann[5] >= 0:
            self.dead_offsets.append(ann[5])
        del self._nidx[self._nid[n]]
        self._nid[n], self._nchans[n], self._nann[n] = None, None, None
        self._free_nodes.append(n)
        self.unroutable_nodes.discard(n)
        self._touch(n)

    def apply_node_announcement(self, na: NodeAnnouncement, offset: int = -1) -> str:
        n = self._nidx.get(na.node_id)
        if n is None:
            return UNKNOWN
        old = self._nann[n]
        if old is not None:
            if na.timestamp <= old[0]:
                return OLD
            if old[5] >= 0:
                self.dead_offsets.append(old[5])
        self._nann[n] = (na.timestamp, na.features, na.rgb_color, na.alias, na.addresses, offset)
        if has_unknown_even_bits(na.features):
            self.unroutable_nodes.add(n)
        else:
            self.unroutable_nodes.discard(n)
        return ACCEPTED

    # -- channels --------------------------------------------------------------
    def add_channel(self, ann: ChannelAnnouncement, capacity_sat: int, timestamp: int,
                    offset: int = -1) -> bool:
        """A validated channel_announcement whose funding output the master
        confirmed.  False if the scid is already known."""
        return self._add(ann.scid, ann.node_id_1, ann.node_id_2, capacity_sat, timestamp, offset,
                         ann.features, 0)

    def add_private_channel(self, scid: int, node_id_1: bytes, node_id_2: bytes,
                            capacity_sat: int, timestamp: int) -> bool:
        """One of our own unannounced channels (its updates are private)."""
        a, b = sorted((node_id_1, node_id_2))
        return self._add(scid, a, b, capacity_sat, timestamp, -1, b"", CF_PRIVATE)

    def _add(self, scid, id1, id2, cap, ts, offset, features, flags) -> bool:
        if scid in self._cidx:
            return False
        if features and has_unknown_even_bits(features):
            flags |= CF_UNROUTABLE
        n1, n2 = self._node(id1), self._node(id2)
        if self._free_chans:
            c = self._free_chans.pop()
            self._scid[c], self._n1[c], self._n2[c], self._cap[c] = scid, n1, n2, cap
            self._aoff[c], self._ats[c], self._cflag[c] = offset, ts, flags
            self._upd[2 * c] = self._upd[2 * c + 1] = None
        else:
            c = len(self._scid)
            self._scid.append(scid)
            self._n1.append(n1)
            self._n2.append(n2)
            self._cap.append(cap)
            self._aoff.append(offset)
            self._ats.append(ts)
            self._cflag.append(flags)
            self._upd.append(None)
            self._upd.append(None)
        if features:
            self._feat[c] = features
        self._cidx[scid] = c
        self._nchans[n1].append(c)
        self._nchans[n2].append(c)
        return True

    def apply_update(self, upd: ChannelUpdate, offset: int = -1) -> str:
        """A validated channel_update (signature checked against the
        announcement's node for its direction)."""
        c = self._cidx.get(upd.scid)
        if c is None:
            return UNKNOWN
        return self.apply_update_fields(c, upd.timestamp, upd.message_flags, upd.channel_flags,
                                        upd.cltv_expiry_delta, upd.htlc_minimum_msat,
                                        upd.fee_base_msat, upd.fee_proportional_millionths,
                                        upd.htlc_maximum_msat, offset)

    def apply_update_fields(self, c, ts, mflags, cflags, cltv, hmin, base, prop, hmax,
                            offset) -> str:
        h = 2 * c + (cflags & 1)
        old = self._upd[h]
        if old is not None and ts <= old[0]:
            return OLD
        if self._cflag[c] & CF_DYING and not cflags & 2:
            return SPENT
        if old is not None and old[8] >= 0:
            self.dead_offsets.append(old[8])
        self._upd[h] = (ts, mflags, cflags, cltv, hmin, base, prop, hmax, offset)
        self._touch(self._n1[c] if cflags & 1 else self._n2[c])
        return ACCEPTED

    def remove_channel(self, scid: int) -> bool:
        c = self._cidx.pop(scid, None)
        if c is None:
            return False
        if self._aoff[c] >= 0:
            self.dead_offsets.append(self._aoff[c])
        for h in (2 * c, 2 * c + 1):
            u = self._upd[h]
            if u is not None and u[8] >= 0:
                self.dead_offsets.append(u[8])
            self._upd[h] = None
        self._feat.pop(c, None)
        self._dying.pop(c, None)
        for n in (self._n1[c], self._n2[c]):
            self._nchans[n].remove(c)
            self._touch(n)
            self._drop_node_if_bare(n)
        self._free_chans.append(c)
        return True

    def funding_spent(self, scid: int, blockheight: int) -> bool:
        """The funding output was spent at ``blockheight``: the channel stays
        routable (maybe a splice) and is forgotten 72 blocks later."""
        c = self._cidx.get(scid)
        if c is None or c in self._dying:
            return False
        self._dying[c] = blockheight
        self._cflag[c] |= CF_DYING
        return True

    def new_blockheight(self, height: int) -> list[int]:
        """Forget the channels spent at least 72 blocks ago; their scids."""
        gone = [self._scid[c] for c, h in self._dying.items() if h + SPENT_DELAY_BLOCKS <= height]
        for scid in gone:
            self.remove_channel(scid)
        return gone

    def prune(self, now: int, require_both_stale: bool = False, max_age: int = TWO_WEEKS) -> list[int]:
        """Remove stale public channels (see module docstring); their scids.
        A direction without update counts from the announcement's time."""
        cutoff = now - max_age
        upd, ats, flag, scid = self._upd, self._ats, self._cflag, self._scid
        gone = []
        for c in self._cidx.values():
            if flag[c] & CF_PRIVATE:
                continue
            u0, u1 = upd[2 * c], upd[2 * c + 1]
            t0 = u0[0] if u0 is not None else ats[c]
            t1 = u1[0] if u1 is not None else ats[c]
            if (max(t0, t1) if require_both_stale else min(t0, t1)) < cutoff:
                gone.append(scid[c])
        for s in gone:
            self.remove_channel(s)
        return gone

    def remap_offsets(self, mapping: dict[int, int]) -> None:
        """After store compaction: old offset -> new offset everywhere."""
        get = mapping.get
        for c in self._cidx.values():
            if self._aoff[c] >= 0:
                self._aoff[c] = get(self._aoff[c], -1)
            for h in (2 * c, 2 * c + 1):
                u = self._upd[h]
                if u is not None and u[8] >= 0:
                    self._upd[h] = u[:8] + (get(u[8], -1),)
        for n, a in enumerate(self._nann):
            if a is not None and a[5] >= 0:
                self._nann[n] = a[:5] + (get(a[5], -1),)

    def take_dead_offsets(self) -> list[int]:
        dead, self.dead_offsets = self.dead_offsets, []
        return dead

    # -- views for listchannels / listnodes (wire/csv/gossipd.csv gossip_channel, gossip_node)
    def channel_views(self, scid: int) -> list[dict]:
        c = self._cidx[scid]
        out = []
        for d in (0, 1):
            u = self._upd[2 * c + d]
            if u is None:
                continue
            src, dst = (self._n1[c], self._n2[c]) if d == 0 else (self._n2[c], self._n1[c])
            out.append({
                "source": self._nid[src], "destination": self._nid[dst],
                "short_channel_id": scid, "direction": d,
                "public": not self._cflag[c] & CF_PRIVATE,
                "amount_msat": self._cap[c] * 1000, "message_flags": u[U_MFLAGS],
                "channel_flags": u[U_CFLAGS], "last_update": u[U_TS], "base_fee_millisatoshi": u[U_BASE],
                "fee_per_millionth": u[U_PROP], "delay": u[U_CLTV],
                "htlc_minimum_msat": u[U_HMIN], "htlc_maximum_msat": u[U_HMAX],
                "features": self._feat.get(c, b"")})
        return out

    def node_view(self, node_id: bytes) -> dict | None:
        n = self._nidx.get(node_id)
        if n is None:
            return None
        a = self._nann[n]
        if a is None:
            return {"nodeid": node_id, "announcement": None}
        return {"nodeid": node_id, "announcement": {
            "alias": a[3].rstrip(b"\0").decode("utf-8", "replace"), "color": a[2], "last_timestamp": a[0],
            "features": a[1], "addresses": decode_addresses(a[4])}}

    def set_offsets(self, scid: int, ann: int | None = None,
                    update_dir: int | None = None, update: int = -1) -> None:
        """Record where the owner stored a message just applied."""
        c = self._cidx[scid]
        if ann is not None:
            self._aoff[c] = ann
        if update_dir is not None:
            h = 2 * c + update_dir
            self._upd[h] = self._upd[h][:8] + (update,)

    def set_node_offset(self, node_id: bytes, offset: int) -> None:
        n = self._nidx[node_id]
        self._nann[n] = self._nann[n][:5] + (offset,)
