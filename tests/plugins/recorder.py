#!/usr/bin/env python3
"""Records every notification of the topics it subscribes to, in order;
`recorded [topic]` returns them (the payload under the topic's key, as
Core Lightning wraps it)."""
from pyln.client import Plugin

plugin = Plugin()
TOPICS = ["invoice_creation", "invoice_payment", "sendpay_success", "sendpay_failure", "forward_event",
          "channel_opened", "channel_state_changed", "connect", "disconnect", "block_added", "coin_movement"]
seen: list[tuple[str, dict]] = []


def recorder(topic: str):
    def on(plugin, **kwargs):
        kwargs.pop("plugin", None)
        seen.append((topic, kwargs.get(topic, kwargs)))
    return on


for t in TOPICS:
    plugin.add_subscription(t, recorder(t))


@plugin.method("recorded")
def recorded(plugin, topic=None):
    """Notifications seen so far, oldest first."""
    return {"events": [{"topic": t, "payload": p} for t, p in seen if topic in (None, t)]}


plugin.run()
