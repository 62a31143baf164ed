"""BOLT 4 ``attribution_data`` (``option_attribution_data``, feature 36/37).

Legacy failure messages only tell the origin *who* failed if nobody tampered
with them.  Attribution data lets it pin tampering (and latency) on a pair
of adjacent nodes: every node on the way back adds its HTLC hold time and
truncated HMACs that cover the return packet, the hold times and the HMACs of
all downstream nodes.  The same structure rides on ``update_fulfill_htlc``
(with no packet to cover) to report hold times of successful payments.

Layout (920 bytes), obfuscated per hop with the ``ammagext`` stream::

    htlc_hold_times: 20 * u32      (this node's first, then downstream ones)
    truncated_hmacs: 210 * 4 bytes (node x owns 20 - x slots)

``hmac_x_y`` is the HMAC added by node ``x`` (counted from the node currently
handling the data) assuming it is ``y`` hops from the erring node; node x's
slots are ordered ``y = 19 - x .. 0``.  Every node computes all 20 of its
HMACs even though only one is "its" position: it does not know where it is
in the route, and the origin can then use ``y = (route length - 1) - i`` for
hop ``i`` without knowing who failed.
"""
from __future__ import annotations

import hmac as _hmac
from typing import NamedTuple, Sequence

from common.onion_crypto import (
    KEY_AMMAGEXT,
    KEY_UM,
    chacha20_stream,
    generate_key,
    hmac_sha256,
    xor_bytes,
)
from common.onion_errors import (
    DecodedFailure,
    UnknownFailureSource,
    decode_failure,
    wrap_failure,
)

#: Maximum route length attribution data can cover.
ATTRIBUTION_MAX_HOPS = 20
_HOLD_LEN = 4  # u32, units of 100 ms
_TRUNC_LEN = 4  # HMACs truncated to their first 4 bytes
#: 20 + 19 + ... + 1 HMAC slots.
ATTRIBUTION_NUM_HMACS = ATTRIBUTION_MAX_HOPS * (ATTRIBUTION_MAX_HOPS + 1) // 2
_HOLDS_LEN = ATTRIBUTION_MAX_HOPS * _HOLD_LEN
#: Size of the ``attribution_data`` TLV: 80 + 840 = 920 bytes.
ATTRIBUTION_DATA_LEN = _HOLDS_LEN + ATTRIBUTION_NUM_HMACS * _TRUNC_LEN


def _slot(x: int, y: int) -> int:
    """Index of ``hmac_x_y`` among the 210 truncated HMACs."""
    # Blocks of sizes 20, 19, ...: node x's block starts after sum(20 - k, k < x).
    block_start = ATTRIBUTION_MAX_HOPS * x - x * (x - 1) // 2
    return block_start + (ATTRIBUTION_MAX_HOPS - 1 - x - y)


class _View:
    """Mutable, de-obfuscated attribution data as one node sees it."""

    def __init__(self, data: bytes) -> None:
        if len(data) != ATTRIBUTION_DATA_LEN:
            raise ValueError(f"attribution_data must be {ATTRIBUTION_DATA_LEN} bytes")
        self.holds = bytearray(data[:_HOLDS_LEN])
        self.hmacs = [
            data[_HOLDS_LEN + _TRUNC_LEN * k : _HOLDS_LEN + _TRUNC_LEN * (k + 1)]
            for k in range(ATTRIBUTION_NUM_HMACS)
        ]

    def serialize(self) -> bytes:
        return bytes(self.holds) + b"".join(self.hmacs)

    def hold_time(self) -> int:
        return int.from_bytes(self.holds[:_HOLD_LEN], "big")

    def shifted(self) -> _View:
        """Make room for one more upstream node (intermediate-node transformation).

        Hold times move right by one slot; node x's HMACs become node x+1's,
        losing the one for ``y = 19 - x`` (it would imply a route longer than
        20 hops now that there is another hop upstream).
        """
        out = _View(bytes(ATTRIBUTION_DATA_LEN))
        out.holds[_HOLD_LEN:] = self.holds[: _HOLDS_LEN - _HOLD_LEN]
        for x in range(ATTRIBUTION_MAX_HOPS - 1):
            for y in range(ATTRIBUTION_MAX_HOPS - 1 - x):
                out.hmacs[_slot(x + 1, y)] = self.hmacs[_slot(x, y)]
        return out

    def unshifted(self) -> _View:
        """Inverse of :meth:`shifted` (origin side); pruned slots come back as zeros."""
        out = _View(bytes(ATTRIBUTION_DATA_LEN))
        out.holds[: _HOLDS_LEN - _HOLD_LEN] = self.holds[_HOLD_LEN:]
        for x in range(ATTRIBUTION_MAX_HOPS - 1):
            for y in range(ATTRIBUTION_MAX_HOPS - 1 - x):
                out.hmacs[_slot(x, y)] = self.hmacs[_slot(x + 1, y)]
        return out

    def hmac(self, um_key: bytes, packet: bytes, y: int) -> bytes:
        """``hmac_0_y``: over packet, first y+1 hold times, then hmac_1_{y-1} .. hmac_y_0."""
        downstream = b"".join(self.hmacs[_slot(j, y - j)] for j in range(1, y + 1))
        msg = packet + bytes(self.holds[: _HOLD_LEN * (y + 1)]) + downstream
        return hmac_sha256(um_key, msg)[:_TRUNC_LEN]


