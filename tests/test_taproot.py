"""bitcoin/taproot.py: BIP341 wallet vectors (scriptPubKey and keyPathSpending),
BIP86 derivation vectors, and key-path spends checked by Bitcoin Core's
interpreter (libbitcoinkernel, all flags)."""
import hashlib

import pytest
from coincurve import PrivateKey

from bitcoin.bech32 import encode_segwit_address
from bitcoin.bip32 import ExtendedPrivateKey
from bitcoin.hashes import tagged_hash
from bitcoin.keys import sign_digest_der
from bitcoin.script import p2pkh_script_code, p2tr_script, p2wpkh_script
from bitcoin.taproot import (
    SIGHASH_ALL,
    SIGHASH_ANYONECANPAY,
    SIGHASH_DEFAULT,
    SIGHASH_NONE,
    SIGHASH_SINGLE,
    TaprootError,
    sighash_taproot,
    schnorr_sign,
    schnorr_verify,
    sign_taproot_keypath,
    tap_tweak,
    tapbranch_hash,
    tapleaf_hash,
    taproot_output_key,
    taproot_output_script,
    taproot_sigmsg,
    taproot_tweak_seckey,
    verify_taproot_keypath,
    xonly_pubkey,
)
from bitcoin.tx import OutPoint, Tx, TxIn, TxOut

ZERO32 = bytes(32)

# --- BIP341 wallet-test-vectors.json, "scriptPubKey" ------------------------------
# (internalPubkey, leaves [(script, leafVersion)] in tree order or None, leafHashes,
#  merkleRoot, tweak, tweakedPubkey)
SPK_VECTORS = [
    ("d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d", None, [], None,
     "b86e7be8f39bab32a6f2c0443abbc210f0edac0e2c53d501b36b64437d9c6c70",
     "53a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343"),
    ("187791b6f712a8ea41c8ecdd0ee77fab3e85263b37e1ec18a3651926b3a6cf27",
     [("20d85a959b0290bf19bb89ed43c916be835475d013da4b362117393e25a48229b8ac", 192)],
     ["5b75adecf53548f3ec6ad7d78383bf84cc57b55a3127c72b9a2481752dd88b21"],
     "5b75adecf53548f3ec6ad7d78383bf84cc57b55a3127c72b9a2481752dd88b21",
     "cbd8679ba636c1110ea247542cfbd964131a6be84f873f7f3b62a777528ed001",
     "147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3"),
    ("93478e9488f956df2396be2ce6c5cced75f900dfa18e7dabd2428aae78451820",
     [("20b617298552a72ade070667e86ca63b8f5789a9fe8731ef91202a91c9f3459007ac", 192)],
     ["c525714a7f49c28aedbbba78c005931a81c234b2f6c99a73e4d06082adc8bf2b"],
     "c525714a7f49c28aedbbba78c005931a81c234b2f6c99a73e4d06082adc8bf2b",
     "6af9e28dbf9d6aaf027696e2598a5b3d056f5fd2355a7fd5a37a0e5008132d30",
     "e4d810fd50586274face62b8a807eb9719cef49c04177cc6b76a9a4251d5450e"),
    ("ee4fe085983462a184015d1f782d6a5f8b9c2b60130aff050ce221ecf3786592",
     [("20387671353e273264c495656e27e39ba899ea8fee3bb69fb2a680e22093447d48ac", 192),
      ("06424950333431", 250)],
     ["8ad69ec7cf41c2a4001fd1f738bf1e505ce2277acdcaa63fe4765192497f47a7",
      "f224a923cd0021ab202ab139cc56802ddb92dcfc172b9212261a539df79a112a"],
     "6c2dc106ab816b73f9d07e3cd1ef2c8c1256f519748e0813e4edd2405d277bef",
     "9e0517edc8259bb3359255400b23ca9507f2a91cd1e4250ba068b4eafceba4a9",
     "712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5"),
    ("f9f400803e683727b14f463836e1e78e1c64417638aa066919291a225f0e8dd8",
     [("2044b178d64c32c4a05cc4f4d1407268f764c940d20ce97abfd44db5c3592b72fdac", 192),
      ("07546170726f6f74", 192)],
     ["64512fecdb5afa04f98839b50e6f0cb7b1e539bf6f205f67934083cdcc3c8d89",
      "2cb2b90daa543b544161530c925f285b06196940d6085ca9474d41dc3822c5cb"],
     "ab179431c28d3b68fb798957faf5497d69c883c6fb1e1cd9f81483d87bac90cc",
     "639f0281b7ac49e742cd25b7f188657626da1ad169209078e2761cefd91fd65e",
     "77e30a5522dd9f894c3f8b8bd4c4b2cf82ca7da8a3ea6a239655c39c050ab220"),
]

