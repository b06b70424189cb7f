"""Device Bound Session Credentials, Python side: the protocol and every refusal.

A software device key (jwcrypto) signs the proofs a browser would; the app is the test
app under the middleware with ``device_binding=DeviceBinding(...)``, over
``https://testserver``. The real browser is in tests/test_dbsc_browser.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import http_sf
import orjson
import pytest
from jwcrypto import jwk, jws
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware
from asgi_jwt_session.authjs import AuthJSFormat
from asgi_jwt_session.codec import b64url_encode
from asgi_jwt_session.dbsc import DeviceBinding
from asgi_jwt_session.dbsc_proof import Challenges, ProofError, thumbprint, verify_proof
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.keys import Keyring
from asgi_jwt_session.tokens import TokenCodec
from tests.conftest import SECRET, Clock, set_cookies
from tests.memory_store import MemoryStore

BOUND = 60
HTTPS = "https://testserver"
REGISTER = "/auth/dbsc/register"
REFRESH = "/auth/dbsc/refresh"
REFRESH_COOKIE = "__Secure-session-dbsc"
Client = Callable[..., TestClient]


class Device:
    """A browser's DBSC key, in software: signs proofs as Chromium does."""

    def __init__(self, kty: str = "EC") -> None:
        if kty == "EC":
            self.key = jwk.JWK.generate(kty="EC", crv="P-256")
            self.alg = "ES256"
        else:
            self.key = jwk.JWK.generate(kty="RSA", size=2048)
            self.alg = "RS256"
        self.public = self.key.export_public(as_dict=True)

    def proof(self, challenge: str, *, with_key: bool = False, **header: Any) -> str:
        protected: dict[str, Any] = {"alg": self.alg, "typ": "dbsc+jwt"}
        if with_key:
            protected["jwk"] = self.public
        protected.update(header)
        token = jws.JWS(orjson.dumps({"jti": challenge}))
        token.add_signature(self.key, alg=protected["alg"], protected=orjson.dumps(protected)
                            .decode())
        compact: str = token.serialize(compact=True)
        return compact


def registration(response: Any) -> tuple[str, str]:
    """The (path, challenge) a sign-in response offers."""
    [(algorithms, params)] = http_sf.parse(
        response.headers["secure-session-registration"].encode(), tltype="list")
    assert [str(alg) for alg, _ in algorithms] == ["ES256", "RS256"]
    return params["path"], params["challenge"]


def app_client(client_for: Client, **options: Any) -> TestClient:
    binding = DeviceBinding(bound_lifetime=options.pop("bound_lifetime", BOUND))
    options.setdefault("max_cookie_size", 3800)
    return client_for(base_url=options.pop("base_url", HTTPS), device_binding=binding,
                      **options)


def bind(client: TestClient, device: Device, user: str = "alice") -> dict[str, Any]:
    """Sign ``user`` in and register ``device``: the session configuration."""
    response = client.get("/login", params={"user": user})
    path, challenge = registration(response)
    registered = client.post(path, headers={
        "Secure-Session-Response": device.proof(challenge, with_key=True)})
    assert registered.status_code == 200, registered.text
    config: dict[str, Any] = registered.json()
    return config


def refresh(client: TestClient, device: Device, session_id: str, **header: Any) -> Any:
    """The browser's refresh: a challenge, then the signed retry."""
    asked = client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id})
    assert asked.status_code == 403, asked.text
    challenge, params = http_sf.parse(asked.headers["secure-session-challenge"].encode(),
                                      tltype="item")
    assert params == {"id": session_id}
    return client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id,
                                         "Secure-Session-Response":
                                         device.proof(str(challenge), **header)})


def max_age(line: str) -> int:
    match = re.search(r"Max-Age=(\d+)", line)
    assert match is not None, line
    return int(match.group(1))


def token_claims(client: TestClient, name: str = "session") -> dict[str, Any]:
    claims: dict[str, Any] = TokenCodec(SECRET).decode(client.cookies[name])
    return claims


