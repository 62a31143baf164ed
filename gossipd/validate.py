"""BOLT 7 gossip validation: structure, chain, signatures (pure, no I/O).

The three gossip messages are parsed at fixed offsets with ``struct`` (their
layout is fixed but for the feature and address arrays): this is the load
path of the whole graph, where the generic ``wire`` codec would cost more
than the signature checks themselves.  ``tests/test_gossip_core.py`` checks
the parsers against ``wire.bolt_schema()`` on the same messages.

Every function takes the full message (2-byte type first) and returns a typed
result or raises ``GossipError(reason, warn)``: ``warn`` is True when BOLT 7
says the sender deserves a ``warning`` (bad signature, invalid key, malformed
message), False when the message is merely ignored (other chain, spent or
wrong funding output).

Signed parts (offsets in the full message, type included):
channel_announcement ``hash256(msg[258:])`` (after the 4 signatures), signed
by node_id_1, node_id_2, bitcoin_key_1, bitcoin_key_2; node_announcement and
channel_update ``hash256(msg[66:])`` (after the signature), signed by node_id
/ the announcement's node_id_1 (direction 0) or node_id_2 (direction 1).

Signatures go straight to libsecp256k1 through coincurve's cffi binding
(``SigVerifier``): compact signatures are parsed as such (no DER round trip),
node ids' parsed keys are cached, and ``verify_many`` can spread a batch over
threads (cffi releases the GIL during the C call).  High-S signatures are
rejected, as ``secp256k1_ecdsa_verify`` (and so Core Lightning) does.
"""
from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from bitcoin.script import multisig_2of2_script, p2wsh_script

CHANNEL_ANNOUNCEMENT = 256
NODE_ANNOUNCEMENT = 257
CHANNEL_UPDATE = 258

_sha256 = hashlib.sha256
# channel_update from offset 66: chain_hash, scid, timestamp, message_flags,
# channel_flags, cltv_expiry_delta, htlc_minimum, fee_base, fee_proportional, htlc_maximum
CHANNEL_UPDATE_FIELDS = _CU = struct.Struct(">32sQIBBHQIIQ")
_U16 = struct.Struct(">H")
_NA = struct.Struct(">I33s3s32sH")          # node_announcement after features


