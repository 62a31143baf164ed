"""Run the daemons' common code paths in the zygote before it forks anything.

CPython 3.11 writes into code objects as it runs them: a function is
"quickened" after its first calls, and its instructions then specialize
(inline caches, counters).  Done in each child, those writes un-share the
pages of every code object the child runs, a few MiB per daemon.  Done here
once, the children inherit specialized code and mostly only read it; they
also inherit what the same paths compute lazily once per process (type
attribute caches, string hashes, `struct` and `re` caches, schema lookups).

Each workload runs real code of the daemons on throw-away state, and leaves
nothing behind: no event loop, no thread, no open descriptor, no key that
is ever used for anything (the hsmd workload derives from a random secret of
its own and drops it).  ROUNDS covers the quickening delay (8 calls) of
functions that a workload calls once."""
from __future__ import annotations

import asyncio
import json
import os
import socket

ROUNDS = 10


def _links() -> None:
    """The master link as every daemon uses it: asyncio, MsgConn framing with
    an fd, DaemonConn requests and dispatch, Status lines, json."""
    from common.daemon_conn import DaemonConn, RequestFailed
    from common.msgconn import MsgConn
    from common.status import Status
    from wire.internal import internal_schema

    async def go() -> None:
        a, b = socket.socketpair()
        schema = internal_schema("channeld")
        seen: list = []
        done = asyncio.get_running_loop().create_future()

        def on_status(msg) -> None:
            seen.append(msg)
            if len(seen) >= 1 + 3 * 5 and not done.done():
                done.set_result(None)
        master = DaemonConn(MsgConn(a), schema, {}, on_status=on_status)
        mc = MsgConn(b)
        status = Status(mc, 0)

        def on_feerates(msg) -> None:
            status.debug(f"feerates {msg['feerate']}", peer=b"\x02" * 33)
            status.io(True, "peer", b"\x00\x10" * 20, peer=b"\x02" * 33)
            status.billboard("warming up")
            for fd in msg.fds:
                os.close(fd)

        def on_sign(msg) -> None:
            daemon.send("channeld_sign_last_tx_reply", {"tx": json.dumps({"x": [1, 2.5, "y"]}).encode()})
        daemon = DaemonConn(mc, schema, {"channeld_feerates": on_feerates, "channeld_sign_last_tx": on_sign})
        master.start()
        daemon.start()
        status.version("warmup")
        # what the daemons' shells use around their links
        lock, event, queue = asyncio.Lock(), asyncio.Event(), asyncio.Queue()
        async with lock:
            await queue.put(1)
        waiter = asyncio.ensure_future(event.wait())
        event.set()
        await asyncio.wait([waiter, asyncio.ensure_future(asyncio.sleep(0))], return_when=asyncio.FIRST_COMPLETED)
        await waiter
        r, w = os.pipe()
        try:
            for i in range(5):
                master.send("channeld_feerates", {"feerate": 253 + i, "min_feerate": 253, "max_feerate": 10**5},
                            fds=[r] if i == 0 else [])
                reply = await master.request("channeld_sign_last_tx", {}, timeout=5)
                json.loads(reply["tx"])
            await asyncio.wait_for(done, 5)
        except (RequestFailed, asyncio.TimeoutError):
            pass
        finally:
            os.close(r)
            os.close(w)
            master.close()
            daemon.close()
            await asyncio.sleep(0)
    asyncio.run(go())


def _channel() -> None:
    """channeld's core: open a channel pair, add, fulfill and fail HTLCs, a
    fee update, persist and restore (the wire codec and BOLT 3 included)."""
    from bitcoin.hashes import sha256
    from channeld.core.pair import Pipe, make_pair

    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    for i in range(3):
        p.send("A", a.channel.add_htlc(1_000_000 * (i + 1), sha256(bytes([i]) * 32), 600, bytes(1366), 500))
    p.deliver_all()
    for h in b.channel.htlcs():
        if h.htlc_id % 2:
            p.send("B", b.channel.fulfill_htlc(h.htlc_id, bytes([h.htlc_id]) * 32))
        else:
            p.send("B", b.channel.fail_htlc(h.htlc_id, bytes(32)))
    p.deliver_all()
    a.persist()
    b.persist()
    from channeld.summary import summary
    from common.features import bits_from_features, features_from_bits
    from wire.internal import internal_schema
    daemon, master = internal_schema("channeld"), internal_schema("channeld", keep_sealed=True)
    for ch in (a.channel, b.channel):
        for _ in range(ROUNDS):
            master.decode_subtype("channel_summary", daemon.encode_subtype("channel_summary", summary(ch)))
    bits_from_features(features_from_bits([1, 5, 7, 12, 14, 17, 22]))
    a.crash()


