"""Channel state <-> the `channeld_core` value (wire/csv/channeld.csv declares
every field; the codec checks them), for the master's database.

Holds everything needed to resume after a crash: static parameters, both
sides' commitment numbers, every HTLC and fee update with where it stands,
the peer's per-commitment points we still need, the shachain of its
revealed secrets, its signatures on our latest commitment (to broadcast
it), our messages it may have to be sent again (byte-exact wire encodings),
and the shutdown state.  Sides and enums are stored by explicit string
values, never ordinals.

Not stored, on purpose: the connection (a restored channel is
disconnected), a closing fee negotiation in progress (BOLT 2 restarts it on
reconnection), and fee policy (the shell's current configuration).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import wire
from bitcoin.tx import OutPoint
from common.commitment import SIDE_NAMES, Side, side_named
from common.keyderive import Basepoints
from common.shachain import ShachainStore

from .errors import UsageError
from .htlcs import FeeUpdate, Htlc, HtlcLog, Removal, RemovalKind
from .outbox import Outbox, SentMessage
from .params import ChannelParams, ChannelType, PartyConfig

if TYPE_CHECKING:
    from .signer import Signer
    from .state import Channel, FeerateBounds

def _side(name: str) -> Side:
    try:
        return side_named(name)
    except ValueError:
        raise UsageError(f"unknown side {name!r} in the stored channel") from None


def _at_to(at: list[int | None]) -> dict[str, int | None]:
    return {"local": at[Side.LOCAL], "remote": at[Side.REMOTE]}


def _at_from(d: Mapping[str, int | None]) -> list[int | None]:
    return [d["local"], d["remote"]]


# --- params -------------------------------------------------------------------------
def _party_to(p: PartyConfig) -> dict[str, Any]:
    bp = p.basepoints
    return {
        "dust_limit_sat": p.dust_limit_sat,
        "max_htlc_value_in_flight_msat": p.max_htlc_value_in_flight_msat,
        "channel_reserve_sat": p.channel_reserve_sat,
        "htlc_minimum_msat": p.htlc_minimum_msat,
        "to_self_delay": p.to_self_delay,
        "max_accepted_htlcs": p.max_accepted_htlcs,
        "funding_pubkey": p.funding_pubkey,
        "basepoints": {"revocation": bp.revocation, "payment": bp.payment,
                       "delayed_payment": bp.delayed_payment, "htlc": bp.htlc},
        "upfront_shutdown_script": p.upfront_shutdown_script,
    }


def _party_from(d: Mapping[str, Any]) -> PartyConfig:
    bp = d["basepoints"]
    return PartyConfig(
        dust_limit_sat=d["dust_limit_sat"],
        max_htlc_value_in_flight_msat=d["max_htlc_value_in_flight_msat"],
        channel_reserve_sat=d["channel_reserve_sat"],
        htlc_minimum_msat=d["htlc_minimum_msat"],
        to_self_delay=d["to_self_delay"],
        max_accepted_htlcs=d["max_accepted_htlcs"],
        funding_pubkey=d["funding_pubkey"],
        basepoints=Basepoints(revocation=bp["revocation"], payment=bp["payment"],
                              delayed_payment=bp["delayed_payment"], htlc=bp["htlc"]),
        upfront_shutdown_script=d["upfront_shutdown_script"],
    )


def params_to_dict(p: ChannelParams) -> dict[str, Any]:
    return {
        "funding_txid": p.funding_outpoint.txid,
        "funding_output_index": p.funding_outpoint.index,
        "funding_sat": p.funding_sat,
        "opener": SIDE_NAMES[p.opener],
        "local": _party_to(p.local),
        "remote": _party_to(p.remote),
        "anchors": p.channel_type.anchors,
        "scid_alias": p.channel_type.scid_alias,
        "zeroconf": p.channel_type.zeroconf,
        "anysegwit": p.anysegwit,
    }


def params_from_dict(d: Mapping[str, Any]) -> ChannelParams:
    return ChannelParams(
        funding_outpoint=OutPoint(d["funding_txid"], d["funding_output_index"]),
        funding_sat=d["funding_sat"],
        opener=_side(d["opener"]),
        local=_party_from(d["local"]),
        remote=_party_from(d["remote"]),
        channel_type=ChannelType(anchors=d["anchors"], scid_alias=d["scid_alias"], zeroconf=d["zeroconf"]),
        anysegwit=d["anysegwit"],
    )


# --- log -----------------------------------------------------------------------------
def _removal_to(r: Removal | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"kind": r.kind.value, "at": _at_to(r.at), "preimage": r.preimage, "reason": r.reason or b"",
            "sha256_of_onion": r.sha256_of_onion, "failure_code": r.failure_code}


def _removal_from(d: Mapping[str, Any] | None) -> Removal | None:
    if d is None:
        return None
    try:
        kind = RemovalKind(d["kind"])
    except ValueError:
        raise UsageError(f"unknown HTLC removal {d['kind']!r} in the stored channel") from None
    return Removal(kind, _at_from(d["at"]), d["preimage"], d["reason"] or None, d["sha256_of_onion"],
                   d["failure_code"])


def log_to_dict(log: HtlcLog) -> dict[str, Any]:
    return {
        "oldest": list(log.oldest), "latest": list(log.latest),
        "base_msat": list(log.base_msat), "base_feerate": log.base_feerate,
        "next_id": list(log.next_id),
        "htlcs": [{
            "offerer": SIDE_NAMES[h.offerer], "id": h.htlc_id, "amount_msat": h.amount_msat,
            "payment_hash": h.payment_hash, "cltv_expiry": h.cltv_expiry,
            "onion": h.onion, "blinding_point": h.blinding_point,
            "add_at": _at_to(h.add_at), "removal": _removal_to(h.removal),
            "fail_immediate": h.fail_immediate,
        } for h in log.htlcs.values()],
        "fee_updates": [{"sender": SIDE_NAMES[f.sender], "feerate_per_kw": f.feerate_per_kw,
                         "at": _at_to(f.at)} for f in log.fee_updates],
    }


def log_from_dict(d: Mapping[str, Any]) -> HtlcLog:
    log = HtlcLog(d["base_msat"][0], d["base_msat"][1], d["base_feerate"])
    log.oldest, log.latest, log.next_id = list(d["oldest"]), list(d["latest"]), list(d["next_id"])
    for x in d["htlcs"]:
        h = Htlc(_side(x["offerer"]), x["id"], x["amount_msat"], x["payment_hash"], x["cltv_expiry"],
                 x["onion"], x["blinding_point"], _at_from(x["add_at"]), _removal_from(x["removal"]),
                 x["fail_immediate"])
        log.htlcs[h.key] = h
    log.fee_updates = [FeeUpdate(_side(f["sender"]), f["feerate_per_kw"], _at_from(f["at"]))
                       for f in d["fee_updates"]]
    return log


# --- outbox --------------------------------------------------------------------------
def _sent_to(m: SentMessage | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"seq": m.seq, "number": m.number, "msg": wire.bolt_schema().encode(m.name, m.fields)}


def _sent_from(d: Mapping[str, Any] | None) -> SentMessage | None:
    if d is None:
        return None
    name, fields = wire.bolt_schema().decode(d["msg"])
    if name is None:
        raise UsageError("unknown message in the stored outbox")
    return SentMessage(d["seq"], name, fields, d["number"])


def outbox_to_dict(o: Outbox) -> dict[str, Any]:
    return {"seq": o.seq, "updates": [_sent_to(u) for u in o.updates], "commit": _sent_to(o.commit),
            "revoke": _sent_to(o.revoke), "shutdown": _sent_to(o.shutdown)}


def outbox_from_dict(d: Mapping[str, Any]) -> Outbox:
    o = Outbox()
    o.seq = d["seq"]
    o.updates = [m for m in (_sent_from(u) for u in d["updates"]) if m is not None]
    o.commit, o.revoke, o.shutdown = (_sent_from(d["commit"]), _sent_from(d["revoke"]),
                                      _sent_from(d["shutdown"]))
    return o


# --- channel -------------------------------------------------------------------------
def channel_to_dict(ch: "Channel") -> dict[str, Any]:
    """The channel's `channeld_core` value."""
    return {
        "params": params_to_dict(ch.params),
        "state": ch.state.value,
        "log": log_to_dict(ch.log),
        "remote_points": [{"number": n, "point": p} for n, p in sorted(ch.remote_points.items())],
        "remote_secrets": ch.remote_secrets.to_value(),
        "local_sig": ch.local_sig,
        "local_htlc_sigs": list(ch.local_htlc_sigs),
        "outbox": outbox_to_dict(ch.outbox),
        "channel_ready_sent": ch.channel_ready_sent,
        "channel_ready_received": ch.channel_ready_received,
        # BOLT 2 shutdown scripts are never empty: empty is "none yet"
        "local_shutdown_script": ch.local_shutdown_script or b"",
        "shutdown_sent": ch.shutdown_sent,
        "remote_shutdown_script": ch.remote_shutdown_script or b"",
    }


