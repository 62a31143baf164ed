"""Invoices: the Invoices class against a real database (state machine,
payment checks, the waitanyinvoice queue under concurrent payments, expiry,
autoclean), hsmd's invoice signing, and the RPC commands on real nodes
(bolt11 checked by the independent `bolt11` package, every error code, the
queue across a restart, the invoice_payment hook and notifications)."""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import types
from pathlib import Path

import bolt11 as ext
import pytest
from pyln.client import RpcError

from bitcoin.hashes import sha256
from bitcoin.keys import pubkey_of
from common.bolt11 import InvoiceFields, decode, encode, signing_hash
from common.features import bits_from_features
from lightningd.db import Db
from lightningd.invoices import (EXPIRED, INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, PAID, TEMPORARY_NODE_FAILURE,
                                 InvoiceError, InvoiceNotPayable, Invoices)
from node_factory import wait_for
from rpc_errors import rpc_error

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "spec" / "cln" / "schemas"
HELLO = str(Path(__file__).parent / "plugins" / "helloplugin.py")
KEY = b"\x42" * 32


# -- a small checker of Core Lightning's response schemas ------------------------------

_HEX_TYPES = {"hash": 64, "secret": 64, "pubkey": 66, "txid": 64, "hex": None, "signature": None}


def check_schema(command: str, result: dict) -> None:
    """Required fields, no undeclared ones, types, and the if/then/else
    branches the invoice schemas use (enough to catch a wrong field)."""
    schema = json.loads((SCHEMAS / f"{command}.json").read_text())["response"]
    _check(schema, result, command)


def _check(s: dict, v, where: str) -> None:
    t = s.get("type")
    if t in ("u64", "u32", "msat", "u16"):
        assert isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"{where}: {v!r} is not {t}"
    elif t in _HEX_TYPES:
        assert isinstance(v, str) and bytes.fromhex(v) is not None, f"{where}: {v!r} is not {t}"
        assert _HEX_TYPES[t] is None or len(v) == _HEX_TYPES[t], f"{where}: {v!r} is not {t}"
    elif t in ("string", "short_channel_id"):
        assert isinstance(v, str), f"{where}: {v!r} is not a string"
    elif t == "boolean":
        assert isinstance(v, bool), f"{where}: {v!r} is not a boolean"
    elif t == "array":
        assert isinstance(v, list), f"{where}: not an array"
        for i, x in enumerate(v):
            _check(s.get("items", {}), x, f"{where}[{i}]")
    if "enum" in s:
        assert v in s["enum"], f"{where}: {v!r} not in {s['enum']}"
    if t != "object" and "properties" not in s:
        return
    assert isinstance(v, dict), f"{where}: not an object"
    props = dict(s.get("properties", {}))
    required = list(s.get("required", []))
    closed = s.get("additionalProperties") is False
    for branch in s.get("allOf", []) + ([{"if": s["if"], "then": s["then"], "else": s.get("else", {})}]
                                        if "if" in s else []):
        cond = branch["if"]
        ok = all(k in v for k in cond.get("required", [])) and all(
            v.get(k) in p["enum"] for k, p in cond.get("properties", {}).items() if "enum" in p)
        sub = branch["then"] if ok else branch.get("else", {})
        required += sub.get("required", [])
        for k, p in sub.get("properties", {}).items():
            if p:
                props[k] = p
        if sub.get("additionalProperties") is False:
            closed, allowed = True, set(sub.get("properties", {}))
            extra = set(v) - allowed
            assert not extra, f"{where}: fields {extra} not allowed"
    for k in required:
        assert k in v, f"{where}: missing {k}"
    if closed and s.get("additionalProperties") is False:
        extra = set(v) - set(props)
        assert not extra, f"{where}: fields {extra} not allowed"
    for k, x in v.items():
        if k in props:
            _check(props[k], x, f"{where}.{k}")


# -- the Invoices class against a temporary database -----------------------------------

class FakePlugins:
    def __init__(self) -> None:
        self.notes: list[tuple[str, dict]] = []
        self.hook_answer: dict = {"result": "continue"}
        self.hook_calls: list[tuple[str, dict]] = []
        self.during_hook = None
        self.hooks = self

    def notify(self, topic: str, payload: dict) -> None:
        self.notes.append((topic, payload))

    async def call(self, name: str, payload: dict) -> dict:
        self.hook_calls.append((name, payload))
        await asyncio.sleep(0)
        if self.during_hook is not None:
            self.during_hook()
        return self.hook_answer


def fake_ld(path: Path, **cfg) -> types.SimpleNamespace:
    return types.SimpleNamespace(db=Db(str(path / "lightningd.sqlite3")), plugins=FakePlugins(),
                                 cfg=types.SimpleNamespace(get=lambda k, d=None: cfg.get(k, d)),
                                 log=types.SimpleNamespace(debug=lambda m: None))


