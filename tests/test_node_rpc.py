"""JSON-RPC behaviour against the real socket: framing, errors, pyln-client."""
import json
import socket

import pytest
from pyln.client import RpcError

from node_factory import wait_for


def raw_call(path, payload: bytes, read_until_close=False, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    s.sendall(payload)
    buf = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
            if not read_until_close and buf.endswith(b"\n\n"):
                break
    finally:
        s.close()
    return buf


def test_stream_framing_and_many_in_flight(node_factory):
    l1 = node_factory.get_node()
    # two requests back to back, no delimiter, second one split oddly
    reqs = (json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getinfo"}) +
            json.dumps({"jsonrpc": "2.0", "id": "two", "method": "help", "params": {"command": "getinfo"}}))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(l1.rpc_path))
    s.sendall(reqs[:10].encode())
    s.sendall(reqs[10:].encode())
    buf = b""
    while buf.count(b"\n\n") < 2:
        buf += s.recv(65536)
    s.close()
    parts = [json.loads(p) for p in buf.split(b"\n\n") if p.strip()]
    by_id = {p["id"]: p for p in parts}
    assert by_id[1]["result"]["id"] == l1.node_id and "error" not in by_id[1]
    assert by_id["two"]["result"]["help"][0]["command"].startswith("getinfo")


def test_bad_rpc_input(node_factory):
    l1 = node_factory.get_node()
    path = l1.rpc_path

    def call(obj):
        return json.loads(raw_call(path, json.dumps(obj).encode()))
    r = call({"jsonrpc": "2.0", "id": 1, "method": "nosuchcommand"})
    assert r["error"]["code"] == -32601 and "result" not in r
    r = call({"jsonrpc": "2.0", "id": 2, "method": "connect", "params": {"idd": "x"}})
    assert r["error"]["code"] == -32602
    r = call({"jsonrpc": "2.0", "id": 3, "method": "connect", "params": []})
    assert r["error"]["code"] == -32602 and "missing required parameter: id" in r["error"]["message"]
    r = call({"jsonrpc": "2.0", "id": 4, "method": "ping", "params": ["02" + "11" * 32]})
    assert r["error"]["code"] == -32602  # not a valid point
    r = call({"jsonrpc": "2.0", "id": 5, "method": "getlog", "params": ["loud"]})
    assert r["error"]["code"] == -32602
    r = call({"jsonrpc": "2.0", "id": 6, "method": 7})
    assert r["error"]["code"] == -32600
    r = call([1, 2, 3])
    assert r["error"]["code"] == -32600
    # malformed JSON: an error, then the connection closes
    out = raw_call(path, b'{"jsonrpc": "2.0", "id": 1, "method": "getinfo"}} garbage', read_until_close=True)
    assert b'"id":1' in out.replace(b" ", b"")
    out = raw_call(path, b'"just a string"', read_until_close=True)
    assert b"-32700" in out
    # a huge request: refused, connection closed, daemon fine
    huge = b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":["' + b"a" * (17 * 1024 * 1024)
    try:
        out = raw_call(path, huge, read_until_close=True, timeout=30)
        assert b"-32600" in out or out == b""
    except (BrokenPipeError, ConnectionResetError):
        pass
    # a client that disconnects in the middle of a request
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"getin')
    s.close()
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"getinfo"}')
    s.close()
    assert l1.rpc.getinfo()["id"] == l1.node_id