def _sync_hsm() -> None:
    """channeld's and onchaind's blocking hsmd client, and channeld's
    HsmSigner, answered by replies written before each call."""
    from channeld.hsm_signer import HsmSigner
    from common.msgconn import HEADER
    from common.sync_hsm import SyncHsm
    from hsmd.channel_keys import ChannelKeys
    from wire.internal import internal_schema

    schema = internal_schema("hsmd")
    ours, theirs = socket.socketpair()
    ck = ChannelKeys(os.urandom(32), b"\x02" * 33, 1)

    def answer(name: str, fields: dict) -> None:
        m = schema.encode(name, fields)
        theirs.sendall(HEADER.pack(len(m), 0) + m)
    try:
        answer("hsmd_get_channel_basepoints_reply", ck.basepoints())
        signer = HsmSigner(SyncHsm(ours.detach()))
        for n in range(3):
            answer("hsmd_get_per_commitment_point_reply", {"point": ck.point(n)})
            signer.per_commitment_point(n)
        signer.hsm.close()
    finally:
        ours.close()
        theirs.close()


def _signals() -> None:
    """common.daemon.run's first lines (the zygote ignores both already)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _noise() -> None:
    """connectd: a BOLT 8 handshake and a few messages each way."""
    from common.noise import Initiator, Responder, pubkey_from_privkey

    ik, rk = os.urandom(32), os.urandom(32)
    i = Initiator.from_privkey(ik, pubkey_from_privkey(rk))
    r = Responder.from_privkey(rk)
    i.process_act_two(r.process_act_one(i.act_one()))
    r.process_act_three(i.act_three())
    ti, tr = i.transport, r.transport
    for n in range(5):
        tr.decrypt_message(ti.encrypt_message(b"\x00\x12" + bytes(n * 30)))
        ti.decrypt_message(tr.encrypt_message(b"\x00\x13" + bytes(n * 30)))


def _hsm() -> None:
    """hsmd: node and wallet keys, a channel's keys and points, gossip and
    ECDH.  From a random secret that nothing ever uses."""
    from hsmd.channel_keys import ChannelKeys
    from hsmd.libhsmd import HsmKeys

    keys = HsmKeys(os.urandom(32))
    keys.wallet_xpub()
    keys.ecdh(keys.node_id)
    ck = ChannelKeys(keys.peer_seed, keys.node_id, 1)
    ck.basepoints()
    for n in range(3):
        ck.point(n)


WORKLOADS = (_links, _channel, _sync_hsm, _signals, _noise, _hsm)


def warm_up(rounds: int = ROUNDS) -> list[str]:
    """Run every workload `rounds` times; returns the failures (a workload
    that fails only costs memory: it is skipped from then on)."""
    failed: list[str] = []
    todo = list(WORKLOADS)
    for _ in range(rounds):
        for w in list(todo):
            try:
                w()
            except Exception as e:
                failed.append(f"{w.__name__}: {type(e).__name__}: {e}")
                todo.remove(w)
    return failed


# -- sealing the heap -----------------------------------------------------------------
# After the imports and the warm-up, the zygote's heap is full of holes: free
# blocks inside pages that also hold live objects.  A child's first
# allocations would land in those holes, each one copying a whole 4 KiB page
# for a few bytes.  Filling them in the zygote (with objects nobody uses,
# shared by every child) makes the children allocate in fresh pages instead.
_FILLERS: list = []


def _pymalloc_free_blocks() -> dict[int, int]:
    """Free blocks per size class of pymalloc's used pools (from
    sys._debugmallocstats, which writes to the C stderr)."""
    import sys
    r, w = os.pipe()
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(w, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    out = {}
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        p = line.split()
        if len(p) == 5 and all(x.isdigit() for x in p):
            out[int(p[1])] = int(p[4])
    return out


def seal_heap() -> None:
    """Fill pymalloc's free blocks (bytes objects of each block size; floats
    for 32-byte blocks; 16-byte blocks hold no Python object and stay) and
    glibc's free chunks below the top of the heap."""
    for _ in range(3):
        for size, n in _pymalloc_free_blocks().items():
            if size == 32:
                _FILLERS.extend(float(i) + 0.5 for i in range(n))
            elif size > 32:
                _FILLERS.extend(b"\x01" * (size - 33) for _ in range(n))
    _seal_glibc()


def _seal_glibc() -> None:
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = Mallinfo2
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return
    # free bytes in the bins (fordblks counts the top chunk too: keepcost)
    for size in (4096, 1024, 256, 64, 16):
        for _ in range(100_000):
            m = libc.mallinfo2()
            if m.fordblks - m.keepcost < size:
                break
            top = m.keepcost
            p = libc.malloc(size)
            if not p:
                return
            if libc.mallinfo2().keepcost < top:   # came from the top: no hole left this big
                libc.free(ctypes.c_void_p(p))
                break
            _FILLERS.append(p)   # (an address: never freed, never used)
