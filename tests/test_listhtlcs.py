"""listhtlcs (Core Lightning's schema in spec/cln/schemas/listhtlcs.json):
every HTLC of a channel, live and resolved, on both nodes, with paging by
created_index and updated_index."""
from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import pytest
from pyln.client import RpcError

from node_factory import wait_for
from test_channels import fund, open_channel
from test_invoices import check_schema

PLUGINS = Path(__file__).parent / "plugins"


def test_listhtlcs_live_and_resolved_on_both_sides(node_factory):
    l1, l2 = node_factory.get_nodes(2, opts=[{}, {"plugin": str(PLUGINS / "hold_htlcs.py")}])
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    ch = l1.rpc.listpeerchannels(l2.node_id)["channels"][0]
    scid, cid = ch["short_channel_id"], ch["channel_id"]
    assert l1.rpc.listhtlcs() == {"htlcs": []}

    paid = l2.rpc.invoice(100_000, "paid", "paid")
    refused = l2.rpc.invoice(200_000, "refused", "refused")
    held = l2.rpc.invoice(300_000, "held", "held")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for inv, how in ((paid, "continue"), (refused, "fail")):
            f = pool.submit(l1.rpc.pay, inv["bolt11"])
            wait_for(lambda: l2.rpc.held()["held"] == 1)
            l2.rpc.release(how)
            if how == "fail":
                with pytest.raises(RpcError):
                    f.result(60)
            else:
                assert f.result(60)["status"] == "complete"
        pending = pool.submit(l1.rpc.pay, held["bolt11"])
        wait_for(lambda: l2.rpc.held()["held"] == 1)

        # while the third is held: every HTLC, each side seeing its own direction
        def states(node, direction):
            return {h["payment_hash"]: h["state"] for h in node.rpc.listhtlcs(scid)["htlcs"]
                    if h["direction"] == direction}
        wait_for(lambda: states(l1, "out").get(held["payment_hash"]) == "RCVD_ADD_ACK_REVOCATION"
                 or states(l1, "out").get(held["payment_hash"]) == "SENT_ADD_ACK_REVOCATION")
        out, inc = states(l1, "out"), states(l2, "in")
        assert out[paid["payment_hash"]] == out[refused["payment_hash"]] == "RCVD_REMOVE_ACK_REVOCATION"
        assert inc[paid["payment_hash"]] == inc[refused["payment_hash"]] == "SENT_REMOVE_ACK_REVOCATION"
        assert inc[held["payment_hash"]] in ("RCVD_ADD_ACK_REVOCATION", "SENT_ADD_ACK_COMMIT")
        assert states(l1, "in") == {} and states(l2, "out") == {}

        for node in (l1, l2):
            r = node.rpc.listhtlcs()
            check_schema("listhtlcs", r)
            hs = r["htlcs"]
            assert [h["id"] for h in hs] == [0, 1, 2]
            assert [h["amount_msat"] for h in hs] == [100_000, 200_000, 300_000]
            assert all(h["short_channel_id"] == scid for h in hs)
            created = [h["created_index"] for h in hs]
            assert created == sorted(created) and len(set(created)) == 3
            # the resolved ones changed since they were created
            assert all("updated_index" in h for h in hs[:2])
            # the same channel by its channel id; paging by created_index
            assert node.rpc.listhtlcs(cid) == r
            assert node.rpc.listhtlcs(index="created", start=created[1], limit=1)["htlcs"] == [hs[1]]
            # by updated_index: in the order they last changed
            upd = node.rpc.listhtlcs(index="updated")["htlcs"]
            assert [h.get("updated_index", 0) for h in upd] == sorted(h.get("updated_index", 0) for h in upd)
            last = max(h["updated_index"] for h in hs if "updated_index" in h)
            assert [h["payment_hash"] for h in node.rpc.listhtlcs(index="updated", start=last)["htlcs"]] == \
                [h["payment_hash"] for h in hs if h.get("updated_index") == last]

        l2.rpc.release()
        assert pending.result(60)["status"] == "complete"
    wait_for(lambda: states(l1, "out")[held["payment_hash"]] == "RCVD_REMOVE_ACK_REVOCATION")
    wait_for(lambda: states(l2, "in")[held["payment_hash"]] == "SENT_REMOVE_ACK_REVOCATION")


def test_listhtlcs_refuses_a_channel_it_does_not_know(node_factory):
    l1 = node_factory.get_node()
    for bad, why in (("1x2x3", "unknown channel"), (os.urandom(32).hex(), "unknown channel"),
                     ("nope", "must be channel id or short channel id")):
        with pytest.raises(RpcError) as e:
            l1.rpc.listhtlcs(bad)
        assert e.value.error["code"] == -32602 and e.value.error["message"].startswith(f"id: {why}: invalid token")
    with pytest.raises(RpcError) as e:
        l1.rpc.listhtlcs(index="sideways")
    assert e.value.error["code"] == -32602
