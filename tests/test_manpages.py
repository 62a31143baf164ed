"""The manual pages shipped in cli/man/: one per built-in RPC command
(`lightning-cli help CMD` prints it), plus lightningd(8),
lightningd-config(5) and lightning-cli(1).

Adding an RPC command?  Add cli/man/lightning-<command>.7.md (copy the
layout of lightning-getinfo.7.md): these tests find every command the node
registers and fail, naming the page, until it exists.
"""
from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from lightningd.jsonrpc import CommandRegistry
from lightningd.options import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "cli" / "man"
REQUIRED_SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "RETURN VALUE")


# -- the node's command registry, built without starting a node -------------------------

def _registering_modules() -> list[str]:
    """Names X of every `X.register(self)` call in lightningd/lightningd.py
    (LightningD.__init__ has `commands.register(self)`, ...), read from the
    source so that a module registering new commands is picked up without
    touching this test."""
    tree = ast.parse((ROOT / "lightningd" / "lightningd.py").read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
                and isinstance(node.func.value, ast.Name)
                and [type(a) for a in node.args] == [ast.Name] and node.args[0].id == "self"):
            names.append(node.func.value.id)
    return names


def _import(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(f"lightningd.{name}")
    except ModuleNotFoundError:
        return importlib.import_module(name)


def build_registry() -> CommandRegistry:
    """What LightningD.__init__ registers, on a stand-in object.  register(ld)
    uses `ld.registry.command` while registering, and some modules also keep
    a reference to the part of the node their commands use later
    (`ld.channels`, `ld.gossipd`, `ld.payments`; closing_control also sets
    attributes on `ld`): the stand-in has empty objects for those, which the
    command handlers would only touch when called."""
    stand_in = types.SimpleNamespace(registry=CommandRegistry(), channels=types.SimpleNamespace(),
                                     gossipd=types.SimpleNamespace(), payments=types.SimpleNamespace(),
                                     invoices=None)
    for name in _registering_modules():
        module = _import(name)
        try:
            module.register(stand_in)
        except AttributeError as e:
            pytest.fail(f"lightningd.{name}.register(ld) used more than ld.registry while registering "
                        f"({e}); give the stand-in in tests/test_manpages.py what it needs")
    return stand_in.registry


@pytest.fixture(scope="module")
def registry() -> CommandRegistry:
    return build_registry()


def page_path(command: str) -> Path:
    return MAN / f"lightning-{command}.7.md"


def has_section(text: str, title: str) -> bool:
    """A `TITLE` heading, setext (underlined with - or =) or ATX (# TITLE)."""
    setext = re.search(rf"^{re.escape(title)}[ \t]*\n[-=]{{3,}}[ \t]*$", text, re.M)
    atx = re.search(rf"^#+[ \t]+{re.escape(title)}[ \t]*#*[ \t]*$", text, re.M)
    return bool(setext or atx)


# -- (1) every command has a page ---------------------------------------------------------

def test_registry_is_found(registry):
    assert set(_registering_modules()) >= {"commands", "peer_control"}
    assert {"getinfo", "help", "stop", "connect", "ping"} <= set(registry.commands)


def test_every_command_has_a_manual_page(registry):
    missing = [f"{page_path(name).relative_to(ROOT)} (for RPC command '{name}')"
               for name in sorted(registry.commands) if not page_path(name).is_file()]
    assert not missing, ("missing manual page(s): " + ", ".join(missing)
                         + ". Every RPC command needs cli/man/lightning-<command>.7.md, "
                           "see cli/man/lightning-getinfo.7.md for the layout.")


def test_every_page_has_the_required_sections(registry):
    problems = []
    for name in sorted(registry.commands):
        path = page_path(name)
        if not path.is_file():
            continue  # reported by test_every_command_has_a_manual_page
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        for section in REQUIRED_SECTIONS:
            if not has_section(text, section):
                problems.append(f"{rel}: no {section} section")
        if f"lightning-{name}" not in text:
            problems.append(f"{rel}: NAME does not say lightning-{name}")
        if f"**{name}**" not in text:
            problems.append(f"{rel}: SYNOPSIS does not show **{name}**")
    assert not problems, "\n".join(problems)


def test_every_declared_parameter_is_documented(registry):
    problems = []
    for name, cmd in sorted(registry.commands.items()):
        path = page_path(name)
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for p in cmd.params:
            if f"*{p.name}*" not in text:
                problems.append(f"{path.relative_to(ROOT)}: parameter '{p.name}' of {name} is not documented "
                                f"(write it as *{p.name}*)")
    assert not problems, "\n".join(problems)


def test_pages_load_as_package_resources(registry):
    from cli.main import manpage
    unreadable = [name for name in sorted(registry.commands) if page_path(name).is_file() and manpage(name) is None]
    assert not unreadable, f"cli.main.manpage() cannot load the pages of: {', '.join(unreadable)}"


def test_man_directory_is_shipped_with_the_cli_package(tmp_path):
    # setuptools' package finder only ships cli/man/*.md if cli/man is a package
    assert (MAN / "__init__.py").is_file(), "cli/man/__init__.py is needed for the pages to be packaged"
    code = ("from importlib import resources; d = resources.files('cli') / 'man'; "
            "print(d.is_dir(), (d / 'lightning-getinfo.7.md').is_file())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


# -- (2) lightning-cli help CMD prints the page without a node --------------------------------

def _lightning_cli() -> list[str]:
    script = Path(sys.executable).with_name("lightning-cli")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def test_cli_help_prints_the_page_without_a_node(tmp_path):
    out = subprocess.run(_lightning_cli() + ["--lightning-dir=/nonexistent", "help", "getinfo"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    page = page_path("getinfo").read_text(encoding="utf-8")
    assert out.stdout.rstrip() == page.rstrip()


def test_cli_help_json_asks_the_node(tmp_path):
    # -J wants the node's JSON answer: with no node, that is a connection failure (exit 2)
    out = subprocess.run(_lightning_cli() + ["--lightning-dir=/nonexistent", "-J", "help", "getinfo"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "Connecting to" in out.stderr


# -- (3) the daemon and cli pages cover every option ------------------------------------------

def test_every_lightningd_option_is_in_lightningd_config():
    text = (MAN / "lightningd-config.5.md").read_text(encoding="utf-8")
    missing = [o.name for o in OPTIONS if f"**{o.name}**" not in text]
    assert not missing, ("cli/man/lightningd-config.5.md does not document option(s) from lightningd/options.py: "
                         + ", ".join(missing) + " (write each as * **name**=*VALUE*)")


def test_every_lightning_cli_option_is_in_lightning_cli_page():
    import click

    from cli.main import cli
    text = (MAN / "lightning-cli.1.md").read_text(encoding="utf-8")
    missing = [opt for p in cli.params if isinstance(p, click.Option)
               for opt in p.opts + p.secondary_opts if opt.startswith("--") and f"**{opt}**" not in text]
    assert not missing, "cli/man/lightning-cli.1.md does not document: " + ", ".join(missing)


@pytest.mark.parametrize("page", ["lightningd.8.md", "lightningd-config.5.md", "lightning-cli.1.md"])
def test_program_pages_have_the_basic_sections(page):
    text = (MAN / page).read_text(encoding="utf-8")
    missing = [s for s in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO") if not has_section(text, s)]
    assert not missing, f"cli/man/{page}: missing section(s) {', '.join(missing)}"
