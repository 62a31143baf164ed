"""BOLT 3 test vectors, parsed at test time from spec/bolts/03-transactions.md.

Covers Appendix C (commitment + HTLC txs, static_remotekey), D (per-commitment
secret generation and storage), E (key derivation) and F (anchors).  Appendix B
(funding tx) is a plain P2PKH spend and is also checked; Appendix A holds only
weight derivations, checked against the fee constants; Appendix G (dual
funding) belongs to the interactive-tx code, not here.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bitcoin.hashes import hash160, hash256, sha256
from bitcoin.keys import sign_digest_der
from bitcoin.script import p2pkh_script, p2wpkh_script, p2wsh_script
from bitcoin.tx import OutPoint, Tx, TxIn
from common.commitment import (
    ChannelParty,
    ChannelSetup,
    HtlcInfo,
    OutputKind,
    Side,
    build_commitment_tx,
    commitment_weight,
    compute_balances,
    decode_commitment_number,
    htlc_outputs,
    set_commitment_witness,
    sign_commitment,
)
from common.htlc_tx import build_htlc_txs
from common.keyderive import (
    Basepoints,
    derive_privkey,
    derive_pubkey,
    derive_revocation_privkey,
    derive_revocation_pubkey,
    pubkey_from_secret,
)
from common.scripts import funding_script
from common.shachain import (
    MAX_INDEX,
    ShachainError,
    ShachainStore,
    generate_from_seed,
    per_commitment_point,
    per_commitment_secret,
)
from wire.internal import internal_schema

SHACHAIN = internal_schema("onchaind")      # the shachain subtype (wire/csv/shachain.csv)

SPEC = Path(__file__).resolve().parent.parent / "spec" / "bolts" / "03-transactions.md"
TEXT = SPEC.read_text()


def _section(start: str, end: str) -> str:
    return TEXT[TEXT.index(start):TEXT.index(end)]


def _hex(v: str) -> bytes:
    v = v.strip()
    if v.startswith("0x"):
        v = v[2:]
    return bytes.fromhex(v)


def _privkey(v: str) -> bytes:
    """Spec private keys carry Bitcoin's trailing 01 'compressed' marker."""
    b = _hex(v)
    assert len(b) == 33 and b[-1] == 1
    return b[:32]


def _int(v: str) -> int:
    v = v.strip()
    return int(v, 16) if v.startswith("0x") else int(v)


# =====================================================================================
# Appendix C parsing
# =====================================================================================

@dataclass
class HtlcTxVector:
    output_index: int
    kind: str  # "success" / "timeout"
    htlc_number: int
    remote_sig: bytes
    local_sig: bytes
    tx_hex: str


@dataclass
class CommitVector:
    name: str
    to_local_msat: int
    to_remote_msat: int
    feerate_per_kw: int
    remote_sig: bytes
    local_sig: bytes
    tx_hex: str
    num_htlcs: int
    base_fee: int | None = None
    actual_fee: int | None = None
    to_local_amount: int | None = None
    to_local_wscript: bytes | None = None
    htlc_wscripts: dict[int, tuple[str, int, bytes]] = field(default_factory=dict)
    htlc_txs: list[HtlcTxVector] = field(default_factory=list)