def new_invoice(invs: Invoices, label: str, amount: int | None = 1000, expiry: int = 3600, cltv: int = 18,
                preimage: bytes | None = None, now: int | None = None) -> dict:
    preimage = preimage or sha256(label.encode())
    now = int(time.time()) if now is None else now
    secret = sha256(b"secret" + preimage)
    b11 = encode(InvoiceFields("regtest", now, sha256(preimage), secret, amount, description=f"d {label}",
                               expiry=expiry, min_final_cltv_expiry=cltv), KEY)
    return invs.create(label, preimage, sha256(preimage), secret, amount, f"d {label}", b11, now, now + expiry, cltv)


def secret_of(label: str) -> bytes:
    return sha256(b"secret" + sha256(label.encode()))


def test_create_duplicates_and_created_index(tmp_path):
    invs = Invoices(fake_ld(tmp_path), start_tasks=False)
    a = new_invoice(invs, "a")
    b = new_invoice(invs, "b", amount=None)
    assert (a["created_index"], b["created_index"]) == (1, 2)
    assert a["status"] == "unpaid" and "amount_msat" not in b and "updated_index" not in a
    with pytest.raises(InvoiceError) as e:
        new_invoice(invs, "a", preimage=b"\x01" * 32)
    assert e.value.code == 900 and e.value.message == "Duplicate label 'a'"
    with pytest.raises(InvoiceError) as e:  # both duplicated: the preimage is reported (Core Lightning's order)
        new_invoice(invs, "a")
    assert e.value.code == 901
    invs.delete("b", "unpaid")
    assert new_invoice(invs, "c")["created_index"] == 3  # never reused
    assert [i["label"] for i in invs.listing()] == ["a", "c"]
    assert [i["label"] for i in invs.listing("created", 2, 1)] == ["c"]


def test_check_payment_every_failure(tmp_path):
    invs = Invoices(fake_ld(tmp_path), start_tasks=False)
    now = int(time.time())
    inv = new_invoice(invs, "x", amount=10_000, cltv=20)
    h, sec = bytes.fromhex(inv["payment_hash"]), secret_of("x")
    pre = sha256(b"x")
    ok = (pre, None)
    fail = (None, INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)
    assert invs.check_payment(h, 10_000, 10_000, sec, 120, 100) == ok
    assert invs.check_payment(h, 4_000, 20_000, sec, 120, 100) == ok      # an MPP part, exactly 2x in total
    assert invs.check_payment(b"\x00" * 32, 10_000, 10_000, sec, 120, 100) == fail  # unknown
    assert invs.check_payment(h, 10_000, 10_000, None, 120, 100) == fail            # no secret
    assert invs.check_payment(h, 10_000, 10_000, b"\x01" * 32, 120, 100) == fail    # wrong secret
    assert invs.check_payment(h, 9_999, 9_999, sec, 120, 100) == fail               # too little
    assert invs.check_payment(h, 20_001, 20_001, sec, 120, 100) == fail             # more than twice
    assert invs.check_payment(h, 10_000, 10_000, sec, 119, 100) == fail             # cltv too close
    anyinv = new_invoice(invs, "any", amount=None)
    assert invs.check_payment(bytes.fromhex(anyinv["payment_hash"]), 1, 1, secret_of("any"), 118, 100)[1] is None
    old = new_invoice(invs, "old", now=now - 100, expiry=50)
    assert invs.check_payment(bytes.fromhex(old["payment_hash"]), 1000, 1000, secret_of("old"), 500, 100) == fail
    with invs.db.transaction():
        invs.mark_paid(h, 10_000)
    assert invs.check_payment(h, 10_000, 10_000, sec, 120, 100) == fail             # already paid


def test_mark_paid_pay_index_rollback_and_persistence(tmp_path):
    ld = fake_ld(tmp_path)
    invs = Invoices(ld, start_tasks=False)
    hashes = [bytes.fromhex(new_invoice(invs, f"l{i}")["payment_hash"]) for i in range(4)]
    with invs.db.transaction():
        paid = invs.mark_paid(hashes[0], 1500)
        # inside the transaction, before notify_paid: no waiter may see it
        assert invs.first_paid_after(0) is None
    assert (paid["status"], paid["pay_index"], paid["amount_received_msat"]) == ("paid", 1, 1500)
    assert paid["payment_preimage"] == sha256(b"l0").hex() and paid["updated_index"] == 1
    invs.notify_paid(hashes[0])
    assert invs.first_paid_after(0)["label"] == "l0"
    assert ld.plugins.notes[-1] == ("invoice_payment", {"label": "l0", "preimage": sha256(b"l0").hex(),
                                                        "msat": 1500})
    with pytest.raises(RuntimeError):  # the caller's transaction fails: nothing happened
        with invs.db.transaction():
            invs.mark_paid(hashes[1], 1000)
            raise RuntimeError("channel update failed")
    assert invs.by_hash(hashes[1])["state"] == 0
    with pytest.raises(InvoiceNotPayable):
        invs.mark_paid(hashes[0], 1000)
    with invs.db.transaction():
        assert invs.mark_paid(hashes[2], 1000)["pay_index"] == 2   # index 2 was not consumed by the rollback
    invs.notify_paid(hashes[2])
    ld.db.close()
    # a restart: a new database handle and Invoices continue the sequence
    ld2 = fake_ld(tmp_path)
    invs2 = Invoices(ld2, start_tasks=False)
    assert invs2.first_paid_after(1)["label"] == "l2"
    with invs2.db.transaction():
        assert invs2.mark_paid(hashes[3], 1000)["pay_index"] == 3


