"""JSON (de)serialization of an ``OnchainState``, so onchaind survives a crash.

Only facts are stored (the channel, the spending tx, confirmations, spends,
preimages, pinned feerates, what was already told to the shell); the
resolution tree and the signed transactions are re-derived on load, and come
out identical since signatures are deterministic.

The codec is generic over dataclasses, driven by their type hints: bytes as
hex, transactions as hex, outpoints as "txid:index" (display order), enums
by value, dicts as lists of pairs, the shachain in its own byte format.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from typing import TYPE_CHECKING, Any

from bitcoin.tx import OutPoint, Tx
from common.shachain import ShachainStore

from .model import OnchainChannel, SpendFact

if TYPE_CHECKING:
    from .resolve import OnchainState
    from .signer import Signer

FORMAT_VERSION = 1


def encode(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, Tx):
        return obj.to_hex()
    if isinstance(obj, OutPoint):
        return str(obj)
    if isinstance(obj, ShachainStore):
        return obj.to_bytes().hex()
    if dataclasses.is_dataclass(obj):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return [[encode(k), encode(v)] for k, v in obj.items()]
    if isinstance(obj, (set, frozenset)):
        return sorted(encode(x) for x in obj)
    if isinstance(obj, (list, tuple)):
        return [encode(x) for x in obj]
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _outpoint(s: str) -> OutPoint:
    txid, index = s.split(":")
    return OutPoint.from_hex(txid, int(index))


def decode(tp: Any, data: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return decode(inner, data)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], x) for x in data)
        return tuple(decode(a, x) for a, x in zip(args, data))
    if origin is list:
        return [decode(args[0], x) for x in data]
    if origin in (set, frozenset):
        return origin(decode(args[0], x) for x in data)
    if origin is dict:
        return {decode(args[0], k): decode(args[1], v) for k, v in data}
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            return tp(data)
        if tp is bytes:
            return bytes.fromhex(data)
        if tp is Tx:
            return Tx.from_hex(data)
        if tp is OutPoint:
            return _outpoint(data)
        if tp is ShachainStore:
            return ShachainStore.from_bytes(bytes.fromhex(data))
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            return tp(**{f.name: decode(hints[f.name], data[f.name])
                         for f in dataclasses.fields(tp) if f.name in data})
        if tp in (int, str, bool):
            if not isinstance(data, tp):
                raise TypeError(f"expected {tp.__name__}, got {data!r}")
            return data
    raise TypeError(f"cannot decode {tp!r}")


# (attribute, type) of everything an OnchainState persists besides the channel
_FIELDS: list[tuple[str, Any]] = [
    ("commitment_tx", Tx),
    ("tip", int),
    ("feerate_per_kw", int),
    ("confirmations", dict[bytes, int]),
    ("spends", dict[OutPoint, SpendFact]),
    ("preimages", dict[bytes, bytes]),
    ("master_hashes", set[bytes]),
    ("pinned_feerates", dict[OutPoint, int]),
    ("bumped_at", dict[OutPoint, int]),
    ("emitted", set[str]),
    ("announced", set[bytes]),
]


def state_to_json(st: "OnchainState") -> str:
    doc = {"version": FORMAT_VERSION, "channel": encode(st.channel)}
    doc.update({name: encode(getattr(st, name)) for name, _ in _FIELDS})
    return json.dumps(doc, sort_keys=True)


def state_from_json(data: str, signer: "Signer") -> "OnchainState":
    from .resolve import OnchainState
    doc = json.loads(data)
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"unknown onchaind state version {doc.get('version')!r}")
    channel = decode(OnchainChannel, doc["channel"])
    kw = {name: decode(tp, doc[name]) for name, tp in _FIELDS}
    tx = kw.pop("commitment_tx")
    return OnchainState(channel, tx, signer, **kw)
