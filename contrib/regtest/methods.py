"""RPC methods of the blockchain, mining, network, control, util and zmq
categories, with bitcoind 28's names, parameters and result fields."""
from __future__ import annotations

import os
import time
from typing import Any

from bitcoin.address import AddressError, address_to_script
from bitcoin.block import Block
from bitcoin.networks import NETWORKS
from bitcoin.script import witness_program
from bitcoin.serialize import DeserializationError

from .decode import REGTEST_DIFFICULTY, Amount, add_checksum, block_sizes, descriptor_checksum, header_json, \
    infer_descriptor, script_pubkey_json, tx_json
from .chain import HeaderInfo
from .errors import RPC_DESERIALIZATION_ERROR, RPC_INVALID_ADDRESS_OR_KEY, RPC_INVALID_PARAMETER, \
    RPC_MISC_ERROR, RPCError
from .node import Node
from .rpc import Param, help_text, parse_amount, rpc
from .store import STATUS_VALID, Coin
from .validation import MEMPOOL_HEIGHT

NET = NETWORKS["regtest"]
VERSION = 280000
SUBVERSION = "/Satoshi:28.0.0(regtestd)/"


# -- helpers ---------------------------------------------------------------------------
def output_script(text: str, what: str = "address") -> bytes:
    """scriptPubKey for an address, or an addr(...) / raw(...) descriptor."""
    desc, _, checksum = text.partition("#")
    if checksum and descriptor_checksum(desc) != checksum:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, f"Provided checksum '{checksum}' does not match computed "
                                                   f"checksum '{descriptor_checksum(desc)}'")
    try:
        if desc.startswith("addr(") and desc.endswith(")"):
            return address_to_script(desc[5:-1], NET)
        if desc.startswith("raw(") and desc.endswith(")"):
            return bytes.fromhex(desc[4:-1])
        return address_to_script(desc, NET)
    except (AddressError, ValueError):
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, f"Error: Invalid {what}") from None


def _block_or_404(node: Node, h: bytes) -> Block:
    if node.chain.info(h) is None:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
    block = node.chain.block(h)
    if block is None:
        raise RPCError(RPC_MISC_ERROR, "Block not available")
    return block


def _header(node: Node, h: bytes, block: Block | None) -> dict[str, Any]:
    chain = node.chain
    info = chain.info(h)
    assert info is not None
    active = chain.is_active(h)
    nxt = chain.active[info.height + 1] if active and info.height < chain.height else None
    return header_json(info.header, info.height, chain.height - info.height + 1 if active else -1,
                       chain.mtp_of(h), chain.chainwork(info.height),
                       len(block.txs) if block is not None else None, nxt)


def split_coins(block: Block, coins: list[Coin] | None) -> list[list[Coin] | None]:
    """Per-transaction spent coins from a block's undo data (input order)."""
    if coins is None:
        return [None] * len(block.txs)
    out: list[list[Coin] | None] = [None]
    n = 0
    for tx in block.txs[1:]:
        out.append(coins[n:n + len(tx.inputs)])
        n += len(tx.inputs)
    return out


# -- blockchain ------------------------------------------------------------------------
@rpc("blockchain")
def getblockchaininfo(node: Node) -> dict[str, Any]:
    """Chain state (chain is always "regtest", never in initial block download)."""
    chain = node.chain
    info = chain.info(chain.tip)
    assert info is not None
    size = 0
    if chain.kernel is not None:
        for root, _, files in os.walk(chain.kernel.path / "blocks"):
            size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return {"chain": "regtest", "blocks": chain.height, "headers": chain.height,
            "bestblockhash": chain.tip[::-1].hex(), "difficulty": REGTEST_DIFFICULTY,
            "time": info.header.time, "mediantime": chain.mtp(), "verificationprogress": 1,
            "initialblockdownload": False, "chainwork": chain.chainwork(chain.height),
            "size_on_disk": size, "pruned": False, "warnings": []}


@rpc("blockchain")
def getblockcount(node: Node) -> int:
    """Height of the active tip."""
    return node.chain.height


@rpc("blockchain")
def getbestblockhash(node: Node) -> str:
    """Hash of the active tip."""
    return node.chain.tip[::-1].hex()


@rpc("blockchain", Param("height", "int"))
def getblockhash(node: Node, height: int) -> str:
    """Hash of the active block at `height`."""
    if not 0 <= height <= node.chain.height:
        raise RPCError(RPC_INVALID_PARAMETER, "Block height out of range")
    return node.chain.active[height][::-1].hex()


