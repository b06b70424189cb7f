"""Same-second re-login (issue 11, item 4): a sign-in after a ``revoke_sessions()`` is
never signed out by it, one before it always is, even within the same second.

A real RoleStore on a SQLite file, through the middleware's revalidation (the feed's
announcement and the periodic check) and through ``POST /auth/session/refresh``. The
clock is the real one: the store stamps ``revoked_at`` with it, to the microsecond."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.store import RoleStore, revoke_sessions, update_user_role
from asgi_jwt_session.tokens import TokenCodec
from tests.conftest import SECRET, make_app, opening

Client = Callable[..., TestClient]

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # `databases`


def sign_in(client: TestClient, version: int) -> str:
    """A fresh sign-in of alice (its own cookie jar): the session cookie."""
    client.cookies.clear()
    response = client.get("/login", params={"user": "alice", "version": str(version)})
    assert response.status_code == 200
    token = response.cookies["session"]
    client.cookies.clear()
    return token


def signed_in_ms(token: str) -> int:
    auth_ms: int = TokenCodec(SECRET).decode(token)["auth_ms"]
    return auth_ms


def me(client: TestClient, token: str) -> Any:
    return client.get("/me", headers={"cookie": f"session={token}"}).json()


def revoke_within_one_second(client: TestClient, store: RoleStore) -> tuple[str, float, str]:
    """Sign in, revoke, sign in again, all in one whole second (a few ms apart): the
    first session, the revocation's time (epoch seconds) and the second session."""
    run = client.portal.call
    for _ in range(10):
        while time.time() % 1 > 0.5:  # start early in a second
            time.sleep(0.01)
        before = sign_in(client, 1)
        time.sleep(0.005)
        revoked = run(revoke_sessions, store, "alice")
        time.sleep(0.005)
        after = sign_in(client, 2)  # as a sign-in form would: the stored version
        assert revoked.revoked_at is not None
        revoked_at = revoked.revoked_at.timestamp()
        seconds = {signed_in_ms(before) // 1000, int(revoked_at), signed_in_ms(after) // 1000}
        if len(seconds) == 1:
            assert signed_in_ms(before) < revoked_at * 1000 < signed_in_ms(after)
            return before, revoked_at, after
    pytest.fail("could not fit two sign-ins and a revocation in one second")


@pytest.fixture
def store(tmp_path: Any, table: str) -> RoleStore:
    return RoleStore(f"sqlite:///{tmp_path / 'roles.db'}", table=table)


@asyncio_only
@pytest.mark.parametrize("trigger", ["feed", "periodic"])
def test_revalidation_ends_only_the_session_signed_in_before(
        client_for: Client, store: RoleStore, trigger: str) -> None:
    freshness = Freshness(store, revalidate_after=1 if trigger == "periodic" else 3600)
    app = make_app(lifespan=opening(store), freshness=freshness)
    with client_for(app) as client:
        client.portal.call(store.create_user, "alice", "USER")
        before, _, after = revoke_within_one_second(client, store)
        if trigger == "feed":  # a change the feed announces: both sessions are checked
            client.portal.call(update_user_role, store, "alice", "ADMIN")
        else:
            time.sleep(1.1)
        assert me(client, before)["id"] is None
        body = me(client, after)
        assert body["id"] == "alice"
        assert body["role"] == ("ADMIN" if trigger == "feed" else "USER")
        assert freshness.queries >= 1


@asyncio_only
def test_refresh_ends_only_the_session_signed_in_before(client_for: Client,
                                                         store: RoleStore) -> None:
    app = make_app(session_routes(), lifespan=opening(store),
                   freshness=Freshness(store, revalidate_after=None))
    with client_for(app) as client:
        client.portal.call(store.create_user, "alice", "USER")
        before, _, after = revoke_within_one_second(client, store)
        csrf = client.get("/auth/session").json()["csrfToken"]
        client.cookies.clear()

        def refresh(token: str) -> Any:
            return client.post("/auth/session/refresh", headers={
                "cookie": f"session={token}; csrftoken={csrf}", "x-csrf-token": csrf})

        assert refresh(before).status_code == 401
        response = refresh(after)
        assert response.status_code == 200, response.text
        assert response.json()["session"]["user"] == {"id": "alice", "role": "USER"}
        again = response.cookies["session"]
        assert signed_in_ms(again) == signed_in_ms(after)  # the sign-in time is kept
        assert refresh(again).status_code == 200
