"""The option registry: every lightningd option once, with Core Lightning's
name, type and default.  The click command line, the config files and
`listconfigs` are all derived from this table."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from common.amount import AmountError, parse_amount_msat
from common.wireaddr import split_host_port

# Option kinds (how a value is written and shown in listconfigs)
STR = "string"
INT = "int"
BOOL = "bool"      # takes a value: true/false
FLAG = "flag"      # takes no value: presence means set
MSAT = "msat"      # an amount with Core Lightning's units, kept and shown in msat
SAT = "sat"        # an amount that must be whole satoshis over dust, kept and shown in msat

U32 = (0, 2**32 - 1)
U64 = (0, 2**64 - 1)
S32 = (-2**31, 2**31 - 1)
# Core Lightning keeps amounts in a u64 of msat (htlc-maximum-msat's "no
# limit" default is 2^64-1), so options take anything up to that, not only
# amounts up to 21 million BTC as RPC parameters do.
MAX_OPTION_MSAT = 2**64 - 1
# Bitcoin's dust limit (Core Lightning's chainparams->dust_limit): an amount
# option kept in sats must be at least this (min-emergency-msat).
DUST_LIMIT_SAT = 546


@dataclass(frozen=True)
class OptionSpec:
    name: str
    kind: str
    default: Any
    help: str
    multi: bool = False
    dev: bool = False           # only valid with --developer
    dynamic: bool = False       # settable at run time (setconfig, later)
    cmdline_only: bool = False  # makes no sense in a config file
    conceal: bool = False       # a secret: listconfigs shows "..."
    hidden: bool = False        # deprecated: listconfigs shows it only when set (Core Lightning's opt_hidden)
    int_range: tuple[int, int] | None = None  # INT bounds; None (plugins' ints): any integer
    check: Callable[[str, Any], Any] | None = None  # extra validation/conversion of the value, may raise


def _o(name: str, kind: str, default: Any, help: str, **kw: Any) -> OptionSpec:
    if kind == INT:
        kw.setdefault("int_range", U32)   # most of Core Lightning's are u32
    return OptionSpec(name, kind, default, help, **kw)


OPTIONS: list[OptionSpec] = [
    # --- general
    _o("developer", FLAG, False, "Enable developer options and commands"),
    _o("allow-deprecated-apis", BOOL, True, "Enable deprecated options, JSONRPC commands, fields, etc."),
    _o("conf", STR, None, "Specify configuration file", cmdline_only=True),
    _o("lightning-dir", STR, "~/.lightning", "Set base directory: network-specific subdirectory is under here",
       cmdline_only=True),
    _o("network", STR, "bitcoin", "Select the network parameters (bitcoin, testnet, signet, or regtest)"),
    _o("mainnet", FLAG, False, "Alias for --network=bitcoin"),
    _o("testnet", FLAG, False, "Alias for --network=testnet"),
    _o("signet", FLAG, False, "Alias for --network=signet"),
    _o("regtest", FLAG, False, "Alias for --network=regtest"),
    _o("wallet", STR, None, "Location of the wallet database: sqlite3://PATH[:BACKUP] (default "
       "sqlite3://<lightning-dir>/<network>/lightningd.sqlite3) or postgres://USER:PASS@HOST:PORT/DB"),
    _o("pid-file", STR, None, "Specify pid file (default: <lightning-dir>/lightningd-<network>.pid)"),
    _o("rpc-file", STR, "lightning-rpc", "Set JSON-RPC socket (relative to <lightning-dir>/<network>)"),
    _o("rpc-file-mode", STR, "0600", "Set the file mode (permissions) for the JSON-RPC socket"),
    _o("list-features-only", FLAG, False, "List the features configured, and exit immediately", cmdline_only=True),
    _o("offline", FLAG, False, "Start in offline-mode (do not automatically reconnect and do not accept incoming connections)"),
    _o("autolisten", BOOL, True, "If true, listen on default port and announce if it seems to be a public interface"),
    _o("daemon", FLAG, False, "Run in the background, suppress stdout/stderr"),
    # not Core Lightning's: our subdaemons are Python processes forked from one
    # template (docs/ARCHITECTURE.md, "The zygote")
    _o("subdaemon-memory-merge", BOOL, True, "Let Linux's kernel same-page merging (KSM) share the identical "
       "memory pages of subdaemons forked from the zygote (hsmd excepted); effective when ksmd runs "
       "(/sys/kernel/mm/ksm/run = 1)"),
    # --- logging
    _o("log-level", STR, None, "log level (io, trace, debug, info, unusual, broken) [:SUBSYSTEM[:PATH]]", multi=True),
    _o("log-file", STR, None, "Also log to file (- for stdout)", multi=True),
    _o("log-prefix", STR, "", "log prefix"),
    _o("log-timestamps", BOOL, True, "prefix log messages with timestamp"),
    # --- node identity and network
    _o("alias", STR, None, "Up to 32-byte alias for node"),
    _o("rgb", STR, None, "RRGGBB hex color for node"),
    _o("addr", STR, None, "Set an IP address (v4 or v6) to listen on and announce to the network for incoming connections",
       multi=True),
    _o("bind-addr", STR, None, "Set an IP address (v4 or v6) to listen on, but not announce", multi=True),
    _o("announce-addr", STR, None, "Set an IP address (v4 or v6) or .onion v3 to announce, but not listen on",
       multi=True),
    # --- bitcoin backend
    _o("bitcoin-datadir", STR, None, "-datadir arg for bitcoind (reads bitcoin.conf and .cookie there)"),
    _o("bitcoin-rpcuser", STR, None, "bitcoind RPC username"),
    _o("bitcoin-rpcpassword", STR, None, "bitcoind RPC password", conceal=True),
    _o("bitcoin-rpcconnect", STR, None, "bitcoind RPC host to connect to (HOST or HOST:PORT)",
       check=lambda n, v: _check_host_port(n, v)),
    _o("bitcoin-rpcport", INT, None, "bitcoind RPC port", int_range=(1, 65535)),
    _o("bitcoin-rpcclienttimeout", INT, 60, "bitcoind RPC timeout in seconds during HTTP requests"),
    _o("bitcoin-retry-timeout", INT, 60, "how long to keep retrying to contact bitcoind before fatally exiting"),
    _o("bitcoin-zmqpubrawblock", STR, None, "bitcoind's -zmqpubrawblock endpoint: wake up on each new block"),
    _o("bitcoin-poll", INT, 30, "seconds between polls of the bitcoin backend for new blocks"),
    _o("rescan", INT, 15, "Number of blocks to rescan from the current head, or absolute blockheight if negative",
       int_range=S32),
    # --- channels and payments policy
    _o("fee-base", INT, 1000, "Millisatoshi minimum to charge for HTLC"),
    _o("fee-per-satoshi", INT, 10, "Microsatoshi fee for every satoshi in HTLC"),
    _o("cltv-delta", INT, 34, "Number of blocks for cltv_expiry_delta"),
    _o("cltv-final", INT, 18, "Number of blocks for final cltv_expiry"),
    _o("funding-confirms", INT, 3, "Confirmations required for funding transaction"),
    _o("watchtime-blocks", INT, 144, "Blocks before peer can unilaterally spend funds"),
    _o("max-locktime-blocks", INT, 2016, "Maximum blocks funds may be locked for"),
    _o("htlc-minimum-msat", MSAT, 0, "the default minimal value an HTLC must carry in order to be forwardable for new channels"),
    _o("htlc-maximum-msat", MSAT, MAX_OPTION_MSAT,
       "the default maximal value an HTLC must carry in order to be forwardable for new channel"),
    _o("max-concurrent-htlcs", INT, 30, "Number of HTLCs one channel can handle concurrently. Should be between 1 and 483"),
    _o("max-dust-htlc-exposure-msat", MSAT, 50_000_000, "Max HTLC amount that can be trimmed"),
    _o("min-emergency-msat", SAT, 25_000_000, "Amount to leave in wallet for spending anchor closes"),
    _o("commit-time", INT, 10, "Time after changes before sending out COMMIT"),
    # Core Lightning ignores it since v23.11: large channels are always allowed
    _o("large-channels", FLAG, False, "(deprecated, ignored) large channels are always allowed", hidden=True),
    _o("min-capacity-sat", INT, 10000, "Minimum capacity in satoshis for accepting channels", dynamic=True,
       int_range=U64),
    _o("ignore-fee-limits", BOOL, False, "Allow peer to set any feerate"),
    _o("disable-mpp", FLAG, False, "Disable multi-part payments."),
    # Core Lightning's xpay plugin options (xpay is built in here)
    _o("xpay-handle-pay", BOOL, False, "Make xpay take over pay commands it can handle."),
    _o("xpay-slow-mode", BOOL, False, "Wait until all parts have completed before returning success or failure"),
    _o("autoclean-cycle", INT, 3600, "Perform cleanup every given seconds", dynamic=True, int_range=U64),
    _o("autoclean-expiredinvoices-age", INT, 0, "How old do expired invoices have to be before deletion (0 = never)",
       dynamic=True, int_range=U64),
    _o("autoclean-paidinvoices-age", INT, 0, "How old do paid invoices have to be before deletion (0 = never)",
       dynamic=True, int_range=U64),
    # --- plugins
    _o("plugin", STR, None, "Add a plugin to be run (can be used multiple times)", multi=True),
    _o("plugin-dir", STR, None, "Add a directory to load plugins from (can be used multiple times)", multi=True),
    _o("clear-plugins", FLAG, False, "Remove all plugins added before this option"),
    _o("disable-plugin", STR, None, "Disable a particular plugin by filename/name", multi=True),
    _o("important-plugin", STR, None, "Add an important plugin to be run (can be used multiple times). "
                                       "Die if the plugin dies.", multi=True),
    # --- developer
    _o("dev-bitcoind-poll", INT, None, "Time between polling for new transactions", dev=True),
    _o("dev-fast-gossip", FLAG, False, "Make gossip broadcast 1 second, etc", dev=True),
    _o("dev-fast-gossip-prune", FLAG, False, "Make gossip pruning 60 seconds", dev=True),
    _o("dev-allow-localhost", FLAG, False, "Announce and allow announcements for localhost address", dev=True),
    _o("dev-no-htlc-timeout", FLAG, False, "Don't kill channeld if HTLCs not confirmed within 30 seconds", dev=True),
    _o("dev-no-reconnect", FLAG, False, "Disable automatic reconnect-attempts by this node", dev=True),
    _o("dev-disconnect", STR, None, "File containing disconnection points", dev=True),
    # Shown by listconfigs as given, as Core Lightning does: test keys, not secrets.
    _o("dev-force-privkey", STR, None, "Force HSM to use this as node private key", dev=True,
       check=lambda n, v: _check_privkey(n, v, "privkey")),
    _o("dev-force-bip32-seed", STR, None, "Force HSM to use this as bip32 seed", dev=True,
       check=lambda n, v: _check_hex32(n, v, "secret")),
    _o("dev-force-channel-secrets", STR, None, "Force HSM to use these for all per-channel secrets "
       "(funding/revocation/payment/delayed_payment/htlc/shaseed, '/' separated)", dev=True,
       check=lambda n, v: _check_channel_secrets(n, v)),
    _o("dev-no-plugin-checksum", FLAG, False, "Don't checksum plugins to detect changes", dev=True),
    _o("dev-plugin-start-timeout", INT, None, "Seconds a plugin has for getmanifest and for init (default 60)",
       dev=True),
    _o("dev-fail-on-subdaemon-fail", FLAG, False, "Fail when a subdaemon fails (status_fail, a signal, a "
       "malformed message) instead of restarting it", dev=True),
    _o("dev-force-tmp-channel-id", STR, None, "Force the temporary channel id, instead of random", dev=True,
       check=lambda n, v: _check_hex32(n, v, "channel_id")),
    _o("dev-subdaemon-restart-delay", INT, 1, "Seconds to wait before restarting a crashed subdaemon", dev=True),
    _o("dev-opening-timeout-secs", INT, None, "Seconds a peer has for each message of a channel opening before "
       "the open is forgotten (default 120)", dev=True),
]

OPTIONS_BY_NAME: dict[str, OptionSpec] = {o.name: o for o in OPTIONS}
# Core Lightning's second names ("--large-channels|--wumbo"): the same
# option, shown by listconfigs under the first name.
ALIASES: dict[str, str] = {"wumbo": "large-channels"}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class OptionError(ValueError):
    """A bad option: unknown, wrong type, or not allowed here.  The message
    names the option so the operator knows what to fix."""


def parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise OptionError(f"--{name}: '{value}' is not a boolean (true/false)")


def convert_value(spec: OptionSpec, raw: str | None) -> Any:
    """Turn the text of an option (as given on the command line or in a
    config file) into its typed value; raise OptionError naming it."""
    if spec.kind == FLAG:
        if raw is None or raw == "":
            return True
        return parse_bool(spec.name, raw)
    if raw is None:
        raise OptionError(f"--{spec.name}: requires an argument")
    if spec.kind == BOOL:
        return parse_bool(spec.name, raw)
    if spec.kind == INT:
        value = _parse_int(spec, raw.strip())
    elif spec.kind in (MSAT, SAT):
        value = parse_option_msat(spec.name, raw.strip())
        if spec.kind == SAT:
            value = _check_sat_nondust(spec.name, raw.strip(), value)
    else:
        # strings: trailing whitespace trimmed except where Core Lightning keeps it
        value = raw if spec.name in ("log-prefix", "alias") else raw.rstrip()
    return spec.check(spec.name, value) if spec.check is not None else value


def _parse_int(spec: OptionSpec, text: str) -> int:
    """Core Lightning's strtoul-style numbers: decimal or 0x hex, nothing
    else (no units: `fee-base=1sat` is not a number there either)."""
    try:
        value = int(text, 0) if text.lower().lstrip("-").startswith("0x") else int(text, 10)
    except ValueError:
        raise OptionError(f"--{spec.name}: '{text}' is not a number") from None
    if spec.int_range is not None and not spec.int_range[0] <= value <= spec.int_range[1]:
        raise OptionError(f"--{spec.name}: '{text}' is out of range")
    return value


def parse_option_msat(name: str, text: str) -> int:
    """An amount option as Core Lightning's parse_amount_msat reads it: a
    plain number is msat; `msat`, `sat` and `btc` suffixes are accepted
    (`2000sat` = 2000000, `0.001btc` = 100000000)."""
    try:
        value = parse_amount_msat(text, "msat", limit=MAX_OPTION_MSAT)
    except AmountError:
        raise OptionError(f"--{name}: Unable to parse millisatoshi '{text}'") from None
    assert value is not None
    return value


def _check_sat_nondust(name: str, text: str, msat: int) -> int:
    """Core Lightning's opt_set_sat_nondust: a whole number of sats, at
    least the dust limit (min-emergency-msat is kept in sats there)."""
    if msat % 1000:
        raise OptionError(f"--{name}: '{text}' is not a whole number of sats")
    if msat < DUST_LIMIT_SAT * 1000:
        raise OptionError(f"--{name}: Option must be over dust limit!")
    return msat


def _hex_bytes(text: str, size: int) -> bytes | None:
    try:
        b = bytes.fromhex(text)
    except ValueError:
        return None
    # bytes.fromhex skips spaces; Core Lightning's hex_decode does not
    return b if len(b) == size and len(text) == 2 * size else None


def _check_hex32(name: str, text: str, what: str) -> str:
    if _hex_bytes(text, 32) is None:
        raise OptionError(f"--{name}: Unable to parse {what} '{text}'")
    return text


def _check_privkey(name: str, text: str, what: str) -> str:
    b = _hex_bytes(text, 32)
    if b is None:
        raise OptionError(f"--{name}: Unable to parse {what} '{text}'")
    # caught here rather than by hsmd at start-up, where Core Lightning fails
    if not 0 < int.from_bytes(b, "big") < SECP256K1_ORDER:
        raise OptionError(f"--{name}: '{text}' is not a valid secp256k1 private key")
    return text


def _check_channel_secrets(name: str, text: str) -> str:
    """funding/revocation/payment/delayed_payment/htlc/shaseed, each 32 bytes of hex."""
    parts = text.split("/")
    if len(parts) != 6 or any(_hex_bytes(p, 32) is None for p in parts):
        raise OptionError(f"--{name}: Expected 6 hex secrets separated by /")
    if not 0 < int(parts[0], 16) < SECP256K1_ORDER:
        raise OptionError(f"--{name}: the funding secret is not a valid secp256k1 private key")
    return text


def _check_host_port(name: str, text: str) -> str:
    try:
        split_host_port(text)
    except ValueError as e:
        raise OptionError(f"--{name}: {e}") from None
    return text


SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass
class OptionValue:
    """One option's current value and where it came from ("default",
    "cmdline", or "FILE:LINE"), as listconfigs reports it."""

    spec: OptionSpec
    value: Any
    source: str = "default"
    sources: list[str] = field(default_factory=list)  # for multi options


Validator = Callable[[Any], None]
