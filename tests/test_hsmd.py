"""hsmd as a process: secret creation, node id derivation, capabilities."""
import asyncio
import os
import stat

import pytest
from coincurve import PrivateKey

from common.daemon_conn import DaemonConn
from common.msgconn import ConnectionClosed, MsgConn
from lightningd.log import LogBook
from lightningd.subd import Subd
from wire.hsm_caps import CAP_ECDH
from wire.internal import internal_schema

REGTEST_CHAIN = bytes.fromhex("06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f")


async def start_hsmd(workdir, dev_privkey=b""):
    book = LogBook(default_level=0)
    book.configure(["debug"], [str(workdir / "log")], "", True)
    old = os.getcwd()
    os.chdir(workdir)  # hsmd keeps hsm_secret in its working directory
    try:
        subd = Subd("hsmd", internal_schema("hsmd"), {}, book.logger("hsmd"))
        subd.start()
    finally:
        os.chdir(old)
    reply = await subd.request("hsmd_init", {"chain_hash": REGTEST_CHAIN, "dev_force_privkey": dev_privkey,
                                             "dev_force_bip32_seed": b"", "dev_force_channel_secrets": b""},
                               timeout=30)
    return subd, book, reply["node_id"]


def test_secret_created_once_and_dev_privkey(tmp_path):
    async def main():
        subd, book, node_id = await start_hsmd(tmp_path)
        secret = tmp_path / "hsm_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o400 and secret.stat().st_size == 32
        content = secret.read_bytes()
        await subd.stop()
        subd, book, node_id2 = await start_hsmd(tmp_path)
        assert node_id2 == node_id and secret.read_bytes() == content
        await subd.stop()
        (tmp_path / "dev").mkdir()
        key = bytes([1] * 32)
        subd, book, node_id3 = await start_hsmd(tmp_path / "dev", dev_privkey=key)
        assert node_id3 == PrivateKey(key).public_key.format()
        await subd.stop()
    asyncio.run(main())


def test_node_id_matches_core_lightning_derivation():
    """Same hsm_secret, same node id as Core Lightning's hsmd (HKDF 'nodeid')."""
    from hsmd.libhsmd import HsmKeys
    keys = HsmKeys(bytes(32))
    # HKDF-SHA256(ikm=32 zero bytes, salt=4 zero bytes, info="nodeid")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    k = HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(4), info=b"nodeid").derive(bytes(32))
    assert keys.node_id == PrivateKey(k).public_key.format()


def test_client_capabilities_enforced(tmp_path):
    async def main():
        subd, book, node_id = await start_hsmd(tmp_path)
        reply = await subd.request("hsmd_client_hsmfd", {"id": node_id, "dbid": 0, "capabilities": CAP_ECDH,
                                                         "label": "testclient"}, timeout=10)
        assert len(reply.fds) == 1
        client = DaemonConn(MsgConn.from_fd(reply.fds[0]), internal_schema("hsmd"), {})
        client.start()
        # allowed: ECDH equals our own computation with the node key's public half
        other = PrivateKey(bytes([9] * 32))
        r = await client.request("hsmd_ecdh_req", {"point": other.public_key.format()}, timeout=10)
        assert r["ss"] == other.ecdh(node_id)
        # refused: signing is master-only; the client is cut off
        with pytest.raises(ConnectionClosed):
            await client.request("hsmd_sign_message", {"msg": b"hello"}, timeout=10)
        # the master (full capabilities) may sign
        r = await subd.request("hsmd_sign_message", {"msg": b"hello"}, timeout=10)
        assert len(r["sig"]) == 64
        for _ in range(100):
            if any("refused hsmd_sign_message from client testclient" in e.message for e in book.ring):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("refusal not logged")
        await subd.stop()
    asyncio.run(main())


