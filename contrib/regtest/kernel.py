"""libbitcoinkernel (py-bitcoinkernel) behind a small interface.

The kernel decides what is valid and which chain is active; we only ask it
to process blocks and read back its active chain. Two traps handled here:

- ``process_block`` returns True for a *new* block even when it is invalid,
  and raises for some invalid blocks: the outcome is read from the
  ``block_checked`` validation callback and from the active chain.
- The kernel cannot invalidate a block. To rewind, a fresh kernel datadir is
  built by replaying stored blocks (see :meth:`Kernel.create_fresh`); kernel
  datadirs are numbered so the switch is atomic from our store's point of view.
"""
from __future__ import annotations

import gc
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pbk

log = logging.getLogger("regtestd")

# Outcome of processing one block.
CONNECTED = "connected"    # now on the active chain
STALE = "stale"            # stored by the kernel, not (yet) on the active chain
DUPLICATE = "duplicate"    # the kernel already had it
INVALID = "invalid"        # rejected; `reason` says why

# bitcoind-style reject reasons for the kernel's coarse validation results.
REASONS = {
    pbk.BlockValidationResult.CONSENSUS: "bad-block (consensus rules)",
    pbk.BlockValidationResult.CACHED_INVALID: "duplicate-invalid",
    pbk.BlockValidationResult.INVALID_HEADER: "bad-header (high-hash, bad-diffbits or time-too-old)",
    pbk.BlockValidationResult.MUTATED: "bad-txnmrklroot (block data does not match its header)",
    pbk.BlockValidationResult.MISSING_PREV: "prev-blk-not-found",
    pbk.BlockValidationResult.INVALID_PREV: "bad-prevblk",
    pbk.BlockValidationResult.TIME_FUTURE: "time-too-new",
    pbk.BlockValidationResult.HEADER_LOW_WORK: "too-little-chainwork",
}


@dataclass
class BlockOutcome:
    status: str
    reason: str | None = None
    # True when the kernel fully validated the block and found it invalid: the
    # hash can be remembered as invalid (unlike a mutated block, whose header
    # might still belong to a valid block).
    known_invalid: bool = False


class Kernel:
    """One kernel chainstate in ``<base>/kernel-<n>``."""

    def __init__(self, base: Path, number: int) -> None:
        self.base = base
        self.number = number
        self.path = base / f"kernel-{number}"
        # block hash (internal order) -> (mode, result) of the last check.
        self._checked: dict[bytes, tuple[pbk.ValidationMode, pbk.BlockValidationResult]] = {}
        # Only block_checked: it is called synchronously inside process_block,
        # so it never runs on a kernel thread after we closed.
        self._callbacks = pbk.ValidationInterfaceCallbacks(block_checked=self._on_checked)
        self.other_invalid: list[bytes] = []
        self.chainman: pbk.ChainstateManager | None = pbk.load_chainman(
            self.path, pbk.ChainType.REGTEST, validation_callbacks=self._callbacks)
        self.chain = self.chainman.get_active_chain()

    def _on_checked(self, _user: object, block: pbk.Block, state: pbk.BlockValidationState) -> None:
        self._checked[bytes(block.block_hash)] = (state.validation_mode, state.block_validation_result)

    # -- reading --------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.chain.height

    def hash_at(self, height: int) -> bytes:
        """Active-chain block hash at `height`, internal byte order."""
        return bytes(self.chain.block_tree_entries[height].block_hash)

    def raw_block_at(self, height: int) -> bytes:
        assert self.chainman is not None
        return bytes(self.chainman.blocks[self.chain.block_tree_entries[height]])

    # -- writing --------------------------------------------------------------------
    def process(self, raw: bytes, block_hash: bytes) -> BlockOutcome:
        """Hand a block to the kernel and tell what became of it."""
        assert self.chainman is not None
        self._checked.pop(block_hash, None)
        try:
            kblock = pbk.Block(raw)
        except Exception as e:  # the kernel could not even deserialize it
            return BlockOutcome(INVALID, f"block decode failed: {e}")
        try:
            is_new = self.chainman.process_block(kblock)
        except pbk.ProcessBlockException:
            is_new = None
        checked = self._checked.pop(block_hash, None)
        # Other blocks checked during a reorg this block triggered.
        self.other_invalid = [h for h, (mode, _) in self._checked.items() if mode != pbk.ValidationMode.VALID]
        self._checked.clear()
        if checked is not None and checked[0] != pbk.ValidationMode.VALID:
            return BlockOutcome(INVALID, REASONS.get(checked[1], f"invalid ({checked[1].name})"),
                                known_invalid=checked[1] in (pbk.BlockValidationResult.CONSENSUS,
                                                             pbk.BlockValidationResult.INVALID_PREV))
        if is_new is None:
            return BlockOutcome(INVALID, "rejected by libbitcoinkernel")
        if self.contains(block_hash):
            return BlockOutcome(CONNECTED if is_new else DUPLICATE)
        return BlockOutcome(STALE if is_new else DUPLICATE)

    def contains(self, block_hash: bytes) -> bool:
        """Is the block on the kernel's active chain?"""
        assert self.chainman is not None
        key = pbk.BlockHash(block_hash)
        if key not in self.chainman.block_tree_entries:
            return False
        return self.chainman.block_tree_entries[key] in self.chain.block_tree_entries

    def close(self) -> None:
        """Destroy the chainstate manager so the kernel flushes to disk."""
        self.chain = None  # type: ignore[assignment]
        self.chainman = None
        gc.collect()

    # -- rebuilding -----------------------------------------------------------------
    @classmethod
    def create_fresh(cls, base: Path, number: int, blocks: Iterable[tuple[bytes, bytes]]) -> "Kernel":
        """A new kernel datadir fed with `blocks` ((hash, raw), parents first).

        Blocks the kernel rejects are skipped: it decides, as it would for
        blocks arriving from peers, which of them form the most-work chain.
        """
        path = base / f"kernel-{number}"
        if path.exists():
            shutil.rmtree(path)
        k = cls(base, number)
        for h, raw in blocks:
            out = k.process(raw, h)
            if out.status == INVALID:
                log.info("replay: kernel rejected block %s: %s", h[::-1].hex(), out.reason)
        return k

    @staticmethod
    def remove_others(base: Path, keep: int) -> None:
        """Delete kernel datadirs other than kernel-<keep> (left over by a rebuild)."""
        for p in base.glob("kernel-*"):
            if p.name != f"kernel-{keep}" and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