# --- BIP341 wallet-test-vectors.json, "keyPathSpending" ---------------------------
KP_RAW_UNSIGNED = (
    "02000000097de20cbff686da83a54981d2b9bab3586f4ca7e48f57f5b55963115f3b334e9c010000000000000000"
    "d7b7cab57b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd990000000000ffffffff"
    "f8e1f583384333689228c5d28eac13366be082dc57441760d957275419a418420000000000ffffffff"
    "f0689180aa63b30cb162a73c6d2a38b7eeda2a83ece74310fda0843ad604853b0100000000feffffff"
    "aa5202bdf6d8ccd2ee0f0202afbbb7461d9264a25e5bfd3c5a52ee1239e0ba6c0000000000feffffff"
    "956149bdc66faa968eb2be2d2faa29718acbfe3941215893a2a3446d32acd050000000000000000000"
    "e664b9773b88c09c32cb70a2a3e4da0ced63b7ba3b22f848531bbb1d5d5f4c94010000000000000000"
    "e9aa6b8e6c9de67619e6a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf0000000000ffffffff"
    "a778eb6a263dc090464cd125c466b5a99667720b1c110468831d058aa1b82af10100000000ffffffff"
    "0200ca9a3b000000001976a91406afd46bcdfd22ef94ac122aa11f241244a37ecc88ac807840cb00000000"
    "20ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b0065cd1d")
