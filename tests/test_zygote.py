"""Subdaemons forked from the zygote: each is its own process, a child of
the master, named after its role, with its fds on the fixed numbers and
SIGINT/SIGTERM ignored; the zygote holds none of the master's secrets; a
killed zygote is replaced and never costs a channel."""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node_factory import child_pids, cmdline, pid_alive, wait_for
from test_channels import fund, open_channel
from test_recovery import CAPACITY, assert_settled, invoice, pay_all

from zygote.zygote import DAEMONS

REPO = Path(__file__).resolve().parent.parent


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def sig_masks(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("SigBlk", "SigIgn"):
                out[k] = int(v, 16)
    return out


def bit(sig: int) -> int:
    return 1 << (sig - 1)


def zygote_pid(node) -> int:
    return node.subdaemon_pids()["zygote"]


def test_zygote_table_matches_each_daemons_main():
    """The zygote runs each daemon as its `__main__` does: same function,
    same hsm_sync."""
    for name, (module, hsm_sync) in DAEMONS.items():
        tree = ast.parse((REPO / name / "__main__.py").read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "run"]
        assert len(calls) == 1, name
        call = calls[0]
        assert ast.literal_eval(call.args[0]) == name
        kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        assert kw.get("hsm_sync", False) == hsm_sync, name
        src = (REPO / name / "__main__.py").read_text()
        if module != f"{name}.__main__":
            assert f"from .{module.split('.', 1)[1]} import main" in src, name


def test_every_subdaemon_is_a_forked_child_of_the_master(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2)
    for node in (l1, l2):
        pids = node.subdaemon_pids_all()
        assert sorted(pids.values()) == ["channeld", "connectd", "gossipd", "hsmd", "zygote"]
        for pid, name in pids.items():
            assert ppid(pid) == node.proc.pid
            assert cmdline(pid).startswith(f"lightning_{name} ")
            m = sig_masks(pid)
            for s in (signal.SIGINT, signal.SIGTERM):
                assert m["SigIgn"] & bit(s) and not m["SigBlk"] & bit(s), (name, m)
            if name != "zygote":
                fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
                assert fds[0].startswith("socket:") and fds[1] == fds[2] and fds[1].startswith("pipe:")
                if name == "channeld":
                    assert fds[3].startswith("socket:") and fds[4].startswith("socket:")
        # the zygote never had the database, the RPC socket or hsm_secret open
        z = zygote_pid(node)
        fds = [os.readlink(f"/proc/{z}/fd/{fd}") for fd in os.listdir(f"/proc/{z}/fd")]
        assert not any("sqlite3" in f or "hsm_secret" in f or "lightning-rpc" in f for f in fds), fds
        # and every one of them was forked (the teardown checks that for every test)
        assert not node.spawned_lines()


def merge_any(pid: int) -> bool:
    """/proc/PID/ksm_stat: is the process opted in to KSM as a whole?"""
    with open(f"/proc/{pid}/ksm_stat") as f:
        return "ksm_merge_any: yes" in f.read()


def kernel_has_memory_merge() -> bool:
    code = "from zygote.memory_merge import set_memory_merge; set_memory_merge(True)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True).returncode == 0


def test_subdaemons_opt_in_to_memory_merging_but_hsmd(node_factory):
    """Every forked daemon can have its identical pages merged by ksmd
    (zygote/memory_merge.py), except hsmd, which holds the secret; with
    subdaemon-memory-merge=false none is opted in.  (ksmd itself is the
    operator's switch and is not turned on here: opting in is what the
    node does.)"""
    if not kernel_has_memory_merge():
        pytest.skip("kernel without PR_SET_MEMORY_MERGE (Linux < 6.4)")
    l1, l2 = node_factory.get_nodes(2, opts=[{}, {"subdaemon-memory-merge": "false"}])
    fund(l1)
    open_channel(l1, l2)
    assert l1.rpc.listconfigs("subdaemon-memory-merge")["configs"]["subdaemon-memory-merge"]["value_bool"] is True
    assert l2.rpc.listconfigs("subdaemon-memory-merge")["configs"]["subdaemon-memory-merge"]["value_bool"] is False
    opted = {name: merge_any(pid) for pid, name in l1.subdaemon_pids_all().items()}
    assert opted == {"zygote": True, "hsmd": False, "connectd": True, "gossipd": True, "channeld": True}, opted
    assert not merge_any(l1.proc.pid)           # the master is not forked from the zygote
    assert not any(merge_any(pid) for pid in l2.subdaemon_pids_all())
    # a channeld forked later (after a crash) is opted in too
    old = l1.subdaemon_pids()["channeld"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: l1.subdaemon_pids().get("channeld") not in (None, old))
    assert merge_any(l1.subdaemon_pids()["channeld"])
    assert_settled(l1, l2, [], {})


def test_zygote_and_channeld_killed_both_come_back(node_factory):
    """kill -9 the zygote, then a channeld: a new zygote, a new channeld
    forked from it, the channel normal again on both sides, nothing on chain,
    payments go through."""
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    old_zygote = zygote_pid(l1)
    os.kill(old_zygote, signal.SIGKILL)
    new_zygote = wait_for(lambda: l1.subdaemon_pids().get("zygote") not in (None, old_zygote)
                          and l1.subdaemon_pids()["zygote"])
    old_channeld = l1.subdaemon_pids()["channeld"]
    os.kill(old_channeld, signal.SIGKILL)
    wait_for(lambda: l1.subdaemon_pids().get("channeld") not in (None, old_channeld))
    assert not pid_alive(old_zygote) and pid_alive(new_zygote)
    invoices = [invoice(l2, f"z{i}") for i in range(5)]
    results: dict = {}
    for t in pay_all(l1, invoices, results):
        t.join(90)
    assert_settled(l1, l2, invoices, results)
    assert sorted(results.values()) == ["complete"] * 5
    assert not l1.spawned_lines()       # the new channeld came from the new zygote


def test_zygote_killed_with_a_channeld_at_once(node_factory):
    """Both at the same moment: the channeld may come back before the new
    zygote is ready (then it is started from a fresh interpreter)."""
    l1, l2 = node_factory.get_nodes(2)
    l1.allow_spawned = True
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    pids = l1.subdaemon_pids()
    os.kill(pids["zygote"], signal.SIGKILL)
    os.kill(pids["channeld"], signal.SIGKILL)
    wait_for(lambda: l1.subdaemon_pids().get("zygote") not in (None, pids["zygote"]))
    wait_for(lambda: l1.subdaemon_pids().get("channeld") not in (None, pids["channeld"]))
    assert_settled(l1, l2, [], {})


def test_master_killed_everything_exits(node_factory):
    """kill -9 of lightningd: the zygote (EOF on its link) and the forked
    daemons (their parent is gone) all exit."""
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2)
    kids = child_pids(l1.proc.pid)
    assert len(kids) >= 5
    l1.kill()
    for pid in kids:
        wait_for(lambda: not pid_alive(pid), timeout=15)
    l1.start()
    wait_for(lambda: l1.rpc.listpeerchannels()["channels"][0]["state"] == "CHANNELD_NORMAL")


