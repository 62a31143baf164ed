"""Recovery without casualties: a channel daemon killed at any moment never
costs the channel.  Each test asserts the final state of both peers after
things settle: both back in CHANNELD_NORMAL, no commitment in the mempool or
on chain, every invoice paid exactly once or not at all, balances that sum
to the capacity and no HTLC left.

As Core Lightning does, the master drops the peer's connection when a
channeld dies (its stream is in an unknown state) and the nodes reestablish
on reconnection, which happens by itself."""
from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest
from pyln.client import RpcError

from node_factory import wait_for
from test_channels import channel, fund, open_channel

CAPACITY = 1_000_000
PAYMENTS = 20
AMOUNT = 10_000


def invoice(node, label: str) -> dict:
    return dict(node.rpc.invoice(AMOUNT, label, "kill matrix"), label=label)


def channelds(node) -> list[int]:
    return [p for p, name in node.subdaemon_pids_all().items() if name == "channeld"]


def kill_channeld(node) -> int:
    pid = channelds(node)[0]
    os.kill(pid, signal.SIGKILL)
    return pid


def funding_outpoint(node, peer) -> tuple[str, int]:
    c = channel(node, peer)
    return c["funding_txid"], c["funding_outnum"]


def assert_settled(l1, l2, invoices: list[dict], results: dict[str, Any]) -> None:
    """Both sides: normal, connected, no HTLC, balances summing to the
    capacity; the funding output unspent (no commitment on chain or in the
    mempool); each invoice paid exactly once or not at all, as pay said."""
    def settled() -> bool:
        a, b = channel(l1, l2), channel(l2, l1)
        return (a["state"] == b["state"] == "CHANNELD_NORMAL" and a["peer_connected"] and b["peer_connected"]
                and not a["htlcs"] and not b["htlcs"])
    wait_for(settled, timeout=90)
    a, b = channel(l1, l2), channel(l2, l1)
    assert a["to_us_msat"] + b["to_us_msat"] == CAPACITY * 1000
    txid, outnum = funding_outpoint(l1, l2)
    assert l1.chain.rpc.gettxout(txid, outnum, True) is not None, "funding output spent"
    for tx in l1.chain.rpc.getrawmempool():
        vin = l1.chain.rpc.getrawtransaction(tx, True)["vin"]
        assert not any(i.get("txid") == txid and i.get("vout") == outnum for i in vin), "commitment in mempool"
    paid = 0
    for inv in invoices:
        status = l2.rpc.listinvoices(inv["label"])["invoices"][0]["status"]
        sends = l1.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"]
        complete = [s for s in sends if s["status"] == "complete"]
        assert len(complete) <= 1
        assert (status == "paid") == bool(complete), (inv["label"], status, sends)
        assert not any(s["status"] == "pending" for s in sends)
        r = results.get(inv["label"])
        if r is not None:   # what pay answered agrees with what happened
            assert (r == "complete") == (status == "paid"), (inv["label"], r, status)
        paid += status == "paid"
    assert b["to_us_msat"] == paid * AMOUNT
    print(f"paid {paid} of {len(invoices)}; pay said {sorted(results.values(), key=str)}")


def pay_all(payer, invoices: list[dict], results: dict[str, Any]) -> list[threading.Thread]:
    def one(inv: dict) -> None:
        try:
            results[inv["label"]] = payer.rpc.pay(inv["bolt11"], retry_for=60)["status"]
        except RpcError as e:
            if isinstance(e.error, dict):    # (else pyln's "Connection to RPC server lost": no answer)
                results[inv["label"]] = e.error.get("code")
        except Exception:      # the payer's own master was killed: no answer
            pass
    threads = [threading.Thread(target=one, args=(inv,)) for inv in invoices]
    for t in threads:
        t.start()
    return threads


