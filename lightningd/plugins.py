"""The plugin manager: which plugins run, their options, RPC passthrough,
notifications and hooks (Core Lightning's plugin.c / plugin_hook.c).

Start-up order: every configured plugin gets `getmanifest` before the
options are final (plugin options are claimed from the unknown ones), and
`init` once the RPC socket is up."""
from __future__ import annotations

import asyncio
import os
import signal
import stat
import zlib
from typing import TYPE_CHECKING, Any

from common.features import (
    Context,
    bits_from_features,
    features_from_bits,
    our_features,
)

from .config import RawOption, claim_plugin_options
from .jsonrpc import Command, RequestContext
from .jsonrpc_errors import PLUGIN_ERROR, PLUGIN_TERMINATED, RpcError
from .log import TYPE_NAME, UNUSUAL, LogEntry
from .options import (
    BOOL,
    FLAG,
    INT,
    OPTIONS_BY_NAME,
    STR,
    OptionError,
    OptionSpec,
    convert_value,
)
from .db_pipeline import DbFatal, DbWriteHook
from .plugin_hooks import HookManager
from .plugin_proc import Manifest, PluginError, PluginProcess, log_level_of

if TYPE_CHECKING:
    from .lightningd import LightningD

# Notification topics lightningd itself emits.
BUILTIN_TOPICS = {"connect", "disconnect", "warning", "log", "shutdown", "block_added", "invoice_payment",
                  "invoice_creation", "channel_opened", "channel_state_changed", "forward_event",
                  "sendpay_success", "sendpay_failure", "coin_movement", "balance_snapshot",
                  "openchannel_peer_sigs", "channel_open_failed", "deprecated_oneshot"}

FEATURE_CONTEXTS = {"init": Context.INIT, "node": Context.NODE_ANNOUNCEMENT,
                    "channel": Context.CHANNEL_ANNOUNCEMENT, "invoice": Context.INVOICE}

START_TIMEOUT = 60.0


def _is_executable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


