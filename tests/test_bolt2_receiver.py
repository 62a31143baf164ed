"""BOLT 2's requirements on the receiving node that the other tests do not
already cover (docs/BOLT-RECEIVER-REQUIREMENTS.md lists them all, with
the tests of each): opening as fundee and funder, commitments and
revocations, HTLC removals, shutdown, retransmission.

The peer is a scripted BOLT 8 peer (pyln-proto, tests/scripted_peer.py)
keeping its side of the channel with the channel core; where it opens the
channel, the test chain's faucet really funds it."""
from __future__ import annotations

import os
import time
from typing import Any

import pytest

import wire
from bitcoin.hashes import sha256
from bitcoin.tx import Tx
from node_factory import wait_for
from scripted_peer import (PeerClosed, ScriptedPeer, commit_dance, open_channel_fields, open_funded_channel,
                           open_unconfirmed_channel, reconnect)

SCHEMA = wire.bolt_schema()
ONION = 1366
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
FAILED = ("AWAITING_UNILATERAL", "FUNDING_SPEND_SEEN", "ONCHAIN")


def funded(node_factory: Any, seed: int = 0x61, **kw: Any) -> tuple[Any, ScriptedPeer, Any]:
    """A node and a peer that opened (and funded) a CHANNELD_NORMAL channel with it."""
    node = node_factory.get_node()
    peer = ScriptedPeer(node, seed=seed)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    ch = open_funded_channel(peer, **kw)
    return node, peer, ch


def chan(node: Any, peer: ScriptedPeer) -> dict:
    return node.rpc.listpeerchannels(peer.node_id)["channels"][0]


def peer_adds(node: Any, peer: ScriptedPeer, ch: Any, amount: int = 10_000_000,
              payment_hash: bytes | None = None) -> None:
    height = node.rpc.getinfo()["blockheight"]
    peer.send(*ch.add_htlc(amount, payment_hash or os.urandom(32), height + 40, os.urandom(ONION), height))


def high_s(sig: bytes) -> bytes:
    """The same ECDSA signature with s replaced by n - s: valid, but not low-S."""
    s = int.from_bytes(sig[32:], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big")


def flip(sig: bytes) -> bytes:
    return sig[:40] + bytes([sig[40] ^ 1]) + sig[41:]


def refused(peer: ScriptedPeer, channel_id: bytes) -> str:
    """BOLT 2's "MUST send a `warning` and close the connection, or send an
    `error` and fail the channel": which one the node chose, with its text."""
    while True:
        try:
            name, fields = peer.read(20)
        except PeerClosed:
            assert peer.warnings, "closed without a warning"
            return "warning"
        if name == "error":
            assert fields["channel_id"] == channel_id, fields
            return "error: " + fields["data"].decode(errors="replace")
        if name == "warning":
            # the connection must then close
            with pytest.raises(PeerClosed):
                while True:
                    peer.read(20)
            return "warning: " + fields["data"].decode(errors="replace")


def funding_spent_in_mempool(node: Any, txid_hex: str) -> bool:
    for t in node.chain.rpc.getrawmempool():
        tx = Tx.parse(bytes.fromhex(node.chain.rpc.getrawtransaction(t)))
        if any(i.prevout.txid_hex == txid_hex for i in tx.inputs):
            return True
    return False


def node_is_well(node: Any) -> None:
    assert node.rpc.getinfo()["id"] == node.node_id
    assert node.broken_lines() == []
    assert "Traceback" not in node.stderr_text()


# -- open_channel (we are the fundee) ----------------------------------------------------------
def test_open_channel_undefined_channel_flags_are_ignored(node_factory):
    """BOLT 2: the receiving node MUST "ignore undefined bits in
    `channel_flags`"."""
    node = node_factory.get_node()
    peer = ScriptedPeer(node)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    temp = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp, channel_flags=0xFE))
    assert peer.expect("accept_channel")["temporary_channel_id"] == temp
    node_is_well(node)


