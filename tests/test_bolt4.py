"""BOLT 4 onion routing against the spec's vectors, plus failure and property tests.

Vectors used:
* ``spec/bolts/bolt04/onion-test.json``: onion construction and peeling
  (hop private keys are its ``decode`` list).
* ``spec/bolts/bolt04/onion-error-test.json``: a ``temporary_node_failure``
  from hop 4 (per-hop shared secrets, ``ammag``/``um`` keys, padded payload,
  final error packet).
* The "Test Vector" section of ``04-onion-routing.md``: a 1024-padded
  ``incorrect_or_unknown_payment_details`` with a TLV, every intermediate
  value (streams, packets per hop) and ``attribution_data`` for both the
  failure and the success case.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.onion import (
    ONION_PACKET_LEN,
    blinded_node_tweak,
    create_onion,
    next_path_key,
    peel_onion,
    peel_onion_with_privkey,
)
from onion_attribution import (
    ATTRIBUTION_DATA_LEN,
    add_attribution_data,
    decode_failure_attributed,
    verify_attribution,
)
from common.onion_crypto import (
    chacha20_stream,
    decode_bigsize,
    encode_bigsize,
    generate_key,
    hmac_sha256,
    xor_bytes,
)
from common.onion_errors import (
    BADONION,
    FAILURE_DATA_FIELDS,
    NODE,
    PERM,
    UPDATE,
    FailureCode,
    InvalidOnionBlinding,
    InvalidOnionHmac,
    InvalidOnionKey,
    InvalidOnionPayload,
    InvalidOnionVersion,
    MalformedFailureMessage,
    UnknownFailureSource,
    build_error_packet,
    create_failure_message,
    decode_failure,
    decode_failure_data,
    encode_failure_data,
    encode_failuremsg,
    failure_code_name,
    pad_failuremsg,
    wrap_failure,
)
from common.onion_payload import (
    HopPayload,
    PaymentData,
    check_payload,
    decode_payload,
    encode_payload,
)

SPEC = Path(__file__).resolve().parent.parent / "spec" / "bolts"
ONION_VEC = json.loads((SPEC / "bolt04" / "onion-test.json").read_text())
ERROR_VEC = json.loads((SPEC / "bolt04" / "onion-error-test.json").read_text())
SPEC_MD = (SPEC / "04-onion-routing.md").read_text()

h = bytes.fromhex
SESSION_KEY = h(ONION_VEC["generate"]["session_key"])
ASSOC_DATA = h(ONION_VEC["generate"]["associated_data"])
PUBKEYS = [h(hop["pubkey"]) for hop in ONION_VEC["generate"]["hops"]]
PRIVKEYS = [h(k) for k in ONION_VEC["decode"]]


def _strip_length(prefixed: bytes) -> bytes:
    """The vector's payloads carry their bigsize length; our API does not."""
    length, pos = decode_bigsize(prefixed)
    assert length == len(prefixed) - pos
    return prefixed[pos:]


VEC_PAYLOADS = [_strip_length(h(hop["payload"])) for hop in ONION_VEC["generate"]["hops"]]


def _vector_onion() -> tuple[bytes, list[bytes]]:
    return create_onion(SESSION_KEY, list(zip(PUBKEYS, VEC_PAYLOADS)), ASSOC_DATA)


# --- onion-test.json ---------------------------------------------------------


def test_vector_keys_match() -> None:
    # The decode keys are the private keys of the listed hop pubkeys.
    assert [coincurve.PrivateKey(k).public_key.format() for k in PRIVKEYS] == PUBKEYS
    assert ERROR_VEC["generate"]["session_key"] == ONION_VEC["generate"]["session_key"]


def test_create_onion_matches_vector() -> None:
    packet, secrets = _vector_onion()
    assert len(packet) == ONION_PACKET_LEN == len(h(ONION_VEC["onion"]))
    assert packet.hex() == ONION_VEC["onion"]
    assert len(secrets) == 5
    # Same session key and hops as the error vector, which lists the secrets.
    assert [s.hex() for s in secrets] == [hop["hop_shared_secret"] for hop in ERROR_VEC["generate"]["hops"]]


