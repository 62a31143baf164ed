"""Node start to RPC-ready time, and the resident memory of each process.

    ./run bench node_startup
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from node_factory import child_pids, subdaemon_name
from pyln.client import LightningRpc

from bench.scene import regtest_scene
from contrib.regtest.testing import free_port


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid: int) -> dict[str, int]:
    """The subdaemons (and zygote) of a lightningd, by name."""
    return {name: kid for kid in child_pids(pid) if (name := subdaemon_name(kid))}


def run(runs: int = 5) -> dict:
    with regtest_scene() as scene, tempfile.TemporaryDirectory() as tmp:
        chain = scene.chain
        times, rss = [], {}
        for i in range(runs):
            d = Path(tmp) / f"node{i}"
            cmd = [sys.executable, "-m", "lightningd", f"--lightning-dir={d}", "--network=regtest",
                   f"--addr=127.0.0.1:{free_port()}", f"--bitcoin-rpcport={chain.rpcport}",
                   f"--bitcoin-rpcuser={chain.rpcuser}", f"--bitcoin-rpcpassword={chain.rpcpassword}",
                   f"--log-file={d}.log"]
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sock = d / "regtest" / "lightning-rpc"
            while True:
                if sock.exists():
                    try:
                        LightningRpc(str(sock)).getinfo()
                        break
                    except (OSError, ValueError):
                        pass
                time.sleep(0.005)
            times.append(time.monotonic() - t0)
            time.sleep(0.5)  # settle before reading memory
            rss = {"lightningd": rss_kib(proc.pid)}
            rss.update({k: rss_kib(v) for k, v in children(proc.pid).items()})
            LightningRpc(str(sock)).stop()
            proc.wait(30)
    return {"start_to_rpc_ready_s": {"median": round(statistics.median(times), 3), "min": round(min(times), 3),
                                     "max": round(max(times), 3), "runs": runs},
            "rss_kib": rss}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
