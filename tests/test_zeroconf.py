"""option_zeroconf (BOLT 2, bits 50/51) and the `openchannel` hook, between
real nodes on the regtest chain.

`fundchannel ... mindepth=0` opens a channel usable at once with a peer
whose `openchannel` hook answers `mindepth: 0` (Core Lightning's way of
trusting a peer); the channel goes by its aliases until the funding
confirms, then gets its real short channel id, payments working throughout.
The hook also rejects opens, sets the reserve and an upfront close_to for
ordinary channels; a peer that does not trust us gives no zero-conf."""
from __future__ import annotations

from pathlib import Path

import pytest
from pyln.client import RpcError

from bitcoin.address import address_to_script
from bitcoin.networks import NETWORKS
from node_factory import sync_blockheight, wait_for
from test_channels import channel, fund
from test_invoices import check_schema

PLUGINS = Path(__file__).parent / "plugins"
POLICY = str(PLUGINS / "openchannel_policy.py")
ZEROCONF = 50


def zeroconf_pair(node_factory, opts=None):
    """l1 funds; l2's openchannel hook gives l1 zero-conf channels."""
    l1 = node_factory.get_node(opts or {})
    l2 = node_factory.get_node({"plugin": POLICY, "zeroconf_allow": l1.node_id})
    fund(l1)
    sync_blockheight(l1, l2)
    l1.connect(l2)
    return l1, l2


def pay(payer, payee, label, amount=50_000_000):
    inv = payee.rpc.invoice(amount, label, "zero-conf")
    r = payer.rpc.pay(inv["bolt11"])
    assert r["status"] == "complete"
    assert payee.rpc.listinvoices(label)["invoices"][0]["status"] == "paid"
    return r


def settled(*pairs):
    """No HTLC left on either side of each channel."""
    wait_for(lambda: all(channel(a, b)["htlcs"] == [] and channel(b, a)["htlcs"] == [] for a, b in pairs))


def test_zeroconf_open_pay_before_and_after_confirmation(node_factory):
    l1, l2 = zeroconf_pair(node_factory)
    height = l1.rpc.getinfo()["blockheight"]
    r = l1.rpc.fundchannel(l2.node_id, 1_000_000, mindepth=0)
    # Core Lightning: the funder's type says zeroconf once the peer asked for depth 0
    assert ZEROCONF in r["channel_type"]["bits"] and "zeroconf/even" in r["channel_type"]["names"]
    assert r["mindepth"] == 0
    # usable without a block: normal on both sides, named by aliases only
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    wait_for(lambda: "remote" in channel(l1, l2).get("alias", {}) and "remote" in channel(l2, l1).get("alias", {}))
    c1, c2 = channel(l1, l2), channel(l2, l1)
    assert l1.rpc.getinfo()["blockheight"] == height
    assert "short_channel_id" not in c1 and "short_channel_id" not in c2
    assert c1["alias"] == {"local": c2["alias"]["remote"], "remote": c2["alias"]["local"]}
    assert c1["alias"]["local"] != c1["alias"]["remote"]
    assert "option_zeroconf" in c1["features"]
    check_schema("listpeerchannels", l1.rpc.listpeerchannels())
    check_schema("fundchannel", r)
    assert l2.rpc.call("openchannel_seen")["seen"][0]["id"] == l1.node_id

    # payments both ways before the funding confirms
    pay(l1, l2, "before")
    settled((l1, l2))
    wait_for(lambda: channel(l2, l1)["spendable_msat"] >= 10_000_000)
    pay(l2, l1, "back-before", 10_000_000)
    settled((l1, l2))
    assert l1.rpc.listpays()["pays"][0]["status"] == "complete"
    wait_for(lambda: channel(l2, l1)["to_us_msat"] == 40_000_000)

    # the funding confirms: the real short channel id on both sides, aliases kept
    l1.chain.mine(1)
    wait_for(lambda: "short_channel_id" in channel(l1, l2) and "short_channel_id" in channel(l2, l1))
    c1, c2 = channel(l1, l2), channel(l2, l1)
    assert c1["short_channel_id"] == c2["short_channel_id"]
    assert c1["short_channel_id"].startswith(f"{height + 1}x")
    assert c1["alias"] == {"local": c2["alias"]["remote"], "remote": c2["alias"]["local"]}
    assert c1["state"] == c2["state"] == "CHANNELD_NORMAL"
    pay(l1, l2, "after")
    settled((l1, l2))
    assert channel(l2, l1)["to_us_msat"] == 90_000_000
    assert channel(l1, l2)["to_us_msat"] + channel(l2, l1)["to_us_msat"] <= 1_000_000_000
    # and it survives a restart of both
    l1.restart()
    l2.restart()
    l1.connect(l2)
    wait_for(lambda: channel(l1, l2)["peer_connected"] and channel(l1, l2)["state"] == "CHANNELD_NORMAL")
    assert channel(l1, l2)["alias"] == c1["alias"] and channel(l2, l1)["alias"] == c2["alias"]
    sync_blockheight(l1, l2)
    wait_for(lambda: channel(l1, l2)["spendable_msat"] > 0)
    pay(l1, l2, "after-restart")


