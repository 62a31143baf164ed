"""No input from an RPC client reaches an internal error, a hang, a
traceback or a BROKEN line: lone surrogates, u64 parameters past SQLite's
signed range, onions that cannot be built, JSON nested too deep, a client
that pipelines without reading, and calls still open at shutdown.  Every
test drives real nodes through their socket; teardown fails a test on any
BROKEN log line."""
from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest

from node_factory import sync_blockheight
from rpc_errors import INVALID_PARAMS, INVALID_REQUEST, assert_invalid, rpc_error
from test_channels import channel, fund, open_channel

U64_MAX = 2 ** 64 - 1




def raw_session(node) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(str(node.rpc_path))
    return s


def read_response(s: socket.socket) -> dict:
    buf = b""
    while b"\n\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, f"connection closed; got {buf!r}"
        buf += chunk
    return json.loads(buf.split(b"\n\n")[0])


def no_traceback(node) -> None:
    err = node.stderr_text()
    assert "Traceback" not in err and "Exception" not in err and "raised exception" not in err, err[-3000:]


def raw_call(node, method: str, params) -> dict:
    """One call with the request JSON-escaped (\\ud800 travels as such:
    pyln-client cannot send a lone surrogate at all)."""
    s = raw_session(node)
    try:
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode())
        return read_response(s)
    finally:
        s.close()


def test_lone_surrogates_are_bad_params(node_factory):
    """A lone surrogate is valid JSON but no Unicode string: nothing can
    store, sign or encode it.  Every command refuses it as a bad parameter
    (named), wherever it sits; a proper surrogate pair is just a character."""
    l1 = node_factory.get_node()
    lone = "\ud800"
    for method, params, name in (
            ("invoice", {"amount_msat": 1000, "label": lone, "description": "d"}, "label"),
            ("invoice", {"amount_msat": 1000, "label": "l", "description": "a" + lone}, "description"),
            ("invoice", [1000, "l", "d\udfff"], "description"),                                 # positional
            ("decodepay", [lone], "bolt11"),
            ("pay", {"bolt11": "lnbcrt1" + lone}, "bolt11"),
            ("listinvoices", {"label": lone}, "label"),
            ("sendpay", {"route": [{"id": lone}], "payment_hash": "00" * 32}, "route"),         # nested
            ("newaddr", {lone: 1}, "names"),                                                 # a name
            ("withdraw", {"destination": lone, "satoshi": 1000}, "destination"),
            ("check", {"command_to_check": "invoice", "label": lone}, "label")):
        err = raw_call(l1, method, params)["error"]
        assert err["code"] == INVALID_PARAMS and name in err["message"], (method, err)
    assert l1.rpc.listinvoices()["invoices"] == []
    # a pair is a character like any other, escaped or not: stored and listed back
    r = raw_call(l1, "invoice", {"amount_msat": 1000, "label": "\ud83d\ude00 label", "description": "caf\u00e9"})
    inv = l1.rpc.invoice(1000, "plain \U0001F600", "caf\u00e9 \U0001F600")
    listed = l1.rpc.listinvoices()["invoices"]
    assert sorted((i["label"], i["payment_hash"]) for i in listed) == \
        sorted([("\U0001F600 label", r["result"]["payment_hash"]), ("plain \U0001F600", inv["payment_hash"])])
    no_traceback(l1)


def test_u64_parameters_take_the_whole_range(node_factory):
    """Core Lightning's u64 parameters accept 0..2^64-1: past SQLite's signed
    64-bit range a bound simply matches nothing; beyond u64, negatives,
    fractions and bools are bad parameters."""
    l1 = node_factory.get_node()
    l1.rpc.invoice(1000, "one", "one")
    for start in (2 ** 63, U64_MAX):
        assert l1.rpc.call("listsendpays", {"index": "created", "start": start}) == {"payments": []}
        assert l1.rpc.call("listinvoices", {"index": "created", "start": start}) == {"invoices": []}
        assert l1.rpc.call("listforwards", {"index": "created", "start": start}) == {"forwards": []}
        assert l1.rpc.call("listaddresses", {"start": start}) == {"addresses": []}
        l1.rpc.call("delexpiredinvoice", {"maxexpirytime": start})
        err = rpc_error(l1.rpc.call, "waitanyinvoice", {"lastpay_index": start, "timeout": 0})
        assert err["code"] == 904, err                      # nothing paid after it: timed out
    assert len(l1.rpc.call("listinvoices", {"index": "created", "start": 1, "limit": 2 ** 32 - 1})["invoices"]) == 1
    for bad in (2 ** 64, -1, 1.5, True, "18446744073709551616", [], {}):
        assert_invalid(l1.rpc.call, "listsendpays", {"index": "created", "start": bad}, name="start")
        assert_invalid(l1.rpc.call, "waitanyinvoice", {"lastpay_index": bad, "timeout": 0}, name="lastpay_index")
        assert_invalid(l1.rpc.call, "sendpay", {"route": [], "payment_hash": "00" * 32, "partid": bad},
                       name="partid")
    for bad in (2 ** 32, -1, 2.5, False):
        assert_invalid(l1.rpc.call, "listinvoices", {"index": "created", "limit": bad}, name="limit")
    no_traceback(l1)


