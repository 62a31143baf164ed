"""The core of gossipd: validation (``validate.py``), the graph
(``graph.py``) and the gossip store (``store.py``) put together, with no
asyncio and no sockets.  The gossipd shell feeds it peer gossip and the
master's answers, and relays what it accepts.

Loading (``GossipManager.load``) rebuilds the graph from the store's live
records in one sequential read.  With ``verify=True`` every signature is
checked again: records are parsed a chunk at a time, the chunk's signatures
are verified in one batch (``SigVerifier.verify_many``, optionally over
threads) and the chunk is then applied in file order, so the result is the
same as checking one message at a time.  Records that fail are deleted from
the store.
"""
from __future__ import annotations

import hashlib
from itertools import islice
from typing import NamedTuple

from .graph import ACCEPTED, OLD, TWO_WEEKS, UNKNOWN, U_TS, Graph
from .store import (
    FLAG_DYING, FLAG_PRIVATE, STORE_CHAN_DYING, STORE_CHANNEL_AMOUNT, STORE_PRIVATE_CHANNEL,
    GossipStore, chan_dying_msg, channel_amount_msg, parse_chan_dying, parse_channel_amount,
    parse_private_channel, private_channel_msg,
)
from .validate import (
    CHANNEL_ANNOUNCEMENT, CHANNEL_UPDATE, CHANNEL_UPDATE_FIELDS, DEFAULT_VERIFIER, NODE_ANNOUNCEMENT,
    ChannelAnnouncement, GossipError, SigVerifier, check_chain, check_channel_announcement,
    check_channel_update, check_funding, check_node_announcement, hash256,
    parse_channel_announcement, parse_channel_update, parse_node_announcement,
)


FUTURE = "future"                # a timestamp too far ahead: discarded
FUTURE_SLACK = 86_400


class LoadStats(NamedTuple):
    channels: int
    updates: int
    nodes: int
    rejected: int           # records that failed validation (deleted from the store)


