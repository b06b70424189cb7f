"""A store written against the `Store` protocol alone (a dict) works with freshness, the
refresh endpoint and the session endpoints: adding a backend is one new module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import (
    UnknownRole,
    UnknownUser,
    auth,
    login,
    require_role,
    revoke_sessions,
    update_user_role,
)
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.store import Listener, Store, StoredUser
from tests.conftest import fetch_csrf, make_app


class DictStore:
    """Users in a dict: the whole `Store` protocol in a few lines."""

    def __init__(self) -> None:
        self.users: dict[str, StoredUser] = {}
        self.on_change: list[Listener] = []
        self.roles = RoleHierarchy()
        self.reads = 0

    async def get_user(self, user_id: str) -> StoredUser | None:
        self.reads += 1
        return self.users.get(user_id)

    async def create_user(self, user_id: str, role: str, *, email: str | None = None
                          ) -> StoredUser:
        if user_id in self.users:
            raise ValueError(f"user {user_id!r} already exists")
        user = StoredUser(user_id, email, self.roles.validate(role), 1, datetime.now(UTC))
        self.users[user_id] = user
        return user

    async def change(self, user_id: str, **values: object) -> StoredUser:
        user = self.users.get(user_id)
        if user is None:
            raise UnknownUser(user_id)
        user = replace(user, session_version=user.session_version + 1,
                       updated_at=datetime.now(UTC), **values)  # type: ignore[arg-type]
        self.users[user_id] = user
        for listener in self.on_change:
            result = listener(user)
            if result is not None:
                await result
        return user

    async def update_user_role(self, user_id: str, role: str) -> StoredUser:
        if role not in self.roles:
            raise UnknownRole(role)
        return await self.change(user_id, role=role)

    async def revoke_sessions(self, user_id: str) -> StoredUser:
        return await self.change(user_id, revoked_at=datetime.now(UTC))

    async def set_disabled(self, user_id: str, disabled: bool) -> StoredUser:
        return await self.change(user_id, disabled=disabled)


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def client(client_for: Callable[..., TestClient], store: DictStore) -> Iterator[TestClient]:
    """The app with freshness on the dict store, running; ``client.portal.call`` runs
    store calls on its event loop."""

    async def sign_in(request: Request) -> JSONResponse:
        user = await store.get_user(request.query_params["user"])
        assert user is not None
        login(request, user.id, user.role, version=user.session_version)
        return JSONResponse({})

    async def me(request: Request) -> JSONResponse:
        session = auth(request)
        return JSONResponse(None if session is None or session.user is None
                            else {"id": session.user.id, "role": session.user.role})

    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"admin": require_role(request, "ADMIN").id})

    app = make_app(Route("/sign-in", sign_in), Route("/me", me), Route("/admin", admin),
                   session_routes(), freshness=Freshness(store, revalidate_after=3600))
    with client_for(app) as client:
        yield client


def test_the_dict_store_is_a_store() -> None:
    store: Store = DictStore()  # type-checks against the protocol
    assert store.on_change == []


def test_role_change_and_revocation_take_effect_on_the_next_request(
        client: TestClient, store: DictStore) -> None:
    run = client.portal.call
    run(store.create_user, "ann", "USER")
    client.get("/sign-in", params={"user": "ann"})
    assert client.get("/me").json() == {"id": "ann", "role": "USER"}
    reads = store.reads
    for _ in range(3):  # ordinary requests: no store read
        assert client.get("/admin").status_code == 403
    assert store.reads == reads
    run(update_user_role, store, "ann", "ADMIN")  # the feed hears it
    assert client.get("/admin").json() == {"admin": "ann"}
    assert store.reads == reads + 1
    run(revoke_sessions, store, "ann")
    assert client.get("/me").json() is None


def test_refresh_endpoint_uses_the_middlewares_store(client: TestClient,
                                                     store: DictStore) -> None:
    client.portal.call(store.create_user, "bob", "USER")
    client.get("/sign-in", params={"user": "bob"})
    token = fetch_csrf(client)
    # A change made behind the store's back (no listener): only a refresh sees it.
    store.users["bob"] = replace(store.users["bob"], role="ORG_ADMIN", session_version=2)
    assert client.get("/me").json()["role"] == "USER"
    response = client.post("/auth/session/refresh", headers={"x-csrf-token": token})
    assert response.json()["session"]["user"] == {"id": "bob", "role": "ORG_ADMIN"}
    assert client.get("/me").json()["role"] == "ORG_ADMIN"
    client.portal.call(store.set_disabled, "bob", True)
    assert client.post("/auth/session/refresh",
                       headers={"x-csrf-token": token}).status_code == 401
    assert client.get("/me").json() is None
