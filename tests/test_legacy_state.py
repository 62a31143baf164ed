"""What the node stored before its inter-daemon contracts were declared in
wire/csv (JSON text, up to database version 8; the nodes here are of
version 6) still works: migration 9 converts it (wire/legacy_json.py), and
the daemons restore from the result exactly the state they had.  The documents and the nodes were written by the code
of that time (tests/data/legacy/make_*.py, at commit 45b1f5b)."""
from __future__ import annotations

import json
import shutil
import sqlite3
import tarfile
from pathlib import Path

import pytest
from pyln.client import RpcError

from bitcoin.keys import der_to_compact
from channeld.core import Channel
from channeld.core.signer import LocalSigner
from channeld.onchain_export import export_onchain
from channeld.summary import summary
from contrib.regtest.testing import RegtestChain
from lightningd.db import MIGRATIONS, Db
from node_factory import NodeFactory, wait_for
from onchaind.core import OnchainState
from test_onchain_core_chain import PartyPair
from wire import legacy_json
from wire.internal import internal_schema

DATA = Path(__file__).parent / "data" / "legacy"
CHANNELD = internal_schema("channeld")
ONCHAIND = internal_schema("onchaind")


def _legacy_export(d: dict) -> dict:
    """The old export document, in the declared onchain_channel form."""
    def commitment(c):
        return None if c is None else {
            "number": c["number"], "per_commitment_point": bytes.fromhex(c["per_commitment_point"]),
            "feerate_per_kw": c["feerate_per_kw"], "local_msat": c["local_msat"], "remote_msat": c["remote_msat"],
            "htlcs": [{"offerer": h["offerer"], "id": h["id"], "amount_msat": h["amount_msat"],
                       "payment_hash": bytes.fromhex(h["payment_hash"]), "cltv_expiry": h["cltv_expiry"]}
                      for h in c["htlcs"]]}

    def party(p):
        return {"funding_pubkey": bytes.fromhex(p["funding_pubkey"]),
                "basepoints": {k: bytes.fromhex(v) for k, v in p["basepoints"].items()},
                "dust_limit_sat": p["dust_limit_sat"], "to_self_delay": p["to_self_delay"]}
    return {
        "channel_id": bytes.fromhex(d["channel_id"]), "funding_txid": bytes.fromhex(d["funding"]["txid"])[::-1],
        "funding_outnum": d["funding"]["outnum"], "funding_sat": d["funding"]["amount_sat"], "opener": d["opener"],
        "anchors": d["anchors"], "local": party(d["local"]), "remote": party(d["remote"]),
        "local_commitment": commitment(d["local_commitment"]),
        "htlc_signatures": [der_to_compact(bytes.fromhex(s)) for s in d["local_commitment"]["htlc_signatures"]],
        "remote_commitment": commitment(d["remote_commitment"]),
        "remote_next_commitment": commitment(d["remote_next_commitment"]),
        "revealed_secrets": [{"commitment_number": e["commitment_number"], "secret": bytes.fromhex(e["secret"])}
                             for e in d["revealed_secrets"]],
        "shutdown_scriptpubkey": bytes.fromhex(d["shutdown_scriptpubkey"] or "")}


