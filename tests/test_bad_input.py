"""Bad cookies through the middleware: an empty session, a 200, the cookie expired, no raise.

Malicious tokens are made with jwcrypto and the keyring's real key where the attack needs
it (a correctly encrypted token with ``zip``, ``crit`` or an extra header), so that what
refuses them is the allow-list, not a failed decryption.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from jwcrypto import jwe, jwk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_jwt_session import JWTSessionMiddleware, Keyring, SessionConfig
from asgi_jwt_session.codec import b64url_decode
from asgi_jwt_session.codec import b64url_encode as b64
from asgi_jwt_session.cookies import CookieWriter
from asgi_jwt_session.responses import exception_handlers
from asgi_jwt_session.tokens import TokenCodec
from tests.asgi import Response, asgi_get
from tests.conftest import OLD_SECRET, SECRET
from tests.conftest import OTHER_SECRET as FOREIGN_SECRET

pytestmark = pytest.mark.anyio

EMPTY = {"session": {}, "signed_in": False}
DEFAULTS = SessionConfig()  # the app's options
MAX_CHUNKS = JWTSessionMiddleware(Starlette(exception_handlers=exception_handlers),
                                  SECRET).max_chunks["session"]
assert 1 < MAX_CHUNKS < 25


async def home(request: Request) -> JSONResponse:
    return JSONResponse({
        "session": dict(request.session),
        "signed_in": request.session.user is not None,
    })


@pytest.fixture
def app() -> JWTSessionMiddleware:
    return JWTSessionMiddleware(
        Starlette(routes=[Route("/", home)], exception_handlers=exception_handlers),
        Keyring([SECRET, OLD_SECRET]))


async def call(app: JWTSessionMiddleware, cookie_headers: list[bytes]) -> Response:
    """One GET through the raw ASGI app, Cookie headers given as raw bytes."""
    return await asgi_get(app, "/", [(b"cookie", c) for c in cookie_headers])

def expired_names(response: Response) -> set[str]:
    """The cookies the response expires; it must not set any other."""
    names = set()
    for line in response.set_cookies:
        name, _, rest = line.partition("=")
        assert rest.startswith(";") and "Max-Age=0" in rest, f"not a deletion: {line}"
        names.add(name)
    return names


# -- making tokens -----------------------------------------------------------------------------


def claims(now: int, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "u1", "role": "ADMIN", "jti": "jti-1", "iat": now, "exp": now + 3600,
        "auth_time": now, "chk": now, "data": {"cart": [1, 2]},
    }
    base.update(extra)
    return base


CODEC = TokenCodec(Keyring([SECRET, OLD_SECRET]))  # the app's keys
OLD_CODEC = TokenCodec(OLD_SECRET)


@dataclass
class Ctx:
    now: int

    @property
    def key(self) -> jwk.JWK:
        key: jwk.JWK = CODEC.keyring.current
        return key

    @property
    def kid(self) -> str:
        return CODEC.keyring.current_kid

    def token(self, **extra: Any) -> str:
        return CODEC.encode(claims(self.now, **extra))

    def encrypt(self, header: dict[str, Any], plaintext: bytes | None = None,
                key: jwk.JWK | None = None) -> str:
        """A correctly encrypted token with any protected header."""
        if plaintext is None:
            plaintext = orjson.dumps(claims(self.now))
        token = jwe.JWE(plaintext, protected=json.dumps(header))
        token.add_recipient(key or self.key)
        compact: str = token.serialize(compact=True)
        return compact

    def with_header(self, header: dict[str, Any]) -> str:
        return ".".join([b64(json.dumps(header).encode()), *self.token().split(".")[1:]])

    def chunks(self) -> list[tuple[str, str]]:
        """A valid session big enough to be chunked, as (name, value) pairs."""
        blob = random.Random(7).randbytes(4000).hex()
        token = self.token(data={"blob": blob})
        writer = CookieWriter("session", max_age=DEFAULTS.max_age, path="/", domain=None,
                              same_site="lax")
        lines = writer.set(token, secure=False)
        pairs = [tuple(line.split(";")[0].split("=", 1)) for line in lines]
        assert len(pairs) >= 3
        return pairs  # type: ignore[return-value]


def cookie(value: str, name: str = "session") -> list[bytes]:
    return [f"{name}={value}".encode("latin-1")]


def flip(token: str, part: int, byte: int, bit: int) -> str:
    parts = token.split(".")
    raw = bytearray(b64url_decode(parts[part]))
    raw[byte] ^= 1 << bit
    parts[part] = b64(bytes(raw))
    return ".".join(parts)


def extend_ciphertext(token: str) -> str:
    parts = token.split(".")
    parts[3] += "AAAA"  # still canonical base64url, still the right shape
    return ".".join(parts)


def non_canonical(token: str) -> str:
    """The same token with its tag spelled another way (same bytes for jwcrypto)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    variant = token[:-1] + alphabet[alphabet.index(token[-1]) + 1]
    assert b64url_decode(variant.split(".")[4]) == b64url_decode(token.split(".")[4])
    return variant


