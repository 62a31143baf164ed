"""The signing core of hsmd: key derivation from hsm_secret and the
operations clients ask for.  Pure functions over bytes, no I/O.

Derivations follow Core Lightning's hsmd so that an hsm_secret gives the same
node id in both: HKDF-SHA256 of hsm_secret with a 4-byte little-endian counter
as salt (bumped until the result is a valid key) and the info strings
"nodeid", "bip32 seed" and "peer seed"."""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bitcoin.hashes import hash256

if TYPE_CHECKING:
    from bitcoin.tx import Tx

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _valid_privkey(k: bytes) -> bool:
    n = int.from_bytes(k, "big")
    return 0 < n < CURVE_ORDER


def derive_node_privkey(hsm_secret: bytes) -> bytes:
    salt = 0
    while True:
        k = hkdf_sha256(hsm_secret, struct.pack("<I", salt), b"nodeid")
        if _valid_privkey(k):
            return k
        salt += 1


def derive_bip32_seed(hsm_secret: bytes) -> bytes:
    return hkdf_sha256(hsm_secret, struct.pack("<I", 0), b"bip32 seed")


def derive_peer_seed(hsm_secret: bytes) -> bytes:
    return hkdf_sha256(hsm_secret, struct.pack("<I", 0), b"peer seed")


