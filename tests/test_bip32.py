"""bitcoin/bip32.py against the BIP32 test vectors 1-5 (byte for byte)."""
import pytest

from bitcoin.bip32 import (
    HARDENED,
    Bip32Error,
    ExtendedPrivateKey,
    ExtendedPublicKey,
    format_path,
    parse_extended_key,
    parse_path,
)

# (seed, [(path, xpub, xprv), ...]) from BIP32 "Test Vectors"
VECTORS = [
    ("000102030405060708090a0b0c0d0e0f", [
        ("m",
         "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
         "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi"),
        ("m/0H",
         "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
         "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7"),
        ("m/0H/1",
         "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
         "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs"),
        ("m/0H/1/2H",
         "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
         "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM"),
        ("m/0H/1/2H/2",
         "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
         "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334"),
        ("m/0H/1/2H/2/1000000000",
         "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
         "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76"),
    ]),
    ("fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542", [
        ("m",
         "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
         "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U"),
        ("m/0",
         "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
         "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt"),
        ("m/0/2147483647H",
         "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
         "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9"),
        ("m/0/2147483647H/1",
         "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
         "xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef"),
        ("m/0/2147483647H/1/2147483646H",
         "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
         "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc"),
        ("m/0/2147483647H/1/2147483646H/2",
         "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
         "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j"),
    ]),
    # vector 3: retention of leading zeros (bitpay/bitcore-lib#47, iancoleman/bip39#58)
    ("4b381541583be4423346c643850da4b320e46a87ae3d2a4e6da11eba819cd4acba45d239319ac14f863b8d5ab5a0d0c64d2e8a1e7d1457df2e5a3c51c73235be", [
        ("m",
         "xpub661MyMwAqRbcEZVB4dScxMAdx6d4nFc9nvyvH3v4gJL378CSRZiYmhRoP7mBy6gSPSCYk6SzXPTf3ND1cZAceL7SfJ1Z3GC8vBgp2epUt13",
         "xprv9s21ZrQH143K25QhxbucbDDuQ4naNntJRi4KUfWT7xo4EKsHt2QJDu7KXp1A3u7Bi1j8ph3EGsZ9Xvz9dGuVrtHHs7pXeTzjuxBrCmmhgC6"),
        ("m/0H",
         "xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y",
         "xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L"),
    ]),
    # vector 4: retention of leading zeros (btcsuite/btcutil#172)
    ("3ddd5602285899a946114506157c7997e5444528f3003f6134712147db19b678", [
        ("m",
         "xpub661MyMwAqRbcGczjuMoRm6dXaLDEhW1u34gKenbeYqAix21mdUKJyuyu5F1rzYGVxyL6tmgBUAEPrEz92mBXjByMRiJdba9wpnN37RLLAXa",
         "xprv9s21ZrQH143K48vGoLGRPxgo2JNkJ3J3fqkirQC2zVdk5Dgd5w14S7fRDyHH4dWNHUgkvsvNDCkvAwcSHNAQwhwgNMgZhLtQC63zxwhQmRv"),
        ("m/0H",
         "xpub69AUMk3qDBi3uW1sXgjCmVjJ2G6WQoYSnNHyzkmdCHEhSZ4tBok37xfFEqHd2AddP56Tqp4o56AePAgCjYdvpW2PU2jbUPFKsav5ut6Ch1m",
         "xprv9vB7xEWwNp9kh1wQRfCCQMnZUEG21LpbR9NPCNN1dwhiZkjjeGRnaALmPXCX7SgjFTiCTT6bXes17boXtjq3xLpcDjzEuGLQBM5ohqkao9G"),
        ("m/0H/1H",
         "xpub6BJA1jSqiukeaesWfxe6sNK9CCGaujFFSJLomWHprUL9DePQ4JDkM5d88n49sMGJxrhpjazuXYWdMf17C9T5XnxkopaeS7jGk1GyyVziaMt",
         "xprv9xJocDuwtYCMNAo3Zw76WENQeAS6WGXQ55RCy7tDJ8oALr4FWkuVoHJeHVAcAqiZLE7Je3vZJHxspZdFHfnBEjHqU5hG1Jaj32dVoS6XLT1"),
    ]),
]

