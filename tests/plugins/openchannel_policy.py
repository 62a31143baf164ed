#!/usr/bin/env python3
"""An `openchannel` hook whose answer a test sets (`openchannel_policy`):
accept (`continue`, with mindepth, reserve, close_to as given), or reject;
`zeroconf_allow` (an option, as Core Lightning's zeroconf-selective.py)
answers mindepth 0 to that peer.  Every payload is kept (`openchannel_seen`)."""
from pyln.client import Plugin

plugin = Plugin()
policy = {"result": "continue"}
seen = []


@plugin.hook("openchannel")
def on_open(openchannel, plugin, **kwargs):
    seen.append(openchannel)
    if openchannel["id"] == plugin.options["zeroconf_allow"]["value"]:
        return {"result": "continue", "mindepth": 0}
    return policy


@plugin.method("openchannel_policy")
def set_policy(plugin, answer):
    policy.clear()
    policy.update(answer)
    return {"policy": policy}


@plugin.method("openchannel_seen")
def get_seen(plugin):
    return {"seen": seen}


plugin.add_option("zeroconf_allow", "", "A node id that gets zero-conf channels")
plugin.run()
