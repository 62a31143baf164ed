"""The onchaind state machine: chain facts in, actions out.

``OnchainState`` keeps only *facts* (confirmation heights, spends of tracked
outputs, known preimages, the tip, the feerate pinned for each sweep) and
what it already told the shell.  On every input it re-derives the whole
resolution tree (derive.py) and emits the difference, which makes every
input idempotent and a reorg a matter of forgetting facts.

Typical use by the shell::

    state, outs = OnchainState.start(channel, funding_spend_tx, height, signer)
    outs += state.block(height + 1)
    outs += state.output_spent(outpoint, spending_tx, height)
    saved = state.to_value(); state = OnchainState.from_value(saved, signer)   # onchaind_state

Fee bumping: a sweep with a deadline (the height from which the peer can
take the output) that is still unconfirmed ``BUMP_WINDOW`` blocks before it
is rebuilt at a higher feerate on each new block (:func:`sweep.bumped_feerate`,
capped so the output stays above dust); ``bump()`` does it on demand.
"""
from __future__ import annotations

from typing import Callable

from bitcoin.hashes import sha256
from bitcoin.tx import OutPoint, Tx, TxIn, TxOut

from .classify import Classification, classify
from .derive import Derived, derive
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
from .model import OnchainChannel, OutputType, Resolution, SpendFact
from .signer import Signer
from .sweep import SweepInput, SweepTx, add_fee_inputs, build_sweep, bumped_feerate, max_feerate

#: start bumping a contested sweep this many blocks before its deadline
BUMP_WINDOW = 6

#: outputs nobody needs to watch
_UNWATCHED = {OutputType.FUNDING_OUTPUT, OutputType.OUTPUT_TO_US, OutputType.OUTPUT_TO_THEM,
              OutputType.DELAYED_OUTPUT_TO_THEM, OutputType.ANCHOR_TO_US,
              OutputType.ANCHOR_TO_THEM, OutputType.UNKNOWN_OUTPUT}


