"""Processes: supervision of subdaemons, clean stop, the directory lock,
and peers speaking BOLT 8 from pyln-proto."""
import os
import signal
import subprocess
import time

import pytest
from pyln.proto.wire import PrivateKey, connect as pyln_connect

from node_factory import LIGHTNINGD, pid_alive, wait_for


def test_pyln_proto_handshake_init_ping(node_factory):
    l1 = node_factory.get_node()
    conn = pyln_connect(PrivateKey(bytes([3] * 32)), bytes.fromhex(l1.node_id), "127.0.0.1", l1.port)
    conn.connection.settimeout(10)
    their_init = conn.read_message()
    assert their_init[:2] == b"\x00\x10"
    conn.send_message(bytes.fromhex("00100000000100"))  # init: no features, no tlvs
    wait_for(lambda: l1.rpc.listpeers()["peers"])
    conn.send_message(bytes.fromhex("0012") + (7).to_bytes(2, "big") + (3).to_bytes(2, "big") + b"\0\0\0")
    pong = conn.read_message()
    assert pong == bytes.fromhex("0013") + (7).to_bytes(2, "big") + bytes(7)
    peer = l1.rpc.listpeers()["peers"][0]
    assert peer["id"] == PrivateKey(bytes([3] * 32)).public_key().serializeCompressed().hex()
    conn.connection.close()
    wait_for(lambda: not l1.rpc.listpeers()["peers"])


def test_init_with_unknown_even_feature_or_wrong_chain_is_refused(node_factory):
    l1 = node_factory.get_node()
    for init in ("0010000000024000",                                   # bit 14? no: unknown even bit 110
                 "00100000000e" + "40" + "00" * 13,                     # bit 110 (unknown even)
                 "00100000000101" + "01" + "20" + "00" * 32):           # networks: some other chain
        conn = pyln_connect(PrivateKey(bytes([5] * 32)), bytes.fromhex(l1.node_id), "127.0.0.1", l1.port)
        conn.connection.settimeout(10)
        conn.read_message()
        conn.send_message(bytes.fromhex(init))
        got = []
        try:
            while True:
                got.append(conn.read_message())
        except Exception:
            pass
        if init == "0010000000024000":
            # bit 14 is payment_secret but it needs var_onion_optin: refused as well
            pass
        assert any(m[:2] == b"\x00\x01" for m in got), init
    assert l1.rpc.listpeers()["peers"] == []


def test_kill_connectd_and_gossipd_restarts_them(node_factory):
    l1 = node_factory.get_node()
    l2 = node_factory.get_node()
    l1.connect(l2)
    old = l1.subdaemon_pids()
    os.kill(old["connectd"], signal.SIGKILL)
    # the peer is gone with connectd, a new connectd appears, RPC keeps working
    wait_for(lambda: not l1.rpc.listpeers()["peers"])
    wait_for(lambda: l1.subdaemon_pids().get("connectd") not in (None, old["connectd"]))
    assert l1.rpc.getinfo()["id"] == l1.node_id
    wait_for(lambda: _try_connect(l1, l2))
    wait_for(lambda: l2.is_connected(l1))
    # incoming connections work with the new connectd too
    l2.rpc.disconnect(l1.node_id)
    wait_for(lambda: not l1.rpc.listpeers()["peers"])
    l2.connect(l1)
    wait_for(lambda: l1.is_connected(l2))
    os.kill(old["gossipd"], signal.SIGKILL)
    wait_for(lambda: l1.subdaemon_pids().get("gossipd") not in (None, old["gossipd"]))
    assert l1.rpc.getinfo()["num_peers"] == 1
    # a kill from outside is recovered from: unusual, not broken (not our bug)
    assert any(" UNUSUAL " in ln and "connectd died (killed by signal 9)" in ln for ln in l1.log_text().splitlines())
    assert any(" UNUSUAL " in ln and "gossipd died (killed by signal 9)" in ln for ln in l1.log_text().splitlines())


def _try_connect(a, b):
    try:
        a.connect(b)
        return True
    except Exception:
        return False