def _as_legacy_core(c: dict) -> dict:
    """The inverse of the conversion, written apart from it: a
    channeld_core value in the old JSON form."""
    def h(b):
        return None if b is None else b.hex()

    def at(a):
        return [a["local"], a["remote"]]

    def party(p):
        return dict(p, funding_pubkey=p["funding_pubkey"].hex(), basepoints={k: v.hex() for k, v in
                                                                              p["basepoints"].items()},
                    upfront_shutdown_script=p["upfront_shutdown_script"].hex())

    def sent(m):
        return None if m is None else {"seq": m["seq"], "number": m["number"], "msg": m["msg"].hex()}
    p, log, o, sc = c["params"], c["log"], c["outbox"], c["remote_secrets"]
    secrets = (0xFFFFFFFFFFFFFFFF if sc["min_index"] is None else sc["min_index"]).to_bytes(8, "big") + \
        bytes([len(sc["known"])]) + b"".join(bytes([e["slot"]]) + e["index"].to_bytes(8, "big") + e["secret"]
                                             for e in sc["known"])
    htlcs = []
    for x in log["htlcs"]:
        r = x["removal"]
        htlcs.append({"offerer": x["offerer"], "id": x["id"], "amount_msat": x["amount_msat"],
                      "payment_hash": x["payment_hash"].hex(), "cltv_expiry": x["cltv_expiry"],
                      "onion": x["onion"].hex(), "blinding_point": h(x["blinding_point"]), "add_at": at(x["add_at"]),
                      "removal": None if r is None else {
                          "kind": r["kind"], "at": at(r["at"]), "preimage": h(r["preimage"]),
                          "reason": h(r["reason"] or None), "sha256_of_onion": h(r["sha256_of_onion"]),
                          "failure_code": r["failure_code"]},
                      **({"fail_immediate": True} if x["fail_immediate"] else {})})
    return {
        "version": 1,
        # (the scid_alias/zeroconf variations came later: the samples have neither)
        "params": {k: v for k, v in dict(p, funding_txid=p["funding_txid"][::-1].hex(), local=party(p["local"]),
                                         remote=party(p["remote"])).items()
                   if k not in ("scid_alias", "zeroconf") or v},
        "state": c["state"],
        "log": dict(log, htlcs=htlcs, fee_updates=[dict(f, at=at(f["at"])) for f in log["fee_updates"]]),
        "remote_points": {str(e["number"]): e["point"].hex() for e in c["remote_points"]},
        "remote_secrets": secrets.hex(), "local_sig": h(c["local_sig"]),
        "local_htlc_sigs": [x.hex() for x in c["local_htlc_sigs"]],
        "outbox": {"seq": o["seq"], "updates": [sent(u) for u in o["updates"]], "commit": sent(o["commit"]),
                   "revoke": sent(o["revoke"]), "shutdown": sent(o["shutdown"])},
        "channel_ready_sent": c["channel_ready_sent"], "channel_ready_received": c["channel_ready_received"],
        "local_shutdown_script": h(c["local_shutdown_script"] or None), "shutdown_sent": c["shutdown_sent"],
        "remote_shutdown_script": h(c["remote_shutdown_script"] or None)}


@pytest.mark.parametrize("sample", json.loads((DATA / "channeld_v1.json").read_text()),
                         ids=lambda s: f"side{s['side']}")
def test_old_channel_state_converts_to_the_same_channel(sample):
    """The conversion loses nothing (its value, written back in the old
    form, is the old document), and the channel it restores gives the
    summary and the onchaind export that the old code's restored channel
    gave."""
    summary_blob, core_blob, _ = legacy_json.upgrade_channel_row(
        json.dumps(sample["summary"]), json.dumps(sample["core"]), "{}")
    core = CHANNELD.decode_subtype("channeld_core", core_blob)
    assert _as_legacy_core(core) == sample["core"]
    assert core["log"]["htlcs"] and core["outbox"]["updates"]    # mid-flight: HTLCs, updates to resend
    summary_scid_dropped = CHANNELD.decode_subtype("channel_summary", summary_blob)
    assert summary_scid_dropped["htlcs"][0]["payment_hash"].hex() == sample["summary"]["htlcs"][0]["payment_hash"]
    ch = Channel.from_dict(core, LocalSigner.from_seed(sample["seed"].encode() + sample["side"].encode()))
    assert summary(ch, (11_000, 22_000)) == legacy_json.channel_summary(sample["restored_summary"])
    assert export_onchain(ch) == _legacy_export(sample["restored_export"])


