"""The gossip store: an append-only file of gossip messages, after Core
Lightning's ``gossip_store``.

Format::

    u8  version                       STORE_VERSION
    then records, each:
    u16 flags | u16 len | u32 crc | u32 timestamp | len bytes msg

all big-endian.  ``crc`` is CRC-32 (zlib's, not Core Lightning's CRC-32C: the
standard library has no CRC-32C in C) of ``timestamp || msg``; the flags are
not covered, so they can be flipped in place.  Flags:

- ``FLAG_DELETED`` (0x8000): superseded or forgotten; skipped when loading,
  dropped by compaction.
- ``FLAG_PRIVATE`` (0x4000): a private/local record (our own unannounced
  channels' updates), never relayed.
- ``FLAG_DYING`` (0x0800): a channel whose funding output is spent, kept for
  the 72-block grace period.

``msg`` is a peer gossip message (channel_announcement, node_announcement,
channel_update) or an internal record: ``STORE_CHANNEL_AMOUNT`` (u16 type,
u64 satoshis) right after every channel_announcement, and
``STORE_CHAN_DYING`` (u16 type, u64 scid, u32 blockheight) and
``STORE_PRIVATE_CHANNEL`` (u16 type, u64 scid, u64 satoshis, node_id_1,
node_id_2; flagged private) for our own unannounced channels.

Crash safety: a record is written with a single ``pwrite`` at the end of the
file.  At open the whole file is read in one sequential read and scanned; the
first record that is torn (header or body beyond the end) or whose CRC does
not match ends the valid part, and the file is truncated there (what follows
a corrupt record cannot be trusted to be aligned).  Compaction writes the
live records to ``<path>.compact``, fsyncs it and renames it over the store,
so a crash leaves either the old or the new file.
"""
from __future__ import annotations

import os
import struct
import zlib
from array import array
from collections.abc import Iterator
from typing import NamedTuple

STORE_VERSION = 0x01
FLAG_DELETED = 0x8000
FLAG_PRIVATE = 0x4000
FLAG_DYING = 0x0800

STORE_CHANNEL_AMOUNT = 4101
STORE_PRIVATE_CHANNEL = 4104
STORE_CHAN_DYING = 4106

HEADER = struct.Struct(">HHII")
HEADER_LEN = HEADER.size             # 12
MAX_MSG_LEN = 0xFFFF
_AMOUNT = struct.Struct(">HQ")
_DYING = struct.Struct(">HQI")
_PRIVATE = struct.Struct(">HQQ33s33s")


class StoreError(Exception):
    pass


class Record(NamedTuple):
    offset: int
    flags: int
    timestamp: int
    msg: bytes

    @property
    def type(self) -> int:
        return (self.msg[0] << 8) | self.msg[1]


class LoadReport(NamedTuple):
    records: int            # valid records found (deleted included)
    deleted: int
    truncated_bytes: int    # bytes cut from the end (torn or corrupt tail)
    reason: str             # why it was truncated ("" if not)


def channel_amount_msg(satoshis: int) -> bytes:
    return _AMOUNT.pack(STORE_CHANNEL_AMOUNT, satoshis)


def parse_channel_amount(msg: bytes) -> int:
    t, sat = _AMOUNT.unpack(msg)
    if t != STORE_CHANNEL_AMOUNT:
        raise StoreError("not a channel_amount record")
    return sat


def chan_dying_msg(scid: int, blockheight: int) -> bytes:
    return _DYING.pack(STORE_CHAN_DYING, scid, blockheight)


def parse_chan_dying(msg: bytes) -> tuple[int, int]:
    t, scid, height = _DYING.unpack(msg)
    if t != STORE_CHAN_DYING:
        raise StoreError("not a chan_dying record")
    return scid, height


def private_channel_msg(scid: int, satoshis: int, node_id_1: bytes, node_id_2: bytes) -> bytes:
    return _PRIVATE.pack(STORE_PRIVATE_CHANNEL, scid, satoshis, node_id_1, node_id_2)