def test_peel_every_hop_matches_vector() -> None:
    packet = h(ONION_VEC["onion"])
    _, secrets = _vector_onion()
    # Ephemeral keys the sender expects each hop to see (blinded chain).
    ephemeral = coincurve.PrivateKey(SESSION_KEY)
    for i, (privkey, hop) in enumerate(zip(PRIVKEYS, ONION_VEC["generate"]["hops"])):
        assert packet[1:34] == ephemeral.public_key.format()
        peeled = peel_onion_with_privkey(packet, ASSOC_DATA, privkey)
        # Exactly the vector payload, which includes the length prefix.
        assert encode_bigsize(len(peeled.payload)) + peeled.payload == h(hop["payload"])
        assert peeled.shared_secret == secrets[i]
        last = i == len(PRIVKEYS) - 1
        assert peeled.is_final is last
        if last:
            assert peeled.next_packet is None and peeled.next_hmac == bytes(32)
        else:
            assert peeled.next_packet is not None and len(peeled.next_packet) == ONION_PACKET_LEN
            assert peeled.next_packet[-32:] == peeled.next_hmac != bytes(32)
            packet = peeled.next_packet
        ephemeral = ephemeral.multiply(
            hashlib.sha256(ephemeral.public_key.format() + secrets[i]).digest()
        )


def test_peel_with_ecdh_callback() -> None:
    """The hsmd-style oracle sees only points and returns the BOLT 4 secret."""
    seen: list[bytes] = []
    key = coincurve.PrivateKey(PRIVKEYS[0])

    def oracle(point: bytes) -> bytes:
        seen.append(point)
        return key.ecdh(point)

    packet = h(ONION_VEC["onion"])
    peeled = peel_onion(packet, ASSOC_DATA, oracle)
    assert seen == [packet[1:34]]
    assert peeled.payload == VEC_PAYLOADS[0]


def test_vector_payloads_decode() -> None:
    p0 = decode_payload(VEC_PAYLOADS[0])
    assert (p0.amt_to_forward, p0.outgoing_cltv_value, p0.short_channel_id) == (15000, 1500, 1)
    p1 = decode_payload(VEC_PAYLOADS[1])
    assert (p1.amt_to_forward, p1.outgoing_cltv_value, p1.short_channel_id) == (14000, 1400, 2)
    assert list(p1.unknown_odd) == [513] and p1.unknown_odd[513] == bytes(range(1, 16)) * 4
    p4 = decode_payload(VEC_PAYLOADS[4])
    assert (p4.amt_to_forward, p4.outgoing_cltv_value, p4.short_channel_id) == (10000, 1000, None)
    assert p4.payment_data is not None and p4.payment_data.total_msat == 10000
    assert len(p4.payment_data.payment_secret) == 32
    assert p4.unknown_odd == {301: b"\x2a" * 224}
    for i, raw in enumerate(VEC_PAYLOADS):
        payload = decode_payload(raw)
        assert encode_payload(payload) == raw  # unknown odd records round-trip
        check_payload(payload, is_final=i == 4)


# --- peeling failures ---------------------------------------------------------


def _sha(packet: bytes) -> bytes:
    return hashlib.sha256(packet).digest()


def _mutate(packet: bytes, index: int, value: int | None = None) -> bytes:
    b = bytearray(packet)
    b[index] = b[index] ^ 1 if value is None else value
    return bytes(b)


@pytest.mark.parametrize(
    "mutation",
    [
        lambda p: _mutate(p, len(p) - 1),  # HMAC byte
        lambda p: _mutate(p, 100),  # hop_payloads byte
        lambda p: _mutate(p, 2),  # ephemeral key: another point (HMAC fails) or none (bad key)
    ],
)
def test_tampering_gives_invalid_hmac(mutation) -> None:  # type: ignore[no-untyped-def]
    packet = mutation(h(ONION_VEC["onion"]))
    with pytest.raises((InvalidOnionHmac, InvalidOnionKey)) as err:
        peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[0])
    assert err.value.sha256_of_onion == _sha(packet)
    assert err.value.failure_code & BADONION


