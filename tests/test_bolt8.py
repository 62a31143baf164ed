"""BOLT 8 transport: spec Appendix A vectors, and interop with pyln-proto.

Vectors are copied byte for byte from spec/bolts/08-transport.md.  The
pyln-proto cross-checks run over real TCP sockets on 127.0.0.1 with socket
and asyncio timeouts so that a broken peer fails the test instead of hanging.
"""
from __future__ import annotations

import asyncio
import socket
from hashlib import sha256
import threading
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings, strategies as st

from common.noise import (
    ACT_ONE_SIZE, ACT_THREE_SIZE, ACT_TWO_SIZE, MAX_MESSAGE_SIZE,
    DecryptError, HandshakeError, Initiator, NoiseError, Responder, Transport,
    ecdh_from_privkey, pubkey_from_privkey,
)
from common.noise_async import (
    ConnectionClosed, NoiseConnection, handshake_initiator, handshake_responder,
)

pytestmark = pytest.mark.timeout(120)

H = bytes.fromhex

# --- Appendix A keys ---------------------------------------------------------
INIT_LS_PRIV = H("11" * 32)
INIT_LS_PUB = H("034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa")
INIT_E_PRIV = H("12" * 32)
INIT_E_PUB = H("036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7")
RESP_LS_PRIV = H("21" * 32)
RESP_LS_PUB = H("028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7")
RESP_E_PRIV = H("22" * 32)
RESP_E_PUB = H("02466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27")

ACT1 = H("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7"
         "0df6086551151f58b8afe6c195782c6a")
ACT2 = H("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27"
         "6e2470b93aac583c9ef6eafca3f730ae")
ACT3 = H("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa0"
         "2e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba")
SK = H("969ab31b4d288cedf6218839b27a3e2140827047f2c0f01bf5c04435d43511a9")
RK = H("bb9020b8965f4df047e07f955f3c4b88418984aadc5cdb35096b9ea8fa5c3442")
FINAL_CK = H("919219dbb2920afa8db80f9a51787a840bcf111ed8d588caf9ab4be716e42b01")
FINAL_H = H("5dcb5ea9b4ccc755e0e3456af3990641276e1d5dc9afd82f974d90a47c918660")

MESSAGE_VECTORS = {
    0: "cf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95",
    1: "72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1",
    500: "178cb9d7387190fa34db9c2d50027d21793c9bc2d40b1e14dcf30ebeeeb220f48364f7a4c68bf8",
    501: "1b186c57d44eb6de4c057c49940d79bb838a145cb528d6e8fd26dbe50a60ca2c104b56b60e45bd",
    1000: "4a2f3cc3b5e78ddb83dcb426d9863d9d9a723b0337c89dd0b005d89f8d3c05c52b76b29b740f09",
    1001: "2ecd8c8a5629d0d02ab457a0fdd0f7b90a192cd46be5ecb6ca570bfc5e268338b1a16cf4ef2d36",
}


def vector_initiator() -> Initiator:
    return Initiator.from_privkey(INIT_LS_PRIV, RESP_LS_PUB, ephemeral_privkey=INIT_E_PRIV)


def vector_responder() -> Responder:
    return Responder.from_privkey(RESP_LS_PRIV, ephemeral_privkey=RESP_E_PRIV)


def handshaken_pair() -> "tuple[Transport, Transport]":
    i, r = vector_initiator(), vector_responder()
    i.process_act_two(r.process_act_one(i.act_one()))
    r.process_act_three(i.act_three())
    return i.transport, r.transport


# --- Handshake vectors ------------------------------------------------------------

def test_static_keys_and_ecdh_match_vectors() -> None:
    assert pubkey_from_privkey(INIT_LS_PRIV) == INIT_LS_PUB
    assert pubkey_from_privkey(RESP_LS_PRIV) == RESP_LS_PUB
    # Act One's "ss": coincurve's default ecdh is BOLT 8's SHA256(compressed point).
    assert ecdh_from_privkey(INIT_E_PRIV)(RESP_LS_PUB) == H(
        "1e2fb3c8fe8fb9f262f649f64d26ecf0f2c0a805a767cf02dc2d77a6ef1fdcc3")
    assert ecdh_from_privkey(RESP_LS_PRIV)(INIT_E_PUB) == H(
        "1e2fb3c8fe8fb9f262f649f64d26ecf0f2c0a805a767cf02dc2d77a6ef1fdcc3")


