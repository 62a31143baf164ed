"""Shared fixtures: a regtestd chain per test module, and a node factory."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from contrib.postgres_testing import PostgresServer, pg_bindir
from contrib.regtest.testing import RegtestChain
from node_factory import NodeFactory, db_provider_name

pytest_plugins: list[str] = []


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestChain]:
    """One regtestd per test module (nodes of a module share it)."""
    c = RegtestChain(tmp_path_factory.mktemp("bitcoind"))
    c.start()
    c.mine(101)
    yield c
    c.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server per test session (worker); each node gets its
    own database on it."""
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; ./run test does it as root)")
    server = PostgresServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def db_provider(request: pytest.FixtureRequest) -> PostgresServer | None:
    """TEST_DB_PROVIDER=postgres: every node's --wallet is a database on
    the session's PostgreSQL server; else (sqlite3) the default file."""
    if db_provider_name() == "postgres":
        return request.getfixturevalue("postgres")
    return None


@pytest.fixture
def node_factory(chain: RegtestChain, tmp_path: Path, db_provider: PostgresServer | None) -> Iterator[NodeFactory]:
    nf = NodeFactory(tmp_path, chain, db_provider)
    yield nf
    problems = nf.teardown()
    if problems:
        pytest.fail("node teardown: " + "; ".join(problems))