def test_invalid_hmac_details() -> None:
    packet = _mutate(h(ONION_VEC["onion"]), len(h(ONION_VEC["onion"])) - 1)
    with pytest.raises(InvalidOnionHmac) as err:
        peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[0])
    assert err.value.failure_code == FailureCode.INVALID_ONION_HMAC == BADONION | PERM | 5
    assert err.value.failure_data == err.value.sha256_of_onion == _sha(packet)


def test_wrong_associated_data() -> None:
    packet = h(ONION_VEC["onion"])
    with pytest.raises(InvalidOnionHmac) as err:
        peel_onion_with_privkey(packet, bytes(32), PRIVKEYS[0])
    assert err.value.sha256_of_onion == _sha(packet)


def test_wrong_node_key() -> None:
    with pytest.raises(InvalidOnionHmac):
        peel_onion_with_privkey(h(ONION_VEC["onion"]), ASSOC_DATA, PRIVKEYS[1])


@pytest.mark.parametrize("version", [1, 2, 0xFF])
def test_bad_version(version: int) -> None:
    packet = _mutate(h(ONION_VEC["onion"]), 0, version)
    with pytest.raises(InvalidOnionVersion) as err:
        peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[0])
    assert err.value.failure_code == BADONION | PERM | 4
    assert err.value.sha256_of_onion == _sha(packet)


@pytest.mark.parametrize(
    "key",
    [
        b"\x04" + bytes(32),  # not a compressed prefix
        b"\x00" * 33,
        b"\x02" + b"\xff" * 32,  # x >= field size: not on the curve
        b"\x02" + bytes(31) + b"\x05",  # x = 5: x^3 + 7 is not a square
    ],
)
def test_bad_pubkey(key: bytes) -> None:
    packet = h(ONION_VEC["onion"])
    packet = packet[:1] + key + packet[34:]
    with pytest.raises(InvalidOnionKey) as err:
        peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[0])
    assert err.value.failure_code == BADONION | PERM | 6
    assert err.value.sha256_of_onion == _sha(packet)


def test_version_checked_before_key() -> None:
    packet = h(ONION_VEC["onion"])
    packet = b"\x01" + b"\x04" * 33 + packet[34:]
    with pytest.raises(InvalidOnionVersion):
        peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[0])


def test_short_packet_is_value_error() -> None:
    with pytest.raises(ValueError):
        peel_onion_with_privkey(b"\x00" * 65, b"", PRIVKEYS[0])


def _forge_single_hop(plain: bytes, privkey: bytes = PRIVKEYS[0], size: int = 1300) -> bytes:
    """A correctly authenticated onion whose decrypted hop_payloads is ``plain``.

    Lets us test framing errors that create_onion would never produce.
    """
    eph = coincurve.PrivateKey(SESSION_KEY)
    secret = eph.ecdh(coincurve.PrivateKey(privkey).public_key.format())
    plain = plain + bytes(size - len(plain))
    mix = xor_bytes(plain, chacha20_stream(generate_key(b"rho", secret), size))
    mac = hmac_sha256(generate_key(b"mu", secret), mix + ASSOC_DATA)
    return b"\x00" + eph.public_key.format() + mix + mac


@pytest.mark.parametrize(
    "plain",
    [
        b"\xfd\x00\x10" + bytes(16),  # non-minimal bigsize length
        b"\x00",  # legacy 0 length
        b"\x01\x02",  # reserved length 1
        b"\xfd\x04\xf2",  # 3 + 1266 + 32 > 1300
        b"\xff",  # truncated bigsize
    ],
)
def test_malformed_frame_is_invalid_payload(plain: bytes) -> None:
    packet = _forge_single_hop(plain)
    with pytest.raises(InvalidOnionPayload) as err:
        peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[0])
    assert err.value.failure_code == PERM | 22
    assert err.value.shared_secret is not None  # authenticated: reply encrypted
    assert err.value.failure_data == b"\x00\x00\x00"


def test_frame_exactly_filling_payloads_is_accepted() -> None:
    length = 1300 - 3 - 32  # bigsize prefix (3) + payload + HMAC (32) == 1300
    payload = b"\x02\x01\x01" + bytes(length - 3)
    packet = _forge_single_hop(encode_bigsize(length) + payload)
    peeled = peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[0])
    assert peeled.is_final and peeled.payload == payload