def test_hsmd_death_shuts_node_down(node_factory):
    # without hsmd the node cannot go on: that it stops is logged as broken
    l1 = node_factory.get_node(allow_broken_log=True, may_fail=True)
    pids = l1.subdaemon_pids()
    os.kill(pids["hsmd"], signal.SIGKILL)
    assert l1.proc.wait(30) == 1
    for name, pid in pids.items():
        wait_for(lambda: not pid_alive(pid), timeout=10)
    assert not l1.rpc_path.exists()


def test_dev_fail_on_subdaemon_fail_stops_the_node(node_factory):
    """Core Lightning's test framework (pyln-testing) starts every node with
    --dev-fail-on-subdaemon-fail: a daemon killed by a signal then stops the
    node with exit status 1, instead of being restarted."""
    # (broken lines expected: the subdaemon's death and the stop it causes are logged as broken)
    l1 = node_factory.get_node(options={"dev-fail-on-subdaemon-fail": None}, allow_broken_log=True, may_fail=True)
    assert l1.rpc.listconfigs("dev-fail-on-subdaemon-fail")["configs"]["dev-fail-on-subdaemon-fail"]["set"] is True
    pids = l1.subdaemon_pids()
    os.kill(pids["gossipd"], signal.SIGKILL)
    assert l1.proc.wait(30) == 1
    for pid in pids.values():
        wait_for(lambda: not pid_alive(pid), timeout=10)
    assert any(" BROKEN " in ln and "Subdaemon gossipd killed with signal 9" in ln for ln in l1.log_text().splitlines())



    l1 = node_factory.get_node()
    pids = l1.subdaemon_pids()
    assert set(pids) == {"hsmd", "connectd", "gossipd", "zygote"}
    assert l1.rpc.stop() == {"result": "Shutdown complete"}
    assert l1.proc.wait(30) == 0
    for pid in pids.values():
        wait_for(lambda: not pid_alive(pid), timeout=10)
    assert not l1.rpc_path.exists()
    # and it starts again on the same directory with the same identity
    old_id = l1.node_id
    l1.start()
    assert l1.rpc.getinfo()["id"] == old_id


def test_two_nodes_cannot_share_a_dir(node_factory):
    l1 = node_factory.get_node(allow_broken_log=True)  # the second one logs its failure to the same file
    p = subprocess.run(l1.cmd_line(), capture_output=True, timeout=60)
    assert p.returncode != 0
    assert b"already running" in p.stderr
    assert l1.rpc.getinfo()["id"] == l1.node_id


def test_wrong_chain_or_unreachable_backend_exits_with_a_clear_message(node_factory, tmp_path):
    l1 = node_factory.get_node(start=False)
    cmd = [a for a in l1.cmd_line() if not a.startswith("--network")] + ["--network=testnet"]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    assert p.returncode != 0 and b"Wrong network" in p.stderr
    cmd = [a for a in l1.cmd_line() if not a.startswith(("--bitcoin-rpcport", "--bitcoin-retry"))]
    from contrib.regtest.testing import free_port
    cmd += [f"--bitcoin-rpcport={free_port()}", "--bitcoin-retry-timeout=1"]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    assert p.returncode != 0 and b"Could not connect to bitcoind" in p.stderr


def test_unknown_option_is_an_error_naming_it(tmp_path):
    p = subprocess.run(LIGHTNINGD + [f"--lightning-dir={tmp_path}", "--no-such-option=1"], capture_output=True,
                       timeout=60)
    assert p.returncode != 0 and b"no-such-option" in p.stderr
    p = subprocess.run(LIGHTNINGD + [f"--lightning-dir={tmp_path}", "--dev-fast-gossip"], capture_output=True,
                       timeout=60)
    assert p.returncode != 0 and b"--developer" in p.stderr


def test_sighup_reopens_log_file(node_factory):
    l1 = node_factory.get_node()
    log = l1.base_dir / "log"
    rotated = l1.base_dir / "log.1"
    os.rename(log, rotated)
    l1.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: log.exists())
    l2 = node_factory.get_node()
    l1.connect(l2)
    wait_for(lambda: "connected" in log.read_text())


def test_node_start_time(node_factory):
    """Not a benchmark, a guard: a node answers RPC within seconds."""
    t = time.monotonic()
    node_factory.get_node()
    assert time.monotonic() - t < 20