def _parse_appendix_c() -> tuple[dict[str, str], dict[int, dict[str, str]], list[CommitVector]]:
    sec = _section("# Appendix C:", "# Appendix D:")
    params: dict[str, str] = {}
    htlcs: dict[int, dict[str, str]] = {}
    for m in re.finditer(r"^(?:INTERNAL: |    )?([a-z_]+): ([0-9a-f]+)\s*$", sec, re.M):
        params.setdefault(m.group(1), m.group(2))
    for m in re.finditer(r"^    htlc (\d+) ([a-z_]+): (\S+)\s*$", sec, re.M):
        htlcs.setdefault(int(m.group(1)), {})[m.group(2)] = m.group(3)

    cases: list[CommitVector] = []
    for block in re.split(r"\n\s*\n", sec[sec.index("    name: "):]):
        lines = [ln.strip() for ln in block.strip().splitlines()]
        if not lines or not lines[0].startswith("name: "):
            continue
        kv: dict[str, str] = {}
        v: CommitVector | None = None
        pending: dict = {}
        for ln in lines:
            if m := re.match(r"# signature for output #(\d+) \(htlc-(success|timeout) for htlc #(\d+)\)", ln):
                pending = {"output_index": int(m.group(1)), "kind": m.group(2),
                           "htlc_number": int(m.group(3))}
            elif m := re.match(r"remote_htlc_signature = ([0-9a-f]+)", ln):
                pending["remote_sig"] = _hex(m.group(1))
            elif m := re.match(r"# local_htlc_signature = ([0-9a-f]+)", ln):
                pending["local_sig"] = _hex(m.group(1))
            elif m := re.match(r"htlc_(success|timeout)_tx \(htlc #(\d+)\): ([0-9a-f]+)", ln):
                assert pending["kind"] == m.group(1) and pending["htlc_number"] == int(m.group(2))
                assert v is not None
                v.htlc_txs.append(HtlcTxVector(tx_hex=m.group(3), **pending))
                pending = {}
            elif m := re.match(r"# HTLC #(\d+) (offered|received) amount (\d+) wscript ([0-9a-f]+)", ln):
                kv.setdefault("_htlcw", []).append(  # type: ignore[arg-type]
                    (int(m.group(1)), m.group(2), int(m.group(3)), _hex(m.group(4))))
            elif m := re.match(r"# to_local amount (\d+) wscript ([0-9a-f]+)", ln):
                kv["_tl_amount"], kv["_tl_ws"] = m.group(1), m.group(2)
            elif m := re.match(r"# (base|actual) commitment transaction fee = (\d+)", ln):
                kv["_" + m.group(1)] = m.group(2)
            elif m := re.match(r"#? ?([a-z_ ]+?)(?: =|:) (.+)$", ln):
                kv[m.group(1)] = m.group(2)
            if "num_htlcs" in kv and v is None:
                v = CommitVector(
                    name=kv["name"], to_local_msat=int(kv["to_local_msat"]),
                    to_remote_msat=int(kv["to_remote_msat"]),
                    feerate_per_kw=int(kv["local_feerate_per_kw"]),
                    remote_sig=_hex(kv["remote_signature"]), local_sig=_hex(kv["local_signature"]),
                    tx_hex=kv["output commit_tx"], num_htlcs=int(kv["num_htlcs"]),
                    base_fee=int(kv["_base"]) if "_base" in kv else None,
                    actual_fee=int(kv["_actual"]) if "_actual" in kv else None,
                    to_local_amount=int(kv["_tl_amount"]) if "_tl_amount" in kv else None,
                    to_local_wscript=_hex(kv["_tl_ws"]) if "_tl_ws" in kv else None,
                    htlc_wscripts={n: (d, a, w) for n, d, a, w in kv.get("_htlcw", [])},  # type: ignore
                )
        assert v is not None, f"incomplete vector {lines[0]}"
        assert len(v.htlc_txs) == v.num_htlcs, v.name
        cases.append(v)
    return params, htlcs, cases


C_PARAMS, C_HTLCS, C_CASES = _parse_appendix_c()
F_CASES = json.loads(re.search(r"```yaml\n(.*?)```", _section("# Appendix F:", "# Appendix G:"),
                               re.S).group(1))


def _htlc_numbers(name: str, use_test_htlcs: bool = True) -> list[int]:
    """Which of the appendix's HTLCs a vector uses (stated in the prose)."""
    if not use_test_htlcs or name.startswith("simple commitment tx with no HTLCs"):
        return []
    if "same amount and preimage" in name:
        return [1, 5, 6]
    return [0, 1, 2, 3, 4]


def _htlc(n: int) -> HtlcInfo:
    d = C_HTLCS[n]
    return HtlcInfo(
        offerer=Side.LOCAL if d["direction"] == "local->remote" else Side.REMOTE,
        amount_msat=int(d["amount_msat"]),
        payment_hash=sha256(_hex(d["payment_preimage"])),
        cltv_expiry=int(d["expiry"]),
        htlc_id=n,
    )


def _preimage(n: int) -> bytes:
    return _hex(C_HTLCS[n]["payment_preimage"])


