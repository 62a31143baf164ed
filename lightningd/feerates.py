"""Feerates from the backend's estimates, in Core Lightning's vocabulary and
units (sat per 1000 weight, "perkw"; sat per 1000 vbytes, "perkb"), and the
`feerates` command."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.features import OPTION_ANCHORS, Context, has_feature

from . import params as P
from .jsonrpc import RequestContext
from .jsonrpc_errors import LIGHTNINGD, RpcError
from .params import BadType, req

if TYPE_CHECKING:
    from .chaintopology import ChainTopology
    from .lightningd import LightningD

FEERATE_FLOOR_PERKW = 253          # 1 sat/vB minus rounding, as everyone uses
REGTEST_FALLBACK_PERKW = 7500      # regtest often has no estimates at all
MAX_FEE_MULTIPLIER = 10            # max_acceptable: this times the highest estimate (Core Lightning's)
MAX_FEERATE = 0xFFFFFFFF           # a u32 feerate_per_kw: no upper bound
# name -> blocks of the estimate it follows
TARGETS = {"urgent": 6, "normal": 12, "slow": 100, "opening": 12, "mutual_close": 100,
           "unilateral_close": 6, "unilateral_anchor_close": 6, "delayed_to_us": 12,
           "htlc_resolution": 6, "penalty": 12}


def commitment_feerate_name(anchors: bool) -> str:
    """The estimate the commitment of a channel we opened follows: an
    anchors commitment is CPFP'd through our anchor when it goes on chain
    (anchors.py), so it pays only the slow rate; without anchors it must
    confirm on its own (unilateral_close)."""
    return "slow" if anchors else "unilateral_close"


def perkb_to_perkw(perkb: int) -> int:
    return max(FEERATE_FLOOR_PERKW, perkb // 4)


class Feerates:
    def __init__(self, topology: "ChainTopology", network: str) -> None:
        self.topo = topology
        self.network = network

    def _estimate_perkb(self, blocks: int) -> int | None:
        est = self.topo.smoothed or self.topo.fee_estimates
        if not est:
            return None
        # the closest estimate at or below the wanted target, else the slowest
        keys = sorted(est)
        below = [k for k in keys if k <= blocks]
        k = below[-1] if below else keys[0]
        return max(est[k], self.topo.feerate_floor)

    def perkw(self, name: str) -> int | None:
        if name == "minimum":
            return self.floor_perkw()
        perkb = self._estimate_perkb(TARGETS[name])
        if perkb is None:
            return REGTEST_FALLBACK_PERKW if self.network == "regtest" else None
        return perkb_to_perkw(perkb)

    def floor_perkw(self) -> int:
        return perkb_to_perkw(self.topo.feerate_floor)

    def _recent_perkw(self) -> list[int]:
        """Every estimate of the last few refreshes, in perkw."""
        return [perkb_to_perkw(r) for est in self.topo.fee_history for r in est.values()]

    def min_acceptable(self) -> int:
        """The lowest feerate we accept from a peer (open_channel, update_fee),
        Core Lightning's feerate_min: half the lowest estimate of the last
        refreshes, never below the floor (what relays); the floor itself
        (253 when mempools are empty) when there is no estimate."""
        recent = self._recent_perkw()
        return max(min(recent) // 2 if recent else 0, self.floor_perkw())

    def max_acceptable(self) -> int:
        """The highest, Core Lightning's feerate_max: ten times the highest
        estimate of the last refreshes; anything (0xFFFFFFFF) while there is
        no estimate yet."""
        recent = self._recent_perkw()
        return min(max(recent) * MAX_FEE_MULTIPLIER, MAX_FEERATE) if recent else MAX_FEERATE

    def resolve(self, spec: Any, default: str = "normal") -> int:
        """A feerate parameter (name, 'NNNperkw', 'NNNperkb', or a number in
        perkb) as perkw; RpcError if we have no estimate to use."""
        if spec is None:
            spec = default
        if isinstance(spec, int) and not isinstance(spec, bool):
            return spec  # already resolved to perkw by feerate_param
        if isinstance(spec, str) and spec in TARGETS or spec == "minimum":
            r = self.perkw(spec)
            if r is None:
                raise RpcError(LIGHTNINGD, "Cannot estimate fees (yet): use an explicit feerate")
            return r
        return parse_feerate(spec)


def parse_feerate(v: Any) -> int:
    """'1000perkb', '253perkw', 1000 (perkb) -> perkw; BadType if not a feerate."""
    if isinstance(v, bool):
        raise BadType("should be a feerate")
    text = str(v)
    unit = "perkb"
    for suffix in ("perkw", "perkb"):
        if text.endswith(suffix):
            unit, text = suffix, text[: -len(suffix)]
    # ASCII digits only (str.isdigit() takes superscripts, int() does not),
    # and a u32 as Core Lightning's: nothing larger is a fee rate
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > 0xFFFFFFFF:
        raise BadType("should be a feerate")
    n = int(text)
    perkw = n if unit == "perkw" else n // 4
    # 1000perkb (1 sat/vB) is 250perkw: raised to the relay floor, as Core Lightning does
    return max(perkw, FEERATE_FLOOR_PERKW)


def feerate_param(v: Any) -> Any:
    """Parameter checker: names stay names (resolved at use), numbers -> perkw."""
    if isinstance(v, str) and (v in TARGETS or v == "minimum"):
        return v
    return parse_feerate(v)


def register(ld: "LightningD") -> None:
    @ld.registry.command("feerates", [req("style", P.one_of("perkb", "perkw"))], category="bitcoin",
                         description="Return feerate estimates, either satoshi-per-kw ({style} perkw) or "
                                     "satoshi-per-kb ({style} perkb).")
    async def feerates(ctx: RequestContext, style: str) -> dict:
        f = ld.feerates
        conv = (lambda x: x) if style == "perkw" else (lambda x: min(x * 4, MAX_FEERATE))
        out: dict[str, Any] = {}
        body: dict[str, Any] = {}
        missing = False
        # (delayed_to_us and htlc_resolution are used on chain but, as in Core
        # Lightning since v24.02, not shown: its schema has no such fields)
        for name in ("opening", "mutual_close", "unilateral_close", "unilateral_anchor_close", "penalty"):
            r = f.perkw(name)
            if r is None:
                missing = True
                continue
            body[name] = conv(r)
        body["min_acceptable"] = conv(f.min_acceptable())
        body["max_acceptable"] = conv(f.max_acceptable())
        body["floor"] = conv(f.floor_perkw())
        body["estimates"] = [{"blockcount": b, "feerate": conv(perkb_to_perkw(r)),
                              "smoothed_feerate": conv(perkb_to_perkw(ld.topology.smoothed.get(b, r)))}
                             for b, r in sorted(ld.topology.fee_estimates.items())]
        out[style] = body
        if missing or not ld.topology.fee_estimates:
            out["warning_missing_feerates"] = "Some fee estimates unavailable: bitcoind startup?"
        if "opening" in body:
            perkw = f.perkw("opening") or 0
            out["onchain_fee_estimates"] = {
                "opening_channel_satoshis": perkw * 702 // 1000,
                "mutual_close_satoshis": (f.perkw("mutual_close") or 0) * 673 // 1000,
                # as Core Lightning: an anchors commitment (1112 weight, at its
                # rate) once we offer anchors, though it is negotiated per channel
                "unilateral_close_satoshis": (f.perkw(commitment_feerate_name(True)) or 0) * 1112 // 1000
                if has_feature(ld.our_features(Context.INIT), OPTION_ANCHORS)
                else (f.perkw("unilateral_close") or 0) * 598 // 1000,
                "unilateral_close_nonanchor_satoshis": (f.perkw("unilateral_close") or 0) * 598 // 1000,
                "htlc_timeout_satoshis": (f.perkw("htlc_resolution") or 0) * 663 // 1000,
                "htlc_success_satoshis": (f.perkw("htlc_resolution") or 0) * 703 // 1000,
            }
        return out
