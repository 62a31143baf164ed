"""The block chain: our index (headers, active chain, UTXO set, undo data,
txindex) kept in step with libbitcoinkernel's active chain, block building
and invalidation.

Rule: the kernel decides. Every block goes through ``Kernel.process``; after
each call our index follows the kernel's active chain (``_sync_to_kernel``),
disconnecting and connecting blocks with our undo data.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from bitcoin.block import Block, BlockHeader, check_proof_of_work, merkle_root, witness_commitment, \
    witness_commitment_script
from bitcoin.script import push_int
from bitcoin.tx import OutPoint, Tx, TxIn, TxOut

from .errors import RPC_INVALID_ADDRESS_OR_KEY, RPC_INVALID_PARAMETER, RPCError
from .kernel import CONNECTED, DUPLICATE, INVALID, STALE, BlockOutcome, Kernel
from .store import STATUS_INVALID, STATUS_INVALIDATED, STATUS_VALID, Coin, Store
from .validation import COIN, is_unspendable

log = logging.getLogger("regtestd")

REGTEST_BITS = 0x207FFFFF
BLOCK_VERSION = 0x20000000          # BIP9 top bits, what bitcoind mines on regtest
HALVING_INTERVAL = 150              # regtest
WORK_PER_BLOCK = 2                  # 2**256 // (target(0x207fffff) + 1)
MAX_FUTURE_DRIFT = 3600             # seconds ahead of the clock our block times may run


def block_subsidy(height: int) -> int:
    halvings = height // HALVING_INTERVAL
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


@dataclass
class HeaderInfo:
    """What we know of a block without reading it: header, height, status."""

    hash: bytes
    prev: bytes
    height: int
    header: BlockHeader
    status: int
    seq: int


@dataclass
class ChainChange:
    """Blocks that left the active chain (tip first) and joined it (in order)."""

    disconnected: list[Block] = field(default_factory=list)
    connected: list[tuple[Block, bytes]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.disconnected or self.connected)


class Chain:
    """Our chain index in SQLite plus the kernel that validates it."""

    def __init__(self, chaindir: Path, store: Store) -> None:
        self.chaindir = chaindir
        self.store = store
        self.headers: dict[bytes, HeaderInfo] = {}
        self.children: dict[bytes, list[bytes]] = {}
        self.active: list[bytes] = []          # block hash by height
        self.times: list[int] = []             # header time by height
        self._cache: OrderedDict[bytes, Block] = OrderedDict()
        self.kernel: Kernel | None = None

    # -- start and stop --------------------------------------------------------------
    def open(self, reindex: bool = False) -> ChainChange:
        """Load the index and the kernel, and make them agree."""
        for b in self.store.all_blocks():
            self._remember(b.hash, b.prev, b.height, BlockHeader.parse(b.header), b.status, b.seq)
        number = int(self.store.get_meta("kernel", "0") or 0)
        Kernel.remove_others(self.chaindir, number)   # an interrupted rebuild
        self.kernel = Kernel(self.chaindir, number)
        self.store.begin()
        try:
            if not self.headers:                      # first start: adopt the kernel's genesis
                raw = self.kernel.raw_block_at(0)
                g = Block.parse(raw)
                self._add_block(g, raw, 0, STATUS_VALID)
                self.store.set_chain(0, g.hash())
            self.active = self.store.chain_hashes()
            self.times = [self.headers[h].header.time for h in self.active]
            if reindex:
                self._rebuild_kernel()
            change = self._reconcile()
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        Kernel.remove_others(self.chaindir, self.kernel.number)
        return change

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.close()
            self.kernel = None

    def _reconcile(self) -> ChainChange:
        """After a restart or a crash: kernel and index to the same tip."""
        k = self._kernel
        # The kernel must not be on a block we invalidated (crash mid-rebuild).
        for height in range(k.height, 0, -1):
            h = k.hash_at(height)
            if height < len(self.active) and self.active[height] == h:
                break
            info = self.headers.get(h)
            if info is not None and info.status != STATUS_VALID:
                log.info("kernel tip is on an invalidated branch: rebuilding its chainstate")
                self._rebuild_kernel()
                break
        # Our active blocks the kernel lacks (its data was lost or behind).
        fork = self._fork_height()
        for height in range(fork + 1, len(self.active)):
            h = self.active[height]
            raw = self.store.raw_block(h)
            if raw is not None:
                k.process(raw, h)
        return self._sync_to_kernel()

    @property
    def _kernel(self) -> Kernel:
        assert self.kernel is not None, "chain is closed"
        return self.kernel

    # -- views -----------------------------------------------------------------------
    @property
    def height(self) -> int:
        return len(self.active) - 1

    @property
    def tip(self) -> bytes:
        return self.active[-1]

    def info(self, h: bytes) -> HeaderInfo | None:
        return self.headers.get(h)

    def is_active(self, h: bytes) -> bool:
        info = self.headers.get(h)
        return info is not None and info.height < len(self.active) and self.active[info.height] == h

    def mtp(self, height: int | None = None) -> int:
        """Median time past of the active block at `height` (default: tip)."""
        if height is None:
            height = self.height
        window = sorted(self.times[max(0, height - 10):height + 1])
        return window[len(window) // 2]

    def mtp_of(self, h: bytes) -> int:
        """Median time past of any known block (walks stale branches too)."""
        info = self.headers.get(h)
        if info is not None and self.is_active(h):
            return self.mtp(info.height)
        times: list[int] = []
        while info is not None and len(times) < 11:
            times.append(info.header.time)
            info = self.headers.get(info.prev) if info.height > 0 else None
        times.sort()
        return times[len(times) // 2]

    def block(self, h: bytes) -> Block | None:
        """A stored block, parsed (small LRU cache: RPCs often re-read the tip)."""
        b = self._cache.get(h)
        if b is not None:
            self._cache.move_to_end(h)
            return b
        raw = self.store.raw_block(h)
        if raw is None:
            return None
        b = Block.parse(raw)
        self._cache[h] = b
        if len(self._cache) > 64:
            self._cache.popitem(last=False)
        return b

    def get_coin(self, txid: bytes, vout: int) -> Coin | None:
        return self.store.get_coin(txid, vout)

    def find_tx(self, txid: bytes) -> tuple[Tx, bytes, int] | None:
        """(tx, block hash, position) of a transaction on the active chain."""
        loc = self.store.find_tx(txid)
        if loc is None:
            return None
        b = self.block(loc[0])
        return (b.txs[loc[1]], loc[0], loc[1]) if b is not None else None

    def spent_coins(self, h: bytes) -> list[Coin] | None:
        """Coins spent by an active block, in input order (None if not active)."""
        if not self.is_active(h):
            return None
        return [c for _, _, c in self.store.get_undo(h)]

    def descendants(self, h: bytes) -> list[bytes]:
        out, todo = [], list(self.children.get(h, []))
        while todo:
            x = todo.pop()
            out.append(x)
            todo.extend(self.children.get(x, []))
        return out

    def chainwork(self, height: int) -> str:
        return f"{WORK_PER_BLOCK * (height + 1):064x}"

    # -- new blocks ------------------------------------------------------------------
    def submit_block(self, block: Block, raw: bytes) -> tuple[BlockOutcome, ChainChange]:
        """Process a block through the kernel and follow its active chain."""
        h = block.hash()
        known = self.headers.get(h)
        if known is not None:
            if known.status != STATUS_VALID:
                return BlockOutcome(INVALID, "duplicate-invalid", known_invalid=True), ChainChange()
            return BlockOutcome(DUPLICATE, "duplicate" if self.is_active(h) else "duplicate-inconclusive"), \
                ChainChange()
        parent = self.headers.get(block.header.prev_hash)
        if parent is None:
            return BlockOutcome(INVALID, "prev-blk-not-found"), ChainChange()
        if parent.status != STATUS_VALID:
            return BlockOutcome(INVALID, "bad-prevblk"), ChainChange()
        outcome = self._kernel.process(raw, h)
        self.store.begin()
        try:
            for bad in self._kernel.other_invalid:
                self._set_status(bad, STATUS_INVALID)
            if outcome.status in (CONNECTED, STALE):
                self._add_block(block, raw, parent.height + 1, STATUS_VALID)
            elif outcome.status == INVALID and outcome.known_invalid:
                self._add_block(block, raw, parent.height + 1, STATUS_INVALID)
            change = self._sync_to_kernel()
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        return outcome, change

    def build_block(self, spk: bytes, txs: list[Tx], fees: int, coinbase_script: bytes = b"") -> Block:
        """A block on the tip paying `spk`, with a solved regtest proof of work.

        Like bitcoind's BlockAssembler: BIP34 height then OP_0 in the coinbase
        scriptSig, a witness commitment output and the 32-byte reserved value
        in the coinbase witness, time = max(now, previous + 1) so it is
        always above the median time past and the median time past moves
        with every block (time-based relative locks mature by mining).
        Once that runs an hour ahead of the clock (thousands of blocks mined
        in a burst), only max(now, MTP + 1) is used, so blocks never reach
        the kernel's two-hour "time-too-new" limit.
        """
        height = self.height + 1
        cb = Tx(version=2, locktime=0,
                inputs=[TxIn(OutPoint(b"\x00" * 32, 0xFFFFFFFF), push_int(height) + b"\x00" + coinbase_script,
                             0xFFFFFFFF, [b"\x00" * 32])],
                outputs=[TxOut(block_subsidy(height) + fees, spk)])
        all_txs = [cb] + txs
        cb.outputs.append(TxOut(0, witness_commitment_script(witness_commitment(all_txs))))
        root = merkle_root([t.txid() for t in all_txs])
        now = int(time.time())
        t = max(now, self.mtp() + 1)
        if self.times[-1] + 1 <= now + MAX_FUTURE_DRIFT:
            t = max(t, self.times[-1] + 1)
        header = BlockHeader(BLOCK_VERSION, self.tip, root, t, REGTEST_BITS, 0)
        # Skip nonces whose hash we already know: after invalidateblock the
        # same template could otherwise reproduce the invalidated block.
        while not check_proof_of_work(header) or header.hash() in self.headers:
            header.nonce += 1
        return Block(header, all_txs)

    # -- invalidate / reconsider -----------------------------------------------------------
    def invalidate(self, h: bytes) -> ChainChange:
        """Mark a block and its descendants invalid; rewind if it is active.

        The kernel cannot invalidate, so a fresh kernel datadir is built from
        the stored blocks still valid, and our index follows its tip.
        """
        info = self.headers.get(h)
        if info is None:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        if info.height == 0:
            raise RPCError(RPC_INVALID_PARAMETER, "Cannot invalidate the genesis block")
        self.store.begin()
        try:
            for x in [h] + self.descendants(h):
                if self.headers[x].status == STATUS_VALID:
                    self._set_status(x, STATUS_INVALIDATED)
            old = None
            if self.is_active(h):
                old = self._kernel
                self._rebuild_kernel(close_old=False)
            change = self._sync_to_kernel()
            self.store.commit()
        except BaseException:
            self.store.rollback()
            if old is not None and self.kernel is not old:
                self._kernel.close()
                self.kernel = old
            raise
        if old is not None:
            old.close()
            Kernel.remove_others(self.chaindir, self._kernel.number)
        return change

    def reconsider(self, h: bytes) -> ChainChange:
        """Undo invalidateblock for `h`, its ancestors and descendants."""
        info = self.headers.get(h)
        if info is None:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        todo = [h] + self.descendants(h)
        anc = self.headers.get(info.prev) if info.height > 0 else None
        while anc is not None:
            todo.append(anc.hash)
            anc = self.headers.get(anc.prev) if anc.height > 0 else None
        cleared = [x for x in todo if self.headers[x].status == STATUS_INVALIDATED]
        self.store.begin()
        try:
            for x in sorted(cleared, key=lambda x: self.headers[x].seq):
                self._set_status(x, STATUS_VALID)
                raw = self.store.raw_block(x)
                if raw is not None:
                    out = self._kernel.process(raw, x)
                    if out.status == INVALID and out.known_invalid:
                        self._set_status(x, STATUS_INVALID)
            change = self._sync_to_kernel()
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        return change

    # -- internals -----------------------------------------------------------------------
    def _remember(self, h: bytes, prev: bytes, height: int, header: BlockHeader, status: int, seq: int) -> None:
        self.headers[h] = HeaderInfo(h, prev, height, header, status, seq)
        if height > 0:
            self.children.setdefault(prev, []).append(h)

    def _add_block(self, block: Block, raw: bytes, height: int, status: int) -> None:
        h = block.hash()
        seq = self.store.add_block(h, block.header.prev_hash, height, block.header.serialize(), raw, status)
        self._remember(h, block.header.prev_hash, height, block.header, status, seq)

    def _set_status(self, h: bytes, status: int) -> None:
        if h in self.headers:
            self.headers[h].status = status
            self.store.set_block_status(h, status)

    def _rebuild_kernel(self, close_old: bool = True) -> None:
        """Replace the kernel by a fresh one fed with every still-valid block."""
        old = self._kernel
        number = old.number + 1
        blocks = list(self.store.replay_blocks())
        started = time.monotonic()
        if close_old:
            old.close()
        self.kernel = Kernel.create_fresh(self.chaindir, number, blocks[1:])   # [0] is genesis
        self.store.set_meta("kernel", str(number))
        log.info("rebuilt kernel chainstate kernel-%d from %d blocks in %.2fs (tip %d)",
                 number, len(blocks), time.monotonic() - started, self.kernel.height)

    def _fork_height(self) -> int:
        k = self._kernel
        height = min(k.height, self.height)
        while height > 0 and k.hash_at(height) != self.active[height]:
            height -= 1
        return height

    def _sync_to_kernel(self) -> ChainChange:
        """Disconnect/connect our index until its tip is the kernel's tip."""
        k = self._kernel
        change = ChainChange()
        fork = self._fork_height()
        while self.height > fork:
            change.disconnected.append(self._disconnect_tip())
        for height in range(fork + 1, k.height + 1):
            h = k.hash_at(height)
            stored = self.store.raw_block(h)
            if stored is not None:
                raw, block = stored, Block.parse(stored)
            else:                      # the kernel has a block we lost: take it back
                raw = k.raw_block_at(height)
                block = Block.parse(raw)
                self._add_block(block, raw, height, STATUS_VALID)
            self._connect(block, h, height)
            change.connected.append((block, raw))
        return change

    def _connect(self, block: Block, h: bytes, height: int) -> None:
        created: dict[tuple[bytes, int], Coin] = {}
        spent: list[tuple[bytes, int]] = []
        undo: list[tuple[bytes, int, Coin]] = []
        index: list[tuple[bytes, bytes, int]] = []
        for pos, tx in enumerate(block.txs):
            txid = tx.txid()
            if pos > 0:
                for txin in tx.inputs:
                    key = (txin.prevout.txid, txin.prevout.index)
                    coin = created.pop(key, None)
                    if coin is None:
                        coin = self.store.get_coin(*key)
                        spent.append(key)
                    if coin is None:
                        raise RuntimeError(f"index out of step with the kernel: block {h[::-1].hex()} "
                                           f"spends {key[0][::-1].hex()}:{key[1]} which we do not have")
                    undo.append((key[0], key[1], coin))
            for vout, out in enumerate(tx.outputs):
                if not is_unspendable(out.script_pubkey):
                    created[(txid, vout)] = Coin(out.value, out.script_pubkey, height, pos == 0)
            index.append((txid, h, pos))
        self.store.delete_coins(spent)
        self.store.add_coins([(t, v, c.value, c.spk, c.height, int(c.coinbase)) for (t, v), c in created.items()])
        self.store.add_undo(h, undo)
        self.store.add_txindex(index)
        self.store.set_chain(height, h)
        self.active.append(h)
        self.times.append(block.header.time)

    def _disconnect_tip(self) -> Block:
        h = self.active[-1]
        block = self.block(h)
        assert block is not None
        txids = [tx.txid() for tx in block.txs]
        own = set(txids)
        self.store.delete_coins([(t, v) for t, tx in zip(txids, block.txs) for v in range(len(tx.outputs))])
        self.store.add_coins([(t, v, c.value, c.spk, c.height, int(c.coinbase))
                              for t, v, c in self.store.get_undo(h) if t not in own])
        self.store.delete_txindex(txids)
        self.store.delete_undo(h)
        self.store.truncate_chain(self.height - 1)
        self.active.pop()
        self.times.pop()
        return block