class OnchainState:
    """One channel's on-chain resolution (pure: no I/O)."""

    def __init__(self, channel: OnchainChannel, commitment_tx: Tx, signer: Signer, *,
                 tip: int, feerate_per_kw: int,
                 confirmations: dict[bytes, int] | None = None,
                 spends: dict[OutPoint, SpendFact] | None = None,
                 preimages: dict[bytes, bytes] | None = None,
                 master_hashes: set[bytes] | None = None,
                 pinned_feerates: dict[OutPoint, int] | None = None,
                 bumped_at: dict[OutPoint, int] | None = None,
                 emitted: set[str] | None = None,
                 announced: set[bytes] | None = None):
        self.channel = channel
        self.commitment_tx = commitment_tx
        self.signer = signer
        self.tip = tip
        self.feerate_per_kw = feerate_per_kw
        self.confirmations = confirmations or {}
        self.spends = spends or {}
        self.preimages = dict(channel.preimages) if preimages is None else preimages
        #: preimages the master knows (never reported back to it)
        self.master_hashes = set(channel.preimages) if master_hashes is None else master_hashes
        self.pinned_feerates = pinned_feerates or {}
        self.bumped_at = bumped_at or {}
        self.emitted = emitted or set()
        self.announced = announced or set()     # txids of the Broadcasts in force
        self.classification: Classification = classify(channel, commitment_tx)
        # caches of signed transactions (deterministic, so never persisted)
        self.sweep_cache: dict[tuple[SweepInput, int], SweepTx] = {}
        self.htlc_cache: dict[tuple, tuple] = {}

    @classmethod
    def start(cls, channel: OnchainChannel, spending_tx: Tx, height: int | None,
              signer: Signer) -> tuple["OnchainState", list[Output]]:
        """The funding output was spent by ``spending_tx`` (mined at ``height``)."""
        tip = max(channel.block_height, height or 0)
        st = cls(channel, spending_tx, signer, tip=tip, feerate_per_kw=channel.feerate_per_kw,
                 confirmations={} if height is None else {spending_tx.txid(): height})
        return st, st._update()

    # -- inputs ---------------------------------------------------------------------
    def handle(self, event: Input) -> list[Output]:
        handlers: dict[type, Callable[..., list[Output]]] = {
            TxConfirmed: lambda e: self.tx_confirmed(e.txid, e.height),
            OutputSpent: lambda e: self.output_spent(e.outpoint, e.spending_tx, e.height),
            BlockConnected: lambda e: self.block(e.height),
            BlockDisconnected: lambda e: self.block_disconnected(e.height),
            PreimageKnown: lambda e: self.preimage(e.payment_hash, e.preimage),
            FeerateChanged: lambda e: self.feerate_changed(e.feerate_per_kw),
        }
        return handlers[type(event)](event)

    def tx_confirmed(self, txid: bytes, height: int) -> list[Output]:
        known = txid == self.classification.txid
        for op, fact in self.spends.items():
            if fact.tx.txid() == txid:
                self.spends[op] = SpendFact(fact.tx, height)
                known = True
        if known:
            self.confirmations[txid] = height
        return self._update()

    def output_spent(self, outpoint: OutPoint, spending_tx: Tx, height: int | None) -> list[Output]:
        if not any(i.prevout == outpoint for i in spending_tx.inputs):
            raise ValueError(f"{spending_tx.txid_hex} does not spend {outpoint}")
        txid = spending_tx.txid()
        old = self.spends.get(outpoint)
        if height is None and old is not None and old.tx.txid() == txid:
            height = old.height          # a mempool sighting after the block: keep it
        self.spends[outpoint] = SpendFact(spending_tx, height)
        if height is not None:
            self.confirmations[txid] = height
        return self._update()

    def block(self, height: int) -> list[Output]:
        if height <= self.tip:
            return []
        self.tip = height
        self._auto_bump()
        return self._update()

    def block_disconnected(self, height: int) -> list[Output]:
        self.tip = min(self.tip, height - 1)
        self.confirmations = {t: h for t, h in self.confirmations.items() if h < height}
        for op, fact in list(self.spends.items()):
            if fact.height is not None and fact.height >= height:
                self.spends[op] = SpendFact(fact.tx, None)
        return self._update()

    def preimage(self, payment_hash: bytes, preimage: bytes) -> list[Output]:
        if sha256(preimage) != payment_hash:
            raise ValueError("preimage does not match the payment hash")
        self.preimages[payment_hash] = preimage
        self.master_hashes.add(payment_hash)
        return self._update()

    def feerate_changed(self, feerate_per_kw: int) -> list[Output]:
        """Feerate for sweeps built from now on (built ones keep theirs: see bump)."""
        self.feerate_per_kw = feerate_per_kw
        return []

    def bump(self, outpoint: OutPoint, feerate_per_kw: int) -> list[Output]:
        """Rebuild the sweep of ``outpoint`` at ``feerate_per_kw`` (capped so its
        output stays above dust); the new tx replaces the old by RBF."""
        r = self.resolution(outpoint)
        p = r.proposal
        if r.is_resolved or p is None or not p.bumpable or p.sweep is None:
            raise ValueError(f"{outpoint}: nothing of ours to bump")
        assert p.feerate_per_kw is not None
        new = min(feerate_per_kw, max_feerate(p.sweep, self.channel.sweep_scriptpubkey))
        if new > p.feerate_per_kw:
            self.pinned_feerates[outpoint] = new
        return self._update()

    def complete_htlc_tx(self, outpoint: OutPoint, extra_inputs: list[TxIn],
                         extra_outputs: list[TxOut]) -> Tx:
        """Anchors: our zero-fee HTLC tx for ``outpoint`` with the wallet's fee
        inputs and change appended, input 0 signed (the wallet signs the rest)."""
        p = self.resolution(outpoint).proposal
        if p is None or p.htlc_tx is None or p.htlc_sig is None or not p.needs_fee_inputs:
            raise ValueError(f"{outpoint}: no zero-fee HTLC transaction to complete")
        point = self.classification.per_commitment_point
        assert point is not None
        return add_fee_inputs(p.htlc_tx, p.htlc_sig, point, p.preimage, extra_inputs,
                              extra_outputs, self.signer)

    # -- views --------------------------------------------------------------------------
    def resolutions(self) -> list[Resolution]:
        return self._derive().resolutions

    def resolution(self, outpoint: OutPoint) -> Resolution:
        for r in self.resolutions():
            if r.outpoint == outpoint:
                return r
        raise KeyError(str(outpoint))

    def status_lines(self) -> list[str]:
        return [r.status_line(self.tip) for r in self.resolutions()]

    # -- persistence ----------------------------------------------------------------------
    def to_value(self) -> dict:
        """The state as `onchaind_state` (wire/csv/onchaind.csv) stores it."""
        from .persist import state_to_value
        return state_to_value(self)

    @classmethod
    def from_value(cls, value: dict, signer: Signer) -> "OnchainState":
        from .persist import state_from_value
        return state_from_value(value, signer)

    # -- used by derive ----------------------------------------------------------------
    def feerate_for(self, outpoint: OutPoint) -> int:
        """The feerate of this output's sweep, pinned on first use."""
        return self.pinned_feerates.setdefault(outpoint, self.feerate_per_kw)

    def build_sweep(self, sweep: SweepInput, feerate_per_kw: int) -> SweepTx:
        key = (sweep, feerate_per_kw)
        if key not in self.sweep_cache:
            self.sweep_cache[key] = build_sweep(sweep, self.channel.sweep_scriptpubkey,
                                                feerate_per_kw, self.signer)
        return self.sweep_cache[key]

    # -- internals ------------------------------------------------------------------------
    def _derive(self) -> Derived:
        # Preimages seen on chain may unlock other outputs: derive to a fixed point.
        while True:
            d = derive(self)
            new = {h: p for h, p in d.learned.items() if h not in self.preimages}
            if not new:
                return d
            self.preimages.update(new)

    def _auto_bump(self) -> None:
        for r in self._derive().resolutions:
            p = r.proposal
            if (r.is_resolved or p is None or not p.bumpable or p.tx is None or p.sweep is None
                    or p.deadline is None or p.not_before_height is None
                    or p.feerate_per_kw is None):
                continue
            # it could have been mined in the last block, and the deadline is near
            if self.tip < p.not_before_height or self.tip + 1 < p.deadline - BUMP_WINDOW:
                continue
            if self.bumped_at.get(r.outpoint) == self.tip:
                continue
            new = min(bumped_feerate(p.feerate_per_kw),
                      max_feerate(p.sweep, self.channel.sweep_scriptpubkey))
            if new > p.feerate_per_kw:
                self.pinned_feerates[r.outpoint] = new
                self.bumped_at[r.outpoint] = self.tip

    def _once(self, key: str) -> bool:
        if key in self.emitted:
            return False
        self.emitted.add(key)
        return True

    def _update(self) -> list[Output]:
        d = self._derive()
        outs: list[Output] = []
        for r in d.resolutions:
            watched = r.output_type not in _UNWATCHED and (
                not r.dust or r.output_type is OutputType.OUR_HTLC)   # its preimage matters
            if watched and self._once(f"watch:{r.outpoint}"):
                outs.append(Watch(r.outpoint))
        desired: dict[bytes, Broadcast] = {}
        for r in d.resolutions:
            p = r.proposal
            if r.is_resolved or p is None or p.tx is None or p.not_before_height is None:
                continue
            desired[p.tx.txid()] = Broadcast(p.tx, f"{r.name}->{p.action.value}",
                                             p.not_before_height, r.outpoint, p.feerate_per_kw,
                                             p.fee_sat, p.deadline, p.needs_fee_inputs)
        outs += [b for txid, b in desired.items() if txid not in self.announced]
        self.announced = set(desired)
        for h, pre in sorted(d.learned.items()):
            if h not in self.master_hashes and self._once(f"preimage:{h.hex()}"):
                outs.append(PreimageLearned(h, pre))
        outs += [HtlcFailed(hid) for hid in d.failed if self._once(f"failed:{hid}")]
        for r in d.resolutions:
            if r.is_resolved:
                assert r.resolved_by is not None and r.resolved_height is not None
                txid = "self" if r.resolved_txid is None else r.resolved_txid.hex()
                if self._once(f"resolved:{r.outpoint}:{txid}"):
                    outs.append(Resolved(r.outpoint, r.resolved_by, r.resolved_txid,
                                         r.resolved_height))
        outs += [Warn(w) for w in d.warnings if self._once(f"warn:{w}")]
        if all(r.irrevocably_resolved(self.tip) for r in d.resolutions) and self._once("all"):
            outs.append(AllResolved())
        return outs
