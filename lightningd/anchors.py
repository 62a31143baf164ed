"""Anchors: the wallet pays for what an anchors channel puts on chain (Core
Lightning's lightningd/anchorspend.c).

An anchors commitment pays only the "slow" feerate (channel_control
send_feerates) and its HTLC transactions pay nothing at all (BOLT 3: the peer
signs them SIGHASH_SINGLE|ANYONECANPAY so that we can add inputs).  So:

* Our commitment is CPFP'd when we broadcast it: a child spends our anchor
  output (330 sat) and wallet coins, back to a new wallet address, paying
  enough that the package (commitment + child) reaches the
  `unilateral_anchor_close` estimate.  On each block while the commitment is
  unconfirmed it is broadcast again, and rebuilt on the same coins (a
  replacement) if the estimate rose.  hsmd signs the anchor input with the
  channel's funding key (hsmd_sign_anchorspend), the master holds no key.
* onchaind's zero-fee HTLC transactions get wallet coins and a change output
  (`onchaind_fee_inputs`), chosen and reserved here; onchaind signs the HTLC
  input (SIGHASH_ALL covers the added inputs) and hsmd the wallet's
  (`sign_fee_inputs`, at broadcast).

Nothing is recorded as spent until it is mined (the wallet sees its coins
spent, and its change arrive, in blocks): a child that can never confirm
(the peer's commitment won) only keeps its coins reserved until the
reservation runs out.  The coins chosen for an output are remembered (in
the database, `vars`) so that a rebuilt transaction, also after a restart,
replaces the first one on the same coins: those stay reserved, and a
wallet without other coins could not pay for it again otherwise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from bitcoin.coinselect import (
    INPUT_WEIGHT,
    WITNESS_DUST_LIMIT,
    InsufficientFunds,
    core_weight,
    output_weight,
)
from bitcoin.script import p2wsh_script
from bitcoin.tx import OutPoint, Tx, TxIn, TxOut
from common.scripts import anchor_script

from .wallet import RESERVATION_BLOCKS, Utxo

if TYPE_CHECKING:
    from .channel import ChannelRecord
    from .lightningd import LightningD

SEQUENCE_RBF = 0xFFFFFFFD
NOT_OURS = 0xFFFFFFFF                      # hsmd wallet_input.keyidx of an input that is not a wallet coin
# outpoint, empty scriptSig, sequence (x4); witness: count, <sig>, <anchor script (40 bytes)>
ANCHOR_INPUT_WEIGHT = 41 * 4 + 1 + (1 + 73) + (1 + 40)
CHANGE_OUTPUT_WEIGHT = output_weight(34)   # P2TR


def anchors_channel(rec: "ChannelRecord") -> bool:
    return rec.anchors


def _input_weight(u: Utxo) -> int:
    return INPUT_WEIGHT["p2tr" if u.addrtype == "p2tr" else "p2wpkh"]


@dataclass
class Funded:
    coins: list[Utxo]
    change_sat: int
    fee_sat: int        # what the whole transaction pays
    weight: int         # its estimated weight, wallet inputs and change included


def add_coins(available: list[Utxo], chosen: list[Utxo], base_weight: int, base_value: int,
              fee_needed: Callable[[int], int]) -> Funded:
    """Add coins of ``available`` (largest first) to ``chosen`` until a
    transaction of ``base_weight`` bringing ``base_value`` of its own pays
    ``fee_needed(weight)`` and still has a change output above dust.
    InsufficientFunds when the wallet cannot."""
    coins = list(chosen)
    rest = sorted((u for u in available if u.outpoint not in {c.outpoint for c in coins}),
                  key=lambda u: -u.value_sat)
    while True:
        weight = base_weight + sum(_input_weight(u) for u in coins) + CHANGE_OUTPUT_WEIGHT
        fee = fee_needed(weight)
        change = base_value + sum(u.value_sat for u in coins) - fee
        if change >= WITNESS_DUST_LIMIT:
            return Funded(coins, change, fee, weight)
        if not rest:
            have = sum(u.value_sat for u in coins)
            raise InsufficientFunds(have + WITNESS_DUST_LIMIT - change, have)
        coins.append(rest.pop(0))


def wallet_input(u: Utxo) -> dict:
    return {"keyidx": u.keyidx, "is_p2tr": u.addrtype == "p2tr", "amount_sat": u.value_sat, "script": u.script}


def foreign_input(amount_sat: int, script: bytes) -> dict:
    return {"keyidx": NOT_OURS, "is_p2tr": False, "amount_sat": amount_sat, "script": script}


@dataclass
class Child:
    feerate: int        # package feerate it was built for (perkw)
    tx: Tx
    fee_sat: int


class AnchorSpender:
    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        #: (dbid, txid, outnum) of the output whose spend we fund -> coins and change key chosen
        self.coins: dict[tuple[int, bytes, int], tuple[list[Utxo], int]] = {}
        #: commitment txid -> its CPFP child
        self.children: dict[bytes, Child] = {}

    # ------------------------------------------------------------------ coins per funded output
    @staticmethod
    def _var(key: tuple[int, bytes, int]) -> str:
        return f"anchor_fee_inputs:{key[0]}:{key[1][::-1].hex()}:{key[2]}"

    def _chosen(self, key: tuple[int, bytes, int]) -> tuple[list[Utxo], int]:
        """The coins (still unspent) and change key chosen before for this
        output, from memory or, after a restart, from the database."""
        got = self.coins.get(key)
        if got is not None:
            return got
        raw = self.ld.db.get_var(self._var(key)) if self.ld.db is not None else None
        if not raw:
            return [], 0
        d = json.loads(raw)
        w = self.ld.wallet
        coins = [u for u in (w.get(bytes.fromhex(t)[::-1], n) for t, n in d["coins"])
                 if u is not None and u.spend_txid is None]
        return coins, int(d["keyidx"])

    def _remember(self, key: tuple[int, bytes, int], coins: list[Utxo], keyidx: int) -> None:
        self.coins[key] = (coins, keyidx)
        db = self.ld.db
        assert db is not None
        with db.transaction():
            db.set_var(self._var(key), json.dumps({"coins": [[u.txid[::-1].hex(), u.outnum] for u in coins],
                                                   "keyidx": keyidx}))

    # ------------------------------------------------------------------ our commitment
    async def broadcast_commitment(self, rec: "ChannelRecord", raw: bytes, what: str) -> bool:
        """Broadcast our commitment and, for an anchors channel, its CPFP child."""
        res = await self.ld.backend.sendrawtransaction(raw.hex())
        ok = bool(res.get("success")) or "already" in str(res.get("errmsg", ""))
        if not res.get("success"):
            self.ld.log.debug(f"channel {rec.dbid}: broadcast of {what}: {res.get('errmsg')}")
        if ok and anchors_channel(rec):
            try:
                await self.cpfp(rec, Tx.parse(raw))
            except Exception as e:     # the commitment is out: a failed bump must not stop anything
                self.ld.log.broken(f"channel {rec.dbid}: CPFP of our commitment failed: {e}")
        return ok

    def _target(self) -> int | None:
        f = self.ld.feerates
        return f.perkw("unilateral_anchor_close") if f is not None else None

    async def cpfp(self, rec: "ChannelRecord", commitment: Tx) -> Child | None:
        target = self._target()
        spk = p2wsh_script(anchor_script(rec.summary["funding_pubkey_local"]))
        idx = next((n for n, o in enumerate(commitment.outputs) if o.script_pubkey == spk), None)
        if target is None or idx is None:
            return None
        txid = commitment.txid()
        parent_fee = rec.funding_sat - sum(o.value for o in commitment.outputs)
        parent_weight = commitment.weight()
        if parent_fee * 1000 >= target * parent_weight:
            return None                 # pays the estimate on its own
        prev = self.children.get(txid)
        if prev is not None and prev.feerate >= target:
            await self._send(prev.tx)
            return prev
        key = (rec.dbid, txid, idx)
        chosen, keyidx = self._chosen(key)
        anchor_sat = commitment.outputs[idx].value

        def package_fee(weight: int) -> int:
            return -(-target * (parent_weight + weight) // 1000) - parent_fee
        w = self.ld.wallet
        try:
            funded = add_coins(w.spendable(1), chosen, core_weight(1, 1) + ANCHOR_INPUT_WEIGHT, anchor_sat,
                               package_fee)
        except InsufficientFunds as e:
            self.ld.log.unusual(f"channel {rec.dbid}: cannot CPFP our commitment {commitment.txid_hex} to "
                                f"{target} sat/kw: {e}")
            return None
        w.reserve([u.outpoint for u in funded.coins], RESERVATION_BLOCKS)
        if not keyidx:
            keyidx = w.new_keyidx("p2tr")
        self._remember(key, funded.coins, keyidx)
        tx = Tx(version=2, inputs=[TxIn(OutPoint(txid, idx), b"", SEQUENCE_RBF)]
                + [TxIn(u.outpoint, b"", SEQUENCE_RBF) for u in funded.coins],
                outputs=[TxOut(funded.change_sat, w.scripts_for(keyidx)["p2tr"])])
        inputs = [foreign_input(anchor_sat, spk)] + [wallet_input(u) for u in funded.coins]
        reply = await self.ld.hsm.subd.request("hsmd_sign_anchorspend", {  # type: ignore[union-attr]
            "peer_id": rec.peer_id, "channel_dbid": rec.dbid, "inputs": inputs, "tx": tx.serialize()}, timeout=60)
        signed = Tx.parse(reply["tx"])
        package = (parent_fee + funded.fee_sat) * 1000 // (parent_weight + signed.weight())
        if await self._send(signed):
            self.children[txid] = Child(target, signed, funded.fee_sat)
            self.ld.log.info(f"channel {rec.dbid}: CPFP of our commitment {commitment.txid_hex} "
                             f"({parent_fee * 1000 // parent_weight} sat/kw) by {signed.txid_hex}: fee "
                             f"{funded.fee_sat} sat, package {package} sat/kw (target {target})")
            return self.children[txid]
        return None

    async def _send(self, tx: Tx) -> bool:
        res = await self.ld.backend.sendrawtransaction(tx.to_hex())
        if not res.get("success") and "already" not in str(res.get("errmsg", "")):
            self.ld.log.debug(f"broadcast of anchor spend {tx.txid_hex} failed: {res.get('errmsg')}")
            return False
        return True

    # ------------------------------------------------------------------ onchaind's zero-fee HTLC txs
    def fee_inputs(self, dbid: int, outpoint: OutPoint, weight: int, feerate: int,
                   not_before: int) -> tuple[list[Utxo], bytes, int]:
        """Coins and change (script, amount) so that a zero-fee transaction of
        ``weight`` spending ``outpoint`` pays ``feerate``; reserved until
        well after it can be mined.  Raises InsufficientFunds."""
        w = self.ld.wallet
        key = (dbid, outpoint.txid, outpoint.index)
        chosen, keyidx = self._chosen(key)
        funded = add_coins(w.spendable(1), chosen, weight, 0, lambda wt: -(-feerate * wt // 1000))
        w.reserve([u.outpoint for u in funded.coins], max(0, not_before - w.tip_height) + RESERVATION_BLOCKS)
        if not keyidx:
            keyidx = w.new_keyidx("p2tr")
        self._remember(key, funded.coins, keyidx)
        return funded.coins, w.scripts_for(keyidx)["p2tr"], funded.change_sat

    async def sign_fee_inputs(self, tx: Tx, wallet_inputs: int, spent_sat: int, spent_script: bytes) -> Tx:
        """hsmd signs the last ``wallet_inputs`` inputs of ``tx`` (wallet coins
        chosen by fee_inputs); input 0 is onchaind's, already signed."""
        w = self.ld.wallet
        if wallet_inputs != len(tx.inputs) - 1:
            raise ValueError(f"{len(tx.inputs)} inputs, {wallet_inputs} of them from the wallet")
        inputs = [foreign_input(spent_sat, spent_script)]
        for i in tx.inputs[1:]:
            u = w.get(i.prevout.txid, i.prevout.index)
            if u is None:
                raise ValueError(f"input {i.prevout} is not a wallet coin")
            inputs.append(wallet_input(u))
        reply = await self.ld.hsm.subd.request("hsmd_sign_withdrawal",  # type: ignore[union-attr]
                                               {"inputs": inputs, "tx": tx.serialize()}, timeout=60)
        return Tx.parse(reply["tx"])
