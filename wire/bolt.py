"""The default schemas built from the BOLT spec CSV shipped as ``wire/csv/bolt.csv``.

The spec's CSV declares two message namespaces side by side: peer messages
(BOLT 1/2/7, type on the wire between peers) and BOLT 4 onion *failure*
messages (carried encrypted inside ``update_fail_htlc``).  Their numbers
collide (18 is ``ping`` and ``final_incorrect_cltv_expiry``), so they are
loaded as two schemas sharing the same TLV streams and subtypes.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from .schema import MessageSchema

__all__ = ["ONION_FAILURE_MESSAGES", "bolt12_schema", "bolt_csv_text", "bolt_schema", "onion_failure_schema"]

#: Names of the BOLT 4 failure messages in the BOLT CSV (the "failure_code" namespace).
ONION_FAILURE_MESSAGES = frozenset({
    "temporary_node_failure", "permanent_node_failure", "required_node_feature_missing",
    "invalid_onion_version", "invalid_onion_hmac", "invalid_onion_key",
    "temporary_channel_failure", "permanent_channel_failure",
    "required_channel_feature_missing", "unknown_next_peer", "amount_below_minimum",
    "fee_insufficient", "incorrect_cltv_expiry", "expiry_too_soon",
    "incorrect_or_unknown_payment_details", "final_incorrect_cltv_expiry",
    "final_incorrect_htlc_amount", "channel_disabled", "expiry_too_far",
    "invalid_onion_payload", "mpp_timeout", "invalid_onion_blinding",
})


@lru_cache(maxsize=1)
def bolt_csv_text() -> str:
    """The BOLT CSV shipped as package data."""
    return resources.files(__package__).joinpath("csv", "bolt.csv").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def bolt_schema() -> MessageSchema:
    """Peer messages of the BOLTs plus every TLV stream and subtype of the CSV.

    Cached: the schema is immutable, so every caller shares one instance.
    """
    return MessageSchema.from_csv_text(bolt_csv_text(), exclude=ONION_FAILURE_MESSAGES)


@lru_cache(maxsize=1)
def onion_failure_schema() -> MessageSchema:
    """BOLT 4 failure messages (``failure_code`` + data), e.g. ``temporary_node_failure``."""
    return MessageSchema.from_csv_text(bolt_csv_text(), include=ONION_FAILURE_MESSAGES)


@lru_cache(maxsize=1)
def bolt12_schema() -> MessageSchema:
    """The BOLT 12 TLV streams (``offer``, ``invoice_request``, ``invoice``,
    ``invoice_error``) from ``csv/bolt12.csv``, with the BOLT CSV's subtypes
    (``blinded_path``) they use."""
    text = resources.files(__package__).joinpath("csv", "bolt12.csv").read_text(encoding="utf-8")
    return MessageSchema.from_csv_text(bolt_csv_text() + "\n" + text, exclude=ONION_FAILURE_MESSAGES)
