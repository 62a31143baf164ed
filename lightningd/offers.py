"""BOLT 12 offers and invoice requests we made (Core Lightning's
lightningd/offer.c and the creating side of its offers plugin).

Our offers and invoice requests are rows (``offers``, ``invoicerequests``),
by id: Core Lightning's offer_id / invreq_id.  A BOLT 12 invoice we issue
for one of our offers is an ordinary invoice with ``local_offer_id``; once
one is paid the offer is ``used`` and, if ``single_use``, every other unpaid
invoice of it expires and no more are issued.

Privacy (BOLT 12: "if it is connected only by private channels: MUST include
offer_paths ... from publicly reachable nodes"): a node that is not in the
public graph puts a blinded path through a public peer in its offers,
invoice requests and invoices, and never its node id; a public node gives
its id, as Core Lightning does.  Paths carry a ``path_id`` derived from a
base secret hsmd gives us (``hsmd_derive_secret``) so we recognise them:
``SHA256(base || offer_id)`` for an offer's onion message path,
``SHA256(base || payment_hash)`` for an invoice's payment path.
"""
from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from common import bolt12 as B
from common.blindedpath import BlindedPath, EncryptedData, PaymentConstraints, PaymentRelay, aggregate_payinfo
from common.bolt12 import Bolt12, Bolt12Error, Payinfo, path_secret
from common.bolt12_json import bolt12_json
from common.features import OPTION_ONION_MESSAGES, OPTION_ROUTE_BLINDING, has_feature

from . import channel as C
from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, LIGHTNINGD, RpcError
from .onion_messages import blinded_path
from .params import opt, req
from .routehints import hint_scid

if TYPE_CHECKING:
    from .lightningd import LightningD

OFFER_ALREADY_EXISTS = 1000
OFFER_ALREADY_DISABLED = 1001
OFFER_EXPIRED = 1002
OFFER_ROUTE_NOT_FOUND = 1003
OFFER_BAD_INVREQ_REPLY = 1004
OFFER_TIMEOUT = 1005
OFFER_ALREADY_ENABLED = 1006

INVOICE_BASE, OFFER_BASE, ALIAS_BASE = b"bolt12-invoice-base", b"offer-blinded-path", b"node-alias-base"
#: dummy hops after ourselves in the payment paths of our invoices (privacy: path length)
INVOICE_PATH_DUMMIES = 1
#: blocks a payment path stays usable beyond the invoice's expiry (Core Lightning pads by 1008 too)
PATH_CLTV_PADDING = 1008
_CURRENCY = re.compile(r"^[0-9.]+([A-Za-z]{3})$")


class PeerPolicy(NamedTuple):
    """A public peer we can be reached through, and what it charges to relay to us."""

    peer_id: bytes
    scid: int
    relay: PaymentRelay
    htlc_minimum_msat: int
    htlc_maximum_msat: int


