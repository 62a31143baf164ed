"""The local playground: a regtest chain and Lightning nodes on this machine.

    ./run playground            # start, show, keep running until Ctrl-C
    ./run playground --no-wait  # start, show, stop (a smoke test)

Starts regtestd (Bitcoin Core's consensus code validates every block), mines
101 blocks, starts two lightningd nodes (each with its hsmd, connectd and
gossipd processes), connects them over BOLT 8 and prints their `getinfo`.
Each later capability of the node makes the playground show more."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyln.client import LightningRpc

from contrib.regtest.testing import RegtestChain, free_port


class Node:
    def __init__(self, name: str, base: Path, chain: RegtestChain) -> None:
        self.name = name
        self.dir = base / name
        self.port = free_port()
        self.chain = chain
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "lightningd", f"--lightning-dir={self.dir}", "--network=regtest",
               f"--addr=127.0.0.1:{self.port}", f"--alias={self.name}", "--log-level=debug",
               f"--log-file={self.dir / 'log'}", f"--bitcoin-rpcport={self.chain.rpcport}",
               f"--bitcoin-rpcuser={self.chain.rpcuser}", f"--bitcoin-rpcpassword={self.chain.rpcpassword}",
               "--developer", "--dev-bitcoind-poll=1", "--dev-allow-localhost"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "stderr", "ab"))
        sock = self.dir / "regtest" / "lightning-rpc"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} failed to start: {(self.dir / 'stderr').read_text()[-2000:]}")
            if sock.exists():
                try:
                    self.info = self.rpc.getinfo()
                    return
                except (OSError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not answer on {sock}")
            time.sleep(0.05)

    @property
    def rpc(self) -> LightningRpc:
        return LightningRpc(str(self.dir / "regtest" / "lightning-rpc"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.rpc.stop()
            except Exception:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def show(title: str, obj: object) -> None:
    print(f"\n== {title}")
    print(json.dumps(obj, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="playground", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="playground", help="where chain and nodes keep their data (wiped first)")
    ap.add_argument("--nodes", type=int, default=2, help="how many nodes (default 2)")
    ap.add_argument("--no-wait", action="store_true", help="stop everything after the demo")
    args = ap.parse_args(argv)

    base = Path(args.dir).resolve()
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    t0 = time.monotonic()
    chain = RegtestChain(base / "bitcoind")
    nodes: list[Node] = []
    try:
        chain.start()
        chain.mine(101)
        print(f"regtestd on 127.0.0.1:{chain.rpcport}: {chain.rpc.getblockcount()} blocks, "
              "each validated by libbitcoinkernel")
        nodes = [Node(f"node{i + 1}", base, chain) for i in range(args.nodes)]
        for n in nodes:
            n.start()
        print(f"{len(nodes)} nodes up in {time.monotonic() - t0:.1f}s")
        for a, b in zip(nodes, nodes[1:]):
            r = a.rpc.connect(b.info["id"], "127.0.0.1", b.port)
            print(f"{a.name} connected to {b.name} over BOLT 8: {r['id'][:16]}... direction {r['direction']}")
        # fund each node's wallet from the chain: one p2tr and one bech32 deposit
        for i, n in enumerate(nodes):
            chain.fund(n.rpc.newaddr("p2tr")["p2tr"], 5_000_000 + i)
            chain.fund(n.rpc.newaddr("bech32")["bech32"], 2_000_000 + i)
        chain.mine(1)
        height = chain.rpc.getblockcount()
        for n in nodes:
            while n.rpc.getinfo()["blockheight"] < height or \
                    len([o for o in n.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]) < 2:
                time.sleep(0.05)
        show("node1 listfunds", nodes[0].rpc.listfunds())
        for n in nodes:
            show(f"{n.name} getinfo", n.rpc.getinfo())
        show("node1 listpeers", nodes[0].rpc.listpeers())
        rel = os.path.relpath(base)
        print(f"\nTry:  .venv/bin/lightning-cli --lightning-dir={rel}/node1 --regtest getinfo")
        print(f"      .venv/bin/lightning-cli --lightning-dir={rel}/node1 --regtest help")
        print(f"Logs: {rel}/node1/log   chain: {rel}/bitcoind")
        if not args.no_wait:
            print("\nRunning. Ctrl-C stops the chain and the nodes.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for n in nodes:
            n.stop()
        chain.stop()
    return 0


def _sigterm(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _sigterm)
    sys.exit(main())
