"""Short channel id aliases (BOLT 2 channel_ready, option_scid_alias bits
46/47) and private channels, between real nodes on the regtest chain.

Every channel gets a local alias, sent in channel_ready; the peer's is what
our invoices' route hints name an unannounced channel by.  A private channel
between peers that both offer option_scid_alias has that type: its real
short channel id is never in a hint nor accepted for a forward.  Invoices of
a node with only private channels carry hints as Core Lightning chooses
them (`exposeprivatechannels`), `pay` uses them, and an onion error about a
private channel carries a channel_update naming it as the onion did."""
from __future__ import annotations

import pytest
from pyln.client import RpcError

from bitcoin.hashes import hash256
from bitcoin.keys import verify_digest_compact
from common.scid import ShortChannelId
from node_factory import sync_blockheight, wait_for
from test_channels import channel, fund, open_channel
from test_invoices import check_schema

SCID_ALIAS = 46
FEE_INSUFFICIENT = 0x1000 | 12
UNKNOWN_NEXT_PEER = 0x4000 | 10


def test_alias_fields_on_both_peers(node_factory):
    """listpeerchannels' alias.local / alias.remote: each side's local alias
    is the other's remote one, unrelated to the real short channel id;
    they survive restarts, and name the channel in listpeerchannels."""
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    open_channel(l1, l2)
    wait_for(lambda: "remote" in channel(l1, l2).get("alias", {}) and "remote" in channel(l2, l1).get("alias", {}))
    c1, c2 = channel(l1, l2), channel(l2, l1)
    assert c1["alias"]["local"] == c2["alias"]["remote"] and c1["alias"]["remote"] == c2["alias"]["local"]
    assert len({c1["alias"]["local"], c2["alias"]["local"], c1["short_channel_id"]}) == 3
    assert c1["private"] is False and SCID_ALIAS not in c1["channel_type"]["bits"]   # a public channel
    assert c1["updates"]["local"]["fee_base_msat"] == c1["fee_base_msat"]
    check_schema("listpeerchannels", l1.rpc.listpeerchannels())
    for node, c in ((l1, c1), (l2, c2)):
        by_alias = node.rpc.listpeerchannels(short_channel_id=c["alias"]["local"])["channels"]
        assert [x["channel_id"] for x in by_alias] == [c["channel_id"]]
    l1.restart()
    l2.restart()
    assert channel(l1, l2)["alias"] == c1["alias"] and channel(l2, l1)["alias"] == c2["alias"]


def private_line(node_factory):
    """l1 -- l2 public (announced), l2 -- l3 private (l2 funds it): l3 has
    only a private channel, and knows l2 can be reached (no dead end) and
    l2's policy for its side of the private channel."""
    l1, l2, l3 = node_factory.get_nodes(3)
    fund(l1)
    fund(l2)
    open_channel(l1, l2)
    r = open_channel(l2, l3, announce=False)
    assert SCID_ALIAS in r["channel_type"]["bits"]
    l1.chain.mine(3)          # l1 -- l2 six deep: announced
    wait_for(lambda: len(l3.rpc.listchannels(source=l1.node_id)["channels"]) == 1)
    wait_for(lambda: "remote" in channel(l3, l2)["updates"] and "remote" in channel(l3, l2).get("alias", {}))
    sync_blockheight(l1, l2, l3)
    return l1, l2, l3


def update_in_error(err: dict) -> bytes:
    """The channel_update of a FEE_INSUFFICIENT failure (sendpay's
    raw_message, as Core Lightning's)."""
    assert err["data"]["failcode"] == FEE_INSUFFICIENT
    return bytes.fromhex(err["data"]["raw_message"])


