"""Harness for the onchaind core tests: a two-party channel built with
common/commitment.py (real keys, real signatures), a toy chain that accepts a
transaction only if Bitcoin Core's script interpreter (py-bitcoinkernel, all
consensus flags) validates every input and BIP68/BIP113-style timelocks hold
at the block height, and a driver feeding the core like the shell would.

Also holds the unit tests of classification and of the sweep builder.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import pbk
import pytest

from bitcoin.hashes import sha256
from bitcoin.keys import pubkey_of, sign_digest_der
from bitcoin.script import p2pkh_script_code, p2wpkh_script, p2wsh_script
from bitcoin.tx import SIGHASH_ALL, OutPoint, Tx, TxIn, TxOut
from common.commitment import (
    ChannelParty,
    ChannelSetup,
    CommitmentParams,
    HtlcInfo,
    Side,
    build_commitment_tx,
    set_commitment_witness,
    sign_commitment,
)
from common.htlc_tx import HtlcTx, build_htlc_txs
from common.keyderive import BasepointSecrets, derive_privkey
from common.scripts import funding_script
from common.shachain import ShachainStore
from onchaind.core import (
    Broadcast,
    LocalCommitmentInfo,
    LocalSigner,
    OnchainChannel,
    OnchainState,
    Output,
    RemoteCommitmentInfo,
    SpendPath,
    SweepInput,
    TxType,
    classify,
    dust_threshold,
    fee_for_weight,
)
from onchaind.core.sweep import build_sweep, expected_weight

FLAGS = pbk.ScriptVerificationFlags.ALL
CLOSE_HEIGHT = 501
FUNDING_SAT = 1_000_000
OUR_DELAY = 144      # imposed on us by the peer (our to_local, our HTLC tx outputs)
THEIR_DELAY = 30     # imposed by us on the peer
COMMIT_FEERATE = 2500
SWEEP_FEERATE = 1000


def _k(name: str, i: int) -> bytes:
    return sha256(f"{name}/{i}".encode())


def make_signer(name: str) -> LocalSigner:
    return LocalSigner(BasepointSecrets(_k(name, 1), _k(name, 2), _k(name, 3), _k(name, 4)),
                       _k(name, 5), _k(name, 6))


def preimage(tag: str) -> bytes:
    return sha256(b"preimage " + tag.encode())


def htlc(tag: str, offerer: Side, sat: int, cltv: int, hid: int) -> HtlcInfo:
    return HtlcInfo(offerer, sat * 1000, sha256(preimage(tag)), cltv, hid)


# --- the toy chain ----------------------------------------------------------------

@dataclass
class Coin:
    out: TxOut
    height: int


@dataclass
class Chain:
    utxos: dict[OutPoint, Coin] = field(default_factory=dict)
    mined: dict[bytes, int] = field(default_factory=dict)

    def add_coin(self, op: OutPoint, out: TxOut, height: int) -> None:
        self.utxos[op] = Coin(out, height)

    def check(self, tx: Tx, height: int) -> str | None:
        """Why ``tx`` could not be mined in a block at ``height`` (None: it can)."""
        coins = []
        for i in tx.inputs:
            c = self.utxos.get(i.prevout)
            if c is None or c.height > height:
                return f"missing input {i.prevout}"
            coins.append(c)
        if sum(c.out.value for c in coins) < sum(o.value for o in tx.outputs):
            return "outputs exceed inputs"
        if tx.locktime and any(i.sequence != 0xFFFFFFFF for i in tx.inputs):
            # timestamps (commitments: 1987) are long past
            if tx.locktime < 500_000_000 and tx.locktime >= height:
                return f"locktime {tx.locktime} not final at {height}"
        if tx.version >= 2:
            for i, c in zip(tx.inputs, coins):
                if i.sequence & (1 << 31) == 0:
                    assert i.sequence & (1 << 22) == 0
                    if c.height + (i.sequence & 0xFFFF) > height:
                        return f"BIP68: {i.prevout} needs {i.sequence & 0xFFFF} blocks"
        raw = tx.serialize()
        ktx = pbk.Transaction(raw)
        spent = [pbk.TransactionOutput(pbk.ScriptPubkey(c.out.script_pubkey), c.out.value)
                 for c in coins]
        pre = pbk.script.PrecomputedTransactionData(ktx, spent)
        for n, c in enumerate(coins):
            try:
                ok = pbk.ScriptPubkey(c.out.script_pubkey).verify(c.out.value, ktx, pre, n, FLAGS)
            except pbk.ScriptVerifyException as e:
                return f"input {n}: {e.status.name}"
            if not ok:
                return f"input {n}: script verification failed"
        return None

    def mine(self, tx: Tx, height: int) -> None:
        err = self.check(tx, height)
        assert err is None, err
        for i in tx.inputs:
            del self.utxos[i.prevout]
        txid = tx.txid()
        for n, o in enumerate(tx.outputs):
            self.utxos[OutPoint(txid, n)] = Coin(o, height)
        self.mined[txid] = height


# --- a channel between us (alice) and them (bob) ---------------------------------------

H_OURS_A = htlc("ours-a", Side.LOCAL, 3000, 600, 0)     # offered by us
H_OURS_B = htlc("ours-b", Side.LOCAL, 5000, 620, 1)
H_OURS_DUST = htlc("ours-dust", Side.LOCAL, 100, 640, 2)  # trimmed everywhere
H_THEIRS_A = htlc("theirs-a", Side.REMOTE, 4000, 610, 0)  # offered by them, we know the preimage
H_THEIRS_B = htlc("theirs-b", Side.REMOTE, 6000, 630, 1)  # offered by them, no preimage
H_NEXT = htlc("next", Side.LOCAL, 7000, 650, 3)           # only in their next commitment
HTLCS = (H_OURS_A, H_OURS_B, H_OURS_DUST, H_THEIRS_A, H_THEIRS_B)
H_OLD_OURS = htlc("old-ours", Side.LOCAL, 7000, 550, 10)  # in revoked commitment 3 only
H_OLD_THEIRS = htlc("old-theirs", Side.REMOTE, 8000, 560, 11)
REVOKED_HTLCS = (H_OLD_OURS, H_OLD_THEIRS)
PREIMAGES = {h.payment_hash: preimage(t) for h, t in
             [(H_OURS_A, "ours-a"), (H_OURS_B, "ours-b"), (H_OURS_DUST, "ours-dust"),
              (H_THEIRS_A, "theirs-a"), (H_THEIRS_B, "theirs-b"), (H_NEXT, "next"),
              (H_OLD_OURS, "old-ours"), (H_OLD_THEIRS, "old-theirs")]}


def _balances(htlcs, local_sat: int) -> tuple[int, int]:
    in_htlcs = sum(h.amount_msat for h in htlcs) // 1000
    return local_sat * 1000, (FUNDING_SAT - local_sat - in_htlcs) * 1000


class PartyPair:
    """Both parties' keys, and every commitment the scenarios need."""

    def __init__(self, anchors: bool, wallet_name: str = "wallet"):
        self.anchors = anchors
        self.us, self.them = make_signer("alice"), make_signer("bob")
        self.wallet_key = _k(wallet_name, 0)
        self.wallet_spk = p2wpkh_script(pubkey_of(self.wallet_key))
        fs = funding_script(self.us.funding_pubkey, self.them.funding_pubkey)
        self.funding_tx = Tx(inputs=[TxIn(OutPoint(b"\x11" * 32, 0))],
                             outputs=[TxOut(FUNDING_SAT, p2wsh_script(fs))])
        self.setup = ChannelSetup(
            OutPoint(self.funding_tx.txid(), 0), FUNDING_SAT, Side.LOCAL,
            local=ChannelParty(self.us.funding_pubkey, self.us.basepoints, 546, THEIR_DELAY),
            remote=ChannelParty(self.them.funding_pubkey, self.them.basepoints, 546, OUR_DELAY),
            option_anchors=anchors)
        self.chain = Chain()
        self.chain.add_coin(self.setup.funding_outpoint, self.funding_tx.outputs[0], 100)
        self.local_n, self.remote_n = 7, 6
        self.secrets = ShachainStore()
        for n in range(self.remote_n):
            self.secrets.insert_commitment_secret(n, self.them.per_commitment_secret(n))

    # -- commitments ----------------------------------------------------------------
    def commitment(self, holder: Side, n: int, htlcs, local_sat: int = 600_000):
        """(signed tx, params, outputs, balances) of ``holder``'s commitment ``n``."""
        signer = self.us if holder is Side.LOCAL else self.them
        params = self.setup.commitment_params(holder, n, signer.per_commitment_point(n),
                                              COMMIT_FEERATE)
        lm, rm = _balances(htlcs, local_sat)
        tx, outs = build_commitment_tx(params, lm, rm, htlcs)
        mine = sign_commitment(tx, params, signer.funding_privkey)
        other = self.them if holder is Side.LOCAL else self.us
        theirs = sign_commitment(tx, params, other.funding_privkey)
        set_commitment_witness(tx, params, mine, theirs)
        return tx, params, outs, (lm, rm)

    def htlc_txs(self, holder: Side, n: int, htlcs, local_sat: int = 600_000) -> list[HtlcTx]:
        tx, params, outs, _ = self.commitment(holder, n, htlcs, local_sat)
        return build_htlc_txs(params, tx, outs)

    def our_htlc_sigs(self) -> tuple[bytes, ...]:
        """What the peer sent in commitment_signed for our latest commitment."""
        point = self.us.per_commitment_point(self.local_n)
        key = derive_privkey(self.them.secrets.htlc, point)
        return tuple(h.sign_as_counterparty(key) for h in self.htlc_txs(Side.LOCAL, self.local_n, HTLCS))

    def onchain_channel(self, **kw) -> OnchainChannel:
        _, _, _, (lm, rm) = self.commitment(Side.LOCAL, self.local_n, HTLCS)
        next_htlcs = HTLCS + (H_NEXT,)
        _, _, _, (nlm, nrm) = self.commitment(Side.REMOTE, self.remote_n + 1, next_htlcs)
        ch = OnchainChannel(
            setup=self.setup,
            local=LocalCommitmentInfo(self.local_n, self.us.per_commitment_point(self.local_n),
                                      COMMIT_FEERATE, lm, rm, HTLCS, self.our_htlc_sigs()),
            remote=RemoteCommitmentInfo(self.remote_n, self.them.per_commitment_point(self.remote_n),
                                        COMMIT_FEERATE, lm, rm, HTLCS),
            remote_next=RemoteCommitmentInfo(self.remote_n + 1,
                                             self.them.per_commitment_point(self.remote_n + 1),
                                             COMMIT_FEERATE, nlm, nrm, next_htlcs),
            revealed_secrets=self.secrets,
            sweep_scriptpubkey=self.wallet_spk,
            feerate_per_kw=SWEEP_FEERATE,
            block_height=CLOSE_HEIGHT - 1,
            past_htlcs=REVOKED_HTLCS,
            preimages={H_THEIRS_A.payment_hash: PREIMAGES[H_THEIRS_A.payment_hash]},
        )
        return replace(ch, **kw)

    # -- the peer's own spends (signed with the peer's keys) -----------------------------
    def their_htlc_tx(self, n: int, htlcs, target: HtlcInfo, local_sat: int = 600_000) -> Tx:
        """The peer's HTLC-success/timeout of ``target`` on its commitment ``n``."""
        point = self.them.per_commitment_point(n)
        for h in self.htlc_txs(Side.REMOTE, n, htlcs, local_sat):
            if h.output.htlc == target:
                ours = h.sign_as_counterparty(derive_privkey(self.us.secrets.htlc, point))
                theirs = h.sign_as_holder(derive_privkey(self.them.secrets.htlc, point))
                h.set_witness(ours, theirs, PREIMAGES[target.payment_hash] if h.is_success else None)
                return h.tx
        raise KeyError(target)

    def their_direct_spend(self, commit: Tx, index: int, ws: bytes, our_point: bytes,
                           amount: int, last: bytes, locktime: int = 0) -> Tx:
        """The peer spends an HTLC output of *our* commitment directly
        (``<sig> <preimage>`` or ``<sig> <>`` after the timeout)."""
        tx = Tx(inputs=[TxIn(OutPoint(commit.txid(), index), b"",
                             1 if self.anchors else 0xFFFFFFFD)],
                outputs=[TxOut(amount - 500, p2wpkh_script(self.them.funding_pubkey))],
                locktime=locktime)
        key = derive_privkey(self.them.secrets.htlc, our_point)
        sig = sign_digest_der(key, tx.sighash_segwit_v0(0, ws, amount, SIGHASH_ALL))
        tx.inputs[0].witness = [sig + b"\x01", last, ws]
        return tx

    def wallet_spend_input(self, value: int, height: int) -> tuple[TxIn, TxOut]:
        """A wallet coin to pay for a zero-fee HTLC tx (anchors)."""
        op = OutPoint(sha256(b"wallet coin %d" % value), 0)
        out = TxOut(value, self.wallet_spk)
        self.chain.add_coin(op, out, height)
        return TxIn(op, b"", 0xFFFFFFFD), out

    def sign_wallet_input(self, tx: Tx, index: int, value: int) -> None:
        pub = pubkey_of(self.wallet_key)
        digest = tx.sighash_segwit_v0(index, p2pkh_script_code(pub), value, SIGHASH_ALL)
        tx.inputs[index].witness = [sign_digest_der(self.wallet_key, digest) + b"\x01", pub]


