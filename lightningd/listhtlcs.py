"""listhtlcs: every HTLC of our channels that the master remembers (all
of them, resolved ones included, for as long as the channel is known), in
Core Lightning's form: its protocol state name, and `created_index` /
`updated_index` for paging (`index`, `start`, `limit`).

The master tracks what it decides about an HTLC (htlc_core.HtlcState), not
each step of the commitment dance: an HTLC still in the channel shows the
state channeld last reported (the channel summary), a resolved one its final
state, and one the summary does not show yet the state it has reached at
least (offered to the peer, or irrevocably committed by it)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import params as P
from .htlc_core import RESOLVED, HtlcState
from .jsonrpc import RequestContext
from .params import opt

if TYPE_CHECKING:
    from .channel import ChannelRecord
    from .lightningd import LightningD

# Core Lightning's htlc_state names: where an HTLC ends, and the state it has
# at least reached when the master knows it but the channel summary does not
FINAL = {"out": "RCVD_REMOVE_ACK_REVOCATION", "in": "SENT_REMOVE_ACK_REVOCATION"}
AT_LEAST = {"out": "SENT_ADD_HTLC", "in": "RCVD_ADD_ACK_REVOCATION"}


def register(ld: "LightningD") -> None:
    def channel_ref(v: Any) -> "ChannelRecord":
        """A 64-hex channel id or a short channel id (ours, or our alias)
        naming a channel we know (Core Lightning's param_channel)."""
        try:
            key = P.channel_id(v).hex()
        except P.BadType:
            try:
                key = str(P.short_channel_id(v))
            except P.BadType:
                raise P.BadType("must be channel id or short channel id") from None
        rec = ld.channels.find(key)
        if rec is None:
            raise P.BadType("unknown channel")
        return rec

    @ld.registry.command(
        "listhtlcs", [opt("id", channel_ref), opt("index", P.one_of("created", "updated")),
                      opt("start", P.u64), opt("limit", P.u32)],
        category="channels", description="List all known HTLCS (optionally, just for [id] (scid or channel id))")
    async def listhtlcs(ctx: RequestContext, id: "ChannelRecord | None", index: str | None, start: int | None,
                        limit: int | None) -> dict:
        order = "updated_index" if index == "updated" else "id"
        conds, args = ["htlc_id >= 0"], []          # (an HTLC being offered has no id in the channel yet)
        if id is not None:
            conds.append("channel_dbid = ?")
            args.append(id.dbid)
        if index is not None and start is not None:
            conds.append(f"{order} >= ?")
            args.append(start)
        rows = ld.db.query(f"SELECT id, updated_index, channel_dbid, htlc_id, cltv_expiry, direction, amount_msat, "
                           f"payment_hash, state FROM htlcs WHERE {' AND '.join(conds)} ORDER BY {order}, id",
                           tuple(args))
        out = []
        live: dict[int, dict[tuple[str, int], str]] = {}
        for created, updated, dbid, hid, expiry, direction, amount, phash, state in rows:
            rec = ld.channels.channels.get(dbid)
            scid = rec.scid_or_alias if rec is not None else None
            if scid is None:
                continue
            if dbid not in live:
                live[dbid] = {(h["direction"], h["id"]): h["state"] for h in rec.summary.get("htlcs", [])}
            j: dict[str, Any] = {"created_index": created}
            if updated:
                j["updated_index"] = updated
            j.update({"short_channel_id": str(scid), "id": hid, "expiry": expiry, "direction": direction,
                      "amount_msat": amount, "payment_hash": bytes(phash).hex(),
                      "state": live[dbid].get((direction, hid)) or
                      (FINAL[direction] if HtlcState(state) in RESOLVED else AT_LEAST[direction])})
            out.append(j)
            if index is not None and limit is not None and len(out) >= limit:
                break
        return {"htlcs": out}