KP_UTXOS = [
    ("512053a1f6e454df1aa2776a2814a721372d6258050de330b3c6d10ee8f4e0dda343", 420000000),
    ("5120147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3", 462000000),
    ("76a914751e76e8199196d454941c45d1b3a323f1433bd688ac", 294000000),
    ("5120e4d810fd50586274face62b8a807eb9719cef49c04177cc6b76a9a4251d5450e", 504000000),
    ("512091b64d5324723a985170e4dc5a0f84c041804f2cd12660fa5dec09fc21783605", 630000000),
    ("00147dd65592d0ab2fe0d0257d571abf032cd9db93dc", 378000000),
    ("512075169f4001aa68f15bbed28b218df1d0a62cbbcf1188c6665110c293c907b831", 672000000),
    ("5120712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5", 546000000),
    ("512077e30a5522dd9f894c3f8b8bd4c4b2cf82ca7da8a3ea6a239655c39c050ab220", 588000000),
]
KP_INTERMEDIARY = {
    "hashAmounts": "58a6964a4f5f8f0b642ded0a8a553be7622a719da71d1f5befcefcdee8e0fde6",
    "hashOutputs": "a2e6dab7c1f0dcd297c8d61647fd17d821541ea69c3cc37dcbad7f90d4eb4bc5",
    "hashPrevouts": "e3b33bb4ef3a52ad1fffb555c0d82828eb22737036eaeb02a235d82b909c4c3f",
    "hashScriptPubkeys": "23ad0f61ad2bca5ba6a7693f50fce988e17c3780bf2b1e720cfbb38fbdd52e21",
    "hashSequences": "18959c7221ab5ce9e26c3cd67b22c24f8baa54bac281d8e6b05e400e6c3a957e",
}
# (txinIndex, internalPrivkey, merkleRoot, hashType, internalPubkey, tweak, tweakedPrivkey,
#  sigMsg, sigHash, witness[0])
KP_INPUTS = [
    (0, "6b973d88838f27366ed61c9ad6367663045cb456e28335c109e30717ae0c6baa", None, 3,
     "d6889cb081036e0faefa3a35157ad71086b123b2b144b649798b494c300a961d",
     "b86e7be8f39bab32a6f2c0443abbc210f0edac0e2c53d501b36b64437d9c6c70",
     "2405b971772ad26915c8dcdf10f238753a9b837e5f8e6a86fd7c0cce5b7296d9",
     "0003020000000065cd1de3b33bb4ef3a52ad1fffb555c0d82828eb22737036eaeb02a235d82b909c4c3f58a6964a4f"
     "5f8f0b642ded0a8a553be7622a719da71d1f5befcefcdee8e0fde623ad0f61ad2bca5ba6a7693f50fce988e17c3780"
     "bf2b1e720cfbb38fbdd52e2118959c7221ab5ce9e26c3cd67b22c24f8baa54bac281d8e6b05e400e6c3a957e000000"
     "0000d0418f0e9a36245b9a50ec87f8bf5be5bcae434337b87139c3a5b1f56e33cba0",
     "2514a6272f85cfa0f45eb907fcb0d121b808ed37c6ea160a5a9046ed5526d555",
     "ed7c1647cb97379e76892be0cacff57ec4a7102aa24296ca39af7541246d8ff14d38958d4cc1e2e478e4d4a764bbfd83"
     "5b16d4e314b72937b29833060b87276c03"),
    (1, "1e4da49f6aaf4e5cd175fe08a32bb5cb4863d963921255f33d3bc31e1343907f",
     "5b75adecf53548f3ec6ad7d78383bf84cc57b55a3127c72b9a2481752dd88b21", 131,
     "187791b6f712a8ea41c8ecdd0ee77fab3e85263b37e1ec18a3651926b3a6cf27",
     "cbd8679ba636c1110ea247542cfbd964131a6be84f873f7f3b62a777528ed001",
     "ea260c3b10e60f6de018455cd0278f2f5b7e454be1999572789e6a9565d26080",
     "0083020000000065cd1d00d7b7cab57b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd9900000000"
     "808f891b00000000225120147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3ffffffff"
     "ffcef8fb4ca7efc5433f591ecfc57391811ce1e186a3793024def5c884cba51d",
     "325a644af47e8a5a2591cda0ab0723978537318f10e6a63d4eed783b96a71a4d",
     "052aedffc554b41f52b521071793a6b88d6dbca9dba94cf34c83696de0c1ec35ca9c5ed4ab28059bd606a4f3a657eec0"
     "bb96661d42921b5f50a95ad33675b54f83"),
    (3, "d3c7af07da2d54f7a7735d3d0fc4f0a73164db638b2f2f7c43f711f6d4aa7e64",
     "c525714a7f49c28aedbbba78c005931a81c234b2f6c99a73e4d06082adc8bf2b", 1,
     "93478e9488f956df2396be2ce6c5cced75f900dfa18e7dabd2428aae78451820",
     "6af9e28dbf9d6aaf027696e2598a5b3d056f5fd2355a7fd5a37a0e5008132d30",
     "97323385e57015b75b0339a549c56a948eb961555973f0951f555ae6039ef00d",
     "0001020000000065cd1de3b33bb4ef3a52ad1fffb555c0d82828eb22737036eaeb02a235d82b909c4c3f58a6964a4f"
     "5f8f0b642ded0a8a553be7622a719da71d1f5befcefcdee8e0fde623ad0f61ad2bca5ba6a7693f50fce988e17c3780"
     "bf2b1e720cfbb38fbdd52e2118959c7221ab5ce9e26c3cd67b22c24f8baa54bac281d8e6b05e400e6c3a957ea2e6da"
     "b7c1f0dcd297c8d61647fd17d821541ea69c3cc37dcbad7f90d4eb4bc50003000000",
     "bf013ea93474aa67815b1b6cc441d23b64fa310911d991e713cd34c7f5d46669",
     "ff45f742a876139946a149ab4d9185574b98dc919d2eb6754f8abaa59d18b025637a3aa043b91817739554f4ed2026cf"
     "8022dbd83e351ce1fabc272841d2510a01"),
    (4, "f36bb07a11e469ce941d16b63b11b9b9120a84d9d87cff2c84a8d4affb438f4e",
     "ccbd66c6f7e8fdab47b3a486f59d28262be857f30d4773f2d5ea47f7761ce0e2", 0,
     "e0dfe2300b0dd746a3f8674dfd4525623639042569d829c7f0eed9602d263e6f",
     "b57bfa183d28eeb6ad688ddaabb265b4a41fbf68e5fed2c72c74de70d5a786f4",
     "a8e7aa924f0d58854185a490e6c41f6efb7b675c0f3331b7f14b549400b4d501",
     "0000020000000065cd1de3b33bb4ef3a52ad1fffb555c0d82828eb22737036eaeb02a235d82b909c4c3f58a6964a4f"
     "5f8f0b642ded0a8a553be7622a719da71d1f5befcefcdee8e0fde623ad0f61ad2bca5ba6a7693f50fce988e17c3780"
     "bf2b1e720cfbb38fbdd52e2118959c7221ab5ce9e26c3cd67b22c24f8baa54bac281d8e6b05e400e6c3a957ea2e6da"
     "b7c1f0dcd297c8d61647fd17d821541ea69c3cc37dcbad7f90d4eb4bc50004000000",
     "4f900a0bae3f1446fd48490c2958b5a023228f01661cda3496a11da502a7f7ef",
     "b4010dd48a617db09926f729e79c33ae0b4e94b79f04a1ae93ede6315eb3669de185a17d2b0ac9ee09fd4c64b678a0b6"
     "1a0a86fa888a273c8511be83bfd6810f"),
    (6, "415cfe9c15d9cea27d8104d5517c06e9de48e2f986b695e4f5ffebf230e725d8",
     "2f6b2c5397b6d68ca18e09a3f05161668ffe93a988582d55c6f07bd5b3329def", 2,
     "55adf4e8967fbd2e29f20ac896e60c3b0f1d5b0efa9d34941b5958c7b0a0312d",
     "6579138e7976dc13b6a92f7bfd5a2fc7684f5ea42419d43368301470f3b74ed9",
     "241c14f2639d0d7139282aa6abde28dd8a067baa9d633e4e7230287ec2d02901",
     "0002020000000065cd1de3b33bb4ef3a52ad1fffb555c0d82828eb22737036eaeb02a235d82b909c4c3f58a6964a4f"
     "5f8f0b642ded0a8a553be7622a719da71d1f5befcefcdee8e0fde623ad0f61ad2bca5ba6a7693f50fce988e17c3780"
     "bf2b1e720cfbb38fbdd52e2118959c7221ab5ce9e26c3cd67b22c24f8baa54bac281d8e6b05e400e6c3a957e000600"
     "0000",
     "15f25c298eb5cdc7eb1d638dd2d45c97c4c59dcaec6679cfc16ad84f30876b85",
     "a3785919a2ce3c4ce26f298c3d51619bc474ae24014bcdd31328cd8cfbab2eff3395fa0a16fe5f486d12f22a9cedded5"
     "ae74feb4bbe5351346508c5405bcfee002"),
    (7, "c7b0e81f0a9a0b0499e112279d718cca98e79a12e2f137c72ae5b213aad0d103",
     "6c2dc106ab816b73f9d07e3cd1ef2c8c1256f519748e0813e4edd2405d277bef", 130,
     "ee4fe085983462a184015d1f782d6a5f8b9c2b60130aff050ce221ecf3786592",
     "9e0517edc8259bb3359255400b23ca9507f2a91cd1e4250ba068b4eafceba4a9",
     "65b6000cd2bfa6b7cf736767a8955760e62b6649058cbc970b7c0871d786346b",
     "0082020000000065cd1d00e9aa6b8e6c9de67619e6a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf00000000"
     "804c8b2000000000225120712447206d7a5238acc7ff53fbe94a3b64539ad291c7cdbc490b7577e4b17df5ffffffff",
     "cd292de50313804dabe4685e83f923d2969577191a3e1d2882220dca88cbeb10",
     "ea0c6ba90763c2d3a296ad82ba45881abb4f426b3f87af162dd24d5109edc1cdd11915095ba47c3a9963dc1e6c432939"
     "872bc49212fe34c632cd3ab9fed429c482"),
    (8, "77863416be0d0665e517e1c375fd6f75839544eca553675ef7fdf4949518ebaa",
     "ab179431c28d3b68fb798957faf5497d69c883c6fb1e1cd9f81483d87bac90cc", 129,
     "f9f400803e683727b14f463836e1e78e1c64417638aa066919291a225f0e8dd8",
     "639f0281b7ac49e742cd25b7f188657626da1ad169209078e2761cefd91fd65e",
     "ec18ce6af99f43815db543f47b8af5ff5df3b2cb7315c955aa4a86e8143d2bf5",
     "0081020000000065cd1da2e6dab7c1f0dcd297c8d61647fd17d821541ea69c3cc37dcbad7f90d4eb4bc500a778eb6a"
     "263dc090464cd125c466b5a99667720b1c110468831d058aa1b82af101000000002b0c230000000022512077e30a55"
     "22dd9f894c3f8b8bd4c4b2cf82ca7da8a3ea6a239655c39c050ab220ffffffff",
     "cccb739eca6c13a8a89e6e5cd317ffe55669bbda23f2fd37b0f18755e008edd2",
     "bbc9584a11074e83bc8c6759ec55401f0ae7b03ef290c3139814f545b58a9f8127258000874f44bc46db7646322107d4"
     "d86aec8e73b8719a61fff761d75b5dd981"),
]


