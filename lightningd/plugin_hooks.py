"""Hooks: synchronous questions to plugins, chained in registration order
(respecting `before`/`after`).  Each hook is declared once here with its
default answer; lightningd code calls `hooks.call(name, payload)`."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .plugin_proc import PluginError, PluginProcess

if TYPE_CHECKING:
    from .plugins import PluginManager

CONTINUE = {"result": "continue"}

# name -> chained?  (single-mode hooks accept one plugin only)
HOOKS: dict[str, bool] = {
    "peer_connected": True,
    "rpc_command": True,
    "openchannel": True,
    "invoice_payment": True,
    "htlc_accepted": True,
    "db_write": True,
    "commitment_revocation": True,
    "custommsg": True,
    "onion_message_recv": True,
    "onion_message_recv_secret": True,
}


class HookError(Exception):
    pass


class HookManager:
    def __init__(self, pm: "PluginManager") -> None:
        self.pm = pm
        self.chains: dict[str, list[tuple[PluginProcess, dict]]] = {h: [] for h in HOOKS}

    def register(self, p: PluginProcess) -> None:
        assert p.manifest is not None
        for h in p.manifest.hooks:
            name = h["name"]
            if name not in HOOKS:
                raise PluginError(f"unknown hook {name}")
            chain = self.chains[name]
            if not HOOKS[name] and chain:
                raise PluginError(f"hook {name} is single-mode and already taken by {chain[0][0].name}")
            chain.append((p, h))
            self.chains[name] = _order(chain)

    def unregister(self, p: PluginProcess) -> None:
        for name, chain in self.chains.items():
            self.chains[name] = [(q, h) for q, h in chain if q is not p]

    def has(self, name: str) -> bool:
        return bool(self.chains.get(name))

    async def call(self, name: str, payload: dict) -> dict:
        """Walk the chain until a plugin answers anything but `continue`;
        a plugin that dies mid-call counts as `continue`."""
        answers = await self.call_chain(name, payload)
        return answers[-1] if answers and answers[-1].get("result") != "continue" else dict(CONTINUE)

    async def call_chain(self, name: str, payload: dict) -> list[dict]:
        """Every plugin's answer in chain order, up to the first that is not
        `continue` (included), for hooks whose `continue` carries settings
        (openchannel's mindepth, reserve, close_to)."""
        answers = []
        for p, _ in list(self.chains.get(name, [])):
            try:
                resp = await p.request(name, payload)
            except (PluginError, asyncio.TimeoutError) as e:
                self.pm.log.unusual(f"hook {name}: plugin {p.name} failed: {e}")
                continue
            result = resp.get("result")
            if "error" in resp and resp["error"] is not None:
                self.pm.log.unusual(f"hook {name}: plugin {p.name} returned error {resp['error']}")
                continue
            if not isinstance(result, dict):
                self.pm.log.unusual(f"hook {name}: plugin {p.name} returned {result!r}")
                continue
            answers.append(result)
            if result.get("result") != "continue":
                break
        return answers


def _order(chain: list[tuple[PluginProcess, dict]]) -> list[tuple[PluginProcess, dict]]:
    """Stable topological sort by before/after (names of other plugins)."""
    names = {p.name: i for i, (p, _) in enumerate(chain)}
    edges: dict[int, set[int]] = {i: set() for i in range(len(chain))}
    for i, (p, h) in enumerate(chain):
        for other in h.get("before", []):
            j = names.get(other)
            if j is not None:
                edges[i].add(j)          # i before j
        for other in h.get("after", []):
            j = names.get(other)
            if j is not None:
                edges[j].add(i)          # j before i
    indeg = {i: 0 for i in edges}
    for i, outs in edges.items():
        for j in outs:
            indeg[j] += 1
    order: list[int] = []
    ready = sorted(i for i, d in indeg.items() if d == 0)
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in sorted(edges[i]):
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
        ready.sort()
    if len(order) != len(chain):
        raise PluginError("hook ordering constraints cannot be satisfied")
    return [chain[i] for i in order]


