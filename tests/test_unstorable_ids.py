"""Ids a database cannot hold (issue 19, 2.4): a NUL (PostgreSQL refuses it in text) or a
lone surrogate (neither driver can encode it) is an unknown user or session in every
store method, on real SQLite and real PostgreSQL, never a driver error; and so in the
FastAPI example's sign-in and the demo's "view as"."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from asgi_jwt_session.errors import UnknownUser
from asgi_jwt_session.store import RoleStore, StoredSession
from asgi_jwt_session.store.databases import holds
from tests.conftest import SECRET, new_database

# Each is refused by at least one of the databases (a NUL only by PostgreSQL).
UNSTORABLE = ["\x00", "a\x00b", "\ud800", "x\udfffy", "\udc80\x00"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # `databases`


@pytest.fixture
def database_url(sqlite_or_postgres_url: str) -> str:
    return sqlite_or_postgres_url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[RoleStore]:
    table = f"users_{uuid.uuid4().hex[:12]}"
    async with RoleStore(database_url, table=table, sessions_table=f"{table}_s") as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        yield store


def session_row(session_id: str, user_id: str) -> StoredSession:
    now = datetime.now(UTC)
    return StoredSession(session_id, user_id, now, now, now + timedelta(days=1),
                         now + timedelta(days=2))


@pytest.mark.anyio
@pytest.mark.parametrize("bad", UNSTORABLE)
async def test_an_id_the_database_cannot_hold_is_unknown(store: RoleStore, bad: str) -> None:
    assert await store.get_user(bad) is None
    assert await store.get_user("alice" + bad) is None
    for write in (store.update_user_role(bad, "ADMIN"), store.revoke_sessions(bad),
                  store.set_disabled(bad, True), store.revoke_other_sessions(bad, "s1")):
        with pytest.raises(UnknownUser):
            await write
    if holds(bad, store.is_postgres):
        return  # SQLite holds a NUL: an id like any other there
    with pytest.raises(ValueError, match="cannot store"):
        await store.create_user(bad, "USER")
    with pytest.raises(ValueError, match="cannot store"):
        await store.create_user("bob", "USER", email=f"bob{bad}@example.com")

    # The registry: no row written, none listed, none revoked.
    await store.record_session(session_row("s1", "alice"), first=True)
    await store.record_session(session_row(bad, "alice"), first=True)
    await store.record_session(session_row("s2", bad), first=True)
    assert [s.id for s in await store.list_sessions("alice")] == ["s1"]
    assert await store.list_sessions(bad) == []
    assert await store.revoke_session(bad) is False
    assert await store.revoke_session("s1", user_id=bad) is False
    alice = await store.get_user("alice")
    assert alice is not None and alice.session_version == 1  # nothing was bumped

    # Keeping a session id no row can have: every row of the user is revoked.
    await store.revoke_other_sessions("alice", bad)
    assert await store.list_sessions("alice") == []


@pytest.mark.anyio
async def test_no_query_is_sent_for_such_an_id(store: RoleStore) -> None:
    sent = store.queries
    assert await store.get_user("\ud800") is None
    assert store.queries == sent


# --- the FastAPI example and the demo -------------------------------------------------------


@pytest.mark.parametrize("username", ["\ud800", "a\x00b"])
def test_fastapi_example_sign_in_with_such_a_username(database_url: str, username: str) -> None:
    from examples.fastapi_app.app import create_app

    app = create_app(secret_key=SECRET, database_url=database_url)
    with TestClient(app) as client:
        csrf = client.get("/auth/session").json()
        # Escaped as JSON.stringify sends it (\\ud800, \\u0000).
        body = json.dumps({"username": username, "password": "x"})
        response = client.post("/sign-in", content=body, headers={
            csrf["csrfHeader"]: csrf["csrfToken"], "content-type": "application/json"})
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "Wrong username or password"}


@pytest.fixture
def demo_database(database_url: str, tmp_path: Path) -> str:
    """The demo's own database (its tables are fixed): a file, or a new PostgreSQL one."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    return new_database(database_url, "demo")


def test_demo_view_as_and_sign_in_with_such_an_id(demo_database: str) -> None:
    from demo.app import create_app
    from tests.test_demo_app import csrf, sign_in

    with TestClient(create_app(demo_database, SECRET)) as client:
        assert sign_in(client, "ada").status_code == 303
        for path in ("/admin/users/a%00b/view-as", "/admin/users/%00/view-as"):
            response = client.post(path, data={"csrf_token": csrf(client)},
                                   follow_redirects=False)
            assert response.status_code == 303, response.text
            assert response.headers["location"] == "/admin"
        assert client.get("/api/me", headers={"accept": "application/json"}).json()["id"] == "ada"
        client.post("/logout", data={"csrf_token": csrf(client)})
        response = client.post("/login", data={"email": "a\x00b@example.com", "password": "x",
                                               "csrf_token": csrf(client), "next": ""},
                               follow_redirects=False)
        assert response.status_code < 500, response.text
