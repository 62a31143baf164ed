"""hsmd's logic: holds hsm_secret; answers signing and ECDH requests from
clients, each limited to its capabilities.  Runs with the node's network
directory as its working directory (where hsm_secret lives)."""
from __future__ import annotations

import asyncio
import os
import socket
from typing import Callable

from bitcoin.networks import network_by_chain_hash
from bitcoin.tx import Tx
from common.daemon import Daemon
from common.daemon_conn import DaemonConn, Msg
from common.msgconn import MsgConn
from wire.internal import internal_schema

from .channel_keys import ChannelKeys, ChannelSignError
from .libhsmd import HsmKeys
from .permissions import CHANNEL_REQUESTS, allowed, describe

HSM_SECRET = "hsm_secret"


def load_or_create_secret(path: str = HSM_SECRET) -> bytes:
    """32 random bytes, created once with mode 0400 (O_EXCL: never overwrite)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    except FileExistsError:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != 32:
            raise ValueError(f"{path} is {len(data)} bytes, expected 32 (encrypted secrets are not supported)")
        return data
    secret = os.urandom(32)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret


class Hsmd:
    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.status = d.status
        self.schema = internal_schema("hsmd")
        self.keys: HsmKeys | None = None
        self.clients: dict[int, tuple[str, DaemonConn]] = {}
        self._next = 0
        # (peer id, dbid) -> keys and revocation state, shared by successive
        # clients of the same channel (a restarted channeld, then onchaind)
        self.channels: dict[tuple[bytes, int], ChannelKeys] = {}

    def channel(self, peer_id: bytes, dbid: int) -> ChannelKeys:
        assert self.keys is not None
        key = (peer_id, dbid)
        if key not in self.channels:
            self.channels[key] = ChannelKeys(self.keys.peer_seed, peer_id, dbid, self.keys.dev_channel_secrets)
        return self.channels[key]

    def handlers_for(self, label: str, caps: int, conn_ref: list, peer_id: bytes = b"", dbid: int = 0) -> dict:
        """One handler per request message of the schema; each checks the
        client's capabilities first."""
        impl = {
            "hsmd_init": self.handle_init,
            "hsmd_client_hsmfd": self.handle_client_hsmfd,
            "hsmd_ecdh_req": self.handle_ecdh,
            "hsmd_sign_message": self.handle_sign_message,
            "hsmd_sign_invoice": self.handle_sign_invoice,
            "hsmd_sign_withdrawal": self.handle_sign_withdrawal,
            "hsmd_sign_anchorspend": self.handle_sign_anchorspend,
            "hsmd_sign_gossip": self.handle_sign_gossip,
            "hsmd_derive_secret": self.handle_derive_secret,
            "hsmd_sign_bolt12": self.handle_sign_bolt12,
        }
        for name in CHANNEL_REQUESTS:
            impl[name] = self._channel_handler(name, peer_id, dbid)

        def guarded(name: str):
            def h(msg: Msg):
                conn: DaemonConn = conn_ref[0]
                if not allowed(name, caps):
                    self.status.unusual(f"refused {name} from client {label} (capabilities {describe(caps)})")
                    conn.close()
                    return None
                if self.keys is None and name != "hsmd_init":
                    self.status.broken(f"{name} from {label} before hsmd_init")
                    conn.close()
                    return None
                if name in CHANNEL_REQUESTS and not dbid:
                    self.status.unusual(f"refused {name} from client {label}: not a channel client")
                    conn.close()
                    return None
                return impl[name](conn, msg)
            return h
        return {name: guarded(name) for name in impl}

    # -- requests ---------------------------------------------------------------------
    def handle_init(self, conn: DaemonConn, msg: Msg) -> None:
        f = msg.fields
        try:
            secret = load_or_create_secret()
            net = network_by_chain_hash(f["chain_hash"])
            if net is None:
                raise ValueError(f"unknown chain {f['chain_hash'].hex()}")
            self.keys = HsmKeys(secret, f["dev_force_privkey"] or None, f["dev_force_bip32_seed"] or None,
                                f["dev_force_channel_secrets"] or None, net.name)
        except (OSError, ValueError) as e:
            conn.send("hsmd_init_fail", {"reason": str(e)})
            return
        self.status.debug(f"node id {self.keys.node_id.hex()}")
        conn.send("hsmd_init_reply", {"node_id": self.keys.node_id, "bip32_xpub": self.keys.wallet_xpub()})

    def handle_client_hsmfd(self, conn: DaemonConn, msg: Msg) -> None:
        f = msg.fields
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._next += 1
        num = self._next
        label = f["label"] or f"client#{num}"
        ref: list = []
        client = DaemonConn(MsgConn(ours), self.schema,
                            self.handlers_for(label, f["capabilities"], ref, f["id"], f["dbid"]),
                            on_error=lambda e, lb=label: self.status.unusual(f"client {lb}: {e}"))
        ref.append(client)
        client.start()
        self.clients[num] = (label, client)
        asyncio.ensure_future(self._reap(num, client))
        self.status.debug(f"new client {label} (capabilities {describe(f['capabilities'])})")
        conn.send("hsmd_client_hsmfd_reply", {}, fds=[theirs.fileno()])
        theirs.close()

    async def _reap(self, num: int, client: DaemonConn) -> None:
        await client.wait_closed()
        self.clients.pop(num, None)

    def handle_ecdh(self, conn: DaemonConn, msg: Msg) -> None:
        assert self.keys is not None
        try:
            ss = self.keys.ecdh(msg["point"])
        except ValueError:
            conn.send("hsmd_ecdh_fail", {})
            return
        conn.send("hsmd_ecdh_resp", {"ss": ss})

    def handle_derive_secret(self, conn: DaemonConn, msg: Msg) -> None:
        assert self.keys is not None
        conn.send("hsmd_derive_secret_reply", {"secret": self.keys.derive_secret(msg["info"])})

    def handle_sign_bolt12(self, conn: DaemonConn, msg: Msg) -> None:
        assert self.keys is not None
        f = msg.fields
        try:
            sig, pub = self.keys.sign_bolt12(f["messagename"], f["fieldname"], f["tlv"], f["publictweak"],
                                             f["path_key"])
        except ValueError as e:
            self.status.unusual(f"refusing to sign bolt12: {e}")
            conn.send("hsmd_sign_bolt12_fail", {"reason": str(e)})
            return
        conn.send("hsmd_sign_bolt12_reply", {"sig": sig, "pubkey": pub})

    def _channel_handler(self, name: str, peer_id: bytes, dbid: int):
        """A request on the client's channel: its answer from CHANNEL_HANDLERS
        as `<name>_reply`, or its failure message when the channel rules
        refuse (no failure message in the schema: the client is cut off)."""
        answer = CHANNEL_HANDLERS[name]

        def h(conn: DaemonConn, msg: Msg) -> None:
            ck = self.channel(peer_id, dbid)
            try:
                reply = answer(self, ck, msg.fields)
            except (ChannelSignError, ValueError) as e:
                self.status.unusual(f"channel {peer_id.hex()}/{dbid}: refused {name}: {e}")
                fail = name + "_fail"
                if fail in self.schema.messages:
                    conn.send(fail, {"reason": str(e)})
                else:
                    conn.close()
                return
            conn.send(name + "_reply", reply)
        return h

    def _sign_channel_announcement(self, ck: ChannelKeys, f: dict) -> dict:
        assert self.keys is not None
        node_sig, btc_sig = self.keys.sign_channel_announcement(f["msg"], ck.funding, ck.funding_pubkey)
        return {"node_signature": node_sig, "bitcoin_signature": btc_sig}

    def handle_sign_gossip(self, conn: DaemonConn, msg: Msg) -> None:
        assert self.keys is not None
        try:
            conn.send("hsmd_sign_gossip_reply", {"sig": self.keys.sign_gossip(msg["msg"])})
        except ValueError as e:
            self.status.unusual(f"refusing to sign gossip: {e}")
            conn.send("hsmd_sign_gossip_fail", {"reason": str(e)})

    def handle_sign_withdrawal(self, conn: DaemonConn, msg: Msg) -> None:
        assert self.keys is not None
        try:
            tx = self.keys.sign_withdrawal(Tx.parse(msg["tx"]), msg["inputs"])
        except ValueError as e:
            self.status.unusual(f"refusing to sign withdrawal: {e}")
            conn.send("hsmd_sign_withdrawal_fail", {"reason": str(e)})
            return
        conn.send("hsmd_sign_withdrawal_reply", {"tx": tx.serialize()})

    def handle_sign_anchorspend(self, conn: DaemonConn, msg: Msg) -> None:
        assert self.keys is not None
        f = msg.fields
        try:
            ck = self.channel(f["peer_id"], f["channel_dbid"])
            tx = Tx.parse(f["tx"])
            inputs = f["inputs"]
            if not inputs or inputs[0]["keyidx"] != 0xFFFFFFFF:
                raise ValueError("input 0 must be the anchor (not a wallet coin)")
            if inputs[0]["script"] != ck.anchor_scriptpubkey():
                raise ValueError(f"input 0 is not the anchor of channel {f['channel_dbid']}")
            tx = self.keys.sign_withdrawal(tx, inputs)
            ck.sign_anchor(tx, inputs[0]["amount_sat"])
        except ValueError as e:
            self.status.unusual(f"refusing to sign anchor spend: {e}")
            conn.send("hsmd_sign_anchorspend_fail", {"reason": str(e)})
            return
        conn.send("hsmd_sign_anchorspend_reply", {"tx": tx.serialize()})

    def handle_sign_message(self, conn: DaemonConn, msg: Msg) -> None:
        assert self.keys is not None
        sig, recid = self.keys.sign_message(msg["msg"])
        conn.send("hsmd_sign_message_reply", {"sig": sig, "recid": recid})

    def handle_sign_invoice(self, conn: DaemonConn, msg: Msg) -> None:
        assert self.keys is not None
        try:
            sig = self.keys.sign_invoice(msg["hrp"], msg["u5bytes"])
        except ValueError as e:
            self.status.unusual(f"refusing to sign invoice: {e}")
            conn.send("hsmd_sign_invoice_fail", {"reason": str(e)})
            return
        conn.send("hsmd_sign_invoice_reply", {"sig": sig})