def test_initiator_successful_handshake() -> None:
    i = vector_initiator()
    assert i.ephemeral_pubkey == INIT_E_PUB
    act1 = i.act_one()
    assert len(act1) == ACT_ONE_SIZE and act1 == ACT1
    assert i.h == H("9d1ffbb639e7e20021d9259491dc7b160aab270fb1339ef135053f6f2cebe9ce")
    assert i.ck == H("b61ec1191326fa240decc9564369dbb3ae2b34341d1e11ad64ed89f89180582f")
    i.process_act_two(ACT2)
    assert i.remote_ephemeral_pubkey == RESP_E_PUB
    assert i.h == H("90578e247e98674e661013da3c5c1ca6a8c8f48c90b485c0dfa1494e23d56d72")
    assert i.ck == H("e89d31033a1b6bf68c07d22e08ea4d7884646c4b60a9528598ccb4ee2c8f56ba")
    act3 = i.act_three()
    assert len(act3) == ACT_THREE_SIZE and act3 == ACT3
    assert i.h == FINAL_H and i.ck == FINAL_CK
    t = i.transport
    assert (t.sk, t.rk) == (SK, RK)
    assert t.remote_pubkey == RESP_LS_PUB
    assert t.send.chaining_key == t.recv.chaining_key == FINAL_CK


@pytest.mark.parametrize("act2_hex,code", [
    # transport-initiator act2 short read test
    ("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27"
     "6e2470b93aac583c9ef6eafca3f730", "ACT2_READ_FAILED"),
    # transport-initiator act2 bad version test
    ("0102466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27"
     "6e2470b93aac583c9ef6eafca3f730ae", "ACT2_BAD_VERSION"),
    # transport-initiator act2 bad key serialization test
    ("0004466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27"
     "6e2470b93aac583c9ef6eafca3f730ae", "ACT2_BAD_PUBKEY"),
    # transport-initiator act2 bad MAC test
    ("0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f27"
     "6e2470b93aac583c9ef6eafca3f730af", "ACT2_BAD_TAG"),
])
def test_initiator_act2_failures(act2_hex: str, code: str) -> None:
    i = vector_initiator()
    assert i.act_one() == ACT1
    with pytest.raises(HandshakeError) as exc:
        i.process_act_two(H(act2_hex))
    assert exc.value.code == code
    # A failed handshake can't be continued.
    with pytest.raises(NoiseError):
        i.act_three()
    assert not i.complete


def test_responder_successful_handshake() -> None:
    r = vector_responder()
    assert r.ephemeral_pubkey == RESP_E_PUB
    act2 = r.process_act_one(ACT1)
    assert len(act2) == ACT_TWO_SIZE and act2 == ACT2
    assert r.remote_ephemeral_pubkey == INIT_E_PUB
    assert r.h == H("90578e247e98674e661013da3c5c1ca6a8c8f48c90b485c0dfa1494e23d56d72")
    t = r.process_act_three(ACT3)
    assert r.h == FINAL_H and r.ck == FINAL_CK
    # Responder vector: rk,sk = 0x969a...,0xbb90...
    assert (t.rk, t.sk) == (SK, RK)
    assert t.remote_pubkey == r.remote_static_pubkey == INIT_LS_PUB
    assert r.transport is t


@pytest.mark.parametrize("act1_hex,code", [
    # transport-responder act1 short read test
    ("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7"
     "0df6086551151f58b8afe6c195782c", "ACT1_READ_FAILED"),
    # transport-responder act1 bad version test
    ("01036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7"
     "0df6086551151f58b8afe6c195782c6a", "ACT1_BAD_VERSION"),
    # transport-responder act1 bad key serialization test
    ("00046360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7"
     "0df6086551151f58b8afe6c195782c6a", "ACT1_BAD_PUBKEY"),
    # transport-responder act1 bad MAC test
    ("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f7"
     "0df6086551151f58b8afe6c195782c6b", "ACT1_BAD_TAG"),
])
def test_responder_act1_failures(act1_hex: str, code: str) -> None:
    r = vector_responder()
    with pytest.raises(HandshakeError) as exc:
        r.process_act_one(H(act1_hex))
    assert exc.value.code == code
    with pytest.raises(NoiseError):
        r.process_act_three(ACT3)


