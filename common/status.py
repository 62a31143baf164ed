"""Subdaemon side of the generic status messages: log lines, io traces,
billboard and fatal failures all go to the master over the master link."""
from __future__ import annotations

import sys
import traceback

from wire import EncodeError
from wire.internal import status_schema

from .logtext import MAX_STATUS_TEXT, fit_utf8
from .msgconn import ConnectionClosed, MsgConn

# Same numbering as lightningd/log.py
IO, TRACE, DEBUG, INFO, UNUSUAL, BROKEN = range(6)

# status_fail reasons
FAIL_MASTER_IO = 1     # the master link broke
FAIL_HSM_IO = 2        # the hsmd link broke
FAIL_INTERNAL = 3      # a bug: an exception nobody handled
FAIL_BAD_INPUT = 4     # the master sent something we cannot use


class Status:
    def __init__(self, conn: MsgConn | None, level: int = DEBUG) -> None:
        self.conn = conn
        self.level = level

    def _send(self, name: str, fields: dict) -> None:
        """Logging must never fail: text fields are cut to fit their u16
        length by the caller; anything else that cannot be encoded is a bug
        of ours, reported as such rather than raised into whatever was
        logging (an exception here would end the daemon on a peer's input)."""
        if self.conn is None or self.conn.closed:
            return
        try:
            raw = status_schema().encode(name, fields)
        except (EncodeError, UnicodeError) as e:
            raw = status_schema().encode("status_log", {"level": BROKEN, "peer": b"",
                                                        "entry": fit_utf8(f"unencodable {name}: {e}")})
        try:
            self.conn.send(raw)
        except ConnectionClosed:
            pass

    def log(self, level: int, msg: str, peer: bytes | None = None) -> None:
        if level < self.level:
            return
        if self.conn is None:
            print(msg, file=sys.stderr)
            return
        self._send("status_log", {"level": level, "peer": peer or b"", "entry": fit_utf8(msg)})

    def trace(self, msg: str, peer: bytes | None = None) -> None:
        self.log(TRACE, msg, peer)

    def debug(self, msg: str, peer: bytes | None = None) -> None:
        self.log(DEBUG, msg, peer)

    def info(self, msg: str, peer: bytes | None = None) -> None:
        self.log(INFO, msg, peer)

    def unusual(self, msg: str, peer: bytes | None = None) -> None:
        self.log(UNUSUAL, msg, peer)

    def broken(self, msg: str, peer: bytes | None = None) -> None:
        self.log(BROKEN, msg, peer)

    def io(self, outgoing: bool, who: str, data: bytes, peer: bytes | None = None) -> None:
        if self.level > IO:
            return
        self._send("status_io", {"outgoing": outgoing, "peer": peer or b"", "who": fit_utf8(who),
                                 "data": data})

    def billboard(self, text: str, perm: bool = False) -> None:
        self._send("status_peer_billboard", {"perm": perm, "happenings": fit_utf8(text)})

    def version(self, version: str) -> None:
        self._send("status_version", {"version": version})

    def fail(self, reason: int, desc: str) -> None:
        self._send("status_fail", {"reason": reason, "desc": fit_utf8(desc, MAX_STATUS_TEXT)})

    def fail_exception(self, e: BaseException) -> None:
        from .sync_hsm import HsmLinkBroken
        if isinstance(e, HsmLinkBroken):   # not our bug: hsmd is gone
            self.fail(FAIL_HSM_IO, str(e))
            return
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        self.fail(FAIL_INTERNAL, f"{type(e).__name__}: {e}\n{tb}")
