#!/usr/bin/env python3
"""Records the onion payload of every HTLC it is asked about
(htlc_accepted) and lets it continue; `payloads` returns them (hex, with
their length prefix).  After `replace_payload HEX`, it continues with that
payload instead (no length prefix), as Core Lightning's hook allows."""
from pyln.client import Plugin

plugin = Plugin()
seen: list[str] = []
replacement: list[str] = []


@plugin.hook("htlc_accepted")
def on_htlc(onion, htlc, plugin, **kwargs):
    seen.append(onion.get("payload", ""))
    if replacement:
        return {"result": "continue", "payload": replacement[-1]}
    return {"result": "continue"}


@plugin.method("payloads")
def payloads(plugin):
    return {"payloads": seen}


@plugin.method("replace_payload")
def replace_payload(plugin, payload):
    replacement.append(payload)
    return {}


plugin.run()
