"""Mutual close: shutdown scripts, the legacy closing transaction and
``closing_signed`` fee negotiation (BOLT 2 "Legacy Closing Negotiation",
with the ``fee_range`` TLV; BOLT 3 "Legacy Closing Transaction").

The opener proposes first, with its fee range.  The other side accepts a fee
inside both ranges (echoing it) or counter-proposes one in the overlap,
which the opener must then echo.  Without a ``fee_range`` from the peer we
fall back to the old "strictly between" bisection.

Each signer drops outputs below *its own* dust limit and may drop its own
output, so the peer's signature may be on one of two variants; the final
transaction is the variant the peer signed, completed with our signature.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from bitcoin.keys import compact_to_der, verify_digest_compact
from bitcoin.tx import SIGHASH_ALL, Tx, TxIn, TxOut
from common.commitment import Side

from .errors import PeerError, UsageError
from .params import ChannelParams
from .signer import Signer

WireMsg = tuple[str, dict[str, Any]]

#: witness of a 2-of-2 funding spend, upper bound: item count, empty item,
#: two 73-byte signatures with length prefixes, the 71-byte script with prefix
_FUNDING_WITNESS_BYTES = 1 + 1 + 2 * (1 + 73) + (1 + 71)
_SEGWIT_MARKER_FLAG = 2


def is_valid_shutdown_script(script: bytes, anysegwit: bool) -> bool:
    """BOLT 2 ``shutdown`` scriptpubkey forms: P2WPKH, P2WSH, and with
    option_shutdown_anysegwit any witness v1..v16 program of 2..40 bytes.
    (OP_RETURN needs option_simple_close, which this negotiation is not.)"""
    if len(script) == 22 and script[:2] == b"\x00\x14":
        return True
    if len(script) == 34 and script[:2] == b"\x00\x20":
        return True
    if anysegwit and 4 <= len(script) <= 42 and 0x51 <= script[0] <= 0x60 \
            and script[1] == len(script) - 2 and 2 <= script[1] <= 40:
        return True
    return False


def dust_limit_for_script(script: bytes) -> int:
    """BOLT 3 "Dust Limits" by output type (Bitcoin Core's relay policy)."""
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14":
        return 546   # P2PKH
    if len(script) == 23 and script[:2] == b"\xa9\x14":
        return 540   # P2SH
    if len(script) == 22 and script[:2] == b"\x00\x14":
        return 294   # P2WPKH
    if len(script) == 34 and script[:2] == b"\x00\x20":
        return 330   # P2WSH
    return 354       # unknown segwit versions


def build_closing_tx(params: ChannelParams, scripts: Mapping[Side, bytes], balances_msat: Mapping[Side, int],
                     fee_sat: int, dust_limit_sat: int, omit: Side | None = None) -> Tx:
    """The legacy closing transaction: amounts rounded down, the fee taken from
    the opener, outputs below ``dust_limit_sat`` (the signer's) removed,
    ``omit`` optionally dropping one party's output; BIP69 output order."""
    outs = []
    for side in Side:
        amount = balances_msat[side] // 1000 - (fee_sat if side is params.opener else 0)
        if side is omit or amount < dust_limit_sat:
            continue
        outs.append(TxOut(amount, scripts[side]))
    outs.sort(key=lambda o: (o.value, o.script_pubkey))
    return Tx(version=2, inputs=[TxIn(params.funding_outpoint, b"", 0xFFFFFFFF)],
              outputs=outs, locktime=0)


def closing_weight(params: ChannelParams, scripts: Mapping[Side, bytes]) -> int:
    """Expected weight of the signed closing transaction with both outputs."""
    tx = build_closing_tx(params, scripts, {s: 10**15 for s in Side}, 0, 0)
    return len(tx.serialize(include_witness=False)) * 4 + _SEGWIT_MARKER_FLAG + _FUNDING_WITNESS_BYTES


@dataclass(frozen=True)
class ClosingFeeRange:
    """Our acceptable closing fees in satoshis (``min <= ideal <= max``)."""

    min_sat: int
    ideal_sat: int
    max_sat: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_sat <= self.ideal_sat <= self.max_sat:
            raise UsageError(f"closing fee range needs min <= ideal <= max, got {self}")

    @classmethod
    def from_feerates(cls, weight: int, min_per_kw: int, ideal_per_kw: int,
                      max_per_kw: int) -> "ClosingFeeRange":
        return cls(weight * min_per_kw // 1000, weight * ideal_per_kw // 1000,
                   weight * max_per_kw // 1000)


@dataclass
class ClosingResult:
    """Outcome of a received ``closing_signed``: a message to send back (if
    any) and, once agreed, the fully signed closing transaction."""

    reply: WireMsg | None
    tx: Tx | None


class ClosingNegotiation:
    """One round of fee negotiation (restarts from scratch after a reconnection)."""

    def __init__(self, params: ChannelParams, signer: Signer, scripts: Mapping[Side, bytes],
                 balances_msat: Mapping[Side, int], fees: ClosingFeeRange) -> None:
        self.params = params
        self.signer = signer
        self.scripts = dict(scripts)
        self.balances = dict(balances_msat)
        opener_sat = self.balances[params.opener] // 1000
        # The opener can never pay more than its whole output.
        self.fees = ClosingFeeRange(min(fees.min_sat, opener_sat), min(fees.ideal_sat, opener_sat),
                                    min(fees.max_sat, opener_sat))
        self.last_sent: int | None = None
        self.last_received: int | None = None
        self.final_tx: Tx | None = None

    @property
    def we_open(self) -> bool:
        return self.params.opener is Side.LOCAL

    def _our_tx(self, fee: int) -> Tx:
        return build_closing_tx(self.params, self.scripts, self.balances, fee,
                                self.params.local.dust_limit_sat)

    def _sign(self, tx: Tx) -> bytes:
        return self.signer.sign_closing_tx(tx, self.params.funding_witness_script, self.params.funding_sat)

    def _offer(self, fee: int, fee_range: tuple[int, int]) -> WireMsg:
        self.last_sent = fee
        return ("closing_signed", {
            "channel_id": self.params.channel_id, "fee_satoshis": fee,
            "signature": self._sign(self._our_tx(fee)),
            "tlvs": {"fee_range": {"min_fee_satoshis": fee_range[0], "max_fee_satoshis": fee_range[1]}},
        })

    def first_offer(self) -> WireMsg:
        """The opener's opening ``closing_signed``."""
        if not self.we_open:
            raise UsageError("only the opener sends the first closing_signed")
        return self._offer(self.fees.ideal_sat, (self.fees.min_sat, self.fees.max_sat))

    def _their_signed_tx(self, fee: int, sig: bytes) -> Tx:
        """The variant the peer signed: outputs below its dust limit removed,
        maybe its own output too.  Raise if the signature fits neither."""
        wscript = self.params.funding_witness_script
        for omit in (None, Side.REMOTE):
            tx = build_closing_tx(self.params, self.scripts, self.balances, fee,
                                  self.params.remote.dust_limit_sat, omit)
            if not tx.outputs:
                continue
            digest = tx.sighash_segwit_v0(0, wscript, self.params.funding_sat, SIGHASH_ALL)
            if verify_digest_compact(self.params.remote.funding_pubkey, sig, digest):
                for o in tx.outputs:
                    if o.value < dust_limit_for_script(o.script_pubkey):
                        raise PeerError(f"closing transaction output of {o.value} sat is below "
                                        f"the dust limit for its script")
                return tx
        raise PeerError(f"closing_signed: bad signature for fee {fee}")

    def _finish(self, tx: Tx, their_sig: bytes) -> Tx:
        ours = self._sign(tx)
        keys = sorted([(self.params.local.funding_pubkey, ours),
                       (self.params.remote.funding_pubkey, their_sig)])
        tx.inputs[0].witness = [b"", compact_to_der(keys[0][1]) + bytes([SIGHASH_ALL]),
                                compact_to_der(keys[1][1]) + bytes([SIGHASH_ALL]),
                                self.params.funding_witness_script]
        self.final_tx = tx
        return tx

    def recv(self, fields: Mapping[str, Any]) -> ClosingResult:
        """Handle the peer's ``closing_signed``."""
        if self.final_tx is not None:
            raise PeerError("closing_signed after the negotiation completed")
        fee, sig = fields["fee_satoshis"], fields["signature"]
        if fee > self.balances[self.params.opener] // 1000:
            raise PeerError(f"closing_signed fee {fee} exceeds the opener's balance")
        tx = self._their_signed_tx(fee, sig)
        prev_received, self.last_received = self.last_received, fee
        if fee == self.last_sent:
            return ClosingResult(None, self._finish(tx, sig))
        their_range = (fields.get("tlvs") or {}).get("fee_range")
        if their_range is not None:
            return self._recv_with_range(fee, sig, tx, their_range["min_fee_satoshis"],
                                         their_range["max_fee_satoshis"])
        return self._recv_legacy(fee, sig, tx, prev_received)

    def _recv_with_range(self, fee: int, sig: bytes, tx: Tx, their_min: int, their_max: int) -> ClosingResult:
        if their_min > their_max or not their_min <= fee <= their_max:
            raise PeerError(f"closing_signed fee {fee} outside its own fee_range [{their_min}, {their_max}]")
        our_min, our_max = self.fees.min_sat, self.fees.max_sat
        if not self.we_open:
            # BOLT 2: the non-opener does not pay, so it should accept up to
            # whatever maximum the opener offers.
            our_max = max(our_max, min(their_max, self.balances[self.params.opener] // 1000))
        lo, hi = max(our_min, their_min), min(our_max, their_max)
        if lo > hi:
            raise PeerError(f"closing_signed fee_range [{their_min}, {their_max}] does not overlap "
                            f"ours [{our_min}, {our_max}]")
        if self.we_open or self.last_sent is not None:
            # The opener must echo a fee in the overlap; a non-opener that
            # already proposed must have been echoed (handled above).
            if self.last_sent is not None and not self.we_open:
                raise PeerError(f"closing_signed fee {fee} is not the {self.last_sent} we proposed")
            if not lo <= fee <= hi:
                raise PeerError(f"closing_signed fee {fee} outside the fee_range overlap [{lo}, {hi}]")
            reply = self._offer(fee, (our_min, our_max))
            return ClosingResult(reply, self._finish(tx, sig))
        if lo <= fee <= hi:
            reply = self._offer(fee, (lo, hi))
            return ClosingResult(reply, self._finish(tx, sig))
        # Counter-propose the overlap fee nearest to theirs; the opener echoes it.
        return ClosingResult(self._offer(min(max(fee, lo), hi), (lo, hi)), None)

    def _recv_legacy(self, fee: int, sig: bytes, tx: Tx, prev_received: int | None) -> ClosingResult:
        """A peer without ``fee_range``: accept a fee inside our range, else move
        to our bound nearest to it (strictly between its fee and our last one);
        if we are already there, the negotiation cannot converge."""
        if self.last_sent is not None and prev_received is not None:
            lo, hi = sorted((self.last_sent, prev_received))
            if not lo < fee < hi:
                raise PeerError(f"closing_signed fee {fee} not strictly between {lo} and {hi}")
        our_min, our_max = self.fees.min_sat, self.fees.max_sat
        if not self.we_open:
            our_max = self.balances[self.params.opener] // 1000   # we do not pay it
        if our_min <= fee <= our_max:
            return ClosingResult(self._offer(fee, (our_min, our_max)), self._finish(tx, sig))
        proposal = min(max(fee, our_min), our_max)
        if proposal == self.last_sent:
            raise PeerError(f"closing fee negotiation failed: peer wants {fee} sat, "
                            f"we cannot go beyond {proposal}")
        return ClosingResult(self._offer(proposal, (our_min, our_max)), None)