# vector 5: invalid extended keys, with the reason BIP32 gives; the match
# checks each is rejected for that reason (not, say, a mistyped checksum).
INVALID = [
    ("xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6LBpB85b3D2yc8sfvZU521AAwdZafEz7mnzBBsz4wKY5fTtTQBm",
     "pubkey version / prvkey mismatch", "invalid public key prefix 00"),
    ("xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGTQQD3dC4H2D5GBj7vWvSQaaBv5cxi9gafk7NF3pnBju6dwKvH",
     "prvkey version / pubkey mismatch", "invalid private key prefix 0[23]"),
    ("xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Txnt3siSujt9RCVYsx4qHZGc62TG4McvMGcAUjeuwZdduYEvFn",
     "invalid pubkey prefix 04", "invalid public key prefix 04"),
    ("xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFGpWnsj83BHtEy5Zt8CcDr1UiRXuWCmTQLxEK9vbz5gPstX92JQ",
     "invalid prvkey prefix 04", "invalid private key prefix 04"),
    ("xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6N8ZMMXctdiCjxTNq964yKkwrkBJJwpzZS4HS2fxvyYUA4q2Xe4",
     "invalid pubkey prefix 01", "invalid public key prefix 01"),
    ("xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFAzHGBP2UuGCqWLTAPLcMtD9y5gkZ6Eq3Rjuahrv17fEQ3Qen6J",
     "invalid prvkey prefix 01", "invalid private key prefix 01"),
    ("xprv9s2SPatNQ9Vc6GTbVMFPFo7jsaZySyzk7L8n2uqKXJen3KUmvQNTuLh3fhZMBoG3G4ZW1N2kZuHEPY53qmbZzCHshoQnNf4GvELZfqTUrcv",
     "zero depth with non-zero parent fingerprint", "zero depth with non-zero parent fingerprint"),
    ("xpub661no6RGEX3uJkY4bNnPcw4URcQTrSibUZ4NqJEw5eBkv7ovTwgiT91XX27VbEXGENhYRCf7hyEbWrR3FewATdCEebj6znwMfQkhRYHRLpJ",
     "zero depth with non-zero parent fingerprint", "zero depth with non-zero parent fingerprint"),
    ("xprv9s21ZrQH4r4TsiLvyLXqM9P7k1K3EYhA1kkD6xuquB5i39AU8KF42acDyL3qsDbU9NmZn6MsGSUYZEsuoePmjzsB3eFKSUEh3Gu1N3cqVUN",
     "zero depth with non-zero index", "zero depth with non-zero index"),
    ("xpub661MyMwAuDcm6CRQ5N4qiHKrJ39Xe1R1NyfouMKTTWcguwVcfrZJaNvhpebzGerh7gucBvzEQWRugZDuDXjNDRmXzSZe4c7mnTK97pTvGS8",
     "zero depth with non-zero index", "zero depth with non-zero index"),
    ("DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHGMQzT7ayAmfo4z3gY5KfbrZWZ6St24UVf2Qgo6oujFktLHdHY4",
     "unknown extended key version", "unknown extended key version"),
    ("DMwo58pR1QLEFihHiXPVykYB6fJmsTeHvyTp7hRThAtCX8CvYzgPcn8XnmdfHPmHJiEDXkTiJTVV9rHEBUem2mwVbbNfvT2MTcAqj3nesx8uBf9",
     "unknown extended key version", "unknown extended key version"),
    ("xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzF93Y5wvzdUayhgkkFoicQZcP3y52uPPxFnfoLZB21Teqt1VvEHx",
     "private key 0 not in 1..n-1", r"private key not in 1\.\.n-1"),
    ("xprv9s21ZrQH143K24Mfq5zL5MhWK9hUhhGbd45hLXo2Pq2oqzMMo63oStZzFAzHGBP2UuGCqWLTAPLcMtD5SDKr24z3aiUvKr9bJpdrcLg1y3G",
     "private key n not in 1..n-1", r"private key not in 1\.\.n-1"),
    ("xpub661MyMwAqRbcEYS8w7XLSVeEsBXy79zSzH1J8vCdxAZningWLdN3zgtU6Q5JXayek4PRsn35jii4veMimro1xefsM58PgBMrvdYre8QyULY",
     "invalid pubkey 020000000000000000000000000000000000000000000000000000000000000007",
     "not a point on the curve"),
    ("xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHL",
     "invalid checksum", "checksum"),
]


