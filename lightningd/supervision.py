"""The one restart policy for subdaemons that die (Core Lightning's: the
master logs it and starts a new one from what it stored).

connectd, gossipd and each onchaind are restarted by `restart` after
--dev-subdaemon-restart-delay (1 s), unless the node is stopping or the
daemon is no longer wanted, within a budget (onchaind gives up after 5
failures: a daemon that dies on every input would spin forever).  A channel
daemon is not restarted here: its peer's connection is dropped and the next
connection starts a new one (channel_control._on_channeld_exit)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from .lightningd import LightningD


@dataclass
class RestartBudget:
    limit: int | None = None       # None: always restart
    count: int = 0


async def restart(ld: "LightningD", name: str, start: Callable[[], Awaitable[Any]], budget: RestartBudget,
                  wanted: Callable[[], bool] = lambda: True) -> bool:
    """Start `name` again (see the module's docstring); True if it runs."""
    if ld.stopping or not wanted():
        return False
    budget.count += 1
    if budget.limit is not None and budget.count > budget.limit:
        ld.log.broken(f"{name} keeps failing ({budget.count - 1} restarts): giving up")
        return False
    await asyncio.sleep(ld.restart_delay())
    if ld.stopping or not wanted():
        return False
    ld.log.info(f"restarting {name}")
    try:
        await start()
    except Exception as e:
        if not ld.stopping:   # (a shutdown during the restart ends it quietly)
            ld.log.broken(f"could not restart {name}: {e!r}")
        return False
    return True
