"""gossipd: owns the public channel graph.  This first version answers its
init and follows the block height; the graph, the gossip store and route
finding come with the gossip issue on the same message schema."""
from __future__ import annotations

from common.daemon import Daemon
from common.daemon_conn import DaemonConn, Msg
from wire.internal import internal_schema


class Gossipd:
    # Every master -> gossipd message of the schema, and its handler.
    MASTER_HANDLERS = {
        "gossipd_init": "handle_init",
        "gossipd_new_blockheight": "handle_new_blockheight",
    }

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.status = d.status
        handlers = {name: getattr(self, meth) for name, meth in self.MASTER_HANDLERS.items()}
        self.master = DaemonConn(d.master, internal_schema("gossipd"), handlers,
                                 on_error=lambda e: self.status.broken(f"master link: {e}"))
        self.hsm = DaemonConn(d.hsm, internal_schema("hsmd"), {}) if d.hsm is not None else None
        self.node_id = b""
        self.blockheight = 0

    async def run(self) -> None:
        self.master.start()
        if self.hsm is not None:
            self.hsm.start()
        await self.master.wait_closed()

    def handle_init(self, msg: Msg) -> None:
        self.node_id = msg["id"]
        self.status.debug("gossipd ready")
        self.master.send("gossipd_init_reply", {})

    def handle_new_blockheight(self, msg: Msg) -> None:
        self.blockheight = msg["blockheight"]
