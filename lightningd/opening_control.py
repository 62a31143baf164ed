"""Opening channels: `fundchannel` (we fund) and a peer's open_channel (it
funds), with the `openchannel` hook letting plugins accept or reject."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bitcoin.address import AddressError, address_to_script
from bitcoin.coinselect import InsufficientFunds, Target, select_coins
from bitcoin.coinselect import Utxo as CoinUtxo
from bitcoin.script import p2wsh_script
from common.features import (CHANNEL_TYPE_VARIATIONS, OPTION_ANCHORS, OPTION_SCID_ALIAS,
                             OPTION_SUPPORT_LARGE_CHANNEL, OPTION_ZEROCONF, Context, acceptable_channel_types,
                             bits_from_features, channel_type_accept, channel_type_names, desired_channel_type,
                             feature_negotiated, has_feature, supported_channel_types)
from wire import DecodeError, bolt_schema
from wire.channeld_modes import MODE_FUNDEE, MODE_FUNDER

from . import params as P
from .channel import ChannelState
from .channel_control import ChannelOpenFailed, PendingOpen
from .feerates import commitment_feerate_name, feerate_param
from .jsonrpc import RequestContext
from .jsonrpc_errors import (
    FUND_CANNOT_AFFORD,
    FUND_CANNOT_AFFORD_WITH_EMERGENCY,
    FUNDING_BROADCAST_FAIL,
    FUNDING_PEER_NOT_CONNECTED,
    FUNDING_STILL_SYNCING_BITCOIN,
    FUNDING_UNKNOWN_PEER,
    INVALID_PARAMS,
    LIGHTNINGD,
    RpcError,
)
from .params import opt, req
from .withdraw import _outpoints

if TYPE_CHECKING:
    from .lightningd import LightningD

MIN_FUNDING_SAT = 1000
DUMMY_FUNDING_SCRIPT = p2wsh_script(b"\x00")   # same size as the real 2-of-2 P2WSH
DUMMY_RESERVE_SCRIPT = b"\x51\x20" + bytes(32)  # a P2TR change output


def register(ld: "LightningD") -> None:
    cc = ld.channels
    cmd = ld.registry.command

    @cmd("fundchannel", [req("id", P.node_id), req("amount", P.sat_or_all), opt("feerate", feerate_param),
                         opt("announce", P.boolean, True), opt("minconf", P.u32, 1), opt("utxos", P.array),
                         opt("push_msat", P.msat, 0), opt("close_to", P.string), opt("request_amt", P.sat),
                         opt("compact_lease", P.string), opt("mindepth", P.u32), opt("reserve", P.sat),
                         opt("channel_type", P.array_of(P.u32))], category="channels",
         description="Fund channel with {id} using {amount} satoshis with feerate of {feerate} (uses default "
                     "feerate if unset).")
    async def fundchannel(ctx: RequestContext, id: bytes, amount: int | None, feerate: Any, announce: bool,
                          minconf: int, utxos: list | None, push_msat: int, close_to: str | None,
                          request_amt: int | None, compact_lease: str | None, reserve: int | None,
                          channel_type: list | None, mindepth: int | None) -> dict:
        if request_amt is not None or compact_lease is not None:
            raise RpcError(FUNDING_V2_NOT_SUPPORTED, "Liquidity ads (request_amt, compact_lease) need dual "
                                                     "funding, which this node does not support")
        our_init = ld.our_features(Context.INIT)
        ctype = None
        if channel_type is not None:
            # as Core Lightning: a type we would accept ourselves, sent as
            # asked even if the peer did not offer its features
            ctype = _runnable_type(channel_type, our_init)
            if ctype is None:
                raise RpcError(INVALID_PARAMS, f"channel_type {sorted(set(channel_type))} not supported")
            # BOLT 2: a zero-conf type means minimum_depth 0
            if OPTION_ZEROCONF in ctype:
                if mindepth not in (None, 0):
                    raise RpcError(INVALID_PARAMS, "Cannot set non-zero mindepth for zero-conf channel_type")
                mindepth = 0
        if mindepth is None:
            mindepth = int(ld.cfg.get("funding-confirms"))
        peer = ld.peers.get(id)
        if peer is None:
            raise RpcError(FUNDING_UNKNOWN_PEER, "Unknown peer")
        if not peer.connected:
            raise RpcError(FUNDING_PEER_NOT_CONNECTED, "Peer not connected")
        if not ld.topology.lightningd_synced:
            raise RpcError(FUNDING_STILL_SYNCING_BITCOIN, "Still syncing with bitcoin network")
        rate = ld.feerates.resolve(feerate, "opening")
        ops = _outpoints(utxos)
        if ctype is None:
            # BOLT 2: a type made of features both sides offered
            ctype = desired_channel_type(our_init, peer.features)
        if feature_negotiated(our_init, peer.features, OPTION_SCID_ALIAS) and not announce:
            # as Core Lightning: a private channel between peers that both
            # offer aliases is never known by its real short_channel_id
            ctype = ctype | {OPTION_SCID_ALIAS}
        anchors = OPTION_ANCHORS in ctype
        emergency = ld.spender.emergency_reserve(opening_anchors=anchors)
        if amount is None:
            amount = _all_amount(ld, rate, minconf, ops, emergency)
        if amount < MIN_FUNDING_SAT:
            raise RpcError(INVALID_PARAMS, f"amount: {amount}sat is below the minimum {MIN_FUNDING_SAT}sat")
        # Can the wallet pay for it (these coins, this feerate, the emergency
        # reserve)?  Asked before the peer hears of the channel, so an
        # unaffordable open costs it nothing and tells it nothing.  The
        # funding tx itself is built once the peer accepted (its script
        # needs the peer's key); coins spent in between fail it there.
        ld.spender.plan([Target(DUMMY_FUNDING_SCRIPT, amount)], rate, minconf, ops, emergency)
        if push_msat > amount * 1000:
            raise RpcError(INVALID_PARAMS, "push_msat must not exceed the channel amount")
        upfront = b""
        if close_to is not None:
            try:
                upfront = address_to_script(close_to, ld.network)
            except AddressError:
                raise RpcError(INVALID_PARAMS, f"close_to: invalid address {close_to}") from None
        dbid = cc.new_dbid()
        forced = ld.cfg.get("dev-force-tmp-channel-id")
        temp_id = bytes.fromhex(forced) if forced else os.urandom(32)
        commit_rate = ld.feerates.perkw(commitment_feerate_name(anchors)) or rate
        config = cc.channel_config(announce=announce, upfront_shutdown_script=upfront, minimum_depth=mindepth, funder={
            "temporary_channel_id": temp_id, "funding_sat": amount, "push_msat": push_msat,
            "feerate_per_kw": commit_rate, "channel_type": {"bits": sorted(ctype)},
            # with option_zeroconf our channel_ready waits for our own mindepth (Core Lightning)
            "zeroconf_negotiated": feature_negotiated(our_init, peer.features, OPTION_ZEROCONF)})
        if reserve is not None:
            config["our"]["reserve_sat"] = reserve
        po = PendingOpen(dbid, id, temp_id, config, {"feerate": rate, "minconf": minconf,
                                                      "utxos": ops if ops is not None else None},
                         done=asyncio.get_running_loop().create_future(), funding_sat=amount, announce=announce)
        cc.pending[dbid] = po
        subd, fd = await cc.spawn(id, dbid, MODE_FUNDER, config, on_exit=lambda s, rc: _opening_exit(cc, po, rc))
        po.subd = subd
        ld.connectd.attach_channel(id, temp_id, fd)
        try:
            rec = await asyncio.wait_for(po.done, 300)
        except ChannelOpenFailed as e:
            _release(ld, po)
            raise RpcError(LIGHTNINGD, str(e)) from None
        except RpcError:
            _release(ld, po)
            raise
        except asyncio.TimeoutError:
            _release(ld, po)
            await subd.stop()
            raise RpcError(LIGHTNINGD, "Timed out opening the channel") from None
        if "error" in po.result:
            e = po.result["error"]
            raise RpcError(FUNDING_BROADCAST_FAIL, f"Error broadcasting funding transaction: {e.message}")
        out = {"tx": po.result["tx"], "txid": po.result["txid"], "outnum": rec.funding_outnum,
               "channel_id": rec.channel_id.hex(), "channel_type": rec.channel_type_json(),
               "mindepth": rec.minimum_depth}
        if upfront:
            out["close_to"] = upfront.hex()
        return out


FUNDING_V2_NOT_SUPPORTED = 310


def _all_amount(ld: "LightningD", rate: int, minconf: int, ops: list | None, emergency_sat: int) -> int:
    """What "all" funds: every coin, less the fee and the emergency reserve
    (kept as change, whose output the funding tx pays for)."""
    w = ld.wallet
    cands = w.spendable(minconf) if ops is None else ld.spender.candidates(minconf, ops)
    coins = [CoinUtxo.of_type(u.value_sat, "p2tr" if u.addrtype == "p2tr" else "p2wpkh", u) for u in cands if u]
    others = sum(u.value_sat for u in w.spendable(0) if u not in cands) if emergency_sat else 0
    need = max(emergency_sat - others, 0)
    targets = [Target(DUMMY_FUNDING_SCRIPT, None)] + ([Target(DUMMY_RESERVE_SCRIPT, max(need, 330))] if need else [])
    try:
        sel = select_coins(coins, targets, rate)
    except (InsufficientFunds, ValueError):
        if need:
            raise RpcError(FUND_CANNOT_AFFORD_WITH_EMERGENCY, "We would not have enough left for "
                                                              f"min-emergency-msat {emergency_sat * 1000}") from None
        raise RpcError(FUND_CANNOT_AFFORD, "Could not afford a channel with all available funds") from None
    return min(sel.outputs[0].value, 2**63)


def _release(ld: "LightningD", po: PendingOpen) -> None:
    if po.funding is not None:
        ld.wallet.unreserve([u.outpoint for u in po.funding.inputs])
    ld.channels.pending.pop(po.dbid, None)


def _opening_exit(cc, po: PendingOpen, rc: int) -> None:
    if po.done is not None and not po.done.done():
        po.done.set_exception(ChannelOpenFailed(po.subd.failure if po.subd and po.subd.failure
                                                else "channel daemon exited during opening"))
    cc.pending.pop(po.dbid, None)


async def peer_spoke(ld: "LightningD", node_id: bytes, raw: bytes) -> None:
    """A message for no running channel daemon: a new channel, or a stored
    channel whose daemon is not up (then start it and hand it the message)."""
    try:
        m = bolt_schema().decode(raw)
    except DecodeError:
        return
    if m.name == "open_channel":
        await _incoming_open(ld, node_id, raw, m.fields)
        return
    cid = m.fields.get("channel_id", m.fields.get("temporary_channel_id", b"\x00" * 32))
    named = [rec for rec in ld.channels.by_peer(node_id) if rec.channel_id == cid]
    rec = next((r for r in named if r.active), named[0] if named else None)
    if rec is not None and rec.active:
        # its daemon died (or is being replaced) on this connection: a new
        # one could only reestablish on a fresh connection, so ask for one
        ld.log.child("lightningd", node_id.hex()).info(
            f"{m.name} for channel {rec.dbid} with no daemon: reconnecting to reestablish")
        ld.connectd.discard(node_id)
        return
    if rec is not None and rec.state is ChannelState.CLOSING_COMPLETE:
        # Not an error state: our mutual close is broadcast, and a peer that
        # missed our last closing_signed learns of it from the chain.  An
        # error would make it broadcast its commitment against our close
        # (Core Lightning renegotiates instead; silence costs nothing).
        ld.log.child("lightningd", node_id.hex()).info(
            f"{m.name} for channel {rec.dbid}, closed by agreement: ignored")
        return
    if rec is not None:
        # BOLT 2: "if a channel is in an error state: SHOULD retransmit the
        # error packet and ignore any other packets for that channel"; for
        # any message, as Core Lightning (handle_peer_spoke), so that a peer
        # that missed the close goes on chain too
        ld.connectd.send_error(node_id, f"channel in state {rec.state.value}", warning=False, channel_id=cid)
        return
    ld.connectd.send_error(node_id, f"Unknown channel for {m.name}", warning=True, channel_id=cid)


def _opening_with(ld: "LightningD", node_id: bytes) -> bool:
    """Is a channel with this peer being opened (by either side) on its
    current connection?  BOLT 2: after a reconnection a new open_channel
    replaces one that never got to funding_created; the old open's daemon
    notices the disconnection and goes away by itself."""
    peer = ld.peers.get(node_id)
    since = peer.connected_at if peer is not None else 0.0
    return node_id in ld.channels.opening_peers or any(
        po.peer_id == node_id and po.started_at >= since for po in ld.channels.pending.values())


async def _incoming_open(ld: "LightningD", node_id: bytes, raw: bytes, oc: dict) -> None:
    cc = ld.channels
    temp_id = oc["temporary_channel_id"]
    if _opening_with(ld, node_id):
        # One open at a time per peer, as Core Lightning: each open costs a
        # daemon, and a peer must not make us start one per open_channel.
        # The error names only this open's temporary id (BOLT 1: it fails
        # that channel, not the one in progress); the connection stays.
        ld.log.child("lightningd", node_id.hex()).info(
            f"refusing open_channel {temp_id.hex()}: an open with this peer is in progress")
        ld.connectd.send_error(node_id, "Multiple simultaneous opens not supported", warning=False,
                               channel_id=temp_id)
        return
    cc.opening_peers.add(node_id)   # until the PendingOpen exists (the hook may take a while)
    try:
        await _start_fundee(ld, node_id, raw, oc)
    finally:
        cc.opening_peers.discard(node_id)


async def _openchannel_hook(ld: "LightningD", payload: dict) -> dict | str:
    """The `openchannel` hook chain, as Core Lightning reads it: the first
    `reject` ends it (its error_message, a string, is returned); otherwise
    what the `continue` answers set: the first close_to, the last mindepth
    and reserve.  An answer we cannot read refuses the channel (Core
    Lightning stops the node)."""
    out: dict[str, Any] = {}
    for ans in await ld.plugins.hooks.call_chain("openchannel", payload):
        if ans.get("result") == "reject":
            if ans.get("close_to"):
                return "Plugin rejected openchannel but also set close_to"
            return str(ans.get("error_message", "Channel rejected by plugin"))
        if ans.get("result") != "continue":
            ld.log.unusual(f"openchannel hook: bad result {ans!r}: refusing the channel")
            return "Channel refused"
        try:
            if ans.get("close_to") is not None and "upfront_shutdown_script" not in out:
                out["upfront_shutdown_script"] = address_to_script(str(ans["close_to"]), ld.network)
            if ans.get("mindepth") is not None:
                out["minimum_depth"] = P.u32(ans["mindepth"])
            if ans.get("reserve") is not None:
                out["reserve_sat"] = P.sat(ans["reserve"])
        except (AddressError, P.BadType) as e:
            ld.log.unusual(f"openchannel hook: bad answer {ans!r} ({e}): refusing the channel")
            return "Channel refused"
    return out


def _runnable_type(bits: Iterable[int], our_init: bytes) -> frozenset[int] | None:
    """`bits` if it is a channel type our init offers (Core Lightning's
    channel_type_accept) and channeld runs: a basic type, with the
    scid_alias/zeroconf variations our init offers."""
    ctype = channel_type_accept(bits, our_init)
    return ctype if ctype is not None and ctype - CHANNEL_TYPE_VARIATIONS in supported_channel_types(our_init) \
        else None


def _proposed_type(ld: "LightningD", oc: dict) -> frozenset[int] | None:
    """The open_channel's channel_type if it is one we run (channeld refuses
    any other, after the hook; only the length of a type we know is read)."""
    raw = ((oc.get("tlvs") or {}).get("channel_type") or {}).get("type")
    if raw is None or len(raw) > 8:
        return None
    return _runnable_type(bits_from_features(raw), ld.our_features(Context.INIT))


async def _start_fundee(ld: "LightningD", node_id: bytes, raw: bytes, oc: dict) -> None:
    cc = ld.channels
    temp_id = oc["temporary_channel_id"]
    payload = {"openchannel": {
        "id": node_id.hex(), "funding_msat": oc["funding_satoshis"] * 1000, "push_msat": oc["push_msat"],
        "dust_limit_msat": oc["dust_limit_satoshis"] * 1000,
        "max_htlc_value_in_flight_msat": oc["max_htlc_value_in_flight_msat"],
        "channel_reserve_msat": oc["channel_reserve_satoshis"] * 1000, "htlc_minimum_msat": oc["htlc_minimum_msat"],
        "feerate_per_kw": oc["feerate_per_kw"], "to_self_delay": oc["to_self_delay"],
        "max_accepted_htlcs": oc["max_accepted_htlcs"], "channel_flags": oc["channel_flags"]}}
    upfront = ((oc.get("tlvs") or {}).get("upfront_shutdown_script") or {}).get("shutdown_scriptpubkey")
    if upfront:
        payload["openchannel"]["shutdown_scriptpubkey"] = upfront.hex()
    ctype = _proposed_type(ld, oc)
    if ctype is not None:
        # as Core Lightning (25.09): the type the channel will have, so a plugin can refuse it
        payload["openchannel"]["channel_type"] = {"bits": sorted(ctype), "names": channel_type_names(ctype)}
    decided = await _openchannel_hook(ld, payload)
    if isinstance(decided, str):
        ld.log.child("lightningd", node_id.hex()).info(f"openchannel hook rejected: {decided}")
        ld.connectd.send_error(node_id, decided, warning=False, channel_id=temp_id)
        return
    extra: dict[str, Any] = {k: v for k, v in decided.items() if k in ("upfront_shutdown_script", "minimum_depth")}
    peer = ld.peers.get(node_id)
    # BOLT 2: funding_satoshis >= 2^24 needs option_support_large_channel on both sides
    extra["large_channels"] = peer is not None and has_feature(peer.features, OPTION_SUPPORT_LARGE_CHANNEL) and \
        has_feature(ld.our_features(Context.INIT), OPTION_SUPPORT_LARGE_CHANNEL)
    # BOLT 2: the types we run, as our init offers them, with their
    # variations (channeld refuses any other)
    extra["channel_types"] = [{"bits": sorted(t)} for t in acceptable_channel_types(ld.our_features(Context.INIT))]
    dbid = cc.new_dbid()
    config = cc.channel_config(**extra)
    if decided.get("reserve_sat") is not None:
        config["our"]["reserve_sat"] = decided["reserve_sat"]
    po = PendingOpen(dbid, node_id, temp_id, config, {}, done=asyncio.get_running_loop().create_future())
    cc.pending[dbid] = po
    subd, fd = await cc.spawn(node_id, dbid, MODE_FUNDEE, config, open_msg=raw,
                              on_exit=lambda s, rc: _opening_exit(cc, po, rc))
    po.subd = subd
    ld.connectd.attach_channel(node_id, temp_id, fd)
    # the exception, if opening fails, is the opener's business: don't leave it unretrieved
    po.done.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
