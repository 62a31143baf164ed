"""Route blinding between real nodes: HTLCs through a blinded path, the
introduction point (current_path_key in its payload), a node inside the path
(path_key in update_add_htlc), and BOLT 4's error rule: whatever fails inside
a blinded path, the sender sees only invalid_onion_blinding from the
introduction point (nodes inside answer update_fail_malformed_htlc).

The paths here are made by the test (it knows only the nodes' ids, as any
recipient would); BOLT 12 payments through the paths nodes make themselves
are in test_offers.py."""
import os

import pytest
from node_factory import sync_blockheight, wait_for
from pyln.client import RpcError
from test_channels import channel, fund, open_channel

from common.blindedpath import EncryptedData, PaymentConstraints, PaymentRelay, aggregate_payinfo, create_blinded_path
from common.blindedpay import blinded_payloads
from common.onion import create_onion
from common.onion_payload import HopPayload, encode_payload
from common.scid import ShortChannelId

INVALID_ONION_BLINDING = 0xC018
RELAY = PaymentRelay(cltv_expiry_delta=40, fee_proportional_millionths=1000, fee_base_msat=2000)


def _scid(a, b) -> int:
    return ShortChannelId.parse(channel(a, b)["short_channel_id"]).to_int()


def in_a_line(node_factory, n: int = 4):
    """n nodes, a channel from each to the next, all at the chain's tip."""
    nodes = node_factory.get_nodes(n)
    for a, b in zip(nodes, nodes[1:]):
        fund(a)
        open_channel(a, b, 1_000_000)
    sync_blockheight(*nodes)
    return nodes


def _send_through(l1, path, amount, hops_before, payment_hash, final_cltv):
    """l1 pays `amount` to the blinded `path` whose introduction point is l1's peer."""
    info = aggregate_payinfo([RELAY] * hops_before)
    onion_hops = blinded_payloads(path, amount, final_cltv)
    first_amount = amount + info.fee_base_msat + amount * info.fee_proportional_millionths // 1_000_000
    packet, secrets = create_onion(os.urandom(32), onion_hops, bytes.fromhex(payment_hash))
    delay = final_cltv + info.cltv_expiry_delta - (l1.rpc.getinfo()["blockheight"] + 1)
    l1.rpc.sendonion(packet.hex(), {"id": path.first_node_id.hex(), "amount_msat": first_amount, "delay": delay},
                     payment_hash, shared_secrets=[s.hex() for s in secrets])
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(payment_hash, 60)
    return e.value.error


def test_inside_a_blinded_path_every_error_is_invalid_onion_blinding(node_factory):
    """l1 -> [l2 (intro) -> l3 -> l4]: the path forwards by scid and by next
    node id; l4 knows no such payment, l3 (inside) turns that into
    update_fail_malformed_htlc, l2 (the introduction point) into its own
    invalid_onion_blinding, which is all l1 learns."""
    l1, l2, l3, l4 = in_a_line(node_factory)
    height = l1.rpc.getinfo()["blockheight"]
    final_cltv = height + 10
    constraints = PaymentConstraints(max_cltv_expiry=height + 1000, htlc_minimum_msat=1)
    datas = [EncryptedData(short_channel_id=_scid(l2, l3), payment_relay=RELAY, payment_constraints=constraints),
             EncryptedData(next_node_id=bytes.fromhex(l4.node_id), payment_relay=RELAY,
                           payment_constraints=constraints),
             EncryptedData(path_id=os.urandom(32))]
    ids = [bytes.fromhex(n.node_id) for n in (l2, l3, l4)]
    path = create_blinded_path(os.urandom(32), [(i, d.encode()) for i, d in zip(ids, datas)]).path
    phash = os.urandom(32).hex()
    err = _send_through(l1, path, 50_000, 2, phash, final_cltv)
    assert err["data"]["failcode"] == INVALID_ONION_BLINDING, err
    assert err["data"]["erring_index"] == 1          # the introduction point, l2
    # the HTLC went all the way: both blinded hops forwarded, and everything settled
    wait_for(lambda: [f["status"] for f in l2.rpc.listforwards()["forwards"]] == ["failed"])
    wait_for(lambda: [f["status"] for f in l3.rpc.listforwards()["forwards"]] == ["failed"])
    f2, f3 = l2.rpc.listforwards()["forwards"][0], l3.rpc.listforwards()["forwards"][0]
    assert f2["out_channel"] == channel(l2, l3)["short_channel_id"]
    assert f3["out_channel"] == channel(l3, l4)["short_channel_id"]   # found by next_node_id
    # each blinded hop took the fee of its payment_relay, and l4 was offered exactly the amount
    assert f2["out_msat"] == f3["in_msat"] and f3["out_msat"] == 50_000
    assert f3["in_msat"] - f3["out_msat"] == RELAY.fee_base_msat + 50_000 * RELAY.fee_proportional_millionths // 10**6
    for a, b in ((l1, l2), (l2, l3), (l3, l4)):
        wait_for(lambda a=a, b=b: not channel(a, b)["htlcs"] and not channel(b, a)["htlcs"])