def _kp_tx_and_spent():
    tx = Tx.from_hex(KP_RAW_UNSIGNED)
    spent = [TxOut(v, bytes.fromhex(s)) for s, v in KP_UTXOS]
    return tx, spent


@pytest.mark.parametrize("vec", SPK_VECTORS, ids=[f"spk{i}" for i in range(len(SPK_VECTORS))])
def test_bip341_scriptpubkey_vectors(vec):
    internal, leaves, leaf_hashes, merkle_root, tweak, tweaked = vec
    internal = bytes.fromhex(internal)
    if leaves:
        hashes = [tapleaf_hash(bytes.fromhex(s), v) for s, v in leaves]
        assert [h.hex() for h in hashes] == leaf_hashes
        root = hashes[0] if len(hashes) == 1 else tapbranch_hash(*hashes)
        assert root.hex() == merkle_root
    mr = bytes.fromhex(merkle_root) if merkle_root else None
    assert tap_tweak(internal, mr).hex() == tweak
    q, parity = taproot_output_key(internal, mr)
    assert q.hex() == tweaked
    assert parity in (0, 1)
    assert taproot_output_script(internal, mr).hex() == "5120" + tweaked


def test_bip341_keypath_intermediary_hashes():
    """The five precomputed hashes appear verbatim in a SIGHASH_DEFAULT message."""
    tx, spent = _kp_tx_and_spent()
    msg = taproot_sigmsg(tx, 4, spent, SIGHASH_DEFAULT)
    i = KP_INTERMEDIARY
    assert msg[9:41].hex() == i["hashPrevouts"]
    assert msg[41:73].hex() == i["hashAmounts"]
    assert msg[73:105].hex() == i["hashScriptPubkeys"]
    assert msg[105:137].hex() == i["hashSequences"]
    assert msg[137:169].hex() == i["hashOutputs"]


