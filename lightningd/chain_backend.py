"""The Bitcoin backend interface: the five calls of Core Lightning's backend
plugins.  The built-in implementation talks to bitcoind (bitcoind.py); a
plugin that registers all five methods replaces it, so an operator can bring
another chain source."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from .bitcoind import Bitcoind, BitcoindError, BitcoindUnreachable
from .jsonrpc_errors import RpcError

if TYPE_CHECKING:
    from .plugin_proc import PluginProcess
    from .plugins import PluginManager

BACKEND_METHODS = ("getchaininfo", "estimatefees", "getrawblockbyheight", "getutxout", "sendrawtransaction")


class ChainBackend(Protocol):
    name: str

    async def getchaininfo(self) -> dict: ...
    async def estimatefees(self) -> dict: ...
    async def getrawblockbyheight(self, height: int) -> dict: ...
    async def getutxout(self, txid: str, vout: int) -> dict: ...
    async def sendrawtransaction(self, tx: str, allowhighfees: bool = False) -> dict: ...


class BitcoindBackend:
    """bitcoind over JSON-RPC (python-bitcoinrpc in a worker thread)."""

    name = "bitcoind"

    def __init__(self, bitcoind: Bitcoind) -> None:
        self.b = bitcoind

    async def getchaininfo(self) -> dict:
        return await self.b.getchaininfo()

    async def estimatefees(self) -> dict:
        return await self.b.estimatefees()

    async def getrawblockbyheight(self, height: int) -> dict:
        return await self.b.getrawblockbyheight(height)

    async def getutxout(self, txid: str, vout: int) -> dict:
        return await self.b.getutxout(txid, vout)

    async def sendrawtransaction(self, tx: str, allowhighfees: bool = False) -> dict:
        return await self.b.sendrawtransaction(tx, allowhighfees)


class PluginBackend:
    """A plugin answering the five calls (Core Lightning's bcli replacement)."""

    def __init__(self, pm: "PluginManager", plugin: "PluginProcess") -> None:
        self.pm = pm
        self.plugin = plugin
        self.name = f"plugin {plugin.name}"

    async def _call(self, method: str, params: dict) -> Any:
        if not self.plugin.active and self.plugin.exited.is_set():
            raise BitcoindUnreachable(f"backend plugin {self.plugin.name} is not running")
        try:
            return await self.pm.call_plugin_method(self.plugin, method, params)
        except RpcError as e:
            raise BitcoindError(f"{self.name}: {method}: {e.message}", e.code) from None

    async def getchaininfo(self) -> dict:
        return await self._call("getchaininfo", {"last_height": None})

    async def estimatefees(self) -> dict:
        return await self._call("estimatefees", {})

    async def getrawblockbyheight(self, height: int) -> dict:
        return await self._call("getrawblockbyheight", {"height": height})

    async def getutxout(self, txid: str, vout: int) -> dict:
        return await self._call("getutxout", {"txid": txid, "vout": vout})

    async def sendrawtransaction(self, tx: str, allowhighfees: bool = False) -> dict:
        return await self._call("sendrawtransaction", {"tx": tx, "allowhighfees": allowhighfees})


def find_backend_plugin(pm: "PluginManager") -> "PluginProcess | None":
    """The plugin that registered all five backend methods, if any; one that
    registered only some of them is an error (Core Lightning refuses too)."""
    found = None
    for p in pm.plugins:
        if p.manifest is None:
            continue
        names = {r["name"] for r in p.manifest.rpcmethods}
        have = names & set(BACKEND_METHODS)
        if have and have != set(BACKEND_METHODS):
            raise ValueError(f"plugin {p.name} registers only part of the Bitcoin backend "
                             f"({', '.join(sorted(have))}): it must register all of {', '.join(BACKEND_METHODS)}")
        if have:
            if found is not None:
                raise ValueError(f"two Bitcoin backend plugins: {found.name} and {p.name}")
            found = p
    return found


class DurableBackend:
    """Another backend whose broadcasts wait until the database committed
    everything before them (a funding, closing or sweep tx is stored before
    it may reach the chain): lightningd wraps its backend in this when the
    database commits after the working copy (--wallet=postgres://...)."""

    def __init__(self, inner: ChainBackend, durable: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.durable = durable

    async def getchaininfo(self) -> dict:
        return await self.inner.getchaininfo()

    async def estimatefees(self) -> dict:
        return await self.inner.estimatefees()

    async def getrawblockbyheight(self, height: int) -> dict:
        return await self.inner.getrawblockbyheight(height)

    async def getutxout(self, txid: str, vout: int) -> dict:
        return await self.inner.getutxout(txid, vout)

    async def sendrawtransaction(self, tx: str, allowhighfees: bool = False) -> dict:
        await self.durable()
        return await self.inner.sendrawtransaction(tx, allowhighfees)
