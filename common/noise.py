"""BOLT 8 transport: the Noise_XK handshake and the encrypted message framing.

This module is deliberately free of I/O (a "sans-IO" state machine): callers
feed it the bytes they read and write out the bytes it returns.  The
asyncio glue lives in :mod:`common.noise_async`.

The only secret operation involving the node's *static* key is one ECDH per
handshake.  It is performed through a callback (``ecdh_static``) so that the
node private key can live in another process (hsmd) and connectd only ever
asks it for ``ecdh(point)``.  Ephemeral keys are generated locally (they are
per-session and must never leave this process anyway), but can be injected so
the spec test vectors are reproducible.

Primitives come from audited libraries: secp256k1 ECDH from ``coincurve``
(whose default ``ecdh()`` hashes the compressed shared point with SHA256,
exactly BOLT 8's ``ECDH``), ChaCha20-Poly1305 (RFC 8439) and HKDF (RFC 5869)
from ``cryptography``.  Only the Noise protocol glue is written here.
"""
from __future__ import annotations

import hashlib
import os
import struct
from typing import Callable, Optional, Tuple

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "NoiseError", "HandshakeError", "DecryptError",
    "ACT_ONE_SIZE", "ACT_TWO_SIZE", "ACT_THREE_SIZE",
    "MESSAGE_HEADER_SIZE", "MAC_SIZE", "MAX_MESSAGE_SIZE", "KEY_ROTATION_INTERVAL",
    "EcdhFn", "ecdh_from_privkey", "pubkey_from_privkey",
    "CipherState", "Transport", "Initiator", "Responder",
]

PROTOCOL_NAME = b"Noise_XK_secp256k1_ChaChaPoly_SHA256"
PROLOGUE = b"lightning"
HANDSHAKE_VERSION = 0

ACT_ONE_SIZE = 50      # version(1) + e.pub(33) + MAC(16)
ACT_TWO_SIZE = 50      # version(1) + e.pub(33) + MAC(16)
ACT_THREE_SIZE = 66    # version(1) + enc(s.pub)(33) + MAC(16) + MAC(16)
MAC_SIZE = 16
MESSAGE_HEADER_SIZE = 2 + MAC_SIZE   # encrypted big-endian u16 length + MAC
MAX_MESSAGE_SIZE = 65535
KEY_ROTATION_INTERVAL = 1000         # nonce value at which a key is rotated

#: ECDH with the node's static key: compressed remote point -> 32-byte secret.
EcdhFn = Callable[[bytes], bytes]


class NoiseError(Exception):
    """Base class for every BOLT 8 failure."""