class PluginManager:
    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.log = ld.log_book.logger("plugin-manager")
        self.plugins: list[PluginProcess] = []
        self.hooks = HookManager(self)
        self.option_values: dict[str, list[RawOption]] = {}   # claimed plugin options
        self.start_timeout = START_TIMEOUT
        ld.log_book.listeners.append(self._on_log)
        ld.rpc.rpc_command_hook = self._rpc_command_hook

    async def _rpc_command_hook(self, ctx: RequestContext, method: str, params: Any) -> dict | None:
        """Let `rpc_command` plugins continue, replace or answer a call."""
        if not self.hooks.has("rpc_command"):
            return None
        res = await self.hooks.call("rpc_command", {"rpc_command": {"id": ctx.id, "method": method,
                                                                     "params": params if params is not None else {}}})
        if "replace" in res and isinstance(res["replace"], dict):
            return {"method": res["replace"].get("method", method), "params": res["replace"].get("params")}
        if "return" in res and isinstance(res["return"], dict):
            return res["return"]
        return None

    # -- discovery ---------------------------------------------------------------------
    def _configured_paths(self) -> list[tuple[str, bool]]:
        cfg = self.ld.cfg
        disabled = set(cfg.get("disable-plugin") or [])
        paths: list[tuple[str, bool]] = []
        dirs = list(cfg.get("plugin-dir") or [])
        default_dir = os.path.join(cfg.lightning_dir, "plugins")
        if not cfg.get("clear-plugins") and os.path.isdir(default_dir):
            dirs.insert(0, default_dir)
        for d in dirs:
            d = os.path.abspath(os.path.expanduser(d))
            if not os.path.isdir(d):
                raise OptionError(f"--plugin-dir: {d} is not a directory")
            for name in sorted(os.listdir(d)):
                p = os.path.join(d, name)
                if _is_executable(p) and not name.startswith("."):
                    paths.append((p, False))
        for p in cfg.get("plugin") or []:
            paths.append((os.path.abspath(os.path.expanduser(p)), False))
        for p in cfg.get("important-plugin") or []:
            paths.append((os.path.abspath(os.path.expanduser(p)), True))
        out, seen = [], set()
        for p, imp in paths:
            if p in seen or os.path.basename(p) in disabled or p in disabled:
                continue
            seen.add(p)
            out.append((p, imp))
        return out

    # -- start-up ----------------------------------------------------------------------
    async def load_configured(self) -> None:
        """Spawn every configured plugin and get its manifest (start-up)."""
        if self.ld.cfg.developer and self.ld.cfg.get("dev-plugin-start-timeout"):
            self.start_timeout = float(self.ld.cfg.get("dev-plugin-start-timeout"))
        results = await asyncio.gather(*(self._spawn_and_manifest(p, imp, startup=True)
                                         for p, imp in self._configured_paths()))
        for p in results:
            if p is not None:
                self.plugins.append(p)

    async def _spawn_and_manifest(self, path: str, important: bool, startup: bool) -> PluginProcess | None:
        plog = self.ld.log_book.logger(f"plugin-{os.path.basename(path)}")
        p = PluginProcess(path, plog, self.ld.cfg.network_dir, important)
        p.on_notification = self._on_plugin_notification
        try:
            if not _is_executable(path):
                raise PluginError(f"{path} is not an executable file")
            await p.spawn()
            resp = await p.request("getmanifest", {"allow-deprecated-apis": bool(self.ld.cfg.get(
                "allow-deprecated-apis"))}, timeout=self.start_timeout)
            if "error" in resp:
                raise PluginError(f"getmanifest failed: {resp['error']}")
            p.manifest = Manifest.parse(resp["result"])
            if p.manifest.disable:
                raise PluginError(f"disabled itself: {p.manifest.disable}")
            self._check_conflicts(p)
        except (PluginError, asyncio.TimeoutError) as e:
            why = "timed out at getmanifest" if isinstance(e, asyncio.TimeoutError) else str(e)
            p.kill()
            if important:
                raise OptionError(f"important plugin {path} failed: {why}") from None
            self.log.unusual(f"{path}: {why}: plugin dropped")
            if not startup:
                raise PluginError(f"{path}: {why}") from None
            return None
        p.on_exit = self._on_plugin_exit
        p.checksum = self._checksum(path)
        return p

    def _check_conflicts(self, p: PluginProcess) -> None:
        assert p.manifest is not None
        for r in p.manifest.rpcmethods:
            if r["name"] in self.ld.registry.commands:
                raise PluginError(f"method '{r['name']}' already registered")
        taken = set(OPTIONS_BY_NAME)
        for other in self.plugins:
            if other.manifest is not None:
                taken |= {o.name for o in other.manifest.options}
        for o in p.manifest.options:
            if o.name in taken:
                raise PluginError(f"option '{o.name}' already registered")

    def claim_options(self) -> None:
        """After getmanifest: hand unknown options to plugins; leftovers are errors."""
        declared = {}
        for p in self.plugins:
            for o in p.manifest.options:  # type: ignore[union-attr]
                declared[o.name] = OptionSpec(o.name, STR, o.default, o.description, multi=o.multi)
        self.option_values = claim_plugin_options(self.ld.cfg, declared)

    def _options_for(self, p: PluginProcess, given: dict[str, list[str | None]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        assert p.manifest is not None
        for o in p.manifest.options:
            raws = given.get(o.name, [])
            spec = OptionSpec(o.name, {"int": INT, "bool": BOOL, "flag": FLAG}.get(o.type, STR), o.default, "")
            vals = [convert_value(spec, r) for r in raws]
            if o.multi:
                if vals:
                    out[o.name] = vals
                elif o.default is not None:
                    out[o.name] = o.default if isinstance(o.default, list) else [o.default]
                else:
                    out[o.name] = []
            elif vals:
                out[o.name] = vals[-1]
            elif o.type == "flag":
                continue   # an unset flag is not passed at all
            elif o.default is not None:
                out[o.name] = convert_value(spec, str(o.default).lower() if o.type == "bool" else str(o.default)) \
                    if not isinstance(o.default, (bool, int)) or o.type == "string" else o.default
        return out

    def configuration(self, startup: bool) -> dict:
        cfg = self.ld.cfg
        return {"lightning-dir": cfg.network_dir, "rpc-file": os.path.basename(cfg.rpc_path()),
                "startup": startup, "network": self.ld.network.name,
                "feature_set": {k: self.ld.our_features(ctx).hex() for k, ctx in FEATURE_CONTEXTS.items()},
                "always_use_proxy": False, "torv3-enabled": False}

    async def init_all(self) -> None:
        given = {name: [r.value for r in raws] for name, raws in self.option_values.items()}
        await asyncio.gather(*(self._init_plugin(p, given, startup=True) for p in list(self.plugins)))

    async def _init_plugin(self, p: PluginProcess, given: dict[str, list[str | None]], startup: bool) -> None:
        try:
            self._register(p)
            resp = await p.request("init", {"options": self._options_for(p, given),
                                             "configuration": self.configuration(startup)},
                                   timeout=self.start_timeout)
            if "error" in resp:
                raise PluginError(f"init failed: {resp['error']}")
            res = resp.get("result")
            if isinstance(res, dict) and res.get("disable"):
                raise PluginError(f"disabled itself: {res['disable']}")
        except (PluginError, asyncio.TimeoutError, OptionError) as e:
            why = "timed out at init" if isinstance(e, asyncio.TimeoutError) else str(e)
            self._unregister(p)
            p.on_exit = None
            p.kill()
            if p in self.plugins:
                self.plugins.remove(p)
            if p.important:
                self.log.broken(f"important plugin {p.path} failed: {why}")
                self.ld.request_shutdown(exit_code=1)
            else:
                self.log.unusual(f"{p.path}: {why}: plugin dropped")
            if not startup:
                raise PluginError(f"{p.path}: {why}") from None
            return
        p.active = True
        self.log.debug(f"plugin {p.name} active")

    # -- registration --------------------------------------------------------------------
    def _register(self, p: PluginProcess) -> None:
        assert p.manifest is not None
        for r in p.manifest.rpcmethods:
            name = r["name"]

            async def passthrough(ctx: RequestContext, params: Any, _p: PluginProcess = p,
                                  _name: str = name) -> Any:
                return await self.call_plugin_method(_p, _name, params)
            self.ld.registry.add(Command(name, passthrough, [], category=r.get("category", "plugin"),
                                         description=r.get("description", ""), plugin=p,
                                         usage=r.get("usage", ""), deprecated=bool(r.get("deprecated", False))))
        self.hooks.register(p)

    def _unregister(self, p: PluginProcess) -> None:
        for name, cmd in list(self.ld.registry.commands.items()):
            if cmd.plugin is p:
                self.ld.registry.remove(name)
        self.hooks.unregister(p)

    def db_write_hook(self) -> DbWriteHook | None:
        """Core Lightning's db_write: every write transaction goes to every
        plugin that registered it (all at once), before it is committed; all
        must answer `continue`, or the node stops without committing.  Only
        plugins started with the node (it is called before their `init`)."""
        plugins = [p for p in self.plugins if self._is_db_writer(p)]
        if not plugins:
            return None

        async def one(p: PluginProcess, payload: dict) -> None:
            try:
                resp = await p.request("db_write", payload)
            except PluginError as e:
                raise DbFatal(f"db_write hook: plugin {p.name} failed: {e}") from None
            if resp.get("error") is not None or resp.get("result") != {"result": "continue"}:
                raise DbFatal(f"db_write hook: plugin {p.name} answered "
                              f"{resp.get('error') or resp.get('result')!r}")

        async def hook(data_version: int, writes: list[str]) -> None:
            payload = {"data_version": data_version, "writes": writes}
            await asyncio.gather(*(one(p, payload) for p in plugins))
        return hook

    async def call_plugin_method(self, p: PluginProcess, method: str, params: Any) -> Any:
        try:
            resp = await p.request(method, params if params is not None else {})
        except PluginError as e:
            raise RpcError(PLUGIN_TERMINATED, f"Plugin terminated before replying to RPC call: {e}") from None
        if "error" in resp and resp["error"] is not None:
            err = resp["error"]
            if isinstance(err, dict):
                raise RpcError(err.get("code", PLUGIN_ERROR), err.get("message", ""), err.get("data"))
            raise RpcError(PLUGIN_ERROR, str(err))
        return resp.get("result")

    # -- plugin lifecycle events ---------------------------------------------------------
    def _on_plugin_exit(self, p: PluginProcess) -> None:
        self._unregister(p)
        if p in self.plugins:
            self.plugins.remove(p)
        if p.stopping or self.ld.stopping:
            return
        rc = p.proc.returncode if p.proc else None
        if rc in (-signal.SIGTERM, -signal.SIGINT):
            # stopped from outside (systemd stops every process of the service
            # at once): not a crash; an important plugin takes us down with it
            self.log.info(f"plugin {p.name} terminated by {signal.Signals(-rc).name}"
                          + (": shutting down" if p.important else ""))
            if p.important:
                self.ld.request_shutdown()
            return
        if p.important:
            self.log.broken(f"important plugin {p.name} died: shutting down")
            self.ld.request_shutdown(exit_code=1)
        else:
            self.log.unusual(f"plugin {p.name} died (exit code {p.proc.returncode if p.proc else '?'})")

    def _on_plugin_notification(self, p: PluginProcess, method: str, params: Any) -> None:
        params = params if isinstance(params, dict) else {}
        if method == "log":
            p.log.log(log_level_of(params.get("level", "info")), str(params.get("message", "")))
        elif method in ("message", "progress"):
            pass  # progress for a command in flight: not forwarded yet
        elif p.manifest is not None and method in p.manifest.notifications:
            self.notify(method, {"origin": p.name, "payload": params}, custom=True)
        else:
            self.log.unusual(f"plugin {p.name} sent undeclared notification {method}: ignored")

    def _on_log(self, e: LogEntry) -> None:
        """Feed the `log` and `warning` notifications (never for the plugin
        manager's own reports about a plugin, to avoid loops)."""
        level = TYPE_NAME[e.level].lower()
        t = f"{e.time:.9f}"
        if e.level >= UNUSUAL:
            self.notify("warning", {"warning": {"level": "warn" if e.level == UNUSUAL else "error", "time": t,
                                                "source": e.source, "log": e.message}})
        self.notify("log", {"log": {"level": level, "time": t, "source": e.source, "log": e.message}})

    def notify(self, topic: str, payload: dict, custom: bool = False) -> None:
        """Send a notification to every subscribed plugin.  Built-in topics wrap
        their payload in an object named after the topic (Core Lightning's
        current form); custom ones arrive already wrapped with their origin."""
        if not custom and topic not in ("warning", "log") and topic not in payload:
            payload = {topic: payload}
        for p in list(self.plugins):
            if p.manifest is None or not p.active and topic not in ("log", "warning"):
                continue
            subs = p.manifest.subscriptions
            if topic in subs or ("*" in subs and topic not in ("log",)):
                p.notify(topic, payload)

    # -- the plugin command ----------------------------------------------------------------
    async def start_dynamic(self, path: str, options: dict[str, Any]) -> PluginProcess:
        path = os.path.expanduser(path)
        if not os.path.isabs(path):
            # relative: the default plugin directory first, as Core Lightning
            in_dir = os.path.join(self.ld.cfg.lightning_dir, "plugins", path)
            path = in_dir if os.path.exists(in_dir) else os.path.abspath(path)
        for old in list(self.plugins):
            if old.path == path:
                # As Core Lightning's plugin_register: a plugin whose file
                # changed since it started is restarted (unless important);
                # --dev-no-plugin-checksum makes every checksum 0, so never.
                if old.important or self._checksum(path) == old.checksum:
                    raise PluginError(f"{path}: already registered")
                old.log.info("Plugin changed, needs restart.")
                self.notify_one(old, "shutdown", {})
                await old.stop()
        p = await self._spawn_and_manifest(path, False, startup=False)
        assert p is not None and p.manifest is not None
        if not p.manifest.dynamic:
            p.kill()
            raise PluginError(f"{path}: Not a dynamic plugin")
        if any(h["name"] == "db_write" for h in p.manifest.hooks):
            p.kill()   # it would miss what was written before it started
            raise PluginError(f"{path}: the db_write hook is only for plugins started with lightningd")
        known = {o.name for o in p.manifest.options}
        for k in options:
            if k not in known:
                p.kill()
                raise PluginError(f"{path}: unknown option '{k}'")
        self.plugins.append(p)
        given = {k: [v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)]
                 for k, v in options.items()}
        for k, vals in given.items():  # listconfigs shows what `plugin start` set
            self.option_values[k] = [RawOption(k, v, "pluginstart") for v in vals]
        await self._init_plugin(p, given, startup=False)
        return p

    def _checksum(self, path: str) -> int:
        """CRC of the plugin's file, to notice it changed (0 with
        --dev-no-plugin-checksum, which Core Lightning's tests pass to skip
        reading every plugin)."""
        if self.ld.cfg.get("dev-no-plugin-checksum"):
            return 0
        try:
            with open(path, "rb") as f:
                return zlib.crc32(f.read())
        except OSError:
            return 0

    async def stop_plugin(self, name: str) -> str:
        for p in list(self.plugins):
            if p.name == name or p.path == name:
                if p.manifest is not None and not p.manifest.dynamic:
                    raise PluginError(f"{name} cannot be managed when lightningd is up")
                if p.important:
                    raise PluginError(f"{name} is important: refusing to stop it")
                self.notify_one(p, "shutdown", {})
                await p.stop()
                return f"Successfully stopped {p.name}."
        raise PluginError(f"Could not find plugin {name}")

    def notify_one(self, p: PluginProcess, topic: str, payload: dict) -> None:
        if p.manifest is not None and (topic in p.manifest.subscriptions or "*" in p.manifest.subscriptions):
            p.notify(topic, payload)

    def list(self) -> list[dict]:
        return [{"name": p.path, "active": p.active, "dynamic": bool(p.manifest and p.manifest.dynamic)}
                for p in self.plugins]

    def extra_feature_bits(self, key: str) -> set[int]:
        bits: set[int] = set()
        for p in self.plugins:
            if p.manifest is not None and key in p.manifest.featurebits:
                try:
                    bits |= bits_from_features(bytes.fromhex(p.manifest.featurebits[key]))
                except ValueError:
                    self.log.unusual(f"plugin {p.name}: bad featurebits {key}")
        return bits

    def features(self, ctx: Context) -> bytes:
        key = next(k for k, c in FEATURE_CONTEXTS.items() if c == ctx)
        return features_from_bits(bits_from_features(our_features(ctx)) | self.extra_feature_bits(key))

    async def shutdown(self, db_writers: bool = False) -> None:
        """Stop the plugins; those registered for db_write only when asked
        (after the database closed: the daemons' last writes go to them
        too, as Core Lightning stops them last)."""
        chosen = [p for p in self.plugins if self._is_db_writer(p) == db_writers]
        for p in chosen:
            p.stopping = True
            self.notify_one(p, "shutdown", {})
        await asyncio.gather(*(p.stop(timeout=10.0) for p in chosen), return_exceptions=True)
        self.plugins = [p for p in self.plugins if p not in chosen]

    @staticmethod
    def _is_db_writer(p: PluginProcess) -> bool:
        return p.manifest is not None and any(h["name"] == "db_write" for h in p.manifest.hooks)
