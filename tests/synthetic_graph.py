"""A deterministic synthetic Lightning graph with real signed gossip, written
as a gossip store: benchmarks (mainnet scale: ~17,000 nodes, ~51,000
channels, ~325,000 signatures) and tests (a few hundred nodes).

Topology: preferential attachment (each new node opens 1 + Exp channels to
existing nodes picked in proportion to their degree, then hub-to-hub
channels until the channel count is reached), so degrees follow a power law
with a few hubs of thousands of channels, as on mainnet.  Capacities are
log-normal (median 2.5M sat), fees and CLTV deltas follow the usual mainnet
choices (base 0 or 1000 msat, proportional log-uniform, deltas 18..144),
5% of directions are disabled.

Keys: node ``i``'s secret is ``sha256("synthetic node" || seed || i)``,
the bitcoin keys of channel ``j`` ``sha256("synthetic funding" || seed || j ||
side)``.  Every message carries valid signatures (libsecp256k1 through
coincurve's binding, RFC6979 nonces, so the output is byte-for-byte
reproducible) and is encoded with ``wire.bolt_schema()``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import random
import struct
from dataclasses import asdict, dataclass

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

import wire
from bitcoin.networks import NETWORKS
from common.features import Context, our_features

from gossipd.store import GossipStore, channel_amount_msg
from gossipd.validate import encode_address, hash256

FORMAT_VERSION = 1
BASE_TIMESTAMP = 1_700_000_000
CHAIN_HASH = NETWORKS["bitcoin"].chain_hash
_CTX = GLOBAL_CONTEXT.ctx


@dataclass(frozen=True)
class SyntheticInfo:
    path: str
    nodes: int
    channels: int
    seed: int
    base_timestamp: int
    signatures: int
    chain_hash_hex: str
    version: int = FORMAT_VERSION


def node_secret(seed: int, i: int) -> bytes:
    return hashlib.sha256(b"synthetic node" + struct.pack(">II", seed, i)).digest()


def funding_secret(seed: int, j: int, side: int) -> bytes:
    return hashlib.sha256(b"synthetic funding" + struct.pack(">IIB", seed, j, side)).digest()


def pubkey(secret: bytes) -> bytes:
    pk = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_create(_CTX, pk, secret):
        raise ValueError("invalid secret")
    out, outlen = ffi.new("unsigned char[33]"), ffi.new("size_t *", 33)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, outlen, pk, lib.SECP256K1_EC_COMPRESSED)
    return bytes(ffi.buffer(out, 33))


def sign(secret: bytes, digest: bytes) -> bytes:
    """64-byte compact low-S signature."""
    sig = ffi.new("secp256k1_ecdsa_signature *")
    if not lib.secp256k1_ecdsa_sign(_CTX, sig, digest, secret, ffi.NULL, ffi.NULL):
        raise ValueError("signing failed")
    out = ffi.new("unsigned char[64]")
    lib.secp256k1_ecdsa_signature_serialize_compact(_CTX, out, sig)
    return bytes(ffi.buffer(out, 64))


def signed_channel_announcement(chain_hash: bytes, scid: int, secrets: tuple[bytes, bytes],
                                funding: tuple[bytes, bytes], features: bytes = b"") -> bytes:
    """``secrets``/``funding``: the two nodes' and bitcoin keys' secrets, in
    any order (sorted here by node id as BOLT 7 requires)."""
    ids = [pubkey(s) for s in secrets]
    order = sorted(range(2), key=lambda k: ids[k])
    node_secrets = [secrets[k] for k in order]
    btc_secrets = [funding[k] for k in order]
    zero = bytes(64)
    raw = wire.bolt_schema().encode("channel_announcement", {
        "node_signature_1": zero, "node_signature_2": zero,
        "bitcoin_signature_1": zero, "bitcoin_signature_2": zero,
        "features": features, "chain_hash": chain_hash, "short_channel_id": scid.to_bytes(8, "big"),
        "node_id_1": ids[order[0]], "node_id_2": ids[order[1]],
        "bitcoin_key_1": pubkey(btc_secrets[0]), "bitcoin_key_2": pubkey(btc_secrets[1])})
    h = hash256(raw[258:])
    sigs = b"".join(sign(s, h) for s in node_secrets + btc_secrets)
    return raw[:2] + sigs + raw[258:]


def signed_channel_update(secret: bytes, chain_hash: bytes, scid: int, timestamp: int,
                          direction: int, disabled: bool = False, cltv: int = 40,
                          htlc_min: int = 1, fee_base: int = 1000, fee_prop: int = 100,
                          htlc_max: int = 10**9, message_flags: int = 1) -> bytes:
    raw = wire.bolt_schema().encode("channel_update", {
        "signature": bytes(64), "chain_hash": chain_hash, "short_channel_id": scid.to_bytes(8, "big"),
        "timestamp": timestamp, "message_flags": message_flags,
        "channel_flags": direction | (2 if disabled else 0), "cltv_expiry_delta": cltv,
        "htlc_minimum_msat": htlc_min, "fee_base_msat": fee_base,
        "fee_proportional_millionths": fee_prop, "htlc_maximum_msat": htlc_max})
    return raw[:2] + sign(secret, hash256(raw[66:])) + raw[66:]


def signed_node_announcement(secret: bytes, timestamp: int, alias: str = "",
                             rgb: bytes = b"\0\0\0", addresses: list[dict] = (),
                             features: bytes = b"") -> bytes:
    raw = wire.bolt_schema().encode("node_announcement", {
        "signature": bytes(64), "features": features, "timestamp": timestamp,
        "node_id": pubkey(secret), "rgb_color": rgb,
        "alias": alias.encode().ljust(32, b"\0")[:32],
        "addresses": b"".join(encode_address(a) for a in addresses)})
    return raw[:2] + sign(secret, hash256(raw[66:])) + raw[66:]


# --- topology and policies ---------------------------------------------------------

def topology(n_nodes: int, n_channels: int, rng: random.Random) -> list[tuple[int, int]]:
    """Channel endpoint pairs by preferential attachment."""
    avg = n_channels / n_nodes
    ends: list[int] = [0, 1]
    pairs: list[tuple[int, int]] = [(0, 1)]
    seen = {(0, 1)}
    for i in range(2, n_nodes):
        remaining_nodes = n_nodes - i
        if len(pairs) + remaining_nodes >= n_channels:
            k = 1                            # keep one channel for every later node
        else:
            k = min(i, 1 + int(rng.expovariate(1 / max(avg - 0.5, 0.1))),
                    n_channels - len(pairs) - remaining_nodes + 1)
        for _ in range(k):
            for _attempt in range(8):
                j = ends[rng.randrange(len(ends))]
                if j != i and (j, i) not in seen:
                    break
            else:
                continue
            seen.add((j, i))
            pairs.append((j, i))
            ends += (i, j)
        if not any(p[1] == i for p in pairs[-k:]):      # never leave a node isolated
            j = rng.randrange(i)
            seen.add((j, i))
            pairs.append((j, i))
            ends += (i, j)
    while len(pairs) < n_channels:                      # hub-to-hub channels
        a, b = ends[rng.randrange(len(ends))], ends[rng.randrange(len(ends))]
        if a != b and (min(a, b), max(a, b)) not in seen:
            seen.add((min(a, b), max(a, b)))
            pairs.append((min(a, b), max(a, b)))
            ends += (a, b)
    return pairs[:n_channels]


def _policy(rng: random.Random, cap_msat: int) -> dict:
    hmin = rng.choices([1, 1000, 1_000_000], [49, 50, 1])[0]
    hmax = max(hmin, int(cap_msat * rng.choices([1.0, 0.99, 0.5, 0.1], [40, 30, 20, 10])[0]))
    return {"disabled": rng.random() < 0.05,
            "cltv": rng.choices([18, 34, 40, 72, 80, 144], [5, 10, 35, 10, 15, 25])[0],
            "htlc_min": hmin, "htlc_max": hmax,
            "fee_base": rng.choices([0, 1, 100, 1000, 2000, 5000], [30, 5, 5, 45, 10, 5])[0],
            "fee_prop": 0 if rng.random() < 0.05 else int(math.exp(rng.uniform(0, math.log(2500))))}


def _addresses(rng: random.Random, i: int) -> list[dict]:
    out = [{"type": "ipv4", "address": f"{rng.randrange(1, 224)}.{rng.randrange(256)}."
            f"{rng.randrange(256)}.{rng.randrange(1, 255)}", "port": 9735}]
    if rng.random() < 0.3:
        onion = hashlib.sha256(b"onion%d" % i).digest() + b"\0\0\x03"
        out.append({"type": "torv3", "port": 9735,
                    "address": base64.b32encode(onion).decode().lower() + ".onion"})
    return out


# --- the store -------------------------------------------------------------------

def build_store(path: str | os.PathLike, nodes: int = 17_000, channels: int = 51_000,
                seed: int = 1, base_timestamp: int = BASE_TIMESTAMP) -> SyntheticInfo:
    """Write (or reuse, if ``<path>.json`` matches) the synthetic store."""
    path = os.fspath(path)
    info = SyntheticInfo(path, nodes, channels, seed, base_timestamp,
                         channels * 6 + nodes, CHAIN_HASH.hex())
    meta = path + ".json"
    if os.path.exists(path) and os.path.exists(meta):
        try:
            if json.loads(open(meta).read()) == asdict(info):
                return info
        except ValueError:
            pass
    rng = random.Random(seed)
    pairs = topology(nodes, channels, rng)
    secrets = [node_secret(seed, i) for i in range(nodes)]
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    store = GossipStore.open(tmp)
    feats = our_features(Context.NODE_ANNOUNCEMENT)
    n_blocks = 350_000
    used: set[int] = set()
    batch: list[tuple[bytes, int, int]] = []
    for j, (a, b) in enumerate(pairs):
        block = 500_000 + j * n_blocks // channels
        while True:
            scid = (block << 40) | (rng.randrange(1, 3000) << 16) | rng.randrange(3)
            if scid not in used:
                used.add(scid)
                break
        cap = max(20_000, min(500_000_000, int(math.exp(rng.gauss(math.log(2.5e6), 1.3)))))
        cap -= cap % 1000
        ann = signed_channel_announcement(CHAIN_HASH, scid, (secrets[a], secrets[b]),
                                          (funding_secret(seed, j, 0), funding_secret(seed, j, 1)))
        ann_ts = base_timestamp - rng.randrange(86400 * 7)
        batch += [(ann, ann_ts, 0), (channel_amount_msg(cap), ann_ts, 0)]
        id_a, id_b = pubkey(secrets[a]), pubkey(secrets[b])
        by_dir = (secrets[a], secrets[b]) if id_a < id_b else (secrets[b], secrets[a])
        for d in (0, 1):
            ts = base_timestamp - rng.randrange(86400 * 7)
            upd = signed_channel_update(by_dir[d], CHAIN_HASH, scid, ts, d, **_policy(rng, cap * 1000))
            batch.append((upd, ts, 0))
        if len(batch) > 4000:
            store.append_many(batch)
            batch = []
    for i in range(nodes):
        ts = base_timestamp - rng.randrange(86400 * 7)
        rgb = bytes(rng.randrange(256) for _ in range(3))
        na = signed_node_announcement(secrets[i], ts, f"synthetic-{i:05d}", rgb,
                                      _addresses(rng, i), feats)
        batch.append((na, ts, 0))
        if len(batch) > 4000:
            store.append_many(batch)
            batch = []
    store.append_many(batch)
    store.sync()
    store.close()
    os.replace(tmp, path)
    with open(meta, "w") as f:
        json.dump(asdict(info), f)
    return info
