"""Tokens: this package's wire format (tokens.py) through the shared decode pipeline
(codec.py): allow-list, canonical base64url, the decoded-token cache, time and type checks."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import orjson
import pytest
from jwcrypto import jwe, jwk, jws

from asgi_jwt_session.codec import b64url_decode, b64url_encode, is_canonical_b64url
from asgi_jwt_session.errors import ExpiredToken, InvalidToken, UnknownKey
from asgi_jwt_session.keys import Keyring
from asgi_jwt_session.tokens import TokenCodec
from tests.conftest import OTHER_SECRET, SECRET, Clock
from tests.tampering import lenient_b64url

NOW = 1_800_000_000


def make_claims(**extra: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "u1", "role": "USER", "jti": "j1", "iat": NOW, "exp": NOW + 3600,
        "auth_time": NOW, "data": {"cart": [1, 2.5, "x", None, True]},
    }
    claims.update(extra)
    return claims


def encrypt(key: jwk.JWK, header: dict[str, Any], plaintext: bytes) -> str:
    """A correctly encrypted compact JWE with any protected header, made by jwcrypto."""
    token = jwe.JWE(plaintext, protected=json.dumps(header))
    token.add_recipient(key)
    compact: str = token.serialize(compact=True)
    return compact


def jwcrypto_decrypts(token: str, key: jwk.JWK) -> bytes:
    """What plain jwcrypto makes of a token (the control: the attack is not a mere failure)."""
    reader = jwe.JWE()
    reader.deserialize(token, key=key)
    plaintext: bytes = reader.plaintext
    return plaintext


def with_header(token: str, header: dict[str, Any]) -> str:
    """The token with its protected header replaced (the rest of the compact form kept)."""
    return ".".join([b64url_encode(json.dumps(header).encode()), *token.split(".")[1:]])


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(SECRET)


# -- round trip -------------------------------------------------------------------------


def test_round_trip_and_header(codec: TokenCodec) -> None:
    claims = make_claims()
    token = codec.encode(claims)
    assert codec.decode(token, now=NOW) == claims
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header == {"alg": "dir", "enc": "A256GCM", "kid": codec.keyring.current_kid}
    assert token.split(".")[1] == ""  # dir: no encrypted key
    assert codec.encode(claims) != token  # a fresh IV each time
    assert codec.is_current(token)


def test_decode_returns_fresh_objects(codec: TokenCodec) -> None:
    claims = make_claims(groups=["staff"], profile={"name": "Ann"})
    token = codec.encode(claims)
    first = codec.decode(token, now=NOW)
    first["data"]["cart"].append("tampered")
    first["groups"].append("admins")
    first["profile"]["name"] = "Eve"
    first["role"] = "ADMIN"
    second = codec.decode(token, now=NOW)  # a cache hit
    assert second == claims
    assert second is not first


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        TokenCodec(SECRET, cache_size=-1)
    with pytest.raises(ValueError, match="leeway"):
        TokenCodec(SECRET, leeway=-1)


# -- allow-list ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"zip": "DEF"},
        {"crit": ["kid"]},
        {"jku": "https://evil.example/jwks.json"},
        {"x5u": "https://evil.example/cert.pem"},
        {"x-custom": "anything"},
    ],
    ids=lambda extra: next(iter(extra)),
)
def test_header_outside_allow_list_refused_before_decryption(
    codec: TokenCodec, decrypt_calls: list[str], extra: dict[str, Any]
) -> None:
    header = {"alg": "dir", "enc": "A256GCM", "kid": codec.keyring.current_kid, **extra}
    plaintext = orjson.dumps(make_claims())
    token = encrypt(codec.keyring.current, header, plaintext)
    # jwcrypto alone would take it: only the allow-list stands in the way.
    assert jwcrypto_decrypts(token, codec.keyring.current) == plaintext
    with pytest.raises(InvalidToken, match="allow-list"):
        codec.decode(token, now=NOW)
    assert decrypt_calls == []
    assert token not in codec.cache


@pytest.mark.parametrize(
    "alg, enc",
    [
        ("none", "A256GCM"),
        ("RSA-OAEP", "A256GCM"),
        ("RSA-OAEP-256", "A256GCM"),
        ("RSA1_5", "A256GCM"),
        ("ECDH-ES", "A256GCM"),
        ("ECDH-ES+A256KW", "A256GCM"),
        ("A256KW", "A256GCM"),
        ("A256GCMKW", "A256GCM"),
        ("PBES2-HS256+A128KW", "A256GCM"),
        ("HS256", "A256GCM"),
        ("DIR", "A256GCM"),
        ("dir", "A128GCM"),
        ("dir", "A256CBC-HS512"),
        ("dir", None),
        (None, "A256GCM"),
        ("dir", ["A256GCM"]),
    ],
)
def test_algorithms_outside_allow_list_refused_before_decryption(
    codec: TokenCodec, decrypt_calls: list[str], alg: Any, enc: Any
) -> None:
    header: dict[str, Any] = {"kid": codec.keyring.current_kid}
    if alg is not None:
        header["alg"] = alg
    if enc is not None:
        header["enc"] = enc
    token = with_header(codec.encode(make_claims()), header)
    with pytest.raises(InvalidToken, match="algorithm"):
        codec.decode(token, now=NOW)
    assert decrypt_calls == []


@pytest.mark.parametrize("alg", ["A256KW", "A256GCMKW"])
def test_key_wrapping_with_the_real_key_refused(
    codec: TokenCodec, decrypt_calls: list[str], alg: str
) -> None:
    """The symmetric key used for key wrapping: jwcrypto decrypts it, we do not."""
    header = {"alg": alg, "enc": "A256GCM", "kid": codec.keyring.current_kid}
    plaintext = orjson.dumps(make_claims())
    token = encrypt(codec.keyring.current, header, plaintext)
    assert jwcrypto_decrypts(token, codec.keyring.current) == plaintext
    with pytest.raises(InvalidToken):
        codec.decode(token, now=NOW)
    assert decrypt_calls == []


def test_unsecured_and_signed_tokens_refused(codec: TokenCodec) -> None:
    payload = b64url_encode(orjson.dumps(make_claims()))
    none_jwt = b64url_encode(b'{"alg":"none"}') + "." + payload + "."
    exported = codec.keyring.current.export(as_dict=True)
    key = jwk.JWK(kty="oct", k=exported["k"])  # the real key bytes, as an HMAC key
    signed = jws.JWS(orjson.dumps(make_claims()))
    signed.add_signature(key, alg="HS256", protected=json.dumps({"alg": "HS256"}))
    for token in (none_jwt, signed.serialize(compact=True)):
        with pytest.raises(InvalidToken):
            codec.decode(token, now=NOW)


def test_header_not_an_object_or_not_json(codec: TokenCodec, decrypt_calls: list[str]) -> None:
    rest = codec.encode(make_claims()).split(".")[1:]
    for raw in (b"[1,2]", b'"dir"', b"{not json", b"\xff\xfe{}", b"null"):
        token = ".".join([b64url_encode(raw), *rest])
        with pytest.raises(InvalidToken):
            codec.decode(token, now=NOW)
    assert decrypt_calls == []


# -- keys ----------------------------------------------------------------------------------


def test_unknown_kid(codec: TokenCodec, decrypt_calls: list[str]) -> None:
    foreign = TokenCodec(OTHER_SECRET).encode(make_claims())
    with pytest.raises(UnknownKey):
        codec.decode(foreign, now=NOW)
    for kid in (None, 7, ["x"], {"k": 1}, "", "nope"):
        header: dict[str, Any] = {"alg": "dir", "enc": "A256GCM"}
        if kid is not None:
            header["kid"] = kid
        with pytest.raises(UnknownKey):
            codec.decode(with_header(foreign, header), now=NOW)
    assert decrypt_calls == []


def test_wrong_key_under_our_kid(codec: TokenCodec) -> None:
    """Our kid, another key: it gets as far as decryption and fails there."""
    other = Keyring(OTHER_SECRET).current
    header = {"alg": "dir", "enc": "A256GCM", "kid": codec.keyring.current_kid}
    token = encrypt(other, header, orjson.dumps(make_claims()))
    with pytest.raises(InvalidToken, match="decrypt") as info:
        codec.decode(token, now=NOW)
    assert not isinstance(info.value, UnknownKey)
    assert token not in codec.cache


# -- canonical base64url ---------------------------------------------------------------------

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def spellings(part: str) -> list[str]:
    """Every other spelling of ``part`` that decodes to the same bytes (non-canonical)."""
    if len(part) % 4 in (0, 1):
        return []
    return [
        part[:-1] + char
        for char in ALPHABET
        if char != part[-1] and b64url_decode(part[:-1] + char) == b64url_decode(part)
    ]


def test_is_canonical_b64url() -> None:
    rng = random.Random(1)
    for size in range(40):
        data = rng.randbytes(size)
        part = b64url_encode(data)
        assert is_canonical_b64url(part)
        variants = spellings(part)
        assert len(variants) == {0: 0, 1: 15, 2: 3}[size % 3]
        assert not any(is_canonical_b64url(variant) for variant in variants)
    assert not is_canonical_b64url("A")  # a length no base64 has


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_non_canonical_spellings_refused_and_never_cached(
    codec: TokenCodec, padding: int
) -> None:
    # The padding moves the ciphertext through every length class (mod 3).
    token = codec.encode(make_claims(data={"p": "x" * padding}))
    expected = codec.decode(token, now=NOW)
    cached = dict(codec.cache)
    parts = token.split(".")
    variants = [
        ".".join([*parts[:index], variant, *parts[index + 1:]])
        for index, part in enumerate(parts)
        for variant in spellings(part)
    ]
    assert variants  # the tag alone (16 bytes) always has some
    # Each is the same token to a lenient reader (jwcrypto before 1.6.2 took them):
    # spelled canonically again, it is the token itself.
    for variant in variants:
        respelled = [b64url_encode(lenient_b64url(part)) for part in variant.split(".")]
        assert ".".join(respelled) == token
    for variant in variants:
        with pytest.raises(InvalidToken, match="canonical"):
            codec.decode(variant, now=NOW)
    assert codec.cache == cached
    assert codec.decode(token, now=NOW) == expected


def test_other_base64_forms_refused(codec: TokenCodec) -> None:
    token = codec.encode(make_claims())
    header, empty, iv, ciphertext, tag = token.split(".")
    standard = token.replace("-", "+").replace("_", "/")
    forms = [
        f"{header}==.{empty}.{iv}.{ciphertext}.{tag}",
        f"{header}.{empty}.{iv}.{ciphertext}.{tag}==",
        f"{header}.{empty}.{iv}.{ciphertext} .{tag}",
        f" {token}",
        f"{token}\n",
        f"{header}.{empty}.{iv}.{ciphertext}!.{tag}",
        f"{header}.{empty}.{iv}.{ciphertext}.{tag}.",
    ]
    if standard != token:
        forms.append(standard)
    for form in forms:
        with pytest.raises(InvalidToken):
            codec.decode(form, now=NOW)
    assert list(codec.cache) == []


# -- cache -----------------------------------------------------------------------------------


def test_cache_hit_skips_decryption(codec: TokenCodec, decrypt_calls: list[str]) -> None:
    token = codec.encode(make_claims())
    for _ in range(5):
        assert codec.decode(token, now=NOW) == make_claims()
    assert decrypt_calls == [token]


def test_cache_is_bounded_and_lru(decrypt_calls: list[str]) -> None:
    codec = TokenCodec(SECRET, cache_size=3)
    tokens = [codec.encode(make_claims(jti=f"j{i}")) for i in range(6)]
    for token in tokens:
        codec.decode(token, now=NOW)
    assert list(codec.cache) == tokens[3:]
    codec.decode(tokens[3], now=NOW)  # now the most recently used
    codec.decode(tokens[0], now=NOW)  # evicts tokens[4], the least recently used
    assert list(codec.cache) == [tokens[5], tokens[3], tokens[0]]
    decrypt_calls.clear()
    codec.decode(tokens[3], now=NOW)
    assert decrypt_calls == []
    codec.decode(tokens[4], now=NOW)
    assert decrypt_calls == [tokens[4]]
    assert len(codec.cache) == 3


def test_cache_size_zero_turns_it_off(decrypt_calls: list[str]) -> None:
    codec = TokenCodec(SECRET, cache_size=0)
    token = codec.encode(make_claims())
    for _ in range(3):
        assert codec.decode(token, now=NOW) == make_claims()
    assert len(codec.cache) == 0
    assert decrypt_calls == [token] * 3


def test_cache_hit_still_checks_the_time(codec: TokenCodec) -> None:
    token = codec.encode(make_claims(exp=NOW + 60, nbf=NOW))
    assert codec.decode(token, now=NOW)
    assert token in codec.cache
    with pytest.raises(ExpiredToken):
        codec.decode(token, now=NOW + 60 + codec.leeway + 1)
    with pytest.raises(InvalidToken, match="nbf"):
        codec.decode(token, now=NOW - codec.leeway - 1)
    assert codec.decode(token, now=NOW + 60)


def test_failed_tokens_are_not_cached(codec: TokenCodec) -> None:
    token = codec.encode(make_claims())
    tag = bytearray(b64url_decode(token.rsplit(".", 1)[1]))
    tag[0] ^= 1
    bad = token.rsplit(".", 1)[0] + "." + b64url_encode(bytes(tag))
    for _ in range(2):
        with pytest.raises(InvalidToken):
            codec.decode(bad, now=NOW)
    assert list(codec.cache) == []


def test_expired_token_may_sit_in_cache_but_never_comes_back(codec: TokenCodec) -> None:
    token = codec.encode(make_claims(exp=NOW - 3600, iat=NOW - 7200, auth_time=NOW - 7200))
    for _ in range(2):
        with pytest.raises(ExpiredToken):
            codec.decode(token, now=NOW)


def test_no_state_leaks_between_calls(decrypt_calls: list[str]) -> None:
    """A failure after a success returns nothing of the success."""
    codec = TokenCodec(SECRET, cache_size=0)
    first = codec.encode(make_claims(jti="first"))
    second = codec.encode(make_claims(jti="second"))
    header, empty, iv, ciphertext, tag = second.split(".")
    bad_tag = bytearray(b64url_decode(tag))
    bad_tag[-1] ^= 0x80
    broken = [
        ".".join([header, empty, iv, ciphertext, b64url_encode(bytes(bad_tag))]),
        ".".join([header, empty, first.split(".")[2], ciphertext, tag]),  # iv of another
        ".".join([header, empty, iv, first.split(".")[3], tag]),  # ciphertext of another
    ]
    for bad in broken:
        assert codec.decode(first, now=NOW)["jti"] == "first"
        with pytest.raises(InvalidToken, match="decrypt"):
            codec.decode(bad, now=NOW)
        assert codec.decode(second, now=NOW)["jti"] == "second"
    assert len(decrypt_calls) == 9


# -- time and claims --------------------------------------------------------------------------


def test_leeway_boundaries() -> None:
    codec = TokenCodec(SECRET, leeway=10)
    expiring = codec.encode(make_claims(exp=NOW))
    assert codec.decode(expiring, now=NOW + 10)
    with pytest.raises(ExpiredToken):
        codec.decode(expiring, now=NOW + 11)
    future_nbf = codec.encode(make_claims(nbf=NOW + 10))
    assert codec.decode(future_nbf, now=NOW)
    with pytest.raises(InvalidToken, match="nbf"):
        codec.decode(future_nbf, now=NOW - 1)
    future_iat = codec.encode(make_claims(iat=NOW + 10))
    assert codec.decode(future_iat, now=NOW)
    with pytest.raises(InvalidToken, match="iat"):
        codec.decode(future_iat, now=NOW - 1)


def test_zero_leeway() -> None:
    codec = TokenCodec(SECRET, leeway=0)
    token = codec.encode(make_claims(exp=NOW))
    assert codec.decode(token, now=NOW)
    with pytest.raises(ExpiredToken):
        codec.decode(token, now=NOW + 1)
    with pytest.raises(InvalidToken, match="iat"):
        codec.decode(codec.encode(make_claims(iat=NOW + 1)), now=NOW)


def test_decode_uses_the_clock_by_default(codec: TokenCodec, clock: Clock) -> None:
    clock.now = NOW
    token = codec.encode(make_claims(exp=NOW + 60))
    assert codec.decode(token) == make_claims(exp=NOW + 60)
    clock.now = NOW + 60 + codec.leeway + 1
    with pytest.raises(ExpiredToken):
        codec.decode(token)


@pytest.mark.parametrize(
    "name, value",
    [
        ("sub", 1), ("sub", None), ("sub", ["u1"]),
        ("role", 1), ("role", None), ("role", {"name": "ADMIN"}),
        ("jti", 5), ("jti", None),
        ("ver", "1"), ("ver", True), ("ver", 1.0), ("ver", None),
        ("iat", 1.5), ("iat", "now"), ("iat", False), ("iat", None),
        ("exp", "tomorrow"), ("exp", True), ("exp", float(NOW + 3600)), ("exp", None),
        ("nbf", "x"), ("nbf", [NOW]), ("nbf", None),
        ("chk", 1.0), ("chk", "x"), ("chk", None),
        ("auth_time", "x"), ("auth_time", True), ("auth_time", None),
        ("data", []), ("data", "x"), ("data", 1), ("data", None),
    ],
)
def test_registered_claims_of_the_wrong_type(codec: TokenCodec, name: str, value: Any) -> None:
    with pytest.raises(InvalidToken):
        codec.decode(codec.encode(make_claims(**{name: value})), now=NOW)


@pytest.mark.parametrize("missing", ["exp", "role"])
def test_required_claims(codec: TokenCodec, missing: str) -> None:
    claims = make_claims()
    del claims[missing]
    with pytest.raises(InvalidToken):
        codec.decode(codec.encode(claims), now=NOW)


def test_anonymous_and_application_claims(codec: TokenCodec) -> None:
    anonymous = {"jti": "j", "iat": NOW, "exp": NOW + 60, "data": {"theme": "dark"}}
    assert codec.decode(codec.encode(anonymous), now=NOW) == anonymous
    extra = make_claims(email="a@example.com", groups=["a", "b"], n=1.5, flag=None,
                        ver=2**62, chk=NOW)
    assert codec.decode(codec.encode(extra), now=NOW) == extra


@pytest.mark.parametrize(
    "plaintext", [b"[1,2]", b'"a string"', b"42", b"null", b"not json", b"\xff\xfe", b"{"]
)
def test_payload_not_a_json_object(codec: TokenCodec, plaintext: bytes) -> None:
    header = {"alg": "dir", "enc": "A256GCM", "kid": codec.keyring.current_kid}
    token = encrypt(codec.keyring.current, header, plaintext)
    with pytest.raises(InvalidToken, match="payload"):
        codec.decode(token, now=NOW)


def test_size_and_type_limits() -> None:
    codec = TokenCodec(SECRET, max_token_size=400)
    small = codec.encode(make_claims())
    assert len(small) <= 400
    assert codec.decode(small, now=NOW)
    big = codec.encode(make_claims(data={"blob": "x" * 400}))
    with pytest.raises(InvalidToken, match="large"):
        codec.decode(big, now=NOW)
    with pytest.raises(InvalidToken):
        codec.decode(small.encode(), now=NOW)  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        codec.decode("", now=NOW)


# -- threads ----------------------------------------------------------------------------------


def test_threads_share_a_codec_safely() -> None:
    codec = TokenCodec(SECRET, cache_size=8)  # small: constant eviction under contention
    expected = {codec.encode(make_claims(jti=f"j{i}")): f"j{i}" for i in range(40)}
    tokens = list(expected)
    bad = tokens[0][:-2] + ("AA" if not tokens[0].endswith("AA") else "QA")
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(150):
                token = rng.choice(tokens)
                assert codec.decode(token, now=NOW)["jti"] == expected[token]
                if rng.random() < 0.1:
                    with pytest.raises(InvalidToken):
                        codec.decode(bad, now=NOW)
                if rng.random() < 0.05:
                    fresh = codec.encode(make_claims(jti=f"t{seed}"))
                    assert codec.decode(fresh, now=NOW)["jti"] == f"t{seed}"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(codec.cache) <= 8
