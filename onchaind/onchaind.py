"""onchaind: resolves one channel on chain (BOLT 5), from the spend of its
funding output until every output is irrevocably resolved.

The decisions are the pure core's (onchaind/core: ``OnchainState``); this
shell feeds it what the master reports (the spending tx at init, then
blocks, spends of the outpoints it watches, reorgs, preimages, feerates),
carries out its outputs by telling the master (watch, broadcast, preimage
learned, HTLC failed, resolved, warnings, all resolved), signs through hsmd
(fd 3, capability CAP_SIGN_ONCHAIN_TX) and has the master store its state
after every input (``onchaind_persist``, answered once on disk), so that a
restarted onchaind goes on from there.  Every input of the core is
idempotent, so the master may replay chain events freely.

One addition to the core: without anchors our ``to_remote`` output on the
peer's commitment pays the channel's payment basepoint (static_remotekey),
a key the wallet does not know: the shell sweeps it to the wallet (P2WPKH
spend signed by hsmd with the payment basepoint secret) and counts it as
resolved once that sweep is irrevocably deep.

Signing: each method of the core's ``Signer`` is one ``hsmd_sign_onchain_tx``
request whose ``kind`` selects the key (hsmd/channel_keys.py); hsmd computes
the BIP143 digest itself from the transaction it is shown.
"""
from __future__ import annotations

import asyncio
from typing import Any

from bitcoin.script import p2pkh_script_code, p2wsh_script
from bitcoin.tx import SIGHASH_ALL, OutPoint, Tx, TxIn, TxOut
from common.daemon import Daemon
from common.daemon_conn import DaemonConn, Msg, RequestFailed
from common.msgconn import ConnectionClosed
from common.sync_hsm import SyncHsm
from wire.internal import internal_schema

from .onchain_channel import parse_channel
from .core import (IRREVOCABLE_DEPTH, AllResolved, Broadcast, HtlcFailed, OnchainState, Output, OutputType,
                   PreimageLearned, Resolved, Warn, Watch, dust_threshold, fee_for_weight)
from .core.persist import outpoint_map, outpoint_values
from .core.sweep import MAX_SIG_LEN, SEQUENCE_RBF

# hsmd_sign_onchain_tx kinds (hsmd/channel_keys.py)
KIND_DELAYED, KIND_LOCAL_HTLC, KIND_REMOTE_HTLC, KIND_PENALTY, KIND_TO_REMOTE = range(5)
#: any valid point, for the requests whose key needs none (secp256k1's G)
_NO_POINT = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
_NO_SECRET = bytes(32)


class HsmOnchainSigner:
    """The core's Signer (onchaind/core/signer.py) over hsmd."""

    def __init__(self, hsm: SyncHsm) -> None:
        self.hsm = hsm

    def _sign(self, kind: int, tx: bytes, index: int, witness_script: bytes, amount_sat: int,
              point: bytes = _NO_POINT, secret: bytes = _NO_SECRET) -> bytes:
        return self.hsm.call("hsmd_sign_onchain_tx", {
            "kind": kind, "tx": tx, "input_index": index, "witness_script": witness_script,
            "amount_sat": amount_sat, "point": point, "secret": secret})["der_sig"]

    def sign_delayed_payment_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                                   amount_sat: int, per_commitment_point: bytes) -> bytes:
        return self._sign(KIND_DELAYED, tx, input_index, witness_script, amount_sat, per_commitment_point)

    def sign_local_htlc_tx(self, tx: bytes, input_index: int, witness_script: bytes,
                           amount_sat: int, per_commitment_point: bytes) -> bytes:
        return self._sign(KIND_LOCAL_HTLC, tx, input_index, witness_script, amount_sat, per_commitment_point)

    def sign_remote_htlc_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                               amount_sat: int, remote_per_commitment_point: bytes) -> bytes:
        return self._sign(KIND_REMOTE_HTLC, tx, input_index, witness_script, amount_sat,
                          remote_per_commitment_point)

    def sign_penalty_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                           amount_sat: int, revocation_secret: bytes) -> bytes:
        return self._sign(KIND_PENALTY, tx, input_index, witness_script, amount_sat, secret=revocation_secret)

    def sign_to_remote_to_us(self, tx: bytes, input_index: int, witness_script: bytes,
                             amount_sat: int) -> bytes:
        return self._sign(KIND_TO_REMOTE, tx, input_index, witness_script, amount_sat)


