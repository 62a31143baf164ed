"""--dev-disconnect scripts, in Core Lightning's format: one line per event,
applied in order to the messages we send to peers:

    -WIRE_COMMITMENT_SIGNED     disconnect just before sending it
    +WIRE_REVOKE_AND_ACK        disconnect just after sending it
    @WIRE_UPDATE_FULFILL_HTLC   don't send it or anything after (blackhole)
    -WIRE_X*3                   ... at the third such message

Lines are consumed as they trigger; blank lines and `#` comments ignored."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Rule:
    action: str   # '-', '+', '@'
    name: str     # message name without the WIRE_ prefix, lowercase
    count: int    # trigger on the count-th match


class DevDisconnect:
    def __init__(self, text: str) -> None:
        self.rules: list[_Rule] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            action, rest = line[0], line[1:]
            if action not in "-+@":
                raise ValueError(f"dev-disconnect: bad line '{line}'")
            count = 1
            if "*" in rest:
                rest, c = rest.split("*", 1)
                count = int(c)
            name = rest.lower()
            if name.startswith("wire_"):
                name = name[5:]
            self.rules.append(_Rule(action, name, count))

    def check(self, msg_name: str) -> str | None:
        """The action for sending `msg_name` now, consuming the rule if it fires."""
        if not self.rules:
            return None
        r = self.rules[0]
        if r.name != msg_name:
            return None
        r.count -= 1
        if r.count > 0:
            return None
        self.rules.pop(0)
        return r.action
