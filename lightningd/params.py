"""Parameter specs for RPC commands (Core Lightning's `param(...)`): each
command declares its parameters once with a type checker; positional and
named calls are both resolved from that declaration."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from bitcoin.keys import is_valid_pubkey
from common.amount import AmountError, parse_amount_msat
from common.scid import ShortChannelId, ShortChannelIdDir

from .jsonrpc_errors import ParamError

Checker = Callable[[Any], Any]


@dataclass(frozen=True)
class Param:
    name: str
    check: Checker
    required: bool = True
    default: Any = None


def req(name: str, check: Checker) -> Param:
    return Param(name, check, True)


def opt(name: str, check: Checker, default: Any = None) -> Param:
    return Param(name, check, False, default)


_WHOLE = object()


class BadType(ValueError):
    """Raised by a checker: message says what the value should be.  `token`
    is the offending part of the value (an array element, say) when it is
    not the whole value."""

    def __init__(self, message: str, token: Any = _WHOLE) -> None:
        super().__init__(message)
        self.token = token


def _tok(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else f"'{v}'"


def _lone_surrogate(v: Any) -> bool:
    """Whether `v` holds a string (or key) with a lone UTF-16 surrogate
    ("\\ud800"): valid JSON text, but no Unicode string, so nothing can store,
    sign or encode it.  Iterative: the value's depth is bounded by the
    server, but the walk needs no recursion anyway."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False


def reject_lone_surrogates(params: list[Param], given: Any) -> None:
    """ParamError (-32602) naming the first parameter whose value contains a
    lone surrogate.  Checked for every command before it runs, so none of
    them (nor a plugin) ever sees a string that cannot be encoded."""
    items: list[tuple[str, Any]]
    if isinstance(given, dict):
        if any(_lone_surrogate(k) for k in given):
            raise ParamError("parameter names should be valid Unicode: invalid token (lone surrogate)")
        items = list(given.items())
    elif isinstance(given, list):
        names = [p.name for p in params]
        items = [(names[i] if i < len(names) else f"parameter {i}", v) for i, v in enumerate(given)]
    else:
        items = [("params", given)]
    for name, v in items:
        if _lone_surrogate(v):
            raise ParamError(f"{name}: should be valid Unicode: invalid token (lone surrogate)")


def resolve_params(params: list[Param], given: Any) -> dict[str, Any]:
    """Bind a JSON-RPC `params` (array, object or null) to declared params."""
    out: dict[str, Any] = {}
    if given is None:
        given = {}
    if isinstance(given, list):
        if len(given) > len(params):
            raise ParamError(f"too many parameters: got {len(given)}, expected {len(params)}")
        items = list(zip([p.name for p in params], given))
    elif isinstance(given, dict):
        known = {p.name for p in params}
        for k in given:
            if k not in known:
                raise ParamError(f"unknown parameter: {k}, this may be caused by a failure to autodetect "
                                 f"key=value-style parameters. Please try using the -k flag and explicit "
                                 f"key=value pairs of parameters.")
        items = list(given.items())
    else:
        raise ParamError("Expected array or object for params")
    values = dict(items)
    for p in params:
        v = values.get(p.name)
        if v is None:
            if p.required:
                raise ParamError(f"missing required parameter: {p.name}")
            out[p.name] = p.default
            continue
        try:
            out[p.name] = p.check(v)
        except BadType as e:
            raise ParamError(f"{p.name}: {e}: invalid token {_tok(v if e.token is _WHOLE else e.token)}") from None
    return out


# --- checkers --------------------------------------------------------------------

def string(v: Any) -> str:
    if not isinstance(v, str):
        raise BadType("should be a string")
    return v


def label(v: Any) -> str:
    """Invoice labels: strings, or numbers used as strings (Core Lightning)."""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise BadType("should be a string or number")
    return v if isinstance(v, str) else json.dumps(v)


