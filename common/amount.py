"""Millisatoshi amounts: Core Lightning-style parsing/formatting and the
BOLT 11 human-readable-part amount (with its m/u/n/p multipliers).

Every amount inside the node is a plain ``int`` of millisatoshis; these helpers
are the only places where strings turn into amounts, so all the validation
(negative, more than 21 million BTC, sub-millisatoshi precision, garbage) lives
here and reports a typed :class:`AmountError`.
"""
from __future__ import annotations

import re
from typing import Literal

MSAT_PER_SAT = 1_000
SAT_PER_BTC = 100_000_000
MSAT_PER_BTC = MSAT_PER_SAT * SAT_PER_BTC
# No valid amount can exceed the total bitcoin supply; refusing larger values
# early catches typos (and keeps everything well inside a u64).
MAX_MSAT = 21_000_000 * MSAT_PER_BTC

Unit = Literal["msat", "sat", "btc"]

# msat per one unit
_UNIT_MSAT: dict[str, int] = {"msat": 1, "sat": MSAT_PER_SAT, "btc": MSAT_PER_BTC}

# Digits, optional fraction, optional unit. Deliberately strict (no signs,
# exponents, underscores or whitespace) like Core Lightning's parser, so that
# "1e3sat" or "1_000" are rejected rather than silently interpreted.
_AMOUNT_RE = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?(?P<unit>msat|sat|btc)?")


class AmountError(ValueError):
    """An amount string or value that is not acceptable; the message says why."""


def _check_range(msat: int, what: str, limit: int = MAX_MSAT) -> int:
    if msat < 0:
        raise AmountError(f"{what}: amount must not be negative")
    if msat > limit:
        raise AmountError(f"{what}: amount exceeds 21 million BTC" if limit == MAX_MSAT
                          else f"{what}: amount exceeds {limit}msat")
    return msat


