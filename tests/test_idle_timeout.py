"""Idle timeout (issue 13, item 2): a session unused for ``idle_timeout`` is over on
every process, with no state anywhere but the token; an active one lives on, re-issued
every ``idle_timeout / 2``; the absolute lifetime still caps it; ordinary requests
still make no query."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware, SessionConfig
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.tokens import TokenCodec
from tests.conftest import SECRET, Clock, Users, cookie_value, make_app, set_cookies, sign_in

Client = Callable[..., TestClient]

IDLE = 30 * 60
LEEWAY = 10  # the middleware's default clock tolerance on exp


def token_of(response: httpx.Response) -> str:
    return cookie_value(set_cookies(response, "session"))


def claims_of(token: str, now: float) -> dict[str, Any]:
    return TokenCodec(SECRET).decode(token, now=int(now))


def me(client: TestClient, token: str) -> httpx.Response:
    """``/me`` with exactly this session cookie (the jar kept out of it)."""
    client.cookies.clear()
    response: httpx.Response = client.get("/me", headers={"cookie": f"session={token}"})
    return response


def max_age_of(response: httpx.Response) -> int | None:
    for attribute in set_cookies(response, "session")[0].split(";")[1:]:
        name, _, value = attribute.strip().partition("=")
        if name.lower() == "max-age":
            return int(value)
    return None


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("idle", [0, -1, 91 * 24 * 3600, True, 1.5, "60"])
def test_idle_timeout_must_be_positive_and_within_the_absolute_lifetime(idle: Any) -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        SessionConfig(idle_timeout=idle)
    with pytest.raises(ValueError, match="idle_timeout"):
        JWTSessionMiddleware(make_app(), secret_key=SECRET, idle_timeout=idle)


def test_idle_timeout_options() -> None:
    assert SessionConfig().idle_timeout is None
    config = SessionConfig(idle_timeout=IDLE)
    assert config.token_lifetime == IDLE
    assert config.renew_after == IDLE // 2
    assert SessionConfig(idle_timeout=IDLE, max_lifetime=IDLE).idle_timeout == IDLE
    # update_age below idle_timeout / 2 renews sooner (a tighter idle bound).
    assert SessionConfig(idle_timeout=IDLE, update_age=60).renew_after == 60
    middleware = JWTSessionMiddleware(make_app(), secret_key=SECRET,
                                      config=SessionConfig(idle_timeout=IDLE))
    assert middleware.renew_after == IDLE // 2
    with pytest.raises(TypeError, match="config="):
        JWTSessionMiddleware(make_app(), secret_key=SECRET, idle_timeout=IDLE,
                             config=SessionConfig())


# --- the token and its cookie ------------------------------------------------------------------


def test_token_and_cookie_expire_idle_timeout_after_issue(
        client_for: Client, clock: Clock) -> None:
    client = client_for(idle_timeout=IDLE)
    response = sign_in(client)
    claims = claims_of(token_of(response), clock.now)
    assert claims["exp"] == claims["iat"] + IDLE
    assert max_age_of(response) == IDLE
    # Without an idle timeout, max_age (30 days) as before.
    response = sign_in(client_for())
    assert max_age_of(response) == 30 * 24 * 3600


def test_an_idle_session_is_over(client_for: Client, clock: Clock) -> None:
    client = client_for(idle_timeout=IDLE)
    token = token_of(sign_in(client))
    clock.now += IDLE - 60
    assert me(client, token).json()["id"] == "alice"  # used within the timeout
    clock.now = claims_of(token, clock.now - 1)["exp"] + LEEWAY + 1
    response = me(client, token)
    assert response.json()["id"] is None
    assert "Max-Age=0" in set_cookies(response, "session")[0]  # the cookie is expired


def test_idle_is_judged_on_every_process(client_for: Client, clock: Clock) -> None:
    # Another process: another middleware with the same secret, nothing shared.
    first, second = client_for(idle_timeout=IDLE), client_for(idle_timeout=IDLE)
    token = token_of(sign_in(first))
    assert me(second, token).json()["id"] == "alice"
    clock.now += IDLE + LEEWAY + 1
    assert me(second, token).json()["id"] is None
    assert me(first, token).json()["id"] is None


def test_an_active_session_is_renewed_every_half_timeout(
        client_for: Client, clock: Clock) -> None:
    client = client_for(idle_timeout=IDLE)
    token = token_of(sign_in(client))
    clock.now += IDLE // 2 - 1
    response = me(client, token)
    assert set_cookies(response, "session") == []  # not yet: no cookie per request
    clock.now += 1
    response = me(client, token)
    renewed = token_of(response)
    claims = claims_of(renewed, clock.now)
    assert claims["exp"] == int(clock.now) + IDLE
    assert max_age_of(response) == IDLE
    # Used every idle_timeout / 2, it lives well past several timeouts.
    for _ in range(6):
        clock.now += IDLE // 2
        response = me(client, renewed)
        assert response.json()["id"] == "alice"
        renewed = token_of(response)
    assert claims_of(renewed, clock.now)["auth_time"] == claims["auth_time"]


def test_the_absolute_lifetime_still_caps_an_active_session(
        client_for: Client, clock: Clock) -> None:
    client = client_for(idle_timeout=IDLE, max_lifetime=2 * IDLE)
    token = token_of(sign_in(client))
    signed_in = int(clock.now)
    for _ in range(3):
        clock.now += IDLE // 2
        response = me(client, token)
        assert response.json()["id"] == "alice"
        token = token_of(response)
    # Re-issued at 45 minutes, the token stops at the absolute lifetime, not at 75.
    assert claims_of(token, clock.now)["exp"] == signed_in + 2 * IDLE
    clock.now = signed_in + 2 * IDLE - 1
    assert me(client, token).json()["id"] == "alice"
    clock.now = signed_in + 2 * IDLE + 1
    assert me(client, token).json()["id"] is None


def test_no_query_on_ordinary_requests(client_for: Client, clock: Clock,
                                             users: Users) -> None:
    freshness = Freshness(users, revalidate_after=3600)
    client = client_for(idle_timeout=IDLE, freshness=freshness)
    token = token_of(sign_in(client))
    for _ in range(20):
        clock.now += 60
        response = me(client, token)
        assert response.json()["id"] == "alice"
        if set_cookies(response, "session"):
            token = token_of(response)
    assert users.calls == 0  # 20 minutes of requests, two renewals, no query
