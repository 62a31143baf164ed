"""Start real nodes for integration tests (in the spirit of pyln-testing).

    def test_x(node_factory):
        l1, l2 = node_factory.get_nodes(2)
        l1.connect(l2)
        l1.rpc.getinfo()

Every node is a real `lightningd` process (with its hsmd, connectd and
gossipd) on a shared regtestd chain, with its own lightning dir and port.
Teardown stops each node through `stop` and fails the test if a node logged
a BROKEN line (unless the test allowed it), left a process behind, or started
a subdaemon from a fresh interpreter instead of forking it from its zygote
(unless the test allowed that, `allow_spawned`).

Every subdaemon is a direct child of its node's lightningd, whether the
zygote forked it or not (the master is a child subreaper: see
lightningd/zygote_control.py), so the process table by parent pid finds
them all."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pyln.client import LightningRpc

from contrib.postgres_testing import PostgresServer
from contrib.regtest.testing import RegtestChain, free_port

LIGHTNINGD = [sys.executable, "-m", "lightningd"]


def db_provider_name() -> str:
    """TEST_DB_PROVIDER: sqlite3 (default) or postgres, as Core Lightning's tests."""
    return os.environ.get("TEST_DB_PROVIDER", "sqlite3")


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy (tests wait on state, not on logs)."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def sync_blockheight(*nodes: "LightningNode") -> None:
    """Wait until every node has processed the chain's tip: a hand-built
    route's delays are relative to the payer's height, so a payer one block
    behind the payee builds an onion the payee must refuse (as in Core
    Lightning's test suite)."""
    if not nodes:
        return
    height = nodes[0].chain.rpc.getblockcount()
    wait_for(lambda: all(n.rpc.getinfo()["blockheight"] >= height for n in nodes))


def child_pids(pid: int) -> list[int]:
    """Direct children of pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def subdaemon_name(pid: int) -> str | None:
    """hsmd, connectd, ... or zygote if pid is one of those daemons: a
    subdaemon names itself lightning_<name> (ps/top) once started; before,
    its command line is still `python -m <name>`."""
    cl = cmdline(pid)
    for name in ("hsmd", "connectd", "gossipd", "channeld", "onchaind", "zygote"):
        if cl.startswith(f"lightning_{name} ") or f"-m {name} " in cl:
            return name
    return None


def descendants(pid: int) -> list[int]:
    """Every process below pid (children, theirs, ...)."""
    out, todo = [], [pid]
    while todo:
        kids = child_pids(todo.pop())
        out += kids
        todo += kids
    return out


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class LightningNode:
    def __init__(self, factory: "NodeFactory", num: int, chain: RegtestChain, options: dict[str, Any],
                 allow_broken_log: bool = False, may_fail: bool = False, allow_spawned: bool = False) -> None:
        self.factory = factory
        self.num = num
        self.chain = chain
        self.base_dir = factory.directory / f"lightning-{num}"
        self.lightning_dir = self.base_dir / "regtest"
        self.port = free_port()
        self.allow_broken_log = allow_broken_log
        self.allow_spawned = allow_spawned
        self.may_fail = may_fail
        self.options: dict[str, Any] = {
            "lightning-dir": str(self.base_dir),
            "network": "regtest",
            "addr": f"127.0.0.1:{self.port}",
            "log-level": "debug",
            "log-file": str(self.base_dir / "log"),
            "bitcoin-rpcport": chain.rpcport,
            "bitcoin-rpcuser": chain.rpcuser,
            "bitcoin-rpcpassword": chain.rpcpassword,
            "bitcoin-retry-timeout": 10,
            "developer": None,
            "dev-bitcoind-poll": 1,
            "dev-subdaemon-restart-delay": 0,
            "dev-allow-localhost": None,
            "dev-fast-gossip": None,
            "alias": f"node{num}",
        }
        if factory.postgres is not None and "wallet" not in options:
            self.options["wallet"] = factory.postgres.create_db(f"node{num}")
        self.options.update(options)
        self.proc: subprocess.Popen[bytes] | None = None
        self._rpc: LightningRpc | None = None

    # -- process ---------------------------------------------------------------------
    def cmd_line(self) -> list[str]:
        args = []
        for k, v in self.options.items():
            if v is False:
                continue
            vals = v if isinstance(v, list) else [v]
            for x in vals:
                args.append(f"--{k}" if x is None else f"--{k}={x}")
        return LIGHTNINGD + args

    @property
    def rpc_path(self) -> Path:
        return self.lightning_dir / "lightning-rpc"

    @property
    def rpc(self) -> LightningRpc:
        if self._rpc is None:
            self._rpc = LightningRpc(str(self.rpc_path))
        return self._rpc

    def start(self, wait_for_rpc: bool = True, timeout: float = 60.0) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.stderr = open(self.base_dir / "stderr", "ab")
        # Plugins run with `#!/usr/bin/env python3`: make that this venv's python.
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        # its own process group, as a node started from a shell is: a test can
        # send it a terminal's ^C (killpg) without hitting pytest
        self.proc = subprocess.Popen(self.cmd_line(), stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, env=env, process_group=0)
        self._rpc = None
        if not wait_for_rpc:
            return
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.num} exited ({self.proc.returncode}): {self.stderr_text()[-2000:]}")
            if self.rpc_path.exists() and _ready(self):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.num} not ready: {self.log_text()[-2000:]}")
            time.sleep(0.05)

    def stderr_text(self) -> str:
        p = self.base_dir / "stderr"
        return p.read_text(errors="replace") if p.exists() else ""

    def log_text(self) -> str:
        p = self.base_dir / "log"
        return p.read_text(errors="replace") if p.exists() else ""

    def subdaemon_pids(self) -> dict[str, int]:
        """name -> pid of each subdaemon of this node (one of them if several
        share a name), from the process table."""
        return {name: pid for pid, name in self.subdaemon_pids_all().items()}

    def subdaemon_pids_all(self) -> dict[int, str]:
        """pid -> daemon name for every subdaemon (several channelds) and the
        zygote: all are children of lightningd."""
        assert self.proc is not None
        return {pid: name for pid in child_pids(self.proc.pid) if (name := subdaemon_name(pid))}

    def stop(self, timeout: float = 30.0) -> int:
        """`stop` over RPC and wait for exit; SIGKILL if it hangs."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            try:
                self.rpc.stop()
            except Exception:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.stderr.close()
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- helpers ---------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self.info["id"]

    def connect(self, other: "LightningNode") -> dict:
        return self.rpc.connect(other.node_id, "127.0.0.1", other.port)

    def is_connected(self, other: "LightningNode") -> bool:
        peers = self.rpc.listpeers(other.node_id)["peers"]
        return bool(peers) and peers[0]["connected"]

    def broken_lines(self) -> list[str]:
        return [ln for ln in self.log_text().splitlines() if " BROKEN " in ln]

    def spawned_lines(self) -> list[str]:
        """Subdaemons started from a fresh interpreter (the zygote itself is
        always): each should have been forked by the zygote (lightningd/subd.py
        logs how each one started, at debug level)."""
        return [ln for ln in self.log_text().splitlines()
                if ln.endswith("(spawned)") and ": pid " in ln and " zygote: " not in ln]


