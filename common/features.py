"""BOLT 9 feature bits: the assigned features, where each may appear, their
dependencies, wire conversion helpers and the set this node advertises.

Feature vectors are handled in their wire form: big-endian ``bytes`` whose
least-significant bit is bit 0 (``init``, ``node_announcement``,
``channel_announcement``, ``channel_type``).  BOLT 11 packs the same bits
into 5-bit words; ``common/bolt11.py`` converts, everything else uses bytes.

Features come in pairs: the even bit means "required" (compulsory), the odd
bit "supported" (optional) — "it's OK to be odd".
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Context(str, Enum):
    """The BOLT 9 Context column letters."""

    INIT = "I"                    # init message
    NODE_ANNOUNCEMENT = "N"
    CHANNEL_ANNOUNCEMENT = "C"
    INVOICE = "9"                 # BOLT 11 `9` field
    BLINDED_PATH = "B"            # allowed_features of a blinded path
    CHANNEL_TYPE = "T"            # channel_type in open_channel / accept_channel


@dataclass(frozen=True)
class Feature:
    """One BOLT 9 table row.

    ``contexts`` holds the Context letters.  ``C-``/``C+`` (always odd / always
    even in channel_announcement) are kept in ``always_odd`` / ``always_even``;
    no current feature uses them but the validation honours them.
    ``assumed`` features are ASSUMED by the current spec: every node has them.
    """

    name: str
    bit: int                        # the even (compulsory) bit
    contexts: frozenset[str]
    depends: tuple[str, ...] = ()
    assumed: bool = False
    always_odd: frozenset[str] = frozenset()
    always_even: frozenset[str] = frozenset()

    @property
    def odd_bit(self) -> int:
        return self.bit + 1


def _f(name: str, bit: int, contexts: str, depends: tuple[str, ...] = (),
       assumed: bool = False) -> Feature:
    return Feature(name, bit, frozenset(contexts), depends, assumed)


# The table of spec/bolts/09-features.md.  ASSUMED rows have an empty Context
# column in the current spec because their semantics now live in older
# revisions; nodes (Core Lightning included) still set these bits and peers
# still check them, so we keep the contexts (and the payment_secret ->
# var_onion_optin dependency) from the last revision that listed them.
# gossip_queries also has a blank Context today; it used to be "IN" and Core
# Lightning still sends it in init, so "IN" it is.
FEATURE_TABLE: tuple[Feature, ...] = (
    _f("option_data_loss_protect", 0, "IN", assumed=True),
    _f("option_upfront_shutdown_script", 4, "IN"),
    _f("gossip_queries", 6, "IN"),
    _f("var_onion_optin", 8, "IN9", assumed=True),
    _f("gossip_queries_ex", 10, "IN"),
    _f("option_static_remotekey", 12, "INT", assumed=True),
    _f("payment_secret", 14, "IN9", ("var_onion_optin",), assumed=True),
    _f("basic_mpp", 16, "IN9", ("payment_secret",)),
    _f("option_support_large_channel", 18, "IN"),
    _f("option_anchors", 22, "INT"),
    _f("option_route_blinding", 24, "IN9"),
    _f("option_shutdown_anysegwit", 26, "IN"),
    _f("option_dual_fund", 28, "IN"),
    _f("option_quiesce", 34, "IN"),
    _f("option_attribution_data", 36, "IN9"),
    _f("option_onion_messages", 38, "IN"),
    _f("option_provide_storage", 42, "IN"),
    _f("option_channel_type", 44, "IN", assumed=True),
    _f("option_scid_alias", 46, "INT"),
    _f("option_payment_metadata", 48, "9"),
    _f("option_zeroconf", 50, "INT", ("option_scid_alias",)),
    _f("option_simple_close", 60, "IN", ("option_shutdown_anysegwit",)),
    _f("option_splice", 62, "IN"),
)

FEATURES: dict[str, Feature] = {f.name: f for f in FEATURE_TABLE}
FEATURES_BY_BIT: dict[int, Feature] = {f.bit: f for f in FEATURE_TABLE}
KNOWN_BITS: frozenset[int] = frozenset(b for f in FEATURE_TABLE for b in (f.bit, f.odd_bit))

# Named constants: the even (compulsory) bit; the optional bit is +1.
OPTION_DATA_LOSS_PROTECT = 0
OPTION_UPFRONT_SHUTDOWN_SCRIPT = 4
GOSSIP_QUERIES = 6
VAR_ONION_OPTIN = 8
GOSSIP_QUERIES_EX = 10
OPTION_STATIC_REMOTEKEY = 12
PAYMENT_SECRET = 14
BASIC_MPP = 16
OPTION_SUPPORT_LARGE_CHANNEL = 18
OPTION_ANCHORS = 22
OPTION_ROUTE_BLINDING = 24
OPTION_SHUTDOWN_ANYSEGWIT = 26
OPTION_DUAL_FUND = 28
OPTION_QUIESCE = 34
OPTION_ATTRIBUTION_DATA = 36
OPTION_ONION_MESSAGES = 38
OPTION_PROVIDE_STORAGE = 42
OPTION_CHANNEL_TYPE = 44
OPTION_SCID_ALIAS = 46
OPTION_PAYMENT_METADATA = 48
OPTION_ZEROCONF = 50
OPTION_SIMPLE_CLOSE = 60
OPTION_SPLICE = 62


def optional(bit: int) -> int:
    """The odd (optional) bit of a feature pair."""
    return bit | 1


def compulsory(bit: int) -> int:
    """The even (compulsory) bit of a feature pair."""
    return bit & ~1


def features_from_bits(bits: Iterable[int]) -> bytes:
    """Set of bit numbers -> wire feature vector (big-endian, minimal length;
    no bits -> ``b""``)."""
    n = 0
    for b in bits:
        if b < 0:
            raise ValueError(f"negative feature bit {b}")
        n |= 1 << b
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def bits_from_features(features: bytes) -> set[int]:
    """Wire feature vector -> set of bit numbers (leading zero bytes ignored)."""
    n = int.from_bytes(features, "big")
    return {i for i in range(n.bit_length()) if (n >> i) & 1}


def _bits(features: bytes | Iterable[int]) -> set[int]:
    """Accept either the wire form or an already-decoded set of bits."""
    if isinstance(features, (bytes, bytearray)):
        return bits_from_features(bytes(features))
    return set(features)


def _bit_of(name_or_bit: str | int) -> int:
    if isinstance(name_or_bit, str):
        try:
            return FEATURES[name_or_bit].bit
        except KeyError:
            raise ValueError(f"unknown feature {name_or_bit!r}") from None
    return name_or_bit


def has_feature(features: bytes | Iterable[int], name_or_bit: str | int) -> bool:
    """True if either bit of the feature's pair is set (a receiver treats both
    as "the peer has it"); accepts wire bytes or a set of bits."""
    bits = _bits(features)
    even = compulsory(_bit_of(name_or_bit))
    return even in bits or even + 1 in bits


def requires_feature(features: bytes | Iterable[int], name_or_bit: str | int) -> bool:
    """True if the compulsory (even) bit is set."""
    bits = _bits(features)
    return compulsory(_bit_of(name_or_bit)) in bits


def unknown_even_bits(features: bytes | Iterable[int],
                      known: Iterable[int] = KNOWN_BITS) -> list[int]:
    """Even (compulsory) bits set whose feature pair is not in ``known`` —
    BOLT 1/9/11: an unknown even bit means "you cannot talk to / pay me"."""
    bits = _bits(features)
    known_pairs = {compulsory(b) for b in known}
    return sorted(b for b in bits if b % 2 == 0 and b not in known_pairs)


def missing_dependencies(features: bytes | Iterable[int]) -> list[tuple[str, str]]:
    """(feature, missing dependency) pairs; transitive dependencies are
    covered because every feature set is checked, including dependencies."""
    bits = _bits(features)
    out = []
    for f in FEATURE_TABLE:
        if f.bit in bits or f.odd_bit in bits:
            for dep in f.depends:
                d = FEATURES[dep]
                if d.bit not in bits and d.odd_bit not in bits:
                    out.append((f.name, dep))
    return out


def validate_features(features: bytes | Iterable[int], context: Context | str) -> str | None:
    """Check a feature vector received in ``context``: every known feature
    must be allowed there, ``channel_type`` only carries even bits, C-/C+
    parity is respected, and all dependencies are set.  Returns a
    human-readable error, or None if fine.  (Unknown bits are not judged
    here: see :func:`unknown_even_bits`.)"""
    ctx = Context(context).value
    bits = _bits(features)
    for b in sorted(bits):
        f = FEATURES_BY_BIT.get(compulsory(b))
        if ctx == Context.CHANNEL_TYPE.value and b % 2:
            return f"channel_type may only contain even bits, bit {b} is set"
        if f is None:
            continue
        if ctx not in f.contexts:
            return f"feature {f.name} (bit {b}) is not allowed in context {ctx!r}"
        if ctx in f.always_odd and b % 2 == 0:
            return f"feature {f.name} must be odd in context {ctx!r}"
        if ctx in f.always_even and b % 2 == 1:
            return f"feature {f.name} must be even in context {ctx!r}"
    missing = missing_dependencies(bits)
    if missing:
        return "; ".join(f"feature {name} requires {dep}" for name, dep in missing)
    return None


# What this node advertises, modelled on Core Lightning's default_features()
# (lightningd/lightningd.c) restricted to features we implement:
#   compulsory: option_data_loss_protect, var_onion_optin, payment_secret,
#               option_static_remotekey (Core Lightning makes these even,
#               following bolts#1092, since virtually every node has them)
#   optional:   option_upfront_shutdown_script, gossip_queries, basic_mpp,
#               option_anchors (zero-fee HTLC txs; Core Lightning and LND
#               open such channels by default), option_shutdown_anysegwit,
#               option_payment_metadata, option_channel_type (optional as in
#               Core Lightning before 25.09), option_scid_alias and
#               option_zeroconf (channel_type variations: aliases in
#               channel_ready, zero-conf opens the openchannel hook allows)
# Route blinding and onion messages are optional, as Core Lightning (BOLT 12
# offers need both).
# Not advertised (yet): gossip_queries_ex, large channels,
# dual funding, quiescence, splicing,
# ... — BOLT 9: "MUST NOT set feature bits it does not support".
OUR_FEATURE_BITS: frozenset[int] = frozenset({
    compulsory(OPTION_DATA_LOSS_PROTECT),
    optional(OPTION_UPFRONT_SHUTDOWN_SCRIPT),
    optional(GOSSIP_QUERIES),
    compulsory(VAR_ONION_OPTIN),
    compulsory(OPTION_STATIC_REMOTEKEY),
    compulsory(PAYMENT_SECRET),
    optional(BASIC_MPP),
    optional(OPTION_ANCHORS),
    optional(OPTION_ROUTE_BLINDING),
    optional(OPTION_SHUTDOWN_ANYSEGWIT),
    optional(OPTION_ONION_MESSAGES),
    optional(OPTION_CHANNEL_TYPE),
    optional(OPTION_PAYMENT_METADATA),
    optional(OPTION_SCID_ALIAS),
    optional(OPTION_ZEROCONF),
})


# -- channel types (BOLT 2 "Defined Channel Types") ---------------------------------
# A channel type is a set of even bits, not an arbitrary combination: the
# basic types below, each with the variations option_scid_alias and
# option_zeroconf (accepted when our init offers them, as it does).
CHANNEL_TYPE_STATIC_REMOTEKEY: frozenset[int] = frozenset({OPTION_STATIC_REMOTEKEY})
CHANNEL_TYPE_ANCHORS: frozenset[int] = frozenset({OPTION_STATIC_REMOTEKEY, OPTION_ANCHORS})
BASIC_CHANNEL_TYPES: tuple[frozenset[int], ...] = (CHANNEL_TYPE_STATIC_REMOTEKEY, CHANNEL_TYPE_ANCHORS)
CHANNEL_TYPE_VARIATIONS: frozenset[int] = frozenset({OPTION_SCID_ALIAS, OPTION_ZEROCONF})


def feature_negotiated(ours: bytes | Iterable[int], theirs: bytes | Iterable[int],
                       name_or_bit: str | int) -> bool:
    """Both sides offer the feature (either bit of its pair), as Core
    Lightning's feature_negotiated()."""
    return has_feature(ours, name_or_bit) and has_feature(theirs, name_or_bit)