@pytest.mark.parametrize("act3_hex,code", [
    # transport-responder act3 bad version test
    ("01b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa0"
     "2e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba", "ACT3_BAD_VERSION"),
    # transport-responder act3 short read test
    ("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa0"
     "2e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139", "ACT3_READ_FAILED"),
    # transport-responder act3 bad MAC for ciphertext test
    ("00c9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa0"
     "2e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba", "ACT3_BAD_CIPHERTEXT"),
    # transport-responder act3 bad rs test (decrypts to 0x044f35...)
    ("00bfe3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa2235536ad09"
     "a8ee351870c2bb7f78b754a26c6cef79a98d25139c856d7efd252c2ae73c", "ACT3_BAD_PUBKEY"),
    # transport-responder act3 bad MAC test
    ("00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa0"
     "2e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139bb", "ACT3_BAD_TAG"),
])
def test_responder_act3_failures(act3_hex: str, code: str) -> None:
    r = vector_responder()
    # Every act3 vector first replays the successful act1/act2 exchange.
    assert r.process_act_one(ACT1) == ACT2
    with pytest.raises(HandshakeError) as exc:
        r.process_act_three(H(act3_hex))
    assert exc.value.code == code
    assert not r.complete
    with pytest.raises(NoiseError):
        r.transport


def test_static_ecdh_goes_through_callback() -> None:
    """The node key is only ever used via the callback (hsmd's ecdh)."""
    calls: List[bytes] = []
    resp_ecdh, init_ecdh = ecdh_from_privkey(RESP_LS_PRIV), ecdh_from_privkey(INIT_LS_PRIV)

    def hsm_resp(point: bytes) -> bytes:
        calls.append(point)
        return resp_ecdh(point)

    def hsm_init(point: bytes) -> bytes:
        calls.append(point)
        return init_ecdh(point)

    i = Initiator(INIT_LS_PUB, hsm_init, RESP_LS_PUB, ephemeral_privkey=INIT_E_PRIV)
    r = Responder(RESP_LS_PUB, hsm_resp, ephemeral_privkey=RESP_E_PRIV)
    assert r.process_act_one(i.act_one()) == ACT2
    i.process_act_two(ACT2)
    assert r.process_act_three(i.act_three()).rk == SK
    # Responder: ECDH(s, re_initiator); initiator: ECDH(s, re_responder).
    assert calls == [INIT_E_PUB, RESP_E_PUB]


def test_precomputed_static_secret() -> None:
    r = Responder(RESP_LS_PUB, lambda p: pytest.fail("callback must not be used"),
                  ephemeral_privkey=RESP_E_PRIV)
    re = Responder.act_one_ephemeral(ACT1)
    assert re == INIT_E_PUB
    assert r.process_act_one(ACT1, static_secret=ecdh_from_privkey(RESP_LS_PRIV)(re)) == ACT2
    with pytest.raises(HandshakeError) as exc:
        Responder.act_one_ephemeral(b"\x01" + ACT1[1:])
    assert exc.value.code == "ACT1_BAD_VERSION"


def test_random_ephemeral_keys_differ() -> None:
    a = Initiator.from_privkey(INIT_LS_PRIV, RESP_LS_PUB)
    b = Initiator.from_privkey(INIT_LS_PRIV, RESP_LS_PUB)
    assert a.ephemeral_pubkey != b.ephemeral_pubkey


# --- Message encryption vectors ----------------------------------------------------

def test_message_encryption_vectors() -> None:
    init, resp = handshaken_pair()
    for n in range(1002):
        frame = init.encrypt_message(b"hello")
        if n in MESSAGE_VECTORS:
            assert frame.hex() == MESSAGE_VECTORS[n], n
        # The responder's receive side must follow the same rotations.
        assert resp.decrypt_length(frame[:18]) == 5
        assert resp.decrypt_body(frame[18:]) == b"hello"
        if n == 499:  # 1000 uses of the key -> first rotation
            assert init.send.chaining_key == H(
                "cc2c6e467efc8067720c2d09c139d1f77731893aad1defa14f9bf3c48d3f1d31")
            assert init.sk == H(
                "3fbdc101abd1132ca3a0ae34a669d8d9ba69a587e0bb4ddd59524541cf4813d8")
            assert resp.rk == init.sk
        if n == 999:
            assert init.send.chaining_key == H(
                "728366ed68565dc17cf6dd97330a859a6a56e87e2beef3bd828a4c4a54d8df06")
            assert init.sk == H(
                "9e0477f9850dca41e42db0e4d154e3a098e5a000d995e421849fcd5df27882bd")
    # Each key rotates independently: the other direction is untouched.
    assert init.rk == RK and resp.sk == RK