def test_reconnection_replaces_an_open_before_funding_created(node_factory):
    """BOLT 2: "if the connection has been re-established after receiving a
    previous `open_channel`, BUT before receiving a `funding_created`
    message: accept a new `open_channel` message; discard the previous
    `open_channel` message": the new one is accepted (not refused as a
    second open in progress), funding_created for the old one gets nothing
    committed, and the new one completes."""
    node = node_factory.get_node()
    peer = ScriptedPeer(node)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    old = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, old))
    assert peer.expect("accept_channel")["temporary_channel_id"] == old
    peer.close()
    peer = ScriptedPeer(node, seed=peer.seed)
    assert open_unconfirmed_channel(peer) is not None
    wait_for(lambda: [c["state"] for c in node.rpc.listpeerchannels(peer.node_id)["channels"]]
             == ["CHANNELD_AWAITING_LOCKIN"])
    node_is_well(node)


def test_push_msat_is_not_spendable_before_the_funding_is_deep_enough(node_factory):
    """BOLT 2: the receiving node "MUST NOT consider funds received, using
    `push_msat`, to be received until the funding transaction has reached
    sufficient depth": the pushed amount is our balance but nothing of it
    is spendable until the channel is locked in."""
    node = node_factory.get_node()
    peer = ScriptedPeer(node)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    assert open_unconfirmed_channel(peer, push_msat=300_000_000) is not None
    wait_for(lambda: chan(node, peer)["state"] == "CHANNELD_AWAITING_LOCKIN")
    c = chan(node, peer)
    assert c["to_us_msat"] == 300_000_000 and c["spendable_msat"] == 0
    node_is_well(node)


@pytest.mark.parametrize("bad", ["wrong_signature", "high_s_signature"])
def test_funding_created_with_a_bad_signature(node_factory, bad):
    """BOLT 2 (funding_created): "if `signature` is incorrect OR
    non-compliant with LOW-S-standard rule: MUST send a `warning` and close
    the connection, or send an `error` and fail the channel": an error
    for the temporary channel id, nothing stored."""
    from bitcoin.tx import OutPoint
    from channeld.core import Channel, ChannelParams, ChannelType, PartyConfig
    from common.commitment import Side
    node = node_factory.get_node()
    peer = ScriptedPeer(node)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    temp = os.urandom(32)
    oc = open_channel_fields(peer, temp)
    peer.send("open_channel", oc)
    acc = peer.expect("accept_channel")
    params = ChannelParams(OutPoint(os.urandom(32), 0), oc["funding_satoshis"], Side.LOCAL,
                           PartyConfig.from_wire(oc), PartyConfig.from_wire(acc), ChannelType())
    ch = Channel.new(params, peer.signer, push_msat=0, feerate_per_kw=oc["feerate_per_kw"],
                     remote_first_per_commitment_point=acc["first_per_commitment_point"], max_to_self_delay=2**16)
    sig = ch.initial_remote_commitment_sig()
    peer.send("funding_created", {"temporary_channel_id": temp, "funding_txid": params.funding_outpoint.txid,
                                  "funding_output_index": 0,
                                  "signature": flip(sig) if bad == "wrong_signature" else high_s(sig)})
    answer = refused(peer, temp)
    assert answer.startswith("error") and "bad signature" in answer, answer
    wait_for(lambda: node.rpc.listpeerchannels(peer.node_id)["channels"] == [])
    node_is_well(node)


# -- commitment_signed, revoke_and_ack -------------------------------------------------------------
@pytest.mark.parametrize("bad", ["high_s_signature", "missing_htlc_signature", "extra_htlc_signature",
                                 "wrong_htlc_signature", "high_s_htlc_signature"])
