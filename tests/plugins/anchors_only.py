#!/usr/bin/env python3
"""An `openchannel` hook that keeps every payload's channel_type and
refuses channels without option_anchors (bit 22): what an operator who
wants only anchors channels would write."""
from pyln.client import Plugin

plugin = Plugin()
seen = []


@plugin.hook("openchannel")
def on_open(openchannel, plugin, **kwargs):
    ctype = openchannel.get("channel_type")
    seen.append(ctype)
    if ctype is None or 22 not in ctype["bits"]:
        return {"result": "reject", "error_message": "anchors channels only"}
    return {"result": "continue"}


@plugin.method("seen_channel_types")
def seen_types(plugin):
    return {"channel_types": seen}


plugin.run()
