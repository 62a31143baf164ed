"""Per-network constants: genesis hashes (chain_hash in Lightning messages),
address prefixes, BOLT 11 prefixes and Core Lightning's default ports."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Network:
    name: str                # Core Lightning's --network name
    bip70_name: str          # bitcoind's getblockchaininfo "chain"
    genesis_hash_hex: str    # display order
    bech32_hrp: str
    p2pkh_prefix: int
    p2sh_prefix: int
    bolt11_prefix: str       # after "ln"
    default_port: int        # Lightning peer port
    rpc_port: int            # bitcoind RPC port
    cookie_subdir: str       # where bitcoind writes .cookie under its datadir

    @property
    def chain_hash(self) -> bytes:
        """As carried in Lightning messages: genesis hash in internal byte order."""
        return bytes.fromhex(self.genesis_hash_hex)[::-1]


NETWORKS: dict[str, Network] = {
    n.name: n
    for n in [
        Network("bitcoin", "main",
                "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
                "bc", 0x00, 0x05, "bc", 9735, 8332, ""),
        Network("testnet", "test",
                "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
                "tb", 0x6F, 0xC4, "tb", 19735, 18332, "testnet3"),
        Network("signet", "signet",
                "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6",
                "tb", 0x6F, 0xC4, "tbs", 39735, 38332, "signet"),
        Network("regtest", "regtest",
                "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
                "bcrt", 0x6F, 0xC4, "bcrt", 19846, 18443, "regtest"),
    ]
}


def network_by_name(name: str) -> Network:
    try:
        return NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}: expected one of {', '.join(NETWORKS)}") from None


def network_by_chain_hash(chain_hash: bytes) -> Network | None:
    for n in NETWORKS.values():
        if n.chain_hash == chain_hash:
            return n
    return None
