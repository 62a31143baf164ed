#!/usr/bin/env python3
"""Puts an even feature bit no implementation knows (202) in the node's
node_announcement only: BOLT 7 then forbids payments *to* the node, except
for a BOLT 11 invoice without that bit (its invoices carry none)."""
from pyln.client import Plugin

plugin = Plugin(node_features=1 << 202)
plugin.run()