def swap(first: str, second: str, take: tuple[int, ...]) -> str:
    a, b = first.split("."), second.split(".")
    return ".".join(b[i] if i in take else a[i] for i in range(5))


# Each case: a Cookie header (or several) and the session cookie names it carries.
Case = Callable[[Ctx], tuple[list[bytes], set[str]]]
SESSION = {"session"}


def single(make: Callable[[Ctx], str]) -> Case:
    return lambda ctx: (cookie(make(ctx)), SESSION)


def flipped(part: int, byte: int, bit: int) -> Case:
    return single(lambda ctx: flip(ctx.token(), part, byte, bit))


def swapped(take: tuple[int, ...]) -> Case:
    def make(ctx: Ctx) -> str:
        first, second = ctx.token(jti="first"), ctx.token(jti="second")
        mixed = swap(first, second, take)
        assert mixed not in (first, second)
        return mixed
    return single(make)


def old_header_on_new_token(ctx: Ctx) -> str:
    return swap(ctx.token(), OLD_CODEC.encode(claims(ctx.now)), (0,))


def surrounded(prefix: bytes, suffix: bytes) -> Case:
    return lambda ctx: ([b"session=" + prefix + ctx.token().encode() + suffix], SESSION)


def chunked(edit: Callable[[list[tuple[str, str]]], list[tuple[str, str]]]) -> Case:
    def make(ctx: Ctx) -> tuple[list[bytes], set[str]]:
        pairs = edit(ctx.chunks())
        header = "; ".join(f"{name}={value}" for name, value in pairs)
        return [header.encode()], {name for name, _ in pairs}
    return make


def allow_list_case(extra: dict[str, Any]) -> Case:
    def make(ctx: Ctx) -> str:
        header = {"alg": "dir", "enc": "A256GCM", "kid": ctx.kid, **extra}
        token = ctx.encrypt(header)
        reader = jwe.JWE()
        reader.deserialize(token, key=ctx.key)  # jwcrypto alone would accept it
        assert reader.plaintext == orjson.dumps(claims(ctx.now))
        return token
    return single(make)


def key_wrapped(alg: str) -> Case:
    """The real symmetric key used to wrap a content key: jwcrypto decrypts it."""
    def make(ctx: Ctx) -> str:
        token = ctx.encrypt({"alg": alg, "enc": "A256GCM", "kid": ctx.kid})
        jwe.JWE().deserialize(token, key=ctx.key)
        return token
    return single(make)