def ended(response: Any) -> None:
    """A refused refresh: 4xx, the protocol's end of the session, cookies expired."""
    assert 400 <= response.status_code < 500, response.text
    assert response.json() == {"continue": False}
    assert response.headers["cache-control"] == "no-store"
    assert any(line.startswith(f"{REFRESH_COOKIE}=;") for line in set_cookies(response))


# --- registration --------------------------------------------------------------------------


def test_sign_in_over_https_offers_registration_and_the_proof_binds(client_for: Client
                                                                    ) -> None:
    client = app_client(client_for)
    device = Device()
    response = client.get("/login", params={"user": "alice"})
    path, challenge = registration(response)
    assert path == REGISTER
    assert token_claims(client).get("cnf") is None  # not bound before the proof
    registered = client.post(path, headers={
        "Secure-Session-Response": device.proof(challenge, with_key=True)})
    assert registered.status_code == 200
    assert registered.headers["cache-control"] == "no-store"
    config = registered.json()
    jti = token_claims(client)["jti"]
    assert config == {
        "session_identifier": jti,
        "refresh_url": REFRESH,
        "scope": {"origin": HTTPS, "include_site": False, "scope_specification": []},
        "credentials": [{"type": "cookie", "name": "session",
                         "attributes": "Path=/; HttpOnly; SameSite=Lax; Secure"}],
    }
    [line] = set_cookies(registered, "session")
    # The configuration names the cookie with exactly the attributes it is set with.
    assert line.split("; ", 1)[1] == (config["credentials"][0]["attributes"]
                                      + f"; Max-Age={BOUND}")
    claims = token_claims(client)
    assert claims["exp"] - claims["iat"] == BOUND
    assert claims["cnf"] == {"jwk": {name: device.public[name]
                                     for name in ("crv", "kty", "x", "y")}}
    assert thumbprint(claims["cnf"]["jwk"]) == device.key.thumbprint()
    [refresh_line] = set_cookies(registered, REFRESH_COOKIE)
    assert f"Path={REFRESH}" in refresh_line and "Secure" in refresh_line
    assert client.get("/me").json()["id"] == "alice"


def test_rs256_devices_register_too(client_for: Client) -> None:
    client = app_client(client_for)
    device = Device("RSA")
    config = bind(client, device)
    assert token_claims(client)["cnf"]["jwk"]["kty"] == "RSA"
    assert refresh(client, device, config["session_identifier"]).status_code == 200


def test_plain_http_browsers_without_dbsc_and_unbound_sessions_are_unchanged(
        client_for: Client) -> None:
    plain = client_for(max_cookie_size=3800)
    bound = app_client(client_for, base_url="http://testserver")
    for client in (plain, bound):
        response = client.get("/login", params={"user": "alice"})
        assert "secure-session-registration" not in response.headers
        assert [line.split("=", 1)[0] for line in set_cookies(response)] == ["session"]
        assert "Secure" not in response.headers["set-cookie"]
        assert client.get("/me").json()["id"] == "alice"
    # Over https, a browser that ignores the offer keeps an ordinary session.
    client = app_client(client_for)
    response = client.get("/login", params={"user": "alice"})
    assert max_age(response.headers["set-cookie"]) == 30 * 24 * 3600
    assert client.get("/me").json()["id"] == "alice"
    assert "cnf" not in token_claims(client)


