"""Memory per channel: what each channeld costs today, and what a fork-server
(a pre-imported zygote forking one child per channel) would save.

l1 opens CHANNELS channels (default 20) round-robin over PEERS peers
(default 20: one each; with fewer, a peer gets several channels), waits
until all are CHANNELD_NORMAL, then reads /proc/PID/smaps_rollup of every l1
process: RSS, PSS (shared pages split among the processes mapping them) and
USS (private clean + dirty: what killing the process would free).

The fork-server estimate is measured, not guessed: while the nodes are still
up, a zygote imports what channeld imports, gc.freeze()s, and forks one child
per channel; the children are read the same way.  Twice: idle children (read
at the same moment as the node: the best case), then "busy" children that
each ran a channel through the channeld core first (what a working channel
un-shares and allocates).

    ./run bench channel_memory         # CHANNELS=20 PEERS=20 by default

The table and the summary line go to stderr; stdout keeps the JSON figures.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from contrib.regtest.testing import RegtestChain  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHANNEL_SAT = 1_000_000
DAEMONS = ("lightningd", "hsmd", "connectd", "gossipd")


@dataclass(frozen=True)
class Mem:
    """One process's memory in KiB, from /proc/PID/smaps_rollup."""
    rss: int
    pss: int
    uss: int

    @classmethod
    def of(cls, pid: int) -> "Mem":
        fields: dict[str, int] = {}
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1])
        return cls(rss=fields["Rss"], pss=fields["Pss"],
                   uss=fields["Private_Clean"] + fields["Private_Dirty"])

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> "Mem":
        return cls(rss=d["rss"], pss=d["pss"], uss=d["uss"])


def summarize(mems: list[Mem]) -> dict[str, Any]:
    """Mean/median per process and total over the processes, in MiB."""
    out: dict[str, Any] = {"count": len(mems)}
    for field in ("rss", "pss", "uss"):
        xs = [getattr(m, field) / 1024 for m in mems]
        out[field] = {"mean": round(statistics.mean(xs), 2), "median": round(statistics.median(xs), 2),
                      "total": round(sum(xs), 2)}
    return out


# The zygote: imports what `python -m channeld` imports (including the modules
# channeld.channeld imports lazily inside functions), so the forked children
# share the interpreter and module objects copy-on-write.  gc.freeze() moves
# everything allocated so far out of the collector's reach, as a real
# fork-server would: otherwise the children's first collection writes to every
# tracked object's header and un-shares most of the image.  It prints its own
# pre-fork memory (the import image) and the children's pids once every child
# is ready, then waits for stdin to close; the children exit when the zygote's
# end of the `life` pipe closes, so none outlives it even if it is killed.
#
# An idle child is the best case: it dirties almost nothing.  A "busy" child
# first runs a channel through the real channeld core in-process (a funded
# pair, three HTLCs added and fulfilled, through the wire codec and signer),
# so refcount writes and new objects un-share the pages a working channeld
# would touch: closer to what a channel costs once it has done something.
# (It holds both ends of that pair, and the zygote also imports the small
# channel_testing driver, so the busy figure errs on the high side.)
ZYGOTE_SRC = r"""
import gc, json, os, sys
import channeld.__main__, channeld.channeld, channeld.onchain_export
import channeld.core.reestablish, channeld.core.serialize, common.commitment, common.sync_hsm
from bitcoin.hashes import sha256
from channel_testing import Pipe, make_pair

def rollup():
    f = {}
    for line in open("/proc/self/smaps_rollup"):
        p = line.split()
        if len(p) == 3 and p[2] == "kB":
            f[p[0].rstrip(":")] = int(p[1])
    return {"rss": f["Rss"], "pss": f["Pss"], "uss": f["Private_Clean"] + f["Private_Dirty"]}

def work():
    a, b = make_pair(push_msat=3_000_000_000)
    p = Pipe(a, b)
    for i in range(3):
        p.send("A", a.channel.add_htlc(1_000_000 * (i + 1), sha256(bytes([i]) * 32), 600, bytes(1366), 500))
    p.deliver_all()
    for h in b.channel.htlcs():
        p.send("B", b.channel.fulfill_htlc(h.htlc_id, bytes([h.htlc_id]) * 32))
    p.deliver_all()
    assert not a.channel.htlcs()
    return a, b  # kept alive, as a channeld keeps its channel

n, busy = int(sys.argv[1]), sys.argv[2] == "busy"
gc.collect()
gc.freeze()
prefork = rollup()
ready_r, ready_w = os.pipe()
life_r, life_w = os.pipe()
kids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        # Never return into the zygote's code: do the work, say so, then idle
        # until the zygote goes away.
        os.close(life_w)
        state = work() if busy else None
        os.write(ready_w, b".")
        os.read(life_r, 1)
        os._exit(0)
    kids.append(pid)
got = 0
while got < n:
    got += len(os.read(ready_r, n - got))
print(json.dumps({"prefork": prefork, "children": kids}), flush=True)
sys.stdin.read()
os.close(life_w)
for pid in kids:
    os.waitpid(pid, 0)
"""