# Secrets (the INTERNAL comment of Appendix C). The HTLC basepoints equal the
# payment basepoints, hence share their secrets.
LOCAL_FUNDING_PRIV = _privkey(C_PARAMS["local_funding_privkey"])
REMOTE_FUNDING_PRIV = _privkey(C_PARAMS["remote_funding_privkey"])
LOCAL_PAYMENT_SECRET = _privkey(C_PARAMS["local_payment_basepoint_secret"])
REMOTE_PAYMENT_SECRET = _privkey(C_PARAMS["remote_payment_basepoint_secret"])
REMOTE_REVOCATION_SECRET = _privkey(C_PARAMS["remote_revocation_basepoint_secret"])
LOCAL_DELAYED_SECRET = _privkey(C_PARAMS["local_delayed_payment_basepoint_secret"])
LOCAL_PCS = _privkey(C_PARAMS["x_local_per_commitment_secret"])
LOCAL_PCP = pubkey_from_secret(LOCAL_PCS)
UNUSED = pubkey_from_secret(b"\x55" * 32)  # local revocation / remote delayed basepoints: not in the vectors


def _setup(option_anchors: bool, dust_limit: int) -> ChannelSetup:
    local = ChannelParty(
        funding_pubkey=_hex(C_PARAMS["local_funding_pubkey"]),
        basepoints=Basepoints(revocation=UNUSED, payment=_hex(C_PARAMS["local_payment_basepoint"]),
                              delayed_payment=pubkey_from_secret(LOCAL_DELAYED_SECRET),
                              htlc=_hex(C_PARAMS["local_htlc_basepoint"])),
        dust_limit_sat=dust_limit,
        to_self_delay=6,  # imposed on the remote: irrelevant to the local commitment
    )
    remote = ChannelParty(
        funding_pubkey=_hex(C_PARAMS["remote_funding_pubkey"]),
        basepoints=Basepoints(revocation=pubkey_from_secret(REMOTE_REVOCATION_SECRET),
                              payment=_hex(C_PARAMS["remote_payment_basepoint"]),
                              delayed_payment=UNUSED,
                              htlc=_hex(C_PARAMS["remote_htlc_basepoint"])),
        dust_limit_sat=354,
        to_self_delay=int(C_PARAMS["local_delay"]),  # the remote imposes local_delay on us
    )
    return ChannelSetup(
        funding_outpoint=OutPoint.from_hex(C_PARAMS["funding_tx_id"], int(C_PARAMS["funding_output_index"])),
        funding_sat=int(C_PARAMS["funding_amount_satoshi"]),
        opener=Side.LOCAL, local=local, remote=remote, option_anchors=option_anchors)


def _build_and_sign(option_anchors: bool, dust_limit: int, feerate: int, to_local_msat: int,
                    to_remote_msat: int, htlc_nums: list[int]):
    setup = _setup(option_anchors, dust_limit)
    params = setup.commitment_params(Side.LOCAL, int(C_PARAMS["commitment_number"]), LOCAL_PCP, feerate)
    htlcs = [_htlc(n) for n in htlc_nums]
    tx, outputs = build_commitment_tx(params, to_local_msat, to_remote_msat, htlcs)
    local_sig = sign_commitment(tx, params, LOCAL_FUNDING_PRIV)
    remote_sig = sign_commitment(tx, params, REMOTE_FUNDING_PRIV)
    set_commitment_witness(tx, params, local_sig, remote_sig)
    htlc_txs = build_htlc_txs(params, tx, outputs)
    local_htlc_priv = derive_privkey(LOCAL_PAYMENT_SECRET, LOCAL_PCP)
    remote_htlc_priv = derive_privkey(REMOTE_PAYMENT_SECRET, LOCAL_PCP)
    signed = []
    for h in htlc_txs:
        rsig = h.sign_as_counterparty(remote_htlc_priv)
        lsig = h.sign_as_holder(local_htlc_priv)
        assert h.verify_counterparty_sig(params.keys.counterparty_htlc_pubkey, rsig)
        h.set_witness(rsig, lsig, _preimage(h.output.htlc.htlc_id) if h.is_success else None)
        signed.append((h, rsig, lsig))
    return params, tx, outputs, local_sig, remote_sig, signed


