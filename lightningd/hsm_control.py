"""The master's side of hsmd: start it, init it, and hand out client sockets
with capabilities.  The master never reads hsm_secret; it learns the node id
from hsmd_init_reply."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from wire.internal import internal_schema

from .subd import Subd

if TYPE_CHECKING:
    from .lightningd import LightningD


class HsmError(Exception):
    pass


class HsmControl:
    # hsmd -> master messages that are not replies: none.
    HANDLERS: dict[str, str] = {}

    def __init__(self, ld: "LightningD") -> None:
        self.ld = ld
        self.subd: Subd | None = None
        self.node_id = b""
        self.bip32_xpub = ""

    async def start(self) -> bytes:
        self.subd = Subd("hsmd", internal_schema("hsmd"), {}, self.ld.log.child("hsmd"), on_exit=self._on_exit,
                         spawner=self.ld.zygote)
        self.subd.start()
        cfg = self.ld.cfg

        def dev_hex(name: str) -> bytes:
            # checked when the option was parsed (options.py, Core Lightning's messages)
            v = cfg.get(name)
            return bytes.fromhex(v) if v else b""
        secrets = cfg.get("dev-force-channel-secrets")
        try:
            reply = await self.subd.request("hsmd_init", {
                "chain_hash": self.ld.network.chain_hash,
                "dev_force_privkey": dev_hex("dev-force-privkey"),
                "dev_force_bip32_seed": dev_hex("dev-force-bip32-seed"),
                "dev_force_channel_secrets": secrets.encode() if secrets else b"",
            })
        except Exception as e:
            msg = getattr(e, "msg", None)
            reason = msg.fields.get("reason") if msg is not None else str(e)
            raise HsmError(f"hsmd failed to start: {reason}") from None
        self.node_id = reply["node_id"]
        self.bip32_xpub = reply["bip32_xpub"]
        return self.node_id

    async def client_fd(self, label: str, capabilities: int, peer_id: bytes | None = None, dbid: int = 0) -> int:
        """A new socket to hsmd for a subdaemon; the caller owns the fd."""
        assert self.subd is not None
        reply = await self.subd.request("hsmd_client_hsmfd", {
            "id": peer_id or self.node_id, "dbid": dbid, "capabilities": capabilities, "label": label})
        if len(reply.fds) != 1:
            for fd in reply.fds:
                os.close(fd)
            raise HsmError("hsmd_client_hsmfd_reply without exactly one fd")
        return reply.fds[0]

    async def sign_message(self, message: bytes) -> tuple[bytes, int]:
        assert self.subd is not None
        r = await self.subd.request("hsmd_sign_message", {"msg": message})
        return r["sig"], r["recid"]

    async def sign_invoice(self, hrp: str, words: Sequence[int]) -> bytes:
        """BOLT 11 signature of (hrp, data words) by the node key: 64-byte
        compact signature + recovery id (a `common.bolt11.SignFn` result).
        hsmd hashes what it is shown itself."""
        assert self.subd is not None
        r = await self.subd.request("hsmd_sign_invoice", {"hrp": hrp, "u5bytes": bytes(words)})
        return r["sig"]

    async def derive_secret(self, info: bytes) -> bytes:
        """hsmd's secret for ``info`` (Core Lightning's makesecret)."""
        assert self.subd is not None
        return (await self.subd.request("hsmd_derive_secret", {"info": info}))["secret"]

    async def ecdh(self, point: bytes) -> bytes:
        """SHA256(node_key * point): route blinding's path key secrets (raises
        RequestFailed for a point that is not one)."""
        assert self.subd is not None
        return (await self.subd.request("hsmd_ecdh_req", {"point": point}))["ss"]

    async def sign_bolt12(self, messagename: str, tlv: bytes, publictweak: bytes = b"",
                          path_key: bytes = b"") -> tuple[bytes, bytes]:
        """The BIP-340 ``signature`` of a BOLT 12 ``messagename`` stream (hsmd
        computes the Merkle root) by the node key, a transient payer key
        (``publictweak``) or our blinded key of a path (``path_key``); with the
        key it verifies with."""
        assert self.subd is not None
        r = await self.subd.request("hsmd_sign_bolt12", {
            "messagename": messagename, "fieldname": "signature", "tlv": tlv, "publictweak": publictweak,
            "path_key": path_key})
        return r["sig"], r["pubkey"]

    async def stop(self) -> None:
        if self.subd is not None:
            await self.subd.stop()

    def _on_exit(self, subd: Subd, rc: int) -> None:
        if not self.ld.stopping:
            # Without hsmd no key operation can happen: stop cleanly.
            self.ld.log.broken("hsmd died: shutting down")
            self.ld.request_shutdown(exit_code=1)


