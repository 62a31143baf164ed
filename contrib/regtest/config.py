"""Command line and bitcoin.conf parsing, the way bitcoind's ArgsManager does it.

Options are ``-name[=value]`` (``--name`` is accepted too), ``-noname`` means
``name=0``; the config file holds ``name=value`` lines, ``[section]`` headers
and ``section.name=value`` keys. Command line beats the ``[regtest]``
section, which beats the file's top level. As in bitcoind, the network-only
options (rpcport, rpcbind, ...) at the top level of the file only apply to
mainnet, so they are ignored here with a warning.

Only regtest is supported: a missing ``-regtest`` or any other chain is an
error, and so is an option bitcoind would not know (on the command line; in
the file it is a warning, as bitcoind does).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

COIN = 100_000_000
VERSION = "0.1.0"


class ConfigError(Exception):
    """A configuration problem: printed as ``Error: <message>``, exit code 1."""


class HelpRequested(Exception):
    """``-help``/``-version``: print the text and exit 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# Options this server implements.
USED = {
    "regtest", "chain", "testnet", "testnet4", "signet", "datadir", "conf", "includeconf",
    "rpcport", "rpcbind", "rpcallowip", "rpcuser", "rpcpassword", "rpcauth", "rpccookiefile",
    "zmqpubrawblock", "zmqpubrawtx", "zmqpubhashblock", "zmqpubhashtx", "zmqpubsequence",
    "zmqpubrawblockhwm", "zmqpubrawtxhwm", "zmqpubhashblockhwm", "zmqpubhashtxhwm",
    "zmqpubsequencehwm", "fallbackfee", "minrelaytxfee", "acceptnonstdtxn", "mempoolfullrbf",
    "printtoconsole", "debuglogfile", "blocknotify", "reindex", "persistmempool", "daemon",
    "help", "h", "?", "version", "maxtxfee", "startupnotify", "shutdownnotify",
}
# bitcoind options that are harmless here: accepted and ignored.
IGNORED = {
    "server", "txindex", "listen", "debug", "debugexclude", "logtimestamps", "logips",
    "logthreadnames", "logsourcelocations", "loglevel", "loglevelalways", "rest", "wallet",
    "disablewallet", "walletdir", "walletnotify", "walletbroadcast", "walletrbf", "keypool",
    "addresstype", "changetype", "paytxfee", "txconfirmtarget", "spendzeroconfchange",
    "avoidpartialspends", "discardfee", "mintxfee", "consolidatefeerate", "maxapsfee",
    "port", "bind", "whitebind", "whitelist", "connect", "addnode", "seednode", "dnsseed",
    "fixedseeds", "discover", "upnp", "natpmp", "onlynet", "proxy", "onion", "tor",
    "torcontrol", "torpassword", "listenonion", "i2psam", "i2pacceptincoming", "cjdnsreachable",
    "maxconnections", "maxuploadtarget", "timeout", "peertimeout", "peerbloomfilters",
    "peerblockfilters", "blockfilterindex", "coinstatsindex", "blocksonly", "v2transport",
    "dbcache", "dbbatchsize", "par", "maxmempool", "mempoolexpiry", "maxorphantx",
    "limitancestorcount", "limitancestorsize", "limitdescendantcount", "limitdescendantsize",
    "datacarrier", "datacarriersize", "permitbaremultisig", "bytespersigop", "dustrelayfee",
    "incrementalrelayfee", "blockmaxweight", "blockmintxfee", "blockversion", "rpcthreads",
    "rpcworkqueue", "rpcservertimeout", "rpcwhitelist", "rpcwhitelistdefault", "rpcdoccheck",
    "deprecatedrpc", "shrinkdebugfile", "pid", "settings", "alertnotify", "uacomment",
    "assumevalid", "minimumchainwork", "checkblocks", "checklevel", "checkblockindex",
    "checkmempool", "checkaddrman", "checkpoints", "prune", "fastprune", "blocksdir",
    "loadblock", "stopatheight", "stopafterblockimport", "maxtipage", "mocktime", "vbparams",
    "acceptstalefeeestimates", "capturemessages", "addrmantest", "natpmp", "networkactive",
    "forcednsseed", "bantime", "maxreceivebuffer", "maxsendbuffer", "whitelistrelay",
    "whitelistforcerelay", "persistmempoolv1", "blockreconstructionextratxn",
    "limitclustercount", "test", "unsafesqlitesync", "dbcrashratio",
    "blockfilterindex", "asmap", "externalip", "maxsigcachesize", "blockreservedweight",
}
KNOWN = USED | IGNORED
# At the top level of bitcoin.conf these only apply to mainnet (bitcoind's
# NETWORK_ONLY flag), so a regtest node ignores them there.
NETWORK_ONLY = {"addnode", "connect", "port", "bind", "rpcport", "rpcbind", "wallet"}
ZMQ_TOPICS = ("hashblock", "hashtx", "rawblock", "rawtx", "sequence")
OTHER_CHAINS = {"testnet": "test", "testnet4": "testnet4", "signet": "signet"}

