"""Signals at awkward moments: a terminal's ^C (SIGINT to the whole process
group) and systemd's SIGTERM to every process of the node, at start-up right
after a subdaemon spawns, and in normal operation with channels and a
plugin.  The node shuts down in order: no traceback on stderr, no BROKEN
line, no process left behind, exit code 0."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from node_factory import descendants, pid_alive, wait_for
from test_channels import fund, open_channel

PLUGIN = Path(__file__).parent / "plugins" / "hold_htlcs.py"


def assert_clean_exit(node, procs: list[int]) -> None:
    assert node.proc.wait(60) == 0, node.stderr_text()[-3000:]
    for pid in procs:
        wait_for(lambda: not pid_alive(pid), timeout=15)
    err = node.stderr_text()
    assert "Traceback" not in err and "Error" not in err, err[-3000:]
    assert not node.broken_lines()


def catches(pid: int, sig: int) -> bool:
    """pid has a handler for sig (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    except OSError:
        pass
    return False


def group_signal(node, sig: int, whole_cgroup: bool) -> list[int]:
    """^C in a terminal reaches the process group; systemd's stop reaches
    every process of the service, whatever its group."""
    procs = descendants(node.proc.pid)
    if whole_cgroup:
        for pid in [node.proc.pid] + procs:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    else:
        os.killpg(node.proc.pid, sig)
    return procs


@pytest.mark.parametrize("sig,cgroup", [(signal.SIGINT, False), (signal.SIGTERM, True)])
def test_signal_with_channels_and_a_plugin(node_factory, sig, cgroup):
    l1 = node_factory.get_node(options={"plugin": str(PLUGIN)})
    l2 = node_factory.get_node()
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    assert "channeld" in l1.subdaemon_pids_all().values()
    procs = group_signal(l1, sig, cgroup)
    assert_clean_exit(l1, procs)
    l1.start()     # and it comes back with its channel
    wait_for(lambda: l1.rpc.listpeerchannels()["channels"][0]["state"] == "CHANNELD_NORMAL")


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6, 1.0])
@pytest.mark.parametrize("sig,cgroup", [(signal.SIGINT, False), (signal.SIGTERM, True)])
def test_signal_during_startup(node_factory, sig, cgroup, delay):
    """At these delays the node is importing, spawning hsmd, connectd or
    gossipd, or opening its database."""
    l1 = node_factory.get_node(start=False, options={"plugin": str(PLUGIN)})
    l1.start(wait_for_rpc=False)
    # a signal before the interpreter has run a line of ours kills it, as
    # any program: count from when lightningd catches SIGTERM (Python
    # itself catches SIGINT from the start; early_signals takes both)
    wait_for(lambda: catches(l1.proc.pid, signal.SIGTERM), interval=0.001)
    time.sleep(delay)
    procs = group_signal(l1, sig, cgroup)
    assert_clean_exit(l1, procs)
