"""regtestd (contrib/regtest) as a real process, driven through python-bitcoinrpc.

Most tests share one chain (module fixture) to stay fast; restart, cookie,
configuration and command-line tests run their own processes.
"""
from __future__ import annotations

import base64
import http.client
import itertools
import json
import re
import struct
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
import zmq
from bitcoinrpc.authproxy import AuthServiceProxy, JSONRPCException

from bitcoin.address import script_to_address
from bitcoin.block import Block
from bitcoin.hashes import hash256, sha256
from bitcoin.keys import pubkey_of
from bitcoin.networks import NETWORKS
from bitcoin.script import OP_CHECKLOCKTIMEVERIFY, OP_CHECKSEQUENCEVERIFY, OP_CHECKSIG, OP_DROP, build_script, \
    p2wpkh_script, p2wsh_script, script_num
from bitcoin.tx import OutPoint, Tx, TxIn, TxOut
from contrib.regtest.testing import RegtestChain, free_port, regtestd_command, sign_p2wpkh, sign_p2wsh, to_sats
from regtest_fixture import regtestd_factory, regtestd_module  # noqa: F401  (fixtures)

NET = NETWORKS["regtest"]
KEY = sha256(b"test_regtestd key")
PUB = pubkey_of(KEY)
SPK = p2wpkh_script(PUB)
ADDR = script_to_address(SPK, NET)
FEE = 1000          # sats: ~9 sat/vB for a 1-in 1-out P2WPKH spend


# -- helpers ------------------------------------------------------------------------------
def rpc_error(fn: Callable[..., Any], *args: Any) -> JSONRPCException:
    with pytest.raises(JSONRPCException) as e:
        fn(*args)
    return e.value


class Coinbases:
    """Hands out the test key's coinbase outputs, oldest first, never twice."""

    def __init__(self, chain: RegtestChain) -> None:
        self.chain = chain
        self.heights = itertools.count(1)

    def take(self) -> tuple[str, int, int]:
        """(txid, vout, sats) of a coinbase that can be spent in the next block."""
        h = next(self.heights)
        rpc = self.chain.rpc
        while rpc.getblockcount() + 1 - h < 100:
            self.chain.mine(1, ADDR)
        cb = rpc.getblock(rpc.getblockhash(h), 2)["tx"][0]
        assert cb["vout"][0]["scriptPubKey"]["address"] == ADDR
        return cb["txid"], 0, to_sats(cb["vout"][0]["value"])


def spend(coins: list[tuple[str, int, int]], outputs: list[tuple[bytes, int]], *, sign_amounts: list[int] | None = None,
          sequence: int = 0xFFFFFFFD, locktime: int = 0, version: int = 2) -> Tx:
    """A transaction spending P2WPKH coins of KEY, signed (BIP143)."""
    tx = Tx(version=version, locktime=locktime, inputs=[TxIn(OutPoint.from_hex(t, v), b"", sequence) for t, v, _ in coins],
            outputs=[TxOut(v, s) for s, v in outputs])
    for i, (_, _, value) in enumerate(coins):
        sign_p2wpkh(tx, i, KEY, sign_amounts[i] if sign_amounts else value)
    return tx


@pytest.fixture(scope="module")
def chain(regtestd_module: RegtestChain) -> RegtestChain:  # noqa: F811
    """The shared chain, with 101 blocks mined to the test key (timed)."""
    t0 = time.monotonic()
    regtestd_module.mine(101, ADDR)
    regtestd_module.mine_101_seconds = time.monotonic() - t0  # type: ignore[attr-defined]
    return regtestd_module


@pytest.fixture(scope="module")
def coinbases(chain: RegtestChain) -> Coinbases:
    return Coinbases(chain)