def test_bad_commitment_signed_fails_the_channel(node_factory, bad):
    """BOLT 2 (commitment_signed receiver): a `signature` non-compliant with
    LOW-S, `num_htlcs` not the number of HTLC outputs, an `htlc_signature`
    not valid (or high-S): "MUST send a `warning` and close the connection,
    or send an `error` and fail the channel" (we fail it)."""
    node, peer, ch = funded(node_factory)
    funding_txid = chan(node, peer)["funding_txid"]
    peer_adds(node, peer, ch)
    name, fields = ch.send_commitment()
    fields = dict(fields)
    hs = list(fields["htlc_signature"])
    if bad == "high_s_signature":
        fields["signature"] = high_s(fields["signature"])
    elif bad == "missing_htlc_signature":
        hs = hs[:-1]
    elif bad == "extra_htlc_signature":
        hs = hs + hs[-1:]
    elif bad == "wrong_htlc_signature":
        hs[0] = flip(hs[0])
    else:
        hs[0] = high_s(hs[0])
    fields["htlc_signature"] = hs
    peer.send(name, fields)
    assert refused(peer, ch.channel_id).startswith("error")
    wait_for(lambda: chan(node, peer)["state"] in FAILED)
    wait_for(lambda: funding_spent_in_mempool(node, funding_txid))
    node_is_well(node)


def test_revoke_and_ack_with_a_wrong_secret_fails_the_channel(node_factory):
    """BOLT 2 (revoke_and_ack receiver): "if `per_commitment_secret` is not
    a valid secret key or does not generate the previous
    `per_commitment_point`: MUST send an `error` and fail the channel"."""
    node, peer, ch = funded(node_factory)
    peer_adds(node, peer, ch)
    peer.send(*ch.send_commitment())
    ch.recv_revoke_and_ack(peer.expect("revoke_and_ack"))
    ch.recv_commitment_signed(peer.expect("commitment_signed"))
    ch.mark_persisted()
    name, fields = ch.revoke().message
    peer.send(name, {**fields, "per_commitment_secret": os.urandom(32)})
    assert refused(peer, ch.channel_id).startswith("error")
    wait_for(lambda: chan(node, peer)["state"] in FAILED)
    node_is_well(node)


# -- HTLCs ----------------------------------------------------------------------------------------
def test_htlcs_with_the_same_payment_hash_are_accepted(node_factory):
    """BOLT 2 (update_add_htlc receiver): "MUST allow multiple HTLCs with
    the same `payment_hash`" (then fails them back: their onions are
    garbage)."""
    node, peer, ch = funded(node_factory)
    h = os.urandom(32)
    peer_adds(node, peer, ch, 10_000_000, h)
    peer_adds(node, peer, ch, 20_000_000, h)
    commit_dance(peer, ch)
    htlcs = chan(node, peer)["htlcs"]
    assert sorted(x["amount_msat"] for x in htlcs) == [10_000_000, 20_000_000]
    assert {x["payment_hash"] for x in htlcs} == {h.hex()}
    assert chan(node, peer)["state"] == "CHANNELD_NORMAL"
    node_is_well(node)


def test_uncommitted_updates_are_forgotten_on_disconnection(node_factory):
    """BOLT 2: "upon disconnection: MUST reverse any uncommitted updates
    sent by the other side", and (update_add_htlc) "if the sender did not
    previously acknowledge the commitment of that HTLC: MUST ignore a
    repeated `id` value after a reconnection": our HTLC 0, never signed,
    is gone after the reconnection, and the same id 0 offered again is
    accepted once."""
    node, peer, ch = funded(node_factory)
    peer_adds(node, peer, ch, 12_345_000)
    assert peer.ping_ok()           # the node has it (uncommitted)
    peer = reconnect(peer, ch)      # our add is retransmitted with its id 0
    commit_dance(peer, ch)
    assert [(x["id"], x["amount_msat"]) for x in chan(node, peer)["htlcs"]] == [(0, 12_345_000)]
    assert chan(node, peer)["state"] == "CHANNELD_NORMAL"
    node_is_well(node)


def _node_offers(node: Any, peer: ScriptedPeer, ch: Any, amount: int = 10_000_000) -> tuple[dict, bytes]:
    """The node pays through the channel to the peer; the peer takes the
    HTLC and both commitments include it irrevocably.  The add, and its
    payment hash's preimage we do not know."""
    payment_hash = os.urandom(32)
    scid = chan(node, peer)["short_channel_id"]
    node.rpc.sendpay([{"id": peer.node_id, "channel": scid, "amount_msat": amount, "delay": 20}],
                     payment_hash.hex())
    add = peer.expect("update_add_htlc")
    ch.recv_update_add_htlc(add)
    ch.recv_commitment_signed(peer.expect("commitment_signed"))
    ch.mark_persisted()
    peer.send(*ch.revoke().message)
    peer.send(*ch.send_commitment())
    ch.recv_revoke_and_ack(peer.expect("revoke_and_ack"))
    return add, payment_hash