def _integer(v: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool):
        raise BadType(f"should be {what}")
    if isinstance(v, str):
        try:
            v = int(v, 10)
        except ValueError:
            raise BadType(f"should be {what}") from None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or not lo <= v <= hi:
        raise BadType(f"should be {what}")
    return v


def u16(v: Any) -> int:
    return _integer(v, 0, 0xFFFF, "a 16 bit integer")


def u32(v: Any) -> int:
    return _integer(v, 0, 0xFFFFFFFF, "an unsigned 32 bit integer")


def u64(v: Any) -> int:
    return _integer(v, 0, 0xFFFFFFFFFFFFFFFF, "an unsigned 64 bit integer")


# SQLite integers are signed 64-bit: no stored index, counter or limit can
# exceed this.
MAX_STORED_INT = 2 ** 63 - 1


def u64_bound(v: Any) -> int:
    """A u64 only ever compared with stored integers (a listing's `start`,
    `lastpay_index`, an expiry time): Core Lightning accepts the whole u64
    range, and a value past what the database can hold compares like its
    largest value (nothing is stored beyond it), so it is clamped there:
    `start=2^63` matches nothing."""
    return min(u64(v), MAX_STORED_INT)


def number(v: Any) -> int:
    return _integer(v, -(2 ** 63), 2 ** 63 - 1, "an integer")


def nonneg_number(v: Any) -> float:
    """A non-negative number, fractions allowed (Core Lightning's
    param_millionths: riskfactor, maxfeepercent, fuzzpercent)."""
    if isinstance(v, bool):
        raise BadType("should be a non-negative floating-point number")
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise BadType("should be a non-negative floating-point number") from None
    if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or v * 1_000_000 >= 2 ** 64:
        raise BadType("should be a non-negative floating-point number")
    return v


def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    raise BadType("should be 'true' or 'false'")


def node_id(v: Any) -> bytes:
    if isinstance(v, str) and len(v) == 66:
        try:
            b = bytes.fromhex(v)
        except ValueError:
            b = b""
        if len(b) == 33 and b[0] in (2, 3):
            if is_valid_pubkey(b):
                return b
    raise BadType("should be a node id")


def hex_bytes(v: Any) -> bytes:
    if isinstance(v, str):
        try:
            return bytes.fromhex(v)
        except ValueError:
            pass
    raise BadType("should be hex")


def sha256_hex(v: Any) -> bytes:
    b = hex_bytes(v)
    if len(b) != 32:
        raise BadType("should be a 32 byte hex value")
    return b


def channel_id(v: Any) -> bytes:
    """A 64-hex channel id (Core Lightning's param_channel_id)."""
    if isinstance(v, str) and len(v) == 64:
        try:
            return bytes.fromhex(v)
        except ValueError:
            pass
    raise BadType("should be a channel id")


def extra_tlvs(v: Any) -> dict[int, bytes]:
    """keysend's `extratlvs`: {"type": "hex value"} (Core Lightning's
    param_extra_tlvs), odd types only: an even type no BOLT defines would
    make the recipient fail the payment."""
    if not isinstance(v, dict):
        raise BadType("should be an object of type: hex value")
    out: dict[int, bytes] = {}
    for k, val in v.items():
        try:
            t = int(k)
        except (TypeError, ValueError):
            raise BadType(f'"{k}" is not a valid numeric TLV type') from None
        if not 0 <= t < 2**64:
            raise BadType(f'"{k}" is not a valid numeric TLV type')
        if t % 2 == 0:
            raise BadType(f"TLV type {t} is even: the recipient would have to understand it")
        try:
            out[t] = bytes.fromhex(val)
        except (TypeError, ValueError):
            raise BadType(f'"{k}" is not a valid hex encoded TLV value') from None
    return out


