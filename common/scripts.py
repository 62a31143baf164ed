"""BOLT 3 witness scripts.

All outputs of commitment and HTLC transactions are P2WSH (except the
non-anchor ``to_remote``, a P2WPKH); these functions build the *witness
scripts*, and :func:`p2wsh` turns one into its scriptPubKey.  Key names follow
BOLT 3, i.e. "local" is the holder of the commitment transaction.
"""
from __future__ import annotations

from bitcoin.hashes import hash160, ripemd160
from bitcoin.script import (
    OP_1,
    OP_16,
    OP_2,
    OP_CHECKLOCKTIMEVERIFY,
    OP_CHECKMULTISIG,
    OP_CHECKSEQUENCEVERIFY,
    OP_CHECKSIG,
    OP_CHECKSIGVERIFY,
    OP_DROP,
    OP_DUP,
    OP_ELSE,
    OP_ENDIF,
    OP_EQUAL,
    OP_EQUALVERIFY,
    OP_HASH160,
    OP_IF,
    OP_IFDUP,
    OP_NOTIF,
    OP_SIZE,
    OP_SWAP,
    build_script,
    multisig_2of2_script,
    p2wpkh_script,
    p2wsh_script,
    push_int,
)

#: Value of each anchor output (the P2WSH dust limit).
ANCHOR_OUTPUT_SAT = 330


def _check_pubkey(pk: bytes) -> bytes:
    if len(pk) != 33 or pk[0] not in (2, 3):
        raise ValueError("expected a 33-byte compressed public key")
    return pk


def funding_script(pubkey1: bytes, pubkey2: bytes) -> bytes:
    """``2 <pubkey1> <pubkey2> 2 OP_CHECKMULTISIG`` with the keys sorted (BIP69-style)."""
    return multisig_2of2_script(_check_pubkey(pubkey1), _check_pubkey(pubkey2))


def to_local_script(revocation_pubkey: bytes, to_self_delay: int,
                    local_delayed_pubkey: bytes) -> bytes:
    """``to_local`` output, also the output of HTLC-success/timeout transactions.

    Revocable immediately with the revocation key, else spendable by the holder
    after ``to_self_delay`` blocks (CSV)."""
    return (build_script([OP_IF, _check_pubkey(revocation_pubkey), OP_ELSE])
            + push_int(to_self_delay)
            + build_script([OP_CHECKSEQUENCEVERIFY, OP_DROP, _check_pubkey(local_delayed_pubkey),
                            OP_ENDIF, OP_CHECKSIG]))


def to_remote_anchor_script(remote_pubkey: bytes) -> bytes:
    """``to_remote`` under option_anchors: ``<remotepubkey> OP_CHECKSIGVERIFY 1 OP_CSV``.

    The 1-block CSV stops the counterparty from chaining unconfirmed children
    off it, which would otherwise defeat the anchor carve-out."""
    return build_script([_check_pubkey(remote_pubkey), OP_CHECKSIGVERIFY, OP_1, OP_CHECKSEQUENCEVERIFY])


def to_remote_scriptpubkey(remote_pubkey: bytes, option_anchors: bool) -> bytes:
    """scriptPubKey of ``to_remote``: P2WPKH, or P2WSH of the CSV script with anchors."""
    if option_anchors:
        return p2wsh_script(to_remote_anchor_script(remote_pubkey))
    return p2wpkh_script(_check_pubkey(remote_pubkey))


def anchor_script(funding_pubkey: bytes) -> bytes:
    """Anchor output: spendable by the funding key owner, or by anyone after 16 blocks."""
    return build_script([_check_pubkey(funding_pubkey), OP_CHECKSIG, OP_IFDUP, OP_NOTIF,
                         OP_16, OP_CHECKSEQUENCEVERIFY, OP_ENDIF])


def _anchor_csv_suffix(option_anchors: bool) -> list:
    # With anchors, HTLC spends by the counterparty need a 1-block CSV so they
    # cannot pin the commitment transaction with unconfirmed children.
    return [OP_1, OP_CHECKSEQUENCEVERIFY, OP_DROP] if option_anchors else []


def offered_htlc_script(revocation_pubkey: bytes, local_htlc_pubkey: bytes,
                        remote_htlc_pubkey: bytes, payment_hash: bytes,
                        option_anchors: bool) -> bytes:
    """HTLC offered by the commitment holder (claimed by the counterparty with the
    preimage, or by the holder through the HTLC-timeout transaction)."""
    if len(payment_hash) != 32:
        raise ValueError("payment_hash must be 32 bytes")
    return build_script([
        OP_DUP, OP_HASH160, hash160(_check_pubkey(revocation_pubkey)), OP_EQUAL,
        OP_IF,
            OP_CHECKSIG,
        OP_ELSE,
            _check_pubkey(remote_htlc_pubkey), OP_SWAP, OP_SIZE, bytes([32]), OP_EQUAL,
            OP_NOTIF,
                OP_DROP, OP_2, OP_SWAP, _check_pubkey(local_htlc_pubkey), OP_2, OP_CHECKMULTISIG,
            OP_ELSE,
                OP_HASH160, ripemd160(payment_hash), OP_EQUALVERIFY, OP_CHECKSIG,
            OP_ENDIF,
            *_anchor_csv_suffix(option_anchors),
        OP_ENDIF,
    ])  # fmt: skip


def received_htlc_script(revocation_pubkey: bytes, local_htlc_pubkey: bytes,
                         remote_htlc_pubkey: bytes, payment_hash: bytes,
                         cltv_expiry: int, option_anchors: bool) -> bytes:
    """HTLC received by the commitment holder (claimed by the holder through the
    HTLC-success transaction, or by the counterparty after ``cltv_expiry``)."""
    if len(payment_hash) != 32:
        raise ValueError("payment_hash must be 32 bytes")
    head = build_script([
        OP_DUP, OP_HASH160, hash160(_check_pubkey(revocation_pubkey)), OP_EQUAL,
        OP_IF,
            OP_CHECKSIG,
        OP_ELSE,
            _check_pubkey(remote_htlc_pubkey), OP_SWAP, OP_SIZE, bytes([32]), OP_EQUAL,
            OP_IF,
                OP_HASH160, ripemd160(payment_hash), OP_EQUALVERIFY,
                OP_2, OP_SWAP, _check_pubkey(local_htlc_pubkey), OP_2, OP_CHECKMULTISIG,
            OP_ELSE,
                OP_DROP,
    ])  # fmt: skip
    tail = build_script([
                OP_CHECKLOCKTIMEVERIFY, OP_DROP, OP_CHECKSIG,
            OP_ENDIF,
            *_anchor_csv_suffix(option_anchors),
        OP_ENDIF,
    ])  # fmt: skip
    return head + push_int(cltv_expiry) + tail


def p2wsh(witness_script: bytes) -> bytes:
    """scriptPubKey paying to ``witness_script``."""
    return p2wsh_script(witness_script)
