"""The master's record of a channel: what it stores, its Core Lightning
state name, and the JSON `listpeerchannels` shows.  The channel's protocol
state itself (channeld/core) is opaque here: the master stores it and hands
it back to the next channeld."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bitcoin.tx import Tx
from common.features import OPTION_ANCHORS, OPTION_SCID_ALIAS, OPTION_ZEROCONF, channel_type_names
from common.scid import ShortChannelId
from wire.codec import Sealed
from wire.internal import internal_schema

from .db import from_sql_u64, to_sql_u64

if TYPE_CHECKING:
    from .subd import Subd

#: the master's view of channeld.csv: channeld's own state stays sealed
_CHANNELD = internal_schema("channeld", keep_sealed=True)


class ChannelState(StrEnum):
    """Core Lightning's state names (stored by value)."""
    AWAITING_LOCKIN = "CHANNELD_AWAITING_LOCKIN"
    NORMAL = "CHANNELD_NORMAL"
    SHUTTING_DOWN = "CHANNELD_SHUTTING_DOWN"
    SIGEXCHANGE = "CLOSINGD_SIGEXCHANGE"
    CLOSING_COMPLETE = "CLOSINGD_COMPLETE"
    AWAITING_UNILATERAL = "AWAITING_UNILATERAL"
    FUNDING_SPEND_SEEN = "FUNDING_SPEND_SEEN"
    ONCHAIN = "ONCHAIN"
    CLOSED = "CLOSED"


AWAITING_LOCKIN = ChannelState.AWAITING_LOCKIN
NORMAL = ChannelState.NORMAL
SHUTTING_DOWN = ChannelState.SHUTTING_DOWN
SIGEXCHANGE = ChannelState.SIGEXCHANGE
CLOSING_COMPLETE = ChannelState.CLOSING_COMPLETE
AWAITING_UNILATERAL = ChannelState.AWAITING_UNILATERAL
FUNDING_SPEND_SEEN = ChannelState.FUNDING_SPEND_SEEN
ONCHAIN = ChannelState.ONCHAIN
CLOSED = ChannelState.CLOSED

# Where each state may go.  Any state before the funding output is spent can
# end in our unilateral close or see the funding spent (by anyone); the
# protocol states follow channeld's core.
_BEFORE_SPEND = frozenset({AWAITING_UNILATERAL, FUNDING_SPEND_SEEN})
TRANSITIONS: dict[ChannelState, frozenset[ChannelState]] = {
    AWAITING_LOCKIN: frozenset({NORMAL, SHUTTING_DOWN, SIGEXCHANGE}) | _BEFORE_SPEND,
    NORMAL: frozenset({SHUTTING_DOWN, SIGEXCHANGE, CLOSING_COMPLETE}) | _BEFORE_SPEND,
    SHUTTING_DOWN: frozenset({SIGEXCHANGE, CLOSING_COMPLETE}) | _BEFORE_SPEND,
    SIGEXCHANGE: frozenset({CLOSING_COMPLETE}) | _BEFORE_SPEND,
    CLOSING_COMPLETE: _BEFORE_SPEND,           # (a mutual close that never confirms can still be forced)
    AWAITING_UNILATERAL: frozenset({FUNDING_SPEND_SEEN}),
    FUNDING_SPEND_SEEN: frozenset({ONCHAIN}),
    ONCHAIN: frozenset({CLOSED}),
    CLOSED: frozenset(),
}


class InvalidTransition(Exception):
    """A move the state table does not have: a bug of ours."""

# channeld/core state -> ours, while channeld runs the channel
FROM_CORE = {"awaiting_lockin": AWAITING_LOCKIN, "normal": NORMAL, "shutting_down": SHUTTING_DOWN,
             "closing_negotiation": SIGEXCHANGE, "closed": CLOSING_COMPLETE}
ACTIVE = (AWAITING_LOCKIN, NORMAL, SHUTTING_DOWN, SIGEXCHANGE)       # channeld's business
ON_CHAIN = (CLOSING_COMPLETE, AWAITING_UNILATERAL, FUNDING_SPEND_SEEN, ONCHAIN)


