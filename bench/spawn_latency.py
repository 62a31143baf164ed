"""Time from a subdaemon spawn request to its first message (status_version),
forked by the zygote vs started from a fresh interpreter (posix_spawn of
`python -m channeld`, the way every subdaemon started before the zygote).

The master's own `Subd` and `ZygoteControl` are driven in this process with
a stand-in for the rest of the master; each channeld gets socketpairs for
its hsmd link and peer stream, sends status_version, then waits for
channeld_init and is stopped.  Spawns are sequential.

    ./run bench spawn_latency          # SPAWNS=20 of each kind by default

This process becomes a child subreaper (the zygote needs it), so
bench/channel_memory.py runs it in a subprocess.
"""
from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time


class _Master:
    """What ZygoteControl uses of LightningD."""

    def __init__(self, log) -> None:
        self.log = log
        self.stopping = False

    def restart_delay(self) -> float:
        return 0.0


def _stats(xs: list[float]) -> dict:
    return {"n": len(xs), "mean_ms": round(statistics.mean(xs), 1), "median_ms": round(statistics.median(xs), 1),
            "min_ms": round(min(xs), 1), "max_ms": round(max(xs), 1)}


async def _measure(n: int) -> dict:
    from lightningd.log import LogBook
    from lightningd.subd import Subd
    from lightningd.zygote_control import ZygoteControl
    from wire.internal import internal_schema

    book = LogBook()
    book.configure(["unusual"], [], "", False)
    master = _Master(book.logger("bench"))
    zygote = ZygoteControl(master, memory_merge=False)  # type: ignore[arg-type]
    t0 = time.monotonic()
    zygote.start()
    assert zygote.subd is not None
    while zygote.subd.startup_ms is None:
        await asyncio.sleep(0.01)
    zygote_ready_ms = (time.monotonic() - t0) * 1000

    async def one(spawner) -> float:
        hsm_ours, hsm_theirs = socket.socketpair()
        peer_ours, peer_theirs = socket.socketpair()
        subd = Subd("channeld", internal_schema("channeld"), {}, book.logger("channeld"), spawner=spawner)
        subd.start(hsm_fd=hsm_theirs.fileno(), extra_fds=[peer_theirs.fileno()])
        hsm_theirs.close()
        peer_theirs.close()
        while subd.startup_ms is None and not subd.exited.is_set():
            await asyncio.sleep(0.0005)
        ms = subd.startup_ms
        await subd.stop()
        hsm_ours.close()
        peer_ours.close()
        assert ms is not None, "channeld exited before its first message"
        return ms

    forked = [await one(zygote) for _ in range(n)]
    spawned = [await one(None) for _ in range(n)]
    master.stopping = True
    await zygote.stop()
    return {"forked_by_zygote": _stats(forked), "python_m_channeld": _stats(spawned),
            "zygote_ready_ms": round(zygote_ready_ms, 1),
            "bytecode_cache": "off (PYTHONDONTWRITEBYTECODE)" if os.environ.get("PYTHONDONTWRITEBYTECODE")
            else "on"}


def run(n: int | None = None) -> dict:
    n = n or int(os.environ.get("SPAWNS", "20"))
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            return asyncio.run(_measure(n))
        finally:
            os.chdir(old)


if __name__ == "__main__":
    import json
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else None)))
