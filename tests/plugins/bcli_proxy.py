#!/usr/bin/env python3
"""A Bitcoin backend plugin: answers the five backend calls by proxying to
regtestd (the node then never talks to bitcoind itself)."""
import os
from decimal import Decimal

from bitcoinrpc.authproxy import AuthServiceProxy, JSONRPCException
from pyln.client import Plugin

plugin = Plugin()
calls = {"n": 0}


def rpc():
    return AuthServiceProxy(plugin.get_option("proxy-url"), timeout=30)


@plugin.method("getchaininfo")
def getchaininfo(plugin, last_height=None, **kw):
    calls["n"] += 1
    i = rpc().getblockchaininfo()
    return {"chain": i["chain"], "headercount": i["headers"], "blockcount": i["blocks"],
            "ibd": i["initialblockdownload"]}


@plugin.method("estimatefees")
def estimatefees(plugin, **kw):
    calls["n"] += 1
    r = rpc().estimatesmartfee(6)
    rate = int(Decimal(str(r.get("feerate", "0.0001"))) * 100_000_000)
    return {"feerate_floor": 1000, "feerates": [{"blocks": b, "feerate": rate} for b in (2, 6, 12, 100)]}


@plugin.method("getrawblockbyheight")
def getrawblockbyheight(plugin, height, **kw):
    calls["n"] += 1
    try:
        h = rpc().getblockhash(height)
    except JSONRPCException:
        return {"blockhash": None, "block": None}
    return {"blockhash": h, "block": rpc().getblock(h, 0)}


@plugin.method("getutxout")
def getutxout(plugin, txid, vout, **kw):
    r = rpc().gettxout(txid, vout)
    if r is None:
        return {"amount": None, "script": None}
    return {"amount": int(Decimal(str(r["value"])) * 100_000_000) * 1000, "script": r["scriptPubKey"]["hex"]}


@plugin.method("sendrawtransaction")
def sendrawtransaction(plugin, tx, allowhighfees=False, **kw):
    try:
        rpc().sendrawtransaction(tx)
    except JSONRPCException as e:
        return {"success": False, "errmsg": str(e.error)}
    return {"success": True, "errmsg": ""}


@plugin.method("proxycalls")
def proxycalls(plugin):
    return calls


plugin.add_option("proxy-url", os.environ.get("PROXY_URL", ""), "regtestd URL with credentials")
plugin.run()
