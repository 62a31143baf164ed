"""Sending a payment in parts: the scheduler behind `pay`, `xpay` and
`keysend` (Core Lightning's pay plugin with its presplit and adaptive
split modifiers, and xpay over askrene, built in).

One payment is one `groupid`; each part is a `sendpay` with its own
`partid` (1, 2, ...: every attempt, failed or not, gets a new one, as
xpay), so `listsendpays` shows the parts and `listpays` the payment.
The loop: plan routes for the amount neither delivered nor in flight,
send each as a part, wait for the first part to finish, learn from it
and plan again.  What is learnt is kept for this payment only
(`Knowledge`, Core Lightning's per-payment askrene layer): a channel
direction that failed to carry X cannot carry X on top of what our other
parts had reserved on it; one that passed a part carried it; a
channel_update from an onion error is used for the rest of the payment
(BOLT 4); other failures disable the channel direction for it.

`retry_for` bounds when new parts may start, never the wait for parts in
flight: the payment reports a failure only once no part of it can still
succeed."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from common.onion_errors import FailureCode
from common.scid import ShortChannelId

from . import channel as C
from .jsonrpc_errors import (
    INVALID_PARAMS,
    PAY_DESTINATION_PERM_FAIL,
    PAY_IN_PROGRESS,
    PAY_INSUFFICIENT_FUNDS,
    PAY_RHASH_ALREADY_USED,
    PAY_ROUTE_NOT_FOUND,
    PAY_ROUTE_TOO_EXPENSIVE,
    PAY_UNPARSEABLE_ONION,
    RpcError,
)
from .pay_routes import FINAL_CLTV_PADDING, PaymentRequest, hint_route, policy_from_error

if TYPE_CHECKING:
    from .lightningd import LightningD

# Core Lightning's presplit modifier (libplugin-pay.c until v23.08): parts of
# about 10,000 sat (80% of channels could carry one, by its probing), that
# target multiplied by 16 until at most 16 parts, each fuzzed by +-25%, in
# at most a third of the HTLCs our channels can still take.
MPP_TARGET_SIZE = 10_000_000
PRESPLIT_MAX_SPLITS = 16
PRESPLIT_MAX_HTLC_SHARE = 3
NO_LIMIT = 2**64 - 1
# a part whose first hop could not take it because the peer is away: wait this
# long before planning again (the reconnection is usually under way)
LOCAL_RETRY_DELAY = 1.0
# a payment our channels seem too small for looks again after this long (the
# spendable figures channeld reports may be that old: channeld.BALANCE_REFRESH)
STALE_SUMMARY_WAIT = 0.6
# BOLT 4 failures that carry a channel_update (the UPDATE bit)
_UPDATE = 0x1000


@dataclass
class ChannelKnowledge:
    """One channel direction as this payment sees it."""
    max_msat: int | None = None      # it cannot carry more in all (our reservations included)
    min_msat: int = 0                # it carried this much
    reserved_msat: int = 0           # our parts in flight through it


@dataclass
class Knowledge:
    """What one payment learnt; never shared with another payment."""
    chans: dict[tuple[str, int], ChannelKnowledge] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)            # "BLOCKxTXxOUT/DIR"
    policies: dict[str, dict] = field(default_factory=dict)     # channel -> channel_update from an error

    def of(self, hop: dict) -> ChannelKnowledge:
        key = (hop["channel"], hop.get("direction", 0))
        k = self.chans.get(key)
        if k is None:
            k = self.chans[key] = ChannelKnowledge()
        return k

    def reserve(self, route: list[dict], sign: int) -> None:
        for hop in route:
            self.of(hop).reserved_msat += sign * hop["amount_msat"]

    def constrained(self, hop: dict) -> None:
        """This hop could not carry its amount (its part is unreserved):
        at most one msat less, on top of what our other parts hold there
        (askrene's "constrained")."""
        k = self.of(hop)
        most = hop["amount_msat"] - 1 + k.reserved_msat
        k.max_msat = most if k.max_msat is None else min(k.max_msat, most)
        k.min_msat = min(k.min_msat, k.max_msat)

    def passed(self, hop: dict) -> None:
        k = self.of(hop)
        k.min_msat = max(k.min_msat, hop["amount_msat"])
        if k.max_msat is not None and k.max_msat < k.min_msat:
            k.max_msat = k.min_msat

    def disable(self, hop: dict) -> None:
        self.disabled.add(f"{hop['channel']}/{hop.get('direction', 0)}")

    def planning_max(self, k: ChannelKnowledge, share: float) -> int | None:
        """What to plan on at most through a remote channel that failed:
        ``share`` of the way from what it carried to what it could not
        (half: the expected liquidity if it is uniform in between, Core
        Lightning's adaptive splitter halving the part that failed)."""
        if k.max_msat is None:
            return None
        return k.min_msat + int((k.max_msat - k.min_msat) * share)

    def learnt_something(self, local_scids: set[str]) -> bool:
        """Does a remote channel have a learnt maximum?"""
        return any(k.max_msat is not None for (chan, _), k in self.chans.items() if chan not in local_scids)

    def limits(self, local_scids: set[str], share: float) -> list[dict]:
        """For gossipd's getroutes: the remote channel directions known or
        in use (our own channels go as their spendable amount instead)."""
        out = []
        for (chan, direction), k in self.chans.items():
            if chan in local_scids or (k.max_msat is None and not k.reserved_msat):
                continue
            most = self.planning_max(k, share)
            out.append({"scid": _scid_int(chan), "direction": direction,
                        "max_msat": NO_LIMIT if most is None else most, "reserved_msat": max(0, k.reserved_msat)})
        return out


def _scid_int(chan: str) -> int:
    return ShortChannelId.parse(chan).to_int()


@dataclass
class PayOptions:
    max_fee: int
    retry_for: int
    maxdelay: int | None = None
    riskfactor: float = 10
    exclude: set[str] = field(default_factory=set)
    mpp: bool = False              # may split: the payee has basic_mpp (and no disable-mpp)
    presplit: bool = False         # pay: split large amounts before trying (Core Lightning's presplitter)
    return_on_success: bool = False   # xpay: answer at the first part that succeeds


@dataclass
class Part:
    partid: int
    route: list[dict]
    amount: int                    # delivered
    fee: int
    sent: bool = False             # the HTLC exists (sendpay accepted it)


class PaymentFailed(Exception):
    """Why a payment stopped; raised once no part is in flight.  `kind`:
    "route" (no route / too expensive / funds; nothing may have been
    tried), "timeout", "destination" (the payee refused), "fatal"
    (sendpay's own refusal, e.g. already paid or in progress)."""

    def __init__(self, kind: str, error: RpcError, attempts: int, summary: str, remaining: int) -> None:
        super().__init__(error.message)
        self.kind, self.error, self.attempts, self.summary = kind, error, attempts, summary
        self.remaining = remaining                  # what was left to route when it stopped
        self.last_error: RpcError | None = None     # the last part's failure
        self.failures = 0


class MultiPartPayment:
    def __init__(self, ld: "LightningD", req: PaymentRequest, opts: PayOptions) -> None:
        self.ld = ld
        self.req = req
        self.opts = opts
        self.log = ld.log.child(f"pay {req.payment_hash.hex()[:16]}", req.payee.hex())
        self.knowledge = Knowledge()
        self.groupid = next_groupid(ld, req.payment_hash)
        self.created_at = int(time.time())
        self.inflight: dict[asyncio.Task, Part] = {}
        self.succeeded: list[Part] = []
        self.attempts = 0
        self.failures = 0
        self.failed_after_success = False
        self.preimage: str | None = None
        self.to_route = req.amount_msat           # neither delivered nor in flight
        self.stopped: PaymentFailed | None = None
        self.last_error: RpcError | None = None
        self.summary: list[str] = []                # Core Lightning xpay's "prior results"
        self.not_before = 0.0
        self.plan_error = RpcError(PAY_ROUTE_NOT_FOUND, "Could not find a route")   # the last plan's failure
        self._payee_known: bool | None = None     # a channel to the payee in the gossip
        self.spendable0: dict[str, int] = {}         # our channels' spendable when the payment started

    # ------------------------------------------------------------------ the loop
    async def run(self) -> dict:
        """Success (pay's fields, plus xpay's part counts), or PaymentFailed
        once no part is in flight (with return_on_success, at the first
        part that succeeds)."""
        key = (self.req.payment_hash, self.groupid)
        self.ld.payments.active_groups.add(key)
        try:
            return await self._run()
        finally:
            self.ld.payments.active_groups.discard(key)

    async def _run(self) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.opts.retry_for
        self._snapshot()
        first, rechecked = True, False
        blocked = False          # no route for now: wait for a part in flight to finish
        while True:
            now = loop.time()
            routing = self.to_route > 0 and self.stopped is None and self.preimage is None and not blocked
            if routing and self.attempts and now >= deadline:
                self._stop("timeout", RpcError(0, f"Ran out of time after {self.attempts} attempts"
                                               + (f": {self.last_error.message}" if self.last_error else "")))
                routing = False
            if routing and now >= self.not_before:
                try:
                    routes = await self._plan(self.to_route, first)
                except RpcError as e:
                    if e.code == PAY_INSUFFICIENT_FUNDS and not rechecked:
                        # channeld's figures in our channels' summaries may lag
                        # (refreshed every 0.5 s under load): look again once
                        rechecked = True
                        await asyncio.sleep(STALE_SUMMARY_WAIT)
                        self._snapshot()
                        continue
                    if self.inflight and e.code != PAY_INSUFFICIENT_FUNDS:
                        # what our parts in flight hold may come back (or
                        # they may teach us something): plan again then
                        self.log.debug(f"no route for {self.to_route}msat yet: {e.message}")
                        self.last_error = self.last_error or e
                        self.plan_error = e
                        blocked = True
                    else:
                        self._stop("route", e)
                else:
                    for route in routes:
                        self._launch(route)
                first = False
                continue
            if not self.inflight and not routing:
                if blocked and self.stopped is None and self.preimage is None:
                    self._stop("route", self.plan_error)
                break
            timeout = max(0.0, self.not_before - now) if routing else None
            if not self.inflight:
                await asyncio.sleep(timeout or 0)
                continue
            done, _ = await asyncio.wait(self.inflight, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self._finished(self.inflight.pop(task), task)
            blocked = False
            if self.preimage is not None and self.opts.return_on_success:
                break
        if self.preimage is not None:
            return self._success()
        assert self.stopped is not None
        self.stopped.last_error, self.stopped.failures = self.last_error, self.failures
        raise self.stopped

    def _snapshot(self) -> None:
        # our channels by name: the real scid, or our alias until it confirms (zero-conf)
        self.spendable0 = {str(c.scid_or_alias): c.summary["spendable_msat"] for c in self.ld.channels.channels.values()
                           if c.scid_or_alias is not None}

    def _stop(self, kind: str, error: RpcError) -> None:
        if self.stopped is None:
            self.log.debug(f"giving up ({kind}): {error.message}")
            self.stopped = PaymentFailed(kind, error, self.attempts, "".join(f"{s}. " for s in self.summary),
                                         self.to_route)

    def _success(self) -> dict:
        inflight = list(self.inflight.values())
        delivered = sum(p.amount for p in self.succeeded + inflight)
        sent = sum(p.amount + p.fee for p in self.succeeded + inflight)
        out: dict[str, Any] = {
            "destination": self.req.payee.hex(), "payment_hash": self.req.payment_hash.hex(),
            "created_at": self.created_at, "parts": self.attempts, "amount_msat": delivered,
            "amount_sent_msat": sent, "payment_preimage": self.preimage, "status": "complete",
            "failed_parts": self.failures, "successful_parts": self.attempts - self.failures}
        if self.failed_after_success:
            out["warning_partial_completion"] = "Not all parts of a multi-part payment have completed."
        self.log.debug(f"succeeded: {delivered}msat in {len(self.succeeded) + len(inflight)} parts "
                       f"({self.attempts} attempts), {sent - delivered}msat fees")
        return out

    # ------------------------------------------------------------------ sending parts
    def _launch(self, route: list[dict]) -> None:
        self.attempts += 1
        amount = route[-1]["amount_msat"]
        part = Part(self.attempts, route, amount, route[0]["amount_msat"] - amount)
        self.to_route -= amount
        self.knowledge.reserve(route, +1)
        self.log.debug(f"part {part.partid}: {amount}msat via " + " -> ".join(h["channel"] for h in route)
                       + f", fee {part.fee}msat, delay {route[0]['delay']}")
        task = asyncio.ensure_future(self._send(part))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())   # none left unretrieved
        self.inflight[task] = part

    async def _send(self, part: Part) -> dict:
        req, pay = self.req, self.ld.payments
        await pay.sendpay(part.route, req.payment_hash, req.label, req.total_msat, req.bolt11, req.payment_secret,
                          part.partid, self.groupid, req.description, req.metadata,
                          keysend_preimage=req.keysend_preimage, extra_tlvs=req.extra_tlvs)
        part.sent = True
        # No timeout: once an HTLC is out, only its resolution tells whether
        # the payment happened.
        return await pay.waitsendpay(req.payment_hash, None, part.partid, self.groupid)

    def _finished(self, part: Part, task: asyncio.Task) -> None:
        self.knowledge.reserve(part.route, -1)
        try:
            res = task.result()
        except RpcError as e:
            self.failures += 1
            self.to_route += part.amount
            if self.preimage is not None:
                self.failed_after_success = True
            self._learn(part, e)
            return
        self.log.debug(f"part {part.partid} succeeded: {res['amount_sent_msat']}msat sent")
        for hop in part.route:
            self.knowledge.passed(hop)
        self.succeeded.append(part)
        self.preimage = res["payment_preimage"]

    # ------------------------------------------------------------------ learning from a failure
    def _learn(self, part: Part, e: RpcError) -> None:
        self.last_error = e
        route, k = part.route, self.knowledge
        d = e.data if isinstance(e.data, dict) else {}
        where = f" (at {d.get('erring_channel')}, {d.get('failcodename')})" if d.get("erring_channel") else ""
        self.log.debug(f"part {part.partid} failed: {e.message}{where}")
        if not part.sent:
            if e.code in (PAY_IN_PROGRESS, PAY_RHASH_ALREADY_USED, INVALID_PARAMS):
                # sendpay's duplicate checks (already paid, another payment in
                # flight), or what we asked cannot be sent (onion too large...)
                self._stop("fatal", e)
                return
            chan = self.ld.payments.channel_for(route[0])
            if (chan is None or chan.state != C.NORMAL or not self.ld.is_connected(chan.peer_id)
                    or chan.subd is None or not chan.subd.running):
                self._note(f"{route[0]['channel']} is not ready: trying again shortly")
                self.not_before = asyncio.get_running_loop().time() + LOCAL_RETRY_DELAY
            else:
                # channeld said what it can take now, our other parts there included
                now = chan.summary["spendable_msat"]
                self._note(f"Our channel {route[0]['channel']} could not take {route[0]['amount_msat']}msat "
                           f"(it can send {now}msat more)")
                kc = k.of(route[0])
                kc.max_msat = now + kc.reserved_msat
                kc.min_msat = min(kc.min_msat, kc.max_msat)
            return
        if e.code == PAY_DESTINATION_PERM_FAIL:
            self._stop("destination", e)
            return
        if e.code == PAY_UNPARSEABLE_ONION or d.get("erring_index") is None:
            self._note("Unparseable error: disabling the route's channels for this payment")
            for hop in route[1:]:
                k.disable(hop)
            return
        idx, code = d["erring_index"], d.get("failcode") or 0
        if idx == 0 and code == FailureCode.TEMPORARY_CHANNEL_FAILURE:
            # lost on our side before it was committed (a disconnection)
            self._note(f"{route[0]['channel']}: {e.message}")
            self.not_before = asyncio.get_running_loop().time() + LOCAL_RETRY_DELAY
            return
        for hop in route[:idx]:
            k.passed(hop)
        if idx >= len(route):
            if code == FailureCode.MPP_TIMEOUT:
                self._note(f"Part of {part.amount}msat reached the destination, but timed out before the rest arrived")
            else:
                self._note(f"Unexpected error {d.get('failcodename')} from the destination: disabling "
                           f"{route[-1]['channel']} for this payment")
                k.disable(route[-1])
            return
        hop = route[idx]
        ch = hop["channel"]
        raw = d.get("raw_message")
        pol = policy_from_error(bytes.fromhex(raw), d.get("erring_node"), ch, self.ld.network.chain_hash) \
            if raw and code & _UPDATE else None
        if code == FailureCode.TEMPORARY_CHANNEL_FAILURE:
            self._note(f"{ch} could not carry {hop['amount_msat']}msat")
            k.constrained(hop)
            if pol is not None:
                k.policies[ch] = pol
            return
        if pol is not None and ch not in k.policies:
            # BOLT 4: the erring node's channel_update may be used for retries
            # of this payment (once per channel: a second failure disables it)
            self._note(f"{d.get('failcodename')} from {ch}: using its channel_update for this payment")
            k.policies[ch] = pol
            return
        self._note(f"{d.get('failcodename')} from {ch}: disabling it for this payment")
        k.disable(hop)

    def _note(self, what: str) -> None:
        self.summary.append(what)
        self.log.debug(what)

    # ------------------------------------------------------------------ planning
    def _local_available(self) -> dict[str, int]:
        """What each of our channels may still send for this payment: its
        spendable when we started (it held none of our parts then), within
        what we learnt, less our parts in flight there."""
        out = {}
        for chan, spendable in self.spendable0.items():
            avail = spendable
            for direction in (0, 1):
                k = self.knowledge.chans.get((chan, direction))
                if k is None:
                    continue
                if k.max_msat is not None:
                    avail = min(avail, k.max_msat)
                avail -= k.reserved_msat
            out[chan] = max(0, avail)
        return out

    def _htlc_budget(self) -> int:
        """HTLCs our usable channels can still take (Core Lightning's
        payment_max_htlcs)."""
        n = 0
        for c in self.ld.channels.channels.values():
            if c.state == C.NORMAL and c.scid_or_alias is not None and self.ld.is_connected(c.peer_id):
                n += max(0, c.summary["their_max_accepted_htlcs"]
                         - sum(1 for h in c.summary["htlcs"] if h["direction"] == "out"))
        return n

    def _presplit(self, amount: int, budget: int) -> list[int]:
        parts = presplit(amount, budget)
        if len(parts) > 1:
            self._note(f"Split into {len(parts)} sub-payments due to initial size "
                       f"({amount}msat > {presplit_target(amount)}msat)")
        return parts

    def _direct(self, amount: int, final_cltv: int, avail: dict[str, int]) -> list[dict] | None:
        """One of our channels to the payee that can carry it all."""
        ld, payee = self.ld, self.req.payee
        best = None
        for c in ld.channels.by_peer(payee):
            if c.state != C.NORMAL or c.scid_or_alias is None or not ld.is_connected(c.peer_id):
                continue
            direction = 0 if ld.node_id < c.peer_id else 1
            if {f"{c.scid_or_alias}/{direction}", str(c.scid_or_alias), payee.hex()} & (self.opts.exclude | self.knowledge.disabled):
                continue
            a = avail.get(str(c.scid_or_alias), 0)
            if a >= amount and (best is None or a > best[0]):
                best = (a, c, direction)
        if best is None:
            return None
        return [{"id": payee.hex(), "channel": str(best[1].scid_or_alias), "direction": best[2], "amount_msat": amount,
                 "delay": final_cltv}]

    async def _plan(self, amount: int, first: bool) -> list[list[dict]]:
        """Routes for ``amount`` within the fee and delay budgets; RpcError
        if there are none."""
        req, opts, k = self.req, self.opts, self.knowledge
        final_cltv = req.min_final_cltv + FINAL_CLTV_PADDING
        avail = self._local_available()
        exclude = opts.exclude | k.disabled
        def hinted() -> list[dict] | None:
            return hint_route(self.ld, req.payee, amount, final_cltv, exclude, req.hints, k.policies, avail)
        route = self._direct(amount, final_cltv, avail)
        if route is None and req.hints and not await self._payee_in_graph():
            route = hinted()        # a payee the gossip does not know: its hints are the way in
        if route is not None:
            return self._affordable([route])
        budget = self._htlc_budget()
        peers = {c.peer_id for c in self.ld.channels.channels.values()}
        chunks = self._presplit(amount, budget) if first and opts.presplit and req.payee not in peers else [amount]
        try:
            return self._affordable(await self._network_routes(chunks, final_cltv, exclude, avail, budget))
        except RpcError as e:
            if len(chunks) == 1:
                if e.code == PAY_ROUTE_NOT_FOUND and (route := hinted()) is not None:
                    return self._affordable([route])
                raise self._no_route(e, amount, avail, first) if e.code == PAY_ROUTE_NOT_FOUND else e from None
            # the presplit parts found no way, or their base fees add up over
            # the budget: the amount in one piece (split only where needed)
            self.log.debug(f"presplit parts: {e.message}")
        try:
            return self._affordable(await self._network_routes([amount], final_cltv, exclude, avail, budget))
        except RpcError as e:
            if e.code == PAY_ROUTE_NOT_FOUND and (route := hinted()) is not None:
                return self._affordable([route])
            raise self._no_route(e, amount, avail, first) if e.code == PAY_ROUTE_NOT_FOUND else e from None

    async def _payee_in_graph(self) -> bool:
        """Does the gossip know a channel to the payee?  Then its invoice's
        route hints (Core Lightning's invoices carry one even for a public
        node) are only a last resort, as extra channels are to Core
        Lightning's xpay: the cheapest route is found in the graph."""
        if self._payee_known is None:
            chans = await self.ld.gossipd.listchannels(destination=self.req.payee)
            self._payee_known = any(c["source"] != self.ld.node_id.hex() for c in chans)
        return self._payee_known

    async def _network_routes(self, chunks: list[int], final_cltv: int, exclude: set[str], avail: dict[str, int],
                              budget: int) -> list[list[dict]]:
        """gossipd's routes.  Channels that failed are planned with half of
        what is unknown of them; if that leaves no way, with most of it."""
        req, opts, k = self.req, self.opts, self.knowledge
        error = RpcError(PAY_ROUTE_NOT_FOUND, "Could not find a route")
        for share in (0.5, 0.9) if k.learnt_something(set(self.spendable0)) else (1.0,):
            try:
                return await self.ld.find_routes(req.payee, chunks, final_cltv, exclude, riskfactor=opts.riskfactor,
                                                 policies=list(k.policies.values()),
                                                 limits=k.limits(set(self.spendable0), share),
                                                 spendable={_scid_int(c): a for c, a in avail.items()},
                                                 maxparts=max(1, min(budget, 483)) if opts.mpp else 1)
            except RpcError as e:
                error = e
        raise error

    def _affordable(self, routes: list[list[dict]]) -> list[list[dict]]:
        """The routes, if their fees (with our other parts') and their delays
        are within the budgets; else RpcError 206."""
        opts = self.opts
        fees = sum(r[0]["amount_msat"] - r[-1]["amount_msat"] for r in routes)
        fee_left = opts.max_fee - sum(p.fee for p in self.succeeded) - sum(p.fee for p in self.inflight.values())
        if fees > fee_left:
            raise RpcError(PAY_ROUTE_TOO_EXPENSIVE, f"Fee exceeds our fee budget: {fees}msat > {fee_left}msat")
        delay = max(r[0]["delay"] for r in routes)
        if opts.maxdelay is not None and delay > opts.maxdelay:
            raise RpcError(PAY_ROUTE_TOO_EXPENSIVE, f"CLTV delay exceeds our CLTV budget: {delay} > {opts.maxdelay}")
        return routes

    def _no_route(self, e: RpcError, amount: int, avail: dict[str, int], first: bool) -> RpcError:
        """No route: say whether our own channels are the reason."""
        if not first:
            return e
        ours = [c for c in self.ld.channels.channels.values() if c.state == C.NORMAL and c.scid_or_alias is not None]
        spendable = sum(avail.get(str(c.scid_or_alias), 0) for c in ours)
        if spendable < amount:
            return RpcError(PAY_INSUFFICIENT_FUNDS, "Insufficient funds to perform the payment: "
                            f"spendable={spendable}msat < payment={amount}msat"
                            + (f" (in {len(ours)} channels)" if ours else " (no channel)"))
        if not self.opts.mpp and max((avail.get(str(c.scid_or_alias), 0) for c in ours), default=0) < amount:
            return RpcError(e.code, f"{e.message} (no channel can send {amount}msat, and the invoice does not "
                                    "allow sending it in parts: no basic_mpp)", e.data)
        return e


def presplit(amount: int, htlc_budget: int, rng: random.Random | None = None) -> list[int]:
    """Core Lightning's presplitter: parts of about MPP_TARGET_SIZE (+-25%),
    that size multiplied by 16 until at most 16 parts; not at all if the
    amount is below the target or the parts would take more than a third of
    the HTLCs our channels can still take."""
    rng = rng or random.Random()
    target = presplit_target(amount)
    htlcs = htlc_budget // PRESPLIT_MAX_HTLC_SHARE if htlc_budget >= PRESPLIT_MAX_HTLC_SHARE else htlc_budget
    if target >= amount or amount // target > htlcs:
        return [amount]
    parts, left = [], amount
    while left:
        part = min(left, target + rng.randrange(target // 2) - target // 4)
        parts.append(part)
        left -= part
    return parts


def presplit_target(amount: int) -> int:
    target = MPP_TARGET_SIZE
    while target * PRESPLIT_MAX_SPLITS < amount:
        target *= PRESPLIT_MAX_SPLITS
    return target


def next_groupid(ld: "LightningD", payment_hash: bytes) -> int:
    """A new group for this hash: one more than the last (Core Lightning's pay)."""
    rows = ld.payments.rows("WHERE payment_hash = ?", (payment_hash,))
    return max((p["groupid"] for p in rows), default=0) + 1


def previous_success(ld: "LightningD", payment_hash: bytes) -> dict | None:
    """The summary of an earlier payment of this hash that succeeded (pay
    answers it again, as Core Lightning's pay)."""
    rows = ld.payments.rows("WHERE payment_hash = ? AND status = 'complete'", (payment_hash,))
    if not rows:
        return None
    first = rows[0]
    out: dict[str, Any] = {
        "payment_preimage": first["preimage"].hex(), "payment_hash": payment_hash.hex(),
        "created_at": first["created_at"], "parts": len(rows), "amount_msat": sum(p["amount_msat"] for p in rows),
        "amount_sent_msat": sum(p["amount_sent_msat"] for p in rows), "status": "complete"}
    if first["destination"]:
        out["destination"] = first["destination"].hex()
    return out

