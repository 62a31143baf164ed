"""Keeping peers with channels connected (Core Lightning's try_reconnect).

A peer with an active channel is redialled, with backoff, after any
disconnection we did not ask for: a network blip, the peer restarting, or
our own channeld dying (the master drops the connection so both sides
reestablish).  The addresses tried are the one we last dialled it on and
those its node_announcement gives; a peer we know no address of is retried
too (it may announce one later; meanwhile it can dial us).  The operator's
`disconnect` is the one disconnection that is not undone."""
from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lightningd import LightningD

FIRST_DELAY = 1.0
MAX_DELAY = 300.0
THEIR_TURN = 5          # a peer that dialled us is redialled this many FIRST_DELAYs later


class Reconnector:
    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self._running: dict[bytes, asyncio.Task] = {}
        self._asked: set[bytes] = set()      # the operator disconnected them

    def disconnect_requested(self, node_id: bytes) -> None:
        """The `disconnect` command: this disconnection stays until a new
        connection (theirs or a `connect`)."""
        self._asked.add(node_id)
        t = self._running.pop(node_id, None)
        if t is not None:
            t.cancel()

    def connected(self, node_id: bytes) -> None:
        self._asked.discard(node_id)

    def disconnected(self, node_id: bytes) -> None:
        if node_id not in self._asked:
            self.schedule(node_id)

    def schedule(self, node_id: bytes) -> None:
        ld = self.ld
        if ld.stopping or node_id in self._running or (ld.cfg.developer and ld.cfg.get("dev-no-reconnect")):
            return
        if not self._wanted(node_id):
            return
        task = asyncio.ensure_future(self._run(node_id))
        self._running[node_id] = task
        task.add_done_callback(lambda t, n=node_id: self._running.pop(n, None) if self._running.get(n) is t
                               else None)

    def stop(self) -> None:
        for t in self._running.values():
            t.cancel()
        self._running.clear()

    def _wanted(self, node_id: bytes) -> bool:
        return any(c.active for c in self.ld.channels.by_peer(node_id))

    async def addresses(self, node_id: bytes) -> list[str]:
        """Where to dial it: the address we last reached it on, then the ones
        it announces."""
        out = list(self.ld.known_addresses(node_id))
        g = self.ld.gossipd.subd
        if g is not None and g.running:
            try:
                r = await g.request("gossipd_listnodes", {"id": node_id}, timeout=30)
                for n in r["nodes"]:
                    for a in (n["announcement"] or {}).get("addresses", []):
                        if a.get("type") in ("ipv4", "ipv6", "dns"):
                            host = f"[{a['address']}]" if a["type"] == "ipv6" else a["address"]
                            s = f"{host}:{a['port']}"
                            if s not in out:
                                out.append(s)
            except Exception as e:   # gossipd restarting: the stored address will do
                self.ld.log.debug(f"no announced addresses for {node_id.hex()}: {e}")
        return out

    async def _run(self, node_id: bytes) -> None:
        ld = self.ld
        log = ld.log.child("lightningd", node_id.hex())
        delay = FIRST_DELAY
        if not ld.known_addresses(node_id):
            # It dialled us last time and will most likely do so again: give it
            # the first go, so the two sides' dials rarely cross.
            await asyncio.sleep(FIRST_DELAY * THEIR_TURN)
        while not ld.stopping and not ld.is_connected(node_id) and self._wanted(node_id):
            addrs = await self.addresses(node_id)
            if addrs:
                try:
                    await ld.connectd.connect(node_id, addrs, timeout=60)
                    return
                except Exception as e:
                    log.debug(f"reconnect failed: {e}; retry in {delay:.0f}s")
            else:
                log.debug(f"no address known to reconnect; retry in {delay:.0f}s")
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, MAX_DELAY)
