"""One connected peer inside connectd: the BOLT 1 `init` exchange, then the
message loop (ping/pong, warning/error, and routing everything else)."""
from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from common.features import bits_from_features, features_from_bits, missing_dependencies, unknown_even_bits
from common.noise_async import ConnectionClosed, NoiseConnection
from common.noise import DecryptError
from wire import DecodeError, accept_message, bolt_schema, peek_type
from wire import UnknownMessageError

if TYPE_CHECKING:
    from common.status import Status

INIT = 16
PING_MAX_PONG = 65531         # num_pong_bytes above this: no pong wanted
CHANNEL_ID_ZERO = b"\x00" * 32
MAX_ERROR_DATA = 65535 - 2 - 32 - 2   # error/warning: type, channel_id, length, data

# Messages for gossipd (BOLT 7) and for channels (BOLT 2): routed, not handled here.
GOSSIP_MSGS = {"channel_announcement", "node_announcement", "channel_update", "announcement_signatures",
               "query_short_channel_ids", "reply_short_channel_ids_end", "query_channel_range",
               "reply_channel_range", "gossip_timestamp_filter"}


class InitError(Exception):
    """The peer's init is unacceptable; `warning` is what we tell them."""

    def __init__(self, warning: str) -> None:
        super().__init__(warning)
        self.warning = warning


def combine_features(globalfeatures: bytes, features: bytes) -> bytes:
    """BOLT 1: the receiver ORs globalfeatures into features."""
    return features_from_bits(bits_from_features(globalfeatures) | bits_from_features(features))


def make_init(our_features: bytes, chain_hash: bytes) -> bytes:
    # Bits below 14 also go in globalfeatures, for nodes that only read those.
    low = features_from_bits({b for b in bits_from_features(our_features) if b < 14})
    return bolt_schema().encode("init", {"globalfeatures": low, "features": our_features,
                                         "tlvs": {"networks": {"chains": [chain_hash]}}})


def check_their_init(fields: dict, chain_hash: bytes, our_features: bytes) -> bytes:
    """Their combined features, or InitError.  BOLT 1: an even bit we do not
    offer (a feature they require that we lack, whether or not BOLT 9
    names it, in `features` or in `globalfeatures`) or a missing
    dependency closes the connection; odd bits we do not know are ignored,
    and so is a known bit outside its BOLT 9 context (Core Lightning checks
    support and dependencies only)."""
    networks = fields.get("tlvs", {}).get("networks")
    if networks is not None and chain_hash not in networks.get("chains", []):
        raise InitError("No common chain with this peer (networks)")
    features = combine_features(fields["globalfeatures"], fields["features"])
    unsupported = unknown_even_bits(features, known=bits_from_features(our_features))
    if unsupported:
        raise InitError(f"Unsupported feature {','.join(map(str, unsupported))}")
    missing = missing_dependencies(features)
    if missing:
        raise InitError("Bad init features: " + "; ".join(f"feature {name} requires {dep}"
                                                          for name, dep in missing))
    return features