class Offers:
    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.invoice_base = self.offer_base = self.alias_base = b""

    async def start(self) -> None:
        hsm = self.ld.hsm
        self.invoice_base = await hsm.derive_secret(INVOICE_BASE)
        self.offer_base = await hsm.derive_secret(OFFER_BASE)
        self.alias_base = await hsm.derive_secret(ALIAS_BASE)
        self.ld.invoices.on_bolt12_paid = self.invoice_paid

    @property
    def db(self):
        return self.ld.db

    # -- storage ---------------------------------------------------------------------------
    def _rows(self, table: str, key: str, where: str = "", args: tuple = ()) -> list[dict]:
        cols = [key, "bolt12", "label", "single_use", "used", "active", "created_at"]
        return [dict(zip(cols, r)) for r in self.db.query(f"SELECT {', '.join(cols)} FROM {table} {where} "
                                                          "ORDER BY created_at, rowid", args)]

    def offer(self, offer_id: bytes) -> dict | None:
        rows = self._rows("offers", "offer_id", "WHERE offer_id = ?", (offer_id,))
        return rows[0] if rows else None

    def offers(self, active_only: bool = False) -> list[dict]:
        return self._rows("offers", "offer_id", "WHERE active = 1" if active_only else "")

    def invreq(self, invreq_id: bytes) -> dict | None:
        rows = self._rows("invoicerequests", "invreq_id", "WHERE invreq_id = ?", (invreq_id,))
        return rows[0] if rows else None

    @staticmethod
    def offer_json(row: dict) -> dict:
        d: dict[str, Any] = {"offer_id": row["offer_id"].hex(), "active": bool(row["active"]),
                             "single_use": bool(row["single_use"]), "force_paths": False, "bolt12": row["bolt12"],
                             "used": bool(row["used"])}
        desc = B.decode(row["bolt12"]).offer_description
        if desc is not None:
            d["description"] = desc
        if row["label"] is not None:
            d["label"] = row["label"]
        return d

    @staticmethod
    def invreq_json(row: dict) -> dict:
        d: dict[str, Any] = {"invreq_id": row["invreq_id"].hex(), "active": bool(row["active"]),
                             "single_use": bool(row["single_use"]), "bolt12": row["bolt12"], "used": bool(row["used"])}
        if row["label"] is not None:
            d["label"] = row["label"]
        return d

    def _set(self, table: str, key: str, ident: bytes, **cols: int) -> None:
        sets = ", ".join(f"{c} = ?" for c in cols)
        with self.db.transaction():
            self.db.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", (*cols.values(), ident))

    def invoice_paid(self, local_offer_id: bytes, payment_hash: bytes) -> None:
        """Inside mark_paid's transaction: the offer is used; a single-use one
        takes no more payments (its other unpaid invoices expire)."""
        row = self.offer(local_offer_id)
        if row is None:
            return
        self.db.execute("UPDATE offers SET used = 1, active = ? WHERE offer_id = ?",
                        (0 if row["single_use"] else row["active"], local_offer_id))
        if row["single_use"]:
            self.ld.invoices.expire_others(local_offer_id, payment_hash)

    def invreq_used(self, invreq_id: bytes) -> None:
        row = self.invreq(invreq_id)
        if row is not None:
            self._set("invoicerequests", "invreq_id", invreq_id, used=1,
                      active=0 if row["single_use"] else row["active"])

    # -- privacy: are we public, and through which peer are we reached ---------------------------
    async def announced(self, node_id: bytes) -> bool:
        """``node_id`` is in the public graph: it has a node_announcement
        (gossipd lists the peers of our private channels too, bare)."""
        return any("last_timestamp" in n for n in await self.ld.gossipd.listnodes(node_id))

    async def public(self) -> bool:
        """We are in the public graph."""
        return await self.announced(self.ld.node_id)

    async def entry_peers(self, payment: bool, amount_msat: int = 0) -> list[PeerPolicy]:
        """Connected public peers with a channel to us, that relay onion
        messages (and blinded payments), best capacity first."""
        ld = self.ld
        out = []
        for c in ld.channels.channels.values():
            p = ld.peers.get(c.peer_id)
            if c.state != C.NORMAL or c.scid is None or p is None or not p.connected:
                continue
            if not has_feature(p.features, OPTION_ONION_MESSAGES):
                continue
            if payment and (not has_feature(p.features, OPTION_ROUTE_BLINDING)
                            or c.summary["receivable_msat"] < amount_msat):
                continue
            if not await self.announced(c.peer_id) or hint_scid(c) is None:
                continue
            out.append((c.summary["receivable_msat"], c))
        out.sort(key=lambda x: -x[0])
        policies = []
        for receivable, c in out:
            upd = await self._policy_towards_us(c)
            # (named as the peer forwards by it: its alias of a private channel)
            policies.append(PeerPolicy(c.peer_id, hint_scid(c).to_int(), PaymentRelay(*upd[:3]), upd[3],
                                       min(upd[4], receivable) if receivable else upd[4]))
        return policies

    async def _policy_towards_us(self, c: Any) -> tuple[int, int, int, int, int]:
        """(cltv_expiry_delta, fee_proportional_millionths, fee_base_msat,
        htlc_minimum_msat, htlc_maximum_msat) of the peer's direction of our
        channel, from its channel_update; Core Lightning's defaults if we have none."""
        for ch in await self.ld.gossipd.listchannels(source=c.peer_id):
            if ch.get("destination") == self.ld.node_id.hex() and ch.get("short_channel_id") == str(c.scid):
                return (ch["delay"], ch["fee_per_millionth"], ch["base_fee_millisatoshi"],
                        ch.get("htlc_minimum_msat", 0), ch.get("htlc_maximum_msat", 2**63))
        r = c.remote_update       # a private channel: the update the peer sent us alone
        if r is not None:
            return (r["cltv_expiry_delta"], r["fee_proportional_millionths"], r["fee_base_msat"],
                    r["htlc_minimum_msat"], r["htlc_maximum_msat"])
        return (34, 10, 1000, 0, 2**63)

    async def message_path(self, secret: bytes) -> BlindedPath | None:
        """A blinded path for onion messages to us through a public peer
        (path_id ``secret``), or None if we have no such peer."""
        peers = await self.entry_peers(payment=False)
        if not peers:
            return None
        return blinded_path([(peers[0].peer_id, EncryptedData(next_node_id=self.ld.node_id)),
                             (self.ld.node_id, EncryptedData(path_id=secret))])

    async def payment_path(self, payment_hash: bytes, amount_msat: int, expiry: int,
                           private: bool) -> tuple[BlindedPath, Payinfo]:
        """The path an invoice of ours is paid through: a public node is its
        own introduction point (as Core Lightning); a private one is reached
        through its best public peer, then dummy hops of its own."""
        ld = self.ld
        cltv_final = int(ld.cfg.get("cltv-final", 18))
        max_cltv = ld.blockheight + PATH_CLTV_PADDING + expiry // 600
        secret = path_secret(self.invoice_base, payment_hash)
        peers = await self.entry_peers(payment=True, amount_msat=amount_msat) if private else []
        if not peers:
            path = blinded_path([(ld.node_id, EncryptedData(path_id=secret,
                                                            payment_constraints=PaymentConstraints(max_cltv, 0)))])
            return path, Payinfo(0, 0, cltv_final, 0, max(amount_msat * 2, 1) if amount_msat else 2**63, b"")
        p = peers[0]
        cons = PaymentConstraints(max_cltv + p.relay.cltv_expiry_delta + cltv_final, p.htlc_minimum_msat)
        path = blinded_path([(p.peer_id, EncryptedData(short_channel_id=p.scid, payment_relay=p.relay,
                                                       payment_constraints=cons)),
                             (ld.node_id, EncryptedData(path_id=secret, payment_constraints=PaymentConstraints(
                                 max_cltv + cltv_final, 0)))], dummies=INVOICE_PATH_DUMMIES, payment=True)
        info = aggregate_payinfo([p.relay] + [PaymentRelay(0, 0, 0)] * INVOICE_PATH_DUMMIES, cltv_final)
        return path, Payinfo(info.fee_base_msat, info.fee_proportional_millionths, info.cltv_expiry_delta,
                             p.htlc_minimum_msat, p.htlc_maximum_msat, b"")

    def offer_path_secret(self, offer: Bolt12) -> bytes:
        """The path_id of our offer's message paths: from its id without the paths."""
        bare = offer.as_kind(B.OFFER)
        bare.offer_paths = None
        return path_secret(self.offer_base, bare.offer_id)

    def invreq_path_secret(self, invreq: Bolt12) -> bytes:
        bare = invreq.as_kind(B.INVREQ)
        bare.invreq_paths = None
        return path_secret(self.offer_base, bare.invreq_id)

    def chain_fields(self, b: Bolt12, kind: str) -> None:
        """Our chain, unless it is bitcoin (BOLT 12: then implied)."""
        chain = self.ld.network.chain_hash
        if chain != B.BITCOIN_CHAIN:
            if kind == B.OFFER:
                b.offer_chains = [chain]
            else:
                b.invreq_chain = chain


