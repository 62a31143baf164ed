"""A fuzzing peer: a BOLT 8 initiator (pyln-proto) that, after a valid
`init`, sends a running node valid, truncated, mutated and random messages
of every peer message type of `wire/csv/bolt.csv` (taken from the schema, so
a type added there is fuzzed too), plus unknown types, and checks after
each one that the node is still well:

* no BROKEN line in its log, no traceback on its stderr;
* it answers `getinfo`;
* a fresh BOLT 8 connection still gets `init`.

Hanging up on us is a correct answer to many inputs (BOLT 1: a malformed
message closes the connection): the fuzzer reconnects.  To reach the
channel code, messages that name a channel are pointed (often) at channels
the fuzzer keeps open with the node: an open in progress (we sent
`open_channel`, the node answered `accept_channel`) and a channel waiting
for its funding (we also sent `funding_created` for a made-up outpoint).

Used by tests/test_peer_fuzz.py (a bounded run in the normal suite) and
bench/peer_fuzz.py (`./run bench peer_fuzz --examples 5000`)."""
from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

import wire
from bitcoin.tx import OutPoint
from channeld.core import Channel, ChannelParams, ChannelType, PartyConfig
from channel_testing import party_config
from common.commitment import Side
from scripted_peer import PeerClosed, ScriptedPeer, await_channel_message, open_channel_fields, open_unconfirmed_channel
from wire_samples import sample_message

SCHEMA = wire.bolt_schema()
#: every peer message the schema knows: new types are fuzzed automatically
MESSAGES = sorted(SCHEMA.messages)
KINDS = ("valid", "truncated", "mutated", "random", "unknown_type")
ID_FIELDS = ("channel_id", "temporary_channel_id")
MAX_MESSAGE = 65535
CHAIN_LAG = 15.0


@dataclass(frozen=True)
class Example:
    """One message to send, described so that hypothesis can shrink it."""
    name: str
    kind: str
    seed: int
    ops: tuple[tuple[str, int, int, bytes], ...] = ()
    target: int = 0          # which known channel id to use, if the message names one

    def __str__(self) -> str:
        return f"{self.kind} {self.name} (seed {self.seed}, target {self.target}, ops {list(self.ops)})"


mutation = st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]),
                     st.integers(0, 1 << 16), st.integers(0, 255), st.binary(max_size=9))


def _spread(items: tuple[str, ...] | list[str]) -> st.SearchStrategy[str]:
    """Like sampled_from, but even: hypothesis favours the first elements of
    sampled_from (and small integers), which would leave many message types
    untried; a Random seeded from a drawn 64-bit integer picks uniformly."""
    return st.integers(0, 2**64 - 1).map(lambda i: random.Random(i).choice(items))


def examples() -> st.SearchStrategy[Example]:
    return st.builds(Example, name=_spread(MESSAGES), kind=_spread(KINDS),
                     seed=st.integers(0, 2**32), ops=st.lists(mutation, min_size=1, max_size=4).map(tuple),
                     target=st.integers(0, 7))


def mutate(raw: bytes, ops: tuple[tuple[str, int, int, bytes], ...], keep: int = 2) -> bytes:
    """Byte-level mutations after the first `keep` bytes (the message type)."""
    data = bytearray(raw)
    for op, where, value, blob in ops:
        pos = keep + where % (len(data) - keep + 1)
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << (value % 8)
        elif op == "set" and pos < len(data):
            data[pos] = value
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = blob
        elif op == "delete":
            del data[pos:pos + 1 + value % 8]
    return bytes(data[:MAX_MESSAGE])


class LogWatch:
    """What the node wrote to its log and stderr since the last look."""

    def __init__(self, node: Any) -> None:
        self.log = node.base_dir / "log"
        self.stderr = node.base_dir / "stderr"
        self.log_at = self._size(self.log)
        self.err_at = self._size(self.stderr)

    @staticmethod
    def _size(path: Any) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    def _read(self, path: Any, at: int) -> tuple[str, int]:
        try:
            with open(path, "rb") as f:
                f.seek(at)
                data = f.read()
        except OSError:
            return "", at
        # only whole lines: a line being written is read next time
        cut = data.rfind(b"\n") + 1
        return data[:cut].decode(errors="replace"), at + cut

    def problems(self) -> list[str]:
        text, self.log_at = self._read(self.log, self.log_at)
        out = [ln for ln in text.splitlines() if " BROKEN " in ln]
        err, self.err_at = self._read(self.stderr, self.err_at)
        if "Traceback" in err:
            out.append("stderr: " + err[err.index("Traceback"):][:2000])
        return out


