"""The session registry: a row per signed-in session written at sign-in and renewal only,
listing and ending sessions one by one, "sign out other devices", everyone's sessions,
the session endpoints and the browser client, and the bad-input rules.

With a RoleStore (a SQLite file here; PostgreSQL in test_registry_postgres.py) the tests
run on asyncio only, as `databases` is asyncio-only; the hook itself is checked on both
backends with a store of a few lines.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

from asgi_jwt_session import Role, login, logout, require_role
from asgi_jwt_session.authjs import AuthJSFormat
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.errors import NotAuthenticated, StoreUnavailable
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.impersonation import ImpersonationEvent, impersonate
from asgi_jwt_session.registry import (
    SessionRegistry,
    client_prefix,
    coarse_device,
    list_sessions,
    revoke_all_sessions,
    revoke_other_sessions,
    revoke_session,
)
from asgi_jwt_session.store import RoleStore, StoredSession, revoke_sessions
from tests.authjs_node import AuthJS
from tests.conftest import SECRET, Clock, Users, fetch_csrf, make_app, opening, set_cookies, sign_in

JS = Path(__file__).resolve().parent / "js"
SCRIPT = files("asgi_jwt_session").joinpath("static/session.js")
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])
# Tests that take no anyio_backend run a RoleStore on asyncio through ``devices()``.


# --- the app: a RoleStore with a registry, the session endpoints, a sign-in form -----------


def app_routes(store: RoleStore) -> list[BaseRoute]:
    async def signin(request: Request) -> JSONResponse:
        user = await store.get_user(request.query_params["user"])
        assert user is not None
        login(request, user.id, user.role, version=user.session_version)
        return JSONResponse({"jti": request.session.jti})

    async def whoami(request: Request) -> JSONResponse:
        user = request.session.user
        if user is None:
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        actor = user.actor.id if user.actor is not None else None
        return JSONResponse({"id": user.id, "jti": request.session.jti, "actor": actor})

    async def change_password(request: Request) -> JSONResponse:
        # (the app checks the old password and stores the new one, then:)
        await revoke_other_sessions(request)
        return JSONResponse({"ok": True})

    async def view_as(request: Request) -> JSONResponse:
        await impersonate(request, store, request.query_params["user"])
        return JSONResponse({"jti": request.session.jti})

    async def admin(request: Request) -> JSONResponse:
        require_role(request, Role.ADMIN)
        return JSONResponse({})

    def sign_out(request: Request) -> JSONResponse:  # a sync endpoint: logout() is sync
        logout(request)
        return JSONResponse({})

    async def clear(request: Request) -> JSONResponse:  # Starlette's way of signing out
        request.session.clear()
        return JSONResponse({})

    return [
        Route("/signin", signin, methods=["POST"]),
        Route("/logout", sign_out, methods=["POST"]),
        Route("/clear", clear, methods=["POST"]),
        Route("/whoami", whoami),
        Route("/change-password", change_password, methods=["POST"]),
        Route("/view-as", view_as, methods=["POST"]),
        Route("/admin", admin),
    ]


def registry_app(store: RoleStore, *, revalidate_after: int | None = 300,
                 registry: SessionRegistry | None = None, **options: Any) -> Starlette:
    registry = registry if registry is not None else SessionRegistry(store, device=coarse_device)
    freshness = Freshness(store, revalidate_after=revalidate_after, registry=registry)
    return make_app(session_routes(), *app_routes(store), lifespan=opening(store),
                    freshness=freshness, **options)


@pytest.fixture
def store(tmp_path: Path, table: str) -> RoleStore:
    """Not connected yet: the app's lifespan connects it and creates the tables."""
    return RoleStore(f"sqlite:///{tmp_path / 'roles.db'}", table=table,
                     sessions_table=f"{table}_sessions")


@contextmanager
def devices(app: Starlette, count: int = 1, **headers: str) -> Iterator[list[TestClient]]:
    """``count`` browsers of one app on one event loop (the first runs the lifespan)."""
    with TestClient(app, backend="asyncio", follow_redirects=False, headers=headers) as first:
        others = [TestClient(app, backend="asyncio", follow_redirects=False, headers=headers)
                  for _ in range(count - 1)]
        for other in others:
            other.portal = first.portal
        yield [first, *others]