def parse_private_channel(msg: bytes) -> tuple[int, int, bytes, bytes]:
    t, scid, sat, n1, n2 = _PRIVATE.unpack(msg)
    if t != STORE_PRIVATE_CHANNEL:
        raise StoreError("not a private_channel record")
    return scid, sat, n1, n2


def _crc(timestamp: int, msg) -> int:
    return zlib.crc32(msg, zlib.crc32(timestamp.to_bytes(4, "big")))


class GossipStore:
    """One store file.  ``open`` validates it (truncating a bad tail);
    ``records()`` then yields the live records from the buffer read at open
    (``release()`` frees it once the graph is loaded)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._fd = -1
        self._buf: bytes | None = None
        self._live = array("Q")
        self.end = 0
        self.deleted_bytes = 0
        self.report = LoadReport(0, 0, 0, "")

    @classmethod
    def open(cls, path: str | os.PathLike) -> GossipStore:
        store = cls(path)
        store._open()
        return store

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        size = os.fstat(self._fd).st_size
        data = _read_all(self._fd, size)
        if not data:
            os.pwrite(self._fd, bytes([STORE_VERSION]), 0)
            data = bytes([STORE_VERSION])
        elif data[0] != STORE_VERSION:
            os.close(self._fd)
            raise StoreError(f"{self.path}: store version {data[0]}, expected {STORE_VERSION}")
        off, n, deleted, reason = 1, 0, 0, ""
        live = self._live
        unpack, crc32 = HEADER.unpack_from, zlib.crc32
        size = len(data)
        while off < size:
            if size - off < HEADER_LEN:
                reason = f"torn header at {off}"
                break
            flags, length, crc, ts = unpack(data, off)
            end = off + HEADER_LEN + length
            if end > size:
                reason = f"torn record at {off}"
                break
            if crc32(data[off + HEADER_LEN:end], crc32(data[off + 8:off + 12])) != crc:
                reason = f"bad checksum at {off}"
                break
            n += 1
            if flags & FLAG_DELETED:
                deleted += 1
                self.deleted_bytes += HEADER_LEN + length
            else:
                live.append(off)
            off = end
        truncated = size - off
        if truncated:
            os.ftruncate(self._fd, off)
            os.fsync(self._fd)
        self.end = off
        self._buf = data
        self.report = LoadReport(n, deleted, truncated, reason)

    # -- reading -------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        """Live (not deleted) records in file order, as found at open."""
        return (Record(*r) for r in self.raw_records())

    def raw_records(self) -> Iterator[tuple[int, int, int, bytes]]:
        """``records()`` as plain (offset, flags, timestamp, msg) tuples."""
        data = self._buf
        if data is None:
            data = _read_all(self._fd, self.end)
        unpack = HEADER.unpack_from
        for off in self._live:
            flags, length, _crc_, ts = unpack(data, off)
            if flags & FLAG_DELETED:            # deleted since open
                continue
            start = off + HEADER_LEN
            yield off, flags, ts, data[start:start + length]

    def release(self) -> None:
        """Free the open-time buffer and offset list (after loading)."""
        self._buf = None
        self._live = array("Q")

    def read(self, offset: int) -> bytes:
        """The message of the record at ``offset``."""
        head = os.pread(self._fd, HEADER_LEN, offset)
        if len(head) != HEADER_LEN:
            raise StoreError(f"no record at {offset}")
        _flags, length, _crc_, _ts = HEADER.unpack(head)
        return os.pread(self._fd, length, offset + HEADER_LEN)

    def read_record(self, offset: int) -> Record:
        head = os.pread(self._fd, HEADER_LEN, offset)
        flags, length, _crc_, ts = HEADER.unpack(head)
        return Record(offset, flags, ts, os.pread(self._fd, length, offset + HEADER_LEN))

    # -- writing -------------------------------------------------------------
    def append(self, msg: bytes, timestamp: int, flags: int = 0) -> int:
        """Append one record; returns its offset."""
        if len(msg) > MAX_MSG_LEN:
            raise StoreError(f"message of {len(msg)} bytes too long for the store")
        rec = HEADER.pack(flags, len(msg), _crc(timestamp, msg), timestamp) + msg
        off = self.end
        os.pwrite(self._fd, rec, off)
        self.end = off + len(rec)
        return off

    def append_many(self, items: list[tuple[bytes, int, int]]) -> list[int]:
        """Append (msg, timestamp, flags) records in one write; their offsets."""
        offs, parts, off = [], [], self.end
        for msg, ts, flags in items:
            offs.append(off)
            parts.append(HEADER.pack(flags, len(msg), _crc(ts, msg), ts))
            parts.append(msg)
            off += HEADER_LEN + len(msg)
        os.pwrite(self._fd, b"".join(parts), self.end)
        self.end = off
        return offs

    def _flags_at(self, offset: int) -> tuple[int, int]:
        head = os.pread(self._fd, 4, offset)
        if len(head) != 4 or offset < 1 or offset >= self.end:
            raise StoreError(f"no record at {offset}")
        flags, length = struct.unpack(">HH", head)
        return flags, length

    def set_flags(self, offset: int, add: int) -> None:
        flags, _length = self._flags_at(offset)
        os.pwrite(self._fd, (flags | add).to_bytes(2, "big"), offset)

    def delete(self, offset: int) -> None:
        """Mark the record at ``offset`` deleted (idempotent)."""
        flags, length = self._flags_at(offset)
        if not flags & FLAG_DELETED:
            os.pwrite(self._fd, (flags | FLAG_DELETED).to_bytes(2, "big"), offset)
            self.deleted_bytes += HEADER_LEN + length

    def delete_channel(self, ann_offset: int) -> None:
        """Delete a channel_announcement and the channel_amount after it."""
        flags, length = self._flags_at(ann_offset)
        self.delete(ann_offset)
        nxt = ann_offset + HEADER_LEN + length
        if nxt < self.end:
            rec = self.read_record(nxt)
            if rec.msg[:2] == STORE_CHANNEL_AMOUNT.to_bytes(2, "big"):
                self.delete(nxt)

    def sync(self) -> None:
        os.fsync(self._fd)

    # -- compaction ----------------------------------------------------------
    def should_compact(self) -> bool:
        return self.deleted_bytes > 1_000_000 and self.deleted_bytes * 2 > self.end

    def compact(self) -> dict[int, int]:
        """Rewrite only live records into a new file, atomically renamed over
        this one.  Returns {old offset: new offset} for every live record."""
        data = _read_all(self._fd, self.end)
        tmp = self.path + ".compact"
        mapping: dict[int, int] = {}
        out = [bytes([STORE_VERSION])]
        pos, off, size = 1, 1, len(data)
        while off + HEADER_LEN <= size:
            flags, length, _crc_, _ts = HEADER.unpack_from(data, off)
            end = off + HEADER_LEN + length
            if not flags & FLAG_DELETED:
                mapping[off] = pos
                out.append(data[off:end])
                pos += end - off
            off = end
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, b"".join(out))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.replace(tmp, self.path)
        _fsync_dir(self.path)
        os.close(self._fd)
        self._fd = fd
        self.end = pos
        self.deleted_bytes = 0
        self._buf = None
        self._live = array("Q", sorted(mapping.values()))
        return mapping

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._buf = None

    def __enter__(self) -> GossipStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_all(fd: int, size: int) -> bytes:
    parts, off = [], 0
    while off < size:
        chunk = os.pread(fd, size - off, off)
        if not chunk:
            break
        parts.append(chunk)
        off += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view, off = memoryview(data), 0
    while off < len(data):
        off += os.pwrite(fd, view[off:], off)


def _fsync_dir(path: str) -> None:
    d = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(d)
    finally:
        os.close(d)