# =====================================================================================
# Appendix C: static_remotekey commitment and HTLC transactions
# =====================================================================================

def test_appendix_c_parsed_everything():
    # as many cases as "name:" lines in the appendix, and every HTLC tx listed
    assert len(C_CASES) == len(re.findall(r"^    name: ", _section("# Appendix C:", "# Appendix D:"), re.M)) == 16
    assert sum(len(c.htlc_txs) for c in C_CASES) == 33
    assert sorted(C_HTLCS) == list(range(7))


def test_appendix_c_derived_keys():
    setup = _setup(False, 546)
    params = setup.commitment_params(Side.LOCAL, 42, LOCAL_PCP, 0)
    k = params.keys
    assert LOCAL_PCP == _hex(C_PARAMS["local_per_commitment_point"])
    assert pubkey_from_secret(LOCAL_FUNDING_PRIV) == _hex(C_PARAMS["local_funding_pubkey"])
    assert pubkey_from_secret(REMOTE_FUNDING_PRIV) == _hex(C_PARAMS["remote_funding_pubkey"])
    assert pubkey_from_secret(LOCAL_PAYMENT_SECRET) == _hex(C_PARAMS["local_payment_basepoint"])
    assert pubkey_from_secret(REMOTE_PAYMENT_SECRET) == _hex(C_PARAMS["remote_payment_basepoint"])
    assert setup.remote.basepoints.revocation == _hex(C_PARAMS["remote_revocation_basepoint"])
    assert setup.local.basepoints.delayed_payment == _hex(C_PARAMS["local_delayed_payment_basepoint"])
    assert derive_privkey(LOCAL_PAYMENT_SECRET, LOCAL_PCP) == _privkey(C_PARAMS["local_privkey"])
    assert derive_privkey(REMOTE_PAYMENT_SECRET, LOCAL_PCP) == _privkey(C_PARAMS["remote_privkey"])
    assert derive_privkey(LOCAL_DELAYED_SECRET, LOCAL_PCP) == _privkey(C_PARAMS["local_delayed_privkey"])
    assert k.holder_htlc_pubkey == _hex(C_PARAMS["local_htlcpubkey"])
    assert k.counterparty_htlc_pubkey == _hex(C_PARAMS["remote_htlcpubkey"])
    assert k.holder_delayed_pubkey == _hex(C_PARAMS["local_delayedpubkey"])
    assert k.revocation_pubkey == _hex(C_PARAMS["local_revocation_pubkey"])
    assert k.counterparty_payment_pubkey == _hex(C_PARAMS["remote_payment_basepoint"])
    funding_ws = re.search(r"# funding wscript = ([0-9a-f]+)", _section("# Appendix C:", "# Appendix D:"))
    assert params.funding_script.hex() == funding_ws.group(1)
    # "obscured commitment number = 0x2bb038521914 ^ 42"
    assert setup.obscuring_factor == 0x2BB038521914


