"""The process boundaries, checked on the source: daemons meet only through
messages, so no package imports across them (imports inside functions
included).

- a subdaemon's package never imports lightningd/ or another subdaemon's;
- the master never imports hsmd/ (it holds no key);
- common/, wire/ and bitcoin/ import no daemon;
- cli/ never imports the master;
- zygote/ (the template every subdaemon is forked from) imports the daemons
  but never the master, and nothing imports it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAEMONS = {"hsmd", "connectd", "gossipd", "channeld", "onchaind"}
MASTER = "lightningd"
SHARED = {"common", "wire", "bitcoin"}

ZYGOTE = "zygote"
FORBIDDEN: dict[str, set[str]] = {
    **{d: {MASTER, ZYGOTE} | (DAEMONS - {d}) for d in DAEMONS},
    MASTER: {"hsmd", ZYGOTE},
    **{s: DAEMONS | {MASTER, "cli", ZYGOTE} for s in SHARED},
    "cli": {MASTER, ZYGOTE} | DAEMONS,
    ZYGOTE: {MASTER},
}


def imported_packages(source: str, rel_path: Path) -> set[tuple[str, int]]:
    """Top-level packages a file imports (resolving relative imports), with line numbers."""
    tree = ast.parse(source, str(rel_path))
    rel_parts = rel_path.with_suffix("").parts
    out: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update((a.name.split(".")[0], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = rel_parts[:-node.level]
                top = (base + tuple((node.module or "").split(".")))[0] if base else (node.module or "").split(".")[0]
                out.add((top, node.lineno))
            elif node.module:
                out.add((node.module.split(".")[0], node.lineno))
    return out


def test_every_package_is_checked():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert set(FORBIDDEN) <= packages
    assert DAEMONS | {MASTER, "cli", ZYGOTE} | SHARED <= packages


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_crosses_a_process_boundary(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for top, line in imported_packages(path.read_text(), path.relative_to(ROOT)):
            if top in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_and_function_level_imports():
    """(the check itself can fail)"""
    src = "import wire\ndef f():\n    from lightningd import db\n    from ..hsmd import libhsmd\n    from .core import x\n"
    found = {top for top, _ in imported_packages(src, Path("channeld/probe.py"))}
    assert found == {"wire", "lightningd", "hsmd", "channeld"}