def seed(client: TestClient, store: RoleStore, *users: tuple[str, str]) -> None:
    for user_id, role in users:
        client.portal.call(store.create_user, user_id, role)  # type: ignore[union-attr]


def signin(client: TestClient, user: str = "alice") -> str:
    response = client.post("/signin", params={"user": user})
    assert response.status_code == 200, response.text
    jti: str = response.json()["jti"]
    return jti


def signed_in(client: TestClient) -> bool:
    return client.get("/whoami").status_code == 200


def post(client: TestClient, path: str) -> Any:
    return client.post(path, headers={"x-csrf-token": fetch_csrf(client)})


def rows(store: RoleStore) -> list[tuple[Any, ...]]:
    path = str(store.database.url.database)
    assert store.sessions is not None
    with sqlite3.connect(path) as connection:
        found = connection.execute(
            f"SELECT id, user_id, user_agent, client, revoked_at FROM {store.sessions.name} "
            "ORDER BY created_at, id").fetchall()
    connection.close()
    return found


def execute(store: RoleStore, sql: str, *parameters: object) -> None:
    """Change the database behind the store's back, as another program would."""
    with sqlite3.connect(str(store.database.url.database)) as connection:
        connection.execute(sql, parameters)
    connection.close()


# --- written at sign-in and renewal, never on an ordinary request --------------------------


def test_sign_in_writes_a_row_ordinary_requests_query_nothing(store: RoleStore) -> None:
    with devices(registry_app(store), 1, **{"user-agent": "Firefox/130 " + "x" * 300}) as [alice]:
        seed(alice, store, ("alice", "USER"))
        queries = store.queries
        jti = signin(alice)
        # the app's get_user; the registry's upsert, prune and cap check
        assert store.queries == queries + 4
        [(row_id, user_id, user_agent, client, revoked_at)] = rows(store)
        assert (row_id, user_id, revoked_at) == (jti, "alice", None)
        assert user_agent == ("Firefox/130 " + "x" * 300)[:120]  # coarse_device: cut
        assert client is None  # the test client's address is no IP address

        queries = store.queries
        for _ in range(50):
            assert alice.get("/whoami").status_code == 200
            assert alice.get("/plain").text == "ok"
        assert store.queries == queries  # no query, no write

        response = alice.post("/session", json={"theme": "dark"})  # re-issued, not renewed
        assert set_cookies(response, "session")
        assert store.queries == queries


def test_renewal_updates_the_row_in_one_statement(store: RoleStore, clock: Clock) -> None:
    app = registry_app(store, revalidate_after=3600, update_age=60)
    with devices(app) as [alice]:
        seed(alice, store, ("alice", "USER"))
        signin(alice)
        [before] = alice.portal.call(list_sessions, store, "alice")  # type: ignore[union-attr]
        clock.now += 61
        queries = store.queries
        response = alice.get("/whoami")
        assert set_cookies(response, "session")  # renewed
        assert store.queries == queries + 1  # one upsert
        [after] = alice.portal.call(list_sessions, store, "alice")  # type: ignore[union-attr]
        assert after.id == before.id and after.created_at == before.created_at
        assert after.renewed_at > before.renewed_at and after.expires_at > before.expires_at
        queries = store.queries
        assert alice.get("/whoami").status_code == 200
        assert store.queries == queries  # renewed: nothing until the next one


# --- ending sessions -------------------------------------------------------------------------


