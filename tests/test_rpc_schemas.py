"""Every read-only command in scope answers in the shape Core Lightning's
JSON schema (spec/cln/schemas/) declares, on each node of a line that
has forwarded, failed and closed something (the small checker of
test_invoices: required fields, no undeclared ones, types, if/then)."""
from __future__ import annotations

import pytest
from pyln.client import RpcError

from node_factory import sync_blockheight, wait_for
from test_channels import fund, open_channel
from test_invoices import check_schema

READ_ONLY = [("getinfo", {}), ("listfunds", {}), ("listforwards", {}), ("listchannels", {}), ("listnodes", {}),
             ("listpeers", {}), ("listpeerchannels", {}), ("listclosedchannels", {}), ("listsendpays", {}),
             ("listpays", {}), ("listinvoices", {}), ("listhtlcs", {}), ("feerates", {"style": "perkw"}),
             ("listoffers", {}), ("listinvoicerequests", {}), ("autoclean-status", {}),
             ("getlog", {"level": "unusual"})]


def test_read_only_commands_match_core_lightnings_schemas(node_factory):
    l1, l2, l3 = node_factory.get_nodes(3)
    fund(l1)
    fund(l2)
    open_channel(l1, l2, 1_000_000)
    open_channel(l2, l3, 1_000_000)
    l1.chain.mine(3)                      # announced: listchannels and listnodes have something
    sync_blockheight(l1, l2, l3)
    wait_for(lambda: len(l1.rpc.listchannels()["channels"]) == 4, timeout=60)
    inv = l3.rpc.invoice(50_000, "paid", "paid")
    assert l1.rpc.pay(inv["bolt11"])["status"] == "complete"
    bad = l3.rpc.invoice(60_000, "deleted", "deleted")
    l3.rpc.delinvoice("deleted", "unpaid")
    with pytest.raises(RpcError):
        l1.rpc.pay(bad["bolt11"], retry_for=5)
    l3.rpc.invoice(70_000, "unpaid", "unpaid")
    l3.rpc.call("offer", {"amount": "any", "description": "coffee"})
    # a closed channel for listclosedchannels
    l4 = node_factory.get_node()
    open_channel(l1, l4, 200_000)
    l1.rpc.close(l4.node_id)
    l1.chain.mine(101)                    # (forgotten 100 blocks deep, as Core Lightning)
    wait_for(lambda: l1.rpc.listclosedchannels()["closedchannels"], timeout=60)
    # listforwards' indexes: l2 forwarded one payment (settled) and one l3 refused (failed)
    fw = l2.rpc.listforwards()["forwards"]
    assert [f["status"] for f in fw] == ["settled", "failed"]
    assert all({"in_htlc_id", "out_htlc_id", "updated_index"} <= set(f) for f in fw)
    assert [f["in_htlc_id"] for f in fw] == [0, 1] and [f["out_htlc_id"] for f in fw] == [0, 1]
    assert l2.rpc.listforwards(index="created", start=fw[1]["created_index"])["forwards"] == [fw[1]]
    assert l2.rpc.listforwards(index="created", limit=1)["forwards"] == [fw[0]]
    by_update = l2.rpc.listforwards(index="updated")["forwards"]
    assert [f["updated_index"] for f in by_update] == sorted(f["updated_index"] for f in fw)
    wrong = []
    for name, node in (("l1", l1), ("l2", l2), ("l3", l3)):
        for command, params in READ_ONLY:
            try:
                check_schema(command, node.rpc.call(command, params))
            except AssertionError as e:
                wrong.append(f"{name} {str(e).splitlines()[0]}")
    # and commands that take parameters (or act, harmlessly), on l1
    offer = l3.rpc.call("offer", {"amount": "1000msat", "description": "tea"})
    more = [("help", {}), ("help", {"command": "pay"}), ("newaddr", {}), ("ping", {"id": l2.node_id}),
            ("getroute", {"id": l3.node_id, "amount_msat": 1000, "riskfactor": 1}),
            ("decodepay", {"bolt11": inv["bolt11"]}), ("decode", {"string": inv["bolt11"]}),
            ("decode", {"string": offer["bolt12"]}), ("connect", {"id": f"{l2.node_id}@127.0.0.1:{l2.port}"}),
            ("plugin", {"subcommand": "list"}), ("keysend", {"destination": l3.node_id, "amount_msat": 1000}),
            ("setchannel", {"id": l2.node_id, "feebase": 2}), ("fetchinvoice", {"offer": offer["bolt12"]})]
    for command, params in more:
        try:
            check_schema(command, l1.rpc.call(command, params))
        except AssertionError as e:
            wrong.append(f"l1 {str(e).splitlines()[0]}")
    assert wrong == [], "\n".join(wrong)
