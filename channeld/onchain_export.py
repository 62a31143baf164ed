"""What onchaind needs of a channel that went on chain, exported from
channeld's state: an `onchain_channel` (wire/csv/onchain_channel.csv, which
declares every field; onchaind/onchain_channel.py reads it)."""
from __future__ import annotations

from typing import Any

from common.commitment import SIDE_NAMES, Side, onchain_htlc_value, onchain_party_value
from common.shachain import MAX_INDEX

from .core import Channel
from .core.htlcs import CommitmentView


def _commitment(v: CommitmentView, point: bytes) -> dict[str, Any]:
    return {"number": v.number, "per_commitment_point": point, "feerate_per_kw": v.feerate_per_kw,
            "local_msat": v.local_msat, "remote_msat": v.remote_msat, "htlcs": [onchain_htlc_value(h) for h in v.htlcs]}


def export_onchain(ch: Channel) -> dict[str, Any]:
    """The channel's `onchain_channel`."""
    p, log = ch.params, ch.log
    n = log.latest[Side.LOCAL]
    cur, nxt = log.oldest[Side.REMOTE], log.latest[Side.REMOTE]
    secrets = [{"commitment_number": MAX_INDEX - idx, "secret": secret}
               for idx, secret in (e for e in ch.remote_secrets.known if e is not None)]
    return {
        "channel_id": ch.channel_id,
        "funding_txid": p.funding_outpoint.txid,
        "funding_outnum": p.funding_outpoint.index,
        "funding_sat": p.funding_sat,
        "opener": SIDE_NAMES[p.opener],
        "anchors": p.option_anchors,
        "local": onchain_party_value(p.local),
        "remote": onchain_party_value(p.remote),
        "local_commitment": _commitment(log.view(Side.LOCAL, n), ch.signer.per_commitment_point(n)),
        "htlc_signatures": list(ch.local_htlc_sigs),
        "remote_commitment": _commitment(log.view(Side.REMOTE, cur), ch.remote_points[cur]),
        "remote_next_commitment": _commitment(log.view(Side.REMOTE, nxt), ch.remote_points[nxt]) if nxt != cur else None,
        "revealed_secrets": sorted(secrets, key=lambda e: e["commitment_number"]),
        "shutdown_scriptpubkey": ch.local_shutdown_script or b"",
    }