@pytest.mark.parametrize("v", C_CASES, ids=[c.name for c in C_CASES])
def test_appendix_c_commitment(v: CommitVector):
    params, tx, outputs, local_sig, remote_sig, signed = _build_and_sign(
        False, int(C_PARAMS["local_dust_limit_satoshi"]), v.feerate_per_kw,
        v.to_local_msat, v.to_remote_msat, _htlc_numbers(v.name))
    assert local_sig == v.local_sig
    assert remote_sig == v.remote_sig
    assert tx.to_hex() == v.tx_hex
    assert Tx.from_hex(v.tx_hex).to_hex() == v.tx_hex
    assert decode_commitment_number(tx, params.obscuring_factor) == 42

    # The commented intermediate values too.
    bal = compute_balances(params, v.to_local_msat, v.to_remote_msat,
                           [_htlc(n) for n in _htlc_numbers(v.name)])
    if v.base_fee is not None:
        assert bal.base_fee_sat == v.base_fee
    if v.actual_fee is not None:
        assert params.funding_sat - sum(o.value for o in tx.outputs) == v.actual_fee
    by_kind = {o.kind: o for o in outputs}
    if v.to_local_amount is not None:
        assert by_kind[OutputKind.TO_LOCAL].amount_sat == v.to_local_amount
        assert by_kind[OutputKind.TO_LOCAL].witness_script == v.to_local_wscript
    elif v.base_fee is not None:  # the vector comments its outputs: no to_local listed
        assert OutputKind.TO_LOCAL not in by_kind
    assert by_kind[OutputKind.TO_REMOTE].script_pubkey == p2wpkh_script(_hex(C_PARAMS["remote_payment_basepoint"]))
    hmap = htlc_outputs(outputs)
    assert {o.htlc.htlc_id: (o.kind, o.amount_sat, o.witness_script) for _, o in hmap} == {
        n: (OutputKind.OFFERED_HTLC if d == "offered" else OutputKind.RECEIVED_HTLC, a, w)
        for n, (d, a, w) in v.htlc_wscripts.items()}

    assert len(signed) == v.num_htlcs
    for (h, rsig, lsig), exp in zip(signed, v.htlc_txs):
        assert h.output_index == exp.output_index
        assert h.output.htlc.htlc_id == exp.htlc_number
        assert ("success" if h.is_success else "timeout") == exp.kind
        assert rsig == exp.remote_sig
        assert lsig == exp.local_sig
        assert h.tx.to_hex() == exp.tx_hex


# =====================================================================================
# Appendix F: anchors
# =====================================================================================

def test_appendix_f_parsed_everything():
    assert len(F_CASES) == 9
    assert sum(len(c["HtlcDescs"]) for c in F_CASES) == 15


@pytest.mark.parametrize("v", F_CASES, ids=[c["Name"] for c in F_CASES])
def test_appendix_f_anchor_commitment(v: dict):
    params, tx, outputs, _, remote_sig, signed = _build_and_sign(
        True, v["DustLimitSatoshis"], v["FeePerKw"], v["LocalBalance"], v["RemoteBalance"],
        _htlc_numbers(v["Name"], v["UseTestHtlcs"]))
    assert remote_sig.hex() == v["RemoteSigHex"]
    assert tx.to_hex() == v["ExpectedCommitmentTxHex"]
    kinds = [o.kind for o in outputs]
    if OutputKind.TO_LOCAL in kinds or any(o.is_htlc for o in outputs):
        assert OutputKind.LOCAL_ANCHOR in kinds
    assert [o.amount_sat for o in outputs if o.kind.name.endswith("ANCHOR")] == \
        [330] * sum(k.name.endswith("ANCHOR") for k in kinds)
    assert len(signed) == len(v["HtlcDescs"])
    for (h, rsig, _), exp in zip(signed, v["HtlcDescs"]):
        assert rsig.hex() == exp["RemoteSigHex"]
        assert h.tx.inputs[0].sequence == 1
        assert h.tx.outputs[0].value == h.output.amount_sat  # zero-fee HTLC txs
        assert h.tx.to_hex() == exp["ResolutionTxHex"]


# =====================================================================================
# Appendix A / fees
# =====================================================================================

def test_appendix_a_weights_and_fee_example():
    assert commitment_weight(0, False) == 500 + 224
    assert commitment_weight(0, True) == 900 + 224
    # "Fee Calculation" example: feerate 5000, dust 546, offered 5000/1000 sat,
    # received 7000/800 sat -> weight 1068, base fee 5340.
    setup = _setup(False, 546)
    params = setup.commitment_params(Side.LOCAL, 1, LOCAL_PCP, 5000)
    h = [HtlcInfo(Side.LOCAL, 5000000, b"\x01" * 32, 500), HtlcInfo(Side.LOCAL, 1000000, b"\x02" * 32, 500),
         HtlcInfo(Side.REMOTE, 7000000, b"\x03" * 32, 500), HtlcInfo(Side.REMOTE, 800000, b"\x04" * 32, 500)]
    bal = compute_balances(params, 5_000_000_000, 4_000_000_000, h)
    assert bal.base_fee_sat == 5340
    assert [x.amount_msat for x in bal.untrimmed] == [5000000, 7000000]


# =====================================================================================
# Appendix B: funding transaction
# =====================================================================================

