"""Remember me (issue 13, item 4): ``login(..., remember=False)`` gives a cookie the
browser forgets when it closes (no ``Max-Age``), with its own shorter absolute
lifetime (``browser_session_lifetime``), kept across renewals; ``remember=True`` (the
default) the persistent one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import InvalidToken, JWTSessionMiddleware, Session, SessionConfig, login
from asgi_jwt_session.codec import check_types
from asgi_jwt_session.testing import sign_in as sign_in_directly
from asgi_jwt_session.tokens import TokenCodec
from tests.conftest import SECRET, Clock, cookie_value, make_app, set_cookies

Client = Callable[..., TestClient]

DAY = 24 * 3600


async def remember_login(request: Request) -> JSONResponse:
    """``/remember-login?remember=0|1``: sign alice in, remembered or not."""
    remember = request.query_params.get("remember") == "1"
    login(request, "alice", "USER", version=1, remember=remember)
    return JSONResponse({})


ROUTES = [Route("/remember-login", remember_login)]


def sign_in(client: TestClient, remember: bool) -> httpx.Response:
    params = {"remember": "1" if remember else "0"}
    response: httpx.Response = client.get("/remember-login", params=params)
    assert response.status_code == 200
    return response


def attributes(response: httpx.Response) -> dict[str, str]:
    line = set_cookies(response, "session")[0]
    found = {}
    for attribute in line.split(";")[1:]:
        name, _, value = attribute.strip().partition("=")
        found[name.lower()] = value
    return found


def token_of(response: httpx.Response) -> str:
    return cookie_value(set_cookies(response, "session"))


def claims_of(token: str, now: float) -> dict[str, Any]:
    return TokenCodec(SECRET).decode(token, now=int(now))


def me(client: TestClient, token: str) -> httpx.Response:
    client.cookies.clear()
    response: httpx.Response = client.get("/me", headers={"cookie": f"session={token}"})
    return response


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lifetime", [0, -1, True, 1.5, None])
def test_browser_session_lifetime_must_be_positive(lifetime: Any) -> None:
    with pytest.raises(ValueError, match="browser_session_lifetime"):
        SessionConfig(browser_session_lifetime=lifetime)
    with pytest.raises(ValueError, match="browser_session_lifetime"):
        JWTSessionMiddleware(make_app(), secret_key=SECRET, browser_session_lifetime=lifetime)


def test_lifetimes() -> None:
    config = SessionConfig()
    assert config.browser_session_lifetime == DAY
    assert config.lifetime() == config.max_lifetime == 90 * DAY
    assert config.lifetime(False) == DAY
    assert config.token_lifetime_for(False) == DAY
    assert config.renew_after_for(False) == DAY // 2
    # Never longer than the absolute lifetime of a remembered sign-in.
    assert SessionConfig(max_lifetime=3600).lifetime(False) == 3600
    assert SessionConfig(idle_timeout=600).token_lifetime_for(False) == 600


@pytest.mark.parametrize("remember", ["no", 0, 1, None])
def test_remember_is_a_bool(remember: Any) -> None:
    with pytest.raises(TypeError, match="remember"):
        Session().login("alice", "USER", remember=remember)


# --- the cookie ------------------------------------------------------------------------------


def test_remembered_sign_in_is_persistent(client_for: Client, clock: Clock) -> None:
    response = sign_in(client_for(make_app(*ROUTES)), remember=True)
    assert attributes(response)["max-age"] == str(30 * DAY)
    claims = claims_of(token_of(response), clock.now)
    assert "rem" not in claims  # the default costs no cookie bytes
    assert claims["exp"] == int(clock.now) + 30 * DAY


def test_browser_session_cookie_has_no_max_age(client_for: Client, clock: Clock) -> None:
    response = sign_in(client_for(make_app(*ROUTES)), remember=False)
    found = attributes(response)
    assert "max-age" not in found and "expires" not in found
    claims = claims_of(token_of(response), clock.now)
    assert claims["rem"] is False
    assert claims["exp"] == int(clock.now) + DAY


def test_browser_session_is_kept_across_renewals(client_for: Client, clock: Clock) -> None:
    client = client_for(make_app(*ROUTES, update_age=3600))
    token = token_of(sign_in(client, remember=False))
    clock.now += 3600
    response = me(client, token)
    assert response.json()["id"] == "alice"
    found = attributes(response)
    assert "max-age" not in found and "expires" not in found
    renewed = claims_of(token_of(response), clock.now)
    assert renewed["rem"] is False
    assert renewed["iat"] == int(clock.now)


def test_browser_session_ends_at_its_own_absolute_lifetime(client_for: Client,
                                                           clock: Clock) -> None:
    client = client_for(make_app(*ROUTES, update_age=3600, browser_session_lifetime=4 * 3600))
    signed_in = int(clock.now)
    token = token_of(sign_in(client, remember=False))
    for _ in range(3):  # in use all along: renewed every hour, never past 4 hours
        clock.now += 3600
        response = me(client, token)
        assert response.json()["id"] == "alice"
        token = token_of(response)
        assert claims_of(token, clock.now)["exp"] <= signed_in + 4 * 3600
    clock.now = signed_in + 4 * 3600 + 1
    response = me(client, token)
    assert response.json()["id"] is None
    assert "Max-Age=0" in set_cookies(response, "session")[0]


def test_a_remembered_sign_in_lives_on(client_for: Client, clock: Clock) -> None:
    client = client_for(make_app(*ROUTES, browser_session_lifetime=3600))
    token = token_of(sign_in(client, remember=True))
    clock.now += 2 * 3600
    assert me(client, token).json()["id"] == "alice"


def test_a_new_sign_in_chooses_again(client_for: Client, clock: Clock) -> None:
    client = client_for(make_app(*ROUTES))
    sign_in(client, remember=False)
    response = sign_in(client, remember=True)
    assert "max-age" in attributes(response)
    assert "rem" not in claims_of(token_of(response), clock.now)


def test_with_max_age_none_every_cookie_is_a_browser_session(client_for: Client,
                                                              clock: Clock) -> None:
    client = client_for(make_app(*ROUTES, max_age=None))
    for remember, lifetime in ((True, 90 * DAY), (False, DAY)):
        response = sign_in(client, remember=remember)
        assert "max-age" not in attributes(response)
        assert claims_of(token_of(response), clock.now)["exp"] == int(clock.now) + lifetime


def test_testing_sign_in_honours_remember(client_for: Client) -> None:
    client = client_for(make_app(*ROUTES))
    session = sign_in_directly(client, SECRET, "alice", "USER", remember=False)
    assert session.remember is False
    assert client.get("/me").json()["id"] == "alice"


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("rem", [0, 1, "false", None, [], {}])
def test_rem_claim_must_be_a_bool(rem: Any) -> None:
    with pytest.raises(InvalidToken, match="'rem'"):
        check_types({"exp": 1, "rem": rem})
    assert check_types({"exp": 1, "rem": False})["rem"] is False


@pytest.mark.parametrize("name", ["ver", "iat", "chk", "auth_time", "auth_ms", "rat"])
def test_a_bool_is_still_no_int_claim(name: str) -> None:
    with pytest.raises(InvalidToken, match=repr(name)):
        check_types({"exp": 1, name: True})


def test_a_token_with_a_bad_rem_reads_as_no_session(client_for: Client, clock: Clock) -> None:
    client = client_for(make_app(*ROUTES))
    now = int(clock.now)
    token = TokenCodec(SECRET).encode({"sub": "alice", "role": "USER", "iat": now,
                                       "exp": now + 60, "auth_time": now, "rem": 0})
    response = me(client, token)
    assert response.status_code == 200 and response.json()["id"] is None
    assert "Max-Age=0" in set_cookies(response, "session")[0]
