"""Coin selection for the on-chain wallet, with Core Lightning's arithmetic.

Units: amounts in satoshis, feerates in satoshis per 1000 weight units
("perkw", Core Lightning's unit).  A fee is ``feerate * weight // 1000``
(CLN's `amount_tx_fee`, rounded down), always computed on the weight of the
whole transaction:

* core: ``(version 4 + varint(#inputs) + varint(#outputs) + locktime 4) * 4``
  plus 2 for the segwit marker and flag (every wallet input is segwit);
* each output: ``(8 + varint(len(script)) + len(script)) * 4``;
* each input: its `Utxo.weight`, witness included: 272 for P2WPKH (outpoint,
  empty scriptSig, sequence = 164, plus a 72-byte signature and a key), 230
  for a P2TR key path (164 plus a 64-byte signature).

Selection (`select_coins`):

1. "all" (one target with ``amount=None``): every economical UTXO (worth more
   than its own input fee) is spent; that target gets what is left after the
   other targets and the fee.  No change.
2. Otherwise branch-and-bound (Bitcoin Core's BnB, depth first, largest
   effective value first, at most `max_tries` steps) looks for an input set
   whose value lands within ``[targets + fee, targets + fee + cost of change]``,
   so that no change output is needed; among those found it keeps the one
   wasting least.  The excess goes to the fee.
3. Failing that, largest-first: add UTXOs by decreasing effective value until
   targets and fee are covered.  Change is then whatever is left after the
   change output pays for its own weight; it is omitted (and given to the fee)
   when below the dust limit of its script type.

Dust limits: 330 sat for witness outputs (P2WPKH, P2WSH, P2TR), 546 for
others (P2PKH-ish).  Which UTXOs are eligible (minconf, reserved...) is the
caller's business.  `InsufficientFunds(needed, available)` when it cannot work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Optional, Sequence

from .script import witness_program
from .serialize import ser_compact_size
from .tx import TxOut

P2WPKH_INPUT_WEIGHT = 272
P2TR_INPUT_WEIGHT = 230
INPUT_WEIGHT = {"p2wpkh": P2WPKH_INPUT_WEIGHT, "p2tr": P2TR_INPUT_WEIGHT}
SCRIPT_LEN = {"p2wpkh": 22, "p2tr": 34}
WITNESS_DUST_LIMIT = 330
LEGACY_DUST_LIMIT = 546
BNB_MAX_TRIES = 100_000

ScriptType = Literal["p2wpkh", "p2tr"]


class InsufficientFunds(Exception):
    """Not enough (economical) funds: `needed` sat would be required, `available` sat exist."""

    def __init__(self, needed: int, available: int, detail: str = ""):
        self.needed, self.available = needed, available
        super().__init__(f"insufficient funds: need {needed} sat, have {available} sat"
                         + (f" ({detail})" if detail else ""))


# --- weights and fees ------------------------------------------------------------------

def tx_fee(feerate_perkw: int, weight: int) -> int:
    """Core Lightning's amount_tx_fee: feerate * weight / 1000, rounded down."""
    return feerate_perkw * weight // 1000


def core_weight(n_inputs: int, n_outputs: int) -> int:
    """Version, counts, locktime (x4) and the segwit marker and flag."""
    return (4 + len(ser_compact_size(n_inputs)) + len(ser_compact_size(n_outputs)) + 4) * 4 + 2


def output_weight(script_len: int) -> int:
    return (8 + len(ser_compact_size(script_len)) + script_len) * 4


def tx_weight(input_weights: Iterable[int], output_script_lens: Iterable[int]) -> int:
    iw, ol = list(input_weights), list(output_script_lens)
    return core_weight(len(iw), len(ol)) + sum(iw) + sum(output_weight(n) for n in ol)


def dust_limit(script: bytes | str) -> int:
    """330 for witness outputs (a script, or "p2wpkh"/"p2tr"), 546 otherwise."""
    if isinstance(script, str):
        return WITNESS_DUST_LIMIT if script in SCRIPT_LEN else LEGACY_DUST_LIMIT
    return WITNESS_DUST_LIMIT if witness_program(script) is not None else LEGACY_DUST_LIMIT


