"""BOLT 3 commitment transactions.

Naming conventions (the main source of bugs in this area, so be strict):

* :class:`Side` is *channel-relative*: ``Side.LOCAL`` is always our node,
  ``Side.REMOTE`` the peer.  Balances passed in and :attr:`HtlcInfo.offerer`
  use this.
* The *holder* of a commitment is the party able to broadcast it (BOLT 3's
  "local").  :class:`CommitmentParams` and :class:`~common.keyderive.CommitmentKeys`
  are holder-relative.  Building *their* commitment is just
  ``setup.commitment_params(Side.REMOTE, ...)``.

Typical use::

    setup = ChannelSetup(funding_outpoint, funding_sat, opener=Side.LOCAL,
                         local=ChannelParty(...), remote=ChannelParty(...),
                         option_anchors=True)
    params = setup.commitment_params(Side.REMOTE, n, their_point, feerate_per_kw)
    tx, outputs = build_commitment_tx(params, our_msat, their_msat, htlcs)
    sig = sign_commitment(tx, params, our_funding_privkey)
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, Mapping, Protocol, Sequence

from bitcoin.hashes import sha256
from bitcoin.keys import sign_digest_der
from bitcoin.script import p2wsh_script
from bitcoin.tx import SIGHASH_ALL, OutPoint, Tx, TxIn, TxOut

from .keyderive import Basepoints, CommitmentKeys
from .scripts import (
    ANCHOR_OUTPUT_SAT,
    anchor_script,
    funding_script,
    offered_htlc_script,
    received_htlc_script,
    to_local_script,
    to_remote_anchor_script,
    to_remote_scriptpubkey,
)

# --- weights and fees (BOLT 3 "Fee Calculation", Appendix A) ------------------

COMMIT_WEIGHT_NO_ANCHORS = 724
COMMIT_WEIGHT_ANCHORS = 1124
HTLC_OUTPUT_WEIGHT = 172
HTLC_TIMEOUT_WEIGHT_NO_ANCHORS = 663
HTLC_TIMEOUT_WEIGHT_ANCHORS = 666
HTLC_SUCCESS_WEIGHT_NO_ANCHORS = 703
HTLC_SUCCESS_WEIGHT_ANCHORS = 706

_OBSCURE_MASK = (1 << 48) - 1


class Side(IntEnum):
    """Channel-relative party: LOCAL is our node."""

    LOCAL = 0
    REMOTE = 1

    @property
    def other(self) -> "Side":
        return Side.REMOTE if self is Side.LOCAL else Side.LOCAL


#: how the declared records (wire/csv: channeld_core, onchain_channel,
#: onchaind_state) write a side
SIDE_NAMES = {Side.LOCAL: "local", Side.REMOTE: "remote"}
_SIDE_BY_NAME = {v: k for k, v in SIDE_NAMES.items()}


def side_named(name: str) -> Side:
    """The side a record names (ValueError for anything else)."""
    try:
        return _SIDE_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown side {name!r}") from None


def commitment_weight(num_untrimmed_htlcs: int, option_anchors: bool) -> int:
    """Expected weight of a commitment transaction (fixed formula, not the real weight)."""
    base = COMMIT_WEIGHT_ANCHORS if option_anchors else COMMIT_WEIGHT_NO_ANCHORS
    return base + HTLC_OUTPUT_WEIGHT * num_untrimmed_htlcs


def commit_tx_base_fee(feerate_per_kw: int, num_untrimmed_htlcs: int, option_anchors: bool) -> int:
    """Base fee in satoshis paid by the opener (anchor values not included)."""
    return feerate_per_kw * commitment_weight(num_untrimmed_htlcs, option_anchors) // 1000


def htlc_timeout_fee(feerate_per_kw: int, option_anchors: bool) -> int:
    """Fee of an HTLC-timeout transaction: 0 with anchors (fees are brought by the
    broadcaster through SIGHASH_SINGLE|ANYONECANPAY), else 663 weight units."""
    if option_anchors:
        return 0
    return feerate_per_kw * HTLC_TIMEOUT_WEIGHT_NO_ANCHORS // 1000


def htlc_success_fee(feerate_per_kw: int, option_anchors: bool) -> int:
    """Fee of an HTLC-success transaction: 0 with anchors, else 703 weight units."""
    if option_anchors:
        return 0
    return feerate_per_kw * HTLC_SUCCESS_WEIGHT_NO_ANCHORS // 1000


def htlc_is_trimmed(offered: bool, amount_msat: int, dust_limit_sat: int,
                    feerate_per_kw: int, option_anchors: bool) -> bool:
    """True if the HTLC output would be dust on the holder's commitment.

    ``offered`` is from the holder's point of view; the second-stage fee is
    deducted first because an output whose HTLC transaction would be dust is
    not worth creating either."""
    fee = (htlc_timeout_fee if offered else htlc_success_fee)(feerate_per_kw, option_anchors)
    return amount_msat // 1000 < dust_limit_sat + fee


# --- commitment number obscuring -------------------------------------------------

def obscuring_factor(opener_payment_basepoint: bytes, accepter_payment_basepoint: bytes) -> int:
    """Lower 48 bits of SHA256(open_channel payment_basepoint || accept_channel's)."""
    h = sha256(opener_payment_basepoint + accepter_payment_basepoint)
    return int.from_bytes(h[-6:], "big")


def obscured_commitment_number(commitment_number: int, factor: int) -> int:
    if not 0 <= commitment_number <= _OBSCURE_MASK:
        raise ValueError("commitment number must fit in 48 bits")
    return (commitment_number ^ factor) & _OBSCURE_MASK


def encode_locktime_sequence(obscured: int) -> tuple[int, int]:
    """(nLockTime, nSequence) carrying the 48-bit obscured commitment number.

    The 0x20 locktime prefix keeps the value in the past (a timestamp in 1987),
    and the 0x80 sequence prefix disables relative locktime (BIP68)."""
    locktime = (0x20 << 24) | (obscured & 0xFFFFFF)
    sequence = (0x80 << 24) | ((obscured >> 24) & 0xFFFFFF)
    return locktime, sequence


def decode_commitment_number(tx: Tx, factor: int) -> int | None:
    """Recover the commitment number of a broadcast commitment tx (for onchaind),
    or None if the tx does not look like a commitment transaction."""
    if len(tx.inputs) != 1 or tx.locktime >> 24 != 0x20 or tx.inputs[0].sequence >> 24 != 0x80:
        return None
    obscured = ((tx.inputs[0].sequence & 0xFFFFFF) << 24) | (tx.locktime & 0xFFFFFF)
    return obscured ^ factor


# --- data model ------------------------------------------------------------------------

@dataclass(frozen=True)
class HtlcInfo:
    """An HTLC committed in the channel, with its channel-relative direction."""

    offerer: Side           # who sent update_add_htlc
    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    htlc_id: int = 0

    def offered_by(self, holder: Side) -> bool:
        """Whether this is an *offered* HTLC on ``holder``'s commitment."""
        return self.offerer == holder


def onchain_htlc_value(h: HtlcInfo) -> dict[str, Any]:
    """An `onchain_htlc` (wire/csv/onchain_channel.csv): channeld exports
    them, onchaind stores them in its state."""
    return {"offerer": SIDE_NAMES[h.offerer], "id": h.htlc_id, "amount_msat": h.amount_msat,
            "payment_hash": h.payment_hash, "cltv_expiry": h.cltv_expiry}


class PartyKeys(Protocol):
    """What an `onchain_party` is made of: channeld's PartyConfig and
    onchaind's ChannelParty both carry it."""
    funding_pubkey: bytes
    basepoints: Basepoints
    dust_limit_sat: int
    to_self_delay: int


def onchain_party_value(p: PartyKeys) -> dict[str, Any]:
    """An `onchain_party` (wire/csv/onchain_channel.csv): one side's keys
    and limits."""
    bp = p.basepoints
    return {"funding_pubkey": p.funding_pubkey,
            "basepoints": {"revocation": bp.revocation, "payment": bp.payment,
                           "delayed_payment": bp.delayed_payment, "htlc": bp.htlc},
            "dust_limit_sat": p.dust_limit_sat, "to_self_delay": p.to_self_delay}


@dataclass(frozen=True)
class ChannelParty:
    """One peer's static channel parameters, as carried by open/accept_channel."""

    funding_pubkey: bytes
    basepoints: Basepoints
    dust_limit_sat: int
    #: as sent on the wire: the CSV delay this party imposes on the *other*
    #: party's to_local and HTLC-transaction outputs.
    to_self_delay: int


def onchain_htlc_from(d: Mapping[str, Any]) -> HtlcInfo:
    """An `onchain_htlc` read back (ValueError for a side that is neither)."""
    return HtlcInfo(side_named(d["offerer"]), d["amount_msat"], d["payment_hash"], d["cltv_expiry"], d["id"])


def onchain_party_from(d: Mapping[str, Any]) -> ChannelParty:
    """An `onchain_party` read back."""
    bp = d["basepoints"]
    return ChannelParty(funding_pubkey=d["funding_pubkey"],
                        basepoints=Basepoints(revocation=bp["revocation"], payment=bp["payment"],
                                              delayed_payment=bp["delayed_payment"], htlc=bp["htlc"]),
                        dust_limit_sat=d["dust_limit_sat"], to_self_delay=d["to_self_delay"])


@dataclass(frozen=True)
class CommitmentParams:
    """Everything needed to build one commitment transaction, holder-relative."""

    holder: Side
    opener: Side
    funding_outpoint: OutPoint
    funding_sat: int
    holder_funding_pubkey: bytes
    counterparty_funding_pubkey: bytes
    keys: CommitmentKeys
    to_self_delay: int        # delay on the holder's own outputs
    dust_limit_sat: int       # the holder's dust limit
    feerate_per_kw: int
    option_anchors: bool
    commitment_number: int
    obscuring_factor: int

    @property
    def funding_script(self) -> bytes:
        return funding_script(self.holder_funding_pubkey, self.counterparty_funding_pubkey)


@dataclass(frozen=True)
class ChannelSetup:
    """Both peers' static parameters; produces :class:`CommitmentParams` for either side."""

    funding_outpoint: OutPoint
    funding_sat: int
    opener: Side
    local: ChannelParty
    remote: ChannelParty
    option_anchors: bool = False

    def party(self, side: Side) -> ChannelParty:
        return self.local if side is Side.LOCAL else self.remote

    @property
    def obscuring_factor(self) -> int:
        return obscuring_factor(self.party(self.opener).basepoints.payment,
                                self.party(self.opener.other).basepoints.payment)

    def commitment_params(self, holder: Side, commitment_number: int,
                          per_commitment_point: bytes, feerate_per_kw: int) -> CommitmentParams:
        """Parameters of ``holder``'s commitment number ``commitment_number``;
        ``per_commitment_point`` is the holder's point for that number."""
        me, them = self.party(holder), self.party(holder.other)
        return CommitmentParams(
            holder=holder,
            opener=self.opener,
            funding_outpoint=self.funding_outpoint,
            funding_sat=self.funding_sat,
            holder_funding_pubkey=me.funding_pubkey,
            counterparty_funding_pubkey=them.funding_pubkey,
            keys=CommitmentKeys.derive(me.basepoints, them.basepoints, per_commitment_point),
            to_self_delay=them.to_self_delay,
            dust_limit_sat=me.dust_limit_sat,
            feerate_per_kw=feerate_per_kw,
            option_anchors=self.option_anchors,
            commitment_number=commitment_number,
            obscuring_factor=self.obscuring_factor,
        )


class OutputKind(Enum):
    TO_LOCAL = "to_local"            # holder's balance (delayed)
    TO_REMOTE = "to_remote"          # counterparty's balance
    LOCAL_ANCHOR = "local_anchor"    # holder's anchor
    REMOTE_ANCHOR = "remote_anchor"  # counterparty's anchor
    OFFERED_HTLC = "offered_htlc"    # offered by the holder
    RECEIVED_HTLC = "received_htlc"  # received by the holder


@dataclass(frozen=True)
class CommitmentOutput:
    """Description of one output of a built commitment tx (same index as in tx)."""

    kind: OutputKind
    amount_sat: int
    script_pubkey: bytes
    witness_script: bytes | None   # None only for the P2WPKH to_remote
    htlc: HtlcInfo | None = None

    @property
    def is_htlc(self) -> bool:
        return self.htlc is not None


@dataclass(frozen=True)
class CommitmentBalances:
    """Outcome of the fee/trimming computation, before building the tx."""

    to_local_sat: int        # holder, after fees/anchors (may be below dust)
    to_remote_sat: int       # counterparty, after fees/anchors
    untrimmed: tuple[HtlcInfo, ...]
    trimmed: tuple[HtlcInfo, ...]
    base_fee_sat: int


def compute_balances(params: CommitmentParams, local_msat: int, remote_msat: int,
                     htlcs: Sequence[HtlcInfo]) -> CommitmentBalances:
    """Trim HTLCs and take the base fee (and anchors) from the opener's balance.

    ``local_msat``/``remote_msat`` are channel-relative and exclude in-flight
    HTLCs.  A fee exceeding the opener's balance just zeroes it (the spec's
    "fee greater than funder amount" vector)."""
    untrimmed, trimmed = [], []
    for h in htlcs:
        dust = htlc_is_trimmed(h.offered_by(params.holder), h.amount_msat, params.dust_limit_sat,
                               params.feerate_per_kw, params.option_anchors)
        (trimmed if dust else untrimmed).append(h)
    fee = commit_tx_base_fee(params.feerate_per_kw, len(untrimmed), params.option_anchors)
    sats = {Side.LOCAL: local_msat // 1000, Side.REMOTE: remote_msat // 1000}
    charge = fee + (2 * ANCHOR_OUTPUT_SAT if params.option_anchors else 0)
    sats[params.opener] = max(0, sats[params.opener] - charge)
    return CommitmentBalances(
        to_local_sat=sats[params.holder],
        to_remote_sat=sats[params.holder.other],
        untrimmed=tuple(untrimmed),
        trimmed=tuple(trimmed),
        base_fee_sat=fee,
    )


def htlc_witness_script(params: CommitmentParams, htlc: HtlcInfo) -> bytes:
    """Witness script of ``htlc``'s output on the holder's commitment."""
    k = params.keys
    if htlc.offered_by(params.holder):
        return offered_htlc_script(k.revocation_pubkey, k.holder_htlc_pubkey,
                                   k.counterparty_htlc_pubkey, htlc.payment_hash,
                                   params.option_anchors)
    return received_htlc_script(k.revocation_pubkey, k.holder_htlc_pubkey,
                                k.counterparty_htlc_pubkey, htlc.payment_hash,
                                htlc.cltv_expiry, params.option_anchors)


def build_commitment_tx(params: CommitmentParams, local_msat: int, remote_msat: int,
                        htlcs: Sequence[HtlcInfo]) -> tuple[Tx, list[CommitmentOutput]]:
    """Build the unsigned commitment transaction (BOLT 3 "Commitment Transaction
    Construction").  Returns the tx and, index for index, what each output is.

    The HTLC outputs, in output order, are the order of ``htlc_signatures``
    in ``commitment_signed`` (see :func:`htlc_outputs`)."""
    bal = compute_balances(params, local_msat, remote_msat, htlcs)
    k = params.keys
    outs: list[tuple[CommitmentOutput, int]] = []  # (output, cltv for BIP69+CLTV tiebreak)

    for h in bal.untrimmed:
        ws = htlc_witness_script(params, h)
        kind = OutputKind.OFFERED_HTLC if h.offered_by(params.holder) else OutputKind.RECEIVED_HTLC
        outs.append((CommitmentOutput(kind, h.amount_msat // 1000, p2wsh_script(ws), ws, h),
                     h.cltv_expiry))

    has_local = bal.to_local_sat >= params.dust_limit_sat
    has_remote = bal.to_remote_sat >= params.dust_limit_sat
    if has_local:
        ws = to_local_script(k.revocation_pubkey, params.to_self_delay, k.holder_delayed_pubkey)
        outs.append((CommitmentOutput(OutputKind.TO_LOCAL, bal.to_local_sat, p2wsh_script(ws), ws), 0))
    if has_remote:
        spk = to_remote_scriptpubkey(k.counterparty_payment_pubkey, params.option_anchors)
        ws = to_remote_anchor_script(k.counterparty_payment_pubkey) if params.option_anchors else None
        outs.append((CommitmentOutput(OutputKind.TO_REMOTE, bal.to_remote_sat, spk, ws), 0))
    if params.option_anchors:
        # An anchor only exists if its owner has something to protect.
        if has_local or bal.untrimmed:
            ws = anchor_script(params.holder_funding_pubkey)
            outs.append((CommitmentOutput(OutputKind.LOCAL_ANCHOR, ANCHOR_OUTPUT_SAT,
                                          p2wsh_script(ws), ws), 0))
        if has_remote or bal.untrimmed:
            ws = anchor_script(params.counterparty_funding_pubkey)
            outs.append((CommitmentOutput(OutputKind.REMOTE_ANCHOR, ANCHOR_OUTPUT_SAT,
                                          p2wsh_script(ws), ws), 0))

    # BIP69 + CLTV: value, then scriptPubKey (bytes compare = memcmp then
    # shorter first), then cltv_expiry so identical HTLC outputs get a
    # canonical order for their signatures.  sort() is stable for the rest.
    outs.sort(key=lambda oc: (oc[0].amount_sat, oc[0].script_pubkey, oc[1]))
    outputs = [o for o, _ in outs]

    locktime, sequence = encode_locktime_sequence(
        obscured_commitment_number(params.commitment_number, params.obscuring_factor))
    tx = Tx(
        version=2,
        inputs=[TxIn(params.funding_outpoint, b"", sequence)],
        outputs=[TxOut(o.amount_sat, o.script_pubkey) for o in outputs],
        locktime=locktime,
    )
    return tx, outputs


def htlc_outputs(outputs: Sequence[CommitmentOutput]) -> list[tuple[int, CommitmentOutput]]:
    """(output index, output) of every HTLC output, in ``htlc_signatures`` order."""
    return [(i, o) for i, o in enumerate(outputs) if o.is_htlc]


# --- signing ------------------------------------------------------------------------------

def commitment_sighash(tx: Tx, params: CommitmentParams) -> bytes:
    """BIP143 SIGHASH_ALL digest of the funding input."""
    return tx.sighash_segwit_v0(0, params.funding_script, params.funding_sat, SIGHASH_ALL)


def sign_commitment(tx: Tx, params: CommitmentParams, funding_privkey: bytes) -> bytes:
    """DER signature (without sighash byte) of the funding input."""
    return sign_digest_der(funding_privkey, commitment_sighash(tx, params))


def set_commitment_witness(tx: Tx, params: CommitmentParams,
                           holder_sig: bytes, counterparty_sig: bytes) -> None:
    """Fill the funding input's witness ``0 <sig1> <sig2> <script>``: the
    signatures follow the sorted order of the funding pubkeys in the script."""
    pairs = sorted([(params.holder_funding_pubkey, holder_sig),
                    (params.counterparty_funding_pubkey, counterparty_sig)])
    tx.inputs[0].witness = [b"", pairs[0][1] + bytes([SIGHASH_ALL]),
                            pairs[1][1] + bytes([SIGHASH_ALL]), params.funding_script]
