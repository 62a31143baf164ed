"""Capability bits of hsmd clients (Core Lightning's hsmd/permissions.h):
the `capabilities` field of `hsmd_client_hsmfd` (wire/csv/hsmd.csv).

Declared once, here, for both ends: the master asks for a set when it
makes a client's socket, hsmd checks every request against it
(hsmd/permissions.py says which bit each request needs)."""
from __future__ import annotations

CAP_ECDH = 1
CAP_SIGN_GOSSIP = 2
CAP_SIGN_ONCHAIN_TX = 4
CAP_COMMITMENT_POINT = 8
CAP_SIGN_REMOTE_TX = 16
CAP_SIGN_CLOSING_TX = 32
CAP_SIGN_WILL_FUND_OFFER = 64
CAP_MASTER = 1024

#: every bit, by name (for logs)
CAPS: dict[str, int] = {name: value for name, value in globals().items() if name.startswith("CAP_")}


def describe(capabilities: int) -> str:
    """`CAP_ECDH|CAP_SIGN_GOSSIP`, or `none`."""
    return "|".join(n for n, v in CAPS.items() if capabilities & v) or "none"
