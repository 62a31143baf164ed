"""`lightningd` command line: click parses Core Lightning's options (generated
from lightningd/options.py); unknown `--name=value` options are kept for
plugins and rejected, naming them, if no plugin claims them."""
from __future__ import annotations

import asyncio
import os
import sys

import click

from common.daemon import profiled
from common.features import Context, list_features_lines, our_features

from .config import RawOption, build_config, parse_argv_extras
from .log import LogBook
from .options import FLAG, OPTIONS, OptionError

VERSION = "v0.1.0"


def _click_params() -> list[click.Option]:
    out = []
    for o in OPTIONS:
        names = [f"--{o.name}"]
        if o.kind == FLAG:
            out.append(click.Option(names, is_flag=True, default=None, help=o.help, hidden=o.dev))
        else:
            out.append(click.Option(names, type=str, multiple=o.multi, default=None, help=o.help, hidden=o.dev,
                                    metavar="VALUE"))
    return out


def _raw_from_click(ctx: click.Context, values: dict) -> list[RawOption]:
    raws: list[RawOption] = []
    for o in OPTIONS:
        key = o.name.replace("-", "_")
        if ctx.get_parameter_source(key) != click.core.ParameterSource.COMMANDLINE:
            continue
        v = values[key]
        if o.kind == FLAG:
            raws.append(RawOption(o.name, None, "cmdline"))
        elif o.multi:
            raws.extend(RawOption(o.name, x, "cmdline") for x in v)
        else:
            raws.append(RawOption(o.name, v, "cmdline"))
    return raws


def _run(ctx: click.Context, **values: object) -> None:
    try:
        raws = _raw_from_click(ctx, values) + parse_argv_extras(list(ctx.args))
        cfg = build_config(raws)
    except OptionError as e:
        click.echo(f"lightningd: {e}", err=True)
        sys.exit(1)
    if cfg.get("list-features-only"):
        # As Core Lightning: our init features, one `name/parity` a line,
        # before any plugin could add its own (the runners parse this).
        for line in list_features_lines(our_features(Context.INIT)):
            click.echo(line)
        return
    book = LogBook()
    try:
        # Core Lightning moves into <lightning-dir>/<network> before it opens
        # the log files, so a relative --log-file lands there (lnprototest
        # reads <lightning-dir>/regtest/log after passing --log-file=log).
        os.makedirs(cfg.network_dir, mode=0o700, exist_ok=True)
        files = [f if f == "-" or os.path.isabs(f) else os.path.join(cfg.network_dir, f)
                 for f in (cfg.get("log-file") or [])]
        levels = []
        for text in cfg.get("log-level") or []:
            # LEVEL:SUBSYSTEM:PATH names a log file: resolve it as --log-file is
            parts = text.split(":", 2)
            if len(parts) == 3 and parts[2] != "-" and not os.path.isabs(parts[2]):
                parts[2] = os.path.join(cfg.network_dir, parts[2])
            levels.append(":".join(parts))
        book.configure(levels, files, cfg.get("log-prefix") or "", bool(cfg.get("log-timestamps")))
    except (ValueError, OSError) as e:
        click.echo(f"lightningd: {e}", err=True)
        sys.exit(1)
    # (imported once the options are good: --help, --version and option
    # errors answer without loading the whole node)
    from .lightningd import LightningD, StartupError
    if cfg.get("daemon"):
        _daemonize()

    async def amain() -> int:
        try:
            ld = LightningD(cfg, book)
            return await ld.run()
        except (StartupError, OptionError) as e:
            book.logger("lightningd").broken(str(e))
            click.echo(f"lightningd: {e}", err=True)
            return 1
    code = profiled("lightningd", lambda: asyncio.run(amain()))
    book.close()
    sys.exit(code)


def _daemonize() -> None:
    """--daemon: detach like Core Lightning (fork, new session, no stdio)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _make_command() -> click.Command:
    cmd = click.Command("lightningd", callback=click.pass_context(_run), params=_click_params(),
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                          "help_option_names": ["--help", "-h"]},
                        help="The Lightning Network daemon: a node modelled on Core Lightning.")
    cmd.params.append(click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True,
                                   callback=lambda c, p, v: (click.echo(VERSION), c.exit()) if v else None,
                                   help="Print version and exit"))
    return cmd


def main() -> None:
    _make_command()(prog_name="lightningd")


if __name__ == "__main__":
    main()
