"""The local playground: a regtest chain and Lightning nodes on this machine.

    ./run playground            # start, show, keep running until Ctrl-C
    ./run playground --no-wait  # start, show, stop (a smoke test)

Starts regtestd (Bitcoin Core's consensus code validates every block), mines
101 blocks, starts three lightningd nodes (each with its hsmd, connectd and
gossipd processes, and one channeld per channel), funds their wallets, opens
channels node1 -> node2 -> node3, waits for the gossip to spread, pays an
invoice of node3 from node1 through node2, shows `listpays`, and leaves the
nodes running with the lightning-cli commands to keep exploring."""
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
               "--developer", "--dev-bitcoind-poll=1", "--dev-allow-localhost", "--dev-fast-gossip"]
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


def wait(pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("the playground did not reach the expected state in time")
        time.sleep(0.1)


def show(title: str, obj: object) -> None:
    print(f"\n== {title}")
    print(json.dumps(obj, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="playground", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="playground", help="where chain and nodes keep their data (wiped first)")
    ap.add_argument("--nodes", type=int, default=3, help="how many nodes in a line (default 3)")
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
            wait(lambda: n.rpc.getinfo()["blockheight"] >= height and
                 len([o for o in n.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]) >= 2)
        show("node1 listfunds", nodes[0].rpc.listfunds())
        # channels along the line, each in its own channeld process
        for a, b in zip(nodes, nodes[1:]):
            r = a.rpc.fundchannel(b.info["id"], 1_000_000)
            print(f"{a.name} -> {b.name}: channel {r['channel_id'][:16]}..., funding tx {r['txid'][:16]}...")
        chain.mine(6)   # 3 to lock in, 6 to announce
        for a, b in zip(nodes, nodes[1:]):
            wait(lambda: all(c["state"] == "CHANNELD_NORMAL" for c in a.rpc.listpeerchannels(b.info["id"])["channels"]))
        want = 2 * (len(nodes) - 1)
        print(f"waiting for gossip: {want} channel directions known everywhere...")
        for n in nodes:
            wait(lambda: len(n.rpc.listchannels()["channels"]) >= want, timeout=120)
        print(f"every node knows the whole graph: {len(nodes)} nodes, {len(nodes) - 1} channels")
        # an invoice on the last node, paid by the first through the others
        last, first = nodes[-1], nodes[0]
        inv = last.rpc.invoice(10_000_000, "playground", "A coffee, routed through the playground")
        print(f"\n{last.name} invoice: {inv['bolt11'][:60]}...")
        paid = first.rpc.pay(inv["bolt11"])
        print(f"{first.name} paid it: {paid['amount_msat']} msat delivered, {paid['amount_sent_msat']} msat sent "
              f"(fees {paid['amount_sent_msat'] - paid['amount_msat']} msat to the nodes in between)")
        show(f"{first.name} listpays", first.rpc.listpays())
        show(f"{last.name} waitanyinvoice 0", last.rpc.waitanyinvoice(0))
        for n in nodes:
            show(f"{n.name} getinfo", n.rpc.getinfo())
        rel = os.path.relpath(base)
        cli = f".venv/bin/lightning-cli --regtest --lightning-dir={rel}"
        print("\nKeep exploring (the nodes are running):")
        print(f"  {cli}/node1 getinfo")
        print(f"  {cli}/node1 listpeerchannels")
        print(f"  {cli}/node1 listchannels")
        print(f"  {cli}/{last.name} invoice 5000sat my-label 'another coffee'")
        print(f"  {cli}/node1 pay <bolt11 from the line above>")
        print(f"  {cli}/node1 help pay")
        print(f"Logs: {rel}/node1/log   chain: {rel}/bitcoind (regtestd RPC on 127.0.0.1:{chain.rpcport})")
        if not args.no_wait:
            print("\nRunning. Ctrl-C (or `kill` of this process) stops the chain and the nodes.")
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