# -- blocks --------------------------------------------------------------------------------
def test_mine_101_blocks(chain: RegtestChain) -> None:
    rpc = chain.rpc
    assert chain.mine_101_seconds < 3.0, chain.mine_101_seconds  # type: ignore[attr-defined]
    assert rpc.getblockcount() >= 101
    info = rpc.getblockchaininfo()
    assert info["chain"] == "regtest" and info["initialblockdownload"] is False
    assert info["verificationprogress"] == 1 and info["bestblockhash"] == rpc.getbestblockhash()
    b1 = rpc.getblock(rpc.getblockhash(1), 2)
    assert b1["tx"][0]["vin"][0]["coinbase"] == "5100"            # BIP34: OP_1, then OP_0
    b20 = rpc.getblock(rpc.getblockhash(20), 2)
    assert b20["tx"][0]["vin"][0]["coinbase"] == "011400"
    out0 = b20["tx"][0]["vout"][0]
    assert out0["value"] == Decimal("50.00000000") and out0["scriptPubKey"]["address"] == ADDR
    assert b20["tx"][0]["vout"][1]["scriptPubKey"]["hex"].startswith("6a24aa21a9ed")   # witness commitment
    assert b20["bits"] == "207fffff" and b20["confirmations"] == rpc.getblockcount() - 19
    # Raw forms agree with the decoded ones.
    raw = bytes.fromhex(rpc.getblock(b20["hash"], 0))
    assert Block.parse(raw).hash_hex == b20["hash"]
    assert rpc.getblockheader(b20["hash"], False) == raw[:80].hex()
    assert rpc.getblockheader(b20["hash"])["nextblockhash"] == rpc.getblockhash(21)
    assert rpc.getblock(b20["hash"])["tx"] == [b20["tx"][0]["txid"]]
    txo = rpc.gettxout(b20["tx"][0]["txid"], 0)
    assert txo["coinbase"] is True and txo["value"] == Decimal("50")


