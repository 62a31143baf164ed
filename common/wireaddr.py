"""Network addresses as operators write them (`host:port`, `[v6]:port`,
`:port`) and as Core Lightning's JSON shows them ({type, address, port})."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass


class AddressParseError(ValueError):
    pass


@dataclass(frozen=True)
class WireAddr:
    host: str      # "" means every interface (bind only)
    port: int

    @property
    def kind(self) -> str:
        if not self.host:
            return "ipv4"
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            return "torv3" if self.host.endswith(".onion") else "dns"
        return "ipv6" if ip.version == 6 else "ipv4"

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.kind == "ipv6" else self.host
        return f"{host}:{self.port}"

    def to_json(self) -> dict:
        return {"type": self.kind, "address": self.host or "0.0.0.0", "port": self.port}

    def is_localhost(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def parse_wireaddr(text: str, default_port: int) -> WireAddr:
    """`1.2.3.4`, `1.2.3.4:9735`, `[::1]:9735`, `::1`, `host:port`, `:9735`."""
    t = text.strip()
    if not t:
        raise AddressParseError("empty address")
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise AddressParseError(f"unterminated [ in '{text}'")
        host, rest = t[1:end], t[end + 1:]
        if rest and not rest.startswith(":"):
            raise AddressParseError(f"garbage after ] in '{text}'")
        port_s = rest[1:] if rest else ""
    elif t.count(":") > 1:  # bare IPv6, no port
        host, port_s = t, ""
    elif ":" in t:
        host, port_s = t.rsplit(":", 1)
    else:
        host, port_s = t, ""
    if port_s:
        try:
            port = int(port_s)
        except ValueError:
            raise AddressParseError(f"invalid port '{port_s}' in '{text}'") from None
        if not 0 < port < 65536:
            raise AddressParseError(f"port {port} out of range in '{text}'")
    else:
        port = default_port
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not all(c.isalnum() or c in "-._" for c in host):
                raise AddressParseError(f"invalid host '{host}'") from None
    return WireAddr(host, port)


def split_host_port(text: str) -> tuple[str, int | None]:
    """bitcoin-cli's -rpcconnect (Core Lightning hands --bitcoin-rpcconnect
    to it): `HOST`, `HOST:PORT`, `[IPV6]:PORT`, or a bare IPv6 address.
    Raises ValueError on an empty host or a port that is not 1..65535."""
    text = text.strip()
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or end + 1 < len(text) and text[end + 1] != ":":
            raise ValueError(f"'{text}' is not HOST or HOST:PORT")
        host, rest = text[1:end], text[end + 2:]
        port = rest if end + 1 < len(text) else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise ValueError(f"'{text}' has no host")
    if port is None:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid port '{port}' in '{text}'")
    return host, int(port)