def test_revoke_one_session_through_the_endpoint(store: RoleStore) -> None:
    with devices(registry_app(store), 3) as [laptop, phone, bob]:
        seed(laptop, store, ("alice", "USER"), ("bob", "USER"))
        mine, other = signin(laptop), signin(phone)
        bobs = signin(bob, "bob")
        listed = laptop.get("/auth/sessions")
        assert listed.headers["cache-control"] == "private, no-store"
        views = listed.json()["sessions"]
        assert {view["id"]: view["current"] for view in views} == {mine: True, other: False}
        assert set(views[0]) == {"id", "created", "renewed", "expires", "userAgent", "client",
                                 "current", "deviceBound"}
        assert views[0]["deviceBound"] is False  # no DBSC here
        assert views[0]["created"].endswith("Z")
        assert bobs not in listed.text  # never another user's

        token = fetch_csrf(laptop)
        queries = store.queries
        response = laptop.post(f"/auth/sessions/{other}/revoke", headers={"x-csrf-token": token})
        assert response.json() == {"revoked": other, "current": False}
        assert store.queries == queries + 2  # revoke the row, bump alice's version

        queries = store.queries
        response = phone.get("/whoami")
        assert response.status_code == 401  # refused on its next request
        assert any(line.startswith("session=;") or "Max-Age=0" in line
                   for line in set_cookies(response, "session"))
        assert signed_in(laptop) and signed_in(bob)
        assert store.queries == queries + 1  # one revalidation for alice, shared
        queries = store.queries
        for _ in range(10):
            assert signed_in(laptop)
        assert store.queries == queries
        assert [view["id"] for view in laptop.get("/auth/sessions").json()["sessions"]] == [mine]


def test_revoke_other_sessions_after_a_password_change(store: RoleStore) -> None:
    with devices(registry_app(store), 4) as [here, phone, tablet, old]:
        seed(here, store, ("alice", "USER"))
        mine = signin(here)
        signin(phone)
        signin(tablet)
        unrecorded = signin(old)
        assert store.sessions is not None
        execute(store, f"DELETE FROM {store.sessions.name} WHERE id = ?", unrecorded)

        queries = store.queries
        response = post(here, "/change-password")
        assert response.status_code == 200
        assert set_cookies(response, "session")  # this one re-issued: it stays
        # revoke the rows, set revoked_at (+ version), move the kept row's sign-in
        assert store.queries == queries + 3

        assert not signed_in(phone) and not signed_in(tablet)
        assert not signed_in(old)  # one the registry never recorded ends too
        queries = store.queries
        for _ in range(10):
            assert here.get("/whoami").json()["jti"] == mine  # the same session, signed in
        assert store.queries == queries
        views = here.get("/auth/sessions").json()["sessions"]
        assert [(view["id"], view["current"]) for view in views] == [(mine, True)]


def test_revoke_others_endpoint(store: RoleStore) -> None:
    with devices(registry_app(store), 2) as [here, phone]:
        seed(here, store, ("alice", "USER"))
        signin(here)
        signin(phone)
        response = post(here, "/auth/sessions/revoke-others")
        assert response.status_code == 200
        assert response.json()["session"]["user"] == {"id": "alice", "role": "USER"}
        assert signed_in(here) and not signed_in(phone)


def copy_of(client: TestClient, into: TestClient) -> None:
    """A copy of ``client``'s session cookie (taken by malware, a shared computer)."""
    into.cookies.set("session", client.cookies["session"])


@pytest.mark.parametrize("how", ["/auth/signout", "/logout", "/clear"])
def test_sign_out_ends_the_session_everywhere(store: RoleStore, how: str) -> None:
    with devices(registry_app(store), 3) as [laptop, phone, thief]:
        seed(laptop, store, ("alice", "USER"))
        signin(laptop)
        gone = signin(phone)
        copy_of(phone, thief)
        assert signed_in(thief)
        queries = store.queries
        response = post(phone, how)
        assert response.status_code == 200, response.text
        assert "session" not in phone.cookies
        assert store.queries == queries + 2  # revoke the row, bump alice's version
        assert not signed_in(thief)  # the copy taken before sign-out: refused
        listed = laptop.get("/auth/sessions").json()["sessions"]
        assert gone not in [view["id"] for view in listed] and len(listed) == 1
        assert signed_in(laptop)  # the other device stays


@pytest.mark.parametrize("who", ["bob", "alice"])
def test_a_sign_in_over_a_session_ends_the_one_it_replaces(store: RoleStore, who: str
                                                           ) -> None:
    # Another user (or the same one again) signs in on a browser where alice is signed
    # in: her session there ends as with a sign-out, copies of its cookie included.
    with devices(registry_app(store), 2) as [shared, thief]:
        seed(shared, store, ("alice", "USER"), ("bob", "USER"))
        replaced = signin(shared, "alice")
        copy_of(shared, thief)
        assert signed_in(thief)
        signin(shared, who)
        assert signed_in(shared)
        assert not signed_in(thief)  # the copy of alice's first session: refused
        revoked = {row[0] for row in rows(store) if row[4] is not None}
        assert replaced in revoked