@pytest.mark.parametrize("sample", json.loads((DATA / "onchaind_v1.json").read_text()),
                         ids=lambda s: "anchors" if s["anchors"] else "static_remotekey")
def test_old_onchaind_state_converts_to_the_same_resolution(sample):
    value = ONCHAIND.decode_subtype("onchaind_state", legacy_json.upgrade_onchaind_state(sample["state_json"]))
    st = OnchainState.from_value(value, PartyPair(sample["anchors"]).us)
    assert st.status_lines() == sample["status"]
    assert dict(st.to_value(), to_us=value["to_us"], core_all_resolved=False) == value
    assert [e["value"] for e in value["to_us"]] == ([2500] if sample["anchors"] else [])


def test_old_config_converts():
    """The master's old config documents (as fundchannel and an incoming
    open made them) become channeld_config values."""
    funder = {"our": {"dust_limit_sat": 546, "max_htlc_value_in_flight_msat": 9223372036854775000,
                      "htlc_minimum_msat": 1, "to_self_delay": 5, "max_accepted_htlcs": 483,
                      "reserve_percent": 1.0},
              "max_to_self_delay": 2016, "min_funding_sat": 10000, "feerate_min": 253, "feerate_max": 4294967295,
              "commit_time_ms": 10, "max_dust_htlc_exposure_msat": 50000000, "minimum_depth": 3,
              "opening_timeout": 120, "our_node_id": "02" + "11" * 32, "shutdown_script": "5120" + "22" * 32,
              "funding_sat": 1000000, "push_msat": 0, "feerate_per_kw": 3750, "announce": True,
              "temporary_channel_id": "33" * 32, "upfront_shutdown_script": "", "channel_type": [12, 22],
              "channel_announcement": "0100" + "44" * 400}
    fundee = {k: v for k, v in funder.items() if k not in ("funding_sat", "push_msat", "feerate_per_kw", "announce",
                                                            "temporary_channel_id", "channel_type",
                                                            "channel_announcement")}
    fundee.update(large_channels=False, channel_types=[[12], [12, 22]])
    for doc in (funder, fundee):
        c = CHANNELD.decode_subtype("channeld_config", CHANNELD.encode_subtype(
            "channeld_config", legacy_json.channeld_config(doc)))
        assert c["shutdown_script"] == bytes.fromhex(doc["shutdown_script"]) and c["scid"] == 0
    c = legacy_json.channeld_config(funder)
    assert c["funder"]["channel_type"] == {"bits": [12, 22]} and c["channel_announcement"][:2] == b"\x01\x00"
    assert legacy_json.channeld_config(fundee)["channel_types"] == [{"bits": [12]}, {"bits": [12, 22]}]


