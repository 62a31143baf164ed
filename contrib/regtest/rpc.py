"""JSON-RPC method registry and dispatch, with bitcoind's parameter handling.

Methods register themselves with ``@rpc(category, Param(...), ...)``; the
function name is the RPC name. Parameters come positional or named; null
means "use the default"; type errors use bitcoind's codes (-3 type error,
-8 invalid parameter, -1 with the usage text for a wrong number of
arguments).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Callable

from .errors import RPC_INVALID_PARAMETER, RPC_INVALID_REQUEST, RPC_METHOD_NOT_FOUND, RPC_MISC_ERROR, \
    RPC_TYPE_ERROR, RPCError

if TYPE_CHECKING:
    from .node import Node

COIN = 100_000_000
REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One parameter: name, kind (see `convert`), default (REQUIRED if none)."""

    name: str
    kind: str = "any"
    default: Any = REQUIRED
    doc: str = ""


@dataclass(frozen=True)
class Method:
    name: str
    category: str
    params: tuple[Param, ...]
    func: Callable[..., Any]
    doc: str

    def usage(self) -> str:
        args = " ".join(p.name if p.default is REQUIRED else f"( {p.name} )" for p in self.params)
        lines = [f"{self.name} {args}".rstrip(), "", self.doc.strip()]
        if self.params:
            lines += ["", "Arguments:"]
            for n, p in enumerate(self.params, 1):
                req = "required" if p.default is REQUIRED else f"optional, default={p.default!r}"
                lines.append(f"{n}. {p.name}  ({p.kind}, {req}) {p.doc}".rstrip())
        return "\n".join(lines) + "\n"


METHODS: dict[str, Method] = {}


def rpc(category: str, *params: Param) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as an RPC method named after it."""
    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        METHODS[func.__name__] = Method(func.__name__, category, params, func, func.__doc__ or "")
        return func
    return deco


# -- parameter conversion --------------------------------------------------------------
def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float, Decimal)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _type_error(p: Param, v: Any, expected: str) -> RPCError:
    return RPCError(RPC_TYPE_ERROR, f"JSON value of type {json_type(v)} for field {p.name} "
                                    f"is not of expected type {expected}")


def parse_amount(v: Any, name: str = "amount") -> int:
    """AmountFromValue: a number or numeric string in BTC, at most 8 decimals."""
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal, str)):
        raise RPCError(RPC_TYPE_ERROR, "Amount is not a number or string")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise RPCError(RPC_TYPE_ERROR, "Invalid amount") from None
    if not d.is_finite():
        raise RPCError(RPC_TYPE_ERROR, "Invalid amount")
    sats = d * COIN
    if sats != sats.to_integral_value():
        raise RPCError(RPC_TYPE_ERROR, "Invalid amount")
    if sats < 0 or sats > 21_000_000 * COIN:
        raise RPCError(RPC_TYPE_ERROR, "Amount out of range")
    return int(sats)


def parse_hash(v: Any, name: str) -> bytes:
    """ParseHashV: 64 hex characters, returned in internal byte order."""
    if not isinstance(v, str):
        raise RPCError(RPC_TYPE_ERROR, f"JSON value of type {json_type(v)} for field {name} "
                                       "is not of expected type string")
    if len(v) != 64:
        raise RPCError(RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(v)}, for '{v}')")
    try:
        return bytes.fromhex(v)[::-1]
    except ValueError:
        raise RPCError(RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{v}')") from None


def convert(p: Param, v: Any) -> Any:
    """Check and convert a JSON value for parameter `p`.

    Kinds: str, int, bool, intbool (int or bool, e.g. getblock verbosity),
    amount (BTC -> satoshis), arr, obj, hash (txid/blockhash -> bytes), any.
    """
    k = p.kind
    if k == "any":
        return v
    if k == "str":
        if not isinstance(v, str):
            raise _type_error(p, v, "string")
        return v
    if k in ("int", "intbool"):
        if isinstance(v, bool):
            if k == "intbool":
                return int(v)
            raise _type_error(p, v, "number")
        if isinstance(v, (int, Decimal, float)) and v == int(v):
            return int(v)
        raise _type_error(p, v, "number")
    if k == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, int):          # bitcoind tolerates 0/1 for booleans
            return bool(v)
        raise _type_error(p, v, "bool")
    if k == "amount":
        return parse_amount(v, p.name)
    if k == "arr":
        if not isinstance(v, list):
            raise _type_error(p, v, "array")
        return v
    if k == "obj":
        if not isinstance(v, dict):
            raise _type_error(p, v, "object")
        return v
    if k == "hash":
        return parse_hash(v, p.name)
    raise AssertionError(f"unknown parameter kind {k}")


def call(node: "Node", method: Any, params: Any) -> Any:
    """Run one RPC call; raises RPCError for bitcoind-style errors."""
    if not isinstance(method, str):
        raise RPCError(RPC_INVALID_REQUEST, "Method must be a string")
    m = METHODS.get(method)
    if m is None:
        raise RPCError(RPC_METHOD_NOT_FOUND, "Method not found")
    names = [p.name for p in m.params]
    if params is None:
        params = []
    if isinstance(params, list):
        if len(params) > len(m.params):
            raise RPCError(RPC_MISC_ERROR, m.usage())
        given = dict(zip(names, params))
    elif isinstance(params, dict):
        for key in params:
            if key not in names:
                raise RPCError(RPC_INVALID_PARAMETER, f"Unknown named parameter {key}")
        given = dict(params)
    else:
        raise RPCError(RPC_INVALID_REQUEST, "Params must be an array or object")
    kwargs: dict[str, Any] = {}
    for p in m.params:
        v = given.get(p.name)
        if v is None:
            if p.default is REQUIRED:
                if isinstance(params, dict):
                    raise RPCError(RPC_INVALID_PARAMETER, f"Missing required parameter {p.name}")
                raise RPCError(RPC_MISC_ERROR, m.usage())
            kwargs[p.name] = p.default
        else:
            kwargs[p.name] = convert(p, v)
    return m.func(node, **kwargs)


def help_text(command: str | None) -> str:
    """bitcoind's help: the method list by category, or one method's usage."""
    if command:
        m = METHODS.get(command)
        if m is None:
            return f"help: unknown command: {command}"
        return m.usage()
    out: list[str] = []
    for cat in sorted({m.category for m in METHODS.values()}):
        out.append(f"== {cat} ==")
        for m in sorted((m for m in METHODS.values() if m.category == cat), key=lambda m: m.name):
            out.append(f"{m.name} " + " ".join(p.name if p.default is REQUIRED else f"( {p.name} )"
                                               for p in m.params))
        out.append("")
    return "\n".join(out).rstrip()