# --- inputs, targets, result ------------------------------------------------------------

@dataclass(frozen=True)
class Utxo:
    """A spendable coin: its value and the weight its input adds (witness included).
    `ref` is the caller's handle (outpoint, database row...), passed through."""
    amount: int
    weight: int
    ref: Any = None

    @classmethod
    def of_type(cls, amount: int, script_type: ScriptType, ref: Any = None) -> "Utxo":
        return cls(amount, INPUT_WEIGHT[script_type], ref)

    def fee(self, feerate_perkw: int) -> int:
        return tx_fee(feerate_perkw, self.weight)


@dataclass(frozen=True)
class Target:
    """An output to create; ``amount=None`` means "all" (what is left after the fee)."""
    script_pubkey: bytes
    amount: Optional[int]


@dataclass(frozen=True)
class Selection:
    inputs: tuple[Utxo, ...]
    outputs: tuple[TxOut, ...]   # the targets, amounts resolved, in the order given
    change: int                  # change output amount; 0 when there is none
    change_script_len: int       # what weight estimates assumed for the change output
    fee: int                     # inputs - outputs - change: what the transaction pays
    weight: int                  # estimated weight, change output included if any
    method: str                  # "all", "bnb" or "largest-first"

    @property
    def input_total(self) -> int:
        return sum(u.amount for u in self.inputs)

    @property
    def has_change(self) -> bool:
        return self.change > 0

    @property
    def feerate_perkw(self) -> int:
        """The feerate actually paid (rounded down)."""
        return self.fee * 1000 // self.weight


# --- selection ------------------------------------------------------------------------------

def select_coins(utxos: Sequence[Utxo], targets: Sequence[Target | TxOut], feerate_perkw: int,
                 change_type: ScriptType = "p2tr", *,
                 strategy: Literal["auto", "largest-first"] = "auto",
                 max_tries: int = BNB_MAX_TRIES) -> Selection:
    """Choose inputs for `targets` at `feerate_perkw`; see the module docstring."""
    if feerate_perkw < 0:
        raise ValueError("negative feerate")
    if change_type not in SCRIPT_LEN:
        raise ValueError(f"change type must be one of {', '.join(SCRIPT_LEN)}")
    tgts = [t if isinstance(t, Target) else Target(t.script_pubkey, t.value) for t in targets]
    if not tgts:
        raise ValueError("no outputs to create")
    alls = [i for i, t in enumerate(tgts) if t.amount is None]
    if len(alls) > 1:
        raise ValueError("only one output can take \"all\"")
    for t in tgts:
        if t.amount is not None and t.amount < dust_limit(t.script_pubkey):
            raise ValueError(f"output of {t.amount} sat is below the dust limit {dust_limit(t.script_pubkey)}")
    if any(u.amount < 0 or u.weight <= 0 for u in utxos):
        raise ValueError("UTXOs need a non-negative amount and a positive weight")
    lens = [len(t.script_pubkey) for t in tgts]
    fixed = sum(t.amount for t in tgts if t.amount is not None)
    # economical coins, largest effective value first (ties: smaller weight, then larger amount)
    usable = sorted((u for u in utxos if u.amount * 1000 > feerate_perkw * u.weight),
                    key=lambda u: (-(u.amount * 1000 - feerate_perkw * u.weight), u.weight, -u.amount))
    if alls:
        return _select_all(usable, tgts, alls[0], lens, fixed, feerate_perkw, utxos)
    if strategy == "auto":
        sel = _branch_and_bound(usable, tgts, lens, fixed, feerate_perkw, change_type, max_tries)
        if sel is not None:
            return sel
    elif strategy != "largest-first":
        raise ValueError(f"unknown strategy {strategy!r}")
    return _largest_first(usable, tgts, lens, fixed, feerate_perkw, change_type, utxos)


def _outputs(tgts: list[Target], all_index: Optional[int] = None, all_amount: int = 0) -> tuple[TxOut, ...]:
    return tuple(TxOut(all_amount if i == all_index else t.amount, t.script_pubkey) for i, t in enumerate(tgts))