def test_blinded_hop_constraints_enforced(node_factory):
    """A path whose constraints the HTLC breaks (expiry past max_cltv_expiry)
    fails at the introduction point with invalid_onion_blinding, and a tampered
    encrypted_recipient_data too; neither is forwarded."""
    l1, l2, l3 = in_a_line(node_factory, 3)
    height = l1.rpc.getinfo()["blockheight"]
    ids = [bytes.fromhex(n.node_id) for n in (l2, l3)]
    tight = PaymentConstraints(max_cltv_expiry=height + 20, htlc_minimum_msat=1)
    path = create_blinded_path(os.urandom(32), [
        (ids[0], EncryptedData(short_channel_id=_scid(l2, l3), payment_relay=RELAY, payment_constraints=tight)
         .encode()), (ids[1], EncryptedData(path_id=os.urandom(32)).encode())]).path
    err = _send_through(l1, path, 10_000, 1, os.urandom(32).hex(), height + 30)
    assert err["data"]["failcode"] == INVALID_ONION_BLINDING and err["data"]["erring_index"] == 1
    # tampered data: does not decrypt
    from common.blindedpath import BlindedHop, BlindedPath
    bad = BlindedPath(path.first_node_id, path.first_path_key,
                      (BlindedHop(path.hops[0].blinded_node_id, bytes(len(path.hops[0].encrypted_recipient_data))),)
                      + path.hops[1:])
    err = _send_through(l1, bad, 10_000, 1, os.urandom(32).hex(), height + 10)
    assert err["data"]["failcode"] == INVALID_ONION_BLINDING and err["data"]["erring_index"] == 1
    assert l3.rpc.listforwards()["forwards"] == [] and l2.rpc.listforwards()["forwards"] == []
    for a, b in ((l1, l2), (l2, l3)):
        wait_for(lambda a=a, b=b: not channel(a, b)["htlcs"] and not channel(b, a)["htlcs"])


def test_unblinded_hop_with_current_path_key_but_bogus_payload(node_factory):
    """An intermediate node given current_path_key and no encrypted data is a
    malformed payload (invalid_onion_payload), not a crash."""
    l1, l2, l3 = in_a_line(node_factory, 3)
    height = l1.rpc.getinfo()["blockheight"]
    payload = encode_payload(HopPayload(amt_to_forward=1000, outgoing_cltv_value=height + 20,
                                        short_channel_id=_scid(l2, l3), current_path_key=bytes.fromhex(l1.node_id)))
    final = encode_payload(HopPayload(amt_to_forward=1000, outgoing_cltv_value=height + 20))
    phash = os.urandom(32)
    packet, secrets = create_onion(os.urandom(32), [(bytes.fromhex(l2.node_id), payload),
                                                    (bytes.fromhex(l3.node_id), final)], phash)
    l1.rpc.sendonion(packet.hex(), {"id": l2.node_id, "amount_msat": 3000, "delay": 60}, phash.hex(),
                     shared_secrets=[s.hex() for s in secrets])
    with pytest.raises(RpcError) as e:
        l1.rpc.waitsendpay(phash.hex(), 60)
    assert e.value.error["data"]["failcode"] == 0x4016    # invalid_onion_payload
    assert l2.rpc.listforwards()["forwards"] == []
