"""BOLT 12 against BOLT 11 on the same routes, on the regtest chain:
payer -> payee (1 hop) and payer -> router -> payee (2 hops), all channels
announced.  For each route, OFFERS (default 30) rounds of

- BOLT 11: `pay` of an invoice made beforehand (the invoice itself comes
  out of band, as it would);
- BOLT 12: `fetchinvoice` of one offer (an invoice_request and its invoice
  over onion messages), then `pay` of that invoice (through its blinded
  path); timed apart and together.  Rounds are paced to one invoice_request
  per 300 ms: connectd drops onion messages over one per 250 ms per peer
  (Core Lightning's limit), and a dropped request costs a resend.

    ./run bench offers            # OFFERS=10 for a shorter run
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from contrib.regtest.testing import RegtestChain  # noqa: E402

ONION_MSG_INTERVAL = 0.3


def _stats(xs: list[float]) -> dict:
    return {"mean_ms": round(statistics.mean(xs) * 1000, 1), "median_ms": round(statistics.median(xs) * 1000, 1),
            "p95_ms": round(sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.95))] * 1000, 1)}


def _timed(f) -> tuple[float, object]:
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


def run(n: int | None = None) -> dict:
    from node_factory import NodeFactory, sync_blockheight, wait_for
    n = n or int(os.environ.get("OFFERS", "30"))
    out: dict = {"rounds": n}
    with tempfile.TemporaryDirectory() as tmp:
        chain = RegtestChain(Path(tmp) / "bitcoind")
        chain.start()
        chain.mine(101)
        nf = NodeFactory(Path(tmp), chain)
        try:
            payer, router, payee = nf.get_nodes(3, opts={"log-level": "info"})
            for node in (payer, router):
                addr = node.rpc.newaddr("bech32")["bech32"]
                chain.fund(addr, 20_000_000)
            chain.mine(1)
            wait_for(lambda: payer.rpc.listfunds()["outputs"] and router.rpc.listfunds()["outputs"])
            for a, b in ((payer, router), (router, payee)):
                a.connect(b)
                a.rpc.fundchannel(b.node_id, 5_000_000)
            chain.mine(6)
            sync_blockheight(payer, router, payee)
            for node in (payer, router, payee):
                wait_for(lambda node=node: len(node.rpc.listchannels()["channels"]) == 4
                         and len([x for x in node.rpc.listnodes()["nodes"] if "alias" in x]) == 3, timeout=120)
            for hops, dest in ((1, router), (2, payee)):
                invs = [dest.rpc.invoice(10_000, f"b11-{hops}-{i}", "bench") for i in range(n)]
                b11 = [_timed(lambda inv=inv: payer.rpc.pay(inv["bolt11"]))[0] for inv in invs]
                offer = dest.rpc.call("offer", {"amount": "10000msat", "description": f"bench {hops}"})["bolt12"]
                fetch, pay, both = [], [], []
                for _ in range(n):
                    # one invoice_request per round to the same peer: paced under connectd's
                    # onion message rate limit (one per 250 ms, Core Lightning's), which drops the excess
                    time.sleep(max(0.0, ONION_MSG_INTERVAL - (both[-1] if both else ONION_MSG_INTERVAL)))
                    t1, f = _timed(lambda: payer.rpc.call("fetchinvoice", {"offer": offer}))
                    t2, r = _timed(lambda f=f: payer.rpc.pay(f["invoice"]))
                    assert r["status"] == "complete"
                    fetch.append(t1)
                    pay.append(t2)
                    both.append(t1 + t2)
                out[f"{hops}_hop"] = {"bolt11_pay": _stats(b11), "bolt12_fetchinvoice": _stats(fetch),
                                      "bolt12_pay": _stats(pay), "bolt12_fetchinvoice_plus_pay": _stats(both)}
        finally:
            nf.teardown()
            chain.stop()
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
