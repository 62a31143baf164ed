"""The master daemon: owns the configuration, the JSON-RPC socket, plugins,
the chain view, peers' state, and spawns and supervises every subdaemon.
It never holds a private key (hsmd does)."""
from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bitcoin.networks import Network, network_by_name
from common.features import Context
from common.ownfile import unlink_if_ours
from common.scid import ShortChannelIdDir
from common.wireaddr import WireAddr, parse_wireaddr

from . import channel as C
from . import (
    closing_control,
    commands,
    early_signals,
    feerates,
    gossip_control,
    invoice_commands,
    fetchinvoice,
    keysend,
    listhtlcs,
    offers,
    onion_messages,
    opening_control,
    pay_bolt12,
    payments,
    peer_channels,
    peer_control,
    wallet_commands,
    xpay,
)
from .anchors import AnchorSpender
from .bitcoind import Bitcoind, BitcoindError, BitcoindUnreachable, make_config
from .chain_backend import (
    BitcoindBackend,
    ChainBackend,
    DurableBackend,
    PluginBackend,
    find_backend_plugin,
)
from .chaintopology import ChainTopology
from .channel_control import ChannelControl
from .config import Config
from .connect_control import ConnectControl
from .db import Db, DbError, open_wallet, parse_wallet
from .db_pipeline import DbFatal, DbGate
from .feerates import Feerates
from .gossip_control import GossipControl
from .hsm_control import HsmControl
from .htlc_engine import HtlcEngine
from .invoices import Invoices
from .jsonrpc import CommandRegistry, RpcServer
from .jsonrpc_errors import LIGHTNINGD, PAY_ROUTE_NOT_FOUND, RpcError
from .log import LogBook, Logger, level_from_name
from .onchain_control import OnchainControl
from .fetchinvoice import Bolt12Messages
from .offers import Offers
from .onion_messages import OnionMessages
from .opening_control import peer_spoke
from .payments import Payments
from .peer_channels import listfunds_channels
from .plugins import PluginManager
from .reconnect import Reconnector
from .subd import Subd
from .wallet import Wallet
from .withdraw import WalletSpender
from .zygote_control import ZygoteControl

VERSION = "v0.1.0"


class StartupError(Exception):
    """Start-up cannot proceed; the message tells the operator what to fix."""


@dataclass
class PeerState:
    id: bytes
    connected: bool = False
    incoming: bool = False
    addr: str = ""
    features: bytes = b""
    connected_at: float = 0.0
    channels: list[Any] = field(default_factory=list)


