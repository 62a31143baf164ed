"""ZMQ notifications with bitcoind's wire format (doc/zmq.md).

Each message has three parts: topic, body, and a 4-byte little-endian
sequence number counted per topic. Topics sharing an address share one PUB
socket, as in bitcoind. Sends never block: a slow subscriber loses messages
past the high water mark instead of stalling the chain.
"""
from __future__ import annotations

import logging
import struct

import zmq

log = logging.getLogger("regtestd")

DEFAULT_HWM = 1000


class ZmqPublisher:
    """PUB sockets for the configured topics (hashblock, hashtx, rawblock, rawtx, sequence)."""

    def __init__(self, topics: dict[str, str], hwm: dict[str, int]) -> None:
        self.topics = dict(topics)
        self.hwm = {t: hwm.get(t, DEFAULT_HWM) for t in topics}
        self._ctx: zmq.Context | None = zmq.Context() if topics else None
        self._sockets: dict[str, zmq.Socket] = {}     # address -> socket
        self._seq: dict[str, int] = {t: 0 for t in topics}
        for topic, addr in self.topics.items():
            if addr not in self._sockets:
                assert self._ctx is not None
                s = self._ctx.socket(zmq.PUB)
                s.setsockopt(zmq.SNDHWM, self.hwm[topic])
                s.setsockopt(zmq.TCP_KEEPALIVE, 1)
                s.setsockopt(zmq.LINGER, 0)
                s.bind(addr)
                self._sockets[addr] = s

    def notifications(self) -> list[dict[str, object]]:
        """getzmqnotifications' answer."""
        return [{"type": f"pub{t}", "address": a, "hwm": self.hwm[t]} for t, a in self.topics.items()]

    def _publish(self, topic: str, body: bytes) -> None:
        addr = self.topics.get(topic)
        if addr is None:
            return
        seq = self._seq[topic]
        self._seq[topic] = (seq + 1) & 0xFFFFFFFF
        try:
            self._sockets[addr].send_multipart([topic.encode(), body, struct.pack("<I", seq)], flags=zmq.NOBLOCK)
        except zmq.Again:
            log.debug("zmq: dropped %s message (high water mark)", topic)

    # -- events ------------------------------------------------------------------------
    def transaction(self, raw: bytes, txid: bytes) -> None:
        """A transaction entered the mempool, or was connected/disconnected in a block."""
        self._publish("hashtx", txid[::-1])
        self._publish("rawtx", raw)

    def block(self, raw: bytes, block_hash: bytes) -> None:
        """A new tip."""
        self._publish("hashblock", block_hash[::-1])
        self._publish("rawblock", raw)

    def sequence_block(self, block_hash: bytes, connected: bool) -> None:
        self._publish("sequence", block_hash[::-1] + (b"C" if connected else b"D"))

    def sequence_tx(self, txid: bytes, added: bool, mempool_seq: int) -> None:
        self._publish("sequence", txid[::-1] + (b"A" if added else b"R") + struct.pack("<Q", mempool_seq))

    def close(self) -> None:
        for s in self._sockets.values():
            s.close(linger=0)
        self._sockets.clear()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
