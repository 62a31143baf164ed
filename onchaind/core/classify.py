"""Which transaction spent the funding output, and what each of its outputs is.

A spend is, in order of checks:

* ``MUTUAL_CLOSE``: one of the closing txs we signed, or a non-commitment tx
  paying our shutdown script;
* a commitment (its nLockTime/nSequence carry the obscured commitment
  number): ours (our latest number), theirs (their current or next number),
  or their *revoked* one (a lower number whose per-commitment secret they
  revealed: the secret gives the point, so every key of that commitment).
  Each candidate with the decoded number gets its outputs matched by script
  (keys derived from the candidate's per-commitment point); the candidate
  matching most outputs wins, so a number shared by our and their commitment
  is no ambiguity, and a revoked one wins ties (the secret is proof);
* ``UNKNOWN_UNILATERAL``: commitment-shaped but no candidate matches (e.g.
  their commitment from the future, after we lost state): only our
  ``to_remote`` is recognised (static_remotekey needs no per-commitment data);
* ``UNKNOWN_SPEND``: anything else (a leaked funding key?): funds may be lost.

HTLC outputs are matched by (scriptPubKey, amount); HTLCs sharing both (the
offered script does not commit to ``cltv_expiry``) are assigned in
``cltv_expiry`` order, which is BOLT 3's output order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from bitcoin.script import p2wsh_script
from bitcoin.tx import Tx
from common.commitment import (
    CommitmentParams,
    HtlcInfo,
    OutputKind,
    Side,
    build_commitment_tx,
    decode_commitment_number,
    htlc_witness_script,
)
from common.keyderive import pubkey_from_secret
from common.scripts import anchor_script, to_local_script, to_remote_anchor_script, to_remote_scriptpubkey

from .model import OnchainChannel, RemoteCommitmentInfo, TxType


@dataclass(frozen=True)
class MatchedOutput:
    """One output of the spending tx; ``kind`` is holder-relative (BOLT 3)."""

    index: int
    amount_sat: int
    kind: OutputKind | None          # None: not recognised
    witness_script: bytes | None
    htlc: HtlcInfo | None = None


@dataclass(frozen=True)
class Classification:
    kind: TxType
    txid: bytes
    commitment_number: int | None = None
    holder: Side | None = None
    #: "latest" (ours), "current"/"next" (theirs), "revoked", "" otherwise
    which: str = ""
    per_commitment_point: bytes | None = None
    per_commitment_secret: bytes | None = None   # revoked only
    params: CommitmentParams | None = None
    outputs: tuple[MatchedOutput, ...] = ()
    #: the tx is exactly the one rebuilt from the channel state
    exact: bool = False

    @property
    def is_commitment(self) -> bool:
        return self.kind in (TxType.OUR_UNILATERAL, TxType.THEIR_UNILATERAL,
                             TxType.THEIR_REVOKED_UNILATERAL)


def _htlc_groups(params: CommitmentParams,
                 htlcs: Iterable[HtlcInfo]) -> dict[tuple[bytes, int], list[tuple[HtlcInfo, bytes]]]:
    groups: dict[tuple[bytes, int], list[tuple[HtlcInfo, bytes]]] = {}
    seen: set[tuple[Side, int]] = set()
    for h in htlcs:
        if (h.offerer, h.htlc_id) in seen:
            continue
        seen.add((h.offerer, h.htlc_id))
        ws = htlc_witness_script(params, h)
        groups.setdefault((p2wsh_script(ws), h.amount_msat // 1000), []).append((h, ws))
    for lst in groups.values():
        lst.sort(key=lambda hw: hw[0].cltv_expiry)
    return groups


def match_outputs(params: CommitmentParams, tx: Tx, htlcs: Iterable[HtlcInfo],
                  fallback_htlcs: Iterable[HtlcInfo] = ()) -> tuple[MatchedOutput, ...]:
    """Recognise each output of ``tx`` as an output of the commitment ``params``
    describes; ``fallback_htlcs`` are tried for outputs ``htlcs`` leave unmatched."""
    k = params.keys
    fixed: dict[bytes, tuple[OutputKind, bytes | None]] = {}
    ws = to_local_script(k.revocation_pubkey, params.to_self_delay, k.holder_delayed_pubkey)
    fixed[p2wsh_script(ws)] = (OutputKind.TO_LOCAL, ws)
    fixed[to_remote_scriptpubkey(k.counterparty_payment_pubkey, params.option_anchors)] = (
        OutputKind.TO_REMOTE,
        to_remote_anchor_script(k.counterparty_payment_pubkey) if params.option_anchors else None)
    if params.option_anchors:
        for kind, pk in ((OutputKind.LOCAL_ANCHOR, params.holder_funding_pubkey),
                         (OutputKind.REMOTE_ANCHOR, params.counterparty_funding_pubkey)):
            aws = anchor_script(pk)
            fixed[p2wsh_script(aws)] = (kind, aws)
    primary = list(htlcs)
    keys = {(h.offerer, h.htlc_id) for h in primary}
    group_sets = [_htlc_groups(params, primary),
                  _htlc_groups(params, [h for h in fallback_htlcs if (h.offerer, h.htlc_id) not in keys])]
    out = []
    for i, o in enumerate(tx.outputs):
        f = fixed.get(o.script_pubkey)
        if f is not None:
            out.append(MatchedOutput(i, o.value, f[0], f[1]))
            continue
        for groups in group_sets:
            lst = groups.get((o.script_pubkey, o.value))
            if lst:
                h, hws = lst.pop(0)
                kind = OutputKind.OFFERED_HTLC if h.offered_by(params.holder) else OutputKind.RECEIVED_HTLC
                out.append(MatchedOutput(i, o.value, kind, hws, h))
                break
        else:
            out.append(MatchedOutput(i, o.value, None, None))
    return tuple(out)


def _all_htlcs(ch: OnchainChannel) -> list[HtlcInfo]:
    hs = list(ch.local.htlcs) + list(ch.remote.htlcs)
    if ch.remote_next is not None:
        hs += list(ch.remote_next.htlcs)
    return hs + list(ch.past_htlcs)


def classify(ch: OnchainChannel, tx: Tx) -> Classification:
    """Classify ``tx``, which must spend ``ch``'s funding output."""
    setup = ch.setup
    if not any(i.prevout == setup.funding_outpoint for i in tx.inputs):
        raise ValueError("transaction does not spend the funding output")
    txid = tx.txid()
    if txid in ch.mutual_close_txids:
        return Classification(TxType.MUTUAL_CLOSE, txid)
    n = decode_commitment_number(tx, setup.obscuring_factor)
    if n is None:
        if ch.shutdown_scriptpubkey is not None and any(
                o.script_pubkey == ch.shutdown_scriptpubkey for o in tx.outputs):
            return Classification(TxType.MUTUAL_CLOSE, txid)
        return Classification(TxType.UNKNOWN_SPEND, txid)

    everything = _all_htlcs(ch)
    # (kind, which, holder, point, secret, htlcs, info for the exact rebuild)
    candidates: list[tuple] = []
    # Revoked first: on a tie (a snapshot calling a revoked commitment
    # "current") the revealed secret proves it is revoked, and punishable.
    secret = ch.revealed_secrets.get_commitment_secret(n)
    if secret is not None:
        candidates.append((TxType.THEIR_REVOKED_UNILATERAL, "revoked", Side.REMOTE,
                           pubkey_from_secret(secret), secret, everything, None))
    if n == ch.local.commitment_number:
        candidates.append((TxType.OUR_UNILATERAL, "latest", Side.LOCAL,
                           ch.local.per_commitment_point, None, ch.local.htlcs, ch.local))
    remotes: list[tuple[str, RemoteCommitmentInfo | None]] = [("current", ch.remote),
                                                                ("next", ch.remote_next)]
    for which, info in remotes:
        if info is not None and n == info.commitment_number:
            candidates.append((TxType.THEIR_UNILATERAL, which, Side.REMOTE,
                               info.per_commitment_point, None, info.htlcs, info))

    best: Classification | None = None
    best_score = 0
    for kind, which, holder, point, secret, htlcs, info in candidates:
        feerate = info.feerate_per_kw if info is not None else 0
        params = setup.commitment_params(holder, n, point, feerate)
        outputs = match_outputs(params, tx, htlcs, everything)
        score = sum(1 for m in outputs if m.kind is not None)
        if score > best_score:
            exact = False
            if info is not None:
                rebuilt, _ = build_commitment_tx(params, info.local_msat, info.remote_msat, info.htlcs)
                exact = rebuilt.txid() == txid
            best, best_score = Classification(kind, txid, n, holder, which, point, secret, params,
                                              outputs, exact), score
    if best is not None:
        return best

    # A commitment we cannot place: our to_remote needs no per-commitment data.
    ours = to_remote_scriptpubkey(setup.local.basepoints.payment, setup.option_anchors)
    ours_ws = to_remote_anchor_script(setup.local.basepoints.payment) if setup.option_anchors else None
    outputs = tuple(MatchedOutput(i, o.value, OutputKind.TO_REMOTE, ours_ws)
                    if o.script_pubkey == ours else MatchedOutput(i, o.value, None, None)
                    for i, o in enumerate(tx.outputs))
    return Classification(TxType.UNKNOWN_UNILATERAL, txid, n, Side.REMOTE, "unknown",
                          outputs=outputs)
