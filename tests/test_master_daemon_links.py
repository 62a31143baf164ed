"""The master keeps going when a channel daemon it talks to is on its way out.

Found by the peer fuzzer: a channeld whose peer had just left had its link
closed but was not reaped yet; the fee refresh after a block sent it
`channeld_feerates`, the ConnectionClosed escaped into the chain topology's
loop, and the node stopped following the chain for good."""
from __future__ import annotations

import asyncio
import socket
from typing import Any

from common.daemon_conn import DaemonConn
from common.msgconn import MsgConn
from lightningd.chaintopology import ChainTopology
from lightningd.channel_control import send_to_channeld
from lightningd.log import LogBook
from lightningd.subd import Subd
from wire.internal import internal_schema


def test_send_to_a_channeld_whose_link_closed_is_dropped():
    async def go() -> tuple[bool, bool]:
        book = LogBook()
        subd = Subd("channeld", internal_schema("channeld"), {}, book.logger("channeld"))
        subd.pid = 1          # "running": not reaped yet
        ours, theirs = socket.socketpair()
        subd.conn = DaemonConn(MsgConn(ours), internal_schema("channeld"), {})
        fields = {"feerate": 253, "min_feerate": 253, "max_feerate": 1000}
        sent = send_to_channeld(subd, "channeld_feerates", fields)
        theirs.close()
        subd.conn.close()
        return sent, send_to_channeld(subd, "channeld_feerates", fields)
    assert asyncio.run(go()) == (True, False)


class _Backend:
    name = "test"

    def __init__(self) -> None:
        self.calls = 0

    async def getchaininfo(self) -> dict[str, Any]:
        self.calls += 1
        return {"blockcount": 0, "headercount": 0, "ibd": False}

    async def estimatefees(self) -> dict[str, Any]:
        return {"feerate_floor": 1000, "feerates": []}


def test_chain_loop_survives_a_failing_fee_listener():
    async def go() -> int:
        topo = ChainTopology(_Backend(), None, LogBook().logger("chaintopology"), "regtest",  # type: ignore[arg-type]
                             poll_interval=0.01)
        topo.tip_height = 0

        def bad() -> None:
            raise RuntimeError("a listener bug")
        topo.on_fees.append(bad)
        task = asyncio.ensure_future(topo._run())
        await asyncio.sleep(0.2)
        alive = not task.done()
        task.cancel()
        assert alive, task.exception()
        return topo.backend.calls  # type: ignore[attr-defined]
    assert asyncio.run(go()) > 3   # it kept polling