@contextmanager
def zygote(n: int, mode: str) -> Iterator[tuple[int, Mem, list[int]]]:
    """Run the zygote with n forked children ("idle" or "busy");
    yields (zygote pid, pre-fork memory, child pids)."""
    proc = subprocess.Popen([sys.executable, "-c", ZYGOTE_SRC, str(n), mode], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"zygote exited early ({proc.wait()})")
        info = json.loads(line)
        yield proc.pid, Mem.from_dict(info["prefork"]), info["children"]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def open_channels(nf: Any, chain: RegtestChain, channels: int, peers: int) -> Any:
    """Start l1 and its peers, open `channels` channels round-robin over the peers
    and return l1 once every channel is CHANNELD_NORMAL."""
    from node_factory import wait_for
    l1, *others = nf.get_nodes(1 + peers, opts={"log-level": "info"})
    # One confirmed UTXO per channel: fundchannel spends confirmed coins only
    # (minconf 1), so a single coin would force a block between opens.
    addr = l1.rpc.newaddr("bech32")["bech32"]
    for _ in range(channels):
        chain.fund(addr, CHANNEL_SAT + 100_000)
    chain.mine(1)
    wait_for(lambda: len([o for o in l1.rpc.listfunds()["outputs"] if o["status"] == "confirmed"]) >= channels,
             timeout=60)
    for peer in others:
        l1.connect(peer)
    for i in range(channels):
        l1.rpc.fundchannel(others[i % peers].node_id, CHANNEL_SAT)
    chain.mine(6)

    def all_normal() -> bool:
        chans = l1.rpc.listpeerchannels()["channels"]
        return len(chans) == channels and all(c["state"] == "CHANNELD_NORMAL" for c in chans)
    wait_for(all_normal, timeout=120)
    return l1


@dataclass
class ZygoteRun:
    prefork: Mem          # the zygote before forking: the import image
    zygote: Mem           # the zygote while its children run
    children: list[Mem]


def measure_zygote(n: int, mode: str, during: Callable[[], None] = lambda: None) -> ZygoteRun:
    """Fork n children from a zygote and read them all at once; `during` runs
    in the same window, to read other processes against the same sharers."""
    with zygote(n, mode) as (zpid, prefork, kids):
        during()
        return ZygoteRun(prefork, Mem.of(zpid), [Mem.of(p) for p in kids])


