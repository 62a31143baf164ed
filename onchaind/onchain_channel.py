"""The channel as onchaind receives it in `onchaind_init`: an
`onchain_channel` exported by channeld and the master's `onchain_extra`
(declared field by field in wire/csv/onchain_channel.csv and
wire/csv/onchaind.csv; the codec checked them), turned into the core's
:class:`~onchaind.core.OnchainChannel` here."""
from __future__ import annotations

from typing import Any, Mapping

from bitcoin.hashes import sha256
from bitcoin.keys import compact_to_der
from bitcoin.tx import OutPoint
from common.commitment import (
    ChannelSetup,
    HtlcInfo,
    Side,
    onchain_htlc_from,
    onchain_party_from,
    side_named,
)
from common.shachain import ShachainStore, commitment_index

from .core import LocalCommitmentInfo, OnchainChannel, RemoteCommitmentInfo


class ChannelInputError(ValueError):
    """The channel cannot be what the values say (a side that is neither)."""


def _side(name: str) -> Side:
    try:
        return side_named(name)
    except ValueError as e:
        raise ChannelInputError(str(e)) from None


def htlc_info(d: Mapping[str, Any]) -> HtlcInfo:
    """An `onchain_htlc`."""
    try:
        return onchain_htlc_from(d)
    except ValueError as e:
        raise ChannelInputError(str(e)) from None


def _commitment_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    return {"commitment_number": d["number"], "per_commitment_point": d["per_commitment_point"],
            "feerate_per_kw": d["feerate_per_kw"], "local_msat": d["local_msat"],
            "remote_msat": d["remote_msat"], "htlcs": tuple(htlc_info(h) for h in d["htlcs"])}


def _secrets(entries: list[Mapping[str, Any]]) -> ShachainStore:
    store = ShachainStore()
    # re-inserted in decreasing shachain index (increasing commitment number)
    for e in sorted(entries, key=lambda e: e["commitment_number"]):
        store.insert_secret(e["secret"], commitment_index(e["commitment_number"]))
    return store


def parse_channel(ch: Mapping[str, Any], extra: Mapping[str, Any], *, sweep_scriptpubkey: bytes,
                  feerate_per_kw: int, block_height: int, reasonable_depth: int = 3) -> OnchainChannel:
    """Both (and the shell's settings) as the core's input."""
    setup = ChannelSetup(OutPoint(ch["funding_txid"], ch["funding_outnum"]), ch["funding_sat"],
                         _side(ch["opener"]), onchain_party_from(ch["local"]), onchain_party_from(ch["remote"]), ch["anchors"])
    nxt = ch["remote_next_commitment"]
    try:
        revealed = _secrets(ch["revealed_secrets"])
    except ValueError as e:      # secrets that do not derive from each other
        raise ChannelInputError(f"revealed secrets: {e}") from None
    return OnchainChannel(
        setup=setup,
        local=LocalCommitmentInfo(**_commitment_fields(ch["local_commitment"]),
                                  htlc_signatures=tuple(compact_to_der(s) for s in ch["htlc_signatures"])),
        remote=RemoteCommitmentInfo(**_commitment_fields(ch["remote_commitment"])),
        remote_next=RemoteCommitmentInfo(**_commitment_fields(nxt)) if nxt is not None else None,
        revealed_secrets=revealed,
        sweep_scriptpubkey=sweep_scriptpubkey, feerate_per_kw=feerate_per_kw, block_height=block_height,
        past_htlcs=tuple(htlc_info(h) for h in extra["past_htlcs"]),
        preimages={sha256(p): p for p in extra["preimages"]},
        mutual_close_txids=tuple(extra["mutual_close_txids"]),
        shutdown_scriptpubkey=ch["shutdown_scriptpubkey"] or None,
        reasonable_depth=reasonable_depth)
