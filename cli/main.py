"""lightning-cli: send one command to lightningd's JSON-RPC socket and print
the result (Core Lightning's lightning-cli(1), in click)."""
from __future__ import annotations

import json
import os
import socket
import sys
from importlib import resources
from typing import Any

import click

VERSION = "v0.1.0"
NETWORK_FLAGS = {"mainnet": "bitcoin", "testnet": "testnet", "signet": "signet", "regtest": "regtest"}
EXIT_ERROR, EXIT_CONNECT, EXIT_USAGE = 1, 2, 3
LEVELS = ["io", "trace", "debug", "info", "unusual", "broken"]


def parse_arg(text: str) -> Any:
    """Numbers, true/false/null and raw JSON ({ [ ") become JSON; the rest is a string."""
    if text in ("true", "false", "null"):
        return json.loads(text)
    if text[:1] in ("{", "[", '"'):
        try:
            return json.loads(text)
        except ValueError:
            raise click.UsageError(f"Malformed JSON in parameter: {text}") from None
    t = text[1:] if text.startswith("-") else text
    if t.isdigit():
        return int(text)
    if t.count(".") == 1 and t.replace(".", "").isdigit() and not t.startswith(".") and not t.endswith("."):
        return float(text)
    return text


def build_params(args: list[str], keywords: bool, ordered: bool) -> Any:
    if not keywords and not ordered:
        keywords = bool(args) and "=" in args[0]
    if keywords:
        out: dict[str, Any] = {}
        for a in args:
            if "=" not in a:
                raise click.UsageError(f"Expected key=value in '{a}'")
            k, v = a.split("=", 1)
            out[k] = parse_arg(v)
        return out
    return [parse_arg(a) for a in args]


