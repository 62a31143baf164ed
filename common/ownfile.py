"""Removing a file we created, only if it is still ours.

A node that is shutting down must not unlink a socket or pid file that a
new node (same directory, after a wipe) has created since: compare the file
now at the path with the one we made (device and inode)."""
from __future__ import annotations

import os


def identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def unlink_if_ours(path: str, ours: tuple[int, int] | None) -> bool:
    """Unlink path if it is still the file identified by ours; True if done."""
    if ours is None or identity(path) != ours:
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True
