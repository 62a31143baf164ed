"""withdraw / txprepare / txsend / txdiscard (filled in with the wallet's transaction builder)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lightningd import LightningD


def register(ld: "LightningD") -> None:
    return None