def test_anchorspend_signs_only_that_channels_anchor(tmp_path):
    """hsmd_sign_anchorspend (master only): input 0 must be the anchor of the
    named channel's funding key, and the signature verifies with that key."""
    from bitcoin.keys import verify_digest_der
    from bitcoin.script import p2wsh_script
    from bitcoin.tx import SIGHASH_ALL, OutPoint, Tx, TxIn, TxOut
    from common.daemon_conn import RequestFailed
    from common.scripts import anchor_script

    async def main():
        subd, book, node_id = await start_hsmd(tmp_path)
        peer = PrivateKey(bytes([7] * 32)).public_key.format()
        reply = await subd.request("hsmd_client_hsmfd", {"id": peer, "dbid": 5, "capabilities": 8,
                                                         "label": "channeld-5"}, timeout=10)
        chan = DaemonConn(MsgConn.from_fd(reply.fds[0]), internal_schema("hsmd"), {})
        chan.start()
        funding_pubkey = (await chan.request("hsmd_get_channel_basepoints", {}, timeout=10))["funding_pubkey"]
        ws = anchor_script(funding_pubkey)
        tx = Tx(version=2, inputs=[TxIn(OutPoint(bytes(range(32)), 2), b"", 0xFFFFFFFD)],
                outputs=[TxOut(300, bytes.fromhex("0014" + "11" * 20))])
        anchor = {"keyidx": 0xFFFFFFFF, "is_p2tr": False, "amount_sat": 330, "script": p2wsh_script(ws)}
        r = await subd.request("hsmd_sign_anchorspend", {"peer_id": peer, "channel_dbid": 5, "inputs": [anchor],
                                                         "tx": tx.serialize()}, timeout=10)
        signed = Tx.parse(r["tx"])
        sig, script = signed.inputs[0].witness
        assert script == ws and sig[-1] == SIGHASH_ALL
        assert verify_digest_der(funding_pubkey, sig[:-1], tx.sighash_segwit_v0(0, ws, 330, SIGHASH_ALL))
        # another channel's anchor, or input 0 claimed as a wallet coin: refused
        with pytest.raises(RequestFailed):
            await subd.request("hsmd_sign_anchorspend", {"peer_id": peer, "channel_dbid": 6, "inputs": [anchor],
                                                         "tx": tx.serialize()}, timeout=10)
        with pytest.raises(RequestFailed):
            await subd.request("hsmd_sign_anchorspend", {"peer_id": peer, "channel_dbid": 5,
                                                         "inputs": [dict(anchor, keyidx=0)], "tx": tx.serialize()},
                               timeout=10)
        # a channel client may not ask at all
        with pytest.raises(ConnectionClosed):
            await chan.request("hsmd_sign_anchorspend", {"peer_id": peer, "channel_dbid": 5, "inputs": [anchor],
                                                         "tx": tx.serialize()}, timeout=10)
        await subd.stop()
    asyncio.run(main())


def test_every_channel_request_has_a_handler():
    """hsmd's channel requests dispatch through one table that covers them all."""
    from hsmd.hsmd import CHANNEL_HANDLERS
    from hsmd.permissions import CHANNEL_REQUESTS
    from wire.internal import internal_schema
    assert set(CHANNEL_HANDLERS) == set(CHANNEL_REQUESTS)
    schema = internal_schema("hsmd")
    for name in CHANNEL_HANDLERS:
        assert name + "_reply" in schema.messages, name


def test_bolt12_signatures_and_derived_secrets(tmp_path):
    """hsmd signs BOLT 12 streams (computing the Merkle root itself) with the
    node key, a transient payer key, or our blinded key of a path; derived
    secrets are stable and distinct; other names are refused."""
    from common import bolt12 as B
    from common.blindedpath import blinded_node_id, create_blinded_path
    from common.bolt12_merkle import verify
    key = bytes([7] * 32)

    async def main():
        subd, book, node_id = await start_hsmd(tmp_path, dev_privkey=key)
        s1 = (await subd.request("hsmd_derive_secret", {"info": b"node-alias-base"}, timeout=10))["secret"]
        s2 = (await subd.request("hsmd_derive_secret", {"info": b"bolt12-invoice-base"}, timeout=10))["secret"]
        assert s1 != s2 and len(s1) == 32
        assert (await subd.request("hsmd_derive_secret", {"info": b"node-alias-base"}, timeout=10))["secret"] == s1
        inv = B.Bolt12(B.INVREQ, invreq_metadata=b"\x01" * 8, offer_description="x", invreq_amount=5,
                       invreq_payer_id=node_id).encode()

        async def sign(name, tlv, tweak=b"", path_key=b""):
            return await subd.request("hsmd_sign_bolt12", {"messagename": name, "fieldname": "signature",
                                                           "tlv": tlv, "publictweak": tweak, "path_key": path_key},
                                      timeout=10)
        r = await sign("invoice_request", inv)
        assert r["pubkey"] == node_id and verify(node_id, r["sig"], "invoice_request", "signature", inv)
        # the payer key: node id + SHA256(node-alias-base || tweak), computable without hsmd
        r = await sign("invoice_request", inv, tweak=b"metadata")
        assert r["pubkey"] == B.tweak_add_pubkey(node_id, B.alias_tweak(s1, b"metadata"))
        assert verify(r["pubkey"], r["sig"], "invoice_request", "signature", inv)
        # a path we made to ourselves: the final blinded id signs
        built = create_blinded_path(b"\x05" * 32, [(node_id, b"")])
        r = await sign("invoice", inv, path_key=built.path.first_path_key)
        assert r["pubkey"] == built.path.final_blinded_node_id
        assert r["pubkey"] == blinded_node_id(node_id, built.secrets[0].shared_secret)
        # never anything but a BOLT 12 signature
        from common.daemon_conn import RequestFailed
        with pytest.raises(RequestFailed):
            await sign("offer", inv)
        await subd.stop()
    asyncio.run(main())
