"""Two channel cores wired back to back through an in-memory pipe, in one
process: the zygote's warm-up runs a channel through it (so a forked channeld
starts with the core's code paths already touched), and tests drive the
core with it (tests/channel_testing.py adds the invariant checks).

Messages go through the real wire codec (encoded on send, decoded on
delivery), in order per direction; the two directions interleave as the
test decides.  Each :class:`Node` keeps a "database" (the `channeld_core`
encoding of the last :meth:`Channel.to_dict` it persisted, through the
codec of wire/csv/channeld.csv) so a test can crash it and resume from
there, as the master would.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import wire
from bitcoin.hashes import sha256
from bitcoin.tx import OutPoint
from common.commitment import Side
from wire.internal import internal_schema

from .closing import ClosingResult
from .params import ChannelParams, ChannelType, PartyConfig
from .signer import LocalSigner
from .state import Channel, FeerateBounds
from .status import HtlcChanges

WireMsg = tuple[str, dict[str, Any]]


def party_config(signer: LocalSigner, **overrides: Any) -> PartyConfig:
    values: dict[str, Any] = dict(
        dust_limit_sat=546, max_htlc_value_in_flight_msat=10**12, channel_reserve_sat=10_000,
        htlc_minimum_msat=1, to_self_delay=144, max_accepted_htlcs=483,
        funding_pubkey=signer.funding_pubkey(), basepoints=signer.basepoints())
    values.update(overrides)
    return PartyConfig(**values)


def p2wpkh(tag: bytes) -> bytes:
    return b"\x00\x14" + (tag * 20)[:20]


@dataclass
class Node:
    name: str
    signer: LocalSigner
    channel: Channel
    fee_bounds: FeerateBounds = field(default_factory=FeerateBounds)
    #: the stored channel: its `channeld_core` encoding, as the master keeps it
    db: bytes | None = None
    #: HTLC changes reported by the channel, for accounting by tests
    changes: list[HtlcChanges] = field(default_factory=list)

    def persist(self) -> None:
        self.db = internal_schema("channeld").encode_subtype("channeld_core", self.channel.to_dict())

    def crash(self) -> None:
        """Lose everything since the last persist; come back disconnected."""
        assert self.db is not None
        stored = internal_schema("channeld").decode_subtype("channeld_core", self.db)
        self.channel = Channel.from_dict(stored, self.signer, fee_bounds=self.fee_bounds)


def make_pair(*, funding_sat: int = 10_000_000, push_msat: int = 0, feerate_per_kw: int = 2500,
              anchors: bool = False, opener_overrides: Mapping[str, Any] | None = None,
              accepter_overrides: Mapping[str, Any] | None = None, seed: bytes = b"pair",
              fee_bounds: FeerateBounds = FeerateBounds(), ready: bool = True) -> tuple[Node, Node]:
    """A funded channel between opener A and accepter B (channel_ready exchanged
    if ``ready``)."""
    sa, sb = LocalSigner.from_seed(seed + b"A"), LocalSigner.from_seed(seed + b"B")
    ca = party_config(sa, **(opener_overrides or {}))
    cb = party_config(sb, **(accepter_overrides or {}))
    outpoint = OutPoint(sha256(b"funding" + seed), 1)
    ctype = ChannelType(anchors=anchors)
    pa = ChannelParams(outpoint, funding_sat, Side.LOCAL, ca, cb, ctype)
    pb = ChannelParams(outpoint, funding_sat, Side.REMOTE, cb, ca, ctype)
    a = Channel.new(pa, sa, push_msat=push_msat, feerate_per_kw=feerate_per_kw,
                    remote_first_per_commitment_point=sb.per_commitment_point(0),
                    local_shutdown_script=None if ca.upfront_shutdown_script else p2wpkh(b"A"),
                    fee_bounds=fee_bounds)
    b = Channel.new(pb, sb, push_msat=push_msat, feerate_per_kw=feerate_per_kw,
                    remote_first_per_commitment_point=sa.per_commitment_point(0),
                    local_shutdown_script=None if cb.upfront_shutdown_script else p2wpkh(b"B"),
                    fee_bounds=fee_bounds)
    # funding_created / funding_signed
    b.recv_initial_commitment_sig(a.initial_remote_commitment_sig())
    a.recv_initial_commitment_sig(b.initial_remote_commitment_sig())
    na, nb = Node("A", sa, a, fee_bounds), Node("B", sb, b, fee_bounds)
    if ready:
        b.recv_channel_ready(roundtrip(a.channel_ready_msg())[1])
        a.recv_channel_ready(roundtrip(b.channel_ready_msg())[1])
    na.persist()
    nb.persist()
    return na, nb


def roundtrip(msg: WireMsg) -> WireMsg:
    """Through the codec and back, as the peer would see it."""
    name, fields = wire.bolt_schema().decode(wire.bolt_schema().encode(*msg))
    assert name == msg[0]
    return name, fields


class Pipe:
    """Ordered queues between two nodes, with a dispatch table of receive handlers."""

    def __init__(self, a: Node, b: Node) -> None:
        self.nodes = {"A": a, "B": b}
        self.queues: dict[str, deque[bytes]] = {"A": deque(), "B": deque()}  # keyed by receiver
        #: messages handed back by the receiving side for the test to look at
        self.closing_results: dict[str, ClosingResult] = {}
        self.preimages: dict[str, list[bytes]] = {"A": [], "B": []}

    def peer_of(self, name: str) -> str:
        return "B" if name == "A" else "A"

    def send(self, sender: str, *msgs: WireMsg | None) -> None:
        for m in msgs:
            if m is not None:
                self.queues[self.peer_of(sender)].append(wire.bolt_schema().encode(*m))

    def pending(self, receiver: str) -> int:
        return len(self.queues[receiver])

    def deliver(self, receiver: str) -> WireMsg:
        """Deliver the oldest message queued for ``receiver``; replies are queued."""
        raw = self.queues[receiver].popleft()
        name, fields = wire.bolt_schema().decode(raw)
        assert name is not None
        node = self.nodes[receiver]
        handler = self._handlers()[name]
        handler(receiver, node, fields)
        return name, fields

    def deliver_all(self, *, auto: bool = True, limit: int = 1000) -> None:
        """Deliver until both queues are empty; with ``auto`` the receivers also
        revoke and commit whenever they can (a well-behaved shell)."""
        for _ in range(limit):
            progressed = False
            for r in ("A", "B"):
                if self.queues[r]:
                    self.deliver(r)
                    progressed = True
                if auto:
                    progressed |= self.react(r)
            if not progressed:
                return
        raise AssertionError("pipe did not settle")

    def react(self, name: str) -> bool:
        """What a shell does after each message: revoke if owed, sign if pending."""
        node, did = self.nodes[name], False
        ch = node.channel
        if not ch.connected:
            return False
        if ch.revocation_pending:
            node.persist()
            ch.mark_persisted()
            rev = ch.revoke()
            node.changes.append(rev.changes)
            node.persist()
            self.send(name, rev.message)
            did = True
        cs = ch.send_commitment() if ch.state.value in ("normal", "shutting_down") else None
        if cs is not None:
            node.persist()
            self.send(name, cs)
            did = True
        return did

    def disconnect(self) -> None:
        for q in self.queues.values():
            q.clear()
        for n in self.nodes.values():
            if n.channel.connected:
                n.channel.disconnect()

    def reconnect(self) -> None:
        """Exchange channel_reestablish and queue the retransmissions."""
        a, b = self.nodes["A"].channel, self.nodes["B"].channel
        ra, rb = roundtrip(a.reestablish_msg()), roundtrip(b.reestablish_msg())
        for name, ch, theirs in (("A", a, rb), ("B", b, ra)):
            res = ch.recv_reestablish(theirs[1])
            if res.changes:
                self.nodes[name].changes.append(res.changes)
            self.nodes[name].persist()
            self.send(name, *res.messages)

    # -- receive handlers: one per message type, explicit -------------------------------
    def _handlers(self) -> dict[str, Callable[[str, Node, dict[str, Any]], None]]:
        return {
            "update_add_htlc": lambda r, n, f: n.channel.recv_update_add_htlc(f),
            "update_fulfill_htlc": lambda r, n, f: self.preimages[r].append(
                n.channel.recv_update_fulfill_htlc(f)),
            "update_fail_htlc": lambda r, n, f: n.channel.recv_update_fail_htlc(f),
            "update_fail_malformed_htlc": lambda r, n, f: n.channel.recv_update_fail_malformed_htlc(f),
            "update_fee": lambda r, n, f: n.channel.recv_update_fee(f),
            "commitment_signed": self._on_commitment_signed,
            "revoke_and_ack": self._on_revoke_and_ack,
            "channel_ready": lambda r, n, f: n.channel.recv_channel_ready(f),
            "shutdown": self._on_shutdown,
            "closing_signed": self._on_closing_signed,
        }

    def _on_commitment_signed(self, r: str, n: Node, f: dict[str, Any]) -> None:
        n.channel.recv_commitment_signed(f)

    def _on_revoke_and_ack(self, r: str, n: Node, f: dict[str, Any]) -> None:
        n.changes.append(n.channel.recv_revoke_and_ack(f))
        n.persist()

    def _on_shutdown(self, r: str, n: Node, f: dict[str, Any]) -> None:
        n.channel.recv_shutdown(f)

    def _on_closing_signed(self, r: str, n: Node, f: dict[str, Any]) -> None:
        res = n.channel.recv_closing_signed(f)
        if res.tx is not None:
            self.closing_results[r] = res
        self.send(r, res.reply)