def _obfuscate(shared_secret: bytes, data: bytes) -> bytes:
    """XOR with the ``ammagext`` stream (its own inverse)."""
    return xor_bytes(data, chacha20_stream(generate_key(KEY_AMMAGEXT, shared_secret), len(data)))


def add_attribution_data(
    shared_secret: bytes,
    hold_time: int,
    downstream: bytes | None = None,
    packet: bytes = b"",
) -> bytes:
    """Add this node's hold time and HMACs; return the obfuscated ``attribution_data``.

    * ``hold_time``: how long we held the HTLC, in units of 100 ms (0 if we
      lack accurate timing).
    * ``downstream``: the ``attribution_data`` received from downstream, or
      ``None`` if we are the erring/final node or downstream sent none (then
      an all-zero block is used, as the spec requires).
    * ``packet``: the return packet *before* our ``ammag`` obfuscation -- for
      the erring node its un-obfuscated error packet
      (:func:`~common.onion_errors.build_error_packet`), for an intermediate
      node the ``reason`` it received; ``b""`` for ``update_fulfill_htlc``.
    """
    if downstream is None:
        view = _View(bytes(ATTRIBUTION_DATA_LEN))
    else:
        view = _View(downstream).shifted()
    view.holds[:_HOLD_LEN] = min(max(hold_time, 0), 0xFFFFFFFF).to_bytes(_HOLD_LEN, "big")
    um_key = generate_key(KEY_UM, shared_secret)
    # Ascending y: hmac_0_y never covers node 0's own slots, so order is free.
    for y in range(ATTRIBUTION_MAX_HOPS):
        view.hmacs[_slot(0, y)] = view.hmac(um_key, packet, y)
    return _obfuscate(shared_secret, view.serialize())


class AttributionResult(NamedTuple):
    """What the origin learned from ``attribution_data``."""

    #: Reported hold times (100 ms units), route order, for hops that verified.
    hold_times: list[int]
    #: First hop whose HMAC did not verify (blame it or its upstream peer),
    #: or ``None`` if every hop checked verified.
    invalid_index: int | None


def verify_attribution(
    shared_secrets: Sequence[bytes],
    attribution_data: bytes,
    reason: bytes | None = None,
) -> AttributionResult:
    """Origin side: check each hop's HMAC and collect hold times.

    ``shared_secrets`` are the hops to check, in route order, ending with the
    erring node for a failure (hops past it never saw the failure) or the
    final node for a fulfill.  ``reason`` is the received failure packet,
    ``None`` for ``update_fulfill_htlc``.  Hop ``i`` is checked at position
    ``y = len(shared_secrets) - 1 - i``.
    """
    n = len(shared_secrets)
    if n > ATTRIBUTION_MAX_HOPS:
        raise ValueError(f"attribution covers at most {ATTRIBUTION_MAX_HOPS} hops")
    hold_times: list[int] = []
    data = attribution_data
    packet = reason
    for i, secret in enumerate(shared_secrets):
        view = _View(_obfuscate(secret, data))
        covered = b""
        if packet is not None:
            # Peel hop i's ammag layer: that is the packet hop i HMACed.
            packet = wrap_failure(secret, packet)
            covered = packet
        y = n - 1 - i
        expected = view.hmac(generate_key(KEY_UM, secret), covered, y)
        if not _hmac.compare_digest(expected, view.hmacs[_slot(0, y)]):
            return AttributionResult(hold_times, i)
        hold_times.append(view.hold_time())
        # Back to the (still obfuscated) data hop i received from downstream.
        data = view.unshifted().serialize()
    return AttributionResult(hold_times, None)


class AttributedFailure(NamedTuple):
    """A failure decoded together with its attribution data."""

    #: The decoded failure, or ``None`` if no hop's message HMAC matched.
    failure: DecodedFailure | None
    attribution: AttributionResult


def decode_failure_attributed(
    shared_secrets: Sequence[bytes], reason: bytes, attribution_data: bytes
) -> AttributedFailure:
    """:func:`~common.onion_errors.decode_failure` plus :func:`verify_attribution`.

    If the failure decodes, attribution is checked up to the erring node;
    otherwise along the whole route, so ``attribution.invalid_index`` points
    at where the packet was corrupted.  A hop's broken failure framing still
    raises :class:`~common.onion_errors.MalformedFailureMessage`.
    """
    try:
        failure: DecodedFailure | None = decode_failure(shared_secrets, reason)
    except UnknownFailureSource:
        failure = None
    route = shared_secrets if failure is None else shared_secrets[: failure.index + 1]
    return AttributedFailure(failure, verify_attribution(route, attribution_data, reason))