class GossipManager:
    """What the gossipd shell drives.  Peer gossip goes to ``handle_*``
    (a ``GossipError`` says whether to warn the peer); a new
    channel_announcement returns the scid whose funding output the shell must
    ask the master about, and ``handle_txout`` completes it.  Updates for a
    channel not yet known are kept (bounded) until its announcement is
    accepted; node_announcements likewise while a channel of the node is
    pending.  Accepted messages are appended to the store; superseded ones
    are marked deleted there."""

    ORPHAN_LIMIT = 10_000

    def __init__(self, store: GossipStore | None, chain_hash: bytes | None,
                 verifier: SigVerifier = DEFAULT_VERIFIER) -> None:
        self.graph = Graph()
        self.store = store
        self.chain_hash = chain_hash
        self.verifier = verifier
        self.pending_anns: dict[int, tuple[ChannelAnnouncement, int]] = {}
        self.orphan_updates: dict[tuple[int, int], tuple[bytes, int]] = {}
        self.pending_nodes: dict[bytes, tuple[bytes, int]] = {}
        self._dying_off: dict[int, int] = {}

    # -- store helpers -------------------------------------------------------
    def _append(self, msg: bytes, ts: int, flags: int = 0) -> int:
        return self.store.append(msg, ts, flags) if self.store is not None else -1

    def _flush_dead(self) -> None:
        dead = self.graph.take_dead_offsets()
        if self.store is not None:
            for off in dead:
                self.store.delete(off)

    def message(self, offset: int) -> bytes:
        return self.store.read(offset)

    # -- peer gossip -----------------------------------------------------------
    def handle_channel_announcement(self, raw: bytes, timestamp: int) -> int | None:
        """Validate; the scid to look up (None: already known or pending).
        ``timestamp``: when it was received (the store record's time, and
        the age of a direction that never gets an update)."""
        ann = parse_channel_announcement(raw)
        if self.graph.has_channel(ann.scid) or ann.scid in self.pending_anns:
            return None
        ann = check_channel_announcement(raw, self.chain_hash, self.verifier)
        self.pending_anns[ann.scid] = (ann, timestamp)
        return ann.scid

    def handle_txout(self, scid: int, satoshis: int | None, script_pubkey: bytes | None,
                     spent: bool = False) -> bool:
        """The master's answer about the funding output of a pending channel."""
        entry = self.pending_anns.pop(scid, None)
        if entry is None:
            return False
        ann, ts = entry
        try:
            check_funding(ann, script_pubkey, spent)
        except GossipError:
            for d in (0, 1):
                self.orphan_updates.pop((scid, d), None)
            self._drop_pending_nodes()
            return False
        self.graph.add_channel(ann, satoshis, ts)
        if self.store is not None:
            off, _amount = self.store.append_many([(ann.raw, ts, 0),
                                                   (channel_amount_msg(satoshis), ts, 0)])
            self.graph.set_offsets(scid, ann=off)
        for d in (0, 1):
            orphan = self.orphan_updates.pop((scid, d), None)
            if orphan is not None:
                try:
                    self.handle_channel_update(*orphan)
                except GossipError:
                    pass
        for node_id in (ann.node_id_1, ann.node_id_2):
            pending = self.pending_nodes.pop(node_id, None)
            if pending is not None:
                self.handle_node_announcement(*pending)
        self._drop_pending_nodes()
        return True

    def _drop_pending_nodes(self) -> None:
        waiting = {n for a, _ in self.pending_anns.values() for n in (a.node_id_1, a.node_id_2)}
        for node_id in [n for n in self.pending_nodes if n not in waiting]:
            del self.pending_nodes[node_id]

    def handle_channel_update(self, raw: bytes, now: int | None = None) -> str:
        """``now`` (unix time), if given, discards updates stamped more than
        a day ahead of it (BOLT 7: "unreasonably far in the future")."""
        upd = parse_channel_update(raw)
        check_chain(upd.chain_hash, self.chain_hash, "channel_update")
        if now is not None and upd.timestamp > now + FUTURE_SLACK:
            return FUTURE
        g, d = self.graph, upd.channel_flags & 1
        if not g.has_channel(upd.scid):
            key = (upd.scid, d)
            old = self.orphan_updates.get(key)
            if (old is None and len(self.orphan_updates) < self.ORPHAN_LIMIT) or (
                    old is not None and parse_channel_update(old[0]).timestamp < upd.timestamp):
                self.orphan_updates[key] = (raw, now)
            return UNKNOWN
        held = g.half(upd.scid, d)
        if held is not None and upd.timestamp <= held[U_TS]:
            return OLD
        check_channel_update(raw, None, g.channel_nodes(upd.scid)[d], self.verifier)
        status = g.apply_update(upd)
        if status == ACCEPTED:
            flags = FLAG_PRIVATE if g.is_private(upd.scid) else 0
            g.set_offsets(upd.scid, update_dir=d, update=self._append(raw, upd.timestamp, flags))
            self._flush_dead()
        return status

    def handle_node_announcement(self, raw: bytes, now: int | None = None) -> str:
        na = parse_node_announcement(raw)
        if now is not None and na.timestamp > now + FUTURE_SLACK:
            return FUTURE
        g = self.graph
        pending = not g.has_node(na.node_id) and any(
            na.node_id in (a.node_id_1, a.node_id_2) for a, _ in self.pending_anns.values())
        if not g.has_node(na.node_id) and not pending:
            return UNKNOWN
        held = g.node_announcement(na.node_id)
        if held is not None and na.timestamp <= held[0]:
            return OLD
        check_node_announcement(raw, self.verifier)
        if pending:
            old = self.pending_nodes.get(na.node_id)
            if old is None or parse_node_announcement(old[0]).timestamp < na.timestamp:
                self.pending_nodes[na.node_id] = (raw, now)
            return UNKNOWN
        status = g.apply_node_announcement(na)
        if status == ACCEPTED:
            g.set_node_offset(na.node_id, self._append(raw, na.timestamp))
            self._flush_dead()
        return status

    # -- chain and time --------------------------------------------------------
    def add_private_channel(self, scid: int, node_id_1: bytes, node_id_2: bytes,
                            satoshis: int, timestamp: int) -> bool:
        """One of our own unannounced channels; its updates are stored
        flagged private (never relayed)."""
        n1, n2 = sorted((node_id_1, node_id_2))
        if not self.graph.add_private_channel(scid, n1, n2, satoshis, timestamp):
            return False
        off = self._append(private_channel_msg(scid, satoshis, n1, n2), timestamp, FLAG_PRIVATE)
        self.graph.set_offsets(scid, ann=off)
        return True

    def funding_spent(self, scid: int, blockheight: int) -> bool:
        ok = self.graph.funding_spent(scid, blockheight)
        if ok and self.store is not None:
            self._dying_off[scid] = self.store.append(chan_dying_msg(scid, blockheight), 0,
                                                      FLAG_DYING)
        return ok

    def new_blockheight(self, height: int) -> list[int]:
        gone = self.graph.new_blockheight(height)
        self._forget(gone)
        return gone

    def prune(self, now: int, require_both_stale: bool = False, max_age: int = TWO_WEEKS) -> list[int]:
        gone = self.graph.prune(now, require_both_stale, max_age)
        self._forget(gone)
        return gone

    def _forget(self, scids: list[int]) -> None:
        dead = self.graph.take_dead_offsets()
        dead += [off for s in scids if (off := self._dying_off.pop(s, None)) is not None]
        if self.store is None:
            return
        for off in dead:
            if self.store.read(off)[:2] == b"\x01\x00":      # channel_announcement
                self.store.delete_channel(off)
            else:
                self.store.delete(off)

    def compact_if_needed(self, force: bool = False) -> bool:
        if self.store is None or not (force or self.store.should_compact()):
            return False
        mapping = self.store.compact()
        self.graph.remap_offsets(mapping)
        self._dying_off = {s: mapping[o] for s, o in self._dying_off.items() if o in mapping}
        return True

    # -- loading -----------------------------------------------------------------
    def load(self, verify: bool = True, threads: int = 1, chunk: int = 8192) -> LoadStats:
        """Rebuild the graph from the store (see the module docstring)."""
        g, store, chain = self.graph, self.store, self.chain_hash
        records = store.raw_records()
        unpack_update, sha256 = CHANNEL_UPDATE_FIELDS.unpack_from, hashlib.sha256
        bad: list[int] = []
        n_chan = n_upd = n_node = 0
        waiting = None                   # (ann, offset, ts) until its amount record
        chunk_nodes: dict[int, tuple[bytes, bytes]] = {}
        cidx, nid, n1s, n2s = g._cidx, g._nid, g._n1, g._n2
        while True:
            batch = list(islice(records, chunk))
            if not batch:
                break
            items: list[tuple] = []
            jobs: list[tuple] = []
            add_job = jobs.append
            for off, flags, ts, msg in batch:
                t = (msg[0] << 8) | msg[1]
                try:
                    if t == CHANNEL_UPDATE:       # the bulk: no object, fields only
                        if len(msg) < 138:
                            raise GossipError("truncated channel_update")
                        fields = unpack_update(msg, 66)
                        if chain is not None and fields[0] != chain:
                            raise GossipError("channel_update for another chain")
                        c = cidx.get(fields[1])
                        d = fields[4] & 1
                        if c is not None:
                            signer = nid[n2s[c] if d else n1s[c]]
                        else:
                            signer = chunk_nodes[fields[1]][d]
                        add_job((signer, msg[2:66], sha256(sha256(msg[66:]).digest()).digest(),
                                 True))
                        items.append((t, fields, off, 1))
                    elif t == CHANNEL_ANNOUNCEMENT:
                        ann = parse_channel_announcement(msg)
                        check_chain(ann.chain_hash, chain, "channel_announcement")
                        chunk_nodes[ann.scid] = (ann.node_id_1, ann.node_id_2)
                        for i, job in enumerate(ann.signature_checks()):
                            add_job(job + (i < 2,))
                        items.append((t, (ann, ts), off, 4))
                    elif t == NODE_ANNOUNCEMENT:
                        na = parse_node_announcement(msg)
                        add_job((na.node_id, msg[2:66], hash256(msg[66:]), True))
                        items.append((t, na, off, 1))
                    elif t == STORE_CHANNEL_AMOUNT:
                        items.append((t, parse_channel_amount(msg), off, 0))
                    elif t == STORE_CHAN_DYING:
                        items.append((t, parse_chan_dying(msg), off, 0))
                    elif t == STORE_PRIVATE_CHANNEL:
                        priv = parse_private_channel(msg)
                        chunk_nodes[priv[0]] = (priv[2], priv[3])
                        items.append((t, (priv, ts), off, 0))
                    else:
                        bad.append(off)
                except (GossipError, KeyError, ValueError):
                    bad.append(off)
            ok = self.verifier.verify_many(jobs, threads) if verify else None
            j = 0
            for t, obj, off, njobs in items:
                if ok is not None and njobs and not all(ok[j:j + njobs]):
                    j += njobs
                    bad.append(off)
                    continue
                j += njobs
                if t != STORE_CHANNEL_AMOUNT and waiting is not None:
                    bad.append(waiting[1])         # announcement without its amount
                    waiting = None
                if t == CHANNEL_UPDATE:
                    c = cidx.get(obj[1])
                    status = UNKNOWN if c is None else g.apply_update_fields(c, *obj[2:], off)
                    if status == ACCEPTED:
                        n_upd += 1
                    else:
                        bad.append(off)
                elif t == CHANNEL_ANNOUNCEMENT:
                    waiting = (obj[0], off, obj[1])
                elif t == STORE_CHANNEL_AMOUNT:
                    if waiting is None or not g.add_channel(waiting[0], obj, waiting[2], waiting[1]):
                        bad.append(off)
                        if waiting is not None:
                            bad.append(waiting[1])
                    else:
                        n_chan += 1
                    waiting = None
                elif t == NODE_ANNOUNCEMENT:
                    if g.apply_node_announcement(obj, off) == ACCEPTED:
                        n_node += 1
                    else:
                        bad.append(off)
                elif t == STORE_CHAN_DYING:
                    if g.funding_spent(*obj):
                        self._dying_off[obj[0]] = off
                    else:
                        bad.append(off)
                else:
                    (scid, sat, a, b), ts = obj
                    if g.add_private_channel(scid, a, b, sat, ts):
                        g.set_offsets(scid, ann=off)
                    else:
                        bad.append(off)
            chunk_nodes.clear()
            if waiting is not None:              # its amount record is in the next chunk
                chunk_nodes[waiting[0].scid] = (waiting[0].node_id_1, waiting[0].node_id_2)
        if waiting is not None:
            bad.append(waiting[1])
        store.release()
        for off in bad:
            store.delete(off)
        self._flush_dead()
        return LoadStats(n_chan, n_upd, n_node, len(bad))