# --- construction limits, variable size (onion messages), blinding -----------


def test_create_onion_rejects_oversize_and_empty() -> None:
    with pytest.raises(ValueError):
        create_onion(SESSION_KEY, [], b"")
    with pytest.raises(ValueError):
        create_onion(SESSION_KEY, [(PUBKEYS[0], bytes(1300 - 3 - 32 + 1))], b"")
    # Exactly full is fine.
    packet, _ = create_onion(SESSION_KEY, [(PUBKEYS[0], bytes(1300 - 3 - 32))], b"")
    assert peel_onion_with_privkey(packet, b"", PRIVKEYS[0]).payload == bytes(1265)


@pytest.mark.parametrize("size", [1300, 32768, 400])
def test_variable_size_onion_message(size: int) -> None:
    # Onion messages: no associated data, 0-length payloads allowed.
    payloads = [b"", b"\x04\x03abc", b"x" * 200]
    packet, secrets = create_onion(SESSION_KEY, list(zip(PUBKEYS, payloads)), b"", routing_info_size=size)
    assert len(packet) == size + 66
    for i, payload in enumerate(payloads):
        peeled = peel_onion_with_privkey(packet, b"", PRIVKEYS[i], min_payload_len=0)
        assert peeled.payload == payload and peeled.shared_secret == secrets[i]
        if peeled.next_packet is None:
            assert i == 2
        else:
            assert len(peeled.next_packet) == size + 66
            packet = peeled.next_packet
    # A payment onion reader refuses the empty payload.
    packet, _ = create_onion(SESSION_KEY, [(PUBKEYS[0], b"")], b"", routing_info_size=size)
    with pytest.raises(InvalidOnionPayload):
        peel_onion_with_privkey(packet, b"", PRIVKEYS[0])


def test_blinded_hop_peels_with_path_key() -> None:
    # Recipient side: path key E, blinded id B = HMAC("blinded_node_id", ss) * N.
    e = coincurve.PrivateKey(b"\x11" * 32)
    path_key = e.public_key.format()
    node = coincurve.PrivateKey(PRIVKEYS[1])
    ss = e.ecdh(node.public_key.format())
    blinded_id = node.public_key.multiply(blinded_node_tweak(ss)).format()
    packet, secrets = create_onion(
        SESSION_KEY, [(PUBKEYS[0], b"\x02\x01\x01"), (blinded_id, b"\x0a\x01\x00")], ASSOC_DATA
    )
    first = peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[0])
    assert first.next_packet is not None
    with pytest.raises(InvalidOnionHmac):  # without the path key we cannot decrypt
        peel_onion_with_privkey(first.next_packet, ASSOC_DATA, PRIVKEYS[1])
    with pytest.raises(InvalidOnionBlinding):
        peel_onion_with_privkey(first.next_packet, ASSOC_DATA, PRIVKEYS[1], path_key=b"\x02" + b"\xff" * 32)
    second = peel_onion_with_privkey(first.next_packet, ASSOC_DATA, PRIVKEYS[1], path_key=path_key)
    assert second.payload == b"\x0a\x01\x00" and second.is_final
    assert second.shared_secret == secrets[1] and second.path_key_shared_secret == ss
    # E1 = SHA256(E0 || ss) * E0, consistent with the private side e1 = h * e0.
    factor = hashlib.sha256(path_key + ss).digest()
    assert next_path_key(path_key, ss) == e.multiply(factor).public_key.format()


# --- onion-error-test.json -----------------------------------------------------