def kill(node, process: str) -> None:
    """kill -9 one process of the node; for the master or hsmd (which takes
    the node down with it) start the node again, as its supervisor would."""
    if process == "lightningd":
        node.proc.kill()
        node.proc.wait()
        node.start()
    elif process == "hsmd":
        os.kill(node.subdaemon_pids()["hsmd"], signal.SIGKILL)
        assert node.proc.wait(30) == 1      # without its keys the node stops
        node.start()
    else:
        old = [p for p, name in node.subdaemon_pids_all().items() if name == process]
        os.kill(old[0], signal.SIGKILL)
        wait_for(lambda: [p for p, name in node.subdaemon_pids_all().items()
                          if name == process and p not in old], timeout=60)


# process killed x side x moment: the kill matrix of the closing note
@pytest.mark.parametrize("moment", ["idle", "mid-payment"])
@pytest.mark.parametrize("side", ["opener", "accepter"])
@pytest.mark.parametrize("process", ["channeld", "connectd", "gossipd", "hsmd", "lightningd"])
def test_kill_matrix_never_costs_the_channel(node_factory, process, side, moment):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    node = l1 if side == "opener" else l2
    if process == "hsmd":
        node.allow_broken_log = True    # "hsmd died: shutting down" is broken: the node cannot go on
    invoices = [invoice(l2, f"k{i}") for i in range(PAYMENTS if moment != "idle" else 0)]
    results: dict[str, Any] = {}
    threads = pay_all(l1, invoices, results)
    if moment == "mid-payment":
        # HTLCs on the wire: some offered, some committed, some being fulfilled
        wait_for(lambda: channel(l1, l2)["htlcs"], interval=0.01)
    kill(node, process)
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    assert_settled(l1, l2, invoices, results)
    # and the channel still works
    inv = invoice(l2, "after")
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    invoices.append(inv)
    results["after"] = "complete"
    assert_settled(l1, l2, invoices, results)


