"""What the RPC fuzzer sends (`tests/rpc_fuzz.py` sends and judges it).

Each parameter has a type, from Core Lightning's request schema when the
command has one (`spec/cln/schemas/`), else guessed from its name.  An
example is mostly a *mutated valid call*: every required parameter (and
some optional ones) gets a plausible value of its type from the scene's pool
(our peer's id, a live invoice, a wallet coin, a route to the peer), then
zero to two of them are swapped for a hostile value of their family
(boundary integers, lone surrogates, huge hex, type confusion, deep nesting;
inside route hops too).  Valid calls reach command bodies; one bad value in
an otherwise good call finds what only the body trips over (a surrogate in a
label that gets stored, a 2^63 `start` that reaches SQL).  The rest are
fully random calls, odd `params`, and malformed raw bytes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hypothesis import strategies as st

SCHEMAS = Path(__file__).resolve().parent.parent / "spec" / "cln" / "schemas"

BOUNDARY_INTS = [0, 1, -1, 2 ** 15, 2 ** 16, 2 ** 16 - 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53,
                 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, 2 ** 65, -2 ** 31, -2 ** 63, -2 ** 63 - 1,
                 -2 ** 64, 10 ** 30, 21_000_000 * 10 ** 11, 21_000_000 * 10 ** 11 + 1]
HOSTILE_STRINGS = ["", " ", "\ud800", "a\udfffb", "\udbff\udfff", "\ud800\ud800", "\x00", "\u202e", "null", "true",
                   "-1", "1e400", "NaN", "0x10", "1.5", "18446744073709551616", "9223372036854775808", "9" * 5000,
                   "A" * 70000, "\ud800" * 1000, "1sat", "1msat", "0.1btc", "-1msat", "all", "any", "1x1x1",
                   "0x0x0", "16777216x0x0", "1x1x1/2", "00" * 32, "zz" * 32, "02" + "00" * 32, ":", "a:0", ":0",
                   "00" * 32 + ":4294967296", "lnbcrt1", "lnbc1pvjluezpp5", "bcrt1q", "%s%n", "../../etc/passwd",
                   "\n\n", "{}", "[]", "18446744073709551616msat", "9223372036854775808msat", "1.5msat",
                   "21000000.00000001btc", "0", "perkw", "1perkw", "4294967296perkw", "urgent"]
# what most often breaks a string parameter: unencodable, huge, beyond int parsing
WORST_STRINGS = ["\ud800", "a\udfffb", "A" * 70000, "9" * 5000, "ff" * 700, "18446744073709551615",
                 "9223372036854775808"]
FIELD_NAMES = ["id", "channel", "amount_msat", "delay", "direction", "style", "pubkey", "payload", "msatoshi",
               "node_id_out", "short_channel_id_dir", "enable", "a", ""]
# types of parameters of commands with no Core Lightning schema, by name
NAME_TYPES = {"id": "pubkey", "amount_msat": "msat", "label": "string", "start": "u64", "limit": "u32",
              "address": "string", "txid": "hash", "outputs": "outputs", "utxos": "array:outpoint",
              "payment_hash": "hash", "feerate": "feerate", "minconf": "u32", "subsystem": "string",
              "age": "u64", "blockheight": "u32", "timeout": "u32", "payment_secret": "secret",
              "cltv_expiry": "u32", "config": "string", "spent": "boolean", "source": "pubkey",
              "destination": "pubkey", "short_channel_id": "short_channel_id", "level": "string",
              "addresstype": "string", "enforcedelay": "u32", "ignorefeelimits": "boolean"}


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` levels deep (lists or objects), sent as text
    (json.dumps itself would recurse too deep)."""
    depth: int
    kind: str

    def text(self) -> str:
        if self.kind == "list":
            return "[" * self.depth + "1" + "]" * self.depth
        return '{"a":' * self.depth + "1" + "}" * self.depth


@dataclass
class CommandSpec:
    name: str
    params: list[str]           # declared order
    required: int               # how many leading params are required
    varargs: bool = False       # usage ends with "[name...]"
    types: dict[str, str] = field(default_factory=dict)


