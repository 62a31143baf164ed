"""Spending from the wallet: withdraw, and txprepare / txsend / txdiscard.

Order of operations (nothing is lost on a crash, nothing reserved or
broadcast when a call fails): select coins and reserve them in one step (no
await in between, so concurrent calls never pick the same coins); issue the
change address; hsmd signs; the signed transaction is saved as ours (its
inputs spent, its change ours) before it is broadcast; a failed broadcast
undoes all of that."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitcoin.address import AddressError, address_to_script
from bitcoin.coinselect import (
    SCRIPT_LEN,
    InsufficientFunds,
    Selection,
    Target,
    dust_limit,
    select_coins,
    tx_fee,
    tx_weight,
)
from bitcoin.coinselect import Utxo as CoinUtxo
from bitcoin.psbt import PSBT
from bitcoin.tx import OutPoint, Tx, TxIn, TxOut

from . import channel as C
from . import params as P
from .anchors import anchors_channel
from .feerates import feerate_param
from .jsonrpc import RequestContext
from .jsonrpc_errors import (
    FUND_CANNOT_AFFORD,
    FUND_CANNOT_AFFORD_WITH_EMERGENCY,
    FUND_OUTPUT_IS_DUST,
    INVALID_PARAMS,
    LIGHTNINGD,
    RpcError,
)
from .params import BadType, opt, req
from .wallet import Utxo

if TYPE_CHECKING:
    from .lightningd import LightningD

SEQUENCE_RBF = 0xFFFFFFFD
# stands for the reserve's change output while planning: a P2TR output, the
# size of the real one (whose key is issued only when the spend is built)
RESERVE_SCRIPT = b"\x51\x20" + bytes(32)


@dataclass
class Prepared:
    tx: Tx
    inputs: list[Utxo]
    change_keyidx: int | None


def outpoint(v: Any) -> OutPoint:
    if isinstance(v, str) and ":" in v:
        txid, _, n = v.partition(":")
        try:
            # an output index is a u32 (it is stored, and looked up, as an integer)
            if len(txid) == 64 and n.isascii() and n.isdigit() and len(n) <= 10 and int(n) <= 0xFFFFFFFF:
                return OutPoint.from_hex(txid, int(n))
        except ValueError:
            pass
    raise BadType("should be a txid:outnum")


def _script(ld: "LightningD", address: str) -> bytes:
    try:
        return address_to_script(address, ld.network)
    except AddressError:
        raise RpcError(INVALID_PARAMS, "Could not parse destination address, destination should be a valid "
                                       "address") from None


class WalletSpender:
    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.prepared: dict[bytes, Prepared] = {}

    def candidates(self, minconf: int, utxos: list[OutPoint] | None) -> list[Utxo]:
        w = self.ld.wallet
        if utxos is None:
            return w.spendable(minconf)
        out = []
        for op in utxos:
            u = w.get(op.txid, op.index)
            if u is None or u.spend_txid is not None:
                raise RpcError(INVALID_PARAMS, f"Unknown UTXO {op}")
            if w.is_reserved(u):
                raise RpcError(LIGHTNINGD, f"UTXO {op} already reserved")
            if w.status(u) == "immature":
                raise RpcError(LIGHTNINGD, f"UTXO {op} is an immature coinbase")
            out.append(u)
        return out

    def emergency_reserve(self, opening_anchors: bool = False) -> int:
        """Sat to leave in the wallet (Core Lightning's min-emergency-msat):
        only while we have (or are opening) an anchors channel, whose
        commitment and HTLC txs the wallet must pay for (anchors.py)."""
        if opening_anchors or any(anchors_channel(rec) and rec.state != C.CLOSED
                                  for rec in self.ld.channels.channels.values()):
            return int(self.ld.cfg.get("min-emergency-msat") or 0) // 1000
        return 0

    def plan(self, targets: list[Target], feerate_perkw: int, minconf: int, utxos: list[OutPoint] | None,
             emergency_sat: int = 0) -> tuple[Selection, int | None]:
        """Coin selection with no side effect (nothing reserved, no key
        issued): the selection, and the reserve kept as change (its output
        last) when the emergency reserve needs one.  RpcError as `prepare`,
        so a caller can learn whether a spend is affordable before it
        commits to anything (fundchannel, before the peer hears of it)."""
        w = self.ld.wallet
        for t in targets:
            if t.amount is not None and t.amount < dust_limit(t.script_pubkey):
                raise RpcError(FUND_OUTPUT_IS_DUST, f"Output {t.amount}sat would be dust")
        cands = self.candidates(minconf, utxos)
        sel = self._select(cands, targets, feerate_perkw, utxos is not None)
        chosen_ops = {c.ref.outpoint for c in sel.inputs}
        others = sum(u.value_sat for u in w.spendable(0) if u.outpoint not in chosen_ops)
        if others + sel.change >= emergency_sat:
            return sel, None
        # keep the reserve as change: one more output the selection must pay for
        reserve_sat = max(emergency_sat - others, dust_limit("p2tr"))
        try:
            sel = self._select(cands, targets + [Target(RESERVE_SCRIPT, reserve_sat)], feerate_perkw, False)
        except RpcError:
            raise RpcError(FUND_CANNOT_AFFORD_WITH_EMERGENCY, "We would not have enough left for "
                                                              f"min-emergency-msat {emergency_sat * 1000}") from None
        return sel, reserve_sat

    def prepare(self, targets: list[Target], feerate_perkw: int, minconf: int,
                utxos: list[OutPoint] | None, emergency_sat: int = 0) -> Prepared:
        """Select, reserve and build (unsigned); synchronous on purpose.
        ``emergency_sat``: what must stay in the wallet (as change, or in
        other coins), else FUND_CANNOT_AFFORD_WITH_EMERGENCY."""
        w = self.ld.wallet
        sel, reserve_sat = self.plan(targets, feerate_perkw, minconf, utxos, emergency_sat)
        chosen: list[Utxo] = [c.ref for c in sel.inputs]
        outputs = list(sel.outputs)
        change_idx = None
        if reserve_sat is not None:
            change_idx = w.new_keyidx("p2tr")
            kept = outputs.pop()       # the reserve (last target) takes any change too
            outputs.insert(random.randint(0, len(outputs)),
                           TxOut(kept.value + sel.change, w.scripts_for(change_idx)["p2tr"]))
        elif sel.has_change:
            change_idx = w.new_keyidx("p2tr")
            pos = random.randint(0, len(outputs))
            outputs.insert(pos, TxOut(sel.change, w.scripts_for(change_idx)["p2tr"]))
        tx = Tx(version=2, inputs=[TxIn(u.outpoint, b"", SEQUENCE_RBF) for u in chosen], outputs=outputs,
                locktime=w.tip_height)  # anti fee-sniping, as Core Lightning
        w.reserve([u.outpoint for u in chosen])
        return Prepared(tx, chosen, change_idx)

    @staticmethod
    def _select(cands: list[Utxo], targets: list[Target], feerate_perkw: int, exact: bool) -> Selection:
        coins = [CoinUtxo.of_type(u.value_sat, "p2tr" if u.addrtype == "p2tr" else "p2wpkh", u) for u in cands]
        try:
            if exact and all(t.amount is not None for t in targets):
                return _spend_exactly(coins, targets, feerate_perkw)
            return select_coins(coins, targets, feerate_perkw, "p2tr")
        except InsufficientFunds as e:
            raise RpcError(FUND_CANNOT_AFFORD, f"Could not afford {sum(t.amount or 0 for t in targets)}sat using "
                                               f"all {len(cands)} available UTXOs: {e.needed - e.available}sat "
                                               "short") from None
        except ValueError as e:
            raise RpcError(FUND_OUTPUT_IS_DUST, str(e)) from None

    def psbt(self, p: Prepared, signed: Tx | None = None) -> PSBT:
        ps = PSBT.from_tx(p.tx)
        for n, u in enumerate(p.inputs):
            ps.inputs[n].witness_utxo = TxOut(u.value_sat, u.script)
            if signed is not None:
                ps.inputs[n].final_scriptwitness = list(signed.inputs[n].witness)
        return ps

    async def sign(self, p: Prepared) -> Tx:
        inputs = [{"keyidx": u.keyidx, "is_p2tr": u.addrtype == "p2tr", "amount_sat": u.value_sat,
                   "script": u.script} for u in p.inputs]
        try:
            reply = await self.ld.hsm.subd.request("hsmd_sign_withdrawal",  # type: ignore[union-attr]
                                                   {"inputs": inputs, "tx": p.tx.serialize()}, timeout=60)
        except Exception as e:
            raise RpcError(LIGHTNINGD, f"hsmd could not sign: {getattr(e, 'msg', e)}") from None
        return Tx.parse(reply["tx"])

    async def send(self, p: Prepared) -> Tx:
        """Sign, save as ours, broadcast; on failure undo and release the coins."""
        w = self.ld.wallet
        try:
            signed = await self.sign(p)
        except RpcError:
            w.unreserve([u.outpoint for u in p.inputs])
            raise
        w.add_own_tx(signed)
        r = await self.ld.backend.sendrawtransaction(signed.to_hex())
        if not r.get("success"):
            w.forget_own_tx(signed)
            w.unreserve([u.outpoint for u in p.inputs])
            raise RpcError(LIGHTNINGD, f"Error broadcasting transaction: {r.get('errmsg')}. "
                                       "Unsent tx discarded")
        return signed


def register(ld: "LightningD") -> None:
    cmd = ld.registry.command

    @cmd("withdraw", [req("destination", P.string), req("satoshi", P.sat_or_all), opt("feerate", feerate_param),
                      opt("minconf", P.u16, 1), opt("utxos", P.array)], category="bitcoin",
         description="Send {satoshi} (or 'all') to the {destination} address via Bitcoin transaction, at "
                     "optional {feerate}")
    async def withdraw(ctx: RequestContext, destination: str, satoshi: int | None, feerate: Any, minconf: int,
                       utxos: list | None) -> dict:
        script = _script(ld, destination)
        ops = _outpoints(utxos)
        rate = ld.feerates.resolve(feerate, "opening")
        p = ld.spender.prepare([Target(script, satoshi)], rate, minconf, ops, ld.spender.emergency_reserve())
        signed = await ld.spender.send(p)
        return {"tx": signed.to_hex(), "txid": signed.txid_hex, "psbt": ld.spender.psbt(p, signed).to_base64()}

    @cmd("txprepare", [req("outputs", P.array), opt("feerate", feerate_param), opt("minconf", P.u16, 1),
                       opt("utxos", P.array)], category="bitcoin",
         description="Create a transaction, with option to spend in future (either txsend and txdiscard)")
    async def txprepare(ctx: RequestContext, outputs: list, feerate: Any, minconf: int, utxos: list | None) -> dict:
        targets = []
        for o in outputs:
            if not isinstance(o, dict) or len(o) != 1:
                raise RpcError(INVALID_PARAMS, "outputs: each output should be {address: amount}")
            (addr, amount), = o.items()
            try:
                sats = P.sat_or_all(amount)
            except BadType:
                raise RpcError(INVALID_PARAMS, f"outputs: '{amount}' should be a satoshi amount or all") from None
            targets.append(Target(_script(ld, addr), sats))
        rate = ld.feerates.resolve(feerate, "opening")
        p = ld.spender.prepare(targets, rate, minconf, _outpoints(utxos), ld.spender.emergency_reserve())
        ld.spender.prepared[p.tx.txid()] = p
        return {"psbt": ld.spender.psbt(p).to_base64(), "unsigned_tx": p.tx.to_hex(), "txid": p.tx.txid_hex}

    @cmd("txsend", [req("txid", P.sha256_hex)], category="bitcoin",
         description="Sign and broadcast a transaction created by txprepare")
    async def txsend(ctx: RequestContext, txid: bytes) -> dict:
        p = ld.spender.prepared.pop(txid[::-1], None)
        if p is None:
            raise RpcError(LIGHTNINGD, f"{txid.hex()} not an unreleased txid")
        signed = await ld.spender.send(p)
        return {"psbt": ld.spender.psbt(p, signed).to_base64(), "tx": signed.to_hex(), "txid": signed.txid_hex}

    @cmd("txdiscard", [req("txid", P.sha256_hex)], category="bitcoin",
         description="Abandon a transaction created by txprepare")
    async def txdiscard(ctx: RequestContext, txid: bytes) -> dict:
        p = ld.spender.prepared.pop(txid[::-1], None)
        if p is None:
            raise RpcError(LIGHTNINGD, f"{txid.hex()} not an unreleased txid")
        ld.wallet.unreserve([u.outpoint for u in p.inputs])
        return {"unsigned_tx": p.tx.to_hex(), "txid": p.tx.txid_hex}


def _spend_exactly(coins: list[CoinUtxo], targets: list[Target], feerate_perkw: int) -> Selection:
    """The caller named the coins: spend every one of them, excess to change."""
    outs = [TxOut(t.amount or 0, t.script_pubkey) for t in targets]
    lens = [len(t.script_pubkey) for t in targets]
    total_in = sum(c.amount for c in coins)
    need = sum(o.value for o in outs)
    w_no_change = tx_weight([c.weight for c in coins], lens)
    w_change = tx_weight([c.weight for c in coins], lens + [SCRIPT_LEN["p2tr"]])
    change = total_in - need - tx_fee(feerate_perkw, w_change)
    if change >= dust_limit("p2tr"):
        return Selection(tuple(coins), tuple(outs), change, SCRIPT_LEN["p2tr"], total_in - need - change, w_change,
                         "given")
    fee = total_in - need
    if fee < tx_fee(feerate_perkw, w_no_change):
        raise InsufficientFunds(need + tx_fee(feerate_perkw, w_no_change), total_in)
    return Selection(tuple(coins), tuple(outs), 0, 0, fee, w_no_change, "given")


def _outpoints(utxos: list | None) -> list[OutPoint] | None:
    if utxos is None:
        return None
    try:
        return [outpoint(u) for u in utxos]
    except BadType:
        raise RpcError(INVALID_PARAMS, "utxos: should be an array of txid:outnum") from None