def read_config(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                k, _, v = line.partition("=")
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def resolve_rpc_path(lightning_dir: str | None, network: str | None, rpc_file: str | None,
                     conf: str | None) -> str:
    base = os.path.abspath(os.path.expanduser(lightning_dir or "~/.lightning"))
    cfg = read_config(os.path.expanduser(conf) if conf else os.path.join(base, "config"))
    if network is None:
        network = cfg.get("network")
        for flag, name in NETWORK_FLAGS.items():
            if flag in cfg:
                network = name
    network = network or "bitcoin"
    netcfg = read_config(os.path.join(base, network, "config"))
    rpc = rpc_file or netcfg.get("rpc-file") or cfg.get("rpc-file") or "lightning-rpc"
    rpc = os.path.expanduser(rpc)
    return rpc if os.path.isabs(rpc) else os.path.join(base, network, rpc)


class RpcClient:
    """Minimal streaming JSON-RPC client (one request, maybe notifications)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.decoder = json.JSONDecoder()

    def send(self, obj: dict) -> None:
        self.sock.sendall(json.dumps(obj).encode())

    def read(self) -> dict:
        while True:
            text = self.buf.decode("utf-8", "replace").lstrip()
            if text:
                try:
                    obj, end = self.decoder.raw_decode(text)
                    self.buf = text[end:].encode()
                    return obj
                except ValueError:
                    pass
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("lightningd closed the connection")
            self.buf += data


def manpage(command: str) -> str | None:
    try:
        return (resources.files("cli") / "man" / f"lightning-{command}.7.md").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None


def human(obj: Any, indent: str = "") -> str:
    """-H output: `key=value` lines; `help` lists commands one per line."""
    if isinstance(obj, dict) and "help" in obj and isinstance(obj["help"], list):
        lines = []
        for h in obj["help"]:
            lines.append(f"{h.get('command', '')}\n    {h.get('description', '')}\n")
        lines.append("---\nrun `lightning-cli help <command>` for more information on a specific command")
        return "\n".join(lines)
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "format-hint":
                continue
            if isinstance(v, (dict, list)):
                lines.append(f"{indent}{k}=")
                lines.append(human(v, indent + "   "))
            else:
                lines.append(f"{indent}{k}={_scalar(v)}")
    elif isinstance(obj, list):
        for v in obj:
            lines.append(human(v, indent) if isinstance(v, (dict, list)) else f"{indent}{_scalar(v)}")
    else:
        lines.append(f"{indent}{_scalar(obj)}")
    return "\n".join(x for x in lines if x != "")


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


def flat(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out += flat(v, f"{prefix}.{k}" if prefix else k)
        return out
    if isinstance(obj, list):
        out = []
        for i, v in enumerate(obj):
            out += flat(v, f"{prefix}[{i}]")
        return out
    return [f"{prefix}={_scalar(obj) if not isinstance(obj, str) else obj}"]


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]})
@click.option("--lightning-dir", default=None, help="Set working directory. All other files are relative to this")
@click.option("--conf", default=None, help="Configuration file (default: <lightning-dir>/config)")
@click.option("--network", default=None, help="Network: bitcoin, testnet, signet or regtest")
@click.option("--mainnet", "net_flag", flag_value="bitcoin", help="Alias for --network=bitcoin")
@click.option("--testnet", "net_flag", flag_value="testnet", help="Alias for --network=testnet")
@click.option("--signet", "net_flag", flag_value="signet", help="Alias for --network=signet")
@click.option("--regtest", "net_flag", flag_value="regtest", help="Alias for --network=regtest")
@click.option("--rpc-file", default=None, help="Name of RPC socket (default: lightning-rpc)")
@click.option("-k", "--keywords", is_flag=True, help="Use format key=value for <params>")
@click.option("-o", "--order", "ordered", is_flag=True, help="Use params in order for <params>")
@click.option("-H", "--human-readable", "human_out", is_flag=True, help="Human-readable output")
@click.option("-J", "--json", "json_out", is_flag=True, help="JSON output (default unless 'help')")
@click.option("-R", "--raw", "raw_out", is_flag=True, help="Raw, unformatted JSON output")
@click.option("-F", "--flat", "flat_out", is_flag=True, help="Flatten output ('x.y.x=' format)")
@click.option("-N", "--notifications", default="info", help="Print notifications of this level or above, or none")
@click.option("-l", "--filter", "filter_", default=None, help="Set JSON filter")
@click.option("-V", "--version", is_flag=True, help="Print version and exit")
@click.argument("command", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def cli(lightning_dir: str | None, conf: str | None, network: str | None, net_flag: str | None,
        rpc_file: str | None, keywords: bool, ordered: bool, human_out: bool, json_out: bool, raw_out: bool,
        flat_out: bool, notifications: str, filter_: str | None, version: bool, command: str | None,
        args: tuple[str, ...]) -> None:
    """Send COMMAND with ARGS to lightningd and print the result."""
    if version:
        click.echo(VERSION)
        return
    if keywords and ordered:
        raise click.UsageError("Cannot use both -k and -o")
    if notifications != "none" and notifications not in LEVELS:
        raise click.UsageError(f"-N: unknown level {notifications}")
    if command is not None and command.startswith("-"):
        raise click.UsageError(f"Unknown option {command}")
    command = command or "help"
    params = build_params(list(args), keywords, ordered)
    path = resolve_rpc_path(lightning_dir, network or net_flag, rpc_file, conf)
    # `help CMD` prints that command's manual page when we ship one.
    if command == "help" and params and not (json_out or raw_out or flat_out):
        name = params[0] if isinstance(params, list) else params.get("command")
        page = manpage(str(name)) if name else None
        if page is not None:
            click.echo(page.rstrip())
            return
    try:
        client = RpcClient(path)
    except OSError as e:
        click.echo(f"lightning-cli: Connecting to '{path}': {e.strerror or e}", err=True)
        sys.exit(EXIT_CONNECT)
    req: dict[str, Any] = {"jsonrpc": "2.0", "id": f"cli:{command}#{os.getpid()}", "method": command,
                           "params": params}
    if filter_ is not None:
        try:
            req["filter"] = json.loads(filter_)
        except ValueError:
            raise click.UsageError("Malformed --filter JSON") from None
    try:
        if notifications != "none":
            client.send({"jsonrpc": "2.0", "id": "cli:notifications", "method": "notifications",
                         "params": {"enable": True}})
            client.read()
        client.send(req)
        while True:
            resp = client.read()
            if "id" not in resp and resp.get("method") in ("message", "log"):
                p = resp.get("params", {})
                lvl = p.get("level", "info")
                if lvl in LEVELS and LEVELS.index(lvl) >= LEVELS.index(notifications if notifications in LEVELS
                                                                       else "info"):
                    click.echo(f"# {p.get('message', p.get('log', ''))}")
                continue
            if resp.get("id") == req["id"]:
                break
    except (OSError, ConnectionError) as e:
        click.echo(f"lightning-cli: reading response: {e}", err=True)
        sys.exit(EXIT_CONNECT)
    if "error" in resp and resp["error"] is not None:
        click.echo(json.dumps(resp["error"], indent=3))
        sys.exit(EXIT_ERROR)
    result = resp.get("result")
    use_human = human_out or (not (json_out or raw_out or flat_out)
                              and isinstance(result, dict) and result.get("format-hint") == "simple")
    if raw_out:
        click.echo(json.dumps(result))
    elif flat_out:
        click.echo("\n".join(flat(result)))
    elif use_human:
        click.echo(human(result))
    else:
        click.echo(json.dumps(result, indent=3))


def main() -> None:
    try:
        cli(prog_name="lightning-cli", standalone_mode=False)
    except click.UsageError as e:
        click.echo(f"lightning-cli: {e.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
