"""The signing interface of channeld, and an in-process implementation for tests.

channeld never holds our private keys in production: hsmd does, and answers
synchronous request/response calls.  :class:`Signer` is that contract;
every method takes and returns plain values (bytes, ints, transactions that
serialize to bytes) so the hsmd client can forward them verbatim.

Revocation rule (what keeps a buggy or compromised channeld from getting us
punished): releasing ``per_commitment_secret(n)`` *revokes* our commitment
``n``.  The signer

* releases secret ``n`` only after it validated a counterparty signature on
  our commitment ``n + 1`` (``validate_local_commitment(n + 1, ...)``), so
  we always keep one valid, unrevoked commitment to broadcast;
* afterwards refuses ``sign_local_commitment`` / ``sign_local_htlc_tx`` for
  any commitment ``<= n``, so a revoked state can never be broadcast by us.

:class:`LocalSigner` enforces exactly that with in-memory state, as hsmd
would with its own.
"""
from __future__ import annotations

from typing import Protocol

from bitcoin.keys import der_to_compact, sign_digest_compact, verify_digest_compact
from bitcoin.hashes import sha256
from bitcoin.tx import SIGHASH_ALL, Tx
from common.htlc_tx import HtlcTx
from common.keyderive import Basepoints, BasepointSecrets, derive_privkey, pubkey_from_secret
from common.shachain import per_commitment_point, per_commitment_secret

from .errors import SignerError


class Signer(Protocol):
    """What channeld asks of hsmd for one channel.  Signatures are 64-byte compact."""

    def funding_pubkey(self) -> bytes: ...

    def basepoints(self) -> Basepoints: ...

    def per_commitment_point(self, n: int) -> bytes:
        """Our per-commitment point for our commitment number ``n``."""
        ...

    def validate_local_commitment(self, n: int, tx: Tx, funding_witness_script: bytes,
                                  funding_sat: int, counterparty_sig: bytes) -> None:
        """Check the peer's signature on our commitment ``n``; remember ``n`` as
        held.  Raises :class:`SignerError` if the signature is invalid."""
        ...

    def per_commitment_secret(self, n: int) -> bytes:
        """Revoke our commitment ``n`` and return its secret (see module doc)."""
        ...

    def sign_local_commitment(self, n: int, tx: Tx, funding_witness_script: bytes,
                              funding_sat: int) -> bytes:
        """Our signature on our own (unrevoked) commitment ``n``, to broadcast it."""
        ...

    def sign_local_htlc_tx(self, n: int, htlc_tx: HtlcTx) -> bytes:
        """Our (holder, SIGHASH_ALL) signature on an HTLC tx of our commitment ``n``."""
        ...

    def sign_remote_commitment(self, tx: Tx, funding_witness_script: bytes,
                               funding_sat: int) -> bytes: ...

    def sign_remote_htlc_tx(self, htlc_tx: HtlcTx, remote_per_commitment_point: bytes) -> bytes:
        """Counterparty signature on an HTLC tx of the peer's commitment."""
        ...

    def sign_remote_htlc_txs(self, htlc_txs: list[HtlcTx], remote_per_commitment_point: bytes) -> list[bytes]:
        """The same for every HTLC tx of one peer commitment (one round trip to hsmd)."""
        ...

    def sign_closing_tx(self, tx: Tx, funding_witness_script: bytes, funding_sat: int) -> bytes: ...


