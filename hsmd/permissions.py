"""Capabilities of hsmd clients (Core Lightning's hsmd/permissions.h).

A client may only send the requests its capabilities allow; the master asks
for the capability set when it makes the client's socket.  The bits are
declared in wire/hsm_caps.py."""
from __future__ import annotations

from wire.hsm_caps import (CAP_COMMITMENT_POINT, CAP_ECDH, CAP_MASTER, CAP_SIGN_CLOSING_TX, CAP_SIGN_GOSSIP,
                           CAP_SIGN_ONCHAIN_TX, CAP_SIGN_REMOTE_TX, describe)

__all__ = ["REQUIRED_CAP", "CHANNEL_REQUESTS", "allowed", "describe"]

# request -> capability needed (requests not listed are master-only)
REQUIRED_CAP: dict[str, int] = {
    "hsmd_ecdh_req": CAP_ECDH,
    "hsmd_init": CAP_MASTER,
    "hsmd_client_hsmfd": CAP_MASTER,
    "hsmd_sign_message": CAP_MASTER,
    "hsmd_sign_invoice": CAP_MASTER,
    "hsmd_sign_withdrawal": CAP_MASTER,
    "hsmd_sign_anchorspend": CAP_MASTER,
    "hsmd_derive_secret": CAP_MASTER,
    "hsmd_sign_bolt12": CAP_MASTER,
    "hsmd_get_channel_basepoints": CAP_COMMITMENT_POINT,
    "hsmd_get_per_commitment_point": CAP_COMMITMENT_POINT,
    "hsmd_validate_commitment_tx": CAP_COMMITMENT_POINT,
    "hsmd_revoke_commitment_tx": CAP_COMMITMENT_POINT,
    "hsmd_sign_remote_commitment_tx": CAP_SIGN_REMOTE_TX,
    "hsmd_sign_remote_htlc_tx": CAP_SIGN_REMOTE_TX,
    "hsmd_sign_remote_htlc_txs": CAP_SIGN_REMOTE_TX,
    "hsmd_sign_local_commitment_tx": CAP_SIGN_CLOSING_TX,
    "hsmd_sign_local_htlc_tx": CAP_SIGN_CLOSING_TX,
    "hsmd_sign_mutual_close_tx": CAP_SIGN_CLOSING_TX,
    "hsmd_sign_onchain_tx": CAP_SIGN_ONCHAIN_TX,
    "hsmd_sign_gossip": CAP_SIGN_GOSSIP,
    "hsmd_sign_channel_announcement": CAP_SIGN_GOSSIP,
}
# requests that act on the client's own channel (peer id + dbid of its socket)
CHANNEL_REQUESTS = frozenset(n for n, c in REQUIRED_CAP.items()
                             if c in (CAP_COMMITMENT_POINT, CAP_SIGN_REMOTE_TX, CAP_SIGN_CLOSING_TX,
                                      CAP_SIGN_ONCHAIN_TX) or n == "hsmd_sign_channel_announcement")


def allowed(request: str, capabilities: int) -> bool:
    need = REQUIRED_CAP.get(request, CAP_MASTER)
    return bool(capabilities & need)

