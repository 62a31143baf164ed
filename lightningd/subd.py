"""Spawning, talking to and supervising subdaemons (Core Lightning's subd.c).

Each subdaemon is a separate OS process, our child, whose file descriptors
are on fixed numbers: 0 is its link to us, 3 its hsmd link (if any), 4.. any
extra fds; 1 and 2 go to a pipe whose lines we log as `broken` (a subdaemon
should never print).  It is forked by the zygote (`Spawner`,
lightningd/zygote_control.py), which gets those fds by SCM_RIGHTS; without
a zygote (none running at that moment, or none at all) it is started from a
fresh interpreter, `posix_spawn` of `python -m <name>`.  Its exit is noticed
through a pidfd on our event loop, its status read with waitpid.  Generic
status messages (log, io, billboard, fail, version) are handled here once
for every daemon."""
from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import sys
import time
from typing import Any, Callable, ClassVar, Protocol

from common.daemon import VERSION
from common.daemon_conn import DaemonConn, Handler, Msg, ProtocolError
from common.msgconn import ConnectionClosed, MsgConn, WriteGate
from wire import MessageSchema

from .log import BROKEN, LEVELS, UNUSUAL, Logger

ExitCallback = Callable[["Subd", int], Any]

FAIL_REASONS = {1: "master link broken", 2: "hsmd link broken", 3: "internal error", 4: "bad input"}


