"""What the shell feeds onchaind's core, and what the core asks of it.

Inputs (each has a method of the same name on ``OnchainState``; ``handle``
dispatches an instance).  Every input is idempotent: feeding the same one
twice produces nothing the second time.

* ``TxConfirmed(txid, height)``: a tx we know (the spending commitment, or a
  tx an ``OutputSpent`` reported unconfirmed) was mined at ``height``.
* ``OutputSpent(outpoint, spending_tx, height)``: a watched output was spent;
  ``height`` None means seen unconfirmed (mempool): preimages are taken from
  it at once, but the output stays unresolved until it confirms.
* ``BlockConnected(height)``: the new tip (lower or equal heights are ignored).
* ``BlockDisconnected(height)``: the block at ``height`` left the best chain;
  the tip becomes ``height - 1`` and every confirmation at ``height`` or above
  is forgotten (its spends become unconfirmed: re-feed them when mined again).
* ``PreimageKnown(payment_hash, preimage)``: the master learned a preimage.
* ``FeerateChanged(feerate_per_kw)``: feerate for transactions built from now on.

Outputs:

* ``Watch(outpoint)``: report when it is spent (``OutputSpent``), and the
  depth of the spending tx (``TxConfirmed``).
* ``Broadcast(tx, reason, not_before_height, ...)``: broadcast once the tip
  reaches ``not_before_height - 1`` (it can be mined from that height on), and
  keep re-broadcasting until the spent output is reported spent.  A later
  ``Broadcast`` for the same ``outpoint`` replaces it (RBF).  When
  ``needs_fee_inputs`` (anchors' zero-fee HTLC txs), add wallet inputs with
  ``OnchainState.complete_htlc_tx`` first.
* ``PreimageLearned(payment_hash, preimage)``: taken from the peer's spend:
  fulfil the incoming HTLC upstream.
* ``HtlcFailed(htlc_id)``: our offered HTLC timed out on chain (or is absent
  from the confirmed commitment), ``reasonable_depth`` deep: fail it upstream.
* ``Resolved(outpoint, resolved_by, txid, height)``: an output got resolved
  (``txid`` None: by the tx holding it).
* ``Warn(message)``: tell the user (e.g. an unknown spend: funds may be lost).
* ``AllResolved()``: every output irrevocably resolved (100 blocks deep):
  onchaind can exit and the channel be forgotten.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from bitcoin.tx import OutPoint, Tx

from .model import TxType


# --- inputs ---------------------------------------------------------------------

@dataclass(frozen=True)
class TxConfirmed:
    txid: bytes
    height: int


@dataclass(frozen=True)
class OutputSpent:
    outpoint: OutPoint
    spending_tx: Tx
    height: int | None


@dataclass(frozen=True)
class BlockConnected:
    height: int


@dataclass(frozen=True)
class BlockDisconnected:
    height: int


@dataclass(frozen=True)
class PreimageKnown:
    payment_hash: bytes
    preimage: bytes


@dataclass(frozen=True)
class FeerateChanged:
    feerate_per_kw: int


Input = Union[TxConfirmed, OutputSpent, BlockConnected, BlockDisconnected, PreimageKnown,
              FeerateChanged]


# --- outputs --------------------------------------------------------------------

@dataclass(frozen=True)
class Watch:
    outpoint: OutPoint


@dataclass(frozen=True)
class Broadcast:
    tx: Tx
    reason: str                 # "<tx type>/<output type>-><action>"
    not_before_height: int
    outpoint: OutPoint          # the output it resolves
    feerate_per_kw: int | None = None
    fee_sat: int | None = None
    deadline: int | None = None
    needs_fee_inputs: bool = False


@dataclass(frozen=True)
class PreimageLearned:
    payment_hash: bytes
    preimage: bytes


@dataclass(frozen=True)
class HtlcFailed:
    htlc_id: int


@dataclass(frozen=True)
class Resolved:
    outpoint: OutPoint
    resolved_by: TxType
    txid: bytes | None
    height: int


@dataclass(frozen=True)
class Warn:
    message: str


@dataclass(frozen=True)
class AllResolved:
    pass


Output = Union[Watch, Broadcast, PreimageLearned, HtlcFailed, Resolved, Warn, AllResolved]