@dataclass
class Pool:
    """Values valid enough to get a call past parameter parsing, by kind."""
    node_ids: list[str] = field(default_factory=list)
    scids: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)       # payment hashes, txids, secrets
    outpoints: list[str] = field(default_factory=list)
    bolt11s: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)        # enum-ish words commands take
    route_hops: list[dict] = field(default_factory=list)
    onion_hops: list[dict] = field(default_factory=list)

    def strings(self) -> list[str]:
        return self.node_ids + self.scids + self.hashes + self.outpoints + self.bolt11s + self.labels + \
            self.addresses + self.words


def schema_types(name: str) -> dict[str, str]:
    """param -> type from Core Lightning's request schema for `name` ({} if none)."""
    path = SCHEMAS / f"{name}.json"
    if not path.exists():
        return {}
    props = json.loads(path.read_text()).get("request", {}).get("properties", {})
    out = {}
    for p, v in props.items():
        t = v.get("type")
        if "enum" in v:
            t = "enum:" + ",".join(str(x) for x in v["enum"])
        elif t == "array":
            t = f"array:{(v.get('items') or {}).get('type')}"
        elif "oneOf" in v:
            t = "string"
        out[p] = t or "any"
    return out


def with_types(spec: CommandSpec) -> CommandSpec:
    types = schema_types(spec.name)
    spec.types = {p: types.get(p) or NAME_TYPES.get(p, "any") for p in spec.params}
    return spec


# ---------------------------------------------------------------------- values by type
def _pick(values: list) -> st.SearchStrategy:
    """One of `values`, chosen by an index of a fixed range: the pool changes
    as the scene is refreshed, and hypothesis requires the same choices to
    draw the same shape of data."""
    return st.integers(0, 15).map(lambda i: values[i % len(values)] if values else None)


def valid_value(t: str, name: str, pool: Pool) -> st.SearchStrategy:
    """A plausible value of type `t` (parameter `name`)."""
    small = st.integers(0, 100) | st.sampled_from([1, 6, 18, 60, 144, 1000])
    if t.startswith("enum:"):
        return st.sampled_from(t[5:].split(","))
    if name == "route":
        return st.lists(_pick(pool.route_hops), min_size=1, max_size=3)
    if name == "hops":
        return st.lists(_pick(pool.onion_hops), min_size=1, max_size=3)
    if name == "first_hop":
        return _pick(pool.route_hops)
    if name == "outputs" or t == "outputs":
        return st.lists(st.builds(lambda a, m: {a: m}, _pick(pool.addresses), st.sampled_from(["10000sat", 20000])),
                        min_size=1, max_size=2)
    table: dict[str, st.SearchStrategy] = {
        "u16": small, "u32": small, "u64": small, "number": small | st.floats(0, 10), "integer": small,
        "msat": st.sampled_from([1000, "1000msat", 10_000, "10sat", "0.0001btc"]),
        "msat_or_any": st.sampled_from([1000, "10sat", "any"]),
        "sat": st.sampled_from([20_000, "20000sat", 100_000]),
        "sat_or_all": st.sampled_from([20_000, "100000sat", "all"]),
        "pubkey": _pick(pool.node_ids), "short_channel_id": _pick(pool.scids),
        "hash": _pick(pool.hashes), "secret": _pick(pool.hashes), "hex": _pick(pool.hashes) | st.just("00" * 10),
        "boolean": st.booleans(), "outpoint": _pick(pool.outpoints),
        "array:outpoint": st.lists(_pick(pool.outpoints), min_size=1, max_size=2),
        "feerate": st.sampled_from(["normal", "slow", "urgent", "opening", 1000, "253perkw", "1000perkb"]),
        "array:u32": st.sampled_from([[12], [12, 22]]),
        "array:string": st.lists(_pick(pool.strings()), max_size=2),
        "object": st.just({}),
    }
    if name in ("bolt11", "invstring", "string"):
        return _pick(pool.bolt11s)
    if name == "label":
        return _pick(pool.labels) | st.text(max_size=10)
    if name in ("destination", "address", "close_to") and t == "string":
        return _pick(pool.addresses)
    if t in table:
        return table[t]
    return _pick(pool.strings()) | small | st.booleans()


