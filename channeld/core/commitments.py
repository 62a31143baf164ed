"""Building, signing and verifying commitment transactions from log views.

Glue between :class:`~.htlcs.CommitmentView` (what is in a commitment) and
:mod:`common.commitment` / :mod:`common.htlc_tx` (how BOLT 3 lays it out).
"""
from __future__ import annotations

from dataclasses import dataclass

from bitcoin.keys import compact_to_der, verify_digest_compact
from bitcoin.tx import Tx
from common.commitment import (
    CommitmentOutput,
    CommitmentParams,
    Side,
    build_commitment_tx,
    commitment_sighash,
    set_commitment_witness,
)
from common.htlc_tx import HtlcTx, build_htlc_txs

from .errors import PeerError
from .htlcs import CommitmentView
from .params import ChannelParams
from .signer import Signer


@dataclass
class BuiltCommitment:
    """One commitment transaction and its HTLC transactions (signature order)."""

    view: CommitmentView
    params: CommitmentParams
    tx: Tx
    outputs: list[CommitmentOutput]
    htlc_txs: list[HtlcTx]
    #: the holder's per-commitment point the keys derive from
    per_commitment_point: bytes

    @property
    def number(self) -> int:
        return self.view.number


def build(params: ChannelParams, view: CommitmentView, per_commitment_point: bytes) -> BuiltCommitment:
    """The unsigned commitment described by ``view``; ``per_commitment_point`` is
    the holder's point for ``view.number``."""
    cp = params.setup().commitment_params(view.holder, view.number, per_commitment_point,
                                          view.feerate_per_kw)
    tx, outputs = build_commitment_tx(cp, view.local_msat, view.remote_msat, view.htlcs)
    return BuiltCommitment(view, cp, tx, outputs, build_htlc_txs(cp, tx, outputs),
                           per_commitment_point)


def sign_remote(params: ChannelParams, signer: Signer, c: BuiltCommitment) -> tuple[bytes, list[bytes]]:
    """Our signatures on the peer's commitment: (commitment sig, HTLC sigs)."""
    assert c.view.holder is Side.REMOTE
    sig = signer.sign_remote_commitment(c.tx, params.funding_witness_script, params.funding_sat)
    htlc_sigs = signer.sign_remote_htlc_txs(list(c.htlc_txs), c.per_commitment_point) if c.htlc_txs else []
    return sig, htlc_sigs


def verify_local(params: ChannelParams, c: BuiltCommitment, sig: bytes, htlc_sigs: list[bytes]) -> None:
    """Check the peer's signatures on our commitment ``c``; raise :class:`PeerError`."""
    assert c.view.holder is Side.LOCAL
    digest = commitment_sighash(c.tx, c.params)
    if not verify_digest_compact(params.remote.funding_pubkey, sig, digest):
        raise PeerError(f"commitment_signed: bad signature for our commitment {c.number}")
    if len(htlc_sigs) != len(c.htlc_txs):
        raise PeerError(f"commitment_signed: {len(htlc_sigs)} HTLC signatures for "
                        f"{len(c.htlc_txs)} HTLC outputs in commitment {c.number}")
    pub = c.params.keys.counterparty_htlc_pubkey
    for i, (h, s) in enumerate(zip(c.htlc_txs, htlc_sigs)):
        try:
            der = compact_to_der(s)
        except Exception:
            raise PeerError(f"commitment_signed: malformed HTLC signature {i}") from None
        if not h.verify_counterparty_sig(pub, der):
            raise PeerError(f"commitment_signed: bad HTLC signature {i} (output {h.output_index}) "
                            f"for our commitment {c.number}")


def complete_local(params: ChannelParams, signer: Signer, c: BuiltCommitment, remote_sig: bytes,
                   remote_htlc_sigs: list[bytes]) -> tuple[Tx, list[HtlcTx]]:
    """Fully signed copies of our commitment and of its HTLC transactions.

    HTLC-success transactions still need the payment preimage in their
    witness, which onchaind adds (the slot is left empty here); HTLC-timeout
    ones are complete."""
    tx = c.tx.copy()
    our = signer.sign_local_commitment(c.number, tx, params.funding_witness_script, params.funding_sat)
    set_commitment_witness(tx, c.params, compact_to_der(our), compact_to_der(remote_sig))
    htlcs = []
    # The HTLC txs spend the commitment by txid, which the witness does not change.
    for h, rs in zip(c.htlc_txs, remote_htlc_sigs):
        h2 = HtlcTx(h.tx.copy(), h.output_index, h.output, h.option_anchors)
        ours = signer.sign_local_htlc_tx(c.number, h2)
        if h2.is_success:
            h2.set_witness(compact_to_der(rs), compact_to_der(ours), b"\x00" * 32)
            h2.tx.inputs[0].witness[3] = b""   # preimage placeholder: filled on chain
        else:
            h2.set_witness(compact_to_der(rs), compact_to_der(ours))
        htlcs.append(h2)
    return tx, htlcs
