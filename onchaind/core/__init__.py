"""Pure core of onchaind (BOLT 5): classify the spend of a channel's funding
output and resolve every output, with no I/O.

The shell feeds inputs (``events``) to an :class:`OnchainState` and carries
out the outputs it returns (broadcast, watch, tell the master); signing goes
through a :class:`Signer` (hsmd in production, :class:`LocalSigner` in tests).
"""
from .classify import Classification, MatchedOutput, classify
from .events import (
    AllResolved,
    BlockConnected,
    BlockDisconnected,
    Broadcast,
    FeerateChanged,
    HtlcFailed,
    Input,
    Output,
    OutputSpent,
    PreimageKnown,
    PreimageLearned,
    Resolved,
    TxConfirmed,
    Warn,
    Watch,
)
from .model import (
    IRREVOCABLE_DEPTH,
    LocalCommitmentInfo,
    OnchainChannel,
    OutputType,
    Proposal,
    RemoteCommitmentInfo,
    Resolution,
    SpendFact,
    TxType,
)
from .resolve import BUMP_WINDOW, OnchainState
from .signer import LocalSigner, Signer
from .sweep import SpendPath, SweepInput, SweepTx, build_sweep, dust_threshold, fee_for_weight

__all__ = [
    "AllResolved", "BUMP_WINDOW", "BlockConnected", "BlockDisconnected", "Broadcast",
    "Classification", "FeerateChanged", "HtlcFailed", "IRREVOCABLE_DEPTH", "Input",
    "LocalCommitmentInfo", "LocalSigner", "MatchedOutput", "OnchainChannel", "OnchainState",
    "Output", "OutputSpent", "OutputType", "PreimageKnown", "PreimageLearned", "Proposal",
    "RemoteCommitmentInfo", "Resolution", "Resolved", "Signer", "SpendFact", "SpendPath",
    "SweepInput", "SweepTx", "TxConfirmed", "TxType", "Warn", "Watch", "build_sweep",
    "classify", "dust_threshold", "fee_for_weight",
]
