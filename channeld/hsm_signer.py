"""channeld's Signer (channeld/core/signer.py protocol) over hsmd: every
method is one synchronous hsmd request for this channel only."""
from __future__ import annotations

from bitcoin.tx import Tx
from common.htlc_tx import HtlcTx
from common.keyderive import Basepoints
from common.sync_hsm import HsmError, SyncHsm

from .core.errors import SignerError


class HsmSigner:
    def __init__(self, hsm: SyncHsm) -> None:
        self.hsm = hsm
        r = self._call("hsmd_get_channel_basepoints")
        self._funding = r["funding_pubkey"]
        self._basepoints = Basepoints(revocation=r["revocation_basepoint"], payment=r["payment_basepoint"],
                                      delayed_payment=r["delayed_payment_basepoint"], htlc=r["htlc_basepoint"])
        self._points: dict[int, bytes] = {}

    def _call(self, name: str, fields: dict | None = None) -> dict:
        try:
            return self.hsm.call(name, fields)
        except HsmError as e:
            raise SignerError(str(e)) from None

    def funding_pubkey(self) -> bytes:
        return self._funding

    def basepoints(self) -> Basepoints:
        return self._basepoints

    def per_commitment_point(self, n: int) -> bytes:
        p = self._points.get(n)
        if p is None:
            p = self._call("hsmd_get_per_commitment_point", {"n": n})["point"]
            if len(self._points) > 16:  # points are asked for around the current number only
                self._points.pop(min(self._points))
            self._points[n] = p
        return p

    def validate_local_commitment(self, n: int, tx: Tx, funding_witness_script: bytes, funding_sat: int,
                                  counterparty_sig: bytes) -> None:
        self._call("hsmd_validate_commitment_tx", {"n": n, "tx": tx.serialize(), "funding_script":
                                                   funding_witness_script, "funding_sat": funding_sat,
                                                   "sig": counterparty_sig})

    def per_commitment_secret(self, n: int) -> bytes:
        return self._call("hsmd_revoke_commitment_tx", {"n": n})["secret"]

    def sign_local_commitment(self, n: int, tx: Tx, funding_witness_script: bytes, funding_sat: int) -> bytes:
        return self._call("hsmd_sign_local_commitment_tx", {"n": n, "tx": tx.serialize(), "funding_script":
                                                            funding_witness_script, "funding_sat": funding_sat})["sig"]

    def sign_local_htlc_tx(self, n: int, htlc_tx: HtlcTx) -> bytes:
        return self._call("hsmd_sign_local_htlc_tx", {"n": n, "tx": htlc_tx.tx.serialize(),
                                                      "witness_script": htlc_tx.witness_script,
                                                      "amount_sat": htlc_tx.output.amount_sat})["sig"]

    def sign_remote_commitment(self, tx: Tx, funding_witness_script: bytes, funding_sat: int) -> bytes:
        return self._call("hsmd_sign_remote_commitment_tx", {"tx": tx.serialize(), "funding_script":
                                                             funding_witness_script, "funding_sat": funding_sat})["sig"]

    def sign_remote_htlc_tx(self, htlc_tx: HtlcTx, remote_per_commitment_point: bytes) -> bytes:
        return self._call("hsmd_sign_remote_htlc_tx", {"tx": htlc_tx.tx.serialize(),
                                                       "witness_script": htlc_tx.witness_script,
                                                       "amount_sat": htlc_tx.output.amount_sat,
                                                       "remote_per_commitment_point": remote_per_commitment_point,
                                                       "option_anchors": htlc_tx.option_anchors})["sig"]

    def sign_remote_htlc_txs(self, htlc_txs: list[HtlcTx], remote_per_commitment_point: bytes) -> list[bytes]:
        anchors = {h.option_anchors for h in htlc_txs}
        if len(anchors) != 1:
            raise ValueError("HTLC txs of one commitment share option_anchors")
        return self._call("hsmd_sign_remote_htlc_txs", {
            "remote_per_commitment_point": remote_per_commitment_point, "option_anchors": anchors.pop(),
            "htlcs": [{"tx": h.tx.serialize(), "witness_script": h.witness_script,
                       "amount_sat": h.output.amount_sat} for h in htlc_txs]})["sigs"]

    def sign_closing_tx(self, tx: Tx, funding_witness_script: bytes, funding_sat: int) -> bytes:
        return self._call("hsmd_sign_mutual_close_tx", {"tx": tx.serialize(), "funding_script":
                                                        funding_witness_script, "funding_sat": funding_sat})["sig"]