def _high_fd(fd: int) -> int:
    """A close-on-exec copy of fd numbered >= 10, so the dup2s into 0..N
    at spawn can never clobber a source fd."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


class SpawnRefused(Exception):
    """The zygote forked nothing (it said why)."""


class Spawner(Protocol):
    """Forks subdaemons (lightningd.zygote_control.ZygoteControl)."""

    def spawn(self, name: str, args: list[str], fds: list[int], hsm: bool) -> "asyncio.Future[int] | None":
        """Send fds (master link, stderr pipe, [hsmd link], extra...) to be
        the child's fixed fds; a future of its pid (SpawnRefused if nothing
        was forked), or None when no zygote can take it now."""


def _posix_spawn(name: str, args: list[str], fds: list[int], hsm: bool) -> int:
    """`python -m name args` from a fresh interpreter, fds on the fixed numbers."""
    sources: list[int] = []
    try:
        sources = [_high_fd(fd) for fd in fds]
        targets = [0, 1] + ([3] if hsm else [])
        targets += range(4, 4 + len(fds) - len(targets))
        actions = [(os.POSIX_SPAWN_DUP2, src, dst) for src, dst in zip(sources, targets)]
        actions.append((os.POSIX_SPAWN_DUP2, sources[1], 2))
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # SIGINT/SIGTERM blocked until the daemon ignores them (common/daemon.run):
        # a ^C right after the spawn would otherwise hit interpreter start-up
        return os.posix_spawn(sys.executable, [sys.executable, "-m", name] + args, env, file_actions=actions,
                              setsigmask={signal.SIGINT, signal.SIGTERM})
    finally:
        for fd in sources:
            os.close(fd)


class Subd:
    # --dev-fail-on-subdaemon-fail (Core Lightning's test runners pass it):
    # what the master does when a daemon fails -- status_fail, a malformed
    # message, death by a signal -- instead of restarting it: stop the node
    # with exit status 1.  Set once per process by LightningD.
    on_failure: ClassVar[Callable[[str], None] | None] = None

    def __init__(self, name: str, schema: MessageSchema, handlers: dict[str, Handler], log: Logger,
                 on_exit: ExitCallback | None = None, args: list[str] | None = None,
                 node_id: str | None = None, spawner: "Spawner | None" = None,
                 gate: WriteGate | None = None) -> None:
        self.name = name
        self.gate = gate          # what we send waits for the database (persist before reveal)
        self.spawner = spawner
        self.schema = schema
        self.handlers = handlers
        self.log = log
        self.on_exit = on_exit
        self.args = args or []
        self.node_id = node_id
        self.pid: int | None = None
        self.conn: DaemonConn | None = None
        self.billboard: str | None = None
        self.perm_billboard: str | None = None
        self.failure: str | None = None
        self.returncode: int | None = None
        self.exited = asyncio.Event()
        self._stopping = False
        self._pidfd: int | None = None
        self._err_task: asyncio.Task | None = None
        self._spawning: asyncio.Future | None = None
        self._child_fds: list[int] = []
        self._started_at = 0.0
        self.startup_ms: float | None = None   # spawn request -> status_version
        self.ready = asyncio.Event()             # status_version came

    # -- lifecycle -------------------------------------------------------------------
    def start(self, hsm_fd: int | None = None, extra_fds: list[int] | tuple[int, ...] = ()) -> None:
        """Start the process: forked by the zygote when there is one (the pid
        arrives a moment later), else spawned from a fresh interpreter.  fds
        given here are only borrowed (the caller closes them)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        err_r, err_w = os.pipe()
        args = [f"--status-level={self.log.book.min_level()}"] + self.args
        if hsm_fd is not None:
            args.append("--hsmfd")
        if extra_fds:
            args.append("--fds=" + ",".join(str(4 + i) for i in range(len(extra_fds))))
        fds = [theirs.fileno(), err_w] + ([hsm_fd] if hsm_fd is not None else []) + list(extra_fds)
        self._started_at = time.monotonic()
        try:
            pending = self.spawner.spawn(self.name, args, fds, hsm_fd is not None) if self.spawner else None
            if pending is None:
                self.pid = _posix_spawn(self.name, args, fds, hsm_fd is not None)
            else:
                # kept until the zygote answers: if it could not fork, we spawn
                self._child_fds = [_high_fd(fd) for fd in fds]
        finally:
            theirs.close()
            os.close(err_w)
        loop = asyncio.get_running_loop()
        self.conn = DaemonConn(MsgConn(ours, loop, self.gate), self.schema, self.handlers, on_status=self._on_status,
                               on_error=self._on_protocol_error)
        self.conn.start()
        self._err_task = asyncio.ensure_future(self._read_stderr(err_r))
        if pending is None:
            self._watch()
        else:
            self._spawning = asyncio.ensure_future(self._forked(pending, args, hsm_fd is not None))

    async def _forked(self, pending: "asyncio.Future[int]", args: list[str], hsm: bool) -> None:
        """The zygote's answer: the pid of our child, or no child at all."""
        fds, self._child_fds = self._child_fds, []
        try:
            try:
                self.pid = await pending
                self._watch(forked=True)
                return
            except SpawnRefused as e:
                # nothing was forked: start it the old way
                self.log.unusual(f"{self.name}: zygote could not fork it ({e}): spawning")
                try:
                    self.pid = _posix_spawn(self.name, args, fds, hsm)
                    self._watch()
                    return
                except OSError as e2:
                    self.failure = f"cannot start: {e2}"
            except Exception as e:
                # the zygote died with our request: a child may or may not
                # exist; closing its master link ends it if it does.  We go on
                # as for a daemon killed at once (supervision restarts it).
                self.log.unusual(f"{self.name}: the zygote went away while forking it ({type(e).__name__})")
        finally:
            for fd in fds:
                os.close(fd)
        self.returncode = -1
        if self.conn is not None:
            self.conn.close()
        await self._finish_exit()

    def _watch(self, forked: bool = False) -> None:
        assert self.pid is not None
        self.log.debug(f"{self.name}: pid {self.pid} ({'forked by the zygote' if forked else 'spawned'})")
        self._pidfd = os.pidfd_open(self.pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_pidfd)

    async def _read_stderr(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(fd, "rb", 0))
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                self.log.broken(f"{self.name} stderr: {line.decode(errors='replace').rstrip()}")
        finally:
            transport.close()

    def _on_pidfd(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._pidfd is not None
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        try:
            _, status = os.waitpid(self.pid, 0)  # type: ignore[arg-type]
            self.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            self.returncode = -1
        asyncio.ensure_future(self._finish_exit())

    async def _finish_exit(self) -> None:
        if self.conn is not None:
            # what it sent before exiting (channeld_failed, status_fail...) is
            # handled before its exit is: the link ends at EOF once read
            try:
                await asyncio.wait_for(self.conn.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
            self.conn.close()
        if self._err_task is not None:
            try:
                await asyncio.wait_for(self._err_task, 1.0)
            except (asyncio.TimeoutError, Exception):
                self._err_task.cancel()
        rc = self.returncode if self.returncode is not None else -1
        if not self._stopping and (rc != 0 or self.failure):
            how = ("never started" if self.pid is None else
                   f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}")
            why = f": {self.failure}" if self.failure else ""
            # our own failure (an exception: status_fail, a bad exit) is a bug;
            # a kill from outside (an operator, the OOM killer) is recovered from
            self.log.log(UNUSUAL if rc < 0 and not self.failure else BROKEN, f"{self.name} died ({how}){why}")
            if rc < 0 and self.pid is not None:
                self._failed(f"Subdaemon {self.name} killed with signal {-rc}")
        elif not self._stopping:
            self.log.debug(f"{self.name} exited")
        else:
            self.log.debug(f"{self.name} exited ({rc})")
        self.exited.set()
        if self.on_exit is not None:
            r = self.on_exit(self, rc)
            if asyncio.iscoroutine(r):
                await r

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the link (the daemon exits on EOF), then escalate."""
        self._stopping = True
        if self._spawning is not None and not self._spawning.done():
            # still being forked: its pid (or its failure) comes first
            await asyncio.wait([self._spawning], timeout=timeout)
        if self.pid is None or self.exited.is_set():
            return
        if self.conn is not None:
            self.conn.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass
            try:
                await asyncio.wait_for(self.exited.wait(), timeout if sig is None else 2.0)
                return
            except asyncio.TimeoutError:
                continue

    @property
    def running(self) -> bool:
        """Started (or being forked) and not exited: messages can be sent."""
        return self.conn is not None and not self.exited.is_set()

    # -- messages --------------------------------------------------------------------
    def send(self, name: str, fields: dict | None = None, fds: list[int] | tuple[int, ...] = ()) -> bool:
        """Fire and forget; False if not sent.  To a daemon that is dying (its
        link already shut, the exit not yet reaped) the message is dropped:
        what it carried is in our records and is sent again to the daemon
        that replaces it."""
        assert self.conn is not None
        try:
            self.conn.send(name, fields, fds)
        except ConnectionClosed:
            self.log.debug(f"{self.name} is gone: {name} not sent")
            return False
        return True

    async def request(self, name: str, fields: dict | None = None, fds: list[int] | tuple[int, ...] = (),
                      timeout: float | None = None) -> Msg:
        assert self.conn is not None
        return await self.conn.request(name, fields, fds, timeout)

    def _on_status(self, msg: Msg) -> None:
        f = msg.fields
        if msg.name == "status_log":
            level = f["level"] if 0 <= f["level"] < len(LEVELS) else BROKEN
            peer = f["peer"].hex() if f["peer"] else self.node_id
            self.log.log(level, f["entry"], node_id=peer)
        elif msg.name == "status_io":
            peer = f["peer"].hex() if f["peer"] else self.node_id
            self.log.io(f["who"], f["data"], f["outgoing"], node_id=peer)
        elif msg.name == "status_peer_billboard":
            if f["perm"]:
                self.perm_billboard = f["happenings"]
            self.billboard = f["happenings"]
        elif msg.name == "status_fail":
            reason = FAIL_REASONS.get(f["reason"], str(f["reason"]))
            self.failure = f"{reason}: {f['desc'].splitlines()[0] if f['desc'] else ''}"
            for line in f["desc"].splitlines():
                self.log.broken(f"{self.name} failed ({reason}): {line}")
            self._failed(f"{self.name} failed ({reason})")
        elif msg.name == "status_version":
            self.startup_ms = (time.monotonic() - self._started_at) * 1000
            self.log.debug(f"{self.name}: first message {self.startup_ms:.1f} ms after the spawn request")
            self.ready.set()
            if f["version"] != VERSION:
                self.log.broken(f"{self.name} version {f['version']} != ours {VERSION}")
        else:  # the status schema has no other message: a new one needs a case here
            self._on_protocol_error(ProtocolError(f"unhandled status message {msg.name}"))

    def _on_protocol_error(self, e: Exception) -> None:
        self.log.broken(f"{self.name}: {type(e).__name__}: {e}")
        if isinstance(e, ProtocolError):      # (not a bug in one of our handlers)
            self._failed(f"{self.name}: malformed message")

    def _failed(self, what: str) -> None:
        if Subd.on_failure is not None:
            Subd.on_failure(what)


STATUS_HANDLED = {"status_log", "status_io", "status_peer_billboard", "status_fail", "status_version"}