# --- the driver: the shell's role ---------------------------------------------------------

class Driver:
    """Feeds the core, checks every Broadcast against the chain, mines them."""

    def __init__(self, tc: PartyPair, closing_tx: Tx, channel: OnchainChannel | None = None):
        self.tc = tc
        self.chain = tc.chain
        self.chain.mine(closing_tx, CLOSE_HEIGHT)
        self.channel = channel or tc.onchain_channel()
        self.state, outs = OnchainState.start(self.channel, closing_tx, CLOSE_HEIGHT, tc.us)
        self.outs: list[Output] = []
        self.pending: dict[OutPoint, Broadcast] = {}
        self.feed(outs)

    def feed(self, outs: list[Output]) -> list[Output]:
        for o in outs:
            if isinstance(o, Broadcast):
                self.check_broadcast(o)
                self.pending[o.outpoint] = o
        self.outs += outs
        return outs

    def check_broadcast(self, b: Broadcast) -> None:
        """Valid from ``not_before_height`` on, not one block earlier."""
        if b.needs_fee_inputs:
            return       # zero fee: checked once completed
        assert self.chain.check(b.tx, b.not_before_height) is None, \
            (b.reason, self.chain.check(b.tx, b.not_before_height))
        assert self.chain.check(b.tx, b.not_before_height - 1) is not None, b.reason
        assert b.tx.version == 2
        assert all(i.sequence < 0xFFFFFFFE for i in b.tx.inputs), "must signal RBF"

    def of(self, kind) -> list:
        return [o for o in self.outs if isinstance(o, kind)]

    def mine(self, tx: Tx, height: int) -> list[Output]:
        """Mine ``tx`` and report each of its inputs the core watches."""
        self.chain.mine(tx, height)
        outs = []
        for i in tx.inputs:
            if i.prevout in self.pending or any(getattr(o, "outpoint", None) == i.prevout
                                                 for o in self.outs):
                outs += self.feed(self.state.output_spent(i.prevout, tx, height))
                self.pending.pop(i.prevout, None)
        return outs

    def complete(self, b: Broadcast, height: int) -> Tx:
        """Anchors: add a wallet input paying the fee of a zero-fee HTLC tx."""
        txin, coin = self.tc.wallet_spend_input(20_000, height - 1)
        change = TxOut(coin.value - 2_000, self.tc.wallet_spk)
        tx = self.state.complete_htlc_tx(b.outpoint, [txin], [change])
        self.tc.sign_wallet_input(tx, 1, coin.value)
        return tx

    def run_to(self, height: int, mine: bool = True, skip=()) -> list[Output]:
        """Connect blocks up to ``height``; in each, mine every pending Broadcast
        that can be (what a shell with a responsive mempool would get)."""
        outs = []
        h = self.state.tip
        while h < height:
            h += 1
            if mine:
                for op, b in list(self.pending.items()):
                    if b.not_before_height <= h and op not in skip:
                        tx = self.complete(b, h) if b.needs_fee_inputs else b.tx
                        outs += self.mine(tx, h)
            outs += self.feed(self.state.block(h))
        return outs


