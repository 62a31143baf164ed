#!/usr/bin/env python3
"""A pyln-client plugin exercising a method, an option, a subscription, a hook
and a call back into the node's RPC."""
from pyln.client import Plugin

# an experimental odd feature bit (201) for peers (init), node and invoices
plugin = Plugin(init_features=1 << 201, node_features=1 << 201, invoice_features=1 << 201)
events = []


@plugin.method("hello")
def hello(plugin, name="world"):
    """Greets {name}."""
    return {"greeting": f"{plugin.get_option('greeting')}, {name}!"}


@plugin.method("events")
def list_events(plugin):
    """What notifications this plugin got."""
    return {"events": events}


@plugin.method("whoami")
def whoami(plugin):
    """Calls back into lightningd."""
    return {"id": plugin.rpc.getinfo()["id"]}


@plugin.subscribe("connect")
def on_connect(plugin, connect, **kwargs):
    events.append({"connect": connect})


@plugin.subscribe("disconnect")
def on_disconnect(plugin, disconnect, **kwargs):
    events.append({"disconnect": disconnect})


@plugin.hook("peer_connected")
def on_peer_connected(peer, plugin, **kwargs):
    if plugin.get_option("reject") and peer["id"] == plugin.get_option("reject"):
        return {"result": "disconnect", "error_message": "go away"}
    return {"result": "continue"}


plugin.add_option("greeting", "Hello", "What to say")
plugin.add_option("reject", None, "A node id to refuse")
plugin.add_option("shout", False, "A flag", opt_type="flag")
plugin.run()
