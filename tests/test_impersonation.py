"""Impersonation (issue 13, item 5, and its "Bad input" rules): only through the guard
the app chooses (ADMIN by default), never to a role above one's own, never while
already impersonating; the token carries the actor (``act``); every start and stop goes
to the hook; revocation, disabling or a role change of either user ends it; ordinary
requests still make no query."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import Role, auth, require_role, revoke_sessions, update_user_role
from asgi_jwt_session.codec import check_types
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.errors import ImpersonationDenied, ImpersonationError, InvalidToken
from asgi_jwt_session.freshness import Freshness, VersionFeed
from asgi_jwt_session.impersonation import (
    ImpersonationEvent,
    impersonate,
    stop_impersonating,
)
from asgi_jwt_session.session import Session, SessionUser, get_session
from asgi_jwt_session.tokens import TokenCodec
from tests.conftest import SECRET, Clock, fetch_csrf, make_app, set_cookies, sign_in
from tests.memory_store import MemoryStore

Client = Callable[..., TestClient]

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore(admin="ADMIN", boss="ADMIN", olga="ORG_ADMIN", alice="USER",
                        carol="USER")
    anyio.run(store.set_disabled, "carol", True)
    return store


def run(func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return anyio.run(functools.partial(func, *args))


def view(request: Request) -> dict[str, Any]:
    session = get_session(request)
    user = session.user if auth(request) is not None else None
    actor = user.actor if user is not None else None
    return {
        "id": user.id if user else None,
        "role": user.role if user else None,
        "claims": user.claims if user else None,
        "actor": {"id": actor.id, "role": actor.role, "claims": actor.claims} if actor else None,
        "version": session.version,
        "jti": session.jti,
        "data": dict(session),
    }


class App:
    """The test app around ``store``, with the hook's events in ``events``."""

    def __init__(self, client_for: Client, store: MemoryStore, **options: Any) -> None:
        self.events: list[ImpersonationEvent] = []
        self.store = store
        self.freshness = Freshness(store, revalidate_after=options.pop("revalidate_after", 300))

        async def start(request: Request) -> JSONResponse:
            claims: dict[str, Any] = dict(request.query_params)
            await impersonate(request, store, request.path_params["user"],
                              on_event=self.events.append, **claims)
            return JSONResponse(view(request))

        async def start_as_org_admin(request: Request) -> JSONResponse:
            await impersonate(request, store, request.path_params["user"],
                              allowed=require_role(Role.ORG_ADMIN), on_event=self.record)
            return JSONResponse(view(request))

        async def stop(request: Request) -> JSONResponse:
            await stop_impersonating(request, on_event=self.record)
            return JSONResponse(view(request))

        async def whoami(request: Request) -> JSONResponse:
            return JSONResponse(view(request))

        routes = [
            Route("/impersonate/{user}", start, methods=["POST"]),
            Route("/org/impersonate/{user}", start_as_org_admin, methods=["POST"]),
            Route("/stop", stop, methods=["POST"]),
            Route("/whoami", whoami),
            session_routes(),
        ]
        self.client = client_for(make_app(*routes, freshness=self.freshness, **options))

    def forget_changes(self) -> None:
        """As if the feed never heard of a change (another process made it)."""
        feed = self.freshness.feed
        assert isinstance(feed, VersionFeed)
        feed.versions.clear()
        feed.published.clear()

    async def record(self, event: ImpersonationEvent) -> None:  # an async hook
        self.events.append(event)

    def sign_in(self, user: str = "admin") -> None:
        stored = self.store.users[user]
        sign_in(self.client, user, stored.role, version=str(stored.session_version))

    def whoami(self) -> Any:
        return self.client.get("/whoami").json()

    def token(self) -> dict[str, Any]:
        return TokenCodec(SECRET).decode(self.client.cookies["session"])


@pytest.fixture
def app(client_for: Client, store: MemoryStore, clock: Clock) -> App:
    return App(client_for, store)


# --- start and stop --------------------------------------------------------------------------


