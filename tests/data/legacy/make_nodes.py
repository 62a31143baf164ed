"""A regtest chain and three nodes' directories written by the node before
the typed contracts (DB version 6: channeld's core, summary and config,
onchaind's state as JSON text).  Generated once, at commit 45b1f5b, by

    .venv/bin/python tests/data/legacy/make_nodes.py

(it needs the code of that commit) into nodes-v6.tar.gz, with the facts the
test checks in nodes-v6.json; tests/test_legacy_state.py restarts the nodes
on it with today's code.

l1 -> l2: an anchors channel, normal, after payments both ways.
l1 -> l3: a static_remotekey channel l1 closed unilaterally while l3 was
away (l1's onchaind waits to sweep its to_local; l3 never saw the close).
"""
from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from contrib.regtest.testing import RegtestChain  # noqa: E402
from node_factory import NodeFactory, wait_for  # noqa: E402

OPTS = {"watchtime-blocks": 5}


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    chain = RegtestChain(tmp / "bitcoind")
    chain.start()
    chain.mine(101)
    nf = NodeFactory(tmp, chain)
    try:
        l1, l2, l3 = nf.get_nodes(3, opts=OPTS)
        for _ in range(2):
            chain.fund(l1.rpc.newaddr("bech32")["bech32"], 3_000_000)
        chain.mine(1)
        wait_for(lambda: len([o for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]) == 2)
        l1.connect(l2)
        l1.rpc.fundchannel(l2.node_id, 1_000_000, push_msat=50_000_000)
        l1.connect(l3)
        l1.rpc.fundchannel(l3.node_id, 500_000, channel_type=[12])
        chain.mine(3)

        def normal(a, b):
            c = a.rpc.listpeerchannels(b.node_id)["channels"]
            return c and c[0]["state"] == "CHANNELD_NORMAL" and (c[0]["opener"] == "remote" or c[0]["spendable_msat"] > 0)
        try:
            wait_for(lambda: normal(l1, l2) and normal(l2, l1) and normal(l1, l3) and normal(l3, l1))
        except TimeoutError:
            for a, b in ((l1, l2), (l2, l1), (l1, l3), (l3, l1)):
                print(a.rpc.listpeerchannels(b.node_id)["channels"])
            print(chain.rpc.getrawmempool(), chain.rpc.getblockcount())
            raise
        for i, (src, dst) in enumerate([(l1, l2), (l1, l2), (l2, l1), (l1, l3)]):
            inv = dst.rpc.invoice(1_000_000 + i, f"legacy-{i}", "legacy")
            chan = src.rpc.listpeerchannels(dst.node_id)["channels"][0]
            route = [{"id": dst.node_id, "channel": chan["short_channel_id"], "amount_msat": 1_000_000 + i,
                      "delay": 18}]
            src.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
            assert src.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
        l3.stop()
        r = l1.rpc.close(l3.node_id, unilateraltimeout=1)
        assert r["type"] == "unilateral"
        wait_for(lambda: len(chain.rpc.getrawmempool()) >= 1)
        chain.mine(1)

        def st(a, b):
            return a.rpc.listpeerchannels(b.node_id)["channels"][0]
        wait_for(lambda: st(l1, l3)["state"] == "ONCHAIN"
                 and any("DELAYED_OUTPUT_TO_US" in s for s in st(l1, l3)["status"]))
        chain.mine(1)
        h = chain.rpc.getblockcount()
        wait_for(lambda: l1.rpc.getinfo()["blockheight"] == h and l2.rpc.getinfo()["blockheight"] == h)
        wait_for(lambda: any("waiting 3 more blocks" in s for s in st(l1, l3)["status"]))
        facts = {
            "height": h,
            "ids": [n.node_id for n in (l1, l2, l3)],
            "l1_l2": {k: st(l1, l2)[k] for k in ("state", "short_channel_id", "to_us_msat", "channel_id",
                                                  "funding_txid", "channel_type", "total_msat")},
            "l2_l1": {k: st(l2, l1)[k] for k in ("state", "to_us_msat", "channel_id")},
            "l1_l3": {k: st(l1, l3)[k] for k in ("state", "channel_id", "status", "to_us_msat")},
            "l3_l1_to_us_msat": None,
            "commitment_txid": r["txid"],
        }
        l1.stop()
        l2.stop()
        problems = nf.teardown()
        assert not problems, problems
    finally:
        for n in nf.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.kill()
        chain.stop()
    out = HERE / "nodes-v6.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for name in ("bitcoind", "lightning-1", "lightning-2", "lightning-3"):
            tar.add(tmp / name, arcname=name,
                    filter=lambda ti: None if Path(ti.name).name in ("log", "stderr", "lightning-rpc",
                                                                     "regtestd.out") else ti)
    (HERE / "nodes-v6.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
