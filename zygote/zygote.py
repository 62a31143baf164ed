"""The zygote: a template process that has imported every subdaemon's code
and forks each new subdaemon from itself (as Android's zygote does), so a
channel costs the pages its channeld writes, not a whole interpreter.

It is spawned by the master before the master opens the database or asks
hsmd anything, from a fresh interpreter (`python -m zygote`): it holds none
of the master's state and has never seen `hsm_secret`.  It imports, freezes
what it imported (`gc.freeze()`: a child's collections then never write to
the template's objects), sends `status_version` and then serves
`zygote_spawn` requests on fd 0, one at a time, blocking: no event loop, no
thread, so nothing but this loop's own frame is live when it forks.

A spawn forks twice.  The intermediate process forks the daemon, reports its
pid and exits at once; the master is a child subreaper
(`PR_SET_CHILD_SUBREAPER`), so the daemon is re-parented to the master, which
then supervises it exactly as one it spawned itself: pidfd, `waitpid`, exit
status, `getppid()` in `watch_master`.  The reply goes out after the
intermediate is reaped (the daemon is the master's child by then), and the
daemon starts only after that too.

The daemon then puts its descriptors on the fixed numbers (0 master, 1 and 2
the stderr pipe, 3 hsmd, 4.. extra), closes every other descriptor (the
zygote's own link among them), takes its command line and runs its
`__main__` as `python -m <daemon>` would, in this process: nothing is
imported again.

Signals: the master spawns the zygote with SIGINT and SIGTERM blocked, and
the zygote ignores them from its first line (a ^C to the process group is
the master's to handle): its children inherit that, as `common.daemon.run`
wants.  The zygote exits on EOF on its link, i.e. when the master closes it
or dies."""
from __future__ import annotations

import array
import fcntl
import gc
import importlib
import os
import pkgutil
import signal
import socket
import sys
import traceback
from collections import deque
from dataclasses import dataclass

from . import memory_merge

# (module with `main`, hsm_sync) per daemon, as each `<daemon>/__main__.py`
# calls `common.daemon.run` (tests/test_zygote.py checks they agree).
DAEMONS: dict[str, tuple[str, bool]] = {
    "hsmd": ("hsmd.__main__", False),
    "connectd": ("connectd.__main__", False),
    "gossipd": ("gossipd.__main__", False),
    "channeld": ("channeld.channeld", True),
    "onchaind": ("onchaind.onchaind", True),
}

# Every module of these packages is imported up front, including those a
# daemon imports lazily inside a function: a module first imported in a
# child is private to it (test drivers live in tests/, not here).
PACKAGES = ("common", "wire", "bitcoin", "hsmd", "connectd", "gossipd", "channeld", "onchaind")
# stdlib and third-party modules the daemons import lazily
EXTRA = ("ipaddress", "setproctitle", "traceback", "cryptography.hazmat.primitives.hashes")

# what the zygote handles from the master (tests/test_internal_wire.py)
MASTER_HANDLERS = ("zygote_spawn",)

HEADER_SIZE = 5            # common.msgconn.HEADER: u32 length | u8 fd count
MAX_FDS = 8


def preload() -> None:
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
            importlib.import_module(info.name)
    for name, (module, _) in DAEMONS.items():
        importlib.import_module(f"{name}.__main__")
        importlib.import_module(module)
    for name in EXTRA:
        importlib.import_module(name)
    # What every daemon computes on its first message: the parsed schemas.
    from wire.internal import DAEMONS as SCHEMAS
    from wire.internal import internal_schema, status_schema
    for name in SCHEMAS + ("gossip_link", "peer_stream", "zygote"):
        internal_schema(name)
    status_schema()
    from wire.bolt import bolt_schema, onion_failure_schema
    bolt_schema()
    onion_failure_schema()


class Link:
    """The zygote's end of its link to the master: blocking frames in the
    format of `common.msgconn` (which needs an event loop)."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self._buf = bytearray()
        self._fds: deque[int] = deque()

    def recv(self) -> tuple[bytes, list[int]] | None:
        """The next frame, or None once the master is gone."""
        while True:
            if len(self._buf) >= HEADER_SIZE:
                length = int.from_bytes(self._buf[:4], "big")
                nfds = self._buf[4]
                if len(self._buf) >= HEADER_SIZE + length and len(self._fds) >= nfds:
                    msg = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])
                    del self._buf[:HEADER_SIZE + length]
                    return msg, [self._fds.popleft() for _ in range(nfds)]
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * 4))
            except InterruptedError:
                continue
            except OSError:
                return None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                    self._fds.extend(fds)
            if not data:
                return None
            self._buf += data

    def send(self, msg: bytes) -> None:
        """(The master gone, there is no one to tell: the zygote just ends.)"""
        try:
            self.sock.sendall(len(msg).to_bytes(4, "big") + b"\0" + msg)
        except OSError:
            os._exit(0)


class SpawnError(Exception):
    """Nothing was forked; the reason goes back in zygote_spawn_fail."""


@dataclass
class Child:
    """What a freshly forked daemon runs, once the zygote's frames are gone."""
    name: str
    args: list[str]
    fds: list[int]
    hsm: bool
    go: int                 # read end: EOF once we are the master's child
    link: Link

    def run(self) -> None:
        self.link.sock.detach()          # fd 0 is about to be the daemon's master link
        # Wait until the zygote has reaped the intermediate: we are the
        # master's child from then on, and common.daemon.watch_master
        # records getppid() as the master's pid.
        os.read(self.go, 1)
        os.close(self.go)
        place_fds(self.fds, self.hsm)
        if self.name == "hsmd" and memory_merge.memory_merge():
            memory_merge.set_memory_merge(False)     # before it reads hsm_secret (see memory_merge)
        sys.argv = [self.name] + self.args
        gc.enable()
        import coincurve.context
        # the template's secp256k1 blinding is every sibling's: each daemon gets its own
        coincurve.context.GLOBAL_CONTEXT.reseed()
        module, hsm_sync = DAEMONS[self.name]
        from common.daemon import run
        run(self.name, importlib.import_module(module).main, hsm_sync=hsm_sync)


