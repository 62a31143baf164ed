"""BOLT 2's checks of a channel's parameters, applied the moment the peer's
`open_channel` (we are the fundee) or `accept_channel` (we are the funder)
arrives: a channel the peer's parameters make invalid is refused with an
`error` before we answer it or ask the wallet for coins, not when
`funding_created` arrives.

The checks that need no funding outpoint are the channel core's own
(`Channel.check_opening`, `ChannelParams.validate`), run here on the
parameters with a placeholder outpoint, so the shell and the core can never
disagree; this module adds the ones that only make sense at opening time
(chain, channel type, funding limits, Core Lightning's `check_config_bounds`)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bitcoin.tx import OutPoint
from common.commitment import commit_tx_base_fee
from common.features import bits_from_features
from common.scripts import ANCHOR_OUTPUT_SAT

from .core import Channel, ChannelParams, ChannelType, FeerateBounds, PeerError
from .core.params import DEFAULT_MAX_TO_SELF_DELAY

#: the parameters are checked before the funding transaction exists
PLACEHOLDER_OUTPOINT = OutPoint(bytes(32), 0)
#: BOLT 2: without option_support_large_channel, funding_satoshis < 2^24
MAX_FUNDING_SAT_NO_WUMBO = 2**24 - 1
#: channel_type bits (the types themselves come from the master, see below)
STATIC_REMOTEKEY, ANCHORS = 12, 22


def parse_channel_type(raw: bytes | None, supported: Iterable[Iterable[int]], msg: str) -> ChannelType:
    """The peer's `channel_type`: BOLT 2 says a message without one, or with
    one we do not run (`supported`: the types we do, each a set of bits),
    fails the channel."""
    if raw is None:
        raise PeerError(f"{msg} without a channel_type")
    bits = bits_from_features(raw)
    if any(bits == set(t) for t in supported):
        return ChannelType.from_bits(bits)
    raise PeerError(f"unsupported channel_type {sorted(bits)}")


def check_open_channel(oc: dict[str, Any], chain_hash: bytes, fee_bounds: FeerateBounds,
                       cfg: dict[str, Any]) -> ChannelType:
    """The checks of a received `open_channel` on its own fields; returns its
    channel type.  `cfg` is the master's channel config (our policy)."""
    if oc["chain_hash"] != chain_hash:
        raise PeerError(f"Unknown chain-hash {oc['chain_hash'][::-1].hex()}")
    # the types our init offers (the master's `channel_types`), nothing else
    ct = parse_channel_type((oc.get("tlvs") or {}).get("channel_type", {}).get("type"),
                            [t["bits"] for t in cfg["channel_types"]], "open_channel")
    funding = oc["funding_satoshis"]
    if funding > MAX_FUNDING_SAT_NO_WUMBO and not cfg["large_channels"]:
        raise PeerError(f"funding_satoshis {funding} too large (option_support_large_channel not negotiated)")
    if funding < cfg["min_funding_sat"]:
        raise PeerError(f"funding_satoshis {funding} below our minimum {cfg['min_funding_sat']}")
    if oc["push_msat"] > funding * 1000:
        raise PeerError(f"push_msat {oc['push_msat']} greater than funding_satoshis * 1000")
    if oc["dust_limit_satoshis"] > oc["channel_reserve_satoshis"]:
        raise PeerError(f"dust_limit_satoshis {oc['dust_limit_satoshis']} greater than "
                        f"channel_reserve_satoshis {oc['channel_reserve_satoshis']}")
    if not fee_bounds.min_per_kw <= oc["feerate_per_kw"] <= fee_bounds.max_per_kw:
        raise PeerError(f"feerate_per_kw {oc['feerate_per_kw']} outside [{fee_bounds.min_per_kw}, "
                        f"{fee_bounds.max_per_kw}]")
    return ct


def check_channel_params(params: ChannelParams, *, push_msat: int, feerate_per_kw: int,
                         remote_first_per_commitment_point: bytes, fee_bounds: FeerateBounds,
                         max_to_self_delay: int = DEFAULT_MAX_TO_SELF_DELAY) -> None:
    """Both parties' parameters together (`params` with PLACEHOLDER_OUTPOINT):
    the core's checks, then Core Lightning's `check_config_bounds`: the
    funding must cover both reserves, the anchors and the commitment fee, and
    an HTLC of the peer's minimum must fit in what is left."""
    Channel.check_opening(params, push_msat=push_msat, feerate_per_kw=feerate_per_kw,
                          remote_first_per_commitment_point=remote_first_per_commitment_point,
                          fee_bounds=fee_bounds, max_to_self_delay=max_to_self_delay)
    reserves = params.local.channel_reserve_sat + params.remote.channel_reserve_sat
    anchors = 2 * ANCHOR_OUTPUT_SAT if params.option_anchors else 0
    fee = commit_tx_base_fee(feerate_per_kw, 0, params.option_anchors)
    capacity = params.funding_sat - reserves - anchors - fee
    if capacity < 0:
        raise PeerError(f"channel_reserve_satoshis {params.remote.channel_reserve_sat} and "
                        f"{params.local.channel_reserve_sat} plus fee {fee + anchors} too large for "
                        f"funding {params.funding_sat}")
    capacity = min(capacity, params.remote.max_htlc_value_in_flight_msat // 1000)
    if params.remote.htlc_minimum_msat > capacity * 1000:
        raise PeerError(f"htlc_minimum_msat {params.remote.htlc_minimum_msat} too large for funding "
                        f"{params.funding_sat} (capacity {capacity} sat)")
