"""JSON-RPC error codes the tests expect (Core Lightning's) and helpers
that return the error a call must raise."""
from __future__ import annotations

from typing import Any, Callable

import pytest
from pyln.client import RpcError

INVALID_REQUEST = -32600
INVALID_PARAMS = -32602


def rpc_error(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
    """The `error` object of a call that must fail."""
    with pytest.raises(RpcError) as e:
        fn(*args, **kwargs)
    return e.value.error


def assert_invalid(fn: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any) -> dict:
    """A call refused with -32602, naming `name` (the parameter) if given."""
    err = rpc_error(fn, *args, **kwargs)
    assert err["code"] == INVALID_PARAMS, err
    if name is not None:
        assert name in err["message"], err
    return err