class GossipError(ValueError):
    """A gossip message we refuse; ``warn``: BOLT 7 says send a warning."""

    def __init__(self, reason: str, warn: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.warn = warn


def hash256(data) -> bytes:
    return _sha256(_sha256(data).digest()).digest()


# --- typed results -------------------------------------------------------------

class ChannelAnnouncement:
    __slots__ = ("raw", "features", "chain_hash", "scid", "node_id_1", "node_id_2",
                 "bitcoin_key_1", "bitcoin_key_2")

    def __init__(self, raw, features, chain_hash, scid, node_id_1, node_id_2,
                 bitcoin_key_1, bitcoin_key_2) -> None:
        self.raw = raw
        self.features = features
        self.chain_hash = chain_hash
        self.scid = scid                  # u64
        self.node_id_1 = node_id_1
        self.node_id_2 = node_id_2
        self.bitcoin_key_1 = bitcoin_key_1
        self.bitcoin_key_2 = bitcoin_key_2

    def signature_checks(self) -> list[tuple[bytes, bytes, bytes]]:
        """(pubkey, signature, digest) of the four signatures, in wire order."""
        raw = self.raw
        h = hash256(raw[258:])
        return [(self.node_id_1, raw[2:66], h), (self.node_id_2, raw[66:130], h),
                (self.bitcoin_key_1, raw[130:194], h), (self.bitcoin_key_2, raw[194:258], h)]

    def funding_script(self) -> bytes:
        """The P2WSH scriptPubKey the funding output must have (BOLT 3)."""
        return p2wsh_script(multisig_2of2_script(self.bitcoin_key_1, self.bitcoin_key_2))


class ChannelUpdate:
    __slots__ = ("raw", "chain_hash", "scid", "timestamp", "message_flags", "channel_flags",
                 "cltv_expiry_delta", "htlc_minimum_msat", "fee_base_msat",
                 "fee_proportional_millionths", "htlc_maximum_msat")

    def __init__(self, raw, chain_hash, scid, timestamp, message_flags, channel_flags, cltv,
                 htlc_min, fee_base, fee_prop, htlc_max) -> None:
        self.raw = raw
        self.chain_hash = chain_hash
        self.scid = scid
        self.timestamp = timestamp
        self.message_flags = message_flags
        self.channel_flags = channel_flags
        self.cltv_expiry_delta = cltv
        self.htlc_minimum_msat = htlc_min
        self.fee_base_msat = fee_base
        self.fee_proportional_millionths = fee_prop
        self.htlc_maximum_msat = htlc_max

    @property
    def direction(self) -> int:
        return self.channel_flags & 1

    @property
    def disabled(self) -> bool:
        return bool(self.channel_flags & 2)

    def digest(self) -> bytes:
        return hash256(self.raw[66:])


class NodeAnnouncement:
    __slots__ = ("raw", "features", "timestamp", "node_id", "rgb_color", "alias", "addresses")

    def __init__(self, raw, features, timestamp, node_id, rgb_color, alias, addresses) -> None:
        self.raw = raw
        self.features = features
        self.timestamp = timestamp
        self.node_id = node_id
        self.rgb_color = rgb_color
        self.alias = alias                # 32 raw bytes
        self.addresses = addresses        # raw descriptors; decode_addresses() for JSON

    def digest(self) -> bytes:
        return hash256(self.raw[66:])


# --- structural parsing --------------------------------------------------------

def _type_of(raw: bytes) -> int:
    return (raw[0] << 8) | raw[1] if len(raw) >= 2 else -1


def parse_channel_announcement(raw: bytes) -> ChannelAnnouncement:
    if _type_of(raw) != CHANNEL_ANNOUNCEMENT:
        raise GossipError("not a channel_announcement", warn=True)
    if len(raw) < 260:
        raise GossipError("truncated channel_announcement", warn=True)
    flen = (raw[258] << 8) | raw[259]
    p = 260 + flen
    if len(raw) < p + 172:
        raise GossipError("truncated channel_announcement", warn=True)
    n1, n2 = raw[p + 40:p + 73], raw[p + 73:p + 106]
    if n1 == n2:
        raise GossipError("channel_announcement: node_id_1 == node_id_2", warn=True)
    return ChannelAnnouncement(raw, raw[260:p], raw[p:p + 32],
                               int.from_bytes(raw[p + 32:p + 40], "big"), n1, n2,
                               raw[p + 106:p + 139], raw[p + 139:p + 172])


def parse_channel_update(raw: bytes) -> ChannelUpdate:
    if _type_of(raw) != CHANNEL_UPDATE:
        raise GossipError("not a channel_update", warn=True)
    if len(raw) < 138:
        raise GossipError("truncated channel_update", warn=True)
    return ChannelUpdate(raw, *_CU.unpack_from(raw, 66))


def parse_node_announcement(raw: bytes) -> NodeAnnouncement:
    if _type_of(raw) != NODE_ANNOUNCEMENT:
        raise GossipError("not a node_announcement", warn=True)
    if len(raw) < 68:
        raise GossipError("truncated node_announcement", warn=True)
    flen = (raw[66] << 8) | raw[67]
    p = 68 + flen
    if len(raw) < p + 74:
        raise GossipError("truncated node_announcement", warn=True)
    ts, node_id, rgb, alias, alen = _NA.unpack_from(raw, p)
    if len(raw) < p + 74 + alen:
        raise GossipError("truncated node_announcement addresses", warn=True)
    addresses = raw[p + 74:p + 74 + alen]
    _check_addresses(addresses)
    return NodeAnnouncement(raw, raw[68:p], ts, node_id, rgb, alias, addresses)


# address descriptor type -> data length (type 5: 1 + hostname length + 2)
_ADDR_LEN = {1: 6, 2: 18, 3: 12, 4: 37}


def _check_addresses(addresses: bytes) -> None:
    """BOLT 7: addrlen too short for the known descriptors -> warning.  An
    unknown type stops the walk (its length is unknown; the rest is ignored)."""
    i, n = 0, len(addresses)
    while i < n:
        t = addresses[i]
        if t == 5:
            if i + 1 >= n:
                raise GossipError("node_announcement: truncated dns address", warn=True)
            size = 1 + addresses[i + 1] + 2
        else:
            size = _ADDR_LEN.get(t)
            if size is None:
                return
        if i + 1 + size > n:
            raise GossipError("node_announcement: addrlen too short for its addresses", warn=True)
        i += 1 + size


def count_dns_addresses(addresses: bytes) -> int:
    """How many type 5 (DNS hostname) descriptors, up to the first unknown type."""
    i, n, count = 0, len(addresses), 0
    while i < n:
        t = addresses[i]
        if t == 5:
            if i + 1 >= n:
                break
            count += 1
            i += 2 + addresses[i + 1] + 2
        elif t in _ADDR_LEN:
            i += 1 + _ADDR_LEN[t]
        else:
            break
    return count


def forwardable_node_announcement(raw: bytes) -> bool:
    """BOLT 7: a node_announcement with more than one DNS hostname "MUST not
    forward" (we still use it, ignoring the extra hostnames)."""
    try:
        return count_dns_addresses(parse_node_announcement(raw).addresses) <= 1
    except GossipError:
        return False


def decode_addresses(addresses: bytes) -> list[dict]:
    """Address descriptors as Core Lightning's listnodes shows them:
    ``{"type": "ipv4"|"ipv6"|"torv2"|"torv3"|"dns", "address", "port"}``.
    Port 0 and Tor v2 are skipped (BOLT 7: SHOULD ignore), as is everything
    from the first unknown type on, and any second dns entry."""
    out: list[dict] = []
    i, n, seen_dns = 0, len(addresses), False
    while i < n:
        t = addresses[i]
        if t == 5:
            if i + 1 >= n:
                break
            hlen = addresses[i + 1]
            end = i + 2 + hlen + 2
        elif t in _ADDR_LEN:
            end = i + 1 + _ADDR_LEN[t]
        else:
            break
        if end > n:
            break
        data = addresses[i + 1:end]
        i = end
        port = int.from_bytes(data[-2:], "big")
        if t == 1:
            entry = {"type": "ipv4", "address": ".".join(str(b) for b in data[:4])}
        elif t == 2:
            import ipaddress
            entry = {"type": "ipv6", "address": str(ipaddress.IPv6Address(data[:16]))}
        elif t == 3:
            continue                  # Tor v2: deprecated, ignored
        elif t == 4:
            entry = {"type": "torv3",
                     "address": base64.b32encode(data[:35]).decode().lower() + ".onion"}
        else:
            if seen_dns:
                continue
            seen_dns = True
            try:
                host = data[1:-2].decode("ascii")
            except UnicodeDecodeError:
                continue
            entry = {"type": "dns", "address": host}
        if port == 0:
            continue
        entry["port"] = port
        out.append(entry)
    return out


def encode_address(entry: dict) -> bytes:
    """The inverse of one ``decode_addresses`` entry (used by tests and the
    synthetic graph)."""
    port = int(entry["port"]).to_bytes(2, "big")
    t, a = entry["type"], entry["address"]
    if t == "ipv4":
        return b"\x01" + bytes(int(x) for x in a.split(".")) + port
    if t == "ipv6":
        import ipaddress
        return b"\x02" + ipaddress.IPv6Address(a).packed + port
    if t == "torv3":
        return b"\x04" + base64.b32decode(a.removesuffix(".onion").upper()) + port
    if t == "dns":
        h = a.encode("ascii")
        return b"\x05" + bytes([len(h)]) + h + port
    raise ValueError(f"unknown address type {t!r}")


# --- signatures ----------------------------------------------------------------

class SigVerifier:
    """ECDSA verification of 64-byte compact signatures over 32-byte digests
    with libsecp256k1 (coincurve's binding), caching parsed node ids."""

    def __init__(self, cache_limit: int = 100_000) -> None:
        self._ctx = GLOBAL_CONTEXT.ctx
        self._cache: dict[bytes, object] = {}
        self._limit = cache_limit

    def _parsed(self, pubkey: bytes):
        pk = self._cache.get(pubkey)
        if pk is None:
            pk = ffi.new("secp256k1_pubkey *")
            if len(pubkey) != 33 or not lib.secp256k1_ec_pubkey_parse(self._ctx, pk, pubkey, 33):
                return None
            if len(self._cache) >= self._limit:
                self._cache.clear()
            self._cache[pubkey] = pk
        return pk

    def is_valid_pubkey(self, pubkey: bytes) -> bool:
        return self._parsed(pubkey) is not None

    def verify(self, pubkey: bytes, sig: bytes, digest: bytes, cache: bool = True) -> bool:
        return self._run([(pubkey, sig, digest, cache)])[0]

    def _run(self, jobs: Sequence[tuple[bytes, bytes, bytes, bool]]) -> list[bool]:
        """Jobs are (pubkey, sig64, digest32, cache_pubkey)."""
        ctx, parse_pk, parse_sig, verify = (self._ctx, lib.secp256k1_ec_pubkey_parse,
                                            lib.secp256k1_ecdsa_signature_parse_compact,
                                            lib.secp256k1_ecdsa_verify)
        cache_get, parsed = self._cache.get, self._parsed
        sig = ffi.new("secp256k1_ecdsa_signature *")
        scratch = ffi.new("secp256k1_pubkey *")
        out = []
        append = out.append
        for pubkey, s, digest, cache in jobs:
            if cache:
                pk = cache_get(pubkey) or parsed(pubkey)
            elif len(pubkey) == 33 and parse_pk(ctx, scratch, pubkey, 33):
                pk = scratch
            else:
                pk = None
            append(pk is not None and len(s) == 64 and len(digest) == 32
                   and parse_sig(ctx, sig, s) == 1 and verify(ctx, sig, digest, pk) == 1)
        return out

    def verify_many(self, jobs: Sequence[tuple[bytes, bytes, bytes, bool]],
                    threads: int = 1) -> list[bool]:
        """Verify (pubkey, sig, digest, cache_pubkey) jobs; with threads > 1
        the batch is split into contiguous slices run in parallel."""
        if threads <= 1 or len(jobs) < 64:
            return self._run(jobs)
        step = (len(jobs) + threads - 1) // threads
        parts = [jobs[i:i + step] for i in range(0, len(jobs), step)]
        with ThreadPoolExecutor(threads) as ex:
            results = list(ex.map(self._run, parts))
        return [ok for part in results for ok in part]


DEFAULT_VERIFIER = SigVerifier()


# --- full checks ---------------------------------------------------------------

def check_chain(chain_hash: bytes, expected: bytes | None, what: str) -> None:
    if expected is not None and chain_hash != expected:
        raise GossipError(f"{what} for unknown chain {chain_hash.hex()}", warn=False)


def check_channel_announcement(raw: bytes, chain_hash: bytes | None,
                               verifier: SigVerifier = DEFAULT_VERIFIER) -> ChannelAnnouncement:
    """Structure, chain, the four signatures.  The funding output is checked
    separately (``check_funding``) once the master has looked it up."""
    ann = parse_channel_announcement(raw)
    check_chain(ann.chain_hash, chain_hash, "channel_announcement")
    names = ("node_signature_1", "node_signature_2", "bitcoin_signature_1", "bitcoin_signature_2")
    checks = ann.signature_checks()
    results = verifier.verify_many([(k, s, d, i < 2) for i, (k, s, d) in enumerate(checks)])
    for name, ok in zip(names, results):
        if not ok:
            raise GossipError(f"channel_announcement {scid_str(ann.scid)}: bad {name}", warn=True)
    return ann


def check_channel_update(raw: bytes, chain_hash: bytes | None, node_id: bytes,
                         verifier: SigVerifier = DEFAULT_VERIFIER) -> ChannelUpdate:
    """``node_id``: the announcement's node_id_1 or node_id_2 for the update's
    direction (``update_signer``)."""
    upd = parse_channel_update(raw)
    check_chain(upd.chain_hash, chain_hash, "channel_update")
    if not verifier.verify(node_id, raw[2:66], upd.digest()):
        raise GossipError(f"channel_update {scid_str(upd.scid)}/{upd.direction}: bad signature",
                          warn=True)
    return upd


def check_node_announcement(raw: bytes,
                            verifier: SigVerifier = DEFAULT_VERIFIER) -> NodeAnnouncement:
    na = parse_node_announcement(raw)
    if not verifier.is_valid_pubkey(na.node_id):
        raise GossipError(f"node_announcement: invalid node_id {na.node_id.hex()}", warn=True)
    if not verifier.verify(na.node_id, raw[2:66], na.digest()):
        raise GossipError(f"node_announcement {na.node_id.hex()}: bad signature", warn=True)
    return na


def update_signer(ann: ChannelAnnouncement, upd: ChannelUpdate) -> bytes:
    return ann.node_id_2 if upd.channel_flags & 1 else ann.node_id_1


def check_funding(ann: ChannelAnnouncement, script_pubkey: bytes | None,
                  spent: bool = False) -> None:
    """The master's answer about the funding output: missing, spent or not the
    P2WSH of the two bitcoin keys -> ignore (no warning: the peer may have a
    different chain view)."""
    if script_pubkey is None or spent:
        raise GossipError(f"channel_announcement {scid_str(ann.scid)}: funding output "
                          f"{'spent' if spent else 'not found'}")
    if script_pubkey != ann.funding_script():
        raise GossipError(f"channel_announcement {scid_str(ann.scid)}: funding output is not "
                          "the P2WSH of bitcoin_key_1/bitcoin_key_2")


def scid_str(scid: int) -> str:
    return f"{scid >> 40}x{(scid >> 16) & 0xFFFFFF}x{scid & 0xFFFF}"
