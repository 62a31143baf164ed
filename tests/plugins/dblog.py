#!/usr/bin/env python3
"""A db_write plugin (Core Lightning's tests/plugins/dblog.py): replays every
transaction's `writes` into its own SQLite database (`--dblog-file`), in
one transaction each, checking `data_version` goes up by one every time.
Writes arrive before `init` (the node's migrations): they are replayed as
they come, the file being known from the command line's option value only
at init, so they are kept until then.

`dblog-refuse-next`: answer anything but `continue` to the next call (the
node must stop without committing it).  `dblog-status` tells the last
data_version accepted."""
import sqlite3

from pyln.client import Plugin

plugin = Plugin()
state = {"conn": None, "pending": [], "last": None, "calls": 0, "refuse": False}


def replay(version: int, writes: list) -> None:
    conn = state["conn"]
    conn.execute("BEGIN")
    for w in writes:
        conn.execute(w)
    conn.execute("COMMIT")
    state["last"] = version


@plugin.init()
def init(configuration, options, plugin, **kwargs):
    state["conn"] = sqlite3.connect(options["dblog-file"], isolation_level=None)
    for version, writes in state["pending"]:
        replay(version, writes)
    state["pending"] = []


@plugin.hook("db_write")
def db_write(plugin, data_version, writes, **kwargs):
    state["calls"] += 1
    if state["refuse"]:
        return {"result": "abort"}
    last = state["last"] if state["conn"] is not None else (state["pending"][-1][0] if state["pending"] else None)
    if last is not None and data_version != last + 1:
        plugin.log(f"data_version {data_version} after {last}", level="broken")
        return {"result": "abort"}
    if state["conn"] is None:
        state["pending"].append((data_version, writes))
        state["last"] = data_version
    else:
        replay(data_version, writes)
    return {"result": "continue"}


@plugin.method("dblog-refuse-next")
def refuse_next(plugin):
    """Refuse the next db_write."""
    state["refuse"] = True
    return {}


@plugin.method("dblog-status")
def status(plugin):
    """The last data_version replayed, and how many calls."""
    return {"data_version": state["last"], "calls": state["calls"]}


plugin.add_option("dblog-file", None, "The db file to create.")
plugin.run()