def hostile_value(t: str, pool: Pool) -> st.SearchStrategy:
    """A value of type `t`'s family meant to break something, or type confusion."""
    # the boundaries and the worst strings are drawn far more often than chance would
    ints = st.one_of(st.sampled_from(BOUNDARY_INTS), st.sampled_from(BOUNDARY_INTS), st.integers(),
                     st.integers(-2 ** 70, 2 ** 70))
    numberish = ints | ints.map(str) | st.sampled_from([1.5, -0.0, 1e300, 2.0 ** 64, float("nan"), float("inf")])
    strings = st.one_of(st.sampled_from(WORST_STRINGS), st.sampled_from(HOSTILE_STRINGS), st.text(max_size=40),
                        st.integers(0, 70_000).map(lambda n: "00" * n),
                        st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
    confusion = st.one_of(st.none(), st.booleans(), numberish, strings, st.lists(st.none(), max_size=2),
                          st.just({}), st.builds(Deep, st.sampled_from([99, 101, 999, 5000]),
                                                 st.sampled_from(["list", "dict"])))
    if t in ("u16", "u32", "u64", "number", "integer", "msat", "msat_or_any", "sat", "sat_or_all", "feerate"):
        return numberish | st.sampled_from(HOSTILE_STRINGS) | confusion
    if t.startswith("array:object") or t in ("outputs", "object"):
        return _hops_hostile(pool) | confusion
    if t.startswith("array"):
        return st.lists(strings | numberish, max_size=5) | confusion
    return strings | confusion


def _hops_hostile(pool: Pool) -> st.SearchStrategy:
    """Route/onion hops with one field broken, or too many of them."""
    base = pool.route_hops + pool.onion_hops or [{"id": "02" + "11" * 32, "channel": "1x1x1", "amount_msat": 1,
                                                  "delay": 9}]
    field_value = st.sampled_from(BOUNDARY_INTS) | st.sampled_from(HOSTILE_STRINGS) | st.none() | \
        st.integers(0, 5000).map(lambda n: "ff" * n)

    def broken(hop: dict) -> st.SearchStrategy:
        return st.sampled_from(sorted(hop) + ["bogus"]).flatmap(
            lambda k: field_value.map(lambda v: dict(hop, **{k: v})))
    one = st.sampled_from(base).flatmap(broken)
    return st.one_of(st.lists(one, min_size=1, max_size=3), one,
                     st.builds(lambda h, n: [h] * n, st.sampled_from(base), st.integers(20, 1000)),
                     st.lists(st.dictionaries(st.sampled_from(FIELD_NAMES), field_value, max_size=5), max_size=3))


def random_value(pool: Pool) -> st.SearchStrategy:
    """Anything at all: scalars, pooled strings, containers."""
    scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(BOUNDARY_INTS), st.integers(),
                        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(HOSTILE_STRINGS),
                        st.text(max_size=40), _pick(pool.strings()))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                        st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), inner, max_size=4),
                        max_leaves=10)


# ---------------------------------------------------------------------- whole requests
ABSENT = object()    # no "params" member at all


@dataclass
class Example:
    method: str
    params: Any = None
    raw: bytes | None = None     # sent as is instead of a well-formed request
    must_answer: bool = True     # raw bytes that are a complete JSON value deserve an answer

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": "fuzz", "method": self.method}
        if self.params is not ABSENT:
            req["params"] = self.params
        deep: dict[str, Deep] = {}

        def swap(v: Any) -> Any:
            if isinstance(v, Deep):
                key = f"__deep_{len(deep)}__"
                deep[key] = v
                return key
            if isinstance(v, list):
                return [swap(x) for x in v]
            if isinstance(v, dict):
                return {k: swap(x) for k, x in v.items()}
            return v
        # ensure_ascii: lone surrogates travel as \udXXX escapes, as a JSON client sends them
        text = json.dumps(swap(req), allow_nan=True)
        for key, d in deep.items():
            text = text.replace(f'"{key}"', d.text(), 1)
        return text.encode()

    def short(self, limit: int = 300) -> str:
        s = repr(self.raw[:limit]) if self.raw is not None else f"{self.method} {short_json(self.params)}"
        return s if len(s) <= limit else s[:limit] + "..."


