"""Text a peer sends (error/warning `data`: any bytes, up to 65499 of them)
never breaks logging: log lines are cut to fit the status message by bytes,
printable (BOLT 1: non-printable data is not printed verbatim; shown as hex,
as Core Lightning's sanitize_error), and logging never raises.

Unit tests of common/logtext.py and common/status.py, then a scripted BOLT 8
peer against connectd, channeld (opening and a live channel) and the
master's connectd_peer_error handler."""
from __future__ import annotations

import os

import pytest

from common.logtext import MAX_STATUS_TEXT, fit_utf8, peer_data, printable
from common.status import INFO, Status
from node_factory import wait_for
from scripted_peer import ScriptedPeer, channelds_of, open_channel_fields
from wire.internal import status_schema

BAD_TEXT = b"\xff" * 22000               # the case seen on the node: 66017 bytes once "replaced"
CONTROL = b"line one\nBROKEN forged\r\x1b[31m\x00"


# -- units -------------------------------------------------------------------------------
def test_peer_data_printable_verbatim_else_hex():
    assert peer_data(b"Channel is closed") == "Channel is closed"
    assert peer_data(CONTROL) == CONTROL.hex()
    assert peer_data("é".encode()) == "c3a9"
    long = peer_data(BAD_TEXT)
    assert long.startswith("ffff") and long.endswith("(22000 bytes)") and len(long) < 1100


def test_printable_replaces_everything_else():
    assert printable("ok text 123 ~") == "ok text 123 ~"
    assert printable("a\nb\rc\x00d\x7fe") == "a?b?c?d?e"
    assert printable("€ é \udcff") == "? ? ?"


@pytest.mark.parametrize("text", ["€" * 30000, "\udcff" * 70000, "x" * 70000, "é" * 65000 + "€"])
def test_fit_utf8_bounds_encoded_bytes(text):
    out = fit_utf8(text)
    raw = out.encode("utf-8")          # never raises: no lone surrogates left
    assert len(raw) <= MAX_STATUS_TEXT
    assert text.startswith(out) or "\udcff" in text


class _Sent:
    """Stands for the master link: keeps what Status sends."""

    closed = False

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, raw: bytes) -> None:
        self.frames.append(raw)


@pytest.mark.parametrize("text", [BAD_TEXT.decode("utf-8", "replace"), BAD_TEXT.decode("utf-8", "surrogateescape"),
                                  "€" * 40000])
def test_status_log_never_fails(text):
    link = _Sent()
    status = Status(link, level=0)  # type: ignore[arg-type]
    status.log(INFO, f"peer sent error: {text}")
    status.billboard(text)
    status.fail(3, text)
    status.io(False, text, b"\x00\x01")
    msgs = [status_schema().decode(raw) for raw in link.frames]
    assert [m.name for m in msgs] == ["status_log", "status_peer_billboard", "status_fail", "status_io"]
    assert len(msgs[0].fields["entry"].encode()) <= MAX_STATUS_TEXT
    assert msgs[0].fields["entry"].startswith("peer sent error: ")


# -- a peer against the node ------------------------------------------------------------------
def assert_log_sane(node) -> None:
    for ln in node.log_text().splitlines():
        assert all(32 <= ord(c) < 127 for c in ln), ln[:200]
    assert node.broken_lines() == []
    assert "Traceback" not in node.stderr_text()


def test_huge_non_utf8_error_and_warning_to_connectd(node_factory):
    node = node_factory.get_node()
    peer = ScriptedPeer(node)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    for name in ("warning", "error"):
        for data in (BAD_TEXT, CONTROL, os.urandom(65535 - 36)):
            peer.send(name, {"channel_id": os.urandom(32), "data": data})
    peer.send("warning", {"channel_id": bytes(32), "data": BAD_TEXT})
    assert peer.ping_ok()
    wait_for(lambda: node.log_text().count("peer sent ") >= 7)
    assert node.rpc.getinfo()["id"] == node.node_id
    assert f"peer sent warning: {CONTROL.hex()}" in node.log_text()
    assert_log_sane(node)
    lines = [e["log"] for e in node.rpc.getlog("info")["log"] if "peer sent" in e.get("log", "")]
    assert lines and all(len(x) < 2000 for x in lines)


def test_huge_error_during_opening_to_channeld(node_factory):
    node = node_factory.get_node()
    peer = ScriptedPeer(node)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    temp_id = os.urandom(32)
    peer.send("open_channel", open_channel_fields(peer, temp_id))
    peer.expect("accept_channel")
    peer.send("warning", {"channel_id": temp_id, "data": BAD_TEXT})
    peer.send("error", {"channel_id": temp_id, "data": BAD_TEXT})
    wait_for(lambda: not channelds_of(node))
    assert node.rpc.listpeerchannels(peer.node_id)["channels"] == []
    assert peer.ping_ok()
    assert_log_sane(node)


def test_huge_warning_and_error_on_a_live_channel(node_factory):
    from test_misbehaving_peer import open_with_fake_peer
    node = node_factory.get_node()
    fake = open_with_fake_peer(node, 0x44, 0)
    cid = fake.ch.channel_id
    fake.send("warning", {"channel_id": cid, "data": BAD_TEXT})
    fake.send("ping", {"num_pong_bytes": 1, "ignored": b""})
    wait_for(lambda: "peer warning: ffff" in node.log_text())
    assert node.rpc.listpeerchannels(fake.node_id)["channels"][0]["state"] == "CHANNELD_NORMAL"
    fake.send("error", {"channel_id": cid, "data": BAD_TEXT})
    # BOLT 1: an error fails the channel: we go on chain, and say why (sanitized)
    wait_for(lambda: node.rpc.listpeerchannels(fake.node_id)["channels"][0]["state"]
             in ("AWAITING_UNILATERAL", "FUNDING_SPEND_SEEN", "ONCHAIN"))
    assert node.rpc.getinfo()["id"] == node.node_id
    assert_log_sane(node)