def desired_channel_type(our_init: bytes | Iterable[int],
                         their_init: bytes | Iterable[int]) -> frozenset[int]:
    """The channel type we propose in open_channel (Core Lightning's
    desired_channel_type): anchors when both init messages offer
    option_anchors, else plain static_remotekey."""
    if feature_negotiated(our_init, their_init, OPTION_ANCHORS):
        return CHANNEL_TYPE_ANCHORS
    return CHANNEL_TYPE_STATIC_REMOTEKEY


def channel_type_accept(proposed: Iterable[int], our_init: bytes | Iterable[int]) -> frozenset[int] | None:
    """Core Lightning's channel_type_accept(): the proposed type (a set of
    bits) if we run it, else None.  Every feature in it must be one our init
    offers, every feature our init *requires* must be in it, and without its
    variations it must be a basic type, bit for bit (no odd bits)."""
    bits = frozenset(proposed)
    ours = _bits(our_init)
    for f in (OPTION_ANCHORS, OPTION_STATIC_REMOTEKEY, OPTION_SCID_ALIAS, OPTION_ZEROCONF):
        if has_feature(bits, f):
            if not has_feature(ours, f):
                return None
        elif requires_feature(ours, f):
            return None
    if bits - CHANNEL_TYPE_VARIATIONS in BASIC_CHANNEL_TYPES:
        return bits
    return None