def _select_all(usable, tgts, all_index, lens, fixed, feerate, utxos) -> Selection:
    total = sum(u.amount for u in usable)
    weight = tx_weight((u.weight for u in usable), lens)
    fee = tx_fee(feerate, weight)
    amount = total - fixed - fee
    floor = dust_limit(tgts[all_index].script_pubkey)
    if not usable or amount < floor:
        raise InsufficientFunds(fixed + fee + floor, sum(u.amount for u in utxos),
                                "nothing left for the \"all\" output" if usable else "no economical UTXO")
    return Selection(tuple(usable), _outputs(tgts, all_index, amount), 0, 0, fee, weight, "all")


def _no_change(chosen, tgts, lens, fixed, feerate, method) -> Optional[Selection]:
    """Exact check of a change-less selection; the excess goes to the fee."""
    weight = tx_weight((u.weight for u in chosen), lens)
    fee = sum(u.amount for u in chosen) - fixed
    if fee < tx_fee(feerate, weight):
        return None
    return Selection(tuple(chosen), _outputs(tgts), 0, 0, fee, weight, method)


def _branch_and_bound(usable, tgts, lens, fixed, feerate, change_type, max_tries) -> Optional[Selection]:
    """Bitcoin Core's SelectCoinsBnB on effective values, in millisatoshi-like units
    (amount*1000 - feerate*weight) so that no rounding creeps in."""
    values = [u.amount * 1000 - feerate * u.weight for u in usable]
    # what the outputs and the transaction skeleton cost (1-byte input count assumed; checked exactly after)
    target = fixed * 1000 + feerate * (core_weight(1, len(lens)) + sum(output_weight(n) for n in lens))
    cost_of_change = feerate * (output_weight(SCRIPT_LEN[change_type]) + INPUT_WEIGHT[change_type])
    upper = target + cost_of_change
    available = sum(values)
    if available < target:
        return None
    best: Optional[list[int]] = None
    best_waste = None
    selection: list[int] = []
    value = 0
    i = 0
    for _ in range(max_tries):
        backtrack = False
        if value + available < target or value > upper:
            backtrack = True
        elif value >= target:
            waste = value - target
            if best_waste is None or waste <= best_waste:
                best, best_waste = list(selection), waste
                if waste == 0:
                    break
            backtrack = True
        if backtrack:
            if not selection:
                break
            # give back the values skipped since the last included one, then exclude it
            i -= 1
            while i > selection[-1]:
                available += values[i]
                i -= 1
            value -= values[i]
            selection.pop()
        else:
            available -= values[i]
            # skip an input equal to the one just excluded: that branch was explored
            if not selection or i - 1 == selection[-1] or values[i] != values[i - 1] \
                    or usable[i].weight != usable[i - 1].weight:
                selection.append(i)
                value += values[i]
        i += 1
    if best is None:
        return None
    return _no_change([usable[j] for j in best], tgts, lens, fixed, feerate, "bnb")


def _largest_first(usable, tgts, lens, fixed, feerate, change_type, utxos) -> Selection:
    chosen: list[Utxo] = []
    total = 0
    change_len = SCRIPT_LEN[change_type]
    for u in usable:
        chosen.append(u)
        total += u.amount
        weights = [c.weight for c in chosen]
        w_plain = tx_weight(weights, lens)
        if total - fixed < tx_fee(feerate, w_plain):
            continue
        w_change = tx_weight(weights, lens + [change_len])
        change = total - fixed - tx_fee(feerate, w_change)
        if change >= dust_limit(change_type):
            return Selection(tuple(chosen), _outputs(tgts), change, change_len,
                             total - fixed - change, w_change, "largest-first")
        return Selection(tuple(chosen), _outputs(tgts), 0, 0, total - fixed, w_plain, "largest-first")
    needed = fixed + tx_fee(feerate, tx_weight((u.weight for u in usable), lens))
    raise InsufficientFunds(needed, sum(u.amount for u in utxos))
