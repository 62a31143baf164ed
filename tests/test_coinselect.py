"""bitcoin/coinselect.py: exact fee arithmetic (Core Lightning's perkw and weights),
change decisions, branch-and-bound, "all", insufficient funds."""
import pytest

from bitcoin.bip32 import ExtendedPrivateKey
from bitcoin.coinselect import (
    LEGACY_DUST_LIMIT,
    P2TR_INPUT_WEIGHT,
    P2WPKH_INPUT_WEIGHT,
    WITNESS_DUST_LIMIT,
    InsufficientFunds,
    Selection,
    Target,
    Utxo,
    core_weight,
    dust_limit,
    output_weight,
    select_coins,
    tx_fee,
    tx_weight,
)
from bitcoin.keys import sign_digest_der
from bitcoin.script import p2pkh_script, p2pkh_script_code, p2wpkh_script
from bitcoin.taproot import sign_taproot_keypath, taproot_output_script
from bitcoin.tx import OutPoint, Tx, TxIn, TxOut

P2WPKH_SPK = bytes.fromhex("0014" + "11" * 20)
P2TR_SPK = bytes.fromhex("5120" + "22" * 32)


def wpkh(amount, ref=None):
    return Utxo.of_type(amount, "p2wpkh", ref)


def tr(amount, ref=None):
    return Utxo.of_type(amount, "p2tr", ref)


def check_balance(sel: Selection):
    """Inputs = outputs + change + fee, and the fee covers the weight at the asked feerate."""
    assert sel.input_total == sum(o.value for o in sel.outputs) + sel.change + sel.fee
    assert sel.weight == tx_weight([u.weight for u in sel.inputs],
                                   [len(o.script_pubkey) for o in sel.outputs]
                                   + ([sel.change_script_len] if sel.change else []))


def test_weight_constants_match_core_lightning():
    assert P2WPKH_INPUT_WEIGHT == (32 + 4 + 4) * 4 + 4 + 1 + (1 + 72) + (1 + 33) == 272
    assert P2TR_INPUT_WEIGHT == 164 + 1 + 1 + 64 == 230
    assert core_weight(1, 1) == (4 + 1 + 1 + 4) * 4 + 2 == 42
    assert core_weight(253, 1) == (4 + 3 + 1 + 4) * 4 + 2
    assert output_weight(22) == (8 + 1 + 22) * 4 == 124
    assert output_weight(34) == 172
    assert tx_fee(253, 438) == 110          # rounded down, as amount_tx_fee
    assert tx_fee(1000, 438) == 438
    assert dust_limit(P2WPKH_SPK) == dust_limit(P2TR_SPK) == dust_limit("p2tr") == WITNESS_DUST_LIMIT == 330
    assert dust_limit(p2pkh_script(bytes(20))) == LEGACY_DUST_LIMIT == 546


def test_exact_fee_with_change():
    sel = select_coins([wpkh(100_000, "a")], [Target(P2WPKH_SPK, 50_000)], 1000, "p2wpkh")
    # core(1 in, 2 out) 42 + input 272 + two P2WPKH outputs 124 each
    assert sel.weight == 42 + 272 + 124 + 124 == 562
    assert sel.fee == 562
    assert sel.change == 100_000 - 50_000 - 562 == 49_438
    assert sel.method == "largest-first" and sel.has_change
    assert [u.ref for u in sel.inputs] == ["a"]
    assert sel.outputs == (TxOut(50_000, P2WPKH_SPK),)
    check_balance(sel)
    # a P2TR change output weighs 48 more
    sel = select_coins([wpkh(100_000)], [TxOut(50_000, P2WPKH_SPK)], 1000, "p2tr")
    assert (sel.weight, sel.fee, sel.change) == (610, 610, 49_390)
    # at 253 perkw the fee rounds down
    sel = select_coins([tr(100_000)], [Target(P2TR_SPK, 10_000)], 253, "p2tr")
    assert sel.weight == 42 + 230 + 172 + 172 and sel.fee == 253 * 616 // 1000 == 155
    check_balance(sel)


