"""Kernel same-page merging (KSM) of the zygote's children.

What a forked daemon still pays for is mostly pages it copied by touching
the template's objects: CPython 3.11 writes every reference count it
changes, so a page is copied even when the count ends where it started, and
fifty channelds in the same state copy the same pages to the same contents.
Linux's ksmd merges identical anonymous pages of the processes that opted in
back into one copy-on-write page.  `PR_SET_MEMORY_MERGE` (Linux 6.4) opts a
whole process in, and a fork inherits it: the zygote opts in before it
imports anything, so the template and every child are mergeable.

hsmd opts out again at once, before it reads `hsm_secret`: merged pages
are a known side channel (a process can time a copy-on-write fault to learn
whether a page it built exists elsewhere), and hsmd's pages are the one
place a guessable page would be worth guessing.

Opting in costs nothing while ksmd is off (`/sys/kernel/mm/ksm/run` = 0, the
default of most distributions): the operator switches it on."""
from __future__ import annotations

import ctypes
import errno
import os

PR_SET_MEMORY_MERGE = 67
PR_GET_MEMORY_MERGE = 68
KSM_RUN = "/sys/kernel/mm/ksm/run"


def _prctl(option: int, arg: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.prctl(option, arg, 0, 0, 0)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl({option}, {arg}): {os.strerror(e)}")
    return r


def set_memory_merge(on: bool) -> None:
    """Opt this process (and what it forks from now on) in or out; opting
    out unmerges what was merged.  OSError where the kernel has no
    PR_SET_MEMORY_MERGE."""
    _prctl(PR_SET_MEMORY_MERGE, 1 if on else 0)


def memory_merge() -> bool:
    """Whether this process is opted in (False where the kernel cannot)."""
    try:
        return _prctl(PR_GET_MEMORY_MERGE, 0) == 1
    except OSError:
        return False


def ksmd_running() -> bool | None:
    """Whether ksmd merges pages now (None: no KSM in this kernel)."""
    try:
        with open(KSM_RUN) as f:
            return f.read().strip() == "1"
    except OSError:
        return None


def opt_in() -> str:
    """Opt the zygote in; what happened, for the master's log."""
    try:
        set_memory_merge(True)
    except OSError as e:
        why = "kernel older than 6.4" if e.errno == errno.EINVAL else e.strerror
        return f"memory merging (KSM) not available ({why}): children share copy-on-write pages only"
    running = ksmd_running()
    if running:
        return "memory merging (KSM): subdaemons opted in, ksmd is running"
    return (f"memory merging (KSM): subdaemons opted in, but ksmd is not running ({KSM_RUN} is not 1): "
            "children share copy-on-write pages only")
