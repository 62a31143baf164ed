"""An ``OnchainState`` <-> the `onchaind_state` value (wire/csv/onchaind.csv
declares every field; the codec checks them), so onchaind survives a crash.

Only facts are stored (the channel, the spending tx, confirmations, spends,
preimages, pinned feerates, what was already told to the shell); the
resolution tree and the signed transactions are re-derived on load, and come
out identical since signatures are deterministic.  Maps keyed by outpoint
are stored as lists sorted by key, sets sorted, so a state always encodes
to the same bytes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from bitcoin.hashes import sha256
from bitcoin.keys import compact_to_der, der_to_compact
from bitcoin.tx import OutPoint, Tx
from common.commitment import (
    SIDE_NAMES,
    ChannelSetup,
    onchain_htlc_from,
    onchain_htlc_value,
    onchain_party_from,
    onchain_party_value,
    side_named,
)
from common.shachain import ShachainStore

from .model import LocalCommitmentInfo, OnchainChannel, RemoteCommitmentInfo, SpendFact

if TYPE_CHECKING:
    from .resolve import OnchainState
    from .signer import Signer


def _commitment_value(c: LocalCommitmentInfo | RemoteCommitmentInfo) -> dict[str, Any]:
    return {"number": c.commitment_number, "per_commitment_point": c.per_commitment_point,
            "feerate_per_kw": c.feerate_per_kw, "local_msat": c.local_msat, "remote_msat": c.remote_msat,
            "htlcs": [onchain_htlc_value(h) for h in c.htlcs]}


def _commitment_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    return {"commitment_number": d["number"], "per_commitment_point": d["per_commitment_point"],
            "feerate_per_kw": d["feerate_per_kw"], "local_msat": d["local_msat"],
            "remote_msat": d["remote_msat"], "htlcs": tuple(onchain_htlc_from(h) for h in d["htlcs"])}


def channel_value(ch: OnchainChannel) -> dict[str, Any]:
    """The channel's `onchaind_channel`."""
    s = ch.setup
    return {
        "funding_txid": s.funding_outpoint.txid, "funding_outnum": s.funding_outpoint.index,
        "funding_sat": s.funding_sat, "opener": SIDE_NAMES[s.opener], "anchors": s.option_anchors,
        "local": onchain_party_value(s.local), "remote": onchain_party_value(s.remote),
        "local_commitment": _commitment_value(ch.local),
        "htlc_signatures": [der_to_compact(sig) for sig in ch.local.htlc_signatures],
        "remote_commitment": _commitment_value(ch.remote),
        "remote_next_commitment": _commitment_value(ch.remote_next) if ch.remote_next is not None else None,
        "revealed_secrets": ch.revealed_secrets.to_value(),
        "sweep_scriptpubkey": ch.sweep_scriptpubkey, "feerate_per_kw": ch.feerate_per_kw,
        "block_height": ch.block_height, "past_htlcs": [onchain_htlc_value(h) for h in ch.past_htlcs],
        "preimages": sorted(ch.preimages.values()), "mutual_close_txids": list(ch.mutual_close_txids),
        "shutdown_scriptpubkey": ch.shutdown_scriptpubkey or b"", "reasonable_depth": ch.reasonable_depth,
    }


def channel_from(d: Mapping[str, Any]) -> OnchainChannel:
    nxt = d["remote_next_commitment"]
    return OnchainChannel(
        setup=ChannelSetup(OutPoint(d["funding_txid"], d["funding_outnum"]), d["funding_sat"], side_named(d["opener"]),
                           onchain_party_from(d["local"]), onchain_party_from(d["remote"]), d["anchors"]),
        local=LocalCommitmentInfo(**_commitment_fields(d["local_commitment"]),
                                  htlc_signatures=tuple(compact_to_der(s) for s in d["htlc_signatures"])),
        remote=RemoteCommitmentInfo(**_commitment_fields(d["remote_commitment"])),
        remote_next=RemoteCommitmentInfo(**_commitment_fields(nxt)) if nxt is not None else None,
        revealed_secrets=ShachainStore.from_value(d["revealed_secrets"]),
        sweep_scriptpubkey=d["sweep_scriptpubkey"], feerate_per_kw=d["feerate_per_kw"],
        block_height=d["block_height"], past_htlcs=tuple(onchain_htlc_from(h) for h in d["past_htlcs"]),
        preimages={sha256(p): p for p in d["preimages"]},
        mutual_close_txids=tuple(d["mutual_close_txids"]),
        shutdown_scriptpubkey=d["shutdown_scriptpubkey"] or None, reasonable_depth=d["reasonable_depth"])


def outpoint_values(m: Mapping[OutPoint, int]) -> list[dict[str, Any]]:
    """A map from outpoints to numbers as `outpoint_value`s, sorted."""
    return [{"txid": op.txid, "outnum": op.index, "value": v}
            for op, v in sorted(m.items(), key=lambda kv: (kv[0].txid, kv[0].index))]


def outpoint_map(values: list[Mapping[str, Any]]) -> dict[OutPoint, int]:
    return {OutPoint(e["txid"], e["outnum"]): e["value"] for e in values}


def state_to_value(st: "OnchainState") -> dict[str, Any]:
    """The core's part of `onchaind_state` (the shell adds to_us and
    core_all_resolved)."""
    return {
        "channel": channel_value(st.channel),
        "commitment_tx": st.commitment_tx.serialize(),
        "tip": st.tip, "feerate_per_kw": st.feerate_per_kw,
        "confirmations": [{"txid": t, "height": h} for t, h in sorted(st.confirmations.items())],
        "spends": [{"txid": op.txid, "outnum": op.index, "tx": f.tx.serialize(), "height": f.height}
                   for op, f in sorted(st.spends.items(), key=lambda kv: (kv[0].txid, kv[0].index))],
        "preimages": sorted(st.preimages.values()),
        "master_hashes": sorted(st.master_hashes),
        "pinned_feerates": outpoint_values(st.pinned_feerates),
        "bumped_at": outpoint_values(st.bumped_at),
        "emitted": sorted(st.emitted),
        "announced": sorted(st.announced),
    }


def state_from_value(d: Mapping[str, Any], signer: "Signer") -> "OnchainState":
    from .resolve import OnchainState
    return OnchainState(
        channel_from(d["channel"]), Tx.parse(d["commitment_tx"]), signer, tip=d["tip"],
        feerate_per_kw=d["feerate_per_kw"],
        confirmations={e["txid"]: e["height"] for e in d["confirmations"]},
        spends={OutPoint(e["txid"], e["outnum"]): SpendFact(Tx.parse(e["tx"]), e["height"]) for e in d["spends"]},
        preimages={sha256(p): p for p in d["preimages"]},
        master_hashes=set(d["master_hashes"]),
        pinned_feerates=outpoint_map(d["pinned_feerates"]),
        bumped_at=outpoint_map(d["bumped_at"]),
        emitted=set(d["emitted"]),
        announced=set(d["announced"]))
