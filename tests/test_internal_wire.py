"""Inter-daemon plumbing: framed messages with fds over Unix sockets, request/
reply matching, and that every daemon's dispatch covers its whole schema."""
import asyncio
import os
import socket

import pytest

from common.daemon_conn import DaemonConn, RequestFailed
from common.msgconn import ConnectionClosed, MsgConn
from wire.internal import DAEMONS, FAIL_OFFSET, REPLY_OFFSET, internal_schema, status_schema


def run(coro):
    return asyncio.run(coro)


def test_frames_carry_fds_with_scm_rights(tmp_path):
    async def main():
        a, b = socket.socketpair()
        ca, cb = MsgConn(a), MsgConn(b)
        path = tmp_path / "f"
        path.write_text("hello")
        fd = os.open(path, os.O_RDONLY)
        ca.send(b"first")
        ca.send(b"with-fd", [fd])
        os.close(fd)  # the kernel duplicated it on send
        big = os.urandom(1_000_000)
        ca.send(big)
        f1, f2, f3 = await cb.recv(), await cb.recv(), await cb.recv()
        assert (f1.msg, f1.fds) == (b"first", [])
        assert f2.msg == b"with-fd" and len(f2.fds) == 1
        assert os.read(f2.fds[0], 5) == b"hello"
        os.close(f2.fds[0])
        assert f3.msg == big
        ca.close()
        with pytest.raises(ConnectionClosed):
            await cb.recv()
        cb.close()
    run(main())


def test_request_reply_and_failure_matching():
    schema = internal_schema("connectd")

    async def main():
        a, b = socket.socketpair()
        master = DaemonConn(MsgConn(a), schema, {})
        got = []

        def on_ping(msg):
            got.append(msg.fields["reqid"])
            # answer out of order: the second request first
            if len(got) == 2:
                daemon.send("connectd_ping_reply", {"reqid": 2, "totlen": 20})
                daemon.send("connectd_ping_fail", {"reqid": 1, "reason": "no"})
        daemon = DaemonConn(MsgConn(b), schema, {"connectd_ping": on_ping})
        master.start()
        daemon.start()
        r1 = asyncio.ensure_future(master.request("connectd_ping", {"reqid": 1, "id": b"\x02" * 33,
                                                                    "num_pong_bytes": 1, "len": 1}))
        r2 = asyncio.ensure_future(master.request("connectd_ping", {"reqid": 2, "id": b"\x02" * 33,
                                                                    "num_pong_bytes": 1, "len": 1}))
        assert (await r2)["totlen"] == 20
        with pytest.raises(RequestFailed) as e:
            await r1
        assert e.value.msg.fields["reason"] == "no"
        master.close()
        await asyncio.wait_for(daemon.wait_closed(), 5)
    run(main())


def test_unhandled_message_is_reported_not_dropped():
    schema = internal_schema("gossipd")

    async def main():
        a, b = socket.socketpair()
        errors = []
        sender = DaemonConn(MsgConn(a), schema, {})
        receiver = DaemonConn(MsgConn(b), schema, {}, on_error=errors.append)
        sender.start()
        receiver.start()
        sender.send("gossipd_new_blockheight", {"blockheight": 5})
        for _ in range(100):
            if errors:
                break
            await asyncio.sleep(0.01)
        assert errors and "no handler for gossipd_new_blockheight" in str(errors[0])
        sender.close()
        receiver.close()
    run(main())


def _replies(schema):
    names = set()
    for m in schema.messages.values():
        if schema.by_number.get(m.number - REPLY_OFFSET) or schema.by_number.get(m.number - FAIL_OFFSET):
            names.add(m.name)
    return names


def test_every_schema_message_has_a_receiver():
    """Each message of each daemon's schema is handled by the daemon, by the
    master's control module, or is a reply/failure consumed by request()."""
    from connectd.connectd import Connectd
    from gossipd.gossipd import Gossipd
    from lightningd.connect_control import ConnectControl
    from lightningd.gossip_control import GossipControl
    from lightningd.hsm_control import HsmControl

    from hsmd.permissions import REQUIRED_CAP
    hsmd_requests = set(REQUIRED_CAP)
    from channeld.channeld import ChannelDaemon
    from lightningd.channel_control import ChannelControl
    from lightningd.onchain_control import OnchainControl
    from onchaind.onchaind import Onchaind
    from lightningd.zygote_control import ZygoteControl
    from zygote import zygote
    pairs = {
        "channeld": (set(ChannelDaemon.MASTER_HANDLERS), set(ChannelControl.HANDLERS)),
        "onchaind": (set(Onchaind.MASTER_HANDLERS), set(OnchainControl.HANDLERS)),
        "connectd": (set(Connectd.MASTER_HANDLERS), set(ConnectControl.HANDLERS)),
        "gossipd": (set(Gossipd.MASTER_HANDLERS), set(GossipControl.HANDLERS)),
        "hsmd": (hsmd_requests, set(HsmControl.HANDLERS)),
        "zygote": (set(zygote.MASTER_HANDLERS), set(ZygoteControl.HANDLERS)),
    }
    for daemon, (daemon_side, master_side) in pairs.items():
        schema = internal_schema(daemon)
        all_names = set(schema.messages)
        replies = _replies(schema)
        assert not (daemon_side & master_side), daemon
        covered = daemon_side | master_side | replies
        assert all_names == covered, f"{daemon}: unhandled {all_names - covered}, unknown {covered - all_names}"
        for name in daemon_side | master_side:
            assert name in all_names


def test_hsmd_dispatch_matches_its_handlers():
    """Every request hsmd permits has a handler in hsmd's dispatch."""
    import hsmd.hsmd as h
    from hsmd.permissions import REQUIRED_CAP

    class FakeDaemon:
        status = None
    hs = h.Hsmd.__new__(h.Hsmd)
    hs.status = None
    handlers = hs.handlers_for("x", 0, [], b"", 0)
    assert set(handlers) == set(REQUIRED_CAP)


def test_gossip_link_fully_handled():
    """connectd sends gl_peer_*, gossipd handles them; gossipd sends gl_send, connectd handles it."""
    import inspect

    from gossipd.gossipd import Gossipd
    src = inspect.getsource(__import__("connectd.connectd", fromlist=["x"]))
    assert set(internal_schema("gossip_link").messages) == set(Gossipd.LINK_HANDLERS) | {"gl_send"}
    assert '"gl_send": self._gossip_send' in src


def test_peer_stream_control_fully_handled_by_connectd():
    from connectd.channel_link import CONTROL_HANDLED
    assert set(internal_schema("peer_stream").messages) == CONTROL_HANDLED


def test_status_schema_fully_handled_by_master():
    from lightningd.subd import STATUS_HANDLED
    assert set(status_schema().messages) == STATUS_HANDLED


def test_schemas_load_and_follow_numbering():
    for d in ("hsmd", "connectd", "gossipd"):
        s = internal_schema(d)
        assert s.messages
        for m in s.messages.values():
            assert m.number < 0xFFF0
    assert set(DAEMONS) >= {"hsmd", "connectd", "gossipd"}
