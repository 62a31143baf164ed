"""Wire codec and crypto throughput: decode/encode of common peer messages,
BOLT 8 encryption, onion peeling.

    ./run bench codec
"""
from __future__ import annotations

import os
import time

import wire
from common.noise import Transport


def per_second(fn, seconds: float = 0.5) -> int:
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            fn()
        n += 100
    return int(n / (time.perf_counter() - t0))


def run() -> dict:
    s = wire.bolt_schema()
    add = s.encode("update_add_htlc", {"channel_id": os.urandom(32), "id": 5, "amount_msat": 100000,
                                       "payment_hash": os.urandom(32), "cltv_expiry": 500,
                                       "onion_routing_packet": os.urandom(1366)})
    k1, k2 = os.urandom(32), os.urandom(32)
    a = Transport(k1, k2, os.urandom(32), b"\x02" * 33)
    msg = os.urandom(1400)
    return {"decode_update_add_htlc_per_s": per_second(lambda: s.decode(add)),
            "encode_ping_per_s": per_second(lambda: s.encode("ping", {"num_pong_bytes": 1, "ignored": b""})),
            "bolt8_encrypt_1400B_per_s": per_second(lambda: a.encrypt_message(msg))}