def test_registration_refusals(client_for: Client) -> None:
    client = app_client(client_for)
    device = Device()
    # No session to bind.
    assert client.post(REGISTER, headers={"Secure-Session-Response": "a.b.c"}).status_code \
        == 401
    response = client.get("/login", params={"user": "alice"})
    _, challenge = registration(response)
    # No proof; a malformed or oversized one; GET.
    assert client.post(REGISTER).status_code == 400
    assert client.post(REGISTER, headers={"Secure-Session-Response": "(1 2)"}).status_code \
        == 400
    assert client.post(REGISTER, headers={
        "Secure-Session-Response": "a" * 9000}).status_code == 400
    assert client.get(REGISTER).status_code == 405
    # A proof without its key, or signed by another key than the one it names.
    assert client.post(REGISTER, headers={
        "Secure-Session-Response": device.proof(challenge)}).status_code == 401
    other = Device()
    assert client.post(REGISTER, headers={"Secure-Session-Response": other.proof(
        challenge, jwk=device.public)}).status_code == 401
    # A challenge for a refresh, or made up.
    forged = Challenges(Keyring(SECRET)).issue("refresh", token_claims(client)["jti"],
                                               int(token_claims(client)["iat"]))
    for bad in (forged, "1.aaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbb"):
        assert client.post(REGISTER, headers={
            "Secure-Session-Response": device.proof(bad, with_key=True)}).status_code == 401
    assert "cnf" not in token_claims(client)
    # The real one binds, once.
    proof = device.proof(challenge, with_key=True)
    assert client.post(REGISTER, headers={"Secure-Session-Response": proof}).status_code \
        == 200
    assert client.post(REGISTER, headers={"Secure-Session-Response": proof}).status_code \
        == 409


def test_registration_on_plain_http_is_refused(client_for: Client) -> None:
    https = app_client(client_for)
    _, challenge = registration(https.get("/login", params={"user": "alice"}))
    plain = app_client(client_for, base_url="http://testserver")
    plain.cookies.update(https.cookies)
    response = plain.post(REGISTER, headers={
        "Secure-Session-Response": Device().proof(challenge, with_key=True)})
    assert response.status_code == 400
    assert "https" in response.json()["detail"]


# --- ordinary requests of a bound session ------------------------------------------------------


def test_a_bound_token_is_never_extended_by_ordinary_requests(client_for: Client,
                                                              clock: Clock) -> None:
    client = app_client(client_for, update_age=0)
    bind(client, Device())
    exp = token_claims(client)["exp"]
    clock.now += 20
    quiet = client.get("/me")
    assert quiet.json()["id"] == "alice"
    changed = client.post("/session", json={"cart": 3})  # the app changes the session
    [line] = set_cookies(changed, "session")
    assert max_age(line) == BOUND - 20  # same expiry: renewal never extends a bound token
    assert token_claims(client)["exp"] == exp
    # The refresh cookie carries the change, so the next refresh keeps it.
    assert set_cookies(changed, REFRESH_COOKIE)
    clock.now += BOUND
    assert client.get("/me").json()["id"] is None  # the bound cookie is over: signed out


def test_the_refresh_cookie_is_never_a_session_cookie(client_for: Client) -> None:
    client = app_client(client_for)
    bind(client, Device())
    stolen = app_client(client_for)
    stolen.cookies.set("session", client.cookies[REFRESH_COOKIE])
    assert stolen.get("/me").json()["id"] is None


# --- refresh ---------------------------------------------------------------------------------


def test_refresh_challenges_then_reissues_for_bound_lifetime(client_for: Client,
                                                             clock: Clock) -> None:
    client = app_client(client_for)
    device = Device()
    config = bind(client, device)
    client.post("/session", json={"cart": 3})
    clock.now += BOUND + 30
    del client.cookies["session"]  # the browser dropped it at Max-Age
    assert client.get("/me").json()["id"] is None
    response = refresh(client, device, config["session_identifier"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == config
    [line] = set_cookies(response, "session")
    assert max_age(line) == BOUND
    me = client.get("/me").json()
    assert me["id"] == "alice" and me["session"] == {"cart": 3}
    assert token_claims(client)["jti"] == config["session_identifier"]


def test_refresh_refusals_end_the_session(client_for: Client, clock: Clock) -> None:
    client = app_client(client_for)
    device = Device()
    session_id = bind(client, device)["session_identifier"]
    cookies = dict(client.cookies)

    def again() -> None:
        client.cookies.clear()
        client.cookies.update(cookies)

    # A proof by another key; alg none, HS256, ES384; the wrong typ.
    ended(refresh(client, Device(), session_id))
    for header in ({"alg": "none"}, {"alg": "HS256"}, {"alg": "ES384"}, {"typ": "JWT"},
                   {"typ": None}, {"alg": "ES256", "crit": ["exp"], "exp": 1}):
        again()
        asked = client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id})
        challenge = http_sf.parse(asked.headers["secure-session-challenge"].encode(),
                                  tltype="item")[0]
        proof = (unsigned_proof(str(challenge), header) if "alg" in header
                 else device.proof(str(challenge), **header))
        ended(client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id,
                                            "Secure-Session-Response": proof}))
    # A replayed challenge: the first use succeeds, the second is refused.
    again()
    asked = client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id})
    challenge = str(http_sf.parse(asked.headers["secure-session-challenge"].encode(),
                                  tltype="item")[0])
    proof = device.proof(challenge)
    headers = {"Sec-Secure-Session-Id": session_id, "Secure-Session-Response": proof}
    assert client.post(REFRESH, headers=headers).status_code == 200
    ended(client.post(REFRESH, headers=headers))
    # An expired challenge.
    again()
    asked = client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id})
    challenge = str(http_sf.parse(asked.headers["secure-session-challenge"].encode(),
                                  tltype="item")[0])
    clock.now += 121
    ended(client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id,
                                        "Secure-Session-Response": device.proof(challenge)}))


