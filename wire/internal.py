"""Schemas of the internal (master <-> subdaemon, client <-> hsmd) protocols.

One CSV per daemon under `wire/csv/`, in the BOLT CSV format, with the extra
internal types (bool, node_id, amount_msat...).  Conventions: a reply is the
request number + 100, a failure the request number + 200; status messages
(0xFFF0 and up) are common to every daemon."""
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


@functools.lru_cache(maxsize=None)
def internal_schema(daemon: str) -> MessageSchema:
    """The schema of `daemon`'s link to the master (or, for hsmd, to any client)."""
    return MessageSchema.from_csv(os.path.join(CSV_DIR, f"{daemon}.csv"), extra_types=INTERNAL_TYPES,
                                  allow_trailing=False)


@functools.lru_cache(maxsize=None)
def status_schema() -> MessageSchema:
    return MessageSchema.from_csv(os.path.join(CSV_DIR, "status.csv"), extra_types=INTERNAL_TYPES,
                                  allow_trailing=False)


def is_status(msgtype: int) -> bool:
    return msgtype >= STATUS_FIRST