def sweep_fee_ok(b: Broadcast, chain: Chain) -> None:
    """fee = ceil(expected weight * feerate / 1000), the real weight at most that."""
    spent = sum(chain.utxos[i.prevout].out.value if i.prevout in chain.utxos else 0
                for i in b.tx.inputs)
    fee = spent - sum(o.value for o in b.tx.outputs)
    assert fee == b.fee_sat
    assert b.feerate_per_kw is not None
    assert b.tx.weight() * b.feerate_per_kw <= fee * 1000


# --- unit tests: classification ------------------------------------------------------------

@pytest.mark.parametrize("anchors", [False, True])
def test_classify_every_kind(anchors):
    tc = PartyPair(anchors)
    ch = tc.onchain_channel()
    ours, *_ = tc.commitment(Side.LOCAL, tc.local_n, HTLCS)
    c = classify(ch, ours)
    assert (c.kind, c.which, c.commitment_number, c.exact) == (TxType.OUR_UNILATERAL, "latest", 7, True)
    assert sum(1 for m in c.outputs if m.htlc is not None) == 4     # one HTLC trimmed
    theirs, *_ = tc.commitment(Side.REMOTE, tc.remote_n, HTLCS)
    c = classify(ch, theirs)
    assert (c.kind, c.which, c.exact) == (TxType.THEIR_UNILATERAL, "current", True)
    nxt, *_ = tc.commitment(Side.REMOTE, tc.remote_n + 1, HTLCS + (H_NEXT,))
    c = classify(ch, nxt)
    assert (c.kind, c.which, c.commitment_number) == (TxType.THEIR_UNILATERAL, "next", 7)
    assert any(m.htlc == H_NEXT for m in c.outputs)
    revoked, *_ = tc.commitment(Side.REMOTE, 3, REVOKED_HTLCS, 500_000)
    c = classify(ch, revoked)
    assert (c.kind, c.commitment_number) == (TxType.THEIR_REVOKED_UNILATERAL, 3)
    assert c.per_commitment_secret == tc.them.per_commitment_secret(3)
    assert all(m.kind is not None for m in c.outputs)
    # their commitment 6 is current, not revoked: no secret for it
    assert tc.secrets.get_commitment_secret(tc.remote_n) is None
    # from the future (we lost state): only our to_remote is recognised
    future, *_ = tc.commitment(Side.REMOTE, 9, HTLCS)
    c = classify(ch, future)
    assert c.kind is TxType.UNKNOWN_UNILATERAL
    assert [m.kind is not None for m in c.outputs].count(True) == 1
    # mutual close and anything else
    close = Tx(inputs=[TxIn(tc.setup.funding_outpoint)],
               outputs=[TxOut(FUNDING_SAT - 1000, tc.wallet_spk)])
    assert classify(ch, close).kind is TxType.UNKNOWN_SPEND
    assert classify(replace(ch, mutual_close_txids=(close.txid(),)), close).kind is TxType.MUTUAL_CLOSE
    assert classify(replace(ch, shutdown_scriptpubkey=tc.wallet_spk), close).kind is TxType.MUTUAL_CLOSE
    with pytest.raises(ValueError):
        classify(ch, Tx(inputs=[TxIn(OutPoint(b"\x22" * 32, 0))], outputs=[]))


