"""Property-based fuzzing of a running node's JSON-RPC socket, shared by
`tests/test_rpc_fuzz.py` (a bounded run in the suite) and `bench/rpc_fuzz.py`
(`./run bench rpc_fuzz --examples 20000`).

Black box: the commands and their parameter names come from the node's own
`help`, requests go over a raw Unix socket (so lone surrogates, NaN,
malformed bytes and deep nesting reach the node exactly as a hostile client
would send them), and each example is judged only by what the node shows
from outside:

- no error whose message is an "Internal error" (a command crashed),
- no code -1 outside the commands Core Lightning documents it for,
- a well-formed request always gets an answer (no hang-up, no hang, except
  for the commands that legitimately wait),
- no BROKEN line in the node's log and nothing new on its stderr
  (tracebacks, asyncio complaints),
- the node still answers `getinfo` afterwards.

Values are a mix of type confusion (null, bools, floats, NaN, nested
lists/objects), boundaries (0, -1, 2^31, 2^32, 2^63, 2^64...), hostile
strings (lone surrogates, huge, digits beyond Python's int limit) and values
valid enough to get past parameter parsing (our peer's id, a live invoice, a
wallet coin, route hops), so the fuzzer reaches command bodies too."""
from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, Verbosity, given, seed as hypothesis_seed, settings, strategies as st

from rpc_fuzz_values import CommandSpec, Example, Pool, example_strategy, short_json, with_types

# Never sent: would end the run (the node's shutdown has its own tests).
EXCLUDED = {"stop"}
# Commands that may legitimately wait longer than a call's budget (a timeout
# in them is not a hang): waits on invoices/payments, and those that talk to
# peers or retry.
MAY_WAIT = {"waitanyinvoice", "waitinvoice", "waitsendpay", "pay", "xpay", "keysend", "fundchannel", "close",
            "connect", "ping", "disconnect", "fetchinvoice", "sendinvoice"}
# `plugin` subcommands that start or stop processes: a random path is not a
# plugin worth starting, and stopping one changes what the rest of the run tests.
PLUGIN_SIDE_EFFECTS = {"start", "startdir", "rescan", "stop"}
# Core Lightning documents -1 ("catchall nonspecific error") for these
# commands' failures (schemas' `errors`, or its source for the rest): a -1
# that is not an "Internal error" is their normal answer.
CATCHALL_OK = {"sendpay", "pay", "xpay", "keysend", "fundchannel", "close", "decodepay", "decode", "setchannel", "txsend",
               "txdiscard", "withdraw", "txprepare", "connect", "disconnect", "dev-sign-last-tx", "plugin",
               "delinvoice", "createonion", "sendonion", "invoice", "ping", "check", "dev-resolve-invoice",
               "autoclean-once", "waitsendpay", "getroute", "waitinvoice", "disableoffer", "enableoffer",
               "disableinvoicerequest", "fetchinvoice", "sendinvoice", "injectonionmessage"}
# how long a MAY_WAIT command is given before the fuzzer moves on
WAIT_BUDGET = 1.5
TIMEOUT = object()          # the call got no answer within its budget
HUNG_UP = object()          # the node closed the connection without an answer


