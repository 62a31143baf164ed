"""Schemas of the internal (master <-> subdaemon, client <-> hsmd) protocols.

One CSV per daemon under `wire/csv/`, in the BOLT CSV format, with the extra
internal types (bool, node_id, amount_msat, wirestring...).  Conventions: a
reply is the request number + 100, a failure the request number + 200;
status messages (0xFFF0 and up) are common to every daemon.

Subtypes that two schemas share are declared once, in a CSV of subtypes
only (`SHARED`), read before the daemon's own."""
from __future__ import annotations

import functools
import os

from .fundamental import INTERNAL_TYPES
from .schema import MessageSchema

CSV_DIR = os.path.join(os.path.dirname(__file__), "csv")
STATUS_FIRST = 0xFFF0
REPLY_OFFSET = 100
FAIL_OFFSET = 200
DAEMONS = ("hsmd", "connectd", "gossipd", "channeld", "onchaind")
#: daemon -> CSVs of shared subtypes its schema includes (wire/csv/<name>.csv)
SHARED: dict[str, tuple[str, ...]] = {
    "channeld": ("onchain_channel", "shachain"),     # channeld_export_onchain_reply, channeld_core
    "onchaind": ("onchain_channel", "shachain"),     # onchaind_init, onchaind_state
}


def csv_text(name: str) -> str:
    with open(os.path.join(CSV_DIR, f"{name}.csv"), encoding="utf-8") as fh:
        return fh.read()


@functools.lru_cache(maxsize=None)
def internal_schema(daemon: str, keep_sealed: bool = False) -> MessageSchema:
    """The schema of `daemon`'s link to the master (or, for hsmd, to any
    client).  `keep_sealed`: sealed subtypes (a daemon's private state)
    decode unread, as the master, which only stores them, wants."""
    text = "".join(csv_text(shared) + "\n" for shared in SHARED.get(daemon, ())) + csv_text(daemon)
    return MessageSchema.from_csv_text(text, extra_types=INTERNAL_TYPES, allow_trailing=False,
                                       keep_sealed=keep_sealed)


@functools.lru_cache(maxsize=None)
def status_schema() -> MessageSchema:
    return MessageSchema.from_csv_text(csv_text("status"), extra_types=INTERNAL_TYPES, allow_trailing=False)


def is_status(msgtype: int) -> bool:
    return msgtype >= STATUS_FIRST