class HsmKeys:
    """Every key hsmd serves, derived once at start."""

    def __init__(self, hsm_secret: bytes, dev_force_privkey: bytes | None = None,
                 dev_force_bip32_seed: bytes | None = None, dev_force_channel_secrets: bytes | None = None,
                 network: str = "bitcoin") -> None:
        if len(hsm_secret) != 32:
            raise ValueError("hsm_secret must be 32 bytes")
        self.node_privkey = dev_force_privkey or derive_node_privkey(hsm_secret)
        if not _valid_privkey(self.node_privkey):
            raise ValueError("invalid node private key")
        self.bip32_seed = dev_force_bip32_seed or derive_bip32_seed(hsm_secret)
        self.peer_seed = derive_peer_seed(hsm_secret)
        self._derive_base = hkdf_sha256(hsm_secret, b"", b"derived secrets")
        self.dev_channel_secrets = dev_force_channel_secrets
        self._node_key = PrivateKey(self.node_privkey)
        self.node_id = self._node_key.public_key.format(compressed=True)
        # The wallet: BIP32 m/0/0/k from the seed (as Core Lightning); the
        # master gets only the public half of m/0/0.
        from bitcoin.bip32 import ExtendedPrivateKey
        self.wallet_base = ExtendedPrivateKey.from_seed(self.bip32_seed, network).derive("m/0/0")

    def wallet_xpub(self) -> str:
        return self.wallet_base.public().to_string()

    def wallet_secret(self, keyidx: int) -> bytes:
        return self.wallet_base.derive_child(keyidx).private_key.secret

    def sign_withdrawal(self, tx: "Tx", inputs: list[dict]) -> "Tx":
        """Sign every input that is ours: P2WPKH (BIP143) or P2TR key path
        (BIP341/86).  Raises ValueError if an input claims our key but its
        script is not the one that key makes (the master must not trick us
        into signing something else)."""
        from bitcoin.keys import sign_digest_der
        from bitcoin.script import p2pkh_script_code, p2tr_script, p2wpkh_script
        from bitcoin.taproot import sign_taproot_keypath, taproot_output_key
        from bitcoin.tx import SIGHASH_ALL, TxOut
        if len(inputs) != len(tx.inputs):
            raise ValueError("one wallet_input per transaction input is needed")
        spent = [TxOut(i["amount_sat"], i["script"]) for i in inputs]
        for n, info in enumerate(inputs):
            if info["keyidx"] == 0xFFFFFFFF:
                continue
            secret = self.wallet_secret(info["keyidx"])
            pub = PrivateKey(secret).public_key.format(compressed=True)
            if info["is_p2tr"]:
                if info["script"] != p2tr_script(taproot_output_key(pub[1:], None)[0]):
                    raise ValueError(f"input {n}: script is not our p2tr key {info['keyidx']}")
                tx.inputs[n].witness = [sign_taproot_keypath(secret, tx, n, spent)]
            else:
                if info["script"] != p2wpkh_script(pub):
                    raise ValueError(f"input {n}: script is not our p2wpkh key {info['keyidx']}")
                digest = tx.sighash_segwit_v0(n, p2pkh_script_code(pub), info["amount_sat"], SIGHASH_ALL)
                tx.inputs[n].witness = [sign_digest_der(secret, digest) + bytes([SIGHASH_ALL]), pub]
        return tx

    def sign_invoice(self, hrp: str, words: bytes) -> bytes:
        """BOLT 11: 65-byte recoverable signature (64 compact + recovery id)
        over sha256(hrp || data words packed into bytes).  The hash is
        computed here from what the master shows, never taken as given; an
        hrp that is not an invoice's could make this sign for another
        protocol, so it is refused (ValueError), as are non-5-bit words."""
        from common.bolt11 import signing_hash
        if not hrp.startswith("ln") or not hrp.isascii() or hrp.lower() != hrp:
            raise ValueError(f"not a BOLT 11 hrp: {hrp!r}")
        if any(w > 31 for w in words):
            raise ValueError("invoice data words must be 5-bit values")
        return self._node_key.sign_recoverable(signing_hash(hrp, list(words)), hasher=None)

    def derive_secret(self, info: bytes) -> bytes:
        """A secret for ``info`` (Core Lightning's derive_secret / makesecret):
        one-way from hsm_secret, unrelated to every key."""
        return hkdf_sha256(self._derive_base, b"", info)

    def sign_bolt12(self, messagename: str, fieldname: str, tlv: bytes, publictweak: bytes = b"",
                    path_key: bytes = b"") -> tuple[bytes, bytes]:
        """BIP-340 signature of a BOLT 12 stream and the public key it verifies
        with: the node key, the transient payer key of ``publictweak``, or our
        blinded key for ``path_key``.  ValueError for anything else."""
        from common.bolt12 import alias_tweak
        from common.bolt12_merkle import sign
        if (messagename, fieldname) not in (("invoice", "signature"), ("invoice_request", "signature")):
            raise ValueError(f"refusing to sign {messagename}.{fieldname}")
        if publictweak and path_key:
            raise ValueError("either a payer tweak or a path key, not both")
        key = self._node_key
        if publictweak:
            key = key.add(alias_tweak(self.derive_secret(b"node-alias-base"), publictweak))
        elif path_key:
            from common.blindedpath import blinded_privkey
            key = PrivateKey(blinded_privkey(self.node_privkey, self.ecdh(path_key)))
        return sign(key.secret, messagename, fieldname, tlv), key.public_key.format()

    def ecdh(self, point: bytes) -> bytes:
        """BOLT 8 / BOLT 4 ECDH: SHA256 of the compressed shared point.
        Raises ValueError for an invalid point."""
        PublicKey(point)  # validate before use
        return self._node_key.ecdh(point)

    def sign_gossip(self, msg: bytes) -> bytes:
        """Node signature on a channel_update (258) or node_announcement (257):
        over hash256 of everything after the type and signature."""
        from bitcoin.keys import der_to_compact
        t = int.from_bytes(msg[:2], "big")
        if t not in (257, 258) or len(msg) < 66:
            raise ValueError(f"refusing to sign gossip message of type {t}")
        if t == 257 and msg[66 + 2 + int.from_bytes(msg[66:68], "big") + 4:][:33] != self.node_id:
            raise ValueError("node_announcement is not for our node")
        return der_to_compact(self._node_key.sign(hash256(msg[66:]), hasher=None))

    def sign_channel_announcement(self, msg: bytes, funding_priv: bytes, funding_pub: bytes) -> tuple[bytes, bytes]:
        """Node and bitcoin signatures on a channel_announcement (hash of msg[258:])."""
        from bitcoin.keys import der_to_compact, sign_digest_der
        if int.from_bytes(msg[:2], "big") != 256 or len(msg) < 258 + 2:
            raise ValueError("not a channel_announcement")
        body = msg[258:]
        if self.node_id not in body or funding_pub not in body:
            raise ValueError("channel_announcement does not name our node and funding key")
        digest = hash256(body)
        return (der_to_compact(self._node_key.sign(digest, hasher=None)),
                der_to_compact(sign_digest_der(funding_priv, digest)))

    def sign_message(self, message: bytes) -> tuple[bytes, int]:
        """Core Lightning's signmessage: recoverable signature over
        hash256("Lightning Signed Message:" + message)."""
        digest = hash256(b"Lightning Signed Message:" + message)
        rec = self._node_key.sign_recoverable(digest, hasher=None)
        return rec[:64], rec[64]
