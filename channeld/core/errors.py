"""Errors raised by the channel core.

Two families, because the I/O shell must react differently:

* :class:`PeerError`: the *peer* broke BOLT 2 (bad signature, unknown HTLC
  id, unaffordable HTLC...).  The shell sends an ``error`` and fails the
  channel (broadcasts our latest commitment), except for
  :class:`DataLossError` where broadcasting would lose every satoshi.
* :class:`UsageError`: *we* (the master or the shell) asked for something
  not allowed now (an HTLC we cannot afford, ``revoke()`` before the state
  was persisted...).  Nothing was changed; the channel stays usable.

Both derive from :class:`ChannelError` so a caller can catch them together.
"""
from __future__ import annotations


class ChannelError(Exception):
    """Base class: ``str(e)`` is a human-readable reason for logs and ``error`` messages."""


class PeerError(ChannelError):
    """The peer violated the protocol: send ``error`` and fail the channel."""


class PeerWarning(PeerError):
    """The peer broke a rule BOLT 2 lets us answer with a ``warning`` and a
    disconnection rather than a failed channel, and Core Lightning does (an
    ``update_fee`` outside our acceptable range): nothing was changed.  A
    shell that does not know it treats it as a PeerError."""


class DataLossError(PeerError):
    """The peer proved that we lost state (it knows a secret we never revealed
    as far as we remember).  Our commitment is revoked: NEVER broadcast it;
    ask the peer to close instead."""


class UsageError(ChannelError):
    """A local action was refused; the channel state is unchanged."""


class IllegalTransition(UsageError):
    """A channel state change not in the transition table was attempted."""


class SignerError(ChannelError):
    """The signer refused a request (e.g. releasing the secret of an unrevoked commitment)."""