def test_waitany_queue_under_concurrent_payments(tmp_path):
    """Many payments, each in its own transaction (some rolled back and
    retried) at random moments, and several waitanyinvoice consumer loops:
    every consumer sees every payment once, in pay_index order."""
    ld = fake_ld(tmp_path)
    n = 150

    async def main():
        invs = Invoices(ld, start_tasks=False)
        labels = [f"inv{i}" for i in range(n)]
        hashes = {lb: bytes.fromhex(new_invoice(invs, lb)["payment_hash"]) for lb in labels}
        rng = random.Random(7)
        seen: dict[int, list[tuple[int, str]]] = {c: [] for c in range(4)}

        async def consumer(c: int) -> None:
            last = 0
            while len(seen[c]) < n:
                inv = await invs.wait_any(last, 10)
                seen[c].append((inv["pay_index"], inv["label"]))
                last = inv["pay_index"]
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        async def payer(label: str) -> None:
            await asyncio.sleep(rng.random() * 0.2)
            if rng.random() < 0.2:  # a failed attempt first: rolled back, invisible
                with pytest.raises(RuntimeError):
                    with invs.db.transaction():
                        invs.mark_paid(hashes[label], 1000)
                        raise RuntimeError("boom")
                await asyncio.sleep(rng.random() * 0.05)
            pre, code = invs.check_payment(hashes[label], 1000, 1000, secret_of(label), 1000, 10)
            assert code is None
            assert await invs.run_invoice_payment_hook(hashes[label], 1000) is None
            with invs.db.transaction():
                invs.mark_paid(hashes[label], 1000)
            invs.notify_paid(hashes[label])

        consumers = [asyncio.ensure_future(consumer(c)) for c in seen]
        await asyncio.gather(*(payer(lb) for lb in labels))
        await asyncio.wait_for(asyncio.gather(*consumers), 20)
        # a late consumer starting from 0 gets the whole queue at once
        late, last = [], 0
        while True:
            try:
                inv = await invs.wait_any(last, 0)
            except InvoiceError as e:
                assert e.code == 904
                break
            late.append(inv["pay_index"])
            last = inv["pay_index"]
        return seen, late
    seen, late = asyncio.run(main())
    for c, got in seen.items():
        assert [i for i, _ in got] == list(range(1, n + 1)), c
        assert sorted(lb for _, lb in got) == sorted(f"inv{i}" for i in range(n))
    assert seen[0] == seen[1] == seen[2] == seen[3]
    assert late == list(range(1, n + 1))


def test_waitone_paid_expired_deleted(tmp_path):
    ld = fake_ld(tmp_path)

    async def main():
        invs = Invoices(ld, start_tasks=False)
        h = bytes.fromhex(new_invoice(invs, "p")["payment_hash"])
        new_invoice(invs, "e", expiry=3)   # long enough to be pending below, even on a loaded machine
        new_invoice(invs, "d")
        wp = asyncio.ensure_future(invs.wait_one("p"))
        we = asyncio.ensure_future(invs.wait_one("e"))
        wd = asyncio.ensure_future(invs.wait_one("d"))
        await asyncio.sleep(0.05)
        assert not (wp.done() or we.done() or wd.done())
        with invs.db.transaction():
            invs.mark_paid(h, 1000)
        await asyncio.sleep(0.05)
        assert not wp.done()  # committed but not yet notified
        invs.notify_paid(h)
        assert (await wp)["pay_index"] == 1
        invs.delete("d", "unpaid")
        with pytest.raises(InvoiceError) as e:
            await wd
        assert (e.value.code, e.value.message) == (-1, "Invoice deleted during wait")
        with pytest.raises(InvoiceError) as e:
            await asyncio.wait_for(we, 10)
        assert e.value.code == 903 and e.value.data["status"] == "expired" and e.value.data["label"] == "e"
        with pytest.raises(InvoiceError) as e:
            await invs.wait_one("nope")
        assert (e.value.code, e.value.message) == (-1, "Label not found")
        with pytest.raises(InvoiceError) as e:
            await invs.wait_any(1, 0.1)
        assert e.value.code == 904
    asyncio.run(main())


