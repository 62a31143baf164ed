"""Static channel configuration: what open_channel/accept_channel fixed forever.

Naming: every :class:`PartyConfig` field is *as announced by that party* on
the wire, and most constrain the **other** party:

* ``channel_reserve_sat``: the reserve this party requires the *other* to keep;
* ``htlc_minimum_msat``, ``max_htlc_value_in_flight_msat``,
  ``max_accepted_htlcs``: limits on HTLCs *offered to* this party;
* ``to_self_delay``: the CSV delay this party imposes on the *other*'s
  ``to_local`` (BOLT 3's naming is confusing here; see
  :class:`common.commitment.ChannelParty`);
* ``dust_limit_sat``: this party's own commitment transactions trim below it.

The helpers :meth:`PartyConfig.limits_on` make the direction explicit at use
sites, e.g. ``params.limits_on(sender)`` for the limits a sender must respect.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from bitcoin.keys import is_valid_pubkey
from bitcoin.tx import OutPoint
from common.commitment import ChannelParty, ChannelSetup, Side
from common.features import bits_from_features, features_from_bits
from common.keyderive import Basepoints
from common.scripts import funding_script

from .errors import PeerError

#: BOLT 2: max_accepted_htlcs above this must be refused (message size, penalty tx).
MAX_ACCEPTED_HTLCS_LIMIT = 483
#: BOLT 2/3: the lowest acceptable dust_limit_satoshis.
MIN_DUST_LIMIT_SAT = 354
#: Our policy for an "unreasonably large" to_self_delay (Core Lightning's
#: default --max-locktime-blocks).
DEFAULT_MAX_TO_SELF_DELAY = 2016


@dataclass(frozen=True)
class ChannelType:
    """The persistent channel features (BOLT 2 "Defined Channel Types").

    ``option_static_remotekey`` is mandatory in this implementation;
    ``anchors`` means option_anchors (zero-fee HTLC transactions).  The
    variations ``scid_alias`` (option_scid_alias: the real short channel id
    is never used for this channel, only aliases) and ``zeroconf``
    (option_zeroconf: usable before the funding confirms) change nothing
    in the commitments: the shells act on them."""

    anchors: bool = False
    static_remotekey: bool = True
    scid_alias: bool = False
    zeroconf: bool = False

    def __post_init__(self) -> None:
        if not self.static_remotekey:
            raise ValueError("only option_static_remotekey channels are supported")

    @property
    def feature_bits(self) -> tuple[int, ...]:
        return ((12,) + ((22,) if self.anchors else ()) + ((46,) if self.scid_alias else ())
                + ((50,) if self.zeroconf else ()))

    def to_wire(self) -> bytes:
        """The ``channel_type`` TLV value (a feature bitmap)."""
        return features_from_bits(self.feature_bits)

    @classmethod
    def from_bits(cls, bits: Iterable[int]) -> "ChannelType":
        b = set(bits)
        return cls(anchors=22 in b, scid_alias=46 in b, zeroconf=50 in b)

    @classmethod
    def from_wire(cls, bitmap: bytes) -> "ChannelType":
        """Parse a ``channel_type``; raise :class:`PeerError` for a type we do not run.

        option_scid_alias and option_zeroconf are allowed variations that do
        not change how the channel operates (the shell handles them)."""
        bits = bits_from_features(bitmap)
        if bits - {12, 22, 46, 50} or 12 not in bits:
            raise PeerError(f"unsupported channel_type bits {sorted(bits)}")
        return cls.from_bits(bits)


@dataclass(frozen=True)
class PartyConfig:
    """One party's announced parameters (open_channel or accept_channel)."""

    dust_limit_sat: int
    max_htlc_value_in_flight_msat: int
    channel_reserve_sat: int
    htlc_minimum_msat: int
    to_self_delay: int
    max_accepted_htlcs: int
    funding_pubkey: bytes
    basepoints: Basepoints
    #: ``upfront_shutdown_script`` TLV (b"" if absent or empty)
    upfront_shutdown_script: bytes = b""

    @classmethod
    def from_wire(cls, fields: Mapping[str, Any]) -> "PartyConfig":
        """Read the common fields of a decoded ``open_channel`` / ``accept_channel``."""
        tlvs = fields.get("tlvs") or {}
        upfront = tlvs.get("upfront_shutdown_script", {}).get("shutdown_scriptpubkey", b"")
        return cls(
            dust_limit_sat=fields["dust_limit_satoshis"],
            max_htlc_value_in_flight_msat=fields["max_htlc_value_in_flight_msat"],
            channel_reserve_sat=fields["channel_reserve_satoshis"],
            htlc_minimum_msat=fields["htlc_minimum_msat"],
            to_self_delay=fields["to_self_delay"],
            max_accepted_htlcs=fields["max_accepted_htlcs"],
            funding_pubkey=fields["funding_pubkey"],
            basepoints=Basepoints(
                revocation=fields["revocation_basepoint"],
                payment=fields["payment_basepoint"],
                delayed_payment=fields["delayed_payment_basepoint"],
                htlc=fields["htlc_basepoint"],
            ),
            upfront_shutdown_script=bytes(upfront),
        )

    def wire_fields(self) -> dict[str, Any]:
        """The same fields, named as in open_channel/accept_channel (for the shell)."""
        return {
            "dust_limit_satoshis": self.dust_limit_sat,
            "max_htlc_value_in_flight_msat": self.max_htlc_value_in_flight_msat,
            "channel_reserve_satoshis": self.channel_reserve_sat,
            "htlc_minimum_msat": self.htlc_minimum_msat,
            "to_self_delay": self.to_self_delay,
            "max_accepted_htlcs": self.max_accepted_htlcs,
            "funding_pubkey": self.funding_pubkey,
            "revocation_basepoint": self.basepoints.revocation,
            "payment_basepoint": self.basepoints.payment,
            "delayed_payment_basepoint": self.basepoints.delayed_payment,
            "htlc_basepoint": self.basepoints.htlc,
        }

    def as_channel_party(self) -> ChannelParty:
        return ChannelParty(funding_pubkey=self.funding_pubkey, basepoints=self.basepoints,
                            dust_limit_sat=self.dust_limit_sat, to_self_delay=self.to_self_delay)


