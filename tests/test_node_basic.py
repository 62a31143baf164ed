"""The node as operators see it: processes, RPC, peers."""
import os
import stat

from node_factory import wait_for


def test_start_two_nodes_connect_both_ways(node_factory):
    l1, l2, l3 = node_factory.get_nodes(3)
    r = l1.connect(l2)
    assert r["id"] == l2.node_id and r["direction"] == "out"
    assert r["address"] == {"type": "ipv4", "address": "127.0.0.1", "port": l2.port}
    wait_for(lambda: l2.is_connected(l1))
    p = l2.rpc.listpeers(l1.node_id)["peers"][0]
    assert p["connected"] and p["num_channels"] == 0
    # the other direction, to a third node
    r = l3.connect(l1)
    assert r["direction"] == "out"
    wait_for(lambda: l1.is_connected(l3))
    assert l1.rpc.getinfo()["num_peers"] == 2
    assert l1.rpc.ping(l2.node_id, 10, 20)["totlen"] == 24
    l1.rpc.disconnect(l2.node_id)
    wait_for(lambda: not l2.rpc.listpeers()["peers"])
    assert not l1.rpc.listpeers(l2.node_id)["peers"]


def test_getinfo_fields(node_factory):
    l1 = node_factory.get_node()
    info = l1.rpc.getinfo()
    for field in ["id", "alias", "color", "num_peers", "num_pending_channels", "num_active_channels",
                  "num_inactive_channels", "address", "binding", "version", "blockheight", "network",
                  "fees_collected_msat", "lightning-dir", "our_features"]:
        assert field in info
    assert info["network"] == "regtest"
    assert info["blockheight"] == l1.chain.rpc.getblockcount()
    assert info["binding"] == [{"type": "ipv4", "address": "127.0.0.1", "port": l1.port}]
    assert info["lightning-dir"] == str(l1.lightning_dir)


def test_files_and_processes(node_factory):
    l1 = node_factory.get_node()
    secret = l1.lightning_dir / "hsm_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o400
    assert os.path.getsize(secret) == 32
    assert stat.S_IMODE(os.stat(l1.rpc_path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(l1.rpc_path).st_mode)
    assert set(l1.subdaemon_pids()) == {"hsmd", "connectd", "gossipd", "zygote"}


def test_blockheight_follows_the_chain(node_factory):
    l1 = node_factory.get_node()
    h = l1.rpc.getinfo()["blockheight"]
    l1.chain.mine(3)
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == h + 3)


def test_log_prefix_and_timestamps(node_factory):
    l1 = node_factory.get_node(options={"log-prefix": "PFX ", "log-timestamps": "false"})
    first = l1.log_text().splitlines()[0]
    assert first.startswith("PFX INFO    lightningd: ") or first.startswith("PFX DEBUG")