def test_expiry_marks_updated_index_and_delete(tmp_path):
    invs = Invoices(fake_ld(tmp_path), start_tasks=False)
    now = int(time.time())
    new_invoice(invs, "a", now=now - 10, expiry=5)
    new_invoice(invs, "b", now=now - 10, expiry=8)
    new_invoice(invs, "c")
    assert invs.by_label("a")["state"] == 0 and invs.to_json(invs.by_label("a"))["status"] == "expired"
    assert invs.expire_due(now) == 2
    assert [(r["label"], r["state"], r["updated_index"]) for r in invs._rows()] == [
        ("a", EXPIRED, 1), ("b", EXPIRED, 2), ("c", 0, None)]
    assert [i["label"] for i in invs.listing("updated")] == ["a", "b"]
    with pytest.raises(InvoiceError) as e:
        invs.delete("zz", "unpaid")
    assert e.value.code == 905
    with pytest.raises(InvoiceError) as e:
        invs.delete("a", "unpaid")
    assert e.value.code == 906 and e.value.data == {"current_status": "expired", "expected_status": "unpaid"}
    assert "description" not in invs.delete("c", "unpaid", desconly=True)
    assert invs.by_label("c")["updated_index"] == 3
    with pytest.raises(InvoiceError) as e:
        invs.delete("c", "unpaid", desconly=True)
    assert e.value.code == 908
    assert invs.delete_expired(now - 3, now) == 1 and invs.by_label("b") is not None
    assert invs.delete_expired(now, now) == 1 and invs.by_label("b") is None


def test_autoclean_once_and_status(tmp_path):
    invs = Invoices(fake_ld(tmp_path, **{"autoclean-expiredinvoices-age": 300}), start_tasks=False)
    now = int(time.time())
    new_invoice(invs, "old", now=now - 1000, expiry=100)     # expired 900 s ago
    new_invoice(invs, "recent", now=now - 100, expiry=50)    # expired 50 s ago
    new_invoice(invs, "live")
    h = bytes.fromhex(new_invoice(invs, "paid")["payment_hash"])
    with invs.db.transaction():
        invs.mark_paid(h, 1000)
    assert invs.autoclean_once("expiredinvoices", 300, now) == {"cleaned": 1, "uncleaned": 1}
    assert invs.autoclean_once("expiredinvoices", 10, now) == {"cleaned": 1, "uncleaned": 0}
    assert invs.autoclean_once("paidinvoices", 10, now) == {"cleaned": 0, "uncleaned": 1}
    assert invs.autoclean_once("paidinvoices", 10, now + 100) == {"cleaned": 1, "uncleaned": 0}
    assert invs.autoclean_once("failedpays", 10, now) == {"cleaned": 0, "uncleaned": 0}
    assert [i["label"] for i in invs.listing()] == ["live"]
    assert invs.autoclean_status("expiredinvoices") == {"enabled": True, "age": 300, "cleaned": 2}
    assert invs.autoclean_status("paidinvoices") == {"enabled": False, "cleaned": 1}


def test_invoice_payment_hook_answers(tmp_path):
    ld = fake_ld(tmp_path)

    async def main():
        invs = Invoices(ld, start_tasks=False)
        h = bytes.fromhex(new_invoice(invs, "h")["payment_hash"])
        assert await invs.run_invoice_payment_hook(h, 1234) is None
        assert ld.plugins.hook_calls[-1] == ("invoice_payment", {"payment": {
            "label": "h", "preimage": sha256(b"h").hex(), "msat": 1234}})
        for answer, code in (({"result": "reject"}, INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS),
                             ({"failure_message": "2002"}, TEMPORARY_NODE_FAILURE),
                             ({"failure_message": "400f0000000000000001000000"}, 0x400F),
                             ({"result": "continue"}, None)):
            ld.plugins.hook_answer = answer
            assert await invs.run_invoice_payment_hook(h, 1000) == code, answer

        def pay_meanwhile():  # paid by another HTLC while the plugin thought
            with invs.db.transaction():
                invs.mark_paid(h, 1000)
        ld.plugins.during_hook = pay_meanwhile
        assert await invs.run_invoice_payment_hook(h, 1000) == INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS
        assert invs.by_hash(h)["state"] == PAID
    asyncio.run(main())


def test_hsmd_signs_invoices_only():
    from hsmd.libhsmd import HsmKeys
    keys = HsmKeys(bytes(32), dev_force_privkey=KEY)
    fields = InvoiceFields("regtest", 1_700_000_000, b"\x01" * 32, b"\x02" * 32, 5000, description="x")
    s = encode(fields, lambda hrp, words: keys.sign_invoice(hrp, bytes(words)))
    inv = decode(s)
    assert inv.payee == pubkey_of(KEY) == keys.node_id
    assert s == encode(fields, KEY)  # same (deterministic) signature as signing the hash directly
    with pytest.raises(ValueError):
        keys.sign_invoice("xx", b"\x00" * 10)  # not an invoice hrp: could be another protocol's hash
    with pytest.raises(ValueError):
        keys.sign_invoice("lnbcrt", bytes([32]))
    assert len(signing_hash("lnbcrt", [1, 2])) == 32