ALLOW_LIST_CASES: dict[str, Case] = {
    "zip-DEF": allow_list_case({"zip": "DEF"}),
    "crit-kid": allow_list_case({"crit": ["kid"]}),
    "extra-header-jku": allow_list_case({"jku": "https://evil.example/keys"}),
    "extra-header-custom": allow_list_case({"x-anything": 1}),
    "alg-none-shaped": single(lambda ctx: ctx.with_header(
        {"alg": "none", "enc": "A256GCM", "kid": ctx.kid})),
    "alg-RSA-OAEP": single(lambda ctx: ctx.with_header(
        {"alg": "RSA-OAEP", "enc": "A256GCM", "kid": ctx.kid})),
    "alg-RSA1_5": single(lambda ctx: ctx.with_header(
        {"alg": "RSA1_5", "enc": "A256GCM", "kid": ctx.kid})),
    "alg-ECDH-ES": single(lambda ctx: ctx.with_header(
        {"alg": "ECDH-ES", "enc": "A256GCM", "kid": ctx.kid,
         "epk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}})),
    "alg-ECDH-ES+A256KW": single(lambda ctx: ctx.with_header(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": ctx.kid})),
    "alg-A256KW-real-key": key_wrapped("A256KW"),
    "alg-A256GCMKW-real-key": key_wrapped("A256GCMKW"),
    "enc-A128GCM": single(lambda ctx: ctx.with_header(
        {"alg": "dir", "enc": "A128GCM", "kid": ctx.kid})),
    "enc-A256CBC-HS512": single(lambda ctx: ctx.with_header(
        {"alg": "dir", "enc": "A256CBC-HS512", "kid": ctx.kid})),
    "unknown-kid": single(lambda ctx: ctx.with_header(
        {"alg": "dir", "enc": "A256GCM", "kid": "nope"})),
    "no-kid": single(lambda ctx: ctx.with_header({"alg": "dir", "enc": "A256GCM"})),
    "foreign-key": single(lambda ctx: TokenCodec(FOREIGN_SECRET).encode(claims(ctx.now))),
    "unsecured-jwt": single(lambda ctx: b64(b'{"alg":"none"}') + "."
                            + b64(orjson.dumps(claims(ctx.now))) + "."),
}

CASES: dict[str, Case] = {
    **ALLOW_LIST_CASES,
    # truncated and extended
    "truncated-1": single(lambda ctx: ctx.token()[:-1]),
    "truncated-half": single(lambda ctx: ctx.token()[: len(ctx.token()) // 2]),
    "truncated-no-tag": single(lambda ctx: ctx.token().rsplit(".", 1)[0]),
    "truncated-header-only": single(lambda ctx: ctx.token().split(".")[0]),
    "extended-char": single(lambda ctx: ctx.token() + "A"),
    "extended-part": single(lambda ctx: ctx.token() + ".AAAA"),
    "extended-ciphertext": single(lambda ctx: extend_ciphertext(ctx.token())),
    "non-canonical-tag": single(lambda ctx: non_canonical(ctx.token())),
    "padded-tag": single(lambda ctx: ctx.token() + "=="),
    "extended-encrypted-key": single(lambda ctx: ctx.token().replace("..", ".AAAA.", 1)),
    # flipped bits in every part
    **{
        f"flipped-{name}-byte{byte}-bit{bit}": flipped(part, byte, bit)
        for part, name in ((0, "header"), (2, "iv"), (3, "ciphertext"), (4, "tag"))
        for byte, bit in ((0, 0), (5, 7), (-1, 3))
    },
    # swapped parts between two valid tokens
    "swapped-iv": swapped((2,)),
    "swapped-ciphertext": swapped((3,)),
    "swapped-tag": swapped((4,)),
    "swapped-iv-tag": swapped((2, 4)),
    "swapped-ciphertext-tag": swapped((3, 4)),
    "swapped-header-other-key": single(old_header_on_new_token),
    # wrong key under our kid
    "wrong-key-our-kid": single(lambda ctx: ctx.encrypt(
        {"alg": "dir", "enc": "A256GCM", "kid": ctx.kid},
        key=Keyring(FOREIGN_SECRET).current)),
    # non-ASCII and control bytes
    "non-ascii-value": lambda ctx: ([b"session=\xff\xfe\x80"], SESSION),
    "utf8-inside-token": lambda ctx: (
        [b"session=" + ctx.token()[:20].encode() + "é".encode() + ctx.token()[20:].encode()],
        SESSION),
    "nul-after-token": surrounded(b"", b"\x00"),
    "nul-before-token": surrounded(b"\x00", b""),
    "unit-separator-after-token": surrounded(b"", b"\x1f"),
    "file-separator-before-token": surrounded(b"\x1c", b""),
    "nel-after-token": surrounded(b"", b"\x85"),
    "nbsp-after-token": surrounded(b"", b"\xa0"),
    "newline-after-token": surrounded(b"", b"\n"),
    "del-inside-token": lambda ctx: (
        [b"session=" + ctx.token()[:30].encode() + b"\x7f" + ctx.token()[30:].encode()],
        SESSION),
    "empty-value": lambda ctx: ([b"session="], SESSION),
    # duplicate cookie names (the last one wins, as in Starlette)
    "duplicate-bad-last": lambda ctx: (
        [f"session={ctx.token()}; session=garbage".encode()], SESSION),
    "duplicate-across-headers": lambda ctx: (
        [f"session={ctx.token()}".encode(), b"session=garbage"], SESSION),
    "duplicate-chunk": chunked(lambda pairs: [*pairs, ("session.0", "garbage")]),
    # chunks
    "missing-middle-chunk": chunked(lambda pairs: [p for p in pairs if p[0] != "session.1"]),
    "missing-first-chunk": chunked(lambda pairs: pairs[1:]),
    "extra-chunk": chunked(lambda pairs: [*pairs, (f"session.{len(pairs)}", "AAAA")]),
    "chunks-and-bad-plain-name": chunked(lambda pairs: [("session", "garbage"), *pairs]),
    "chunks-reordered-values": chunked(
        lambda pairs: [(pairs[0][0], pairs[1][1]), (pairs[1][0], pairs[0][1]), *pairs[2:]]),
    # size
    "100KB-cookie": lambda ctx: (cookie("A" * 100_000), SESSION),
    "100KB-of-valid-tokens": lambda ctx: (cookie((ctx.token() + ".") * 300), SESSION),
    # Past the most chunks a cookie may have, names are neither read nor expired: no
    # request makes a response expire more than that.
    "100KB-in-chunks": lambda ctx: (
        ["; ".join(f"session.{i}={'A' * 4000}" for i in range(25)).encode()],
        {f"session.{i}" for i in range(MAX_CHUNKS)}),
    # time
    "expired": single(lambda ctx: ctx.token(iat=ctx.now - 7200, exp=ctx.now - 3600)),
    "expired-by-leeway-plus-1": single(lambda ctx: ctx.token(
        exp=ctx.now - DEFAULTS.leeway - 2)),
    "past-absolute-lifetime": single(lambda ctx: ctx.token(
        auth_time=ctx.now - DEFAULTS.max_lifetime - 60)),
    "issued-in-the-future": single(lambda ctx: ctx.token(
        iat=ctx.now + 3600, auth_time=ctx.now + 3600, exp=ctx.now + 7200)),
    "not-before-in-the-future": single(lambda ctx: ctx.token(nbf=ctx.now + 3600)),
    # claims a key holder could write but we never do
    "null-subject": single(lambda ctx: ctx.token(sub=None)),
    "null-role": single(lambda ctx: ctx.token(role=None)),
    "subject-without-role": single(lambda ctx: CODEC.encode(
        {k: v for k, v in claims(ctx.now).items() if k != "role"})),
    "data-not-an-object": single(lambda ctx: ctx.token(data=[1, 2])),
    "payload-not-json": single(lambda ctx: ctx.encrypt(
        {"alg": "dir", "enc": "A256GCM", "kid": ctx.kid}, plaintext=b"\xff not json")),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_bad_cookie_reads_as_no_session(
    app: JWTSessionMiddleware, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = Ctx(int(time.time()))
    headers, carried = CASES[case](ctx)
    with caplog.at_level(logging.DEBUG, logger="asgi_jwt_session"):
        response = await call(app, headers)
    assert response.status == 200
    assert response.json() == EMPTY
    assert expired_names(response) == carried
    refusals = [r for r in caplog.records if r.name == "asgi_jwt_session"]
    assert len(refusals) == 1 and "refused" in refusals[0].getMessage()
    assert refusals[0].levelno == logging.DEBUG


@pytest.mark.parametrize("case", list(ALLOW_LIST_CASES), ids=list(ALLOW_LIST_CASES))
async def test_refused_before_any_decryption(
    app: JWTSessionMiddleware, case: str, decrypt_calls: list[str]
) -> None:
    headers, _ = ALLOW_LIST_CASES[case](Ctx(int(time.time())))
    response = await call(app, headers)
    assert response.json() == EMPTY
    assert decrypt_calls == []


# -- the controls: the same harness reads good cookies --------------------------------------------

SIGNED_IN = {"session": {"cart": [1, 2]}, "signed_in": True}


async def test_valid_cookie_is_read_and_not_rewritten(app: JWTSessionMiddleware) -> None:
    ctx = Ctx(int(time.time()))
    token = ctx.token()
    response = await call(app, [f"other=1; session={token}; theme=\xe9t\xe9".encode("latin-1")])
    assert (response.status, response.json(), response.set_cookies) == (200, SIGNED_IN, [])
    # Optional whitespace around the value (RFC 6265) is not bad input.
    response = await call(app, [f"session= {token}\t; x=y".encode()])
    assert (response.json(), response.set_cookies) == (SIGNED_IN, [])


async def test_valid_chunks_are_read_in_any_order(app: JWTSessionMiddleware) -> None:
    ctx = Ctx(int(time.time()))
    pairs = ctx.chunks()
    headers = [f"{name}={value}".encode() for name, value in reversed(pairs)]
    response = await call(app, headers)  # one Cookie header per chunk, as HTTP/2 sends
    assert response.status == 200
    assert response.json()["signed_in"] is True
    assert len(response.json()["session"]["blob"]) == 8000
    assert response.set_cookies == []


async def test_duplicate_names_last_valid_wins(app: JWTSessionMiddleware) -> None:
    ctx = Ctx(int(time.time()))
    response = await call(app, [f"session=garbage; session={ctx.token()}".encode()])
    assert (response.json(), response.set_cookies) == (SIGNED_IN, [])


async def test_token_with_an_old_key_is_read_and_reissued(app: JWTSessionMiddleware) -> None:
    response = await call(app, cookie(OLD_CODEC.encode(claims(int(time.time())))))
    assert response.json() == SIGNED_IN
    assert len(response.set_cookies) == 1 and "Max-Age=0" not in response.set_cookies[0]


async def test_bad_cookie_then_the_app_writes_a_new_session() -> None:
    async def write(request: Request) -> JSONResponse:
        request.session["fresh"] = True
        return JSONResponse(dict(request.session))

    app = JWTSessionMiddleware(
        Starlette(routes=[Route("/", write)], exception_handlers=exception_handlers), SECRET)
    ctx = Ctx(int(time.time()))
    pairs = ctx.chunks()
    broken = [p for p in pairs if p[0] != "session.1"]
    header = "; ".join(f"{name}={value}" for name, value in broken).encode()
    response = await call(app, [header])
    assert response.json() == {"fresh": True}
    written = [line for line in response.set_cookies if "Max-Age=0" not in line]
    assert len(written) == 1 and written[0].startswith("session=")
    # Every stale chunk is expired, none is left behind to corrupt the next read.
    assert {line.split("=", 1)[0] for line in response.set_cookies if "Max-Age=0" in line} == {
        name for name, _ in broken}
