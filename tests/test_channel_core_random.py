"""Two channel cores driven against each other by long seeded random runs.

Each step is one of: an HTLC add (amounts from dust to large), a fulfill /
fail / fail_malformed of a locked-in incoming HTLC, an update_fee by the
opener, a commitment_signed, a revoke_and_ack (after persisting), delivering
the next message in either direction (so the directions interleave freely),
a disconnection with channel_reestablish, or a crash of one side (it resumes
from its last persisted state, possibly stale) with a reconnection.

After every step :func:`check_pair` asserts that both sides build
byte-identical commitment transactions, that every commitment conserves the
funding amount and has no negative balance, and (periodically) that the
latest commitments are validly signed and revealed secrets verify against
the shachain.  A "master" per side checks each HTLC locks in and resolves
at most once, fulfilled preimages match, and the final balances equal the
initial ones plus the settled payments.  Each run ends by settling every
HTLC and closing the channel cooperatively.
"""
from __future__ import annotations

import os
import random

import pytest

from bitcoin.hashes import sha256
from channeld.core import ChannelState, HtlcChanges, RemovalKind, UsageError
from channel_testing import Node, Pipe, check_pair, make_pair

ONION = bytes(1366)
FUNDING_SAT = 5_000_000
STEPS = 600
#: more seeds for a longer soak: CHANNEL_CORE_RANDOM_SEEDS=500 pytest -n 8 ...
SEEDS = int(os.environ.get("CHANNEL_CORE_RANDOM_SEEDS", "6"))
BLOCKHEIGHT = 500


class Master:
    """What the master would track for one side, from the reported changes."""

    def __init__(self, node: Node, initial_msat: int) -> None:
        self.node = node
        self.expected_msat = initial_msat
        self.locked: dict[tuple[str, int], bytes] = {}
        self.resolved: set[tuple[str, int]] = set()
        self.seen = 0

    def absorb(self, preimages: dict[bytes, bytes]) -> None:
        for ch in self.node.changes[self.seen:]:
            self._one(ch, preimages)
        self.seen = len(self.node.changes)

    def _one(self, changes: HtlcChanges, preimages: dict[bytes, bytes]) -> None:
        for h in changes.locked_in:
            key = (h.direction, h.htlc_id)
            assert key not in self.locked and key not in self.resolved, f"{key} locked in twice"
            self.locked[key] = h.payment_hash
        for h in changes.resolved:
            key = (h.direction, h.htlc_id)
            assert key in self.locked, f"{key} resolved without lock-in"
            assert key not in self.resolved, f"{key} resolved twice"
            assert self.locked.pop(key) == h.payment_hash
            self.resolved.add(key)
            if h.removal is RemovalKind.FULFILL:
                assert h.preimage is not None and sha256(h.preimage) == h.payment_hash
                assert preimages[h.payment_hash] == h.preimage
                self.expected_msat += h.amount_msat if h.direction == "in" else -h.amount_msat


