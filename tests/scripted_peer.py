"""A scripted BOLT 8 peer for integration tests: pyln-proto's initiator
(an implementation independent of ours) speaking to a real node, sending
whatever a test wants, well-formed or not.

    peer = ScriptedPeer(node)               # handshake + init exchange
    peer.send("open_channel", open_channel_fields(peer, node))
    peer.expect("accept_channel")
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any

from pyln.proto.wire import PrivateKey, connect as pyln_connect

import wire
from bitcoin.tx import OutPoint
from channeld.core import Channel, ChannelParams, ChannelType, PartyConfig
from channeld.core.signer import LocalSigner
from channel_testing import party_config
from common.commitment import Side
from common.features import features_from_bits

SCHEMA = wire.bolt_schema()
# what we never want to see when waiting for an answer
NOISE = {"pong", "gossip_timestamp_filter", "query_channel_range", "query_short_channel_ids",
         "reply_channel_range", "reply_short_channel_ids_end", "channel_announcement", "channel_update",
         "node_announcement"}


class PeerClosed(Exception):
    """The node closed the connection."""


class _WholeReads:
    """pyln-proto reads the 18-byte length header with one recv() and sends
    with send(): under load a short read or write would desynchronise the
    Noise stream.  Whole reads and writes, same socket otherwise."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, n: int) -> bytes:
        return self.sock.recv(n, socket.MSG_WAITALL)

    def send(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class ScriptedPeer:
    def __init__(self, node: Any, seed: int = 0x51, timeout: float = 30.0, init: bool = True,
                 features: bytes | None = None) -> None:
        self.node = node
        self.seed = seed
        self.privkey = PrivateKey(bytes([seed] * 32))
        self.node_id = self.privkey.public_key().serializeCompressed().hex()
        self.signer = LocalSigner.from_seed(bytes([seed]) * 32)
        self.conn = pyln_connect(self.privkey, bytes.fromhex(node.node_id), "127.0.0.1", node.port)
        self.conn.connection = _WholeReads(self.conn.connection)
        self.conn.connection.settimeout(timeout)
        self.warnings: list[dict[str, Any]] = []   # warnings seen while reading
        raw = self.read_raw()
        their_init = SCHEMA.decode(raw)
        assert their_init.name == "init", their_init
        self.their_features = their_init.fields["features"]
        self.chain_hash = their_init.fields["tlvs"]["networks"]["chains"][0]
        #: what we send in init: by default whatever the node supports, so it accepts us
        self.features = self.their_features if features is None else features
        if init:
            self.send("init", {"globalfeatures": b"", "features": self.features, "tlvs": {}})

    # -- I/O ---------------------------------------------------------------------------
    def send(self, name: str, fields: dict[str, Any]) -> None:
        self.send_raw(SCHEMA.encode(name, fields))

    def send_raw(self, raw: bytes) -> None:
        try:
            self.conn.send_message(raw)
        except OSError as e:
            raise PeerClosed(str(e)) from None

    def read_raw(self, timeout: float | None = None) -> bytes:
        if timeout is not None:
            self.conn.connection.settimeout(timeout)
        try:
            raw = self.conn.read_message()
        except (OSError, ValueError) as e:
            if isinstance(e, socket.timeout):
                raise
            raise PeerClosed(str(e)) from None
        if not raw:
            raise PeerClosed("EOF")
        return raw

    def read(self, timeout: float | None = None) -> tuple[str | None, dict[str, Any]]:
        """The next message that is not gossip, a pong, or a ping (answered)."""
        while True:
            msg = SCHEMA.decode(self.read_raw(timeout))
            if msg.name == "ping":
                if msg.fields["num_pong_bytes"] < 65532:
                    self.send("pong", {"ignored": bytes(msg.fields["num_pong_bytes"])})
                continue
            if msg.name in NOISE:
                continue
            if msg.name == "warning":
                self.warnings.append(msg.fields)
            return msg.name, msg.fields

    def expect(self, want: str, timeout: float | None = None) -> dict[str, Any]:
        """Skip warnings (kept in self.warnings) until `want`."""
        while True:
            name, fields = self.read(timeout)
            if name == want:
                return fields
            assert name == "warning", (name, fields)

    def collect(self, quiet: float = 1.0, limit: float = 30.0) -> list[tuple[str | None, dict[str, Any]]]:
        """Everything the node says until it is silent for `quiet` seconds
        (or closes the connection)."""
        out = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                out.append(self.read(quiet))
            except socket.timeout:
                break
            except PeerClosed:
                break
        return out

    def ping_ok(self, timeout: float = 10.0) -> bool:
        """Is the connection alive: does the node answer a ping?"""
        self.send("ping", {"num_pong_bytes": 3, "ignored": b""})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = SCHEMA.decode(self.read_raw(timeout))
            if msg.name == "pong":
                return True
        return False

    def close(self) -> None:
        try:
            self.conn.connection.close()
        except OSError:
            pass


def open_channel_fields(peer: ScriptedPeer, temp_id: bytes, funding_sat: int = 1_000_000,
                        **overrides: Any) -> dict[str, Any]:
    """A valid open_channel from `peer` (a static_remotekey channel); any
    field can be overridden, `channel_type` (bits, or None to leave it out)
    included."""
    local = party_config(peer.signer, channel_reserve_sat=funding_sat // 100)
    channel_type = overrides.pop("channel_type", [12])
    tlvs: dict[str, Any] = {"upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}
    if channel_type is not None:
        tlvs["channel_type"] = {"type": features_from_bits(set(channel_type))}
    fields = {"chain_hash": peer.chain_hash, "temporary_channel_id": temp_id, "funding_satoshis": funding_sat,
              "push_msat": 0, **local.wire_fields(), "feerate_per_kw": 7500,
              "first_per_commitment_point": peer.signer.per_commitment_point(0), "channel_flags": 0,
              "tlvs": tlvs}
    fields.update(overrides)
    return fields


def open_unconfirmed_channel(peer: ScriptedPeer, timeout: float = 20.0, **overrides: Any) -> Channel | None:
    """We (the peer) open a channel with a made-up funding outpoint: the
    node signs it and keeps it awaiting a funding that never confirms, with
    a channeld that takes channel messages.  Our side of it, or None if the
    node refused."""
    temp_id = os.urandom(32)
    oc = open_channel_fields(peer, temp_id, **overrides)
    peer.send("open_channel", oc)
    acc = await_channel_message(peer, "accept_channel", temp_id, timeout)
    if acc is None:
        return None
    params = ChannelParams(OutPoint(os.urandom(32), 0), oc["funding_satoshis"], Side.LOCAL,
                           PartyConfig.from_wire(oc), PartyConfig.from_wire(acc),
                           ChannelType.from_wire(oc["tlvs"]["channel_type"]["type"]))
    ch = Channel.new(params, peer.signer, push_msat=oc["push_msat"], feerate_per_kw=oc["feerate_per_kw"],
                     remote_first_per_commitment_point=acc["first_per_commitment_point"], max_to_self_delay=2**16)
    peer.send("funding_created", {"temporary_channel_id": temp_id, "funding_txid": params.funding_outpoint.txid,
                                  "funding_output_index": 0, "signature": ch.initial_remote_commitment_sig()})
    fs = await_channel_message(peer, "funding_signed", ch.channel_id, timeout)
    if fs is None:
        return None
    ch.recv_initial_commitment_sig(fs["signature"])
    return ch


def open_funded_channel(peer: ScriptedPeer, timeout: float = 30.0, anchors: bool = False,
                        **overrides: Any) -> Channel:
    """We (the peer) open a channel and really fund it (the test chain's
    faucet pays the 2-of-2 output), then lock it in: a CHANNELD_NORMAL
    channel the peer opened, whose side we keep with the channel core.
    open_channel fields can be overridden (``feerate_per_kw``...)."""
    from bitcoin.script import p2wsh_script
    node = peer.node
    temp_id = os.urandom(32)
    oc = open_channel_fields(peer, temp_id, channel_type=[12, 22] if anchors else [12], **overrides)
    peer.send("open_channel", oc)
    acc = await_channel_message(peer, "accept_channel", temp_id, timeout)
    assert acc is not None, "open refused"
    ctype = ChannelType(anchors=anchors)
    local, remote = PartyConfig.from_wire(oc), PartyConfig.from_wire(acc)
    script = ChannelParams(OutPoint(bytes(32), 0), oc["funding_satoshis"], Side.LOCAL, local, remote,
                           ctype).funding_witness_script
    txid, vout = node.chain.fund(p2wsh_script(script), oc["funding_satoshis"])
    params = ChannelParams(OutPoint.from_hex(txid, vout), oc["funding_satoshis"], Side.LOCAL, local, remote, ctype)
    ch = Channel.new(params, peer.signer, push_msat=oc["push_msat"], feerate_per_kw=oc["feerate_per_kw"],
                     remote_first_per_commitment_point=acc["first_per_commitment_point"], max_to_self_delay=2**16)
    peer.send("funding_created", {"temporary_channel_id": temp_id, "funding_txid": params.funding_outpoint.txid,
                                  "funding_output_index": vout, "signature": ch.initial_remote_commitment_sig()})
    fs = await_channel_message(peer, "funding_signed", ch.channel_id, timeout)
    assert fs is not None, "funding_created refused"
    ch.recv_initial_commitment_sig(fs["signature"])
    node.chain.mine(max(1, acc["minimum_depth"]))
    ready = await_channel_message(peer, "channel_ready", ch.channel_id, timeout)
    assert ready is not None
    ch.recv_channel_ready(ready)
    peer.send(*ch.channel_ready_msg())
    deadline = time.monotonic() + timeout
    while node.rpc.listpeerchannels(peer.node_id)["channels"][-1]["state"] != "CHANNELD_NORMAL":
        assert time.monotonic() < deadline, "channel not normal"
        time.sleep(0.1)
    return ch


def commit_dance(peer: ScriptedPeer, ch: Channel) -> None:
    """Our updates committed both ways: we sign, the node revokes and signs
    back, we revoke."""
    peer.send(*ch.send_commitment())
    ch.recv_revoke_and_ack(peer.expect("revoke_and_ack"))
    ch.recv_commitment_signed(peer.expect("commitment_signed"))
    ch.mark_persisted()
    peer.send(*ch.revoke().message)


def reconnect(peer: ScriptedPeer, ch: Channel) -> ScriptedPeer:
    """A new connection from the same peer, channel_reestablish exchanged
    (and whatever the node retransmits applied to our side)."""
    peer.close()
    if ch.connected:
        ch.disconnect()
    again = ScriptedPeer(peer.node, seed=peer.seed)
    theirs = again.expect("channel_reestablish")
    ours = ch.reestablish_msg()
    again.send(*ours)
    r = ch.recv_reestablish(theirs)
    for m in r.messages:
        again.send(*m)
    if theirs["next_commitment_number"] == 1 and ours[1]["next_commitment_number"] == 1:
        again.expect("channel_ready")      # BOLT 2: retransmitted (we already have it)
    return again


def await_channel_message(peer: ScriptedPeer, name: str, cid: bytes, timeout: float) -> dict[str, Any] | None:
    """`name` for channel `cid`, or None if the node fails that channel first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, fields = peer.read(timeout)
        if got == name and fields.get("temporary_channel_id", fields.get("channel_id")) == cid:
            return fields
        if got == "error" and fields["channel_id"] in (cid, bytes(32)):
            return None
    return None


def channelds_of(node: Any) -> list[int]:
    """pids of the node's channel daemons."""
    return [pid for pid, name in node.subdaemon_pids_all().items() if name == "channeld"]
