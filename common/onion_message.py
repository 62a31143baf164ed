"""BOLT 4 onion messages: building one along a blinded path, peeling ours.

Every onion message travels a blinded path.  The sender reaches the path's
introduction point through an unblinded prefix route of its own, which it
blinds too: each prefix hop's ``encrypted_data_tlv`` names the next node,
the last one also gives the path's first key as ``next_path_key_override``
(concatenation of two blinded routes).  Sending straight to a node id is the
same with no path: the prefix ends at the destination, whose encrypted data
is empty.

Peeling (connectd's job, with hsmd doing the ECDHs): decrypt the onion with
``path_key``, parse ``onionmsg_tlv``; a non-final hop must hold only
``encrypted_recipient_data`` naming the next peer (and no ``path_id``); the
final hop gets the payload fields and, if present, its ``path_id`` (the
secret that proves the sender used a path we made).  Whatever breaks a rule
is an :class:`OnionMessageError`: the message is dropped, nothing is sent back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import wire
from common.blindedpath import (
    BlindedPath,
    BlindingError,
    EncryptedData,
    create_blinded_path,
    read_encrypted_data,
)
from common.onion import MIN_ONION_MESSAGE_PAYLOAD_LEN, ROUTING_INFO_SIZE, create_onion, onion_frame_size, peel_onion
from common.onion_crypto import EcdhFn
from common.onion_errors import OnionError

#: ``hop_payloads`` size of a large onion message (32834 bytes in all)
LARGE_ROUTING_INFO_SIZE = 32768
_ONIONMSG = "onionmsg_tlv"


class OnionMessageError(ValueError):
    """An onion message we must ignore."""


@dataclass
class OnionMsgTlv:
    """An ``onionmsg_tlv`` payload; the BOLT 12 payloads are kept as their raw TLV streams."""

    reply_path: BlindedPath | None = None
    encrypted_recipient_data: bytes | None = None
    invoice_request: bytes | None = None
    invoice: bytes | None = None
    invoice_error: bytes | None = None
    #: unknown odd records, type -> raw value
    unknown: dict[int, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        v: dict = dict(self.unknown)
        if self.reply_path is not None:
            v["reply_path"] = {"path": self.reply_path.to_wire()}
        if self.encrypted_recipient_data is not None:
            v["encrypted_recipient_data"] = {"encrypted_recipient_data": self.encrypted_recipient_data}
        for name, inner in (("invoice_request", "invreq"), ("invoice", "inv"), ("invoice_error", "inverr")):
            if getattr(self, name) is not None:
                v[name] = {inner: getattr(self, name)}
        return wire.bolt_schema().encode_tlv_stream(_ONIONMSG, v)

    @classmethod
    def decode(cls, raw: bytes) -> "OnionMsgTlv":
        try:
            v = wire.bolt_schema().decode_tlv_stream(_ONIONMSG, raw)
            t = cls(unknown={k: val for k, val in v.items() if isinstance(k, int)})
            if "reply_path" in v:
                t.reply_path = BlindedPath.from_wire(v["reply_path"]["path"])
        except (wire.DecodeError, KeyError) as e:
            raise OnionMessageError(f"bad onionmsg_tlv: {e}") from None
        if t.reply_path is not None and not t.reply_path.hops:
            raise OnionMessageError("reply_path without hops")
        if "encrypted_recipient_data" in v:
            t.encrypted_recipient_data = v["encrypted_recipient_data"]["encrypted_recipient_data"]
        for name, inner in (("invoice_request", "invreq"), ("invoice", "inv"), ("invoice_error", "inverr")):
            if name in v:
                setattr(t, name, v[name][inner])
        return t

    def record_count(self) -> int:
        return sum(x is not None for x in (self.reply_path, self.encrypted_recipient_data, self.invoice_request,
                                            self.invoice, self.invoice_error)) + len(self.unknown)


# --- sending ----------------------------------------------------------------------


class OutgoingOnionMessage(NamedTuple):
    """Send ``onion_message(path_key, packet)`` to ``first_node_id``."""

    first_node_id: bytes
    path_key: bytes
    packet: bytes


def onion_message_size(payloads: Sequence[bytes]) -> int:
    """1300 bytes of payloads when they fit (it looks like an HTLC onion), else 32768."""
    need = sum(onion_frame_size(p) for p in payloads)
    if need <= ROUTING_INFO_SIZE:
        return ROUTING_INFO_SIZE
    if need <= LARGE_ROUTING_INFO_SIZE:
        return LARGE_ROUTING_INFO_SIZE
    raise ValueError(f"onion message payloads need {need} bytes")


def build_onion_message(session_key: bytes, blinding_key: bytes, route: Sequence[bytes],
                        path: BlindedPath | None, final: OnionMsgTlv) -> OutgoingOnionMessage:
    """An onion message over ``route`` (node ids, first receiver first: it may
    be ourselves) then ``path``.  With ``path`` None, ``route[-1]`` is the
    destination.  ``session_key`` seeds the onion, ``blinding_key`` the
    blinding of ``route``; both fresh random 32 bytes.  ``final``'s
    ``encrypted_recipient_data`` is filled in here."""
    if path is None and not route:
        raise ValueError("build_onion_message: no destination")
    prefix: list[tuple[bytes, bytes]] = []
    for i, node in enumerate(route):
        if i + 1 < len(route):
            data = EncryptedData(next_node_id=route[i + 1])
        elif path is not None:
            if not path.intro_is_pubkey:
                raise ValueError("build_onion_message: resolve the introduction point's sciddir first")
            data = EncryptedData(next_node_id=path.first_node_id, next_path_key_override=path.first_path_key)
        else:
            data = EncryptedData()
        prefix.append((node, data.encode()))
    blinded = create_blinded_path(blinding_key, prefix).path if prefix else None
    hops = list(blinded.hops if blinded else ()) + list(path.hops if path else ())
    payloads = []
    for i, hop in enumerate(hops):
        tlv = final if i == len(hops) - 1 else OnionMsgTlv()
        tlv.encrypted_recipient_data = hop.encrypted_recipient_data
        payloads.append(tlv.encode())
    size = onion_message_size(payloads)
    packet = create_onion(session_key, [(h.blinded_node_id, p) for h, p in zip(hops, payloads)], b"",
                          routing_info_size=size).packet
    if blinded is not None:
        return OutgoingOnionMessage(route[0], blinded.first_path_key, packet)
    assert path is not None
    return OutgoingOnionMessage(path.first_node_id, path.first_path_key, packet)


# --- receiving --------------------------------------------------------------------


class Forward(NamedTuple):
    """Pass ``onion_message(path_key, packet)`` on (to the peer named by exactly one of the two)."""

    next_node_id: bytes | None
    short_channel_id: int | None
    path_key: bytes
    packet: bytes


class Final(NamedTuple):
    """The message is for us."""

    payload: OnionMsgTlv
    #: our decrypted ``encrypted_data_tlv`` (None if the sender put none)
    data: EncryptedData | None
    #: the path key we got it with: proof of which of our blinded paths it used
    path_key: bytes

    @property
    def path_secret(self) -> bytes | None:
        """A 32-byte ``path_id`` (what we put in paths we make), else None."""
        pid = self.data.path_id if self.data is not None else None
        return pid if pid is not None and len(pid) == 32 else None


def peel_onion_message(packet: bytes, path_key: bytes, ecdh: EcdhFn) -> Forward | Final:
    """Peel our layer of an ``onion_message_packet`` received with ``path_key``.

    ``ecdh(point) -> SHA256(k * point)`` with our node key.  Raises
    :class:`OnionMessageError` for anything we must ignore.
    """
    try:
        peeled = peel_onion(packet, b"", ecdh, path_key=path_key, min_payload_len=MIN_ONION_MESSAGE_PAYLOAD_LEN)
    except (OnionError, ValueError) as e:
        raise OnionMessageError(f"onion: {e}") from None
    tlv = OnionMsgTlv.decode(peeled.payload)
    ss = peeled.path_key_shared_secret
    assert ss is not None
    if peeled.is_final:
        data = None
        if tlv.encrypted_recipient_data is not None:
            try:
                data = read_encrypted_data(path_key, ss, tlv.encrypted_recipient_data).data
            except BlindingError as e:
                raise OnionMessageError(str(e)) from None
        return Final(tlv, data, path_key)
    if tlv.encrypted_recipient_data is None or tlv.record_count() != 1:
        raise OnionMessageError("a forwarding hop's payload holds more than encrypted_recipient_data")
    try:
        hop = read_encrypted_data(path_key, ss, tlv.encrypted_recipient_data)
    except BlindingError as e:
        raise OnionMessageError(str(e)) from None
    d = hop.data
    if d.path_id is not None:
        raise OnionMessageError("path_id in a forwarding hop")
    if d.allowed_features and any(d.allowed_features):
        raise OnionMessageError("allowed_features has an unknown bit")
    if d.next_node_id is not None:
        return Forward(d.next_node_id, None, hop.next_path_key, peeled.next_packet or b"")
    if d.short_channel_id is not None:
        return Forward(None, d.short_channel_id, hop.next_path_key, peeled.next_packet or b"")
    raise OnionMessageError("no next hop")


def encode_onion_message(path_key: bytes, packet: bytes) -> bytes:
    """The ``onion_message`` peer message (type 513)."""
    return wire.bolt_schema().encode("onion_message", {"path_key": path_key, "onion_message_packet": packet})