def test_error_vector_json() -> None:
    gen = ERROR_VEC["generate"]
    hops = gen["hops"]
    assert [hop["pubkey"] for hop in hops] == [k.hex() for k in PUBKEYS]
    assert all(hop["version"] == 0 for hop in hops)
    _, secrets = _vector_onion()
    for secret, hop in zip(secrets, hops):
        assert secret.hex() == hop["hop_shared_secret"]
        assert generate_key(b"ammag", secret).hex() == hop["ammag_key"]
        if "um_key" in hop:
            assert generate_key(b"um", secret).hex() == hop["um_key"]
    erring = secrets[4]
    failuremsg = h(gen["failure_message"])
    assert failuremsg == encode_failuremsg(FailureCode.TEMPORARY_NODE_FAILURE)
    # "payload" is the return packet without its HMAC, padded to 256.
    raw = build_error_packet(erring, failuremsg)
    assert raw[32:].hex() == hops[4]["payload"] == pad_failuremsg(failuremsg).hex()
    assert raw[:32] == hmac_sha256(h(hops[4]["um_key"]), raw[32:])
    packet = create_failure_message(erring, FailureCode.TEMPORARY_NODE_FAILURE)
    assert packet == wrap_failure(erring, raw)
    for secret in reversed(secrets[:4]):
        packet = wrap_failure(secret, packet)
    assert packet.hex() == ERROR_VEC["errorpacket"]
    index, code, data = decode_failure(secrets, packet)
    assert (index, code, data) == (4, NODE | 2, b"")


# --- the markdown trace (attributable failure) -------------------------------


def _md_values(section: str, name: str) -> list[bytes]:
    pattern = re.escape(name) + r"\s*[:=]\s*\n?\s*([0-9a-f]{16,})"
    return [h(m.group(1)) for m in re.finditer(pattern, section)]


MD_TRACE = SPEC_MD.split("# Test Vector", 1)[1]
MD_FAIL, MD_SUCCESS = MD_TRACE.split("## Returning success")
MD_HOLD_TIMES = [1, 2, 3, 4, 5]  # reported by node 4, 3, 2, 1, 0 respectively


def test_markdown_failure_trace() -> None:
    _, secrets = _vector_onion()
    tlv = encode_bigsize(34001) + encode_bigsize(300) + b"\x80" * 300
    data = encode_failure_data(
        FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, tlvs=tlv, htlc_msat=100, height=800000
    )
    failuremsg = encode_failuremsg(FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, data)
    # This vector pads failure_len + pad_len to 1024, not the default 256.
    padded = pad_failuremsg(failuremsg, pad_to=1024)
    assert padded[2:] == _md_values(MD_FAIL, "encoded_failure_message")[0]
    assert padded == _md_values(MD_FAIL, "payload")[0]
    creation_secret, *forward_secrets = _md_values(MD_FAIL, "shared_secret")
    assert creation_secret == secrets[4]
    assert generate_key(b"um", secrets[4]) == _md_values(MD_FAIL, "um_key")[0]
    raw = build_error_packet(secrets[4], failuremsg, pad_to=1024)
    assert raw == _md_values(MD_FAIL, "raw_error_packet")[0]

    ammag_keys = _md_values(MD_FAIL, "ammag_key")
    streams = _md_values(MD_FAIL, "stream")
    packet, attribution = raw, None
    for step, node in enumerate([4, 3, 2, 1, 0]):
        assert forward_secrets[step] == secrets[node]
        assert generate_key(b"ammag", secrets[node]) == ammag_keys[step]
        assert chacha20_stream(ammag_keys[step], len(packet)) == streams[step]
        attribution = add_attribution_data(secrets[node], MD_HOLD_TIMES[step], attribution, packet)
        packet = wrap_failure(secrets[node], packet)
        assert packet == _md_values(MD_FAIL, f"error packet for node {node}")[0]
        assert attribution == _md_values(MD_FAIL, f"attribution data for node {node}")[0]
    assert create_failure_message(
        secrets[4], FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, data, pad_to=1024
    ) == _md_values(MD_FAIL, "error packet for node 4")[0]

    index, code, fdata = decode_failure(secrets, packet)
    assert (index, code) == (4, PERM | 15)
    fields, rest = decode_failure_data(code, fdata)
    assert fields == {"htlc_msat": 100, "height": 800000} and rest == tlv

    assert attribution is not None and len(attribution) == ATTRIBUTION_DATA_LEN
    result = decode_failure_attributed(secrets, packet, attribution)
    assert result.failure == (4, PERM | 15, fdata)
    assert result.attribution.hold_times == [5, 4, 3, 2, 1]
    assert result.attribution.invalid_index is None