@pytest.mark.parametrize("bad", ["wrong_preimage", "malformed_without_badonion"])
def test_bad_removal_of_an_htlc_we_offered_fails_the_channel(node_factory, bad):
    """BOLT 2 (removal receiver): "if the `payment_preimage` value in
    `update_fulfill_htlc` doesn't SHA256 hash to the corresponding HTLC
    `payment_hash`" and "if the `BADONION` bit in `failure_code` is not set
    for `update_fail_malformed_htlc`": "MUST send a `warning` and close the
    connection, or send an `error` and fail the channel" (we fail it), for
    an HTLC that exists (an unknown id: test_misbehaving_peer)."""
    node, peer, ch = funded(node_factory, push_msat=300_000_000)
    add, _ = _node_offers(node, peer, ch)
    if bad == "wrong_preimage":
        peer.send("update_fulfill_htlc", {"channel_id": ch.channel_id, "id": add["id"],
                                          "payment_preimage": os.urandom(32)})
        reason = "preimage"
    else:
        peer.send("update_fail_malformed_htlc", {"channel_id": ch.channel_id, "id": add["id"],
                                                 "sha256_of_onion": sha256(add["onion_routing_packet"]),
                                                 "failure_code": 0x4000 | 5})
        reason = "BADONION"
    answer = refused(peer, ch.channel_id)
    assert answer.startswith("error") and reason in answer, answer
    wait_for(lambda: chan(node, peer)["state"] in FAILED)
    node_is_well(node)


def test_fail_malformed_is_returned_upstream_with_its_code(node_factory):
    """BOLT 2: "a receiving node which has an outgoing HTLC canceled by
    `update_fail_malformed_htlc`: MUST return an error in the
    `update_fail_htlc` sent to the link which originally sent the HTLC,
    using the `failure_code` given and setting the data to
    `sha256_of_onion`": l1 pays through the node to the peer, which says
    the onion was malformed; l1 learns that code from the node."""
    from test_channels import fund
    l1 = node_factory.get_node()
    node, peer, ch = funded(node_factory, push_msat=300_000_000)
    fund(l1)
    l1.connect(node)
    l1.rpc.fundchannel(node.node_id, 1_000_000)
    l1.chain.mine(6)
    wait_for(lambda: l1.rpc.listpeerchannels(node.node_id)["channels"][0]["state"] == "CHANNELD_NORMAL")
    wait_for(lambda: node.rpc.listpeerchannels(l1.node_id)["channels"][0]["state"] == "CHANNELD_NORMAL")
    scid1 = l1.rpc.listpeerchannels(node.node_id)["channels"][0]["short_channel_id"]
    scid2 = chan(node, peer)["short_channel_id"]
    amount, fee = 1_000_000, 1000 + 1_000_000 * 10 // 1_000_000
    payment_hash = os.urandom(32)
    l1.rpc.sendpay([{"id": node.node_id, "channel": scid1, "amount_msat": amount + fee, "delay": 20 + 34},
                    {"id": peer.node_id, "channel": scid2, "amount_msat": amount, "delay": 20}],
                   payment_hash.hex())
    add = peer.expect("update_add_htlc")
    ch.recv_update_add_htlc(add)
    ch.recv_commitment_signed(peer.expect("commitment_signed"))
    ch.mark_persisted()
    peer.send(*ch.revoke().message)
    peer.send(*ch.send_commitment())
    ch.recv_revoke_and_ack(peer.expect("revoke_and_ack"))
    code = 0x8000 | 0x4000 | 5         # invalid_onion_hmac
    peer.send(*ch.fail_malformed_htlc(add["id"], sha256(add["onion_routing_packet"]), code))
    commit_dance(peer, ch)
    from pyln.client import RpcError
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(payment_hash.hex(), 60)
    data = e.value.error["data"]
    # an error made by the node (erring_index 1: in an update_fail_htlc, not
    # passed on as update_fail_malformed_htlc, which l1 would blame on
    # itself), on behalf of the peer (Core Lightning's erring_node for BADONION)
    assert data["failcode"] == code and data["erring_index"] == 1, data
    assert data["erring_node"] == peer.node_id and data["erring_channel"] == scid2, data
    node_is_well(node)