def test_change_omitted_below_dust():
    target = [Target(P2WPKH_SPK, 50_000)]
    # one P2TR input: without change 42+230+124 = 396 WU, with a P2TR change 568 WU
    with_change = 50_000 + 568 + 330
    sel = select_coins([tr(with_change)], target, 1000, "p2tr")
    assert sel.change == 330 and sel.fee == 568 and sel.weight == 568
    sel = select_coins([tr(with_change - 1)], target, 1000, "p2tr")
    assert sel.change == 0 and not sel.has_change
    assert sel.weight == 396
    assert sel.fee == with_change - 1 - 50_000 == 897     # the would-be change goes to the fee
    assert sel.method == "largest-first"
    check_balance(sel)
    # P2WPKH change: 124 WU, so it becomes worth it sooner
    sel = select_coins([tr(50_000 + 520 + 330)], target, 1000, "p2wpkh")
    assert (sel.change, sel.fee) == (330, 520)


def test_branch_and_bound_finds_changeless_set():
    # two P2WPKH inputs: 42 + 2*272 + 124 = 710 WU -> 710 sat at 1000 perkw
    utxos = [wpkh(1_000_000, "big"), wpkh(30_000, "a"), wpkh(20_710, "b"), wpkh(7_000, "c")]
    sel = select_coins(utxos, [Target(P2WPKH_SPK, 50_000)], 1000, "p2wpkh")
    assert sel.method == "bnb"
    assert sorted(u.ref for u in sel.inputs) == ["a", "b"]
    assert sel.change == 0 and sel.fee == 710 and sel.weight == 710
    check_balance(sel)
    # largest-first would have taken the big coin and made change
    lf = select_coins(utxos, [Target(P2WPKH_SPK, 50_000)], 1000, "p2wpkh", strategy="largest-first")
    assert [u.ref for u in lf.inputs] == ["big"] and lf.has_change


def test_branch_and_bound_window_is_cost_of_change():
    # a single input within [target+fee, target+fee+cost of change]: no change, excess to fee
    target = [Target(P2WPKH_SPK, 50_000)]
    cost_of_change = (172 + 230) * 1000 // 1000       # P2TR change output + spending it later
    sel = select_coins([tr(50_000 + 396 + cost_of_change), tr(900_000)], target, 1000, "p2tr")
    assert sel.method == "bnb" and sel.fee == 396 + cost_of_change and sel.change == 0
    sel = select_coins([tr(50_000 + 396 + cost_of_change + 1), tr(900_000)], target, 1000, "p2tr")
    assert sel.method == "largest-first"   # just outside the window: no changeless solution


def test_all():
    utxos = [wpkh(100_000, 1), tr(50_000, 2), wpkh(200, 3)]   # the 200-sat coin costs 272 to spend
    sel = select_coins(utxos, [Target(P2TR_SPK, None)], 1000)
    assert sel.method == "all"
    assert sorted(u.ref for u in sel.inputs) == [1, 2]
    assert sel.weight == 42 + 272 + 230 + 172 == 716
    assert sel.fee == 716 and sel.change == 0
    assert sel.outputs == (TxOut(150_000 - 716, P2TR_SPK),)
    check_balance(sel)
    # "all" next to a fixed output
    sel = select_coins(utxos, [Target(P2WPKH_SPK, 30_000), Target(P2TR_SPK, None)], 1000)
    assert sel.weight == 42 + 272 + 230 + 124 + 172 == 840
    assert [o.value for o in sel.outputs] == [30_000, 150_000 - 30_000 - 840]
    check_balance(sel)
    # what is left is dust: refused
    with pytest.raises(InsufficientFunds) as e:
        select_coins([tr(700)], [Target(P2TR_SPK, None)], 1000)
    assert e.value.available == 700 and e.value.needed == 444 + 330
    with pytest.raises(InsufficientFunds):
        select_coins([wpkh(200)], [Target(P2TR_SPK, None)], 1000)