def test_sendpay_refuses_what_no_onion_or_htlc_can_carry(node_factory):
    """sendpay (and createonion, sendonion, pay) answer -32602 at once for an
    onion that cannot hold the route (too many hops, a payment_metadata too
    large) or a delay whose absolute expiry overflows u32; nothing is
    recorded or sent.  A partid of 2^64-1 is fine and listed back."""
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    sync_blockheight(l1, l2)
    scid = channel(l1, l2)["short_channel_id"]
    inv = l2.rpc.invoice(10_000, "onion", "limits")
    ph, secret = inv["payment_hash"], inv["payment_secret"]
    hop = {"id": l2.node_id, "channel": scid, "amount_msat": 10_000, "delay": 18}
    height = l1.rpc.getinfo()["blockheight"]

    err = assert_invalid(l1.rpc.sendpay, [hop], ph, payment_secret=secret, payment_metadata="00" * 1300)
    assert "onion" in err["message"]
    assert_invalid(l1.rpc.sendpay, [hop] * 27, ph, payment_secret=secret)            # 27 hops never fit 1300 bytes
    for delay in (2 ** 32 - 1, 2 ** 32 - 1 - height):                                # height + 1 + delay > u32
        assert_invalid(l1.rpc.sendpay, [dict(hop, delay=delay)], ph, payment_secret=secret, name="delay")
    assert_invalid(l1.rpc.sendpay, [dict(hop, delay=2 ** 32)], ph, name="route[0]")   # not a u32 at all
    assert l1.rpc.listsendpays(payment_hash=ph)["payments"] == []
    assert channel(l1, l2)["htlcs"] == []

    hops = [{"pubkey": l2.node_id, "payload": "fd0200" + "00" * 0x200}] * 3
    err = assert_invalid(l1.rpc.call, "createonion", {"hops": hops, "assocdata": ph})
    assert "exceed" in err["message"]
    assert_invalid(l1.rpc.call, "createonion", {"hops": hops[:1], "assocdata": ph, "session_key": "00" * 32},
                   name="session_key")
    onion = l1.rpc.call("createonion", {"hops": [{"pubkey": l2.node_id, "payload": "0a" + "00" * 10}],
                                        "assocdata": ph})["onion"]
    assert_invalid(l1.rpc.call, "sendonion", {"onion": onion, "first_hop": dict(hop, delay=2 ** 32 - 1 - height),
                                              "payment_hash": ph}, name="first_hop")
    assert l1.rpc.listsendpays(payment_hash=ph)["payments"] == []

    # pay: an invoice asking a final cltv that overflows is refused at once, not retried for a minute
    big = l2.rpc.invoice(10_000, "far", "far away", cltv=2 ** 32 - 10)["bolt11"]
    t = time.monotonic()
    assert_invalid(l1.rpc.pay, big)
    assert time.monotonic() - t < 10

    # the whole u64 range of partid, stored and read back
    r = l1.rpc.sendpay([hop], ph, payment_secret=secret, partid=U64_MAX, amount_msat=10_000, groupid=2 ** 63)
    assert r["partid"] == U64_MAX and r["groupid"] == 2 ** 63
    done = l1.rpc.waitsendpay(ph, 30, partid=U64_MAX, groupid=2 ** 63)
    assert done["status"] == "complete" and done["partid"] == U64_MAX
    assert [(p["partid"], p["groupid"]) for p in l1.rpc.listsendpays(payment_hash=ph)["payments"]] == \
        [(U64_MAX, 2 ** 63)]
    no_traceback(l1)


