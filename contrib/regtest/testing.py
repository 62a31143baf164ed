"""Run regtestd from tests and scripts: :class:`RegtestChain` starts the real
process on free ports in a datadir, talks to it with python-bitcoinrpc, and
carries a tiny key-based wallet (the "faucet") since regtestd has no wallet.

    chain = RegtestChain(tmp_path / "bitcoind")
    chain.start()                        # waits until RPC answers
    chain.mine(101)                      # to the faucet: its coinbases mature
    txid, vout = chain.fund("bcrt1q...", 1_000_000)    # sats, sent via sendrawtransaction
    chain.mine(1)
    chain.rpc.getblockcount()
    chain.stop()

The pytest fixtures around it are in tests/regtest_fixture.py.
"""
from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

from bitcoinrpc.authproxy import AuthServiceProxy, JSONRPCException

from bitcoin.address import address_to_script, script_to_address
from bitcoin.hashes import sha256
from bitcoin.keys import pubkey_of, sign_digest_der
from bitcoin.networks import NETWORKS
from bitcoin.script import p2pkh_script_code, p2wpkh_script
from bitcoin.tx import SIGHASH_ALL, OutPoint, Tx, TxIn, TxOut

NET = NETWORKS["regtest"]
COIN = 100_000_000
FAUCET_SECRET = sha256(b"regtestd faucet key")