def test_insufficient_funds():
    with pytest.raises(InsufficientFunds) as e:
        select_coins([wpkh(6_000), tr(4_000)], [Target(P2WPKH_SPK, 20_000)], 1000)
    assert e.value.available == 10_000
    assert e.value.needed == 20_000 + 42 + 272 + 230 + 124
    assert "need 20668 sat, have 10000 sat" in str(e.value)
    # the amount is there but not the fee
    with pytest.raises(InsufficientFunds):
        select_coins([wpkh(50_300)], [Target(P2WPKH_SPK, 50_000)], 1000)
    select_coins([wpkh(50_438)], [Target(P2WPKH_SPK, 50_000)], 1000)   # exactly enough
    with pytest.raises(InsufficientFunds):
        select_coins([], [Target(P2WPKH_SPK, 1_000)], 253)


def test_uneconomical_coins_are_not_used():
    sel = select_coins([wpkh(250, "dust"), wpkh(100_000, "ok")], [Target(P2WPKH_SPK, 1_000)], 1000)
    assert [u.ref for u in sel.inputs] == ["ok"]
    with pytest.raises(InsufficientFunds):
        select_coins([wpkh(270)] * 10, [Target(P2WPKH_SPK, 400)], 1000)


def test_many_inputs_use_the_long_count():
    utxos = [tr(1_000, i) for i in range(300)]
    sel = select_coins(utxos, [Target(P2TR_SPK, 270_000)], 253, "p2tr")
    n = len(sel.inputs)
    assert n > 252
    assert sel.weight == core_weight(n, 1 + sel.has_change) + n * 230 + 172 * (1 + sel.has_change)
    assert core_weight(n, 2) - core_weight(1, 2) == 8
    check_balance(sel)
    assert sel.fee >= tx_fee(253, sel.weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="dust"):
        select_coins([wpkh(10_000)], [Target(P2WPKH_SPK, 329)], 253)
    with pytest.raises(ValueError, match="all"):
        select_coins([wpkh(10_000)], [Target(P2WPKH_SPK, None), Target(P2TR_SPK, None)], 253)
    with pytest.raises(ValueError):
        select_coins([wpkh(10_000)], [], 253)
    with pytest.raises(ValueError):
        select_coins([wpkh(10_000)], [Target(P2WPKH_SPK, 1000)], -1)
    with pytest.raises(ValueError):
        select_coins([wpkh(10_000)], [Target(P2WPKH_SPK, 1000)], 253, "p2pkh")
    with pytest.raises(ValueError):
        select_coins([wpkh(10_000)], [Target(P2WPKH_SPK, 1000)], 253, strategy="random")


def test_estimate_bounds_a_real_signed_transaction():
    """Build and sign what a selection describes: the estimate is an upper bound, exact for
    P2TR inputs and at most 1 WU per P2WPKH input above (72-byte signature assumed)."""
    root = ExtendedPrivateKey.from_seed(bytes(range(7, 39)))
    keys = [root.derive(f"m/84h/0h/0h/0/{i}") for i in range(3)] + [root.derive("m/86h/0h/0h/0/0")]
    spks = [p2wpkh_script(k.pubkey) for k in keys[:3]] + [taproot_output_script(keys[3].xonly)]
    utxos = [wpkh(40_000, 0), wpkh(30_000, 1), wpkh(25_000, 2), tr(60_000, 3)]
    sel = select_coins(utxos, [Target(P2WPKH_SPK, 150_000)], 2000, "p2tr")
    assert len(sel.inputs) == 4 and sel.has_change
    spent = [TxOut(u.amount, spks[u.ref]) for u in sel.inputs]
    tx = Tx(inputs=[TxIn(OutPoint(bytes([u.ref + 1]) * 32, 0)) for u in sel.inputs],
            outputs=list(sel.outputs) + [TxOut(sel.change, taproot_output_script(keys[3].xonly))])
    for i, u in enumerate(sel.inputs):
        k = keys[u.ref]
        if u.ref == 3:
            tx.inputs[i].witness = [sign_taproot_keypath(k.secret, tx, i, spent)]
        else:
            d = tx.sighash_segwit_v0(i, p2pkh_script_code(k.pubkey), u.amount)
            tx.inputs[i].witness = [sign_digest_der(k.secret, d) + b"\x01", k.pubkey]
    actual = tx.weight()
    assert actual <= sel.weight <= actual + 3
    assert sum(s.value for s in spent) - sum(o.value for o in tx.outputs) == sel.fee
