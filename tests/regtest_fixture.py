"""pytest fixtures running the real regtestd (contrib/regtest).

Use in a test module:

    from regtest_fixture import regtestd, regtestd_factory  # noqa: F401

    def test_something(regtestd):          # a started chain, stopped afterwards
        regtestd.mine(101)
        txid, vout = regtestd.fund(address, 100_000, confirm=True)

    def test_two(regtestd_factory):        # several chains, or custom options
        a = regtestd_factory(extra_args=["-mempoolfullrbf=0"])
        b = regtestd_factory(cookie=True, start=False)

`regtestd_module` is the same as `regtestd` shared by a whole test module
(faster when tests only add blocks). See contrib.regtest.testing.RegtestChain
for the helper API (rpc, mine, fund, faucet_coins, restart, stop, ...).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from contrib.regtest.testing import RegtestChain

__all__ = ["RegtestChain", "regtestd", "regtestd_factory", "regtestd_module"]


def _factory(base: Path) -> tuple[Callable[..., RegtestChain], list[RegtestChain]]:
    chains: list[RegtestChain] = []
    counter = itertools.count()

    def make(start: bool = True, **kwargs: Any) -> RegtestChain:
        chain = RegtestChain(base / f"regtestd-{next(counter)}", **kwargs)
        chains.append(chain)
        if start:
            chain.start()
        return chain

    return make, chains


@pytest.fixture
def regtestd_factory(tmp_path: Path) -> Iterator[Callable[..., RegtestChain]]:
    """Make RegtestChains (started unless start=False); all are stopped at the end."""
    make, chains = _factory(tmp_path)
    yield make
    for c in chains:
        c.stop()


@pytest.fixture
def regtestd(regtestd_factory: Callable[..., RegtestChain]) -> RegtestChain:
    """A started regtestd on a fresh datadir."""
    return regtestd_factory()


@pytest.fixture(scope="module")
def regtestd_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestChain]:
    """One regtestd shared by the tests of a module."""
    make, chains = _factory(tmp_path_factory.mktemp("regtestd"))
    yield make()
    for c in chains:
        c.stop()
