"""The channel as onchaind receives it: two plain JSON documents, turned
into the core's :class:`~onchaind.core.OnchainChannel` here.

This module is the contract between channeld (which writes the first
document, ``channeld/onchain_export.py``: the master treats channeld's state
as opaque and onchaind may not import channeld), the master (which writes
the second) and onchaind.  Change it only by adding optional keys; a new
meaning needs a new ``version``.

Conventions: bytes are lowercase hex strings, amounts and heights are
integers; a txid is in *display* (RPC) byte order; sides are
channel-relative, ``"local"`` being this node.  HTLCs are objects::

    {"offerer": "local" | "remote",   # who sent update_add_htlc
     "id": int,                        # the offerer's htlc_id
     "amount_msat": int, "payment_hash": hex32, "cltv_expiry": int}

1. The channel document (channeld's ``channeld_export_onchain`` reply)::

    {"version": 1,
     "channel_id": hex32,
     "funding": {"txid": hex32, "outnum": int, "amount_sat": int},
     "opener": "local" | "remote",
     "anchors": bool,                  # option_anchors (zero-fee HTLC txs)
     "local":  PARTY, "remote": PARTY,
     # our latest commitment, the only one of ours we may broadcast:
     "local_commitment": COMMITMENT + {"htlc_signatures": [hex DER, ...]},
     # the peer's current commitment (signed by us, not revoked):
     "remote_commitment": COMMITMENT,
     # the peer's next one, if we signed it and it has not revoked the current:
     "remote_next_commitment": COMMITMENT | null,
     # the peer's revealed per-commitment secrets, as the compact shachain
     # entries (every revealed secret derives from one of them):
     "revealed_secrets": [{"commitment_number": int, "secret": hex32}, ...],
     "shutdown_scriptpubkey": hex | null}   # ours, if we sent shutdown

   with ``PARTY = {"funding_pubkey": hex33, "basepoints": {"revocation": hex33,
   "payment": hex33, "delayed_payment": hex33, "htlc": hex33},
   "dust_limit_sat": int, "to_self_delay": int}`` where ``to_self_delay`` is
   as sent on the wire: the CSV delay that party imposes on the *other*
   party's outputs; and ``COMMITMENT = {"number": int,
   "per_commitment_point": hex33 (the holder's point for that number),
   "feerate_per_kw": int, "local_msat": int, "remote_msat": int (balances
   without the HTLCs), "htlcs": [HTLC, ...]}``.  ``htlc_signatures`` are the
   peer's signatures of our HTLC transactions in commitment output order
   (DER, without sighash byte).

2. The master's document (``onchaind_init.extra_json``)::

    {"past_htlcs": [HTLC, ...],        # every HTLC the channel ever carried
     "preimages": [hex32, ...],         # payment preimages the master knows
     "mutual_close_txids": [hex32, ...]}   # closing txs we signed
"""
from __future__ import annotations

from typing import Any, Mapping

from bitcoin.hashes import sha256
from bitcoin.tx import OutPoint
from common.commitment import ChannelParty, ChannelSetup, HtlcInfo, Side
from common.keyderive import Basepoints
from common.shachain import ShachainStore, commitment_index

from .core import LocalCommitmentInfo, OnchainChannel, RemoteCommitmentInfo

FORMAT_VERSION = 1
SIDES = {"local": Side.LOCAL, "remote": Side.REMOTE}


class ChannelJsonError(ValueError):
    """The document does not follow the format above."""


def _b(s: str) -> bytes:
    return bytes.fromhex(s)


def htlc_from_json(d: Mapping[str, Any]) -> HtlcInfo:
    return HtlcInfo(SIDES[d["offerer"]], d["amount_msat"], _b(d["payment_hash"]), d["cltv_expiry"], d["id"])


def _party(d: Mapping[str, Any]) -> ChannelParty:
    bp = d["basepoints"]
    return ChannelParty(funding_pubkey=_b(d["funding_pubkey"]),
                        basepoints=Basepoints(revocation=_b(bp["revocation"]), payment=_b(bp["payment"]),
                                              delayed_payment=_b(bp["delayed_payment"]), htlc=_b(bp["htlc"])),
                        dust_limit_sat=d["dust_limit_sat"], to_self_delay=d["to_self_delay"])


def _commitment_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    return {"commitment_number": d["number"], "per_commitment_point": _b(d["per_commitment_point"]),
            "feerate_per_kw": d["feerate_per_kw"], "local_msat": d["local_msat"],
            "remote_msat": d["remote_msat"], "htlcs": tuple(htlc_from_json(h) for h in d["htlcs"])}


def _secrets(entries: list[Mapping[str, Any]]) -> ShachainStore:
    store = ShachainStore()
    # re-inserted in decreasing shachain index (increasing commitment number)
    for e in sorted(entries, key=lambda e: e["commitment_number"]):
        store.insert_secret(_b(e["secret"]), commitment_index(e["commitment_number"]))
    return store


def parse_channel(doc: Mapping[str, Any], extra: Mapping[str, Any], *, sweep_scriptpubkey: bytes,
                  feerate_per_kw: int, block_height: int, reasonable_depth: int = 3) -> OnchainChannel:
    """Both documents (and the shell's settings) as the core's input."""
    if doc.get("version") != FORMAT_VERSION:
        raise ChannelJsonError(f"unknown channel export version {doc.get('version')!r}")
    try:
        f = doc["funding"]
        setup = ChannelSetup(OutPoint.from_hex(f["txid"], f["outnum"]), f["amount_sat"], SIDES[doc["opener"]],
                             _party(doc["local"]), _party(doc["remote"]), bool(doc["anchors"]))
        lc = doc["local_commitment"]
        local = LocalCommitmentInfo(**_commitment_fields(lc),
                                    htlc_signatures=tuple(_b(s) for s in lc.get("htlc_signatures", [])))
        remote = RemoteCommitmentInfo(**_commitment_fields(doc["remote_commitment"]))
        nxt = doc.get("remote_next_commitment")
        remote_next = RemoteCommitmentInfo(**_commitment_fields(nxt)) if nxt else None
        preimages = {sha256(p): p for p in (_b(x) for x in extra.get("preimages", []))}
        shutdown = doc.get("shutdown_scriptpubkey")
        return OnchainChannel(
            setup=setup, local=local, remote=remote, remote_next=remote_next,
            revealed_secrets=_secrets(doc.get("revealed_secrets", [])),
            sweep_scriptpubkey=sweep_scriptpubkey, feerate_per_kw=feerate_per_kw, block_height=block_height,
            past_htlcs=tuple(htlc_from_json(h) for h in extra.get("past_htlcs", [])),
            preimages=preimages,
            mutual_close_txids=tuple(_b(t)[::-1] for t in extra.get("mutual_close_txids", [])),
            shutdown_scriptpubkey=_b(shutdown) if shutdown else None,
            reasonable_depth=reasonable_depth)
    except (KeyError, TypeError, ValueError) as e:
        raise ChannelJsonError(f"bad channel document: {type(e).__name__}: {e}") from None
