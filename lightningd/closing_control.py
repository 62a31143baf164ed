"""`close`: a mutual close negotiated by channeld (shutdown, closing_signed),
or our latest commitment broadcast when the peer does not cooperate within
`unilateraltimeout`."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bitcoin.address import AddressError, address_to_script
from bitcoin.tx import Tx

from . import channel as C
from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, LIGHTNINGD, RpcError
from .params import opt, req

if TYPE_CHECKING:
    from .channel import ChannelRecord
    from .lightningd import LightningD


def register(ld: "LightningD") -> None:
    cc = ld.channels

    @ld.registry.command("close", [req("id", P.string), opt("unilateraltimeout", P.u32, 172800),
                                   opt("destination", P.string), opt("fee_negotiation_step", P.string),
                                   opt("wrong_funding", P.string), opt("force_lease_closed", P.boolean, False),
                                   opt("feerange", P.array)], category="channels",
                         description="Close the channel with {id} (either peer ID, channel ID, or short channel "
                                     "ID). Force a unilateral close after {unilateraltimeout} seconds (default 48h).")
    async def close(ctx: RequestContext, id: str, unilateraltimeout: int, destination: str | None,
                    fee_negotiation_step: str | None, wrong_funding: str | None, force_lease_closed: bool,
                    feerange: list | None) -> dict:
        if wrong_funding is not None:
            raise RpcError(LIGHTNINGD, "wrong_funding is not supported")
        rec = cc.find(id)
        if rec is None:
            raise RpcError(INVALID_PARAMS, f"Short channel ID not active: '{id}'" if "x" in id else
                           "Peer has no active channel" if len(id) == 66 else f"Unknown channel {id}")
        if rec.state in C.ON_CHAIN or rec.state == C.CLOSED:
            return _result(rec)
        script: bytes | None = None
        upfront = rec.config["upfront_shutdown_script"]
        if destination is not None:
            try:
                script = address_to_script(destination, ld.network)
            except AddressError:
                raise RpcError(INVALID_PARAMS, f"destination: invalid address {destination}") from None
            if upfront and script != upfront:
                raise RpcError(INVALID_PARAMS, "Destination address does not match the channel's upfront "
                                               "close_to address")
        elif upfront:
            script = upfront   # BOLT 2: the shutdown must use the upfront script
        else:
            script = ld.wallet.scripts_for(ld.wallet.new_keyidx("p2tr"))["p2tr"]
        feerate = ld.feerates.perkw("mutual_close") or 0
        if feerange:
            try:
                feerate = ld.feerates.resolve(feerange[0])
            except Exception:
                raise RpcError(INVALID_PARAMS, "feerange: should be [min, max] feerates") from None
        cc.close_requests[rec.dbid] = {"script": script, "feerate": feerate}
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        cc.close_waiters.setdefault(rec.dbid, []).append(fut)
        cc.send_shutdown(rec)
        try:
            kind = await asyncio.wait_for(asyncio.shield(fut), unilateraltimeout or None)
        except asyncio.TimeoutError:
            kind = "unilateral"
            await unilateral(ld, rec, "close timed out")
        if kind == "unilateral" and rec.last_tx is None:
            raise RpcError(LIGHTNINGD, "Channel failed without a commitment to broadcast")
        return _result(rec)


async def unilateral(ld: "LightningD", rec: "ChannelRecord", reason: str) -> None:
    """Go on chain with our latest commitment (signed via a channeld + hsmd)."""
    tx = await ld.channels.sign_last_tx(rec)
    rec.last_tx = tx
    assert ld.db is not None
    with ld.db.transaction():
        ld.db.execute("UPDATE channels SET last_tx = ?, close_cause = ?, closer = 'local' WHERE dbid = ?",
                      (tx, reason, rec.dbid))
    rec.closer = "local"
    if rec.subd is not None:
        await rec.subd.stop()
    ld.channels.set_state(rec, C.AWAITING_UNILATERAL, "user", reason)
    if not await ld.anchors.broadcast_commitment(rec, tx, "our commitment"):
        ld.log.unusual(f"channel {rec.dbid}: broadcast of our commitment failed")


def _result(rec: "ChannelRecord") -> dict[str, Any]:
    if rec.closing_tx is not None:
        tx = Tx.parse(rec.closing_tx)
        return {"type": "mutual", "txs": [rec.closing_tx.hex()], "txids": [tx.txid_hex],
                "tx": rec.closing_tx.hex(), "txid": tx.txid_hex}
    if rec.last_tx is not None:
        tx = Tx.parse(rec.last_tx)
        return {"type": "unilateral", "txs": [rec.last_tx.hex()], "txids": [tx.txid_hex],
                "tx": rec.last_tx.hex(), "txid": tx.txid_hex}
    return {"type": "unopened"}
