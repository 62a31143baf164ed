"""What a channeld is started for: the `mode` field of `channeld_init`
(wire/csv/channeld.csv).  Declared once, here, for the master (which
chooses it) and channeld (which runs it); docs/ARCHITECTURE.md, "channeld
modes", says what each does.  Stored nowhere: explicit values anyway."""
from __future__ import annotations

from enum import IntEnum


class ChanneldMode(IntEnum):
    FUNDER = 0          # open a channel (fundchannel)
    FUNDEE = 1          # accept the peer's open_channel (channeld_init.open_msg)
    RESUME = 2          # run a stored channel with its peer
    SIGN_LAST = 3       # only sign our latest commitment (channeld_sign_last_tx)
    EXPORT_ONCHAIN = 4  # only export the channel for onchaind (channeld_export_onchain)


MODE_FUNDER = ChanneldMode.FUNDER
MODE_FUNDEE = ChanneldMode.FUNDEE
MODE_RESUME = ChanneldMode.RESUME
MODE_SIGN_LAST = ChanneldMode.SIGN_LAST
MODE_EXPORT_ONCHAIN = ChanneldMode.EXPORT_ONCHAIN
