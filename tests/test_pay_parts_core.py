"""What one payment learns (lightningd/pay_parts.py Knowledge) and Core
Lightning's presplitter, without a node."""
from __future__ import annotations

import random

from lightningd.pay_parts import MPP_TARGET_SIZE, NO_LIMIT, Knowledge, presplit


def hop(chan: str, amount: int, direction: int = 0) -> dict:
    return {"channel": chan, "direction": direction, "amount_msat": amount, "id": "02" * 33, "delay": 9}


def scid(chan: str) -> int:
    b, t, o = map(int, chan.split("x"))
    return (b << 40) | (t << 16) | o


def test_a_failure_caps_a_channel_on_top_of_our_other_parts():
    k = Knowledge()
    a = [hop("1x1x1", 50_000), hop("2x2x2", 40_000)]
    b = [hop("1x1x1", 30_000), hop("2x2x2", 20_000)]
    k.reserve(a, +1)
    k.reserve(b, +1)
    # b fails at 2x2x2 (a still holds 40000 there): at most 20000-1 more than a
    k.reserve(b, -1)
    k.passed(b[0])
    k.constrained(b[1])
    c = k.chans[("2x2x2", 0)]
    assert c.max_msat == 20_000 - 1 + 40_000 and c.reserved_msat == 40_000
    assert k.chans[("1x1x1", 0)].min_msat == 30_000
    # planned with half of what is unknown (0..59999), less what a holds
    lim = {x["scid"]: x for x in k.limits(set(), 0.5)}
    assert lim[scid("2x2x2")] == {"scid": scid("2x2x2"), "direction": 0, "max_msat": 29_999, "reserved_msat": 40_000}
    assert lim[scid("1x1x1")]["max_msat"] == NO_LIMIT and lim[scid("1x1x1")]["reserved_msat"] == 50_000
    assert {x["scid"]: x for x in k.limits(set(), 0.9)}[scid("2x2x2")]["max_msat"] == 53_999
    # our own channels are not given as limits (they go as spendable amounts)
    assert scid("1x1x1") not in {x["scid"] for x in k.limits({"1x1x1"}, 0.5)}


def test_successes_and_failures_narrow_the_range():
    k = Knowledge()
    h = hop("3x3x3", 100_000, direction=1)
    k.constrained(h)
    k.passed(hop("3x3x3", 40_000, direction=1))
    c = k.chans[("3x3x3", 1)]
    assert (c.min_msat, c.max_msat) == (40_000, 99_999)
    assert k.planning_max(c, 0.5) == 40_000 + 59_999 // 2
    # a pass above the known maximum moves the maximum up with it
    k.passed(hop("3x3x3", 120_000, direction=1))
    assert (c.min_msat, c.max_msat) == (120_000, 120_000)
    k.disable(h)
    assert k.disabled == {"3x3x3/1"}


def test_presplit_as_core_lightning():
    rng = random.Random(1)
    assert presplit(MPP_TARGET_SIZE, 30, rng) == [MPP_TARGET_SIZE]          # not above the target
    parts = presplit(100_000_000, 90, rng)
    assert sum(parts) == 100_000_000
    assert all(part <= MPP_TARGET_SIZE * 5 // 4 for part in parts) and 7 <= len(parts) <= 14
    big = presplit(2_000_000_000, 90, rng)                                  # target x16: 160,000 sat
    assert sum(big) == 2_000_000_000 and 9 <= len(big) <= 17
    assert max(big) <= 16 * MPP_TARGET_SIZE * 5 // 4
    # more parts than a third of the HTLCs our channels can take: no presplit
    assert presplit(100_000_000, 20, rng) == [100_000_000]
