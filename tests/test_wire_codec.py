"""wire/: BOLT message + TLV codec — spec vectors, round trips, malformed input."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import wire
from wire import DecodeError, EncodeError, MessageSchema, SchemaError, UnknownMessageError
from wire_samples import sample_message, sample_tlv_stream

ROOT = Path(__file__).resolve().parent.parent
BOLT = wire.bolt_schema()
ONION = wire.onion_failure_schema()
CHAIN = bytes.fromhex("6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000")
POINT = bytes.fromhex("023da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb")

# BOLT 1 Appendix B's test namespaces, transcribed from the markdown.
N1_N2_CSV = """\
tlvtype,n1,tlv1,1
tlvdata,n1,tlv1,amount_msat,tu64,
tlvtype,n1,tlv2,2
tlvdata,n1,tlv2,scid,short_channel_id,
tlvtype,n1,tlv3,3
tlvdata,n1,tlv3,node_id,point,
tlvdata,n1,tlv3,amount_msat_1,u64,
tlvdata,n1,tlv3,amount_msat_2,u64,
tlvtype,n1,tlv4,254
tlvdata,n1,tlv4,cltv_delta,u16,
tlvtype,n2,tlv1,0
tlvdata,n2,tlv1,amount_msat,tu64,
tlvtype,n2,tlv2,11
tlvdata,n2,tlv2,cltv_expiry,tu32,
"""
TLV_TEST = MessageSchema.from_csv_text(N1_N2_CSV)


def h(text: str) -> bytes:
    """Hex with the spec's spaces and 0x prefix."""
    return bytes.fromhex(text.replace("0x", "").replace(" ", ""))


# -- package data --------------------------------------------------------------

def test_packaged_csv_is_the_spec_csv():
    spec = (ROOT / "spec/bolts/message-formats.csv").read_text()
    assert wire.bolt_csv_text() == spec


def test_every_csv_message_is_in_exactly_one_schema():
    names = [row.split(",")[1] for row in wire.bolt_csv_text().splitlines() if row.startswith("msgtype,")]
    assert len(names) == len(set(names)) == len(BOLT.messages) + len(ONION.messages)
    assert set(ONION.messages) == wire.ONION_FAILURE_MESSAGES
    assert not set(BOLT.messages) & set(ONION.messages)
    flagged = {row.split(",")[1] for row in wire.bolt_csv_text().splitlines()
               if row.startswith("msgtype,") and "|" in row}
    assert flagged <= wire.ONION_FAILURE_MESSAGES
    assert ONION.type_number("permanent_node_failure") == 0x4000 | 0x2000 | 2
    assert ONION.type_number("invalid_onion_blinding") == 0x8000 | 0x4000 | 24
    assert BOLT.opaque_types == {"tlv_invoice_request", "tlv_invoice", "tlv_invoice_error"}


# -- Appendix A: BigSize --------------------------------------------------------

BIGSIZE_OK = [(0, "00"), (252, "fc"), (253, "fd00fd"), (65535, "fdffff"), (65536, "fe00010000"),
              (4294967295, "feffffffff"), (4294967296, "ff0000000100000000"),
              (18446744073709551615, "ffffffffffffffffff")]
BIGSIZE_BAD = ["fd00fc", "fe0000ffff", "ff00000000ffffffff", "fd00", "feffff", "ffffffffff",
               "", "fd", "fe", "ff"]


