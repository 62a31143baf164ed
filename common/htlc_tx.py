"""BOLT 3 second-stage HTLC transactions (HTLC-success and HTLC-timeout).

They spend an HTLC output of the holder's commitment through the 2-of-2
branch (holder's and counterparty's HTLC keys) and pay to the same
revocable, CSV-delayed script as ``to_local``, so the holder's funds stay
punishable for ``to_self_delay`` blocks even when the HTLC resolves quickly.

With option_anchors the transactions carry no fee and the *counterparty*
signs with SIGHASH_SINGLE|SIGHASH_ANYONECANPAY, so the holder can attach
inputs and outputs to pay fees at broadcast time; the holder's own signature
stays SIGHASH_ALL.
"""
from __future__ import annotations

from dataclasses import dataclass

from bitcoin.keys import sign_digest_der, verify_digest_der
from bitcoin.script import p2wsh_script
from bitcoin.tx import SIGHASH_ALL, SIGHASH_ANYONECANPAY, SIGHASH_SINGLE, OutPoint, Tx, TxIn, TxOut

from .commitment import (
    CommitmentOutput,
    CommitmentParams,
    OutputKind,
    htlc_success_fee,
    htlc_timeout_fee,
)
from .scripts import to_local_script


def counterparty_htlc_sighash_type(option_anchors: bool) -> int:
    """Sighash type of the counterparty's signature (the one sent in
    ``commitment_signed``.htlc_signatures)."""
    return SIGHASH_SINGLE | SIGHASH_ANYONECANPAY if option_anchors else SIGHASH_ALL


def make_htlc_tx(commitment_txid: bytes, output_index: int, htlc_amount_sat: int,
                 *, success: bool, cltv_expiry: int, feerate_per_kw: int,
                 option_anchors: bool, revocation_pubkey: bytes,
                 holder_delayed_pubkey: bytes, to_self_delay: int) -> Tx:
    """Unsigned HTLC-success (``success=True``) or HTLC-timeout transaction.

    ``commitment_txid`` is in internal byte order.  HTLC-timeout is locked to
    ``cltv_expiry`` so it cannot be confirmed before the HTLC expires."""
    fee = (htlc_success_fee if success else htlc_timeout_fee)(feerate_per_kw, option_anchors)
    out_script = to_local_script(revocation_pubkey, to_self_delay, holder_delayed_pubkey)
    return Tx(
        version=2,
        inputs=[TxIn(OutPoint(commitment_txid, output_index), b"",
                     1 if option_anchors else 0)],  # anchors: the 1-block CSV in the HTLC script
        outputs=[TxOut(htlc_amount_sat - fee, p2wsh_script(out_script))],
        locktime=0 if success else cltv_expiry,
    )


@dataclass
class HtlcTx:
    """An HTLC transaction together with what is needed to sign/complete it."""

    tx: Tx
    output_index: int            # index of the spent output in the commitment tx
    output: CommitmentOutput     # the spent commitment output
    option_anchors: bool

    @property
    def is_success(self) -> bool:
        return self.output.kind is OutputKind.RECEIVED_HTLC

    @property
    def witness_script(self) -> bytes:
        assert self.output.witness_script is not None
        return self.output.witness_script

    def sighash(self, sighash_type: int) -> bytes:
        return self.tx.sighash_segwit_v0(0, self.witness_script, self.output.amount_sat, sighash_type)

    def sign_as_counterparty(self, counterparty_htlc_privkey: bytes) -> bytes:
        """DER signature by the counterparty (what goes into htlc_signatures)."""
        return sign_digest_der(counterparty_htlc_privkey,
                               self.sighash(counterparty_htlc_sighash_type(self.option_anchors)))

    def sign_as_holder(self, holder_htlc_privkey: bytes) -> bytes:
        """DER signature by the holder, always SIGHASH_ALL."""
        return sign_digest_der(holder_htlc_privkey, self.sighash(SIGHASH_ALL))

    def verify_counterparty_sig(self, counterparty_htlc_pubkey: bytes, der_sig: bytes) -> bool:
        return verify_digest_der(counterparty_htlc_pubkey, der_sig,
                                 self.sighash(counterparty_htlc_sighash_type(self.option_anchors)))

    def set_witness(self, counterparty_sig: bytes, holder_sig: bytes,
                    payment_preimage: bytes | None = None) -> None:
        """``0 <remotehtlcsig> <localhtlcsig> <preimage or <>> <witness_script>``.

        The leading 0 feeds OP_CHECKMULTISIG's extra pop."""
        if self.is_success:
            if payment_preimage is None or len(payment_preimage) != 32:
                raise ValueError("HTLC-success needs the 32-byte payment preimage")
            last = payment_preimage
        else:
            if payment_preimage is not None:
                raise ValueError("HTLC-timeout takes no preimage")
            last = b""
        self.tx.inputs[0].witness = [
            b"",
            counterparty_sig + bytes([counterparty_htlc_sighash_type(self.option_anchors)]),
            holder_sig + bytes([SIGHASH_ALL]),
            last,
            self.witness_script,
        ]


def build_htlc_tx(params: CommitmentParams, commitment_tx: Tx, output_index: int,
                  output: CommitmentOutput) -> HtlcTx:
    """HTLC transaction spending HTLC output ``output_index`` of ``commitment_tx``."""
    if output.htlc is None:
        raise ValueError("not an HTLC output")
    tx = make_htlc_tx(
        commitment_tx.txid(), output_index, output.amount_sat,
        success=output.kind is OutputKind.RECEIVED_HTLC,
        cltv_expiry=output.htlc.cltv_expiry,
        feerate_per_kw=params.feerate_per_kw,
        option_anchors=params.option_anchors,
        revocation_pubkey=params.keys.revocation_pubkey,
        holder_delayed_pubkey=params.keys.holder_delayed_pubkey,
        to_self_delay=params.to_self_delay,
    )
    return HtlcTx(tx, output_index, output, params.option_anchors)


def build_htlc_txs(params: CommitmentParams, commitment_tx: Tx,
                   outputs: list[CommitmentOutput]) -> list[HtlcTx]:
    """All HTLC transactions of a commitment, in ``htlc_signatures`` order."""
    return [build_htlc_tx(params, commitment_tx, i, o) for i, o in enumerate(outputs) if o.is_htlc]
