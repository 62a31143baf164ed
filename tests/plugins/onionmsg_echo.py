#!/usr/bin/env python3
"""Records the onion messages its node receives (both hooks) and, for a
message carrying unknown field 77 and a reply path, answers along the reply
path with field 79 holding the same bytes (built with the project's own
onion code, sent with injectonionmessage, as Core Lightning's plugins do)."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pyln.client import Plugin  # noqa: E402

from common.blindedpath import BlindedHop, BlindedPath  # noqa: E402
from common.onion_message import OnionMsgTlv, build_onion_message  # noqa: E402

plugin = Plugin()
seen: list[dict] = []


def _path(js: dict) -> BlindedPath:
    return BlindedPath(bytes.fromhex(js["first_node_id"]), bytes.fromhex(js["first_path_key"]),
                       tuple(BlindedHop(bytes.fromhex(h["blinded_node_id"]), bytes.fromhex(h["encrypted_recipient_data"]))
                             for h in js["hops"]))


def _on(plugin, onion_message, hook):
    onion_message = dict(onion_message, hook=hook)
    seen.append(onion_message)
    unknown = {f["number"]: f["value"] for f in onion_message.get("unknown_fields", [])}
    if 77 in unknown and "reply_blindedpath" in onion_message:
        me = bytes.fromhex(plugin.rpc.getinfo()["id"])
        path = _path(onion_message["reply_blindedpath"])
        out = build_onion_message(os.urandom(32), os.urandom(32), [me], path,
                                  OnionMsgTlv(unknown={79: bytes.fromhex(unknown[77])}))
        plugin.rpc.call("injectonionmessage", {"path_key": out.path_key.hex(), "message": out.packet.hex()})
    return {"result": "continue"}


@plugin.hook("onion_message_recv")
def on_recv(plugin, onion_message, **kwargs):
    return _on(plugin, onion_message, "onion_message_recv")


@plugin.hook("onion_message_recv_secret")
def on_recv_secret(plugin, onion_message, **kwargs):
    return _on(plugin, onion_message, "onion_message_recv_secret")


@plugin.method("onionmsgs")
def onionmsgs(plugin):
    """Onion messages received so far, oldest first."""
    return {"messages": seen}


plugin.run()