def test_message_size_limits_and_tampering() -> None:
    init, resp = handshaken_pair()
    big = bytes(range(256)) * 255 + bytes(range(255))
    assert len(big) == MAX_MESSAGE_SIZE
    frame = init.encrypt_message(big)
    assert len(frame) == 2 + 16 + MAX_MESSAGE_SIZE + 16
    assert resp.decrypt_message(frame) == big
    with pytest.raises(ValueError):
        init.encrypt_message(b"\x00" * (MAX_MESSAGE_SIZE + 1))
    assert resp.decrypt_message(init.encrypt_message(b"")) == b""
    # Flipped bit in the body MAC / header.
    frame = bytearray(init.encrypt_message(b"hello"))
    frame[-1] ^= 1
    assert resp.decrypt_length(bytes(frame[:18])) == 5
    with pytest.raises(DecryptError):
        resp.decrypt_body(bytes(frame[18:]))
    _, resp2 = handshaken_pair()
    with pytest.raises(DecryptError):
        resp2.decrypt_length(b"\x00" * 18)
    with pytest.raises(NoiseError):
        resp2.decrypt_body(b"\x00" * 21)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30))
def test_roundtrip_both_directions(messages: List[bytes]) -> None:
    init, resp = handshaken_pair()
    for m in messages:
        assert resp.decrypt_message(init.encrypt_message(m)) == m
        assert init.decrypt_message(resp.encrypt_message(m[::-1])) == m[::-1]


# --- asyncio helpers over real TCP ---------------------------------------------------

async def _serve_once(handler: Any) -> "tuple[asyncio.AbstractServer, int]":
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_async_handshake_and_messages_with_async_ecdh() -> None:
    async def hsm_ecdh(point: bytes) -> bytes:  # e.g. a request to hsmd
        await asyncio.sleep(0)
        return ecdh_from_privkey(RESP_LS_PRIV)(point)

    async def main() -> None:
        done: "asyncio.Future[NoiseConnection]" = asyncio.get_running_loop().create_future()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = await handshake_responder(reader, writer, RESP_LS_PUB, hsm_ecdh, timeout=5)
            done.set_result(conn)
            while True:
                try:
                    msg = await conn.read_message(timeout=5)
                except ConnectionClosed:
                    break
                await conn.write_message(msg[::-1])
            await conn.aclose()

        server, port = await _serve_once(handler)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            conn = await handshake_initiator(reader, writer, INIT_LS_PUB,
                                             ecdh_from_privkey(INIT_LS_PRIV), RESP_LS_PUB,
                                             timeout=5)
            assert conn.remote_pubkey == RESP_LS_PUB
            assert (await asyncio.wait_for(done, 5)).remote_pubkey == INIT_LS_PUB
            for n in range(1100):  # crosses two rotations each way
                msg = n.to_bytes(2, "big") * (n % 50)
                await conn.write_message(msg)
                assert await conn.read_message(timeout=5) == msg[::-1]
            await conn.write_message(b"\xff" * MAX_MESSAGE_SIZE)
            assert await conn.read_message(timeout=5) == b"\xff" * MAX_MESSAGE_SIZE
            # Timeout then retry: nothing consumed, stream still in sync.
            with pytest.raises(TimeoutError):
                await conn.read_message(timeout=0.05)
            await conn.write_message(b"again")
            assert await conn.read_message(timeout=5) == b"niaga"
            await conn.aclose()

    asyncio.run(main())


def test_async_handshake_timeout_and_wrong_key() -> None:
    async def main() -> None:
        # A peer that accepts and never answers: initiator must time out.
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1000)

        server, port = await _serve_once(silent)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(HandshakeError) as exc:
                await handshake_initiator(reader, writer, INIT_LS_PUB,
                                          ecdh_from_privkey(INIT_LS_PRIV), RESP_LS_PUB,
                                          timeout=0.2)
            assert exc.value.code == "TIMEOUT"
            assert writer.is_closing()

        # Initiator dialling the wrong node id: responder sees ACT1_BAD_TAG,
        # closes, and the initiator gets a short read on act two.
        errors: List[HandshakeError] = []

        async def responder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handshake_responder(reader, writer, RESP_LS_PUB,
                                          ecdh_from_privkey(RESP_LS_PRIV), timeout=5)
            except HandshakeError as e:
                errors.append(e)

        server, port = await _serve_once(responder)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(HandshakeError) as exc:
                await handshake_initiator(reader, writer, INIT_LS_PUB,
                                          ecdh_from_privkey(INIT_LS_PRIV), INIT_LS_PUB,
                                          timeout=5)
            assert exc.value.code in ("ACT2_READ_FAILED", "IO_ERROR")
            for _ in range(100):
                if errors:
                    break
                await asyncio.sleep(0.01)
            assert [e.code for e in errors] == ["ACT1_BAD_TAG"]

    asyncio.run(main())