@dataclass
class Stats:
    tried: int = 0
    hangups: int = 0
    opens: int = 0            # opens in progress we set up
    unconfirmed: int = 0      # channels awaiting a made-up funding we set up
    live: int = 0             # locked-in channels the node opened to us
    by_kind: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)   # what the fuzzer itself could not set up
    failures: list[tuple[str, list[str]]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"messages_tried": self.tried, "failures": len(self.failures),
                "connections_closed_by_node": self.hangups, "by_kind": dict(self.by_kind),
                "channels_set_up": {"opening": self.opens, "awaiting_funding": self.unconfirmed, "live": self.live},
                "answers": dict(self.answers.most_common(12)), "notes": dict(self.notes),
                "distinct_failures": self.distinct_failures()}

    def distinct_failures(self) -> list[dict[str, Any]]:
        """One entry per kind of problem (log timestamps aside), with the
        first example that caused it and how often it happened."""
        seen: dict[str, dict[str, Any]] = {}
        for ex, problems in self.failures:
            for p in problems:
                key = p[25:] if p[:4].isdigit() else p      # drop a log line's timestamp
                key = key[:160]
                if key not in seen:
                    seen[key] = {"problem": p[:400], "example": ex, "count": 0}
                seen[key]["count"] += 1
        return list(seen.values())


