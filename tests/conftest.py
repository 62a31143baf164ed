"""Shared fixtures: a regtestd chain per test module, and a node factory."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from contrib.regtest.testing import RegtestChain
from node_factory import NodeFactory

pytest_plugins: list[str] = []


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestChain]:
    """One regtestd per test module (nodes of a module share it)."""
    c = RegtestChain(tmp_path_factory.mktemp("bitcoind"))
    c.start()
    c.mine(101)
    yield c
    c.stop()


@pytest.fixture
def node_factory(chain: RegtestChain, tmp_path: Path) -> Iterator[NodeFactory]:
    nf = NodeFactory(tmp_path, chain)
    yield nf
    problems = nf.teardown()
    if problems:
        pytest.fail("node teardown: " + "; ".join(problems))
