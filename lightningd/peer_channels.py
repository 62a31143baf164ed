"""RPC commands about channels: listpeerchannels, listclosedchannels,
setchannel, dev-sign-last-tx; and the channels part of listfunds."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bitcoin.address import script_to_address

from . import channel as C
from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import INVALID_PARAMS, LIGHTNINGD, RpcError
from .params import opt, req

if TYPE_CHECKING:
    from .lightningd import LightningD


def register(ld: "LightningD") -> None:
    cc = ld.channels
    cmd = ld.registry.command

    @cmd("listpeerchannels", [opt("id", P.node_id), opt("short_channel_id", P.short_channel_id),
                              opt("channel_id", P.channel_id)],
         category="channels", description="Show channels with direct peers (or just peer {id})")
    async def listpeerchannels(ctx: RequestContext, id: bytes | None, short_channel_id: Any,
                               channel_id: bytes | None) -> dict:
        if sum(x is not None for x in (id, short_channel_id, channel_id)) > 1:
            raise RpcError(INVALID_PARAMS, "Must not specify more than one of short_channel_id, channel_id or id")
        out = []
        for rec in sorted(cc.channels.values(), key=lambda c: c.dbid):
            if rec.state == C.CLOSED:
                continue
            if id is not None and rec.peer_id != id:
                continue
            if short_channel_id is not None and not rec.names(str(short_channel_id)):
                continue      # (by its real short channel id or our alias, as Core Lightning)
            if channel_id is not None and rec.channel_id != channel_id:
                continue
            d = rec.to_json(ld.is_connected(rec.peer_id), ld.node_id)
            # the script our share goes to on a mutual close (upfront_shutdown_script)
            close_to = rec.summary["local_shutdown_script"] or rec.config["upfront_shutdown_script"]
            if close_to:
                d["close_to"] = close_to.hex()
                addr = script_to_address(close_to, ld.network)
                if addr is not None:
                    d["close_to_addr"] = addr
            d["reestablished"] = rec.reestablished and rec.subd is not None and rec.subd.running and \
                rec.state in C.ACTIVE
            out.append(d)
        for po in cc.pending.values():
            if short_channel_id is None and channel_id is None and (id is None or po.peer_id == id):
                out.append({"peer_id": po.peer_id.hex(), "peer_connected": ld.is_connected(po.peer_id),
                            "state": "OPENINGD", "opener": "local" if po.funding_sat else "remote",
                            "features": [], "status": [po.subd.billboard] if po.subd and po.subd.billboard else []})
        return {"channels": out}

    @cmd("listclosedchannels", [opt("id", P.node_id)], category="channels",
         description="Show historical (dead) channels")
    async def listclosedchannels(ctx: RequestContext, id: bytes | None) -> dict:
        out = []
        for rec in sorted(cc.channels.values(), key=lambda c: c.dbid):
            if rec.state != C.CLOSED or (id is not None and rec.peer_id != id):
                continue
            d = {"peer_id": rec.peer_id.hex(), "channel_id": rec.channel_id.hex(), "opener": rec.opener,
                 "private": not rec.announce, "total_local_commitments": rec.summary["local_commitment_number"],
                 "total_remote_commitments": rec.summary["remote_commitment_number"],
                 "total_htlcs_sent": 0, "funding_txid": rec.funding_txid_hex, "funding_outnum": rec.funding_outnum,
                 "leased": False, "funding_withheld": False, "total_msat": rec.funding_sat * 1000,
                 "final_to_us_msat": rec.summary["to_us_msat"], "min_to_us_msat": 0,
                 "max_to_us_msat": rec.funding_sat * 1000, "channel_type": rec.channel_type_json(),
                 "close_cause": rec.close_cause or ("user" if rec.closer == "local" else "remote")}
            if rec.scid is not None:
                d["short_channel_id"] = str(rec.scid)
            if rec.closer:
                d["closer"] = rec.closer
            if rec.spend_txid:
                d["last_commitment_txid"] = rec.spend_txid[::-1].hex()
            out.append(d)
        return {"closedchannels": out}

    @cmd("setchannel", [req("id", P.string), opt("feebase", P.msat_u32), opt("feeppm", P.u32),
                        opt("htlcmin", P.msat), opt("htlcmax", P.msat), opt("enforcedelay", P.u32, 600),
                        opt("ignorefeelimits", P.boolean)], category="channels",
         description="Sets fees and/or htlc_minimum_msat / htlc_maximum_msat for channel {id} (or 'all')")
    async def setchannel(ctx: RequestContext, id: str, feebase: int | None, feeppm: int | None,
                         htlcmin: int | None, htlcmax: int | None, enforcedelay: int,
                         ignorefeelimits: bool | None) -> dict:
        # Core Lightning: "Prevent obviously incorrect things!"
        if htlcmin is not None and htlcmax is not None and htlcmax < htlcmin:
            raise RpcError(LIGHTNINGD, "htlcmax cannot be less than htlcmin")
        if id == "all":
            targets = [c for c in cc.channels.values() if c.state in C.ACTIVE]
        elif len(id) == 66 and all(c in "0123456789abcdefABCDEF" for c in id):
            # a peer id: every active channel with that peer, as Core Lightning
            targets = [c for c in cc.channels.values() if c.peer_id.hex() == id.lower() and c.state in C.ACTIVE]
        else:
            targets = [c for c in [cc.find(id)] if c is not None]
        if not targets:
            raise RpcError(INVALID_PARAMS, f"Could not find any active channels of peer with that id: {id}")
        out = []
        assert ld.db is not None
        with ld.db.transaction():
            for rec in targets:
                warn_min = warn_max = False
                if enforcedelay:
                    rec.old_policy = (rec.fee_base_msat, rec.fee_ppm, rec.htlc_minimum_msat, rec.htlc_maximum_msat)
                    rec.old_policy_until = time.monotonic() + enforcedelay
                else:
                    rec.old_policy = None
                if feebase is not None:
                    rec.fee_base_msat = feebase
                if feeppm is not None:
                    rec.fee_ppm = feeppm
                if htlcmin is not None:
                    # we cannot send less than the peer accepts
                    their_min = rec.summary["their_htlc_minimum_msat"]
                    warn_min = htlcmin < their_min
                    rec.htlc_minimum_msat = max(htlcmin, their_min)
                if htlcmax is not None:
                    warn_max = htlcmax > rec.funding_sat * 1000
                    rec.htlc_maximum_msat = min(htlcmax, rec.funding_sat * 1000)
                if ignorefeelimits is not None:
                    rec.ignore_fee_limits = ignorefeelimits
                ld.db.execute("UPDATE channels SET fee_base_msat = ?, fee_ppm = ?, htlc_minimum_msat = ?, "
                              "htlc_maximum_msat = ?, ignore_fee_limits = ? WHERE dbid = ?",
                              (rec.fee_base_msat, rec.fee_ppm, rec.htlc_minimum_msat, rec.htlc_maximum_msat,
                               int(rec.ignore_fee_limits), rec.dbid))
                d = {"peer_id": rec.peer_id.hex(), "channel_id": rec.channel_id.hex(),
                     "fee_base_msat": rec.fee_base_msat, "fee_proportional_millionths": rec.fee_ppm,
                     "minimum_htlc_out_msat": rec.htlc_minimum_msat, "maximum_htlc_out_msat": rec.htlc_maximum_msat,
                     "ignore_fee_limits": rec.ignore_fee_limits}
                if warn_min:
                    d["warning_htlcmin_too_low"] = "Set minimum_htlc_out_msat to minimum allowed by peer"
                if warn_max:
                    d["warning_htlcmax_too_high"] = "Set maximum_htlc_out_msat to maximum possible in channel"
                if rec.scid is not None:
                    d["short_channel_id"] = str(rec.scid)
                out.append(d)
        for rec in targets:
            ld.gossipd.local_channel(rec)     # our channel_update with the new policy
        if ignorefeelimits is not None:
            cc.send_feerates(targets)         # the range its channeld accepts update_fee in
        return {"channels": out}

    @cmd("dev-sign-last-tx", [req("id", P.node_id)], category="developer", dev_only=True,
         description="Sign and show the last commitment transaction with peer {id}")
    async def dev_sign_last_tx(ctx: RequestContext, id: bytes) -> dict:
        live = [c for c in cc.by_peer(id) if c.state in C.ACTIVE]
        if not live:
            raise RpcError(LIGHTNINGD, "Could not find active channel")
        tx = await cc.sign_last_tx(live[0])
        return {"tx": tx.hex()}


def listfunds_channels(ld: "LightningD") -> list[dict]:
    out = []
    for rec in ld.channels.channels.values():
        if rec.state == C.CLOSED:
            continue
        d = {"peer_id": rec.peer_id.hex(), "connected": ld.is_connected(rec.peer_id), "state": rec.state,
             "channel_id": rec.channel_id.hex(), "our_amount_msat": rec.summary["to_us_msat"],
             "amount_msat": rec.funding_sat * 1000, "funding_txid": rec.funding_txid_hex,
             "funding_output": rec.funding_outnum}
        if rec.scid is not None:
            d["short_channel_id"] = str(rec.scid)
        out.append(d)
    return out
