"""What onchaind is given (one channel's state) and what it reports (one
:class:`Resolution` per output it tracks).

Naming follows Core Lightning's onchaind: every tracked output lives in a
transaction of some :class:`TxType` and is of some :class:`OutputType`; it
is resolved by a transaction of some :class:`TxType` (ours or theirs), or by
the transaction containing it (``SELF``).  The enums are persisted, so each
member has an explicit string value: never rename one.

Heights: ``not_before_height`` is the first block height in which a
transaction can be mined (CSV: confirmation height of the spent output +
delay; CLTV: nLockTime + 1).  Mempools accept it once the tip reaches
``not_before_height - 1``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from bitcoin.tx import OutPoint, Tx
from common.commitment import ChannelSetup, HtlcInfo, Side
from common.htlc_tx import HtlcTx
from common.shachain import ShachainStore

from .sweep import SweepInput

#: An output is irrevocably resolved once its resolving tx is this deep (BOLT 5).
IRREVOCABLE_DEPTH = 100


# --- input: one channel's state, as the master stores it ---------------------

@dataclass(frozen=True)
class LocalCommitmentInfo:
    """Our latest commitment: the only one of ours we may ever broadcast."""

    commitment_number: int
    per_commitment_point: bytes      # ours for that number (hsmd knows it)
    feerate_per_kw: int
    local_msat: int                  # channel-relative balances, HTLCs excluded
    remote_msat: int
    htlcs: tuple[HtlcInfo, ...]
    #: the peer's DER signatures (no sighash byte) of our HTLC transactions,
    #: in HTLC output order (``commitment_signed.htlc_signatures``)
    htlc_signatures: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class RemoteCommitmentInfo:
    """One commitment of the peer we signed and that it has not revoked."""

    commitment_number: int
    per_commitment_point: bytes      # theirs for that number
    feerate_per_kw: int
    local_msat: int                  # channel-relative (LOCAL = us)
    remote_msat: int
    htlcs: tuple[HtlcInfo, ...]


@dataclass(frozen=True)
class OnchainChannel:
    """Everything onchaind needs about one channel (filled by the master)."""

    setup: ChannelSetup
    local: LocalCommitmentInfo
    remote: RemoteCommitmentInfo
    #: their next commitment, signed by us but the current one not revoked yet
    remote_next: RemoteCommitmentInfo | None
    #: the peer's revealed per-commitment secrets (revoked commitments)
    revealed_secrets: ShachainStore
    #: wallet scriptPubKey (P2WPKH the wallet watches) every sweep pays to
    sweep_scriptpubkey: bytes
    feerate_per_kw: int
    block_height: int
    #: HTLCs of older commitments, to recognise the outputs of a revoked one
    past_htlcs: tuple[HtlcInfo, ...] = ()
    #: payment_hash -> preimage known to the master
    preimages: dict[bytes, bytes] = field(default_factory=dict)
    #: txids of the closing transactions we signed (mutual close)
    mutual_close_txids: tuple[bytes, ...] = ()
    #: our shutdown scriptpubkey: a non-commitment spend paying it is a mutual close
    shutdown_scriptpubkey: bytes | None = None
    #: confirmations after which a timed-out HTLC is failed upstream
    reasonable_depth: int = 3

    def live_outgoing_htlcs(self) -> dict[int, HtlcInfo]:
        """Our offered HTLCs in any commitment that may still be valid."""
        out: dict[int, HtlcInfo] = {}
        sets = [self.local.htlcs, self.remote.htlcs]
        if self.remote_next is not None:
            sets.append(self.remote_next.htlcs)
        for hs in sets:
            for h in hs:
                if h.offerer is Side.LOCAL:
                    out.setdefault(h.htlc_id, h)
        return out


# --- resolution records ---------------------------------------------------------

class TxType(str, Enum):
    """A transaction: the one holding a tracked output, or the one resolving it."""

    FUNDING_TRANSACTION = "FUNDING_TRANSACTION"
    MUTUAL_CLOSE = "MUTUAL_CLOSE"
    OUR_UNILATERAL = "OUR_UNILATERAL"
    THEIR_UNILATERAL = "THEIR_UNILATERAL"
    THEIR_REVOKED_UNILATERAL = "THEIR_REVOKED_UNILATERAL"
    UNKNOWN_UNILATERAL = "UNKNOWN_UNILATERAL"      # their commitment we cannot place
    UNKNOWN_SPEND = "UNKNOWN_SPEND"                # nothing we know: funds may be lost
    SELF = "SELF"                                  # resolved by the containing tx
    OUR_HTLC_TIMEOUT_TX = "OUR_HTLC_TIMEOUT_TX"    # second stage, our commitment
    OUR_HTLC_SUCCESS_TX = "OUR_HTLC_SUCCESS_TX"
    THEIR_HTLC_TIMEOUT_TX = "THEIR_HTLC_TIMEOUT_TX"  # second stage, their commitment
    THEIR_HTLC_SUCCESS_TX = "THEIR_HTLC_SUCCESS_TX"
    OUR_DELAYED_RETURN_TO_WALLET = "OUR_DELAYED_RETURN_TO_WALLET"
    OUR_TO_REMOTE_SWEEP = "OUR_TO_REMOTE_SWEEP"    # anchors: to_remote after 1 block
    OUR_HTLC_TIMEOUT_TO_US = "OUR_HTLC_TIMEOUT_TO_US"    # their commitment, direct
    OUR_HTLC_SUCCESS_TO_US = "OUR_HTLC_SUCCESS_TO_US"    # their commitment, direct
    THEIR_HTLC_TIMEOUT_TO_THEM = "THEIR_HTLC_TIMEOUT_TO_THEM"
    THEIR_HTLC_FULFILL_TO_THEM = "THEIR_HTLC_FULFILL_TO_THEM"  # preimage, our commitment
    THEIR_DELAYED_TO_THEM = "THEIR_DELAYED_TO_THEM"  # they escaped a penalty
    OUR_PENALTY_TX = "OUR_PENALTY_TX"
    THEIR_PENALTY_TX = "THEIR_PENALTY_TX"
    IGNORED = "IGNORED"                            # theirs, or nothing worth doing


class OutputType(str, Enum):
    FUNDING_OUTPUT = "FUNDING_OUTPUT"
    OUTPUT_TO_US = "OUTPUT_TO_US"                  # P2WPKH to our payment basepoint
    ANCHORED_OUTPUT_TO_US = "ANCHORED_OUTPUT_TO_US"  # anchors to_remote (1-block CSV)
    DELAYED_OUTPUT_TO_US = "DELAYED_OUTPUT_TO_US"  # our to_local, our HTLC tx outputs
    OUTPUT_TO_THEM = "OUTPUT_TO_THEM"
    DELAYED_OUTPUT_TO_THEM = "DELAYED_OUTPUT_TO_THEM"
    DELAYED_CHEAT_OUTPUT_TO_THEM = "DELAYED_CHEAT_OUTPUT_TO_THEM"  # revoked: punishable
    OUR_HTLC = "OUR_HTLC"                          # offered by us
    THEIR_HTLC = "THEIR_HTLC"                      # offered by them
    ANCHOR_TO_US = "ANCHOR_TO_US"
    ANCHOR_TO_THEM = "ANCHOR_TO_THEM"
    UNKNOWN_OUTPUT = "UNKNOWN_OUTPUT"


@dataclass
class Proposal:
    """What we intend to do with an unspent output."""

    action: TxType
    #: first height the tx can be mined at; None until the output confirms
    not_before_height: int | None
    #: height after which the peer may take the output (drives RBF bumps)
    deadline: int | None = None
    tx: Tx | None = None             # signed (None: nothing to broadcast)
    feerate_per_kw: int | None = None
    fee_sat: int | None = None
    weight: int | None = None
    #: anchors: zero-fee HTLC tx, the shell must add fee inputs (see
    #: OnchainState.complete_htlc_tx)
    needs_fee_inputs: bool = False
    bumpable: bool = False           # we alone sign it: can be RBF-bumped
    error: str = ""                  # why no tx could be built
    sweep: SweepInput | None = None  # what a sweep spends (to rebuild it)
    htlc_tx: HtlcTx | None = None    # our HTLC tx: to add fee inputs (anchors)
    htlc_sig: bytes | None = None    # the peer's signature of it
    preimage: bytes | None = None    # HTLC-success


@dataclass(frozen=True)
class SpendFact:
    """A tracked output was spent by ``tx`` (mined at ``height``, None: unconfirmed)."""

    tx: Tx
    height: int | None


@dataclass
class Resolution:
    """One tracked output and how it is (to be) resolved."""

    outpoint: OutPoint
    amount_sat: int
    tx_type: TxType                  # the tx holding the output
    output_type: OutputType
    created_height: int | None       # confirmation height of the holding tx
    htlc: HtlcInfo | None = None
    proposal: Proposal | None = None
    resolved_by: TxType | None = None
    resolved_txid: bytes | None = None   # None: resolved by the holding tx itself
    resolved_height: int | None = None
    #: a spend seen but not confirmed (mempool, or undone by a reorg)
    pending_spend_txid: bytes | None = None
    note: str = ""
    dust: bool = False               # not worth sweeping at our feerate: abandoned
    witness_script: bytes | None = None
    #: where this output sits in the resolution tree (root: the funding output)
    parent: OutPoint | None = None

    @property
    def name(self) -> str:
        return f"{self.tx_type.value}/{self.output_type.value}"

    @property
    def is_resolved(self) -> bool:
        return self.resolved_by is not None and self.resolved_height is not None

    def depth(self, tip: int) -> int:
        """Confirmations of the resolving tx (0 if not resolved)."""
        if not self.is_resolved:
            return 0
        assert self.resolved_height is not None
        return max(0, tip - self.resolved_height + 1)

    def irrevocably_resolved(self, tip: int) -> bool:
        return self.depth(tip) >= IRREVOCABLE_DEPTH

    def status_line(self, tip: int) -> str:
        """One line for listpeerchannels' status."""
        head = self.name
        if self.is_resolved:
            assert self.resolved_by is not None
            by = self.resolved_by.value
            where = "" if self.resolved_txid is None else f" {self.resolved_txid[::-1].hex()}"
            extra = f" ({self.note})" if self.note else ""
            return f"{head}: resolved by {by}{where} ({self.depth(tip)} confirmations){extra}"
        p = self.proposal
        if p is None or self.pending_spend_txid is not None:
            return f"{head}: {self.note or 'unresolved'}"
        act = p.action.value
        if p.error:
            return f"{head}: cannot build {act}: {p.error}"
        if p.not_before_height is None:
            return f"{head}: waiting for confirmation before {act}"
        wait = p.not_before_height - tip - 1
        if p.tx is None:
            if wait > 0:
                return f"{head}: {act} in {wait} more blocks"
            return f"{head}: {self.note or act}"
        if wait > 0:
            return f"{head}: waiting {wait} more blocks to broadcast {act}"
        return f"{head}: broadcast {act} {p.tx.txid()[::-1].hex()} at {p.feerate_per_kw} sat/kw"