def supported_channel_types(our_init: bytes | Iterable[int]) -> list[frozenset[int]]:
    """The basic channel types a peer may propose to us."""
    return [t for t in BASIC_CHANNEL_TYPES if channel_type_accept(t, our_init) is not None]


def acceptable_channel_types(our_init: bytes | Iterable[int]) -> list[frozenset[int]]:
    """Every channel type a peer may propose to us: the basic types with
    each combination of the variations our init offers."""
    out = []
    for t in BASIC_CHANNEL_TYPES:
        for extra in ((), (OPTION_SCID_ALIAS,), (OPTION_ZEROCONF,), (OPTION_SCID_ALIAS, OPTION_ZEROCONF)):
            ctype = channel_type_accept(t | set(extra), our_init)
            if ctype is not None:
                out.append(ctype)
    return out


def our_feature_bits(context: Context | str) -> set[int]:
    """Our bits for ``context``: each of our features, where its Context column
    allows it.  Nothing for channel_announcement (no feature there applies to
    us).  For channel_type, the type we propose to a peer that offers what we
    do (see desired_channel_type)."""
    ctx = Context(context).value
    if ctx == Context.CHANNEL_TYPE.value:
        return set(desired_channel_type(OUR_FEATURE_BITS, OUR_FEATURE_BITS))
    return {b for b in OUR_FEATURE_BITS if ctx in FEATURES_BY_BIT[compulsory(b)].contexts}


