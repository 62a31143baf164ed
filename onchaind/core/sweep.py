"""Building and signing the transactions onchaind broadcasts.

Sweeps and penalty transactions have one input (the output being resolved)
and one output (``sweep_scriptpubkey``): one transaction per output keeps
each independent (a penalty tx cannot be invalidated by the peer spending
another of its inputs with an HTLC tx, and is never pinned with others), at
the cost of some fee.

Fee formula (documented, tested):

    weight  = weight of the signed tx, counting every signature at its
              maximum of 73 bytes (72-byte DER + sighash byte)
    fee_sat = ceil(weight * feerate_per_kw / 1000)

The real signature is 71-73 bytes, so the real feerate is the requested one
or a hair above (never below).  An output whose value minus fee would be
under the dust threshold of the destination script is not swept ("dust").

nSequence: the CSV delay where the script demands one (to_self_delay, or 1
with anchors), else 0xFFFFFFFD; all signal RBF (BIP125), so :func:`bump`-ed
rebuilds replace earlier versions.  Version is always 2 (BIP68).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bitcoin.script import witness_program
from bitcoin.tx import SIGHASH_ALL, OutPoint, Tx, TxIn, TxOut
from common.htlc_tx import HtlcTx, counterparty_htlc_sighash_type

from .signer import Signer

MAX_SIG_LEN = 73                 # DER (<= 72) + sighash byte
SEQUENCE_RBF = 0xFFFFFFFD


class SpendPath(str, Enum):
    """How an input is spent (selects the witness layout and the key)."""

    DELAYED_TO_US = "DELAYED_TO_US"          # <sig> <> to_local-script, CSV
    PENALTY_TO_LOCAL = "PENALTY_TO_LOCAL"    # <sig> 1 to_local-script
    PENALTY_HTLC = "PENALTY_HTLC"            # <sig> <revocationpubkey> htlc-script
    REMOTE_HTLC_TIMEOUT = "REMOTE_HTLC_TIMEOUT"  # <sig> <> received-htlc-script, CLTV
    REMOTE_HTLC_SUCCESS = "REMOTE_HTLC_SUCCESS"  # <sig> <preimage> offered-htlc-script
    TO_REMOTE_ANCHORED = "TO_REMOTE_ANCHORED"    # <sig> to_remote-anchor-script, CSV 1


@dataclass(frozen=True)
class SweepInput:
    """One output to sweep and everything needed to spend it."""

    path: SpendPath
    outpoint: OutPoint
    amount_sat: int
    witness_script: bytes
    sequence: int
    locktime: int = 0
    per_commitment_point: bytes | None = None   # DELAYED_TO_US, REMOTE_HTLC_*
    revocation_secret: bytes | None = None      # PENALTY_*
    revocation_pubkey: bytes | None = None      # PENALTY_HTLC witness element
    preimage: bytes | None = None               # REMOTE_HTLC_SUCCESS

    def witness(self, sig_with_hashtype: bytes) -> list[bytes]:
        p, ws, s = self.path, self.witness_script, sig_with_hashtype
        if p is SpendPath.DELAYED_TO_US or p is SpendPath.REMOTE_HTLC_TIMEOUT:
            return [s, b"", ws]
        if p is SpendPath.PENALTY_TO_LOCAL:
            return [s, b"\x01", ws]
        if p is SpendPath.PENALTY_HTLC:
            assert self.revocation_pubkey is not None
            return [s, self.revocation_pubkey, ws]
        if p is SpendPath.REMOTE_HTLC_SUCCESS:
            assert self.preimage is not None and len(self.preimage) == 32
            return [s, self.preimage, ws]
        if p is SpendPath.TO_REMOTE_ANCHORED:
            return [s, ws]
        raise AssertionError(p)

    def sign(self, signer: Signer, unsigned_tx: bytes, input_index: int) -> bytes:
        """DER signature (no sighash byte) by the right key for this path."""
        args = (unsigned_tx, input_index, self.witness_script, self.amount_sat)
        p = self.path
        if p is SpendPath.DELAYED_TO_US:
            assert self.per_commitment_point is not None
            return signer.sign_delayed_payment_to_us(*args, self.per_commitment_point)
        if p is SpendPath.PENALTY_TO_LOCAL or p is SpendPath.PENALTY_HTLC:
            assert self.revocation_secret is not None
            return signer.sign_penalty_to_us(*args, self.revocation_secret)
        if p is SpendPath.REMOTE_HTLC_TIMEOUT or p is SpendPath.REMOTE_HTLC_SUCCESS:
            assert self.per_commitment_point is not None
            return signer.sign_remote_htlc_to_us(*args, self.per_commitment_point)
        if p is SpendPath.TO_REMOTE_ANCHORED:
            return signer.sign_to_remote_to_us(*args)
        raise AssertionError(p)


@dataclass(frozen=True)
class SweepTx:
    """Outcome of :func:`build_sweep`: a signed tx, or None for dust."""

    tx: Tx | None
    weight: int          # expected weight (73-byte signatures)
    fee_sat: int
    feerate_per_kw: int

    @property
    def is_dust(self) -> bool:
        return self.tx is None


def dust_threshold(script_pubkey: bytes) -> int:
    """Bitcoin Core's dust threshold at the default 3 sat/vB dust relay fee
    (P2WPKH 294, P2WSH/P2TR 330, P2PKH 546)."""
    out_size = 8 + 1 + len(script_pubkey)
    spend = 32 + 4 + 1 + (107 // 4 if witness_program(script_pubkey) else 107) + 4
    return 3 * (out_size + spend)


def fee_for_weight(weight: int, feerate_per_kw: int) -> int:
    """``ceil(weight * feerate_per_kw / 1000)``."""
    return -(-weight * feerate_per_kw // 1000)


def _unsigned(inp: SweepInput, dest: bytes, value: int) -> Tx:
    return Tx(version=2, inputs=[TxIn(inp.outpoint, b"", inp.sequence)],
              outputs=[TxOut(value, dest)], locktime=inp.locktime)


def expected_weight(inp: SweepInput, dest: bytes) -> int:
    tx = _unsigned(inp, dest, inp.amount_sat)
    tx.inputs[0].witness = inp.witness(b"\x00" * MAX_SIG_LEN)
    return tx.weight()


def max_feerate(inp: SweepInput, dest: bytes) -> int:
    """Highest feerate at which the sweep still leaves a non-dust output (0 if none)."""
    spare = inp.amount_sat - dust_threshold(dest)
    return max(0, spare * 1000 // expected_weight(inp, dest))


def build_sweep(inp: SweepInput, dest: bytes, feerate_per_kw: int, signer: Signer) -> SweepTx:
    """Signed single-input sweep of ``inp`` to ``dest`` at ``feerate_per_kw``."""
    weight = expected_weight(inp, dest)
    fee = fee_for_weight(weight, feerate_per_kw)
    value = inp.amount_sat - fee
    if value < dust_threshold(dest):
        return SweepTx(None, weight, fee, feerate_per_kw)
    tx = _unsigned(inp, dest, value)
    sig = inp.sign(signer, tx.serialize(include_witness=False), 0)
    tx.inputs[0].witness = inp.witness(sig + bytes([SIGHASH_ALL]))
    return SweepTx(tx, weight, fee, feerate_per_kw)


def bumped_feerate(old: int) -> int:
    """Next feerate of an RBF bump: +25%, and at least +253 sat/kw (1 sat/vB),
    enough for BIP125's incremental relay fee on these small txs."""
    return max(old * 5 // 4, old + 253)


# --- our HTLC transactions (our commitment) -------------------------------------

def htlc_tx_witness(htlc: HtlcTx, their_sig: bytes, our_sig: bytes,
                    preimage: bytes | None) -> list[bytes]:
    return [b"", their_sig + bytes([counterparty_htlc_sighash_type(htlc.option_anchors)]),
            our_sig + bytes([SIGHASH_ALL]), preimage if htlc.is_success else b"",
            htlc.witness_script]


def sign_htlc_tx(tx: Tx, input_index: int, htlc: HtlcTx, their_sig: bytes,
                 per_commitment_point: bytes, preimage: bytes | None, signer: Signer) -> None:
    """Fill input ``input_index`` of ``tx`` (an HTLC tx, maybe with fee inputs
    added) with the peer's signature and ours (SIGHASH_ALL over all of ``tx``)."""
    if htlc.is_success and (preimage is None or len(preimage) != 32):
        raise ValueError("HTLC-success needs the payment preimage")
    ours = signer.sign_local_htlc_tx(tx.serialize(include_witness=False), input_index,
                                     htlc.witness_script, htlc.output.amount_sat,
                                     per_commitment_point)
    tx.inputs[input_index].witness = htlc_tx_witness(htlc, their_sig, ours, preimage)


def add_fee_inputs(htlc: HtlcTx, their_sig: bytes, per_commitment_point: bytes,
                   preimage: bytes | None, extra_inputs: list[TxIn],
                   extra_outputs: list[TxOut], signer: Signer) -> Tx:
    """Anchors: the zero-fee HTLC tx with wallet inputs and outputs appended.

    The peer signed input 0 / output 0 with SIGHASH_SINGLE|ANYONECANPAY, so
    they must stay first; our signature (SIGHASH_ALL) covers everything and
    is made here.  The wallet signs its own inputs afterwards."""
    if not htlc.option_anchors:
        raise ValueError("only zero-fee (anchors) HTLC transactions take fee inputs")
    tx = htlc.tx.copy()
    tx.inputs[0].witness = []
    tx.inputs += [TxIn(i.prevout, i.script_sig, i.sequence, list(i.witness)) for i in extra_inputs]
    tx.outputs += [TxOut(o.value, o.script_pubkey) for o in extra_outputs]
    sign_htlc_tx(tx, 0, htlc, their_sig, per_commitment_point, preimage, signer)
    return tx