def _validate(ck: ChannelKeys, f: dict) -> dict:
    ck.validate(f["n"], f["tx"], f["funding_script"], f["funding_sat"], f["sig"])
    return {}


# Every channel request (permissions.CHANNEL_REQUESTS): (hsmd, keys, fields) -> reply fields
CHANNEL_HANDLERS: dict[str, Callable[[Hsmd, ChannelKeys, dict], dict]] = {
    "hsmd_get_channel_basepoints": lambda h, ck, f: ck.basepoints(),
    "hsmd_get_per_commitment_point": lambda h, ck, f: {"point": ck.point(f["n"])},
    "hsmd_validate_commitment_tx": lambda h, ck, f: _validate(ck, f),
    "hsmd_revoke_commitment_tx": lambda h, ck, f: {"secret": ck.revoke(f["n"])},
    "hsmd_sign_remote_commitment_tx": lambda h, ck, f: {
        "sig": ck.sign_remote_commitment(f["tx"], f["funding_script"], f["funding_sat"])},
    "hsmd_sign_remote_htlc_tx": lambda h, ck, f: {"sig": ck.sign_remote_htlc(
        f["tx"], f["witness_script"], f["amount_sat"], f["remote_per_commitment_point"], f["option_anchors"])},
    "hsmd_sign_remote_htlc_txs": lambda h, ck, f: {"sigs": [ck.sign_remote_htlc(
        x["tx"], x["witness_script"], x["amount_sat"], f["remote_per_commitment_point"], f["option_anchors"])
        for x in f["htlcs"]]},
    "hsmd_sign_local_commitment_tx": lambda h, ck, f: {"sig": ck.sign_local_commitment(
        f["n"], f["tx"], f["funding_script"], f["funding_sat"])},
    "hsmd_sign_local_htlc_tx": lambda h, ck, f: {"sig": ck.sign_local_htlc(
        f["n"], f["tx"], f["witness_script"], f["amount_sat"])},
    "hsmd_sign_mutual_close_tx": lambda h, ck, f: {"sig": ck.sign_mutual_close(
        f["tx"], f["funding_script"], f["funding_sat"])},
    "hsmd_sign_channel_announcement": lambda h, ck, f: h._sign_channel_announcement(ck, f),
    "hsmd_sign_onchain_tx": lambda h, ck, f: {"der_sig": ck.sign_onchain(
        f["kind"], f["tx"], f["input_index"], f["witness_script"], f["amount_sat"], f["point"], f["secret"])},
}