def channel_from_dict(cls: type["Channel"], d: Mapping[str, Any], signer: "Signer", *,
                      fee_bounds: "FeerateBounds") -> "Channel":
    from .state import ChannelState

    params = params_from_dict(d["params"])
    if signer.funding_pubkey() != params.local.funding_pubkey:
        raise UsageError("the signer's funding key does not match the stored channel")
    ch = cls(params, signer, log_from_dict(d["log"]), fee_bounds=fee_bounds,
             local_shutdown_script=d["local_shutdown_script"] or None)
    try:
        ch.state = ChannelState(d["state"])
    except ValueError:
        raise UsageError(f"unknown channel state {d['state']!r} in the stored channel") from None
    ch.remote_points = {e["number"]: e["point"] for e in d["remote_points"]}
    ch.remote_secrets = ShachainStore.from_value(d["remote_secrets"])
    ch.local_sig = d["local_sig"]
    ch.local_htlc_sigs = list(d["local_htlc_sigs"])
    ch.outbox = outbox_from_dict(d["outbox"])
    ch.channel_ready_sent = d["channel_ready_sent"]
    ch.channel_ready_received = d["channel_ready_received"]
    ch.shutdown_sent = d["shutdown_sent"]
    ch.remote_shutdown_script = d["remote_shutdown_script"] or None
    # Whatever was stored is persisted; a hsmd that restarted relearns which
    # commitment we hold (and this checks the stored signature once more).
    ch._revoke_persisted = True
    if ch.local_sig is not None:
        c = ch.local_commitment(ch.log.latest[Side.LOCAL])
        signer.validate_local_commitment(c.number, c.tx, params.funding_witness_script,
                                         params.funding_sat, ch.local_sig)
    ch.disconnect()
    return ch