def test_markdown_success_attribution() -> None:
    _, secrets = _vector_onion()
    attribution = None
    for step, node in enumerate([4, 3, 2, 1, 0]):
        attribution = add_attribution_data(secrets[node], MD_HOLD_TIMES[step], attribution)
        assert attribution == _md_values(MD_SUCCESS, f"attribution data for node {node}")[0]
    assert attribution is not None
    assert verify_attribution(secrets, attribution) == ([5, 4, 3, 2, 1], None)


def test_attribution_blames_tampering_and_short_failures() -> None:
    _, secrets = _vector_onion()
    # Hop 2 fails; hops 1 and 0 relay.
    raw = build_error_packet(secrets[2], encode_failuremsg(FailureCode.UNKNOWN_NEXT_PEER))
    attribution = add_attribution_data(secrets[2], 7, None, raw)
    packet = wrap_failure(secrets[2], raw)
    attribution = add_attribution_data(secrets[1], 8, attribution, packet)
    packet = wrap_failure(secrets[1], packet)
    honest_attr = add_attribution_data(secrets[0], 9, attribution, packet)
    honest_packet = wrap_failure(secrets[0], packet)
    ok = decode_failure_attributed(secrets, honest_packet, honest_attr)
    assert ok.failure == (2, PERM | 10, b"") and ok.attribution == ([9, 8, 7], None)

    # Hop 1 forwards a corrupted packet (after computing its own HMACs on the
    # good one): the message no longer decodes, and attribution stops at hop 1.
    evil = _mutate(packet, 40)
    evil_attr = add_attribution_data(secrets[0], 9, attribution, evil)
    bad = decode_failure_attributed(secrets, wrap_failure(secrets[0], evil), evil_attr)
    assert bad.failure is None
    assert bad.attribution.invalid_index == 1 and bad.attribution.hold_times == [9]


# --- failure message API -------------------------------------------------------


def test_every_spec_failure_code_and_fields() -> None:
    flags = {"BADONION": BADONION, "PERM": PERM, "NODE": NODE, "UPDATE": UPDATE}
    assert flags == {"BADONION": 0x8000, "PERM": 0x4000, "NODE": 0x2000, "UPDATE": 0x1000}
    section = SPEC_MD.split("## Failure Messages", 1)[1].split("### Requirements", 1)[0]
    blocks = re.findall(r"1\. type: ([A-Z|0-9]+) \(`(\w+)`\)\n(?:2\. data:\n((?:\s+\* .*\n)+))?", section)
    assert len(blocks) == 22
    for expr, name, data in blocks:
        value = 0
        for part in expr.split("|"):
            value |= flags[part] if part in flags else int(part)
        assert FailureCode[name.upper()] == value, name
        assert failure_code_name(value) == name
        spec_fields = []
        for kind, field in re.findall(r"\[`([^`]+)`:`(\w+)`\]", data or ""):
            if field == "len":
                continue
            spec_fields.append((field, "update" if kind == "len*byte" else kind))
        assert list(FAILURE_DATA_FIELDS.get(value, ())) == spec_fields, name
    assert failure_code_name(0x1234) == "unknown_0x1234"


def test_failure_data_roundtrip() -> None:
    update = b"\x01\x02" * 70
    data = encode_failure_data(FailureCode.CHANNEL_DISABLED, disabled_flags=0, channel_update=update)
    assert data == b"\x00\x00" + len(update).to_bytes(2, "big") + update
    assert decode_failure_data(FailureCode.CHANNEL_DISABLED, data) == (
        {"disabled_flags": 0, "channel_update": update},
        b"",
    )
    # channel_update defaults to empty (len = 0), as now recommended.
    assert encode_failure_data(FailureCode.TEMPORARY_CHANNEL_FAILURE) == b"\x00\x00"
    data = encode_failure_data(FailureCode.INVALID_ONION_PAYLOAD, type=0x10000, offset=3)
    assert data == b"\xfe\x00\x01\x00\x00\x00\x03"
    assert decode_failure_data(FailureCode.INVALID_ONION_PAYLOAD, data)[0] == {"type": 0x10000, "offset": 3}
    with pytest.raises(ValueError):
        encode_failure_data(FailureCode.FEE_INSUFFICIENT)  # missing htlc_msat
    with pytest.raises(ValueError):
        encode_failure_data(FailureCode.MPP_TIMEOUT, htlc_msat=1)  # no such field
    with pytest.raises(ValueError):
        decode_failure_data(FailureCode.AMOUNT_BELOW_MINIMUM, b"\x00" * 9)


