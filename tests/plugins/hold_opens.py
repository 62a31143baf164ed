#!/usr/bin/env python3
"""Holds every incoming open_channel (the `openchannel` hook) until
`release_opens` is called: a test can act between the opener's
`open_channel` and our `accept_channel`."""
from pyln.client import Plugin

plugin = Plugin()
held = []


@plugin.async_hook("openchannel")
def on_open(openchannel, request, plugin, **kwargs):
    held.append(request)


@plugin.method("held_opens")
def count(plugin):
    return {"held": len(held)}


@plugin.method("release_opens")
def release(plugin):
    n = len(held)
    while held:
        held.pop().set_result({"result": "continue"})
    return {"released": n}


plugin.run()
