"""Session endpoints: read the session, refresh it from the store, sign out; the client.

``session_routes(store)`` is a :class:`~starlette.routing.Mount` (``/auth`` by default):

- ``GET /auth/session``: ``{"session": null | {"user": {"id", "role"}, "expires"},
  "csrfToken": "...", "csrfHeader": "x-csrf-token"}``, never cached, never the token
  itself; sets the CSRF cookie. ``csrfHeader`` names the header the POSTs take the
  token in. During an impersonation the session also has ``"actor": {"id", "role"}``.
- ``POST /auth/session/refresh``: re-reads the user from the store (the middleware's
  ``freshness``, or the store given here), applies the same rule as revalidation
  (:func:`~asgi_jwt_session.freshness.apply_user`) and re-issues the cookie; 401 when
  signed out, or when the user is gone, disabled or their sessions were revoked (the
  session is cleared); 503 when the store cannot be reached or does not answer within
  ``timeout`` seconds (the session is kept); 404 when there is no store at all.
- ``POST /auth/signout``: clears the session and expires every chunk of its cookie.
- ``GET /auth/session.js``: the browser client (``window.asgiJwtSession``).

With a session registry (``Freshness(store, registry=SessionRegistry(store))``, see
:mod:`asgi_jwt_session.registry`; 404 without one, 401 when signed out, 503 when the
store cannot be reached):

- ``GET /auth/sessions``: ``{"sessions": [{"id", "created", "renewed", "expires",
  "userAgent", "client", "current", "deviceBound"}]}``, the signed-in user's own
  sessions, the last renewed first; ``current`` is true for the one making the request,
  ``deviceBound`` for a session bound to its device (DBSC).
- ``POST /auth/sessions/{id}/revoke``: signs that session out everywhere (this one
  too, when it is the current one: its cookie is expired). 404 for an id that is not
  one of the user's sessions, whether or not it exists for someone else.
- ``POST /auth/sessions/revoke-others``: signs out every other session of the user
  and re-issues this one (:func:`~asgi_jwt_session.registry.revoke_other_sessions`).

While an admin impersonates the user, these answer 403 ``{"detail", "reason":
"impersonating"}`` unless ``SessionRegistry(..., allow_impersonation=True)``; then
each goes to the registry's ``on_event`` (an audit record).

The POSTs are CSRF-checked (see :mod:`asgi_jwt_session.csrf`). When the middleware
only reads the cookie (``AuthJSFormat()`` without ``write=True``), they answer 409:
Auth.js owns that cookie.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from asgi_jwt_session.context import FreshnessHook, get_context
from asgi_jwt_session.csrf import (
    CSRF_COOKIE,
    CSRF_HEADER,
    csrf_token,
    form_field,
    set_csrf_cookie,
    trusted,
    verify_csrf,
)
from asgi_jwt_session.errors import StoreUnavailable, UnknownUser
from asgi_jwt_session.responses import RETRY_AFTER, prefers_html, safe_next
from asgi_jwt_session.session import Session, get_session, logout
from asgi_jwt_session.store.base import Store, StoredSession

if TYPE_CHECKING:
    from asgi_jwt_session.freshness.policy import UserLoader
    from asgi_jwt_session.registry import SessionRegistry

DEFAULT_TIMEOUT = 5.0

__all__ = ["SessionApp", "session_app", "session_routes", "session_view"]

NO_STORE = {"cache-control": "private, no-store"}


def session_view(session: Session, expires_at: int | None = None) -> dict[str, Any] | None:
    """The public view of a session: user id, role and expiry (ISO 8601, UTC), and
    during an impersonation the impersonator (``"actor": {"id", "role"}``), or
    ``None`` when nobody is signed in. Never the token, never the session data."""
    user = session.user
    if user is None:
        return None
    if expires_at is None:
        expires_at = session.expires_at
    expires = None
    if expires_at is not None:
        expires = datetime.fromtimestamp(expires_at, UTC).isoformat().replace("+00:00", "Z")
    view: dict[str, Any] = {"user": {"id": user.id, "role": user.role}, "expires": expires}
    if user.actor is not None:
        view["actor"] = {"id": user.actor.id, "role": user.actor.role}
    return view


@functools.cache
def client_script() -> tuple[bytes, str]:
    """``static/session.js`` and its ETag."""
    body = files("asgi_jwt_session").joinpath("static/session.js").read_bytes()
    return body, f'"{hashlib.sha256(body).hexdigest()[:20]}"'


def next_expiry(request: Request, session: Session) -> int | None:
    """When the cookie the middleware is about to issue will expire (``None``: it
    issues none)."""
    context = get_context(request)
    if context is None or not context.writable:
        return None
    return context.expires_for(session, int(time.time()))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stored_session_view(record: StoredSession, current: str | None) -> dict[str, Any]:
    """A registry row as ``GET /auth/sessions`` shows it to its own user."""
    return {"id": record.id, "created": iso(record.created_at),
            "renewed": iso(record.renewed_at), "expires": iso(record.expires_at),
            "userAgent": record.user_agent, "client": record.client,
            "current": record.id == current, "deviceBound": record.device_bound}


def registry_of(request: Request) -> SessionRegistry | None:
    """The middleware's session registry (its freshness policy's), or ``None``."""
    context = get_context(request)
    if context is None or getattr(context.freshness, "registry", None) is None:
        return None
    from asgi_jwt_session.registry import registry_of

    return registry_of(request)


NO_REGISTRY = ("No session registry: give the middleware "
               "freshness=Freshness(store, registry=SessionRegistry(store))")
NO_SESSION = "No such session"  # unknown, or another user's: the same answer


def error(detail: str, status_code: int) -> JSONResponse:
    headers = NO_STORE if status_code != 503 else {**NO_STORE, "retry-after": str(RETRY_AFTER)}
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def read_only(request: Request) -> bool:
    """The middleware reads the session cookie but never writes it (Auth.js format
    without ``authjs_write=True``)."""
    context = get_context(request)
    return context is not None and not context.writable


def read_only_error(action: str) -> JSONResponse:
    return error(f"The session cookie is Auth.js's and read-only here: {action} through "
                 "Auth.js, or use AuthJSFormat(write=True)", 409)


class SessionEndpoints:
    """The endpoints behind :func:`session_routes`, sharing its options."""

    def __init__(
        self,
        freshness: FreshnessHook | None,
        *,
        csrf_cookie: str,
        csrf_header: str,
        trusted_origins: Iterable[str],
    ) -> None:
        self.freshness = freshness
        self.csrf_cookie = csrf_cookie
        self.csrf_header = csrf_header
        self.trusted_origins = trusted(trusted_origins)

    async def verify_csrf(self, request: Request) -> None:
        await verify_csrf(request, cookie_name=self.csrf_cookie, header_name=self.csrf_header,
                          trusted_origins=self.trusted_origins)

    async def session(self, request: Request) -> Response:
        session = get_session(request)
        session.mark_accessed()
        token = csrf_token(request, cookie_name=self.csrf_cookie)
        # Revalidated on the way in: this response re-issues the cookie, with a new expiry.
        expires_at = next_expiry(request, session) if session.modified else None
        body = {"session": session_view(session, expires_at), "csrfToken": token,
                "csrfHeader": self.csrf_header}
        response = JSONResponse(body, headers=NO_STORE)
        set_csrf_cookie(request, response, cookie_name=self.csrf_cookie)
        return response

    async def refresh(self, request: Request) -> Response:
        # The body is never read as claims: role and version come from the store only.
        await self.verify_csrf(request)
        freshness = self.freshness
        if freshness is None:
            context = get_context(request)
            freshness = context.freshness if context is not None else None
        if freshness is None:
            return error("No session store: give the middleware freshness=Freshness(store)",
                         404)
        if read_only(request):
            return read_only_error("refresh it")
        session = get_session(request)
        session.mark_accessed()
        if session.user is None:
            return error("Not authenticated", 401)
        try:
            await freshness.refresh(session, int(time.time()))
        except StoreUnavailable:  # as revalidation: unreachable, or too slow
            return error("The session store is unavailable; try again later", 503)
        if session.user is None:  # gone, disabled or revoked: cleared, the cookie expired
            return error("Not authenticated", 401)
        session.mark_modified()  # an explicit refresh always re-issues the cookie
        view = session_view(session, next_expiry(request, session))
        return JSONResponse({"session": view}, headers=NO_STORE)

    async def signout(self, request: Request) -> Response:
        await self.verify_csrf(request)
        if read_only(request):
            return read_only_error("sign out")
        logout(request)
        if prefers_html(request.scope):  # a plain HTML form: back to a page of this site
            field = await form_field(request, "next")
            target = field if field is not None else request.query_params.get("next")
            return RedirectResponse(safe_next(target), status_code=303, headers=NO_STORE)
        return JSONResponse({"session": None}, headers=NO_STORE)

    async def sessions(self, request: Request) -> Response:
        registry = registry_of(request)
        if registry is None:
            return error(NO_REGISTRY, 404)
        session = get_session(request)
        session.mark_accessed()
        if session.user is None:
            return error("Not authenticated", 401)
        await registry.acting(request, "list_sessions")  # refused while impersonating
        from asgi_jwt_session.registry import MAX_PAGE, PAGE_SIZE, list_sessions

        # A page at a time, newest first: ?limit=1..100 (20), ?cursor= the nextCursor.
        query = request.query_params
        text = query.get("limit", str(PAGE_SIZE))
        # At most 4 digits before int(): a long string is no number of this range.
        limit = int(text) if len(text) <= 4 and text.isascii() and text.isdigit() else 0
        if not 1 <= limit <= MAX_PAGE:
            return error(f"limit must be a whole number from 1 to {MAX_PAGE}", 400)
        try:
            page = await list_sessions(registry.store, session.user.id, limit=limit,
                                       cursor=query.get("cursor"))
        except ValueError:
            return error("Not a cursor of this list", 400)
        except StoreUnavailable:
            return error("The session store is unavailable; try again later", 503)
        views = [stored_session_view(record, session.jti) for record in page]
        return JSONResponse({"sessions": views, "nextCursor": page.next_cursor},
                            headers=NO_STORE)

    async def registry_post(self, request: Request, action: str
                            ) -> tuple[SessionRegistry, Session] | Response:
        """The checks every registry POST makes, in order: CSRF (403), a registry (404),
        a writable cookie (409), a signed-in user (401)."""
        await self.verify_csrf(request)
        registry = registry_of(request)
        if registry is None:
            return error(NO_REGISTRY, 404)
        if read_only(request):
            return read_only_error(action)
        session = get_session(request)
        session.mark_accessed()
        if session.user is None:
            return error("Not authenticated", 401)
        return registry, session

    async def revoke_session(self, request: Request) -> Response:
        checked = await self.registry_post(request, "revoke sessions")
        if isinstance(checked, Response):
            return checked
        registry, session = checked
        assert session.user is not None
        from asgi_jwt_session.registry import SESSION_ID

        session_id = request.path_params["session_id"]
        await registry.acting(request, "revoke_session", session_id)
        if not SESSION_ID.fullmatch(session_id):
            return error(NO_SESSION, 404)
        try:
            found = await registry.store.revoke_session(session_id, user_id=session.user.id)
        except StoreUnavailable:
            return error("The session store is unavailable; try again later", 503)
        if not found:
            return error(NO_SESSION, 404)
        current = session_id == session.jti
        if current:
            logout(request)
        return JSONResponse({"revoked": session_id, "current": current}, headers=NO_STORE)

    async def revoke_others(self, request: Request) -> Response:
        checked = await self.registry_post(request, "revoke sessions")
        if isinstance(checked, Response):
            return checked
        _, session = checked
        from asgi_jwt_session.registry import revoke_other_sessions

        try:
            await revoke_other_sessions(request)
        except StoreUnavailable:
            return error("The session store is unavailable; try again later", 503)
        except UnknownUser:  # the user is gone: so is this session
            logout(request)
        if session.user is None:
            return error("Not authenticated", 401)
        view = session_view(session, next_expiry(request, session))
        return JSONResponse({"session": view}, headers=NO_STORE)

    async def script(self, request: Request) -> Response:
        body, etag = client_script()
        headers = {"etag": etag, "cache-control": "no-cache",
                   "x-content-type-options": "nosniff"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="text/javascript", headers=headers)


def session_routes(
    store: Store | None = None,
    *,
    prefix: str = "/auth",
    user_loader: UserLoader | None = None,
    csrf_cookie: str = CSRF_COOKIE,
    csrf_header: str = CSRF_HEADER,
    trusted_origins: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    name: str | None = "auth",
) -> Mount:
    """The session endpoints, mounted at ``prefix``: ``Starlette(routes=[session_routes(store)])``.

    ``POST {prefix}/session/refresh`` reads the user through the middleware's
    ``freshness`` (so the store is given once, to the middleware). ``store`` (a
    connected :class:`~asgi_jwt_session.store.Store`) or ``user_loader`` (a
    :data:`~asgi_jwt_session.freshness.UserLoader`: ``async (user_id) -> user | None``)
    given here are used instead. A loader signals an unreachable database by raising
    :class:`~asgi_jwt_session.errors.StoreUnavailable` (or ``OSError``,
    ``TimeoutError``); one that takes longer than ``timeout`` seconds counts as
    unreachable too (503, the session kept).

    ``csrf_cookie`` and ``csrf_header`` name the double-submit token's cookie and
    header (the form field is ``csrf_token``); ``trusted_origins`` are other origins
    (``"https://app.example.com"``) allowed to POST. Route names are ``session``,
    ``refresh``, ``signout``, ``script``, ``sessions``, ``revoke_session`` and
    ``revoke_other_sessions`` under ``name``: ``url_for("auth:script")``. The
    ``/sessions`` routes use the middleware's session registry (404 without one).
    """
    if store is not None and user_loader is not None:
        raise TypeError("pass a store or a user_loader, not both")
    freshness: FreshnessHook | None = None
    source = store if store is not None else user_loader
    if source is not None:
        from asgi_jwt_session.freshness.policy import Freshness

        freshness = Freshness(source, revalidate_after=None, timeout=timeout, watch=False)
    endpoints = SessionEndpoints(freshness, csrf_cookie=csrf_cookie, csrf_header=csrf_header,
                                 trusted_origins=trusted_origins)
    routes: list[BaseRoute] = [
        Route("/session", endpoints.session, methods=["GET"], name="session"),
        Route("/signout", endpoints.signout, methods=["POST"], name="signout"),
        Route("/session.js", endpoints.script, methods=["GET"], name="script"),
        Route("/session/refresh", endpoints.refresh, methods=["POST"], name="refresh"),
        Route("/sessions", endpoints.sessions, methods=["GET"], name="sessions"),
        Route("/sessions/revoke-others", endpoints.revoke_others, methods=["POST"],
              name="revoke_other_sessions"),
        Route("/sessions/{session_id}/revoke", endpoints.revoke_session, methods=["POST"],
              name="revoke_session"),
    ]
    return Mount(prefix, routes=routes, name=name)


def route_path(scope: Scope) -> str:
    """The request's path below ``root_path``, whether or not the path still holds it."""
    root_path: str = scope.get("root_path", "")
    path: str = scope["path"]
    if root_path and (path == root_path or path.startswith(root_path + "/")):
        return path[len(root_path):]
    return path


class SessionApp:
    """The session endpoints as a plain ASGI app, for any framework to mount at a prefix
    (see :func:`session_app`). It answers the path below the mount point whether the
    framework strips the prefix (with or without setting ``root_path``, with or without
    a trailing slash) or passes the full path with ``root_path`` set, as Starlette does."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.router = Router(routes=routes, redirect_slashes=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.router(scope, receive, send)
        path = route_path(scope).rstrip("/") or "/"
        await self.router({**scope, "path": scope.get("root_path", "") + path}, receive, send)


def session_app(store: Store | None = None, **options: Any) -> SessionApp:
    """The session endpoints of :func:`session_routes` (same options, but no ``prefix``
    nor ``name``) as a framework-neutral ASGI app: mount it at ``/auth`` in Litestar,
    Quart, Django, Falcon, BlackSheep or any ASGI router. The middleware must wrap the
    whole app, so that the endpoints find the session."""
    return SessionApp(session_routes(store, prefix="", name=None, **options).routes)
