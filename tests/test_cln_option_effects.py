"""Options Core Lightning's test runners and operators pass, doing what they
do there: --dev-no-htlc-timeout, --commit-time, --ignore-fee-limits,
--dev-no-plugin-checksum, --dev-allow-localhost.

Channel behaviour is observed from a peer that is not one of our nodes
(pyln-proto's BOLT 8 initiator with the pure channel core, as in
test_misbehaving_peer.py), so the test sees exactly what goes on the wire."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey
from pyln.client import RpcError

from bitcoin.networks import network_by_name
from common.features import features_from_bits
from node_factory import wait_for
from test_misbehaving_peer import FakePeer, open_with_fake_peer

PLUGINS = Path(__file__).parent / "plugins"


def open_channel_fields(feerate_per_kw: int, seed: int) -> dict[str, Any]:
    """A plain static_remotekey open_channel from a peer (keys don't matter:
    the node answers before any signature)."""
    point = PrivateKey(bytes([seed] * 32)).public_key.format(compressed=True)
    return {
        "chain_hash": network_by_name("regtest").chain_hash, "temporary_channel_id": os.urandom(32),
        "funding_satoshis": 300_000, "push_msat": 0, "dust_limit_satoshis": 546,
        "max_htlc_value_in_flight_msat": 300_000_000, "channel_reserve_satoshis": 3000, "htlc_minimum_msat": 1,
        "feerate_per_kw": feerate_per_kw, "to_self_delay": 144, "max_accepted_htlcs": 483,
        "funding_pubkey": point, "revocation_basepoint": point, "payment_basepoint": point,
        "delayed_payment_basepoint": point, "htlc_basepoint": point, "first_per_commitment_point": point,
        "channel_flags": 0,
        "tlvs": {"channel_type": {"type": features_from_bits({12})},
                 "upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}}


def offer(node: Any, peer: FakePeer, tag: int) -> None:
    """The node offers the fake peer an HTLC (sendpay with a one-hop route)."""
    scid = node.rpc.listpeerchannels(peer.node_id)["channels"][0]["short_channel_id"]
    route = [{"id": peer.node_id, "channel": scid, "amount_msat": 10_000_000, "delay": 20}]
    node.rpc.sendpay(route, (bytes([tag]) * 32).hex())


def expect(peer: FakePeer, want: str) -> dict[str, Any]:
    """The next channel message, past announcement_signatures (a public
    channel reaching 6 confirmations while other channels are opened)."""
    while True:
        name, fields = peer.read()
        if name != "announcement_signatures":
            assert name == want, (name, fields)
            return fields


def connected(node: Any, peer: FakePeer) -> bool:
    peers = node.rpc.listpeers(peer.node_id)["peers"]
    return bool(peers) and peers[0]["connected"]


def test_htlc_offer_timeout_and_commit_time(node_factory):
    """Core Lightning gives a channel 30 s to put an HTLC it offered into a
    commitment_signed, else kills the connection (peer_htlcs.c
    htlc_offer_timeout); --dev-no-htlc-timeout turns that off, which
    lnprototest needs: its scripted peer often never answers.  The HTLC that
    cannot be signed is the second one, while the peer withholds its
    revoke_and_ack for the first.

    The first HTLC also shows --commit-time: the commitment_signed follows
    the update_add_htlc by that many milliseconds (10 by default)."""
    patient, strict = node_factory.get_nodes(2, opts=[{"dev-no-htlc-timeout": None, "commit-time": 1500}, {}])
    peers = [open_with_fake_peer(node, seed, 0) for node, seed in ((patient, 0x51), (strict, 0x52))]
    # Lower bound from before the offer (the update_add_htlc cannot precede
    # it, however late this test reads it), upper bound from reading it.
    since_offer, since_add = [], []
    # The commit timer starts with the first change it will carry, not with
    # some earlier message: a warning the node merely logs, 1 s before the
    # offer, must not bring the commitment_signed forward.
    peers[0].send("warning", {"channel_id": peers[0].ch.channel_id, "data": b"nothing to commit"})
    time.sleep(1.0)
    for node, peer, tag in ((patient, peers[0], 0x61), (strict, peers[1], 0x62)):
        t_offer = time.monotonic()
        offer(node, peer, tag)
        expect(peer, "update_add_htlc")
        t_add = time.monotonic()
        expect(peer, "commitment_signed")      # ... and the peer never revokes
        since_offer.append(time.monotonic() - t_offer)
        since_add.append(time.monotonic() - t_add)
    assert since_offer[0] >= 1.5 and since_add[1] < 1.0, (since_offer, since_add)
    for node, peer, tag in ((patient, peers[0], 0x71), (strict, peers[1], 0x72)):
        offer(node, peer, tag)
        expect(peer, "update_add_htlc")        # no commitment_signed can follow: still awaiting revoke_and_ack
    started = time.monotonic()
    # the strict node hangs up about 30 s later; its HTLC never committed is failed back
    wait_for(lambda: not connected(strict, peers[1]), timeout=45)
    assert time.monotonic() - started > 25
    with pytest.raises(RpcError):
        strict.rpc.waitsendpay((bytes([0x72]) * 32).hex(), 30)
    # the patient one keeps waiting for its peer
    assert connected(patient, peers[0])
    assert patient.rpc.listsendpays(payment_hash=(bytes([0x71]) * 32).hex())["payments"][0]["status"] == "pending"


def test_ignore_fee_limits(node_factory):
    """A feerate below our floor (253 perkw) fails an open, unless
    --ignore-fee-limits (Core Lightning then accepts 1..0xFFFFFFFF)."""
    lax, strict = node_factory.get_nodes(2, opts=[{"ignore-fee-limits": "true"}, {}])
    assert lax.rpc.listconfigs("ignore-fee-limits")["configs"]["ignore-fee-limits"]["value_bool"] is True
    for node, seed, answer in ((lax, 0x53, "accept_channel"), (strict, 0x54, "error")):
        peer = FakePeer(node, seed)
        wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
        peer.send("open_channel", open_channel_fields(200, seed))
        name, fields = peer.read()
        assert name == answer, (name, fields)
        if name == "error":
            assert b"feerate_per_kw 200" in fields["data"]
        peer.conn.connection.close()


@pytest.mark.parametrize("no_checksum", [False, True])
def test_changed_plugin_restarts_unless_dev_no_plugin_checksum(node_factory, tmp_path, no_checksum):
    """`plugin start` of a plugin already running restarts it if its file
    changed (Core Lightning's plugin_register); --dev-no-plugin-checksum
    skips the checksum, so it stays registered as it was."""
    node = node_factory.get_node(options={"dev-no-plugin-checksum": None} if no_checksum else {})
    path = tmp_path / "dynplugin.py"
    shutil.copy(PLUGINS / "dynplugin.py", path)
    node.rpc.plugin_start(str(path))
    assert node.rpc.call("dynhello") == {"opt": "default"}
    with pytest.raises(RpcError, match="already registered"):     # unchanged: nothing to do
        node.rpc.plugin_start(str(path))
    path.write_text(path.read_text().replace('"default"', '"changed"'))
    if no_checksum:
        with pytest.raises(RpcError, match="already registered"):
            node.rpc.plugin_start(str(path))
        assert node.rpc.call("dynhello") == {"opt": "default"}
    else:
        node.rpc.plugin_start(str(path))
        assert node.rpc.call("dynhello") == {"opt": "changed"}
        assert [p["name"] for p in node.rpc.plugin_list()["plugins"]].count(str(path)) == 1


def test_dev_allow_localhost_announces_loopback(node_factory):
    """Core Lightning announces a loopback `addr` only with
    --dev-allow-localhost (getinfo's `address` is what we announce)."""
    plain, dev = node_factory.get_nodes(2, opts=[{"dev-allow-localhost": False}, {}])
    assert plain.rpc.getinfo()["address"] == []
    assert dev.rpc.getinfo()["address"] == [{"type": "ipv4", "address": "127.0.0.1", "port": dev.port}]
    # both listen there all the same
    assert plain.rpc.getinfo()["binding"] == [{"type": "ipv4", "address": "127.0.0.1", "port": plain.port}]


def test_max_dust_htlc_exposure(node_factory):
    """A node with a low max-dust-htlc-exposure-msat fails a small incoming
    HTLC once committed (temporary_node_failure, as Core Lightning), refuses
    to offer one itself, and still takes HTLCs big enough to get an output."""
    from test_channels import fund, open_channel
    l1, l2 = node_factory.get_nodes(2, opts=[{}, {"max-dust-htlc-exposure-msat": "1000sat"}])
    fund(l1)
    # static_remotekey: its HTLC txs pay fees, so HTLCs well above the dust
    # limit are trimmed (with anchors' zero-fee HTLC txs only those under
    # the 546-sat dust limit are)
    open_channel(l1, l2, 1_000_000, push_msat=100_000_000, channel_type=[12])
    scid = l1.rpc.listpeerchannels(l2.node_id)["channels"][0]["short_channel_id"]

    def route(dest, amount_msat):
        return [{"id": dest.node_id, "channel": scid, "amount_msat": amount_msat, "delay": 20}]
    # 2000 sat is trimmed at regtest's feerates: over l2's 1000 sat
    inv = l2.rpc.invoice(2_000_000, "dust", "d")
    l1.rpc.sendpay(route(l2, 2_000_000), inv["payment_hash"], payment_secret=inv["payment_secret"])
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(inv["payment_hash"], 30)
    assert e.value.error["data"]["failcode"] == 0x2002               # temporary_node_failure
    assert e.value.error["data"]["erring_node"] == l2.node_id
    assert l2.rpc.listinvoices("dust")["invoices"][0]["status"] == "unpaid"
    # l2 will not offer such an HTLC either
    inv1 = l1.rpc.invoice(2_000_000, "dust-back", "d")
    with pytest.raises(RpcError, match="max_dust_htlc_exposure_msat 1000000"):
        l2.rpc.sendpay(route(l1, 2_000_000), inv1["payment_hash"], payment_secret=inv1["payment_secret"])
    # an HTLC with its own output is not dust: paid
    inv = l2.rpc.invoice(50_000_000, "big", "d")
    l1.rpc.sendpay(route(l2, 50_000_000), inv["payment_hash"], payment_secret=inv["payment_secret"])
    assert l1.rpc.waitsendpay(inv["payment_hash"], 30)["status"] == "complete"