def parse_amount_msat(value: str | int, default_unit: Unit = "msat",
                      allow_any: bool = False, limit: int = MAX_MSAT) -> int | None:
    """Parse a Core Lightning-style amount into millisatoshis.

    Accepts ``"10000msat"``, ``"10sat"``, ``"1.5sat"`` (= 1500msat),
    ``"0.1btc"``, and plain numbers (a JSON int or digit string) which are taken
    in ``default_unit`` — "msat" for msat-typed parameters, "sat" for
    sat-typed ones, as Core Lightning does.  ``"any"`` returns ``None`` when
    ``allow_any`` (e.g. the invoice ``amount_msat`` parameter), else it is an
    error.  Raises :class:`AmountError` for negative values, values above 21M
    BTC (``limit``: options take up to a u64 of msat, as Core Lightning's),
    sub-millisatoshi precision and anything unparseable.
    """
    if default_unit not in _UNIT_MSAT:
        raise ValueError(f"unknown default unit {default_unit!r}")
    # bool is an int subclass; True as an amount is certainly a caller bug.
    if isinstance(value, bool):
        raise AmountError(f"{value!r}: not an amount")
    if isinstance(value, int):
        return _check_range(value * _UNIT_MSAT[default_unit], repr(value), limit)
    if not isinstance(value, str):
        raise AmountError(f"{value!r}: not an amount")
    if value == "any":
        if allow_any:
            return None
        raise AmountError("'any' is not allowed here")
    if value.startswith("-"):
        raise AmountError(f"{value!r}: amount must not be negative")
    m = _AMOUNT_RE.fullmatch(value)
    if m is None:
        raise AmountError(f"{value!r}: not a valid amount (expected e.g. 1000msat, 10sat, 0.001btc)")
    unit = m["unit"] or default_unit
    per_unit = _UNIT_MSAT[unit]
    frac = m["frac"] or ""
    # Exact integer arithmetic: whole.frac * per_unit must be a whole msat.
    scaled = int(m["whole"] + frac) * per_unit
    denom = 10 ** len(frac)
    if scaled % denom:
        raise AmountError(f"{value!r}: sub-millisatoshi precision is not allowed")
    return _check_range(scaled // denom, repr(value), limit)


def parse_amount_sat(value: str | int) -> int:
    """Parse an amount that must be whole satoshis (e.g. channel funding);
    plain numbers are satoshis.  Returns satoshis."""
    msat = parse_amount_msat(value, default_unit="sat")
    assert msat is not None
    if msat % MSAT_PER_SAT:
        raise AmountError(f"{value!r}: amount must be a whole number of satoshis")
    return msat // MSAT_PER_SAT


def fmt_msat(msat: int) -> str:
    """``1234`` -> ``"1234msat"`` (Core Lightning's JSON string form)."""
    return f"{msat}msat"


def fmt_sat(sat: int) -> str:
    """``10`` -> ``"10sat"``."""
    return f"{sat}sat"


def fmt_btc(msat: int) -> str:
    """Millisatoshis as exact BTC with up to 11 decimals: 150000000 -> ``"0.0015btc"``."""
    sign = "-" if msat < 0 else ""
    whole, frac = divmod(abs(msat), MSAT_PER_BTC)
    frac_s = f"{frac:011d}".rstrip("0")
    return f"{sign}{whole}.{frac_s}btc" if frac_s else f"{sign}{whole}btc"


# --- BOLT 11 human-readable-part amounts ------------------------------------

# BOLT 11: amount is in bitcoin, times an optional multiplier.  Expressed as
# msat per unit *times 10* so 'p' (0.1 msat) stays an integer, as in Core
# Lightning's table.
_MULT_MSAT10: dict[str, int] = {
    "": 10 * MSAT_PER_BTC,
    "m": 10 * MSAT_PER_BTC // 1_000,
    "u": 10 * MSAT_PER_BTC // 1_000_000,
    "n": 10 * MSAT_PER_BTC // 1_000_000_000,
    "p": 1,
}


def bolt11_amount_decode(s: str) -> int:
    """BOLT 11 hrp amount (e.g. ``"2500u"``) -> millisatoshis.

    Fails (AmountError) on a non-digit, a bad multiplier letter, a ``p``
    amount whose last decimal is not 0 (sub-millisatoshi precision), zero,
    and more than 21M BTC.
    """
    if not s:
        raise AmountError("empty amount")
    mult = ""
    digits = s
    if not s[-1].isdigit():
        mult, digits = s[-1], s[:-1]
        if mult not in _MULT_MSAT10:
            raise AmountError(f"invalid multiplier {mult!r} in amount {s!r}")
    # str.isdigit() would accept e.g. superscripts; only ASCII digits are valid.
    if not digits or not all("0" <= c <= "9" for c in digits):
        raise AmountError(f"invalid amount {s!r}: not a decimal number followed by a multiplier")
    # Bound the size before multiplying so absurd strings cannot cost much.
    if len(digits.lstrip("0")) > 30:
        raise AmountError(f"invalid amount {s!r}: exceeds 21 million BTC")
    msat10 = int(digits) * _MULT_MSAT10[mult]
    if msat10 % 10:
        raise AmountError(f"invalid sub-millisatoshi precision in amount {s!r}")
    msat = msat10 // 10
    if msat == 0:
        raise AmountError(f"invalid amount {s!r}: must be positive")
    return _check_range(msat, f"invalid amount {s!r}")


def bolt11_amount_encode(msat: int) -> str:
    """Millisatoshis -> the shortest BOLT 11 amount string (largest multiplier
    that represents it exactly; ``p`` with a trailing 0 when nothing else fits)."""
    if isinstance(msat, bool) or not isinstance(msat, int) or msat <= 0:
        raise AmountError(f"invalid invoice amount {msat!r}: must be a positive integer of msat")
    _check_range(msat, "invoice amount")
    msat10 = msat * 10
    for mult in ("", "m", "u", "n", "p"):
        if msat10 % _MULT_MSAT10[mult] == 0:
            return f"{msat10 // _MULT_MSAT10[mult]}{mult}"
    raise AssertionError("unreachable: 'p' divides everything")
