"""Core Lightning's option interfaces to the letter: amount options with
units, what listconfigs shows, `--list-features-only` as the test runners
parse it, the `--dev-force-*` values, `--bitcoin-rpcconnect=HOST:PORT`.

Option parsing is checked in-process (build_config), and through a real
`lightningd` process where what matters is the process: its exit status and
message, its listconfigs, what reaches a channel."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from node_factory import LIGHTNINGD, wait_for

from bitcoin.networks import network_by_name
from common.features import Context, bits_from_features, our_features
from common.wireaddr import split_host_port
from lightningd.bitcoind import make_config
from lightningd.config import RawOption, build_config
from lightningd.options import OptionError

U64_MAX = 2**64 - 1


def parse(tmp_path: Path, *opts: tuple[str, str | None]) -> dict:
    raws = [RawOption("lightning-dir", str(tmp_path), "cmdline"), RawOption("developer", None, "cmdline")]
    raws += [RawOption(name, value, "cmdline") for name, value in opts]
    cfg = build_config(raws)
    return {name: v.value for name, v in cfg.values.items()}


def parse_error(tmp_path: Path, name: str, value: str) -> str:
    with pytest.raises(OptionError) as e:
        parse(tmp_path, (name, value))
    return str(e.value)


# -- amounts ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["htlc-minimum-msat", "htlc-maximum-msat", "max-dust-htlc-exposure-msat"])
@pytest.mark.parametrize("text,msat", [
    ("2000sat", 2_000_000),        # what lnprototest passes as --htlc-maximum-msat
    ("5000msat", 5000),
    ("5000", 5000),                # a plain number is msat
    ("1btc", 100_000_000_000),
    ("0.001btc", 100_000_000),
    ("0.00000000001btc", 1),
    ("0", 0),
    (str(U64_MAX), U64_MAX),       # Core Lightning's u64: listconfigs' "no limit" fits back in
])
def test_msat_options_take_units(tmp_path, name, text, msat):
    assert parse(tmp_path, (name, text))[name] == msat


@pytest.mark.parametrize("text", ["2000 sat", "2000sats", "2000SAT", "-5", "1.5msat", "1e3", "sat", "",
                                  str(U64_MAX + 1), "0.000000000001btc"])
def test_bad_amount_names_the_option(tmp_path, text):
    assert parse_error(tmp_path, "htlc-maximum-msat", text) == \
        f"--htlc-maximum-msat: Unable to parse millisatoshi '{text}'"


def test_min_emergency_msat_is_whole_sats_over_dust(tmp_path):
    """Core Lightning keeps it in sats (opt_set_sat_nondust) but shows and
    takes msat: units work, a fraction of a sat or dust does not."""
    name = "min-emergency-msat"
    assert parse(tmp_path)[name] == 25_000_000
    assert parse(tmp_path, (name, "30000sat"))[name] == 30_000_000
    assert parse(tmp_path, (name, "30000000"))[name] == 30_000_000
    assert parse(tmp_path, (name, "0.0003btc"))[name] == 30_000_000
    assert parse(tmp_path, (name, "546sat"))[name] == 546_000
    assert parse_error(tmp_path, name, "30000500msat") == f"--{name}: '30000500msat' is not a whole number of sats"
    assert parse_error(tmp_path, name, "545sat") == f"--{name}: Option must be over dust limit!"
    assert parse_error(tmp_path, name, "lots") == f"--{name}: Unable to parse millisatoshi 'lots'"


@pytest.mark.parametrize("name", ["fee-base", "min-capacity-sat", "autoclean-cycle", "cltv-delta"])
def test_integer_options_take_no_units(tmp_path, name):
    """fee-base, min-capacity-sat and autoclean-* are plain integers in Core
    Lightning (opt_set_u32/u64), so a unit is an error there, and here."""
    assert parse(tmp_path, (name, "12345"))[name] == 12345
    assert parse(tmp_path, (name, "0x10"))[name] == 16
    assert parse_error(tmp_path, name, "1000sat") == f"--{name}: '1000sat' is not a number"
    assert parse_error(tmp_path, name, "-1") == f"--{name}: '-1' is out of range"


def test_integer_ranges(tmp_path):
    assert parse_error(tmp_path, "fee-base", str(2**32)) == f"--fee-base: '{2**32}' is out of range"
    assert parse(tmp_path, ("min-capacity-sat", str(2**40)))["min-capacity-sat"] == 2**40   # u64
    assert parse(tmp_path, ("rescan", "-100"))["rescan"] == -100                            # s32
    assert parse_error(tmp_path, "bitcoin-rpcport", "70000") == "--bitcoin-rpcport: '70000' is out of range"


def test_config_file_error_names_file_and_line(tmp_path):
    (tmp_path / "config").write_text("alias=x\nhtlc-minimum-msat=10 sat\n")
    with pytest.raises(OptionError) as e:
        parse(tmp_path)
    assert str(e.value) == f"{tmp_path / 'config'}:2: --htlc-minimum-msat: Unable to parse millisatoshi '10 sat'"
    (tmp_path / "config").write_text("htlc-minimum-msat=10sat\n")
    assert parse(tmp_path)["htlc-minimum-msat"] == 10_000


def test_large_channels_alias_wumbo(tmp_path):
    """Deprecated and ignored in Core Lightning (large channels are always
    allowed), still accepted under both its names."""
    assert parse(tmp_path)["large-channels"] is False
    assert parse(tmp_path, ("wumbo", None))["large-channels"] is True
    assert parse(tmp_path, ("large-channels", None))["large-channels"] is True


# -- --dev-force-* -----------------------------------------------------------------------

def test_dev_force_values_are_checked_as_core_lightning(tmp_path):
    k = "00" * 31 + "01"
    assert parse(tmp_path, ("dev-force-privkey", k))["dev-force-privkey"] == k
    assert parse(tmp_path, ("dev-force-bip32-seed", k))["dev-force-bip32-seed"] == k
    assert parse_error(tmp_path, "dev-force-privkey", "01") == "--dev-force-privkey: Unable to parse privkey '01'"
    assert parse_error(tmp_path, "dev-force-privkey", "00" * 32).endswith("is not a valid secp256k1 private key")
    assert parse_error(tmp_path, "dev-force-bip32-seed", "zz" * 32) == \
        f"--dev-force-bip32-seed: Unable to parse secret '{'zz' * 32}'"
    # funding/revocation/payment/delayed_payment/htlc/shachain, upper case hex as lnprototest writes the last
    six = "/".join(["00" * 31 + f"{i:02x}" for i in range(0x10, 0x15)] + ["FF" * 32])
    assert parse(tmp_path, ("dev-force-channel-secrets", six))["dev-force-channel-secrets"] == six
    for bad in (six.rsplit("/", 1)[0], six + "/" + "11" * 32, six.replace("FF" * 32, "FF" * 31)):
        assert parse_error(tmp_path, "dev-force-channel-secrets", bad) == \
            "--dev-force-channel-secrets: Expected 6 hex secrets separated by /"
    # developer options need --developer, as in Core Lightning
    with pytest.raises(OptionError, match="--dev-force-privkey: developer option requires --developer"):
        build_config([RawOption("lightning-dir", str(tmp_path), "cmdline"),
                      RawOption("dev-force-privkey", k, "cmdline")])


# -- --bitcoin-rpcconnect ------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1", ("127.0.0.1", None)),
    ("127.0.0.1:18443", ("127.0.0.1", 18443)),
    ("bitcoind.example:8332", ("bitcoind.example", 8332)),
    ("[::1]:18443", ("::1", 18443)),
    ("[::1]", ("::1", None)),
    ("::1", ("::1", None)),
])
def test_rpcconnect_host_port(text, expected):
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", ":8332",
                                  "[::1]x", "[::1"])
def test_rpcconnect_bad(tmp_path, text):
    assert parse_error(tmp_path, "bitcoin-rpcconnect", text).startswith("--bitcoin-rpcconnect: ")


def test_rpcconnect_port_precedence(tmp_path):
    net = network_by_name("regtest")
    base = {"bitcoin-datadir": str(tmp_path), "bitcoin-rpcuser": "u", "bitcoin-rpcpassword": "p"}
    c = make_config(dict(base, **{"bitcoin-rpcconnect": "10.0.0.1:1234"}), net)
    assert (c.host, c.port) == ("10.0.0.1", 1234)
    c = make_config(dict(base, **{"bitcoin-rpcconnect": "10.0.0.1:1234", "bitcoin-rpcport": 4321}), net)
    assert (c.host, c.port) == ("10.0.0.1", 4321)      # an explicit --bitcoin-rpcport wins
    c = make_config(dict(base, **{"bitcoin-rpcconnect": "::1"}), net)
    assert (c.host, c.port) == ("::1", net.rpc_port) and "@[::1]:" in c.url()
    (tmp_path / "bitcoin.conf").write_text("rpcconnect=192.168.1.2:9999\nrpcport=1111\n")
    c = make_config(base, net)
    assert (c.host, c.port) == ("192.168.1.2", 9999)
    (tmp_path / "bitcoin.conf").write_text("rpcconnect=192.168.1.2:nope\n")
    with pytest.raises(OptionError, match="rpcconnect in .*bitcoin.conf: invalid port 'nope'"):
        make_config(base, net)


# -- --list-features-only ------------------------------------------------------------------

def test_list_features_only_as_runners_parse_it(tmp_path):
    out = subprocess.run(LIGHTNINGD + [f"--lightning-dir={tmp_path}", "--list-features-only"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    # exactly Core Lightning's layout: our init features in bit order, then the supports_ lines
    assert lines == ["option_data_loss_protect/even", "option_upfront_shutdown_script/odd",
                     "option_gossip_queries/odd", "option_var_onion_optin/even", "option_static_remotekey/even",
                     "option_payment_secret/even", "option_basic_mpp/odd", "option_anchors/odd",
                     "option_route_blinding/odd", "option_shutdown_anysegwit/odd", "option_onion_messages/odd",
                     "option_channel_type/odd", "option_scid_alias/odd", "option_zeroconf/odd",
                     "supports_open_accept_channel_type"]
    # lnprototest's clightning runner
    options: dict[str, str] = {}
    for o in lines:
        if o.startswith("supports_"):
            options[o] = "true"
        else:
            k, v = o.split("/")
            options[k] = v
    assert options["option_gossip_queries"] == "odd" and options["option_static_remotekey"] == "even"
    assert options["option_anchors"] == "odd"      # so a runner knows to try anchors channels
    # ... and they are the bits we send in init (the wire test checks init itself)
    bits = bits_from_features(our_features(Context.INIT))
    assert len(bits) == len(lines) - 1
    assert (options["option_basic_mpp"] == "odd") == (17 in bits)
    # nothing else is printed, nothing is created
    assert not any(tmp_path.iterdir())


def test_core_lightning_source_layout_launchers(tmp_path):
    """Tools written for a Core Lightning build tree run
    $LIGHTNING_SRC/lightningd/lightningd (lnprototest's runner) and
    $LIGHTNING_SRC/cli/lightning-cli: with LIGHTNING_SRC our checkout, they
    start this node, from any directory."""
    src = Path(__file__).resolve().parent.parent
    ours = subprocess.run(LIGHTNINGD + ["--list-features-only"], capture_output=True, text=True, timeout=60,
                          check=True).stdout
    via = subprocess.run([str(src / "lightningd" / "lightningd"), "--list-features-only"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert via == ours and "option_static_remotekey/even" in via
    cli = subprocess.run([str(src / "cli" / "lightning-cli"), f"--lightning-dir={tmp_path}", "getinfo"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert cli.returncode != 0 and "lightning-rpc" in cli.stdout + cli.stderr    # no node there: says which socket


# -- through a real lightningd -------------------------------------------------------------

def run_lightningd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(LIGHTNINGD + [f"--lightning-dir={tmp_path}", "--network=regtest", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("arg,message", [
    ("--htlc-maximum-msat=2000 sat", "--htlc-maximum-msat: Unable to parse millisatoshi '2000 sat'"),
    ("--min-emergency-msat=100sat", "--min-emergency-msat: Option must be over dust limit!"),
    ("--fee-base=1sat", "--fee-base: '1sat' is not a number"),
    ("--bitcoin-rpcconnect=127.0.0.1:99999", "--bitcoin-rpcconnect: invalid port '99999'"),
])
def test_lightningd_refuses_bad_values_naming_the_option(tmp_path, arg, message):
    p = run_lightningd(tmp_path, arg)
    assert p.returncode == 1
    assert p.stderr.strip().startswith(f"lightningd: {message}"), p.stderr


def test_dev_force_privkey_needs_hex_at_startup(tmp_path):
    p = run_lightningd(tmp_path, "--developer", "--dev-force-privkey=nothex")
    assert p.returncode == 1 and "--dev-force-privkey: Unable to parse privkey 'nothex'" in p.stderr


def test_listconfigs_shows_amounts_and_flags_as_core_lightning(node_factory):
    l1, l2 = node_factory.get_nodes(2, opts=[{"htlc-maximum-msat": "2000sat", "htlc-minimum-msat": "0.00000005btc",
                                              "max-dust-htlc-exposure-msat": "40000sat",
                                              "min-emergency-msat": "30000sat", "offline": False},
                                             {}])
    cfg = l1.rpc.listconfigs()["configs"]
    assert cfg["htlc-maximum-msat"] == {"value_msat": 2_000_000, "source": "cmdline"}
    assert cfg["htlc-minimum-msat"] == {"value_msat": 5000, "source": "cmdline"}
    assert cfg["max-dust-htlc-exposure-msat"] == {"value_msat": 40_000_000, "source": "cmdline"}
    assert cfg["min-emergency-msat"] == {"value_msat": 30_000_000, "source": "cmdline"}
    # defaults: "no limit" is u64 max, as Core Lightning shows it
    cfg2 = l2.rpc.listconfigs()["configs"]
    assert cfg2["htlc-maximum-msat"] == {"value_msat": U64_MAX, "source": "default"}
    assert cfg2["min-emergency-msat"] == {"value_msat": 25_000_000, "source": "default"}
    # flags are {"set", "source"}, shown when unset; dev options only when given, deprecated ones neither
    assert cfg["developer"] == {"set": True, "source": "cmdline"}
    assert cfg["offline"] == {"set": False, "source": "default"}
    assert cfg["dev-fast-gossip"] == {"set": True, "source": "cmdline"}
    assert "dev-no-reconnect" not in cfg and "large-channels" not in cfg and "list-features-only" not in cfg
    assert cfg["fee-base"] == {"value_int": 1000, "source": "default"}
    # the amounts reach the channel: its policy as gossiped and listed
    from test_channels import fund, open_channel
    fund(l1)
    open_channel(l1, l2, 500_000)
    chan = l1.rpc.listpeerchannels(l2.node_id)["channels"][0]
    assert chan["maximum_htlc_out_msat"] == 2_000_000
    assert chan["minimum_htlc_out_msat"] == 5000 and chan["minimum_htlc_in_msat"] == 5000
    # and the default "no limit" is the channel's capacity
    chan2 = l2.rpc.listpeerchannels(l1.node_id)["channels"][0]
    assert chan2["maximum_htlc_out_msat"] == 500_000_000


def test_bitcoin_rpcconnect_host_port_reaches_bitcoind(node_factory, chain):
    """lnprototest's runner passes --bitcoin-rpcconnect=127.0.0.1:PORT and no --bitcoin-rpcport."""
    l1 = node_factory.get_node(options={"bitcoin-rpcport": False,
                                        "bitcoin-rpcconnect": f"127.0.0.1:{chain.rpcport}"})
    chain.mine(1)
    wait_for(lambda: l1.rpc.getinfo()["blockheight"] == chain.rpc.getblockcount())
