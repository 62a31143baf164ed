"""Onion messages between real nodes: forwarding across four nodes (by next
node id and by short_channel_id), a blinded path made by the recipient, the
two hooks, a reply along the sender's reply path, per-peer rate limits in
connectd, and what must be ignored."""
import os
import time
from pathlib import Path

from node_factory import wait_for
from test_channels import channel, fund, open_channel

from common.blindedpath import EncryptedData, create_blinded_path
from common.onion_message import OnionMsgTlv, build_onion_message
from connectd.onion_message import ONION_MSG_MSEC, ONION_MSG_TOKENS_MAX, TokenBucket

PLUGIN = str(Path(__file__).parent / "plugins" / "onionmsg_echo.py")


def _ids(*nodes):
    return [bytes.fromhex(n.node_id) for n in nodes]


def _connected_line(node_factory, n, opts=None):
    nodes = node_factory.get_nodes(n, opts=opts)
    for a, b in zip(nodes, nodes[1:]):
        a.connect(b)
    return nodes


def _msgs(node):
    return node.rpc.call("onionmsgs")["messages"]


def _inject(node, out):
    node.rpc.call("injectonionmessage", {"path_key": out.path_key.hex(), "message": out.packet.hex()})


def test_token_bucket_is_core_lightnings():
    b = TokenBucket(0)
    assert [b.take(0) for _ in range(5)] == [True] * 4 + [False]   # a burst of four
    assert not b.take(ONION_MSG_MSEC - 1) and b.take(ONION_MSG_MSEC)   # then one per 250 ms
    b = TokenBucket(0)
    for _ in range(4):
        b.take(0)
    assert b.take(10 * ONION_MSG_TOKENS_MAX)                              # earned back, capped at four
    assert sum(b.take(10 * ONION_MSG_TOKENS_MAX) for _ in range(10)) == 3


def test_forwarded_across_four_nodes_and_replied(node_factory):
    """l1 sends to l4 through l2 and l3 (no channels needed: connections), to
    l4's node id then through a blinded path l4 made; l4's plugin answers
    along l1's reply path; every hook sees exactly what was sent."""
    l1, l2, l3, l4 = _connected_line(node_factory, 4, opts=[{"plugin": PLUGIN}] * 4)
    i1, i2, i3, i4 = _ids(l1, l2, l3, l4)
    # 1. to a node id: the route is the onion's, starting at l1 itself
    _inject(l1, build_onion_message(os.urandom(32), os.urandom(32), [i1, i2, i3, i4], None,
                                    OnionMsgTlv(unknown={71: b"hello"})))
    wait_for(lambda: len(_msgs(l4)) == 1)
    m = _msgs(l4)[0]
    assert m["hook"] == "onion_message_recv" and "pathsecret" not in m
    assert m["unknown_fields"] == [{"number": 71, "value": b"hello".hex()}]
    # 2. through a path l4 made (intro l2), with a reply path to l1 from l3 (l4's peer)
    secret = os.urandom(32)
    path = create_blinded_path(os.urandom(32), [(i2, EncryptedData(next_node_id=i3).encode()),
                                                (i3, EncryptedData(next_node_id=i4).encode()),
                                                (i4, EncryptedData(path_id=secret).encode())]).path
    reply_secret = os.urandom(32)
    reply = create_blinded_path(os.urandom(32), [(i3, EncryptedData(next_node_id=i2).encode()),
                                                 (i2, EncryptedData(next_node_id=i1).encode()),
                                                 (i1, EncryptedData(path_id=reply_secret).encode())]).path
    _inject(l1, build_onion_message(os.urandom(32), os.urandom(32), [i1], path,
                                    OnionMsgTlv(reply_path=reply, unknown={77: b"ping"})))
    wait_for(lambda: len(_msgs(l4)) == 2)
    m = _msgs(l4)[1]
    assert m["hook"] == "onion_message_recv_secret" and m["pathsecret"] == secret.hex()
    assert m["reply_blindedpath"]["first_node_id"] == l3.node_id
    assert len(m["reply_blindedpath"]["hops"]) == 3
    # l4's answer came back along the reply path, with l1's own secret
    wait_for(lambda: len(_msgs(l1)) == 1)
    back = _msgs(l1)[0]
    assert back["hook"] == "onion_message_recv_secret" and back["pathsecret"] == reply_secret.hex()
    assert back["unknown_fields"] == [{"number": 79, "value": b"ping".hex()}]
    # the nodes in between saw nothing for themselves, and nobody hung up
    assert _msgs(l2) == [] and _msgs(l3) == []
    for a, b in ((l1, l2), (l2, l3), (l3, l4)):
        assert a.rpc.listpeers(b.node_id)["peers"][0]["connected"]


def test_forward_by_short_channel_id_and_bad_messages_ignored(node_factory):
    """A hop naming the next peer by one of its channels' scid is forwarded
    (connectd asks the master); a hop with a field besides its encrypted
    data, or with a path_id, is dropped without an answer."""
    l1, l2, l3 = node_factory.get_nodes(3, opts=[{}, {}, {"plugin": PLUGIN}])
    fund(l2)
    l1.connect(l2)
    open_channel(l2, l3, 1_000_000)
    scid = channel(l2, l3)["short_channel_id"]
    b, t, o = (int(x) for x in scid.split("x"))
    i1, i2, i3 = _ids(l1, l2, l3)
    path = create_blinded_path(os.urandom(32), [(i2, EncryptedData(short_channel_id=b << 40 | t << 16 | o).encode()),
                                                (i3, EncryptedData().encode())]).path
    _inject(l1, build_onion_message(os.urandom(32), os.urandom(32), [i1], path, OnionMsgTlv(unknown={71: b"x"})))
    wait_for(lambda: len(_msgs(l3)) == 1)
    # l2 must drop a forwarding hop holding a path_id
    bad = create_blinded_path(os.urandom(32), [(i2, EncryptedData(next_node_id=i3, path_id=b"x").encode()),
                                               (i3, EncryptedData().encode())]).path
    _inject(l1, build_onion_message(os.urandom(32), os.urandom(32), [i1], bad, OnionMsgTlv(unknown={71: b"y"})))
    # ... and the next good one still arrives: l2 dropped the bad one and carried on
    _inject(l1, build_onion_message(os.urandom(32), os.urandom(32), [i1], path, OnionMsgTlv(unknown={71: b"z"})))
    wait_for(lambda: len(_msgs(l3)) == 2)
    assert [m["unknown_fields"][0]["value"] for m in _msgs(l3)] == [b"x".hex(), b"z".hex()]


def test_rate_limited_per_peer(node_factory):
    """l1 floods l2 directly: l2's connectd takes a burst of four and then
    one per 250 ms, drops the rest and warns l1 once; later messages pass."""
    l1, l2 = _connected_line(node_factory, 2, opts=[{}, {"plugin": PLUGIN}])
    i1, i2 = _ids(l1, l2)
    outs = [build_onion_message(os.urandom(32), os.urandom(32), [i1, i2], None, OnionMsgTlv(unknown={71: bytes([n])}))
            for n in range(20)]
    start = time.monotonic()
    for out in outs:
        _inject(l1, out)
    took = time.monotonic() - start
    time.sleep(1)
    got = len(_msgs(l2))
    # at most the burst plus what the time spent sending earned, never all 20
    assert 4 <= got <= 4 + int(took * 1000 / ONION_MSG_MSEC) + 1 and got < 20
    assert l1.rpc.listpeers(l2.node_id)["peers"][0]["connected"]
    time.sleep(1.1)
    _inject(l1, outs[0])
    wait_for(lambda: len(_msgs(l2)) == got + 1)
