"""BOLT 7 gossip queries (pure): the encoded arrays, channel-range and
short-channel-id queries and their answers, timestamp filters.

Encoded arrays (``encoded_short_ids``, ``encoded_timestamps``,
``encoded_query_flags``) start with an encoding byte: 0 = the plain array,
1 = zlib (deprecated by the spec: decoded, only produced on request).  The
message encoding is ``wire.bolt_schema()``'s; these helpers build and read
the arrays and TLV record values it carries.

Answers need the stored raw messages: ``get_message(offset)`` is the gossip
store's ``read`` (the graph keeps offsets only).
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import wire

from .graph import CF_DYING, CF_PRIVATE, U_OFF, U_TS, Graph
from .validate import GossipError, forwardable_node_announcement

ENCODING_UNCOMPRESSED = 0
ENCODING_ZLIB = 1
MAX_MESSAGE = 65535
MAX_DECOMPRESSED = 16 * 65535          # a zlib bomb guard

QUERY_WANT_TIMESTAMPS = 1
QUERY_WANT_CHECKSUMS = 2
QF_ANNOUNCEMENT, QF_UPDATE_1, QF_UPDATE_2, QF_NODE_1, QF_NODE_2 = 1, 2, 4, 8, 16

GetMessage = Callable[[int], bytes]


# --- CRC32C (RFC 3720, Castagnoli) -----------------------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    t = _CRC32C
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def update_checksum(raw_update: bytes) -> int:
    """BOLT 7: CRC32C of the channel_update without signature and timestamp
    (type excluded too, as Core Lightning computes it)."""
    return crc32c(raw_update[2 + 64 + 32 + 8 + 4:], crc32c(raw_update[2 + 64:2 + 64 + 32 + 8]))


# --- encoded arrays ----------------------------------------------------------------

def _encode(payload: bytes, encoding: int) -> bytes:
    if encoding == ENCODING_UNCOMPRESSED:
        return payload
    if encoding == ENCODING_ZLIB:
        return zlib.compress(payload) if payload else b""
    raise ValueError(f"unknown encoding {encoding}")


def _decode(encoding: int, data: bytes) -> bytes:
    if encoding == ENCODING_UNCOMPRESSED:
        return data
    if encoding == ENCODING_ZLIB:
        if not data:
            return b""
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, MAX_DECOMPRESSED)
        except zlib.error as e:
            raise GossipError(f"bad zlib data: {e}", warn=True) from None
        if d.unconsumed_tail or not d.eof:
            raise GossipError("zlib data too large or truncated", warn=True)
        return out
    raise GossipError(f"unknown encoding type {encoding}", warn=True)


def encode_short_ids(scids: list[int], encoding: int = ENCODING_UNCOMPRESSED) -> bytes:
    """``encoded_short_ids``: encoding byte then the u64 scids."""
    return bytes([encoding]) + _encode(struct.pack(f">{len(scids)}Q", *scids), encoding)


def decode_short_ids(encoded: bytes) -> list[int]:
    if not encoded:
        return []
    data = _decode(encoded[0], encoded[1:])
    if len(data) % 8:
        raise GossipError("encoded_short_ids is not a whole number of short_channel_ids",
                          warn=True)
    return list(struct.unpack(f">{len(data) // 8}Q", data))


def timestamps_tlv(pairs: list[tuple[int, int]], encoding: int = ENCODING_UNCOMPRESSED) -> dict:
    """The ``timestamps_tlv`` record value for (timestamp_1, timestamp_2) pairs."""
    flat = [t for p in pairs for t in p]
    return {"encoding_type": encoding,
            "encoded_timestamps": _encode(struct.pack(f">{len(flat)}I", *flat), encoding)}


def decode_timestamps_tlv(rec: dict) -> list[tuple[int, int]]:
    data = _decode(rec["encoding_type"], rec["encoded_timestamps"])
    if len(data) % 8:
        raise GossipError("encoded_timestamps is not a whole number of pairs", warn=True)
    flat = struct.unpack(f">{len(data) // 4}I", data)
    return list(zip(flat[0::2], flat[1::2]))


def checksums_tlv(pairs: list[tuple[int, int]]) -> dict:
    return {"checksums": [{"checksum_node_id_1": a, "checksum_node_id_2": b} for a, b in pairs]}


def decode_checksums_tlv(rec: dict) -> list[tuple[int, int]]:
    return [(c["checksum_node_id_1"], c["checksum_node_id_2"]) for c in rec["checksums"]]


def query_flags_tlv(flags: list[int], encoding: int = ENCODING_UNCOMPRESSED) -> dict:
    payload = b"".join(wire.encode_bigsize(f) for f in flags)
    return {"encoding_type": encoding, "encoded_query_flags": _encode(payload, encoding)}


def decode_query_flags_tlv(rec: dict) -> list[int]:
    data = _decode(rec["encoding_type"], rec["encoded_query_flags"])
    out, pos = [], 0
    while pos < len(data):
        try:
            f, pos = wire.decode_bigsize(data, pos)
        except wire.DecodeError as e:
            raise GossipError(f"bad encoded_query_flags: {e}", warn=True) from None
        out.append(f)
    return out


# --- query_channel_range / reply_channel_range ------------------------------------

class RangeReply(NamedTuple):
    first_blocknum: int
    number_of_blocks: int
    sync_complete: int
    scids: list[int]
    timestamps: list[tuple[int, int]] | None
    checksums: list[tuple[int, int]] | None


def query_channel_range(chain_hash: bytes, first_blocknum: int, number_of_blocks: int,
                        query_option_flags: int | None = None) -> bytes:
    tlvs = {} if query_option_flags is None else {"query_option": {"query_option_flags":
                                                                   query_option_flags}}
    return wire.bolt_schema().encode("query_channel_range", {
        "chain_hash": chain_hash, "first_blocknum": first_blocknum,
        "number_of_blocks": number_of_blocks, "tlvs": tlvs})


def parse_reply_channel_range(raw: bytes) -> RangeReply:
    name, f = wire.bolt_schema().decode(raw)
    if name != "reply_channel_range":
        raise GossipError("not a reply_channel_range", warn=True)
    scids = decode_short_ids(f["encoded_short_ids"])
    tlvs = f["tlvs"]
    ts = decode_timestamps_tlv(tlvs["timestamps_tlv"]) if "timestamps_tlv" in tlvs else None
    cs = decode_checksums_tlv(tlvs["checksums_tlv"]) if "checksums_tlv" in tlvs else None
    for extra in (ts, cs):
        if extra is not None and len(extra) != len(scids):
            raise GossipError("reply_channel_range: extension count differs from scids", warn=True)
    return RangeReply(f["first_blocknum"], f["number_of_blocks"], f["sync_complete"], scids,
                      ts, cs)


def _checksum(graph: Graph, c: int, d: int, chain_hash: bytes,
              get_message: GetMessage | None) -> int:
    u = graph._upd[2 * c + d]
    if u is None:
        return 0
    if get_message is not None and u[U_OFF] >= 0:
        return update_checksum(get_message(u[U_OFF]))
    # no stored message: rebuild the checksummed fields (no extension bytes)
    body = chain_hash + struct.pack(">QBBHQIIQ", graph._scid[c], u[1], u[2], u[3], u[4],
                                    u[5], u[6], u[7])
    return crc32c(body)


def max_scids_per_reply(query_option_flags: int) -> int:
    """How many short_channel_ids fit in one reply_channel_range (BOLT 7:
    "MUST limit `number_of_blocks` to the maximum number of blocks whose
    results could fit"): 8 bytes each, 8 more for timestamps, 8 more for
    checksums, after the fixed fields and the TLV headers."""
    per_id = 8 + 8 * bool(query_option_flags & QUERY_WANT_TIMESTAMPS) \
        + 8 * bool(query_option_flags & QUERY_WANT_CHECKSUMS)
    return (MAX_MESSAGE - 100) // per_id


def reply_channel_range(graph: Graph, chain_hash: bytes, first_blocknum: int,
                        number_of_blocks: int, query_option_flags: int = 0,
                        get_message: GetMessage | None = None, max_per_reply: int | None = None,
                        encoding: int = ENCODING_UNCOMPRESSED, known_chain: bool = True) -> list[bytes]:
    """Our public channels (with at least one channel_update, as Core
    Lightning; not spent) in the queried blocks, over as many replies as
    needed, as BOLT 7 requires of the replier:

    - each reply has the query's ``chain_hash``; the first starts at the
      query's ``first_blocknum``, every reply covers at least one block,
      and the next starts where it ends (no overlap): replies split at
      block boundaries, unless one block holds more channels than a reply
      can, whose channels then go over several replies that all cover it
      ("MAY split block contents");
    - the last, and only the last, has ``sync_complete`` 1 and ends exactly
      at ``first_blocknum + number_of_blocks``, computed without 32-bit
      overflow (a query for the whole chain, 0 + 0xFFFFFFFF, is answered up
      to block 0xFFFFFFFF; 5 + 0xFFFFFFFF up to 2^32 + 4: a reply starting
      at block b >= 5 says 2^32 + 4 - b blocks, which fits);
    - ``number_of_blocks`` 0 (BOLT 7: the sender MUST set 1 or more) is
      answered as 1;
    - encoding type 0 (1, zlib, "MUST NOT be used"), timestamps and
      checksums only when asked (``query_option_flags`` bits 0 and 1), in
      the order of the short_channel_ids;
    - for a chain we do not know (``known_chain`` False): one empty,
      complete reply covering the range."""
    number = max(1, number_of_blocks)
    end = first_blocknum + number
    want_ts = bool(query_option_flags & QUERY_WANT_TIMESTAMPS)
    want_cs = bool(query_option_flags & QUERY_WANT_CHECKSUMS)
    limit = max(1, max_per_reply or max_scids_per_reply(query_option_flags))
    chans = [] if not known_chain else sorted(
        (graph._scid[c], c) for c in graph._cidx.values()
        if not graph._cflag[c] & (CF_PRIVATE | CF_DYING)
        and (graph._upd[2 * c] is not None or graph._upd[2 * c + 1] is not None)
        and first_blocknum <= graph._scid[c] >> 40 < end)
    schema = wire.bolt_schema()
    replies = []
    start, i = first_blocknum, 0
    while True:
        rest = chans[i:]
        if len(rest) <= limit:
            n, stop, nxt, last = len(rest), end, end, True
        else:
            n = limit
            while n > 0 and rest[n - 1][0] >> 40 == rest[n][0] >> 40:
                n -= 1              # back to a block boundary
            if n:
                stop = nxt = rest[n][0] >> 40                 # up to the next channel's block
            else:
                n = limit           # one block does not fit in a reply: split it
                stop, nxt = (rest[n - 1][0] >> 40) + 1, rest[n - 1][0] >> 40
            last = False
        chunk = rest[:n]
        tlvs: dict = {}
        if want_ts:
            tlvs["timestamps_tlv"] = timestamps_tlv(
                [tuple((u[U_TS] if (u := graph._upd[2 * c + d]) is not None else 0) for d in (0, 1))
                 for _s, c in chunk], encoding)
        if want_cs:
            tlvs["checksums_tlv"] = checksums_tlv(
                [tuple(_checksum(graph, c, d, chain_hash, get_message) for d in (0, 1))
                 for _s, c in chunk])
        replies.append(schema.encode("reply_channel_range", {
            "chain_hash": chain_hash, "first_blocknum": start, "number_of_blocks": stop - start,
            "sync_complete": 1 if last else 0,
            "encoded_short_ids": encode_short_ids([s for s, _c in chunk], encoding),
            "tlvs": tlvs}))
        if last:
            return replies
        start, i = nxt, i + n


# --- query_short_channel_ids --------------------------------------------------------

def query_short_channel_ids(chain_hash: bytes, scids: list[int], flags: list[int] | None = None,
                            encoding: int = ENCODING_UNCOMPRESSED) -> bytes:
    tlvs = {} if flags is None else {"query_flags": query_flags_tlv(flags, encoding)}
    return wire.bolt_schema().encode("query_short_channel_ids", {
        "chain_hash": chain_hash, "encoded_short_ids": encode_short_ids(scids, encoding),
        "tlvs": tlvs})


def answer_query_short_channel_ids(graph: Graph, chain_hash: bytes, query: bytes,
                                   get_message: GetMessage) -> list[bytes]:
    """The gossip to send for a query_short_channel_ids, then its
    reply_short_channel_ids_end.  Malformed query -> GossipError(warn)."""
    name, f = wire.bolt_schema().decode(query)
    if name != "query_short_channel_ids":
        raise GossipError("not a query_short_channel_ids", warn=True)
    out: list[bytes] = []
    full = 1 if f["chain_hash"] == chain_hash else 0
    scids = decode_short_ids(f["encoded_short_ids"]) if full else []
    if "query_flags" in f["tlvs"] and full:
        flags = decode_query_flags_tlv(f["tlvs"]["query_flags"])
        if len(flags) != len(scids):
            raise GossipError("encoded_query_flags: not one flag per short_channel_id", warn=True)
    else:
        flags = [QF_ANNOUNCEMENT | QF_UPDATE_1 | QF_UPDATE_2 | QF_NODE_1 | QF_NODE_2] * len(scids)
    sent_nodes: set[int] = set()
    for scid, flag in zip(scids, flags):
        c = graph._cidx.get(scid)
        if c is None or graph._cflag[c] & CF_PRIVATE:
            continue
        if flag & QF_ANNOUNCEMENT and graph._aoff[c] >= 0:
            out.append(get_message(graph._aoff[c]))
        for d, bit in ((0, QF_UPDATE_1), (1, QF_UPDATE_2)):
            u = graph._upd[2 * c + d]
            if flag & bit and u is not None and u[U_OFF] >= 0:
                out.append(get_message(u[U_OFF]))
        for n, bit in ((graph._n1[c], QF_NODE_1), (graph._n2[c], QF_NODE_2)):
            a = graph._nann[n]
            if flag & bit and n not in sent_nodes and a is not None and a[5] >= 0:
                sent_nodes.add(n)
                raw = get_message(a[5])
                if forwardable_node_announcement(raw):
                    out.append(raw)
    out.append(wire.bolt_schema().encode("reply_short_channel_ids_end", {
        "chain_hash": f["chain_hash"], "full_information": full}))
    return out


# --- gossip_timestamp_filter --------------------------------------------------------

class TimestampFilter(NamedTuple):
    first_timestamp: int
    timestamp_range: int

    @classmethod
    def from_message(cls, raw: bytes, chain_hash: bytes) -> TimestampFilter | None:
        """None if the filter is for another chain (ignore it)."""
        name, f = wire.bolt_schema().decode(raw)
        if name != "gossip_timestamp_filter":
            raise GossipError("not a gossip_timestamp_filter", warn=True)
        if f["chain_hash"] != chain_hash:
            return None
        return cls(f["first_timestamp"], f["timestamp_range"])

    def passes(self, timestamp: int) -> bool:
        return self.first_timestamp <= timestamp < self.first_timestamp + self.timestamp_range


def gossip_timestamp_filter(chain_hash: bytes, first_timestamp: int, timestamp_range: int) -> bytes:
    return wire.bolt_schema().encode("gossip_timestamp_filter", {
        "chain_hash": chain_hash, "first_timestamp": first_timestamp,
        "timestamp_range": timestamp_range})


def filtered_gossip(graph: Graph, flt: TimestampFilter,
                    get_message: GetMessage) -> Iterator[bytes]:
    """The stored gossip a filter asks for: per public, unspent channel with
    an update in range, its announcement then those updates; then the
    node_announcements in range."""
    for c in graph._cidx.values():
        if graph._cflag[c] & (CF_PRIVATE | CF_DYING):
            continue
        ups = [u for u in (graph._upd[2 * c], graph._upd[2 * c + 1])
               if u is not None and flt.passes(u[U_TS]) and u[U_OFF] >= 0]
        if ups and graph._aoff[c] >= 0:
            yield get_message(graph._aoff[c])
            for u in ups:
                yield get_message(u[U_OFF])
    for a in graph._nann:
        if a is not None and flt.passes(a[0]) and a[5] >= 0:
            raw = get_message(a[5])
            if forwardable_node_announcement(raw):
                yield raw