def test_htlc_in_flight_across_the_confirmation_settles(node_factory):
    """A payment offered before the funding confirms and held by the payee
    until after it is fulfilled: the channel's scid changes under it."""
    l1 = node_factory.get_node()
    l2 = node_factory.get_node({"plugin": [POLICY, str(PLUGINS / "hold_htlcs.py")]})
    l2.rpc.call("openchannel_policy", {"answer": {"result": "continue", "mindepth": 0}})
    fund(l1)
    sync_blockheight(l1, l2)
    l1.connect(l2)
    l1.rpc.fundchannel(l2.node_id, 1_000_000, mindepth=0)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    inv = l2.rpc.invoice(20_000_000, "held", "d")
    route = [{"id": l2.node_id, "channel": channel(l1, l2)["alias"]["local"], "amount_msat": 20_000_000,
              "delay": 18}]
    l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
    wait_for(lambda: l2.rpc.call("held")["held"] == 1)
    l1.chain.mine(1)
    wait_for(lambda: "short_channel_id" in channel(l1, l2) and "short_channel_id" in channel(l2, l1))
    l2.rpc.call("release")
    assert l1.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
    assert l2.rpc.listinvoices("held")["invoices"][0]["status"] == "paid"
    settled((l1, l2))
    assert channel(l2, l1)["to_us_msat"] == 20_000_000


def test_zeroconf_channel_forwards_by_alias_with_route_hints(node_factory):
    """l1 -- l2 public, l2 -- l3 zero-conf and private (scid_alias too): l3's
    invoice hints l2's alias for it, and l1 pays through l2 before the
    funding confirms; then back from l3, first hop the zero-conf channel."""
    l1 = node_factory.get_node()
    l2 = node_factory.get_node()
    l3 = node_factory.get_node({"plugin": POLICY, "zeroconf_allow": l2.node_id})
    fund(l1)
    fund(l2)
    sync_blockheight(l1, l2, l3)
    l1.connect(l2)
    l1.rpc.fundchannel(l2.node_id, 1_000_000)
    l1.chain.mine(6)
    l2.connect(l3)
    r = l2.rpc.fundchannel(l3.node_id, 1_000_000, announce=False, mindepth=0)
    assert {12, 46, 50} <= set(r["channel_type"]["bits"])
    wait_for(lambda: channel(l2, l3)["state"] == "CHANNELD_NORMAL" and channel(l3, l2)["state"] == "CHANNELD_NORMAL")
    # l3 knows l2's public channel (l2 is no dead end) and l2's fees for the private one
    wait_for(lambda: len(l3.rpc.listchannels(source=l1.node_id)["channels"]) == 1)
    wait_for(lambda: "remote" in channel(l3, l2)["updates"])
    alias = channel(l2, l3)["alias"]["local"]
    assert channel(l3, l2)["alias"]["remote"] == alias
    inv = l3.rpc.invoice(30_000_000, "via-alias", "d")
    routes = l1.rpc.decodepay(inv["bolt11"])["routes"]
    assert routes == [[{"pubkey": l2.node_id, "short_channel_id": alias,
                        "fee_base_msat": channel(l2, l3)["fee_base_msat"],
                        "fee_proportional_millionths": channel(l2, l3)["fee_proportional_millionths"],
                        "cltv_expiry_delta": channel(l3, l2)["updates"]["remote"]["cltv_expiry_delta"]}]]
    sync_blockheight(l1, l2, l3)
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    assert l3.rpc.listinvoices("via-alias")["invoices"][0]["status"] == "paid"
    fwd = l2.rpc.listforwards()["forwards"]
    assert [(f["status"], f["out_channel"]) for f in fwd] == [("settled", alias)]
    assert "short_channel_id" not in channel(l2, l3)
    settled((l1, l2), (l2, l3))
    # the other way: l3's first hop is the zero-conf channel
    wait_for(lambda: channel(l3, l2)["spendable_msat"] > 10_000_000)
    back = l1.rpc.invoice(10_000_000, "back", "d")
    assert l3.rpc.pay(back["bolt11"])["status"] == "complete"
    assert l1.rpc.listinvoices("back")["invoices"][0]["status"] == "paid"