USAGE = f"""regtestd {VERSION}: a bitcoind-compatible regtest chain validated by libbitcoinkernel

Usage: regtestd -regtest [options]

Options (same meaning as bitcoind's; other bitcoind options are accepted and ignored):
  -regtest / -chain=regtest     required: only regtest is supported
  -datadir=<dir>                data directory (default ~/.bitcoin); chain data in <dir>/regtest
  -conf=<file>                  config file (default <datadir>/bitcoin.conf)
  -rpcport=<port>               JSON-RPC port (default 18443)
  -rpcbind=<addr>[:port]        address to listen on (default 127.0.0.1)
  -rpcuser=<u> -rpcpassword=<p> credentials; without them a cookie is written to
                                <datadir>/regtest/.cookie (or -rpccookiefile)
  -rpcauth=<user>:<salt>$<hash> extra credentials (bitcoind's rpcauth.py format)
  -zmqpub<topic>=<address>      ZMQ PUB for hashblock, hashtx, rawblock, rawtx, sequence
  -fallbackfee=<btc/kvB>        feerate that estimatesmartfee returns (else: no estimate)
  -minrelaytxfee=<btc/kvB>      minimum relay feerate (default 0.00001)
  -acceptnonstdtxn              skip the standardness checks of the mempool
  -mempoolfullrbf=0             only replace transactions signalling BIP125
  -blocknotify=<cmd>            run cmd (%s = block hash) when the tip changes
  -reindex                      rebuild the kernel chainstate from the stored blocks
  -persistmempool=0             do not keep the mempool across restarts
  -printtoconsole=0             log only to <datadir>/regtest/debug.log

Non-bitcoind RPC: setfeerate <feerate|null> [conf_target] sets estimatesmartfee's answer.
"""


@dataclass
class Config:
    """The settings regtestd runs with, after merging command line and bitcoin.conf."""

    datadir: Path
    rpcport: int = 18443
    rpcbind: list[tuple[str, int]] = field(default_factory=list)
    rpcuser: str | None = None
    rpcpassword: str | None = None
    rpcauth: list[str] = field(default_factory=list)
    rpccookiefile: Path | None = None
    zmq: dict[str, str] = field(default_factory=dict)          # topic -> address
    zmq_hwm: dict[str, int] = field(default_factory=dict)      # topic -> high water mark
    fallbackfee: int | None = None                             # sat/kvB
    minrelaytxfee: int = 1000                                  # sat/kvB
    maxtxfee: int = COIN // 10                                 # sat
    acceptnonstdtxn: bool = False
    mempoolfullrbf: bool = True
    printtoconsole: bool = True
    debuglogfile: Path | None = None
    blocknotify: str | None = None
    startupnotify: str | None = None
    shutdownnotify: str | None = None
    reindex: bool = False
    persistmempool: bool = True
    warnings: list[str] = field(default_factory=list)

    @property
    def chaindir(self) -> Path:
        """Where bitcoind keeps regtest data: ``<datadir>/regtest``."""
        return self.datadir / "regtest"

    @property
    def cookie_path(self) -> Path:
        return self.rpccookiefile or (self.chaindir / ".cookie")


def _parse_bool(name: str, value: str) -> bool:
    """bitcoind's InterpretBool: empty means true, else the integer value."""
    if value == "":
        return True
    try:
        return int(value) != 0
    except ValueError:
        return value.lower() in ("true", "yes")


