"""What channeld tells the master about its channel in `channeld_persist`
(wire/csv/channeld.csv, which declares every field): the summary the master
reads (listpeerchannels, listfunds, state names) and the HTLCs that became
irrevocable, for the master to act on exactly once."""
from __future__ import annotations

from typing import Any, Callable

from common.commitment import Side

from .core import Channel, HtlcChanges, HtlcStatus


def summary_htlc(h: HtlcStatus) -> dict[str, Any]:
    return {"direction": h.direction, "id": h.htlc_id, "amount_msat": h.amount_msat,
            "payment_hash": h.payment_hash, "expiry": h.cltv_expiry, "state": h.state}


def locked_in(ch: HtlcChanges, shared_secret: Callable[[bytes, bytes | None], bytes | None] | None = None
              ) -> list[dict[str, Any]]:
    """The HTLCs the peer offered that are now irrevocably committed
    (`locked_htlc`); `shared_secret(onion, path_key)` gives an onion's shared
    secret (ECDH with our node key, asked of hsmd; with the blinded key when
    the HTLC came with a route blinding path_key), None if a key is invalid."""
    return [{"id": h.htlc_id, "amount_msat": h.amount_msat, "payment_hash": h.payment_hash,
             "cltv_expiry": h.cltv_expiry, "onion": h.onion,
             "shared_secret": shared_secret(h.onion, h.blinding_point) if shared_secret is not None else None,
             "path_key": h.blinding_point, "fail_immediate": h.fail_immediate}
            for h in ch.locked_in if h.direction == "in"]


def resolved(ch: HtlcChanges) -> list[dict[str, Any]]:
    """The HTLCs whose removal is now irrevocably committed (`resolved_htlc`)."""
    return [{"outgoing": h.direction == "out", "id": h.htlc_id, "preimage": h.preimage,
             "fail_reason": h.fail_reason or b"", "failure_code": h.failure_code,
             "sha256_of_onion": h.sha256_of_onion}
            for h in ch.resolved]


def summary(ch: Channel, balances: tuple[int, int] | None = None) -> dict[str, Any]:
    """`channel_summary`.  `balances`: (spendable, receivable) already
    computed (they are costly: a search over the BOLT 2 checks), else
    computed here."""
    p = ch.params
    spendable, receivable = balances if balances is not None else (ch.spendable_msat, ch.receivable_msat)
    return {
        "channel_id": ch.channel_id,
        "state": ch.state.value,
        "funding_txid": p.funding_outpoint.txid,
        "funding_outnum": p.funding_outpoint.index,
        "funding_sat": p.funding_sat,
        "opener": "local" if p.opener is Side.LOCAL else "remote",
        "to_us_msat": ch.to_us_msat,
        "to_them_msat": ch.to_them_msat,
        "spendable_msat": spendable,
        "receivable_msat": receivable,
        "feerate_per_kw": ch.log.feerate(Side.LOCAL, ch.log.oldest[Side.LOCAL]),
        "channel_type": {"bits": sorted(p.channel_type.feature_bits)},
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
        "local_shutdown_script": ch.local_shutdown_script or b"",
        "remote_shutdown_script": ch.remote_shutdown_script or b"",
        "funding_pubkey_local": p.local.funding_pubkey,
        "funding_pubkey_remote": p.remote.funding_pubkey,
        "htlcs": [summary_htlc(h) for h in ch.htlcs()],
    }
