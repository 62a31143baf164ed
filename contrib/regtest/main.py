"""``regtestd``: start-up, the event loop and a clean shutdown.

Start-up order follows bitcoind: parse options, lock the datadir, load the
chain (kernel + index), bind RPC, write the cookie, bind ZMQ, print
"Done loading". SIGTERM/SIGINT or the ``stop`` RPC shut down cleanly: the
kernel flushes, the mempool is saved and the cookie removed.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
import time
from typing import IO

from .config import Config, ConfigError, HelpRequested, load_config
from .httpserver import Auth, RpcServer

log = logging.getLogger("regtestd")


class _UTCFormatter(logging.Formatter):
    """bitcoind's log timestamps: ISO 8601 in UTC."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))


def _setup_logging(cfg: Config) -> None:
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = _UTCFormatter("%(asctime)s %(message)s")
    if cfg.printtoconsole:
        h: logging.Handler = logging.StreamHandler(sys.stdout)
        h.setFormatter(fmt)
        log.addHandler(h)
    if cfg.debuglogfile is not None:
        cfg.debuglogfile.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(cfg.debuglogfile)
        fh.setFormatter(fmt)
        log.addHandler(fh)


def _lock_datadir(cfg: Config) -> IO[str]:
    """bitcoind's .lock: one daemon per datadir (the kernel needs exclusive access anyway)."""
    cfg.chaindir.mkdir(parents=True, exist_ok=True)
    f = open(cfg.chaindir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise ConfigError(f"Cannot obtain a lock on data directory {cfg.chaindir}. "
                          "regtestd is probably already running.") from None
    return f


async def _serve(cfg: Config) -> int:
    # Imported here so that -help and option errors answer without loading the kernel.
    from . import methods, methods_tx  # noqa: F401  (they register the RPC methods)
    from .node import Node

    loop = asyncio.get_running_loop()
    stop_event = asyncio.Event()
    started = time.monotonic()
    node = Node(cfg)
    auth = Auth(cfg.rpcuser, cfg.rpcpassword, cfg.rpcauth)
    server = RpcServer(node, auth, on_stop=stop_event.set)
    try:
        node.start()
        node.request_stop = lambda: setattr(server, "stopping", True)
        try:
            await server.listen(cfg.rpcbind)
        except OSError as e:
            raise ConfigError(f"Unable to bind RPC on {cfg.rpcbind}: {e.strerror or e}") from None
        if not cfg.rpcpassword:
            auth.write_cookie(cfg.cookie_path)
            log.info("Generated RPC authentication cookie %s", cfg.cookie_path)
        for topic, addr in cfg.zmq.items():
            log.info("zmq: Outbound message high water mark for %s at %s is %d",
                     topic, addr, node.zmq.hwm[topic])
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_event.set)
        log.info("regtestd ready: height %d, RPC on %s, datadir %s (%.2fs)", node.chain.height,
                 ", ".join(f"{h}:{p}" for h, p in cfg.rpcbind), cfg.datadir, time.monotonic() - started)
        log.info("init message: Done loading")
        node.run_notify(cfg.startupnotify)
        await stop_event.wait()
        log.info("Shutdown: In progress...")
    finally:
        server.stopping = True
        await server.close()
        auth.remove_cookie()
        node.shutdown()
    node.run_notify(cfg.shutdownnotify)
    log.info("Shutdown: done")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: returns the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_config(args)
    except HelpRequested as h:
        sys.stdout.write(h.text)
        return 0
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    for w in cfg.warnings:
        print(f"Warning: {w}", file=sys.stderr)
    lock = None
    try:
        lock = _lock_datadir(cfg)
        _setup_logging(cfg)
        log.info("regtestd starting (pid %d), datadir %s", os.getpid(), cfg.datadir)
        return asyncio.run(_serve(cfg))
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        log.error("Error: %s", e)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception as e:
        if type(e).__module__.startswith("zmq"):
            print(f"Error: ZMQ: {e}", file=sys.stderr)
            return 1
        raise
    finally:
        if lock is not None:
            lock.close()


if __name__ == "__main__":
    sys.exit(main())
