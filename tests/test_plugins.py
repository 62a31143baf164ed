"""Plugins written with pyln-client's Plugin run unchanged."""
import os
import subprocess
from pathlib import Path

import pytest
from pyln.client import RpcError

from node_factory import child_pids, cmdline, wait_for

PLUGINS = Path(__file__).parent / "plugins"
HELLO = str(PLUGINS / "helloplugin.py")


def test_pyln_plugin_method_option_subscription_hook(node_factory):
    l1 = node_factory.get_node(options={"plugin": HELLO, "greeting": "Ahoy"})
    l2 = node_factory.get_node()
    assert l1.rpc.hello("Bob") == {"greeting": "Ahoy, Bob!"}
    assert l1.rpc.call("hello", {"name": "Ann"}) == {"greeting": "Ahoy, Ann!"}
    assert l1.rpc.whoami() == {"id": l1.node_id}
    h = [c for c in l1.rpc.help()["help"] if c["command"].startswith("hello")]
    assert h and h[0]["command"].startswith("hello [name]")
    cfg = l1.rpc.listconfigs("greeting")["configs"]["greeting"]
    assert cfg["value_str"] == "Ahoy" and cfg["plugin"] == HELLO
    # featurebits: ours now carry bit 201, and the peer sees it in our init
    from common.features import bits_from_features
    feats = l1.rpc.getinfo()["our_features"]
    for ctx in ("init", "node", "invoice"):
        assert 201 in bits_from_features(bytes.fromhex(feats[ctx]))
    # subscription: connect and disconnect
    l1.connect(l2)
    assert 201 in bits_from_features(bytes.fromhex(l2.rpc.listpeers(l1.node_id)["peers"][0]["features"]))
    wait_for(lambda: any("connect" in e for e in l1.rpc.events()["events"]))
    ev = [e for e in l1.rpc.events()["events"] if "connect" in e][0]["connect"]
    assert ev["id"] == l2.node_id and ev["direction"] == "out"
    assert ev["address"] == {"type": "ipv4", "address": "127.0.0.1", "port": l2.port}
    l1.rpc.disconnect(l2.node_id)
    wait_for(lambda: any("disconnect" in e for e in l1.rpc.events()["events"]))


def test_rpc_command_hook(node_factory):
    l1 = node_factory.get_node(options={"plugin": str(PLUGINS / "rpchookplugin.py")})
    assert l1.rpc.call("help", {"command": "intercepted"}) == {"intercepted": True}
    assert l1.rpc.call("help", {"command": "rewritten"})["help"][0]["command"] == "getinfo"
    assert l1.rpc.help("getinfo")["help"][0]["command"] == "getinfo"


def test_peer_connected_hook_can_refuse(node_factory):
    l2 = node_factory.get_node()
    l1 = node_factory.get_node(options={"plugin": HELLO, "reject": l2.node_id})
    # l2's side completes init before l1's hook answers, so its connect may
    # succeed; then l1 tells it to go away and neither lists the other.
    try:
        l2.connect(l1)
    except RpcError:
        pass
    wait_for(lambda: not l2.rpc.listpeers()["peers"])
    assert not l1.rpc.listpeers()["peers"]
    with pytest.raises(RpcError) as e:
        l1.connect(l2)
    assert "go away" in e.value.error["message"]


def test_plugin_option_in_config_file(node_factory):
    l1 = node_factory.get_node(start=False)
    l1.base_dir.mkdir(parents=True, exist_ok=True)
    (l1.base_dir / "config").write_text(f"plugin={HELLO}\ngreeting=Howdy\n")
    l1.start()
    assert l1.rpc.hello() == {"greeting": "Howdy, world!"}
    src = l1.rpc.listconfigs("greeting")["configs"]["greeting"]["source"]
    assert src == f"{l1.base_dir / 'config'}:2"


def test_crashing_and_hanging_plugins_are_dropped(node_factory):
    l1 = node_factory.get_node(options={"plugin": [str(PLUGINS / "crashplugin.py"), str(PLUGINS / "hangplugin.py"),
                                                   HELLO],
                                        "dev-plugin-start-timeout": 3})
    names = [p["name"] for p in l1.rpc.plugin("list")["plugins"]]
    assert names == [HELLO]
    assert l1.rpc.hello()["greeting"] == "Hello, world!"


def test_important_plugin_failure_stops_the_node(node_factory):
    # an important plugin dying stops the node with a broken line, by design
    l1 = node_factory.get_node(start=False, allow_broken_log=True, may_fail=True)
    p = subprocess.run(l1.cmd_line() + [f"--important-plugin={PLUGINS / 'crashplugin.py'}"], capture_output=True,
                       timeout=60)
    assert p.returncode != 0 and b"important plugin" in p.stderr


def test_plugin_dying_later_is_reported_and_node_stays_up(node_factory):
    l1 = node_factory.get_node(options={"plugin": HELLO})
    pid = [p for p in child_pids(l1.proc.pid) if "helloplugin" in cmdline(p)]
    assert pid
    os.kill(pid[0], 9)
    wait_for(lambda: not [c for c in l1.rpc.help()["help"] if c["command"].startswith("hello")])
    with pytest.raises(RpcError) as e:
        l1.rpc.hello()
    assert e.value.error["code"] == -32601
    assert l1.rpc.getinfo()["id"] == l1.node_id


def test_dynamic_plugin_start_stop(node_factory, tmp_path):
    l1 = node_factory.get_node()
    dyn = str(PLUGINS / "dynplugin.py")
    r = l1.rpc.plugin_start(dyn, dynopt="set")
    assert r["command"] == "start" and {"name": dyn, "active": True, "dynamic": True} in r["plugins"]
    assert l1.rpc.dynhello() == {"opt": "set"}
    r = l1.rpc.plugin_stop(dyn)
    assert r == {"command": "stop", "result": "Successfully stopped dynplugin.py."}
    with pytest.raises(RpcError):
        l1.rpc.dynhello()
    with pytest.raises(RpcError) as e:
        l1.rpc.plugin_start(str(PLUGINS / "nonexistent.py"))
    assert e.value.error["code"] == -3
    # startdir: every executable in the directory
    d = tmp_path / "plugdir"
    d.mkdir()
    (d / "dynplugin.py").symlink_to(dyn)
    r = l1.rpc.plugin_startdir(str(d))
    assert any(p["name"] == str(d / "dynplugin.py") for p in r["plugins"])
    assert l1.rpc.dynhello() == {"opt": "default"}


def test_unclaimed_option_is_an_error(node_factory):
    l1 = node_factory.get_node(start=False)
    p = subprocess.run(l1.cmd_line() + ["--greeting=hi"], capture_output=True, timeout=60)
    assert p.returncode != 0 and b"greeting" in p.stderr