def test_openchannel_hook_rejects_sets_mindepth_reserve_close_to(node_factory):
    l1 = node_factory.get_node()
    l2 = node_factory.get_node({"plugin": POLICY})
    fund(l1)
    sync_blockheight(l1, l2)
    l1.connect(l2)
    # reject, with the plugin's message to the peer
    l2.rpc.call("openchannel_policy", {"answer": {"result": "reject", "error_message": "not today"}})
    with pytest.raises(RpcError, match="not today"):
        l1.rpc.fundchannel(l2.node_id, 500_000)
    assert l1.rpc.listpeerchannels()["channels"] == [] and l2.rpc.listpeerchannels()["channels"] == []
    assert not any(o["reserved"] for o in l1.rpc.listfunds()["outputs"])
    # accept with settings: one confirmation, our reserve, our close_to
    addr = l2.rpc.newaddr("bech32")["bech32"]
    l2.rpc.call("openchannel_policy", {"answer": {"result": "continue", "mindepth": 1, "reserve": "12345sat",
                                                  "close_to": addr}})
    seen = len(l2.rpc.call("openchannel_seen")["seen"])
    r = l1.rpc.fundchannel(l2.node_id, 500_000, mindepth=1)
    assert r["mindepth"] == 1
    payload = l2.rpc.call("openchannel_seen")["seen"][seen]
    assert payload["funding_msat"] == 500_000_000 and payload["channel_type"]["bits"] == [12, 22]
    c2 = channel(l2, l1)
    assert c2["their_reserve_msat"] == 12_345_000 and channel(l1, l2)["our_reserve_msat"] == 12_345_000
    assert c2["close_to_addr"] == addr
    check_schema("listpeerchannels", l2.rpc.listpeerchannels())
    assert c2["close_to"] == address_to_script(addr, NETWORKS["regtest"]).hex()
    l1.chain.mine(1)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    # l2's share goes to its close_to on a mutual close
    pay(l1, l2, "to-close", 100_000_000)
    settled((l1, l2))
    close = l1.rpc.close(l2.node_id)
    assert close["type"] == "mutual"
    tx = l1.chain.rpc.decoderawtransaction(close["tx"])
    assert [o["scriptPubKey"]["address"] for o in tx["vout"] if o["value"] * 10**8 >= 99_000].count(addr) == 1


def test_peer_without_zeroconf_trust(node_factory):
    """A peer whose hook gives no mindepth 0: mindepth=0 on our side leaves the
    channel waiting for the peer's confirmations (no zero-conf, no error);
    a zero-conf channel_type is refused with Core Lightning's message."""
    l1 = node_factory.get_node()
    l2 = node_factory.get_node({"plugin": POLICY})
    fund(l1)
    sync_blockheight(l1, l2)
    l1.connect(l2)
    with pytest.raises(RpcError, match="You required zeroconf, but you're not on our allowlist"):
        l1.rpc.fundchannel(l2.node_id, 300_000, channel_type=[12, 22, 50])
    assert l1.rpc.listpeerchannels()["channels"] == [] and l2.rpc.listpeerchannels()["channels"] == []
    with pytest.raises(RpcError) as e:
        l1.rpc.fundchannel(l2.node_id, 300_000, channel_type=[12, 22, 50], mindepth=3)
    assert e.value.error["code"] == -32602
    r = l1.rpc.fundchannel(l2.node_id, 300_000, mindepth=0)
    assert ZEROCONF not in r["channel_type"]["bits"]
    assert channel(l1, l2)["state"] == "CHANNELD_AWAITING_LOCKIN"
    assert channel(l2, l1)["state"] == "CHANNELD_AWAITING_LOCKIN"
    l1.chain.mine(2)
    sync_blockheight(l1, l2)
    assert channel(l1, l2)["state"] == channel(l2, l1)["state"] == "CHANNELD_AWAITING_LOCKIN"
    l1.chain.mine(1)     # l2's funding-confirms (3)
    wait_for(lambda: channel(l1, l2)["state"] == "CHANNELD_NORMAL" and channel(l2, l1)["state"] == "CHANNELD_NORMAL")
    pay(l1, l2, "confirmed")
