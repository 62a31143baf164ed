"""Invoices (Core Lightning's wallet/invoices.c + the payment side of
lightningd/invoice.c): the `invoices` table, the unpaid -> paid | expired
state machine, the waitinvoice/waitanyinvoice waiters and autoclean.

Interface for the HTLC engine (final hop), in this order:

1. ``check_payment(payment_hash, amount_msat, total_msat, payment_secret,
   cltv_expiry, blockheight) -> (preimage, None) | (None, failure_code)``:
   pure check, no state change.  Fails with 0x400F
   (incorrect_or_unknown_payment_details, as BOLT 4 and Core Lightning) for:
   unknown hash, already paid, expired, missing or wrong payment secret,
   ``total_msat`` below the invoice amount or above twice it (any-amount
   invoices take anything), ``cltv_expiry < blockheight +
   min_final_cltv_expiry``.  Call it for every HTLC (every MPP part).
2. ``await run_invoice_payment_hook(payment_hash, amount_msat) -> int | None``
   once the parts add up: the `invoice_payment` plugin hook.  A failure code
   (int) means fail the HTLC(s): 0x400F for ``{"result": "reject"}``, or the
   first two bytes of a plugin's ``failure_message``.  It also returns 0x400F
   if the invoice was paid, expired or deleted while the plugins thought, so
   after ``None`` the invoice is unpaid: call ``mark_paid`` with no ``await``
   in between.
3. ``mark_paid(payment_hash, amount_received_msat) -> dict`` inside the
   caller's open transaction (``with db.transaction():`` together with the
   HTLC fulfilment): state paid, the next ``pay_index`` (1, 2, 3..., never
   reused), ``paid_at``, ``amount_received_msat``; returns the invoice JSON.
   Raises :class:`InvoiceNotPayable` if the invoice is not unpaid.
4. ``notify_paid(payment_hash)`` after the commit: wakes waitinvoice and
   waitanyinvoice and sends the `invoice_payment` notification.  Waiters only
   ever see payments that were notified, so an uncommitted (or rolled back)
   ``mark_paid`` is never reported.
"""
from __future__ import annotations

import asyncio
import hmac
import time
from typing import TYPE_CHECKING, Any

from .jsonrpc_errors import (
    INVOICE_EXPIRED_DURING_WAIT,
    INVOICE_LABEL_ALREADY_EXISTS,
    INVOICE_NO_DESCRIPTION,
    INVOICE_NOT_FOUND,
    INVOICE_PREIMAGE_ALREADY_EXISTS,
    INVOICE_STATUS_UNEXPECTED,
    INVOICE_WAIT_TIMED_OUT,
    LIGHTNINGD,
)

if TYPE_CHECKING:
    from .db import Db

# Stored states: explicit values, Core Lightning's `enum invoice_status`.
UNPAID, PAID, EXPIRED = 0, 1, 2
STATUS = {UNPAID: "unpaid", PAID: "paid", EXPIRED: "expired"}

# BOLT 4 failure codes used here
INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS = 0x400F
TEMPORARY_NODE_FAILURE = 0x2002

# autoclean subsystems (Core Lightning's autoclean plugin); only invoices exist here
AUTOCLEAN_SUBSYSTEMS = ("succeededforwards", "failedforwards", "succeededpays", "failedpays", "paidinvoices",
                        "expiredinvoices", "networkevents")

_COLUMNS = ("id, state, label, payment_hash, preimage, payment_secret, amount_msat, description, bolt11, "
            "created_at, expires_at, min_final_cltv_expiry, pay_index, amount_received_msat, paid_at, updated_index, "
            "bolt12, local_offer_id, invreq_payer_note")
_MAX_EXPIRY_CHECK = 60.0  # re-read the soonest expiry at least this often (seconds)