class LocalSigner:
    """:class:`Signer` over keys held in memory (tests, and the reference for hsmd)."""

    def __init__(self, secrets: BasepointSecrets, funding_privkey: bytes, shachain_seed: bytes):
        if len(shachain_seed) != 32:
            raise ValueError("shachain seed must be 32 bytes")
        self._secrets = secrets
        self._funding_privkey = funding_privkey
        self._seed = shachain_seed
        self._basepoints = secrets.basepoints()
        self._funding_pubkey = pubkey_from_secret(funding_privkey)
        #: highest commitment number with a validated counterparty signature
        self.validated: int = -1
        #: highest revoked commitment number (-1: none)
        self.revoked_through: int = -1

    @classmethod
    def from_seed(cls, seed: bytes) -> "LocalSigner":
        """Deterministic keys from any seed (tests)."""
        def k(tag: str) -> bytes:
            return sha256(seed + tag.encode())
        return cls(BasepointSecrets(revocation=k("revocation"), payment=k("payment"),
                                    delayed_payment=k("delayed"), htlc=k("htlc")),
                   k("funding"), k("shachain"))

    def funding_pubkey(self) -> bytes:
        return self._funding_pubkey

    def basepoints(self) -> Basepoints:
        return self._basepoints

    def per_commitment_point(self, n: int) -> bytes:
        return per_commitment_point(self._seed, n)

    def validate_local_commitment(self, n: int, tx: Tx, funding_witness_script: bytes,
                                  funding_sat: int, counterparty_sig: bytes) -> None:
        if n <= self.revoked_through:
            raise SignerError(f"commitment {n} is already revoked")
        # We cannot tell which key is the counterparty's from the script alone,
        # but ours is known: the other one must have signed.
        digest = tx.sighash_segwit_v0(0, funding_witness_script, funding_sat, SIGHASH_ALL)
        keys = [funding_witness_script[2:35], funding_witness_script[36:69]]
        theirs = [k for k in keys if k != self._funding_pubkey]
        if len(theirs) != 1 or not verify_digest_compact(theirs[0], counterparty_sig, digest):
            raise SignerError(f"invalid counterparty signature on commitment {n}")
        self.validated = max(self.validated, n)

    def per_commitment_secret(self, n: int) -> bytes:
        if n + 1 > self.validated:
            raise SignerError(f"refusing to revoke commitment {n}: no validated commitment {n + 1}")
        self.revoked_through = max(self.revoked_through, n)
        return per_commitment_secret(self._seed, n)

    def _check_unrevoked(self, n: int) -> None:
        if n <= self.revoked_through:
            raise SignerError(f"refusing to sign revoked commitment {n}")

    def sign_local_commitment(self, n: int, tx: Tx, funding_witness_script: bytes,
                              funding_sat: int) -> bytes:
        self._check_unrevoked(n)
        digest = tx.sighash_segwit_v0(0, funding_witness_script, funding_sat, SIGHASH_ALL)
        return sign_digest_compact(self._funding_privkey, digest)

    def sign_local_htlc_tx(self, n: int, htlc_tx: HtlcTx) -> bytes:
        self._check_unrevoked(n)
        priv = derive_privkey(self._secrets.htlc, self.per_commitment_point(n))
        return der_to_compact(htlc_tx.sign_as_holder(priv))

    def sign_remote_commitment(self, tx: Tx, funding_witness_script: bytes,
                               funding_sat: int) -> bytes:
        digest = tx.sighash_segwit_v0(0, funding_witness_script, funding_sat, SIGHASH_ALL)
        return sign_digest_compact(self._funding_privkey, digest)

    def sign_remote_htlc_tx(self, htlc_tx: HtlcTx, remote_per_commitment_point: bytes) -> bytes:
        priv = derive_privkey(self._secrets.htlc, remote_per_commitment_point)
        return der_to_compact(htlc_tx.sign_as_counterparty(priv))

    def sign_remote_htlc_txs(self, htlc_txs: list[HtlcTx], remote_per_commitment_point: bytes) -> list[bytes]:
        return [self.sign_remote_htlc_tx(h, remote_per_commitment_point) for h in htlc_txs]

    def sign_closing_tx(self, tx: Tx, funding_witness_script: bytes, funding_sat: int) -> bytes:
        digest = tx.sighash_segwit_v0(0, funding_witness_script, funding_sat, SIGHASH_ALL)
        return sign_digest_compact(self._funding_privkey, digest)