def test_appendix_b_funding_tx():
    sec = _section("# Appendix B:", "# Appendix C:")
    kv = dict(re.findall(r"^    ([a-zA-Z0-9 _]+): (\S+)\s*$", sec, re.M))
    lp, rp = _hex(kv["local_funding_pubkey"]), _hex(kv["remote_funding_pubkey"])
    ws = funding_script(lp, rp)
    assert ws.hex() == re.search(r"# funding witness script = ([0-9a-f]+)", sec).group(1)
    expected = kv["funding tx"]
    tx = Tx.from_hex(expected)
    assert tx.to_hex() == expected
    assert tx.txid_hex == re.search(r"# txid: ([0-9a-f]+)", sec).group(1)
    assert tx.outputs[0].script_pubkey == p2wsh_script(ws)
    assert tx.outputs[0].value == int(kv["funding satoshis"])
    assert tx.outputs[1].value == int(kv["change satoshis"])
    # Re-sign the P2PKH input: RFC6979 must reproduce the published signature.
    priv = _privkey(kv["Block 1 coinbase privkey"])
    coinbase = Tx.from_hex(kv["Block 1 coinbase transaction"])
    assert coinbase.txid_hex == kv["input txid"]
    pub = pubkey_from_secret(priv)
    # Legacy SIGHASH_ALL: the input's scriptSig replaced by the spent scriptPubKey.
    unsigned = Tx(tx.version, [TxIn(tx.inputs[0].prevout, coinbase.outputs[0].script_pubkey,
                                    tx.inputs[0].sequence)], tx.outputs, tx.locktime)
    digest = hash256(unsigned.serialize(include_witness=False) + (1).to_bytes(4, "little"))
    sig = sign_digest_der(priv, digest)
    assert tx.inputs[0].script_sig == bytes([len(sig) + 1]) + sig + b"\x01" + bytes([33]) + pub
    assert coinbase.outputs[0].script_pubkey == p2pkh_script(hash160(pub))


# =====================================================================================
# Appendix D: per-commitment secrets
# =====================================================================================

def _parse_named_blocks(sec: str) -> list[list[tuple[str, str]]]:
    blocks: list[list[tuple[str, str]]] = []
    for ln in sec.splitlines():
        m = re.match(r"^\s+(name|seed|I|output|secret): (.+?)\s*$", ln)
        if not m:
            continue
        if m.group(1) == "name":
            blocks.append([])
        blocks[-1].append((m.group(1), m.group(2)))
    return blocks


GEN_CASES = _parse_named_blocks(_section("## Generation Tests", "## Storage Tests"))
STORE_CASES = _parse_named_blocks(_section("## Storage Tests", "# Appendix E:"))


@pytest.mark.parametrize("case", GEN_CASES, ids=[c[0][1] for c in GEN_CASES])
def test_appendix_d_generate_from_seed(case):
    d = dict(case)
    assert generate_from_seed(_hex(d["seed"]), _int(d["I"])) == _hex(d["output"])


@pytest.mark.parametrize("case", STORE_CASES, ids=[c[0][1] for c in STORE_CASES])
def test_appendix_d_storage(case):
    store = ShachainStore()
    inserted: dict[int, bytes] = {}
    steps = case[1:]
    assert len(steps) % 3 == 0
    saw_error = False
    for i in range(0, len(steps), 3):
        (k1, idx), (k2, secret), (k3, result) = steps[i:i + 3]
        assert (k1, k2, k3) == ("I", "secret", "output")
        index, sec = _int(idx), _hex(secret)
        if result == "OK":
            store.insert_secret(sec, index)
            inserted[index] = sec
        else:
            assert result == "ERROR"
            with pytest.raises(ShachainError):
                store.insert_secret(sec, index)
            saw_error = True
        # Every accepted secret stays retrievable, also after a round trip
        # through the `shachain` subtype (how channeld and onchaind store it).
        store = ShachainStore.from_value(SHACHAIN.decode_subtype("shachain", SHACHAIN.encode_subtype(
            "shachain", store.to_value())))
        for j, s in inserted.items():
            assert store.get_secret(j) == s
    assert saw_error == ("incorrect" in case[0][1])