# Ports handed out below the kernel's ephemeral range (32768-60999 on
# Linux): a port the kernel picked for `bind(0)` is also where it puts the
# next outgoing connection, so a node started a moment later could find its
# port taken by some client's socket (seen with parallel test runs).
_PORT_RANGE = (10000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1, outside the ephemeral range,
    never the same twice in one process."""
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


def regtestd_command() -> list[str]:
    """The installed console script next to this Python, else ``python -m contrib.regtest``."""
    script = Path(sys.executable).parent / "regtestd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "contrib.regtest"]


def to_sats(btc: Decimal | float | int | str) -> int:
    return int(Decimal(str(btc)) * COIN)


def sign_p2wpkh(tx: Tx, index: int, secret: bytes, amount: int, sighash: int = SIGHASH_ALL) -> None:
    """Fill input `index`'s witness for a P2WPKH output of `amount` sats (BIP143)."""
    pub = pubkey_of(secret)
    digest = tx.sighash_segwit_v0(index, p2pkh_script_code(pub), amount, sighash)
    tx.inputs[index].witness = [sign_digest_der(secret, digest) + bytes([sighash]), pub]


def sign_p2wsh(tx: Tx, index: int, secret: bytes, witness_script: bytes, amount: int,
               extra: Sequence[bytes] = (), sighash: int = SIGHASH_ALL) -> None:
    """Witness [sig, *extra, witness_script] for a P2WSH input whose script checks one signature."""
    digest = tx.sighash_segwit_v0(index, witness_script, amount, sighash)
    tx.inputs[index].witness = [sign_digest_der(secret, digest) + bytes([sighash]), *extra, witness_script]


class RegtestChain:
    """A regtestd process, its RPC client and a faucet key.

    Args:
        datadir: created if missing; chain data goes to ``datadir/regtest``.
        cookie: use cookie authentication instead of rpcuser/rpcpassword.
        extra_args: more bitcoind-style options (``["-mempoolfullrbf=0"]``).
        fallbackfee: what estimatesmartfee answers (BTC/kvB), None for no estimate.
    """

    def __init__(self, datadir: Path, *, cookie: bool = False, extra_args: Sequence[str] = (),
                 fallbackfee: str | None = "0.00025", zmq: bool = True) -> None:
        self.datadir = Path(datadir)
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.rpcport = free_port()
        self.cookie = cookie
        self.rpcuser = None if cookie else "rpcuser"
        self.rpcpassword = None if cookie else "rpcpass"
        self.zmq_rawblock = f"tcp://127.0.0.1:{free_port()}" if zmq else None
        self.zmq_rawtx = f"tcp://127.0.0.1:{free_port()}" if zmq else None
        self.zmq_hashblock = self.zmq_rawblock       # shares the socket, as bitcoind allows
        self.extra_args = list(extra_args)
        self.fallbackfee = fallbackfee
        self.proc: subprocess.Popen[bytes] | None = None
        self.faucet_secret = FAUCET_SECRET
        self.faucet_pubkey = pubkey_of(FAUCET_SECRET)
        self.faucet_spk = p2wpkh_script(self.faucet_pubkey)
        self.faucet_address = script_to_address(self.faucet_spk, NET) or ""
        self._reserved: set[tuple[str, int]] = set()    # faucet coins spent by us, maybe unconfirmed

    # -- process ---------------------------------------------------------------------
    def args(self) -> list[str]:
        a = ["-regtest", f"-datadir={self.datadir}", f"-rpcport={self.rpcport}", "-rpcbind=127.0.0.1",
             "-printtoconsole=0", "-server", "-txindex"]
        if not self.cookie:
            a += [f"-rpcuser={self.rpcuser}", f"-rpcpassword={self.rpcpassword}"]
        if self.zmq_rawblock:
            a += [f"-zmqpubrawblock={self.zmq_rawblock}", f"-zmqpubhashblock={self.zmq_hashblock}",
                  f"-zmqpubrawtx={self.zmq_rawtx}"]
        if self.fallbackfee is not None:
            a.append(f"-fallbackfee={self.fallbackfee}")
        return a + self.extra_args

    def start(self, timeout: float = 30.0) -> None:
        """Start regtestd and wait until getblockcount answers."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log = open(self.datadir / "regtestd.out", "ab")
        self.proc = subprocess.Popen(regtestd_command() + self.args(), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"regtestd exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                self.rpc.getblockcount()
                return
            except (OSError, JSONRPCException, ValueError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"regtestd did not answer in {timeout}s: {self.output()[-2000:]}")
                time.sleep(0.05)

    def output(self) -> str:
        p = self.datadir / "regtestd.out"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        """Stop via SIGTERM (a clean shutdown) and wait; kill if it hangs. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- RPC -------------------------------------------------------------------------
    @property
    def cookie_path(self) -> Path:
        return self.datadir / "regtest" / ".cookie"

    @property
    def url(self) -> str:
        if self.cookie:
            user, _, password = self.cookie_path.read_text().strip().partition(":")
        else:
            user, password = self.rpcuser or "", self.rpcpassword or ""
        return f"http://{user}:{password}@127.0.0.1:{self.rpcport}"

    @property
    def rpc(self) -> AuthServiceProxy:
        """A fresh client (python-bitcoinrpc proxies are not thread-safe: don't share one)."""
        return AuthServiceProxy(self.url, timeout=60)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.rpc, method)(*args)

    # -- chain helpers -------------------------------------------------------------------
    def mine(self, n: int = 1, address: str | None = None) -> list[str]:
        """Mine `n` blocks (with the mempool) to `address`, by default the faucet."""
        return self.rpc.generatetoaddress(n, address or self.faucet_address)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met")
            time.sleep(interval)

    def faucet_coins(self) -> list[tuple[str, int, int]]:
        """Spendable confirmed faucet coins (txid, vout, sats), largest first.

        Mature coinbases and confirmed outputs, minus those this helper already
        spent (only it knows the faucet key, so that is the whole mempool view).
        """
        rpc = self.rpc
        height = rpc.getblockcount()
        scan = rpc.scantxoutset("start", [f"addr({self.faucet_address})"])
        live = {(u["txid"], u["vout"]) for u in scan["unspents"]}
        self._reserved &= live                      # forget what got confirmed
        out = []
        for u in scan["unspents"]:
            if u["coinbase"] and height + 1 - u["height"] < 100:
                continue
            if (u["txid"], u["vout"]) in self._reserved:
                continue
            out.append((u["txid"], u["vout"], to_sats(u["amount"])))
        return sorted(out, key=lambda c: -c[2])

    def fund(self, destination: str | bytes, amount: int, feerate: int = 2, confirm: bool = False) -> tuple[str, int]:
        """Send `amount` sats from the faucet to an address or scriptPubKey.

        Mines 101 blocks first if the faucet has nothing mature. Returns the
        outpoint (txid, vout) of the new output; `confirm` mines one block.
        """
        spk = destination if isinstance(destination, bytes) else address_to_script(destination, NET)
        coins = self.faucet_coins()
        if not coins or sum(c[2] for c in coins) < amount + 10_000:
            self.mine(101)
            coins = self.faucet_coins()
        chosen, total = [], 0
        for c in coins:
            chosen.append(c)
            total += c[2]
            if total >= amount + 10_000:
                break
        tx = Tx(version=2, inputs=[TxIn(OutPoint.from_hex(t, v)) for t, v, _ in chosen],
                outputs=[TxOut(amount, spk), TxOut(0, self.faucet_spk)])
        vsize = 11 + 68 * len(chosen) + 9 + len(spk) + 31 + 2
        change = total - amount - feerate * vsize
        if change < 1000:
            raise RuntimeError("faucet: not enough funds")
        tx.outputs[1].value = change
        for i, (_, _, value) in enumerate(chosen):
            sign_p2wpkh(tx, i, self.faucet_secret, value)
        txid = self.rpc.sendrawtransaction(tx.to_hex())
        self._reserved.update((t, v) for t, v, _ in chosen)
        if confirm:
            self.mine(1)
        return txid, 0

    def cleanup(self) -> None:
        """Stop and delete the datadir."""
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


__all__ = ["RegtestChain", "free_port", "regtestd_command", "sign_p2wpkh", "sign_p2wsh", "to_sats",
           "FAUCET_SECRET"]
