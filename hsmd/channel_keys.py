"""Per-channel keys inside hsmd, and the rules that keep a buggy or
compromised channel daemon from getting us punished.

Keys: a channel seed = HKDF(peer seed, salt = peer id || dbid, "per-peer
seed"), then funding, revocation, payment, delayed payment and HTLC
basepoint secrets and the shachain seed = HKDF(channel seed, "c-lightning",
6 x 32 bytes).  `--dev-force-channel-secrets` replaces them
(funding/revocation/payment/delayed_payment/htlc/shaseed, hex, '/' separated).

Rules (per channel, for the life of hsmd; channeld re-validates its latest
commitment when it starts):
- our per-commitment secret n is released only after the peer's signature
  on our commitment n+1 was validated, so we always hold a valid commitment;
- once n is revoked we never sign our commitment n (or its HTLC txs)."""
from __future__ import annotations

import struct

from bitcoin.keys import (
    der_to_compact,
    pubkey_of,
    sign_digest_der,
    verify_digest_compact,
)
from bitcoin.script import p2wsh_script
from bitcoin.tx import SIGHASH_ALL, SIGHASH_ANYONECANPAY, SIGHASH_SINGLE, Tx
from common.keyderive import derive_privkey, derive_revocation_privkey
from common.scripts import anchor_script
from common.shachain import per_commitment_point, per_commitment_secret

from .libhsmd import hkdf_sha256

KIND_DELAYED, KIND_LOCAL_HTLC, KIND_REMOTE_HTLC, KIND_PENALTY, KIND_TO_REMOTE = range(5)


class ChannelSignError(Exception):
    pass


