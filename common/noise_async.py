"""asyncio glue for the BOLT 8 transport in :mod:`common.noise`.

Runs the sans-IO handshake over an ``asyncio.StreamReader``/``StreamWriter``
pair and wraps the result in a :class:`NoiseConnection` offering
``read_message()``/``write_message()``.

Two wire-level details matter for interoperability:

* each handshake act is sent with ONE ``write()`` so it leaves in a single
  segment: some implementations (pyln-proto) read an act with a single
  ``recv()`` and fail on a short read;
* each encrypted message (header + body) is likewise written in one go, and
  encryption + write happen with no ``await`` in between, so nonces always
  match the on-wire order even with concurrent writers.

The static-key ECDH callback may be synchronous (returns ``bytes``) or
asynchronous (returns an awaitable), so connectd can await hsmd.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Awaitable, Callable, Optional, Union

from .noise import (
    ACT_ONE_SIZE, ACT_THREE_SIZE, ACT_TWO_SIZE, MAC_SIZE, MESSAGE_HEADER_SIZE,
    HandshakeError, Initiator, NoiseError, Responder, Transport,
)

__all__ = [
    "AsyncEcdhFn", "ConnectionClosed", "NoiseConnection",
    "handshake_initiator", "handshake_responder", "DEFAULT_HANDSHAKE_TIMEOUT",
]

#: Whole-handshake deadline, in seconds (CLN uses 60s too).
DEFAULT_HANDSHAKE_TIMEOUT = 60.0

#: Static-key ECDH: compressed point -> 32-byte secret, possibly awaitable.
AsyncEcdhFn = Callable[[bytes], Union[bytes, Awaitable[bytes]]]


class ConnectionClosed(NoiseError, EOFError):
    """The peer closed the stream (cleanly between messages, or mid-frame)."""


async def _ecdh(fn: AsyncEcdhFn, point: bytes) -> bytes:
    result = fn(point)
    if inspect.isawaitable(result):
        result = await result
    return bytes(result)  # type: ignore[arg-type]


def _no_sync_ecdh(point: bytes) -> bytes:
    # The state machine never calls this: we always pass the secret in.
    raise AssertionError("static ECDH must be precomputed by the async helper")


class NoiseConnection:
    """An established, encrypted BOLT 8 connection over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 transport: Transport) -> None:
        self.reader = reader
        self.writer = writer
        self.transport = transport
        # One reader at a time: a frame is read in two steps.
        self._read_lock = asyncio.Lock()

    @property
    def remote_pubkey(self) -> bytes:
        """The peer's 33-byte static public key (its node id)."""
        return self.transport.remote_pubkey

    async def read_message(self, timeout: Optional[float] = None) -> bytes:
        """Reads and decrypts the next message.

        Raises :class:`ConnectionClosed` on EOF, :class:`~common.noise.DecryptError`
        on a bad MAC (drop the connection), ``TimeoutError`` on timeout.  A
        timeout is safe to retry: ``readexactly`` consumes nothing until it
        has all the bytes, and a header already decrypted is remembered in
        ``transport.pending_body_length``.
        """
        async with self._read_lock:
            if timeout is None:
                return await self._read_message()
            async with asyncio.timeout(timeout):
                return await self._read_message()

    async def _read_message(self) -> bytes:
        try:
            length = self.transport.pending_body_length
            if length is None:
                header = await self.reader.readexactly(MESSAGE_HEADER_SIZE)
                length = self.transport.decrypt_length(header)
            body = await self.reader.readexactly(length + MAC_SIZE)
        except asyncio.IncompleteReadError as e:
            raise ConnectionClosed(
                "peer closed connection" if not e.partial else
                f"peer closed mid-frame ({len(e.partial)}/{e.expected} bytes)") from None
        return self.transport.decrypt_body(body)

    async def write_message(self, message: bytes) -> None:
        """Encrypts and sends one message (<= 65535 bytes), then drains."""
        # A lost connection: asyncio would drop the bytes (and complain on
        # stderr after a few); the caller must learn it is gone.
        if self.writer.is_closing():
            raise ConnectionClosed("connection closed")
        # Encrypt and queue synchronously so concurrent writers can't reorder
        # frames relative to their nonces.
        self.writer.write(self.transport.encrypt_message(message))
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        """Closes the stream and waits for it to be flushed/closed."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def _read_act(reader: asyncio.StreamReader, size: int, name: str) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as e:
        raise HandshakeError(f"{name}_READ_FAILED",
                             f"got {len(e.partial)} of {size} bytes") from None


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)  # one write per act, see module docstring
    await writer.drain()


async def _run(coro: Awaitable[Transport], reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter, timeout: Optional[float]) -> NoiseConnection:
    """Applies the deadline and the spec's "terminate on failure" rule."""
    try:
        async with asyncio.timeout(timeout):
            transport = await coro
    except TimeoutError:
        writer.close()
        raise HandshakeError("TIMEOUT", f"handshake not done within {timeout}s") from None
    except HandshakeError:
        writer.close()
        raise
    except (ConnectionError, OSError) as e:
        writer.close()
        raise HandshakeError("IO_ERROR", str(e)) from e
    return NoiseConnection(reader, writer, transport)


async def handshake_initiator(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                              local_static_pubkey: bytes, ecdh_static: AsyncEcdhFn,
                              remote_static_pubkey: bytes, *,
                              timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
                              ephemeral_privkey: Optional[bytes] = None) -> NoiseConnection:
    """Performs the initiator side of the handshake over an open stream.

    ``ecdh_static(point)`` computes ``ECDH(our static key, point)``; it may be
    a coroutine function (e.g. a request to hsmd).  On any failure the writer
    is closed and :class:`HandshakeError` is raised (code ``TIMEOUT`` if the
    whole handshake exceeds ``timeout`` seconds; ``None`` disables it).
    """
    hs = Initiator(local_static_pubkey, _no_sync_ecdh, remote_static_pubkey,
                   ephemeral_privkey=ephemeral_privkey)

    async def steps() -> Transport:
        await _send(writer, hs.act_one())
        hs.process_act_two(await _read_act(reader, ACT_TWO_SIZE, "ACT2"))
        assert hs.remote_ephemeral_pubkey is not None
        secret = await _ecdh(ecdh_static, hs.remote_ephemeral_pubkey)
        await _send(writer, hs.act_three(static_secret=secret))
        return hs.transport

    return await _run(steps(), reader, writer, timeout)


async def handshake_responder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                              local_static_pubkey: bytes, ecdh_static: AsyncEcdhFn, *,
                              timeout: Optional[float] = DEFAULT_HANDSHAKE_TIMEOUT,
                              ephemeral_privkey: Optional[bytes] = None) -> NoiseConnection:
    """Performs the responder side of the handshake over an accepted stream.

    The initiator's node id is available afterwards as
    ``connection.remote_pubkey``.  Failure semantics as for
    :func:`handshake_initiator`.
    """
    hs = Responder(local_static_pubkey, _no_sync_ecdh, ephemeral_privkey=ephemeral_privkey)

    async def steps() -> Transport:
        act1 = await _read_act(reader, ACT_ONE_SIZE, "ACT1")
        # Validate framing/point before asking (possibly remote) hsmd for ECDH.
        secret = await _ecdh(ecdh_static, Responder.act_one_ephemeral(act1))
        await _send(writer, hs.process_act_one(act1, static_secret=secret))
        return hs.process_act_three(await _read_act(reader, ACT_THREE_SIZE, "ACT3"))

    return await _run(steps(), reader, writer, timeout)
