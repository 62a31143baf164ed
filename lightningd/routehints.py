"""Route hints of our invoices (BOLT 11 `r` fields), chosen as Core
Lightning's `invoice` chooses them (lightningd/routehint.c, invoice.c):

- Candidates: our channels whose peer's policy for its direction towards us
  we know (its public channel_update from the graph, or the one it sent us
  alone for an unannounced channel), normal, with the peer's policy, our
  receivable amount (capped by its htlc_maximum_msat) as capacity.  A peer
  with no other channel into it (a dead end) or not connected is left out,
  as are private channels unless `exposeprivatechannels` says otherwise or
  we have no public channel at all.
- The hint names the channel as the peer knows it: its alias (channel_ready)
  for option_scid_alias channels (BOLT 2 MUST NOT use the real one),
  unannounced channels and channels not confirmed yet; else the real
  short channel id.
- One candidate able to take the whole amount, drawn at random weighted by
  the fraction of the channel it would leave unused, when we have public
  channels; otherwise (or if none can) enough candidates to add up to the
  amount, least recently used first (the invoice then needs MPP).
- Warnings as Core Lightning's: no capacity at all, or enough only with
  offline peers, dead ends, or unexposed private channels."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from common.bolt11 import RouteHintHop
from common.scid import ShortChannelId

from . import channel as C
from .jsonrpc_errors import INVOICE_HINTS_GAVE_NO_ROUTES, RpcError

if TYPE_CHECKING:
    from .channel import ChannelRecord
    from .channel_control import ChannelControl
    from .gossip_control import GossipControl

WARNINGS = {
    "warning_capacity": "Insufficient incoming channel capacity to pay invoice",
    "warning_offline": "Insufficient incoming capacity, once offline peers were excluded",
    "warning_deadends": "Insufficient incoming capacity, once dead-end peers were excluded",
    "warning_private_unused": "Insufficient incoming capacity, once private channels were excluded "
                              "(try exposeprivatechannels=true?)",
    "warning_mpp": "The invoice is only payable by MPP-capable payers.",
}


@dataclass
class Candidate:
    rec: "ChannelRecord"
    hop: RouteHintHop
    capacity: int           # msat it can receive


@dataclass
class Capacities:
    available: int = 0      # of the candidates kept
    private: int = 0        # private channels left out
    deadend: int = 0
    offline: int = 0


def hint_scid(rec: "ChannelRecord") -> ShortChannelId | None:
    """The short channel id the peer forwards into the channel by, for our
    route hints and blinded paths (BOLT 2 channel_ready): its alias for an
    option_scid_alias channel (never the real one: None until we have it),
    an unannounced or unconfirmed one; else the real one."""
    remote = ShortChannelId.from_int(rec.alias_remote) if rec.alias_remote is not None else None
    if rec.scid_alias_type:
        return remote
    if remote is not None and (not rec.announce or rec.scid is None):
        return remote
    return rec.scid


class RouteHints:
    """State kept between invoices: the round-robin order of channels
    already given as hints (Core Lightning's rr_number)."""

    def __init__(self, channels: "ChannelControl", gossip: "GossipControl",
                 is_connected: Callable[[bytes], bool]) -> None:
        self.channels = channels
        self.gossip = gossip
        self.is_connected = is_connected
        self.rr: dict[int, int] = {}        # channel dbid -> when last used (0: never)
        self.rr_counter = 1

    async def for_invoice(self, amount_msat: int | None,
                          expose: bool | list | None) -> tuple[list[list[RouteHintHop]], dict[str, str]]:
        """The invoice's routes and warnings.  `expose`: exposeprivatechannels
        (None: private channels only if we have no public one)."""
        hints = expose if isinstance(expose, list) else None
        expose_all = True if hints is not None else expose
        cands, none_public, caps = await self._candidates(expose_all, hints)
        if not cands and hints:
            raise RpcError(INVOICE_HINTS_GAVE_NO_ROUTES, "None of those hints were suitable local channels")
        needed = amount_msat or 1
        routes: list[Candidate] = []
        if not none_public:
            routes = self._select_one(cands, needed)
        warnings: dict[str, str] = {}
        if not routes:
            routes = self._select_mpp(cands, needed)
            if len(routes) > 1:
                warnings["warning_mpp"] = WARNINGS["warning_mpp"]
        total = caps.available + caps.offline + caps.deadend + caps.private
        if needed >= total:
            warnings["warning_capacity"] = WARNINGS["warning_capacity"]
        if needed > caps.available:
            tot = caps.available
            for kind, extra in (("warning_offline", caps.offline), ("warning_deadends", caps.deadend),
                                ("warning_private_unused", caps.private)):
                tot += extra
                if tot >= needed:
                    warnings[kind] = WARNINGS[kind]
                    break
        return [[c.hop] for c in routes], warnings

    # ------------------------------------------------------------------ candidates
    async def _candidates(self, expose_all: bool | None,
                          hints: list | None) -> tuple[list[Candidate], bool, Capacities]:
        pub: list[Candidate] = []
        priv: list[Candidate] = []
        caps = Capacities()
        none_public = True
        for rec in list(self.channels.channels.values()):
            if rec.state != C.NORMAL:
                continue
            policy = await self._peer_policy(rec)
            if policy is None:
                continue        # the peer told us nothing of its side
            cap = min(rec.summary["receivable_msat"], policy["htlc_maximum_msat"])
            public = rec.announce
            if public:
                none_public = False
            if expose_all:
                public = True
            base = rec.scid_or_alias
            if hints is not None:
                # by the name listincoming gives it, or the peer's alias
                names = {str(base)} | ({str(ShortChannelId.from_int(rec.alias_remote))} if rec.alias_remote else set())
                if not names & {str(h) for h in hints}:
                    continue
            elif await self._peer_capacity(rec) == 0:
                caps.deadend += cap
                continue
            if rec.subd is None or not rec.subd.running or not self.is_connected(rec.peer_id):
                caps.offline += cap
                continue
            scid = hint_scid(rec)
            if scid is None:
                continue
            hop = RouteHintHop(rec.peer_id, scid, policy["fee_base_msat"], policy["fee_proportional_millionths"],
                               policy["cltv_expiry_delta"])
            (pub if public else priv).append(Candidate(rec, hop, cap))
        caps.available = sum(c.capacity for c in pub)
        caps.private = sum(c.capacity for c in priv)
        if expose_all is None and not pub and none_public:
            # no public channel at all: the private ones are the only way in
            pub, caps.available, caps.private = priv, caps.private, 0
        return pub, none_public, caps

    async def _peer_policy(self, rec: "ChannelRecord") -> dict | None:
        """The peer's policy for its direction of the channel: from the
        graph for a public channel, else the update it sent us alone."""
        if rec.announce and rec.scid is not None:
            for c in await self.gossip.listchannels(short_channel_id=rec.scid.to_int()):
                if c["source"] == rec.peer_id.hex():
                    return {"fee_base_msat": c["base_fee_millisatoshi"],
                            "fee_proportional_millionths": c["fee_per_millionth"], "cltv_expiry_delta": c["delay"],
                            "htlc_maximum_msat": c["htlc_maximum_msat"]}
        return rec.remote_update

    async def _peer_capacity(self, rec: "ChannelRecord") -> int:
        """What can reach the peer through its other enabled channels (Core
        Lightning's peer_capacity): none makes it a dead end."""
        ours = {str(rec.scid)} if rec.scid is not None else set()
        return sum(c["htlc_maximum_msat"] for c in await self.gossip.listchannels(destination=rec.peer_id)
                   if c["active"] and c["short_channel_id"] not in ours)

    # ------------------------------------------------------------------ selection
    def _select_one(self, cands: list[Candidate], needed: int) -> list[Candidate]:
        """Core Lightning's select_inchan: weighted reservoir sampling among
        the channels that can take it all, favouring those it leaves emptier."""
        chosen: list[Candidate] = []
        total_weight = 0.0
        for c in cands:
            excess = c.capacity - needed
            if excess < 0:
                continue
            s = c.rec.summary
            capacity = c.rec.funding_sat * 1000 - (s.get("our_reserve_sat", 0) + s.get("their_reserve_sat", 0)) * 1000
            if capacity <= 0:
                continue
            weight = (excess + 1) / capacity
            total_weight += weight
            if total_weight == 0 or random.random() <= weight / total_weight:
                chosen = [c]
        return chosen

    def _select_mpp(self, cands: list[Candidate], needed: int) -> list[Candidate]:
        """Core Lightning's select_inchan_mpp: least recently used first,
        until their capacities add up to the amount."""
        gathered = 0
        out = []
        for c in sorted(cands, key=lambda c: (self.rr.get(c.rec.dbid, 0), c.rec.dbid)):
            if gathered >= needed:
                break
            gathered += c.capacity
            out.append(c)
            self.rr[c.rec.dbid] = self.rr_counter
            self.rr_counter += 1
        return out
