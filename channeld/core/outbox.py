"""What we sent that the peer may have lost, for ``channel_reestablish``.

BOLT 2 lets a peer drop every update not covered by a ``commitment_signed``
it received, and either of our last ``commitment_signed`` /
``revoke_and_ack`` may be lost in a disconnection.  We keep, with a sequence
number recording the order we sent them in:

* our updates until the peer revokes a commitment that includes them;
* the last ``commitment_signed`` until the peer revokes the one before it;
* the last ``revoke_and_ack`` (only the last can be lost: the peer needs
  the point it carries to sign our next commitment);
* our ``shutdown`` (always retransmitted after a reconnection).

:meth:`Outbox.lost` selects what the peer's ``channel_reestablish`` says it
lacks and returns it in the original order: BOLT 2 requires
``revoke_and_ack`` and ``commitment_signed`` to keep their relative order,
and a retransmitted ``commitment_signed`` must follow the same updates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WireMsg = tuple[str, dict[str, Any]]


@dataclass
class SentMessage:
    seq: int
    name: str
    fields: dict[str, Any]
    #: updates: the peer's commitment number that first includes it;
    #: commitment_signed: the commitment number signed;
    #: revoke_and_ack: the commitment number revoked; shutdown: -1
    number: int

    @property
    def msg(self) -> WireMsg:
        return (self.name, self.fields)


class Outbox:
    def __init__(self) -> None:
        self.seq = 0
        self.updates: list[SentMessage] = []
        self.commit: SentMessage | None = None
        self.revoke: SentMessage | None = None
        self.shutdown: SentMessage | None = None

    def _new(self, msg: WireMsg, number: int) -> SentMessage:
        self.seq += 1
        return SentMessage(self.seq, msg[0], msg[1], number)

    def record_update(self, msg: WireMsg, remote_number: int) -> None:
        self.updates.append(self._new(msg, remote_number))

    def record_commit(self, msg: WireMsg, number: int) -> None:
        self.commit = self._new(msg, number)

    def record_revoke(self, msg: WireMsg, revoked: int) -> None:
        self.revoke = self._new(msg, revoked)

    def record_shutdown(self, msg: WireMsg) -> None:
        self.shutdown = self._new(msg, -1)

    def peer_revoked(self, remote_oldest: int) -> None:
        """The peer's oldest unrevoked commitment is now ``remote_oldest``: it
        received every commitment_signed up to it and the updates they cover."""
        self.updates = [u for u in self.updates if u.number > remote_oldest]
        if self.commit is not None and self.commit.number <= remote_oldest:
            self.commit = None

    def lost(self, next_commitment_number: int, resend_commit: bool,
             resend_revoke: bool) -> list[WireMsg]:
        """Messages to retransmit, in the order first sent."""
        out = [u for u in self.updates if u.number >= next_commitment_number]
        if resend_commit:
            assert self.commit is not None
            out.append(self.commit)
        if resend_revoke:
            assert self.revoke is not None
            out.append(self.revoke)
        if self.shutdown is not None:
            out.append(self.shutdown)
        return [m.msg for m in sorted(out, key=lambda m: m.seq)]
