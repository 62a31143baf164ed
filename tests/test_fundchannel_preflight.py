"""fundchannel asks the wallet before the peer hears anything: an unknown
coin or an unaffordable amount fails at once with Core Lightning's code, no
channel is started on either side, and the peer learns nothing of our
wallet; when funding fails after the peer accepted (the coins went
elsewhere meanwhile), the peer is told only that the open failed."""
from __future__ import annotations

import concurrent.futures
import re
import time
from pathlib import Path

import pytest
from pyln.client import RpcError

from node_factory import sync_blockheight, wait_for
from rpc_errors import INVALID_PARAMS, rpc_error
from test_channels import fund

PLUGINS = Path(__file__).parent / "plugins"
FUND_CANNOT_AFFORD = 301
FUND_CANNOT_AFFORD_WITH_EMERGENCY = 313
# what a wallet's figures look like in the error we used to send the peer
WALLET_WORDS = re.compile(r"afford|UTXO|short|reserved|[0-9a-f]{64}|\d{4,}sat|emergency", re.IGNORECASE)



def peer_heard(node) -> list[str]:
    """What the node logged of errors and warnings its peers sent it."""
    return [ln for ln in node.log_text().splitlines() if "peer sent" in ln]


def no_channel_anywhere(l1, l2) -> None:
    assert l1.rpc.listpeerchannels()["channels"] == []
    assert l2.rpc.listpeerchannels()["channels"] == []


def test_fundchannel_unknown_utxo_fails_at_once(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1)
    sync_blockheight(l1)
    l1.connect(l2)
    mine = l1.rpc.listfunds()["outputs"][0]
    for utxos in (["11" * 32 + ":0"], [f"{mine['txid']}:{mine['output'] + 7}"],
                  [f"{mine['txid']}:{mine['output']}", "22" * 32 + ":1"]):
        t = time.monotonic()
        err = rpc_error(l1.rpc.fundchannel, l2.node_id, 100_000, utxos=utxos)
        assert err["code"] == INVALID_PARAMS and "Unknown UTXO" in err["message"], err
        assert time.monotonic() - t < 5
    # an index that is no u32 is a malformed outpoint, not a lookup
    err = rpc_error(l1.rpc.fundchannel, l2.node_id, 100_000, utxos=[f"{mine['txid']}:{2 ** 64}"])
    assert err["code"] == INVALID_PARAMS, err
    no_channel_anywhere(l1, l2)
    assert peer_heard(l2) == []
    assert not any(o["reserved"] for o in l1.rpc.listfunds()["outputs"])
    # the peer is still ours to open a channel with, on that very coin
    r = l1.rpc.fundchannel(l2.node_id, 100_000, utxos=[f"{mine['txid']}:{mine['output']}"])
    assert r["txid"] in l1.chain.rpc.getrawmempool()
    wait_for(lambda: len(l2.rpc.listpeerchannels()["channels"]) == 1)


def test_unaffordable_fundchannel_tells_the_peer_nothing(node_factory):
    l1, l2 = node_factory.get_nodes(2)
    fund(l1, 200_000)
    sync_blockheight(l1)
    l1.connect(l2)
    coin = l1.rpc.listfunds()["outputs"][0]
    for kw in ({"amount": 1_000_000}, {"amount": 199_999, "feerate": "10000perkw"},
               {"amount": 150_000, "utxos": [f"{coin['txid']}:{coin['output']}"], "feerate": "300000perkw"},
               {"amount": 190_000, "minconf": 10}):
        err = rpc_error(l1.rpc.call, "fundchannel", dict({"id": l2.node_id}, **kw))
        assert err["code"] == FUND_CANNOT_AFFORD and err["message"].startswith("Could not afford"), (kw, err)
    # anchors: the wallet must keep min-emergency-msat (25,000 sat) for fee bumping
    err = rpc_error(l1.rpc.fundchannel, l2.node_id, 190_000, channel_type=[12, 22])
    assert err["code"] == FUND_CANNOT_AFFORD_WITH_EMERGENCY, err
    no_channel_anywhere(l1, l2)
    # the peer never got an open_channel, nor an error about it
    assert peer_heard(l2) == []
    assert "open_channel" not in l2.log_text()
    assert l1.is_connected(l2)
    assert not any(o["reserved"] for o in l1.rpc.listfunds()["outputs"])


def test_funding_failure_after_accept_tells_the_peer_no_wallet_detail(node_factory):
    """The coins chosen for a channel are spent elsewhere while the peer
    considers it: fundchannel fails with the wallet's error, and the peer
    hears a generic reason and drops its side of the open."""
    l1 = node_factory.get_node()
    l2 = node_factory.get_node(options={"plugin": str(PLUGINS / "hold_opens.py")})
    fund(l1, 500_000)
    sync_blockheight(l1)
    l1.connect(l2)
    coin = l1.rpc.listfunds()["outputs"][0]
    outpoint = f"{coin['txid']}:{coin['output']}"
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        opening = ex.submit(l1.rpc.fundchannel, l2.node_id, 100_000, utxos=[outpoint])
        wait_for(lambda: l2.rpc.call("held_opens")["held"] == 1)
        # the preflight passed; now the coin goes to a txprepare before the peer accepts
        l1.rpc.txprepare([{l1.rpc.newaddr("bech32")["bech32"]: 50_000}], utxos=[outpoint])
        l2.rpc.call("release_opens")
        with pytest.raises(RpcError) as e:
            opening.result(60)
    assert "already reserved" in e.value.error["message"]
    wait_for(lambda: l1.rpc.listpeerchannels()["channels"] == [] and l2.rpc.listpeerchannels()["channels"] == [])
    heard = peer_heard(l2)
    assert heard and all("could not fund the channel" in ln for ln in heard), heard
    assert not any(WALLET_WORDS.search(ln.split("peer sent", 1)[1]) for ln in heard), heard
    assert l1.is_connected(l2)
