"""common/features.py (BOLT 9), common/amount.py and common/scid.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from common import features as F
from common.amount import (
    MAX_MSAT, AmountError, bolt11_amount_decode, bolt11_amount_encode, fmt_btc, fmt_msat, fmt_sat,
    parse_amount_msat, parse_amount_sat,
)
from common.scid import ScidError, ShortChannelId, ShortChannelIdDir

BOLT9 = Path(__file__).resolve().parent.parent / "spec" / "bolts" / "09-features.md"


# --- BOLT 9 -----------------------------------------------------------------

def _spec_rows():
    rows = []
    for line in BOLT9.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\d+)/(\d+)\s*\|\s*`(\w+)`\s*\|([^|]*)\|([^|]*)\|([^|]*)\|", line)
        if m:
            deps = tuple(re.findall(r"`(\w+)`", m[6]))
            rows.append((m[3], int(m[1]), int(m[2]), m[4].strip(), m[5].strip(), deps))
    return rows


def test_table_matches_spec():
    rows = _spec_rows()
    assert len(rows) == len(F.FEATURE_TABLE) == 23
    for name, even, odd, desc, ctx, deps in rows:
        f = F.FEATURES[name]
        assert (f.bit, f.odd_bit) == (even, odd) and even % 2 == 0
        assert f.assumed == (desc == "ASSUMED"), name
        if ctx:      # blank Context: ASSUMED (and gossip_queries), see module comment
            assert f.contexts == frozenset(ctx), name
        # Our table may add the historical payment_secret -> var_onion_optin.
        assert set(deps) <= set(f.depends), name
        assert getattr(F, name.upper()) == even
    assert F.FEATURES["payment_secret"].depends == ("var_onion_optin",)


def test_wire_conversion():
    # Spec invoice example: bits 8 and 14 ("sgq")
    assert F.features_from_bits({8, 14}) == bytes([0x41, 0x00])
    assert F.features_from_bits(set()) == b""
    assert F.features_from_bits({0}) == b"\x01"
    assert F.features_from_bits({7}) == b"\x80"
    assert F.features_from_bits({8}) == b"\x01\x00"
    assert F.bits_from_features(b"\x00\x00\x41\x00") == {8, 14}   # leading zeros ignored
    assert F.bits_from_features(b"") == set()
    with pytest.raises(ValueError):
        F.features_from_bits({-1})


@given(st.sets(st.integers(0, 600)))
def test_wire_round_trip(bits):
    wire = F.features_from_bits(bits)
    assert F.bits_from_features(wire) == bits
    assert not wire or wire[0] != 0        # minimal


def test_has_feature_and_requires():
    feats = F.features_from_bits({9, 14})
    for name_or_bit in ("var_onion_optin", 8, 9, "payment_secret", 14, 15):
        assert F.has_feature(feats, name_or_bit)
    assert not F.has_feature(feats, "basic_mpp") and not F.has_feature(feats, 16)
    assert F.requires_feature(feats, "payment_secret") and not F.requires_feature(feats, 8)
    assert F.has_feature({17}, "basic_mpp")
    with pytest.raises(ValueError, match="unknown feature"):
        F.has_feature(feats, "option_nonexistent")


def test_unknown_even_bits():
    # BOLT 11 "coffee beans" example: 8, 14, 99 (99 odd: fine); invalid: + 100
    assert F.unknown_even_bits(F.features_from_bits({8, 14, 99})) == []
    assert F.unknown_even_bits(F.features_from_bits({8, 14, 99, 100})) == [100]
    assert F.unknown_even_bits({2, 20, 102, 103}) == [2, 20, 102]    # 2/3 and 20/21 unassigned
    assert F.unknown_even_bits({16, 22}, known=[17]) == [22]          # known by either bit


@pytest.mark.parametrize("bits,context,error", [
    ({8, 14, 17}, "9", None),
    ({9, 15, 17}, "I", None),
    ({17}, "9", "basic_mpp requires payment_secret"),
    ({15}, "I", "payment_secret requires var_onion_optin"),
    ({17, 14}, "9", "payment_secret requires var_onion_optin"),   # transitive
    ({51}, "I", "option_zeroconf requires option_scid_alias"),
    ({50, 46}, "T", None),
    ({61}, "N", "option_simple_close requires option_shutdown_anysegwit"),
    ({49}, "I", "option_payment_metadata (bit 49) is not allowed in context 'I'"),
    ({49}, "9", None),
    ({0}, "9", "option_data_loss_protect (bit 0) is not allowed in context '9'"),
    ({5}, "C", "not allowed in context 'C'"),
    ({13}, "T", "channel_type may only contain even bits"),
    ({22, 12}, "T", None),
    ({101}, "9", None),                 # unknown bits are not judged here
])
def test_validate_features(bits, context, error):
    result = F.validate_features(F.features_from_bits(bits), context)
    if error is None:
        assert result is None
    else:
        assert error in result


def test_validate_context_enum_and_bad_context():
    assert F.validate_features({8}, F.Context.INVOICE) is None
    with pytest.raises(ValueError):
        F.validate_features({8}, "Z")


def test_our_features():
    assert F.bits_from_features(F.our_features("9")) == {8, 14, 17, 25, 49}   # 25 in invoices too, as CLN
    init = F.bits_from_features(F.our_features(F.Context.INIT))
    # 23: option_anchors, 25: route blinding, 39: onion messages, 47/51:
    # option_scid_alias/option_zeroconf, optional as in Core Lightning
    assert init == {0, 5, 7, 8, 12, 14, 17, 23, 25, 27, 39, 45, 47, 51}
    assert F.our_features("N") == F.our_features("I")
    assert F.our_features("C") == b""
    assert F.bits_from_features(F.our_features("T")) == {12, 22}    # what we propose to a peer like us
    for ctx in F.Context:
        feats = F.our_features(ctx)
        assert F.validate_features(feats, ctx) is None, ctx
        assert F.unknown_even_bits(feats) == []
        bits = F.bits_from_features(feats)
        assert not any(b % 2 == 0 and b + 1 in bits for b in bits)   # never both bits of a pair


def test_channel_type_negotiation():
    """BOLT 2 channel types as Core Lightning negotiates them
    (desired_channel_type, channel_type_accept)."""
    ours = F.our_features(F.Context.INIT)
    static_only = {0, 5, 7, 8, 12, 14, 17, 27, 45}          # our init without anchors nor the variations
    # the opener proposes anchors only when both init messages offer it (either bit)
    assert F.desired_channel_type(ours, ours) == {12, 22}
    assert F.desired_channel_type(ours, static_only | {22}) == {12, 22}
    assert F.desired_channel_type(ours, static_only) == {12}
    assert F.desired_channel_type(static_only, ours) == {12}
    assert F.desired_channel_type(ours, b"") == {12}
    # the accepter takes exactly the basic types whose features its init offers
    assert F.channel_type_accept({12}, ours) == {12}
    assert F.channel_type_accept([22, 12], ours) == {12, 22}
    assert F.channel_type_accept({12, 22}, static_only) is None       # anchors not offered
    for bad in ({22}, set(), {13}, {12, 23}, {12, 14}, {12, 20}, {12, 22, 47}, {12, 51}, {12, 2**32 - 1}):
        assert F.channel_type_accept(bad, ours) is None, bad
    # the variations our init offers (both)
    assert F.channel_type_accept({12, 22, 46}, ours) == {12, 22, 46}
    assert F.channel_type_accept({12, 50}, ours) == {12, 50}
    assert F.channel_type_accept({12, 22, 46, 50}, ours) == {12, 22, 46, 50}
    assert F.channel_type_accept({12, 22, 46}, static_only | {23}) is None
    # a feature we require (static_remotekey, even in our init) must be in the type
    assert F.channel_type_accept({22}, {13, 23}) is None
    assert F.channel_type_accept({12}, {13}) == {12}
    # variations (scid_alias, zeroconf) only if our init offers them
    assert F.channel_type_accept({12, 46}, static_only | {47}) == {12, 46}
    assert F.supported_channel_types(ours) == [{12}, {12, 22}]
    assert F.supported_channel_types(static_only) == [{12}]
    assert F.acceptable_channel_types(ours) == [{12}, {12, 46}, {12, 50}, {12, 46, 50},
                                                {12, 22}, {12, 22, 46}, {12, 22, 50}, {12, 22, 46, 50}]
    assert F.acceptable_channel_types(static_only | {47}) == [{12}, {12, 46}]


def test_channel_type_names():
    # Core Lightning's listpeerchannels / fundchannel `channel_type.names`
    assert F.channel_type_names([22, 12]) == ["static_remotekey/even", "anchors/even"]
    assert F.channel_type_names({12}) == ["static_remotekey/even"]
    assert F.channel_type_names({12, 46, 50}) == ["static_remotekey/even", "scid_alias/even", "zeroconf/even"]


def test_feature_names():
    assert F.feature_names({8, 17, 101}) == ["var_onion_optin/even", "basic_mpp/odd", "unknown_101/odd"]


# --- amounts ---------------------------------------------------------------

@pytest.mark.parametrize("text,unit,expected", [
    ("10000msat", "msat", 10000),
    ("10sat", "msat", 10000),
    ("0.1btc", "msat", 10_000_000_000),
    ("1btc", "msat", 100_000_000_000),
    ("0.00000000001btc", "msat", 1),
    ("1.5sat", "msat", 1500),
    ("1.001sat", "msat", 1001),
    ("1.000msat", "msat", 1),
    ("1234", "msat", 1234),
    ("1234", "sat", 1_234_000),
    ("0", "msat", 0),
    (1234, "msat", 1234),
    (5, "sat", 5000),
    ("21000000btc", "msat", MAX_MSAT),
    ("2100000000000000000msat", "msat", MAX_MSAT),
])
def test_parse_amount(text, unit, expected):
    assert parse_amount_msat(text, default_unit=unit) == expected


@pytest.mark.parametrize("text,reason", [
    ("-1msat", "negative"),
    ("-5", "negative"),
    (-5, "negative"),
    ("21000000.00000000001btc", "exceeds 21 million BTC"),
    ("2100000000000000001msat", "exceeds 21 million BTC"),
    (MAX_MSAT + 1, "exceeds 21 million BTC"),
    ("1.5msat", "sub-millisatoshi"),
    ("1.0001sat", "sub-millisatoshi"),
    ("0.000000000001btc", "sub-millisatoshi"),
    ("", "not a valid amount"),
    ("abc", "not a valid amount"),
    ("10 sat", "not a valid amount"),
    ("10sats", "not a valid amount"),
    ("10SAT", "not a valid amount"),
    ("1e3sat", "not a valid amount"),
    ("1_000", "not a valid amount"),
    ("+5", "not a valid amount"),
    (".5btc", "not a valid amount"),
    ("5.btc", "not a valid amount"),
    ("١٢", "not a valid amount"),       # non-ASCII digits
    ("any", "'any' is not allowed"),
    (True, "not an amount"),
    (1.5, "not an amount"),
])
def test_parse_amount_errors(text, reason):
    with pytest.raises(AmountError, match=re.escape(reason)):
        parse_amount_msat(text)


def test_parse_amount_any_and_sat():
    assert parse_amount_msat("any", allow_any=True) is None
    assert parse_amount_sat("1000") == 1000
    assert parse_amount_sat("0.00001btc") == 1000
    assert parse_amount_sat("5000msat") == 5
    with pytest.raises(AmountError, match="whole number of satoshis"):
        parse_amount_sat("1500msat")
    assert issubclass(AmountError, ValueError)


def test_format():
    assert fmt_msat(1234) == "1234msat"
    assert fmt_sat(10) == "10sat"
    assert fmt_btc(150_000_000) == "0.0015btc"
    assert fmt_btc(100_000_000_000) == "1btc"
    assert fmt_btc(1) == "0.00000000001btc"
    assert fmt_btc(0) == "0btc"


@given(st.integers(0, MAX_MSAT))
def test_format_parse_round_trip(msat):
    assert parse_amount_msat(fmt_msat(msat)) == msat
    assert parse_amount_msat(fmt_btc(msat)) == msat


@pytest.mark.parametrize("text,msat", [
    ("2500u", 250_000_000), ("20m", 2_000_000_000), ("25m", 2_500_000_000), ("10m", 1_000_000_000),
    ("9678785340p", 967_878_534), ("1", 100_000_000_000), ("10p", 1), ("1n", 100), ("1u", 100_000),
    ("0025m", 2_500_000_000),   # leading zeros: not written, but readers only require digits
])
def test_bolt11_amounts(text, msat):
    assert bolt11_amount_decode(text) == msat


@pytest.mark.parametrize("msat,text", [
    (250_000_000, "2500u"), (2_000_000_000, "20m"), (967_878_534, "9678785340p"),
    (100_000_000_000, "1"), (1, "10p"), (100, "1n"), (1000, "10n"), (100_000, "1u"),
    (10**14, "1000"), (MAX_MSAT, "21000000"),
])
def test_bolt11_amount_shortest(msat, text):
    assert bolt11_amount_encode(msat) == text


@pytest.mark.parametrize("text,reason", [
    ("2500x", "invalid multiplier 'x'"),
    ("2500000001p", "sub-millisatoshi precision"),
    ("1p", "sub-millisatoshi precision"),
    ("", "empty amount"),
    ("m", "not a decimal number"),
    ("1.5m", "not a decimal number"),   # no fractions in BOLT 11 amounts
    ("1.5", "not a decimal number"),
    ("0", "must be positive"),
    ("0p", "must be positive"),
    ("21000001", "exceeds 21 million BTC"),
    ("9" * 40, "exceeds 21 million BTC"),
    ("²5m", "not a decimal number"),
])
def test_bolt11_amount_errors(text, reason):
    with pytest.raises(AmountError, match=re.escape(reason)):
        bolt11_amount_decode(text)


@given(st.integers(1, MAX_MSAT))
def test_bolt11_amount_round_trip(msat):
    s = bolt11_amount_encode(msat)
    assert bolt11_amount_decode(s) == msat
    assert not s.startswith("0")
    if s.endswith("p"):
        assert s[-2] == "0" and msat % 100     # p only when n cannot represent it


def test_bolt11_amount_encode_errors():
    for bad in (0, -1, MAX_MSAT + 1, True, 1.5):
        with pytest.raises(AmountError):
            bolt11_amount_encode(bad)


# --- short channel ids -----------------------------------------------------

def test_scid_forms():
    scid = ShortChannelId(103, 1, 0)
    assert str(scid) == "103x1x0"
    assert scid.to_int() == (103 << 40) | (1 << 16)
    assert scid.to_bytes() == bytes.fromhex("0000670000010000")
    assert ShortChannelId.from_bytes(scid.to_bytes()) == scid
    assert ShortChannelId.from_int(scid.to_int()) == scid
    assert ShortChannelId.parse("103x1x0") == scid
    # BOLT 11 example route hint
    assert ShortChannelId.from_bytes(bytes.fromhex("0102030405060708")) == ShortChannelId.parse("66051x263430x1800")
    top = ShortChannelId(2**24 - 1, 2**24 - 1, 2**16 - 1)
    assert top.to_int() == 2**64 - 1 and ShortChannelId.parse(str(top)) == top
    assert sorted([ShortChannelId(2, 0, 0), ShortChannelId(1, 5, 5)])[0] == ShortChannelId(1, 5, 5)


@given(st.integers(0, 2**64 - 1))
def test_scid_round_trip(n):
    scid = ShortChannelId.from_int(n)
    assert scid.to_int() == n
    assert ShortChannelId.parse(str(scid)) == scid
    assert ShortChannelId.from_bytes(scid.to_bytes()) == scid
    assert ShortChannelId.from_bytes(n.to_bytes(8, "big")) == scid


@pytest.mark.parametrize("text", [
    "", "1x2", "1x2x3x4", "axbxc", "-1x2x3", "+1x2x3", " 1x2x3", "1x2x3 ", "1:2:3", "1x2x3/1",
    "16777216x0x0", "0x16777216x0", "0x0x65536", "1.0x2x3", "1X2X3", "١x2x3", "1xx3",
])
def test_scid_invalid_strings(text):
    with pytest.raises(ScidError, match="invalid short_channel_id"):
        ShortChannelId.parse(text)


def test_scid_invalid_values():
    for args in [(-1, 0, 0), (2**24, 0, 0), (0, 2**24, 0), (0, 0, 2**16), (0, 0, -1), ("1", 0, 0), (True, 0, 0)]:
        with pytest.raises(ScidError):
            ShortChannelId(*args)
    for n in (-1, 2**64, True):
        with pytest.raises(ScidError):
            ShortChannelId.from_int(n)
    for b in (b"", b"\x00" * 7, b"\x00" * 9):
        with pytest.raises(ScidError, match="8 bytes"):
            ShortChannelId.from_bytes(b)
    with pytest.raises(ScidError):
        ShortChannelId.parse(103)  # type: ignore[arg-type]
    assert issubclass(ScidError, ValueError)


def test_scid_dir():
    d = ShortChannelIdDir.parse("103x1x0/1")
    assert d == ShortChannelIdDir(ShortChannelId(103, 1, 0), 1)
    assert str(d) == "103x1x0/1"
    assert str(ShortChannelIdDir(ShortChannelId(1, 2, 3), 0)) == "1x2x3/0"
    for bad in ("103x1x0", "103x1x0/2", "103x1x0/", "103x1x0/01x", "/1", "103x1x0/-1", "16777216x1x0/0"):
        with pytest.raises(ScidError):
            ShortChannelIdDir.parse(bad)
    with pytest.raises(ScidError):
        ShortChannelIdDir(ShortChannelId(1, 2, 3), 2)