class Peer:
    def __init__(self, node_id: bytes, conn: NoiseConnection, incoming: bool, addr: str,
                 status: "Status", log_io: bool) -> None:
        self.id = node_id
        self.conn = conn
        self.incoming = incoming
        self.addr = addr
        self.status = status
        self.log_io = log_io
        self.features = b""
        self.pings: deque[tuple[int, asyncio.Future]] = deque()  # (expected pong length, future)
        self.last_rx = time.monotonic()
        self.closed = asyncio.Event()
        self.activated = asyncio.Event()
        self.links: list = []          # ChannelLinks of this peer's channel daemons
        self.onionmsg_bucket: Any = None   # its onion message allowance (onion_message.TokenBucket)
        self._write_lock = asyncio.Lock()

    # -- I/O ----------------------------------------------------------------------------
    async def send(self, msg: bytes) -> None:
        if self.log_io:
            self.status.io(True, "peer_out", msg, self.id)
        async with self._write_lock:
            await self.conn.write_message(msg)

    async def recv(self, timeout: float | None = None) -> bytes:
        msg = await self.conn.read_message(timeout)
        self.last_rx = time.monotonic()
        if self.log_io:
            self.status.io(False, "peer_in", msg, self.id)
        return msg

    async def send_warning(self, text: str, channel_id: bytes = CHANNEL_ID_ZERO, error: bool = False) -> None:
        name = "error" if error else "warning"
        try:
            data = text.encode("utf-8", "replace")[:MAX_ERROR_DATA]
            await self.send(bolt_schema().encode(name, {"channel_id": channel_id, "data": data}))
        except (ConnectionClosed, OSError):
            pass

    def close(self) -> None:
        self.conn.close()
        self.closed.set()
        for _, fut in self.pings:
            if not fut.done():
                fut.set_exception(ConnectionClosed())
        self.pings.clear()

    # -- init ---------------------------------------------------------------------------
    async def exchange_init(self, our_features: bytes, chain_hash: bytes, timeout: float) -> None:
        await self.send(make_init(our_features, chain_hash))
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            raw = await self.recv(max(0.0, deadline - asyncio.get_running_loop().time()))
            if len(raw) >= 2 and peek_type(raw) % 2 and peek_type(raw) not in bolt_schema().by_number:
                continue        # BOLT 1: an unknown odd message is ignored, even before init
            break
        try:
            msg = bolt_schema().decode(raw)
        except DecodeError as e:
            raise InitError(f"Malformed init: {e}") from None
        if msg.type != INIT:
            raise InitError(f"Expected init, got message type {msg.type}")
        self.features = check_their_init(msg.fields, chain_hash, our_features)

    # -- ping ---------------------------------------------------------------------------
    async def ping(self, num_pong_bytes: int, length: int, timeout: float = 30.0) -> int:
        """Send a ping; return the total length of the pong (0 if none asked for)."""
        await self.send(bolt_schema().encode("ping", {"num_pong_bytes": num_pong_bytes,
                                                      "ignored": bytes(length)}))
        if num_pong_bytes > PING_MAX_PONG:
            return 0
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pings.append((num_pong_bytes, fut))
        return await asyncio.wait_for(fut, timeout)

    # -- the message loop ------------------------------------------------------------------
    async def run(self, route: Callable[["Peer", str, dict, bytes], "asyncio.Future | None"]) -> None:
        """Read until the connection ends; `route` gets every message this
        loop does not answer itself."""
        schema = bolt_schema()
        try:
            while True:
                raw = await self.recv()
                try:
                    msg = schema.decode(raw)
                    if not accept_message(msg):
                        self.status.debug(f"ignoring unknown odd message type {msg.type}", self.id)
                        continue
                except UnknownMessageError:
                    self.status.unusual(f"unknown even message type {int.from_bytes(raw[:2], 'big')}: "
                                        "closing connection", self.id)
                    await self.send_warning("Unknown even message type")
                    return
                except DecodeError as e:
                    self.status.unusual(f"malformed message type {int.from_bytes(raw[:2], 'big')}: {e}", self.id)
                    await self.send_warning(f"Malformed message: {e}")
                    return
                await self._handle(msg.name, msg.fields, raw, route)
        except (ConnectionClosed, DecryptError, OSError, asyncio.IncompleteReadError) as e:
            if isinstance(e, DecryptError):
                self.status.unusual(f"decryption failed: {e}", self.id)
        finally:
            self.close()
            self.closed.set()

    async def _handle(self, name: str, fields: dict, raw: bytes, route) -> None:
        if name == "ping":
            if len(fields["ignored"]) + 4 > 65535:
                return
            if fields["num_pong_bytes"] <= PING_MAX_PONG:
                await self.send(bolt_schema().encode("pong", {"ignored": bytes(fields["num_pong_bytes"])}))
        elif name == "pong":
            if not self.pings:
                self.status.unusual("unexpected pong", self.id)
                return
            expected, fut = self.pings.popleft()
            if len(fields["ignored"]) != expected:
                self.status.unusual(f"pong of {len(fields['ignored'])} bytes, expected {expected}", self.id)
            if not fut.done():
                fut.set_result(len(raw))
        elif name == "init":
            self.status.unusual("second init received: ignoring", self.id)
        else:
            r = route(self, name, fields, raw)
            if r is not None:
                await r


def random_pong_len() -> int:
    return int.from_bytes(os.urandom(1), "big")