def test_kill_both_channelds_mid_payment(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    invoices = [invoice(l2, f"b{i}") for i in range(PAYMENTS)]
    results: dict[str, Any] = {}
    threads = pay_all(l1, invoices, results)
    wait_for(lambda: channel(l1, l2)["htlcs"], interval=0.01)
    # both at once: once one dies its peer's channeld goes with the connection
    victims = channelds(l1)[:1] + channelds(l2)[:1]
    assert len(victims) == 2
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    assert_settled(l1, l2, invoices, results)


def test_operator_disconnect_is_not_undone_but_a_blip_is(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    # a blip we did not ask for (the peer's connectd dies): l1 redials
    os.kill(l2.subdaemon_pids()["connectd"], signal.SIGKILL)
    wait_for(lambda: not l1.is_connected(l2), interval=0.01)   # l2's connectd is restarting: l1 retries in 1 s
    wait_for(lambda: l1.is_connected(l2) and channel(l1, l2)["peer_connected"], timeout=60)
    wait_for(lambda: channel(l1, l2)["state"] == channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    # the operator's disconnect stays: no redial from l1
    l1.rpc.disconnect(l2.node_id, force=True)
    import time
    time.sleep(4)    # several first-retry delays
    assert not l1.is_connected(l2)
    l1.connect(l2)
    wait_for(lambda: channel(l1, l2)["peer_connected"] and channel(l2, l1)["peer_connected"])
    assert channel(l1, l2)["state"] == channel(l2, l1)["state"] == "CHANNELD_NORMAL"


def test_accepter_redials_from_the_announced_address(node_factory):
    """l1 dialled l2; l1 comes back unwilling to dial (dev-no-reconnect): l2
    finds l1's address in its node_announcement and dials it."""
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, CAPACITY, announce=True)
    l1.chain.mine(6)
    wait_for(lambda: any(n["nodeid"] == l1.node_id and n.get("addresses")
                         for n in l2.rpc.listnodes(l1.node_id)["nodes"]), timeout=60)
    l1.options["dev-no-reconnect"] = None
    l1.restart()
    wait_for(lambda: l1.is_connected(l2), timeout=60)
    wait_for(lambda: channel(l1, l2)["state"] == channel(l2, l1)["state"] == "CHANNELD_NORMAL"
             and channel(l2, l1)["peer_connected"])
    assert l1.rpc.listpeers(l2.node_id)["peers"][0]["netaddr"]   # l2 is the one who dialled


@pytest.mark.parametrize("bogus", [False, True])
def test_unexpected_channel_reestablish_is_a_warning_not_a_close(node_factory, bogus):
    """A channel_reestablish in the middle of normal operation (what a peer
    whose channeld restarted sends), even one with nonsense numbers, gets a
    warning and a disconnection, never a force-close; the channel
    reestablishes on the next connection."""
    from test_misbehaving_peer import SCHEMA, funding_spend_in_mempool, open_with_fake_peer
    node = node_factory.get_node()
    peer = open_with_fake_peer(node, 0x52, 0)
    chan = node.rpc.listpeerchannels(peer.node_id)["channels"][0]
    peer.ch.disconnect()     # (the core builds a channel_reestablish only after a disconnection)
    name, fields = peer.ch.reestablish_msg()
    if bogus:
        fields = dict(fields, next_revocation_number=2**64 - 1, your_last_per_commitment_secret=os.urandom(32))
    peer.send(name, fields)
    got = []
    try:
        while True:
            name, fields = SCHEMA.decode(peer.conn.read_message())
            got.append(name)
            if name in ("warning", "error"):
                break
    except Exception:
        pass
    assert "warning" in got and "error" not in got, got
    assert fields["channel_id"] == peer.ch.channel_id
    wait_for(lambda: not node.rpc.listpeers(peer.node_id)["peers"][0]["connected"])
    c = node.rpc.listpeerchannels(peer.node_id)["channels"][0]
    assert c["state"] == "CHANNELD_NORMAL"
    assert funding_spend_in_mempool(node, chan["funding_txid"]) is None


@pytest.mark.parametrize("outcome", ["continue", "fail"])
def test_pay_waits_for_a_part_in_flight_past_retry_for(node_factory, outcome):
    """retry_for bounds new attempts, not the wait for one in flight: pay
    answers only once the HTLC is resolved, with what really happened."""
    from pathlib import Path
    plugin = Path(__file__).parent / "plugins" / "hold_htlcs.py"
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"plugin": str(plugin)})
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    inv = invoice(l2, "held")
    results: dict[str, Any] = {}
    t = threading.Thread(target=lambda: results.update(
        r=_pay_or_code(l1, inv["bolt11"], retry_for=2)))
    t.start()
    wait_for(lambda: l2.rpc.held()["held"] == 1)
    t.join(5)            # well past retry_for
    assert t.is_alive() and not results, results
    assert l1.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "pending"
    l2.rpc.release(outcome)
    t.join(60)
    status = l2.rpc.listinvoices("held")["invoices"][0]["status"]
    if outcome == "continue":
        assert results["r"] == "complete" and status == "paid"
    else:
        # a definite failure, once nothing is in flight (past retry_for: no new attempt)
        assert results["r"] in (205, 210) and status == "unpaid"
        assert l1.rpc.listsendpays(payment_hash=inv["payment_hash"])["payments"][0]["status"] == "failed"


def _pay_or_code(node, bolt11: str, **kw: Any) -> Any:
    try:
        return node.rpc.pay(bolt11, **kw)["status"]
    except RpcError as e:
        return e.error["code"]