def test_signing_out_an_impersonation_ends_the_impersonators_session(store: RoleStore
                                                                     ) -> None:
    with devices(registry_app(store), 2) as [admin, thief]:
        seed(admin, store, ("root", "ADMIN"), ("alice", "USER"))
        own = signin(admin, "root")
        assert post(admin, "/view-as?user=alice").status_code == 200
        copy_of(admin, thief)
        assert thief.get("/whoami").json()["actor"] == "root"
        assert post(admin, "/auth/signout").status_code == 200
        assert not signed_in(thief)
        assert [row[4] is not None for row in rows(store) if row[0] == own] == [True]


def test_signing_out_an_impersonation_ends_its_copies_without_the_admins_row(
        store: RoleStore) -> None:
    # The admin signed in before the registry was added (or its write failed): no row
    # to revoke, yet a copy of the impersonation's cookie must not outlive the sign-out.
    with devices(registry_app(store), 2) as [admin, thief]:
        seed(admin, store, ("root", "ADMIN"), ("alice", "USER"))
        signin(admin, "root")
        execute(store, f"DELETE FROM {store.sessions.name}")  # type: ignore[union-attr]
        assert post(admin, "/view-as?user=alice").status_code == 200
        copy_of(admin, thief)
        assert thief.get("/whoami").json()["actor"] == "root"
        assert post(admin, "/auth/signout").status_code == 200
        assert not signed_in(thief)


def test_managing_sessions_is_refused_while_impersonating(store: RoleStore) -> None:
    with devices(registry_app(store), 2) as [admin, alice]:
        seed(admin, store, ("root", "ADMIN"), ("alice", "USER"))
        signin(admin, "root")
        phone = signin(alice)
        assert post(admin, "/view-as?user=alice").status_code == 200
        for response in (admin.get("/auth/sessions"),
                         post(admin, f"/auth/sessions/{phone}/revoke"),
                         post(admin, "/auth/sessions/revoke-others"),
                         post(admin, "/change-password")):  # revoke_other_sessions()
            assert response.status_code == 403, response.text
            assert response.json()["reason"] == "impersonating"
        assert signed_in(alice) and admin.get("/whoami").json()["actor"] == "root"


def test_an_app_may_allow_it_with_an_audit_record(store: RoleStore) -> None:
    events: list[ImpersonationEvent] = []
    registry = SessionRegistry(store, allow_impersonation=True, on_event=events.append)
    with devices(registry_app(store, registry=registry), 3) as [admin, alice, tablet]:
        seed(admin, store, ("root", "ADMIN"), ("alice", "USER"))
        signin(admin, "root")
        phone = signin(alice)
        signin(tablet)
        assert post(admin, "/view-as?user=alice").status_code == 200
        assert len(admin.get("/auth/sessions").json()["sessions"]) == 2
        assert post(admin, f"/auth/sessions/{phone}/revoke").status_code == 200
        assert post(admin, "/auth/sessions/revoke-others").status_code == 200
        assert not signed_in(alice) and not signed_in(tablet)
        assert [(event.action, event.target) for event in events] == [
            ("list_sessions", None), ("revoke_session", phone),
            ("revoke_other_sessions", None)]
        assert {(event.actor.id, event.user.id) for event in events} == {("root", "alice")}
        assert all(event.scope["path"].startswith("/auth/sessions") for event in events)


def test_revoking_the_current_session_signs_out_here(store: RoleStore) -> None:
    with devices(registry_app(store)) as [alice]:
        seed(alice, store, ("alice", "USER"))
        mine = signin(alice)
        response = post(alice, f"/auth/sessions/{mine}/revoke")
        assert response.json() == {"revoked": mine, "current": True}
        assert "session" not in alice.cookies  # expired in that response
        assert not signed_in(alice)