class InvoiceError(Exception):
    """A refused invoice operation, with Core Lightning's JSON-RPC code."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class InvoiceNotPayable(InvoiceError):
    """mark_paid on an invoice that is not unpaid (paid, expired, deleted)."""


class Invoices:
    def __init__(self, ld: Any, start_tasks: bool = True) -> None:
        self.ld = ld
        self.db: "Db" = ld.db
        self._changed = asyncio.Event()
        # pay_index of the last payment announced by notify_paid: waiters
        # report nothing beyond it (it is committed)
        self._notified = self._counter("next_pay_index") - 1
        self._expiry_changed = asyncio.Event()
        #: offers.py: a BOLT 12 invoice of one of our offers was paid (inside mark_paid's transaction)
        self.on_bolt12_paid: Any = None
        # autoclean's cycle and the ages of the invoice subsystems: the
        # options, until the (deprecated) autocleaninvoice command sets them
        self.autoclean_cycle = int(ld.cfg.get("autoclean-cycle", 3600))
        self.autoclean_age = {s: int(ld.cfg.get(f"autoclean-{s}-age", 0) or 0)
                              for s in ("expiredinvoices", "paidinvoices")}
        self._autoclean_reset = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        if start_tasks:
            self.tasks = [asyncio.ensure_future(c) for c in (self._expiry_loop(), self._autoclean_loop())]

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()

    # -- rows and JSON ------------------------------------------------------------------
    def _counter(self, name: str) -> int:
        return int(self.db.get_var(name, 1))

    def _take(self, name: str) -> int:
        n = self._counter(name)
        self.db.set_var(name, n + 1)
        return n

    def _rows(self, where: str = "", params: tuple = (), tail: str = "ORDER BY id") -> list[dict]:
        names = [c.strip() for c in _COLUMNS.split(",")]
        return [dict(zip(names, r)) for r in self.db.query(f"SELECT {_COLUMNS} FROM invoices {where} {tail}", params)]

    def _one(self, where: str, params: tuple) -> dict | None:
        rows = self._rows(where, params, "")
        return rows[0] if rows else None

    def by_label(self, label: str) -> dict | None:
        return self._one("WHERE label = ?", (label,))

    def by_hash(self, payment_hash: bytes) -> dict | None:
        return self._one("WHERE payment_hash = ?", (payment_hash,))

    @staticmethod
    def status(row: dict, now: float | None = None) -> str:
        """unpaid / paid / expired, counting an unpaid invoice past its
        expiry as expired before the expiry task marks it."""
        if row["state"] == UNPAID and (now if now is not None else time.time()) >= row["expires_at"]:
            return "expired"
        return STATUS[row["state"]]

    def to_json(self, row: dict, now: float | None = None) -> dict:
        """Core Lightning's json_add_invoice_fields, in its field order."""
        status = self.status(row, now)
        out: dict[str, Any] = {"label": row["label"]}
        if row["bolt12"] is not None:
            out["bolt12"] = row["bolt12"]
        else:
            out["bolt11"] = row["bolt11"]
        out["payment_hash"] = row["payment_hash"].hex()
        if row["amount_msat"] is not None:
            out["amount_msat"] = row["amount_msat"]
        out["status"] = status
        if status == "paid":
            out.update(pay_index=row["pay_index"], amount_received_msat=row["amount_received_msat"],
                       paid_at=row["paid_at"], payment_preimage=row["preimage"].hex())
        if row["description"] is not None:
            out["description"] = row["description"]
        out["expires_at"] = row["expires_at"]
        if row["local_offer_id"] is not None:
            out["local_offer_id"] = row["local_offer_id"].hex()
        if row["invreq_payer_note"] is not None:
            out["invreq_payer_note"] = row["invreq_payer_note"]
        out["created_index"] = row["id"]
        if row["updated_index"] is not None:
            out["updated_index"] = row["updated_index"]
        return out

    def listing(self, index: str | None = None, start: int = 0, limit: int | None = None) -> list[dict]:
        col = "updated_index" if index == "updated" else "id"
        tail = f"ORDER BY {col}" + (" LIMIT ?" if limit is not None else "")
        params = (start,) + ((limit,) if limit is not None else ())
        return [self.to_json(r) for r in self._rows(f"WHERE {col} >= ?", params, tail)]

    # -- creation and deletion ----------------------------------------------------------
    def check_new(self, label: str, payment_hash: bytes) -> None:
        """Raise 901 (preimage already used) or 900 (duplicate label), in
        Core Lightning's order."""
        if self.by_hash(payment_hash) is not None:
            raise InvoiceError(INVOICE_PREIMAGE_ALREADY_EXISTS, "preimage already used")
        if self.by_label(label) is not None:
            raise InvoiceError(INVOICE_LABEL_ALREADY_EXISTS, f"Duplicate label '{label}'")

    def create(self, label: str, preimage: bytes, payment_hash: bytes, payment_secret: bytes,
               amount_msat: int | None, description: str, bolt11: str, created_at: int, expires_at: int,
               min_final_cltv_expiry: int, bolt12: str | None = None, local_offer_id: bytes | None = None,
               invreq_payer_note: str | None = None) -> dict:
        """Store a new unpaid invoice (its bolt11, or bolt12, already signed;
        a BOLT 12 invoice's ``payment_secret`` is the path_id of its paths)."""
        with self.db.transaction():
            self.check_new(label, payment_hash)
            cur = self.db.execute(
                "INSERT INTO invoices (state, label, payment_hash, preimage, payment_secret, amount_msat, "
                "description, bolt11, created_at, expires_at, min_final_cltv_expiry, bolt12, local_offer_id, "
                "invreq_payer_note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (UNPAID, label, payment_hash, preimage, payment_secret, amount_msat, description, bolt11,
                 created_at, expires_at, min_final_cltv_expiry, bolt12, local_offer_id, invreq_payer_note))
            row = self._one("WHERE id = ?", (cur.lastrowid,))
        assert row is not None
        self._expiry_changed.set()
        return self.to_json(row)

    def delete(self, label: str, status: str, desconly: bool = False) -> dict:
        """delinvoice: 905 unknown label, 906 status mismatch (data:
        current_status, expected_status), 908 description already removed."""
        with self.db.transaction():
            row = self.by_label(label)
            if row is None:
                raise InvoiceError(INVOICE_NOT_FOUND, "Unknown invoice")
            actual = self.status(row)
            if actual != status:
                raise InvoiceError(INVOICE_STATUS_UNEXPECTED, f"Invoice status is {actual} not {status}",
                                   {"current_status": actual, "expected_status": status})
            if desconly:
                if row["description"] is None:
                    raise InvoiceError(INVOICE_NO_DESCRIPTION, "Invoice description already removed")
                row["description"], row["updated_index"] = None, self._take("invoices_updated_index")
                self.db.execute("UPDATE invoices SET description = NULL, updated_index = ? WHERE id = ?",
                                (row["updated_index"], row["id"]))
            else:
                self.db.execute("DELETE FROM invoices WHERE id = ?", (row["id"],))
        self._wake()
        return self.to_json(row)

    def delete_expired(self, max_expiry_time: int, now: float | None = None) -> int:
        """Delete expired invoices whose expiry is at or before max_expiry_time."""
        now = time.time() if now is None else now
        with self.db.transaction():
            n = self.db.execute("DELETE FROM invoices WHERE state != ? AND expires_at <= ? AND expires_at <= ?",
                                (PAID, max_expiry_time, now)).rowcount
        if n:
            self._wake()
        return n

    # -- payment (the HTLC engine's interface, see the module docstring) -----------------
    def check_payment(self, payment_hash: bytes, amount_msat: int, total_msat: int, payment_secret: bytes | None,
                      cltv_expiry: int, blockheight: int, blinded: bool = False) -> tuple[bytes | None, int | None]:
        """``blinded``: the payment came through a blinded path and
        ``payment_secret`` is its ``path_id``: only a BOLT 12 invoice (whose
        paths carry it) is paid that way, and a BOLT 12 invoice only so."""
        fail = (None, INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)
        row = self.by_hash(payment_hash)
        if row is None or self.status(row) != "unpaid":
            return fail
        if blinded != (row["bolt12"] is not None):
            return fail
        # invoices always require the secret (payment_secret is compulsory in `9`)
        if payment_secret is None or not hmac.compare_digest(payment_secret, row["payment_secret"]):
            return fail
        want = row["amount_msat"]
        if want is not None and not want <= total_msat <= 2 * want:
            return fail
        if cltv_expiry < blockheight + row["min_final_cltv_expiry"]:
            return fail
        return row["preimage"], None

    async def run_invoice_payment_hook(self, payment_hash: bytes, amount_msat: int) -> int | None:
        row = self.by_hash(payment_hash)
        if row is None:
            return INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
        payload = {"payment": {"label": row["label"], "preimage": row["preimage"].hex(), "msat": amount_msat}}
        res = await self.ld.plugins.hooks.call("invoice_payment", payload)
        code = _hook_failure(res)
        if code is not None:
            return code
        row = self.by_hash(payment_hash)  # paid, expired or deleted meanwhile?
        if row is None or row["state"] != UNPAID:
            return INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
        return None

    def mark_paid(self, payment_hash: bytes, amount_received_msat: int) -> dict:
        with self.db.transaction():  # joins the caller's
            row = self.by_hash(payment_hash)
            if row is None or row["state"] != UNPAID:
                raise InvoiceNotPayable(LIGHTNINGD, f"invoice {payment_hash.hex()} is not unpaid")
            row.update(state=PAID, pay_index=self._take("next_pay_index"),
                       updated_index=self._take("invoices_updated_index"), paid_at=int(time.time()),
                       amount_received_msat=amount_received_msat)
            self.db.execute("UPDATE invoices SET state = ?, pay_index = ?, updated_index = ?, paid_at = ?, "
                            "amount_received_msat = ? WHERE id = ?",
                            (PAID, row["pay_index"], row["updated_index"], row["paid_at"], amount_received_msat,
                             row["id"]))
            if row["local_offer_id"] is not None and self.on_bolt12_paid is not None:
                self.on_bolt12_paid(row["local_offer_id"], payment_hash)
        return self.to_json(row)

    def notify_paid(self, payment_hash: bytes) -> None:
        row = self.by_hash(payment_hash)
        if row is None or row["state"] != PAID:
            return
        self._notified = max(self._notified, row["pay_index"])
        self._wake()
        self.ld.plugins.notify("invoice_payment", {"label": row["label"], "preimage": row["preimage"].hex(),
                                                   "msat": row["amount_received_msat"]})

    # -- waiting ------------------------------------------------------------------------
    def _wake(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    def first_paid_after(self, lastpay_index: int) -> dict | None:
        row = self._one("WHERE state = ? AND pay_index > ? AND pay_index <= ? ORDER BY pay_index LIMIT 1",
                        (PAID, lastpay_index, self._notified))
        return self.to_json(row) if row is not None else None

    async def wait_any(self, lastpay_index: int, timeout: float | None) -> dict:
        """The first invoice paid with pay_index > lastpay_index, waiting for
        it if needed; 904 at the timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            inv = self.first_paid_after(lastpay_index)
            if inv is not None:
                return inv
            ev = self._changed
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise InvoiceError(INVOICE_WAIT_TIMED_OUT, "Timed out while waiting for invoice to be paid")
            try:
                await asyncio.wait_for(ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_one(self, label: str) -> dict:
        """waitinvoice: the invoice once paid; 903 (data: the invoice) if it
        expires, -1 if the label is unknown or deleted meanwhile."""
        first = True
        while True:
            row = self.by_label(label)
            if row is None:
                raise InvoiceError(LIGHTNINGD, "Label not found" if first else "Invoice deleted during wait")
            first = False
            now = time.time()
            if row["state"] == PAID and row["pay_index"] <= self._notified:
                return self.to_json(row, now)
            if self.status(row, now) == "expired":
                raise InvoiceError(INVOICE_EXPIRED_DURING_WAIT, "invoice expired during wait",
                                   self.to_json(row, now))
            ev = self._changed
            left = None if row["state"] == PAID else max(0.0, row["expires_at"] - now) + 0.01
            try:
                await asyncio.wait_for(ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    def expire_others(self, local_offer_id: bytes, paid_hash: bytes) -> None:
        """A single-use offer was paid: its other unpaid invoices expire now
        (in the caller's transaction)."""
        for (i,) in self.db.query("SELECT id FROM invoices WHERE local_offer_id = ? AND state = ? AND "
                                  "payment_hash != ?", (local_offer_id, UNPAID, paid_hash)):
            self.db.execute("UPDATE invoices SET state = ?, updated_index = ? WHERE id = ?",
                            (EXPIRED, self._take("invoices_updated_index"), i))

    # -- expiry -------------------------------------------------------------------------
    def expire_due(self, now: float | None = None) -> int:
        """Mark unpaid invoices past their expiry as expired (each gets an
        updated_index, as in Core Lightning)."""
        now = time.time() if now is None else now
        with self.db.transaction():
            ids = [r[0] for r in self.db.query("SELECT id FROM invoices WHERE state = ? AND expires_at <= ? "
                                               "ORDER BY expires_at, id", (UNPAID, now))]
            for i in ids:
                self.db.execute("UPDATE invoices SET state = ?, updated_index = ? WHERE id = ?",
                                (EXPIRED, self._take("invoices_updated_index"), i))
        if ids:
            self._wake()
        return len(ids)

    async def _expiry_loop(self) -> None:
        while True:
            self.expire_due()
            row = self.db.one("SELECT MIN(expires_at) FROM invoices WHERE state = ?", (UNPAID,))
            delay = _MAX_EXPIRY_CHECK if row[0] is None else min(_MAX_EXPIRY_CHECK, row[0] - time.time())
            try:
                await asyncio.wait_for(self._expiry_changed.wait(), max(delay, 0.0) + 0.01)
            except asyncio.TimeoutError:
                pass
            self._expiry_changed.clear()

    # -- autoclean ----------------------------------------------------------------------
    def autoclean_once(self, subsystem: str, age: int, now: float | None = None) -> dict:
        """Delete expired (by expiry time) or paid (by paid_at) invoices
        older than age seconds: {"cleaned", "uncleaned"} (uncleaned: those of
        that status still too new).  Other subsystems have nothing here."""
        now = time.time() if now is None else now
        if subsystem == "expiredinvoices":
            match, col = "state != ? AND expires_at <= ?", "expires_at"
            params: tuple = (PAID, now)
        elif subsystem == "paidinvoices":
            match, col, params = "state = ?", "paid_at", (PAID,)
        else:
            return {"cleaned": 0, "uncleaned": 0}
        with self.db.transaction():
            cleaned = self.db.execute(f"DELETE FROM invoices WHERE {match} AND {col} < ?",
                                      params + (now - age,)).rowcount
            uncleaned = self.db.one(f"SELECT COUNT(*) FROM invoices WHERE {match}", params)[0]
            total = int(self.db.get_var(f"autoclean_{subsystem}_cleaned", 0)) + cleaned
            self.db.set_var(f"autoclean_{subsystem}_cleaned", total)
        if cleaned:
            self._wake()
        return {"cleaned": cleaned, "uncleaned": uncleaned}

    def autoclean_status(self, subsystem: str) -> dict:
        age = self.autoclean_age.get(subsystem, 0)
        out: dict[str, Any] = {"enabled": age > 0}
        if age > 0:
            out["age"] = age
        out["cleaned"] = int(self.db.get_var(f"autoclean_{subsystem}_cleaned", 0))
        return out

    def set_autoclean_expired(self, cycle_seconds: int, expired_by: int) -> None:
        """autocleaninvoice: clean invoices expired for `expired_by` seconds
        every `cycle_seconds` (0: stop cleaning expired invoices); the next
        cycle starts now, as Core Lightning's timer did."""
        if cycle_seconds:
            self.autoclean_cycle = cycle_seconds
        self.autoclean_age["expiredinvoices"] = expired_by if cycle_seconds else 0
        self._autoclean_reset.set()

    async def _autoclean_loop(self) -> None:
        while True:
            self._autoclean_reset.clear()
            try:
                await asyncio.wait_for(self._autoclean_reset.wait(), max(1, self.autoclean_cycle))
                continue              # new settings: a new cycle
            except asyncio.TimeoutError:
                pass
            for sub, age in list(self.autoclean_age.items()):
                if age > 0:
                    r = self.autoclean_once(sub, age)
                    if r["cleaned"]:
                        self.ld.log.debug(f"autoclean: deleted {r['cleaned']} {sub}")


def _hook_failure(res: dict) -> int | None:
    """The invoice_payment hook's answer -> None (continue) or a failure code."""
    result = res.get("result")
    if result == "continue":
        return None
    if result is None and isinstance(res.get("failure_message"), str):
        try:
            msg = bytes.fromhex(res["failure_message"])
        except ValueError:
            msg = b""
        if len(msg) >= 2:
            return int.from_bytes(msg[:2], "big")
    if result is None and res.get("failure_code") == TEMPORARY_NODE_FAILURE:
        return TEMPORARY_NODE_FAILURE  # Core Lightning's deprecated form
    return INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS  # "reject", or anything else
