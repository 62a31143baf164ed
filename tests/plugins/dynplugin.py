#!/usr/bin/env python3
"""A dynamic plugin, started and stopped with the `plugin` command."""
from pyln.client import Plugin

plugin = Plugin(dynamic=True)


@plugin.method("dynhello")
def dynhello(plugin):
    return {"opt": plugin.get_option("dynopt")}


plugin.add_option("dynopt", "default", "An option")
plugin.run()