def test_private_channel_route_hints_pay_and_forward_by_alias(node_factory):
    l1, l2, l3 = private_line(node_factory)
    c23, c32 = channel(l2, l3), channel(l3, l2)
    assert c23["private"] and c32["private"] and SCID_ALIAS in c32["channel_type"]["bits"]
    alias = c23["alias"]["local"]           # what l2 forwards by, l3's remote alias
    assert c32["alias"]["remote"] == alias and alias != c23["short_channel_id"]
    assert c32["updates"]["remote"] == c23["updates"]["local"]
    check_schema("listpeerchannels", l3.rpc.listpeerchannels())
    # BOLT 2: the alias in the `r` field, never the real short channel id
    inv = l3.rpc.invoice(20_000_000, "hinted", "d")
    assert "warning_capacity" not in inv and "warning_private_unused" not in inv
    assert l1.rpc.decodepay(inv["bolt11"])["routes"] == [[{
        "pubkey": l2.node_id, "short_channel_id": alias, "fee_base_msat": c23["fee_base_msat"],
        "fee_proportional_millionths": c23["fee_proportional_millionths"],
        "cltv_expiry_delta": c23["updates"]["local"]["cltv_expiry_delta"]}]]
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    assert l3.rpc.listinvoices("hinted")["invoices"][0]["status"] == "paid"
    assert [(f["status"], f["out_channel"]) for f in l2.rpc.listforwards()["forwards"]] == \
        [("settled", c23["short_channel_id"])]
    wait_for(lambda: channel(l3, l2)["to_us_msat"] == 20_000_000)

    # hand-built routes: by the real scid of a scid_alias channel l2 refuses
    inv = l3.rpc.invoice(1_000_000, "by-hand", "d")
    scid12 = channel(l1, l2)["short_channel_id"]

    def send(scid, fee=None):
        if fee is None:
            fee = c23["fee_base_msat"] + 1_000_000 * c23["fee_proportional_millionths"] // 1_000_000
        delay = 18 + 3
        route = [{"id": l2.node_id, "channel": scid12, "amount_msat": 1_000_000 + fee,
                  "delay": delay + c23["updates"]["local"]["cltv_expiry_delta"]},
                 {"id": l3.node_id, "channel": scid, "amount_msat": 1_000_000, "delay": delay}]
        l1.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
        return l1.rpc.waitsendpay(inv["payment_hash"], 60)
    with pytest.raises(RpcError) as e:
        send(c23["short_channel_id"])
    assert e.value.error["data"]["failcode"] == UNKNOWN_NEXT_PEER
    assert e.value.error["data"]["erring_node"] == l2.node_id
    # too small a fee through the alias: FEE_INSUFFICIENT with l2's update of
    # the private channel, naming it by the alias the onion used (BOLT 4)
    with pytest.raises(RpcError) as e:
        send(alias, fee=0)
    upd = update_in_error(e.value.error)
    assert upd[:2] == b"\x01\x02"
    assert str(ShortChannelId.from_bytes(upd[2 + 64 + 32:2 + 64 + 40])) == alias
    assert upd[2 + 64 + 44] & 2            # message_flags: dont_forward
    assert verify_digest_compact(bytes.fromhex(l2.node_id), upd[2:66], hash256(upd[66:]))
    # BOLT 2: "MUST always recognize the alias as a short_channel_id for incoming HTLCs"
    assert send(alias)["status"] == "complete"
    assert l3.rpc.listinvoices("by-hand")["invoices"][0]["status"] == "paid"
    wait_for(lambda: channel(l3, l2)["to_us_msat"] == 21_000_000)
    fails = [f for f in l2.rpc.listforwards()["forwards"] if f["status"] == "local_failed"]
    assert sorted(f["failcode"] for f in fails) == [FEE_INSUFFICIENT, UNKNOWN_NEXT_PEER]


def test_exposeprivatechannels(node_factory):
    l1, l2, l3 = private_line(node_factory)
    c32 = channel(l3, l2)
    alias = c32["alias"]["remote"]

    def hint_scids(**kw):
        inv = l3.rpc.call("invoice", {"amount_msat": 5_000_000, "label": f"i{hint_scids.n}", "description": "d",
                                      **kw})
        hint_scids.n += 1
        check_schema("invoice", inv)
        routes = l1.rpc.decodepay(inv["bolt11"]).get("routes", [])
        return [r[0]["short_channel_id"] for r in routes], {k: v for k, v in inv.items() if k.startswith("warning_")}
    hint_scids.n = 0
    # default: no public channel at all, so the private one is hinted
    assert hint_scids() == ([alias], {})
    assert hint_scids(exposeprivatechannels=True) == ([alias], {})
    # false: never a private channel
    scids, warnings = hint_scids(exposeprivatechannels=False)
    assert scids == [] and list(warnings) == ["warning_private_unused"]
    # a list: those channels, by the real short channel id or the peer's alias
    assert hint_scids(exposeprivatechannels=[alias]) == ([alias], {})
    assert hint_scids(exposeprivatechannels=[c32["short_channel_id"]]) == ([alias], {})
    with pytest.raises(RpcError) as e:
        hint_scids(exposeprivatechannels=["1x1x1"])
    assert e.value.error["code"] == 902
    # more than the channel can receive
    big = l3.rpc.invoice(c32["total_msat"], "big", "d")
    assert "warning_capacity" in big

    # l3 gets a public channel too: only it is hinted by default
    open_channel(l2, l3, 500_000)
    l1.chain.mine(3)
    pub = wait_for(lambda: next((c for c in l3.rpc.listpeerchannels(l2.node_id)["channels"]
                                 if not c["private"] and c["state"] == "CHANNELD_NORMAL"), None))
    wait_for(lambda: len(l3.rpc.listchannels(short_channel_id=pub["short_channel_id"])["channels"]) == 2)
    sync_blockheight(l1, l2, l3)
    assert hint_scids() == ([pub["short_channel_id"]], {})
    assert hint_scids(exposeprivatechannels=False) == ([pub["short_channel_id"]], {})
    assert hint_scids(exposeprivatechannels=[alias]) == ([alias], {})
    seen = {hint_scids(exposeprivatechannels=True)[0][0] for _ in range(12)}
    assert seen <= {alias, pub["short_channel_id"]} and seen
    # and l1 pays an invoice that hints the private channel
    inv = l3.rpc.invoice(3_000_000, "private-one", "d", exposeprivatechannels=[alias])
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    assert l3.rpc.listinvoices("private-one")["invoices"][0]["status"] == "paid"
