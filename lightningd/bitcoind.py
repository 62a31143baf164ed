"""The built-in Bitcoin backend: bitcoind's JSON-RPC through python-bitcoinrpc,
answering the five calls of Core Lightning's backend interface
(getchaininfo, estimatefees, getrawblockbyheight, getutxout,
sendrawtransaction).  python-bitcoinrpc blocks, so every call runs in a
worker thread with its own connection; nothing mutable is shared with it."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from bitcoinrpc.authproxy import AuthServiceProxy, JSONRPCException

from bitcoin.networks import Network
from common.wireaddr import split_host_port

from .options import OptionError


class BitcoindError(Exception):
    """bitcoind answered with an error (code, message) or could not be reached."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BitcoindUnreachable(BitcoindError):
    pass


@dataclass
class BitcoindConfig:
    host: str
    port: int
    user: str | None
    password: str | None
    cookie_path: str | None
    timeout: int = 60

    def credentials(self) -> tuple[str, str]:
        if self.user is not None and self.password is not None:
            return self.user, self.password
        if self.cookie_path and os.path.exists(self.cookie_path):
            with open(self.cookie_path) as f:
                u, _, p = f.read().strip().partition(":")
            return u, p
        raise BitcoindUnreachable(
            "no bitcoind RPC credentials: set --bitcoin-rpcuser and --bitcoin-rpcpassword, or "
            f"--bitcoin-datadir where bitcoind writes its .cookie (looked for {self.cookie_path})")

    def url(self) -> str:
        u, p = self.credentials()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{quote(u, safe='')}:{quote(p, safe='')}@{host}:{self.port}"


def read_bitcoin_conf(datadir: str, net: Network) -> dict[str, str]:
    """Keys of bitcoin.conf that apply to `net`: top level, then its section."""
    path = os.path.join(datadir, "bitcoin.conf")
    out: dict[str, str] = {}
    if not os.path.exists(path):
        return out
    section = None
    want = {"bitcoin": "main", "testnet": "test", "signet": "signet", "regtest": "regtest"}[net.name]
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                continue
            if "=" not in line:
                continue
            k, v = (x.strip() for x in line.split("=", 1))
            if section is None or section == want:
                out[k] = v
    return out


def make_config(opts: dict[str, Any], net: Network) -> BitcoindConfig:
    """From --bitcoin-* options, bitcoin.conf and the .cookie; options win."""
    datadir = os.path.expanduser(opts.get("bitcoin-datadir") or "~/.bitcoin")
    conf = read_bitcoin_conf(datadir, net)
    connect = opts.get("bitcoin-rpcconnect") or conf.get("rpcconnect") or "127.0.0.1"
    try:
        host, connect_port = split_host_port(connect)
    except ValueError as e:
        # the option itself was checked when parsed; this is bitcoin.conf's
        raise OptionError(f"rpcconnect in {os.path.join(datadir, 'bitcoin.conf')}: {e}") from None
    # the port: --bitcoin-rpcport, else the one written in rpcconnect, else
    # bitcoin.conf's rpcport, else the network's
    port = opts.get("bitcoin-rpcport") or connect_port or int(conf.get("rpcport") or net.rpc_port)
    user = opts.get("bitcoin-rpcuser") or conf.get("rpcuser")
    password = opts.get("bitcoin-rpcpassword") or conf.get("rpcpassword")
    cookie = os.path.join(datadir, net.cookie_subdir, ".cookie") if net.cookie_subdir else os.path.join(datadir, ".cookie")
    return BitcoindConfig(host, int(port), user, password, cookie, int(opts.get("bitcoin-rpcclienttimeout") or 60))


def _to_json(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, list):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_json(x) for k, x in v.items()}
    return v


class Bitcoind:
    def __init__(self, cfg: BitcoindConfig) -> None:
        self.cfg = cfg

    def _call_sync(self, method: str, params: tuple) -> Any:
        try:
            proxy = AuthServiceProxy(self.cfg.url(), timeout=self.cfg.timeout)
            return getattr(proxy, method)(*params)
        except JSONRPCException as e:
            err = e.error if isinstance(e.error, dict) else {}
            raise BitcoindError(err.get("message", str(e)), err.get("code")) from None
        except (OSError, ConnectionError) as e:
            raise BitcoindUnreachable(f"cannot reach bitcoind at {self.cfg.host}:{self.cfg.port}: {e}") from None
        except Exception as e:  # http.client errors, bad status (401), JSON errors
            msg = str(e)
            if "401" in msg or "Unauthorized" in msg or "authorization" in msg.lower():
                raise BitcoindUnreachable(f"bitcoind at {self.cfg.host}:{self.cfg.port} refused our credentials "
                                          "(check --bitcoin-rpcuser/--bitcoin-rpcpassword)") from None
            raise BitcoindUnreachable(f"bitcoind at {self.cfg.host}:{self.cfg.port}: {type(e).__name__}: {e}") \
                from None

    async def call(self, method: str, *params: Any) -> Any:
        return _to_json(await asyncio.to_thread(self._call_sync, method, params))

    # -- the backend interface ------------------------------------------------------
    async def getchaininfo(self) -> dict:
        info = await self.call("getblockchaininfo")
        return {"chain": info["chain"], "headercount": info["headers"], "blockcount": info["blocks"],
                "ibd": bool(info.get("initialblockdownload", False))}

    async def estimatefees(self) -> dict:
        """Feerates in sat/kVB (Core Lightning's backend units)."""
        async def est(blocks: int, mode: str) -> int | None:
            r = await self.call("estimatesmartfee", blocks, mode)
            if "feerate" not in r:
                return None
            return int(Decimal(str(r["feerate"])) * 100_000_000)
        floor = 1000
        try:
            info = await self.call("getmempoolinfo")
            floor = max(floor, int(Decimal(str(info.get("mempoolminfee", 0.00001))) * 100_000_000))
        except BitcoindError:
            pass
        rates = []
        for blocks in (2, 6, 12, 100):
            r = await est(blocks, "CONSERVATIVE" if blocks <= 2 else "ECONOMICAL")
            if r is not None:
                rates.append({"blocks": blocks, "feerate": max(r, floor)})
        return {"feerate_floor": floor, "feerates": rates}

    async def getrawblockbyheight(self, height: int) -> dict:
        try:
            h = await self.call("getblockhash", height)
        except BitcoindError as e:
            if e.code == -8:  # height out of range: not an error for the caller
                return {"blockhash": None, "block": None}
            raise
        block = await self.call("getblock", h, 0)
        return {"blockhash": h, "block": block}

    async def getutxout(self, txid: str, vout: int) -> dict:
        r = await self.call("gettxout", txid, vout)
        if r is None:
            return {"amount": None, "script": None}
        sats = int(Decimal(str(r["value"])) * 100_000_000)
        return {"amount": sats * 1000, "script": r["scriptPubKey"]["hex"]}

    async def sendrawtransaction(self, tx: str, allowhighfees: bool = False) -> dict:
        try:
            await self.call("sendrawtransaction", tx, 0 if allowhighfees else 0.1)
        except BitcoindUnreachable:
            raise
        except BitcoindError as e:
            return {"success": False, "errmsg": f"{e} (code {e.code})"}
        return {"success": True, "errmsg": ""}