class LightningD:
    def __init__(self, cfg: Config, book: LogBook) -> None:
        self.cfg = cfg
        self.network: Network = network_by_name(cfg.network)
        self.log_book = book
        self.log: Logger = book.logger("lightningd")
        self.registry = CommandRegistry()
        self.rpc = RpcServer(self.registry, book.logger("jsonrpc"), developer=cfg.developer,
                             allow_deprecated=bool(cfg.get("allow-deprecated-apis", True)))
        self.plugins = PluginManager(self)
        if cfg.get("dev-fail-on-subdaemon-fail"):
            Subd.on_failure = self._subdaemon_failed
        self.zygote = ZygoteControl(self, bool(cfg.get("subdaemon-memory-merge")))
        self.hsm = HsmControl(self)
        self.connectd = ConnectControl(self)
        self.gossipd = GossipControl(self)
        self.bitcoind = Bitcoind(make_config({k: cfg.get(k) for k in cfg.values if k.startswith("bitcoin-")},
                                             self.network))
        self.backend: ChainBackend = BitcoindBackend(self.bitcoind)
        self.db: Db | None = None
        self.topology: ChainTopology = None  # type: ignore[assignment]  (set in start)
        self.wallet: Wallet = None  # type: ignore[assignment]
        self.feerates: Feerates = None  # type: ignore[assignment]
        self.peers: dict[bytes, PeerState] = {}
        self.channels = ChannelControl(self)
        self.spender = WalletSpender(self)
        self.invoices: Invoices = None  # type: ignore[assignment]  (set in start)
        self.htlcs = HtlcEngine(self)
        self.payments = Payments(self)
        self.onion_messages = OnionMessages(self)
        self.offers = Offers(self)
        self.bolt12_messages = Bolt12Messages(self)
        self.onchain = OnchainControl(self)
        self.anchors = AnchorSpender(self)
        self._channel_peers: set[bytes] = set()
        self.reconnector = Reconnector(self)
        self.node_id = b""
        self.alias = ""
        self.color = b""
        self.fees_collected_msat = 0
        self.stopping = False
        self.exit_code = 0
        self.started_at = time.time()
        self._shutdown = asyncio.Event()
        self.stopped = asyncio.Event()       # shutdown is complete (`stop` answers then)
        self._pidfile_fd: int | None = None
        self._tasks: list[asyncio.Task] = []
        self._disconnect_waiters: dict[bytes, list[asyncio.Future]] = {}
        commands.register(self)
        peer_control.register(self)
        feerates.register(self)
        wallet_commands.register(self)
        invoice_commands.register(self)
        opening_control.register(self)
        gossip_control.register(self)
        payments.register(self)
        closing_control.register(self)
        peer_channels.register(self)
        keysend.register(self)
        xpay.register(self)
        onion_messages.register(self)
        offers.register(self)
        fetchinvoice.register(self)
        pay_bolt12.register(self)
        listhtlcs.register(self)

    # -- helpers ----------------------------------------------------------------------
    def restart_delay(self) -> float:
        return float(self.cfg.get("dev-subdaemon-restart-delay", 1)) if self.cfg.developer else 1.0

    def listen_addrs(self) -> list[WireAddr]:
        addrs = [parse_wireaddr(a, self.network.default_port) for a in (self.cfg.get("addr") or [])]
        addrs += [parse_wireaddr(a, self.network.default_port) for a in (self.cfg.get("bind-addr") or [])]
        if not addrs and self.cfg.get("autolisten") and not self.cfg.get("offline"):
            addrs = [WireAddr("", self.network.default_port)]
        return addrs

    def announce_addrs(self) -> list[WireAddr]:
        out = [parse_wireaddr(a, self.network.default_port) for a in (self.cfg.get("announce-addr") or [])]
        for a in self.cfg.get("addr") or []:
            w = parse_wireaddr(a, self.network.default_port)
            if w.host and (not w.is_localhost() or self.cfg.get("dev-allow-localhost")):
                out.append(w)
        return out

    def our_features(self, ctx: "Context") -> bytes:
        """Our feature bits in `ctx`, with those plugins asked for."""
        return self.plugins.features(ctx)

    def _subdaemon_failed(self, what: str) -> None:
        """--dev-fail-on-subdaemon-fail: a failed daemon stops the node with
        exit status 1 (Core Lightning exits at once; we shut down cleanly)."""
        if not self.stopping:
            self.log.broken(f"{what}: stopping (--dev-fail-on-subdaemon-fail)")
            self.request_shutdown(exit_code=1)

    def request_shutdown(self, exit_code: int = 0) -> None:
        self.exit_code = max(self.exit_code, exit_code)
        self._shutdown.set()

    # -- start-up ---------------------------------------------------------------------
    def _lock_dir(self) -> None:
        path = self.cfg.get("pid-file") or os.path.join(self.cfg.lightning_dir, f"lightningd-{self.network.name}.pid")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StartupError(f"lightningd already running? Error locking PID file {path}: "
                               "another node is using this lightning directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pidfile_fd = fd
        self._pidfile = path

    async def _check_backend(self) -> None:
        """The backend must answer (retried for --bitcoin-retry-timeout) and
        be on our network; otherwise exit saying what to fix."""
        deadline = time.monotonic() + int(self.cfg.get("bitcoin-retry-timeout", 60))
        warned = False
        while True:
            try:
                info = await self.backend.getchaininfo()
                break
            except BitcoindUnreachable as e:
                if time.monotonic() >= deadline:
                    raise StartupError(f"Could not connect to bitcoind: {e}. Make sure bitcoind is running "
                                       "and --bitcoin-rpcconnect/--bitcoin-rpcport/--bitcoin-rpcuser/"
                                       "--bitcoin-rpcpassword (or --bitcoin-datadir) are right.") from None
                if not warned:
                    self.log.unusual(f"Waiting for bitcoind: {e}")
                    warned = True
                await asyncio.sleep(1)
            except BitcoindError as e:
                raise StartupError(f"Bitcoin backend error: {e}") from None
        if info["chain"] != self.network.bip70_name:
            raise StartupError(f"Wrong network! Our Bitcoin backend is running on '{info['chain']}', but we "
                               f"expect '{self.network.bip70_name}'. Start lightningd with "
                               f"--network matching bitcoind, or point --bitcoin-rpcport/--bitcoin-datadir "
                               f"at the right bitcoind.")

    @property
    def blockheight(self) -> int:
        return self.topology.tip_height if self.topology is not None else 0

    @property
    def bitcoind_synced(self) -> bool:
        return self.topology is None or self.topology.bitcoind_synced

    @property
    def lightningd_syncing(self) -> bool:
        return self.topology is not None and not self.topology.lightningd_synced

    async def start(self) -> None:
        os.makedirs(self.cfg.network_dir, mode=0o700, exist_ok=True)
        os.chdir(self.cfg.network_dir)
        self._lock_dir()
        self.log.info(f"lightningd {VERSION} starting in {self.cfg.network_dir}")
        # before plugins, hsmd and the database: the template of every
        # subdaemon never sees any of them (it imports while plugins load)
        self.zygote.start()
        await self.plugins.load_configured()  # getmanifest: plugin options are now known
        self.plugins.claim_options()
        try:
            self.node_id = await self.hsm.start()
        except Exception as e:
            raise StartupError(str(e)) from None
        self.alias = self.cfg.get("alias") or default_alias(self.node_id)
        if len(self.alias.encode()) > 32:
            raise StartupError(f"--alias: '{self.alias}' is longer than 32 bytes")
        rgb = self.cfg.get("rgb")
        try:
            self.color = bytes.fromhex(rgb) if rgb else self.node_id[1:4]
            assert len(self.color) == 3
        except (ValueError, AssertionError):
            raise StartupError(f"--rgb: '{rgb}' is not RRGGBB hex") from None
        await self._open_db()
        self.wallet = Wallet(self.db, self.network, self.log_book.logger("wallet"))
        self.channels.load()
        self.invoices = Invoices(self)
        await self.offers.start()
        self.fees_collected_msat = int(self.db.get_var("fees_collected_msat", 0))
        if self.hsm.bip32_xpub:
            self.wallet.set_xpub(self.hsm.bip32_xpub)
        try:
            await self.connectd.start()
        except Exception as e:
            raise StartupError(f"connectd: {e}") from None
        await self.gossipd.start()
        try:
            mode = int(self.cfg.get("rpc-file-mode", "0600"), 8)
        except ValueError:
            raise StartupError(f"--rpc-file-mode: '{self.cfg.get('rpc-file-mode')}' is not an octal mode") from None
        await self.rpc.listen(self.cfg.rpc_path(), mode)
        await self.plugins.init_all()
        await self._start_chain()
        await self.onchain.start()
        self.htlcs.restart()
        self.payments.fail_unoffered()
        for rec in self.channels.channels.values():
            self.gossipd.local_channel(rec)
        await self.connectd.activate()
        self._tasks.append(asyncio.ensure_future(self._reconnect_all()))
        self.log.info(f"Server started with public key {self.node_id.hex()}, alias {self.alias} "
                      f"(color #{self.color.hex()}) and lightningd {VERSION}")

    async def _open_db(self) -> None:
        try:
            spec = parse_wallet(self.cfg.get("wallet"), os.path.join(self.cfg.network_dir, "lightningd.sqlite3"))
            self.db = await open_wallet(spec, self.log_book.logger("database"), self.plugins.db_write_hook(),
                                        self._db_failed)
        except (DbError, DbFatal) as e:
            raise StartupError(f"--wallet: {e}") from None
        if self.db.gate is not None:
            self.rpc.durable = self.db.gate.wait
            self.backend = DurableBackend(self.backend, self.db.gate.wait)
            self.log.info(f"database: {'PostgreSQL' if spec.scheme == 'postgres' else 'SQLite'}"
                          f"{' after the db_write hook' if self.plugins.db_write_hook() else ''}; replies wait "
                          "for its commits")

    @property
    def db_gate(self) -> DbGate | None:
        """What subdaemon links wait for before sending (None: SQLite's own
        commit is durable when it returns)."""
        return self.db.gate if self.db is not None else None

    def _db_failed(self, why: str) -> None:
        self.log.broken(f"database failed: {why}; stopping (nothing that depends on an uncommitted "
                        "transaction was revealed)")
        self.request_shutdown(exit_code=1)

    async def _start_chain(self) -> None:
        try:
            plugin = find_backend_plugin(self.plugins)
        except ValueError as e:
            raise StartupError(str(e)) from None
        if plugin is not None:
            self.backend = PluginBackend(self.plugins, plugin)
            if self.db is not None and self.db.gate is not None:
                self.backend = DurableBackend(self.backend, self.db.gate.wait)
            self.log.info(f"Bitcoin backend: plugin {plugin.name}")
        await self._check_backend()
        interval = self.cfg.get("dev-bitcoind-poll") if self.cfg.developer else None
        interval = float(interval or self.cfg.get("bitcoin-poll", 30))
        assert self.db is not None
        self.topology = ChainTopology(self.backend, self.db, self.log_book.logger("chaintopology"),
                                      self.network.name, interval, int(self.cfg.get("rescan", 15)))
        self.feerates = Feerates(self.topology, self.network.name)
        self.topology.listeners.append(self.wallet)
        self.topology.listeners.append(self.channels)
        self.topology.listeners.append(self.gossipd)
        self.topology.listeners.append(self.onchain)
        self.topology.on_new_tip.append(self.gossipd.new_blockheight)
        self.topology.on_new_tip.append(self._on_new_tip)
        self.topology.on_fees.append(self.channels.send_feerates)
        try:
            await self.topology.start(self.cfg.get("bitcoin-zmqpubrawblock"))
        except BitcoindError as e:
            raise StartupError(f"Bitcoin backend error: {e}") from None
        self.wallet.tip_height = self.topology.tip_height
        asyncio.ensure_future(self.wallet_rebroadcast())

    def _on_new_tip(self, height: int) -> None:
        self.plugins.notify("block_added", {"hash": self.topology.tip_hash[::-1].hex(), "height": height})

    async def wallet_rebroadcast(self) -> None:
        """Our own transactions not yet confirmed: broadcast again (after a
        crash between saving and broadcasting, or a reorg)."""
        for tx in self.wallet.unconfirmed_own_txs():
            r = await self.backend.sendrawtransaction(tx.to_hex())
            if not r.get("success"):
                self.log.debug(f"rebroadcast of {tx.txid_hex}: {r.get('errmsg')}")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        loop.add_signal_handler(signal.SIGTERM, self.request_shutdown)
        loop.add_signal_handler(signal.SIGINT, self.request_shutdown)
        loop.add_signal_handler(signal.SIGHUP, self.log_book.reopen)
        if early_signals.RECEIVED:       # a ^C before the loop was ours
            self.request_shutdown()
        # A shutdown asked during start-up (^C while waiting for bitcoind, say)
        # stops it where it is, then the usual stop() cleans up what started.
        starting = asyncio.ensure_future(self.start())
        asked = asyncio.ensure_future(self._shutdown.wait())
        await asyncio.wait([starting, asked], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            self.log.info("Shutdown requested during start-up")
            starting.cancel()
        try:
            await starting
        except asyncio.CancelledError:
            pass
        except StartupError:
            asked.cancel()
            await self.stop()
            raise
        await asked
        await self.stop()
        await self.rpc.finish_lingering()   # `stop`'s own answer, now that all is done
        return self.exit_code

    def _loop_exception(self, _loop: asyncio.AbstractEventLoop, ctx: dict) -> None:
        """An exception nobody awaited (a callback, a forgotten task) is a bug:
        in the log as broken, with its traceback, not on stderr."""
        exc = ctx.get("exception")
        self.log.broken(f"unhandled: {ctx.get('message')}: {exc!r}" if exc else f"unhandled: {ctx.get('message')}")
        if exc is not None:
            for line in "".join(traceback.format_exception(exc)).splitlines():
                self.log.broken(line)

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.log.info("Shutting down")
        for t in self._tasks:
            t.cancel()
        if self.invoices is not None:
            self.invoices.stop()
        self.reconnector.stop()
        if self.topology is not None:
            self.topology.stop()
        await self.plugins.shutdown()
        await self.rpc.close()
        daemons = [c.subd for c in self.channels.channels.values() if c.subd is not None]
        daemons += [p.subd for p in self.channels.pending.values() if p.subd is not None]
        daemons += self.onchain.subds
        await asyncio.gather(*(s.stop() for s in daemons), return_exceptions=True)
        await asyncio.gather(self.connectd.stop(), self.gossipd.stop(), return_exceptions=True)
        await self.hsm.stop()
        await self.zygote.stop()
        if self.db is not None:
            if not await self.db.aclose(timeout=10.0):
                self.log.unusual("database: transactions not committed at shutdown were dropped "
                                 "(nothing that depended on them was revealed)")
        await self.plugins.shutdown(db_writers=True)
        if self._pidfile_fd is not None:
            st = os.fstat(self._pidfile_fd)
            unlink_if_ours(self._pidfile, (st.st_dev, st.st_ino))   # (a new node's is not ours to remove)
            os.close(self._pidfile_fd)
            self._pidfile_fd = None
        self.stopped.set()

    # -- peers ------------------------------------------------------------------------
    async def peer_connected(self, node_id: bytes, incoming: bool, addr: str, features: bytes) -> Exception | None:
        """connectd finished init with a peer: run the peer_connected hook,
        then mark the peer connected (or disconnect it).  Returns an error for
        a waiting `connect` command, or None."""
        p = self.peers.get(node_id)
        if p is not None and p.connected:
            return None  # connectd re-reported a live connection
        payload = {"peer": {"id": node_id.hex(), "direction": "in" if incoming else "out",
                            "addr": addr, "features": features.hex()}}
        result = await self.plugins.hooks.call("peer_connected", payload)
        if result.get("result") == "disconnect":
            text = result.get("error_message", "")
            self.log.child("lightningd", node_id.hex()).info(f"peer_connected hook says disconnect: {text}")
            if text:
                self.connectd.send_error(node_id, text, warning=True, disconnect=True)
            else:
                self.connectd.discard(node_id)
            return RpcError(LIGHTNINGD, f"Peer rejected by plugin: {text}" if text else "Peer rejected by plugin")
        if p is None:
            p = self.peers[node_id] = PeerState(node_id)
        p.connected, p.incoming, p.addr, p.features = True, incoming, addr, features
        self.reconnector.connected(node_id)
        if not incoming and node_id in self._channel_peers and self.db is not None:
            with self.db.transaction():
                self.db.execute("UPDATE peers SET address = ? WHERE node_id = ?", (addr, node_id))
        p.connected_at = time.time()
        self.log.child("lightningd", node_id.hex()).debug(f"peer connected ({'in' if incoming else 'out'}) {addr}")
        for rec in self.channels.by_peer(node_id):
            # a new connection: until channeld says channel_reestablish was exchanged
            rec.reestablished = False
            asyncio.get_running_loop().call_soon(self.gossipd.local_channel, rec)
        self.plugins.notify("connect", {"id": node_id.hex(), "direction": "in" if incoming else "out",
                                        "address": addr_json(addr)})
        return None

    async def peer_channel_fds(self, node_id: bytes) -> list[tuple[bytes, int]]:
        """(channel_id, connectd's socketpair end) for each channel daemon the
        peer needs now (its active channels, resumed from the database)."""
        out = await self.channels.peer_channel_fds(node_id)
        for rec in self.channels.by_peer(node_id):
            self.channels.send_shutdown(rec)   # (a close asked while it was away)
        return out

    async def peer_spoke(self, node_id: bytes, raw: bytes) -> None:
        """A peer message for no running channel daemon."""
        await peer_spoke(self, node_id, raw)

    def peer_has_channel(self, node_id: bytes) -> None:
        self._channel_peers.add(node_id)
        if node_id not in self.peers:
            self.peers[node_id] = PeerState(node_id)

    async def find_route(self, destination: bytes, amount_msat: int, final_cltv: int, exclude: set[str],
                         riskfactor: float = 10, fuzzpercent: float = 5, maxhops: int = 20,
                         source: bytes | None = None, policies: list[dict] | None = None) -> list[dict]:
        """Route through the gossip graph, our own channels with their real
        spendable amounts (gossipd's getroute); RpcError if none."""
        routes = await self.find_routes(destination, [amount_msat], final_cltv, exclude, riskfactor=riskfactor,
                                        fuzzpercent=fuzzpercent, maxhops=maxhops, source=source, policies=policies)
        return routes[0]

    async def find_routes(self, destination: bytes, amounts: list[int], final_cltv: int, exclude: Iterable[str],
                          riskfactor: float = 10, fuzzpercent: float = 5, maxhops: int = 20,
                          source: bytes | None = None, policies: list[dict] | None = None,
                          limits: list[dict] | None = None, spendable: dict[int, int] | None = None,
                          maxparts: int = 1) -> list[list[dict]]:
        """Routes delivering sum(amounts) in at most ``maxparts`` parts
        (gossipd's getroutes).  ``exclude``: "BLOCKxTXxOUT/DIR" or node ids
        (hex); ``limits``: {scid, direction, max_msat, reserved_msat} a
        payment learnt; ``spendable``: what the payment may send through
        each of our channels (by scid) instead of their current spendable."""
        if self.gossipd.subd is None or not self.gossipd.subd.running:
            raise RpcError(PAY_ROUTE_NOT_FOUND, "gossipd is not running")
        spendable = spendable or {}
        locals_ = []
        if source is None or source == self.node_id:
            for c in self.channels.channels.values():
                # (a zero-conf channel by our alias until it confirms)
                if c.scid_or_alias is None or c.state != C.NORMAL:
                    continue
                name = c.scid_or_alias.to_int()
                locals_.append({"scid": name, "peer_id": c.peer_id,
                                "spendable_msat": spendable.get(name, c.summary["spendable_msat"]),
                                "htlc_minimum_msat": c.summary["their_htlc_minimum_msat"],
                                "enabled": self.is_connected(c.peer_id)})
        channels, nodes = [], []
        for x in exclude:
            if "/" in x:
                sd = ShortChannelIdDir.parse(x)
                channels.append({"scid": sd.scid.to_int(), "direction": sd.direction})
            else:
                nodes.append(bytes.fromhex(x))
        return await self.gossipd.getroutes({
            "source": source or self.node_id, "destination": destination, "amounts": amounts, "maxparts": maxparts,
            "final_cltv": final_cltv, "riskfactor_millionths": min(int(riskfactor * 1e6), 2**64 - 1),
            "fuzz_millionths": int(fuzzpercent * 1e4), "maxhops": maxhops, "excluded_channels": channels,
            "excluded_nodes": nodes, "local_channels": locals_, "policies": policies or [], "limits": limits or []})

    def is_connected(self, node_id: bytes) -> bool:
        p = self.peers.get(node_id)
        return p is not None and p.connected

    def listfunds_channels(self) -> list[dict]:
        return listfunds_channels(self)

    def known_addresses(self, node_id: bytes) -> list[str]:
        if self.db is None:
            return []
        row = self.db.one("SELECT address FROM peers WHERE node_id = ?", (node_id,))
        return [row[0]] if row and row[0] else []

    async def _reconnect_all(self) -> None:
        for node_id in list(self._channel_peers):
            self.reconnector.schedule(node_id)

    def wait_peer_disconnected(self, node_id: bytes) -> asyncio.Future:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._disconnect_waiters.setdefault(node_id, []).append(fut)
        return fut

    def peer_disconnected(self, node_id: bytes) -> None:
        for fut in self._disconnect_waiters.pop(node_id, []):
            if not fut.done():
                fut.set_result(None)
        p = self.peers.get(node_id)
        if p is None or not p.connected:
            return
        p.connected = False
        for rec in self.channels.by_peer(node_id):
            self.gossipd.local_channel(rec)   # disabled while the peer is away
        if node_id not in self._channel_peers:
            del self.peers[node_id]
        else:
            self.reconnector.disconnected(node_id)
        self.log.child("lightningd", node_id.hex()).debug("peer disconnected")
        self.plugins.notify("disconnect", {"id": node_id.hex()})


def addr_json(addr: str) -> dict:
    try:
        return parse_wireaddr(addr, 0).to_json()
    except ValueError:
        return {"type": "local socket", "socket": addr}


_ADJ = ["SILENT", "BRAVE", "LUCKY", "SWIFT", "GENTLE", "VIVID", "RAPID", "CLEVER", "JOLLY", "NOBLE", "SUNNY",
        "PLUCKY", "MIGHTY", "COSMIC", "FIERY", "FROSTY"]
_NOUN = ["OTTER", "FALCON", "BADGER", "COMET", "RIVER", "CANYON", "PHOENIX", "WALRUS", "HARBOR", "MAPLE",
         "GLACIER", "LANTERN", "BEACON", "MEADOW", "PEBBLE", "THUNDER"]


def default_alias(node_id: bytes) -> str:
    """Deterministic from the node id, like Core Lightning's default alias."""
    return f"{_ADJ[node_id[1] % 16]}{_NOUN[node_id[2] % 16]}"


def parse_level(text: str) -> int:
    return level_from_name(text)