@pytest.mark.parametrize("vec", KP_INPUTS, ids=[f"input{v[0]}-ht{v[3]}" for v in KP_INPUTS])
def test_bip341_keypath_spending_vectors(vec):
    idx, priv, merkle_root, hash_type, internal_pub, tweak, tweaked_priv, sigmsg, sighash, witness = vec
    tx, spent = _kp_tx_and_spent()
    priv = bytes.fromhex(priv)
    mr = bytes.fromhex(merkle_root) if merkle_root else None
    assert xonly_pubkey(priv).hex() == internal_pub
    assert tap_tweak(bytes.fromhex(internal_pub), mr).hex() == tweak
    assert taproot_tweak_seckey(priv, mr).hex() == tweaked_priv
    # the tweaked key signs for the spent output's key
    assert xonly_pubkey(bytes.fromhex(tweaked_priv)) == spent[idx].script_pubkey[2:]
    # sigMsg in the vectors includes the leading epoch byte 0x00
    assert ("00" + taproot_sigmsg(tx, idx, spent, hash_type).hex()) == sigmsg
    assert sighash_taproot(tx, idx, spent, hash_type).hex() == sighash
    # BIP341's vectors sign with 32 zero bytes of auxiliary randomness
    sig = sign_taproot_keypath(priv, tx, idx, spent, hash_type, mr, aux_rand=ZERO32)
    assert sig.hex() == witness
    assert verify_taproot_keypath(tx, idx, spent, sig)
    assert schnorr_verify(spent[idx].script_pubkey[2:], sig[:64], bytes.fromhex(sighash))


def test_bip341_keypath_vectors_pass_bitcoin_core_interpreter():
    """Put our witnesses into the vector transaction; the kernel checks every taproot input."""
    pbk = pytest.importorskip("pbk")
    tx, spent = _kp_tx_and_spent()
    for idx, priv, mr, ht, *_ in KP_INPUTS:
        tx.inputs[idx].witness = [sign_taproot_keypath(
            bytes.fromhex(priv), tx, idx, spent, ht, bytes.fromhex(mr) if mr else None)]
    raw = tx.serialize()
    for idx, *_ in KP_INPUTS:
        assert _kernel_verify(pbk, raw, spent, idx)
    # and a corrupted signature does not pass
    tx.inputs[0].witness = [bytes([tx.inputs[0].witness[0][0] ^ 1]) + tx.inputs[0].witness[0][1:]]
    assert not _kernel_verify(pbk, tx.serialize(), spent, 0)