# --- Interop with pyln-proto -------------------------------------------------------

@pytest.fixture
def socket_timeout():
    """pyln-proto uses blocking sockets; make every new one time out instead of hang.

    asyncio sockets are explicitly non-blocking, so they are unaffected.
    """
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    yield
    socket.setdefaulttimeout(old)


def _nodelay(lconn: Any) -> None:
    # pyln sends header and body with two send() calls; with Nagle + delayed
    # ACK each lock-step round trip would stall ~40ms.  (asyncio streams set
    # TCP_NODELAY themselves, and we write each frame in one go anyway.)
    lconn.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _pyln_payloads() -> List[bytes]:
    # >1000 messages so both sides cross two key rotations in each direction,
    # with varied sizes, including empty messages.
    return [bytes([n % 256]) * (n % 700) for n in range(1100)]


def test_pyln_initiator_our_responder(socket_timeout: None) -> None:
    from pyln.proto.wire import PrivateKey, connect

    pyln_priv = H("31" * 32)
    result: Dict[str, Any] = {}

    def pyln_client(port: int) -> None:
        lconn = connect(PrivateKey(pyln_priv), RESP_LS_PUB, "127.0.0.1", port)
        _nodelay(lconn)
        try:
            for m in _pyln_payloads():
                lconn.send_message(m)
                assert lconn.read_message() == b"echo:" + m
            lconn.send_message(b"big")
            result["big"] = lconn.read_message()
        finally:
            lconn.connection.close()

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = await handshake_responder(reader, writer, RESP_LS_PUB,
                                             ecdh_from_privkey(RESP_LS_PRIV), timeout=10)
            result["remote"] = conn.remote_pubkey
            count = 0
            try:
                while True:
                    msg = await conn.read_message(timeout=10)
                    count += 1
                    if msg == b"big":  # one maximal frame towards pyln
                        await conn.write_message(b"\xab" * MAX_MESSAGE_SIZE)
                    else:
                        await conn.write_message(b"echo:" + msg)
            except ConnectionClosed:
                result["count"] = count
            await conn.aclose()

        server, port = await _serve_once(handler)
        async with server:
            await asyncio.wait_for(asyncio.to_thread(pyln_client, port), 60)
            for _ in range(500):
                if "count" in result:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(main())
    assert result["remote"] == pubkey_from_privkey(pyln_priv)
    assert result["count"] == 1101
    assert result["big"] == b"\xab" * MAX_MESSAGE_SIZE


def test_our_initiator_pyln_responder(socket_timeout: None) -> None:
    from pyln.proto.wire import LightningServerSocket, PrivateKey

    pyln_priv = H("41" * 32)
    pyln_pub = pubkey_from_privkey(pyln_priv)
    server = LightningServerSocket(PrivateKey(pyln_priv))
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    result: Dict[str, Any] = {}

    def pyln_server() -> None:
        try:
            lconn, _ = server.accept()  # runs pyln's responder handshake
            _nodelay(lconn)
            result["remote"] = lconn.remote_pubkey.serializeCompressed()
            count = 0
            while True:
                m = lconn.read_message()
                if m == b"quit":
                    break
                count += 1
                # pyln's send_message ignores partial socket.send() results,
                # so keep its replies small: a digest stands in for big echoes.
                lconn.send_message(m[::-1] if len(m) <= 4096 else sha256(m).digest())
            result["count"] = count
            lconn.connection.close()
        except BaseException as e:  # surfaced to the main thread below
            result["error"] = e

    thread = threading.Thread(target=pyln_server, daemon=True)
    thread.start()

    async def main() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = await handshake_initiator(reader, writer, INIT_LS_PUB,
                                         ecdh_from_privkey(INIT_LS_PRIV), pyln_pub, timeout=10)
        assert conn.remote_pubkey == pyln_pub
        for m in _pyln_payloads():
            await conn.write_message(m)
            assert await conn.read_message(timeout=10) == m[::-1]
        # pyln's read_message loops over recv(), so a maximal frame works.
        big = bytes(range(256)) * 255 + bytes(range(255))
        await conn.write_message(big)
        assert await conn.read_message(timeout=10) == sha256(big).digest()
        await conn.write_message(b"quit")
        await conn.aclose()

    try:
        asyncio.run(main())
        thread.join(15)
        assert not thread.is_alive()
        assert "error" not in result, result.get("error")
        assert result["remote"] == INIT_LS_PUB
        assert result["count"] == 1101
    finally:
        server.close()