def unsigned_proof(challenge: str, header: dict[str, Any]) -> str:
    """A proof with another algorithm: ``none`` (no signature), or HMAC/ES384 made up."""
    protected = b64url_encode(orjson.dumps({"typ": "dbsc+jwt", **header}))
    payload = b64url_encode(orjson.dumps({"jti": challenge}))
    signature = "" if header["alg"] == "none" else b64url_encode(b"x" * 32)
    return f"{protected}.{payload}.{signature}" if signature else f"{protected}.{payload}.AA"


def test_a_challenge_of_another_session_is_refused(client_for: Client) -> None:
    alice, bob = app_client(client_for), app_client(client_for)
    device = Device()
    alice_id = bind(alice, device)["session_identifier"]
    bob_id = bind(bob, device, "bob")["session_identifier"]
    asked = alice.post(REFRESH, headers={"Sec-Secure-Session-Id": alice_id})
    challenge = str(http_sf.parse(asked.headers["secure-session-challenge"].encode(),
                                  tltype="item")[0])
    ended(bob.post(REFRESH, headers={"Sec-Secure-Session-Id": bob_id,
                                     "Secure-Session-Response": device.proof(challenge)}))
    # Nor may one session's refresh cookie answer for another session id.
    ended(alice.post(REFRESH, headers={"Sec-Secure-Session-Id": bob_id}))


def test_malformed_and_oversized_refresh_headers_are_4xx(client_for: Client) -> None:
    client = app_client(client_for)
    session_id = bind(client, Device())["session_identifier"]
    for headers in (
        {},
        {"Sec-Secure-Session-Id": "(1 2)"},
        {"Sec-Secure-Session-Id": "x" * 200},
        {"Sec-Secure-Session-Id": '"' + "x" * 9000 + '"'},
        {"Sec-Secure-Session-Id": session_id, "Secure-Session-Response": "not a jws"},
        {"Sec-Secure-Session-Id": session_id, "Secure-Session-Response": "a" * 9000},
        {"Sec-Secure-Session-Id": session_id, "Secure-Session-Response": "e30.e30.AA"},
        {"Sec-Secure-Session-Id": session_id, "Secure-Session-Response": "?1"},
    ):
        response = client.post(REFRESH, headers=headers)
        assert 400 <= response.status_code < 500, (headers, response.status_code)
    assert client.get(REFRESH).status_code == 405
    # No refresh cookie at all (a browser that lost it, or a copy of the session cookie).
    client.cookies.clear()
    ended(client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id}))