def build_to_us_sweep(outpoint: OutPoint, amount_sat: int, pubkey: bytes, dest: bytes, feerate_per_kw: int,
                      signer: HsmOnchainSigner) -> tuple[Tx | None, int]:
    """Sweep of a P2WPKH output of ``pubkey`` (our payment basepoint) to
    ``dest``; fee by the core's formula (sweep.py).  (None, fee) if dust."""
    tx = Tx(version=2, inputs=[TxIn(outpoint, b"", SEQUENCE_RBF)], outputs=[TxOut(amount_sat, dest)])
    tx.inputs[0].witness = [b"\x00" * MAX_SIG_LEN, pubkey]
    fee = fee_for_weight(tx.weight(), feerate_per_kw)
    if amount_sat - fee < dust_threshold(dest):
        return None, fee
    tx = Tx(version=2, inputs=[TxIn(outpoint, b"", SEQUENCE_RBF)], outputs=[TxOut(amount_sat - fee, dest)])
    sig = signer.sign_to_remote_to_us(tx.serialize(include_witness=False), 0, p2pkh_script_code(pubkey),
                                      amount_sat)
    tx.inputs[0].witness = [sig + bytes([SIGHASH_ALL]), pubkey]
    return tx, fee


def _max_weight(htlc_tx: Tx) -> int:
    """Weight of a signed HTLC tx with both signatures at their longest (our
    signature is made again once the fee inputs are in)."""
    sigs = htlc_tx.inputs[0].witness[1:3]
    return htlc_tx.weight() + sum(MAX_SIG_LEN - len(s) for s in sigs)