def test_functions_and_everyones_sessions(store: RoleStore) -> None:
    with devices(registry_app(store), 3) as [alice, phone, bob]:
        seed(alice, store, ("alice", "USER"), ("bob", "ADMIN"))
        jti = signin(alice)
        signin(phone)
        signin(bob, "bob")
        run = alice.portal.call  # type: ignore[union-attr]
        assert [s.id for s in run(list_sessions, store, "bob")] != []
        assert run(revoke_session, store, "no-such-session") is False
        assert run(revoke_session, store, jti) is True
        assert not signed_in(alice) and signed_in(phone)
        assert run(revoke_all_sessions, store) == 2  # users
        assert not signed_in(phone) and not signed_in(bob)
        assert run(list_sessions, store, "alice") == run(list_sessions, store, "bob") == []
        signin(bob, "bob")  # a sign-in after it works
        assert bob.get("/admin").status_code == 200


def test_revoke_sessions_everywhere_marks_the_rows(store: RoleStore) -> None:
    with devices(registry_app(store), 2) as [alice, phone]:
        seed(alice, store, ("alice", "USER"))
        signin(alice)
        signin(phone)
        alice.portal.call(revoke_sessions, store, "alice")  # type: ignore[union-attr]
        assert alice.portal.call(list_sessions, store, "alice") == []  # type: ignore[union-attr]
        assert not signed_in(alice) and not signed_in(phone)


def test_without_a_feed_within_revalidate_after(tmp_path: Path, table: str,
                                                clock: Clock) -> None:
    """Two apps on one SQLite file, each with its own store and in-process feed (as two
    processes without a cross-process feed): B sees A's revocation at its next check."""
    url, sessions = f"sqlite:///{tmp_path / 'roles.db'}", f"{table}_sessions"
    store_a = RoleStore(url, table=table, sessions_table=sessions)
    store_b = RoleStore(url, table=table, sessions_table=sessions)
    with devices(registry_app(store_a, revalidate_after=60)) as [a], \
            devices(registry_app(store_b, revalidate_after=60)) as [b]:
        seed(a, store_a, ("alice", "USER"))
        jti = signin(a)
        b.cookies.set("session", a.cookies["session"])
        assert signed_in(b)
        a.portal.call(revoke_session, store_a, jti)  # type: ignore[union-attr]
        assert not signed_in(a)  # at once where it was made
        queries = store_b.queries
        clock.now += 30
        assert signed_in(b)  # B's feed does not know yet: the chk bound
        assert store_b.queries == queries
        clock.now += 30
        assert not signed_in(b)  # revalidate_after passed: checked, refused
        assert store_b.queries == queries + 1


# --- the endpoints' rules --------------------------------------------------------------------


def test_another_users_or_an_unknown_session_is_404(store: RoleStore) -> None:
    with devices(registry_app(store), 2) as [alice, bob]:
        seed(alice, store, ("alice", "USER"), ("bob", "USER"))
        signin(alice)
        bobs = signin(bob, "bob")
        token = fetch_csrf(alice)
        answers = []
        for session_id in (bobs, "no-such-session"):
            queries = store.queries
            response = alice.post(f"/auth/sessions/{session_id}/revoke",
                                  headers={"x-csrf-token": token})
            answers.append((response.status_code, response.json()))
            assert store.queries == queries + 1  # the UPDATE found no row: nothing bumped
        assert answers[0] == answers[1] == (404, {"detail": "No such session"})
        assert signed_in(bob)
        for bad in ("x" * 129, "a.b", "%00", "a%20b", "%E2%98%83"):
            queries = store.queries
            response = alice.post(f"/auth/sessions/{bad}/revoke", headers={"x-csrf-token": token})
            assert response.status_code == 404, bad
            assert store.queries == queries  # refused before any query