STRAY_SCRIPT = r"""
import asyncio, os, signal, sys, time
from lightningd.zygote_control import ZygoteControl, become_subreaper

class Log:
    def __getattr__(self, name):
        return lambda *a, **k: None

class Master:
    log, stopping = Log(), False

async def main():
    assert become_subreaper()
    zc = ZygoteControl(Master(), memory_merge=False)
    zc.STRAY_SCAN_DELAY = 0.2
    asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, zc._on_sigchld)
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:                       # a "plugin" that leaves a helper behind
        if os.fork() == 0:
            os.read(r, 1)              # the helper lives until told
            os._exit(0)
        os._exit(0)
    os.waitpid(mid, 0)                 # the helper is ours now
    kids = [int(p) for p in open(f"/proc/self/task/{os.getpid()}/children").read().split()]
    assert len(kids) == 1, kids
    os.write(w, b"x")                  # it exits: a zombie nobody else will reap
    for _ in range(100):
        await asyncio.sleep(0.05)
        if not os.path.exists(f"/proc/{kids[0]}"):
            print("reaped")
            return
    print("zombie left")

asyncio.run(main())
"""


def test_master_reaps_orphans_it_inherits_as_subreaper():
    """A plugin's helper orphaned below the master (a child subreaper, for
    the zygote's sake) is reaped, not left a zombie."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", STRAY_SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "reaped", out.stdout + out.stderr