@rpc("blockchain", Param("blockhash", "hash"), Param("verbose", "bool", True))
def getblockheader(node: Node, blockhash: bytes, verbose: bool) -> Any:
    """Header as JSON, or as hex with verbose=false."""
    info = node.chain.info(blockhash)
    if info is None:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
    if not verbose:
        return info.header.serialize().hex()
    return _header(node, blockhash, node.chain.block(blockhash))


@rpc("blockchain", Param("blockhash", "hash"), Param("verbosity", "intbool", 1))
def getblock(node: Node, blockhash: bytes, verbosity: int) -> Any:
    """Block as hex (0), with txids (1), decoded transactions (2), and prevouts (3)."""
    block = _block_or_404(node, blockhash)
    if verbosity <= 0:
        return block.serialize().hex()
    out = _header(node, blockhash, block)
    out.update(block_sizes(block))
    if verbosity == 1:
        out["tx"] = [t.txid_hex for t in block.txs]
    else:
        per_tx = split_coins(block, node.chain.spent_coins(blockhash))
        out["tx"] = [tx_json(t, c, verbosity) for t, c in zip(block.txs, per_tx)]
    return out


@rpc("blockchain")
def getchaintips(node: Node) -> list[dict[str, Any]]:
    """Every branch tip we know: active, valid-fork or invalid."""
    chain = node.chain
    tips = [h for h in chain.headers if not chain.children.get(h)]
    if chain.tip not in tips:
        tips.append(chain.tip)
    out = []
    for h in tips:
        info = chain.headers[h]
        x: HeaderInfo | None = info
        fork_height, invalid = None, False
        while x is not None:
            if chain.is_active(x.hash):
                fork_height = x.height
                break
            invalid |= x.status != STATUS_VALID
            x = chain.headers.get(x.prev)
        status = "active" if h == chain.tip else ("invalid" if invalid else "valid-fork")
        out.append({"height": info.height, "hash": h[::-1].hex(),
                    "branchlen": info.height - (fork_height if fork_height is not None else 0), "status": status})
    return sorted(out, key=lambda t: -t["height"])


@rpc("blockchain")
def getdifficulty(node: Node) -> float:
    """Regtest's constant difficulty."""
    return REGTEST_DIFFICULTY


@rpc("blockchain", Param("blockhash", "hash"))
def invalidateblock(node: Node, blockhash: bytes) -> None:
    """Mark a block and its descendants invalid; the chain rewinds to its parent.

    Internally a fresh libbitcoinkernel chainstate is built from the stored
    blocks that are still valid (the kernel has no invalidation call)."""
    node.invalidate(blockhash)


@rpc("blockchain", Param("blockhash", "hash"))
def reconsiderblock(node: Node, blockhash: bytes) -> None:
    """Undo invalidateblock; the most-work valid chain becomes active again."""
    node.reconsider(blockhash)


@rpc("blockchain", Param("blockhash", "hash"))
def preciousblock(node: Node, blockhash: bytes) -> None:
    """Accepted for compatibility; ties are rare on a single-miner regtest chain."""
    if node.chain.info(blockhash) is None:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")


@rpc("blockchain")
def gettxoutsetinfo(node: Node) -> dict[str, Any]:
    """UTXO set statistics (count and total amount)."""
    count, total = node.store.utxo_stats()
    return {"height": node.chain.height, "bestblock": node.chain.tip[::-1].hex(), "txouts": count,
            "total_amount": Amount(total)}


@rpc("blockchain", Param("action", "str"), Param("scanobjects", "arr", None))
def scantxoutset(node: Node, action: str, scanobjects: list[Any] | None) -> Any:
    """Find unspent outputs for addr(...)/raw(...) descriptors or addresses."""
    if action == "status":
        return None
    if action == "abort":
        return False
    if action != "start":
        raise RPCError(RPC_INVALID_PARAMETER, "Invalid action '%s'" % action)
    if scanobjects is None:
        raise RPCError(RPC_MISC_ERROR, "scanobjects argument is required for the start action")
    spks = []
    for obj in scanobjects:
        desc = obj.get("desc") if isinstance(obj, dict) else obj
        if not isinstance(desc, str):
            raise RPCError(RPC_INVALID_PARAMETER, "Scan object needs to be either a string or an object")
        spks.append(output_script(desc, "descriptor"))
    chain = node.chain
    unspents, total = [], 0
    for txid, vout, coin in node.store.coins_by_spk(spks):
        total += coin.value
        unspents.append({"txid": txid[::-1].hex(), "vout": vout, "scriptPubKey": coin.spk.hex(),
                         "desc": infer_descriptor(coin.spk), "amount": Amount(coin.value),
                         "coinbase": coin.coinbase, "height": coin.height,
                         "blockhash": chain.active[coin.height][::-1].hex(),
                         "confirmations": chain.height - coin.height + 1})
    return {"success": True, "txouts": node.store.utxo_stats()[0], "height": chain.height,
            "bestblock": chain.tip[::-1].hex(), "unspents": unspents, "total_amount": Amount(total)}