@pytest.mark.parametrize("value,hexstr", BIGSIZE_OK)
def test_bigsize_vectors(value, hexstr):
    assert wire.encode_bigsize(value) == bytes.fromhex(hexstr)
    assert wire.decode_bigsize(bytes.fromhex(hexstr)) == (value, len(hexstr) // 2)


@pytest.mark.parametrize("hexstr", BIGSIZE_BAD)
def test_bigsize_bad_vectors(hexstr):
    with pytest.raises(DecodeError):
        wire.decode_bigsize(bytes.fromhex(hexstr))


def test_bigsize_encode_range():
    for bad in (-1, 1 << 64, "1"):
        with pytest.raises(EncodeError):
            wire.encode_bigsize(bad)


# -- Appendix D: signed integers ------------------------------------------------

SIGNED = [(0, "00"), (42, "2a"), (-42, "d6"), (127, "7f"), (-128, "80"), (128, "0080"),
          (-129, "ff7f"), (15000, "3a98"), (-15000, "c568"), (32767, "7fff"), (-32768, "8000"),
          (32768, "00008000"), (-32769, "ffff7fff"), (21000000, "01406f40"),
          (-21000000, "febf90c0"), (2147483647, "7fffffff"), (-2147483648, "80000000"),
          (2147483648, "0000000080000000"), (-2147483649, "ffffffff7fffffff"),
          (500000000000, "000000746a528800"), (-500000000000, "ffffff8b95ad7800"),
          (9223372036854775807, "7fffffffffffffff"), (-9223372036854775808, "8000000000000000")]


@pytest.mark.parametrize("value,hexstr", SIGNED)
def test_signed_integer_vectors(value, hexstr):
    ftype = wire.FUNDAMENTAL_TYPES[f"s{len(hexstr) * 4}"]
    out = bytearray()
    ftype.encode(value, out)
    assert out.hex() == hexstr
    assert ftype.decode(bytes(out), 0, len(out)) == (value, len(out))
    with pytest.raises(EncodeError):  # one past the range of the type
        ftype.encode(ftype.hi + 1 if value >= 0 else ftype.lo - 1, bytearray())


# -- Appendix B: TLV streams ----------------------------------------------------

ANY_NAMESPACE_BAD = [
    "0xfd", "0xfd01", "0xfd0001 00", "0xfd0101", "0x0f fd", "0x0f fd26", "0x0f fd2602",
    "0x0f fd0001 00", "0x0f fd0201 " + "00" * 258,
    "0x12 00", "0xfd0102 00", "0xfe01000002 00", "0xff0100000000000002 00",
]
N1_BAD = [
    "0x01 09 ffffffffffffffffff", "0x01 01 00", "0x01 02 0001", "0x01 03 000100",
    "0x01 04 00010000", "0x01 05 0001000000", "0x01 06 000100000000", "0x01 07 00010000000000",
    "0x01 08 0001000000000000", "0x02 07 01010101010101", "0x02 09 010101010101010101",
    "0x03 21 " + POINT.hex(), "0x03 29 " + POINT.hex() + "0000000000000001",
    "0x03 30 " + POINT.hex() + "000000000000000100000000000001",
    "0x03 31 043da092f6980e58d2c037173180e9a465476026ee50f96695963e8efe436f54eb"
    "00000000000000010000000000000002",
    "0x03 32 " + POINT.hex() + "0000000000000001000000000000000001",
    "0xfd00fe 00", "0xfd00fe 01 01", "0xfd00fe 03 010101", "0x00 00",
    # TLV stream decoding failures (ordering / duplicates)
    "0x02 08 0000000000000226 01 01 2a", "0x02 08 0000000000000231 02 08 0000000000000451",
    "0x1f 00 0f 01 2a", "0x1f 00 1f 01 2a",
]
N2_BAD = ["0xffffffffffffffffff 00 00 00"]
ANY_NAMESPACE_IGNORED = [
    ("0x", {}), ("0x21 00", {0x21: b""}), ("0xfd0201 00", {0x201: b""}),
    ("0xfd00fd 00", {0xFD: b""}), ("0xfd00ff 00", {0xFF: b""}),
    ("0xfe02000001 00", {0x02000001: b""}), ("0xff0200000000000001 00", {0x0200000000000001: b""}),
]
N1_GOOD = [
    ("0x01 00", {"tlv1": {"amount_msat": 0}}),
    ("0x01 01 01", {"tlv1": {"amount_msat": 1}}),
    ("0x01 02 0100", {"tlv1": {"amount_msat": 256}}),
    ("0x01 03 010000", {"tlv1": {"amount_msat": 65536}}),
    ("0x01 04 01000000", {"tlv1": {"amount_msat": 16777216}}),
    ("0x01 05 0100000000", {"tlv1": {"amount_msat": 4294967296}}),
    ("0x01 06 010000000000", {"tlv1": {"amount_msat": 1099511627776}}),
    ("0x01 07 01000000000000", {"tlv1": {"amount_msat": 281474976710656}}),
    ("0x01 08 0100000000000000", {"tlv1": {"amount_msat": 72057594037927936}}),
    ("0x02 08 0000000000000226", {"tlv2": {"scid": bytes.fromhex("0000000000000226")}}),
    ("0x03 31 " + POINT.hex() + "00000000000000010000000000000002",
     {"tlv3": {"node_id": POINT, "amount_msat_1": 1, "amount_msat_2": 2}}),
    ("0xfd00fe 02 0226", {"tlv4": {"cltv_delta": 550}}),
]


def test_tlv_vectors_match_the_spec_text():
    """The vectors above are a byte-for-byte transcription of BOLT 1 Appendix B."""
    text = (ROOT / "spec/bolts/01-messaging.md").read_text()
    appendix = text[text.index("## Appendix B"):text.index("## Appendix C")]
    spec_bad = {h(line.split(":", 1)[1]) for line in appendix.splitlines()
                if line.startswith("1. Invalid stream:")}
    spec_good = {h(line.split(":", 1)[1]) for line in appendix.splitlines()
                 if line.startswith("1. Valid stream:")}
    assert spec_bad == {h(x) for x in ANY_NAMESPACE_BAD + N1_BAD + N2_BAD}
    assert spec_good == {h(x) for x, _ in ANY_NAMESPACE_IGNORED + N1_GOOD}


@pytest.mark.parametrize("stream", ["n1", "n2"])
@pytest.mark.parametrize("hexstr", ANY_NAMESPACE_BAD)
def test_tlv_invalid_in_any_namespace(stream, hexstr):
    with pytest.raises(DecodeError):
        TLV_TEST.decode_tlv_stream(stream, h(hexstr))


@pytest.mark.parametrize("hexstr", N1_BAD)
def test_tlv_invalid_in_n1(hexstr):
    with pytest.raises(DecodeError):
        TLV_TEST.decode_tlv_stream("n1", h(hexstr))


def test_tlv_invalid_in_n2():
    for hexstr in N2_BAD:
        with pytest.raises(DecodeError):
            TLV_TEST.decode_tlv_stream("n2", h(hexstr))
    # ...while the same records in increasing order are fine
    assert TLV_TEST.decode_tlv_stream("n2", h("0x00 00 ffffffffffffffffff 00")) == {
        "tlv1": {"amount_msat": 0}, (1 << 64) - 1: b""}


@pytest.mark.parametrize("stream", ["n1", "n2"])
@pytest.mark.parametrize("hexstr,expected", ANY_NAMESPACE_IGNORED)
def test_tlv_unknown_odd_kept_in_any_namespace(stream, hexstr, expected):
    assert TLV_TEST.decode_tlv_stream(stream, h(hexstr)) == expected
    # unknown odd records survive a round trip byte for byte
    assert TLV_TEST.encode_tlv_stream(stream, expected) == h(hexstr)


@pytest.mark.parametrize("hexstr,expected", N1_GOOD)
def test_tlv_valid_n1(hexstr, expected):
    assert TLV_TEST.decode_tlv_stream("n1", h(hexstr)) == expected
    assert TLV_TEST.encode_tlv_stream("n1", expected) == h(hexstr)


def test_tlv_stream_concatenation_rules():
    good = {hexstr: h(hexstr) for hexstr, _ in N1_GOOD}
    by_type = sorted(good.values(), key=lambda raw: wire.decode_bigsize(raw)[0])
    # a higher-numbered valid stream appended to a lower one stays valid
    for low, high in zip(by_type, by_type[1:]):
        if wire.decode_bigsize(low)[0] < wire.decode_bigsize(high)[0]:
            TLV_TEST.decode_tlv_stream("n1", low + high)
    # any invalid stream appended to a valid stream is invalid
    for prefix in (h("0x01 00"), h("0x02 08 0000000000000226")):
        for bad in ANY_NAMESPACE_BAD + N1_BAD:
            with pytest.raises(DecodeError):
                TLV_TEST.decode_tlv_stream("n1", prefix + h(bad))


def test_bolt_csv_carries_the_test_namespaces_too():
    for hexstr, expected in N1_GOOD:
        assert BOLT.decode_tlv_stream("n1", h(hexstr)) == expected


# -- Appendix C: message extension ----------------------------------------------

def test_init_extension_vectors():
    assert tuple(BOLT.decode(h("0x001000000000"))) == (
        "init", {"globalfeatures": b"", "features": b"", "tlvs": {}})
    name, fields = BOLT.decode(h("0x001000000000c9012acb0104"))
    assert fields["tlvs"] == {0xC9: b"\x2a", 0xCB: b"\x04"}
    assert BOLT.encode(name, fields) == h("0x001000000000c9012acb0104")
    for bad in ("0x00100000000001", "0x001000000000ca012a", "0x001000000000c90101c90102"):
        with pytest.raises(DecodeError):
            BOLT.decode(h(bad))


def test_trailing_bytes_without_tlv_stream_are_ignored_but_kept():
    raw = BOLT.encode("update_fee", {"channel_id": bytes(32), "feerate_per_kw": 253})
    msg = BOLT.decode(raw + b"\x01\x02")
    assert msg.name == "update_fee" and msg.fields["feerate_per_kw"] == 253
    assert msg.extension == b"\x01\x02" and msg.payload == raw[2:] + b"\x01\x02"
    strict = MessageSchema.from_csv_text(wire.bolt_csv_text(), exclude=wire.ONION_FAILURE_MESSAGES,
                                         allow_trailing=False)
    assert strict.decode(raw).fields == msg.fields
    with pytest.raises(DecodeError, match="trailing"):
        strict.decode(raw + b"\x01")


# -- hand-written byte-exact messages -------------------------------------------

def test_ping_pong_byte_exact():
    raw = BOLT.encode("ping", {"num_pong_bytes": 4, "ignored": b""})
    assert raw == h("0012 0004 0000")
    assert BOLT.encode("ping", {"num_pong_bytes": 4, "ignored": b"\0\0"}) == h("0012 0004 0002 0000")
    assert BOLT.encode("pong", {"ignored": b"\0" * 4}) == h("0013 0004 00000000")
    name, fields = BOLT.decode(h("0012 0004 0002 0000"))
    assert (name, fields) == ("ping", {"num_pong_bytes": 4, "ignored": b"\0\0"})


def test_init_with_networks_byte_exact():
    raw = BOLT.encode("init", {"globalfeatures": b"", "features": b"\x02\x00",
                               "tlvs": {"networks": {"chains": [CHAIN]}, "remote_addr": {"data": b"\x01"}}})
    assert raw == h("0010 0000 0002 0200 01 20") + CHAIN + h("03 01 01")
    assert BOLT.decode(raw).fields["tlvs"]["networks"]["chains"] == [CHAIN]
    # '...' array of 32-byte elements: 33 bytes is not a whole number of them
    with pytest.raises(DecodeError):
        BOLT.decode(h("0010 0000 0000 01 21") + CHAIN + b"\0")


def test_error_message_and_implicit_extension_tlvs():
    raw = BOLT.encode("error", {"channel_id": bytes(32), "data": b"boom"})
    assert raw == h("0011") + bytes(32) + h("0004") + b"boom"
    # update_add_htlc's extension stream is declared in BOLT 2 next to it
    fields = {"channel_id": bytes(32), "id": 7, "amount_msat": 1000, "payment_hash": bytes(32),
              "cltv_expiry": 500, "onion_routing_packet": bytes(1366),
              "tlvs": {"blinded_path": {"path_key": POINT}}}
    raw = BOLT.encode("update_add_htlc", fields)
    assert raw.endswith(h("00 21") + POINT)
    assert BOLT.decode(raw).fields == fields


@pytest.mark.parametrize("index", range(10))
def test_bolt7_extended_queries_vectors(index):
    vector = json.loads((ROOT / "spec/bolts/bolt07/extended-queries.json").read_text())[index]
    raw = bytes.fromhex(vector["hex"])
    msg = BOLT.decode(raw)
    assert msg.known and not msg.extension
    assert BOLT.encode(msg.name, msg.fields) == raw
    expect = vector["msg"]
    assert msg.fields["chain_hash"].hex() == expect["chainHash"]
    if "firstBlockNum" in expect:
        assert msg.fields["first_blocknum"] == expect["firstBlockNum"]
        assert msg.fields["number_of_blocks"] == expect["numberOfBlocks"]
    if "checksums" in expect:
        checksums = msg.fields["tlvs"]["checksums_tlv"]["checksums"]
        assert [(c["checksum_node_id_1"], c["checksum_node_id_2"]) for c in checksums] == [
            (c["checksum1"], c["checksum2"]) for c in expect["checksums"]["checksums"]]


def test_onion_failure_messages():
    # BOLT 4 onion-error-test.json: failure_message "2002"
    assert tuple(ONION.decode(h("2002"))) == ("temporary_node_failure", {})
    raw = ONION.encode("amount_below_minimum", {"htlc_msat": 1000, "channel_update": b"\xab" * 3})
    assert raw == h("100b 00000000000003e8 0003 ababab")
    assert ONION.decode(raw).fields == {"htlc_msat": 1000, "channel_update": b"\xab" * 3}
    # the same number means ping in the peer namespace
    assert ONION.decode(h("0012 00000064")).name == "final_incorrect_cltv_expiry"


def test_nested_subtypes():
    witnesses = [{"witness_data": b"\x01\x02"}, {"witness_data": b""}]
    fields = {"channel_id": bytes(32), "txid": bytes(32), "witnesses": witnesses, "tlvs": {}}
    raw = BOLT.encode("tx_signatures", fields)
    assert raw.endswith(h("0002 0002 0102 0000"))
    assert BOLT.decode(raw).fields == fields
    path = {"first_node_id": b"\x01" + bytes(8), "first_path_key": POINT,
            "path": [{"blinded_node_id": POINT, "encrypted_recipient_data": b"xyz"}]}
    raw = BOLT.encode_tlv_stream("onionmsg_tlv", {"reply_path": {"path": path}, "invoice": {"inv": b"\x01"}})
    assert BOLT.decode_tlv_stream("onionmsg_tlv", raw) == {"reply_path": {"path": path},
                                                           "invoice": {"inv": b"\x01"}}
    assert raw.startswith(h("02") + bytes((9 + 33 + 1 + 33 + 2 + 3,)) + b"\x01")


def test_empty_record_and_signed_field():
    raw = BOLT.encode("tx_init_rbf", {"channel_id": bytes(32), "locktime": 1, "feerate": 2,
                                      "tlvs": {"funding_output_contribution": {"satoshis": -5},
                                               "require_confirmed_inputs": {}}})
    assert raw.endswith(h("00 08 fffffffffffffffb 02 00"))
    assert BOLT.decode(raw).fields["tlvs"]["require_confirmed_inputs"] == {}
    with pytest.raises(DecodeError):  # record with no fields must be empty
        BOLT.decode(raw[:-1] + b"\x01\x00")


# -- round trip of every message and stream ---------------------------------------

ALL_MESSAGES = [(BOLT, n) for n in BOLT.messages] + [(ONION, n) for n in ONION.messages]


@pytest.mark.parametrize("schema,name", ALL_MESSAGES, ids=[n for _, n in ALL_MESSAGES])
def test_round_trip_every_message(schema, name):
    rng = random.Random(name)
    for attempt in range(25):
        fields = sample_message(schema, name, rng)
        raw = schema.encode(name, fields)
        assert wire.peek_type(raw) == schema.type_number(name)
        msg = schema.decode(raw)
        assert msg.known and msg.name == name and msg.fields == fields and msg.extension == b""
        assert schema.encode(name, msg.fields) == raw
        assert schema.decode_payload(name, raw[2:]) == fields
        if attempt >= 3:
            continue
        # Cutting into the fixed (non-TLV) part is always a DecodeError.
        base = schema.encode(name, {**fields, "tlvs": {}} if "tlvs" in fields else fields)
        for cut in range(2, len(base)):
            with pytest.raises(DecodeError):
                schema.decode(base[:cut])


@pytest.mark.parametrize("stream", sorted(BOLT.tlv_streams))
def test_round_trip_every_tlv_stream(stream):
    rng = random.Random(stream)
    codec = BOLT.tlv_stream(stream)
    for _ in range(40):
        values = sample_tlv_stream(codec, rng)
        raw = BOLT.encode_tlv_stream(stream, values)
        assert BOLT.decode_tlv_stream(stream, raw) == values
        assert BOLT.encode_tlv_stream(stream, dict(reversed(list(values.items())))) == raw


# -- length fields -------------------------------------------------------------------

def test_length_fields_are_computed_checked_and_omitted():
    assert BOLT.encode("ping", {"num_pong_bytes": 1, "byteslen": 2, "ignored": b"ab"}) == \
        BOLT.encode("ping", {"num_pong_bytes": 1, "ignored": b"ab"})
    with pytest.raises(EncodeError, match="byteslen"):
        BOLT.encode("ping", {"num_pong_bytes": 1, "byteslen": 3, "ignored": b"ab"})
    assert "byteslen" not in BOLT.decode(h("0012 0001 0000")).fields
    with pytest.raises(EncodeError, match="missing"):
        BOLT.encode("ping", {"num_pong_bytes": 1, "byteslen": 0})
    with pytest.raises(EncodeError, match="out of range"):
        BOLT.encode("pong", {"ignored": bytes(0x10000)})
    sigs = [bytes(64)] * 3
    raw = BOLT.encode("commitment_signed", {"channel_id": bytes(32), "signature": bytes(64),
                                            "htlc_signature": sigs})
    assert raw[2 + 32 + 64:2 + 32 + 64 + 2] == h("0003")


def test_length_field_shared_by_two_arrays():
    schema = MessageSchema.from_csv_text(
        "msgtype,pair,1\nmsgdata,pair,n,u16,\nmsgdata,pair,a,u16,n\nmsgdata,pair,b,byte,n\n")
    assert schema.encode("pair", {"a": [1, 2], "b": b"xy"}) == h("0001 0002 0001 0002") + b"xy"
    with pytest.raises(EncodeError, match="differ"):
        schema.encode("pair", {"a": [1], "b": b"xy"})


# -- malformed input ------------------------------------------------------------------

CID = bytes(32).hex()
MALFORMED = {
    "empty": "",
    "one byte": "00",
    "truncated u16": "0012 00",
    "length beyond end": "0012 0004 0005 0000",
    "truncated channel_id": "0011" + CID[:-2],
    "bad point prefix": "0024" + CID + "04" + POINT.hex()[2:],
    "truncated tlv value": "0024" + CID + POINT.hex() + "01 08 0000",
    "tlv length too long for record": "0024" + CID + POINT.hex() + "01 09 000000000000000000",
    "tlv out of order": "0010 0000 0000 03 01 01 01 00",
    "tlv duplicate": "0010 0000 0000 03 01 01 03 01 01",
    "unknown even tlv": "0010 0000 0000 04 00",
    "non-canonical tlv type": "0010 0000 0000 fd0003 00",
    "non-canonical tlv length": "0010 0000 0000 03 fd0001 00",
    "truncated bigsize field": "4016 fd",
    "non-canonical bigsize field": "4016 fd0001 0000",
    "truncated u32 in failure": "100d 0000",
    "huge array count": "0084" + CID + "00" * 64 + "ffff" + "00" * 64,
}


@pytest.mark.parametrize("hexstr", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_raise_decode_error(hexstr):
    schema = ONION if hexstr[:2] in ("40", "10") else BOLT
    with pytest.raises(DecodeError) as info:
        schema.decode(h(hexstr))
    assert isinstance(info.value, ValueError)


def test_malformed_tlv_values():
    cases = {
        "payload": ["02 01 00", "06 07 " + "00" * 7, "08 21 " + "00" * 32 + "00", "0c 20 " + "02" * 32],
        "encrypted_data_tlv": ["0a 0a " + "00" * 10, "0a 09 " + "00" * 6 + "000001"],
        "reply_channel_range_tlvs": ["03 07 " + "00" * 7],
        "onionmsg_tlv": ["02 2a 05" + "00" * 41, "02 2b 00" + "00" * 8 + POINT.hex() + "01"],
    }
    for stream, bad in cases.items():
        for hexstr in bad:
            with pytest.raises(DecodeError):
                BOLT.decode_tlv_stream(stream, h(hexstr))


def test_decode_error_names_the_field():
    with pytest.raises(DecodeError) as info:
        BOLT.decode(h("0010 0000 0000 01 01 00"))
    assert info.value.path == ("init", "tlvs", "networks", "chains")
    assert str(info.value).startswith("init.tlvs.networks.chains:")


# -- unknown messages ------------------------------------------------------------------

def test_unknown_messages():
    odd = BOLT.decode(h("7fff 0102"))
    assert not odd.known and odd.type == 0x7FFF and odd.payload == h("0102")
    assert odd.name is None and odd.fields == {}
    assert wire.accept_message(odd) is False
    even = BOLT.decode(h("7ffe"))
    with pytest.raises(UnknownMessageError) as info:
        wire.accept_message(even)
    assert info.value.msgtype == 0x7FFE and isinstance(info.value, DecodeError)
    assert wire.accept_message(BOLT.decode(h("0012 0000 0000"))) is True
    assert wire.encode_raw_message(0x7FFF, b"\x01\x02") == h("7fff 0102")


# -- encode errors ---------------------------------------------------------------------

@pytest.mark.parametrize("name,fields", [
    ("nonexistent", {}),
    ("ping", {"num_pong_bytes": 1}),
    ("ping", {"num_pong_bytes": 1, "ignored": b"", "typo": 1}),
    ("ping", {"num_pong_bytes": -1, "ignored": b""}),
    ("ping", {"num_pong_bytes": "1", "ignored": b""}),
    ("ping", {"num_pong_bytes": 1, "ignored": "text"}),
    ("error", {"channel_id": bytes(31), "data": b""}),
    ("update_fulfill_htlc", {"channel_id": bytes(32), "id": 1, "payment_preimage": bytes(31)}),
    ("channel_ready", {"channel_id": bytes(32), "second_per_commitment_point": bytes(33)}),
    ("channel_ready", {"channel_id": bytes(32), "second_per_commitment_point": POINT, "tlvs": {"nope": {}}}),
    ("channel_ready", {"channel_id": bytes(32), "second_per_commitment_point": POINT, "tlvs": {2: b""}}),
    ("channel_ready", {"channel_id": bytes(32), "second_per_commitment_point": POINT, "tlvs": {1: b""}}),
    ("commitment_signed", {"channel_id": bytes(32), "signature": bytes(64), "htlc_signature": bytes(64)}),
    ("tx_signatures", {"channel_id": bytes(32), "txid": bytes(32), "witnesses": [{"witness": b""}]}),
])
def test_encode_errors(name, fields):
    with pytest.raises(EncodeError):
        BOLT.encode(name, fields)


def test_encode_accepts_convenient_inputs():
    upd = {"channel_id": bytes(32), "short_channel_id": 0x0102030405060708,
           "node_signature": bytearray(64), "bitcoin_signature": memoryview(bytes(64))}
    raw = BOLT.encode("announcement_signatures", upd)
    assert BOLT.decode(raw).fields["short_channel_id"] == h("0102030405060708")
    # None for a TLV record means absent
    ready = {"channel_id": bytes(32), "second_per_commitment_point": POINT, "tlvs": {"short_channel_id": None}}
    assert BOLT.encode("channel_ready", ready) == BOLT.encode("channel_ready", {**ready, "tlvs": {}})


# -- other schemas ---------------------------------------------------------------------

INTERNAL_CSV = """\
# internal master<->subdaemon messages (CLN style)
msgtype,hsmd_init,11
msgdata,hsmd_init,dev,bool,
msgdata,hsmd_init,key,?secret,
msgdata,hsmd_init,num_ids,u16,
msgdata,hsmd_init,ids,node_id,num_ids
msgdata,hsmd_init,alias,utf8,32
msgdata,hsmd_init,note_len,u8,
msgdata,hsmd_init,note,utf8,note_len
msgtype,hsmd_init_reply,111
msgdata,hsmd_init_reply,tlvs,hsmd_init_reply_tlvs,
tlvtype,hsmd_init_reply_tlvs,hsm_version,1
tlvdata,hsmd_init_reply_tlvs,hsm_version,version,tu32,
"""


def test_internal_csv_from_path(tmp_path):
    path = tmp_path / "hsmd_wire.csv"
    path.write_text(INTERNAL_CSV)
    schema = MessageSchema.from_csv(path, extra_types=wire.INTERNAL_TYPES, allow_trailing=False)
    fields = {"dev": True, "key": None, "ids": [POINT], "alias": "é" * 16, "note": "hi€"}
    raw = schema.encode("hsmd_init", fields)
    assert raw == h("000b 01 00 0001") + POINT + ("é" * 16).encode() + h("05") + "hi€".encode()
    assert schema.decode(raw).fields == fields
    with_key = {**fields, "key": b"\x11" * 32}
    assert schema.decode(schema.encode("hsmd_init", with_key)).fields == with_key
    for bad in (raw[:2] + b"\x02" + raw[3:], raw[:3] + b"\x02" + raw[4:], raw[:-1] + b"\xff", raw + b"\0"):
        with pytest.raises(DecodeError):
            schema.decode(bad)
    with pytest.raises(EncodeError):
        schema.encode("hsmd_init", {**fields, "alias": "short"})
    assert schema.decode(schema.encode("hsmd_init_reply", {"tlvs": {"hsm_version": {"version": 6}}})) \
        .fields == {"tlvs": {"hsm_version": {"version": 6}}}


@pytest.mark.parametrize("text,match", [
    ("msgtype,a,1\nmsgdata,a,x,nosuchtype,\n", "unknown type"),
    ("msgtype,a,1\nmsgdata,a,x,byte,n\nmsgdata,a,n,u16,\n", "earlier field"),
    ("msgtype,a,1\nmsgtype,a,2\n", "duplicate"),
    ("msgtype,a,1\nmsgtype,b,1\n", "share type"),
    ("msgtype,a,70000\n", "16 bits"),
    ("msgtype,a,BOGUS|1\n", "bad type number"),
    ("msgdata,a,x,u8,\n", "undeclared"),
    ("tlvtype,s,r,1\ntlvdata,s,r,x,tu64,\ntlvdata,s,r,y,u8,\n", "last field"),
    ("subtype,s\nsubtypedata,s,x,s,\n", "contains itself"),
    ("subtype,u16\n", "built-in"),
    ("msgtype,a,1\nmsgdata,a,n,sha256,\nmsgdata,a,x,byte,n\n", "plain integer"),
    ("frob,a,1\n", "row kind"),
])
def test_schema_errors(text, match):
    with pytest.raises(SchemaError, match=match):
        MessageSchema.from_csv_text(text)


def test_schema_lookup_errors():
    with pytest.raises(SchemaError):
        BOLT.decode_tlv_stream("nope", b"")
    with pytest.raises(SchemaError):
        BOLT.message("nope")
    with pytest.raises(SchemaError):
        MessageSchema.from_csv_text(wire.bolt_csv_text(), include=["nope"])
    assert "ping" in BOLT and "nope" not in BOLT
