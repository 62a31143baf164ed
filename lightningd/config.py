"""Configuration: command line (click) + `<dir>/config` + `<dir>/<network>/config`.

Precedence: command line > per-network config > top config > defaults.  Multi
options accumulate from every source.  Options nobody declared are kept aside
as candidate plugin options until the plugins' manifests are known; whatever
is still unclaimed after that is an error naming it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bitcoin.networks import NETWORKS

from .options import (
    ALIASES,
    FLAG,
    OPTIONS,
    OPTIONS_BY_NAME,
    OptionError,
    OptionSpec,
    OptionValue,
    convert_value,
)

NETWORK_ALIASES = {"mainnet": "bitcoin", "testnet": "testnet", "signet": "signet", "regtest": "regtest"}


@dataclass
class RawOption:
    """An option as written: name, text value (None for a bare flag), where."""

    name: str
    value: str | None
    source: str


@dataclass
class Config:
    values: dict[str, OptionValue]
    unclaimed: list[RawOption] = field(default_factory=list)  # maybe plugin options
    lightning_dir: str = ""        # base dir
    network_dir: str = ""          # <base>/<network>
    config_files: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def get(self, name: str, default: Any = None) -> Any:
        v = self.values.get(name)
        return default if v is None or v.value is None else v.value

    @property
    def network(self) -> str:
        return self.values["network"].value

    @property
    def developer(self) -> bool:
        return bool(self.values["developer"].value)

    def rpc_path(self) -> str:
        p = os.path.expanduser(self["rpc-file"])
        return p if os.path.isabs(p) else os.path.join(self.network_dir, p)


def parse_argv_extras(extras: list[str]) -> list[RawOption]:
    """Options click did not know (`--name=value` or `--name value`)."""
    out: list[RawOption] = []
    i = 0
    while i < len(extras):
        arg = extras[i]
        if not arg.startswith("--"):
            raise OptionError(f"unexpected argument '{arg}'")
        body = arg[2:]
        if "=" in body:
            name, value = body.split("=", 1)
            out.append(RawOption(name, value, "cmdline"))
        elif i + 1 < len(extras) and not extras[i + 1].startswith("--"):
            out.append(RawOption(body, extras[i + 1], "cmdline"))
            i += 1
        else:
            out.append(RawOption(body, None, "cmdline"))
        i += 1
    return out


def read_config_file(path: str, seen: set[str] | None = None) -> list[RawOption]:
    """`name=value` / `name` lines, `#` comments, `include FILE` (relative to
    this file's directory)."""
    seen = seen if seen is not None else set()
    real = os.path.realpath(path)
    if real in seen:
        raise OptionError(f"{path}: include loop")
    seen.add(real)
    out: list[RawOption] = []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise OptionError(f"cannot read config file {path}: {e.strerror}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            text = line.rstrip("\r\n")
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            if stripped.startswith("include "):
                inc = stripped[len("include "):].strip()
                inc = inc if os.path.isabs(inc) else os.path.join(os.path.dirname(path), inc)
                out.extend(read_config_file(inc, seen))
                continue
            if "=" in text:
                name, value = text.split("=", 1)
                out.append(RawOption(name.strip().lstrip("-"), value, where))
            else:
                out.append(RawOption(stripped.lstrip("-"), None, where))
    return out


def _apply(values: dict[str, OptionValue], raw: RawOption, unclaimed: list[RawOption], in_file: bool) -> None:
    spec = OPTIONS_BY_NAME.get(ALIASES.get(raw.name, raw.name))
    if spec is None:
        unclaimed.append(raw)
        return
    if in_file and spec.cmdline_only:
        raise OptionError(f"{raw.source}: option '{raw.name}' is not valid in a configuration file")
    try:
        value = convert_value(spec, raw.value)
    except OptionError as e:
        if in_file:  # say which line to fix
            raise OptionError(f"{raw.source}: {e}") from None
        raise
    cur = values[spec.name]
    if spec.multi:
        if cur.source == "default":
            cur.value, cur.sources = [], []
        cur.value.append(value)
        cur.sources.append(raw.source)
        cur.source = raw.source
    else:
        cur.value, cur.source = value, raw.source


def build_config(cmdline: list[RawOption]) -> Config:
    """Resolve the whole configuration from the command line options (known
    and unknown, in order), reading the config files they point at."""
    values = {o.name: OptionValue(o, list(o.default) if o.multi and o.default else o.default) for o in OPTIONS}
    # Find the base directory and config file first: they decide what to read.
    base = next((r.value for r in reversed(cmdline) if r.name == "lightning-dir"), None)
    base = os.path.abspath(os.path.expanduser(base or OPTIONS_BY_NAME["lightning-dir"].default))
    conf = next((r.value for r in reversed(cmdline) if r.name == "conf"), None)

    unclaimed: list[RawOption] = []
    files: list[str] = []
    top = os.path.abspath(os.path.expanduser(conf)) if conf else os.path.join(base, "config")
    file_opts: list[RawOption] = []
    if os.path.exists(top):
        file_opts = read_config_file(top)
        files.append(top)
    elif conf:
        raise OptionError(f"--conf: cannot read {conf}")

    def network_of(opts: list[RawOption]) -> str | None:
        net = None
        for r in opts:
            if r.name == "network":
                net = (r.value or "").strip()
            elif r.name in NETWORK_ALIASES:
                net = NETWORK_ALIASES[r.name]
        return net

    network = network_of(cmdline) or network_of(file_opts) or "bitcoin"
    net_opts: list[RawOption] = []
    net_file = os.path.join(base, network, "config")
    if os.path.exists(net_file):
        net_opts = read_config_file(net_file)
        files.append(net_file)
        for r in net_opts:
            if r.name in ("network",) + tuple(NETWORK_ALIASES):
                raise OptionError(f"{r.source}: network is not valid within the per-network configuration file")

    for r in file_opts + net_opts:
        _apply(values, r, unclaimed, in_file=True)
    # command line last: it wins, but multi options add to the files' ones
    for r in cmdline:
        _apply(values, r, unclaimed, in_file=False)

    values["network"].value = network
    if values["network"].source == "default" and network != "bitcoin":
        values["network"].source = next(
            (r.source for r in cmdline + file_opts if r.name == "network" or r.name in NETWORK_ALIASES), "default")
    values["lightning-dir"].value = base
    if network not in NETWORKS:
        raise OptionError(f"--network: unknown network '{network}' (bitcoin, testnet, signet, regtest)")

    cfg = Config(values, unclaimed, base, os.path.join(base, network), files)
    if not cfg.developer:
        for name, v in values.items():
            if v.spec.dev and v.source != "default":
                raise OptionError(f"--{name}: developer option requires --developer")
    if cfg.get("clear-plugins"):
        # plugins named before clear-plugins (i.e. in config files) are dropped
        for n in ("plugin", "plugin-dir"):
            v = values[n]
            if v.value:
                keep = [(x, s) for x, s in zip(v.value, v.sources) if s == "cmdline"]
                v.value = [x for x, _ in keep]
                v.sources = [s for _, s in keep]
    return cfg


def claim_plugin_options(cfg: Config, declared: dict[str, OptionSpec]) -> dict[str, list[RawOption]]:
    """Hand each unclaimed option to the plugin that declared it; anything left
    over is an unknown option and an error that names it."""
    claimed: dict[str, list[RawOption]] = {}
    left: list[RawOption] = []
    for r in cfg.unclaimed:
        if r.name in declared:
            claimed.setdefault(r.name, []).append(r)
        else:
            left.append(r)
    if left:
        r = left[0]
        where = "" if r.source == "cmdline" else f"{r.source}: "
        raise OptionError(f"{where}unrecognized option '--{r.name}'")
    cfg.unclaimed = []
    return claimed


def flag_spec(name: str) -> bool:
    spec = OPTIONS_BY_NAME.get(name)
    return spec is not None and spec.kind == FLAG