# -- RPC on real nodes ----------------------------------------------------------------


def test_invoice_fields_decode_and_errors(node_factory):
    l1 = node_factory.get_node(options={"plugin": HELLO, "cltv-final": 22})
    addrs = l1.rpc.newaddr("all")
    fb = [addrs["bech32"], addrs["p2tr"], "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"]
    pre = bytes(range(32))
    r = l1.rpc.call("invoice", {"amount_msat": "12sat", "label": 77, "description": "coffee ☕", "expiry": 1200,
                                "fallbacks": fb, "preimage": pre.hex()})
    check_schema("invoice", r)
    assert r["payment_hash"] == sha256(pre).hex() and r["created_index"] == 1
    theirs = ext.decode(r["bolt11"])
    assert theirs.currency == "bcrt" and theirs.amount_msat == 12_000
    assert theirs.payment_hash == r["payment_hash"] and theirs.payment_secret == r["payment_secret"]
    assert theirs.description == "coffee ☕" and theirs.expiry == 1200 and theirs.min_final_cltv_expiry == 22
    assert theirs.payee == l1.node_id and theirs.expiry_time == r["expires_at"]
    bits = theirs.fallback.data  # (the package knows no regtest addresses: compare the program)
    spk = bytes([0, 20]) + bits[5:5 + 160].bytes
    assert bits[:5].uint == 0 and spk.hex() == l1.rpc.decodepay(r["bolt11"])["fallbacks"][0]["hex"]
    feats = l1.rpc.getinfo()["our_features"]["invoice"]
    assert theirs.features.data.uint == int(feats, 16) and 201 in bits_from_features(bytes.fromhex(feats))
    dp = l1.rpc.decodepay(r["bolt11"])
    check_schema("decodepay", dp)
    assert dp["payee"] == l1.node_id and dp["amount_msat"] == 12_000 and dp["created_at"] == theirs.date
    assert dp["description"] == "coffee ☕" and dp["min_final_cltv_expiry"] == 22 and dp["features"] == feats
    assert [(f.get("type"), f.get("addr")) for f in dp["fallbacks"]] == [
        ("P2WPKH", addrs["bech32"]), ("P2TR", addrs["p2tr"]), ("P2PKH", fb[2])]
    from coincurve.ecdsa import cdata_to_der, deserialize_compact
    assert theirs.signature.verify(l1.node_id)
    assert dp["signature"] == cdata_to_der(deserialize_compact(theirs.signature.signature_data[:64])).hex()
    d = l1.rpc.decode(r["bolt11"])
    check_schema("decode", d)
    assert d == {"type": "bolt11 invoice", "valid": True, **dp}
    li = l1.rpc.listinvoices("77")["invoices"]
    assert li == l1.rpc.listinvoices(payment_hash=r["payment_hash"])["invoices"] == \
        l1.rpc.listinvoices(invstring=r["bolt11"])["invoices"]
    check_schema("listinvoices", {"invoices": li})
    assert li[0] == {"label": "77", "bolt11": r["bolt11"], "payment_hash": r["payment_hash"], "amount_msat": 12_000,
                     "status": "unpaid", "description": "coffee ☕", "expires_at": r["expires_at"],
                     "created_index": 1}
    # description hash only, any amount, cltv, default expiry
    long = "x" * 1000
    r2 = l1.rpc.call("invoice", {"amount_msat": "any", "label": "h", "description": long, "deschashonly": True,
                                 "cltv": 40})
    t2 = ext.decode(r2["bolt11"])
    assert t2.description is None and t2.description_hash == sha256(long.encode()).hex()
    assert t2.amount_msat is None and t2.min_final_cltv_expiry == 40
    assert r2["expires_at"] - t2.date == 604800
    assert l1.rpc.decodepay(r2["bolt11"], long)["description_hash"] == t2.description_hash
    assert l1.rpc.listinvoices("h")["invoices"][0]["description"] == long
    # errors
    assert rpc_error(l1.rpc.invoice, 1000, "77", "again")["code"] == 900
    assert rpc_error(l1.rpc.call, "invoice", {"amount_msat": 5, "label": "new", "description": "d",
                                              "preimage": pre.hex()})["code"] == 901
    for params in ({"amount_msat": 0, "label": "z", "description": "d"},
                   {"amount_msat": "lots", "label": "z", "description": "d"},
                   {"amount_msat": 1, "label": "z", "description": "d", "preimage": "00"},
                   {"amount_msat": 1, "label": "z" * 129, "description": "d"},
                   {"amount_msat": 1, "label": "z", "description": "d" * 640},
                   {"amount_msat": 1, "label": "z", "description": "d", "exposeprivatechannels": "nope"},
                   {"amount_msat": 1, "label": "z", "description": "d", "cltv": -1},
                   {"amount_msat": 1, "label": "z"}):
        assert rpc_error(l1.rpc.call, "invoice", params)["code"] == -32602, params
    e = rpc_error(l1.rpc.call, "invoice", {"amount_msat": 1, "label": "z", "description": "d",
                                           "fallbacks": ["bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"]})
    assert e == {"code": -1, "message": "Fallback address does not match our network regtest"}
    e = rpc_error(l1.rpc.call, "invoice", {"amount_msat": 1, "label": "z", "description": "d", "fallbacks": ["x"]})
    assert e["message"] == "Fallback address not valid"
    assert rpc_error(l1.rpc.call, "invoice", {"amount_msat": 1, "label": "z", "description": "d",
                                              "exposeprivatechannels": ["1x1x1"]})["code"] == 902
    assert rpc_error(l1.rpc.decodepay, r["bolt11"][:-1] + "q")["message"].startswith("Invalid bolt11: ")
    assert rpc_error(l1.rpc.decode, "lnbcrt1garbage")["code"] == -32602
    assert rpc_error(l1.rpc.call, "listinvoices", {"label": "77", "payment_hash": r["payment_hash"]})["code"] == -32602
    assert rpc_error(l1.rpc.call, "listinvoices", {"start": 2})["code"] == -32602
    assert rpc_error(l1.rpc.call, "listinvoices", {"invstring": "lnbcrt1xyz"})["message"] == "Invalid invstring"
    assert l1.rpc.listinvoices("nope")["invoices"] == []
    assert [i["label"] for i in l1.rpc.listinvoices()["invoices"]] == ["77", "h"]
    assert [i["label"] for i in l1.rpc.call("listinvoices", {"index": "created", "start": 2})["invoices"]] == ["h"]


