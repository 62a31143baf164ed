"""lightningd_synced is Core Lightning's topology_synced(): false until the
node first caught up with a synced bitcoind, then true for good.  A block
mined a moment ago must not make fundchannel answer 304 ("Still syncing with
bitcoin network") or getinfo warn until the next poll."""
from lightningd.chaintopology import ChainTopology


def topology() -> ChainTopology:
    # no I/O is done by the property under test
    return ChainTopology(backend=None, db=None, log=None, network_name="regtest")  # type: ignore[arg-type]


def test_not_synced_before_catching_up_then_latched():
    t = topology()
    t._note_info({"blockcount": 110, "headercount": 110, "ibd": False})
    t.tip_height = 100
    assert not t.lightningd_synced          # still loading blocks from bitcoind
    t.tip_height = 110
    assert t.lightningd_synced
    # a new block at bitcoind, not processed yet: still synced
    t._note_info({"blockcount": 111, "headercount": 111, "ibd": False})
    assert t.lightningd_synced


def test_caught_up_with_a_bitcoind_still_in_ibd_is_not_synced():
    t = topology()
    t._note_info({"blockcount": 110, "headercount": 500, "ibd": True})
    t.tip_height = 110
    assert not t.lightningd_synced
    t._note_info({"blockcount": 500, "headercount": 500, "ibd": False})
    assert not t.lightningd_synced          # bitcoind synced, our tip not yet
    t.tip_height = 500
    assert t.lightningd_synced