# -- shutdown ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", [
    pytest.param(b"\x00\x14" + b"\x22" * 20, id="not_the_upfront_script"),
    pytest.param(b"\x76\xa9\x14" + b"\x22" * 20 + b"\x88\xac", id="p2pkh_not_allowed"),
])
def test_shutdown_with_a_script_we_cannot_take_warns_and_disconnects(node_factory, script):
    """BOLT 2 (shutdown receiver): if both advertised
    option_upfront_shutdown_script and the peer gave a non-empty
    `shutdown_scriptpubkey` in `open_channel` that is not the shutdown's
    `scriptpubkey`: "MAY send a `warning`. MUST fail the connection"; "if
    the `scriptpubkey` is not in one of the above forms: SHOULD send a
    `warning`".  A warning and a disconnection, as Core Lightning: the
    channel is not failed (it used to be)."""
    upfront = b"\x00\x14" + b"\x11" * 20
    node = node_factory.get_node()
    peer = ScriptedPeer(node)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    ch = open_funded_channel(peer, tlvs={"upfront_shutdown_script": {"shutdown_scriptpubkey": upfront},
                                         "channel_type": {"type": b"\x10\x00"}})
    peer.send("shutdown", {"channel_id": ch.channel_id, "scriptpubkey": script})
    answer = refused(peer, ch.channel_id)
    assert answer.startswith("warning") and ("upfront_shutdown_script" in answer or "allowed form" in answer), answer
    wait_for(lambda: not node.rpc.listpeers(peer.node_id)["peers"][0]["connected"])
    assert chan(node, peer)["state"] == "CHANNELD_NORMAL"
    node_is_well(node)


# -- retransmission -----------------------------------------------------------------------------
def test_node_waits_for_channel_reestablish(node_factory):
    """BOLT 2: "upon reconnection: MUST transmit `channel_reestablish` for
    each channel; MUST wait to receive the other node's
    `channel_reestablish` message before sending any other messages for
    that channel": the channel_ready it owes (nothing committed yet) comes
    only after ours."""
    node, peer, ch = funded(node_factory)
    peer.close()
    ch.disconnect()
    again = ScriptedPeer(node, seed=peer.seed)
    theirs = again.expect("channel_reestablish")
    assert theirs["channel_id"] == ch.channel_id
    quiet = [n for n, f in again.collect(quiet=3) if f.get("channel_id") == ch.channel_id]
    assert quiet == []
    again.send(*ch.reestablish_msg())
    ch.recv_reestablish(theirs)
    assert again.expect("channel_ready")["channel_id"] == ch.channel_id
    node_is_well(node)


def test_private_channel_update_waits_for_channel_reestablish(node_factory):
    """BOLT 2: "MUST wait to receive the other node's `channel_reestablish`
    message before sending any other messages for that channel": our
    channel_update of the unannounced channel (dont_forward) comes after
    the peer's channel_reestablish, not on connection (lnprototest's
    reestablish scenario caught it first), as Core Lightning's."""
    def names_until_quiet(p: ScriptedPeer, quiet: float) -> list[str]:
        out = []
        while True:
            try:
                out.append(SCHEMA.decode(p.read_raw(quiet)).name)
            except (TimeoutError, OSError, PeerClosed):
                return out

    node, peer, ch = funded(node_factory)
    wait_for(lambda: "channel_update" in names_until_quiet(peer, 1))     # sent after channel_ready
    peer.close()
    ch.disconnect()
    again = ScriptedPeer(node, seed=peer.seed)
    early = names_until_quiet(again, 3)
    assert "channel_reestablish" in early and "channel_update" not in early, early
    theirs = ch.reestablish_msg()
    again.send(*theirs)
    wait_for(lambda: "channel_update" in names_until_quiet(again, 1), timeout=15)
    assert chan(node, again)["reestablished"] is True
    node_is_well(node)