def parse_amount(name: str, value: str) -> int:
    """A BTC amount (``0.0002``) as satoshis; ConfigError names the option."""
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"Invalid amount for -{name}=<amount>: '{value}'") from None
    sats = d * COIN
    if not d.is_finite() or sats < 0 or sats != sats.to_integral_value() or sats > 21_000_000 * COIN:
        raise ConfigError(f"Invalid amount for -{name}=<amount>: '{value}'")
    return int(sats)


def _parse_port(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"Invalid port specified in -{name}: '{value}'")
    return port


def parse_command_line(argv: list[str]) -> dict[str, list[str]]:
    """Options from the command line: name -> values in order (negations as "0")."""
    opts: dict[str, list[str]] = {}
    for arg in argv:
        if not arg.startswith("-"):
            raise ConfigError(f"Command line contains unexpected token '{arg}', "
                              "see regtestd -h for a list of options.")
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, _, value = body.partition("=")
        if name.startswith("no") and name[2:] in KNOWN and name not in KNOWN:
            # -nofoo means foo=0 (and -nofoo=0, a double negative, foo=1).
            name, value = name[2:], ("0" if _parse_bool(name, value) else "1")
        if name not in KNOWN:
            raise ConfigError(f"Error parsing command line arguments: Invalid parameter -{name}")
        opts.setdefault(name, []).append(value)
    return opts


