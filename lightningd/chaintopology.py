"""Following the chain: blocks in order from the wallet's birth height,
recent headers kept to detect reorgs (a block whose parent is not our tip
makes us rewind to the fork point and re-process), a watch list checked
against every block, and fee estimates.

Listeners get `block_connected(height, block)` inside the block's database
transaction and `block_disconnected(height)` when a reorg rewinds it."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Callable, Protocol

from bitcoin.block import Block

from .bitcoind import BitcoindError
from .db import Db

if TYPE_CHECKING:
    from .chain_backend import ChainBackend
    from .log import Logger

PREFETCH = 16          # blocks fetched ahead while processing in order
FEE_HISTORY = 3        # fee refreshes the acceptable feerate range looks at (Core Lightning's FEE_HISTORY_NUM)


class BlockListener(Protocol):
    def block_connected(self, height: int, block: Block) -> None: ...
    def block_disconnected(self, height: int) -> None: ...


class ChainTopology:
    def __init__(self, backend: "ChainBackend", db: Db, log: "Logger", network_name: str,
                 poll_interval: float = 30.0, rescan: int = 15) -> None:
        self.backend = backend
        self.db = db
        self.log = log
        self.network_name = network_name
        self.poll_interval = poll_interval
        self.rescan = rescan
        self.listeners: list[BlockListener] = []
        self.on_new_tip: list[Callable[[int], None]] = []
        #: called after every fee refresh (channels follow the estimate)
        self.on_fees: list[Callable[[], None]] = []
        self.tip_height = -1
        self._caught_up = False      # lightningd_synced's latch
        self.tip_hash = b""
        self.backend_height = 0
        self.headercount = 0
        self.ibd = False
        self.syncing = False
        self.fee_estimates: dict[int, int] = {}      # blocks -> sat/kVB
        self.feerate_floor = 1000                     # sat/kVB
        self.smoothed: dict[int, int] = {}
        #: the last FEE_HISTORY refreshes that gave estimates, newest first
        #: (Core Lightning's feerates[]: the bounds on the peer's feerates)
        self.fee_history: deque[dict[int, int]] = deque(maxlen=FEE_HISTORY)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._zmq_task: asyncio.Task | None = None
        self._outage = False
        self._lock = asyncio.Lock()

    # -- start-up ---------------------------------------------------------------------
    async def start(self, zmq_endpoint: str | None = None) -> None:
        info = await self.backend.getchaininfo()
        self._note_info(info)
        row = self.db.one("SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1")
        if row is None:
            # First start: the wallet is born at the current tip (nothing before
            # it can be ours); --rescan < 0 means an absolute height.
            start = info["blockcount"] if self.rescan >= 0 else -self.rescan
            start = max(0, min(start, info["blockcount"]))
            blk = await self.backend.getrawblockbyheight(start)
            block = Block.parse(bytes.fromhex(blk["block"]))
            with self.db.transaction():
                self.db.execute("INSERT INTO blocks(height, hash, prev_hash) VALUES (?, ?, ?)",
                                (start, block.hash(), block.header.prev_hash))
                self.db.set_var("wallet_birth_height", start)
            self.tip_height, self.tip_hash = start, block.hash()
        else:
            self.tip_height, self.tip_hash = row[0], row[1]
        await self.sync()
        self._task = asyncio.ensure_future(self._run())
        if zmq_endpoint:
            self._zmq_task = asyncio.ensure_future(self._zmq(zmq_endpoint))

    def stop(self) -> None:
        for t in (self._task, self._zmq_task):
            if t is not None:
                t.cancel()

    def _note_info(self, info: dict) -> None:
        self.backend_height = info["blockcount"]
        self.headercount = info["headercount"]
        self.ibd = bool(info["ibd"])

    @property
    def bitcoind_synced(self) -> bool:
        return not self.ibd and self.headercount <= self.backend_height

    @property
    def lightningd_synced(self) -> bool:
        """True from the first time we caught up with a synced bitcoind on:
        as Core Lightning's topology_synced(), a latch, so a block found a
        moment ago does not make fundchannel answer 304 until we poll."""
        if not self._caught_up and self.bitcoind_synced and self.tip_height >= self.backend_height:
            self._caught_up = True
        return self._caught_up

    def wake(self) -> None:
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.sync()
            except Exception as e:  # a bug in a listener must not stop us following the chain
                self.log.broken(f"chain sync failed: {type(e).__name__}: {e}")

    async def _zmq(self, endpoint: str) -> None:
        """bitcoind's -zmqpubrawblock: wake up at once on a new block."""
        # (imported here: only a node given a ZMQ endpoint pays for pyzmq's start-up)
        import zmq
        import zmq.asyncio
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"rawblock")
        sock.setsockopt(zmq.SUBSCRIBE, b"hashblock")
        sock.connect(endpoint)
        try:
            while True:
                await sock.recv_multipart()
                self.wake()
        finally:
            sock.close(0)

    async def sync(self) -> None:
        """Catch up with the backend; errors are logged once per outage and
        retried on the next wake-up."""
        async with self._lock:
            try:
                await self._sync()
                await self._update_fees()
                if self._outage:
                    self.log.info(f"Bitcoin backend ({self.backend.name}) is back")
                    self._outage = False
            except BitcoindError as e:
                if not self._outage:
                    self.log.unusual(f"Bitcoin backend ({self.backend.name}) unavailable: {e}; will retry")
                    self._outage = True
                # retry sooner than the poll interval while the backend is down
                asyncio.get_running_loop().call_later(min(5.0, self.poll_interval), self.wake)

    async def _sync(self) -> None:
        info = await self.backend.getchaininfo()
        self._note_info(info)
        target = info["blockcount"]
        if target <= self.tip_height and not await self._rewind_to_backend(target):
            return
        start_height = self.tip_height
        total = max(1, target - start_height)
        last_pct = -1
        t0 = time.monotonic()
        self.syncing = target - start_height > 1
        try:
            while True:
                heights = list(range(self.tip_height + 1, min(target, self.tip_height + PREFETCH) + 1))
                if not heights:
                    break
                fetched = await asyncio.gather(*(self.backend.getrawblockbyheight(h) for h in heights))
                for h, blk in zip(heights, fetched):
                    if blk.get("block") is None:
                        target = h - 1  # the backend's chain got shorter (reorg under us)
                        break
                    block = Block.parse(bytes.fromhex(blk["block"]))
                    if block.header.prev_hash != self.tip_hash:
                        await self._rewind_one()
                        break
                    self._connect(h, block)
                else:
                    pass
                if target - start_height > 100:
                    pct = int(100 * (self.tip_height - start_height) / total)
                    if pct // 5 != last_pct // 5:
                        last_pct = pct
                        self.log.info(f"Syncing blocks: {self.tip_height}/{target} ({pct}%)")
                if self.tip_height >= target:
                    info = await self.backend.getchaininfo()
                    self._note_info(info)
                    if info["blockcount"] <= self.tip_height:
                        break
                    target = info["blockcount"]
        finally:
            self.syncing = False
        if self.tip_height - start_height > 100:
            self.log.info(f"Synced to block {self.tip_height} in {time.monotonic() - t0:.1f}s")

    async def _rewind_to_backend(self, backend_height: int) -> bool:
        """The backend is not ahead of us: rewind while our tip is not on its
        chain (a reorg to a chain of equal or smaller height, e.g. after
        `invalidateblock`); True if we rewound (then sync forward again)."""
        rewound = False
        while self.tip_height > 0:
            if self.tip_height <= backend_height:
                blk = await self.backend.getrawblockbyheight(self.tip_height)
                if blk.get("blockhash") is not None and bytes.fromhex(blk["blockhash"])[::-1] == self.tip_hash:
                    break
            await self._rewind_one()
            rewound = True
        return rewound

    def _connect(self, height: int, block: Block) -> None:
        with self.db.transaction():
            self.db.execute("INSERT OR REPLACE INTO blocks(height, hash, prev_hash) VALUES (?, ?, ?)",
                            (height, block.hash(), block.header.prev_hash))
            for listener in self.listeners:
                listener.block_connected(height, block)
        self.tip_height, self.tip_hash = height, block.hash()
        for cb in self.on_new_tip:
            cb(height)

    async def _rewind_one(self) -> None:
        height = self.tip_height
        self.log.unusual(f"Reorg: block {height} {self.tip_hash[::-1].hex()} is no longer on the chain: rewinding")
        with self.db.transaction():
            for listener in reversed(self.listeners):
                listener.block_disconnected(height)
            self.db.execute("DELETE FROM blocks WHERE height >= ?", (height,))
            row = self.db.one("SELECT height, hash FROM blocks WHERE height = ?", (height - 1,))
        if row is None:
            # We rewound past what we remember: refetch the parent as our base.
            blk = await self.backend.getrawblockbyheight(height - 1)
            block = Block.parse(bytes.fromhex(blk["block"]))
            with self.db.transaction():
                self.db.execute("INSERT INTO blocks(height, hash, prev_hash) VALUES (?, ?, ?)",
                                (height - 1, block.hash(), block.header.prev_hash))
            row = (height - 1, block.hash())
        self.tip_height, self.tip_hash = row[0], row[1]
        for cb in self.on_new_tip:
            cb(self.tip_height)

    # -- fees -----------------------------------------------------------------------------
    async def _update_fees(self) -> None:
        est = await self.backend.estimatefees()
        self.feerate_floor = max(1000, int(est.get("feerate_floor", 1000)))
        fresh = {int(e["blocks"]): int(e["feerate"]) for e in est.get("feerates", []) if e.get("feerate")}
        for blocks, rate in fresh.items():
            old = self.smoothed.get(blocks)
            # Core Lightning smooths so that peers' feerates don't jump around
            self.smoothed[blocks] = rate if old is None else (old * 3 + rate) // 4
        self.fee_estimates = fresh
        if fresh:
            # as Core Lightning: no estimates keeps the history; a different
            # set of targets starts it again
            if self.fee_history and set(self.fee_history[0]) != set(fresh):
                self.fee_history.clear()
            self.fee_history.appendleft({b: max(r, self.feerate_floor) for b, r in fresh.items()})
        for cb in self.on_fees:
            cb()