def test_channel_ready_retransmitted_only_before_the_first_commitment(node_factory):
    """BOLT 2: "if `next_commitment_number` is 1 in both the
    `channel_reestablish` it sent and received: MUST retransmit
    `channel_ready`; otherwise: MUST NOT retransmit `channel_ready`", and
    "upon reconnection: MUST ignore any redundant `channel_ready` it
    receives"."""
    node, peer, ch = funded(node_factory)
    peer = reconnect(peer, ch)                  # asserts the retransmitted channel_ready
    peer.send(*ch.channel_ready_msg())          # redundant: ignored
    assert peer.ping_ok()
    peer.send(*ch.update_fee(7000))
    commit_dance(peer, ch)
    wait_for(lambda: chan(node, peer)["feerate"]["perkw"] == 7000)
    peer.close()
    ch.disconnect()
    again = ScriptedPeer(node, seed=peer.seed)
    theirs = again.expect("channel_reestablish")
    assert theirs["next_commitment_number"] == 2
    again.send(*ch.reestablish_msg())
    ch.recv_reestablish(theirs)
    again.send(*ch.channel_ready_msg())         # redundant again
    assert [n for n, _ in again.collect(quiet=3)] == []
    assert again.ping_ok()
    assert chan(node, again)["state"] == "CHANNELD_NORMAL"
    node_is_well(node)


def test_reestablish_my_current_per_commitment_point_is_ignored(node_factory):
    """BOLT 2: the receiving node "MUST ignore
    `my_current_per_commitment_point`, but MAY require it to be a valid
    point": another valid point changes nothing."""
    node, peer, ch = funded(node_factory)
    peer.close()
    ch.disconnect()
    again = ScriptedPeer(node, seed=peer.seed)
    theirs = again.expect("channel_reestablish")
    name, fields = ch.reestablish_msg()
    again.send(name, {**fields, "my_current_per_commitment_point": ch.signer.per_commitment_point(77)})
    ch.recv_reestablish(theirs)
    again.expect("channel_ready")
    again.send(*ch.update_fee(7000))
    commit_dance(again, ch)
    wait_for(lambda: chan(node, again)["feerate"]["perkw"] == 7000)
    node_is_well(node)


def test_reestablish_with_next_commitment_number_zero_fails_the_channel(node_factory):
    """BOLT 2: "if `next_commitment_number` is zero: MUST immediately fail
    the channel and broadcast any relevant latest commitment
    transaction"."""
    node, peer, ch = funded(node_factory)
    funding_txid = chan(node, peer)["funding_txid"]
    peer.close()
    ch.disconnect()
    again = ScriptedPeer(node, seed=peer.seed)
    again.expect("channel_reestablish")
    name, fields = ch.reestablish_msg()
    again.send(name, {**fields, "next_commitment_number": 0})
    assert refused(again, ch.channel_id).startswith("error")
    wait_for(lambda: chan(node, again)["state"] in FAILED)
    wait_for(lambda: funding_spent_in_mempool(node, funding_txid))
    node_is_well(node)


def test_failed_channel_answers_each_message_with_an_error(node_factory):
    """BOLT 2 (message retransmission): "upon reconnection: if a channel is
    in an error state: SHOULD retransmit the error packet and ignore any
    other packets for that channel".  As Core Lightning: every message for
    the failed channel (its channel_reestablish included) is answered with
    an `error` naming the state, and changes nothing."""
    node, peer, ch = funded(node_factory)
    peer.send("error", {"channel_id": ch.channel_id, "data": b"giving up"})
    wait_for(lambda: chan(node, peer)["state"] in FAILED)
    peer.close()
    ch.disconnect()
    again = ScriptedPeer(node, seed=peer.seed)
    for name, fields in (ch.reestablish_msg(), ("update_fee", {"channel_id": ch.channel_id, "feerate_per_kw": 9000})):
        again.send(name, fields)
        answers = [(n, f) for n, f in again.collect(quiet=2) if f.get("channel_id") == ch.channel_id]
        assert [n for n, _ in answers] == ["error"], (name, answers)
        assert answers[0][1]["data"].startswith(b"channel in state "), answers
    state = chan(node, again)["state"]
    assert state in FAILED and chan(node, again)["feerate"]["perkw"] != 9000
    assert again.ping_ok()          # the connection (for other channels) stays
    node_is_well(node)


