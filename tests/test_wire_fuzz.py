"""wire/: property tests — decoders only ever raise DecodeError, and decoding is canonical.

Two kinds of input per decoder (every message of both BOLT schemas, every
TLV stream of the BOLT CSV):

* random bytes after the message type (cheap, finds shallow bugs);
* a valid random encoding with random mutations (byte flips, truncation,
  insertion, deletion), which reaches deep into nested fields and TLVs.

Whenever a mutated input *does* decode, re-encoding the result must give back
exactly the bytes that were consumed: the codec must reject every
non-canonical form rather than silently normalise it.
"""
from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wire
from wire import DecodeError
from wire_samples import sample_message, sample_tlv_stream

BOLT = wire.bolt_schema()
ONION = wire.onion_failure_schema()
MESSAGES = [(BOLT, n) for n in BOLT.messages] + [(ONION, n) for n in ONION.messages]
STREAMS = sorted(BOLT.tlv_streams)

# ~100 decoders x 4 properties; the per-test budget keeps the file around 10s.
# Set WIRE_FUZZ_EXAMPLES (e.g. 5000) for a longer local fuzzing campaign.
EXAMPLES = int(os.environ.get("WIRE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_message(schema: wire.MessageSchema, raw: bytes) -> None:
    """Decode ``raw``; only DecodeError may escape, successes must be canonical."""
    try:
        msg = schema.decode(raw)
    except DecodeError:
        return
    if not msg.known:
        assert msg.payload == raw[2:]
        return
    consumed = raw[:len(raw) - len(msg.extension)]
    assert schema.encode(msg.name, msg.fields) == consumed


def check_stream(stream: str, raw: bytes) -> None:
    try:
        values = BOLT.decode_tlv_stream(stream, raw)
    except DecodeError:
        return
    assert BOLT.encode_tlv_stream(stream, values) == raw


mutation = st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]),
                     st.integers(0, 1 << 16), st.integers(0, 255), st.binary(max_size=9))


def mutate(raw: bytes, ops: list[tuple[str, int, int, bytes]], keep: int = 0) -> bytes:
    """Apply mutations; the first ``keep`` bytes (a message type) stay intact."""
    data = bytearray(raw)
    for op, where, value, blob in ops:
        span = len(data) - keep
        pos = keep + (where % (span + 1))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << (value % 8)
        elif op == "set" and pos < len(data):
            data[pos] = value
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = blob
        elif op == "delete":
            del data[pos:pos + 1 + value % 8]
    return bytes(data)


@pytest.mark.parametrize("schema,name", MESSAGES, ids=[n for _, n in MESSAGES])
@FUZZ
@given(payload=st.binary(max_size=300))
def test_random_bytes_message(schema, name, payload):
    check_message(schema, schema.type_number(name).to_bytes(2, "big") + payload)


@pytest.mark.parametrize("schema,name", MESSAGES, ids=[n for _, n in MESSAGES])
@FUZZ
@given(seed=st.integers(0, 2**32), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_message(schema, name, seed, ops):
    raw = schema.encode(name, sample_message(schema, name, random.Random(seed)))
    check_message(schema, mutate(raw, ops, keep=2))


@pytest.mark.parametrize("stream", STREAMS)
@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_tlv_stream(stream, raw):
    check_stream(stream, raw)


@pytest.mark.parametrize("stream", STREAMS)
@FUZZ
@given(seed=st.integers(0, 2**32), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_tlv_stream(stream, seed, ops):
    raw = BOLT.encode_tlv_stream(stream, sample_tlv_stream(BOLT.tlv_stream(stream), random.Random(seed)))
    check_stream(stream, mutate(raw, ops))


@settings(max_examples=300, deadline=None, database=None)
@given(raw=st.binary(max_size=40))
def test_random_bytes_any_type(raw):
    """Any 2+ bytes: known types decode or DecodeError, unknown ones are reported."""
    for schema in (BOLT, ONION):
        check_message(schema, raw)


@settings(max_examples=300, deadline=None, database=None)
@given(raw=st.binary(max_size=12))
def test_bigsize_decode_is_canonical(raw):
    try:
        value, used = wire.decode_bigsize(raw)
    except DecodeError:
        return
    assert wire.encode_bigsize(value) == raw[:used]
