"""A misbehaving channel peer (BOLT 2): our node sends an error, goes on chain
with its latest commitment, and stays up.

The peer is not one of our nodes: it speaks BOLT 8 through pyln-proto and
keeps its side of the channel with the pure channel core (``channeld.core``)
and in-memory keys, so it can break the rules on purpose.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from pyln.proto.wire import PrivateKey, connect as pyln_connect

import wire
from bitcoin.tx import OutPoint, Tx
from channeld.core import Channel, ChannelParams, ChannelType, PartyConfig
from channeld.core.signer import LocalSigner
from channel_testing import party_config
from common.commitment import Side
from node_factory import wait_for

SCHEMA = wire.bolt_schema()
ONION_SIZE = 1366


class FakePeer:
    """The fundee side of one channel, over a real BOLT 8 connection."""

    def __init__(self, node: Any, seed: int) -> None:
        self.node = node
        self.privkey = PrivateKey(bytes([seed] * 32))
        self.node_id = self.privkey.public_key().serializeCompressed().hex()
        self.conn = pyln_connect(self.privkey, bytes.fromhex(node.node_id), "127.0.0.1", node.port)
        self.conn.connection.settimeout(30)
        self.signer = LocalSigner.from_seed(bytes([seed]) * 32)
        self.ch: Channel | None = None
        name, init = self.read()
        assert name == "init"
        # We support whatever the node does (it only needs to accept us).
        self.send("init", {"globalfeatures": b"", "features": init["features"], "tlvs": {}})

    def send(self, name: str, fields: dict[str, Any]) -> None:
        self.conn.send_message(SCHEMA.encode(name, fields))

    def read(self) -> tuple[str, dict[str, Any]]:
        """The next message that is not gossip or a ping (answered)."""
        while True:
            msg = SCHEMA.decode(self.conn.read_message())
            name, fields = msg
            if name == "ping":
                self.send("pong", {"ignored": b"\x00" * fields["num_pong_bytes"]})
                continue
            if name in (None, "pong", "gossip_timestamp_filter", "query_channel_range", "query_short_channel_ids",
                        "channel_announcement", "channel_update", "node_announcement", "warning"):
                continue
            return name, fields

    def expect(self, want: str) -> dict[str, Any]:
        name, fields = self.read()
        assert name == want, (name, fields)
        return fields

    def accept_channel(self) -> None:
        """open_channel -> accept_channel, funding_created -> funding_signed."""
        oc = self.expect("open_channel")
        local = party_config(self.signer)
        self.send("accept_channel", {
            "temporary_channel_id": oc["temporary_channel_id"], **local.wire_fields(), "minimum_depth": 3,
            "first_per_commitment_point": self.signer.per_commitment_point(0),
            "tlvs": {"channel_type": oc["tlvs"]["channel_type"],
                     "upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}})
        fc = self.expect("funding_created")
        params = ChannelParams(OutPoint(fc["funding_txid"], fc["funding_output_index"]), oc["funding_satoshis"],
                               Side.REMOTE, local, PartyConfig.from_wire(oc),
                               ChannelType.from_wire(oc["tlvs"]["channel_type"]["type"]))
        ch = Channel.new(params, self.signer, push_msat=oc["push_msat"], feerate_per_kw=oc["feerate_per_kw"],
                         remote_first_per_commitment_point=oc["first_per_commitment_point"])
        ch.recv_initial_commitment_sig(fc["signature"])
        self.send("funding_signed", {"channel_id": ch.channel_id, "signature": ch.initial_remote_commitment_sig()})
        self.ch = ch

    def lock_in(self) -> None:
        assert self.ch is not None
        self.ch.recv_channel_ready(self.expect("channel_ready"))
        name, fields = self.ch.channel_ready_msg()
        self.send(name, fields)


def open_with_fake_peer(node: Any, seed: int, push_msat: int) -> FakePeer:
    addr = node.rpc.newaddr("bech32")["bech32"]
    node.chain.fund(addr, 2_000_000)
    node.chain.mine(1)
    wait_for(lambda: any(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]))
    peer = FakePeer(node, seed)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(
        node.rpc.fundchannel(peer.node_id, 1_000_000, push_msat=push_msat)))
    t.start()
    peer.accept_channel()
    t.join(30)
    assert result.get("txid"), result
    node.chain.mine(3)
    peer.lock_in()
    wait_for(lambda: node.rpc.listpeerchannels(peer.node_id)["channels"][0]["state"] == "CHANNELD_NORMAL")
    return peer


def funding_spend_in_mempool(node: Any, funding_txid: str) -> str | None:
    for txid in node.chain.rpc.getrawmempool():
        tx = Tx.parse(bytes.fromhex(node.chain.rpc.getrawtransaction(txid)))
        if any(i.prevout.txid_hex == funding_txid for i in tx.inputs):
            return txid
    return None


def htlc_over_our_balance(peer: FakePeer) -> None:
    """The peer offers more than it has (it got nothing pushed)."""
    assert peer.ch is not None
    peer.send("update_add_htlc", {"channel_id": peer.ch.channel_id, "id": 0, "amount_msat": 500_000_000,
                                  "payment_hash": b"\x11" * 32, "cltv_expiry": 500,
                                  "onion_routing_packet": os.urandom(ONION_SIZE), "tlvs": {}})


def bad_commitment_signature(peer: FakePeer) -> None:
    """A correct HTLC, then a commitment_signed whose signature is for something else."""
    ch = peer.ch
    assert ch is not None
    height = peer.node.rpc.getinfo()["blockheight"]
    peer.send(*ch.add_htlc(10_000_000, b"\x22" * 32, height + 40, os.urandom(ONION_SIZE), height))
    name, fields = ch.send_commitment()
    sig = bytearray(fields["signature"])
    sig[40] ^= 0x01
    peer.send(name, {**fields, "signature": bytes(sig)})


def fulfill_of_unknown_htlc(peer: FakePeer) -> None:
    """Settling an HTLC nobody offered (wrong amounts/ids)."""
    assert peer.ch is not None
    peer.send("update_fulfill_htlc", {"channel_id": peer.ch.channel_id, "id": 7,
                                      "payment_preimage": b"\x33" * 32})


@pytest.mark.parametrize("misbehave,push_msat", [
    (htlc_over_our_balance, 0),
    (bad_commitment_signature, 200_000_000),
    (fulfill_of_unknown_htlc, 0),
])
def test_misbehaving_peer_gets_error_and_we_go_on_chain(node_factory, misbehave, push_msat):
    node = node_factory.get_node()
    peer = open_with_fake_peer(node, 0x41, push_msat)
    chan = node.rpc.listpeerchannels(peer.node_id)["channels"][0]
    misbehave(peer)
    # BOLT 2: the node fails the channel with an error naming it
    fields = peer.expect("error")
    assert fields["channel_id"] == peer.ch.channel_id
    assert fields["data"]
    # ... broadcasts its latest commitment ...
    wait_for(lambda: node.rpc.listpeerchannels(peer.node_id)["channels"][0]["state"]
             in ("AWAITING_UNILATERAL", "FUNDING_SPEND_SEEN", "ONCHAIN"))
    spend = wait_for(lambda: funding_spend_in_mempool(node, chan["funding_txid"]))
    assert node.chain.rpc.getmempoolentry(spend)
    # ... and stays up, still serving RPC and still opening channels to others.
    assert node.rpc.getinfo()["id"] == node.node_id
    other = node_factory.get_node()
    node.connect(other)
    node.rpc.fundchannel(other.node_id, 500_000)