def test_reestablish_after_our_mutual_close_gets_no_error(node_factory):
    """A peer that missed the node's last closing_signed reconnects: the
    channel is closed by agreement (CLOSINGD_COMPLETE, not an error state),
    so the node sends no `error` that would make the peer broadcast its
    commitment against the close; the close confirms and both see it."""
    node, peer, ch = funded(node_factory)
    funding_txid = chan(node, peer)["funding_txid"]
    peer.send(*ch.shutdown(bytes([0, 20]) + bytes(range(20))))
    ch.recv_shutdown(peer.expect("shutdown"))
    fees = ch.default_closing_fees()
    peer.send(*ch.start_closing(fees))
    while chan(node, peer)["state"] != "CLOSINGD_COMPLETE":
        result = ch.recv_closing_signed(peer.expect("closing_signed"))
        if result.reply is not None:
            peer.send(*result.reply)
    wait_for(lambda: funding_spent_in_mempool(node, funding_txid))
    peer.close()
    ch.disconnect()
    again = ScriptedPeer(node, seed=peer.seed)
    again.send(*ch.reestablish_msg())
    answers = [(n, f) for n, f in again.collect(quiet=3) if f.get("channel_id") == ch.channel_id]
    assert all(n != "error" for n, _ in answers), answers
    assert chan(node, again)["state"] == "CLOSINGD_COMPLETE"
    node.chain.mine(1)
    wait_for(lambda: chan(node, again)["state"] in ("FUNDING_SPEND_SEEN", "ONCHAIN"))
    node_is_well(node)


# -- announcement_signatures (BOLT 7) ------------------------------------------------------------
def _announcement_signatures(node: Any, peer: ScriptedPeer, ch: Any, scid: int) -> dict:
    """Ours (the peer's) for the channel's announcement: node and bitcoin
    signatures of its double-SHA256 from offset 256."""
    from bitcoin.hashes import hash256
    from synthetic_graph import sign
    ours = (bytes.fromhex(peer.node_id), ch.params.local.funding_pubkey)
    theirs = (bytes.fromhex(node.node_id), ch.params.remote.funding_pubkey)
    (n1, b1), (n2, b2) = sorted([ours, theirs])
    zero = bytes(64)
    raw = SCHEMA.encode("channel_announcement", {
        "node_signature_1": zero, "node_signature_2": zero, "bitcoin_signature_1": zero,
        "bitcoin_signature_2": zero, "features": b"", "chain_hash": peer.chain_hash,
        "short_channel_id": scid.to_bytes(8, "big"), "node_id_1": n1, "node_id_2": n2,
        "bitcoin_key_1": b1, "bitcoin_key_2": b2})
    digest = hash256(raw[258:])
    return {"channel_id": ch.channel_id, "short_channel_id": scid.to_bytes(8, "big"),
            "node_signature": sign(bytes([peer.seed] * 32), digest),
            "bitcoin_signature": sign(peer.signer._funding_privkey, digest)}


