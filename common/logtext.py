"""Making text safe to log: whatever a peer sends must never break a log line.

Three rules, as Core Lightning applies them:

* `peer_data`: BOLT 1 says the `data` of an `error`/`warning` that is not
  solely printable ASCII "SHOULD NOT be printed verbatim"; Core Lightning's
  `sanitize_error` prints it as hex then, and so do we.
* `printable`: every log line is printable ASCII; any other character
  (control characters, newlines, non-ASCII) becomes `?` (Core Lightning's
  `logv`), so a line can neither be split nor forged on a terminal.
* `fit_utf8`: a status message carries text in a u16-counted `utf8` field:
  the limit is in encoded *bytes*, and slicing by characters does not bound
  those (one character is up to 4 bytes).
"""
from __future__ import annotations

#: a status_log entry or status_fail desc: a u16 length, with room to spare
MAX_STATUS_TEXT = 65000
#: how much of a peer's error text we quote in a log line or an error of ours
MAX_PEER_TEXT = 1000

_PRINTABLE = frozenset(range(32, 127))
_TO_QMARK = {c: "?" for c in range(32)} | {127: "?"}


def printable(text: str) -> str:
    """`text` with every character outside printable ASCII replaced by `?`."""
    if text.isascii():
        return text.translate(_TO_QMARK)
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def peer_data(data: bytes, limit: int = MAX_PEER_TEXT) -> str:
    """A peer's free-form bytes (error/warning `data`) as log-safe text:
    verbatim if printable ASCII, else hex; at most `limit` characters."""
    if all(b in _PRINTABLE for b in data):
        text = data.decode("ascii")
    else:
        text = data.hex()
    if len(text) > limit:
        return f"{text[:limit]}... ({len(data)} bytes)"
    return text


def fit_utf8(text: str, max_bytes: int = MAX_STATUS_TEXT) -> str:
    """`text` cut so that its UTF-8 encoding is at most `max_bytes`, never
    mid-character; characters UTF-8 cannot encode (lone surrogates from a
    `surrogateescape` decode) become `?`."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return raw.decode("utf-8")
    return raw[:max_bytes].decode("utf-8", "ignore")