def run(channels: int | None = None, peers: int | None = None) -> dict[str, Any]:
    from node_factory import NodeFactory, wait_for
    channels = channels or int(os.environ.get("CHANNELS", "20"))
    peers = min(peers or int(os.environ.get("PEERS", "20")), channels)
    t0 = time.monotonic()
    chd: list[Mem] = []
    daemons: dict[str, list[Mem]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        chain = RegtestChain(Path(tmp) / "bitcoind")
        chain.start()
        # Enough mature coinbases for one faucet payment per channel.
        chain.mine(101 + channels)
        nf = NodeFactory(Path(tmp), chain)
        try:
            l1 = open_channels(nf, chain, channels, peers)
            setup_s = time.monotonic() - t0
            # channeld starts once the funding is deep enough; wait until all exist.
            wait_for(lambda: list(l1.subdaemon_pids_all().values()).count("channeld") == channels, timeout=60)
            time.sleep(2)  # settle: post-lock-in messages, gossip

            def read_node() -> None:
                pids = l1.subdaemon_pids_all()
                chd.extend(Mem.of(p) for p, name in pids.items() if name == "channeld")
                daemons["lightningd"] = [Mem.of(l1.proc.pid)]
                for name in DAEMONS[1:]:
                    daemons[name] = [Mem.of(p) for p, n in pids.items() if n == name]
            # The node is read while the idle zygote runs, so both see the same
            # set of processes sharing libpython and the interpreter binary.
            idle = measure_zygote(channels, "idle", read_node)
            busy = measure_zygote(channels, "busy")
        finally:
            problems = nf.teardown()
            chain.stop()
    result = report(chd, daemons, idle, busy)
    result.update(channels=channels, peers=peers, setup_s=round(setup_s, 1),
                  total_s=round(time.monotonic() - t0, 1), teardown_problems=problems)
    return result


def report(chd: list[Mem], daemons: dict[str, list[Mem]], idle: ZygoteRun, busy: ZygoteRun) -> dict[str, Any]:
    """Print the table and summary to stderr; return the same figures."""
    rows: list[tuple[str, dict[str, Any]]] = [("channeld (today)", summarize(chd))]
    rows += [(name, summarize(ms)) for name, ms in daemons.items()]
    rows += [("zygote (pre-fork)", summarize([idle.prefork])),
             ("zygote (idle kids)", summarize([idle.zygote])),
             ("forked child (idle)", summarize(idle.children)),
             ("zygote (busy kids)", summarize([busy.zygote])),
             ("forked child (busy)", summarize(busy.children))]
    err = sys.stderr
    print(f"\n{'process':<22}{'n':>3}  {'RSS mean/med/total':>22}  {'PSS mean/med/total':>22}  "
          f"{'USS mean/med/total':>22}   (MiB)", file=err)
    for name, s in rows:
        cells = "  ".join(f"{s[f]['mean']:>7.1f}{s[f]['median']:>7.1f}{s[f]['total']:>8.1f}"
                          for f in ("rss", "pss", "uss"))
        print(f"{name:<22}{s['count']:>3}  {cells}", file=err)

    n = len(chd)
    x = statistics.mean(m.pss for m in chd) / 1024

    def saving(z: ZygoteRun) -> tuple[float, float, float]:
        """(child PSS each, n*(X-Y), the same minus the zygote's own PSS, which stays resident)."""
        y = statistics.mean(m.pss for m in z.children) / 1024
        return y, (x - y) * n, (x - y) * n - z.zygote.pss / 1024
    y, simple, net = saving(idle)
    yb, simple_b, net_b = saving(busy)
    summary = (f"channeld today: PSS {x:.1f} MiB each; forked-from-zygote child: PSS {y:.1f} MiB each "
               f"(idle), {yb:.1f} MiB after running a channel; saving ≈ ({x:.1f}-{y:.1f})*{n} = {simple:.0f} MiB "
               f"for {n} channels ({net:.0f} MiB net of the zygote; {net_b:.0f} MiB net with busy children)")
    print(f"\n{summary}\n", file=err, flush=True)
    return {"mib": {name: s for name, s in rows},
            "saving_mib": {"idle": round(simple, 1), "idle_net_of_zygote": round(net, 1),
                           "busy": round(simple_b, 1), "busy_net_of_zygote": round(net_b, 1)},
            "summary": summary}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
