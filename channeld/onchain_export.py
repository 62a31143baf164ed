"""What onchaind needs of a channel that went on chain, exported from
channeld's state as plain JSON (hex strings and integers).

The master keeps channeld's state opaque and onchaind may not import
channeld, so this document is the contract between them: its format is
documented once, in onchaind/channel_json.py (which parses it); keep the two
in step."""
from __future__ import annotations

from typing import Any

from bitcoin.keys import compact_to_der
from common.commitment import HtlcInfo, Side
from common.shachain import MAX_INDEX

from .core import Channel, PartyConfig
from .core.htlcs import CommitmentView

FORMAT_VERSION = 1
_SIDE = {Side.LOCAL: "local", Side.REMOTE: "remote"}


def _htlc(h: HtlcInfo) -> dict[str, Any]:
    return {"offerer": _SIDE[h.offerer], "id": h.htlc_id, "amount_msat": h.amount_msat,
            "payment_hash": h.payment_hash.hex(), "cltv_expiry": h.cltv_expiry}


def _party(p: PartyConfig) -> dict[str, Any]:
    bp = p.basepoints
    return {"funding_pubkey": p.funding_pubkey.hex(),
            "basepoints": {"revocation": bp.revocation.hex(), "payment": bp.payment.hex(),
                           "delayed_payment": bp.delayed_payment.hex(), "htlc": bp.htlc.hex()},
            "dust_limit_sat": p.dust_limit_sat, "to_self_delay": p.to_self_delay}


def _commitment(v: CommitmentView, point: bytes) -> dict[str, Any]:
    return {"number": v.number, "per_commitment_point": point.hex(), "feerate_per_kw": v.feerate_per_kw,
            "local_msat": v.local_msat, "remote_msat": v.remote_msat, "htlcs": [_htlc(h) for h in v.htlcs]}


def export_onchain(ch: Channel) -> dict[str, Any]:
    """The channel document of onchaind/channel_json.py."""
    p, log = ch.params, ch.log
    n = log.latest[Side.LOCAL]
    local = _commitment(log.view(Side.LOCAL, n), ch.signer.per_commitment_point(n))
    local["htlc_signatures"] = [compact_to_der(s).hex() for s in ch.local_htlc_sigs]
    cur, nxt = log.oldest[Side.REMOTE], log.latest[Side.REMOTE]
    remote = _commitment(log.view(Side.REMOTE, cur), ch.remote_points[cur])
    remote_next = _commitment(log.view(Side.REMOTE, nxt), ch.remote_points[nxt]) if nxt != cur else None
    secrets = [{"commitment_number": MAX_INDEX - idx, "secret": secret.hex()}
               for idx, secret in (e for e in ch.remote_secrets.known if e is not None)]
    return {
        "version": FORMAT_VERSION,
        "channel_id": ch.channel_id.hex(),
        "funding": {"txid": p.funding_outpoint.txid_hex, "outnum": p.funding_outpoint.index,
                    "amount_sat": p.funding_sat},
        "opener": _SIDE[p.opener],
        "anchors": p.option_anchors,
        "local": _party(p.local),
        "remote": _party(p.remote),
        "local_commitment": local,
        "remote_commitment": remote,
        "remote_next_commitment": remote_next,
        "revealed_secrets": sorted(secrets, key=lambda e: e["commitment_number"]),
        "shutdown_scriptpubkey": ch.local_shutdown_script.hex() if ch.local_shutdown_script else None,
    }