@rpc("blockchain", Param("txid", "hash"), Param("n", "int"), Param("include_mempool", "bool", True))
def gettxout(node: Node, txid: bytes, n: int, include_mempool: bool) -> Any:
    """An unspent output, or null if spent (also in the mempool, by default) or unknown."""
    if include_mempool:
        if (txid, n) in node.mempool.spenders:
            return None
        coin = node.mempool.get_coin(txid, n)
    else:
        coin = node.chain.get_coin(txid, n)
    if coin is None:
        return None
    conf = 0 if coin.height == MEMPOOL_HEIGHT else node.chain.height - coin.height + 1
    return {"bestblock": node.chain.tip[::-1].hex(), "confirmations": conf, "value": Amount(coin.value),
            "scriptPubKey": script_pubkey_json(coin.spk), "coinbase": coin.coinbase}


@rpc("blockchain", Param("index_name", "str", None))
def getindexinfo(node: Node, index_name: str | None) -> dict[str, Any]:
    """The transaction index is always on and synced."""
    idx = {"txindex": {"synced": True, "best_block_height": node.chain.height}}
    return idx if index_name in (None, "txindex") else {}


# -- mining -------------------------------------------------------------------------------
@rpc("generating", Param("nblocks", "int"), Param("address", "str"), Param("maxtries", "int", 1_000_000))
def generatetoaddress(node: Node, nblocks: int, address: str, maxtries: int) -> list[str]:
    """Mine blocks paying `address`, with the mempool's transactions."""
    return node.generate(output_script(address), nblocks)


@rpc("generating", Param("num_blocks", "int"), Param("descriptor", "str"), Param("maxtries", "int", 1_000_000))
def generatetodescriptor(node: Node, num_blocks: int, descriptor: str, maxtries: int) -> list[str]:
    """Mine blocks paying an addr(...)/raw(...) descriptor."""
    return node.generate(output_script(descriptor, "descriptor"), num_blocks)


@rpc("generating", Param("output", "str"), Param("transactions", "arr"), Param("submit", "bool", True))
def generateblock(node: Node, output: str, transactions: list[str], submit: bool) -> dict[str, Any]:
    """Mine one block with exactly these transactions (raw hex or mempool txids)."""
    return node.generate_block(output_script(output, "address or descriptor"), transactions, submit)