def test_pyln_client_errors_and_named_params(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    with pytest.raises(RpcError) as e:
        l1.rpc.call("ping", {"id": l2.node_id})
    assert e.value.error["code"] == -1 and "not connected" in e.value.error["message"]
    l1.rpc.call("connect", {"id": f"{l2.node_id}@127.0.0.1:{l2.port}"})
    assert l1.rpc.call("ping", {"id": l2.node_id, "len": 0, "pongbytes": 0})["totlen"] == 4
    # pongbytes >= 65532 means no pong
    assert l1.rpc.ping(l2.node_id, 1, 65532)["totlen"] == 0
    with pytest.raises(RpcError) as e:
        l1.rpc.ping(l2.node_id, 65532)
    assert e.value.error["code"] == -32602
    with pytest.raises(RpcError) as e:
        l1.rpc.connect(l2.node_id + "@127.0.0.1", "127.0.0.1")
    assert e.value.error["code"] == -32602
    with pytest.raises(RpcError) as e:
        l1.rpc.connect("03" + "00" * 32)
    assert e.value.error["code"] == -32602


def test_connect_failures(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    with pytest.raises(RpcError) as e:
        l1.rpc.connect(l2.node_id)
    assert e.value.error["code"] == 400
    dead = node_factory.chain.rpcport  # something that is not a lightning node... use a closed port
    from contrib.regtest.testing import free_port
    with pytest.raises(RpcError) as e:
        l1.rpc.connect(l2.node_id, "127.0.0.1", free_port())
    assert e.value.error["code"] == 401
    # wrong node id at a real node: the handshake fails
    with pytest.raises(RpcError) as e:
        l1.rpc.connect(l1.node_id[:2] + ("0" if l1.node_id[2] != "0" else "1") + l1.node_id[3:], "127.0.0.1",
                       l2.port)
    assert e.value.error["code"] in (401, -32602)
    with pytest.raises(RpcError):
        l1.rpc.connect(l1.node_id, "127.0.0.1", l1.port)
    assert dead


def test_getlog_help_listconfigs_check(node_factory):
    l1 = node_factory.get_node(options={"log-level": "debug", "fee-base": 2000})
    log = l1.rpc.getlog("debug")
    assert {"created_at", "bytes_used", "bytes_max", "log"} <= set(log)
    sources = {e.get("source") for e in log["log"]}
    assert {"lightningd", "hsmd", "connectd"} <= sources
    assert all(e["type"] != "DEBUG" for e in l1.rpc.getlog()["log"])  # default level info
    names = {h["command"].split()[0] for h in l1.rpc.help()["help"]}
    assert {"getinfo", "help", "stop", "connect", "disconnect", "listpeers", "ping", "getlog", "listconfigs",
            "check", "plugin"} <= names
    with pytest.raises(RpcError) as e:
        l1.rpc.help("nosuch")
    assert e.value.error["code"] == -32601
    cfg = l1.rpc.listconfigs()["configs"]
    assert cfg["fee-base"] == {"value_int": 2000, "source": "cmdline"}
    assert cfg["network"]["value_str"] == "regtest"
    assert cfg["cltv-delta"]["source"] == "default"
    assert l1.rpc.listconfigs("alias")["configs"] == {"alias": {"value_str": "node1", "source": "cmdline"}}
    assert l1.rpc.check("ping", id=l1.node_id) == {"command_to_check": "ping"}
    assert l1.rpc.call("check", ["ping", l1.node_id]) == {"command_to_check": "ping"}
    with pytest.raises(RpcError) as e:
        l1.rpc.check("ping", id="nope")
    assert e.value.error["code"] == -32602
    with pytest.raises(RpcError) as e:
        l1.rpc.check("nosuch")
    assert e.value.error["code"] == -32601


def test_warning_from_peer_is_logged_and_connection_survives_bad_peer(node_factory):
    """A peer sending garbage gets a warning and is dropped; the node stays up."""
    from pyln.proto.wire import PrivateKey, connect as pyln_connect
    l1 = node_factory.get_node()
    key = PrivateKey(bytes([7] * 32))
    conn = pyln_connect(key, bytes.fromhex(l1.node_id), "127.0.0.1", l1.port)
    conn.connection.settimeout(10)
    init = conn.read_message()
    assert int.from_bytes(init[:2], "big") == 16
    conn.send_message(bytes.fromhex("00100000000100"))  # init, no features
    # an unknown even message type: the node closes the connection
    conn.send_message(bytes.fromhex("7530") + b"junk")
    msgs = []
    try:
        while True:
            msgs.append(conn.read_message())
    except Exception:
        pass
    assert any(m[:2] == b"\x00\x01" for m in msgs)  # a warning came back
    wait_for(lambda: not l1.rpc.listpeers()["peers"])
    assert l1.rpc.getinfo()["num_peers"] == 0
