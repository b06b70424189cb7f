"""AuthJSCodec against the real @auth/core: tokens and cookie chunks both ways."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from jwcrypto import jwe, jwk
from jwcrypto.common import base64url_decode, base64url_encode

from asgi_jwt_session.authjs import (
    AUTHJS_CHUNK_SIZE,
    AuthJSCodec,
    _derive_key,
    authjs_cookie_name,
    join_authjs_cookie,
    split_authjs_cookie,
)
from asgi_jwt_session.tokens import ExpiredToken, InvalidToken, UnknownKey
from tests.authjs_node import AuthJS, AuthJSError, authjs_fixture  # noqa: F401

SECRET = "a-very-secret-auth-secret-for-tests-0123456789"
OLD_SECRET = "the-previous-secret-that-is-being-rotated-out"
PLAIN = "authjs.session-token"
SECURE = "__Secure-authjs.session-token"
USER: dict[str, Any] = {
    "sub": "user-1",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "picture": "https://example.com/ada.png",
    "role": "admin",
}


def test_cookie_names() -> None:
    assert authjs_cookie_name(False) == PLAIN
    assert authjs_cookie_name(True) == SECURE


@pytest.mark.parametrize("salt", [PLAIN, SECURE])
def test_decodes_authjs_token(authjs: AuthJS, salt: str) -> None:
    token = authjs.encode(USER, SECRET, salt)
    claims = AuthJSCodec(SECRET, salt=salt).decode(token)
    assert {k: claims[k] for k in USER} == USER
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600
    assert isinstance(claims["jti"], str)


def test_kid_matches_authjs(authjs: AuthJS) -> None:
    ours = AuthJSCodec(SECRET).encode({"sub": "x"})
    theirs = authjs.encode({"sub": "x"}, SECRET, PLAIN)

    def header(token: str) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(base64url_decode(token.split(".")[0]))
        return result

    assert header(ours) == header(theirs)
    assert header(ours)["enc"] == "A256CBC-HS512"


def test_decodes_authjs_token_made_with_old_secret(authjs: AuthJS) -> None:
    token = authjs.encode(USER, OLD_SECRET, PLAIN)
    claims = AuthJSCodec([SECRET, OLD_SECRET]).decode(token)
    assert claims["sub"] == "user-1"
    with pytest.raises(UnknownKey):
        AuthJSCodec(SECRET).decode(token)


def test_decodes_a256gcm_token(authjs: AuthJS) -> None:
    token = authjs.call("encodeGcm", token=USER, secret=SECRET, salt=PLAIN)
    assert authjs.decode(token, SECRET, PLAIN)["sub"] == "user-1"  # Auth.js accepts it too
    assert AuthJSCodec([OLD_SECRET, SECRET]).decode(token)["role"] == "admin"


def test_big_token_chunks_like_authjs(authjs: AuthJS) -> None:
    big = {**USER, "groups": [f"group-{i:05d}" for i in range(700)]}
    token = authjs.encode(big, SECRET, SECURE)
    assert len(token) > 2 * AUTHJS_CHUNK_SIZE
    chunks = split_authjs_cookie(SECURE, token)
    assert chunks == [tuple(c) for c in authjs.call("chunk", name=SECURE, value=token)]
    assert [name for name, _ in chunks] == [f"{SECURE}.{i}" for i in range(len(chunks))]
    # Browsers send cookies in any order; 10 would sort before 2 as text.
    cookies = dict(reversed(chunks)) | {"other": "x"}
    joined = join_authjs_cookie(cookies, SECURE)
    assert joined == token == authjs.call("join", name=SECURE, cookies=cookies)
    assert AuthJSCodec(SECRET, salt=SECURE).decode(joined)["groups"][-1] == "group-00699"


@pytest.mark.parametrize(
    "size", [1, AUTHJS_CHUNK_SIZE, AUTHJS_CHUNK_SIZE + 1, 2 * AUTHJS_CHUNK_SIZE, 10**5]
)
def test_split_boundaries_match_authjs(authjs: AuthJS, size: int) -> None:
    value = "abcdefghij" * (size // 10) + "x" * (size % 10)
    expected = authjs.call("chunk", name=PLAIN, value=value)
    assert split_authjs_cookie(PLAIN, value) == [tuple(c) for c in expected]
    assert join_authjs_cookie(dict(split_authjs_cookie(PLAIN, value)), PLAIN) == value


def test_join_edge_cases() -> None:
    assert join_authjs_cookie({}, PLAIN) is None
    assert join_authjs_cookie({PLAIN: ""}, PLAIN) is None
    assert join_authjs_cookie({PLAIN: "tok"}, PLAIN) == "tok"
    assert join_authjs_cookie({SECURE: "tok"}, PLAIN) is None
    assert join_authjs_cookie({f"{PLAIN}.1": "b", f"{PLAIN}.0": "a"}, PLAIN) == "ab"
    assert join_authjs_cookie({f"{PLAIN}.0": "a", f"{PLAIN}.2": "c"}, PLAIN) is None
    assert join_authjs_cookie({f"{PLAIN}.x": "a", f"{PLAIN}.-1": "b"}, PLAIN) is None


def test_authjs_decodes_our_token(authjs: AuthJS) -> None:
    token = AuthJSCodec(SECRET, salt=SECURE).encode(USER)
    claims = authjs.decode(token, SECRET, SECURE)
    assert {k: claims[k] for k in USER} == USER
    assert claims["exp"] - claims["iat"] == 30 * 24 * 3600
    assert len(claims["jti"]) == 36


def test_authjs_decodes_our_token_with_custom_role_claim(authjs: AuthJS) -> None:
    codec = AuthJSCodec([SECRET, OLD_SECRET], role_claim="app_role", max_age=600)
    token = codec.encode(USER)
    claims = authjs.decode(token, [OLD_SECRET, SECRET], PLAIN)
    assert claims["app_role"] == "admin" and "role" not in claims
    assert claims["exp"] - claims["iat"] == 600
    # and back: Auth.js's token with app_role reads as role here
    back = codec.decode(authjs.encode(claims, SECRET, PLAIN))
    assert back["role"] == "admin" and "app_role" not in back


def test_authjs_refuses_token_from_old_secret_only(authjs: AuthJS) -> None:
    token = AuthJSCodec(SECRET).encode(USER)
    with pytest.raises(AuthJSError, match="no matching decryption secret"):
        authjs.decode(token, OLD_SECRET, PLAIN)


def test_wrong_secret_is_refused_with_hint(authjs: AuthJS) -> None:
    token = authjs.encode(USER, OLD_SECRET, PLAIN)
    with pytest.raises(UnknownKey, match="secret") as info:
        AuthJSCodec(SECRET).decode(token)
    assert "AUTH_SECRET" in str(info.value) and SECURE in str(info.value)


def test_wrong_salt_is_refused_with_hint(authjs: AuthJS) -> None:
    token = authjs.encode(USER, SECRET, SECURE)
    with pytest.raises(UnknownKey) as info:
        AuthJSCodec(SECRET, salt=PLAIN).decode(token)
    message = str(info.value)
    assert f"salt={SECURE!r}" in message and "cookie name" in message


def test_expired_token_is_refused(authjs: AuthJS) -> None:
    token = authjs.encode(USER, SECRET, PLAIN, maxAge=-20)
    with pytest.raises(ExpiredToken, match="expired"):
        AuthJSCodec(SECRET).decode(token)
    # within the 15 s tolerance it still passes, like Auth.js
    token = authjs.encode(USER, SECRET, PLAIN, maxAge=-5)
    assert AuthJSCodec(SECRET).decode(token)["sub"] == "user-1"


def test_time_claims() -> None:
    codec = AuthJSCodec(SECRET)
    now = int(time.time())
    with pytest.raises(InvalidToken, match="nbf"):
        codec.decode(codec.encode({"nbf": now + 60}))
    with pytest.raises(InvalidToken, match="iat"):
        codec.decode(codec.encode({"iat": now + 60}))
    with pytest.raises(InvalidToken, match="number"):
        codec.decode(codec.encode({"exp": "tomorrow"}))
    assert codec.decode(codec.encode({"nbf": now + 10, "iat": now + 10}))


def tamper(token: str, index: int) -> str:
    parts = token.split(".")
    raw = bytearray(base64url_decode(parts[index]))
    raw[len(raw) // 2] ^= 1
    parts[index] = base64url_encode(bytes(raw))
    return ".".join(parts)


@pytest.mark.parametrize("index", [0, 2, 3, 4], ids=["header", "iv", "ciphertext", "tag"])
def test_tampered_token_is_refused(authjs: AuthJS, index: int) -> None:
    token = authjs.encode(USER, SECRET, PLAIN)
    with pytest.raises(InvalidToken):
        AuthJSCodec(SECRET).decode(tamper(token, index))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b.c",
        "not a token at all",
        "e30.AA.AA.AA.AA.AA",
        '{"protected":"e30","iv":"","ciphertext":"","tag":""}',
    ],
)
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        AuthJSCodec(SECRET).decode(token)


def test_non_canonical_base64url_is_refused() -> None:
    token = AuthJSCodec(SECRET).encode(USER)
    parts = token.split(".")
    # the tag is 32 bytes: its last base64url character carries 2 unused bits
    last = parts[4][-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    parts[4] = parts[4][:-1] + alphabet[alphabet.index(last) ^ 1]
    variant = ".".join(parts)
    assert base64url_decode(variant.split(".")[4]) == base64url_decode(token.split(".")[4])
    with pytest.raises(InvalidToken, match="canonical"):
        AuthJSCodec(SECRET).decode(variant)


def make_token(header: dict[str, Any], key: jwk.JWK, payload: bytes = b"{}") -> str:
    token = jwe.JWE(payload, protected=orjson.dumps(header).decode())
    token.allowed_algs = [header["alg"], header["enc"]]
    token.add_recipient(key)
    return str(token.serialize(compact=True))


def test_disallowed_headers_are_refused_before_decrypting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key64 = _derive_key(SECRET, PLAIN, "A256CBC-HS512")
    key32 = _derive_key(SECRET, PLAIN, "A256GCM")
    exp = orjson.dumps({"exp": int(time.time()) + 60})
    cases: dict[str, tuple[dict[str, Any], jwk.JWK]] = {
        "enc": ({"alg": "dir", "enc": "A128CBC-HS256"}, key32),
        "alg": ({"alg": "A256KW", "enc": "A256CBC-HS512"}, key32),
        "zip": ({"alg": "dir", "enc": "A256CBC-HS512", "zip": "DEF"}, key64),
        "crit": ({"alg": "dir", "enc": "A256CBC-HS512", "crit": ["kid"], "kid": "k"}, key64),
    }
    tokens = {what: make_token(header, key, exp) for what, (header, key) in cases.items()}
    # sanity: each one decrypts with jwcrypto; only the header allow-list refuses it
    for what, token in tokens.items():
        obj = jwe.JWE()
        obj.allowed_algs = ["dir", "A256KW", "A128CBC-HS256", "A256CBC-HS512"]
        obj.deserialize(token, cases[what][1])
        assert orjson.loads(obj.payload) == orjson.loads(exp)
    calls: list[object] = []
    monkeypatch.setattr(jwe.JWE, "decrypt", lambda self, key, *a: calls.append(key))
    codec = AuthJSCodec(SECRET)
    for what, token in tokens.items():
        with pytest.raises(InvalidToken, match=what):
            codec.decode(token)
    assert calls == []


def test_no_kid_tries_each_secret() -> None:
    key = _derive_key(OLD_SECRET, PLAIN, "A256CBC-HS512")
    payload = orjson.dumps({"sub": "u", "exp": int(time.time()) + 60})
    token = make_token({"alg": "dir", "enc": "A256CBC-HS512"}, key, payload)
    assert AuthJSCodec([SECRET, OLD_SECRET]).decode(token)["sub"] == "u"
    with pytest.raises(UnknownKey, match="no kid"):
        AuthJSCodec(SECRET).decode(token)


def test_payload_must_be_an_object_with_exp() -> None:
    key = _derive_key(SECRET, PLAIN, "A256CBC-HS512")
    header = {"alg": "dir", "enc": "A256CBC-HS512"}
    with pytest.raises(InvalidToken, match="object"):
        AuthJSCodec(SECRET).decode(make_token(header, key, b"[1]"))
    with pytest.raises(InvalidToken, match="JSON"):
        AuthJSCodec(SECRET).decode(make_token(header, key, b"\xff"))
    with pytest.raises(InvalidToken, match="exp"):
        AuthJSCodec(SECRET).decode(make_token(header, key, b'{"sub": "u"}'))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        AuthJSCodec([])
    with pytest.raises(ValueError):
        AuthJSCodec("")
    with pytest.raises(ValueError):
        split_authjs_cookie(PLAIN, "caf\u00e9")
