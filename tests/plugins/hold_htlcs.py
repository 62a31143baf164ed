#!/usr/bin/env python3
"""Holds every incoming HTLC until `release` is called (the seed's "hold on
to that HTLC until you know you can deliver"); `release fail` fails them."""
from pyln.client import Plugin

plugin = Plugin()
held = []


@plugin.async_hook("htlc_accepted")
def on_htlc(onion, htlc, request, plugin, **kwargs):
    held.append(request)


@plugin.method("held")
def count(plugin):
    return {"held": len(held)}


@plugin.method("release")
def release(plugin, how="continue"):
    n = len(held)
    while held:
        req = held.pop()
        if how == "fail":
            req.set_result({"result": "fail", "failure_message": "2002"})
        else:
            req.set_result({"result": "continue"})
    return {"released": n}


plugin.run()