def test_announcement_signatures_answered_after_a_reconnection(node_factory):
    """BOLT 7: upon reconnection, "if it receives `announcement_signatures`
    for the funding transaction: MUST respond with its own", even once the
    channel is announced; one for another short_channel_id gets a warning
    ("SHOULD send a `warning`"), bad signatures a warning and a
    disconnection: never a failed channel."""
    from common.scid import ShortChannelId
    node, peer, ch = funded(node_factory, channel_flags=1)
    node.chain.mine(3)                                # 6 deep: announce
    theirs = peer.expect("announcement_signatures", timeout=30)
    scid = ShortChannelId.parse(chan(node, peer)["short_channel_id"]).to_int()
    assert theirs["short_channel_id"] == scid.to_bytes(8, "big")
    peer.send("announcement_signatures", _announcement_signatures(node, peer, ch, scid))
    wait_for(lambda: len(node.rpc.listchannels(chan(node, peer)["short_channel_id"])["channels"]) >= 1)
    peer = reconnect(peer, ch)
    wrong = dict(_announcement_signatures(node, peer, ch, scid), short_channel_id=(scid + 1).to_bytes(8, "big"))
    peer.send("announcement_signatures", wrong)
    assert b"short_channel_id" in peer.expect("warning")["data"]
    peer.send("announcement_signatures", _announcement_signatures(node, peer, ch, scid))
    again = peer.expect("announcement_signatures", timeout=15)
    assert again == theirs
    # bad signatures: "MAY send a `warning` and close the connection, or send
    # an `error` and fail the channel": a warning and a disconnection
    bad = _announcement_signatures(node, peer, ch, scid)
    peer.send("announcement_signatures", dict(bad, node_signature=flip(bad["node_signature"])))
    assert refused(peer, ch.channel_id).startswith("warning: announcement_signatures: bad node_signature")
    assert chan(node, peer)["state"] == "CHANNELD_NORMAL"
    node_is_well(node)


# -- HTLC deadlines ----------------------------------------------------------------------------------
def test_fulfilled_htlc_past_its_deadline_fails_the_channel(node_factory):
    """BOLT 2 (a fulfilling node): "if an HTLC it has fulfilled is in either
    node's current commitment transaction, AND is past this fulfillment
    deadline: SHOULD send an `error` to the offering peer (if connected);
    MUST fail the channel": the peer pays the node's invoice, takes the
    preimage and never signs the removal; half a cltv_delta (17 blocks)
    before the HTLC's expiry the node goes on chain, where the preimage
    gets it the money."""
    from common.onion import create_onion
    from common.onion_payload import HopPayload, PaymentData, encode_payload
    node, peer, ch = funded(node_factory)
    funding_txid = chan(node, peer)["funding_txid"]
    amount = 10_000_000
    inv = node.rpc.invoice(amount, "deadline", "deadline")
    payment_hash, secret = bytes.fromhex(inv["payment_hash"]), bytes.fromhex(inv["payment_secret"])
    height = node.rpc.getinfo()["blockheight"]
    expiry = height + 40
    payload = encode_payload(HopPayload(amt_to_forward=amount, outgoing_cltv_value=expiry,
                                        payment_data=PaymentData(secret, amount)))
    onion = create_onion(os.urandom(32), [(bytes.fromhex(node.node_id), payload)], payment_hash)[0]
    peer.send(*ch.add_htlc(amount, payment_hash, expiry, onion, height))
    commit_dance(peer, ch)
    ful = peer.expect("update_fulfill_htlc")
    assert sha256(ful["payment_preimage"]) == payment_hash
    ch.recv_update_fulfill_htlc(ful)
    # ... and we never answer the node's commitment_signed
    node.chain.mine(expiry - 17 - node.rpc.getinfo()["blockheight"] - 1)
    time.sleep(3)
    assert chan(node, peer)["state"] == "CHANNELD_NORMAL"      # not yet
    node.chain.mine(1)
    wait_for(lambda: chan(node, peer)["state"] in FAILED)
    wait_for(lambda: funding_spent_in_mempool(node, funding_txid))
    assert any(n == "error" for n, _ in peer.collect(quiet=2))
    node_is_well(node)


def test_shutdown_before_funding_created_fails_the_open(node_factory):
    """BOLT 2 (shutdown receiver): "if it hasn't received a `funding_signed`
    (if it is a funder) or a `funding_created` (if it is a fundee): SHOULD
    send an `error` and fail the channel": the open is dropped with an
    error for its temporary id; the connection stays."""
    node = node_factory.get_node()
    peer = ScriptedPeer(node)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    temp = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp))
    peer.expect("accept_channel")
    peer.send("shutdown", {"channel_id": temp, "scriptpubkey": b"\x00\x14" + b"\x33" * 20})
    assert refused(peer, temp).startswith("error")
    wait_for(lambda: node.rpc.listpeerchannels(peer.node_id)["channels"] == [])
    assert peer.ping_ok()
    node_is_well(node)
