"""RPC methods of the rawtransactions and mempool categories (bitcoind 28)."""
from __future__ import annotations

from typing import Any

from bitcoin.address import script_to_address
from bitcoin.hashes import hash160
from bitcoin.script import p2sh_script
from bitcoin.tx import OutPoint, Tx, TxIn, TxOut

from .decode import NET, Amount, script_pubkey_json, tx_json
from .errors import RPC_DESERIALIZATION_ERROR, RPC_INVALID_ADDRESS_OR_KEY, RPC_INVALID_PARAMETER, RPCError
from .mempool import MempoolEntry
from .methods import output_script
from .node import DEFAULT_MAX_FEERATE, Node, decode_tx
from .rpc import Param, parse_amount, parse_hash, rpc
from .store import Coin
from .validation import signals_rbf, solver

NO_TX = "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."


def _verbosity(v: int) -> int:
    if v not in (0, 1, 2):
        raise RPCError(RPC_INVALID_PARAMETER, f"Invalid verbosity value {v}")
    return v


@rpc("rawtransactions", Param("txid", "hash"), Param("verbose", "intbool", 0), Param("blockhash", "hash", None))
def getrawtransaction(node: Node, txid: bytes, verbose: int, blockhash: bytes | None) -> Any:
    """A mempool or confirmed transaction (the txindex is always on)."""
    verbosity = _verbosity(verbose)
    chain = node.chain
    coins: list[Coin] | None = None
    bh: bytes | None = None
    tx: Tx | None = None
    if blockhash is not None:
        if chain.info(blockhash) is None:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block hash not found")
        block = chain.block(blockhash)
        for pos, t in enumerate(block.txs if block is not None else []):
            if t.txid() == txid:
                tx, bh = t, blockhash
                if verbosity == 2:
                    coins = _tx_coins(node, blockhash, pos)
                break
        if tx is None:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "No such transaction found in the provided block. "
                                                       "Use gettransaction for wallet transactions.")
    else:
        genesis = chain.block(chain.active[0])
        if genesis is not None and genesis.txs[0].txid() == txid:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "The genesis block coinbase is not considered an ordinary "
                                                       "transaction and cannot be retrieved")
        entry = node.mempool.entries.get(txid)
        if entry is not None:
            tx, coins = entry.tx, entry.coins
        else:
            found = chain.find_tx(txid)
            if found is None:
                raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, NO_TX)
            tx, bh, pos = found
            if verbosity == 2:
                coins = _tx_coins(node, bh, pos)
    raw = tx.serialize()
    if verbosity == 0:
        return raw.hex()
    out = tx_json(tx, coins, verbosity)
    out["hex"] = raw.hex()
    if bh is not None:
        info = chain.info(bh)
        assert info is not None
        active = chain.is_active(bh)
        if blockhash is not None:
            out["in_active_chain"] = active
        out["blockhash"] = bh[::-1].hex()
        out["confirmations"] = chain.height - info.height + 1 if active else 0
        out["time"] = out["blocktime"] = info.header.time
    return out


def _tx_coins(node: Node, bh: bytes, pos: int) -> list[Coin] | None:
    """Coins spent by the transaction at `pos` of an active block, from undo data."""
    block = node.chain.block(bh)
    coins = node.chain.spent_coins(bh)
    if block is None or coins is None or pos == 0:
        return None
    start = sum(len(t.inputs) for t in block.txs[1:pos])
    return coins[start:start + len(block.txs[pos].inputs)]


@rpc("rawtransactions", Param("hexstring", "str"), Param("iswitness", "bool", None))
def decoderawtransaction(node: Node, hexstring: str, iswitness: bool | None) -> dict[str, Any]:
    """Decode a raw transaction."""
    tx, _ = decode_tx(hexstring)
    return tx_json(tx)