def test_impersonate_and_come_back(app: App, store: MemoryStore, clock: Clock) -> None:
    app.sign_in("admin")
    app.client.post("/session", json={"cart": [1, 2]})
    before = app.token()
    clock.now += 10
    response = app.client.post("/impersonate/alice", params={"name": "Alice"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "alice" and body["role"] == "USER"
    assert body["claims"] == {"name": "Alice"}
    assert body["actor"] == {"id": "admin", "role": "ADMIN", "claims": {}}
    assert body["version"] == store.users["alice"].session_version
    assert body["data"] == {}  # the admin's data is not alice's
    assert body["jti"] != before["jti"]  # a session id of its own

    token = app.token()
    assert token["sub"] == "alice"
    assert token["act"] == {"sub": "admin", "role": "ADMIN", "ver": 1,
                            "auth_time": before["auth_time"], "auth_ms": before["auth_ms"],
                            "jti": before["jti"]}
    assert token["auth_time"] == int(clock.now)  # its start: it lasts an hour at most
    assert token["auth_ms"] == int(clock.now * 1000)  # alice's revocations count from now
    assert app.whoami()["actor"]["id"] == "admin"

    clock.now += 10
    body = app.client.post("/stop").json()
    assert body["id"] == "admin" and body["role"] == "ADMIN" and body["actor"] is None
    assert body["data"] == {}
    after = app.token()
    assert "act" not in after
    for claim in ("sub", "role", "jti", "auth_time", "auth_ms"):
        assert after[claim] == before[claim], claim
    assert after["ver"] == before["ver"] + 1 == store.users["admin"].session_version  # marked


def test_every_start_and_stop_goes_to_the_hook(app: App, clock: Clock,
                                               caplog: pytest.LogCaptureFixture) -> None:
    app.sign_in("admin")
    with caplog.at_level(logging.INFO, logger="asgi_jwt_session.impersonation"):
        app.client.post("/impersonate/alice")
        session_id = app.token()["jti"]
        app.client.post("/stop")
    start, stop = app.events
    assert (start.action, start.actor, start.user) == (
        "start", SessionUser("admin", "ADMIN"), SessionUser("alice", "USER"))
    assert (stop.action, stop.actor, stop.user) == (
        "stop", SessionUser("admin", "ADMIN"), SessionUser("alice", "USER"))
    assert start.session_id == stop.session_id == session_id
    assert start.at.timestamp() == clock.now
    assert start.scope["path"] == "/impersonate/alice"
    assert [record.getMessage().split(":")[0] for record in caplog.records
            if record.name == "asgi_jwt_session.impersonation"] == [
        "impersonation start", "impersonation stop"]


def test_the_session_endpoint_shows_the_actor(app: App) -> None:
    app.sign_in("admin")
    app.client.post("/impersonate/alice")
    body = app.client.get("/auth/session").json()
    assert body["session"]["user"] == {"id": "alice", "role": "USER"}
    assert body["session"]["actor"] == {"id": "admin", "role": "ADMIN"}
    app.client.post("/stop")
    assert "actor" not in app.client.get("/auth/session").json()["session"]


def test_the_impersonated_role_is_what_guards_see(app: App) -> None:
    app.sign_in("admin")
    app.client.post("/impersonate/olga")
    assert app.whoami()["role"] == "ORG_ADMIN"
    # An admin seeing the app as olga cannot impersonate from there (already doing it).
    response = app.client.post("/impersonate/alice")
    assert response.status_code == 400
    assert response.json()["reason"] == "already_impersonating"


def test_logout_signs_the_impersonator_out_too(app: App) -> None:
    app.sign_in("admin")
    app.client.post("/impersonate/alice")
    app.client.get("/logout")
    assert app.whoami()["id"] is None


def test_a_new_sign_in_ends_the_impersonation(app: App) -> None:
    app.sign_in("admin")
    app.client.post("/impersonate/alice")
    app.sign_in("boss")
    body = app.whoami()
    assert body["id"] == "boss" and body["actor"] is None


def test_a_custom_guard_allows_up_to_ones_own_role(app: App) -> None:
    app.sign_in("olga")
    assert app.client.post("/impersonate/alice").status_code == 403  # default: ADMIN only
    response = app.client.post("/org/impersonate/admin")
    assert response.status_code == 403
    assert response.json() == {"detail": "User 'admin' has a role above yours",
                               "reason": "role_above_actor"}
    response = app.client.post("/org/impersonate/alice")
    assert response.status_code == 200
    assert response.json()["actor"]["id"] == "olga"
    assert [event.action for event in app.events] == ["start"]  # the async hook


def test_an_admin_may_impersonate_another_admin(app: App) -> None:
    app.sign_in("admin")
    assert app.client.post("/impersonate/boss").json()["role"] == "ADMIN"


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("user, status, reason", [
    ("nobody", 400, "unknown_user"),
    ("carol", 400, "user_disabled"),
    ("admin", 400, "self"),
])
def test_refused_impersonations(app: App, user: str, status: int, reason: str) -> None:
    app.sign_in("admin")
    before = app.client.cookies["session"]
    response = app.client.post(f"/impersonate/{user}")
    assert response.status_code == status
    assert response.json()["reason"] == reason
    assert set_cookies(response, "session") == []  # nothing changed
    assert app.client.cookies["session"] == before
    assert app.events == []


def test_refusals_for_a_browser_are_pages(app: App) -> None:
    app.sign_in("admin")
    response = app.client.post("/impersonate/nobody", headers={"accept": BROWSER})
    assert response.status_code == 400
    assert "400 Bad Request" in response.text and "No user &#x27;nobody&#x27;" in response.text
    app.sign_in("olga")
    response = app.client.post("/org/impersonate/admin", headers={"accept": BROWSER})
    assert response.status_code == 403 and "403 Forbidden" in response.text


def test_nobody_signed_in(app: App) -> None:
    assert app.client.post("/impersonate/alice").status_code == 401
    assert app.client.post("/stop").status_code == 401


def test_a_user_may_not_impersonate(app: App) -> None:
    app.sign_in("alice")
    response = app.client.post("/impersonate/carol")
    assert response.status_code == 403
    assert response.json() == {"detail": "Permission denied"}


def test_stop_when_not_impersonating(app: App) -> None:
    app.sign_in("admin")
    response = app.client.post("/stop")
    assert response.status_code == 400
    assert response.json()["reason"] == "not_impersonating"


def test_the_impersonators_current_role_counts(app: App, store: MemoryStore) -> None:
    app.sign_in("admin")
    run(update_user_role, store, "admin", "USER")  # the token still says ADMIN
    assert app.client.post("/impersonate/alice").status_code == 403
    assert app.whoami()["role"] == "USER"  # and the session learned it


def test_a_revoked_impersonator_cannot_start(app: App, store: MemoryStore,
                                             clock: Clock) -> None:
    app.sign_in("admin")
    clock.now += 1
    run(revoke_sessions, store, "admin")
    assert app.client.post("/impersonate/alice").status_code == 401
    assert app.whoami()["id"] is None


@pytest.mark.anyio
async def test_the_functions_check_their_arguments(store: MemoryStore) -> None:
    session = Session()
    session.login("admin", "ADMIN", version=1)
    scope = {"type": "http", "session": session, "path": "/", "headers": []}
    for user_id in ("", None, 7):
        with pytest.raises(ImpersonationError, match="user id"):
            await impersonate(scope, store, user_id)  # type: ignore[arg-type]
    await impersonate(scope, store, "alice")
    assert session.user is not None and session.user.actor is not None
    with pytest.raises(ImpersonationError):
        await impersonate(scope, store, "olga")
    await stop_impersonating(scope, store)
    assert session.user is not None and session.user.id == "admin"
    with pytest.raises(ImpersonationError):
        await stop_impersonating(scope, store)
    assert issubclass(ImpersonationDenied, ImpersonationError)


# --- freshness: what ends an impersonation ---------------------------------------------------


def impersonating(app: App, user: str = "alice") -> None:
    app.sign_in("admin")
    assert app.client.post(f"/impersonate/{user}").status_code == 200


def test_no_query_on_ordinary_requests(app: App, store: MemoryStore, clock: Clock) -> None:
    app.sign_in("admin")
    reads = store.reads
    app.client.post("/impersonate/alice")
    assert store.reads == reads + 2  # the impersonator and the user, once each
    for _ in range(20):
        clock.now += 10
        assert app.whoami()["actor"]["id"] == "admin"
    assert store.reads == reads + 2
    assert app.freshness.queries == 0


@pytest.mark.parametrize("change", [
    "revoke the impersonator", "disable the impersonator", "demote the impersonator",
    "delete the impersonator", "revoke the user", "disable the user", "promote the user",
])
@pytest.mark.parametrize("feed", [True, False])
def test_what_ends_an_impersonation(app: App, store: MemoryStore, clock: Clock,
                                    caplog: pytest.LogCaptureFixture,
                                    change: str, feed: bool) -> None:
    impersonating(app)
    clock.now += 1  # a revocation after the sign-ins
    action, _, whom = change.partition(" the ")
    user = "admin" if whom == "impersonator" else "alice"
    if action == "revoke":
        run(revoke_sessions, store, user)
    elif action == "disable":
        run(store.set_disabled, user, True)
    elif action in ("demote", "promote"):
        run(update_user_role, store, user, "ORG_ADMIN")
    else:
        store.delete(user)
        app.freshness.feed.publish(user, 99)  # as a delete would announce it
    if not feed:  # without the feed hearing of it: at the next periodic check
        app.forget_changes()
        assert app.whoami()["id"] == "alice"  # not yet
        clock.now += 300
    with caplog.at_level(logging.INFO, logger="asgi_jwt_session"):
        response = app.client.get("/whoami")
    assert response.json()["id"] is None
    assert "Max-Age=0" in set_cookies(response, "session")[0]


def test_a_new_version_of_the_impersonator_ends_it(app: App, store: MemoryStore,
                                                   clock: Clock) -> None:
    # What stop_impersonating marks: any change of the impersonator's record ends it.
    impersonating(app)
    run(update_user_role, store, "admin", "ADMIN")  # the same role: a version bump
    assert app.whoami()["id"] is None


def test_a_revocation_of_the_user_before_the_start_does_not_end_it(
        app: App, store: MemoryStore, clock: Clock) -> None:
    run(revoke_sessions, store, "alice")
    clock.now += 1
    impersonating(app)
    clock.now += 300
    assert app.whoami()["id"] == "alice"  # revalidated, both users checked
    assert app.freshness.queries == 2


def test_the_refresh_endpoint_checks_the_impersonator(app: App, store: MemoryStore,
                                                      clock: Clock) -> None:
    impersonating(app)
    csrf = fetch_csrf(app.client)
    response = app.client.post("/auth/session/refresh", headers={"x-csrf-token": csrf})
    assert response.status_code == 200
    assert response.json()["session"]["actor"] == {"id": "admin", "role": "ADMIN"}
    clock.now += 1
    run(revoke_sessions, store, "admin")
    app.forget_changes()  # the refresh reads the store, feed or not
    app.freshness.memo.clear()
    response = app.client.post("/auth/session/refresh", headers={"x-csrf-token": csrf})
    assert response.status_code == 401


def test_the_impersonators_absolute_lifetime_ends_it(client_for: Client, store: MemoryStore,
                                                     clock: Clock) -> None:
    app = App(client_for, store, max_lifetime=3600, revalidate_after=10**6)
    app.sign_in("admin")
    clock.now += 3000
    app.client.post("/impersonate/alice")
    assert app.token()["exp"] == app.token()["act"]["auth_time"] + 3600
    token = app.client.cookies["session"]
    clock.now += 599
    assert app.whoami()["id"] == "alice"
    clock.now += 2
    app.client.cookies.clear()  # the jar dropped it; the server refuses it as well
    response = app.client.get("/whoami", headers={"cookie": f"session={token}"})
    assert response.json()["id"] is None


@pytest.mark.parametrize("lifetime", [None, 600])
def test_an_impersonation_never_slides_past_its_lifetime(client_for: Client, store: MemoryStore,
                                                        clock: Clock, lifetime: int | None
                                                        ) -> None:
    options = {"impersonation_lifetime": lifetime} if lifetime is not None else {}
    app = App(client_for, store, update_age=60, revalidate_after=10**6, **options)
    limit = lifetime or 3600  # the default: one hour, as Better Auth
    app.sign_in("admin")
    app.client.post("/impersonate/alice")
    start = int(clock.now)
    first = app.client.cookies["session"]
    while clock.now + 120 < start + limit:  # busy all along: renewed every time
        clock.now += 120
        response = app.client.get("/whoami")
        assert response.json()["id"] == "alice"
        assert set_cookies(response, "session")  # a renewal, and yet
        assert app.token()["exp"] == start + limit  # never past the limit
    clock.now = start + limit + 1
    last = app.client.cookies["session"]
    app.client.cookies.clear()
    for token in (last, first):
        response = app.client.get("/whoami", headers={"cookie": f"session={token}"})
        assert response.json()["id"] is None  # over, whatever the leeway


def copy_of(app: App) -> dict[str, str]:
    """A Cookie header with the session cookie as it is now (a copy someone took)."""
    return {"cookie": f"session={app.client.cookies['session']}"}


def test_a_copy_taken_before_stop_never_restores_the_admin(app: App, store: MemoryStore,
                                                           clock: Clock) -> None:
    impersonating(app)
    copy = copy_of(app)
    assert app.client.post("/stop").json()["id"] == "admin"
    given_back = app.token()
    app.forget_changes()  # another process: its feed has not heard of the stop yet
    clock.now += 1
    with TestClient(app.client.app) as thief:
        response = thief.post("/stop", headers=copy)  # exchange it a second time
        assert response.status_code == 401
        assert set_cookies(response, "session")[0].startswith("session=;")
        assert thief.get("/whoami", headers=copy).json()["id"] is None  # and it is over
    assert app.whoami()["id"] == "admin"  # the admin's own session stays
    assert app.token()["jti"] == given_back["jti"]
    assert [event.action for event in app.events] == ["start", "stop", "stop"]


def test_a_copy_is_refused_once_the_stop_is_heard_of(app: App, store: MemoryStore) -> None:
    impersonating(app)
    copy = copy_of(app)
    app.client.post("/stop")
    reads = store.reads
    with TestClient(app.client.app) as thief:
        response = thief.get("/whoami", headers=copy)  # the feed says: the admin changed
    assert response.json()["id"] is None
    assert store.reads == reads + 2  # one revalidation: both users
    assert app.whoami()["id"] == "admin"


def test_stop_with_a_store_that_cannot_mark_signs_out(client_for: Client,
                                                      store: MemoryStore) -> None:
    class Unmarkable:  # a Store without bump_session_version
        def __init__(self) -> None:
            self.on_change = store.on_change

        async def get_user(self, user_id: str) -> Any:
            return await store.get_user(user_id)

    app = App(client_for, store)
    app.freshness.store = Unmarkable()  # type: ignore[assignment]
    impersonating(app)
    assert app.client.post("/stop").status_code == 401
    assert app.whoami()["id"] is None


# --- bad tokens ------------------------------------------------------------------------------


ACT = {"sub": "admin", "role": "ADMIN", "ver": 1, "auth_time": 1, "auth_ms": 1000, "jti": "j"}


@pytest.mark.parametrize("act, message", [
    ("admin", "'act' has the wrong type"),
    ([], "'act' has the wrong type"),
    (None, "'act' has the wrong type"),
    ({"role": "ADMIN"}, "no 'sub'"),
    ({"sub": "admin"}, "no 'sub' or no 'role'"),
    ({**ACT, "sub": 7}, "'act.sub'"),
    ({**ACT, "role": None}, "'act.role'"),
    ({**ACT, "ver": "1"}, "'act.ver'"),
    ({**ACT, "ver": True}, "'act.ver'"),
    ({**ACT, "auth_ms": 1.5}, "'act.auth_ms'"),
    ({**ACT, "auth_time": -1}, "sign-in time"),
    ({**ACT, "auth_ms": 10**20}, "sign-in time"),
    ({**ACT, "act": {"sub": "root", "role": "ADMIN"}}, "may not have"),
    ({**ACT, "data": {}}, "may not have"),
    ({**ACT, "exp": 1}, "may not have"),
])
def test_a_bad_act_claim_is_refused(act: Any, message: str) -> None:
    with pytest.raises(InvalidToken, match=message):
        check_types({"sub": "alice", "role": "USER", "exp": 1, "act": act})


def test_act_needs_a_user() -> None:
    with pytest.raises(InvalidToken, match="no user"):
        check_types({"exp": 1, "act": ACT})


def test_the_actors_claims_come_and_go_with_it() -> None:
    claims = check_types({"sub": "alice", "role": "USER", "exp": 1,
                          "act": {**ACT, "name": "Ada"}})
    assert claims["act"]["name"] == "Ada"


def test_a_token_with_a_bad_act_reads_as_no_session(client_for: Client, clock: Clock) -> None:
    now = int(clock.now)
    token = TokenCodec(SECRET).encode({"sub": "alice", "role": "USER", "iat": now,
                                       "exp": now + 60, "act": {"sub": "admin"}})
    client = client_for()
    response = client.get("/me", headers={"cookie": f"session={token}"})
    assert response.status_code == 200 and response.json()["id"] is None
    assert "Max-Age=0" in set_cookies(response, "session")[0]


def test_an_impersonation_token_round_trips(client_for: Client, clock: Clock) -> None:
    now = int(clock.now)
    token = TokenCodec(SECRET).encode({"sub": "alice", "role": "USER", "iat": now,
                                       "exp": now + 60, "auth_time": now,
                                       "act": {**ACT, "auth_time": now, "name": "Ada"}})
    client = client_for()
    assert client.get("/me", headers={"cookie": f"session={token}"}).json()["id"] == "alice"


def test_session_user_equality_sees_the_actor() -> None:
    actor = SessionUser("admin", "ADMIN")
    assert SessionUser("alice", "USER", actor=actor) == SessionUser("alice", "USER",
                                                                   actor=actor)
    assert SessionUser("alice", "USER", actor=actor) != SessionUser("alice", "USER")
    assert "actor=SessionUser(id='admin'" in repr(SessionUser("alice", "USER", actor=actor))
    with pytest.raises(AttributeError):
        SessionUser("alice", "USER").actor = actor