def parse_config_text(text: str, path: Path, warnings: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(top-level options, [regtest] options) of a bitcoin.conf text."""
    top: dict[str, list[str]] = {}
    regtest: dict[str, list[str]] = {}
    section = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if "=" not in line:
            raise ConfigError(f"Error reading configuration file: parse error on line {lineno}: "
                              f"{line}, if you intended to specify a negated option, use -no{line}=1 instead")
        name, value = (s.strip() for s in line.split("=", 1))
        sect = section
        if "." in name:
            sect, name = name.split(".", 1)
        if name.startswith("no") and name[2:] in KNOWN and name not in KNOWN:
            name, value = name[2:], ("0" if _parse_bool(name, value) else "1")
        if name not in KNOWN:
            warnings.append(f"Ignoring unknown configuration value {name} in {path}")
            continue
        if sect == "regtest":
            regtest.setdefault(name, []).append(value)
        elif sect == "":
            top.setdefault(name, []).append(value)
        # [main], [test], [signet], [testnet4]: other chains, ignored.
    return top, regtest


def load_config(argv: list[str]) -> Config:
    """Merge the command line with bitcoin.conf into a Config; raises ConfigError."""
    cmd = parse_command_line(argv)
    if any(k in cmd for k in ("help", "h", "?")):
        raise HelpRequested(USAGE)
    if "version" in cmd:
        raise HelpRequested(f"regtestd version v{VERSION} (bitcoind-compatible regtest, libbitcoinkernel)\n")

    datadir = Path(os.path.expanduser(cmd.get("datadir", [os.path.join("~", ".bitcoin")])[-1]))
    if "datadir" not in cmd:
        datadir.mkdir(parents=True, exist_ok=True)      # bitcoind creates its default datadir
    if not datadir.is_dir():
        raise ConfigError(f'Specified data directory "{datadir}" does not exist.')
    datadir = datadir.resolve()
    warnings: list[str] = []

    top: dict[str, list[str]] = {}
    regtest: dict[str, list[str]] = {}
    conf_given = "conf" in cmd
    conf = Path(os.path.expanduser(cmd.get("conf", ["bitcoin.conf"])[-1]))
    if not conf.is_absolute():
        conf = datadir / conf
    if conf.exists():
        top, regtest = parse_config_text(conf.read_text(), conf, warnings)
        for inc in top.pop("includeconf", []) + regtest.pop("includeconf", []):
            p = Path(inc) if Path(inc).is_absolute() else datadir / inc
            if not p.exists():
                raise ConfigError(f"Error reading configuration file: Failed to include configuration file {inc}")
            t2, r2 = parse_config_text(p.read_text(), p, warnings)
            for src, dst in ((t2, top), (r2, regtest)):
                for k, v in src.items():
                    dst.setdefault(k, []).extend(v)
    elif conf_given:
        raise ConfigError(f'Error reading configuration file: specified config file "{conf}" could not be opened.')

    for name in NETWORK_ONLY & top.keys():
        warnings.append(f"Config setting for -{name} only applied on main network when in [main] section.")
        del top[name]

    def values(name: str) -> list[str]:
        for src in (cmd, regtest, top):
            if name in src:
                return src[name]
        return []

    def last(name: str, default: str | None = None) -> str | None:
        v = values(name)
        return v[-1] if v else default

    def flag(name: str, default: bool) -> bool:
        v = last(name)
        return default if v is None else _parse_bool(name, v)

    # -- which chain ------------------------------------------------------------
    requested = []
    if flag("regtest", False):
        requested.append("regtest")
    for opt, chain in OTHER_CHAINS.items():
        if flag(opt, False):
            requested.append(chain)
    if last("chain"):
        requested.append(last("chain") or "")
    if len(requested) > 1:
        raise ConfigError("Invalid combination of -regtest, -signet, -testnet, -testnet4 and -chain. "
                          "Can use at most one.")
    if not requested:
        raise ConfigError("regtestd only supports regtest: pass -regtest (or -chain=regtest, or "
                          "regtest=1 in bitcoin.conf); the default chain (main) is not supported")
    if requested[0] != "regtest":
        raise ConfigError(f"regtestd only supports regtest, not chain '{requested[0]}'")
    if flag("daemon", False):
        raise ConfigError("-daemon is not supported by regtestd: start it in the background instead")

    cfg = Config(datadir=datadir, warnings=warnings)
    cfg.rpcport = _parse_port("rpcport", last("rpcport", "18443") or "")
    for b in values("rpcbind") or ["127.0.0.1"]:
        host, port = b, cfg.rpcport
        if b.startswith("["):                      # [::1]:port
            host, _, rest = b[1:].partition("]")
            if rest.startswith(":"):
                port = _parse_port("rpcbind", rest[1:])
        elif b.count(":") == 1:
            host, port_text = b.split(":")
            port = _parse_port("rpcbind", port_text)
        cfg.rpcbind.append((host, port))
    cfg.rpcuser = last("rpcuser")
    cfg.rpcpassword = last("rpcpassword") or None    # empty: cookie authentication, as bitcoind
    cfg.rpcauth = [v for v in values("rpcauth") if v]
    cookie = last("rpccookiefile")
    if cookie:
        cp = Path(cookie)
        cfg.rpccookiefile = cp if cp.is_absolute() else cfg.chaindir / cp
    for topic in ZMQ_TOPICS:
        addr = last(f"zmqpub{topic}")
        if addr:
            cfg.zmq[topic] = addr
        hwm = last(f"zmqpub{topic}hwm")
        if hwm:
            try:
                cfg.zmq_hwm[topic] = int(hwm)
            except ValueError:
                raise ConfigError(f"Invalid -zmqpub{topic}hwm value: '{hwm}'") from None
    fb = last("fallbackfee")
    if fb:
        cfg.fallbackfee = parse_amount("fallbackfee", fb)
    mr = last("minrelaytxfee")
    if mr:
        cfg.minrelaytxfee = parse_amount("minrelaytxfee", mr)
    mt = last("maxtxfee")
    if mt:
        cfg.maxtxfee = parse_amount("maxtxfee", mt)
    cfg.acceptnonstdtxn = flag("acceptnonstdtxn", False)
    cfg.mempoolfullrbf = flag("mempoolfullrbf", True)
    cfg.printtoconsole = flag("printtoconsole", True)
    logfile = last("debuglogfile", "debug.log") or "debug.log"
    if logfile not in ("0",):
        lp = Path(logfile)
        cfg.debuglogfile = lp if lp.is_absolute() else cfg.chaindir / lp
    cfg.blocknotify = last("blocknotify")
    cfg.startupnotify = last("startupnotify")
    cfg.shutdownnotify = last("shutdownnotify")
    cfg.reindex = flag("reindex", False)
    cfg.persistmempool = flag("persistmempool", True)
    return cfg
