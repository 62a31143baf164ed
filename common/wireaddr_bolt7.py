"""BOLT 7 address descriptors (node_announcement `addresses`)."""
from __future__ import annotations

import ipaddress
import struct

from .wireaddr import WireAddr


def encode_addresses(addrs: list[WireAddr]) -> bytes:
    """Type 1 ipv4, 2 ipv6, 5 DNS hostname; others are skipped."""
    out = bytearray()
    for a in addrs:
        kind = a.kind
        if kind == "ipv4" and a.host:
            out += b"\x01" + ipaddress.IPv4Address(a.host).packed + struct.pack(">H", a.port)
        elif kind == "ipv6":
            out += b"\x02" + ipaddress.IPv6Address(a.host).packed + struct.pack(">H", a.port)
        elif kind == "dns" and len(a.host) < 256:
            h = a.host.encode()
            out += b"\x05" + bytes([len(h)]) + h + struct.pack(">H", a.port)
    return bytes(out)