@rpc("mining", Param("hexdata", "str"), Param("dummy", "any", None))
def submitblock(node: Node, hexdata: str, dummy: Any) -> Any:
    """Submit a block: null if it became the tip, else bitcoind's reason string."""
    try:
        raw = bytes.fromhex(hexdata)
        block = Block.parse(raw)
    except (ValueError, DeserializationError):
        raise RPCError(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None
    if not block.txs or not block.txs[0].is_coinbase():
        raise RPCError(RPC_DESERIALIZATION_ERROR, "Block does not start with a coinbase")
    return node.submit_block(block, raw)


@rpc("mining")
def getmininginfo(node: Node) -> dict[str, Any]:
    """Mining summary."""
    return {"blocks": node.chain.height, "difficulty": REGTEST_DIFFICULTY, "networkhashps": 0,
            "pooledtx": len(node.mempool), "chain": "regtest", "warnings": []}


# -- network ----------------------------------------------------------------------------------
@rpc("network")
def getnetworkinfo(node: Node) -> dict[str, Any]:
    """Version and relay fees; no peers, ever."""
    return {"version": VERSION, "subversion": SUBVERSION, "protocolversion": 70016,
            "localservices": "0000000000000409", "localservicesnames": ["NETWORK", "WITNESS"],
            "localrelay": True, "timeoffset": 0, "networkactive": True, "connections": 0,
            "connections_in": 0, "connections_out": 0, "networks": [],
            "relayfee": Amount(node.cfg.minrelaytxfee), "incrementalfee": Amount(1000),
            "localaddresses": [], "warnings": []}


@rpc("network")
def getconnectioncount(node: Node) -> int:
    """Always 0: regtestd has no peers."""
    return 0


@rpc("network")
def getpeerinfo(node: Node) -> list[Any]:
    """Always empty."""
    return []


@rpc("network")
def ping(node: Node) -> None:
    """No-op."""
    return None


# -- control ---------------------------------------------------------------------------------
@rpc("control", Param("command", "str", None))
def help(node: Node, command: str | None) -> str:  # noqa: A001 - the RPC is called help
    """List commands, or show one command's usage."""
    return help_text(command)


@rpc("control")
def stop(node: Node) -> str:
    """Shut down cleanly (flushes the kernel, saves the mempool, removes the cookie)."""
    node.request_stop()
    return "Bitcoin Core stopping"


@rpc("control")
def uptime(node: Node) -> int:
    """Seconds since start."""
    return int(time.time() - node.started)


@rpc("control")
def getrpcinfo(node: Node) -> dict[str, Any]:
    """The running command and the log path."""
    return {"active_commands": [{"method": "getrpcinfo", "duration": 0}],
            "logpath": str(node.cfg.debuglogfile or "")}


@rpc("control", *(Param(f"arg{i}", "any", None) for i in range(10)))
def echo(node: Node, **args: Any) -> list[Any]:
    """Return the arguments (testing aid, as bitcoind's)."""
    vals = [args[f"arg{i}"] for i in range(10)]
    while vals and vals[-1] is None:
        vals.pop()
    return vals


# -- util ------------------------------------------------------------------------------------
@rpc("util", Param("conf_target", "int"), Param("estimate_mode", "str", "conservative"))
def estimatesmartfee(node: Node, conf_target: int, estimate_mode: str) -> dict[str, Any]:
    """Feerate in BTC/kvB from setfeerate or -fallbackfee; errors when neither is set."""
    if estimate_mode.lower() not in ("unset", "economical", "conservative"):
        raise RPCError(RPC_INVALID_PARAMETER, 'Invalid estimate_mode parameter, must be one of: '
                                              '"unset", "economical", "conservative"')
    if not 1 <= conf_target <= 1008:
        raise RPCError(RPC_INVALID_PARAMETER, "Invalid conf_target, must be between 1 and 1008")
    rate = node.estimate_feerate(conf_target)
    if rate is None:
        return {"errors": ["Insufficient data or no feerate found"], "blocks": 0}
    return {"feerate": Amount(rate), "blocks": max(2, conf_target)}


@rpc("util", Param("feerate", "any", None, "BTC/kvB, or null to clear"),
     Param("conf_target", "int", None, "only for this target and above"))
def setfeerate(node: Node, feerate: Any, conf_target: int | None) -> dict[str, Any]:
    """(regtestd only) Set what estimatesmartfee answers.

    setfeerate 0.0002        -> every target
    setfeerate 0.0005 2      -> targets 2.. (until a larger configured target)
    setfeerate null [target] -> clear that target, or everything (no estimate)
    """
    rate = None if feerate is None else parse_amount(feerate, "feerate")
    if conf_target is not None and not 1 <= conf_target <= 1008:
        raise RPCError(RPC_INVALID_PARAMETER, "Invalid conf_target, must be between 1 and 1008")
    if conf_target is None:
        node.feerates.clear()
        node.default_feerate = rate
    elif rate is None:
        node.feerates.pop(conf_target, None)
    else:
        node.feerates[conf_target] = rate
    return {"default": Amount(node.default_feerate) if node.default_feerate is not None else None,
            "targets": {str(t): Amount(r) for t, r in sorted(node.feerates.items())}}


@rpc("util", Param("address", "str"))
def validateaddress(node: Node, address: str) -> dict[str, Any]:
    """Is this a valid regtest address, and its scriptPubKey."""
    try:
        spk = address_to_script(address, NET)
    except AddressError:
        return {"isvalid": False, "error_locations": [],
                "error": "Invalid or unsupported Segwit (Bech32) or Base58 encoding."}
    out: dict[str, Any] = {"isvalid": True, "address": address, "scriptPubKey": spk.hex()}
    wp = witness_program(spk)
    out["isscript"] = (len(spk) == 23 and spk[0] == 0xA9) or (wp is not None and wp[0] == 0 and len(wp[1]) == 32)
    out["iswitness"] = wp is not None
    if wp is not None:
        out["witness_version"] = wp[0]
        out["witness_program"] = wp[1].hex()
    return out


@rpc("util", Param("descriptor", "str"))
def getdescriptorinfo(node: Node, descriptor: str) -> dict[str, Any]:
    """Checksum of an addr(...)/raw(...) descriptor."""
    desc = descriptor.partition("#")[0]
    output_script(desc, "descriptor")
    return {"descriptor": add_checksum(desc), "checksum": descriptor_checksum(desc), "isrange": False,
            "issolvable": False, "hasprivatekeys": False}


# -- zmq -------------------------------------------------------------------------------------
@rpc("zmq")
def getzmqnotifications(node: Node) -> list[dict[str, Any]]:
    """The active ZMQ publishers."""
    return node.zmq.notifications()