@rpc("rawtransactions", Param("hexstring", "str"))
def decodescript(node: Node, hexstring: str) -> dict[str, Any]:
    """Decode a script: asm, type, address, and its P2SH wrapping."""
    try:
        script = bytes.fromhex(hexstring)
    except ValueError:
        raise RPCError(RPC_DESERIALIZATION_ERROR, "argument must be hexadecimal string") from None
    out = script_pubkey_json(script)
    out.pop("hex", None)
    if solver(script) not in ("scripthash", "witness_v0_keyhash", "witness_v0_scripthash", "witness_v1_taproot",
                              "witness_unknown", "anchor"):
        out["p2sh"] = script_to_address(p2sh_script(hash160(script)), NET)
    return out


@rpc("rawtransactions", Param("hexstring", "str"), Param("maxfeerate", "amount", DEFAULT_MAX_FEERATE),
     Param("maxburnamount", "amount", 0))
def sendrawtransaction(node: Node, hexstring: str, maxfeerate: int, maxburnamount: int) -> str:
    """Submit to the mempool (and ZMQ); rejections use codes -25, -26 and -27 as bitcoind."""
    return node.send_raw(hexstring, maxfeerate, maxburnamount)


@rpc("rawtransactions", Param("rawtxs", "arr"), Param("maxfeerate", "amount", DEFAULT_MAX_FEERATE))
def testmempoolaccept(node: Node, rawtxs: list[Any], maxfeerate: int) -> list[dict[str, Any]]:
    """Would these transactions (a package, parents first) enter the mempool?"""
    if not 1 <= len(rawtxs) <= 25:
        raise RPCError(RPC_INVALID_PARAMETER, "Array must contain between 1 and 25 transactions.")
    return node.test_accept(rawtxs, maxfeerate)


@rpc("rawtransactions", Param("inputs", "arr"), Param("outputs", "any"), Param("locktime", "int", 0),
     Param("replaceable", "bool", False))
def createrawtransaction(node: Node, inputs: list[Any], outputs: Any, locktime: int, replaceable: bool) -> str:
    """An unsigned transaction from [{"txid","vout","sequence"}] and [{address: amount} | {"data": hex}]."""
    tx = Tx(version=2, locktime=locktime)
    for i in inputs:
        if not isinstance(i, dict):
            raise RPCError(RPC_INVALID_PARAMETER, "Invalid parameter, expected object")
        vout = i.get("vout")
        if not isinstance(vout, int) or isinstance(vout, bool) or vout < 0:
            raise RPCError(RPC_INVALID_PARAMETER, "Invalid parameter, missing vout key")
        seq = 0xFFFFFFFD if replaceable else (0xFFFFFFFE if locktime else 0xFFFFFFFF)
        seq = i.get("sequence", seq)
        tx.inputs.append(TxIn(OutPoint(parse_hash(i.get("txid"), "txid"), vout), b"", int(seq)))
    pairs: list[tuple[str, Any]] = []
    for o in (outputs if isinstance(outputs, list) else [outputs]):
        if not isinstance(o, dict):
            raise RPCError(RPC_INVALID_PARAMETER, "Invalid parameter, key-value pair must contain exactly one key")
        pairs.extend(o.items())
    for key, value in pairs:
        if key == "data":
            data = bytes.fromhex(value)
            tx.outputs.append(TxOut(0, b"\x6a" + (bytes([len(data)]) if len(data) < 76 else b"\x4c" +
                                                  bytes([len(data)])) + data))
        else:
            tx.outputs.append(TxOut(parse_amount(value), output_script(key)))
    return tx.to_hex()


