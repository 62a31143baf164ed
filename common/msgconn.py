"""Framed messages with file descriptors over a Unix stream socket.

Every link between the master and a subdaemon (and between a subdaemon and
hsmd) is one of these.  A frame is `u32 length | u8 number of fds | message`;
the fds travel by SCM_RIGHTS in the same sendmsg as the frame's first byte,
so the receiver finds them queued by the time it has parsed the header.
Reads and writes are non-blocking on the process's event loop."""
from __future__ import annotations

import array
import asyncio
import os
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

HEADER = struct.Struct(">IB")
MAX_FRAME = 64 * 1024 * 1024
MAX_FDS_PER_FRAME = 8


class WriteGate(Protocol):
    """Holds frames back until what they depend on is durable: the master's
    database (lightningd/db_pipeline.py DbGate).  A frame queued while
    transaction `committed` was the last one goes out once `durable`
    reaches it."""
    committed: int
    durable: int

    def call_when_durable(self, seq: int, cb: Callable[[], None]) -> None: ...


class ConnectionClosed(EOFError):
    """The other end went away."""


@dataclass
class Frame:
    msg: bytes
    fds: list[int] = field(default_factory=list)


class MsgConn:
    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop | None = None,
                 gate: WriteGate | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop = loop or asyncio.get_running_loop()
        self._rbuf = bytearray()
        self._rfds: deque[int] = deque()
        self._frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._wqueue: deque[tuple[memoryview, list[int], int]] = deque()
        self._writing = False
        self.gate = gate
        self._gated = False       # a call_when_durable is pending
        self.closed = False
        self.loop.add_reader(self.sock.fileno(), self._on_readable)

    @classmethod
    def from_fd(cls, fd: int) -> "MsgConn":
        return cls(socket.socket(fileno=fd))

    # -- receiving -------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(
                262144, socket.CMSG_SPACE(MAX_FDS_PER_FRAME * 4 * 4))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, anc = b"", []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[:len(payload) - (len(payload) % fds.itemsize)])
                self._rfds.extend(fds)
        if not data:
            self._shutdown()
            return
        self._rbuf += data
        while len(self._rbuf) >= HEADER.size:
            length, nfds = HEADER.unpack_from(self._rbuf)
            if length > MAX_FRAME or nfds > MAX_FDS_PER_FRAME:
                self._shutdown()
                return
            if len(self._rbuf) < HEADER.size + length:
                break
            msg = bytes(self._rbuf[HEADER.size:HEADER.size + length])
            del self._rbuf[:HEADER.size + length]
            if len(self._rfds) < nfds:  # cannot happen with a well-behaved peer
                self._shutdown()
                return
            fds = [self._rfds.popleft() for _ in range(nfds)]
            self._frames.put_nowait(Frame(msg, fds))

    def _shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.loop.remove_reader(self.sock.fileno())
                if self._writing:
                    self.loop.remove_writer(self.sock.fileno())
            except (ValueError, OSError):
                pass
            while self._rfds:
                os.close(self._rfds.popleft())
            self._frames.put_nowait(None)

    async def recv(self) -> Frame:
        frame = await self._frames.get()
        if frame is None:
            self._frames.put_nowait(None)  # every later recv sees the close too
            raise ConnectionClosed()
        return frame

    # -- sending ---------------------------------------------------------------------
    def send(self, msg: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
        """Queue a frame; fds are duplicated by the kernel on send, the caller
        still owns (and should close) its copies once this returns."""
        if self.closed:
            raise ConnectionClosed()
        if len(fds) > MAX_FDS_PER_FRAME:
            raise ValueError("too many fds in one frame")
        frame = HEADER.pack(len(msg), len(fds)) + msg
        # fds must be sent now: the caller may close them right after.
        seq = self.gate.committed if self.gate is not None else 0
        self._wqueue.append((memoryview(frame), [os.dup(f) for f in fds], seq))
        if not self._gated:
            self._flush()

    def _released(self) -> None:
        self._gated = False
        if not self.closed:
            self._flush()

    def _flush(self) -> None:
        held = False
        while self._wqueue:
            view, fds, seq = self._wqueue[0]
            if self.gate is not None and seq > self.gate.durable:
                held = True
                if not self._gated:
                    self._gated = True
                    self.gate.call_when_durable(seq, self._released)
                break
            try:
                if fds:
                    n = self.sock.sendmsg([view], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
                    for f in fds:
                        os.close(f)
                    self._wqueue[0] = (view[n:], [], seq)
                else:
                    n = self.sock.send(view)
                    self._wqueue[0] = (view[n:], [], seq)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._wqueue.clear()
                self._shutdown()
                return
            if len(self._wqueue[0][0]) == 0:
                self._wqueue.popleft()
        want = bool(self._wqueue) and not held
        if want and not self._writing:
            self.loop.add_writer(self.sock.fileno(), self._flush)
            self._writing = True
        elif not want and self._writing:
            self.loop.remove_writer(self.sock.fileno())
            self._writing = False

    async def drain(self) -> None:
        """Wait until everything queued has been handed to the kernel."""
        while self._wqueue and not self.closed:
            await asyncio.sleep(0.001)

    def close(self) -> None:
        self._shutdown()
        while self._wqueue:           # held frames are never sent: their fds are ours
            for f in self._wqueue.popleft()[1]:
                os.close(f)
        try:
            self.sock.close()
        except OSError:
            pass