# --- BIP86 ---------------------------------------------------------------------------
BIP86_MNEMONIC = ("abandon abandon abandon abandon abandon abandon abandon abandon abandon "
                  "abandon abandon about")
BIP86_ROOT_XPRV = ("xprv9s21ZrQH143K3GJpoapnV8SFfukcVBSfeCficPSGfubmSFDxo1kuHnLisriDvSnRRuL2Qrg5g"
                   "gqHKNVpxR86QEC8w35uxmGoggxtQTPvfUu")
BIP86_ROOT_XPUB = ("xpub661MyMwAqRbcFkPHucMnrGNzDwb6teAX1RbKQmqtEF8kK3Z7LZ59qafCjB9eCRLiTVG3uxBxg"
                   "KvRgbubRhqSKXnGGb1aoaqLrpMBDrVxga8")
BIP86_ACCOUNT = ("m/86'/0'/0'",
                 "xprv9xgqHN7yz9MwCkxsBPN5qetuNdQSUttZNKw1dcYTV4mkaAFiBVGQziHs3NRSWMkCzvgjEe3n9xV8oYywvM8at9yRqyaZVz6TYYhX98VjsUk",
                 "xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9QyrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ")
BIP86_ADDRESSES = [
    ("m/86'/0'/0'/0/0",
     "xprvA449goEeU9okwCzzZaxiy475EQGQzBkc65su82nXEvcwzfSskb2hAt2WymrjyRL6kpbVTGL3cKtp9herYXSjjQ1j4stsXXiRF7kXkCacK3T",
     "xpub6H3W6JmYJXN49h5TfcVjLC3onS6uPeUTTJoVvRC8oG9vsTn2J8LwigLzq5tHbrwAzH9DGo6ThGUdWsqce8dGfwHVBxSbixjDADGGdzF7t2B",
     "cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115",
     "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c",
     "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"),
    ("m/86'/0'/0'/0/1",
     "xprvA449goEeU9okyiF1LmKiDaTgeXvmh87DVyRd35VPbsSop8n8uALpbtrUhUXByPFKK7C2yuqrB1FrhiDkEMC4RGmA5KTwsE1aB5jRu9zHsuQ",
     "xpub6H3W6JmYJXN4CCKUSnriaiQRCZmG6aq4sCMDqTu1ACyngw7HShf59hAxYjXgKDuuHThVEUzdHrc3aXCr9kfvQvZPit5dnD3K9xVRBzjK3rX",
     "83dfe85a3151d2517290da461fe2815591ef69f2b18a2ce63f01697a8b313145",
     "a82f29944d65b86ae6b5e5cc75e294ead6c59391a1edc5e016e3498c67fc7bbb",
     "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh"),
    ("m/86'/0'/0'/1/0",
     "xprvA3Ln3Gt3aphvUgzgEDT8vE2cYqb4PjFfpmbiFKphxLg1FjXQpkAk5M1ZKDY15bmCAHA35jTiawbFuwGtbDZogKF1WfjwxML4gK7WfYW5JRP",
     "xpub6GL8SnQwRCGDhB59LEz9HMyM6sRYoByXBzXK3iEKWgCz8XrZNHUzd9L3AUBELW5NzA7dEFvMas1F84TuPH3xqdUA5tumaGWFgihJzWytXe3",
     "399f1b2f4393f29a18c937859c5dd8a77350103157eb880f02e8c08214277cef",
     "882d74e5d0572d5a816cef0041a96b6c1de832f6f9676d9605c44d5e9a97d3dc",
     "bc1p3qkhfews2uk44qtvauqyr2ttdsw7svhkl9nkm9s9c3x4ax5h60wqwruhk7"),
]


def test_bip86_root_from_mnemonic():
    # BIP39 seed: PBKDF2-HMAC-SHA512(mnemonic, "mnemonic" + passphrase, 2048), 64 bytes
    seed = hashlib.pbkdf2_hmac("sha512", BIP86_MNEMONIC.encode(), b"mnemonic", 2048)
    root = ExtendedPrivateKey.from_seed(seed)
    assert root.to_string() == BIP86_ROOT_XPRV
    assert root.public().to_string() == BIP86_ROOT_XPUB


