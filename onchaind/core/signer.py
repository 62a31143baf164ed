"""Signing for onchaind: a protocol the shell implements by asking hsmd, and
:class:`LocalSigner`, holding the keys itself, for tests.

Every method takes the *unsigned* transaction (serialized, witnesses empty or
ignored), the index of the input to sign, the witness script of the spent
output (the BIP143 scriptCode) and its amount, plus what selects the key;
it returns a DER signature, without sighash byte, over the SIGHASH_ALL
BIP143 digest.  The signer computes the digest itself: it signs what it is
shown, never a bare hash.
"""
from __future__ import annotations

from typing import Protocol

from bitcoin.keys import pubkey_of, sign_digest_der
from bitcoin.tx import SIGHASH_ALL, Tx
from common.keyderive import BasepointSecrets, derive_privkey, derive_revocation_privkey
from common.shachain import per_commitment_point, per_commitment_secret


class Signer(Protocol):
    def sign_delayed_payment_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                                   amount_sat: int, per_commitment_point: bytes) -> bytes:
        """Our delayed payment key for our commitment with ``per_commitment_point``
        (our to_local, the outputs of our HTLC transactions)."""
        ...

    def sign_local_htlc_tx(self, tx: bytes, input_index: int, witness_script: bytes,
                           amount_sat: int, per_commitment_point: bytes) -> bytes:
        """Our HTLC key for our commitment (our half of HTLC-success/timeout)."""
        ...

    def sign_remote_htlc_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                               amount_sat: int, remote_per_commitment_point: bytes) -> bytes:
        """Our HTLC key for *their* commitment (direct HTLC spends)."""
        ...

    def sign_penalty_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                           amount_sat: int, revocation_secret: bytes) -> bytes:
        """The revocation private key, from our revocation basepoint secret and
        their revealed per-commitment secret."""
        ...

    def sign_to_remote_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                             amount_sat: int) -> bytes:
        """Our payment basepoint key (static_remotekey to_remote under anchors)."""
        ...


def _digest(tx: bytes, input_index: int, witness_script: bytes, amount_sat: int) -> bytes:
    return Tx.parse(tx).sighash_segwit_v0(input_index, witness_script, amount_sat, SIGHASH_ALL)


class LocalSigner:
    """A :class:`Signer` holding one node's channel secrets (tests, tools)."""

    def __init__(self, secrets: BasepointSecrets, funding_privkey: bytes, shachain_seed: bytes):
        self.secrets = secrets
        self.funding_privkey = funding_privkey
        self.shachain_seed = shachain_seed

    # -- what the channel state holds about this node --------------------------
    @property
    def basepoints(self):
        return self.secrets.basepoints()

    @property
    def funding_pubkey(self) -> bytes:
        return pubkey_of(self.funding_privkey)

    def per_commitment_point(self, commitment_number: int) -> bytes:
        return per_commitment_point(self.shachain_seed, commitment_number)

    def per_commitment_secret(self, commitment_number: int) -> bytes:
        return per_commitment_secret(self.shachain_seed, commitment_number)

    # -- the Signer protocol ---------------------------------------------------
    def sign_delayed_payment_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                                   amount_sat: int, per_commitment_point: bytes) -> bytes:
        key = derive_privkey(self.secrets.delayed_payment, per_commitment_point)
        return sign_digest_der(key, _digest(tx, input_index, witness_script, amount_sat))

    def sign_local_htlc_tx(self, tx: bytes, input_index: int, witness_script: bytes,
                           amount_sat: int, per_commitment_point: bytes) -> bytes:
        key = derive_privkey(self.secrets.htlc, per_commitment_point)
        return sign_digest_der(key, _digest(tx, input_index, witness_script, amount_sat))

    def sign_remote_htlc_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                               amount_sat: int, remote_per_commitment_point: bytes) -> bytes:
        key = derive_privkey(self.secrets.htlc, remote_per_commitment_point)
        return sign_digest_der(key, _digest(tx, input_index, witness_script, amount_sat))

    def sign_penalty_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                           amount_sat: int, revocation_secret: bytes) -> bytes:
        key = derive_revocation_privkey(self.secrets.revocation, revocation_secret)
        return sign_digest_der(key, _digest(tx, input_index, witness_script, amount_sat))

    def sign_to_remote_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                             amount_sat: int) -> bytes:
        return sign_digest_der(self.secrets.payment,
                               _digest(tx, input_index, witness_script, amount_sat))