def test_json_nested_too_deep_is_refused_and_the_connection_lives(node_factory):
    l1 = node_factory.get_node()
    s = raw_session(l1)
    for deep in (b"[" * 1000 + b"]" * 1000,
                 b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}",
                 b'{"a":' * 1000 + b"1" + b"}" * 1000):
        s.sendall(deep)
        err = read_response(s)["error"]
        assert err["code"] == INVALID_REQUEST and "nested" in err["message"], err
    # the same connection still serves, and so do others
    s.sendall(b'{"jsonrpc":"2.0","id":"after","method":"getinfo","params":[]}')
    r = read_response(s)
    assert r["id"] == "after" and r["result"]["id"] == l1.node_id
    s.close()
    # moderately nested is fine: -32602 from the command, not a refusal
    assert_invalid(l1.rpc.call, "getinfo", {"x": json.loads("[" * 50 + "]" * 50)})
    assert l1.rpc.getinfo()["id"] == l1.node_id
    no_traceback(l1)


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_pipelining_client_that_never_reads_gets_backpressure(node_factory):
    """A client sends requests as fast as it can and reads nothing: the node
    stops reading from it once its answers back up (so the client's sends
    block), its memory stays bounded, nothing is logged per blocked write,
    and everyone else is still served.  When the client goes away the node
    drops the rest quietly."""
    l1 = node_factory.get_node()
    assert l1.proc is not None
    rss0 = _rss_kb(l1.proc.pid)
    log0 = len(l1.log_text().splitlines())
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "listconfigs", "params": {}}).encode()
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(l1.rpc_path))
    s.setblocking(False)
    sent, stalled_since = 0, None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            sent += s.send(req * 100)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 3:
                break           # the node is not reading: backpressure
            time.sleep(0.01)
    assert stalled_since is not None, f"the node read all {sent} bytes it was sent"
    # (about 1 MB and 15 MB here) each listconfigs answer is ~10 kB: without
    # backpressure the node reads on and 60 s of requests cost gigabytes
    assert sent < 8 * 1024 * 1024, sent
    assert _rss_kb(l1.proc.pid) - rss0 < 100 * 1024
    assert l1.rpc.getinfo()["id"] == l1.node_id          # others are served meanwhile
    s.close()
    time.sleep(1)
    assert l1.rpc.getinfo()["id"] == l1.node_id
    assert len(l1.log_text().splitlines()) - log0 < 20
    no_traceback(l1)


@pytest.mark.parametrize("how", ["stop", "sigterm"])
def test_rpc_calls_open_at_shutdown_end_quietly(node_factory, how):
    l1 = node_factory.get_node()
    l1.rpc.invoice(1000, "unpaid", "never paid")
    waits = []
    for method, params in (("waitanyinvoice", {}), ("waitinvoice", {"label": "unpaid"}),
                           ("waitanyinvoice", {"lastpay_index": 2 ** 64 - 1})):
        s = raw_session(l1)
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": method, "method": method, "params": params}).encode())
        waits.append(s)
    # a pipelined connection with a wait in the middle
    waits[0].sendall(b'{"jsonrpc":"2.0","id":2,"method":"waitinvoice","params":["unpaid"]}')
    time.sleep(0.5)     # let the node read them: nothing to observe while they wait
    assert l1.proc is not None
    if how == "stop":
        l1.rpc.stop()
    else:
        l1.proc.send_signal(signal.SIGTERM)
    assert l1.proc.wait(30) == 0
    for s in waits:
        assert s.recv(65536) == b""       # the connection closes, no answer
        s.close()
    no_traceback(l1)
    assert not l1.broken_lines()
    assert not os.path.exists(l1.rpc_path)


def test_what_the_fuzzer_found(node_factory):
    """Inputs tests/rpc_fuzz.py found crashing a command (-1 Internal error
    and a BROKEN traceback), kept as plain regressions: each is -32602."""
    l1 = node_factory.get_node()
    for method, params, name in (
            ("plugin", {"subcommand": "list", "options": "9b17"}, "options"),        # options not an object
            ("plugin", {"subcommand": "list", "options": -1}, "options"),
            ("plugin", {"subcommand": "start", "plugin": 5}, "plugin"),
            ("fundchannel", {"id": l1.node_id, "amount": 100_000, "channel_type": [None, None]},
             "channel_type"),                                                        # sorted() of nulls
            ("fundchannel", {"id": l1.node_id, "amount": 100_000, "channel_type": ["x"]}, "channel_type"),
            ("withdraw", {"destination": "bcrt1q", "satoshi": 1000, "feerate": "0" * 5000}, "feerate"),  # int() limit
            ("withdraw", {"destination": "bcrt1q", "satoshi": 1000, "feerate": "\u00b2perkw"}, "feerate"),
            ("withdraw", {"destination": "bcrt1q", "satoshi": 1000, "feerate": 2 ** 32}, "feerate"),
            ("txprepare", {"outputs": [], "feerate": "99999999999perkb"}, "feerate")):
        err = raw_call(l1, method, params)["error"]
        assert err["code"] == INVALID_PARAMS and name in err["message"], (method, params, err)
    no_traceback(l1)