def test_a_quoted_session_id_is_read_as_a_structured_string(client_for: Client) -> None:
    client = app_client(client_for)
    session_id = bind(client, Device())["session_identifier"]
    asked = client.post(REFRESH, headers={"Sec-Secure-Session-Id": f'"{session_id}"'})
    assert asked.status_code == 403


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
def test_revocation_makes_the_next_refresh_fail(client_for: Client) -> None:
    store = MemoryStore(alice="USER")
    client = app_client(client_for, freshness=Freshness(store, revalidate_after=3600))
    device = Device()
    session_id = bind(client, device)["session_identifier"]
    reads = store.reads
    assert refresh(client, device, session_id).status_code == 200
    assert store.reads == reads + 1  # one store read per refresh
    client.portal.call(store.revoke_sessions, "alice")  # type: ignore[attr-defined]
    ended(refresh(client, device, session_id))
    assert client.get("/me").json()["id"] is None


# --- configuration ----------------------------------------------------------------------------


async def noop(scope: Any, receive: Any, send: Any) -> None:
    pass


def test_unsupported_configurations_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="AuthJSFormat"):
        JWTSessionMiddleware(noop, SECRET, format=AuthJSFormat(), max_cookie_size=3800,
                             device_binding=DeviceBinding())
    with pytest.raises(ValueError, match=r"would chunk it: set max_cookie_size=\d+ or less"):
        JWTSessionMiddleware(noop, SECRET, device_binding=DeviceBinding())
    with pytest.raises(ValueError, match="https_only"):
        JWTSessionMiddleware(noop, SECRET, https_only=False, max_cookie_size=3800,
                             device_binding=DeviceBinding())
    with pytest.raises(ValueError, match="bound_lifetime"):
        DeviceBinding(bound_lifetime=0)
    with pytest.raises(ValueError, match="paths on this site"):
        DeviceBinding(refresh_path="https://evil.example/refresh")
    binding = DeviceBinding()
    JWTSessionMiddleware(noop, SECRET, max_cookie_size=3800, device_binding=binding)
    with pytest.raises(ValueError, match="another middleware"):
        JWTSessionMiddleware(noop, SECRET, max_cookie_size=3800, device_binding=binding)


def test_proof_checks_before_the_signature() -> None:
    device = Device()
    good = device.proof("c", with_key=True)
    payload, key = verify_proof(good, None)
    assert payload == {"jti": "c"} and key["kty"] == "EC"
    with pytest.raises(ProofError, match="private"):
        verify_proof(device.proof("c", jwk=device.key.export_private(as_dict=True)), None)
    with pytest.raises(ProofError, match="outside the allow-list"):
        verify_proof(device.proof("c", with_key=True, x5u="https://evil.example/"), None)
    with pytest.raises(ProofError, match="does not fit"):
        verify_proof(good, {"kty": "RSA", "n": "AQAB", "e": "AQAB"})
    small = jwk.JWK.generate(kty="RSA", size=1024).export_public(as_dict=True)
    with pytest.raises(ProofError, match="2048"):
        verify_proof(Device("RSA").proof("c", jwk=small), None)