def test_shachain_store_behaviour():
    seed = b"\xff" * 32
    assert len(GEN_CASES) == 5 and len(STORE_CASES) == 9
    store = ShachainStore()
    assert store.get_secret(MAX_INDEX) is None
    for n in range(100):
        store.insert_commitment_secret(n, per_commitment_secret(seed, n))
    for n in range(100):
        assert store.get_commitment_secret(n) == per_commitment_secret(seed, n)
    assert store.get_commitment_secret(100) is None
    with pytest.raises(ShachainError):  # out of order
        store.insert_commitment_secret(50, per_commitment_secret(seed, 50))
    assert pubkey_from_secret(per_commitment_secret(seed, 3)) == per_commitment_point(seed, 3)
    assert ShachainStore.from_value(ShachainStore().to_value()).min_index is None


# =====================================================================================
# Appendix E: key derivation
# =====================================================================================

def test_appendix_e_key_derivation():
    sec = _section("# Appendix E:", "# Appendix F:")
    kv = dict(re.findall(r"^    ([a-z_]+): (0x[0-9a-f]+)\s*$", sec, re.M))
    base_secret, pcs = _hex(kv["base_secret"]), _hex(kv["per_commitment_secret"])
    base_point, pcp = _hex(kv["base_point"]), _hex(kv["per_commitment_point"])
    assert pubkey_from_secret(base_secret) == base_point
    assert pubkey_from_secret(pcs) == pcp
    assert derive_pubkey(base_point, pcp) == _hex(kv["localpubkey"])
    assert derive_privkey(base_secret, pcp) == _hex(kv["localprivkey"])
    assert pubkey_from_secret(_hex(kv["localprivkey"])) == _hex(kv["localpubkey"])
    assert derive_revocation_pubkey(base_point, pcp) == _hex(kv["revocationpubkey"])
    assert derive_revocation_privkey(base_secret, pcs) == _hex(kv["revocationprivkey"])
    assert pubkey_from_secret(_hex(kv["revocationprivkey"])) == _hex(kv["revocationpubkey"])


# =====================================================================================
# Both commitments from one ChannelSetup
# =====================================================================================

def test_their_commitment_mirrors_ours():
    """Building the remote's commitment from our view must equal building it from
    theirs (swap local/remote): the same tx, byte for byte."""
    seed_l, seed_r = b"\x01" * 32, b"\x02" * 32

    def party(secret_byte: int, delay: int, dust: int) -> ChannelParty:
        pts = [pubkey_from_secret(bytes([secret_byte, i]) * 16) for i in range(5)]
        return ChannelParty(pts[0], Basepoints(*pts[1:]), dust, delay)

    a, b = party(0x10, 144, 546), party(0x20, 720, 354)
    op = OutPoint(b"\xaa" * 32, 1)
    for anchors in (False, True):
        ours = ChannelSetup(op, 1_000_000, Side.LOCAL, a, b, anchors)
        theirs = ChannelSetup(op, 1_000_000, Side.REMOTE, b, a, anchors)
        htlcs = [HtlcInfo(Side.LOCAL, 50_000_000, b"\x01" * 32, 800),
                 HtlcInfo(Side.REMOTE, 20_000_000, b"\x02" * 32, 801)]
        flipped = [HtlcInfo(h.offerer.other, h.amount_msat, h.payment_hash, h.cltv_expiry) for h in htlcs]
        for holder, seed in ((Side.LOCAL, seed_l), (Side.REMOTE, seed_r)):
            pcp = per_commitment_point(seed, 7)
            p1 = ours.commitment_params(holder, 7, pcp, 2500)
            p2 = theirs.commitment_params(holder.other, 7, pcp, 2500)
            assert p1.keys == p2.keys and p1.to_self_delay == p2.to_self_delay
            tx1, o1 = build_commitment_tx(p1, 600_000_000, 330_000_000, htlcs)
            tx2, o2 = build_commitment_tx(p2, 330_000_000, 600_000_000, flipped)
            assert tx1.to_hex() == tx2.to_hex()
            assert [o.kind for o in o1] == [o.kind for o in o2]
            assert p1.to_self_delay == (720 if holder is Side.LOCAL else 144)