def test_classify_revoked_wins_over_stale_current():
    """The secret of 'current' 6 was revealed after the snapshot: it is revoked."""
    tc = PartyPair(False)
    tc.secrets.insert_commitment_secret(6, tc.them.per_commitment_secret(6))
    theirs, *_ = tc.commitment(Side.REMOTE, 6, HTLCS)
    c = classify(tc.onchain_channel(), theirs)
    assert (c.kind, c.commitment_number) == (TxType.THEIR_REVOKED_UNILATERAL, 6)


def test_classify_same_number_both_sides():
    """Our latest and their current share number 7: the scripts decide."""
    tc = PartyPair(False)
    tc.remote_n = 7
    for n in range(7):
        if tc.secrets.get_commitment_secret(n) is None:
            tc.secrets.insert_commitment_secret(n, tc.them.per_commitment_secret(n))
    ch = tc.onchain_channel(remote_next=None)
    ours, *_ = tc.commitment(Side.LOCAL, 7, HTLCS)
    theirs, *_ = tc.commitment(Side.REMOTE, 7, HTLCS)
    assert classify(ch, ours).kind is TxType.OUR_UNILATERAL
    assert classify(ch, theirs).kind is TxType.THEIR_UNILATERAL


# --- unit tests: sweeps, fees, dust -----------------------------------------------------------

