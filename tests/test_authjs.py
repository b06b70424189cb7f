"""Auth.js: AuthJSCodec and AuthJSFormat through the middleware, against tokens and
cookie chunks made and read by the real @auth/core."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from jwcrypto import jwe, jwk
from jwcrypto.common import base64url_decode, base64url_encode
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import Role, auth, logout, require_role
from asgi_jwt_session.authjs import (
    AUTHJS_CHUNK_SIZE,
    AuthJSCodec,
    AuthJSFormat,
    authjs_cookie_name,
    derive_key,
)
from asgi_jwt_session.cookies import CookieWriter, read_session_cookie
from asgi_jwt_session.errors import ExpiredToken, InvalidToken, UnknownKey
from tests.authjs_node import AuthJS, AuthJSError
from tests.conftest import OLD_SECRET, SECRET, make_app
from tests.tampering import lenient_b64url

PLAIN = "authjs.session-token"
SECURE = "__Secure-authjs.session-token"
USER: dict[str, Any] = {
    "sub": "user-1",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "picture": "https://example.com/ada.png",
    "role": "admin",
}


# -- the codec ---------------------------------------------------------------------------------


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
    assert lenient_b64url(variant.split(".")[4]) == lenient_b64url(token.split(".")[4])
    with pytest.raises(InvalidToken, match="canonical"):
        AuthJSCodec(SECRET).decode(variant)


def make_token(header: dict[str, Any], key: jwk.JWK, payload: bytes = b"{}") -> str:
    token = jwe.JWE(payload, protected=orjson.dumps(header).decode())
    token.allowed_algs = [header["alg"], header["enc"]]
    token.add_recipient(key)
    return str(token.serialize(compact=True))


def test_disallowed_headers_are_refused_before_decrypting(decrypt_calls: list[str]) -> None:
    key64 = derive_key(SECRET, PLAIN, "A256CBC-HS512")
    key32 = derive_key(SECRET, PLAIN, "A256GCM")
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
    codec = AuthJSCodec(SECRET)
    for what, token in tokens.items():
        with pytest.raises(InvalidToken, match=what):
            codec.decode(token)
    assert decrypt_calls == []
    # The count sees an Auth.js decryption when there is one.
    good = codec.encode({"sub": "u", "exp": int(time.time()) + 60})
    assert codec.decode(good)["sub"] == "u"
    assert decrypt_calls == [good]


def test_no_kid_tries_each_secret() -> None:
    key = derive_key(OLD_SECRET, PLAIN, "A256CBC-HS512")
    payload = orjson.dumps({"sub": "u", "exp": int(time.time()) + 60})
    token = make_token({"alg": "dir", "enc": "A256CBC-HS512"}, key, payload)
    assert AuthJSCodec([SECRET, OLD_SECRET]).decode(token)["sub"] == "u"
    with pytest.raises(UnknownKey, match="no kid"):
        AuthJSCodec(SECRET).decode(token)


def test_payload_must_be_an_object_with_exp() -> None:
    key = derive_key(SECRET, PLAIN, "A256CBC-HS512")
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


# -- chunks: our writer and reader against Auth.js's ------------------------------------------


@pytest.mark.parametrize(
    "size", [1, AUTHJS_CHUNK_SIZE, AUTHJS_CHUNK_SIZE + 1, 2 * AUTHJS_CHUNK_SIZE, 10**5]
)
def test_chunks_split_and_join_like_authjs(authjs: AuthJS, size: int) -> None:
    """The writer and parser the middleware uses for AuthJSFormat, at the boundaries."""
    value = "abcdefghij" * (size // 10) + "x" * (size % 10)
    writer = CookieWriter(PLAIN, max_age=None, path="/", domain=None, same_site="lax",
                          max_size=10**6, chunk_size=AuthJSFormat.chunk_size)
    ours = [tuple(line.split(";")[0].split("=", 1)) for line in writer.set(value, secure=False)]
    assert ours == authjs.chunk(PLAIN, value)
    # Browsers send cookies in any order; 10 would sort before 2 as text.
    header = "; ".join(f"{name}={part}" for name, part in reversed(ours))
    joined, _ = read_session_cookie([(b"cookie", header.encode())], PLAIN)
    assert joined == value == authjs.join(PLAIN, dict(ours))


# -- the middleware in Auth.js format ---------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    session = auth(request)
    if session is None or session.user is None:
        return JSONResponse({"user": None})
    user = session.user
    return JSONResponse({"user": user.id, "role": user.role, "email": user.get("email"),
                         "name": user.get("name")})


async def admin(request: Request) -> JSONResponse:
    user = require_role(request, Role.ADMIN)
    return JSONResponse({"admin": user.id})


async def promote(request: Request) -> JSONResponse:
    session = auth(request)
    assert session is not None
    session.set_role(Role.ADMIN, version=2)
    return JSONResponse({"ok": True})


async def sign_out(request: Request) -> JSONResponse:
    logout(request)
    return JSONResponse({"ok": True})


@pytest.fixture
def authjs_client(client_for: Callable[..., TestClient]) -> Callable[..., TestClient]:
    """``authjs_client(base_url, secret_key=, **AuthJSFormat options)``: Auth.js format."""

    def build(base_url: str = "http://testserver", secret_key: Any = SECRET,
              **format_options: Any) -> TestClient:
        app = make_app(Route("/whoami", whoami), Route("/admin", admin),
                       Route("/promote", promote), Route("/signout", sign_out),
                       secret_key=secret_key, format=AuthJSFormat(**format_options))
        return client_for(app, base_url=base_url)

    return build


Client = Callable[..., TestClient]


def claims(role: str = "USER", **extra: Any) -> dict[str, Any]:
    return {"sub": "user-1", "name": "Ada", "email": "ada@example.com", "role": role, **extra}


def test_reads_an_authjs_cookie_over_http(authjs_client: Client, authjs: AuthJS) -> None:
    token = authjs.encode(claims(), SECRET, PLAIN)
    client = authjs_client()
    response = client.get("/whoami", headers={"cookie": f"{PLAIN}={token}"})
    assert response.json() == {"user": "user-1", "role": "USER", "email": "ada@example.com",
                               "name": "Ada"}
    assert response.headers.get_list("set-cookie") == []  # Auth.js stays the writer


def test_reads_the_secure_cookie_over_https(authjs_client: Client, authjs: AuthJS) -> None:
    token = authjs.encode(claims("ADMIN"), SECRET, SECURE)
    client = authjs_client("https://testserver")
    response = client.get("/admin", headers={"cookie": f"{SECURE}={token}"})
    assert response.json() == {"admin": "user-1"}
    # The same token under the http name was made with the other salt: refused.
    response = client.get("/whoami", headers={"cookie": f"{PLAIN}={token}"})
    assert response.json() == {"user": None}


def test_guards_work_on_authjs_sessions(authjs_client: Client, authjs: AuthJS) -> None:
    client = authjs_client()
    user = authjs.encode(claims("USER"), SECRET, PLAIN)
    response = client.get("/admin", headers={"cookie": f"{PLAIN}={user}", "accept": "*/*"})
    assert response.status_code == 403
    assert client.get("/admin", headers={"accept": "*/*"}).status_code == 401


def test_reads_a_chunked_authjs_cookie(authjs_client: Client, authjs: AuthJS) -> None:
    token = authjs.encode(claims(groups=[f"group-{i}" for i in range(500)]), SECRET, PLAIN)
    chunks = authjs.chunk(PLAIN, token)
    assert len(chunks) >= 2
    # Browsers send cookies in any order, among others.
    header = "; ".join(f"{name}={value}" for name, value in [*reversed(chunks), ("other", "x")])
    response = authjs_client().get("/whoami", headers={"cookie": header})
    assert response.json()["user"] == "user-1"


def test_reads_tokens_of_a_rotated_secret(authjs_client: Client, authjs: AuthJS) -> None:
    token = authjs.encode(claims(), OLD_SECRET, PLAIN)
    client = authjs_client(secret_key=[SECRET, OLD_SECRET])
    response = client.get("/whoami", headers={"cookie": f"{PLAIN}={token}"})
    assert response.json()["user"] == "user-1"


def test_custom_role_claim(authjs_client: Client, authjs: AuthJS) -> None:
    token = authjs.encode({"sub": "u2", "userRole": "ORG_ADMIN"}, SECRET, PLAIN)
    client = authjs_client(role_claim="userRole")
    response = client.get("/whoami", headers={"cookie": f"{PLAIN}={token}"})
    assert response.json()["role"] == "ORG_ADMIN"


def test_token_without_role_gets_the_default_role(authjs_client: Client,
                                                  authjs: AuthJS) -> None:
    token = authjs.encode({"sub": "u3"}, SECRET, PLAIN)
    response = authjs_client().get("/whoami", headers={"cookie": f"{PLAIN}={token}"})
    assert response.json()["role"] == ""
    client = authjs_client(default_role="USER")
    assert client.get("/whoami", headers={"cookie": f"{PLAIN}={token}"}).json()["role"] == "USER"


def test_wrong_secret_or_salt_is_anonymous_with_a_clear_log_line(
        authjs_client: Client, authjs: AuthJS, caplog: pytest.LogCaptureFixture) -> None:
    client = authjs_client()
    wrong_secret = authjs.encode(claims(), "another-secret-" + "w" * 32, PLAIN)
    wrong_salt = authjs.encode(claims(), SECRET, "next-auth.session-token")
    with caplog.at_level(logging.DEBUG, logger="asgi_jwt_session"):
        for token in (wrong_secret, wrong_salt):
            response = client.get("/whoami", headers={"cookie": f"{PLAIN}={token}"})
            assert response.status_code == 200
            assert response.json() == {"user": None}
            assert response.headers.get_list("set-cookie") == []  # not ours to delete
    text = caplog.text
    assert "secret" in text and "salt" in text


def test_refresh_writes_a_cookie_authjs_accepts(authjs_client: Client, authjs: AuthJS) -> None:
    token = authjs.encode(claims("USER"), SECRET, PLAIN)
    client = authjs_client(write=True)
    response = client.get("/promote", headers={"cookie": f"{PLAIN}={token}"})
    lines = response.headers.get_list("set-cookie")
    assert len(lines) == 1 and lines[0].startswith(f"{PLAIN}=")
    written = lines[0].split(";")[0].split("=", 1)[1]
    decoded = authjs.decode(written, SECRET, PLAIN)
    assert decoded["sub"] == "user-1" and decoded["role"] == "ADMIN"
    assert decoded["email"] == "ada@example.com" and decoded["exp"] > time.time()


def test_written_big_cookie_is_chunked_the_authjs_way(authjs_client: Client,
                                                      authjs: AuthJS) -> None:
    token = authjs.encode(claims(groups=[f"g{i}" for i in range(900)]), SECRET, SECURE)
    client = authjs_client("https://testserver", write=True)
    response = client.get("/promote", headers={"cookie": f"{SECURE}={token}"})
    lines = response.headers.get_list("set-cookie")
    pairs = dict(line.split(";")[0].split("=", 1) for line in lines if "Max-Age=0" not in line)
    assert len(pairs) >= 2 and all(len(value) <= 3936 for value in pairs.values())
    assert list(pairs.items()) == authjs.chunk(SECURE, "".join(pairs.values()))
    joined = authjs.join(SECURE, pairs)
    assert authjs.decode(joined, SECRET, SECURE)["role"] == "ADMIN"


def test_sign_out_expires_every_chunk_when_writing(authjs_client: Client,
                                                   authjs: AuthJS) -> None:
    token = authjs.encode(claims(groups=[f"g{i}" for i in range(900)]), SECRET, PLAIN)
    chunks = authjs.chunk(PLAIN, token)
    header = "; ".join(f"{name}={value}" for name, value in chunks)
    response = authjs_client(write=True).get("/signout", headers={"cookie": header})
    expired = sorted(line.split("=", 1)[0] for line in response.headers.get_list("set-cookie")
                     if "Max-Age=0" in line)
    assert expired == sorted(name for name, _ in chunks)


def test_authjs_format_needs_text_secrets(authjs_client: Client) -> None:
    with pytest.raises((TypeError, ValueError)):
        authjs_client(secret_key=b"bytes are not an AUTH_SECRET" * 2).get("/whoami")


def test_writes_back_under_the_name_it_read(authjs_client: Client, authjs: AuthJS) -> None:
    # Behind a TLS proxy without proxy headers the app sees http, but the browser holds
    # the __Secure- cookie: sign-out must expire that one, with Secure.
    token = authjs.encode(claims(), SECRET, SECURE)
    client = authjs_client(write=True)
    response = client.get("/signout", headers={"cookie": f"{SECURE}={token}"})
    (line,) = response.headers.get_list("set-cookie")
    assert line.startswith(f"{SECURE}=;") and "Secure" in line and "Max-Age=0" in line


def test_oversized_authjs_cookie_is_refused_before_decoding(authjs_client: Client) -> None:
    client = authjs_client()
    response = client.get("/whoami", headers={"cookie": f"{PLAIN}={'A' * 20000}"})
    assert response.status_code == 200 and response.json() == {"user": None}
