"""Test support: two Channels wired back to back through an in-memory pipe.

Messages go through the real wire codec (encoded on send, decoded on
delivery), in order per direction; the two directions interleave as the
test decides.  Each :class:`Node` keeps a "database" (the last
:meth:`Channel.to_dict` it persisted) so a test can crash it and resume from
there, as the master would.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import wire
from bitcoin.hashes import sha256
from bitcoin.tx import OutPoint
from common.commitment import HtlcInfo, Side

from channeld.core.closing import ClosingResult
from channeld.core.htlcs import CommitmentView
from channeld.core.params import ChannelParams, ChannelType, PartyConfig
from channeld.core.signer import LocalSigner
from channeld.core.state import Channel, FeerateBounds
from channeld.core.status import HtlcChanges

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
    db: dict[str, Any] | None = None
    #: HTLC changes reported by the channel, for accounting by tests
    changes: list[HtlcChanges] = field(default_factory=list)

    def persist(self) -> None:
        self.db = self.channel.to_dict()

    def crash(self) -> None:
        """Lose everything since the last persist; come back disconnected."""
        assert self.db is not None
        self.channel = Channel.from_dict(self.db, self.signer, fee_bounds=self.fee_bounds)


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


# --- invariants ------------------------------------------------------------------------
def _mirror(v: CommitmentView) -> CommitmentView:
    """The same commitment described from the other node (sides swapped)."""
    return CommitmentView(v.holder.other, v.number, v.feerate_per_kw, v.remote_msat, v.local_msat,
                          tuple(sorted((HtlcInfo(h.offerer.other, h.amount_msat, h.payment_hash,
                                                 h.cltv_expiry, h.htlc_id) for h in v.htlcs),
                                       key=_htlc_key)))


def _htlc_key(h: HtlcInfo) -> tuple:
    return (h.offerer, h.htlc_id)


def _views_in_range(ch: Channel, holder: Side) -> list[int]:
    lo, hi = ch.log.oldest[holder], ch.log.latest[holder] + 1
    return list(range(lo, hi + 1))


def check_pair(a: Node, b: Node, *, signatures: bool = False, seen: set | None = None) -> None:
    """Assert what must hold between two channels at any moment:

    * both build byte-identical transactions for every commitment both hold;
    * every commitment either may build conserves the funding amount;
    * their HTLC logs agree on every HTLC both know;
    * (``signatures``) each side's latest commitment and HTLC transactions
      carry valid signatures, and revealed secrets verify against the shachain.
    """
    from common.shachain import per_commitment_secret
    funding = a.channel.params.funding_msat
    for x, y in ((a, b), (b, a)):
        cx, cy = x.channel, y.channel
        # identical transactions for the commitments both sides know
        lo = max(cx.log.oldest[Side.LOCAL], cy.log.oldest[Side.REMOTE])
        hi = min(cx.log.latest[Side.LOCAL], cy.log.latest[Side.REMOTE])
        for n in range(lo, hi + 1):
            vx = cx.log.view(Side.LOCAL, n)
            vx = CommitmentView(vx.holder, n, vx.feerate_per_kw, vx.local_msat, vx.remote_msat,
                                tuple(sorted(vx.htlcs, key=_htlc_key)))
            vy = _mirror(cy.log.view(Side.REMOTE, n))
            assert vx == vy, f"{x.name}'s commitment {n} differs from {y.name}'s view:\n{vx}\n{vy}"
            assert cy.remote_points[n] == x.signer.per_commitment_point(n)
            key = (x.name, vx)
            if seen is not None and key in seen:
                continue
            built = cx.local_commitment(n)
            mine = built.tx.serialize()
            theirs = cy.remote_commitment(n).tx.serialize()
            assert mine == theirs, f"{x.name}'s commitment {n} tx differs from {y.name}'s"
            values = [o.value for o in built.tx.outputs]
            assert values and min(values) > 0 and sum(values) <= cx.params.funding_sat
            if seen is not None:
                seen.add(key)
        # conservation and sanity of every view
        for holder in Side:
            for n in _views_in_range(cx, holder):
                v = cx.log.view(holder, n)
                total = v.local_msat + v.remote_msat + sum(h.amount_msat for h in v.htlcs)
                assert total == funding, f"{x.name} {holder.name} {n}: {total} != {funding}"
                assert v.local_msat >= 0 and v.remote_msat >= 0, f"{x.name} negative balance in {v}"
        # HTLCs known to both agree
        for h in cx.log.live():
            other = cy.log.get(h.offerer.other, h.htlc_id)
            if other is not None:
                assert (other.amount_msat, other.payment_hash, other.cltv_expiry) == \
                    (h.amount_msat, h.payment_hash, h.cltv_expiry), f"HTLC {h.key} differs"
        assert cx.to_us_msat + cx.to_them_msat == funding
        if signatures:
            _check_signed_local(cx)
            o = cx.log.oldest[Side.REMOTE]
            for k in {0, o // 2, o - 1} if o > 0 else ():
                assert cx.remote_secrets.get_commitment_secret(k) == \
                    per_commitment_secret(y.signer._seed, k)


def _check_signed_local(ch: Channel) -> None:
    from bitcoin.keys import verify_digest_der
    from bitcoin.tx import SIGHASH_ALL
    from common.commitment import commitment_sighash
    if ch.local_sig is None:
        return
    tx, htlc_txs = ch.latest_local_commitment_tx()
    c = ch.local_commitment(ch.log.latest[Side.LOCAL])
    assert tx.txid() == c.tx.txid()
    wit = tx.inputs[0].witness
    digest = commitment_sighash(c.tx, c.params)
    pks = sorted([ch.params.local.funding_pubkey, ch.params.remote.funding_pubkey])
    for pk, sig in zip(pks, wit[1:3]):
        assert sig[-1] == SIGHASH_ALL and verify_digest_der(pk, sig[:-1], digest)
    keys = c.params.keys
    for h in htlc_txs:
        w = h.tx.inputs[0].witness
        assert h.tx.inputs[0].prevout.txid == tx.txid()
        theirs, ours = w[1], w[2]
        assert h.verify_counterparty_sig(keys.counterparty_htlc_pubkey, theirs[:-1])
        assert verify_digest_der(keys.holder_htlc_pubkey, ours[:-1], h.sighash(SIGHASH_ALL))
