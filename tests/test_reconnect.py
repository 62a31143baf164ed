"""Disconnections at every step of an HTLC round trip (--dev-disconnect
scripts in Core Lightning's format): the payment completes after the nodes
reconnect, and both sides agree on the balances."""
import pytest

from node_factory import wait_for
from test_channels import channel, fund, open_channel

STEPS = ["-WIRE_UPDATE_ADD_HTLC", "+WIRE_UPDATE_ADD_HTLC", "-WIRE_COMMITMENT_SIGNED", "+WIRE_COMMITMENT_SIGNED",
         "-WIRE_REVOKE_AND_ACK", "+WIRE_REVOKE_AND_ACK", "-WIRE_UPDATE_FULFILL_HTLC", "+WIRE_UPDATE_FULFILL_HTLC",
         "-WIRE_COMMITMENT_SIGNED*2", "+WIRE_REVOKE_AND_ACK*2"]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("who", ["payer", "payee"])
def test_disconnect_during_htlc_round_trip(node_factory, tmp_path, step, who):
    script = tmp_path / "dev_disconnect"
    script.write_text(step + "\n")
    opts = {"dev-disconnect": str(script)}
    l1 = node_factory.get_node(options=opts if who == "payer" else {})
    l2 = node_factory.get_node(options=opts if who == "payee" else {})
    fund(l1)
    open_channel(l1, l2, 1_000_000)
    inv = l2.rpc.invoice(123_000, "dd", "dev-disconnect")
    # l1 dialled l2, so it reconnects by itself after the cut; an HTLC lost
    # before it was committed fails and pay tries again
    assert l1.rpc.pay(inv["bolt11"], retry_for=90)["status"] == "complete"
    wait_for(lambda: not channel(l1, l2)["htlcs"] and not channel(l2, l1)["htlcs"], timeout=60)
    assert channel(l1, l2)["to_us_msat"] == 1_000_000_000 - 123_000
    assert channel(l2, l1)["to_us_msat"] == 123_000
    assert l2.rpc.listinvoices("dd")["invoices"][0]["status"] == "paid"
