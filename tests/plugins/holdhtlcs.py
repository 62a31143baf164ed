#!/usr/bin/env python3
"""Holds every incoming HTLC (its htlc_accepted hook call is not answered)
until told: `holdhtlcs-list` lists the payment hashes held,
`holdhtlcs-release hash preimage` resolves them with the preimage,
`holdhtlcs-fail hash` fails them (incorrect_or_unknown_payment_details)."""
from pyln.client import Plugin

plugin = Plugin()
held: dict[str, list] = {}


@plugin.async_hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, request, plugin, **kwargs):
    held.setdefault(htlc["payment_hash"], []).append(request)


@plugin.method("holdhtlcs-list")
def holdhtlcs_list(plugin):
    return {"held": sorted(held)}


@plugin.method("holdhtlcs-release")
def holdhtlcs_release(plugin, payment_hash, preimage):
    reqs = held.pop(payment_hash, [])
    for r in reqs:
        r.set_result({"result": "resolve", "payment_key": preimage})
    return {"released": len(reqs)}


@plugin.method("holdhtlcs-fail")
def holdhtlcs_fail(plugin, payment_hash):
    reqs = held.pop(payment_hash, [])
    for r in reqs:
        r.set_result({"result": "fail", "failure_message": "400f"})
    return {"failed": len(reqs)}


plugin.run()