def place_fds(fds: list[int], hsm: bool) -> None:
    """Move the received fds onto the daemon's fixed numbers and close every
    other descriptor this process holds (the zygote's link, pipes)."""
    targets = [0, 1]
    if hsm:
        targets.append(3)
    targets += range(4, 4 + len(fds) - len(targets))
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]  # no dup2 below can clobber a source
    keep = set()
    for src, dst in zip(high, targets):
        os.dup2(src, dst)
        keep.add(dst)
    os.dup2(1, 2)
    keep.add(2)
    top = max(keep) + 1
    for fd in range(3, top):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.closerange(top, os.sysconf("SC_OPEN_MAX"))


def spawn(name: str, args: list[str], fds: list[int], hsm: bool, link: Link) -> int | Child:
    """Fork `name`; in the zygote, returns its pid once it is the master's
    child; in the daemon, returns the Child to run (never the pid)."""
    if name not in DAEMONS:
        raise SpawnError(f"unknown daemon {name!r}")
    if len(fds) < 2 + hsm:
        raise SpawnError(f"{len(fds)} fds for {name}")
    go_r, go_w = os.pipe()
    pid_r, pid_w = os.pipe()
    try:
        mid = os.fork()
    except OSError as e:
        for fd in (go_r, go_w, pid_r, pid_w):
            os.close(fd)
        raise SpawnError(f"fork: {e}") from None
    if mid == 0:
        # the intermediate: fork the daemon, say its pid, leave it to the subreaper
        try:
            os.close(pid_r)
            os.close(go_w)
            pid = os.fork()
        except BaseException:
            os._exit(1)
        if pid == 0:
            os.close(pid_w)
            return Child(name, args, fds, hsm, go_r, link)
        try:
            os.write(pid_w, pid.to_bytes(4, "big"))
        finally:
            os._exit(0)
    os.close(pid_w)
    os.close(go_r)
    try:
        data = b""
        while len(data) < 4:
            chunk = os.read(pid_r, 4 - len(data))
            if not chunk:
                break
            data += chunk
        os.waitpid(mid, 0)
        if len(data) != 4:
            raise SpawnError("fork failed in the intermediate process")
        return int.from_bytes(data, "big")
    finally:
        os.close(pid_r)
        os.close(go_w)       # the daemon goes on: it is the master's child now


def serve(link: Link) -> Child | None:
    """Answer spawn requests until the master goes away (None); in a forked
    daemon, return what it must run."""
    from wire.internal import internal_schema
    schema = internal_schema("zygote")
    while True:
        got = link.recv()
        if got is None:
            return None
        raw, fds = got
        try:
            m = schema.decode(raw)
            if m.name not in MASTER_HANDLERS:
                raise SpawnError(f"unexpected {m.name}")
            f = m.fields
            r = spawn(f["name"], [a["arg"] for a in f["args"]], fds, f["hsmfd"], link)
        except SpawnError as e:
            reply = schema.encode("zygote_spawn_fail", {"reason": str(e)})
        except Exception as e:  # a bad frame: say so, stay up
            reply = schema.encode("zygote_spawn_fail", {"reason": f"{type(e).__name__}: {e}"})
        else:
            if isinstance(r, Child):
                return r
            reply = schema.encode("zygote_spawn_reply", {"pid": r})
        for fd in fds:
            os.close(fd)
        link.send(reply)


def main() -> None:
    # first, before any import: see the module docstring
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    os.dup2(2, 1)
    # before anything is imported: every page of the template is mergeable
    merge_note = memory_merge.opt_in() if "--memory-merge" in sys.argv[1:] else None
    # No collection while importing: it would leave freed holes in pages
    # the children then write into.  Everything imported is then frozen.
    gc.disable()
    preload()
    from common.daemon import VERSION, set_process_name
    from common.status import INFO, UNUSUAL
    from wire.internal import status_schema

    from .warmup import seal_heap, warm_up
    # Holes left by the imports filled first: what the warm-up keeps (caches,
    # grown dicts, interned names) then sits together in fresh pages instead
    # of one object in each of hundreds of pages that the children would
    # copy to touch it.
    gc.collect()
    seal_heap()
    failed = warm_up()
    set_process_name("zygote")
    gc.collect()
    seal_heap()
    gc.freeze()
    gc.enable()
    link = Link(0)
    link.send(status_schema().encode("status_version", {"version": VERSION}))
    for f in failed:
        link.send(status_schema().encode("status_log", {"level": UNUSUAL, "peer": b"", "entry": f"warm-up failed: {f}"}))
    if merge_note is not None:
        link.send(status_schema().encode("status_log", {"level": INFO, "peer": b"", "entry": merge_note}))
    child = serve(link)
    if child is None:
        return
    run_child(child)


def run_child(child: Child) -> None:
    """The daemon's whole life; it ends the process without returning.  It
    exits with os._exit after the atexit handlers: a full interpreter
    finalization would write to every shared object (refcounts) on the way
    out.  The daemons keep no buffered files (gossip_store is a raw fd)."""
    code: int = 1
    try:
        child.run()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            import atexit
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)