def _amount(v: Any) -> int | None:
    """offer's amount: "any", or msat; a currency amount needs a conversion we do not have."""
    if isinstance(v, str) and _CURRENCY.match(v) and not v.lower().endswith(("sat", "btc")):
        raise P.BadType(f"currency {_CURRENCY.match(v).group(1)} needs a currencyconvert plugin, and none is "  # type: ignore[union-attr]
                        "supported: give the amount in msat, sat or btc")
    return P.msat_or_any(v)


def register(ld: "LightningD") -> None:
    cmd = ld.registry.command

    @cmd("offer", [req("amount", _amount), opt("description", P.string), opt("issuer", P.string),
                   opt("label", P.string), opt("quantity_max", P.u64), opt("absolute_expiry", P.u64),
                   opt("recurrence", P.string), opt("recurrence_base", P.anything),
                   opt("recurrence_paywindow", P.string), opt("recurrence_limit", P.u32),
                   opt("single_use", P.boolean, False), opt("proportional_amount", P.boolean),
                   opt("optional_recurrence", P.boolean), opt("fronting_nodes", P.array_of(P.node_id)),
                   opt("dev_paths", P.anything), opt("recurrence_start_any_period", P.boolean)],
         category="payment", description="Create an offer to accept money")
    async def offer(ctx: RequestContext, amount: int | None, description: str | None, issuer: str | None,
                    label: str | None, quantity_max: int | None, absolute_expiry: int | None,
                    recurrence: str | None, recurrence_base: Any, recurrence_paywindow: str | None,
                    recurrence_limit: int | None, single_use: bool, proportional_amount: bool | None,
                    optional_recurrence: bool | None, fronting_nodes: list[bytes] | None, dev_paths: Any,
                    recurrence_start_any_period: bool | None) -> dict:
        # (Core Lightning's parameter order; recurrence_start_any_period, its
        # older name of a recurrence option, is still taken by name)
        offers = ld.offers
        if any(x is not None for x in (recurrence, recurrence_base, recurrence_paywindow, recurrence_limit,
                                       recurrence_start_any_period, proportional_amount)) or optional_recurrence:
            raise RpcError(INVALID_PARAMS, "recurrence is not supported: BOLT 12 removed it from the "
                                           "specification and this node does not implement the draft")
        if fronting_nodes:
            raise RpcError(INVALID_PARAMS, "fronting_nodes is not supported: our offers' blinded paths start "
                                           "at our best public peer, or at us")
        if amount == 0:
            raise RpcError(INVALID_PARAMS, "amount: must be positive, or 'any'")
        if amount is not None and description is None:
            raise RpcError(INVALID_PARAMS, "description: required if amount is set")
        if quantity_max == 0:
            quantity_max = 0     # 0 is "no maximum" (BOLT 12)
        o = Bolt12(B.OFFER, offer_amount=amount, offer_description=description, offer_issuer=issuer,
                   offer_quantity_max=quantity_max, offer_absolute_expiry=absolute_expiry)
        offers.chain_fields(o, B.OFFER)
        # BOLT 12: connected only by private channels -> paths from a public node, and no node id
        if not await offers.public():
            path = await offers.message_path(offers.offer_path_secret(o))
            if path is not None:
                o.offer_paths = [path]
            else:
                ld.log.unusual("offer: no public peer to make a blinded path through: giving our node id")
        if o.offer_paths is None:
            o.offer_issuer_id = ld.node_id
        B.check_offer(o)
        return offers_create(ld, o, label, single_use)

    @cmd("listoffers", [opt("offer_id", P.sha256_hex), opt("active_only", P.boolean, False)], category="payment",
         description="List offers, or {offer_id} only; with {active_only} only active ones")
    async def listoffers(ctx: RequestContext, offer_id: bytes | None, active_only: bool) -> dict:
        offers = ld.offers
        rows = [offers.offer(offer_id)] if offer_id is not None else offers.offers(active_only)
        return {"offers": [offers.offer_json(r) for r in rows if r is not None and (r["active"] or not active_only)]}

    @cmd("disableoffer", [req("offer_id", P.sha256_hex)], category="payment",
         description="Disable offer {offer_id}: no more invoices for it")
    async def disableoffer(ctx: RequestContext, offer_id: bytes) -> dict:
        return _toggle(offer_id, False)

    @cmd("enableoffer", [req("offer_id", P.sha256_hex)], category="payment",
         description="Enable offer {offer_id} again")
    async def enableoffer(ctx: RequestContext, offer_id: bytes) -> dict:
        return _toggle(offer_id, True)

    def _toggle(offer_id: bytes, active: bool) -> dict:
        offers = ld.offers
        row = offers.offer(offer_id)
        if row is None:
            raise RpcError(LIGHTNINGD, "Unknown offer")
        if bool(row["active"]) == active:
            raise RpcError(OFFER_ALREADY_ENABLED if active else OFFER_ALREADY_DISABLED,
                           f"offer already {'enabled' if active else 'disabled'}")
        if active and row["single_use"] and row["used"]:
            raise RpcError(LIGHTNINGD, "Offer already used")
        offers._set("offers", "offer_id", offer_id, active=int(active))
        return offers.offer_json(offers.offer(offer_id))  # type: ignore[arg-type]

    @cmd("invoicerequest", [req("amount", P.msat), req("description", P.string), opt("issuer", P.string),
                            opt("label", P.string), opt("absolute_expiry", P.u64), opt("single_use", P.boolean, True)],
         category="payment", description="Create an invoice_request to send money (a refund, an ATM)")
    async def invoicerequest(ctx: RequestContext, amount: int, description: str, issuer: str | None,
                             label: str | None, absolute_expiry: int | None, single_use: bool) -> dict:
        offers = ld.offers
        if amount == 0:
            raise RpcError(INVALID_PARAMS, "amount: must be positive")
        r = Bolt12(B.INVREQ, invreq_metadata=os.urandom(16), offer_description=description, offer_issuer=issuer,
                   offer_absolute_expiry=absolute_expiry, invreq_amount=amount)
        offers.chain_fields(r, B.INVREQ)
        if not await offers.public():
            # a transient payer key, and a path to us: our node id stays out of it
            path = await offers.message_path(offers.invreq_path_secret(r))
            if path is not None:
                r.invreq_paths = [path]
                r.invreq_payer_id = B.tweak_add_pubkey(ld.node_id, B.alias_tweak(offers.alias_base,
                                                                                  r.invreq_metadata))
        if r.invreq_payer_id is None:
            r.invreq_payer_id = ld.node_id
        B.check_invreq(r)
        invreq_id = r.invreq_id
        with offers.db.transaction():
            offers.db.execute("INSERT INTO invoicerequests (invreq_id, bolt12, label, single_use, created_at) "
                              "VALUES (?, ?, ?, ?, ?)", (invreq_id, r.to_string(), label, int(single_use),
                                                         int(time.time())))
        return offers.invreq_json(offers.invreq(invreq_id))  # type: ignore[arg-type]

    @cmd("listinvoicerequests", [opt("invreq_id", P.sha256_hex), opt("active_only", P.boolean, False)],
         category="payment", description="List our invoice_requests, or {invreq_id} only")
    async def listinvoicerequests(ctx: RequestContext, invreq_id: bytes | None, active_only: bool) -> dict:
        offers = ld.offers
        rows = [offers.invreq(invreq_id)] if invreq_id is not None else \
            offers._rows("invoicerequests", "invreq_id", "WHERE active = 1" if active_only else "")
        return {"invoicerequests": [offers.invreq_json(r) for r in rows
                                    if r is not None and (r["active"] or not active_only)]}

    @cmd("disableinvoicerequest", [req("invreq_id", P.sha256_hex)], category="payment",
         description="Disable invoice_request {invreq_id}: invoices for it are not paid any more")
    async def disableinvoicerequest(ctx: RequestContext, invreq_id: bytes) -> dict:
        offers = ld.offers
        row = offers.invreq(invreq_id)
        if row is None:
            raise RpcError(LIGHTNINGD, "Unknown invoice_request")
        if not row["active"]:
            raise RpcError(OFFER_ALREADY_DISABLED, "invoice_request already disabled")
        offers._set("invoicerequests", "invreq_id", invreq_id, active=0)
        return offers.invreq_json(offers.invreq(invreq_id))  # type: ignore[arg-type]


def offers_create(ld: "LightningD", o: Bolt12, label: str | None, single_use: bool) -> dict:
    """Store the offer (or find it: the same fields are the same offer)."""
    offers = ld.offers
    oid = o.offer_id
    row = offers.offer(oid)
    created = row is None
    if row is None:
        with offers.db.transaction():
            offers.db.execute("INSERT INTO offers (offer_id, bolt12, label, single_use, created_at) VALUES "
                              "(?, ?, ?, ?, ?)", (oid, o.to_string(), label, int(single_use), int(time.time())))
        row = offers.offer(oid)
    elif not row["active"]:
        raise RpcError(OFFER_ALREADY_EXISTS, "Already exists, but isn't active")
    assert row is not None
    out = offers.offer_json(row)
    out.pop("description", None)
    out["created"] = created
    return out


def decode_json(text: str) -> dict:
    """``decode`` of a BOLT 12 string (RpcError if it does not parse)."""
    try:
        return bolt12_json(B.decode(text))
    except Bolt12Error as e:
        raise RpcError(INVALID_PARAMS, f"string: Invalid bolt12: {e}") from None