def test_pay_refuses_zero_amounts_at_once(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    any_amount = l2.rpc.invoice("any", "any", "any amount")["bolt11"]
    fixed = l2.rpc.invoice(AMOUNT, "fixed", "fixed")["bolt11"]
    import time
    for bolt11, kw in ((any_amount, {"amount_msat": 0}), (fixed, {"partial_msat": 0})):
        start = time.monotonic()
        with pytest.raises(RpcError) as e:
            l1.rpc.call("pay", dict(bolt11=bolt11, **kw))
        assert e.value.error["code"] == -32602
        assert time.monotonic() - start < 5


def test_stop_answers_when_shutdown_is_complete(node_factory):
    """A script that stops, wipes the directory and starts a new node there
    on the same port: the old process has finished everything it does to
    that directory before `stop` answers, and never touches the new node's
    socket or pid file."""
    import shutil
    from node_factory import pid_alive
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    old = l1.proc
    children = list(l1.subdaemon_pids_all())
    assert "channeld" in l1.subdaemon_pids_all().values()
    assert l1.rpc.stop() == {"result": "Shutdown complete"}
    # at the answer: every subdaemon is gone, socket and pid file removed
    assert not any(pid_alive(p) for p in children)
    assert not l1.rpc_path.exists()
    assert not (l1.base_dir / "lightningd-regtest.pid").exists()
    l1.stderr.close()
    shutil.rmtree(l1.base_dir)
    l1.start()                         # same directory, same port, new identity
    assert old.wait(30) == 0
    assert l1.rpc_path.exists() and (l1.base_dir / "lightningd-regtest.pid").exists()
    assert l1.rpc.getinfo()["id"] != l2.node_id


def test_socket_and_pid_file_of_another_node_are_left_alone(node_factory, monkeypatch):
    l1 = node_factory.get_node()
    pidfile = l1.base_dir / "lightningd-regtest.pid"
    for p in (l1.rpc_path, pidfile):
        p.rename(p.with_suffix(".moved"))
        p.write_text("someone else's")
    import socket as socketlib
    s = socketlib.socket(socketlib.AF_UNIX)
    monkeypatch.chdir(l1.lightning_dir)    # (a socket path is limited to 108 bytes)
    s.connect("lightning-rpc.moved")
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"stop","params":{}}')
    reply = b""
    while b"\n\n" not in reply:
        chunk = s.recv(4096)
        assert chunk
        reply += chunk
    assert b"Shutdown complete" in reply
    assert l1.proc.wait(30) == 0
    for p in (l1.rpc_path, pidfile):
        assert p.read_text() == "someone else's"


def test_funding_confirmed_after_empty_blocks_in_one_poll(node_factory):
    """Blocks arriving together (one poll) with the funding tx in a later one:
    no negative depth reaches channeld (it once failed to encode, on stderr)."""
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    l1.connect(l2)
    from node_factory import sync_blockheight
    sync_blockheight(l1)
    l1.rpc.fundchannel(l2.node_id, CAPACITY)
    rpc = l1.chain.rpc
    for _ in range(3):
        rpc.generateblock(l1.chain.faucet_address, [])
    l1.chain.mine(3)
    wait_for(lambda: channel(l1, l2)["state"] == channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    for n in (l1, l2):
        assert "EncodeError" not in n.stderr_text() and "Traceback" not in n.stderr_text()


def test_processes_say_what_they_are(node_factory):
    """ps and top show Core Lightning's names, not python."""
    from node_factory import cmdline
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    names = set()
    for pid, name in l1.subdaemon_pids_all().items():
        assert cmdline(pid).startswith(f"lightning_{name} ")
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
        assert comm == f"lightning_{name}"[:15]      # (the kernel keeps 15 characters)
        names.add(name)
    assert names == {"hsmd", "connectd", "gossipd", "channeld", "zygote"}


def test_killed_hook_plugin_mid_payment(node_factory):
    """The payee's htlc_accepted plugin holds 20 HTLCs and is killed: the
    hook calls it never answered count as `continue` (Core Lightning), the
    payments complete, both sides settle."""
    from pathlib import Path
    plugin = Path(__file__).parent / "plugins" / "hold_htlcs.py"
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"plugin": str(plugin)})
    fund(l1)
    open_channel(l1, l2, CAPACITY)
    invoices = [invoice(l2, f"p{i}") for i in range(PAYMENTS)]
    results: dict[str, Any] = {}
    threads = pay_all(l1, invoices, results)
    wait_for(lambda: l2.rpc.held()["held"] >= PAYMENTS // 2)
    pid = next(p for p in descendants_of(l2) if "hold_htlcs.py" in cmdline_of(p))
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    assert_settled(l1, l2, invoices, results)
    assert list(results.values()).count("complete") == PAYMENTS


def descendants_of(node) -> list[int]:
    from node_factory import descendants
    return descendants(node.proc.pid)


def cmdline_of(pid: int) -> str:
    from node_factory import cmdline
    return cmdline(pid)
