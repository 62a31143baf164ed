"""BOLT 7 channel announcement from channeld's side: at 6 confirmations of
a public channel both peers exchange `announcement_signatures`; with both
sets the full `channel_announcement` goes to the master (then gossipd)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from bitcoin.hashes import hash256
from bitcoin.keys import verify_digest_compact
from wire import bolt_schema

from .core import PeerWarning

if TYPE_CHECKING:
    from .channeld import ChannelDaemon

ANNOUNCE_DEPTH = 6


class Announcer:
    def __init__(self, d: "ChannelDaemon", our_node_id: bytes, enabled: bool, done: bool) -> None:
        self.d = d
        self.our_node_id = our_node_id
        self.enabled = enabled
        self.done = done
        self.sent = False
        self.ours: tuple[bytes, bytes] | None = None
        self.theirs: tuple[bytes, bytes] | None = None

    def _unsigned(self) -> bytes:
        ch = self.d.ch
        assert ch is not None and self.d.scid is not None
        ours = (self.our_node_id, ch.params.local.funding_pubkey)
        theirs = (self.d.peer_id, ch.params.remote.funding_pubkey)
        (n1, b1), (n2, b2) = sorted([ours, theirs])
        zero = b"\x00" * 64
        return bolt_schema().encode("channel_announcement", {
            "node_signature_1": zero, "node_signature_2": zero, "bitcoin_signature_1": zero,
            "bitcoin_signature_2": zero, "features": b"", "chain_hash": self.d.chain_hash,
            "short_channel_id": self.d.scid.to_bytes(8, "big"), "node_id_1": n1, "node_id_2": n2,
            "bitcoin_key_1": b1, "bitcoin_key_2": b2})

    def ready(self) -> bool:
        from .core import ChannelState
        ch = self.d.ch
        return (self.enabled and not self.done and ch is not None and ch.state is ChannelState.NORMAL
                and self.d.scid is not None and self.d.funding_depth >= ANNOUNCE_DEPTH and ch.connected)

    async def maybe_send(self) -> None:
        """Send ours once the channel is deep enough (again after a reconnect)."""
        if not self.ready() or self.sent:
            return
        await self._send_ours()
        await self._maybe_complete()

    async def _send_ours(self) -> None:
        if self.ours is None:
            r = self.d.hsm.call("hsmd_sign_channel_announcement", {"msg": self._unsigned()})
            self.ours = (r["node_signature"], r["bitcoin_signature"])
        ch = self.d.ch
        assert ch is not None and self.d.scid is not None
        await self.d.send_peer("announcement_signatures", {
            "channel_id": ch.channel_id, "short_channel_id": self.d.scid.to_bytes(8, "big"),
            "node_signature": self.ours[0], "bitcoin_signature": self.ours[1]})
        self.sent = True

    async def recv(self, f: dict) -> None:
        """The peer's announcement_signatures (BOLT 7 recipient, as Core
        Lightning: never a reason to fail the channel).  A short_channel_id
        that is not our funding's (yet: a reorg moves it) gets a warning;
        bad signatures a warning and a disconnection; once the channel is
        announced, the peer lacks ours: upon reconnection "if it receives
        announcement_signatures for the funding transaction: MUST respond
        with its own" (once per connection)."""
        ch = self.d.ch
        assert ch is not None
        if not self.enabled:
            return
        if self.d.scid is None or f["short_channel_id"] != self.d.scid.to_bytes(8, "big"):
            await self.d.send_peer("warning", {"channel_id": ch.channel_id, "data":
                                               b"announcement_signatures for a short_channel_id that is not our "
                                               b"funding transaction's"})
            return
        digest = hash256(self._unsigned()[258:])
        if not verify_digest_compact(self.d.peer_id, f["node_signature"], digest):
            raise PeerWarning("announcement_signatures: bad node_signature")
        if not verify_digest_compact(ch.params.remote.funding_pubkey, f["bitcoin_signature"], digest):
            raise PeerWarning("announcement_signatures: bad bitcoin_signature")
        if self.done:
            if not self.sent:
                await self._send_ours()
            return
        self.theirs = (f["node_signature"], f["bitcoin_signature"])
        await self.maybe_send()
        await self._maybe_complete()

    async def _maybe_complete(self) -> None:
        if self.ours is None or self.theirs is None or self.done:
            return
        ch = self.d.ch
        assert ch is not None
        we_are_1 = self.our_node_id < self.d.peer_id
        (ns1, bs1), (ns2, bs2) = (self.ours, self.theirs) if we_are_1 else (self.theirs, self.ours)
        fields = bolt_schema().decode(self._unsigned()).fields
        fields.update(node_signature_1=ns1, node_signature_2=ns2, bitcoin_signature_1=bs1, bitcoin_signature_2=bs2)
        msg = bolt_schema().encode("channel_announcement", fields)
        self.done = True
        await self.d.persist(ch, announcement=msg)