# -- mempool ---------------------------------------------------------------------------------
def entry_json(node: Node, e: MempoolEntry) -> dict[str, Any]:
    mp = node.mempool
    anc = [mp.entries[t] for t in mp.ancestors(e)]
    desc = [mp.entries[t] for t in mp.descendants(e)]
    return {
        "vsize": e.vsize, "weight": e.weight, "time": e.time, "height": e.height,
        "descendantcount": len(desc) + 1, "descendantsize": e.vsize + sum(d.vsize for d in desc),
        "ancestorcount": len(anc) + 1, "ancestorsize": e.vsize + sum(a.vsize for a in anc),
        "wtxid": e.wtxid[::-1].hex(),
        "fees": {"base": Amount(e.fee), "modified": Amount(e.fee),
                 "ancestor": Amount(e.fee + sum(a.fee for a in anc)),
                 "descendant": Amount(e.fee + sum(d.fee for d in desc))},
        "depends": sorted(t[::-1].hex() for t in mp.parents(e)),
        "spentby": sorted(t[::-1].hex() for t in mp.children(e)),
        "bip125-replaceable": signals_rbf(e.tx) or any(signals_rbf(a.tx) for a in anc),
        "unbroadcast": False,
    }


def _entry_or_404(node: Node, txid: bytes) -> MempoolEntry:
    e = node.mempool.entries.get(txid)
    if e is None:
        raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
    return e


@rpc("blockchain", Param("verbose", "bool", False), Param("mempool_sequence", "bool", False))
def getrawmempool(node: Node, verbose: bool, mempool_sequence: bool) -> Any:
    """Mempool txids, or entries by txid with verbose=true."""
    mp = node.mempool
    if verbose and mempool_sequence:
        raise RPCError(RPC_INVALID_PARAMETER, "Verbose results cannot contain mempool sequence values.")
    if verbose:
        return {e.txid_hex: entry_json(node, e) for e in mp.entries.values()}
    txids = [e.txid_hex for e in mp.entries.values()]
    if mempool_sequence:
        return {"txids": txids, "mempool_sequence": mp.sequence}
    return txids


@rpc("blockchain", Param("txid", "hash"))
def getmempoolentry(node: Node, txid: bytes) -> dict[str, Any]:
    """One mempool entry."""
    return entry_json(node, _entry_or_404(node, txid))


@rpc("blockchain", Param("txid", "hash"), Param("verbose", "bool", False))
def getmempoolancestors(node: Node, txid: bytes, verbose: bool) -> Any:
    """In-mempool ancestors of a mempool transaction."""
    e = _entry_or_404(node, txid)
    anc = [node.mempool.entries[t] for t in node.mempool.ancestors(e)]
    return {a.txid_hex: entry_json(node, a) for a in anc} if verbose else [a.txid_hex for a in anc]


@rpc("blockchain", Param("txid", "hash"), Param("verbose", "bool", False))
def getmempooldescendants(node: Node, txid: bytes, verbose: bool) -> Any:
    """In-mempool descendants of a mempool transaction."""
    e = _entry_or_404(node, txid)
    desc = [node.mempool.entries[t] for t in node.mempool.descendants(e)]
    return {d.txid_hex: entry_json(node, d) for d in desc} if verbose else [d.txid_hex for d in desc]


@rpc("blockchain")
def getmempoolinfo(node: Node) -> dict[str, Any]:
    """Mempool size and fee floors."""
    mp = node.mempool
    minfee = Amount(node.cfg.minrelaytxfee)
    return {"loaded": True, "size": len(mp), "bytes": sum(e.vsize for e in mp.entries.values()),
            "usage": sum(len(e.raw) * 3 for e in mp.entries.values()),
            "total_fee": Amount(sum(e.fee for e in mp.entries.values())), "maxmempool": 300_000_000,
            "mempoolminfee": minfee, "minrelaytxfee": minfee, "incrementalrelayfee": Amount(1000),
            "unbroadcastcount": 0, "fullrbf": node.cfg.mempoolfullrbf}


@rpc("blockchain")
def savemempool(node: Node) -> dict[str, Any]:
    """Write the mempool to the index database (it is reloaded at start)."""
    node.store.save_mempool([(e.raw, e.time) for e in node.mempool.entries.values()])
    return {"filename": str(node.cfg.chaindir / "index.sqlite")}