def routehint_array(v: Any) -> list[list[dict]]:
    """keysend's `routehints`: an array of route hints, each an array of
    hops {id, scid, feebase, feeprop, expirydelta} (Core Lightning's
    param_routehint_array), in pay's hint form."""
    if not isinstance(v, list):
        raise BadType("should be an array of route hints")
    out = []
    for i, hint in enumerate(v):
        if not isinstance(hint, list):
            raise BadType(f"routehints[{i}] should be an array of hop objects", hint)
        hops = []
        for j, hop in enumerate(hint):
            try:
                hops.append({"pubkey": node_id(hop["id"]).hex(),
                             "short_channel_id": str(short_channel_id(hop["scid"])),
                             "fee_base_msat": msat(hop["feebase"]), "fee_proportional_millionths": u32(hop["feeprop"]),
                             "cltv_expiry_delta": u16(hop["expirydelta"])})
            except (KeyError, TypeError, BadType) as e:
                raise BadType(f"Error parsing routehint routehints[{i}][{j}]: {e}", hop) from None
        out.append(hops)
    return out


def txid(v: Any) -> str:
    b = sha256_hex(v)
    return b.hex()


def msat(v: Any) -> int:
    """An amount in millisatoshi: integer (msat), or '10sat', '10msat', '0.1btc'."""
    if isinstance(v, bool):
        raise BadType("should be a millisatoshi amount")
    try:
        m = parse_amount_msat(v, default_unit="msat")
    except (AmountError, ValueError):
        raise BadType("should be a millisatoshi amount") from None
    assert m is not None
    return m


def msat_u32(v: Any) -> int:
    """An msat amount that must fit in 32 bits (setchannel's feebase)."""
    m = msat(v)
    if m > 0xFFFFFFFF:
        raise BadType("exceeds u32 max")
    return m


def msat_or_any(v: Any) -> int | None:
    if v == "any":
        return None
    return msat(v)


def sat(v: Any) -> int:
    """An amount in satoshi (integer means sat); returns satoshis."""
    if isinstance(v, bool):
        raise BadType("should be a satoshi amount")
    try:
        m = parse_amount_msat(v, default_unit="sat")
    except (AmountError, ValueError):
        raise BadType("should be a satoshi amount") from None
    if m is None or m % 1000:
        raise BadType("should be a satoshi amount")
    return m // 1000


def sat_or_all(v: Any) -> int | None:
    if v == "all":
        return None
    return sat(v)


def short_channel_id(v: Any) -> ShortChannelId:
    if isinstance(v, str):
        try:
            return ShortChannelId.parse(v)
        except ValueError:
            pass
    raise BadType("should be a short_channel_id of form NxNxN")


def route_exclusions(v: Any) -> list[str]:
    """`exclude` of pay/getroute: short_channel_id/direction strings or node
    ids, normalised ("BLOCKxTXxOUT/DIR", lower-case hex node id)."""
    out = []
    for item in array(v):
        try:
            out.append(str(ShortChannelIdDir.parse(item)))
            continue
        except ValueError:
            pass
        try:
            out.append(node_id(item).hex())
        except BadType:
            raise BadType("should be short_channel_id_dir or node_id", token=item) from None
    return out


def array(v: Any) -> list:
    if not isinstance(v, list):
        raise BadType("should be an array")
    return v


def array_of(check: Checker) -> Checker:
    """An array whose every element passes `check` (the offending element
    is named in the error)."""
    def check_array(v: Any) -> list:
        out = []
        for item in array(v):
            try:
                out.append(check(item))
            except BadType as e:
                raise BadType(f"{e} (in an array)", token=item) from None
        return out
    return check_array


def obj(v: Any) -> dict:
    if not isinstance(v, dict):
        raise BadType("should be an object")
    return v


def one_of(*choices: str) -> Checker:
    def check(v: Any) -> str:
        if v not in choices:
            raise BadType(f"should be one of {', '.join(choices)}")
        return v
    return check


def anything(v: Any) -> Any:
    return v
