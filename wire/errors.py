"""Exception types raised by the wire codec.

Every malformed *input* to a decoder surfaces as :class:`DecodeError`; every
bad *value* handed to an encoder as :class:`EncodeError`; problems in a CSV
schema as :class:`SchemaError`.  All three subclass :class:`ValueError` so
callers that only care about "bad data" can catch one thing.
"""
from __future__ import annotations

__all__ = ["WireError", "DecodeError", "EncodeError", "SchemaError", "UnknownMessageError"]


class WireError(ValueError):
    """Base class of wire codec errors.

    ``path`` names the nested field where the problem was found (outermost
    first), so an error deep inside a TLV record reads like
    ``init.tlvs.networks.chains: truncated chain_hash``.
    """

    def __init__(self, message: str, path: tuple[str, ...] = ()) -> None:
        self.reason = message
        self.path = path
        super().__init__(f"{'.'.join(path)}: {message}" if path else message)

    def within(self, name: str) -> "WireError":
        """Return a copy of this error with ``name`` prepended to its path."""
        err = type(self)(self.reason, (name,) + self.path)
        # Keep any extra attributes subclasses carry (e.g. message type).
        for key, value in self.__dict__.items():
            if key not in ("reason", "path"):
                setattr(err, key, value)
        return err


class DecodeError(WireError):
    """Malformed input: truncated data, non-canonical encodings, bad TLVs..."""


class EncodeError(WireError):
    """A value cannot be encoded (wrong Python type, out of range, missing...)."""


class SchemaError(WireError):
    """A CSV schema is invalid, or a name is not defined in the schema."""


class UnknownMessageError(DecodeError):
    """An unknown *even* message type was received ("it's OK to be odd")."""

    def __init__(self, message: str, path: tuple[str, ...] = (), msgtype: int = -1) -> None:
        super().__init__(message, path)
        self.msgtype = msgtype