def test_fee_arithmetic_and_dust():
    tc = PartyPair(False)
    ours, params, outs, _ = tc.commitment(Side.LOCAL, tc.local_n, HTLCS)
    idx = next(i for i, o in enumerate(outs) if o.kind.value == "to_local")
    inp = SweepInput(SpendPath.DELAYED_TO_US, OutPoint(ours.txid(), idx), outs[idx].amount_sat,
                     outs[idx].witness_script, OUR_DELAY,
                     per_commitment_point=tc.us.per_commitment_point(tc.local_n))
    w = expected_weight(inp, tc.wallet_spk)
    # to_local sweep, P2WPKH out: 4*(4+1+41+1+31+4) + 2 + (1 + 74 + 1 + 1 + 80)
    assert w == 4 * 82 + 2 + 1 + 74 + 1 + 1 + len(outs[idx].witness_script)
    tc.chain.mine(ours, CLOSE_HEIGHT)
    for feerate in (253, 1000, 1001, 7777):
        s = build_sweep(inp, tc.wallet_spk, feerate, tc.us)
        assert s.fee_sat == fee_for_weight(w, feerate) == -(-w * feerate // 1000)
        assert s.tx is not None and s.tx.outputs[0].value == inp.amount_sat - s.fee_sat
        assert w - 3 <= s.tx.weight() <= w
        assert tc.chain.check(s.tx, CLOSE_HEIGHT + OUR_DELAY) is None
        assert tc.chain.check(s.tx, CLOSE_HEIGHT + OUR_DELAY - 1).startswith("BIP68")
    # dust: value - fee under the P2WPKH dust threshold (294 sat)
    assert dust_threshold(tc.wallet_spk) == 294
    assert dust_threshold(p2wsh_script(b"x")) == 330
    small = replace(inp, amount_sat=fee_for_weight(w, 1000) + 293)
    assert build_sweep(small, tc.wallet_spk, 1000, tc.us).is_dust
    assert not build_sweep(replace(small, amount_sat=small.amount_sat + 1), tc.wallet_spk, 1000,
                           tc.us).is_dust


def test_params_are_holder_relative():
    """Sanity of the harness: the delays land where BOLT 3 puts them."""
    tc = PartyPair(False)
    p: CommitmentParams = tc.setup.commitment_params(Side.LOCAL, 1, tc.us.per_commitment_point(1), 0)
    assert p.to_self_delay == OUR_DELAY
    p = tc.setup.commitment_params(Side.REMOTE, 1, tc.them.per_commitment_point(1), 0)
    assert p.to_self_delay == THEIR_DELAY


def test_inexact_state_still_matched_by_script():
    """A balance off by a satoshi in the master's snapshot: the tx on chain is
    still recognised output by output (and flagged as not exactly rebuilt)."""
    tc = PartyPair(False)
    ch = tc.onchain_channel()
    ch = replace(ch, local=replace(ch.local, local_msat=ch.local.local_msat - 1000))
    ours, *_ = tc.commitment(Side.LOCAL, tc.local_n, HTLCS)
    c = classify(ch, ours)
    assert c.kind is TxType.OUR_UNILATERAL and not c.exact
    assert all(m.kind is not None for m in c.outputs)
    st, _ = OnchainState.start(ch, ours, CLOSE_HEIGHT, tc.us)
    assert "outputs matched by script" in st.status_lines()[0]