@dataclass(frozen=True)
class ChannelParams:
    """Everything fixed at funding time, for both parties (channel-relative sides)."""

    funding_outpoint: OutPoint
    funding_sat: int
    opener: Side
    local: PartyConfig
    remote: PartyConfig
    channel_type: ChannelType = ChannelType()
    #: option_shutdown_anysegwit negotiated (allows witness v1+ shutdown scripts)
    anysegwit: bool = True

    def party(self, side: Side) -> PartyConfig:
        return self.local if side is Side.LOCAL else self.remote

    def limits_on(self, sender: Side) -> PartyConfig:
        """The config announced by the *receiver* of ``sender``'s HTLCs: its
        htlc_minimum / in-flight / count limits and the reserve ``sender`` keeps."""
        return self.party(sender.other)

    @property
    def option_anchors(self) -> bool:
        return self.channel_type.anchors

    @property
    def funding_msat(self) -> int:
        return self.funding_sat * 1000

    @property
    def channel_id(self) -> bytes:
        """BOLT 2 v1 channel_id: funding txid (wire byte order) XOR the output index
        in its last two bytes."""
        cid = bytearray(self.funding_outpoint.txid)
        cid[30] ^= (self.funding_outpoint.index >> 8) & 0xFF
        cid[31] ^= self.funding_outpoint.index & 0xFF
        return bytes(cid)

    @property
    def funding_witness_script(self) -> bytes:
        return funding_script(self.local.funding_pubkey, self.remote.funding_pubkey)

    def setup(self) -> ChannelSetup:
        """The :mod:`common.commitment` view of these parameters."""
        return ChannelSetup(
            funding_outpoint=self.funding_outpoint,
            funding_sat=self.funding_sat,
            opener=self.opener,
            local=self.local.as_channel_party(),
            remote=self.remote.as_channel_party(),
            option_anchors=self.option_anchors,
        )

    def validate(self, max_to_self_delay: int = DEFAULT_MAX_TO_SELF_DELAY) -> None:
        """BOLT 2's open_channel/accept_channel MUST-fail checks on static fields.

        Raises :class:`PeerError` naming the offending field (the remote's
        values are what a peer could get wrong; ours are checked the same way
        so a misconfiguration is caught before any money moves)."""
        if not 0 < self.funding_sat < 2**63 // 1000:
            raise PeerError(f"funding_satoshis {self.funding_sat} out of range")
        for side in Side:
            p, name = self.party(side), side.name.lower()
            if p.max_accepted_htlcs > MAX_ACCEPTED_HTLCS_LIMIT or p.max_accepted_htlcs < 1:
                raise PeerError(f"{name} max_accepted_htlcs {p.max_accepted_htlcs} not in 1..483")
            if p.dust_limit_sat < MIN_DUST_LIMIT_SAT:
                raise PeerError(f"{name} dust_limit_satoshis {p.dust_limit_sat} below 354")
            if p.to_self_delay > max_to_self_delay:
                raise PeerError(f"{name} to_self_delay {p.to_self_delay} unreasonably large "
                                f"(max {max_to_self_delay})")
            for other in Side:
                # Reserves below either dust limit could leave a party with
                # nothing on chain to lose (BOLT 2 open/accept requirements).
                if p.channel_reserve_sat < self.party(other).dust_limit_sat:
                    raise PeerError(f"{name} channel_reserve_satoshis {p.channel_reserve_sat} below "
                                    f"{other.name.lower()} dust_limit_satoshis "
                                    f"{self.party(other).dust_limit_sat}")
            if p.channel_reserve_sat > self.funding_sat:
                raise PeerError(f"{name} channel_reserve_satoshis exceeds the funding amount")
            keys = [p.funding_pubkey, p.basepoints.revocation, p.basepoints.payment,
                    p.basepoints.delayed_payment, p.basepoints.htlc]
            if not all(is_valid_pubkey(k) for k in keys):
                raise PeerError(f"{name} funding_pubkey or a basepoint is not a valid pubkey")
