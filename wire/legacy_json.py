"""The JSON documents the node stored before its inter-daemon contracts were
declared in wire/csv (database versions up to 8), converted to the declared
values: channeld's core, summary and config (channels.core, .summary,
.config) and onchaind's saved state (onchain_state).  Used once, by the
database migration that re-encodes those rows (lightningd/db.py); nothing
else writes or reads these forms any more.

Each converter takes the parsed JSON and returns the value of the subtype
that replaced it (a dict the codec checks when it encodes it); where an old
row lacks a field, the default that the old reader used is written here,
explicitly.  Bytes were lowercase hex; txids of outpoints were in display
(RPC) order, other txids in internal order; onchaind's sides were 0
(local) and 1 (remote)."""
from __future__ import annotations

import json
from typing import Any, Mapping

from .internal import internal_schema

__all__ = ["upgrade_channel_row", "upgrade_onchaind_state", "channeld_core", "channel_summary",
           "channeld_config", "onchaind_state"]

_SIDES = {0: "local", 1: "remote"}
_SHACHAIN_EMPTY = 0xFFFFFFFFFFFFFFFF


def _b(s: str | None) -> bytes:
    return bytes.fromhex(s) if s else b""


def _opt(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


def _display_txid(s: str) -> bytes:
    return bytes.fromhex(s)[::-1]


def _outpoint(s: str) -> tuple[bytes, int]:
    txid, index = s.split(":")
    return _display_txid(txid), int(index)


def _shachain(hexdata: str) -> dict[str, Any]:
    """ShachainStore's old byte form: u64 min_index (all ones: none), u8
    count, then (u8 slot, u64 index, 32-byte secret) each."""
    data = bytes.fromhex(hexdata)
    if len(data) < 9 or len(data) != 9 + data[8] * 41:
        raise ValueError("bad stored shachain")
    min_index = int.from_bytes(data[:8], "big")
    known = []
    for i in range(data[8]):
        off = 9 + 41 * i
        known.append({"slot": data[off], "index": int.from_bytes(data[off + 1:off + 9], "big"),
                      "secret": data[off + 9:off + 41]})
    return {"min_index": None if min_index == _SHACHAIN_EMPTY else min_index, "known": known}


def _der_to_compact(der: bytes) -> bytes:
    """A DER ECDSA signature (no sighash byte) as 64 bytes r || s."""
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2 or der[2] != 2:
        raise ValueError("bad DER signature")
    rlen = der[3]
    r = der[4:4 + rlen]
    if der[4 + rlen] != 2:
        raise ValueError("bad DER signature")
    slen = der[5 + rlen]
    s = der[6 + rlen:6 + rlen + slen]
    if 6 + rlen + slen != len(der):
        raise ValueError("bad DER signature")
    return int.from_bytes(r, "big").to_bytes(32, "big") + int.from_bytes(s, "big").to_bytes(32, "big")


def _at(at: list[int | None]) -> dict[str, int | None]:
    return {"local": at[0], "remote": at[1]}


# --- channeld ------------------------------------------------------------------------
def _core_party(d: Mapping[str, Any]) -> dict[str, Any]:
    bp = d["basepoints"]
    return {"dust_limit_sat": d["dust_limit_sat"], "max_htlc_value_in_flight_msat": d["max_htlc_value_in_flight_msat"],
            "channel_reserve_sat": d["channel_reserve_sat"], "htlc_minimum_msat": d["htlc_minimum_msat"],
            "to_self_delay": d["to_self_delay"], "max_accepted_htlcs": d["max_accepted_htlcs"],
            "funding_pubkey": _b(d["funding_pubkey"]),
            "basepoints": {k: _b(bp[k]) for k in ("revocation", "payment", "delayed_payment", "htlc")},
            "upfront_shutdown_script": _b(d["upfront_shutdown_script"])}


def _removal(r: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"kind": r["kind"], "at": _at(r["at"]), "preimage": _opt(r["preimage"]), "reason": _b(r["reason"]),
            "sha256_of_onion": _opt(r["sha256_of_onion"]), "failure_code": r["failure_code"]}


def _sent(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else {"seq": m["seq"], "number": m["number"], "msg": _b(m["msg"])}


def channeld_core(d: Mapping[str, Any]) -> dict[str, Any]:
    """channeld/core/serialize.py's format 1 -> `channeld_core`."""
    if d.get("version") != 1:
        raise ValueError(f"unknown channel state format {d.get('version')!r}")
    p, log, o = d["params"], d["log"], d["outbox"]
    return {
        "params": {"funding_txid": _display_txid(p["funding_txid"]), "funding_output_index": p["funding_output_index"],
                   "funding_sat": p["funding_sat"], "opener": p["opener"], "local": _core_party(p["local"]),
                   "remote": _core_party(p["remote"]), "anchors": p["anchors"],
                   # written only since the scid_alias/zeroconf variations
                   "scid_alias": p.get("scid_alias", False), "zeroconf": p.get("zeroconf", False),
                   "anysegwit": p["anysegwit"]},
        "state": d["state"],
        "log": {"oldest": log["oldest"], "latest": log["latest"], "base_msat": log["base_msat"],
                "base_feerate": log["base_feerate"], "next_id": log["next_id"],
                "htlcs": [{"offerer": h["offerer"], "id": h["id"], "amount_msat": h["amount_msat"],
                           "payment_hash": _b(h["payment_hash"]), "cltv_expiry": h["cltv_expiry"],
                           "onion": _b(h["onion"]), "blinding_point": _opt(h["blinding_point"]),
                           "add_at": _at(h["add_at"]), "removal": _removal(h["removal"]),
                           "fail_immediate": h.get("fail_immediate", False)} for h in log["htlcs"]],
                "fee_updates": [{"sender": f["sender"], "feerate_per_kw": f["feerate_per_kw"], "at": _at(f["at"])}
                                for f in log["fee_updates"]]},
        "remote_points": [{"number": int(n), "point": _b(pt)}
                          for n, pt in sorted(d["remote_points"].items(), key=lambda kv: int(kv[0]))],
        "remote_secrets": _shachain(d["remote_secrets"]),
        "local_sig": _opt(d["local_sig"]),
        "local_htlc_sigs": [_b(s) for s in d["local_htlc_sigs"]],
        "outbox": {"seq": o["seq"], "updates": [_sent(u) for u in o["updates"]], "commit": _sent(o["commit"]),
                   "revoke": _sent(o["revoke"]), "shutdown": _sent(o["shutdown"])},
        "channel_ready_sent": d["channel_ready_sent"],
        "channel_ready_received": d["channel_ready_received"],
        "local_shutdown_script": _b(d["local_shutdown_script"]),
        "shutdown_sent": d["shutdown_sent"],
        "remote_shutdown_script": _b(d["remote_shutdown_script"]),
    }


def channel_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    """channeld/summary.py's old JSON -> `channel_summary`.  A summary
    stored before it carried channel_type is static_remotekey's (bit 12),
    the only type such a channel could have."""
    out = {k: s[k] for k in (
        "state", "funding_outnum", "funding_sat", "opener", "to_us_msat", "to_them_msat", "spendable_msat",
        "receivable_msat", "feerate_per_kw", "our_reserve_sat", "their_reserve_sat", "our_dust_limit_sat",
        "their_dust_limit_sat", "our_to_self_delay", "their_to_self_delay", "our_max_htlc_value_in_flight_msat",
        "their_max_htlc_value_in_flight_msat", "our_htlc_minimum_msat", "their_htlc_minimum_msat",
        "our_max_accepted_htlcs", "their_max_accepted_htlcs", "next_local_htlc_id", "local_commitment_number",
        "remote_commitment_number", "channel_ready_sent", "channel_ready_received", "shutdown_sent",
        "shutdown_received")}
    out.update(
        channel_id=_b(s["channel_id"]), funding_txid=_display_txid(s["funding_txid"]),
        channel_type={"bits": sorted(s.get("channel_type", [12]))},
        local_shutdown_script=_b(s["local_shutdown_script"]), remote_shutdown_script=_b(s["remote_shutdown_script"]),
        funding_pubkey_local=_b(s["funding_pubkey_local"]), funding_pubkey_remote=_b(s["funding_pubkey_remote"]),
        htlcs=[{"direction": h["direction"], "id": h["id"], "amount_msat": h["amount_msat"],
                "payment_hash": _b(h["payment_hash"]), "expiry": h["expiry"], "state": h["state"]}
               for h in s["htlcs"]])
    return out


def channeld_config(c: Mapping[str, Any]) -> dict[str, Any]:
    """The master's old channel config JSON -> `channeld_config`.  What a
    stored channel's channeld reads of it again is the announcement and the
    scripts; the master replaces the rest at every start (scid, depths,
    feerates, our node id, alias...), or it only mattered while opening."""
    our = c.get("our") or {}
    funder = None
    if "temporary_channel_id" in c and "funding_sat" in c:
        funder = {"temporary_channel_id": _b(c["temporary_channel_id"]), "funding_sat": c["funding_sat"],
                  "push_msat": c.get("push_msat", 0), "feerate_per_kw": c.get("feerate_per_kw", 253),
                  "channel_type": {"bits": sorted(c.get("channel_type", [12]))},
                  "zeroconf_negotiated": bool(c.get("zeroconf_negotiated", False))}
    return {
        "our_node_id": _b(c.get("our_node_id")) or b"\x02" + bytes(32),
        "announce": bool(c.get("announce", False)),
        "channel_announcement": _b(c.get("channel_announcement")),
        "minimum_depth": c.get("minimum_depth", 3), "scid": 0, "funding_depth": 0,
        "feerate_min": c.get("feerate_min", 253), "feerate_max": c.get("feerate_max", 0xFFFFFFFF),
        "commit_time_ms": c.get("commit_time_ms", 10),
        "max_dust_htlc_exposure_msat": c.get("max_dust_htlc_exposure_msat", 50_000_000),
        "opening_timeout": int(c.get("opening_timeout", 120)),
        "shutdown_script": _b(c.get("shutdown_script")),
        "upfront_shutdown_script": _b(c.get("upfront_shutdown_script")),
        "our": {"dust_limit_sat": our.get("dust_limit_sat", 546),
                "max_htlc_value_in_flight_msat": our.get("max_htlc_value_in_flight_msat", 2**63 // 1000 * 1000),
                "htlc_minimum_msat": our.get("htlc_minimum_msat", 1), "to_self_delay": our.get("to_self_delay", 144),
                "max_accepted_htlcs": our.get("max_accepted_htlcs", 483), "reserve_sat": our.get("reserve_sat")},
        "max_to_self_delay": c.get("max_to_self_delay", 2016),
        "min_funding_sat": c.get("min_funding_sat", 10_000),
        "large_channels": bool(c.get("large_channels", False)),
        "channel_types": [{"bits": sorted(t)} for t in c.get("channel_types", [[12]])],
        "funder": funder,
        "local_alias": c.get("local_alias"),
    }


# --- onchaind ------------------------------------------------------------------------
def _htlc(h: Mapping[str, Any]) -> dict[str, Any]:
    return {"offerer": _SIDES[h["offerer"]], "id": h["htlc_id"], "amount_msat": h["amount_msat"],
            "payment_hash": _b(h["payment_hash"]), "cltv_expiry": h["cltv_expiry"]}


def _party(p: Mapping[str, Any]) -> dict[str, Any]:
    bp = p["basepoints"]
    return {"funding_pubkey": _b(p["funding_pubkey"]),
            "basepoints": {k: _b(bp[k]) for k in ("revocation", "payment", "delayed_payment", "htlc")},
            "dust_limit_sat": p["dust_limit_sat"], "to_self_delay": p["to_self_delay"]}


def _commitment(c: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"number": c["commitment_number"], "per_commitment_point": _b(c["per_commitment_point"]),
            "feerate_per_kw": c["feerate_per_kw"], "local_msat": c["local_msat"], "remote_msat": c["remote_msat"],
            "htlcs": [_htlc(h) for h in c["htlcs"]]}


def _outpoint_values(pairs: list[list[Any]]) -> list[dict[str, Any]]:
    out = []
    for key, value in pairs:
        txid, outnum = _outpoint(key)
        out.append({"txid": txid, "outnum": outnum, "value": value})
    return sorted(out, key=lambda e: (e["txid"], e["outnum"]))     # onchaind's order


def onchaind_state(doc: Mapping[str, Any]) -> dict[str, Any]:
    """onchaind's state format 1 (its core's dataclasses as JSON, inside the
    shell's document) -> `onchaind_state`."""
    if doc.get("version") != 1 or doc["core"].get("version") != 1:
        raise ValueError("unknown onchaind state version")
    core, ch = doc["core"], doc["core"]["channel"]
    setup = ch["setup"]
    txid, outnum = _outpoint(setup["funding_outpoint"])
    spends = []
    for key, fact in core["spends"]:
        stxid, soutnum = _outpoint(key)
        spends.append({"txid": stxid, "outnum": soutnum, "tx": _b(fact["tx"]), "height": fact["height"]})
    return {
        "channel": {
            "funding_txid": txid, "funding_outnum": outnum, "funding_sat": setup["funding_sat"],
            "opener": _SIDES[setup["opener"]], "anchors": setup["option_anchors"],
            "local": _party(setup["local"]), "remote": _party(setup["remote"]),
            "local_commitment": _commitment(ch["local"]),
            "htlc_signatures": [_der_to_compact(_b(s)) for s in ch["local"].get("htlc_signatures", [])],
            "remote_commitment": _commitment(ch["remote"]),
            "remote_next_commitment": _commitment(ch["remote_next"]),
            "revealed_secrets": _shachain(ch["revealed_secrets"]),
            "sweep_scriptpubkey": _b(ch["sweep_scriptpubkey"]), "feerate_per_kw": ch["feerate_per_kw"],
            "block_height": ch["block_height"], "past_htlcs": [_htlc(h) for h in ch["past_htlcs"]],
            "preimages": sorted(_b(p) for _, p in ch["preimages"]),
            "mutual_close_txids": [_b(t) for t in ch["mutual_close_txids"]],
            "shutdown_scriptpubkey": _b(ch["shutdown_scriptpubkey"]), "reasonable_depth": ch["reasonable_depth"]},
        "commitment_tx": _b(core["commitment_tx"]),
        "tip": core["tip"], "feerate_per_kw": core["feerate_per_kw"],
        "confirmations": sorted(({"txid": _b(t), "height": h} for t, h in core["confirmations"]),
                                key=lambda e: e["txid"]),
        "spends": sorted(spends, key=lambda e: (e["txid"], e["outnum"])),
        "preimages": sorted(_b(p) for _, p in core["preimages"]),
        "master_hashes": sorted(_b(h) for h in core["master_hashes"]),
        "pinned_feerates": _outpoint_values(core["pinned_feerates"]),
        "bumped_at": _outpoint_values(core["bumped_at"]),
        "emitted": sorted(core["emitted"]),
        "announced": sorted(_b(t) for t in core["announced"]),
        "to_us": _outpoint_values([[k, v] for k, v in doc.get("to_us", {}).items()]),
        "core_all_resolved": bool(doc.get("core_all_resolved", False)),
    }


# --- rows ----------------------------------------------------------------------------
def upgrade_channel_row(summary: str, core: str, config: str) -> tuple[bytes, bytes, bytes]:
    """A channels row's summary, core and config, as stored from version 9:
    their encodings (checked by the codec)."""
    schema = internal_schema("channeld")
    return (schema.encode_subtype("channel_summary", channel_summary(json.loads(summary))),
            schema.encode_subtype("channeld_core", channeld_core(json.loads(core))),
            schema.encode_subtype("channeld_config", channeld_config(json.loads(config))))


def upgrade_onchaind_state(state: str) -> bytes:
    """An onchain_state row's state, as stored from version 9."""
    return internal_schema("onchaind").encode_subtype("onchaind_state", onchaind_state(json.loads(state)))