def our_features(context: Context | str) -> bytes:
    """Our feature vector for ``context`` in wire form (see our_feature_bits)."""
    return features_from_bits(our_feature_bits(context))


def feature_names(features: bytes | Iterable[int]) -> list[str]:
    """Readable list like ``["var_onion_optin/even", "basic_mpp/odd", "unknown_101/odd"]``."""
    bits = _bits(features)
    out = []
    for b in sorted(bits):
        f = FEATURES_BY_BIT.get(compulsory(b))
        out.append(f"{f.name if f else f'unknown_{b}'}/{'odd' if b % 2 else 'even'}")
    return out


# Core Lightning's names, by feature pair (bit // 2), as its feature_name()
# (common/features.c) spells them: "option_" everywhere, and names for pairs
# BOLT 9 no longer lists.  `lightningd --list-features-only` prints these,
# and test runners (lnprototest's `has_option`) look features up by them.
CLN_FEATURE_NAMES: dict[int, str] = {
    0: "option_data_loss_protect", 1: "option_initial_routing_sync", 2: "option_upfront_shutdown_script",
    3: "option_gossip_queries", 4: "option_var_onion_optin", 5: "option_gossip_queries_ex",
    6: "option_static_remotekey", 7: "option_payment_secret", 8: "option_basic_mpp",
    9: "option_support_large_channel", 10: "option_anchor_outputs", 11: "option_anchors",
    12: "option_route_blinding", 13: "option_shutdown_anysegwit", 14: "option_dual_fund", 15: "option_amp",
    17: "option_quiesce", 19: "option_onion_messages", 21: "option_provide_storage",
    22: "option_channel_type", 23: "option_scid_alias", 24: "option_payment_metadata", 25: "option_zeroconf",
    27: "option_keysend", 28: "option_trampoline_routing", 30: "option_simple_close", 31: "option_splice",
    81: "option_experimental_splice",
}


def cln_feature_name(bit: int) -> str:
    """``"option_basic_mpp/odd"``; a pair Core Lightning has no name for is
    ``option_unknown_<even bit>/<parity>``, as there."""
    parity = "odd" if bit % 2 else "even"
    name = CLN_FEATURE_NAMES.get(bit // 2)
    return f"{name}/{parity}" if name else f"option_unknown_{compulsory(bit)}/{parity}"


# What Core Lightning's `--list-features-only` prints after the feature
# names: protocol behaviours that have no feature bit.  The only one there
# is that open_channel/accept_channel carry a channel_type TLV, which we do.
SUPPORTS_LINES: tuple[str, ...] = ("supports_open_accept_channel_type",)


def list_features_lines(init_features: bytes | Iterable[int]) -> list[str]:
    """The lines of ``lightningd --list-features-only``: each bit of our
    ``init`` features in ascending order, then the ``supports_`` lines
    (Core Lightning's list_features_and_exit)."""
    return [cln_feature_name(b) for b in sorted(_bits(init_features))] + list(SUPPORTS_LINES)


def channel_type_names(bits: Iterable[int]) -> list[str]:
    """Core Lightning's channel_type_name(): ``["static_remotekey/even",
    "anchors/even"]`` (its feature names without ``option_``), as
    `listpeerchannels` and `fundchannel` show them."""
    return [cln_feature_name(b).removeprefix("option_") for b in sorted(set(bits))]
