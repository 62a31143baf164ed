"""Chain following and wallet: time for a running node to process 1,000
regtest blocks (some paying its wallet), and the wall time of a withdraw.

    ./run bench chain_sync
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyln.client import LightningRpc

from contrib.regtest.testing import RegtestChain, free_port


def _start_node(d: Path, chain: RegtestChain) -> tuple[subprocess.Popen, LightningRpc]:
    cmd = [sys.executable, "-m", "lightningd", f"--lightning-dir={d}", "--network=regtest",
           f"--addr=127.0.0.1:{free_port()}", f"--bitcoin-rpcport={chain.rpcport}",
           f"--bitcoin-rpcuser={chain.rpcuser}", f"--bitcoin-rpcpassword={chain.rpcpassword}",
           f"--log-file={d}.log", "--developer", "--dev-bitcoind-poll=1",
           f"--bitcoin-zmqpubrawblock={chain.zmq_rawblock}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rpc = LightningRpc(str(d / "regtest" / "lightning-rpc"))
    while True:
        try:
            if rpc.getinfo()["blockheight"] >= chain.rpc.getblockcount():
                return proc, rpc
        except (OSError, ValueError):
            pass
        time.sleep(0.02)


def run(blocks: int = 1000, withdraws: int = 10) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        chain = RegtestChain(Path(tmp) / "bitcoind")
        chain.start()
        chain.mine(101)
        proc, rpc = _start_node(Path(tmp) / "node", chain)
        try:
            addrs = [rpc.newaddr("bech32")["bech32"] for _ in range(20)]
            # fund the wallet, some coins in every 50 blocks of the run
            for a in addrs[:withdraws + 2]:
                chain.fund(a, 200_000)
            target = chain.rpc.getblockcount() + blocks
            t0 = time.monotonic()
            for i in range(blocks // 50):
                chain.fund(addrs[i % len(addrs)], 10_000 + i)
                chain.mine(50)
            mined = time.monotonic() - t0
            while rpc.getinfo()["blockheight"] < target:
                time.sleep(0.01)
            total = time.monotonic() - t0
            n_outputs = len(rpc.listfunds()["outputs"])
            times = []
            for _ in range(withdraws):
                t = time.monotonic()
                rpc.withdraw(chain.faucet_address, 50_000, "2000perkw", 0)
                times.append(time.monotonic() - t)
            rpc.stop()
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            chain.stop()
    return {"blocks": blocks, "mine_s": round(mined, 2), "mine_and_process_s": round(total, 2),
            "wallet_outputs": n_outputs,
            "withdraw_wall_ms": {"median": round(statistics.median(times) * 1000, 1),
                                 "max": round(max(times) * 1000, 1), "runs": withdraws}}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