@pytest.mark.parametrize("seed,steps", VECTORS, ids=["vector1", "vector2", "vector3", "vector4"])
def test_bip32_vectors(seed, steps):
    master = ExtendedPrivateKey.from_seed(bytes.fromhex(seed))
    prev_priv = prev_pub = None
    for path, xpub, xprv in steps:
        k = master.derive(path)
        assert k.to_string() == xprv, path
        assert k.public().to_string() == xpub, path
        # parsing gives back the same key, and serializes to the same bytes
        parsed = ExtendedPrivateKey.parse(xprv)
        assert parsed == k
        assert parsed.serialize() == k.serialize()
        assert len(k.serialize()) == 78
        ppub = ExtendedPublicKey.parse(xpub)
        assert ppub == k.public()
        assert str(ppub) == xpub
        # step by step from the parent, and CKDpub == N(CKDpriv) on normal steps
        indices = parse_path(path)
        if indices:
            last = indices[-1]
            assert prev_priv.derive_child(last) == k
            if last < HARDENED:
                assert prev_pub.derive_child(last) == k.public()
            else:
                with pytest.raises(Bip32Error):
                    prev_pub.derive_child(last)
            assert k.parent_fingerprint == prev_priv.fingerprint
            assert k.depth == len(indices)
            assert k.child_number == last
        prev_priv, prev_pub = k, ExtendedPublicKey.parse(xpub)


@pytest.mark.parametrize("key,reason,match", INVALID, ids=[f"{i}-{r}" for i, (_, r, _) in enumerate(INVALID)])
def test_bip32_vector5_rejected(key, reason, match):
    with pytest.raises(Bip32Error, match=match):
        parse_extended_key(key)


def test_fingerprint_and_identifier():
    m = ExtendedPrivateKey.from_seed(bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
    # BIP32 vector 1: m's identifier 3442193e...; fingerprint 3442193e
    assert m.fingerprint.hex() == "3442193e"
    assert m.public().identifier.hex() == "3442193e1bb70916e914552172cd4e2dbc9df811"
    assert m.derive("m/0'").parent_fingerprint.hex() == "3442193e"


def test_public_derivation_of_deeper_normal_path():
    m = ExtendedPrivateKey.from_seed(bytes(range(32)))
    acct = m.derive("m/84h/1h/0h")
    assert acct.public().derive("0/7") == acct.derive("0/7").public()
    assert acct.public().derive([1, 2, 3]) == acct.derive([1, 2, 3]).public()


def test_paths():
    assert parse_path("m") == []
    assert parse_path("") == []
    assert parse_path("m/86'/0'/0'/0/0") == [86 + HARDENED, HARDENED, HARDENED, 0, 0]
    assert parse_path("86h/0H/1") == [86 + HARDENED, HARDENED, 1]
    assert parse_path([1, HARDENED + 2]) == [1, HARDENED + 2]
    assert format_path([86 + HARDENED, 1]) == "m/86h/1"
    assert format_path(parse_path("m/0'/1"), "'") == "m/0'/1"
    for bad in ["m/", "m/x", "m/1/-2", "m/2147483648", "m/01", "m/1h'", "m//1", "n/1"]:
        with pytest.raises(Bip32Error):
            parse_path(bad)
    with pytest.raises(Bip32Error):
        parse_path([2**32])


def test_testnet_versions_and_network_names():
    seed = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    main = ExtendedPrivateKey.from_seed(seed)
    for net in ("testnet", "signet", "regtest"):
        t = ExtendedPrivateKey.from_seed(seed, network=net)
        s = t.to_string()
        assert s.startswith("tprv")
        assert t.public().to_string().startswith("tpub")
        # same key material as the xprv, only the version differs
        assert t.serialize()[4:] == main.serialize()[4:]
        parsed = parse_extended_key(s)
        assert parsed.secret == t.secret and parsed.network == "testnet"
        assert ExtendedPublicKey.parse(t.public().to_string()).pubkey == main.pubkey
    with pytest.raises(Bip32Error):
        ExtendedPrivateKey.from_seed(seed, network="litecoin")


def test_wrong_kind_and_bad_input():
    seed = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    m = ExtendedPrivateKey.from_seed(seed)
    with pytest.raises(Bip32Error, match="public"):
        ExtendedPrivateKey.parse(m.public().to_string())
    with pytest.raises(Bip32Error, match="private"):
        ExtendedPublicKey.parse(m.to_string())
    with pytest.raises(Bip32Error, match="seed"):
        ExtendedPrivateKey.from_seed(b"\x00" * 15)
    with pytest.raises(Bip32Error, match="seed"):
        ExtendedPrivateKey.from_seed(b"\x00" * 65)
    with pytest.raises(Bip32Error, match="78 bytes"):
        ExtendedPrivateKey.from_bytes(m.serialize()[:-1])
    with pytest.raises(Bip32Error):
        parse_extended_key("not base58 0OIl")
    with pytest.raises(Bip32Error):
        m.derive_child(2**32)
    assert "secret" not in repr(m) and m.secret.hex() not in repr(m)