def test_bip86_account_and_addresses():
    root = ExtendedPrivateKey.parse(BIP86_ROOT_XPRV)
    path, xprv, xpub = BIP86_ACCOUNT
    acct = root.derive(path)
    assert acct.to_string() == xprv and acct.public().to_string() == xpub
    for path, xprv, xpub, internal, output, address in BIP86_ADDRESSES:
        k = root.derive(path)
        assert k.to_string() == xprv
        assert k.public().to_string() == xpub
        # the account xpub derives the same keys (receive/change chains are unhardened)
        assert acct.public().derive(path.split("/", 4)[-1]).xonly == k.xonly
        assert k.xonly.hex() == internal
        q, _ = taproot_output_key(k.xonly)
        assert q.hex() == output
        spk = taproot_output_script(k.xonly)
        assert spk.hex() == "5120" + output
        assert encode_segwit_address("bc", 1, q) == address
        # the tweaked private key controls Q
        assert xonly_pubkey(taproot_tweak_seckey(k.secret)) == q


# --- our own spends through the kernel ------------------------------------------------

def _kernel_verify(pbk, raw: bytes, spent: list[TxOut], index: int) -> bool:
    ktx = pbk.Transaction(raw)
    outs = [pbk.TransactionOutput(pbk.ScriptPubkey(o.script_pubkey), o.value) for o in spent]
    pre = pbk.script.PrecomputedTransactionData(ktx, outs)
    try:
        return bool(pbk.ScriptPubkey(spent[index].script_pubkey).verify(
            spent[index].value, ktx, pre, index, pbk.ScriptVerificationFlags.ALL))
    except pbk.ScriptVerifyException:
        return False


def _wallet_keys():
    root = ExtendedPrivateKey.from_seed(bytes(range(1, 33)), network="regtest")
    return root.derive("m/86h/1h/0h/0/0"), root.derive("m/86h/1h/0h/0/1"), root.derive("m/84h/1h/0h/0/0")


@pytest.mark.parametrize("hash_type", [SIGHASH_DEFAULT, SIGHASH_ALL, SIGHASH_NONE, SIGHASH_SINGLE,
                                       SIGHASH_ALL | SIGHASH_ANYONECANPAY,
                                       SIGHASH_NONE | SIGHASH_ANYONECANPAY,
                                       SIGHASH_SINGLE | SIGHASH_ANYONECANPAY])
def test_our_keypath_spend_passes_kernel_all_flags(hash_type):
    pbk = pytest.importorskip("pbk")
    k1, k2, kw = _wallet_keys()
    spent = [TxOut(1_000_000, taproot_output_script(k1.xonly)),
             TxOut(250_000, p2wpkh_script(kw.pubkey)),
             TxOut(60_000, taproot_output_script(k2.xonly))]
    tx = Tx(version=2, locktime=101, inputs=[
        TxIn(OutPoint(bytes([7]) * 32, 0), sequence=0xFFFFFFFD),
        TxIn(OutPoint(bytes([8]) * 32, 3), sequence=0xFFFFFFFE),
        TxIn(OutPoint(bytes([9]) * 32, 1), sequence=0xFFFFFFFD),
    ], outputs=[TxOut(800_000, taproot_output_script(k2.xonly)),
                TxOut(300_000, p2wpkh_script(kw.pubkey)),
                TxOut(150_000, bytes.fromhex("6a0548656c6c6f"))])
    for i, k in ((0, k1), (2, k2)):
        tx.inputs[i].witness = [sign_taproot_keypath(k.secret, tx, i, spent, hash_type)]
    digest = tx.sighash_segwit_v0(1, p2pkh_script_code(kw.pubkey), 250_000)
    tx.inputs[1].witness = [sign_digest_der(kw.secret, digest) + b"\x01", kw.pubkey]
    raw = tx.serialize()
    for i in range(3):
        assert _kernel_verify(pbk, raw, spent, i), f"input {i}"
        if i != 1:
            assert verify_taproot_keypath(tx, i, spent, tx.inputs[i].witness[0])
    # a wrong amount for a taproot input breaks its signature (amounts are committed)
    wrong = list(spent)
    wrong[0] = TxOut(999_999, spent[0].script_pubkey)
    assert not _kernel_verify(pbk, raw, wrong, 0)


