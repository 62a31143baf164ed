"""What channeld tells the master about its channel, as plain JSON the master
reads without knowing channeld's core: the summary (listpeerchannels,
listfunds, state names) and the events the master must act on exactly once
(HTLCs that became irrevocable, the funding signed, a closing tx)."""
from __future__ import annotations

from typing import Any

from common.commitment import Side

from .core import Channel, HtlcChanges, HtlcStatus


def htlc_json(h: HtlcStatus) -> dict[str, Any]:
    d: dict[str, Any] = {"direction": h.direction, "id": h.htlc_id, "amount_msat": h.amount_msat,
                         "payment_hash": h.payment_hash.hex(), "expiry": h.cltv_expiry, "state": h.state}
    if h.removal is not None:
        d["removal"] = h.removal.value if hasattr(h.removal, "value") else str(h.removal)
    if h.preimage is not None:
        d["preimage"] = h.preimage.hex()
    if h.fail_reason is not None:
        d["fail_reason"] = h.fail_reason.hex()
    if h.failure_code is not None:
        d["failure_code"] = h.failure_code
    if h.fail_immediate:
        d["fail_immediate"] = True
    return d


def changes_json(ch: HtlcChanges, shared_secret: Any = None) -> dict[str, Any]:
    """`shared_secret(onion, path_key) -> bytes | None` gives an incoming
    HTLC's onion shared secret (ECDH with our node key, asked of hsmd; with
    the blinded key when the HTLC came with a route blinding path_key)."""
    locked = []
    for h in ch.locked_in:
        d = htlc_json(h)
        if h.direction == "in":
            d["onion"] = h.onion.hex()
            ss = shared_secret(h.onion, h.blinding_point) if shared_secret is not None else None
            d["shared_secret"] = ss.hex() if ss else None
            if h.blinding_point is not None:
                d["path_key"] = h.blinding_point.hex()
        locked.append(d)
    return {"locked_in": locked, "resolved": [htlc_json(h) for h in ch.resolved]}


def summary(ch: Channel, scid: int | None = None, balances: tuple[int, int] | None = None) -> dict[str, Any]:
    """`balances`: (spendable, receivable) already computed (they are costly:
    a search over the BOLT 2 checks), else computed here."""
    p = ch.params
    spendable, receivable = balances if balances is not None else (ch.spendable_msat, ch.receivable_msat)
    s: dict[str, Any] = {
        "channel_id": ch.channel_id.hex(),
        "state": ch.state.value,
        "funding_txid": p.funding_outpoint.txid_hex,
        "funding_outnum": p.funding_outpoint.index,
        "funding_sat": p.funding_sat,
        "opener": "local" if p.opener is Side.LOCAL else "remote",
        "to_us_msat": ch.to_us_msat,
        "to_them_msat": ch.to_them_msat,
        "spendable_msat": spendable,
        "receivable_msat": receivable,
        "feerate_per_kw": ch.log.feerate(Side.LOCAL, ch.log.oldest[Side.LOCAL]),
        "channel_type": list(p.channel_type.feature_bits),
        # what each side must keep: the reserve the *other* side asked for
        "our_reserve_sat": p.remote.channel_reserve_sat,
        "their_reserve_sat": p.local.channel_reserve_sat,
        "our_dust_limit_sat": p.local.dust_limit_sat,
        "their_dust_limit_sat": p.remote.dust_limit_sat,
        "our_to_self_delay": p.remote.to_self_delay,   # what the peer imposes on our outputs
        "their_to_self_delay": p.local.to_self_delay,
        "our_max_htlc_value_in_flight_msat": p.local.max_htlc_value_in_flight_msat,
        "their_max_htlc_value_in_flight_msat": p.remote.max_htlc_value_in_flight_msat,
        "our_htlc_minimum_msat": p.local.htlc_minimum_msat,
        "their_htlc_minimum_msat": p.remote.htlc_minimum_msat,
        "our_max_accepted_htlcs": p.local.max_accepted_htlcs,
        "their_max_accepted_htlcs": p.remote.max_accepted_htlcs,
        "next_local_htlc_id": ch.log.next_id[Side.LOCAL],
        "local_commitment_number": ch.log.latest[Side.LOCAL],
        "remote_commitment_number": ch.log.latest[Side.REMOTE],
        "channel_ready_sent": ch.channel_ready_sent,
        "channel_ready_received": ch.channel_ready_received,
        "shutdown_sent": ch.shutdown_sent,
        "shutdown_received": ch.remote_shutdown_script is not None,
        "local_shutdown_script": (ch.local_shutdown_script or b"").hex(),
        "remote_shutdown_script": (ch.remote_shutdown_script or b"").hex(),
        "funding_pubkey_local": p.local.funding_pubkey.hex(),
        "funding_pubkey_remote": p.remote.funding_pubkey.hex(),
        "htlcs": [htlc_json(h) for h in ch.htlcs()],
    }
    if scid is not None:
        s["scid"] = scid
    return s
