"""The common start-up of every subdaemon process.

File descriptors (fixed, as Core Lightning does, so `ls -l /proc/PID/fd`
explains itself): 0 is the link to the master, 3 the link to hsmd when the
daemon has one, further passed fds follow.  The daemon's first message is
`status_version`; an exception nobody handled becomes `status_fail` and the
process exits, so the master can log it and restart the daemon."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Awaitable, Callable

from .msgconn import MsgConn
from .status import Status

MASTER_FD = 0
HSM_FD = 3

VERSION = "v0.1.0"


class Daemon:
    """Process-wide context: the master link, the optional hsmd link and status."""

    def __init__(self, name: str, hsm_sync: bool = False) -> None:
        self.name = name
        self.master = MsgConn.from_fd(MASTER_FD)
        # The master tells us the most verbose level anyone wants, so io and
        # trace lines are only sent when they would be kept.
        level = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--status-level=")), 2)
        self.status = Status(self.master, level)
        self.hsm: MsgConn | None = None
        # The master says on our command line whether fd 3 is an hsmd link:
        # probing fd 3 would find whatever Python itself opened there.
        self.hsm_fd: int | None = None
        if "--hsmfd" in sys.argv:
            if hsm_sync:
                # channeld/onchaind ask hsmd synchronously (as Core Lightning's
                # do): a blocking socket, not on the event loop
                self.hsm_fd = HSM_FD
            else:
                self.hsm = MsgConn.from_fd(HSM_FD)
        self.extra_fds: list[int] = []
        for a in sys.argv:
            if a.startswith("--fds="):
                self.extra_fds = [int(x) for x in a[len("--fds="):].split(",") if x]
        self.status.version(VERSION)


def run(name: str, main: Callable[[Daemon], Awaitable[None]], hsm_sync: bool = False) -> None:
    """Entry point of a subdaemon: `python -m connectd` ends up here."""
    # The master handles signals for the node: a ^C in the terminal (SIGINT to
    # the process group) or systemd's SIGTERM to the whole cgroup must not
    # kill subdaemons before the master has stopped them in order (it closes
    # our link, then escalates to SIGKILL).  The master spawned us with both
    # blocked, so one that came during interpreter start-up waits, pending;
    # ignoring it discards it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    set_process_name(name)
    # stdout is not ours to use: keep stray prints away from any protocol.
    os.dup2(2, 1)

    async def _amain() -> int:
        d = Daemon(name, hsm_sync)
        loop = asyncio.get_running_loop()

        # An exception nobody handled, in any task, leaves the daemon in an
        # unknown state: report it and stop (the master restarts us from
        # what it stored), never carry on half-broken.
        fatal: asyncio.Future = loop.create_future()

        def on_exc(_loop: asyncio.AbstractEventLoop, ctx: dict) -> None:
            exc = ctx.get("exception")
            if exc is None:
                d.status.broken(str(ctx.get("message")))
            elif not fatal.done():
                d.status.fail_exception(exc)
                fatal.set_result(None)
        loop.set_exception_handler(on_exc)
        watch_master(loop, os.getppid())
        task = asyncio.ensure_future(main(d))
        await asyncio.wait([task, fatal], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            await d.master.drain()
            return 1
        try:
            task.result()
        except Exception as e:
            d.status.fail_exception(e)
            await d.master.drain()
            return 1
        await d.master.drain()
        return 0

    sys.exit(profiled(name, lambda: asyncio.run(_amain())))


def set_process_name(name: str) -> None:
    """`ps` and `top` show lightning_channeld, ... (Core Lightning's names)
    instead of python, followed by our own arguments."""
    import setproctitle
    args = sys.argv[1:]
    setproctitle.setproctitle(" ".join([f"lightning_{name}"] + args))


MASTER_WATCH_INTERVAL = 1.0


def watch_master(loop: asyncio.AbstractEventLoop, master_pid: int) -> None:
    """Exit once the master is gone (we were re-parented), whatever we are
    waiting for.  EOF on the master link usually ends us first; this catches
    a daemon blocked before or outside its master reader (a kill -9 of the
    master during start-up would otherwise leave it behind forever).  The
    master stores everything: there is nothing to save on the way out."""
    def check() -> None:
        if os.getppid() != master_pid:
            os._exit(0)
        loop.call_later(MASTER_WATCH_INTERVAL, check)
    loop.call_later(MASTER_WATCH_INTERVAL, check)


def profiled(name: str, fn: Callable[[], int]) -> int:
    """With NODE_PROFILE_DIR set (benchmarks), run under cProfile and leave
    `<dir>/<name>-<pid>.prof` behind: where each process spends its time."""
    out = os.environ.get("NODE_PROFILE_DIR")
    if not out:
        return fn()
    import cProfile
    prof = cProfile.Profile()
    try:
        return prof.runcall(fn)
    finally:
        prof.dump_stats(os.path.join(out, f"{name}-{os.getpid()}.prof"))