class ChannelKeys:
    def __init__(self, peer_seed: bytes, peer_id: bytes, dbid: int, dev_secrets: bytes | None = None) -> None:
        if dev_secrets:
            parts = [bytes.fromhex(p) for p in dev_secrets.decode().split("/")]
            if len(parts) != 6 or any(len(p) != 32 for p in parts):
                raise ValueError("dev-force-channel-secrets needs 6 x 32-byte hex values separated by '/'")
        else:
            seed = hkdf_sha256(peer_seed, peer_id + struct.pack("<Q", dbid), b"per-peer seed")
            blob = hkdf_sha256(seed, b"", b"c-lightning", 32 * 6)
            parts = [blob[i * 32:(i + 1) * 32] for i in range(6)]
        (self.funding, self.revocation, self.payment, self.delayed, self.htlc, self.shaseed) = parts
        self.funding_pubkey = pubkey_of(self.funding)
        self.validated = -1
        self.revoked_through = -1

    def basepoints(self) -> dict:
        return {"funding_pubkey": self.funding_pubkey, "revocation_basepoint": pubkey_of(self.revocation),
                "payment_basepoint": pubkey_of(self.payment), "delayed_payment_basepoint": pubkey_of(self.delayed),
                "htlc_basepoint": pubkey_of(self.htlc)}

    def point(self, n: int) -> bytes:
        return per_commitment_point(self.shaseed, n)

    def _check_funding_script(self, script: bytes) -> bytes:
        keys = [script[2:35], script[36:69]] if len(script) == 71 else []
        if self.funding_pubkey not in keys:
            raise ChannelSignError("funding script does not contain our funding key")
        theirs = [k for k in keys if k != self.funding_pubkey]
        return theirs[0] if theirs else self.funding_pubkey

    def validate(self, n: int, tx: bytes, funding_script: bytes, funding_sat: int, sig: bytes) -> None:
        if n <= self.revoked_through:
            raise ChannelSignError(f"commitment {n} is already revoked")
        theirs = self._check_funding_script(funding_script)
        digest = Tx.parse(tx).sighash_segwit_v0(0, funding_script, funding_sat, SIGHASH_ALL)
        if not verify_digest_compact(theirs, sig, digest):
            raise ChannelSignError(f"invalid counterparty signature on commitment {n}")
        self.validated = max(self.validated, n)

    def revoke(self, n: int) -> bytes:
        if n + 1 > self.validated:
            raise ChannelSignError(f"refusing to revoke commitment {n}: no validated commitment {n + 1}")
        self.revoked_through = max(self.revoked_through, n)
        return per_commitment_secret(self.shaseed, n)

    def _funding_sig(self, tx: bytes, funding_script: bytes, funding_sat: int) -> bytes:
        self._check_funding_script(funding_script)
        digest = Tx.parse(tx).sighash_segwit_v0(0, funding_script, funding_sat, SIGHASH_ALL)
        return der_to_compact(sign_digest_der(self.funding, digest))

    def sign_remote_commitment(self, tx: bytes, funding_script: bytes, funding_sat: int) -> bytes:
        return self._funding_sig(tx, funding_script, funding_sat)

    def sign_mutual_close(self, tx: bytes, funding_script: bytes, funding_sat: int) -> bytes:
        return self._funding_sig(tx, funding_script, funding_sat)

    def sign_local_commitment(self, n: int, tx: bytes, funding_script: bytes, funding_sat: int) -> bytes:
        if n <= self.revoked_through:
            raise ChannelSignError(f"refusing to sign revoked commitment {n}")
        return self._funding_sig(tx, funding_script, funding_sat)

    def sign_remote_htlc(self, tx: bytes, witness_script: bytes, amount_sat: int, remote_point: bytes,
                         anchors: bool) -> bytes:
        priv = derive_privkey(self.htlc, remote_point)
        sighash = SIGHASH_SINGLE | SIGHASH_ANYONECANPAY if anchors else SIGHASH_ALL
        digest = Tx.parse(tx).sighash_segwit_v0(0, witness_script, amount_sat, sighash)
        return der_to_compact(sign_digest_der(priv, digest))

    def sign_local_htlc(self, n: int, tx: bytes, witness_script: bytes, amount_sat: int) -> bytes:
        if n <= self.revoked_through:
            raise ChannelSignError(f"refusing to sign an HTLC tx of revoked commitment {n}")
        priv = derive_privkey(self.htlc, self.point(n))
        digest = Tx.parse(tx).sighash_segwit_v0(0, witness_script, amount_sat, SIGHASH_ALL)
        return der_to_compact(sign_digest_der(priv, digest))

    def sign_anchor(self, tx: Tx, amount_sat: int) -> None:
        """Input 0 of ``tx`` spends our anchor output (BOLT 3: witness
        ``<local_funding_sig>``); the amount is the input's, for BIP143."""
        ws = anchor_script(self.funding_pubkey)
        digest = tx.sighash_segwit_v0(0, ws, amount_sat, SIGHASH_ALL)
        tx.inputs[0].witness = [sign_digest_der(self.funding, digest) + bytes([SIGHASH_ALL]), ws]

    def anchor_scriptpubkey(self) -> bytes:
        return p2wsh_script(anchor_script(self.funding_pubkey))

    def sign_onchain(self, kind: int, tx: bytes, index: int, witness_script: bytes, amount_sat: int,
                     point: bytes, secret: bytes) -> bytes:
        """onchaind's sweeps: DER, SIGHASH_ALL."""
        if kind == KIND_DELAYED:
            priv = derive_privkey(self.delayed, point)
        elif kind == KIND_LOCAL_HTLC:
            priv = derive_privkey(self.htlc, point)
        elif kind == KIND_REMOTE_HTLC:
            priv = derive_privkey(self.htlc, point)
        elif kind == KIND_PENALTY:
            priv = derive_revocation_privkey(self.revocation, secret)
        elif kind == KIND_TO_REMOTE:
            priv = self.payment
        else:
            raise ChannelSignError(f"unknown onchain signing kind {kind}")
        digest = Tx.parse(tx).sighash_segwit_v0(index, witness_script, amount_sat, SIGHASH_ALL)
        return sign_digest_der(priv, digest)
