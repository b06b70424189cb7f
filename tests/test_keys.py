"""Keyring: secrets and JWKs, HKDF under a fixed label, rotation, JWK Set export (joserfc)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe as joserfc_jwe
from joserfc.jwk import KeySet, OctKey
from jwcrypto import jwk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from asgi_jwt_session import JWTSessionMiddleware, Keyring, login
from asgi_jwt_session.codec import b64url_decode
from asgi_jwt_session.codec import b64url_encode as b64
from asgi_jwt_session.errors import UnknownKey
from asgi_jwt_session.tokens import TokenCodec
from tests.asgi import Response, asgi_get
from tests.conftest import OLD_SECRET, SECRET, cookie_value

OLDER_SECRET = "tests-older-secret-0123456789abcdef-0123"
LABEL = b"asgi-jwt-session v1 A256GCM content key"  # changing it would log everyone out


def hkdf(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL).derive(secret)


def key_bytes(keyring: Keyring, index: int = 0) -> bytes:
    return b64url_decode(keyring.to_jwks()["keys"][index]["k"])


def header_of(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(b64url_decode(token.split(".")[0]))
    return header


# -- deriving keys ----------------------------------------------------------------------------


def test_secret_is_stretched_with_hkdf_under_a_fixed_label() -> None:
    keyring = Keyring(SECRET)
    key = key_bytes(keyring)
    assert key == hkdf(SECRET.encode())
    assert len(key) == 32
    assert key != SECRET.encode()[:32]
    assert keyring.current_kid == b64(hashlib.sha256(b"kid:" + key).digest())[:8]


def test_str_and_bytes_give_the_same_key() -> None:
    assert Keyring(SECRET).to_jwks() == Keyring(SECRET.encode()).to_jwks()
    text = "clé-secrète-ünïcode-8f3Kq-ümlaut-sèt"
    assert key_bytes(Keyring(text)) == hkdf(text.encode("utf-8"))


def test_kid_is_short_stable_and_distinct() -> None:
    kid = Keyring(SECRET).current_kid
    assert re.fullmatch(r"[A-Za-z0-9_-]{8}", kid)
    assert Keyring(SECRET).current_kid == kid
    assert Keyring(OLD_SECRET).current_kid != kid


@pytest.mark.parametrize(
    "secret", ["", "short", "x" * 31, b"x" * 31, "é" * 15], ids=repr
)
def test_short_secrets_refused_with_a_clear_error(secret: str | bytes) -> None:
    message = r"secret_key is too short \(\d+ bytes\); use at least 32"
    with pytest.raises(ValueError, match=message):
        Keyring(secret)
    with pytest.raises(ValueError, match=message):
        Keyring([SECRET, secret])
    with pytest.raises(ValueError, match=message):
        TokenCodec(secret)
    with pytest.raises(ValueError, match=message):
        JWTSessionMiddleware(Starlette(), secret)


def test_secret_length_counts_bytes() -> None:
    Keyring("éèêëàâäîïôöûüùçñ")  # 16 characters, 32 bytes of UTF-8
    Keyring(bytes(range(32)))


@pytest.mark.parametrize("secret", [
    "password" * 4, "x" * 32, b"\x00" * 32, "é" * 16, "changeme-" * 4,
    "0123456789" * 4, "secret" * 5 + "12", "ab" * 200, "k3Y9qPz7LmW2vR8t" * 2,
], ids=lambda secret: repr(secret)[:20])
def test_weak_secrets_refused_with_a_pointer_to_keygen(secret: str | bytes) -> None:
    # Long enough, but a pattern: they once passed.
    message = r"secret_key is a pattern, not a random secret.*asgi-jwt-session keygen"
    with pytest.raises(ValueError, match=message):
        Keyring(secret)
    with pytest.raises(ValueError, match=message):
        JWTSessionMiddleware(Starlette(), [SECRET, secret])


def test_random_secrets_pass() -> None:
    for _ in range(200):
        Keyring(secrets.token_hex(16))  # 32 hex digits: the fewest different bytes
        Keyring(secrets.token_urlsafe(32))  # what keygen makes
        Keyring(secrets.token_bytes(32))
        Keyring("".join(secrets.choice(string.digits) for _ in range(32)))


# -- what secret_key may be -------------------------------------------------------------------


def test_secret_key_forms() -> None:
    kids = [Keyring(SECRET).current_kid, Keyring(OLD_SECRET).current_kid]
    for value in (
        [SECRET, OLD_SECRET],
        (SECRET, OLD_SECRET),
        (secret for secret in [SECRET, OLD_SECRET]),
        [SECRET.encode(), OLD_SECRET],
    ):
        assert list(Keyring.coerce(value).by_kid) == kids  # type: ignore[arg-type]
    keyring = Keyring([SECRET, OLD_SECRET])
    assert Keyring.coerce(keyring) is keyring
    assert TokenCodec(keyring).keyring is keyring


def test_secret_wrappers() -> None:
    from starlette.datastructures import Secret

    assert Keyring.coerce(Secret(SECRET)).to_jwks() == Keyring(SECRET).to_jwks()
    import pydantic  # FastAPI's, installed with the test extra
    assert Keyring.coerce(pydantic.SecretStr(SECRET)).to_jwks() == Keyring(SECRET).to_jwks()


def test_bad_keyrings() -> None:
    with pytest.raises(TypeError, match="required"):
        Keyring.coerce(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        Keyring([])
    with pytest.raises(ValueError, match="kid"):
        Keyring([SECRET, OLD_SECRET, SECRET])


def test_generate() -> None:
    first, second = Keyring.generate(), Keyring.generate()
    assert first.current_kid != second.current_kid
    codec = TokenCodec(first)
    token = codec.encode({"iat": 1, "exp": 2})
    assert codec.decode(token, now=1) == {"iat": 1, "exp": 2}
    with pytest.raises(UnknownKey):
        TokenCodec(second).decode(token, now=1)


def test_repr_shows_kids_not_secrets() -> None:
    keyring = Keyring(SECRET)
    text = repr(keyring)
    assert keyring.current_kid in text
    assert SECRET not in text
    assert keyring.to_jwks()["keys"][0]["k"] not in text


# -- rotation -----------------------------------------------------------------------------------


def test_newest_encrypts_all_decrypt() -> None:
    keyring = Keyring([SECRET, OLD_SECRET, OLDER_SECRET])
    codec = TokenCodec(keyring)
    claims = {"sub": "u1", "role": "USER", "iat": 100, "exp": 200}
    new_token = codec.encode(claims)
    assert header_of(new_token)["kid"] == Keyring(SECRET).current_kid
    assert codec.is_current(new_token)
    for old in (OLD_SECRET, OLDER_SECRET):
        old_token = TokenCodec(old).encode(claims)
        assert codec.decode(old_token, now=100) == claims
        assert not codec.is_current(old_token)
    # An old key dropped from the ring: its tokens are no longer read.
    with pytest.raises(UnknownKey):
        TokenCodec([SECRET, OLD_SECRET]).decode(TokenCodec(OLDER_SECRET).encode(claims), now=100)
    # The new key is not known to a ring that still has only the old one.
    with pytest.raises(UnknownKey):
        TokenCodec(OLD_SECRET).decode(new_token, now=100)


# -- JWK input ----------------------------------------------------------------------------------


def test_jwk_input() -> None:
    key = jwk.JWK.generate(kty="oct", size=256, kid="my-key")
    raw = b64url_decode(key.export(as_dict=True)["k"])
    for material in (key, key.export(as_dict=True), json.loads(key.export())):
        keyring = Keyring(material)
        assert keyring.current_kid == "my-key"
        assert key_bytes(keyring) == raw
    mixed = Keyring([key, SECRET])
    assert list(mixed.by_kid) == ["my-key", Keyring(SECRET).current_kid]
    token = TokenCodec(SECRET).encode({"iat": 1, "exp": 2})
    assert TokenCodec(mixed).decode(token, now=1) == {"iat": 1, "exp": 2}
    assert header_of(TokenCodec(mixed).encode({"iat": 1, "exp": 2}))["kid"] == "my-key"


def test_jwk_without_kid_gets_a_derived_one() -> None:
    raw = bytes(range(32))
    keyring = Keyring({"kty": "oct", "k": b64(raw)})
    assert keyring.current_kid == b64(hashlib.sha256(b"kid:" + raw).digest())[:8]
    assert key_bytes(keyring) == raw  # a JWK is used as is, not stretched


@pytest.mark.parametrize(
    "material, message",
    [
        (jwk.JWK.generate(kty="oct", size=128), "32 bytes"),
        (jwk.JWK.generate(kty="oct", size=512), "32 bytes"),
        (jwk.JWK.generate(kty="RSA", size=2048), "oct"),
        (jwk.JWK.generate(kty="EC", crv="P-256"), "oct"),
        (jwk.JWK.generate(kty="OKP", crv="X25519"), "oct"),
    ],
    ids=["oct-128", "oct-512", "RSA", "EC", "OKP"],
)
def test_unusable_jwks_refused(material: jwk.JWK, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Keyring(material)


def test_to_jwks_round_trips() -> None:
    keyring = Keyring([SECRET, OLD_SECRET])
    jwks = keyring.to_jwks()
    assert json.loads(json.dumps(jwks)) == jwks
    assert [key["kid"] for key in jwks["keys"]] == list(keyring.by_kid)
    for key in jwks["keys"]:
        assert key.keys() == {"kty", "k", "kid", "alg", "use"}
        assert (key["kty"], key["alg"], key["use"]) == ("oct", "dir", "enc")
    again = Keyring(jwks["keys"])
    assert again.to_jwks() == jwks
    claims = {"iat": 1, "exp": 2, "data": {"a": 1}}
    assert TokenCodec(again).decode(TokenCodec(OLD_SECRET).encode(claims), now=1) == claims


# -- through the middleware, and joserfc ---------------------------------------------------------


async def show(request: Request) -> JSONResponse:
    user = request.session.user
    return JSONResponse({
        "session": dict(request.session),
        "user": None if user is None else [user.id, user.role],
    })


async def sign_in(request: Request) -> JSONResponse:
    login(request, "u1", "ADMIN", email="u1@example.com")
    request.session["cart"] = [1, 2]
    return await show(request)


def make_app(secret_key: Any, **options: Any) -> JWTSessionMiddleware:
    routes = [Route("/", show), Route("/login", sign_in)]
    return JWTSessionMiddleware(Starlette(routes=routes), secret_key, **options)


async def call(app: ASGIApp, path: str = "/", cookie: str | None = None) -> Response:
    headers = [] if cookie is None else [(b"cookie", cookie.encode("latin-1"))]
    return await asgi_get(app, path, headers)


SIGNED_IN = {"session": {"cart": [1, 2]}, "user": ["u1", "ADMIN"]}


@pytest.mark.anyio
async def test_same_secret_same_key_under_any_cookie_name() -> None:
    first = make_app(SECRET, session_cookie="session")
    second = make_app(SECRET, session_cookie="other_app_sid")
    token = cookie_value((await call(first, "/login")).set_cookies)
    assert header_of(token)["kid"] == Keyring(SECRET).current_kid
    response = await call(second, cookie=f"other_app_sid={token}")
    assert (response.status, response.set_cookies, response.json()) == (200, [], SIGNED_IN)


@pytest.mark.anyio
async def test_cookie_with_an_old_key_is_reissued_with_the_newest() -> None:
    old_token = cookie_value((await call(make_app(OLD_SECRET), "/login")).set_cookies)
    rotated = make_app([SECRET, OLD_SECRET])
    response = await call(rotated, cookie=f"session={old_token}")
    assert (response.status, response.json()) == (200, SIGNED_IN)
    lines = response.set_cookies
    new_token = cookie_value(lines)
    assert header_of(old_token)["kid"] == Keyring(OLD_SECRET).current_kid
    assert header_of(new_token)["kid"] == Keyring(SECRET).current_kid
    assert "Max-Age=0" not in lines[0]
    # The re-issued cookie is current: read as is, nothing written.
    response = await call(rotated, cookie=f"session={new_token}")
    assert (response.status, response.set_cookies, response.json()) == (200, [], SIGNED_IN)
    # Once the old key is dropped, the old cookie reads as no session and is expired.
    response = await call(make_app(SECRET), cookie=f"session={old_token}")
    assert (response.status, response.json()) == (200, {"session": {}, "user": None})
    lines = response.set_cookies
    assert len(lines) == 1 and lines[0].startswith("session=;") and "Max-Age=0" in lines[0]


@pytest.mark.anyio
async def test_a_keyring_is_used_as_given() -> None:
    keyring = Keyring([SECRET, OLD_SECRET])
    token = cookie_value((await call(make_app(keyring), "/login")).set_cookies)
    assert header_of(token)["kid"] == keyring.current_kid
    assert TokenCodec(keyring).decode(token)["sub"] == "u1"


@pytest.mark.anyio
async def test_joserfc_decrypts_real_cookies_with_the_jwk_set() -> None:
    old_token = cookie_value((await call(make_app(OLD_SECRET), "/login")).set_cookies)
    keyring = Keyring([SECRET, OLD_SECRET])
    new_token = cookie_value((await call(make_app(keyring), "/login")).set_cookies)
    key_set = KeySet.import_key_set(json.loads(json.dumps(keyring.to_jwks())))
    for token in (new_token, old_token):
        result = joserfc_jwe.decrypt_compact(token, key_set)
        assert result.protected["alg"] == "dir" and result.protected["enc"] == "A256GCM"
        claims = json.loads(result.plaintext)
        assert claims["sub"] == "u1" and claims["role"] == "ADMIN"
        assert claims["email"] == "u1@example.com"
        assert claims["data"] == {"cart": [1, 2]}
        assert claims["exp"] > claims["iat"]
    # The wrong set (only the old key) cannot read the new cookie.
    with pytest.raises(Exception):  # noqa: B017 (joserfc's error types vary by version)
        joserfc_jwe.decrypt_compact(
            new_token, KeySet.import_key_set(Keyring(OLD_SECRET).to_jwks()))


@pytest.mark.anyio
async def test_cookies_written_by_joserfc_are_read() -> None:
    app = make_app(SECRET)
    exported = Keyring(SECRET).to_jwks()["keys"][0]
    key = OctKey.import_key(exported)
    token = cookie_value((await call(app, "/login")).set_cookies)
    claims = json.loads(joserfc_jwe.decrypt_compact(token, key).plaintext)
    claims["data"]["cart"].append(3)
    protected = {"alg": "dir", "enc": "A256GCM", "kid": exported["kid"]}
    token = joserfc_jwe.encrypt_compact(protected, json.dumps(claims), key)
    response = await call(app, cookie=f"session={token}")
    assert (response.status, response.json()) == (
        200, {"session": {"cart": [1, 2, 3]}, "user": ["u1", "ADMIN"]})


@pytest.mark.parametrize("bad", ["", [], ("current", ""), [b"bytes"], ["current", 1]])
def test_text_secrets_are_refused_unless_non_empty_strings(bad: Any) -> None:
    from asgi_jwt_session.authjs import AuthJSWire
    from asgi_jwt_session.betterauth import BetterAuthWire

    for make, name in ((AuthJSWire, "an Auth.js secret"),
                       (BetterAuthWire, "a Better Auth secret")):
        with pytest.raises(ValueError, match=f"^{name} must be a non-empty string or a list"):
            make(bad)


def test_text_secrets_are_a_list_newest_first() -> None:
    from asgi_jwt_session.keys import secret_strings

    assert secret_strings("current", "secret_key") == ["current"]
    assert secret_strings(("current", "older"), "secret_key") == ["current", "older"]