def _pay(node, payment_hash: str, amount: int) -> dict:
    return node.rpc.call("dev-resolve-invoice", {"payment_hash": payment_hash, "amount_msat": amount})


def test_waitanyinvoice_queue_concurrent_payments_and_restart(node_factory):
    l1 = node_factory.get_node()
    n = 40
    invs = [l1.rpc.invoice(1000 + i, f"q{i}", "q") for i in range(n)]
    got: list[dict] = []
    problems: list[BaseException] = []

    def consume():
        from pyln.client import LightningRpc
        rpc = LightningRpc(str(l1.rpc_path))
        last = 0
        try:
            while len(got) < n:
                inv = rpc.waitanyinvoice(last, 30)
                got.append(inv)
                last = inv["pay_index"]
        except BaseException as e:  # noqa: BLE001 (reported below)
            problems.append(e)
    consumer = threading.Thread(target=consume)
    consumer.start()
    order = list(range(n))
    random.Random(3).shuffle(order)

    def payer(part):
        from pyln.client import LightningRpc
        rpc = LightningRpc(str(l1.rpc_path))
        for i in part:
            rpc.call("dev-resolve-invoice", {"payment_hash": invs[i]["payment_hash"], "amount_msat": 1000 + i})
    payers = [threading.Thread(target=payer, args=(order[k::8],)) for k in range(8)]
    for t in payers:
        t.start()
    for t in payers + [consumer]:
        t.join(60)
    assert not problems, problems
    assert [i["pay_index"] for i in got] == list(range(1, n + 1))
    assert sorted(i["label"] for i in got) == sorted(f"q{i}" for i in range(n))
    for inv in got:
        check_schema("waitanyinvoice", inv)
        assert inv["status"] == "paid" and inv["amount_received_msat"] == inv["amount_msat"]
    assert rpc_error(l1.rpc.waitanyinvoice, n, 0)["code"] == 904
    # the queue survives a restart: indexes continue, nothing is repeated
    l1.restart()
    assert l1.rpc.waitanyinvoice(n - 1, 0)["label"] == got[-1]["label"]
    assert rpc_error(l1.rpc.waitanyinvoice, n, 0)["code"] == 904
    a, b = l1.rpc.invoice(5, "after1", "x"), l1.rpc.invoice(6, "after2", "x")
    _pay(l1, b["payment_hash"], 6)
    _pay(l1, a["payment_hash"], 5)
    assert l1.rpc.waitanyinvoice(n)["label"] == "after2"
    assert l1.rpc.waitanyinvoice(n + 1)["label"] == "after1"
    assert l1.rpc.waitanyinvoice()["pay_index"] == 1
    assert l1.rpc.listinvoices("after1")["invoices"][0]["pay_index"] == n + 2
    check_schema("listinvoices", l1.rpc.listinvoices())
    # refused payments: a second payment, too little, a wrong secret
    e = rpc_error(_pay, l1, a["payment_hash"], 5)
    assert e["data"] == {"failure_code": 0x400F}
    c = l1.rpc.invoice(1000, "c", "x")
    assert rpc_error(_pay, l1, c["payment_hash"], 999)["data"]["failure_code"] == 0x400F
    assert rpc_error(l1.rpc.call, "dev-resolve-invoice", {"payment_hash": c["payment_hash"], "amount_msat": 1000,
                                                          "payment_secret": "00" * 32})["data"]["failure_code"] == 0x400F


