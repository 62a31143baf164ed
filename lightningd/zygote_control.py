"""The master's side of the zygote (zygote/zygote.py): start it, ask it to
fork subdaemons, restart it if it dies.

The zygote is spawned from a fresh interpreter right after the master has
locked its directory, before plugins, hsmd or the database: it has never seen
the master's state.  Every `Subd` given this as its spawner is forked by it:
`spawn` sends the child's fds by SCM_RIGHTS in `zygote_spawn`, the reply is
the pid.  The master makes itself a child subreaper first, so forked daemons
are its own children (the zygote forks through an intermediate process that
exits): supervision by pidfd and waitpid, exit statuses and the daemons'
`getppid()` check are what they are for a daemon spawned directly.

While no zygote runs (it died and is waiting for its restart delay, or it
keeps dying before it is ready, or the kernel has no subreapers) `spawn`
says None and `Subd` spawns from a fresh interpreter: slower, never
blocked."""
from __future__ import annotations

import asyncio
import ctypes
import glob
import os
import signal
from typing import TYPE_CHECKING

from common.daemon_conn import RequestFailed
from wire.internal import internal_schema

from .subd import SpawnRefused, Subd

if TYPE_CHECKING:
    from .lightningd import LightningD

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphans below us are re-parented to us, not to init."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ZygoteControl:
    # zygote -> master messages that are not replies: none.
    HANDLERS: dict[str, str] = {}
    SPAWN_TIMEOUT = 30.0
    GIVE_UP_AFTER = 3        # deaths in a row before its first message
    STRAY_SCAN_DELAY = 2.0

    def __init__(self, ld: "LightningD", memory_merge: bool) -> None:
        self.ld = ld
        self.memory_merge = memory_merge     # subdaemon-memory-merge (zygote/memory_merge.py)
        self.subd: Subd | None = None
        self.restarts = 0
        self._early_deaths = 0
        self._stray_scan: asyncio.TimerHandle | None = None
        self._zombies_seen: set[int] = set()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        if not become_subreaper():
            self.ld.log.unusual("no child subreaper (prctl): subdaemons start from a fresh interpreter")
            return
        asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, self._on_sigchld)
        self._start_process()

    def _start_process(self) -> None:
        args = ["--memory-merge"] if self.memory_merge else []
        self.subd = Subd("zygote", internal_schema("zygote"), {}, self.ld.log.child("zygote"),
                         on_exit=self._on_exit, args=args)
        self.subd.start()

    async def stop(self) -> None:
        if self.subd is not None:
            await self.subd.stop()

    async def _on_exit(self, subd: Subd, rc: int) -> None:
        if self.ld.stopping or subd is not self.subd:
            return
        self._early_deaths = self._early_deaths + 1 if subd.startup_ms is None else 0
        if self._early_deaths >= self.GIVE_UP_AFTER:
            self.ld.log.broken(f"zygote died {self._early_deaths} times before it was ready: "
                               "subdaemons start from a fresh interpreter from now on")
            self.subd = None
            return
        await asyncio.sleep(self.ld.restart_delay())
        if self.ld.stopping or subd is not self.subd:
            return
        self.restarts += 1
        self.ld.log.info("restarting the zygote")
        self._start_process()

    @property
    def pid(self) -> int | None:
        return self.subd.pid if self.subd is not None and self.subd.running else None

    # -- spawning ----------------------------------------------------------------------
    def spawn(self, name: str, args: list[str], fds: list[int], hsm: bool) -> "asyncio.Future[int] | None":
        """Ask the zygote to fork `name` (see `Spawner`); None if none runs.
        The fds are queued before this returns (the caller closes its copies)."""
        z = self.subd
        if z is None or not z.running or z.conn is None:
            return None
        # request() queues the frame (duplicating the fds) only once its task
        # runs: until then it sends copies of its own
        dups = [os.dup(fd) for fd in fds]
        return asyncio.ensure_future(self._request(z, name, args, dups, hsm))

    async def _request(self, z: Subd, name: str, args: list[str], fds: list[int], hsm: bool) -> int:
        try:
            # A zygote still importing (seconds on a loaded machine) is
            # waited for without a deadline; one that dies first forked nothing.
            if not z.ready.is_set():
                waits = [asyncio.ensure_future(z.ready.wait()), asyncio.ensure_future(z.exited.wait())]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
            if not z.ready.is_set() or z.exited.is_set() or z.conn is None or z.conn.conn.closed:
                raise SpawnRefused("the zygote is gone")
            reply = await z.request("zygote_spawn", {"name": name, "hsmfd": hsm, "args": [{"arg": a} for a in args]},
                                    fds=fds, timeout=self.SPAWN_TIMEOUT)
        except RequestFailed as e:
            raise SpawnRefused(e.msg.fields.get("reason", "?")) from None
        except asyncio.TimeoutError:
            # a zygote that does not answer is stuck: replace it
            self.ld.log.broken(f"zygote did not answer a spawn within {self.SPAWN_TIMEOUT:.0f}s: killing it")
            if z.pid is not None and z.running:
                os.kill(z.pid, signal.SIGKILL)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return int(reply["pid"])

    # -- orphans -----------------------------------------------------------------------
    def _on_sigchld(self) -> None:
        """As a subreaper we also inherit orphans that are none of ours (a
        plugin's helper whose plugin died): reap those, or they stay zombies.
        A zombie is a stray if it is still one a scan later: each of our own
        children is reaped as soon as it exits (Subd's pidfd, asyncio's
        watcher for plugins)."""
        if self._stray_scan is None:
            self._stray_scan = asyncio.get_running_loop().call_later(self.STRAY_SCAN_DELAY, self._scan_strays)

    def _scan_strays(self) -> None:
        self._stray_scan = None
        zombies = set()
        for path in glob.glob("/proc/self/task/*/children"):
            try:
                with open(path) as f:
                    pids = [int(p) for p in f.read().split()]
            except (OSError, ValueError):
                continue
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                            zombies.add(pid)
                except (OSError, IndexError):
                    continue
        for pid in zombies & self._zombies_seen:
            try:
                os.waitpid(pid, os.WNOHANG)
                self.ld.log.debug(f"reaped stray process {pid}")
            except ChildProcessError:
                pass
        self._zombies_seen = zombies - self._zombies_seen
        if self._zombies_seen:
            self._on_sigchld()