def test_spend_mature_coinbase_and_mine_it(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    coin = coinbases.take()
    tx = spend([coin], [(SPK, coin[2] - FEE)])
    assert rpc.sendrawtransaction(tx.to_hex()) == tx.txid_hex
    assert tx.txid_hex in rpc.getrawmempool()
    entry = rpc.getmempoolentry(tx.txid_hex)
    assert entry["fees"]["base"] == Decimal(FEE) / 10**8 and entry["vsize"] == tx.vsize()
    assert rpc.gettxout(coin[0], 0) is None                          # spent in the mempool
    assert rpc.gettxout(coin[0], 0, False)["confirmations"] > 0      # still unspent on chain
    assert rpc.gettxout(tx.txid_hex, 0)["confirmations"] == 0
    assert rpc.getrawtransaction(tx.txid_hex) == tx.to_hex()
    assert rpc.decoderawtransaction(tx.to_hex())["txid"] == tx.txid_hex
    assert rpc.testmempoolaccept([tx.to_hex()])[0]["reject-reason"] == "txn-already-in-mempool"
    assert rpc.sendrawtransaction(tx.to_hex()) == tx.txid_hex        # resending is fine
    # A child of the unconfirmed transaction is accepted and mined after it.
    child = spend([(tx.txid_hex, 0, coin[2] - FEE)], [(SPK, coin[2] - 2 * FEE)])
    rpc.sendrawtransaction(child.to_hex())
    assert rpc.getmempoolentry(child.txid_hex)["depends"] == [tx.txid_hex]
    [bh] = chain.mine(1, ADDR)
    block = rpc.getblock(bh, 2)
    assert [t["txid"] for t in block["tx"][1:]] == [tx.txid_hex, child.txid_hex]
    assert block["tx"][1]["fee"] == Decimal(FEE) / 10**8
    assert to_sats(block["tx"][0]["vout"][0]["value"]) == 50 * 10**8 + 2 * FEE
    assert rpc.getrawmempool() == []
    v = rpc.getrawtransaction(tx.txid_hex, True)
    assert v["blockhash"] == bh and v["confirmations"] == 1 and v["hex"] == tx.to_hex()
    e = rpc_error(rpc.sendrawtransaction, child.to_hex())           # its output is unspent
    assert e.code == -27 and "already in utxo set" in e.message
    e = rpc_error(rpc.sendrawtransaction, tx.to_hex())              # its output is spent
    assert e.code == -25 and e.message == "bad-txns-inputs-missingorspent"


def test_rejects_bad_signatures(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    coin = coinbases.take()
    bad = spend([coin], [(SPK, coin[2] - FEE)])
    sig = bytearray(bad.inputs[0].witness[0])
    sig[10] ^= 1                                                     # corrupt r
    bad.inputs[0].witness[0] = bytes(sig)
    e = rpc_error(rpc.sendrawtransaction, bad.to_hex())
    assert e.code == -26 and "mandatory-script-verify-flag-failed" in e.message
    wrong_amount = spend([coin], [(SPK, coin[2] - FEE)], sign_amounts=[coin[2] + 1])
    e = rpc_error(rpc.sendrawtransaction, wrong_amount.to_hex())
    assert e.code == -26 and "mandatory-script-verify-flag-failed" in e.message
    assert rpc.getrawmempool() == []
    good = spend([coin], [(SPK, coin[2] - FEE)])                     # the coin is still spendable
    assert rpc.testmempoolaccept([good.to_hex()])[0]["allowed"] is True


def test_rejects_double_spends(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    coin = coinbases.take()
    first = spend([coin], [(SPK, coin[2] - FEE)])
    rpc.sendrawtransaction(first.to_hex())
    same_fee = spend([coin], [(SPK, coin[2] - FEE - 1), (SPK, 1000)][:1])
    same_fee.outputs[0].value = coin[2] - FEE                        # different tx, same fee
    same_fee.locktime = 1
    sign_p2wpkh(same_fee, 0, KEY, coin[2])
    e = rpc_error(rpc.sendrawtransaction, same_fee.to_hex())
    assert e.code == -26 and e.message.startswith("insufficient fee")
    # Full RBF (bitcoind 28's default): a better-paying double spend replaces it.
    better = spend([coin], [(SPK, coin[2] - 3 * FEE)])
    rpc.sendrawtransaction(better.to_hex())
    assert rpc.getrawmempool() == [better.txid_hex]
    chain.mine(1, ADDR)
    e = rpc_error(rpc.sendrawtransaction, first.to_hex())
    assert e.code == -25 and e.message == "bad-txns-inputs-missingorspent"
    assert rpc.testmempoolaccept([first.to_hex()])[0]["reject-reason"] == "missing-inputs"


def test_rejects_immature_coinbase_and_low_fee(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    height = rpc.getblockcount()
    cb = rpc.getblock(rpc.getblockhash(height - 5), 2)["tx"][0]
    coin = (cb["txid"], 0, to_sats(cb["vout"][0]["value"]))
    e = rpc_error(rpc.sendrawtransaction, spend([coin], [(SPK, coin[2] - FEE)]).to_hex())
    assert e.code == -26 and "bad-txns-premature-spend-of-coinbase" in e.message
    mature = coinbases.take()
    e = rpc_error(rpc.sendrawtransaction, spend([mature], [(SPK, mature[2] - 50)]).to_hex())
    assert e.code == -26 and e.message.startswith("min relay fee not met")
    e = rpc_error(rpc.sendrawtransaction, spend([mature], [(SPK, mature[2] + 1)]).to_hex())
    assert e.code == -26 and "bad-txns-in-belowout" in e.message
    huge_fee = spend([mature], [(SPK, 10_000)])
    e = rpc_error(rpc.sendrawtransaction, huge_fee.to_hex())
    assert e.code == -25 and "Fee exceeds maximum" in e.message
    assert rpc.sendrawtransaction(huge_fee.to_hex(), 0) == huge_fee.txid_hex   # maxfeerate=0: no limit
    chain.mine(1, ADDR)


def _fund_script(chain: RegtestChain, coinbases: Coinbases, witness_script: bytes) -> tuple[str, int, int, int]:
    """Confirm an output paying P2WSH(witness_script); returns (txid, vout, sats, height)."""
    coin = coinbases.take()
    value = coin[2] - FEE
    tx = spend([coin], [(p2wsh_script(witness_script), value)])
    chain.rpc.sendrawtransaction(tx.to_hex())
    chain.mine(1, ADDR)
    return tx.txid_hex, 0, value, chain.rpc.getblockcount()


def _spend_script(outpoint: tuple[str, int, int, int], witness_script: bytes, sequence: int, locktime: int = 0) -> Tx:
    txid, vout, value, _ = outpoint
    tx = Tx(version=2, locktime=locktime, inputs=[TxIn(OutPoint.from_hex(txid, vout), b"", sequence)],
            outputs=[TxOut(value - FEE, SPK)])
    sign_p2wsh(tx, 0, KEY, witness_script, value)
    return tx


def test_csv_relative_height_lock(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    ws = build_script([0x55, OP_CHECKSEQUENCEVERIFY, OP_DROP, PUB, OP_CHECKSIG])      # 5 blocks
    funded = _fund_script(chain, coinbases, ws)
    tx = _spend_script(funded, ws, sequence=5)
    for _ in range(4):             # confirmed at H: spendable in block H+5, i.e. from tip H+4
        e = rpc_error(rpc.sendrawtransaction, tx.to_hex())
        assert e.code == -26 and e.message == "non-BIP68-final"
        if rpc.getblockcount() < funded[3] + 4:
            chain.mine(1, ADDR)
    assert rpc.getblockcount() == funded[3] + 4
    short = _spend_script(funded, ws, sequence=4)              # final by BIP68, but the script wants 5
    e = rpc_error(rpc.sendrawtransaction, short.to_hex())
    assert e.code == -26 and "mandatory-script-verify-flag-failed" in e.message
    assert rpc.sendrawtransaction(tx.to_hex()) == tx.txid_hex
    [bh] = chain.mine(1, ADDR)
    assert tx.txid_hex in rpc.getblock(bh)["tx"]


def test_csv_relative_time_lock(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    seq = (1 << 22) | 1                                        # 512 seconds
    ws = build_script([script_num(seq), OP_CHECKSEQUENCEVERIFY, OP_DROP, PUB, OP_CHECKSIG])
    funded = _fund_script(chain, coinbases, ws)
    coin_mtp = rpc.getblockheader(rpc.getblockhash(funded[3] - 1))["mediantime"]
    tx = _spend_script(funded, ws, sequence=seq)

    def tip_mtp() -> int:
        return rpc.getblockheader(rpc.getbestblockhash())["mediantime"]
    # BIP68: spendable once the tip's median time past exceeds coin_mtp + 511.
    while tip_mtp() <= coin_mtp + 511:
        e = rpc_error(rpc.sendrawtransaction, tx.to_hex())
        assert e.message == "non-BIP68-final"
        chain.mine(max(1, min(100, coin_mtp + 511 - tip_mtp())), ADDR)
    assert rpc.sendrawtransaction(tx.to_hex()) == tx.txid_hex
    chain.mine(1, ADDR)
    assert rpc.getrawtransaction(tx.txid_hex, 1)["confirmations"] == 1


def test_cltv_absolute_lock(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    lock = rpc.getblockcount() + 4
    ws = build_script([script_num(lock), OP_CHECKLOCKTIMEVERIFY, OP_DROP, PUB, OP_CHECKSIG])
    funded = _fund_script(chain, coinbases, ws)               # tip is now lock - 3
    tx = _spend_script(funded, ws, sequence=0xFFFFFFFE, locktime=lock)
    while rpc.getblockcount() < lock:                          # final only in block lock + 1
        e = rpc_error(rpc.sendrawtransaction, tx.to_hex())
        assert e.code == -26 and e.message == "non-final"
        chain.mine(1, ADDR)
    early = _spend_script(funded, ws, sequence=0xFFFFFFFE, locktime=lock - 1)   # final, fails CLTV
    e = rpc_error(rpc.sendrawtransaction, early.to_hex())
    assert e.code == -26 and "mandatory-script-verify-flag-failed" in e.message
    assert rpc.sendrawtransaction(tx.to_hex()) == tx.txid_hex
    [bh] = chain.mine(1, ADDR)
    assert tx.txid_hex in rpc.getblock(bh)["tx"]


# -- reorgs --------------------------------------------------------------------------------
def test_invalidateblock_reorg(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    coin = coinbases.take()
    tx = spend([coin], [(SPK, coin[2] - FEE)])
    rpc.sendrawtransaction(tx.to_hex())
    [bad] = chain.mine(1, ADDR)
    height = rpc.getblockcount()
    parent = rpc.getblockheader(bad)["previousblockhash"]
    raw_bad = rpc.getblock(bad, 0)
    rpc.invalidateblock(bad)
    assert rpc.getblockcount() == height - 1 and rpc.getbestblockhash() == parent
    assert rpc.getrawmempool() == [tx.txid_hex]                # back in the mempool
    assert "blockhash" not in rpc.getrawtransaction(tx.txid_hex, 1)
    assert rpc.getblockheader(bad)["confirmations"] == -1
    assert rpc.gettxout(tx.txid_hex, 0, False) is None
    assert rpc.gettxout(coin[0], 0, False) is not None         # its input is unspent again
    assert {"height": height, "hash": bad, "branchlen": 1, "status": "invalid"} in rpc.getchaintips()
    [good] = chain.mine(1, ADDR)                              # mining continues on the new tip
    assert good != bad and rpc.getblockcount() == height
    assert tx.txid_hex in rpc.getblock(good)["tx"]
    assert rpc.submitblock(raw_bad) == "duplicate-invalid"      # the invalidated block stays out
    assert rpc.getbestblockhash() == good
    chain.mine(2, ADDR)
    assert rpc.getblockcount() == height + 2


# -- notifications ------------------------------------------------------------------------
def test_zmq_rawblock_hashblock_rawtx(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    types = {n["type"]: n["address"] for n in rpc.getzmqnotifications()}
    assert types == {"pubrawblock": chain.zmq_rawblock, "pubhashblock": chain.zmq_hashblock,
                     "pubrawtx": chain.zmq_rawtx}
    ctx = zmq.Context()
    blocks = ctx.socket(zmq.SUB)
    blocks.connect(chain.zmq_rawblock)
    blocks.setsockopt(zmq.SUBSCRIBE, b"hashblock")
    blocks.setsockopt(zmq.SUBSCRIBE, b"rawblock")
    txs = ctx.socket(zmq.SUB)
    txs.connect(chain.zmq_rawtx)
    txs.setsockopt(zmq.SUBSCRIBE, b"rawtx")
    try:
        # PUB/SUB "slow joiner": mine until the subscription is live.
        for _ in range(100):
            chain.mine(1, ADDR)
            if blocks.poll(100):
                break
        while blocks.poll(200):
            blocks.recv_multipart()
        while txs.poll(200):
            txs.recv_multipart()
        coin = coinbases.take()
        tx = spend([coin], [(SPK, coin[2] - FEE)])
        rpc.sendrawtransaction(tx.to_hex())
        assert txs.poll(5000)
        topic, body, seq = txs.recv_multipart()
        assert topic == b"rawtx" and body == tx.serialize() and len(seq) == 4
        first_seq = struct.unpack("<I", seq)[0]
        [bh] = chain.mine(1, ADDR)
        msgs = [blocks.recv_multipart() for _ in range(2)]
        got = {m[0]: m for m in msgs}
        assert got[b"hashblock"][1] == bytes.fromhex(bh)
        raw = got[b"rawblock"][1]
        assert hash256(raw[:80])[::-1].hex() == bh and raw.hex() == rpc.getblock(bh, 0)
        assert all(len(m) == 3 and len(m[2]) == 4 for m in msgs)
        mined = [txs.recv_multipart() for _ in range(2)]          # the block's coinbase and tx
        assert mined[1][1] == tx.serialize()
        assert [struct.unpack("<I", m[2])[0] for m in mined] == [first_seq + 1, first_seq + 2]
    finally:
        blocks.close(0)
        txs.close(0)
        ctx.term()


# -- RPC surface ---------------------------------------------------------------------------
def _post(chain: RegtestChain, payload: Any, auth: str | None = "rpcuser:rpcpass") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", chain.rpcport, timeout=10)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    conn.request("POST", "/", json.dumps(payload), headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, (json.loads(body) if body and resp.getheader("Content-Type") == "application/json" else None)


def test_rpc_params_errors_and_fees(chain: RegtestChain) -> None:
    rpc = chain.rpc
    genesis = rpc.getblockhash(0)
    status, reply = _post(chain, {"jsonrpc": "2.0", "method": "getblockhash", "params": {"height": 0}, "id": 7})
    assert status == 200 and reply == {"jsonrpc": "2.0", "result": genesis, "id": 7}
    status, reply = _post(chain, {"jsonrpc": "2.0", "method": "getblock", "params": {"blockhash": genesis,
                                                                                     "verbosity": 0}, "id": 8})
    assert Block.parse(bytes.fromhex(reply["result"])).hash_hex == genesis
    status, reply = _post(chain, {"jsonrpc": "2.0", "method": "getblockhash", "params": {"heigth": 0}, "id": 9})
    assert "result" not in reply and reply["error"]["code"] == -8
    status, reply = _post(chain, {"method": "nosuchmethod", "params": [], "id": 1})
    assert status == 404 and reply["error"]["code"] == -32601
    assert _post(chain, {"method": "getblockcount"}, auth="rpcuser:wrong")[0] == 401
    assert _post(chain, {"method": "getblockcount"}, auth=None)[0] == 401
    assert rpc_error(rpc.getblockhash, 10**6).code == -8
    assert rpc_error(rpc.getblock, "00" * 32).code == -5
    assert rpc_error(rpc.getblock, "zz").code == -8
    assert rpc_error(rpc.getrawtransaction, "11" * 32).code == -5
    assert rpc_error(rpc.decoderawtransaction, "00").code == -22
    assert rpc_error(rpc.sendrawtransaction, "zz").code == -22
    assert rpc_error(rpc.generatetoaddress, 1, "notanaddress").code == -5
    assert rpc_error(rpc.getblockcount, 1).code == -1
    assert rpc_error(rpc.getblockhash, "x").code == -3
    assert rpc.batch_([["getblockcount"], ["getblockhash", 0]]) == [rpc.getblockcount(), genesis]
    # Fee estimates: -fallbackfee, then setfeerate (regtestd's own RPC).
    assert rpc.estimatesmartfee(6) == {"feerate": Decimal("0.00025000"), "blocks": 6}
    rpc.setfeerate(Decimal("0.0005"))
    rpc.setfeerate(Decimal("0.001"), 2)
    rpc.setfeerate(Decimal("0.0002"), 10)
    assert rpc.estimatesmartfee(2)["feerate"] == Decimal("0.001")
    assert rpc.estimatesmartfee(12)["feerate"] == Decimal("0.0002")
    rpc.setfeerate(None)
    assert "errors" in rpc.estimatesmartfee(6)
    rpc.setfeerate(Decimal("0.00025"))
    assert rpc.getnetworkinfo()["relayfee"] == Decimal("0.00001")
    assert "generatetoaddress" in rpc.help() and rpc.uptime() >= 0
    assert rpc.getmempoolinfo()["loaded"] is True


def test_generateblock_and_package_testmempoolaccept(chain: RegtestChain, coinbases: Coinbases) -> None:
    rpc = chain.rpc
    a, b = coinbases.take(), coinbases.take()
    in_mempool = spend([a], [(SPK, a[2] - FEE)])
    rpc.sendrawtransaction(in_mempool.to_hex())
    raw_only = spend([b], [(SPK, b[2] - 2 * FEE)])
    child = spend([(raw_only.txid_hex, 0, b[2] - 2 * FEE)], [(SPK, b[2] - 3 * FEE)])
    res = rpc.testmempoolaccept([raw_only.to_hex(), child.to_hex()])
    assert [r["allowed"] for r in res] == [True, True] and res[1]["fees"]["base"] == Decimal("0.00001")
    assert rpc.testmempoolaccept([child.to_hex()])[0]["reject-reason"] == "missing-inputs"
    out = rpc.generateblock(ADDR, [in_mempool.txid_hex, raw_only.to_hex(), child.to_hex()])
    block = rpc.getblock(out["hash"], 1)
    assert block["tx"][1:] == [in_mempool.txid_hex, raw_only.txid_hex, child.txid_hex]
    assert rpc.getrawmempool() == []
    e = rpc_error(rpc.generateblock, ADDR, [child.to_hex()])            # its inputs are spent now
    assert e.code == -25 and "bad-txns-inputs-missingorspent" in e.message


# -- persistence and process ------------------------------------------------------------------
def test_restart_keeps_chain_index_and_mempool(regtestd_factory: Callable[..., RegtestChain]) -> None:  # noqa: F811
    chain = regtestd_factory()
    chain.mine(101)
    txid, vout = chain.fund(ADDR, 5_000_000, confirm=True)
    pending, _ = chain.fund(ADDR, 1_000_000)
    [dropped] = chain.mine(1)
    chain.rpc.invalidateblock(dropped)                 # the kernel is rebuilt; must survive the restart
    rpc = chain.rpc
    before = (rpc.getblockcount(), rpc.getbestblockhash(), rpc.gettxout(txid, vout), rpc.getrawmempool())
    assert before[3] == [pending]
    chain.restart()
    rpc = chain.rpc
    assert (rpc.getblockcount(), rpc.getbestblockhash(), rpc.gettxout(txid, vout), rpc.getrawmempool()) == before
    assert rpc.getrawtransaction(txid, True)["confirmations"] == 1
    assert rpc.getblockheader(dropped)["confirmations"] == -1
    [again] = chain.mine(1)
    assert again != dropped and pending in rpc.getblock(again)["tx"]
    assert chain.stop() == 0


def test_cookie_auth_and_wrong_password(regtestd_factory: Callable[..., RegtestChain]) -> None:  # noqa: F811
    chain = regtestd_factory(cookie=True, zmq=False)
    assert re.fullmatch(r"__cookie__:[0-9a-f]{64}", chain.cookie_path.read_text())
    assert chain.rpc.getblockcount() == 0
    e = rpc_error(AuthServiceProxy(f"http://__cookie__:wrong@127.0.0.1:{chain.rpcport}").getblockcount)
    assert "401" in e.message
    assert chain.stop() == 0
    assert not chain.cookie_path.exists()


def test_bitcoin_conf_regtest_section(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "bitcoin.conf").write_text(
        f"regtest=1\nserver=1\nrpcport=1\n[regtest]\nrpcport={port}\nrpcuser=conf\nrpcpassword=secret\n"
        "fallbackfee=0.0001\nprinttoconsole=0\n[main]\nrpcport=2\n")
    proc = subprocess.Popen(regtestd_command() + [f"-datadir={tmp_path}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        rpc_url = f"http://conf:secret@127.0.0.1:{port}"
        for _ in range(200):
            try:
                assert AuthServiceProxy(rpc_url).estimatesmartfee(3)["feerate"] == Decimal("0.0001")
                break
            except (OSError, JSONRPCException):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.05)
        else:
            pytest.fail("regtestd did not answer")
        assert AuthServiceProxy(rpc_url).stop() == "Bitcoin Core stopping"
        assert proc.wait(10) == 0
        assert (tmp_path / "regtest" / "index.sqlite").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("args, message", [
    (["-regtest", "-bogusflag"], "Invalid parameter -bogusflag"),
    ([], "only supports regtest"),
    (["-testnet"], "only supports regtest"),
    (["-chain=main"], "only supports regtest"),
    (["-regtest", "-daemon"], "-daemon is not supported"),
    (["-regtest", "stray"], "unexpected token 'stray'"),
])
def test_command_line_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    p = subprocess.run(regtestd_command() + [f"-datadir={tmp_path}"] + args, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and message in p.stderr, p.stderr


def test_no_full_rbf_rejects_conflicts(regtestd_factory: Callable[..., RegtestChain]) -> None:  # noqa: F811
    chain = regtestd_factory(extra_args=["-mempoolfullrbf=0"], zmq=False)
    chain.mine(101, ADDR)
    cb = chain.rpc.getblock(chain.rpc.getblockhash(1), 2)["tx"][0]
    coin = (cb["txid"], 0, to_sats(cb["vout"][0]["value"]))
    chain.rpc.sendrawtransaction(spend([coin], [(SPK, coin[2] - FEE)], sequence=0xFFFFFFFF).to_hex())
    e = rpc_error(chain.rpc.sendrawtransaction, spend([coin], [(SPK, coin[2] - 5 * FEE)]).to_hex())
    assert e.code == -26 and e.message == "txn-mempool-conflict"
    assert chain.rpc.getmempoolinfo()["fullrbf"] is False
