#!/usr/bin/env python3
"""An rpc_command hook that answers one call itself and rewrites another.
(It makes no RPC calls of its own: a plugin on rpc_command that calls the
node from a method would wait on itself, as in Core Lightning.)"""
from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("rpc_command")
def on_rpc_command(plugin, rpc_command, **kwargs):
    params = rpc_command.get("params")
    if rpc_command["method"] == "help" and params == {"command": "intercepted"}:
        return {"return": {"result": {"intercepted": True}}}
    if rpc_command["method"] == "help" and params == {"command": "rewritten"}:
        return {"replace": {"jsonrpc": "2.0", "id": rpc_command["id"], "method": "help",
                            "params": {"command": "getinfo"}}}
    return {"result": "continue"}


plugin.run()
