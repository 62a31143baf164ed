"""BOLT 3 per-commitment key derivation.

Every commitment transaction uses fresh keys derived from each peer's static
*basepoints* and the commitment holder's ``per_commitment_point``:

    pubkey  = basepoint + SHA256(per_commitment_point || basepoint) * G
    privkey = basepoint_secret + SHA256(per_commitment_point || basepoint)

The revocation key is "blinded" so that neither party can compute its private
half alone; the holder of the revocation basepoint learns it only once the
other side reveals its ``per_commitment_secret``:

    revocationpubkey  = revocation_basepoint * SHA256(revocation_basepoint || per_commitment_point)
                      + per_commitment_point * SHA256(per_commitment_point || revocation_basepoint)
    revocationprivkey = revocation_basepoint_secret * SHA256(revocation_basepoint || per_commitment_point)
                      + per_commitment_secret * SHA256(per_commitment_point || revocation_basepoint)

Public keys are 33-byte compressed SEC1 points, secrets are 32-byte big-endian
scalars.  Point arithmetic goes through coincurve (libsecp256k1); scalar
arithmetic is plain modular integer arithmetic, which is exact and easy to read.
"""
from __future__ import annotations

from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey

from bitcoin.hashes import sha256

#: Order of the secp256k1 group.
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class KeyDerivationError(ValueError):
    """A derivation produced an invalid key (probability ~2^-128) or got bad input."""


def _scalar(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _scalar_bytes(n: int) -> bytes:
    n %= SECP256K1_ORDER
    if n == 0:
        raise KeyDerivationError("derived private key is zero")
    return n.to_bytes(32, "big")


def _check_secret(secret: bytes) -> int:
    if len(secret) != 32:
        raise KeyDerivationError("secret must be 32 bytes")
    n = _scalar(secret)
    if not 0 < n < SECP256K1_ORDER:
        raise KeyDerivationError("secret out of range")
    return n


def pubkey_from_secret(secret: bytes) -> bytes:
    """Compressed public key of a 32-byte secret (e.g. per_commitment_point)."""
    _check_secret(secret)
    return PrivateKey(secret).public_key.format(compressed=True)


def _add_points(a: bytes, b: bytes) -> bytes:
    return PublicKey.combine_keys([PublicKey(a), PublicKey(b)]).format(compressed=True)


def _mul_point(point: bytes, scalar: bytes) -> bytes:
    return PublicKey(point).multiply(scalar).format(compressed=True)


# --- localpubkey / htlcpubkey / delayedpubkey ---------------------------------

def derive_pubkey(basepoint: bytes, per_commitment_point: bytes) -> bytes:
    """``basepoint + SHA256(per_commitment_point || basepoint) * G``.

    Used for localpubkey, local/remote_htlcpubkey and local/remote_delayedpubkey.
    """
    tweak = sha256(per_commitment_point + basepoint)
    try:
        return PublicKey(basepoint).add(tweak).format(compressed=True)
    except ValueError as e:  # tweak >= n or result at infinity
        raise KeyDerivationError(str(e)) from None


def derive_privkey(basepoint_secret: bytes, per_commitment_point: bytes) -> bytes:
    """``basepoint_secret + SHA256(per_commitment_point || basepoint)`` mod n.

    The basepoint is recomputed from the secret so callers cannot pass a
    mismatching pair.
    """
    s = _check_secret(basepoint_secret)
    basepoint = pubkey_from_secret(basepoint_secret)
    tweak = _scalar(sha256(per_commitment_point + basepoint))
    return _scalar_bytes(s + tweak)


# --- revocation keys ------------------------------------------------------------

def derive_revocation_pubkey(revocation_basepoint: bytes, per_commitment_point: bytes) -> bytes:
    """revocationpubkey for a commitment whose holder published ``per_commitment_point``.

    ``revocation_basepoint`` belongs to the *other* party (the one who may punish).
    """
    h1 = sha256(revocation_basepoint + per_commitment_point)
    h2 = sha256(per_commitment_point + revocation_basepoint)
    try:
        return _add_points(_mul_point(revocation_basepoint, h1),
                           _mul_point(per_commitment_point, h2))
    except ValueError as e:
        raise KeyDerivationError(str(e)) from None


def derive_revocation_privkey(revocation_basepoint_secret: bytes,
                              per_commitment_secret: bytes) -> bytes:
    """revocationprivkey, computable once the commitment holder revealed its secret."""
    rb = _check_secret(revocation_basepoint_secret)
    pcs = _check_secret(per_commitment_secret)
    revocation_basepoint = pubkey_from_secret(revocation_basepoint_secret)
    per_commitment_point = pubkey_from_secret(per_commitment_secret)
    h1 = _scalar(sha256(revocation_basepoint + per_commitment_point))
    h2 = _scalar(sha256(per_commitment_point + revocation_basepoint))
    return _scalar_bytes(rb * h1 + pcs * h2)


# --- data model -------------------------------------------------------------------

@dataclass(frozen=True)
class Basepoints:
    """A peer's static basepoints, as sent in open_channel / accept_channel."""

    revocation: bytes
    payment: bytes
    delayed_payment: bytes
    htlc: bytes


@dataclass(frozen=True)
class BasepointSecrets:
    """The private halves of our own basepoints (what hsmd would hold)."""

    revocation: bytes
    payment: bytes
    delayed_payment: bytes
    htlc: bytes

    def basepoints(self) -> Basepoints:
        return Basepoints(
            revocation=pubkey_from_secret(self.revocation),
            payment=pubkey_from_secret(self.payment),
            delayed_payment=pubkey_from_secret(self.delayed_payment),
            htlc=pubkey_from_secret(self.htlc),
        )


@dataclass(frozen=True)
class CommitmentKeys:
    """The per-commitment keys of one commitment transaction.

    Named from the point of view of the commitment's *holder* (the party that
    can broadcast it, BOLT 3's "local"), never from our node's point of view:
    the same structure describes our commitment and theirs.
    """

    revocation_pubkey: bytes          # holder's outputs can be swept with it once revoked
    holder_delayed_pubkey: bytes      # local_delayedpubkey
    holder_htlc_pubkey: bytes         # local_htlcpubkey
    counterparty_htlc_pubkey: bytes   # remote_htlcpubkey
    counterparty_payment_pubkey: bytes  # remotepubkey (static_remotekey: the bare basepoint)
    holder_payment_pubkey: bytes      # localpubkey (unused by BOLT 3 scripts, kept for completeness)

    @classmethod
    def derive(cls, holder: Basepoints, counterparty: Basepoints,
               per_commitment_point: bytes) -> "CommitmentKeys":
        """Derive every key of the holder's commitment from both parties' basepoints
        and the holder's ``per_commitment_point``.

        ``remotepubkey`` is the counterparty's bare payment basepoint because
        option_static_remotekey (mandatory today) lets it sweep without data.
        """
        return cls(
            revocation_pubkey=derive_revocation_pubkey(counterparty.revocation, per_commitment_point),
            holder_delayed_pubkey=derive_pubkey(holder.delayed_payment, per_commitment_point),
            holder_htlc_pubkey=derive_pubkey(holder.htlc, per_commitment_point),
            counterparty_htlc_pubkey=derive_pubkey(counterparty.htlc, per_commitment_point),
            counterparty_payment_pubkey=counterparty.payment,
            holder_payment_pubkey=derive_pubkey(holder.payment, per_commitment_point),
        )
