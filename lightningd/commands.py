"""Built-in RPC commands about the node itself: getinfo, help, stop, getlog,
listconfigs, check, plugin."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from common.features import Context
from common.wireaddr import parse_wireaddr

from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, METHOD_NOT_FOUND, RpcError
from .log import level_from_name
from .options import BOOL, FLAG, INT, MSAT, SAT, OptionError
from .params import opt, req, resolve_params
from .plugin_proc import PluginError

if TYPE_CHECKING:
    from .lightningd import LightningD

VERSION = "v0.1.0"


def register(ld: "LightningD") -> None:
    cmd = ld.registry.command

    @cmd("getinfo", [], category="utility", description="Show information about this node")
    async def getinfo(ctx: RequestContext) -> dict:
        peers = list(ld.peers.values())
        r: dict[str, Any] = {
            "id": ld.node_id.hex(),
            "alias": ld.alias,
            "color": ld.color.hex(),
            "num_peers": sum(1 for p in peers if p.connected),
            "num_pending_channels": ld.channels.count("pending"),
            "num_active_channels": ld.channels.count("active"),
            "num_inactive_channels": ld.channels.count("inactive"),
            "address": [a.to_json() for a in ld.announce_addrs()],
            "binding": [_binding_json(b) for b in ld.connectd.binding],
            "version": VERSION,
            "blockheight": ld.blockheight,
            "network": ld.network.name,
            "fees_collected_msat": ld.fees_collected_msat,
            "lightning-dir": ld.cfg.network_dir,
            "our_features": {"init": ld.our_features(Context.INIT).hex(),
                             "node": ld.our_features(Context.NODE_ANNOUNCEMENT).hex(),
                             "channel": ld.our_features(Context.CHANNEL_ANNOUNCEMENT).hex(),
                             "invoice": ld.our_features(Context.INVOICE).hex()},
        }
        if not ld.bitcoind_synced:
            r["warning_bitcoind_sync"] = "Bitcoind is not up-to-date with network."
        if ld.lightningd_syncing:
            r["warning_lightningd_sync"] = "Lightningd is still loading latest blocks from bitcoind."
        return r

    def listed(c: Any) -> bool:
        return (not c.dev_only or ld.cfg.developer) and (not c.deprecated or bool(ld.cfg.get("allow-deprecated-apis")))

    @cmd("help", [opt("command", P.string)], category="utility",
         description="List available commands, or give verbose help on one {command}.")
    async def help_(ctx: RequestContext, command: str | None) -> dict:
        cmds = ld.registry.commands
        if command is not None:
            c = cmds.get(command)
            if c is None or not listed(c):
                raise RpcError(METHOD_NOT_FOUND, f"Unknown command {command}")
            items = [c]
        else:
            items = [c for c in sorted(cmds.values(), key=lambda c: c.name) if listed(c)]
        # a deprecated command is marked, and not listed at all when deprecated APIs are off (Core Lightning)
        return {"help": [{"command": f"{c.name}{' (DEPRECATED!)' if c.deprecated else ''} {c.usage_text()}".strip(),
                          "category": c.category,
                          "description": c.description, "verbose": c.description} for c in items],
                "format-hint": "simple"}

    @cmd("stop", [], category="utility", description="Shut down the lightningd process")
    async def stop(ctx: RequestContext) -> dict:
        # As Core Lightning: the answer comes once shutdown is complete, so a
        # script may reuse the directory and port the moment it has it.
        if ctx.conn is not None:
            ctx.conn.linger = True
        ld.request_shutdown()
        await ld.stopped.wait()
        return {"result": "Shutdown complete"}

    @cmd("getlog", [opt("level", P.one_of("broken", "unusual", "info", "debug", "trace", "io"), "info")],
         category="utility", description="Show logs, with optional log {level} (info|unusual|debug|io)")
    async def getlog(ctx: RequestContext, level: str) -> dict:
        return ld.log_book.getlog(level_from_name(level))

    @cmd("listconfigs", [opt("config", P.string)], category="utility",
         description="List this node's config, or just {config}")
    async def listconfigs(ctx: RequestContext, config: str | None) -> dict:
        configs = _configs_json(ld)
        if config is not None:
            if config not in configs:
                raise RpcError(INVALID_PARAMS, f"Unknown config option {config}")
            configs = {config: configs[config]}
        return {"configs": configs}

    @cmd("check", [req("command_to_check", P.string)], category="utility", raw_params=True,
         usage="command_to_check [parameters...]",
         description="Don't run {command_to_check}, just verify parameters.")
    async def check(ctx: RequestContext, params: Any) -> dict:
        if isinstance(params, dict):
            rest = {k: v for k, v in params.items() if k != "command_to_check"}
            name = params.get("command_to_check")
        elif isinstance(params, list) and params:
            name, rest = params[0], params[1:]
        else:
            raise RpcError(INVALID_PARAMS, "missing required parameter: command_to_check")
        if not isinstance(name, str):
            raise RpcError(INVALID_PARAMS, "command_to_check: should be a string")
        c = ld.registry.commands.get(name)
        if c is None or (c.dev_only and not ld.cfg.developer):
            raise RpcError(METHOD_NOT_FOUND, f"Unknown command '{name}'")
        if c.plugin is not None:
            if c.plugin.manifest is not None and c.plugin.manifest.cancheck:
                args = dict(rest, command_to_check=name) if isinstance(rest, dict) else [name] + list(rest)
                await ld.plugins.call_plugin_method(c.plugin, "check", args)
        else:
            resolve_params(c.params, rest)
        return {"command_to_check": name}

    @cmd("plugin", [req("subcommand", P.one_of("start", "stop", "rescan", "startdir", "list")),
                    opt("plugin", P.string), opt("directory", P.string), opt("options", P.anything)],
         category="plugin", raw_params=True, usage="subcommand [plugin|directory] [options...]",
         description="Control plugins (start, stop, startdir, rescan, list)")
    async def plugin(ctx: RequestContext, params: Any) -> dict:
        # `plugin start path key=value...`: extra parameters are plugin options
        if isinstance(params, list):
            if not params:
                raise RpcError(INVALID_PARAMS, "missing required parameter: subcommand")
            sub, rest = params[0], params[1:]
            target = rest[0] if rest else None
            opts: dict[str, Any] = {}
            for item in rest[1:]:
                if isinstance(item, str) and "=" in item:
                    k, v = item.split("=", 1)
                    opts[k] = v
                else:
                    raise RpcError(INVALID_PARAMS, f"plugin options must be key=value: {item!r}")
        elif isinstance(params, dict):
            params = dict(params)
            sub = params.pop("subcommand", None)
            target = params.pop("plugin", None) or params.pop("directory", None)
            opts = params.pop("options", None) or {}
            if not isinstance(opts, dict):
                raise RpcError(INVALID_PARAMS, "options: should be an object")
            opts.update(params)
        else:
            raise RpcError(INVALID_PARAMS, "missing required parameter: subcommand")
        if target is not None and not isinstance(target, str):
            raise RpcError(INVALID_PARAMS, "plugin: should be a string")
        try:
            if sub == "start":
                if not target:
                    raise RpcError(INVALID_PARAMS, "missing required parameter: plugin")
                await ld.plugins.start_dynamic(target, opts)
            elif sub == "stop":
                if not target:
                    raise RpcError(INVALID_PARAMS, "missing required parameter: plugin")
                return {"command": "stop", "result": await ld.plugins.stop_plugin(target)}
            elif sub == "startdir":
                if not target:
                    raise RpcError(INVALID_PARAMS, "missing required parameter: directory")
                d = os.path.abspath(os.path.expanduser(target))
                if not os.path.isdir(d):
                    raise RpcError(INVALID_PARAMS, f"Could not open {d}")
                for name in sorted(os.listdir(d)):
                    path = os.path.join(d, name)
                    if not name.startswith(".") and os.access(path, os.X_OK) and os.path.isfile(path):
                        try:
                            await ld.plugins.start_dynamic(path, {})
                        except PluginError as e:
                            ld.plugins.log.unusual(str(e))
            elif sub == "rescan":
                try:
                    paths = ld.plugins._configured_paths()
                except OptionError as e:
                    raise RpcError(INVALID_PARAMS, str(e)) from None
                for path, _ in paths:
                    if not any(p.path == path for p in ld.plugins.plugins):
                        try:
                            await ld.plugins.start_dynamic(path, {})
                        except PluginError as e:
                            ld.plugins.log.unusual(str(e))
            elif sub != "list":
                raise RpcError(INVALID_PARAMS, f"subcommand: should be one of start, stop, rescan, startdir, "
                                               f"list: invalid token '{sub}'")
        except PluginError as e:
            raise RpcError(-3, str(e)) from None
        return {"command": sub, "plugins": ld.plugins.list()}


def _binding_json(addr: str) -> dict:
    return parse_wireaddr(addr, 0).to_json()


def _value_json(kind: str, value: Any) -> tuple[str, Any]:
    if kind == BOOL:
        return "value_bool", bool(value)
    if kind == INT:
        return "value_int", value
    if kind in (MSAT, SAT):
        # Core Lightning shows amount options as a plain number of msat
        # (min-emergency-msat, kept in sats there, too)
        return "value_msat", value
    return "value_str", value


def _configs_json(ld: "LightningD") -> dict:
    """Core Lightning's listconfigs (lightningd/configs.c): a flag is
    {"set", "source"}, shown even when not set; developer and deprecated
    (hidden) options only when they were given; options that only make the
    process exit (list-features-only) never."""
    out: dict[str, Any] = {}
    for name, v in ld.cfg.values.items():
        spec = v.spec
        given = v.source != "default"
        if (spec.dev or spec.hidden) and not given:
            continue
        if name == "list-features-only":
            continue
        if spec.kind == FLAG:
            out[name] = {"set": given and bool(v.value), "source": v.source}
            continue
        if v.value is None and not spec.multi:
            continue
        if spec.multi:
            vals = list(v.value or [])
            if not vals:
                continue
            key = "values_int" if spec.kind == INT else "values_str"
            out[name] = {key: vals, "sources": list(v.sources)}
            continue
        key, val = _value_json(spec.kind, v.value)
        if spec.conceal:
            val = "..."
        out[name] = {key: val, "source": v.source}
    for p in ld.plugins.plugins:
        if p.manifest is None:
            continue
        given = ld.plugins.option_values
        for o in p.manifest.options:
            raws = given.get(o.name, [])
            entry: dict[str, Any] = {"plugin": p.path}
            if o.multi:
                vals = [r.value for r in raws] or ([] if o.default is None else [o.default])
                entry["values_str" if o.type != "int" else "values_int"] = vals
                entry["sources"] = [r.source for r in raws] or ["default"]
            else:
                val = raws[-1].value if raws else o.default
                if o.type == "flag":
                    entry["set"] = bool(raws)
                elif o.type == "bool":
                    entry["value_bool"] = val if isinstance(val, bool) else str(val).lower() == "true"
                elif o.type == "int":
                    entry["value_int"] = int(val) if val is not None else None
                else:
                    entry["value_str"] = "..." if o.type == "string-conceal" else val
                entry["source"] = raws[-1].source if raws else "default"
            out[o.name] = entry
    return out