class Run:
    def __init__(self, seed: int, anchors: bool) -> None:
        self.rng = random.Random(seed)
        # "tight" runs: a small channel at high feerates, where fees, reserves,
        # dust trimming and update_fee races decide most outcomes
        self.tight = seed % 3 == 2
        self.funding_sat = 400_000 if self.tight else FUNDING_SAT
        push = self.rng.choice([0, self.funding_sat * 200, self.funding_sat * 500])
        feerate = self.rng.choice([2500, 10_000, 20_000] if self.tight else [253, 2500, 7500])
        self.max_fee = 40_000 if self.tight else 12_000
        self.a, self.b = make_pair(funding_sat=self.funding_sat, push_msat=push, feerate_per_kw=feerate,
                                   anchors=anchors, seed=b"run%d" % seed,
                                   opener_overrides=dict(max_accepted_htlcs=self.rng.choice([5, 30, 483])),
                                   accepter_overrides=dict(htlc_minimum_msat=self.rng.choice([1, 1000])))
        self.pipe = Pipe(self.a, self.b)
        self.nodes = {"A": self.a, "B": self.b}
        self.masters = {"A": Master(self.a, self.funding_sat * 1000 - push), "B": Master(self.b, push)}
        self.preimages: dict[bytes, bytes] = {}
        self.stats: dict[str, int] = {}

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    # -- actions --------------------------------------------------------------------------
    def act_add(self, name: str) -> None:
        ch = self.nodes[name].channel
        preimage = self.rng.randbytes(32)
        k = self.rng.random()
        scale = self.funding_sat // 1000                  # 1% of the channel, in msat / 10
        if k < 0.35:
            amount = self.rng.randint(1, 700_000 if not self.tight else 20_000_000)  # near dust
        elif k < 0.9:
            amount = self.rng.randint(700_000, 12 * scale * 1000)
        elif k < 0.95:
            amount = self.rng.randint(1, 120 * scale * 1000)
        else:
            amount = max(ch.spendable_msat, 1)             # exactly what we can afford
        msg = ch.add_htlc(amount, sha256(preimage), BLOCKHEIGHT + self.rng.randint(1, 200), ONION,
                          BLOCKHEIGHT)
        self.preimages[sha256(preimage)] = preimage
        self.pipe.send(name, msg)
        self.count("add")

    def act_remove(self, name: str) -> None:
        ch = self.nodes[name].channel
        ready = [h for h in ch.htlcs() if h.direction == "in" and h.state == "RCVD_ADD_ACK_REVOCATION"]
        if not ready:
            return
        h = self.rng.choice(ready)
        k = self.rng.random()
        if k < 0.5:
            msg = ch.fulfill_htlc(h.htlc_id, self.preimages[h.payment_hash])
        elif k < 0.85:
            msg = ch.fail_htlc(h.htlc_id, self.rng.randbytes(self.rng.randint(0, 300)))
        else:
            msg = ch.fail_malformed_htlc(h.htlc_id, sha256(ONION), 0x8000 | 0x4000 | 5)
        self.pipe.send(name, msg)
        self.count(msg[0])

    def act_fee(self, name: str) -> None:
        if name == "A":
            self.pipe.send(name, self.a.channel.update_fee(self.rng.randint(253, self.max_fee)))
            self.count("update_fee")

    def act_commit(self, name: str) -> None:
        node = self.nodes[name]
        cs = node.channel.send_commitment()
        if cs is not None:
            node.persist()            # BOLT 2 / CLN: store before sending commitment_signed
            self.pipe.send(name, cs)
            self.count("commit")

    def act_revoke(self, name: str) -> None:
        node = self.nodes[name]
        if not node.channel.revocation_pending:
            return
        node.persist()
        node.channel.mark_persisted()
        rev = node.channel.revoke()
        node.changes.append(rev.changes)
        if self.rng.random() < 0.05:
            # Crash after the revoke_and_ack left but before the state after
            # it was stored: the reconnection must complete the revocation.
            node.changes.pop()
            self.pipe.send(name, rev.message)
            peer = self.pipe.peer_of(name)
            while self.pipe.pending(peer):      # the peer gets it (and all before it)
                self.pipe.deliver(peer)
            self.crash(name)
            self.count("crash_after_revoke")
            return
        node.persist()
        self.pipe.send(name, rev.message)
        self.count("revoke")

    def act_deliver(self, name: str) -> None:
        for _ in range(self.rng.randint(1, 3)):
            self._deliver_one(name)

    def _deliver_one(self, name: str) -> None:
        if self.pipe.pending(name) and self.nodes[name].channel.connected:
            kind, _ = self.pipe.deliver(name)
            if self.rng.random() < 0.5:
                self.nodes[name].persist()
            self.count("deliver")
            # A shell usually answers at once; sometimes later (other steps first).
            if kind == "commitment_signed" and self.rng.random() < 0.7:
                self.act_revoke(name)
            elif kind == "revoke_and_ack" and self.rng.random() < 0.5:
                self.act_commit(name)

    def reconnect(self) -> None:
        self.pipe.disconnect()
        self.pipe.reconnect()
        self.count("reconnect")

    def crash(self, name: str) -> None:
        self.pipe.disconnect()
        self.nodes[name].crash()
        self.pipe.reconnect()
        self.count("crash")

    def step(self) -> None:
        name = self.rng.choice("AB")
        r = self.rng.random()
        try:
            if r < 0.14:
                self.act_add(name)
            elif r < 0.26:
                self.act_remove(name)
            elif r < 0.29:
                self.act_fee(name)
            elif r < 0.43:
                self.act_commit(name)
            elif r < 0.55:
                self.act_revoke(name)
            elif r < 0.985:
                self.act_deliver(name)
            elif r < 0.993:
                self.reconnect()
            else:
                if self.rng.random() < 0.5:
                    self.nodes[name].persist()
                self.crash(name)
        except UsageError:
            self.count("refused")

    def absorb(self) -> None:
        for name, m in self.masters.items():
            m.absorb(self.preimages)

    # -- the end: settle everything, close ---------------------------------------------------
    def settle_and_close(self) -> None:
        for _ in range(50):
            self.pipe.deliver_all()
            self.absorb()
            pending = False
            for name, node in self.nodes.items():
                for h in node.channel.htlcs():
                    pending = True
                    if h.direction == "in" and h.state == "RCVD_ADD_ACK_REVOCATION":
                        self.pipe.send(name, node.channel.fulfill_htlc(h.htlc_id,
                                                                       self.preimages[h.payment_hash]))
            if not pending:
                break
        assert not self.a.channel.htlcs() and not self.b.channel.htlcs()
        self.pipe.deliver_all()
        check_pair(self.a, self.b, signatures=True)
        for name, node in self.nodes.items():
            assert node.channel.to_us_msat == self.masters[name].expected_msat, name
            assert not self.masters[name].locked
        # cooperative close
        self.pipe.send("B", self.b.channel.shutdown())
        self.pipe.deliver_all()
        assert self.a.channel.needs_shutdown_reply
        self.pipe.send("A", self.a.channel.shutdown())
        self.pipe.deliver_all()
        assert self.a.channel.state is ChannelState.CLOSING_NEGOTIATION
        assert self.b.channel.state is ChannelState.CLOSING_NEGOTIATION
        self.pipe.send("A", self.a.channel.start_closing())
        self.pipe.deliver_all()
        ta, tb = self.pipe.closing_results["A"].tx, self.pipe.closing_results["B"].tx
        assert ta is not None and tb is not None and ta.serialize() == tb.serialize()
        assert self.a.channel.state is self.b.channel.state is ChannelState.CLOSED


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("anchors", [False, True], ids=["static_remotekey", "anchors"])
def test_random_pair(seed: int, anchors: bool) -> None:
    run = Run(seed * 2 + anchors, anchors)
    seen: set = set()
    for i in range(STEPS):
        run.step()
        check_pair(run.a, run.b, signatures=(i % 100 == 0), seen=seen)
        run.absorb()
    run.settle_and_close()
    # the run must have exercised the protocol, not just been refused
    assert run.stats.get("commit", 0) > 15 and run.stats.get("revoke", 0) > 10, run.stats
    assert run.stats.get("update_fulfill_htlc", 0) + run.stats.get("update_fail_htlc", 0) > 3, run.stats
