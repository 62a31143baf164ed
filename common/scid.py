"""Short channel ids (BOLT 7): block height, transaction index and output
index of the funding output, packed into a u64 on the wire
(3 + 3 + 2 bytes, big-endian) and written ``BLOCKxTXINDEXxOUTNUM`` by Core
Lightning; plus ``short_channel_id_dir`` (``103x1x0/1``), which names one
direction of a channel as in Core Lightning's JSON API.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BLOCK = (1 << 24) - 1
MAX_TXINDEX = (1 << 24) - 1
MAX_OUTNUM = (1 << 16) - 1

# Only plain ASCII digits: int() alone would accept "+1", " 1", "1_0" or
# non-ASCII digits, none of which Core Lightning accepts.
_SCID_RE = re.compile(r"([0-9]+)x([0-9]+)x([0-9]+)")
_SCID_DIR_RE = re.compile(r"([0-9]+x[0-9]+x[0-9]+)/([0-9]+)")


class ScidError(ValueError):
    """Not a valid short channel id (string, integer or bytes)."""


@dataclass(frozen=True, order=True)
class ShortChannelId:
    """A short channel id; ordering matches the u64 ordering (block first)."""

    block: int
    txindex: int
    outnum: int

    def __post_init__(self) -> None:
        # Validate on construction so no out-of-range scid can exist: packing
        # one into a u64 would otherwise silently corrupt neighbouring fields.
        for name, value, limit in (("block", self.block, MAX_BLOCK),
                                   ("txindex", self.txindex, MAX_TXINDEX),
                                   ("outnum", self.outnum, MAX_OUTNUM)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ScidError(f"short_channel_id {name} must be an int, not {value!r}")
            if not 0 <= value <= limit:
                raise ScidError(f"short_channel_id {name} {value} out of range 0..{limit}")

    # -- u64 --------------------------------------------------------------
    def to_int(self) -> int:
        return (self.block << 40) | (self.txindex << 16) | self.outnum

    @classmethod
    def from_int(cls, value: int) -> ShortChannelId:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << 64):
            raise ScidError(f"short_channel_id {value!r} is not a u64")
        return cls(value >> 40, (value >> 16) & MAX_TXINDEX, value & MAX_OUTNUM)

    # -- wire (8 bytes, big-endian) ---------------------------------------
    def to_bytes(self) -> bytes:
        return self.to_int().to_bytes(8, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> ShortChannelId:
        if len(data) != 8:
            raise ScidError(f"short_channel_id must be 8 bytes, got {len(data)}")
        return cls.from_int(int.from_bytes(data, "big"))

    # -- Core Lightning string form ---------------------------------------
    def __str__(self) -> str:
        return f"{self.block}x{self.txindex}x{self.outnum}"

    @classmethod
    def parse(cls, s: str) -> ShortChannelId:
        """Parse ``103x1x0``; ScidError (with the reason) otherwise."""
        m = _SCID_RE.fullmatch(s) if isinstance(s, str) else None
        if m is None:
            raise ScidError(f"invalid short_channel_id {s!r}: expected BLOCKxTXINDEXxOUTNUM")
        try:
            return cls(int(m[1]), int(m[2]), int(m[3]))
        except ScidError as e:
            raise ScidError(f"invalid short_channel_id {s!r}: {e}") from None


@dataclass(frozen=True, order=True)
class ShortChannelIdDir:
    """One direction of a channel: direction 0 is from the node with the
    lexicographically lesser node_id (BOLT 7 ``channel_flags`` bit 0)."""

    scid: ShortChannelId
    direction: int

    def __post_init__(self) -> None:
        if self.direction not in (0, 1) or isinstance(self.direction, bool):
            raise ScidError(f"short_channel_id_dir direction must be 0 or 1, not {self.direction!r}")

    def __str__(self) -> str:
        return f"{self.scid}/{self.direction}"

    @classmethod
    def parse(cls, s: str) -> ShortChannelIdDir:
        """Parse ``103x1x0/1``."""
        m = _SCID_DIR_RE.fullmatch(s) if isinstance(s, str) else None
        if m is None:
            raise ScidError(f"invalid short_channel_id_dir {s!r}: expected BLOCKxTXINDEXxOUTNUM/DIR")
        direction = int(m[2])
        if direction not in (0, 1):
            raise ScidError(f"invalid short_channel_id_dir {s!r}: direction must be 0 or 1")
        return cls(ShortChannelId.parse(m[1]), direction)
