"""From the chain facts to one :class:`Resolution` per tracked output.

Everything here is recomputed from scratch on every event, from the facts
``OnchainState`` keeps (confirmation heights, spends, preimages, the feerate
pinned for each sweep, the tip), so a reorg is only the removal of facts and
a replay is harmless.  Signatures are deterministic (RFC 6979), so rebuilding
a transaction gives the same txid.

Per output (BOLT 5), with ``conf`` the confirmation height of the tx holding
it and ``delay`` the CSV delay of its script:

=================================  ================================  =====================
output                             action                            mined from height
=================================  ================================  =====================
our to_local                       sweep, delayed key                conf + delay
our HTLC, our commitment           HTLC-timeout (peer-signed)        max(cltv+1, conf[+1])
their HTLC, our commitment         HTLC-success if preimage          conf [+1]
output of our HTLC tx              sweep, delayed key                conf + delay
our to_remote (their commitment)   nothing (P2WPKH the wallet        -
                                   watches); anchors: sweep          conf + 1
our HTLC, their commitment         direct timeout spend              max(cltv+1, conf[+1])
their HTLC, their commitment       direct success if preimage        conf [+1]
revoked: to_local, every HTLC      penalty, revocation key           conf
revoked: their HTLC tx output      penalty, revocation key           conf of the HTLC tx
anchors, their outputs             nothing                           -
=================================  ================================  =====================

``[+1]``: with option_anchors every HTLC spend carries a 1-block CSV.
Their HTLC without a known preimage is left to them: once expired it counts
as resolved (BOLT 5), unless a spend shows up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bitcoin.hashes import sha256
from bitcoin.script import p2wsh_script
from bitcoin.tx import OutPoint, Tx
from common.commitment import CommitmentOutput, OutputKind, Side
from common.htlc_tx import build_htlc_tx
from common.scripts import to_local_script

from .classify import MatchedOutput
from .model import OutputType, Proposal, Resolution, TxType
from .sweep import SEQUENCE_RBF, SpendPath, SweepInput, sign_htlc_tx

if TYPE_CHECKING:
    from .resolve import OnchainState

T, O = TxType, OutputType

#: outputs resolved by the tx holding them (nothing to watch or do)
SELF_RESOLVED = {O.OUTPUT_TO_US: T.SELF, O.ANCHOR_TO_US: T.SELF, O.OUTPUT_TO_THEM: T.IGNORED,
                 O.DELAYED_OUTPUT_TO_THEM: T.IGNORED, O.ANCHOR_TO_THEM: T.IGNORED,
                 O.UNKNOWN_OUTPUT: T.IGNORED}

#: how an HTLC we offered can end with our money back
OUR_TIMEOUTS = (T.OUR_HTLC_TIMEOUT_TX, T.OUR_HTLC_TIMEOUT_TO_US, T.OUR_PENALTY_TX)


@dataclass
class Derived:
    resolutions: list[Resolution]
    learned: dict[bytes, bytes] = field(default_factory=dict)   # preimages seen on chain
    warnings: list[str] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)             # HTLC ids to fail upstream


def _is_2of2(w: list[bytes]) -> bool:
    """``0 <sig> <sig> <preimage or empty> <script>``: an HTLC-success/timeout tx."""
    return len(w) == 5 and w[0] == b""


def _is_revocation(w: list[bytes]) -> bool:
    """``<sig> <revocationpubkey> <script>`` on an HTLC output."""
    return len(w) == 3 and len(w[1]) == 33


def _preimage_in(w: list[bytes], payment_hash: bytes) -> bytes | None:
    for item in w:
        if len(item) == 32 and sha256(item) == payment_hash:
            return item
    return None


def _plus(height: int | None, n: int) -> int | None:
    return None if height is None else height + n


class _Deriver:
    def __init__(self, st: "OnchainState"):
        self.st = st
        self.ch = st.channel
        self.cls = st.classification
        self.anchors = self.ch.setup.option_anchors
        self.d = Derived([])
        self.tracked: set[OutPoint] = set()

    def run(self) -> Derived:
        st, cls, setup = self.st, self.cls, self.ch.setup
        conf = st.confirmations.get(cls.txid)
        rebuilt = cls.which in ("latest", "current", "next")    # revoked: nothing to rebuild
        note = "" if cls.exact or not rebuilt else \
            "differs from the commitment rebuilt from our state: outputs matched by script"
        self._add(Resolution(setup.funding_outpoint, setup.funding_sat, T.FUNDING_TRANSACTION,
                             O.FUNDING_OUTPUT, None, resolved_by=cls.kind, resolved_txid=cls.txid,
                             resolved_height=conf, note=note))
        if cls.kind is T.UNKNOWN_SPEND:
            self.d.warnings.append(f"funding output spent by unknown tx {cls.txid[::-1].hex()}: "
                                   "funds may be lost")
        elif cls.kind is T.UNKNOWN_UNILATERAL:
            self.d.warnings.append(f"unknown commitment {cls.commitment_number} "
                                   f"{cls.txid[::-1].hex()}: only our to_remote is recoverable")
        for m in cls.outputs:
            self._track(self._root(m, conf))
        self.d.failed = self._failed(conf)
        return self.d

    def _add(self, r: Resolution) -> None:
        self.d.resolutions.append(r)
        self.tracked.add(r.outpoint)

    # -- outputs of the spending commitment ------------------------------------
    def _root(self, m: MatchedOutput, conf: int | None) -> Resolution:
        cls = self.cls
        ours = cls.holder is Side.LOCAL          # our commitment
        k = m.kind
        if k is None:
            ot = O.UNKNOWN_OUTPUT
            if cls.kind is not T.UNKNOWN_UNILATERAL:
                self.d.warnings.append(f"unrecognised output {m.index} of {cls.txid[::-1].hex()}")
        elif k is OutputKind.TO_LOCAL:
            ot = O.DELAYED_OUTPUT_TO_US if ours else (
                O.DELAYED_CHEAT_OUTPUT_TO_THEM if cls.kind is T.THEIR_REVOKED_UNILATERAL
                else O.DELAYED_OUTPUT_TO_THEM)
        elif k is OutputKind.TO_REMOTE:
            ot = O.OUTPUT_TO_THEM if ours else (
                O.ANCHORED_OUTPUT_TO_US if self.anchors else O.OUTPUT_TO_US)
        elif k is OutputKind.LOCAL_ANCHOR:
            ot = O.ANCHOR_TO_US if ours else O.ANCHOR_TO_THEM
        elif k is OutputKind.REMOTE_ANCHOR:
            ot = O.ANCHOR_TO_THEM if ours else O.ANCHOR_TO_US
        else:
            offered_by_holder = k is OutputKind.OFFERED_HTLC
            ot = O.OUR_HTLC if offered_by_holder == ours else O.THEIR_HTLC
        r = Resolution(OutPoint(cls.txid, m.index), m.amount_sat, cls.kind, ot, conf, htlc=m.htlc,
                       witness_script=m.witness_script, parent=self.ch.setup.funding_outpoint)
        if ot in SELF_RESOLVED:
            r.resolved_by, r.resolved_height = SELF_RESOLVED[ot], conf
            if ot is O.OUTPUT_TO_US:
                r.note = "paid to our payment basepoint: the wallet's"
            elif ot is O.ANCHOR_TO_US:
                r.note = "left to the wallet for CPFP"
        return r

    def _track(self, r: Resolution) -> None:
        self._add(r)
        if r.resolved_by is not None:
            return
        fact = self.st.spends.get(r.outpoint)
        if fact is not None:
            idx = next(i for i, txin in enumerate(fact.tx.inputs) if txin.prevout == r.outpoint)
            by, children = self._analyze(r, fact.tx, idx, fact.height)
            if fact.height is not None:
                r.resolved_by, r.resolved_txid, r.resolved_height = by, fact.tx.txid(), fact.height
            else:
                r.pending_spend_txid = fact.tx.txid()
                r.note = f"unconfirmed {by.value} {r.pending_spend_txid[::-1].hex()}"
            for c in children:
                if c.outpoint not in self.tracked:
                    self._track(c)
            if r.is_resolved:
                return
        self._propose(r)

    # -- who spent it ---------------------------------------------------------------
    def _analyze(self, r: Resolution, tx: Tx, idx: int,
                 height: int | None) -> tuple[TxType, list[Resolution]]:
        w = tx.inputs[idx].witness
        ot, tt, h = r.output_type, r.tx_type, r.htlc
        if h is not None:
            pre = _preimage_in(w, h.payment_hash)
            if pre is not None:
                self.d.learned[h.payment_hash] = pre
        if ot is O.DELAYED_OUTPUT_TO_US:
            return (T.THEIR_PENALTY_TX if w[1:2] == [b"\x01"] else T.OUR_DELAYED_RETURN_TO_WALLET), []
        if ot is O.DELAYED_CHEAT_OUTPUT_TO_THEM:
            return (T.OUR_PENALTY_TX if w[1:2] == [b"\x01"] else T.THEIR_DELAYED_TO_THEM), []
        if ot is O.ANCHORED_OUTPUT_TO_US:
            return T.OUR_TO_REMOTE_SWEEP, []
        if ot not in (O.OUR_HTLC, O.THEIR_HTLC):
            return T.UNKNOWN_SPEND, []
        if _is_revocation(w):
            return (T.OUR_PENALTY_TX if tt is T.THEIR_REVOKED_UNILATERAL else T.THEIR_PENALTY_TX), []
        if tt is T.OUR_UNILATERAL:
            if _is_2of2(w):
                typ = T.OUR_HTLC_TIMEOUT_TX if ot is O.OUR_HTLC else T.OUR_HTLC_SUCCESS_TX
                return typ, self._second_stage(r, tx, idx, height, typ, O.DELAYED_OUTPUT_TO_US)
            return (T.THEIR_HTLC_FULFILL_TO_THEM if ot is O.OUR_HTLC
                    else T.THEIR_HTLC_TIMEOUT_TO_THEM), []
        if _is_2of2(w):      # their HTLC tx on their commitment
            typ = T.THEIR_HTLC_SUCCESS_TX if ot is O.OUR_HTLC else T.THEIR_HTLC_TIMEOUT_TX
            if tt is T.THEIR_REVOKED_UNILATERAL:
                return typ, self._second_stage(r, tx, idx, height, typ, O.DELAYED_CHEAT_OUTPUT_TO_THEM)
            return typ, []
        return (T.OUR_HTLC_TIMEOUT_TO_US if ot is O.OUR_HTLC else T.OUR_HTLC_SUCCESS_TO_US), []

    def _second_stage(self, r: Resolution, tx: Tx, idx: int, height: int | None,
                      typ: TxType, ot: OutputType) -> list[Resolution]:
        """The output of an HTLC tx: at the spending input's index (anchors pair
        them by SIGHASH_SINGLE), else the first unclaimed one with the script."""
        params = self.cls.params
        assert params is not None
        k = params.keys
        ws = to_local_script(k.revocation_pubkey, params.to_self_delay, k.holder_delayed_pubkey)
        spk = p2wsh_script(ws)
        txid = tx.txid()
        candidates = [idx] + [j for j in range(len(tx.outputs)) if j != idx]
        for j in candidates:
            if j < len(tx.outputs) and tx.outputs[j].script_pubkey == spk \
                    and OutPoint(txid, j) not in self.tracked:
                return [Resolution(OutPoint(txid, j), tx.outputs[j].value, typ, ot, height,
                                   htlc=r.htlc, witness_script=ws, parent=r.outpoint)]
        self.d.warnings.append(f"{typ.value} {txid[::-1].hex()} has no output we recognise")
        return []

    # -- what we do with an unspent output ------------------------------------------
    def _propose(self, r: Resolution) -> None:
        cls, ot = self.cls, r.output_type
        params = cls.params
        conf = r.created_height
        ws = r.witness_script
        assert ws is not None
        if ot is O.ANCHORED_OUTPUT_TO_US:
            self._sweep(r, SweepInput(SpendPath.TO_REMOTE_ANCHORED, r.outpoint, r.amount_sat, ws, 1),
                        T.OUR_TO_REMOTE_SWEEP, _plus(conf, 1), None)
            return
        assert params is not None
        delay = params.to_self_delay
        if ot is O.DELAYED_OUTPUT_TO_US:
            self._sweep(r, SweepInput(SpendPath.DELAYED_TO_US, r.outpoint, r.amount_sat, ws, delay,
                                      per_commitment_point=cls.per_commitment_point),
                        T.OUR_DELAYED_RETURN_TO_WALLET, _plus(conf, delay), None)
        elif ot is O.DELAYED_CHEAT_OUTPUT_TO_THEM:
            self._sweep(r, SweepInput(SpendPath.PENALTY_TO_LOCAL, r.outpoint, r.amount_sat, ws,
                                      SEQUENCE_RBF, revocation_secret=cls.per_commitment_secret),
                        T.OUR_PENALTY_TX, conf, _plus(conf, delay))
        elif ot in (O.OUR_HTLC, O.THEIR_HTLC):
            h = r.htlc
            assert h is not None
            if r.tx_type is T.THEIR_REVOKED_UNILATERAL:
                # They can take our HTLC at once (preimage), theirs after it expires.
                deadline = conf if ot is O.OUR_HTLC else h.cltv_expiry + 1
                self._sweep(r, SweepInput(SpendPath.PENALTY_HTLC, r.outpoint, r.amount_sat, ws,
                                          SEQUENCE_RBF, revocation_secret=cls.per_commitment_secret,
                                          revocation_pubkey=params.keys.revocation_pubkey),
                            T.OUR_PENALTY_TX, conf, deadline)
                return
            preimage = self.st.preimages.get(h.payment_hash)
            if ot is O.THEIR_HTLC and preimage is None:
                self._await_preimage(r)
            elif r.tx_type is T.OUR_UNILATERAL:
                self._our_htlc_tx(r, preimage)
            else:
                csv = 1 if self.anchors else 0
                seq = 1 if self.anchors else SEQUENCE_RBF
                point = cls.per_commitment_point
                if ot is O.OUR_HTLC:
                    nb = None if conf is None else max(h.cltv_expiry + 1, conf + csv)
                    self._sweep(r, SweepInput(SpendPath.REMOTE_HTLC_TIMEOUT, r.outpoint, r.amount_sat,
                                              ws, seq, h.cltv_expiry, per_commitment_point=point),
                                T.OUR_HTLC_TIMEOUT_TO_US, nb, nb)
                else:
                    self._sweep(r, SweepInput(SpendPath.REMOTE_HTLC_SUCCESS, r.outpoint, r.amount_sat,
                                              ws, seq, per_commitment_point=point, preimage=preimage),
                                T.OUR_HTLC_SUCCESS_TO_US, _plus(conf, csv), h.cltv_expiry + 1)

    def _await_preimage(self, r: Resolution) -> None:
        h = r.htlc
        assert h is not None
        r.proposal = Proposal(T.THEIR_HTLC_TIMEOUT_TO_THEM, h.cltv_expiry + 1)
        r.note = "no preimage: theirs to time out"
        if r.created_height is not None and self.st.tip >= h.cltv_expiry:
            r.resolved_by, r.resolved_height = T.IGNORED, max(r.created_height, h.cltv_expiry)
            r.note = "expired without preimage"

    def _sweep(self, r: Resolution, sweep: SweepInput, action: TxType,
               not_before: int | None, deadline: int | None) -> None:
        feerate = self.st.feerate_for(r.outpoint)
        built = self.st.build_sweep(sweep, feerate)
        if built.is_dust:
            r.dust = True
            r.resolved_by, r.resolved_height = T.IGNORED, r.created_height
            if r.output_type is O.OUR_HTLC and r.htlc is not None and r.created_height is not None:
                # the peer may still claim it with the preimage until it expires
                r.resolved_height = max(r.created_height, r.htlc.cltv_expiry)
            r.note = (f"dust: {r.amount_sat} sat cannot pay its {built.fee_sat} sat fee "
                      f"at {feerate} sat/kw")
            return
        r.proposal = Proposal(action, not_before, deadline, built.tx, feerate, built.fee_sat,
                              built.weight, bumpable=True, sweep=sweep)

    def _our_htlc_tx(self, r: Resolution, preimage: bytes | None) -> None:
        """HTLC-timeout/success tx of our commitment, with the peer's signature."""
        cls, h = self.cls, r.htlc
        params = cls.params
        assert params is not None and h is not None and cls.per_commitment_point is not None
        conf = r.created_height
        offered = r.output_type is O.OUR_HTLC
        csv_nb = _plus(conf, 1 if self.anchors else 0)
        nb = None if csv_nb is None else (max(h.cltv_expiry + 1, csv_nb) if offered else csv_nb)
        action = T.OUR_HTLC_TIMEOUT_TX if offered else T.OUR_HTLC_SUCCESS_TX
        deadline = None if offered else h.cltv_expiry + 1
        htlc_indexes = [m.index for m in cls.outputs if m.htlc is not None]
        pos = htlc_indexes.index(r.outpoint.index)
        sigs = self.ch.local.htlc_signatures
        if pos >= len(sigs):
            r.proposal = Proposal(action, nb, deadline, error="no peer signature for this HTLC")
            return
        key = (r.outpoint, preimage)
        cached = self.st.htlc_cache.get(key)
        if cached is None:
            kind = OutputKind.OFFERED_HTLC if offered else OutputKind.RECEIVED_HTLC
            out = CommitmentOutput(kind, r.amount_sat, p2wsh_script(r.witness_script or b""),
                                   r.witness_script, h)
            htlc = build_htlc_tx(params, self.st.commitment_tx, r.outpoint.index, out)
            if not htlc.verify_counterparty_sig(params.keys.counterparty_htlc_pubkey, sigs[pos]):
                cached = (htlc, "the peer's HTLC signature does not verify")
            else:
                sign_htlc_tx(htlc.tx, 0, htlc, sigs[pos], cls.per_commitment_point, preimage,
                             self.st.signer)
                cached = (htlc, "")
            self.st.htlc_cache[key] = cached
        htlc, error = cached
        if error:
            r.proposal = Proposal(action, nb, deadline, error=error)
            return
        r.proposal = Proposal(action, nb, deadline, htlc.tx, params.feerate_per_kw,
                              r.amount_sat - htlc.tx.outputs[0].value, htlc.tx.weight(),
                              needs_fee_inputs=self.anchors, htlc_tx=htlc, htlc_sig=sigs[pos],
                              preimage=preimage)

    # -- HTLCs to fail upstream -------------------------------------------------------
    def _failed(self, conf: int | None) -> list[int]:
        if conf is None or self.cls.kind in (T.UNKNOWN_SPEND, T.UNKNOWN_UNILATERAL):
            return []
        tip, depth = self.st.tip, self.ch.reasonable_depth
        present = {r.htlc.htlc_id: r for r in self.d.resolutions
                   if r.output_type is O.OUR_HTLC and r.htlc is not None
                   and r.htlc.offerer is Side.LOCAL and r.tx_type is self.cls.kind}
        failed = []
        for hid, h in sorted(self.ch.live_outgoing_htlcs().items()):
            if h.payment_hash in self.st.preimages or h.payment_hash in self.d.learned:
                continue
            r = present.get(hid)
            if r is None:
                if tip - conf + 1 >= depth:      # no output: trimmed, or not in this commitment
                    failed.append(hid)
            elif r.resolved_by in OUR_TIMEOUTS and r.depth(tip) >= depth:
                failed.append(hid)
            elif r.dust and r.resolved_txid is None and tip - h.cltv_expiry + 1 >= depth:
                failed.append(hid)        # not worth claiming: failed once expired
        return failed


def derive(st: "OnchainState") -> Derived:
    return _Deriver(st).run()