class PeerFuzzer:
    """Drives one node; `run(example)` returns the problems it caused."""

    def __init__(self, node: Any, seed: int = 0x71, live: bool = True, live_every: int = 100,
                 mine_every: int = 50) -> None:
        self.node = node
        self.seed = seed
        self.peer: ScriptedPeer | None = None
        self.watch = LogWatch(node)
        self.stats = Stats()
        # channel ids the node knows for our peer: opens in progress, channels
        self.pending_opens: list[bytes] = []
        self.channels: dict[bytes, Channel] = {}
        self.normal: set[bytes] = set()     # those of self.channels that are locked in
        self.live = live
        self.live_every = live_every
        self._next_live = 0
        self._wallet_funded = False
        self.mine_every = mine_every
        self._lagging_since: float | None = None
        self._probe = 0

    # -- connection ---------------------------------------------------------------------
    def _connected(self) -> ScriptedPeer:
        if self.peer is None:
            self.peer = ScriptedPeer(self.node, seed=self.seed, timeout=20)
            self._wait_registered()
            # a reconnection forgets opens in progress (BOLT 2); channels resume
            self.pending_opens.clear()
            self._reestablish()
        return self.peer

    def _wait_registered(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            peers = self.node.rpc.listpeers(self.peer.node_id)["peers"]
            if peers and peers[0]["connected"]:
                return
            time.sleep(0.02)

    def _hung_up(self) -> None:
        if self.peer is not None:
            self.peer.close()
        self.peer = None
        self.stats.hangups += 1

    def _reestablish(self) -> None:
        """The node resumes our channels on reconnection: answer its
        channel_reestablish so they stay usable (those that cannot are
        dropped from our list)."""
        if not self.channels:
            return
        assert self.peer is not None
        for ch in self.channels.values():
            ch.disconnect()
            self.peer.send(*_named(ch.reestablish_msg()))

    # -- channels to aim at -------------------------------------------------------------
    def _ids(self) -> list[bytes]:
        return self.pending_opens + list(self.channels)

    def ensure_channels(self) -> None:
        """An open in progress and a channel awaiting funding, if we have none
        (a message that broke them made the node fail them); with `live`, a
        locked-in channel too, at most every `live_every` messages (each
        costs a funding transaction and a block)."""
        try:
            peer = self._connected()
            # (in this order: one open at a time per peer)
            if self.live and not self.normal and not self.pending_opens and \
                    self.stats.tried >= self._next_live:
                self._next_live = self.stats.tried + self.live_every
                self._open_normal(peer)
            if len(self.channels) - len(self.normal) < 1 and not self.pending_opens:
                self._fund_channel(peer)
            if not self.pending_opens:
                temp_id = os.urandom(32)
                peer.send("open_channel", open_channel_fields(peer, temp_id))
                if await_channel_message(peer, "accept_channel", temp_id, 20):
                    self.pending_opens.append(temp_id)
                    self.stats.opens += 1
        except (PeerClosed, socket.timeout, OSError):
            self._hung_up()

    def _fund_channel(self, peer: ScriptedPeer) -> None:
        ch = open_unconfirmed_channel(peer)
        if ch is not None:
            self.channels[ch.channel_id] = ch
            self.stats.unconfirmed += 1

    def _open_normal(self, peer: ScriptedPeer) -> None:
        """The node opens a channel to us (a real funding transaction, one
        block): a locked-in channel whose normal-operation code the fuzzed
        channel messages reach."""
        node = self.node
        if not self._wallet_funded:
            for _ in range(4):
                node.chain.fund(node.rpc.newaddr("bech32")["bech32"], 3_000_000)
            node.chain.mine(1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and \
                    sum(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]) < 4:
                time.sleep(0.1)
            self._wallet_funded = True
        done: list[Any] = []
        t = threading.Thread(target=lambda: done.append(_try(lambda: node.rpc.fundchannel(
            peer.node_id, 1_000_000, push_msat=200_000_000, announce=False, mindepth=1))))
        t.start()
        try:
            oc = self._await_any("open_channel", done)
            if oc is None:
                self.log_note(f"no live channel: {done}")
                return
            local = party_config(peer.signer)
            peer.send("accept_channel", {
                "temporary_channel_id": oc["temporary_channel_id"], **local.wire_fields(), "minimum_depth": 1,
                "first_per_commitment_point": peer.signer.per_commitment_point(0),
                "tlvs": {"channel_type": oc["tlvs"]["channel_type"],
                         "upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}})
            fc = self._await_any("funding_created")
            if fc is None:
                return
            params = ChannelParams(OutPoint(fc["funding_txid"], fc["funding_output_index"]), oc["funding_satoshis"],
                                   Side.REMOTE, local, PartyConfig.from_wire(oc),
                                   ChannelType.from_wire(oc["tlvs"]["channel_type"]["type"]))
            ch = Channel.new(params, peer.signer, push_msat=oc["push_msat"], feerate_per_kw=oc["feerate_per_kw"],
                             remote_first_per_commitment_point=oc["first_per_commitment_point"])
            ch.recv_initial_commitment_sig(fc["signature"])
            peer.send("funding_signed", {"channel_id": ch.channel_id, "signature": ch.initial_remote_commitment_sig()})
        finally:
            t.join(30)
        if not done or isinstance(done[0], Exception):
            self.log_note(f"no live channel: fundchannel {done[0] if done else 'hangs'}")
            return
        node.chain.mine(1)
        ready = self._await_any("channel_ready")
        if ready is None:
            self.log_note("no live channel: no channel_ready")
            return
        ch.recv_channel_ready(ready)
        peer.send(*_named(ch.channel_ready_msg()))
        self.channels[ch.channel_id] = ch
        self.normal.add(ch.channel_id)
        self.stats.live += 1

    def _await_any(self, name: str, failed: list[Any] | None = None) -> dict[str, Any] | None:
        """The next `name` from the node; None after 30 s, or as soon as
        `failed` (the outcome of the command that should make the node send
        it) holds something."""
        assert self.peer is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not failed:
            try:
                got, fields = self.peer.read(1)
            except socket.timeout:
                continue
            if got == name:
                return fields
        return None

    def log_note(self, text: str) -> None:
        self.stats.notes[text[:200]] += 1

    # -- one example ----------------------------------------------------------------------
    def build(self, ex: Example) -> bytes:
        rng = random.Random(ex.seed)
        if ex.kind == "unknown_type":
            t = rng.randrange(0, 65536)
            while t in SCHEMA.by_number:
                t = rng.randrange(0, 65536)
            return t.to_bytes(2, "big") + rng.randbytes(rng.randint(0, 64))
        number = SCHEMA.type_number(ex.name).to_bytes(2, "big")
        if ex.kind == "random":
            return number + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        fields = sample_message(SCHEMA, ex.name, rng)
        ids = self._ids()
        for f in ID_FIELDS:
            if f in fields and ids and ex.target % 4:
                fields[f] = ids[ex.target % len(ids)]
        if "chain_hash" in fields and ex.target % 2 and self.peer is not None:
            fields["chain_hash"] = self.peer.chain_hash
        raw = SCHEMA.encode(ex.name, fields)[:MAX_MESSAGE]
        if ex.kind == "truncated":
            return raw[:rng.randint(2, max(2, len(raw) - 1))]
        if ex.kind == "mutated":
            return mutate(raw, ex.ops)
        return raw

    def _maintain(self) -> None:
        """Every `mine_every` messages: a block (the node's block handling
        meets whatever state the fuzzing left its channels in), and our list
        of channels follows the node's (it fails some without telling us,
        e.g. after our own error)."""
        if not self.mine_every or self.stats.tried % self.mine_every:
            return
        self.node.chain.mine(1)
        alive = {bytes.fromhex(c["channel_id"]) for c in self.node.rpc.listpeerchannels()["channels"]
                 if c["state"] in ("CHANNELD_NORMAL", "CHANNELD_AWAITING_LOCKIN") and "channel_id" in c}
        for cid in list(self.channels):
            if cid not in alive:
                del self.channels[cid]
                self.normal.discard(cid)

    def run(self, ex: Example) -> list[str]:
        self._maintain()
        self.ensure_channels()
        raw = self.build(ex)
        self.stats.tried += 1
        self.stats.by_kind[ex.kind] += 1
        try:
            peer = self._connected()
            peer.send_raw(raw)
            self._sync(peer)
        except (PeerClosed, socket.timeout, OSError):
            self._hung_up()
        problems = self.check()
        if problems:
            self.stats.failures.append((str(ex), problems))
        return problems

    def _sync(self, peer: ScriptedPeer) -> None:
        """Wait until the node has dealt with what we sent: connectd handles
        a peer's messages in order, so its pong comes after."""
        peer.send("ping", {"num_pong_bytes": 7, "ignored": b""})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = SCHEMA.decode(peer.read_raw(20))
            if msg.name == "pong" and len(msg.fields["ignored"]) == 7:
                return
            self.stats.answers[msg.name or f"type {msg.type}"] += 1
            if msg.name == "error":
                cid = msg.fields["channel_id"]
                if cid == bytes(32):
                    self.pending_opens.clear()
                    self.channels.clear()
                    self.normal.clear()
                elif cid in self.pending_opens:
                    self.pending_opens.remove(cid)
                else:
                    self.channels.pop(cid, None)
                    self.normal.discard(cid)
            elif msg.name == "ping" and msg.fields["num_pong_bytes"] < 65532:
                peer.send("pong", {"ignored": bytes(msg.fields["num_pong_bytes"])})
        raise socket.timeout("no pong")

    def check(self) -> list[str]:
        """The node is well: log, stderr, RPC, and a fresh connection."""
        problems = self.watch.problems()
        try:
            if self.node.rpc.getinfo()["id"] != self.node.node_id:
                problems.append("getinfo: wrong id")
        except Exception as e:  # any failure to answer is the finding
            problems.append(f"getinfo failed: {type(e).__name__}: {e}")
        self._probe += 1
        try:
            probe = ScriptedPeer(self.node, seed=0x20 + self._probe % 16, timeout=20, init=False)
            probe.close()
        except Exception as e:  # the node must still greet a new peer
            problems.append(f"fresh connection got no init: {type(e).__name__}: {e}")
        problems += self._follows_chain()
        return problems

    def _follows_chain(self) -> list[str]:
        """The node keeps up with the chain (a dead block loop does not show
        in getinfo otherwise): behind for more than CHAIN_LAG seconds is a
        finding."""
        try:
            behind = self.node.rpc.getinfo()["blockheight"] < self.node.chain.rpc.getblockcount()
        except Exception:  # reported by the getinfo check already
            return []
        if not behind:
            self._lagging_since = None
            return []
        now = time.monotonic()
        if self._lagging_since is None:
            self._lagging_since = now
        if now - self._lagging_since > CHAIN_LAG:
            self._lagging_since = None
            return [f"node behind the chain for more than {CHAIN_LAG}s"]
        return []


def _named(msg: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return msg[0], msg[1]


def _try(fn: Any) -> Any:
    try:
        return fn()
    except Exception as e:  # the fundchannel outcome, whatever it is
        return e


def campaign(fuzzer: PeerFuzzer, count: int, seed: int | None = None) -> Stats:
    """`count` examples drawn by hypothesis, failures recorded in the stats
    rather than raised (a long run reports everything it found).  No
    shrinking: the node's state moves on with every message, so replaying
    an example later is not the same experiment."""
    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(ex=examples())
    def one(ex: Example) -> None:
        fuzzer.run(ex)
    if seed is not None:
        one = hypothesis_seed(seed)(one)
    one()
    return fuzzer.stats