def test_signed_out_csrf_and_outage(store: RoleStore, monkeypatch: pytest.MonkeyPatch) -> None:
    with devices(registry_app(store)) as [client]:
        seed(client, store, ("alice", "USER"))
        assert client.get("/auth/sessions").status_code == 401
        for path in ("/auth/sessions/abc/revoke", "/auth/sessions/revoke-others"):
            assert client.post(path).status_code == 403  # no CSRF token
            assert post(client, path).status_code == 401
        signin(client)
        assert client.post("/auth/sessions/revoke-others").status_code == 403
        assert signed_in(client)

        async def down(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("role store unavailable: down")

        for name in ("list_sessions", "revoke_session", "revoke_other_sessions"):
            monkeypatch.setattr(store, name, down)
        response = client.get("/auth/sessions")
        assert response.status_code == 503 and response.headers["retry-after"]
        assert post(client, "/auth/sessions/abc/revoke").status_code == 503
        assert post(client, "/auth/sessions/revoke-others").status_code == 503
        assert signed_in(client)


def test_no_registry_is_404(client_for: Callable[..., TestClient], users: Users) -> None:
    for freshness in (None, Freshness(users)):
        client = client_for(make_app(session_routes(), freshness=freshness))
        sign_in(client)
        assert client.get("/auth/sessions").status_code == 404
        for path in ("/auth/sessions/abc/revoke", "/auth/sessions/revoke-others"):
            response = post(client, path)
            assert response.status_code == 404
            assert "registry" in response.json()["detail"]


def test_read_only_authjs_is_409(client_for: Callable[..., TestClient], users: Users) -> None:
    registry = SessionRegistry(FakeStore())
    app = make_app(session_routes(), format=AuthJSFormat(),
                   freshness=Freshness(users, registry=registry))
    client = client_for(app)
    for path in ("/auth/sessions/abc/revoke", "/auth/sessions/revoke-others"):
        response = post(client, path)
        assert response.status_code == 409
        assert "read-only" in response.json()["detail"]


def test_a_session_keeps_its_id_when_authjs_re_encodes_it(store: RoleStore,
                                                          authjs: AuthJS) -> None:
    # The Next.js side re-encodes the cookie (a session update, its own renewal): the
    # real @auth/core draws a new jti every time, and passes the package's sid through.
    cookie = "authjs.session-token"
    app = registry_app(store, format=AuthJSFormat(write=True))
    with devices(app, 2) as [laptop, phone]:
        seed(laptop, store, ("alice", "USER"))
        signin(laptop)
        session_id = signin(phone)
        written = authjs.decode(phone.cookies[cookie], SECRET, cookie)
        assert written["sid"] == written["jti"] == session_id
        re_encoded = authjs.encode(written, SECRET, cookie)
        claims = authjs.decode(re_encoded, SECRET, cookie)
        assert claims["jti"] != session_id and claims["sid"] == session_id
        phone.cookies.set(cookie, re_encoded)

        assert phone.get("/whoami").json()["jti"] == session_id  # the same session
        listed = [view["id"] for view in laptop.get("/auth/sessions").json()["sessions"]]
        assert session_id in listed and len(listed) == 2
        assert post(laptop, f"/auth/sessions/{session_id}/revoke").status_code == 200
        assert not signed_in(phone)  # signed out, re-encoded cookie and all
        assert signed_in(laptop)


# --- the registry only takes sessions away ----------------------------------------------------


def test_a_row_never_revives_or_moves_a_session(store: RoleStore) -> None:
    assert store.sessions is not None
    sessions = store.sessions.name
    with devices(registry_app(store, update_age=0), 2) as [alice, bob]:
        seed(alice, store, ("alice", "USER"), ("bob", "USER"))
        jti = signin(alice)
        alice.portal.call(revoke_sessions, store, "alice")  # type: ignore[union-attr]
        execute(store, f"UPDATE {sessions} SET revoked_at = NULL")  # un-revoked behind its back
        assert not signed_in(alice)  # the user row still says revoked

        # A row of bob's carrying alice's session id, revoked: not alice's, not her list,
        # and her sign-in does not take it over.
        jti = signin(alice)
        now = datetime.now(UTC).replace(tzinfo=None)
        execute(store, f"DELETE FROM {sessions} WHERE id = ?", jti)
        execute(store, f"INSERT INTO {sessions} (id, user_id, created_at, renewed_at, "
                "expires_at, ends_at, user_agent, client, revoked_at) "
                "VALUES (?, 'bob', ?, ?, ?, ?, 'forged', NULL, ?)",
                jti, now, now, now + timedelta(days=1), now + timedelta(days=1), now)
        signin(bob, "bob")
        alice.portal.call(revoke_session, store, "bob-has-no-such")  # type: ignore[union-attr]
        assert alice.get("/whoami").json()["jti"] == jti  # renewed (update_age=0)
        assert (jti, "bob", "forged") in [row[:3] for row in rows(store)]
        assert jti not in alice.get("/auth/sessions").text
        assert post(bob, f"/auth/sessions/{jti}/revoke").status_code == 200  # bob's row
        assert signed_in(alice)  # the token's user is alice: bob's revocation is not hers


def test_impersonation_is_not_recorded_and_ends_with_the_admins_session(
        store: RoleStore) -> None:
    with devices(registry_app(store), 2) as [admin, alice]:
        seed(admin, store, ("root", "ADMIN"), ("alice", "USER"))
        own = signin(admin, "root")
        signin(alice)
        response = post(admin, "/view-as?user=alice")
        assert response.status_code == 200, response.text
        assert admin.get("/whoami").json()["actor"] == "root"
        assert sorted(row[1] for row in rows(store)) == ["alice", "root"]  # none for it
        assert len(alice.get("/auth/sessions").json()["sessions"]) == 1
        admin.portal.call(revoke_session, store, own)  # type: ignore[union-attr]
        assert not signed_in(admin)  # the impersonator's own session was revoked
        assert signed_in(alice)


# --- the hook on both backends, with a store of a few lines -----------------------------------


class FakeStore:
    """The registry's write, in memory; ``error`` raised and ``delay`` slept first."""

    def __init__(self) -> None:
        self.records: list[tuple[StoredSession, bool]] = []
        self.revoked: list[str] = []
        self.error: Exception | None = None
        self.delay = 0.0

    async def record_session(self, session: StoredSession, *, first: bool) -> None:
        await anyio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.records.append((session, first))

    async def revoke_session(self, session_id: str, *, user_id: str | None = None) -> bool:
        await anyio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.revoked.append(session_id)
        return True


def test_hook_sign_in_renewal_and_nothing_else(client_for: Callable[..., TestClient],
                                               users: Users, clock: Clock) -> None:
    fake = FakeStore()
    registry = SessionRegistry(fake, device=lambda scope: ("agent\x00\n" + "y" * 300, "z" * 99))
    client = client_for(freshness=Freshness(users, registry=registry, revalidate_after=None),
                        update_age=60)
    sign_in(client)
    [(record, first)] = fake.records
    assert first and record.user_id == "alice" and record.id
    assert record.user_agent == ("agent" + "y" * 300)[:200]  # printable, cut
    assert record.client == "z" * 64
    assert record.ends_at - record.created_at == timedelta(days=90)  # max_lifetime
    for _ in range(5):
        client.get("/me")
    client.post("/session", json={"a": 1})  # re-issued for a change: not recorded
    assert len(fake.records) == 1
    clock.now += 61
    client.get("/me")
    assert [first for _, first in fake.records] == [True, False]
    assert fake.records[1][0].id == record.id
    sign_in(client)  # a new sign-in: a new session id, and the one it replaces ends
    assert fake.records[2][1] and fake.records[2][0].id != record.id
    assert fake.revoked == [record.id]
    assert registry.recorded == 3 and registry.failed == 0


def test_a_failed_write_never_fails_the_sign_in(client_for: Callable[..., TestClient],
                                                users: Users,
                                                caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeStore()
    registry = SessionRegistry(fake, timeout=0.05)
    client = client_for(freshness=Freshness(users, registry=registry))
    fake.error = StoreUnavailable("role store unavailable: connection refused")
    with caplog.at_level(logging.WARNING, "asgi_jwt_session.registry"):
        sign_in(client)
        assert client.get("/me").json()["id"] == "alice"
        fake.error, fake.delay = None, 1.0
        sign_in(client)
        assert client.get("/me").json()["id"] == "alice"
    # Both sign-ins' rows, and the second's ending of the first session (too slow).
    assert registry.failed == 3 and fake.records == [] and fake.revoked == []
    messages = [record.getMessage() for record in caplog.records]
    assert "connection refused" in messages[0] and "sign-in of 'alice'" in messages[0]
    assert "no answer within 0.05s" in messages[1]


def test_unusual_session_ids_are_not_recorded() -> None:
    from asgi_jwt_session.session import Session, SessionUser

    fake = FakeStore()
    registry = SessionRegistry(fake)
    session = Session(user=SessionUser("alice", "USER"), jti="has space", auth_time=1)

    async def main() -> None:
        await registry.issued({"type": "http", "headers": []}, session, True)

    anyio.run(main)
    assert fake.records == []


def test_registry_needs_a_registry_store(users: Users) -> None:
    with pytest.raises(TypeError, match="sessions_table"):
        SessionRegistry(users)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        SessionRegistry(FakeStore(), timeout=0)  # type: ignore[arg-type]


@pytest.mark.anyio
@asyncio_only
async def test_store_without_registry_refuses(tmp_path: Path) -> None:
    async with RoleStore(f"sqlite:///{tmp_path / 'r.db'}") as plain:
        await plain.create_tables()
        await plain.create_user("alice", "USER")
        with pytest.raises(ValueError, match="sessions_table"):
            await plain.list_sessions("alice")
        assert (await plain.get_user("alice")).revoked_sessions == frozenset()  # type: ignore[union-attr]
        assert await plain.revoke_all_sessions() == 1  # works without a registry


def test_revoke_other_sessions_needs_a_signed_in_user_and_a_registry(
        client_for: Callable[..., TestClient], users: Users) -> None:
    errors: list[str] = []

    async def other(request: Request) -> JSONResponse:
        try:
            await revoke_other_sessions(request)
        except (NotAuthenticated, RuntimeError) as exc:
            errors.append(type(exc).__name__)
        return JSONResponse({})

    client = client_for(make_app(Route("/other", other), freshness=Freshness(users)))
    client.get("/other")
    sign_in(client)
    client.get("/other")
    assert errors == ["NotAuthenticated", "RuntimeError"]


# --- what is recorded of the device -----------------------------------------------------------


def test_client_prefix() -> None:
    assert client_prefix("203.0.113.77") == "203.0.113.0/24"
    assert client_prefix("2001:db8:1:2:3::7") == "2001:db8:1::/48"
    assert client_prefix("[2001:db8::1]") == "2001:db8::/48"
    assert client_prefix("::ffff:198.51.100.9") == "198.51.100.0/24"
    for bad in (None, "", "testclient", "unix:/tmp/socket", "999.1.1.1", "1.2.3.4/8"):
        assert client_prefix(bad) is None


def test_coarse_device() -> None:
    scope = {"type": "http", "headers": [(b"user-agent", b"A" * 500)],
             "client": ("192.0.2.10", 5000)}
    assert coarse_device(scope) == ("A" * 120, "192.0.2.0/24")
    assert coarse_device({"type": "http", "headers": [], "client": None}) == (None, None)


# --- the browser client ------------------------------------------------------------------------


def test_client_script_registry_calls_in_node(node: str) -> None:
    with as_file(SCRIPT) as script:
        result = subprocess.run([node, str(JS / "session_registry.mjs"), str(script)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- the benchmark's figures ------------------------------------------------------------------


def test_bench_registry_smoke() -> None:
    from benchmarks import bench_registry

    results = bench_registry.run(requests=200, rows=200, repeat=2)
    assert set(results["request_cost"]) == {"none", "registry-off", "registry-off-again",
                                            "registry-on"}
    assert results["statements"] == {
        "sign-in": 3, "100 ordinary requests": 0, "renewal": 1, "revoke one session": 2,
        "revalidation after it (per process)": 1, "sign out other devices": 3}
    small, large = results["scale"]["10"], results["scale"]["200"]
    assert small["revoked ids read"] == large["revoked ids read"] == 0
    assert large["rows in the table"] > 200  # kept, but read on indexes


def test_the_core_does_not_import_the_registry() -> None:
    from tests.test_architecture import CORE, graph

    edges = graph()
    for name in CORE:
        assert "asgi_jwt_session.registry" not in edges[f"asgi_jwt_session.{name}"], name