def test_migration_9_converts_a_version_6_database(tmp_path):
    """Migrations 7 to 9 bring a database of version 6 (one of the legacy
    nodes') up to date, 9 rewriting its JSON rows, and only them."""
    with tarfile.open(DATA / "nodes-v6.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    path = tmp_path / "lightning-1" / "regtest" / "lightningd.sqlite3"
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM db_version").fetchone() == (6,)
    old = conn.execute("SELECT dbid, summary FROM channels ORDER BY dbid").fetchall()
    conn.close()
    db = Db(str(path))
    assert db.one("SELECT version FROM db_version") == (len(MIGRATIONS),)
    for (dbid, old_summary), (summary_blob, core, config) in zip(old, db.query(
            "SELECT summary, core, config FROM channels ORDER BY dbid")):
        s = CHANNELD.decode_subtype("channel_summary", bytes.fromhex(summary_blob))     # (hex in TEXT columns)
        assert s["channel_id"].hex() == json.loads(old_summary)["channel_id"]
        CHANNELD.decode_subtype("channeld_core", bytes.fromhex(core))
        CHANNELD.decode_subtype("channeld_config", bytes.fromhex(config))
    (state,) = db.one("SELECT state FROM onchain_state")
    ONCHAIND.decode_subtype("onchaind_state", bytes.fromhex(state))
    db.close()


@pytest.fixture
def legacy_nodes(tmp_path):
    """The three nodes of tests/data/legacy/make_nodes.py on their regtest
    chain, started with today's code."""
    with tarfile.open(DATA / "nodes-v6.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    facts = json.loads((DATA / "nodes-v6.json").read_text())
    chain = RegtestChain(tmp_path / "bitcoind")
    chain.start()
    nf = NodeFactory(tmp_path, chain)
    try:
        yield nf, facts
    finally:
        problems = nf.teardown()
        chain.stop()
        shutil.rmtree(tmp_path / "bitcoind", ignore_errors=True)
        if problems:
            pytest.fail("node teardown: " + "; ".join(problems))


def test_nodes_of_a_version_6_database_restart_with_their_channels(legacy_nodes):
    """Nodes whose databases the old code wrote restart with their channels:
    the open one reestablishes and pays both ways; l1's onchaind resumes its
    saved resolution and sweeps when the delay is over; l3, which never saw
    the close, exports its stored channel to onchaind and resolves too."""
    nf, facts = legacy_nodes
    chain = nf.chain
    l1, l2, l3 = nf.get_nodes(3, opts={"watchtime-blocks": 5})
    assert [n.node_id for n in (l1, l2, l3)] == facts["ids"]

    def chan(a, b):
        return a.rpc.listpeerchannels(b.node_id)["channels"][0]
    c12 = chan(l1, l2)
    for k, v in facts["l1_l2"].items():
        assert c12[k] == v, k
    assert chan(l2, l1)["to_us_msat"] == facts["l2_l1"]["to_us_msat"]
    assert chan(l1, l3)["state"] == "ONCHAIN"
    # onchaind's stored status lines, once the master resumed it (after catching up with the chain)
    wait_for(lambda: chan(l1, l3)["status"] == facts["l1_l3"]["status"])

    l1.connect(l2)
    for src, dst, amount in ((l1, l2, 2_000_000), (l2, l1, 1_000_000)):
        inv = dst.rpc.invoice(amount, f"after-{amount}", "after the upgrade")
        route = [{"id": dst.node_id, "channel": facts["l1_l2"]["short_channel_id"], "amount_msat": amount,
                  "delay": 18}]

        def sent() -> bool:       # (refused while the channel is still reestablishing)
            try:
                src.rpc.sendpay(route, inv["payment_hash"], payment_secret=inv["payment_secret"])
                return True
            except RpcError as e:
                if "channel_reestablish" not in e.error["message"]:
                    raise
                return False
        wait_for(sent)
        assert src.rpc.waitsendpay(inv["payment_hash"], 60)["status"] == "complete"
    wait_for(lambda: chan(l1, l2)["to_us_msat"] == facts["l1_l2"]["to_us_msat"] - 1_000_000)

    # l1's to_local waits 3 more blocks (as when it stopped): then it is swept
    wait_for(lambda: any("onchaind" in p for p in l1.subdaemon_pids()))
    chain.mine(2)
    wait_for(lambda: any("waiting 1 more blocks" in s for s in chan(l1, l3)["status"]))
    chain.mine(1)
    wait_for(lambda: len(chain.rpc.getrawmempool()) >= 1)
    sweep = chain.rpc.getrawmempool()
    chain.mine(1)
    wait_for(lambda: any("resolved by OUR_DELAYED_RETURN_TO_WALLET" in s for s in chan(l1, l3)["status"]))
    assert not set(sweep) & set(chain.rpc.getrawmempool())
    # l3 learns the close from the chain, from its old stored channel
    wait_for(lambda: l3.rpc.getinfo()["blockheight"] == chain.rpc.getblockcount())
    wait_for(lambda: chan(l3, l1)["state"] == "ONCHAIN")
    wait_for(lambda: any("THEIR_UNILATERAL" in s for s in chan(l3, l1)["status"]))
