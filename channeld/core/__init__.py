"""The pure core of channeld: BOLT 2 channel state machine and HTLC bookkeeping.

No I/O here (no asyncio, sockets or database): the ``channeld`` process
wraps a :class:`Channel`, feeds it decoded peer messages, sends what it
returns, signs through a :class:`Signer` (hsmd in production) and has the
master persist :meth:`Channel.to_dict`.

Modules, by responsibility:

* :mod:`.params`: static channel configuration (open/accept_channel);
* :mod:`.htlcs`: updates by commitment number (which HTLC is where);
* :mod:`.checks`: BOLT 2 amount/fee/limit checks, spendable/receivable;
* :mod:`.commitments`: building/signing/verifying commitment transactions;
* :mod:`.state`: the :class:`Channel` and its state transitions;
* :mod:`.outbox`, :mod:`.reestablish`: retransmission after reconnection;
* :mod:`.closing`: shutdown scripts, closing tx, closing_signed negotiation;
* :mod:`.signer`: the :class:`Signer` protocol and :class:`LocalSigner`;
* :mod:`.serialize`: the persisted form;
* :mod:`.status`: HTLC snapshots with Core Lightning's state names.
"""
from .closing import ClosingFeeRange, ClosingResult
from .errors import ChannelError, DataLossError, IllegalTransition, PeerError, PeerWarning, SignerError, UsageError
from .htlcs import RemovalKind
from .params import ChannelParams, ChannelType, PartyConfig
from .signer import LocalSigner, Signer
from .state import (
    TRANSITIONS,
    Channel,
    ChannelState,
    FeerateBounds,
    PendingRevocation,
    Reestablished,
    Revocation,
)
from .status import HtlcChanges, HtlcStatus

__all__ = [
    "Channel", "ChannelState", "TRANSITIONS", "FeerateBounds", "PendingRevocation", "Reestablished",
    "Revocation", "ChannelParams", "ChannelType", "PartyConfig", "Signer", "LocalSigner",
    "ClosingFeeRange", "ClosingResult", "HtlcChanges", "HtlcStatus", "RemovalKind",
    "ChannelError", "PeerError", "PeerWarning", "DataLossError", "UsageError", "IllegalTransition", "SignerError",
]