def test_badonion_error_roundtrip_through_failure_message() -> None:
    """What a hop receiving update_fail_malformed_htlc sends upstream."""
    packet = _mutate(h(ONION_VEC["onion"]), 0, 1)
    with pytest.raises(InvalidOnionVersion) as err:
        peel_onion_with_privkey(packet, ASSOC_DATA, PRIVKEYS[1])
    _, secrets = _vector_onion()
    reply = create_failure_message(secrets[0], err.value.failure_code, err.value.failure_data)
    index, code, data = decode_failure(secrets, reply)
    assert (index, code) == (0, FailureCode.INVALID_ONION_VERSION)
    assert decode_failure_data(code, data)[0] == {"sha256_of_onion": _sha(packet)}


def test_decode_failure_errors() -> None:
    _, secrets = _vector_onion()
    good = wrap_failure(secrets[0], create_failure_message(secrets[1], FailureCode.MPP_TIMEOUT))
    assert decode_failure(secrets, good).index == 1
    with pytest.raises(UnknownFailureSource):
        decode_failure(secrets, _mutate(good, 50))
    with pytest.raises(UnknownFailureSource):
        decode_failure(secrets, b"\x00" * 10)
    # An authentic packet whose failure_len lies: blame the hop that sent it.
    body = b"\x01\x00" + b"\x20\x02"
    mac = hmac_sha256(generate_key(b"um", secrets[3]), body)
    packet = mac + body
    for secret in reversed(secrets[:4]):
        packet = wrap_failure(secret, packet)
    with pytest.raises(MalformedFailureMessage) as err:
        decode_failure(secrets, packet)
    assert err.value.index == 3


def test_padding_rules() -> None:
    assert len(pad_failuremsg(b"\x20\x02")) == 2 + 2 + 2 + 254
    long_msg = b"\x40\x0f" + bytes(400)
    padded = pad_failuremsg(long_msg)  # longer than 256: no padding needed
    assert padded == len(long_msg).to_bytes(2, "big") + long_msg + b"\x00\x00"


# --- payload TLV -------------------------------------------------------------


def test_payload_encode_fields() -> None:
    payload = HopPayload(
        amt_to_forward=0x0100,
        outgoing_cltv_value=0,
        short_channel_id=(700000 << 40) | (5 << 16) | 1,
        payment_data=PaymentData(b"\x33" * 32, 0),
        encrypted_recipient_data=b"enc",
        current_path_key=PUBKEYS[0],
        payment_metadata=b"",
        total_amount_msat=2**64 - 1,
        unknown_odd={99: b"z"},
    )
    raw = encode_payload(payload)
    assert raw.startswith(b"\x02\x02\x01\x00" + b"\x04\x00")  # tu: minimal, zero is empty
    assert decode_payload(raw) == payload
    with pytest.raises(ValueError):
        encode_payload(HopPayload(unknown_odd={100: b""}))
    with pytest.raises(ValueError):
        encode_payload(HopPayload(outgoing_cltv_value=2**32))


@pytest.mark.parametrize(
    "raw, tlv_type, offset",
    [
        (b"\x02\x01\x01\x02\x01\x01", 2, 3),  # duplicate type
        (b"\x04\x01\x01\x02\x01\x01", 2, 3),  # decreasing types
        (b"\x02\x01\x01\x0e\x00", 14, 3),  # unknown even type
        (b"\x02\x02\x00\x01", 2, 0),  # tu64 with leading zero
        (b"\x02\x09" + b"\x01" * 9, 2, 0),  # tu64 too long
        (b"\x04\x05\x01\x01\x01\x01\x01", 4, 0),  # tu32 too long
        (b"\x06\x07" + bytes(7), 6, 0),  # scid not 8 bytes
        (b"\x08\x1f" + bytes(31), 8, 0),  # payment_data without full secret
        (b"\x0c\x21\x04" + bytes(32), 12, 0),  # current_path_key not compressed
        (b"\x02\x05\x01", 2, 0),  # value truncated
        (b"\xfd\x00\x02\x00", 0, 0),  # non-minimal type
        (b"\x02\xfd\x00\x01\x01", 2, 0),  # non-minimal length
    ],
)
def test_payload_decode_rejects(raw: bytes, tlv_type: int, offset: int) -> None:
    with pytest.raises(InvalidOnionPayload) as err:
        decode_payload(raw)
    assert (err.value.tlv_type, err.value.offset) == (tlv_type, offset)
    assert err.value.failure_data == encode_bigsize(tlv_type) + offset.to_bytes(2, "big")