@dataclass
class ChannelRecord:
    dbid: int
    peer_id: bytes
    channel_id: bytes
    state: ChannelState
    opener: str
    funding_txid: bytes
    funding_outnum: int
    funding_sat: int
    minimum_depth: int
    summary: dict
    core: Sealed                 # channeld_core: channeld's own state, never opened here
    config: dict
    fee_base_msat: int
    fee_ppm: int
    htlc_minimum_msat: int
    htlc_maximum_msat: int
    cltv_delta: int
    announce: bool = True
    funding_height: int | None = None
    funding_txindex: int | None = None
    closer: str | None = None
    close_cause: str | None = None
    closing_tx: bytes | None = None
    last_tx: bytes | None = None
    spend_txid: bytes | None = None
    spend_height: int | None = None
    created_at: int = field(default_factory=lambda: int(time.time()))
    #: accept any feerate from the peer (setchannel ignorefeelimits)
    ignore_fee_limits: bool = False
    #: our alias for the channel (sent in channel_ready: forwards to it reach
    #: this channel) and the peer's (received: for our invoices' route hints)
    alias_local: int | None = None
    alias_remote: int | None = None
    #: the peer's policy for its direction of an unannounced channel, from the
    #: channel_update it sent us alone: fee_base_msat, fee_proportional_millionths,
    #: cltv_expiry_delta, htlc_minimum_msat, htlc_maximum_msat, timestamp, enabled
    remote_update: dict | None = None
    state_changes: list[dict] = field(default_factory=list)
    # not stored
    subd: "Subd | None" = None
    #: channel_reestablish exchanged on the peer's current connection (or the
    #: channel opened on it): BOLT 2 lets nothing else about the channel go
    #: to the peer before, our private channel_update included
    reestablished: bool = True
    billboard: str | None = None
    onchain_status: list[str] = field(default_factory=list)   # onchaind's, one line per output
    # setchannel's enforcedelay: the policy before the last change, still
    # honoured on forwards until this time.monotonic() (Core Lightning: 600 s)
    old_policy: tuple[int, int, int, int] | None = None       # fee base, ppm, htlc min, htlc max
    old_policy_until: float = 0.0

    def forward_allowed(self, amount_in: int, amount_out: int, now: float) -> tuple[bool, bool]:
        """(fee paid, amount within htlc min/max) by our current policy for
        this outgoing channel, or by the previous one during its grace period."""
        policies = [(self.fee_base_msat, self.fee_ppm, self.htlc_minimum_msat, self.htlc_maximum_msat)]
        if self.old_policy is not None and now < self.old_policy_until:
            policies.append(self.old_policy)
        fee_ok = any(amount_in >= amount_out + base + amount_out * ppm // 1_000_000 for base, ppm, _, _ in policies)
        range_ok = any(lo <= amount_out <= hi for _, _, lo, hi in policies)
        return fee_ok, range_ok

    @property
    def scid(self) -> ShortChannelId | None:
        if self.funding_height is None or self.funding_txindex is None:
            return None
        return ShortChannelId(self.funding_height, self.funding_txindex, self.funding_outnum)

    @property
    def scid_alias_type(self) -> bool:
        """option_scid_alias in the channel type: the real short channel id
        is never given out nor accepted for forwards into the channel."""
        return OPTION_SCID_ALIAS in self.channel_type_bits

    @property
    def scid_or_alias(self) -> ShortChannelId | None:
        """Core Lightning's channel_scid_or_local_alias: how we name the
        channel in routes and records (the alias until the funding confirms)."""
        if self.scid is not None:
            return self.scid
        return ShortChannelId.from_int(self.alias_local) if self.alias_local is not None else None

    def forwards_by(self, scid: int) -> bool:
        """Does an onion's short_channel_id name this channel?  BOLT 2: our
        alias always; the real one unless the type is option_scid_alias."""
        if self.alias_local is not None and scid == self.alias_local:
            return True
        return self.scid is not None and self.scid.to_int() == scid and not self.scid_alias_type

    def names(self, scid: str) -> bool:
        """Is `scid` (text) the real short channel id or our alias of this channel?"""
        return (self.scid is not None and str(self.scid) == scid) or (
            self.alias_local is not None and str(ShortChannelId.from_int(self.alias_local)) == scid)

    @property
    def funding_txid_hex(self) -> str:
        return self.funding_txid[::-1].hex()

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def channel_type_bits(self) -> list[int]:
        """The negotiated channel_type."""
        return self.summary["channel_type"]["bits"]

    @property
    def anchors(self) -> bool:
        return OPTION_ANCHORS in self.channel_type_bits

    def channel_type_json(self) -> dict:
        """Core Lightning's `channel_type` object: bits and their names."""
        bits = self.channel_type_bits
        return {"bits": bits, "names": channel_type_names(bits)}

    def set_state(self, new: ChannelState, cause: str, message: str) -> dict | None:
        """Move to `new` (no-op if there already); the change as Core
        Lightning's state_changes entry.  InvalidTransition for a move the
        table does not allow."""
        new = ChannelState(new)
        if new == self.state:
            return None
        if new not in TRANSITIONS[ChannelState(self.state)]:
            raise InvalidTransition(f"channel {self.dbid}: {self.state} -> {new} ({message})")
        change = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "old_state": self.state,
                  "new_state": new, "cause": cause, "message": message}
        self.state_changes.append(change)
        self.state = new
        return change

    # -- database ------------------------------------------------------------------
    COLUMNS = ("dbid", "peer_id", "channel_id", "state", "opener", "funding_txid", "funding_outnum",
               "funding_sat", "funding_height", "funding_txindex", "minimum_depth", "announce", "summary",
               "core", "config", "fee_base_msat", "fee_ppm", "htlc_minimum_msat", "htlc_maximum_msat",
               "cltv_delta", "closer", "close_cause", "closing_tx", "last_tx", "spend_txid", "spend_height",
               "created_at", "ignore_fee_limits", "alias_local", "alias_remote", "remote_update")

    def row(self) -> tuple:
        return (self.dbid, self.peer_id, self.channel_id, self.state, self.opener, self.funding_txid,
                self.funding_outnum, self.funding_sat, self.funding_height, self.funding_txindex,
                self.minimum_depth, int(self.announce), self.summary_blob(), self.core.data.hex(),
                self.config_blob(), self.fee_base_msat, self.fee_ppm, self.htlc_minimum_msat,
                self.htlc_maximum_msat, self.cltv_delta, self.closer, self.close_cause, self.closing_tx,
                self.last_tx, self.spend_txid, self.spend_height, self.created_at, int(self.ignore_fee_limits),
                _u64(self.alias_local), _u64(self.alias_remote),
                json.dumps(self.remote_update) if self.remote_update is not None else None)

    # channels.summary, .config and .core hold the hex of the records'
    # encodings (TEXT columns, on PostgreSQL too)
    def summary_blob(self) -> str:
        """How channels.summary stores `summary`: its channel_summary encoding."""
        return _CHANNELD.encode_subtype("channel_summary", self.summary).hex()

    def config_blob(self) -> str:
        """How channels.config stores `config`: its channeld_config encoding."""
        return _CHANNELD.encode_subtype("channeld_config", self.config).hex()

    @classmethod
    def from_row(cls, r: tuple) -> "ChannelRecord":
        d = dict(zip(cls.COLUMNS, r))
        d["summary"] = _CHANNELD.decode_subtype("channel_summary", bytes.fromhex(d["summary"]))
        d["config"] = _CHANNELD.decode_subtype("channeld_config", bytes.fromhex(d["config"]))
        d["core"] = Sealed("channeld_core", bytes.fromhex(d["core"]))
        d["announce"] = bool(d["announce"])
        d["ignore_fee_limits"] = bool(d["ignore_fee_limits"])
        for k in ("alias_local", "alias_remote"):
            d[k] = from_sql_u64(d[k]) if d[k] is not None else None
        d["remote_update"] = json.loads(d["remote_update"]) if d["remote_update"] else None
        d["state"] = ChannelState(d["state"])
        return cls(**d)

    # -- listpeerchannels ------------------------------------------------------------
    def to_json(self, connected: bool, our_id: bytes) -> dict[str, Any]:
        s = self.summary
        total = self.funding_sat * 1000
        d: dict[str, Any] = {
            "peer_id": self.peer_id.hex(), "peer_connected": connected, "state": str(self.state),
            "channel_type": self.channel_type_json(), "opener": self.opener,
            "features": ["option_static_remotekey"] + (["option_anchors"] if self.anchors else [])
            + (["option_scid_alias"] if self.scid_alias_type else [])
            + (["option_zeroconf"] if OPTION_ZEROCONF in self.channel_type_bits else []),
            "channel_id": self.channel_id.hex(), "funding_txid": self.funding_txid_hex,
            "funding_outnum": self.funding_outnum, "private": not self.announce,
            "funding": {"local_funds_msat": total if self.opener == "local" else 0,
                        "remote_funds_msat": total if self.opener == "remote" else 0,
                        "pushed_msat": 0},
            "to_us_msat": s["to_us_msat"], "min_to_us_msat": s["to_us_msat"],
            "max_to_us_msat": s["to_us_msat"], "total_msat": total,
            "fee_base_msat": self.fee_base_msat, "fee_proportional_millionths": self.fee_ppm,
            "dust_limit_msat": s["our_dust_limit_sat"] * 1000,
            "their_max_htlc_value_in_flight_msat": s["their_max_htlc_value_in_flight_msat"],
            "our_max_htlc_value_in_flight_msat": s["our_max_htlc_value_in_flight_msat"],
            "their_reserve_msat": s["their_reserve_sat"] * 1000,
            "our_reserve_msat": s["our_reserve_sat"] * 1000,
            "spendable_msat": s["spendable_msat"] if self.state == NORMAL and connected else 0,
            "receivable_msat": s["receivable_msat"] if self.state == NORMAL and connected else 0,
            "minimum_htlc_in_msat": s["our_htlc_minimum_msat"],
            "minimum_htlc_out_msat": self.htlc_minimum_msat, "maximum_htlc_out_msat": self.htlc_maximum_msat,
            "their_to_self_delay": s["their_to_self_delay"], "our_to_self_delay": s["our_to_self_delay"],
            "max_accepted_htlcs": s["our_max_accepted_htlcs"],
            "state_changes": list(self.state_changes),
            "status": list(self.onchain_status) or ([self.billboard] if self.billboard else []),
            "htlcs": [{"direction": h["direction"], "id": h["id"], "amount_msat": h["amount_msat"],
                       "expiry": h["expiry"], "payment_hash": h["payment_hash"].hex(), "state": h["state"]}
                      for h in s["htlcs"]],
            "feerate": {"perkw": s["feerate_per_kw"], "perkb": s["feerate_per_kw"] * 4},
        }
        if self.opener == "local":
            d["funding"]["pushed_msat"] = total - s["to_us_msat"] if not s["htlcs"] and \
                self.state == AWAITING_LOCKIN else 0
        if self.scid is not None:
            d["short_channel_id"] = str(self.scid)
            d["direction"] = 0 if our_id < self.peer_id else 1   # BOLT 7: 0 if we are node_1
        alias = {k: str(ShortChannelId.from_int(v)) for k, v in (("local", self.alias_local),
                                                                  ("remote", self.alias_remote)) if v is not None}
        if alias:
            d["alias"] = alias
        # our channel_update's policy, and the peer's (Core Lightning's updates)
        d["updates"] = {"local": {"htlc_minimum_msat": self.htlc_minimum_msat,
                                  "htlc_maximum_msat": self.htlc_maximum_msat, "cltv_expiry_delta": self.cltv_delta,
                                  "fee_base_msat": self.fee_base_msat,
                                  "fee_proportional_millionths": self.fee_ppm}}
        if self.remote_update is not None:
            d["updates"]["remote"] = {k: self.remote_update[k] for k in (
                "htlc_minimum_msat", "htlc_maximum_msat", "cltv_expiry_delta", "fee_base_msat",
                "fee_proportional_millionths")}
        if self.closer:
            d["closer"] = self.closer
        if self.ignore_fee_limits:
            d["ignore_fee_limits"] = True       # Core Lightning shows it only when set
        if self.last_tx is not None and self.state in ON_CHAIN + (AWAITING_UNILATERAL,):
            d["scratch_txid"] = _txid(self.last_tx)
        return d


def _u64(v: int | None) -> int | None:
    return to_sql_u64(v) if v is not None else None


def _txid(raw: bytes) -> str:
    return Tx.parse(raw).txid_hex
