"""hsmd entry point: `python -m hsmd` (spawned by lightningd, one per node)."""
from __future__ import annotations

from common.daemon import Daemon, run
from common.daemon_conn import DaemonConn
from wire.hsm_caps import CAP_MASTER

from .hsmd import Hsmd


async def main(d: Daemon) -> None:
    h = Hsmd(d)
    ref: list = []
    master = DaemonConn(d.master, h.schema, h.handlers_for("master", 0xFFFFFFFF | CAP_MASTER, ref),
                        on_error=lambda e: d.status.broken(f"master: {e}"))
    ref.append(master)
    master.start()
    await master.wait_closed()


if __name__ == "__main__":
    run("hsmd", main)
