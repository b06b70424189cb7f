"""Sign out other sessions on a credential change (issue 13, item 6): after a password
change, ``await revoke_sessions(store, user_id)`` then ``login(...)`` again: every
other session of the user ends (on the next request with the feed, within
``revalidate_after`` without), this one goes on, and ordinary requests make no query.

With the in-memory store under asyncio and trio, and with the real RoleStore on SQLite
(asyncio: ``databases``) and the real clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import login, revoke_sessions
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.session import get_session
from asgi_jwt_session.store import Store
from tests.conftest import make_app, opening, sign_in
from tests.memory_store import MemoryStore

Client = Callable[..., TestClient]


class TickingClock:
    """``time.time`` that moves on a millisecond at every reading, as real time does
    between a revocation and the sign-in after it."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def routes(store: Store) -> list[Route]:
    async def change_password(request: Request) -> JSONResponse:
        user = get_session(request).user
        assert user is not None
        # ... the app checked the old password and stored the new one, then:
        stored = await revoke_sessions(store, user.id)  # sign out everywhere
        login(request, stored.id, stored.role, version=stored.session_version)  # stay here
        return JSONResponse({"version": stored.session_version})

    return [Route("/password", change_password, methods=["POST"])]


def two_devices(client_for: Client, store: Store, freshness: Freshness,
                **options: Any) -> tuple[TestClient, TestClient]:
    app = make_app(*routes(store), freshness=freshness, **options)
    return client_for(app), client_for(app)


def test_other_sessions_end_this_one_stays(client_for: Client,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    clock = TickingClock()
    monkeypatch.setattr(time, "time", clock)
    store = MemoryStore(alice="USER")
    freshness = Freshness(store, revalidate_after=300)
    here, other = two_devices(client_for, store, freshness)
    sign_in(here, "alice", version="1")
    sign_in(other, "alice", version="1")
    assert here.post("/password").json() == {"version": 2}
    assert other.get("/me").json()["id"] is None  # the feed: at its next request
    assert here.get("/me").json()["id"] == "alice"
    clock.now += 300  # and at the periodic check, which reads the revocation again
    body = here.get("/me").json()
    assert body["id"] == "alice" and body["version"] == 2
    reads = store.reads
    for _ in range(10):
        clock.now += 10
        assert here.get("/me").json()["id"] == "alice"
    assert store.reads == reads  # ordinary requests: no query


def test_without_a_feed_other_sessions_end_within_revalidate_after(
        client_for: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = TickingClock()
    monkeypatch.setattr(time, "time", clock)
    store = MemoryStore(alice="USER")
    freshness = Freshness(store, revalidate_after=60, watch=False)  # another process
    here, other = two_devices(client_for, store, freshness)
    sign_in(here, "alice", version="1")
    sign_in(other, "alice", version="1")
    here.post("/password")
    assert other.get("/me").json()["id"] == "alice"  # not heard of yet
    clock.now += 60
    assert other.get("/me").json()["id"] is None
    assert here.get("/me").json()["id"] == "alice"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # `databases`
def test_with_the_real_store(client_for: Client, tmp_path: Any, table: str) -> None:
    from asgi_jwt_session.store import RoleStore

    store = RoleStore(f"sqlite:///{tmp_path / 'roles.db'}", table=table)
    freshness = Freshness(store, revalidate_after=1)
    app = make_app(*routes(store), freshness=freshness, lifespan=opening(store))
    with client_for(app) as client:  # one event loop for the store: one client

        def me(token: str) -> Any:
            client.cookies.clear()  # each device's own cookie, nothing else
            return client.get("/me", headers={"cookie": f"session={token}"}).json()

        assert client.portal is not None
        client.portal.call(store.create_user, "alice", "USER")
        other = sign_in(client, "alice", version="1").cookies["session"]
        client.cookies.clear()
        sign_in(client, "alice", version="1")
        time.sleep(0.002)  # the revocation comes after both sign-ins, by the clock
        response = client.post("/password")
        assert response.json() == {"version": 2}
        here = response.cookies["session"]
        time.sleep(0.002)
        assert me(other)["id"] is None
        time.sleep(1.1)  # past revalidate_after: this session is checked again
        assert me(here)["id"] == "alice"
        assert freshness.queries >= 2