class Onchaind:
    MASTER_HANDLERS = {
        "onchaind_init": "handle_init",
        "onchaind_block": "handle_block",
        "onchaind_block_disconnected": "handle_block_disconnected",
        "onchaind_spent": "handle_spent",
        "onchaind_tx_confirmed": "handle_tx_confirmed",
        "onchaind_preimage": "handle_preimage",
        "onchaind_feerate": "handle_feerate",
    }

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.status = d.status
        handlers = {name: getattr(self, meth) for name, meth in self.MASTER_HANDLERS.items()}
        schema = internal_schema("onchaind")
        self.master = DaemonConn(d.master, schema, handlers, on_error=self._on_error)
        self._state_codec = schema.subtype("onchaind_state")
        assert d.hsm_fd is not None, "onchaind needs hsmd (fd 3)"
        self.signer = HsmOnchainSigner(SyncHsm(d.hsm_fd))
        self.st: OnchainState | None = None
        #: direct sweeps of our to_remote: outpoint -> feerate pinned at first build
        self.to_us: dict[OutPoint, int] = {}
        self._to_us_cache: dict[tuple[str, int], tuple[Tx | None, int]] = {}
        self._to_us_watched: set[str] = set()
        self._to_us_announced: dict[str, bytes] = {}
        #: anchors' zero-fee HTLC txs waiting for wallet coins (retried on each block)
        self._unfunded: dict[OutPoint, Broadcast] = {}
        #: zero-fee HTLC tx (txid hex) -> the tx with wallet inputs broadcast instead, and its feerate
        self._funded: dict[str, tuple[str, int]] = {}
        self.core_all_resolved = False
        self._all_told = False
        self._persisted: tuple[bytes, list[str]] | None = None
        self._failure: BaseException | None = None
        self._finished = asyncio.Event()

    def _on_error(self, e: Exception) -> None:
        # A bug, or the master sent something we cannot use: exit failing, so
        # the master restarts us from the last stored state.  The master
        # closing the link (a request cut short) is the normal end.
        if not isinstance(e, ConnectionClosed):
            self._failure = e
        self._finished.set()

    async def run(self) -> None:
        self.master.start()
        waits = [asyncio.ensure_future(self.master.wait_closed()), asyncio.ensure_future(self._finished.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if self._failure is not None:
            raise self._failure

    # ------------------------------------------------------------------ master messages
    async def handle_init(self, msg: Msg) -> None:
        f = msg.fields
        if f["state"] is not None:
            outs = self._restore(f["state"])
        else:
            if f["channel"] is None or f["extra"] is None:
                raise ValueError("onchaind_init without a saved state needs the channel and the master's extra")
            ch = parse_channel(f["channel"], f["extra"],
                               sweep_scriptpubkey=f["sweep_script"], feerate_per_kw=f["feerate_per_kw"],
                               block_height=f["tip"], reasonable_depth=f["reasonable_depth"])
            tx = Tx.parse(f["spending_tx"])
            self.st, outs = OnchainState.start(ch, tx, f["spend_height"] or None, self.signer)
            c = self.st.classification
            self.status.info(f"funding output spent by {c.kind.value} {tx.txid_hex}"
                             + (f" (commitment {c.commitment_number}, {c.which})" if c.which else ""))
        st = self.st
        assert st is not None
        st.feerate_changed(f["feerate_per_kw"])
        outs += st.block(f["tip"])
        await self._emit(outs)

    def _restore(self, saved: dict) -> list[Output]:
        # The master keeps watches and broadcasts in memory only: have the
        # core announce them again.
        saved = dict(saved, announced=[], emitted=[e for e in saved["emitted"] if not e.startswith("watch:")])
        st = self.st = OnchainState.from_value(saved, self.signer)
        self.to_us = outpoint_map(saved["to_us"])
        self.core_all_resolved = saved["core_all_resolved"]
        self.status.info(f"restarted from saved state at height {st.tip}")
        # any input re-derives everything: feed the last block again
        st.tip -= 1
        return st.block(st.tip + 1)

    async def handle_block(self, msg: Msg) -> None:
        if self.st is not None:
            outs = self.st.block(msg["height"])
            # zero-fee HTLC txs the wallet could not pay for yet, unless spent since
            outs += [o for op, o in self._unfunded.items() if op not in self.st.spends]
            self._unfunded.clear()
            await self._emit(outs)

    async def handle_block_disconnected(self, msg: Msg) -> None:
        if self.st is not None:
            self.status.unusual(f"reorg: block {msg['height']} left the chain")
            await self._emit(self.st.block_disconnected(msg["height"]))

    async def handle_spent(self, msg: Msg) -> None:
        if self.st is not None:
            op = OutPoint(msg["txid"], msg["outnum"])
            await self._emit(self.st.output_spent(op, Tx.parse(msg["tx"]), msg["height"] or None))

    async def handle_tx_confirmed(self, msg: Msg) -> None:
        if self.st is not None:
            await self._emit(self.st.tx_confirmed(msg["txid"], msg["height"]))

    async def handle_preimage(self, msg: Msg) -> None:
        if self.st is None:
            return
        try:
            outs = self.st.preimage(msg["payment_hash"], msg["preimage"])
        except ValueError as e:
            self.status.unusual(f"ignoring preimage from the master: {e}")
            return
        await self._emit(outs)

    async def handle_feerate(self, msg: Msg) -> None:
        if self.st is not None:
            self.st.feerate_changed(msg["feerate_per_kw"])

    # ------------------------------------------------------------------ the core's outputs
    def _watch(self, op: OutPoint) -> None:
        self.master.send("onchaind_watch", {"txid": op.txid, "outnum": op.index})

    def _broadcast(self, op: OutPoint, tx: Tx, not_before: int, feerate: int, fee: int, reason: str,
                   wallet_inputs: int = 0, spent_sat: int = 0, spent_script: bytes = b"") -> None:
        self.status.debug(f"{reason}: {tx.txid_hex} fee {fee} sat ({feerate} sat/kw), from height {not_before}")
        self.master.send("onchaind_broadcast", {"txid": op.txid, "outnum": op.index, "tx": tx.serialize(),
                                                "not_before_height": not_before, "feerate_per_kw": feerate,
                                                "fee_sat": fee, "reason": reason[:1000],
                                                "wallet_inputs": wallet_inputs, "spent_sat": spent_sat,
                                                "spent_script": spent_script})

    async def _fund_htlc_tx(self, o: Broadcast) -> None:
        """Anchors: our zero-fee HTLC tx, with wallet coins the master gives
        (reserved for it) paying the current feerate; we sign the HTLC input
        (SIGHASH_ALL over all of it), hsmd signs the coins at the master.
        Without coins it is retried on each block (and a warning says why)."""
        st = self.st
        assert st is not None
        feerate = st.feerate_per_kw
        try:
            r = await self.master.request("onchaind_fee_inputs", {
                "txid": o.outpoint.txid, "outnum": o.outpoint.index, "weight": _max_weight(o.tx),
                "feerate_per_kw": feerate, "not_before_height": o.not_before_height})
        except RequestFailed as e:
            self._unfunded[o.outpoint] = o
            self.master.send("onchaind_warn", {"message": f"{o.reason}: no wallet funds to pay for this "
                                                          f"zero-fee HTLC tx: {e.msg.fields.get('reason')}"})
            return
        self._unfunded.pop(o.outpoint, None)
        ins = [TxIn(OutPoint(i["txid"], i["outnum"]), b"", SEQUENCE_RBF) for i in r["inputs"]]
        tx = st.complete_htlc_tx(o.outpoint, ins, [TxOut(r["change_sat"], r["change_script"])])
        # the core's status line names the zero-fee tx: show the one broadcast
        self._funded[o.tx.txid_hex] = (tx.txid_hex, feerate)
        spent_sat = o.tx.outputs[0].value        # zero fee: the HTLC output's amount
        fee = spent_sat + sum(i["amount_sat"] for i in r["inputs"]) - sum(x.value for x in tx.outputs)
        self._broadcast(o.outpoint, tx, o.not_before_height, feerate, fee, o.reason, len(ins), spent_sat,
                        p2wsh_script(o.tx.inputs[0].witness[-1]))

    async def _emit(self, outs: list[Output]) -> None:
        for o in outs:
            if isinstance(o, Watch):
                self._watch(o.outpoint)
            elif isinstance(o, Broadcast):
                if o.needs_fee_inputs:
                    await self._fund_htlc_tx(o)
                    continue
                self._broadcast(o.outpoint, o.tx, o.not_before_height, o.feerate_per_kw or 0, o.fee_sat or 0,
                                o.reason)
            elif isinstance(o, PreimageLearned):
                self.status.info(f"preimage of {o.payment_hash.hex()} learned on chain")
                self.master.send("onchaind_preimage_learned", {"payment_hash": o.payment_hash,
                                                               "preimage": o.preimage})
            elif isinstance(o, HtlcFailed):
                self.status.info(f"our HTLC {o.htlc_id} failed on chain")
                self.master.send("onchaind_htlc_failed", {"htlc_id": o.htlc_id})
            elif isinstance(o, Resolved):
                self.master.send("onchaind_resolved", {
                    "txid": o.outpoint.txid, "outnum": o.outpoint.index, "by_txid": o.txid or bytes(32),
                    "height": o.height, "resolved_by": o.resolved_by.value})
            elif isinstance(o, Warn):
                self.status.unusual(o.message)
                self.master.send("onchaind_warn", {"message": o.message[:60000]})
            elif isinstance(o, AllResolved):
                self.core_all_resolved = True
        self._to_us_sweeps()
        if self.core_all_resolved and not self._all_told and self._to_us_done():
            self._all_told = True
            self.status.info("all outputs irrevocably resolved")
            self.master.send("onchaind_all_resolved", {})
        await self._persist()

    async def _persist(self) -> None:
        st = self.st
        assert st is not None
        state = dict(st.to_value(), to_us=outpoint_values(self.to_us), core_all_resolved=self.core_all_resolved)
        sealed = self._state_codec.seal(state)     # checked; and compared with the last one stored
        status = [self._funded_line(line) for line in st.status_lines()] + self._to_us_lines()
        if (sealed.data, status) == self._persisted:
            return
        try:
            await self.master.request("onchaind_persist", {"state": sealed, "status": status})
        except RequestFailed as e:
            raise RuntimeError(f"master refused to persist: {e.msg.fields.get('reason')}") from None
        self._persisted = (sealed.data, status)

    def _funded_line(self, line: str) -> str:
        for zero_fee, (txid, feerate) in self._funded.items():
            if zero_fee in line:
                head = line.split(zero_fee)[0]
                return f"{head}{txid} at {feerate} sat/kw (fee paid by wallet inputs)"
        return line

    # ------------------------------------------------------------------ our to_remote (no anchors)
    def _to_us_outputs(self) -> list[tuple[Any, Tx, int, int]]:
        """(resolution, sweep, fee, feerate) of each confirmed P2WPKH output to
        our payment basepoint worth sweeping."""
        st = self.st
        assert st is not None
        out = []
        pub = st.channel.setup.local.basepoints.payment
        for r in st.resolutions():
            if r.output_type is not OutputType.OUTPUT_TO_US or r.created_height is None:
                continue
            key = str(r.outpoint)
            feerate = self.to_us.setdefault(r.outpoint, st.feerate_per_kw)
            built = self._to_us_cache.get((key, feerate))
            if built is None:
                built = self._to_us_cache[(key, feerate)] = build_to_us_sweep(
                    r.outpoint, r.amount_sat, pub, st.channel.sweep_scriptpubkey, feerate, self.signer)
            tx, fee = built
            if tx is not None:
                out.append((r, tx, fee, feerate))
        return out

    def _to_us_sweeps(self) -> None:
        st = self.st
        assert st is not None
        for r, tx, fee, feerate in self._to_us_outputs():
            key = str(r.outpoint)
            if key not in self._to_us_watched:
                self._to_us_watched.add(key)
                self._watch(r.outpoint)
            fact = st.spends.get(r.outpoint)
            if fact is not None and fact.height is not None:
                self._to_us_announced.pop(key, None)
            elif self._to_us_announced.get(key) != tx.txid():
                self._to_us_announced[key] = tx.txid()
                assert r.created_height is not None
                self._broadcast(r.outpoint, tx, r.created_height, feerate, fee,
                                f"{r.name}->OUR_TO_REMOTE_SWEEP")

    def _to_us_done(self) -> bool:
        st = self.st
        assert st is not None
        for r, _tx, _fee, _rate in self._to_us_outputs():
            fact = st.spends.get(r.outpoint)
            if fact is None or fact.height is None or st.tip - fact.height + 1 < IRREVOCABLE_DEPTH:
                return False
        return True

    def _to_us_lines(self) -> list[str]:
        st = self.st
        assert st is not None
        lines = []
        for r, tx, fee, feerate in self._to_us_outputs():
            fact = st.spends.get(r.outpoint)
            if fact is not None and fact.height is not None:
                lines.append(f"{r.name}: swept to the wallet by {fact.tx.txid_hex} "
                             f"({st.tip - fact.height + 1} confirmations)")
            else:
                lines.append(f"{r.name}: sweeping to the wallet: {tx.txid_hex} at {feerate} sat/kw")
        return lines


async def main(d: Daemon) -> None:
    await Onchaind(d).run()
