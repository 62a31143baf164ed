"""Malformed, truncated and unexpected peer messages (BOLT 1/2/7): the node
answers with a `warning` (and closes the connection where BOLT 1 says so)
or fails the channel with an `error`, and stays up with no BROKEN line.

Driven by a scripted BOLT 8 peer (pyln-proto).  The connection-level cases
share one node (its log is checked after each); the live-channel cases open
a real channel each (the node funds it, tests/test_misbehaving_peer.py)."""
from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, Iterator

import pytest

import wire
from node_factory import NodeFactory, wait_for
from scripted_peer import PeerClosed, ScriptedPeer, open_channel_fields, open_unconfirmed_channel
from wire_samples import sample_message

SCHEMA = wire.bolt_schema()
MESSAGES = sorted(SCHEMA.messages)      # every peer message type of wire/csv/bolt.csv


@pytest.fixture(scope="module")
def node(chain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    nf = NodeFactory(tmp_path_factory.mktemp("peer_messages"), chain)
    yield nf.get_node()
    problems = nf.teardown()
    if problems:
        pytest.fail("node teardown: " + "; ".join(problems))


_seed = iter(range(0x30, 0x100))


def peer_of(node: Any) -> ScriptedPeer:
    peer = ScriptedPeer(node, seed=next(_seed))
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    return peer


def node_is_well(node: Any) -> None:
    assert node.rpc.getinfo()["id"] == node.node_id
    assert node.broken_lines() == []
    assert "Traceback" not in node.stderr_text()
    fresh = ScriptedPeer(node, seed=0x2f, init=False)   # still greets a new peer with init
    fresh.close()


def warned_and_closed(peer: ScriptedPeer) -> list[str]:
    """BOLT 1 "MUST close the connection": a warning first, then EOF."""
    seen = peer.collect(quiet=5)
    names = [n for n, _ in seen]
    assert "warning" in names, seen
    with pytest.raises(PeerClosed):
        peer.send("ping", {"num_pong_bytes": 1, "ignored": b""})
        peer.read(5)
    return [f["data"].decode() for n, f in seen if n == "warning"]


def truncated(name: str) -> bytes:
    """A valid `name` cut short so that it no longer decodes."""
    rng = random.Random(name)
    raw = SCHEMA.encode(name, sample_message(SCHEMA, name, rng))
    for cut in range(len(raw) - 1, 1, -1):
        try:
            SCHEMA.decode(raw[:cut])
        except wire.DecodeError:
            return raw[:cut]
    return raw[:2] if len(raw) > 2 else raw


@pytest.mark.parametrize("name", MESSAGES)
def test_truncated_message_gets_warning_and_hangup(node, name):
    raw = truncated(name)
    with pytest.raises(wire.DecodeError):
        SCHEMA.decode(raw)
    peer = peer_of(node)
    peer.send_raw(raw)
    text = warned_and_closed(peer)
    assert any("Malformed" in t or "malformed" in t for t in text), text
    node_is_well(node)


def test_unknown_odd_type_is_ignored_unknown_even_closes(node):
    peer = peer_of(node)
    peer.send_raw((32769).to_bytes(2, "big") + b"whatever")   # odd: "it's OK to be odd"
    assert peer.ping_ok()
    peer.send_raw((32768).to_bytes(2, "big") + b"whatever")
    assert "Unknown even message type" in warned_and_closed(peer)
    node_is_well(node)


def test_second_init_is_ignored(node):
    peer = peer_of(node)
    peer.send("init", {"globalfeatures": b"", "features": peer.their_features, "tlvs": {}})
    assert peer.ping_ok()
    node_is_well(node)


def test_ping_num_pong_bytes_boundaries(node):
    """BOLT 1: a pong of num_pong_bytes if it is below 65532, else nothing."""
    peer = peer_of(node)
    for n in (65532, 65535):
        peer.send("ping", {"num_pong_bytes": n, "ignored": b""})
    peer.send("ping", {"num_pong_bytes": 65531, "ignored": bytes(65531 - 4)})   # the largest sensible
    msg = SCHEMA.decode(peer.read_raw())
    while msg.name != "pong":           # (gossip queries of a new connection)
        msg = SCHEMA.decode(peer.read_raw())
    assert len(msg.fields["ignored"]) == 65531
    assert peer.ping_ok()
    node_is_well(node)


def _open_channel_with_tlvs(peer: ScriptedPeer, tlv_bytes: bytes) -> bytes:
    """An open_channel whose TLV stream is `tlv_bytes` (raw, as a peer could send)."""
    fields = open_channel_fields(peer, os.urandom(32))
    fields["tlvs"] = {}
    return SCHEMA.encode("open_channel", fields) + tlv_bytes


TYPE_12 = b"\x01\x02\x10\x00"            # channel_type: option_static_remotekey
UPFRONT = b"\x00\x00"                     # upfront_shutdown_script, empty


@pytest.mark.parametrize("tlvs", [
    pytest.param(TYPE_12 + UPFRONT, id="out_of_order"),
    pytest.param(UPFRONT + UPFRONT + TYPE_12, id="duplicate"),
    pytest.param(UPFRONT + TYPE_12 + b"\x02\x00", id="unknown_even_type"),
    pytest.param(UPFRONT + b"\x01\xfd\x00\x02\x10\x00", id="non_minimal_length"),
    pytest.param(UPFRONT + b"\xfd\x00\x01\x02\x10\x00", id="non_minimal_type"),
    pytest.param(UPFRONT + b"\x01\x05\x10\x00", id="length_past_end"),
])
def test_bad_tlv_stream_gets_warning_and_hangup(node, tlvs):
    peer = peer_of(node)
    peer.send_raw(_open_channel_with_tlvs(peer, tlvs))
    warned_and_closed(peer)
    assert not [n for n in node.subdaemon_pids_all().values() if n == "channeld"]
    node_is_well(node)


@pytest.mark.parametrize("raw", [
    pytest.param(SCHEMA.encode("error", {"channel_id": bytes(32), "data": b"abc"})[:-1] , id="error_len_past_end"),
    pytest.param((18).to_bytes(2, "big") + (4).to_bytes(2, "big") + (10).to_bytes(2, "big") + b"\x00", id="ping"),
    pytest.param((19).to_bytes(2, "big") + (3).to_bytes(2, "big"), id="pong"),
    pytest.param((259).to_bytes(2, "big") + bytes(40), id="announcement_signatures_short"),
])
def test_bad_lengths_get_warning_and_hangup(node, raw):
    peer = peer_of(node)
    peer.send_raw(raw)
    warned_and_closed(peer)
    node_is_well(node)


@pytest.mark.parametrize("name", ["channel_announcement", "node_announcement", "channel_update",
                                  "query_short_channel_ids", "query_channel_range", "reply_channel_range",
                                  "gossip_timestamp_filter", "reply_short_channel_ids_end"])
def test_nonsense_gossip_is_answered_with_at_most_a_warning(node, name):
    """Well-formed gossip with random contents (bad signatures, unknown
    chains, garbage encodings): gossipd ignores it or warns (BOLT 7), the
    connection stays."""
    peer = peer_of(node)
    for seed in range(5):
        fields = sample_message(SCHEMA, name, random.Random(seed))
        if "chain_hash" in fields and seed % 2:
            fields["chain_hash"] = peer.chain_hash
        peer.send(name, fields)
    assert peer.ping_ok()
    assert all(n in ("warning", None) or n.startswith("reply") for n, _ in peer.collect(quiet=0.5))
    node_is_well(node)


def test_rapid_reconnections_do_not_stall_the_node(node):
    """A peer with a channel hanging up as soon as it connects, again and
    again: each connection starts a channeld that the next one replaces.
    One replaced before it read its init must still exit at once (it used
    to wait for an init that never came until killed 5 s later, while the
    master's handling of every peer's connections waited for it)."""
    peer = peer_of(node)
    assert open_unconfirmed_channel(peer) is not None
    peer.close()
    for i in range(10):
        ScriptedPeer(node, seed=peer.seed).close()
        time.sleep(0.02 * (i % 4))
    start = time.monotonic()
    again = ScriptedPeer(node, seed=peer.seed)
    again.expect("channel_reestablish", timeout=15)
    assert time.monotonic() - start < 4
    node_is_well(node)


# -- messages on a live channel -----------------------------------------------------------
def _update_fee(fake: Any) -> None:
    """BOLT 2: only the opener sends update_fee (here the node opened)."""
    fake.send("update_fee", {"channel_id": fake.ch.channel_id, "feerate_per_kw": 5000})


def _zero_htlc(fake: Any) -> None:
    fake.send("update_add_htlc", {"channel_id": fake.ch.channel_id, "id": 0, "amount_msat": 0,
                                  "payment_hash": b"\x11" * 32, "cltv_expiry": 500,
                                  "onion_routing_packet": bytes(1366), "tlvs": {}})


def _empty_commitment(fake: Any) -> None:
    fake.send("commitment_signed", {"channel_id": fake.ch.channel_id, "signature": bytes(64),
                                    "htlc_signature": [], "tlvs": {}})


def _unexpected_revoke(fake: Any) -> None:
    fake.send("revoke_and_ack", {"channel_id": fake.ch.channel_id, "per_commitment_secret": os.urandom(32),
                                 "next_per_commitment_point": fake.signer.per_commitment_point(5)})


def _reestablish_while_connected(fake: Any) -> None:
    fake.send("channel_reestablish", {"channel_id": fake.ch.channel_id, "next_commitment_number": 1,
                                      "next_revocation_number": 2**64 - 1,
                                      "your_last_per_commitment_secret": os.urandom(32),
                                      "my_current_per_commitment_point": fake.signer.per_commitment_point(0),
                                      "tlvs": {}})


def _malformed_fail_without_badonion(fake: Any) -> None:
    fake.send("update_fail_malformed_htlc", {"channel_id": fake.ch.channel_id, "id": 0,
                                             "sha256_of_onion": bytes(32), "failure_code": 0x2002})


def _closing_signed_before_shutdown(fake: Any) -> None:
    fake.send("closing_signed", {"channel_id": fake.ch.channel_id, "fee_satoshis": 1000, "signature": bytes(64),
                                 "tlvs": {}})


# (a channel_reestablish while connected is a warning, not this: test_recovery.py)
@pytest.mark.parametrize("misbehave", [_update_fee, _zero_htlc, _empty_commitment, _unexpected_revoke,
                                       _malformed_fail_without_badonion,
                                       _closing_signed_before_shutdown])
def test_bad_channel_message_fails_the_channel(node_factory, misbehave: Callable[[Any], None]):
    from test_misbehaving_peer import open_with_fake_peer
    n = node_factory.get_node()
    fake = open_with_fake_peer(n, 0x45, 0)
    misbehave(fake)
    fields = fake.expect("error")       # BOLT 2: the channel is failed, with an error naming it
    assert fields["channel_id"] == fake.ch.channel_id
    wait_for(lambda: n.rpc.listpeerchannels(fake.node_id)["channels"][0]["state"]
             in ("AWAITING_UNILATERAL", "FUNDING_SPEND_SEEN", "ONCHAIN"))
    node_is_well(n)


def test_reestablish_while_connected_warns_and_disconnects(node_factory):
    """A channel_reestablish in the middle of normal operation is a peer out
    of step (its channel daemon restarted), not a thief: a warning, a new
    connection, the channel intact (docs/ARCHITECTURE.md, PeerWarning)."""
    from test_misbehaving_peer import open_with_fake_peer
    n = node_factory.get_node()
    fake = open_with_fake_peer(n, 0x48, 0)
    _reestablish_while_connected(fake)
    with pytest.raises(ValueError):          # pyln-proto: the connection is closed
        fake.read()                          # (the warning is skipped by FakePeer.read)
    wait_for(lambda: not n.rpc.listpeers(fake.node_id)["peers"][0]["connected"])
    assert n.rpc.listpeerchannels(fake.node_id)["channels"][0]["state"] == "CHANNELD_NORMAL"
    node_is_well(n)


def test_truncated_channel_message_closes_the_connection_not_the_channel(node_factory):
    """BOLT 1: insufficient length closes the connection (the channel MAY be
    failed; we keep it): after a reconnection it is usable again."""
    from test_misbehaving_peer import open_with_fake_peer
    n = node_factory.get_node()
    fake = open_with_fake_peer(n, 0x46, 0)
    fake.conn.send_message(SCHEMA.encode("commitment_signed", {"channel_id": fake.ch.channel_id,
                                                               "signature": bytes(64), "htlc_signature": [],
                                                               "tlvs": {}})[:50])
    wait_for(lambda: not n.rpc.listpeers(fake.node_id)["peers"][0]["connected"])
    assert n.rpc.listpeerchannels(fake.node_id)["channels"][0]["state"] == "CHANNELD_NORMAL"
    node_is_well(n)


# -- HTLCs with onions the node cannot use: failed back, nothing else ----------------------------
def _pubkey() -> bytes:
    from channeld.core.signer import LocalSigner
    return LocalSigner.from_seed(os.urandom(32)).funding_pubkey()


ONIONS = {
    "random_bytes": lambda: os.urandom(1366),
    "unknown_version": lambda: b"\x07" + _pubkey() + os.urandom(1366 - 34),
    "invalid_ephemeral_key": lambda: b"\x00" + b"\x02" + bytes(32) + os.urandom(1366 - 34),
    "bad_hmac": lambda: b"\x00" + _pubkey() + os.urandom(1366 - 34),
    "all_zero": lambda: bytes(1366),
}


def _commit_dance(fake: Any) -> None:
    """The peer signs, the node revokes and signs back, the peer revokes."""
    ch = fake.ch
    fake.send(*ch.send_commitment())
    ch.recv_revoke_and_ack(fake.expect("revoke_and_ack"))
    ch.recv_commitment_signed(fake.expect("commitment_signed"))
    ch.mark_persisted()
    fake.send(*ch.revoke().message)


@pytest.mark.parametrize("onion", sorted(ONIONS))
def test_htlc_with_an_unusable_onion_is_failed_back(node_factory, onion):
    """A correctly committed HTLC whose onion is garbage: the node fails it
    back (BOLT 2/4: update_fail_malformed_htlc with BADONION, or
    update_fail_htlc), the channel stays up, no BROKEN line."""
    from test_misbehaving_peer import open_with_fake_peer
    n = node_factory.get_node()
    fake = open_with_fake_peer(n, 0x47, 300_000_000)
    height = n.rpc.getinfo()["blockheight"]
    fake.send(*fake.ch.add_htlc(10_000_000, os.urandom(32), height + 40, ONIONS[onion](), height))
    _commit_dance(fake)
    name, fields = fake.read()
    while name in ("warning",):
        name, fields = fake.read()
    assert name in ("update_fail_malformed_htlc", "update_fail_htlc"), (name, fields)
    if name == "update_fail_malformed_htlc":
        assert fields["failure_code"] & 0x8000   # BADONION
        fake.ch.recv_update_fail_malformed_htlc(fields)
    else:
        fake.ch.recv_update_fail_htlc(fields)
    ch = fake.ch
    ch.recv_commitment_signed(fake.expect("commitment_signed"))
    ch.mark_persisted()
    fake.send(*ch.revoke().message)
    fake.send(*ch.send_commitment())
    ch.recv_revoke_and_ack(fake.expect("revoke_and_ack"))
    assert n.rpc.listpeerchannels(fake.node_id)["channels"][0]["state"] == "CHANNELD_NORMAL"
    node_is_well(n)
