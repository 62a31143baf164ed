"""bitcoin/: transactions, BIP143, bech32/bech32m (BIP173/BIP350 vectors), base58, blocks."""
import pytest

from bitcoin.address import AddressError, address_to_script, script_to_address
from bitcoin.bech32 import Bech32Error, bech32_decode, decode_segwit_address
from bitcoin.block import BlockHeader, check_proof_of_work
from bitcoin.keys import pubkey_of, sign_digest_der, verify_digest_der
from bitcoin.networks import NETWORKS
from bitcoin.script import p2pkh_script_code, push_int, script_num
from bitcoin.serialize import ByteReader, DeserializationError
from bitcoin.tx import Tx

# BIP143 "Native P2WPKH" example
BIP143_UNSIGNED = (
    "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffff"
    "ef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206"
    "000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42db"
    "ee7e4dbe6a21b2d50ce2f0167faa815988ac11000000")


def test_bip143_native_p2wpkh_sighash():
    tx = Tx.from_hex(BIP143_UNSIGNED)
    assert tx.to_hex() == BIP143_UNSIGNED
    key = bytes.fromhex("619c335025c7f4012e556c2a58b2506e30b8511b53ade95ea316fd8c3286feb9")
    pub = pubkey_of(key)
    assert pub.hex() == "025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357"
    code = p2pkh_script_code(pub)
    assert code.hex() == "76a9141d0f172a0ecb48aee1be1f2687d2963ae33f71a188ac"
    digest = tx.sighash_segwit_v0(1, code, 600000000)
    assert digest.hex() == "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"
    sig = sign_digest_der(key, digest)
    assert verify_digest_der(pub, sig, digest)
    # BIP143 gives the signature it expects (RFC6979 is deterministic)
    assert sig.hex() == ("304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a"
                         "0220573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee")


def test_segwit_tx_roundtrip_and_ids():
    raw = ("01000000000102fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f00000000494830"
           "450221008b9d1dc26ba6a9cb62127b02742fa9d754cd3bebf337f7a55d114c8e5cdd30be022040529b194ba3f9"
           "281a99f2b1c0a19c0489bc22ede944ccf4ecbab4cc618ef3ed01eeffffffef51e1b804cc89d182d279655c3aa8"
           "9e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378"
           "db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167f"
           "aa815988ac000247304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a02"
           "20573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee0121025476c2e83188368da1"
           "ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee635711000000")
    tx = Tx.from_hex(raw)
    assert tx.to_hex() == raw
    assert tx.has_witness()
    assert len(tx.serialize(include_witness=False)) < len(tx.serialize())
    assert tx.weight() == len(tx.serialize(False)) * 3 + len(tx.serialize())


@pytest.mark.parametrize("bad", ["", "00", "0100000001", "01000000000000000000", BIP143_UNSIGNED[:-2],
                                 BIP143_UNSIGNED + "00"])
def test_tx_parse_rejects_malformed(bad):
    with pytest.raises(DeserializationError):
        Tx.from_hex(bad)


def test_compact_size_must_be_canonical():
    with pytest.raises(DeserializationError):
        ByteReader(bytes.fromhex("fd1000")).compact_size()
    assert ByteReader(bytes.fromhex("fdfd00")).compact_size() == 0xFD


VALID_ADDRESSES = [
    # BIP350 (bech32 for v0, bech32m for v1+)
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6", "bitcoin"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262", "testnet"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", "bitcoin"),
    ("tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
     "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433", "testnet"),
]


@pytest.mark.parametrize("addr,spk,net", VALID_ADDRESSES)
def test_valid_segwit_addresses(addr, spk, net):
    assert address_to_script(addr, NETWORKS[net]).hex() == spk
    assert script_to_address(bytes.fromhex(spk), NETWORKS[net]) == addr.lower()


INVALID_ADDRESSES = [
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz0sqxzr56",  # invalid hrp
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # bech32 instead of bech32m
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",  # bech32 instead of bech32m
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # bech32m instead of bech32
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # invalid character
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # invalid version
    "bc1pw5dgrnzv",  # invalid program length
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # invalid program length for v0
    "bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du",  # non-zero padding
    "bc1gmk9yu",  # empty data
    "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb",  # base58 bad checksum
]


@pytest.mark.parametrize("addr", INVALID_ADDRESSES)
def test_invalid_addresses(addr):
    with pytest.raises(AddressError):
        address_to_script(addr, NETWORKS["bitcoin"])


def test_bech32_mixed_case_rejected():
    with pytest.raises(Bech32Error):
        bech32_decode("A12UEL5l")
    with pytest.raises(Bech32Error):
        decode_segwit_address("bc", "bc1QW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")


def test_legacy_addresses():
    net = NETWORKS["bitcoin"]
    spk = address_to_script("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", net)
    assert spk.hex() == "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac"
    assert script_to_address(spk, net) == "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"


def test_genesis_header_and_chain_hashes():
    h = BlockHeader(1, bytes(32), bytes.fromhex(
        "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b")[::-1], 1231006505, 0x1D00FFFF, 2083236893)
    assert h.hash_hex == NETWORKS["bitcoin"].genesis_hash_hex
    assert check_proof_of_work(h)
    assert NETWORKS["regtest"].chain_hash.hex() == "06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f"


def test_script_numbers():
    assert script_num(0) == b""
    assert script_num(127) == b"\x7f"
    assert script_num(128) == b"\x80\x00"
    assert script_num(-1) == b"\x81"
    assert push_int(16) == b"\x60"
    assert push_int(500) == b"\x02\xf4\x01"
