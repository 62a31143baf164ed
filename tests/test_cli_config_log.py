"""lightning-cli output and exit codes; config files; log levels and filters."""
import json
import re
import subprocess
import sys
from pathlib import Path

from node_factory import wait_for


CLI = [str(Path(sys.executable).parent / "lightning-cli")]


def cli(node, *args, check=True):
    p = subprocess.run(CLI + [f"--lightning-dir={node.base_dir}", "--regtest", *args], capture_output=True,
                       text=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stderr + p.stdout
    return p


def test_cli_output_modes_and_exit_codes(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    out = json.loads(cli(l1, "getinfo").stdout)
    assert out["id"] == l1.node_id
    # positional and keyword parameters
    r = json.loads(cli(l1, "connect", l2.node_id, "127.0.0.1", str(l2.port)).stdout)
    assert r["id"] == l2.node_id
    r = json.loads(cli(l1, "-k", "ping", f"id={l2.node_id}", "len=1", "pongbytes=2").stdout)
    assert r == {"totlen": 6}
    r = json.loads(cli(l1, "ping", f"id={l2.node_id}", "pongbytes=5").stdout)  # auto-detected keywords
    assert r == {"totlen": 9}
    r = json.loads(cli(l1, "-o", "ping", l2.node_id, "0", "0").stdout)
    assert r == {"totlen": 4}
    human = cli(l1, "-H", "getinfo").stdout
    assert f"id={l1.node_id}" in human and "network=regtest" in human
    flat = cli(l1, "-F", "getinfo").stdout
    assert f"id={l1.node_id}" in flat and "our_features.init=" in flat
    # help without a command: human-readable list; with -J: JSON
    h = cli(l1, "help").stdout
    assert "getinfo" in h and "connect id [host] [port]" in h
    assert json.loads(cli(l1, "-J", "help").stdout)["help"]
    # help CMD prints the manual page
    page = cli(l1, "help", "getinfo").stdout
    assert "lightning-getinfo" in page and "RETURN VALUE" in page
    # errors: 1 for an error reply, 2 for no daemon, 3 for usage
    p = cli(l1, "nosuchcommand", check=False)
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == -32601
    p = subprocess.run(CLI + ["--lightning-dir=/nonexistent", "getinfo"], capture_output=True, text=True)
    assert p.returncode == 2 and "Connecting to" in p.stderr
    p = cli(l1, "-k", "ping", "notkeyvalue", check=False)
    assert p.returncode == 3
    p = cli(l1, "--bogus-option", "getinfo", check=False)
    assert p.returncode == 3
    p = cli(l1, "ping", '{"broken', check=False)
    assert p.returncode == 3


def test_config_files_and_precedence(node_factory):
    l1 = node_factory.get_node(start=False)
    l1.base_dir.mkdir(parents=True, exist_ok=True)
    (l1.base_dir / "config").write_text("# top config\nfee-base=1234\ncltv-delta=40\nalias=fromfile\n")
    l1.lightning_dir.mkdir(parents=True, exist_ok=True)
    (l1.lightning_dir / "config").write_text("cltv-delta=50\n")
    del l1.options["alias"]
    l1.options["fee-per-satoshi"] = 7
    l1.start()
    cfg = l1.rpc.listconfigs()["configs"]
    assert cfg["fee-base"] == {"value_int": 1234, "source": f"{l1.base_dir / 'config'}:2"}
    assert cfg["cltv-delta"]["value_int"] == 50  # per-network file beats top file
    assert cfg["fee-per-satoshi"] == {"value_int": 7, "source": "cmdline"}
    assert l1.rpc.getinfo()["alias"] == "fromfile"
    l1.stop()
    # command line wins over the files
    l1.options["fee-base"] = 99
    l1.start()
    assert l1.rpc.listconfigs("fee-base")["configs"]["fee-base"]["value_int"] == 99


def test_bad_config_line_is_an_error(node_factory):
    l1 = node_factory.get_node(start=False)
    l1.base_dir.mkdir(parents=True, exist_ok=True)
    (l1.base_dir / "config").write_text("cltv-delta=notanumber\n")
    p = subprocess.run(l1.cmd_line(), capture_output=True, timeout=60)
    assert p.returncode != 0 and b"cltv-delta" in p.stderr


def test_log_io_and_subsystem_filters(node_factory):
    l1 = node_factory.get_node(options={"log-level": ["info", "io:connectd"]})
    l2 = node_factory.get_node()
    l1.connect(l2)
    l1.rpc.ping(l2.node_id)
    entries = l1.rpc.getlog("io")["log"]
    io = [e for e in entries if e["type"] in ("IO_IN", "IO_OUT")]
    assert io and all(e["source"] == "connectd" for e in io)
    assert any(e.get("node_id") == l2.node_id and e["data"].startswith("0012") for e in io)  # our ping
    # the file shows io for connectd, and info and up for everything else
    text = l1.log_text()
    assert "IO_OUT" in text
    lines = [ln for ln in text.splitlines() if "lightningd:" in ln]
    assert lines and all(" DEBUG " not in ln for ln in lines)


def test_log_lines_name_daemon_and_peer(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    l1.connect(l2)
    # connectd's status line reached the master before its peer_connected event
    assert f"{l2.node_id}-connectd: connected out" in l1.log_text()
    assert " hsmd: new client connectd" in l1.log_text()


def test_debug_log_follows_a_payment(node_factory):
    """The seed's operators pipe --log-level=debug to a file to see what the
    node does: each peer message in and out per peer and channel, each HTLC
    state change, each payment attempt and its result; at io, the bytes."""
    from test_channels import fund, open_channel
    l1 = node_factory.get_node(options={"log-level": "io"})
    l2 = node_factory.get_node()     # debug, the factory's default
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    inv = l2.rpc.invoice(40_000, "dbg", "debug log")
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    wait_for(lambda: "HTLC in 0 40000msat" in l2.log_text() and "resolution irrevocably" in l2.log_text())
    short = inv["payment_hash"][:16]
    for node, peer in ((l1, l2), (l2, l1)):
        chan = f"{peer.node_id}-channeld-chan#1: "
        text = node.log_text()
        for msg in ("UPDATE_ADD_HTLC", "COMMITMENT_SIGNED", "REVOKE_AND_ACK", "UPDATE_FULFILL_HTLC"):
            assert f"DEBUG   {chan}peer_in WIRE_{msg}" in text or f"DEBUG   {chan}peer_out WIRE_{msg}" in text
    payer, payee = l1.log_text(), l2.log_text()
    assert f"peer_out WIRE_UPDATE_ADD_HTLC" in payer and "peer_in WIRE_UPDATE_ADD_HTLC" in payee
    assert f"-chan#1: HTLC out 0 40000msat {short}: offered" in payer
    assert f"-chan#1: HTLC out 0 40000msat {short}: fulfilled" in payer
    assert f"-chan#1: HTLC in 0 40000msat {short}: locked in" in payee
    assert f"-chan#1: HTLC in 0 40000msat {short}: fulfilling" in payee
    # each attempt (a part of the payment) and its result
    assert re.search(rf"pay {short}.*: part \d+: 40000msat via ", payer), payer
    assert re.search(rf"pay {short}.*: part \d+ succeeded: 40000msat sent", payer), payer
    # at io, the bytes: update_add_htlc is type 0x0080
    assert any("IO_OUT" in ln and "peer_out" in ln and "0080" in ln.split("peer_out", 1)[1][:6]
               for ln in payer.splitlines())
    assert "IO_" not in payee


def test_debug_lines_cost_nothing_at_info(node_factory):
    """At info the channel daemons do not even send their debug lines."""
    from test_channels import fund, open_channel
    l1 = node_factory.get_node(options={"log-level": "info"})
    l2 = node_factory.get_node(options={"log-level": "info"})
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    inv = l2.rpc.invoice(40_000, "dbg", "debug log")
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    assert not any("peer_in WIRE" in e.get("log", "") for e in l1.rpc.getlog("debug")["log"])
    assert " DEBUG " not in l1.log_text()


def test_relative_log_file_is_in_the_network_dir(node_factory):
    """Core Lightning opens a relative --log-file after moving into
    <lightning-dir>/<network>: lnprototest's runner passes --log-file=log and
    reads <lightning-dir>/regtest/log.  It landed in <lightning-dir> itself,
    where no tool looks for it.  A log-level's PATH names the same file."""
    l1 = node_factory.get_node(options={"log-level": ["debug", "unusual:lightningd:quiet.log"]},
                               start=False)
    l1.options["log-file"] = [str(l1.base_dir / "log"), "relative.log", "quiet.log"]
    l1.start()
    started = "Server started with public key"
    wait_for(lambda: (l1.lightning_dir / "relative.log").exists()
             and started in (l1.lightning_dir / "relative.log").read_text())
    assert not (l1.base_dir / "relative.log").exists()
    # the filter for quiet.log applies to the file of that name: lightningd's
    # INFO line is in the other files, not in this one
    assert (l1.lightning_dir / "quiet.log").exists() and not (l1.base_dir / "quiet.log").exists()
    assert started in l1.log_text()
    assert started not in (l1.lightning_dir / "quiet.log").read_text()
