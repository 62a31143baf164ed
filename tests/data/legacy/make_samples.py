"""Legacy (JSON) documents written by the node before the typed contracts
(wire/csv subtypes): channeld's core and summary, the onchain export and
onchaind's saved state.  Generated once, at commit 45b1f5b, by

    .venv/bin/python tests/data/legacy/make_samples.py

(it needs the code of that commit: the JSON writers are gone since), read by
tests/test_legacy_state.py, which checks that the DB upgrade converts each
to the declared form and that the daemons restore the same state from it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
# this tree's code, not the one the venv's editable install points to
sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", repr(f))]
sys.path.insert(0, str(HERE.parent.parent.parent))
sys.path.insert(0, str(HERE.parent.parent))

from bitcoin.hashes import sha256  # noqa: E402
from channeld.core import Channel  # noqa: E402
from channeld.core.pair import Pipe, make_pair  # noqa: E402
from channeld.core.signer import LocalSigner  # noqa: E402
from channeld.onchain_export import export_onchain  # noqa: E402
from channeld.summary import summary  # noqa: E402
from common.commitment import Side  # noqa: E402


def channel_samples() -> list[dict]:
    out = []
    a, b = make_pair(push_msat=3_000_000_000, seed=b"legacy")
    p = Pipe(a, b)
    for i in range(3):
        p.send("A", a.channel.add_htlc(1_000_000 * (i + 1), sha256(bytes([i]) * 32), 600 + i, bytes([i]) * 1366, 500))
    p.send("B", b.channel.add_htlc(2_500_000, sha256(b"\x09" * 32), 650, bytes([9]) * 1366, 500))
    p.deliver_all()
    for h in b.channel.htlcs():
        if h.direction == "in" and h.htlc_id == 1:
            p.send("B", b.channel.fulfill_htlc(h.htlc_id, bytes([1]) * 32))
        elif h.direction == "in" and h.htlc_id == 2:
            p.send("B", b.channel.fail_htlc(h.htlc_id, bytes(40)))
    # mid-flight: A has B's fulfil and fail but nothing is committed yet;
    # an update_fee and a new HTLC are in A's outbox
    p.deliver("A")
    p.deliver("A")
    p.send("A", a.channel.update_fee(3000))
    p.send("A", a.channel.add_htlc(777_000, sha256(b"\x07" * 32), 700, bytes([7]) * 1366, 500))
    p.send("A", a.channel.send_commitment())
    for name, node in (("A", a), ("B", b)):
        ch = node.channel
        # and as the old code restored it (disconnected: the peer's uncommitted updates dropped)
        restored = Channel.from_dict(json.loads(json.dumps(ch.to_dict())), LocalSigner.from_seed(b"legacy" + name.encode()))
        out.append({"seed": "legacy", "side": name, "core": ch.to_dict(),
                    "summary": summary(ch, 0x1234560000010001 if name == "A" else None, (11_000, 22_000)),
                    "export": export_onchain(ch),
                    "restored_summary": summary(restored, None, (11_000, 22_000)),
                    "restored_export": export_onchain(restored)})
    return out


def onchaind_samples() -> list[dict]:
    from test_onchain_core_chain import HTLCS, Driver, PartyPair
    out = []
    for anchors in (False, True):
        tc = PartyPair(anchors)
        commit, _, _, _ = tc.commitment(Side.LOCAL, tc.local_n, HTLCS)
        d = Driver(tc, commit)
        d.run_to(610)
        core = json.loads(d.state.to_json())
        state = {"version": 1, "core": core, "to_us": {"ab" * 32 + ":1": 2500} if anchors else {},
                 "core_all_resolved": False}
        out.append({"anchors": anchors, "state_json": json.dumps(state, sort_keys=True),
                    "status": d.state.status_lines()})
    return out


if __name__ == "__main__":
    import channeld
    assert Path(channeld.__file__).resolve().parent.parent == HERE.parent.parent.parent.resolve(), channeld.__file__
    (HERE / "channeld_v1.json").write_text(json.dumps(channel_samples(), indent=1, sort_keys=True) + "\n")
    (HERE / "onchaind_v1.json").write_text(json.dumps(onchaind_samples(), indent=1, sort_keys=True) + "\n")