def test_keypath_with_script_tree_merkle_root_passes_kernel():
    pbk = pytest.importorskip("pbk")
    k1, _, _ = _wallet_keys()
    leaf = tapleaf_hash(bytes.fromhex("20" + "11" * 32 + "ac"))
    spent = [TxOut(50_000, taproot_output_script(k1.xonly, leaf))]
    tx = Tx(inputs=[TxIn(OutPoint(bytes([3]) * 32, 5))], outputs=[TxOut(49_000, p2tr_script(k1.xonly))])
    tx.inputs[0].witness = [sign_taproot_keypath(k1.secret, tx, 0, spent, merkle_root=leaf)]
    assert _kernel_verify(pbk, tx.serialize(), spent, 0)
    # signing without the merkle root tweaks to a different key: rejected
    tx.inputs[0].witness = [sign_taproot_keypath(k1.secret, tx, 0, spent)]
    assert not _kernel_verify(pbk, tx.serialize(), spent, 0)


def test_odd_y_internal_key_is_negated():
    """Half of all keys have an odd-y point; the tweak must still produce Q's key."""
    seen = set()
    for n in range(1, 40):
        secret = n.to_bytes(32, "big")
        seen.add(PrivateKey(secret).public_key.format()[0])
        q, _ = taproot_output_key(xonly_pubkey(secret))
        assert xonly_pubkey(taproot_tweak_seckey(secret)) == q
    assert seen == {2, 3}


def test_schnorr_and_errors():
    secret = bytes(range(1, 33))
    msg = tagged_hash("test", b"m")
    sig = schnorr_sign(secret, msg, ZERO32)
    assert sig == schnorr_sign(secret, msg, ZERO32)          # deterministic with fixed aux
    assert schnorr_sign(secret, msg) != schnorr_sign(secret, msg)  # fresh aux by default
    assert schnorr_verify(xonly_pubkey(secret), sig, msg)
    assert not schnorr_verify(xonly_pubkey(secret), sig, tagged_hash("test", b"n"))
    assert not schnorr_verify(b"\x00" * 32, sig, msg)
    assert not schnorr_verify(xonly_pubkey(secret), sig[:63], msg)
    with pytest.raises(TaprootError):
        schnorr_sign(secret, b"short")
    tx, spent = _kp_tx_and_spent()
    with pytest.raises(TaprootError, match="hash type"):
        sighash_taproot(tx, 0, spent, 0x04)
    with pytest.raises(TaprootError, match="spent outputs"):
        sighash_taproot(tx, 0, spent[:-1])
    with pytest.raises(TaprootError, match="SIGHASH_SINGLE"):
        sighash_taproot(tx, 5, spent, SIGHASH_SINGLE)
    with pytest.raises(TaprootError, match="annex"):
        sighash_taproot(tx, 0, spent, annex=b"\x51")
    with pytest.raises(TaprootError):
        tap_tweak(b"\x02" + bytes(32))
    for bad in (b"\x01" * 31, bytes(32), b"\xff" * 32):   # short, zero, >= n
        with pytest.raises(TaprootError):
            taproot_tweak_seckey(bad)
    with pytest.raises(TaprootError):
        taproot_output_key(b"\xff" * 32)  # not an x coordinate on the curve
    # a 65-byte signature with hash type 0 is invalid by BIP341
    sig64 = sign_taproot_keypath(bytes.fromhex(KP_INPUTS[3][1]), tx, 4, spent, 0,
                                 bytes.fromhex(KP_INPUTS[3][2]), ZERO32)
    assert verify_taproot_keypath(tx, 4, spent, sig64)
    assert not verify_taproot_keypath(tx, 4, spent, sig64 + b"\x00")
    assert not verify_taproot_keypath(tx, 4, spent, sig64 + b"\x01")
    assert not verify_taproot_keypath(tx, 2, spent, sig64)  # P2PKH output


def test_annex_and_script_path_messages_differ():
    tx, spent = _kp_tx_and_spent()
    plain = taproot_sigmsg(tx, 0, spent)
    with_annex = taproot_sigmsg(tx, 0, spent, annex=b"\x50\x01")
    leaf = taproot_sigmsg(tx, 0, spent, leaf_hash=bytes(32))
    # spend_type (ext_flag*2 + annex_present) follows hash_type, version, locktime, 5 hashes
    assert (plain[169], with_annex[169], leaf[169]) == (0, 1, 2)
    assert with_annex[:169] == plain[:169] == leaf[:169]
    assert len(with_annex) == len(plain) + 32
    assert len(leaf) == len(plain) + 37