def test_check_payload_rules() -> None:
    fwd = HopPayload(amt_to_forward=1, outgoing_cltv_value=2, short_channel_id=3)
    check_payload(fwd, is_final=False)
    with pytest.raises(InvalidOnionPayload) as err:
        check_payload(HopPayload(amt_to_forward=1, outgoing_cltv_value=2), is_final=False)
    assert err.value.tlv_type == 6
    with pytest.raises(InvalidOnionPayload) as err:
        check_payload(HopPayload(outgoing_cltv_value=2), is_final=True)
    assert err.value.tlv_type == 2
    with pytest.raises(InvalidOnionPayload):
        check_payload(fwd, is_final=False, path_key_in_htlc=True)
    blinded = HopPayload(encrypted_recipient_data=b"x", current_path_key=PUBKEYS[0])
    check_payload(blinded, is_final=False)
    with pytest.raises(InvalidOnionPayload):
        check_payload(blinded, is_final=False, path_key_in_htlc=True)
    with pytest.raises(InvalidOnionPayload):
        check_payload(HopPayload(encrypted_recipient_data=b"x"), is_final=False)
    check_payload(HopPayload(encrypted_recipient_data=b"x"), is_final=False, path_key_in_htlc=True)
    with pytest.raises(InvalidOnionPayload) as err:
        check_payload(
            HopPayload(encrypted_recipient_data=b"x", amt_to_forward=1), is_final=False, path_key_in_htlc=True
        )
    assert err.value.tlv_type == 2
    final = HopPayload(
        encrypted_recipient_data=b"x", amt_to_forward=1, outgoing_cltv_value=2, total_amount_msat=1
    )
    check_payload(final, is_final=True, path_key_in_htlc=True)
    with pytest.raises(InvalidOnionPayload) as err:
        check_payload(HopPayload(encrypted_recipient_data=b"x", amt_to_forward=1, outgoing_cltv_value=2),
                      is_final=True, path_key_in_htlc=True)
    assert err.value.tlv_type == 18


# --- properties ----------------------------------------------------------------

_KEYS = [bytes([i + 1]) * 32 for i in range(20)]
_NODE_IDS = [coincurve.PrivateKey(k).public_key.format() for k in _KEYS]


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=2, max_value=300), min_size=1, max_size=20),
    session=st.binary(min_size=32, max_size=32).filter(lambda b: 0 < int.from_bytes(b, "big") < 2**255),
    data=st.data(),
)
def test_random_routes_roundtrip(sizes: list[int], session: bytes, data: st.DataObject) -> None:
    # Trim the route until its frames fit in 1300 bytes.
    while sum(s + len(encode_bigsize(s)) + 32 for s in sizes) > 1300:
        sizes.pop()
    payloads = [bytes([i]) * s for i, s in enumerate(sizes)]
    packet, secrets = create_onion(session, list(zip(_NODE_IDS, payloads)), b"ad")
    for i, payload in enumerate(payloads):
        peeled = peel_onion_with_privkey(packet, b"ad", _KEYS[i])
        assert peeled.payload == payload and peeled.shared_secret == secrets[i]
        assert peeled.is_final is (i == len(payloads) - 1)
        if peeled.next_packet is not None:
            packet = peeled.next_packet
    erring = data.draw(st.integers(min_value=0, max_value=len(secrets) - 1))
    reply = create_failure_message(secrets[erring], FailureCode.EXPIRY_TOO_FAR, b"t")
    for secret in reversed(secrets[:erring]):
        reply = wrap_failure(secret, reply)
    assert decode_failure(secrets, reply) == (erring, FailureCode.EXPIRY_TOO_FAR, b"t")
