"""BOLT 3 Appendix C (static_remotekey) and F (anchors) vectors reproduced from
a Channel: a channel state at commitment 42 holding the vector's balances,
feerate and HTLCs is stored and restored (serialize.py), then
``latest_local_commitment_tx()`` must give the vector's fully signed
commitment transaction and HTLC transactions, byte for byte.  The peer's
signatures are the vector's; ours are produced by the signer (RFC 6979)."""
from __future__ import annotations

import pytest

import test_bolt3 as v3          # the parsed vectors live there
from bitcoin.keys import der_to_compact
from channeld.core import Channel, ChannelParams, ChannelType, LocalSigner, PartyConfig
from channeld.core.htlcs import Htlc
from common.commitment import Side
from common.keyderive import BasepointSecrets

COMMITMENT_NUMBER = 42


class VectorSigner(LocalSigner):
    """The vector's keys; its per-commitment point for 42 is given, not derived."""

    def per_commitment_point(self, n: int) -> bytes:
        return v3.LOCAL_PCP if n == COMMITMENT_NUMBER else super().per_commitment_point(n)


def vector_channel(anchors: bool, dust_limit: int, feerate: int, to_local_msat: int,
                   to_remote_msat: int, htlc_nums: list[int], remote_sig_der: bytes,
                   remote_htlc_sigs_der: list[bytes]) -> Channel:
    setup = v3._setup(anchors, dust_limit)
    signer = VectorSigner(
        BasepointSecrets(revocation=b"\x55" * 32, payment=v3.LOCAL_PAYMENT_SECRET,
                         delayed_payment=v3.LOCAL_DELAYED_SECRET, htlc=v3.LOCAL_PAYMENT_SECRET),
        v3.LOCAL_FUNDING_PRIV, b"\x00" * 32)

    def party(p, reserve: int) -> PartyConfig:
        return PartyConfig(dust_limit_sat=p.dust_limit_sat, max_htlc_value_in_flight_msat=10**13,
                           channel_reserve_sat=reserve, htlc_minimum_msat=1,
                           to_self_delay=p.to_self_delay, max_accepted_htlcs=483,
                           funding_pubkey=p.funding_pubkey, basepoints=p.basepoints)

    params = ChannelParams(setup.funding_outpoint, setup.funding_sat, Side.LOCAL,
                           party(setup.local, 100_000), party(setup.remote, 100_000),
                           ChannelType(anchors=anchors))
    ch = Channel.new(params, signer, push_msat=0, feerate_per_kw=feerate,
                     remote_first_per_commitment_point=v3.UNUSED)
    # Put the vector's state in: commitment 42, its HTLCs committed long ago.
    htlcs = [v3._htlc(n) for n in htlc_nums]
    log = ch.log
    log.oldest = [COMMITMENT_NUMBER, COMMITMENT_NUMBER]
    log.latest = [COMMITMENT_NUMBER, COMMITMENT_NUMBER]
    log.base_feerate = feerate
    log.base_msat = [to_local_msat + sum(h.amount_msat for h in htlcs if h.offerer is Side.LOCAL),
                     to_remote_msat + sum(h.amount_msat for h in htlcs if h.offerer is Side.REMOTE)]
    for h in htlcs:
        log.htlcs[(h.offerer, h.htlc_id)] = Htlc(h.offerer, h.htlc_id, h.amount_msat, h.payment_hash,
                                                 h.cltv_expiry, bytes(1366), add_at=[0, 0])
    ch.remote_points = {COMMITMENT_NUMBER: v3.UNUSED, COMMITMENT_NUMBER + 1: v3.UNUSED}
    ch.local_sig = der_to_compact(remote_sig_der)
    ch.local_htlc_sigs = [der_to_compact(s) for s in remote_htlc_sigs_der]
    ch.channel_ready_sent = ch.channel_ready_received = True
    # Through the database format and back: the restore re-validates the
    # peer's signature on commitment 42 with the signer.
    return Channel.from_dict(ch.to_dict(), signer)


def _check(ch: Channel, tx_hex: str, htlc_expect: list[tuple[str, int, str]]) -> None:
    tx, htlc_txs = ch.latest_local_commitment_tx()
    assert tx.to_hex() == tx_hex
    assert len(htlc_txs) == len(htlc_expect)
    for h, (kind, htlc_number, exp_hex) in zip(htlc_txs, htlc_expect):
        assert ("success" if h.is_success else "timeout") == kind
        assert h.output.htlc is not None and h.output.htlc.htlc_id == htlc_number
        if h.is_success:   # onchaind adds the preimage; the slot is left empty
            assert h.tx.inputs[0].witness[3] == b""
            h.tx.inputs[0].witness[3] = v3._preimage(htlc_number)
        assert h.tx.to_hex() == exp_hex


@pytest.mark.parametrize("v", v3.C_CASES, ids=[c.name for c in v3.C_CASES])
def test_appendix_c_from_channel_state(v) -> None:
    ch = vector_channel(False, int(v3.C_PARAMS["local_dust_limit_satoshi"]), v.feerate_per_kw,
                        v.to_local_msat, v.to_remote_msat, v3._htlc_numbers(v.name), v.remote_sig,
                        [h.remote_sig for h in v.htlc_txs])
    _check(ch, v.tx_hex, [(h.kind, h.htlc_number, h.tx_hex) for h in v.htlc_txs])


@pytest.mark.parametrize("v", v3.F_CASES, ids=[c["Name"] for c in v3.F_CASES])
def test_appendix_f_from_channel_state(v) -> None:
    nums = v3._htlc_numbers(v["Name"], v["UseTestHtlcs"])
    ch = vector_channel(True, v["DustLimitSatoshis"], v["FeePerKw"], v["LocalBalance"],
                        v["RemoteBalance"], nums, bytes.fromhex(v["RemoteSigHex"]),
                        [bytes.fromhex(h["RemoteSigHex"]) for h in v["HtlcDescs"]])
    tx, htlc_txs = ch.latest_local_commitment_tx()
    assert tx.to_hex() == v["ExpectedCommitmentTxHex"]
    assert len(htlc_txs) == len(v["HtlcDescs"])
    for h, exp in zip(htlc_txs, v["HtlcDescs"]):
        if h.is_success:
            h.tx.inputs[0].witness[3] = v3._preimage(h.output.htlc.htlc_id)
        assert h.tx.to_hex() == exp["ResolutionTxHex"]


def test_vector_channel_balances() -> None:
    v = v3.C_CASES[1]      # all five HTLCs untrimmed
    ch = vector_channel(False, 546, v.feerate_per_kw, v.to_local_msat, v.to_remote_msat,
                        v3._htlc_numbers(v.name), v.remote_sig, [h.remote_sig for h in v.htlc_txs])
    view = ch.log.view(Side.LOCAL, COMMITMENT_NUMBER)
    assert (view.local_msat, view.remote_msat) == (v.to_local_msat, v.to_remote_msat)
    assert view.local_msat + view.remote_msat + sum(h.amount_msat for h in view.htlcs) == 10**10
