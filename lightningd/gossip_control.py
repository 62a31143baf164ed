"""The master's side of gossipd: start, init, restart after a crash."""
from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from wire.internal import internal_schema

from .hsm_control import CAP_ECDH, CAP_SIGN_GOSSIP
from .subd import Subd

if TYPE_CHECKING:
    from .lightningd import LightningD


class GossipControl:
    # gossipd -> master messages that are not replies, and their handlers.
    HANDLERS: dict[str, str] = {}

    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.subd: Subd | None = None
        self.restarts = 0

    async def start(self) -> None:
        handlers = {name: getattr(self, meth) for name, meth in self.HANDLERS.items()}
        hsm_fd = await self.ld.hsm.client_fd("gossipd", CAP_SIGN_GOSSIP | CAP_ECDH)
        self.subd = Subd("gossipd", internal_schema("gossipd"), handlers, self.ld.log.child("gossipd"),
                         on_exit=self._on_exit)
        try:
            self.subd.start(hsm_fd=hsm_fd)
        finally:
            os.close(hsm_fd)
        await self.subd.request("gossipd_init", {"id": self.ld.node_id, "chain_hash": self.ld.network.chain_hash,
                                                 "dev_fast_gossip": bool(self.ld.cfg.get("dev-fast-gossip"))},
                                timeout=60)

    def new_blockheight(self, height: int) -> None:
        if self.subd is not None and self.subd.running:
            self.subd.send("gossipd_new_blockheight", {"blockheight": height})

    async def stop(self) -> None:
        if self.subd is not None:
            await self.subd.stop()

    async def _on_exit(self, subd: Subd, rc: int) -> None:
        if self.ld.stopping:
            return
        self.restarts += 1
        await asyncio.sleep(self.ld.restart_delay())
        if self.ld.stopping:
            return
        self.ld.log.info("restarting gossipd")
        try:
            await self.start()
        except Exception as e:
            self.ld.log.broken(f"could not restart gossipd: {e}")