# ---------------------------------------------------------------------- the socket
def rpc_call(path: str, payload: bytes, timeout: float) -> Any:
    """One request on its own connection: the decoded response, TIMEOUT or
    HUNG_UP.  The write side is shut after sending, as a client that sent
    everything it had (the node must still answer)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        s.connect(path)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass   # it may refuse (and answer) before reading everything
        buf = b""
        while b"\n\n" not in buf:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(1 << 20)
            except socket.timeout:
                return TIMEOUT
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
        if not buf.strip():
            return HUNG_UP
        return json.loads(buf.split(b"\n\n")[0])
    finally:
        s.close()


def command_specs(path: str) -> list[CommandSpec]:
    """Every command `help` lists, with its parameters from the usage line
    ("name req [opt] [opt...]")."""
    r = rpc_call(path, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "help", "params": {}}).encode(), 30)
    specs = []
    for c in r["result"]["help"]:
        words = c["command"].split()
        params, required, varargs = [], 0, False
        for w in words[1:]:
            opt = w.startswith("[")
            w = w.strip("[]")
            if w.endswith("..."):
                varargs = True
                w = w[:-3]
            for alt in w.split("|")[:1]:
                params.append(alt)
            if not opt:
                required += 1
        specs.append(with_types(CommandSpec(words[0], params, required, varargs)))
    return specs


# ---------------------------------------------------------------------- judging
@dataclass
class NodeWatch:
    """What the node shows from outside: its socket, log file and stderr."""
    rpc_path: str
    log_path: Path
    stderr_path: Path
    pid: int | None = None
    log_pos: int = 0
    err_pos: int = 0

    def __post_init__(self) -> None:
        self.log_pos = _size(self.log_path)
        self.err_pos = _size(self.stderr_path)

    def new_text(self) -> tuple[str, str]:
        log, self.log_pos = _read_from(self.log_path, self.log_pos)
        err, self.err_pos = _read_from(self.stderr_path, self.err_pos)
        return log, err

    def alive(self) -> bool:
        if self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _read_from(p: Path, pos: int) -> tuple[str, int]:
    try:
        with open(p, "rb") as f:
            f.seek(pos)
            data = f.read()
    except OSError:
        return "", pos
    return data.decode(errors="replace"), pos + len(data)


def judge(ex: Example, resp: Any, watch: NodeWatch, call_timeout: float) -> list[str]:
    """Problems this example revealed (empty: fine)."""
    problems = []
    if resp is TIMEOUT:
        if ex.raw is None and ex.method not in MAY_WAIT:
            problems.append(f"no answer within {call_timeout}s")
    elif resp is HUNG_UP:
        if ex.must_answer:
            problems.append("connection closed without an answer")
    elif isinstance(resp, dict) and isinstance(resp.get("error"), dict):
        err = resp["error"]
        msg = str(err.get("message", ""))
        if "Internal error" in msg:
            problems.append(f"internal error: {msg[:300]}")
        elif err.get("code") == -1 and ex.method not in CATCHALL_OK:
            problems.append(f"code -1 from a command not documented to give it: {msg[:300]}")
        if err.get("code") is None:
            problems.append(f"error without a code: {err}")
    elif not isinstance(resp, dict) or "result" not in resp:
        problems.append(f"malformed response: {short_json(resp)}")
    log, err = watch.new_text()
    broken = [ln for ln in log.splitlines() if " BROKEN " in ln]
    if broken:
        problems.append("BROKEN log: " + " | ".join(broken[:4])[:600])
    if err.strip():
        # the end of a traceback names the exception
        problems.append("stderr: " + err.strip()[-600:])
    if not watch.alive():
        problems.append("node died")
        return problems
    info = rpc_call(watch.rpc_path, b'{"jsonrpc":"2.0","id":0,"method":"getinfo","params":{}}', 30)
    if not (isinstance(info, dict) and "result" in info):
        problems.append(f"getinfo after it failed: {info if isinstance(info, dict) else 'no answer'}")
    return problems


def signature(ex: Example, problem: str) -> str:
    """Groups failures by cause: the command, the kind of problem, and the
    exception named in it (or the message with its numbers blanked)."""
    kind = problem.split(":")[0]
    exc = re.findall(r"\b(\w+(?:Error|Exception|Exit))\b", problem)
    detail = exc[-1] if exc else re.sub(r"[0-9a-f]{8,}|\d+", "N", problem[len(kind):])[:70]
    return f"{ex.method if ex.raw is None else 'raw'}: {kind}: {detail}"


@dataclass
class FuzzStats:
    tried: int = 0
    answered: dict[str, int] = field(default_factory=dict)   # error code / "result" -> count
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)  # signature -> (example, problem)
    catchall: dict[str, set[str]] = field(default_factory=dict)   # command -> its -1 messages (numbers blanked)

    def record(self, ex: Example, resp: Any) -> None:
        if isinstance(resp, dict):
            k = "result" if "result" in resp else str((resp.get("error") or {}).get("code"))
            if k == "-1":
                msg = re.sub(r"[0-9a-f]{8,}|\d+", "N", str(resp["error"].get("message")))[:100]
                self.catchall.setdefault(ex.method, set()).add(msg)
        else:
            k = "timeout" if resp is TIMEOUT else "hung up"
        self.answered[k] = self.answered.get(k, 0) + 1


def run_example(ex: Example, watch: NodeWatch, stats: FuzzStats, call_timeout: float) -> list[str]:
    """Send one example and judge it; failures are recorded in `stats`."""
    stats.tried += 1
    budget = min(call_timeout, WAIT_BUDGET) if ex.method in MAY_WAIT else call_timeout
    resp = rpc_call(watch.rpc_path, ex.payload(), budget)
    stats.record(ex, resp)
    problems = judge(ex, resp, watch, budget)
    for p in problems:
        stats.failures.setdefault(signature(ex, p), (ex.short(), p))
    return problems


# ---------------------------------------------------------------------- the scene
class Scene:
    """l1 (the fuzzed node) with a funded wallet, connected to l2 with a
    channel, invoices on both sides, and the pool of values that makes
    calls plausible.  The fuzzer may close the channel, disconnect the peer
    or spend the wallet (all fine on regtest): `refresh` puts them back so
    later examples still reach deep paths."""

    def __init__(self, l1: Any, l2: Any) -> None:
        self.l1, self.l2 = l1, l2
        self.watch = NodeWatch(str(l1.rpc_path), l1.base_dir / "log", l1.base_dir / "stderr", pid=l1.proc.pid)
        self.pool = Pool(node_ids=[l1.node_id, l2.node_id],
                         words=["created", "updated", "unpaid", "paid", "expired", "normal", "slow", "perkw",
                                "perkb", "invoices", "list", "getinfo", "channels", "peers", "p2tr", "bech32"])
        l1.connect(l2)
        for n, label in ((l2, "theirs"), (l1, "ours")):
            inv = n.rpc.invoice(10_000, label, f"invoice {label}")
            self.pool.bolt11s.append(inv["bolt11"])
            self.pool.hashes += [inv["payment_hash"], inv["payment_secret"]]
            self.pool.labels.append(label)
        l1.rpc.invoice("any", "ours-any", "any amount")
        self.pool.labels.append("ours-any")
        self.refresh()

    def refresh(self) -> None:
        """Wallet funded, peer connected, a normal channel to it, the pool up to date."""
        from node_factory import sync_blockheight, wait_for
        l1, l2, pool = self.l1, self.l2, self.pool
        def spendable() -> int:
            return sum(o["amount_msat"] for o in l1.rpc.listfunds()["outputs"]
                       if o["status"] == "confirmed" and not o["reserved"])
        if spendable() < 2_000_000_000:     # withdrawn, or reserved by a txprepare
            addr = l1.rpc.newaddr("bech32")["bech32"]
            l1.chain.fund(addr, 3_000_000)
            l1.chain.fund(l1.rpc.newaddr("p2tr")["p2tr"], 500_000)
            l1.chain.mine(1)
            pool.addresses.append(addr)
            wait_for(lambda: spendable() >= 2_000_000_000)
        if not l1.is_connected(l2):
            l1.connect(l2)
        normal = [c for c in l1.rpc.listpeerchannels(l2.node_id)["channels"] if c["state"] == "CHANNELD_NORMAL"]
        if not normal:
            sync_blockheight(l1)
            l1.rpc.fundchannel(l2.node_id, 1_000_000)
            l1.chain.mine(3)
            wait_for(lambda: any(c["state"] == "CHANNELD_NORMAL" and c.get("short_channel_id")
                                 for c in l1.rpc.listpeerchannels(l2.node_id)["channels"]))
            normal = [c for c in l1.rpc.listpeerchannels(l2.node_id)["channels"] if c["state"] == "CHANNELD_NORMAL"]
        scid = normal[0]["short_channel_id"]
        coins = [o for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]
        pool.scids = [scid, f"{scid}/0", f"{scid}/1"]
        pool.outpoints = [f"{o['txid']}:{o['output']}" for o in coins[:3]]
        pool.hashes = pool.hashes[:4] + [o["txid"] for o in coins[:2]] + [normal[0]["channel_id"]]
        pool.addresses = pool.addresses[-2:] or [l1.rpc.newaddr("bech32")["bech32"]]
        pool.route_hops = [{"id": l2.node_id, "channel": scid, "amount_msat": 10_000, "delay": 18}]
        pool.onion_hops = [{"pubkey": l2.node_id, "payload": "0a" + "00" * 10}]
        # the fuzzer's own answers must be judged from here on
        self.watch.new_text()


# ---------------------------------------------------------------------- the run
def fuzz(scene: Scene, examples: int, *, call_timeout: float = 10.0, stop_at_failure: bool = True,
         derandomize: bool = False, seed: int | None = None, refresh_every: int = 250,
         progress: Callable[[FuzzStats], None] | None = None) -> FuzzStats:
    """Run `examples` examples against the scene's node.  stop_at_failure:
    raise on the first failure (hypothesis then shrinks it to a minimal
    example), as a test does; otherwise record every distinct failure and go
    on, as the bench does.  derandomize or seed: reproducible examples."""
    specs = [s for s in command_specs(scene.watch.rpc_path) if s.name not in EXCLUDED]
    stats = FuzzStats()
    phases = [Phase.generate] + ([Phase.shrink] if stop_at_failure else [])

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize, phases=phases,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        ex = data.draw(example_strategy(specs, scene.pool, PLUGIN_SIDE_EFFECTS))
        if stats.tried and stats.tried % refresh_every == 0:
            scene.refresh()
        if progress is not None and stats.tried % 1000 == 0:
            progress(stats)
        problems = run_example(ex, scene.watch, stats, call_timeout)
        if problems and stop_at_failure:
            raise AssertionError(f"{ex.short(2000)}:\n  " + "\n  ".join(problems))

    (hypothesis_seed(seed)(one) if seed is not None else one)()
    return stats