class HandshakeError(NoiseError):
    """The handshake failed; the connection MUST be dropped without a reply.

    ``code`` mirrors the spec's test-vector error names (``ACT1_BAD_VERSION``,
    ``ACT3_BAD_TAG``, ...) so failures can be matched precisely, and also
    covers transport-level problems (``ACT2_READ_FAILED``, ``TIMEOUT``, ...).
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class DecryptError(NoiseError):
    """A post-handshake frame failed authentication (or was malformed).

    After this the receive nonce is unusable: the connection MUST be dropped.
    """


# --------------------------------------------------------------------------
# Primitive wrappers (library calls only)
# --------------------------------------------------------------------------

def _nonce(n: int) -> bytes:
    # Noise convention, not Lightning's usual big-endian: 4 zero bytes then a
    # 64-bit little-endian counter.
    return b"\x00\x00\x00\x00" + struct.pack("<Q", n)


def _hkdf(salt: bytes, ikm: bytes) -> Tuple[bytes, bytes]:
    """BOLT 8 ``HKDF(salt, ikm)``: RFC 5869, empty info, split 64 bytes in two."""
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=b"").derive(ikm)
    return okm[:32], okm[32:]


def _sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _encrypt(key: bytes, n: int, ad: bytes, plaintext: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_nonce(n), plaintext, ad)


def _decrypt(key: bytes, n: int, ad: bytes, ciphertext: bytes) -> Optional[bytes]:
    """Returns None on MAC failure so callers can raise their own typed error."""
    try:
        return ChaCha20Poly1305(key).decrypt(_nonce(n), ciphertext, ad)
    except InvalidTag:
        return None


def _check_pubkey(data: bytes) -> bytes:
    """Validates a 33-byte compressed secp256k1 point; returns it unchanged.

    The prefix check matters: the spec's "bad key" vectors use 0x04 and we
    must not let any library leniency (e.g. hybrid encodings) through.
    """
    if len(data) != 33 or data[0] not in (2, 3):
        raise ValueError("not a compressed public key")
    coincurve.PublicKey(data)  # raises ValueError if not on the curve
    return data


def pubkey_from_privkey(privkey: bytes) -> bytes:
    """Compressed (33-byte) public key of a raw 32-byte secp256k1 secret."""
    return coincurve.PrivateKey(privkey).public_key.format(compressed=True)


def ecdh_from_privkey(privkey: bytes) -> EcdhFn:
    """Builds a BOLT 8 ECDH callback from a raw private key (tests, no-hsmd use).

    coincurve's default ecdh hash is SHA256(compressed shared point), which is
    precisely BOLT 8's ``ECDH(k, rk)``.
    """
    key = coincurve.PrivateKey(privkey)
    return lambda point: key.ecdh(point)


# --------------------------------------------------------------------------
# Post-handshake transport
# --------------------------------------------------------------------------

class CipherState:
    """One direction of the transport: a key, its nonce and chaining key.

    Each direction rotates independently: after the 1000th encryption (or
    decryption) with a key, i.e. every 500 messages since each message uses
    the key twice (length then body), ``ck', k' = HKDF(ck, k)`` and the nonce
    restarts at 0.
    """

    def __init__(self, key: bytes, chaining_key: bytes) -> None:
        self.key = key
        self.chaining_key = chaining_key
        self.nonce = 0
        self._aead = ChaCha20Poly1305(key)  # cached: a message uses the key twice

    def _advance(self) -> None:
        self.nonce += 1
        if self.nonce == KEY_ROTATION_INTERVAL:
            self.chaining_key, self.key = _hkdf(self.chaining_key, self.key)
            self.nonce = 0
            self._aead = ChaCha20Poly1305(self.key)

    def encrypt(self, plaintext: bytes) -> bytes:
        """encryptWithAD(k, n, '', plaintext), then bump (and maybe rotate)."""
        ct = self._aead.encrypt(_nonce(self.nonce), plaintext, b"")
        self._advance()
        return ct

    def decrypt(self, ciphertext: bytes) -> bytes:
        """decryptWithAD(k, n, '', ciphertext); raises DecryptError on bad MAC."""
        try:
            pt = self._aead.decrypt(_nonce(self.nonce), ciphertext, b"")
        except InvalidTag:
            raise DecryptError("bad MAC") from None
        self._advance()
        return pt


class Transport:
    """The result of a successful handshake: both cipher directions.

    Receiving is split in two calls because the body length is only known
    after decrypting the 18-byte header; the caller reads exactly that many
    bytes (+16 MAC) and hands them to :meth:`decrypt_body`.
    """

    def __init__(self, send_key: bytes, recv_key: bytes, chaining_key: bytes,
                 remote_pubkey: bytes, handshake_hash: bytes = b"") -> None:
        # Both directions start from the same final ck (spec: rck = sck = ck).
        self.send = CipherState(send_key, chaining_key)
        self.recv = CipherState(recv_key, chaining_key)
        self.remote_pubkey = remote_pubkey
        self.handshake_hash = handshake_hash
        # Body length announced by the last header, awaiting decrypt_body().
        self.pending_body_length: Optional[int] = None

    @property
    def sk(self) -> bytes:
        """Current sending key (exposed for the spec vectors)."""
        return self.send.key

    @property
    def rk(self) -> bytes:
        """Current receiving key (exposed for the spec vectors)."""
        return self.recv.key

    def encrypt_message(self, plaintext: bytes) -> bytes:
        """Frames one Lightning message: ``enc(len) || MAC || enc(msg) || MAC``."""
        if len(plaintext) > MAX_MESSAGE_SIZE:
            raise ValueError(f"message too long: {len(plaintext)} > {MAX_MESSAGE_SIZE}")
        header = self.send.encrypt(struct.pack(">H", len(plaintext)))
        return header + self.send.encrypt(plaintext)

    def decrypt_length(self, header: bytes) -> int:
        """Decrypts the 18-byte header; returns the body length (without MAC).

        The caller must then read exactly ``length + 16`` bytes.
        """
        if self.pending_body_length is not None:
            raise NoiseError("decrypt_length called twice without decrypt_body")
        if len(header) != MESSAGE_HEADER_SIZE:
            raise DecryptError(f"header must be {MESSAGE_HEADER_SIZE} bytes, got {len(header)}")
        (length,) = struct.unpack(">H", self.recv.decrypt(header))
        self.pending_body_length = length
        return length

    def decrypt_body(self, body: bytes) -> bytes:
        """Decrypts ``length + 16`` bytes following a header; returns the message."""
        if self.pending_body_length is None:
            raise NoiseError("decrypt_body called before decrypt_length")
        if len(body) != self.pending_body_length + MAC_SIZE:
            raise DecryptError(
                f"body must be {self.pending_body_length + MAC_SIZE} bytes, got {len(body)}")
        plaintext = self.recv.decrypt(body)
        self.pending_body_length = None
        return plaintext

    def decrypt_message(self, frame: bytes) -> bytes:
        """Convenience: decrypts one complete frame (header + body)."""
        length = self.decrypt_length(frame[:MESSAGE_HEADER_SIZE])
        return self.decrypt_body(frame[MESSAGE_HEADER_SIZE:MESSAGE_HEADER_SIZE + length + MAC_SIZE])


# --------------------------------------------------------------------------
# Handshake
# --------------------------------------------------------------------------

class _Handshake:
    """State shared by both roles: ck, h, our keys and the protocol steps."""

    def __init__(self, local_static_pubkey: bytes, ecdh_static: EcdhFn,
                 responder_static_pubkey: bytes,
                 ephemeral_privkey: Optional[bytes]) -> None:
        self.local_static_pubkey = _check_pubkey(bytes(local_static_pubkey))
        self._ecdh_static = ecdh_static
        # Fresh randomness per session unless a test injects the key.
        self._e = coincurve.PrivateKey(ephemeral_privkey if ephemeral_privkey is not None
                                       else os.urandom(32))
        self.ephemeral_pubkey = self._e.public_key.format(compressed=True)
        # Handshake state initialisation (identical on both sides): the
        # responder's static key is the Noise_XK pre-message.
        h = _sha256(PROTOCOL_NAME)
        self.ck = h
        self.h = _sha256(_sha256(h, PROLOGUE), responder_static_pubkey)
        self._temp_k2: Optional[bytes] = None
        self._transport: Optional[Transport] = None

    def _mix_hash(self, data: bytes) -> None:
        self.h = _sha256(self.h, data)

    def _mix_key(self, secret: bytes) -> bytes:
        """ck, temp_k = HKDF(ck, secret); returns temp_k."""
        self.ck, temp_k = _hkdf(self.ck, secret)
        return temp_k

    def _ecdh_ephemeral(self, point: bytes) -> bytes:
        return self._e.ecdh(point)

    def _static_secret(self, point: bytes, precomputed: Optional[bytes]) -> bytes:
        # Lets an async caller await hsmd itself and pass the result in,
        # while sync callers just rely on the callback.
        secret = precomputed if precomputed is not None else self._ecdh_static(point)
        if len(secret) != 32:
            raise HandshakeError("ECDH_FAILED", "static ECDH must return 32 bytes")
        return secret

    def _write_e_act(self, secret_fn: Callable[[], bytes]) -> Tuple[bytes, bytes]:
        """Acts one and two (sender): ``0 || e.pub || encryptWithAD(temp_k, 0, h, '')``.

        Returns (act bytes, temp_k); the responder keeps temp_k2 for act three.
        """
        self._mix_hash(self.ephemeral_pubkey)
        temp_k = self._mix_key(secret_fn())
        c = _encrypt(temp_k, 0, self.h, b"")
        self._mix_hash(c)
        return bytes([HANDSHAKE_VERSION]) + self.ephemeral_pubkey + c, temp_k

    @staticmethod
    def _parse_e_act(act: bytes, name: str, size: int) -> Tuple[bytes, bytes]:
        """Acts one and two (receiver): length, version and point checks."""
        if len(act) != size:
            raise HandshakeError(f"{name}_READ_FAILED", f"expected {size} bytes, got {len(act)}")
        if act[0] != HANDSHAKE_VERSION:
            raise HandshakeError(f"{name}_BAD_VERSION", f"version {act[0]}")
        try:
            re = _check_pubkey(act[1:34])
        except ValueError:
            raise HandshakeError(f"{name}_BAD_PUBKEY", act[1:34].hex()) from None
        return re, act[34:]

    def _read_e_act(self, re: bytes, c: bytes, secret: bytes, name: str) -> bytes:
        self._mix_hash(re)
        temp_k = self._mix_key(secret)
        if _decrypt(temp_k, 0, self.h, c) is None:
            raise HandshakeError(f"{name}_BAD_TAG")
        self._mix_hash(c)
        return temp_k

    def _split(self) -> Tuple[bytes, bytes]:
        """Final ``HKDF(ck, zero)``: (initiator->responder key, responder->initiator key)."""
        return _hkdf(self.ck, b"")

    @property
    def complete(self) -> bool:
        return self._transport is not None

    @property
    def transport(self) -> Transport:
        """The negotiated :class:`Transport`; only valid once the handshake is done."""
        if self._transport is None:
            raise NoiseError("handshake not complete")
        return self._transport


class Initiator(_Handshake):
    """Noise_XK initiator: ``act_one()`` -> ``process_act_two(act2)`` -> ``act_three()``.

    The initiator must know the responder's node id (``remote_static_pubkey``).
    """

    def __init__(self, local_static_pubkey: bytes, ecdh_static: EcdhFn,
                 remote_static_pubkey: bytes,
                 ephemeral_privkey: Optional[bytes] = None) -> None:
        self.remote_static_pubkey = _check_pubkey(bytes(remote_static_pubkey))
        super().__init__(local_static_pubkey, ecdh_static, self.remote_static_pubkey,
                         ephemeral_privkey)
        self.remote_ephemeral_pubkey: Optional[bytes] = None
        self._state = "act1"

    @classmethod
    def from_privkey(cls, local_privkey: bytes, remote_static_pubkey: bytes,
                     ephemeral_privkey: Optional[bytes] = None) -> "Initiator":
        """Convenience constructor holding the static private key in-process."""
        return cls(pubkey_from_privkey(local_privkey), ecdh_from_privkey(local_privkey),
                   remote_static_pubkey, ephemeral_privkey)

    def _expect(self, state: str) -> None:
        if self._state != state:
            raise NoiseError(f"initiator: expected state {state}, in {self._state}")

    def act_one(self) -> bytes:
        """Returns the 50-byte act one (``-> e, es``)."""
        self._expect("act1")
        act, _ = self._write_e_act(lambda: self._ecdh_ephemeral(self.remote_static_pubkey))
        self._state = "act2"
        return act

    def process_act_two(self, act: bytes) -> None:
        """Consumes the 50-byte act two (``<- e, ee``); raises HandshakeError."""
        self._expect("act2")
        self._state = "failed"  # any exception below leaves us unusable
        re, c = self._parse_e_act(act, "ACT2", ACT_TWO_SIZE)
        self._temp_k2 = self._read_e_act(re, c, self._ecdh_ephemeral(re), "ACT2")
        self.remote_ephemeral_pubkey = re
        self._state = "act3"

    def act_three(self, static_secret: Optional[bytes] = None) -> bytes:
        """Returns the 66-byte act three (``-> s, se``) and completes the handshake.

        ``static_secret`` optionally supplies ``ECDH(s.priv, re)`` precomputed
        (for callers whose ECDH is asynchronous); ``re`` is
        :attr:`remote_ephemeral_pubkey`.
        """
        self._expect("act3")
        assert self._temp_k2 is not None and self.remote_ephemeral_pubkey is not None
        self._state = "failed"
        c = _encrypt(self._temp_k2, 1, self.h, self.local_static_pubkey)
        self._mix_hash(c)
        secret = self._static_secret(self.remote_ephemeral_pubkey, static_secret)
        temp_k3 = self._mix_key(secret)
        t = _encrypt(temp_k3, 0, self.h, b"")
        sk, rk = self._split()
        self._transport = Transport(sk, rk, self.ck, self.remote_static_pubkey, self.h)
        self._state = "done"
        return bytes([HANDSHAKE_VERSION]) + c + t


class Responder(_Handshake):
    """Noise_XK responder: ``process_act_one(act1)`` -> act two bytes ->
    ``process_act_three(act3)`` -> :class:`Transport` (``remote_pubkey`` learnt).
    """

    def __init__(self, local_static_pubkey: bytes, ecdh_static: EcdhFn,
                 ephemeral_privkey: Optional[bytes] = None) -> None:
        pub = _check_pubkey(bytes(local_static_pubkey))
        super().__init__(pub, ecdh_static, pub, ephemeral_privkey)
        self.remote_ephemeral_pubkey: Optional[bytes] = None
        self.remote_static_pubkey: Optional[bytes] = None
        self._state = "act1"

    @classmethod
    def from_privkey(cls, local_privkey: bytes,
                     ephemeral_privkey: Optional[bytes] = None) -> "Responder":
        """Convenience constructor holding the static private key in-process."""
        return cls(pubkey_from_privkey(local_privkey), ecdh_from_privkey(local_privkey),
                   ephemeral_privkey)

    def _expect(self, state: str) -> None:
        if self._state != state:
            raise NoiseError(f"responder: expected state {state}, in {self._state}")

    @staticmethod
    def act_one_ephemeral(act: bytes) -> bytes:
        """Validates act one's framing and returns the initiator's ephemeral key.

        An async caller uses this to compute ``ECDH(s.priv, re)`` (e.g. via
        hsmd) before :meth:`process_act_one`, without ever asking hsmd to ECDH
        an unvalidated point.
        """
        return _Handshake._parse_e_act(act, "ACT1", ACT_ONE_SIZE)[0]

    def process_act_one(self, act: bytes, static_secret: Optional[bytes] = None) -> bytes:
        """Consumes act one (``-> e, es``) and returns the 50-byte act two.

        ``static_secret`` optionally supplies ``ECDH(s.priv, re)`` precomputed.
        """
        self._expect("act1")
        self._state = "failed"
        re, c = self._parse_e_act(act, "ACT1", ACT_ONE_SIZE)
        self._read_e_act(re, c, self._static_secret(re, static_secret), "ACT1")
        self.remote_ephemeral_pubkey = re
        # Act two (<- e, ee) follows immediately, there is nothing to wait for.
        act2, self._temp_k2 = self._write_e_act(lambda: self._ecdh_ephemeral(re))
        self._state = "act3"
        return act2

    def process_act_three(self, act: bytes) -> Transport:
        """Consumes the 66-byte act three (``-> s, se``); returns the transport."""
        self._expect("act3")
        assert self._temp_k2 is not None
        self._state = "failed"
        if len(act) != ACT_THREE_SIZE:
            raise HandshakeError("ACT3_READ_FAILED",
                                 f"expected {ACT_THREE_SIZE} bytes, got {len(act)}")
        if act[0] != HANDSHAKE_VERSION:
            raise HandshakeError("ACT3_BAD_VERSION", f"version {act[0]}")
        c, t = act[1:50], act[50:]
        rs = _decrypt(self._temp_k2, 1, self.h, c)
        if rs is None:
            raise HandshakeError("ACT3_BAD_CIPHERTEXT")
        try:
            rs = _check_pubkey(rs)
        except ValueError:
            raise HandshakeError("ACT3_BAD_PUBKEY", rs.hex()) from None
        self._mix_hash(c)
        # se: our *ephemeral* with their static, so no hsmd round-trip here.
        temp_k3 = self._mix_key(self._ecdh_ephemeral(rs))
        if _decrypt(temp_k3, 0, self.h, t) is None:
            raise HandshakeError("ACT3_BAD_TAG")
        rk, sk = self._split()
        self.remote_static_pubkey = rs
        self._transport = Transport(sk, rk, self.ck, rs, self.h)
        self._state = "done"
        return self._transport