def test_a_proof_has_one_encoding_only() -> None:
    """A signature is r||s of 32 bytes each (ES256) or exactly the modulus's size
    (RS256), and a key's integers have no leading zero bytes: the same proof or key
    never passes in a second spelling."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from asgi_jwt_session.codec import b64url_decode

    device = Device()
    header, payload, signature = device.proof("c", with_key=True).split(".")
    raw = b64url_decode(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    for other in (b"\0" + raw[:32] + b"\0" + raw[32:],  # zero-padded halves
                  encode_dss_signature(r, s)):  # DER
        with pytest.raises(ProofError, match="signature"):
            verify_proof(f"{header}.{payload}.{b64url_encode(other)}", None)
    rsa = Device("RSA")
    header, payload, signature = rsa.proof("c", with_key=True).split(".")
    padded = b64url_encode(b"\0" + b64url_decode(signature))
    with pytest.raises(ProofError, match="signature"):
        verify_proof(f"{header}.{payload}.{padded}", None)
    zero_e = {**rsa.public, "e": b64url_encode(b"\0\1\0\1")}
    with pytest.raises(ProofError, match="leading zero"):
        verify_proof(rsa.proof("c", jwk=zero_e), None)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
def test_the_registry_marks_and_keeps_a_bound_session_between_refreshes(
        client_for: Client, database_url: str) -> None:
    from asgi_jwt_session.registry import SessionRegistry, list_sessions, revoke_session
    from asgi_jwt_session.store import RoleStore
    from tests.conftest import opening

    store = RoleStore(database_url, sessions_table="user_sessions")
    freshness = Freshness(store, registry=SessionRegistry(store))
    device = Device()
    with app_client(client_for, bound_lifetime=1, freshness=freshness,
                    lifespan=opening(store)) as client:
        client.portal.call(store.create_user, "alice", "USER")  # type: ignore[attr-defined]
        session_id = bind(client, device)["session_identifier"]
        time.sleep(2.1)  # real time: the database compares with its own clock
        # Past the bound token's expiry the session is still listed (and marked): the
        # row reaches as far as the refresh cookie does.
        rows = client.portal.call(list_sessions, store, "alice")  # type: ignore[attr-defined]
        assert [(row.id, row.device_bound) for row in rows] == [(session_id, True)]
        assert client.portal.call(revoke_session, store, session_id)  # type: ignore[attr-defined]
        ended(refresh(client, device, session_id))


def test_the_benchmark_runs_and_a_bound_request_makes_no_query() -> None:
    from benchmarks import bench_dbsc

    results = bench_dbsc.run(requests=30, refreshes=3)
    assert results["queries"] == {"unbound": 0, "bound": 0}
    assert set(results["request_cost"]) >= {"unbound", "bound"}
    assert results["refresh_set_cookie_bytes"] > 0


def test_an_expired_or_ended_session_cannot_refresh(client_for: Client, clock: Clock) -> None:
    client = app_client(client_for, max_age=3600, max_lifetime=7200)
    device = Device()
    session_id = bind(client, device)["session_identifier"]
    clock.now += 3600 + 60  # the refresh cookie's token has expired (max_age)
    ended(client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id}))
    client = app_client(client_for, max_age=3600, max_lifetime=7200)
    session_id = bind(client, device)["session_identifier"]
    for _ in range(2):  # refreshed in time...
        clock.now += 3000
        assert refresh(client, device, session_id).status_code == 200
    clock.now += 3000  # ...but never past the absolute lifetime (max_lifetime)
    ended(client.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id}))
    assert client.get("/me").json()["id"] is None


# --- a challenge serves once on every process (session registry) ---------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_database(request: pytest.FixtureRequest, tmp_path: Any, table: str
                    ) -> tuple[str, str]:
    """A database two "processes" share (the URL, a users table of the test's own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}", table
    return request.getfixturevalue("postgres").dsn, table


def registry_store(database: tuple[str, str]) -> Any:
    from asgi_jwt_session.store import RoleStore

    url, table = database
    return RoleStore(url, table=table, sessions_table=f"{table}_sessions")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_store_records_each_challenge_once(shared_database: tuple[str, str]) -> None:
    async with registry_store(shared_database) as one, registry_store(shared_database) as two:
        await one.create_tables()
        until = datetime.now(UTC) + timedelta(minutes=2)
        assert await one.use_challenge("1.abc.def", until)
        assert not await two.use_challenge("1.abc.def", until)  # another process
        assert not await one.use_challenge("1.abc.def", until)
        assert await two.use_challenge("1.abc.xyz", until)
        # Rows past their end (and a margin) go, at most once a minute per store.
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        assert await one.use_challenge("0.old.one", long_ago)
        two._challenges_pruned = 0.0
        assert await two.use_challenge("2.new.one", until)
        assert await one.use_challenge("0.old.one", long_ago)  # deleted: new again
        queries = one.queries
        assert await one.use_challenge("3.new.two", until)
        assert one.queries == queries + 1  # pruned a moment ago: one statement


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
def test_a_challenge_serves_once_on_every_process_with_a_registry(
        client_for: Client, shared_database: tuple[str, str]) -> None:
    # Two middleware instances (two processes) on one database: a signed registration or
    # refresh replayed on the other one was accepted there, which only remembered the
    # challenges it had seen itself.
    from asgi_jwt_session.registry import SessionRegistry
    from tests.conftest import opening

    stores = [registry_store(shared_database) for _ in range(2)]
    one_app, two_app = (
        app_client(client_for, freshness=Freshness(store, registry=SessionRegistry(store)),
                   lifespan=opening(store)) for store in stores)
    device = Device()
    with one_app as one, two_app as two:
        one.portal.call(stores[0].create_user, "alice", "USER")  # type: ignore[attr-defined]
        path, challenge = registration(one.get("/login", params={"user": "alice"}))
        unbound = one.cookies["session"]
        signed = {"Secure-Session-Response": device.proof(challenge, with_key=True)}
        registered = one.post(path, headers=signed)
        assert registered.status_code == 200, registered.text
        replayed = two.post(path, headers={**signed, "cookie": f"session={unbound}"})
        assert replayed.status_code == 401
        assert "used before" in replayed.json()["detail"]

        session_id = registered.json()["session_identifier"]
        refresh_cookie = one.cookies[REFRESH_COOKIE]
        asked = one.post(REFRESH, headers={"Sec-Secure-Session-Id": session_id})
        challenge = str(http_sf.parse(asked.headers["secure-session-challenge"].encode(),
                                      tltype="item")[0])
        signed = {"Sec-Secure-Session-Id": session_id,
                  "Secure-Session-Response": device.proof(challenge)}
        assert one.post(REFRESH, headers=signed).status_code == 200
        ended(two.post(REFRESH, headers={**signed,
                                         "cookie": f"{REFRESH_COOKIE}={refresh_cookie}"}))
        # A new challenge serves on the other process as well.
        cookie = {"Sec-Secure-Session-Id": session_id,
                  "cookie": f"{REFRESH_COOKIE}={one.cookies[REFRESH_COOKIE]}"}
        asked = two.post(REFRESH, headers=cookie)
        challenge = str(http_sf.parse(asked.headers["secure-session-challenge"].encode(),
                                      tltype="item")[0])
        assert two.post(REFRESH, headers={**cookie, "Secure-Session-Response":
                                          device.proof(challenge)}).status_code == 200
        ended(one.post(REFRESH, headers=signed))  # on its own process, as before


# --- register_existing ---------------------------------------------------------------------


def test_register_existing_offers_a_session_signed_in_before_once(client_for: Client
                                                                  ) -> None:
    before = client_for(base_url=HTTPS)  # the session was signed in before DBSC was on
    before.get("/login", params={"user": "alice"})
    cookie = {"cookie": f"session={before.cookies['session']}"}
    jti = token_claims(before)["jti"]

    off = app_client(client_for)  # the default: only a sign-in is offered
    assert "secure-session-registration" not in off.get("/plain", headers=cookie).headers

    on = client_for(base_url=HTTPS, max_cookie_size=3800,
                    device_binding=DeviceBinding(bound_lifetime=BOUND, register_existing=True))
    plain_http = on.get("http://testserver/plain", headers=cookie)
    assert "secure-session-registration" not in plain_http.headers
    assert "secure-session-registration" not in on.get("/plain").headers  # nobody signed in
    offered = on.get("/plain", headers=cookie)  # a response that never touched the session
    assert "cookie" in offered.headers["vary"].lower()
    path, challenge = registration(offered)
    assert "secure-session-registration" not in on.get("/plain", headers=cookie).headers
    device = Device()
    registered = on.post(path, headers={**cookie, "Secure-Session-Response":
                                        device.proof(challenge, with_key=True)})
    assert registered.status_code == 200, registered.text
    assert registered.json()["session_identifier"] == jti  # the same session, now bound
    assert token_claims(on)["cnf"] == {"jwk": {
        name: device.public[name] for name in ("crv", "kty", "x", "y")}}
    assert on.get("/me").json()["id"] == "alice"
    assert "secure-session-registration" not in on.get("/me").headers
    with pytest.raises(TypeError, match="register_existing"):
        DeviceBinding(register_existing="yes")  # type: ignore[arg-type]
