"""The keys a test forces are the keys on the wire.

A node started with lnprototest's options (its clightning runner's
`--dev-force-privkey`, `--dev-force-bip32-seed`, `--dev-force-channel-secrets`,
`--bitcoin-rpcconnect=HOST:PORT`, ...) must show exactly those keys: the
node id a BOLT 8 initiator authenticates, the funding pubkey, basepoints and
first per-commitment point in `open_channel` and `accept_channel`, and the
wallet's addresses.  Every expected value is computed here from the forced
secrets with coincurve and hashlib alone (BOLT 3's shachain, BIP 32), not
with the node's own derivation code.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import threading
from typing import Any

from coincurve import PrivateKey as CPrivateKey
from pyln.client import RpcError
from pyln.proto import bech32 as pyln_bech32
from pyln.proto.wire import PrivateKey, connect as pyln_connect

import wire
from bitcoin.networks import network_by_name
from common.features import CLN_FEATURE_NAMES, bits_from_features, features_from_bits
from node_factory import LIGHTNINGD, wait_for

SCHEMA = wire.bolt_schema()
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# lnprototest's clightning runner (get_node_privkey, get_keyset, get_node_bitcoinkey)
NODE_SECRET = "00" * 31 + "01"
BIP32_SEED = "00" * 31 + "01"
FUNDING, REVOCATION, PAYMENT, DELAYED, HTLC = ("00" * 31 + f"{i:02x}" for i in range(0x10, 0x15))
SHASEED = "FF" * 32
CHANNEL_SECRETS = "/".join([FUNDING, REVOCATION, PAYMENT, DELAYED, HTLC, SHASEED])


def pub(secret_hex: str) -> bytes:
    return CPrivateKey(bytes.fromhex(secret_hex)).public_key.format(compressed=True)


def bolt3_per_commitment_point(seed: bytes, commitment_number: int) -> bytes:
    """BOLT 3 generate_from_seed(seed, 2^48 - 1 - n), then times G."""
    index = 2**48 - 1 - commitment_number
    p = bytearray(seed)
    for b in range(47, -1, -1):
        if index >> b & 1:
            p[b // 8] ^= 1 << (b % 8)
            p = bytearray(hashlib.sha256(p).digest())
    return pub(bytes(p).hex())


def bip32_child_secret(seed: bytes, path: list[int]) -> bytes:
    """BIP 32 private derivation along non-hardened indexes."""
    i = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    k, c = int.from_bytes(i[:32], "big"), i[32:]
    for index in path:
        data = pub(k.to_bytes(32, "big").hex()) + index.to_bytes(4, "big")
        i = hmac.new(c, data, hashlib.sha512).digest()
        k, c = (int.from_bytes(i[:32], "big") + k) % SECP256K1_N, i[32:]
    return k.to_bytes(32, "big")


class Peer:
    """A BOLT 8 initiator that only expects to talk to the forced node id:
    the handshake fails unless the node holds that private key."""

    def __init__(self, port: int, seed: int) -> None:
        self.privkey = PrivateKey(bytes([seed] * 32))
        self.node_id = self.privkey.public_key().serializeCompressed().hex()
        self.conn = pyln_connect(self.privkey, pub(NODE_SECRET), "127.0.0.1", port)
        self.conn.connection.settimeout(30)
        self.init = self.expect("init")
        self.send("init", {"globalfeatures": b"", "features": self.init["features"], "tlvs": {}})

    def send(self, name: str, fields: dict[str, Any]) -> None:
        self.conn.send_message(SCHEMA.encode(name, fields))

    def expect(self, want: str) -> dict[str, Any]:
        while True:
            name, fields = SCHEMA.decode(self.conn.read_message())
            if name == "ping":
                self.send("pong", {"ignored": b"\x00" * fields["num_pong_bytes"]})
            elif name == want:
                return fields
            elif name not in (None, "pong", "gossip_timestamp_filter", "query_channel_range", "warning"):
                raise AssertionError(f"expected {want}, got {name}: {fields}")

    def close(self) -> None:
        self.conn.connection.close()


def assert_forced_channel_keys(msg: dict[str, Any]) -> None:
    assert msg["funding_pubkey"] == pub(FUNDING)
    assert msg["revocation_basepoint"] == pub(REVOCATION)
    assert msg["payment_basepoint"] == pub(PAYMENT)
    assert msg["delayed_payment_basepoint"] == pub(DELAYED)
    assert msg["htlc_basepoint"] == pub(HTLC)
    assert msg["first_per_commitment_point"] == bolt3_per_commitment_point(bytes.fromhex(SHASEED), 0)


def test_forced_keys_are_the_keys_on_the_wire(node_factory, chain):
    node = node_factory.get_node(options={
        # what lnprototest's clightning runner starts lightningd with
        "funding-confirms": 3,
        "dev-force-privkey": NODE_SECRET,
        "dev-force-bip32-seed": BIP32_SEED,
        "dev-force-channel-secrets": CHANNEL_SECRETS,
        "dev-no-htlc-timeout": None,
        "bitcoin-rpcport": False,
        "bitcoin-rpcconnect": f"127.0.0.1:{chain.rpcport}",
        "htlc-maximum-msat": "2000sat",
        "dev-force-tmp-channel-id": "00" * 32,      # (the runner's older versions)
    })
    # the node id: getinfo, and the BOLT 8 handshake authenticates that key
    assert node.rpc.getinfo()["id"] == pub(NODE_SECRET).hex() == \
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"

    # the wallet: BIP 32 m/0/0/k from the forced seed (Core Lightning's layout)
    addr = node.rpc.newaddr("bech32")["bech32"]
    keyidx = next(a["keyidx"] for a in node.rpc.listaddresses()["addresses"] if a.get("bech32") == addr)
    key = bip32_child_secret(bytes.fromhex(BIP32_SEED), [0, 0, keyidx])
    h160 = hashlib.new("ripemd160", hashlib.sha256(pub(key.hex())).digest()).digest()
    assert pyln_bech32.decode("bcrt", addr) == (0, list(h160))     # P2WPKH of that key
    chain.fund(addr, 1_000_000)
    chain.mine(1)
    wait_for(lambda: any(o["status"] == "confirmed" for o in node.rpc.listfunds()["outputs"]))

    # init carries exactly what --list-features-only prints (lnprototest's has_option)
    lines = subprocess.run(LIGHTNINGD + ["--list-features-only"], capture_output=True, text=True,
                           check=True, timeout=60).stdout.splitlines()
    by_name = {name: pair for pair, name in CLN_FEATURE_NAMES.items()}
    listed = set()
    for line in lines:
        if not line.startswith("supports_"):
            name, parity = line.split("/")
            listed.add(2 * by_name[name] + (parity == "odd"))

    # open_channel, the node funding
    peer = Peer(node.port, 0x31)
    assert bits_from_features(peer.init["features"]) == listed
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    errors: list[Exception] = []

    def fund() -> None:
        try:
            node.rpc.fundchannel(peer.node_id, 200_000)
        except RpcError as e:   # the peer hangs up after open_channel
            errors.append(e)
    t = threading.Thread(target=fund)
    t.start()
    oc = peer.expect("open_channel")
    assert_forced_channel_keys(oc)
    assert oc["temporary_channel_id"] == bytes(32)
    peer.close()
    t.join(30)
    assert errors and not t.is_alive()

    # accept_channel, the node accepting a channel the peer funds
    peer = Peer(node.port, 0x32)
    wait_for(lambda: node.rpc.listpeers(peer.node_id)["peers"])
    theirs = CPrivateKey(bytes([0x32] * 32))
    point = theirs.public_key.format(compressed=True)
    peer.send("open_channel", {
        "chain_hash": network_by_name("regtest").chain_hash, "temporary_channel_id": os.urandom(32),
        "funding_satoshis": 300_000, "push_msat": 0, "dust_limit_satoshis": 546,
        "max_htlc_value_in_flight_msat": 300_000_000, "channel_reserve_satoshis": 3000, "htlc_minimum_msat": 1,
        "feerate_per_kw": node.rpc.feerates("perkw")["perkw"]["opening"], "to_self_delay": 144,
        "max_accepted_htlcs": 483, "funding_pubkey": point, "revocation_basepoint": point,
        "payment_basepoint": point, "delayed_payment_basepoint": point, "htlc_basepoint": point,
        "first_per_commitment_point": point, "channel_flags": 0,
        "tlvs": {"channel_type": {"type": features_from_bits({12})},
                 "upfront_shutdown_script": {"shutdown_scriptpubkey": b""}}})
    ac = peer.expect("accept_channel")
    assert_forced_channel_keys(ac)
    peer.close()
