"""Channel establishment (BOLT 2 v1): open_channel / accept_channel /
funding_created / funding_signed, for the funder and the fundee.

The funding transaction is built (and later signed and broadcast) by the
master's wallet; channeld only learns its outpoint.  Persist before reveal:
the fundee stores the channel before sending funding_signed, the funder
before the master broadcasts the funding transaction."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from bitcoin.script import p2wsh_script
from bitcoin.tx import OutPoint
from common.commitment import Side
from common.features import features_from_bits
from common.scripts import funding_script

from .core import Channel, ChannelParams, ChannelType, PartyConfig, PeerError
from .open_checks import PLACEHOLDER_OUTPOINT, check_channel_params, check_open_channel, parse_channel_type

if TYPE_CHECKING:
    from .channeld import ChannelDaemon

MAX_MINIMUM_DEPTH = 10   # a fundee asking for more is unreasonable (BOLT 2 MAY reject)
#: every basic channel type the core runs (what we propose is one of them,
#: perhaps with the variations option_scid_alias and option_zeroconf)
KNOWN_TYPES = ((12,), (12, 22))
VARIATIONS = {46, 50}
#: Core Lightning's answer to a zero-conf channel_type from a peer the
#: openchannel hook gave no minimum depth 0
NOT_ZEROCONF = "You required zeroconf, but you're not on our allowlist"


def our_party(policy: dict[str, Any], funding_sat: int, signer: Any, upfront: bytes,
              their_dust_sat: int = 0) -> PartyConfig:
    """Our side of open_channel/accept_channel, from the master's policy
    (`open_policy` in wire/csv/channeld.csv)."""
    # BOLT 2: the reserve we ask of the peer is at least its dust limit
    # (Core Lightning bumps it the same way), so its to_local can't be dust
    wanted = policy["reserve_sat"] if policy["reserve_sat"] is not None else funding_sat // 100
    reserve = max(policy["dust_limit_sat"], their_dust_sat, wanted)
    return PartyConfig(dust_limit_sat=policy["dust_limit_sat"],
                       max_htlc_value_in_flight_msat=min(policy["max_htlc_value_in_flight_msat"], funding_sat * 1000),
                       channel_reserve_sat=reserve, htlc_minimum_msat=policy["htlc_minimum_msat"],
                       to_self_delay=policy["to_self_delay"], max_accepted_htlcs=policy["max_accepted_htlcs"],
                       funding_pubkey=signer.funding_pubkey(), basepoints=signer.basepoints(),
                       upfront_shutdown_script=upfront)


def _channel_type(bits: list[int]) -> ChannelType:
    """The type the master chose to propose (it checked we run it)."""
    if tuple(sorted(set(bits) - VARIATIONS)) not in KNOWN_TYPES:
        raise ValueError(f"cannot propose channel_type {sorted(bits)}")
    return ChannelType.from_bits(bits)


def _type_tlv(ct: ChannelType) -> bytes:
    return features_from_bits(set(ct.feature_bits))


async def open_as_funder(d: "ChannelDaemon", cfg: dict) -> Channel:
    signer = d.signer
    f = cfg["funder"]
    funding_sat = f["funding_sat"]
    push_msat = f["push_msat"]
    feerate = f["feerate_per_kw"]
    temp_id = f["temporary_channel_id"]
    d.temp_id = temp_id
    upfront = cfg["upfront_shutdown_script"]
    ct = _channel_type(f["channel_type"]["bits"])
    local = our_party(cfg["our"], funding_sat, signer, upfront)
    tlvs: dict[str, Any] = {"channel_type": {"type": _type_tlv(ct)},
                            "upfront_shutdown_script": {"shutdown_scriptpubkey": upfront}}
    await d.send_peer("open_channel", {
        "chain_hash": d.chain_hash, "temporary_channel_id": temp_id, "funding_satoshis": funding_sat,
        "push_msat": push_msat, **{k: v for k, v in local.wire_fields().items()},
        "feerate_per_kw": feerate, "first_per_commitment_point": signer.per_commitment_point(0),
        "channel_flags": 1 if cfg["announce"] else 0, "tlvs": tlvs})
    d.billboard("Sent open_channel: waiting for accept_channel")
    acc = await d.expect_peer("accept_channel", temp_id)
    if acc["minimum_depth"] > MAX_MINIMUM_DEPTH:
        raise PeerError(f"minimum_depth {acc['minimum_depth']} unreasonably large")
    got_type = (acc.get("tlvs") or {}).get("channel_type")
    # BOLT 2: the type we proposed, or the channel fails
    their_ct = parse_channel_type(got_type["type"] if got_type else None,
                                  [ct.feature_bits] + [(12,), (12, 22)], "accept_channel")
    if their_ct != ct:
        raise PeerError(f"accept_channel channel_type {list(their_ct.feature_bits)} differs from ours "
                        f"{list(ct.feature_bits)}")
    if ct.zeroconf and acc["minimum_depth"] != 0:
        # BOLT 2: an accepter of a zero-conf type MUST set minimum_depth 0
        raise PeerError(f"accept_channel minimum_depth {acc['minimum_depth']} for a zeroconf channel_type")
    if f["zeroconf_negotiated"]:
        # Core Lightning: with option_zeroconf both may send channel_ready
        # when they like, so ours waits for our own minimum depth (fundchannel's
        # mindepth); the channel is zero-conf when the peer asked for none
        minimum_depth = cfg["minimum_depth"]
        if acc["minimum_depth"] == 0:
            ct = dataclasses.replace(ct, zeroconf=True)
    else:
        minimum_depth = acc["minimum_depth"]
    remote = PartyConfig.from_wire(acc)
    # BOLT 2's checks of accept_channel before the wallet reserves any coin
    check_channel_params(ChannelParams(PLACEHOLDER_OUTPOINT, funding_sat, Side.LOCAL, local, remote, ct),
                         push_msat=push_msat, feerate_per_kw=feerate,
                         remote_first_per_commitment_point=acc["first_per_commitment_point"],
                         fee_bounds=d.fee_bounds,
                         max_to_self_delay=cfg["max_to_self_delay"])
    if remote.channel_reserve_sat > funding_sat // 5:
        raise PeerError(f"accept_channel channel_reserve_satoshis {remote.channel_reserve_sat} unreasonable")
    script = p2wsh_script(funding_script(local.funding_pubkey, remote.funding_pubkey))
    txid, outnum = await d.funding_needed(funding_sat, script)
    params = ChannelParams(OutPoint(txid, outnum), funding_sat, Side.LOCAL, local, remote, ct)
    ch = Channel.new(params, signer, push_msat=push_msat, feerate_per_kw=feerate,
                     remote_first_per_commitment_point=acc["first_per_commitment_point"],
                     fee_bounds=d.fee_bounds, max_to_self_delay=cfg["max_to_self_delay"])
    d.minimum_depth = minimum_depth
    d.route_channel_id(ch.channel_id)
    await d.send_peer("funding_created", {"temporary_channel_id": temp_id, "funding_txid": txid,
                                          "funding_output_index": outnum,
                                          "signature": ch.initial_remote_commitment_sig()})
    d.billboard("Sent funding_created: waiting for funding_signed")
    fs = await d.expect_peer("funding_signed", ch.channel_id)
    ch.recv_initial_commitment_sig(fs["signature"])
    # The master stores the channel, then signs and broadcasts the funding tx.
    await d.persist(ch, funding={"minimum_depth": d.minimum_depth, "channel_flags": 1 if cfg["announce"] else 0})
    return ch


async def open_as_fundee(d: "ChannelDaemon", cfg: dict, oc: dict) -> Channel:
    signer = d.signer
    temp_id = oc["temporary_channel_id"]
    d.temp_id = temp_id
    max_delay = cfg["max_to_self_delay"]
    # every BOLT 2 check before we answer: a refused open costs nothing more
    ct = check_open_channel(oc, d.chain_hash, d.fee_bounds, cfg)
    d.minimum_depth = cfg["minimum_depth"]
    if ct.zeroconf and d.minimum_depth != 0:
        # BOLT 2: fail a zero-conf channel_type from a sender we do not trust
        # (the openchannel hook trusts it by setting mindepth 0)
        raise PeerError(NOT_ZEROCONF)
    if ct.scid_alias and oc["channel_flags"] & 1:
        # the sender MUST NOT: the channel would be announced by a real
        # short_channel_id it may never be used by
        raise PeerError("option_scid_alias in the channel_type of a public channel")
    funding_sat = oc["funding_satoshis"]
    upfront = cfg["upfront_shutdown_script"]
    local = our_party(cfg["our"], funding_sat, signer, upfront, their_dust_sat=oc["dust_limit_satoshis"])
    remote = PartyConfig.from_wire(oc)
    check_channel_params(ChannelParams(PLACEHOLDER_OUTPOINT, funding_sat, Side.REMOTE, local, remote, ct),
                         push_msat=oc["push_msat"], feerate_per_kw=oc["feerate_per_kw"],
                         remote_first_per_commitment_point=oc["first_per_commitment_point"],
                         fee_bounds=d.fee_bounds, max_to_self_delay=max_delay)
    if d.announcer is not None:
        d.announcer.enabled = bool(oc["channel_flags"] & 1)   # the funder decides
    tlvs: dict[str, Any] = {"channel_type": {"type": _type_tlv(ct)},
                            "upfront_shutdown_script": {"shutdown_scriptpubkey": upfront}}
    await d.send_peer("accept_channel", {
        "temporary_channel_id": temp_id, **local.wire_fields(), "minimum_depth": d.minimum_depth,
        "first_per_commitment_point": signer.per_commitment_point(0), "tlvs": tlvs})
    d.billboard("Sent accept_channel: waiting for funding_created")
    fc = await d.expect_peer("funding_created", temp_id)
    params = ChannelParams(OutPoint(fc["funding_txid"], fc["funding_output_index"]), funding_sat, Side.REMOTE,
                           local, remote, ct)
    ch = Channel.new(params, signer, push_msat=oc["push_msat"], feerate_per_kw=oc["feerate_per_kw"],
                     remote_first_per_commitment_point=oc["first_per_commitment_point"], fee_bounds=d.fee_bounds,
                     max_to_self_delay=max_delay)
    ch.recv_initial_commitment_sig(fc["signature"])
    sig = ch.initial_remote_commitment_sig()
    # Persist before reveal: once funding_signed is out the funder may broadcast.
    await d.persist(ch, funding={"minimum_depth": d.minimum_depth, "channel_flags": oc["channel_flags"]})
    d.route_channel_id(ch.channel_id)
    await d.send_peer("funding_signed", {"channel_id": ch.channel_id, "signature": sig})
    return ch