def short_json(v: Any, limit: int = 300) -> str:
    try:
        s = json.dumps(v, allow_nan=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        s = repr(v)
    return s if len(s) < limit else s[:limit] + f"...({len(s)} chars)"


@st.composite
def example_strategy(draw: Callable, specs: list[CommandSpec], pool: Pool, side_effects: set[str]) -> Example:
    """One request to one of `specs`' commands (see the module's docstring).
    A string in `side_effects` anywhere in a `plugin` call makes it `plugin list`."""
    spec = draw(st.sampled_from(specs))
    shape = draw(st.sampled_from(["mutated"] * 6 + ["random"] * 2 + ["odd", "raw"]))
    if shape == "raw":
        raw, complete = draw(_raw_strategy(spec.name))
        return Example(spec.name, raw=raw, must_answer=complete)
    if shape == "odd":
        return Example(spec.name, draw(st.sampled_from([ABSENT, None, "x", 5, True, 1.5, [[]], {"": None}])))
    if shape == "mutated":
        chosen = spec.params[:spec.required] + [p for p in spec.params[spec.required:] if draw(st.booleans())]
        values = {p: draw(valid_value(spec.types.get(p, "any"), p, pool)) for p in chosen}
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
            if spec.params:
                p = draw(st.sampled_from(spec.params))
                values[p] = draw(hostile_value(spec.types.get(p, "any"), pool))
    else:
        n_max = len(spec.params) + (3 if spec.varargs else 1)
        names = spec.params + [f"bogus{i}" for i in range(n_max - len(spec.params))]
        values = {n: draw(random_value(pool)) for n in draw(st.lists(st.sampled_from(names), unique=True,
                                                                        max_size=n_max))} if names else {}
    params: Any = values
    if draw(st.booleans()) and all(n in spec.params for n in values):
        # positional: in declared order, null where a parameter is left out
        last = max((spec.params.index(n) for n in values), default=-1)
        params = [values.get(n) for n in spec.params[:last + 1]]
    ex = Example(spec.name, params)
    if spec.name == "plugin" and any(v in side_effects for v in _leaves(params)):
        ex = Example(spec.name, ["list"])
    return ex


def _raw_strategy(method: str) -> st.SearchStrategy[tuple[bytes, bool]]:
    """(bytes, whether they are a complete JSON value that deserves an answer)."""
    m = method.encode()
    good = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": {}}).encode()
    head = b'{"jsonrpc":"2.0","id":7,"method":"' + m + b'","params":'
    complete = [
        good + b"garbage",
        good.replace(b'"params"', b'"params\xff"'),                 # invalid UTF-8 in a key
        head + b'["\xed\xa0\x80"]}',                                 # a surrogate encoded as UTF-8
        head + b"[NaN, Infinity, -Infinity]}",
        head + b"[1" + b"0" * 5000 + b"]}",                          # past Python's int digit limit
        head + b"[1e99999]}",
        b'{"jsonrpc":"2.0","id":{"a":[1]},"method":"' + m + b'"}',
        b'{"jsonrpc":"2.0","id":NaN,"method":"' + m + b'"}',
        b'{"jsonrpc":"2.0","id":7,"method":"' + m + b'","id":8,"params":{},"params":[]}',
        b'{"jsonrpc":"2.0","id":7,"method":["' + m + b'"]}',
        b'{"jsonrpc":"2.0","id":7,"method":"' + m + b'\\ud800"}',
        b'{"jsonrpc":"2.0","id":7,"method":"' + m + b'","params":{"\\ud800":1}}',
        b'"just a string"', b"12345", b"null", b"[]", b"[1,2]", b"{}", b"}", b"\x00\x01\x02",
        b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000,
        head + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"jsonrpc":"2.0","id":7,"method":"getinfo"}' * 50,         # pipelined
    ]
    incomplete = [good[: len(good) // 2], b"[" * 100000, head + b'"\\']
    # a complete value gets an answer (a top level that is no object: a parse error, then a hang-up)
    return st.sampled_from([(c, True) for c in complete]) | \
        st.sampled_from([(c, False) for c in incomplete]) | st.binary(max_size=200).map(lambda b: (b, False))


def _leaves(v: Any) -> list:
    if isinstance(v, dict):
        return [x for val in v.values() for x in _leaves(val)]
    if isinstance(v, list):
        return [x for val in v for x in _leaves(val)]
    return [v]
