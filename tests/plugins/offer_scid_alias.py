#!/usr/bin/env python3
"""Adds option_scid_alias (odd bit 47) to our init features: a feature the
node itself does not implement, offered by a plugin."""
from pyln.client import Plugin

plugin = Plugin(init_features=1 << 47)
plugin.run()
