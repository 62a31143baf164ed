"""The setting most benchmarks run in: a regtest bitcoind with mature coins
and a NodeFactory (tests/node_factory.py) in a temporary directory, torn
down in order whatever happens, with what the teardown found kept."""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from node_factory import NodeFactory  # noqa: E402

from contrib.regtest.testing import RegtestChain  # noqa: E402


@dataclass
class Scene:
    chain: RegtestChain
    nodes: NodeFactory
    #: what NodeFactory.teardown reported (BROKEN lines, tracebacks, crashes)
    teardown_problems: list[Any] = field(default_factory=list)


@contextmanager
def regtest_scene(blocks: int = 101) -> Iterator[Scene]:
    """A chain with `blocks` mined (101: one mature coinbase) and a node
    factory on it; nodes and chain are stopped on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        chain = RegtestChain(Path(tmp) / "bitcoind")
        chain.start()
        try:
            chain.mine(blocks)
            scene = Scene(chain, NodeFactory(Path(tmp), chain))
            try:
                yield scene
            finally:
                scene.teardown_problems = scene.nodes.teardown()
        finally:
            chain.stop()
