"""The inter-daemon contracts are declared in wire/csv and nowhere else: no
field carries JSON, each record is declared once, and the codec refuses a
value of the wrong shape both when it encodes and when it decodes."""
from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from channeld.core.pair import Pipe, make_pair
from channeld.onchain_export import export_onchain
from channeld.summary import summary
from wire import DecodeError, EncodeError
from wire.codec import Sealed
from wire.internal import CSV_DIR, internal_schema

CSVS = sorted(p for p in Path(CSV_DIR).glob("*.csv") if p.name != "bolt.csv")


def _rows(path: Path):
    for row in csv.reader(path.read_text().splitlines()):
        if row and not row[0].startswith("#"):
            yield [c.strip() for c in row]


def test_no_field_is_json_text():
    """A field named like JSON, or any text field of a record, would be a
    second schema hiding in the first (STYLE.md, trap 6)."""
    bad = []
    for path in CSVS:
        for row in _rows(path):
            if row[0] in ("msgdata", "subtypedata", "tlvdata"):
                field, ftype = (row[3], row[4]) if row[0] == "tlvdata" else (row[2], row[3])
                if re.search(r"json", field, re.I) or re.search(r"json", ftype, re.I):
                    bad.append(f"{path.name}: {','.join(row)}")
    assert not bad, bad


def test_no_text_field_holds_a_document():
    """Text fields are names, reasons and log lines: every utf8/wirestring
    field of the internal schemas is one of these, listed here (a new one
    must say what it holds)."""
    texts = {(p.name, r[1], r[2]) for p in CSVS for r in _rows(p)
             if r[0] in ("msgdata", "subtypedata") and r[3].lstrip("?") in ("utf8", "wirestring")}
    allowed_names = {"reason", "message", "entry", "desc", "happenings", "version", "label", "hrp", "bip32_xpub",
                     "who", "text", "addr", "arg", "name", "dev_disconnect", "resolved_by", "state", "opener",
                     "direction", "offerer", "sender", "kind", "alias", "type", "address", "status", "emitted",
                     "err", "messagename", "fieldname"}
    assert {f for _, _, f in texts} <= allowed_names, sorted(t for t in texts if t[2] not in allowed_names)


def test_every_record_is_declared_once():
    """A subtype lives in one CSV (shared ones in wire/csv/onchain_channel.csv
    and shachain.csv): grep finds it in one hop."""
    names = Counter(r[1] for p in CSVS for r in _rows(p) if r[0] == "subtype")
    assert [n for n, c in names.items() if c > 1] == []


def _channel():
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    p.send("A", a.channel.add_htlc(1_000_000, b"\x11" * 32, 600, bytes(1366), 500))
    p.deliver_all()
    return a.channel


def _persist(ch) -> dict:
    return {"summary": summary(ch, (1, 2)), "core": ch.to_dict(), "locked_in": [], "resolved": [],
            "fulfilled": None, "funding": None, "closing_tx": b"", "channel_announcement": b""}


@pytest.mark.parametrize("path, value", [
    (("summary", "to_us_msat"), "1000"),              # text for an amount
    (("summary", "to_us_msat"), -1),                   # out of range
    (("summary", "channel_id"), "00" * 32),            # hex text for bytes
    (("summary", "shutdown_sent"), 2),                 # not a bool
    (("summary", "funding_pubkey_local"), b"\x04" + bytes(32)),   # not a compressed point
    (("summary", "htlcs"), [{"direction": "out"}]),    # a record missing fields
    (("core", "params", "funding_sat"), 1.5),          # a float
    (("core", "log", "oldest"), [0, 0, 0]),            # a pair of three
    (("core", "remote_secrets", "known"), "x"),        # text for a list
])
def test_wrong_values_are_refused_on_encode(path, value):
    schema = internal_schema("channeld")
    fields = _persist(_channel())
    target = fields
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(EncodeError):
        schema.encode("channeld_persist", fields)


def test_unknown_and_missing_fields_are_refused_on_encode():
    schema = internal_schema("channeld")
    ch = _channel()
    extra = _persist(ch)
    extra["summary"]["scid"] = 5                       # not a field of channel_summary
    with pytest.raises(EncodeError, match="scid"):
        schema.encode("channeld_persist", extra)
    missing = _persist(ch)
    del missing["core"]["state"]
    with pytest.raises(EncodeError, match="state"):
        schema.encode("channeld_persist", missing)
    with pytest.raises(EncodeError):
        schema.encode("channeld_export_onchain_reply", {"channel": dict(export_onchain(ch), opener=0)})


def test_wrong_bytes_are_refused_on_decode():
    schema, master = internal_schema("channeld"), internal_schema("channeld", keep_sealed=True)
    raw = schema.encode("channeld_persist", _persist(_channel()))
    for s in (schema, master):
        assert s.decode(raw).name == "channeld_persist"
        with pytest.raises(DecodeError):
            s.decode(raw[:-1])                          # truncated
        with pytest.raises(DecodeError):
            s.decode(raw + b"\x00")                     # trailing bytes
    # channel_summary.channel_ready_sent, a bool, set to 2
    summ = schema.encode_subtype("channel_summary", summary(_channel(), (1, 2)))
    bad = bytearray(summ)
    pos = summ.index(b"\x01\x01\x00\x00", 100)          # ready sent/received, shutdown sent/received
    bad[pos] = 2
    with pytest.raises(DecodeError, match="bool"):
        schema.decode_subtype("channel_summary", bytes(bad))
    # an HTLC direction that is not UTF-8
    with pytest.raises(DecodeError):
        schema.decode_subtype("summary_htlc", b"\x00\x02\xff\xfe" + bytes(62))


def test_sealed_state_travels_unread_through_the_master():
    """The master's view keeps channeld_core sealed: it stores the bytes and
    sends them back identical; channeld checks them when it opens them, and
    a sealed value of another type is refused."""
    schema, master = internal_schema("channeld"), internal_schema("channeld", keep_sealed=True)
    ch = _channel()
    m = master.decode(schema.encode("channeld_persist", _persist(ch)))
    core = m.fields["core"]
    assert isinstance(core, Sealed) and core.type_name == "channeld_core"
    init = {"mode": 2, "peer_id": b"\x02" * 33, "dbid": 1, "chain_hash": bytes(32), "their_features": b"",
            "config": None, "core": core, "open_msg": b""}
    assert schema.subtype("channeld_core").unseal(core) == ch.to_dict()
    with pytest.raises(EncodeError, match="onchaind_state"):
        master.encode("channeld_persist", dict(m.fields, core=Sealed("onchaind_state", core.data)))
    init["config"] = {}
    with pytest.raises(EncodeError):
        master.encode("channeld_init", init)               # an empty config is refused too
    corrupt = Sealed("channeld_core", core.data[:-1])
    raw = master.encode("channeld_persist", dict(m.fields, core=corrupt))
    master.decode(raw)                                       # the master does not read it...
    with pytest.raises(DecodeError):
        schema.decode(raw)                                   # ...channeld does