class NodeFactory:
    def __init__(self, directory: Path, chain: RegtestChain, postgres: PostgresServer | None = None) -> None:
        self.directory = directory
        self.chain = chain
        self.postgres = postgres       # TEST_DB_PROVIDER=postgres: each node's database on it
        self.nodes: list[LightningNode] = []

    def get_node(self, options: dict[str, Any] | None = None, start: bool = True, **kw: Any) -> LightningNode:
        node = LightningNode(self, len(self.nodes) + 1, self.chain, options or {}, **kw)
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def get_nodes(self, n: int, opts: dict[str, Any] | list[dict[str, Any]] | None = None) -> list[LightningNode]:
        optlist = opts if isinstance(opts, list) else [opts or {}] * n
        nodes = [self.get_node(o, start=False) for o in optlist]
        for node in nodes:
            node.start(wait_for_rpc=False)
        for node in nodes:
            wait_for(lambda: node.rpc_path.exists() or node.proc.poll() is not None, timeout=60)
            _wait_ready(node)
        return nodes

    def teardown(self) -> list[str]:
        """Stop everything; return the problems found (BROKEN logs, leftovers)."""
        problems = []
        for node in self.nodes:
            if node.proc is None:
                continue
            kids = child_pids(node.proc.pid) if node.proc.poll() is None else []
            rc = node.stop()
            if rc not in (0, None) and not node.may_fail:
                problems.append(f"node {node.num} exited with {rc}")
            left = [p for p in kids if pid_alive(p)]
            if left:
                problems.append(f"node {node.num} left processes {left}: {[cmdline(p) for p in left]}")
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
            if not node.allow_broken_log and node.broken_lines():
                problems.append(f"node {node.num} logged BROKEN: {node.broken_lines()[:5]}")
            if not node.allow_spawned and node.spawned_lines():
                problems.append(f"node {node.num} spawned subdaemons instead of forking them: "
                                f"{node.spawned_lines()[:5]}")
            if not node.allow_broken_log and "Traceback" in node.stderr_text():
                problems.append(f"node {node.num} printed a traceback: {node.stderr_text()[-2000:]}")
        return problems


def _wait_ready(node: LightningNode, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert node.proc is not None
        if node.proc.poll() is not None:
            raise RuntimeError(f"node {node.num} exited ({node.proc.returncode}): {node.stderr_text()[-2000:]}")
        if _ready(node):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {node.num} not ready")
        time.sleep(0.05)


def _ready(node: LightningNode) -> bool:
    """RPC answers and the node has caught up with the chain (the RPC socket
    opens before the chain is synced, as in Core Lightning)."""
    try:
        node.info = node.rpc.getinfo()
    except (OSError, ValueError):
        return False
    return node.info["blockheight"] >= node.chain.rpc.getblockcount()