def test_waitinvoice_expiry_delete_and_autoclean(node_factory):
    l1 = node_factory.get_node(options={"autoclean-cycle": 1, "autoclean-expiredinvoices-age": 1})
    l1.rpc.invoice(1000, "soon", "x", expiry=1)
    paid = l1.rpc.invoice(1000, "paid", "x")
    results: dict[str, object] = {}

    def wait(label):
        from pyln.client import LightningRpc
        try:
            results[label] = LightningRpc(str(l1.rpc_path)).waitinvoice(label)
        except RpcError as e:
            results[label] = e.error
    l1.rpc.invoice(1000, "doomed", "x")
    waiters = [threading.Thread(target=wait, args=(lb,)) for lb in ("soon", "paid", "doomed")]
    for t in waiters:
        t.start()
    time.sleep(0.3)
    _pay(l1, paid["payment_hash"], 1500)
    assert l1.rpc.delinvoice("doomed", "unpaid")["label"] == "doomed"
    for t in waiters:
        t.join(20)
    assert results["paid"]["status"] == "paid" and results["paid"]["amount_received_msat"] == 1500
    check_schema("waitinvoice", results["paid"])
    assert results["doomed"] == {"code": -1, "message": "Invoice deleted during wait"}
    e = results["soon"]
    assert e["code"] == 903 and e["message"] == "invoice expired during wait"
    assert e["data"]["label"] == "soon" and e["data"]["status"] == "expired"
    assert rpc_error(l1.rpc.waitinvoice, "nope") == {"code": -1, "message": "Label not found"}
    assert l1.rpc.waitinvoice("paid")["pay_index"] == 1
    # autoclean (age 1 s, cycle 1 s) deletes the expired one, never the paid one
    wait_for(lambda: l1.rpc.listinvoices("soon")["invoices"] == [], timeout=10)
    st = l1.rpc.call("autoclean-status", {"subsystem": "expiredinvoices"})
    check_schema("autoclean-status", st)
    assert st["autoclean"]["expiredinvoices"] == {"enabled": True, "age": 1, "cleaned": 1}
    full = l1.rpc.call("autoclean-status")
    check_schema("autoclean-status", full)
    assert full["autoclean"]["paidinvoices"] == {"enabled": False, "cleaned": 0}
    once = l1.rpc.call("autoclean-once", {"subsystem": "paidinvoices", "age": 3600})
    check_schema("autoclean-once", once)
    assert once == {"autoclean": {"paidinvoices": {"cleaned": 0, "uncleaned": 1}}}
    assert rpc_error(l1.rpc.call, "autoclean-once", {"subsystem": "paidinvoices", "age": 0})["code"] == -32602
    assert rpc_error(l1.rpc.call, "autoclean-once", {"subsystem": "bogus", "age": 1})["code"] == -32602
    # delinvoice errors and desconly
    e = rpc_error(l1.rpc.delinvoice, "paid", "unpaid")
    assert e == {"code": 906, "message": "Invoice status is paid not unpaid",
                 "data": {"current_status": "paid", "expected_status": "unpaid"}}
    assert rpc_error(l1.rpc.delinvoice, "nope", "unpaid")["code"] == 905
    d = l1.rpc.delinvoice("paid", "paid", desconly=True)
    check_schema("delinvoice", d)
    assert "description" not in d and d["updated_index"] == 3  # paid, "soon" expired, desconly
    assert rpc_error(l1.rpc.delinvoice, "paid", "paid", desconly=True)["code"] == 908
    check_schema("delinvoice", l1.rpc.delinvoice("paid", "paid"))
    # delexpiredinvoice: only expired ones, up to maxexpirytime
    l1.rpc.invoice(1000, "e1", "x", expiry=1)
    live = l1.rpc.invoice(1000, "live", "x")
    wait_for(lambda: l1.rpc.listinvoices("e1")["invoices"][0]["status"] == "expired", timeout=5)
    assert l1.rpc.delexpiredinvoice(1) == {}
    assert l1.rpc.delexpiredinvoice() == {}
    assert l1.rpc.listinvoices("e1")["invoices"] == []
    assert l1.rpc.listinvoices("live")["invoices"][0]["payment_hash"] == live["payment_hash"]


PLUGIN = '''#!/usr/bin/env python3
from pyln.client import Plugin
plugin = Plugin()
events = []


@plugin.hook("invoice_payment")
def on_payment(payment, plugin, **kw):
    events.append({"hook": payment})
    if payment["label"].startswith("reject"):
        return {"result": "reject"}
    if payment["label"].startswith("temp"):
        return {"failure_message": "2002"}
    return {"result": "continue"}


@plugin.subscribe("invoice_payment")
def on_invoice_payment(plugin, invoice_payment, **kw):
    events.append({"invoice_payment": invoice_payment})


@plugin.subscribe("invoice_creation")
def on_invoice_creation(plugin, invoice_creation, **kw):
    events.append({"invoice_creation": invoice_creation})


@plugin.method("invevents")
def invevents(plugin):
    return {"events": events}


plugin.run()
'''


def test_invoice_payment_hook_and_notifications(node_factory, tmp_path):
    path = tmp_path / "invplugin.py"
    path.write_text(PLUGIN)
    path.chmod(0o755)
    l1 = node_factory.get_node(options={"plugin": str(path)})
    ok = l1.rpc.call("invoice", {"amount_msat": 2000, "label": "ok", "description": "x",
                                 "preimage": "11" * 32})
    rej = l1.rpc.invoice(2000, "reject-me", "x")
    tmp = l1.rpc.invoice(2000, "temp", "x")
    assert rpc_error(_pay, l1, rej["payment_hash"], 2000)["data"] == {"failure_code": INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS}
    assert rpc_error(_pay, l1, tmp["payment_hash"], 2000)["data"] == {"failure_code": TEMPORARY_NODE_FAILURE}
    assert l1.rpc.listinvoices("reject-me")["invoices"][0]["status"] == "unpaid"
    assert _pay(l1, ok["payment_hash"], 2500)["pay_index"] == 1
    events = wait_for(lambda: (lambda ev: ev if any("invoice_payment" in e for e in ev) else None)(
        l1.rpc.invevents()["events"]))
    assert {"invoice_creation": {"msat": 2000, "preimage": "11" * 32, "label": "ok"}} in events
    assert {"hook": {"label": "ok", "preimage": "11" * 32, "msat": 2500}} in events
    assert {"invoice_payment": {"label": "ok", "preimage": "11" * 32, "msat": 2500}} in events
    assert not any("invoice_payment" in e and e["invoice_payment"]["label"] != "ok" for e in events)


def test_autocleaninvoice_deprecated_but_working(node_factory):
    """autocleaninvoice (deprecated in Core Lightning v22.11, its schema in
    scope): sets the cleaning of expired invoices at run time, which
    autoclean-status shows; cycle_seconds 0 stops it.  With
    allow-deprecated-apis=false it is refused and help does not list it."""
    l1, strict = node_factory.get_nodes(2, opts=[{}, {"allow-deprecated-apis": "false"}])
    assert l1.rpc.call("autoclean-status", {"subsystem": "expiredinvoices"})["autoclean"]["expiredinvoices"] == \
        {"enabled": False, "cleaned": 0}
    l1.rpc.invoice(1000, "soon", "soon", expiry=1)
    l1.rpc.invoice(1000, "later", "later", expiry=3600)
    r = l1.rpc.call("autocleaninvoice", {"cycle_seconds": 1, "expired_by": 1})
    check_schema("autocleaninvoice", r)
    assert r == {"enabled": True, "cycle_seconds": 1, "expired_by": 1}
    wait_for(lambda: l1.rpc.listinvoices("soon")["invoices"] == [], timeout=15)
    assert [i["label"] for i in l1.rpc.listinvoices()["invoices"]] == ["later"]
    st = l1.rpc.call("autoclean-status", {"subsystem": "expiredinvoices"})["autoclean"]["expiredinvoices"]
    assert st == {"enabled": True, "age": 1, "cleaned": 1}
    off = l1.rpc.call("autocleaninvoice", {"cycle_seconds": 0})
    check_schema("autocleaninvoice", off)
    assert off == {"enabled": False}
    assert l1.rpc.call("autoclean-status", {"subsystem": "expiredinvoices"})["autoclean"]["expiredinvoices"] == \
        {"enabled": False, "cleaned": 1}
    assert rpc_error(l1.rpc.call, "autocleaninvoice", {"cycle_seconds": -1})["code"] == -32602
    assert any(h["command"].startswith("autocleaninvoice (DEPRECATED!)") for h in l1.rpc.help()["help"])
    assert rpc_error(strict.rpc.call, "autocleaninvoice", {}) == \
        {"code": -32601, "message": "Command autocleaninvoice is deprecated"}
    assert not any(h["command"].startswith("autocleaninvoice") for h in strict.rpc.help()["help"])
