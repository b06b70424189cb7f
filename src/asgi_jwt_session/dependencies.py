"""FastAPI: the session, the signed-in user and a role as typed parameters; the session
endpoints as an ``APIRouter``; OpenAPI security schemes and responses for both.

```python
from fastapi import FastAPI

from asgi_jwt_session.dependencies import AdminUser, CurrentUser, SessionRoute, session_router

app = FastAPI()
app.router.route_class = SessionRoute  # documents each guard's 401/403
app.include_router(session_router())   # /auth/session, /auth/session/refresh, ...


@app.get("/me")
async def me(user: CurrentUser) -> dict[str, str]:
    return {"id": user.id, "role": user.role}
```

- :data:`CurrentSession` (the signed-in :class:`~asgi_jwt_session.session.SignedIn`
  session), :data:`CurrentUser` (its :class:`~asgi_jwt_session.SessionUser`),
  :data:`OptionalSession` (the session or ``None``) and :data:`AdminUser`;
  :func:`RequireRole`, :func:`RequireLogin`, :func:`RequireAdmin` and
  :func:`RequireFreshLogin` for ``Annotated[SessionUser, RequireRole(Role.ORG_ADMIN)]``.
  Not signed in, or without the role, the request is answered as the guards answer it
  (401 JSON or a login redirect, 403; a websocket is refused with 401 / 403, or
  closed with 4401 / 4403 where the server has no websocket denial response).
- The guards declare the session cookie as an OpenAPI security scheme
  (:class:`SessionCookie`), so Swagger UI shows a lock; :class:`SessionRoute` adds
  their 401/403 answers to each operation's responses.
- :func:`RequireCSRF` checks an unsafe request's CSRF token and declares the
  ``X-CSRF-Token`` header as a security scheme (:class:`CSRFHeader`): in Swagger UI,
  call ``GET /auth/session``, copy its ``csrfToken`` into "Authorize", and "Try it out"
  passes the check on every POST.
- :func:`session_router` is :func:`~asgi_jwt_session.endpoints.session_routes` as an
  ``APIRouter``: the same endpoints, documented in ``/openapi.json``.

This module imports FastAPI (the ``fastapi`` extra); nothing else in the package does.
"""

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, APIKeyHeader
from starlette.requests import HTTPConnection, Request
from starlette.routing import Route

from asgi_jwt_session.csrf import CSRF_COOKIE, CSRF_HEADER, trusted, verify_csrf
from asgi_jwt_session.endpoints import DEFAULT_TIMEOUT, session_routes
from asgi_jwt_session.errors import NotAuthenticated
from asgi_jwt_session.guards import (
    DEFAULT_ROLES,
    FRESH_LOGIN_AGE,
    check,
    fresh_age,
    require_admin,
    require_fresh_login,
    require_role,
    role_names,
)
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.session import SessionUser, SignedIn, auth
from asgi_jwt_session.store.base import Store

if TYPE_CHECKING:
    from asgi_jwt_session.freshness.policy import UserLoader

__all__ = [
    "AUTH_RESPONSES",
    "AdminUser",
    "CSRFHeader",
    "CurrentSession",
    "CurrentUser",
    "OptionalSession",
    "RequireAdmin",
    "RequireCSRF",
    "RequireFreshLogin",
    "RequireLogin",
    "RequireRole",
    "SessionCookie",
    "SessionRoute",
    "SignedIn",
    "session_router",
]

Responses = dict[int | str, dict[str, Any]]


# --- OpenAPI: security schemes and responses ------------------------------------------------


class SessionCookie(APIKeyCookie):
    """The session cookie as an OpenAPI security scheme (``apiKey`` in ``cookie``).

    Documentation only: the middleware reads and checks the cookie, and a browser sends
    it with Swagger UI's requests by itself. ``name`` is the middleware's
    ``session_cookie`` (``"authjs.session-token"`` for Auth.js).
    """

    def __init__(self, name: str = "session", *, scheme_name: str = "sessionCookie",
                 description: str | None = None) -> None:
        super().__init__(name=name, scheme_name=scheme_name, auto_error=False,
                         description=description or (
                             "The encrypted session cookie, set at sign-in (HttpOnly: "
                             "the browser sends it; nothing to enter here)."))

    async def __call__(self, request: HTTPConnection) -> str | None:  # websockets too
        return None


class CSRFHeader(APIKeyHeader):
    """The CSRF token header as an OpenAPI security scheme (``apiKey`` in ``header``).

    In Swagger UI, "Authorize" with the ``csrfToken`` of ``GET /auth/session`` makes
    "Try it out" send it on every request. ``name`` is the session routes'
    ``csrf_header``.
    """

    def __init__(self, name: str = "X-CSRF-Token", *, scheme_name: str = "csrfToken",
                 description: str | None = None) -> None:
        super().__init__(name=name, scheme_name=scheme_name, auto_error=False,
                         description=description or (
                             "The CSRF token for POST, PUT, PATCH and DELETE: the "
                             "csrfToken of GET /auth/session (which also sets the "
                             "csrftoken cookie it must match)."))

    async def __call__(self, request: HTTPConnection) -> str | None:
        return None  # verify_csrf reads the header itself


SESSION_COOKIE = SessionCookie()
CSRF_TOKEN = CSRFHeader()

ERROR_BODY = {"application/json": {"schema": {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "reason": {"type": "string"}},
    "required": ["detail"],
}}}


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": ERROR_BODY}


NOT_SIGNED_IN = "Not signed in (a browser navigating is redirected to the login page)"
UNAUTHORIZED: Responses = {401: error_response(NOT_SIGNED_IN)}
FORBIDDEN: Responses = {**UNAUTHORIZED, 403: error_response("Signed in without the role")}
REAUTHENTICATE: Responses = {401: error_response(
    f"{NOT_SIGNED_IN}, or signed in too long ago for this action "
    '(reason "reauthentication_required")')}
CSRF_REFUSED: Responses = {403: error_response("CSRF check failed")}
# What the session-management routes answer while an admin impersonates the user
# (SessionRegistry(allow_impersonation=False), the default): see registry.acting.
IMPERSONATING: Responses = {403: {
    "description": 'While impersonating a user (reason "impersonating"): stop first',
    "content": {"application/json": {
        "schema": ERROR_BODY["application/json"]["schema"],
        "example": {"detail": "Not while impersonating a user: stop first",
                    "reason": "impersonating"}}}}}

AUTH_RESPONSES: Responses = FORBIDDEN
"""401 and 403 as the guards answer them, for ``responses=AUTH_RESPONSES`` on a route
or router (:class:`SessionRoute` adds them by itself)."""

# The responses each guard dependency documents, read by SessionRoute.
DOCUMENTED: "weakref.WeakKeyDictionary[Callable[..., Any], Responses]" = (
    weakref.WeakKeyDictionary())


def documented(dependency: Callable[..., Any], responses: Responses,
               scopes: Sequence[str] | None = None) -> params.Security:
    DOCUMENTED[dependency] = responses
    return params.Security(dependency, scopes=scopes)


def merge(into: Responses, responses: Mapping[int | str, dict[str, Any]]) -> None:
    """Add ``responses`` to ``into``; two descriptions of one status are joined."""
    for status_code, response in responses.items():
        key = status_code if status_code in into or str(status_code) not in into else str(
            status_code)
        known = into.get(key)
        if known is None:
            into[key] = dict(response)
        elif response["description"] not in known.get("description", ""):
            description = f"{known.get('description', '')}; {response['description']}"
            into[key] = {**known, "description": description}


def guard_responses(dependant: Dependant) -> Responses:
    """The responses of the guards in ``dependant``'s tree."""
    found: Responses = {}
    pending = list(dependant.dependencies)
    while pending:
        sub = pending.pop()
        if sub.call is not None and sub.call in DOCUMENTED:
            merge(found, DOCUMENTED[sub.call])
        pending.extend(sub.dependencies)
    return found


class SessionRoute(APIRoute):
    """An ``APIRoute`` whose OpenAPI operation lists the 401/403 answers of the guards
    it depends on (those of this module, in any of its dependencies).

    ``app.router.route_class = SessionRoute`` before adding routes, or
    ``APIRouter(route_class=SessionRoute)``. A response the route declares itself wins.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        declared = {str(status_code) for status_code in self.responses}
        for status_code, response in guard_responses(self.dependant).items():
            if str(status_code) not in declared:
                self.responses[status_code] = response


# --- the dependencies ---------------------------------------------------------------------


async def optional_session(conn: HTTPConnection) -> SignedIn | None:
    return auth(conn)


def RequireSession(*, scheme: SessionCookie = SESSION_COOKIE) -> params.Security:
    """The signed-in session, else 401: ``Annotated[SignedIn, RequireSession()]``
    (:data:`CurrentSession` with the default :class:`SessionCookie`)."""

    async def current_session(conn: HTTPConnection,
                              cookie: Annotated[str | None, params.Security(scheme)]
                              ) -> SignedIn:
        session = auth(conn)
        if session is None:
            raise NotAuthenticated()
        return session

    return documented(current_session, UNAUTHORIZED)


def RequireLogin(*, scheme: SessionCookie = SESSION_COOKIE) -> params.Security:
    """The signed-in user, else 401: ``Annotated[SessionUser, RequireLogin()]``
    (:data:`CurrentUser` with the default :class:`SessionCookie`)."""

    async def current_user(conn: HTTPConnection,
                           cookie: Annotated[str | None, params.Security(scheme)]
                           ) -> SessionUser:
        return check(conn, ())

    return documented(current_user, UNAUTHORIZED)


def RequireRole(*roles: str, scheme: SessionCookie = SESSION_COOKIE
                ) -> params.Security:
    """The signed-in user when their role is one of ``roles`` or higher, else 401 or 403::

        OrgAdmin = Annotated[SessionUser, RequireRole(Role.ORG_ADMIN)]

        @app.get("/org")
        async def org(user: OrgAdmin) -> dict[str, str]: ...

    The roles are listed in the operation's security requirement (OpenAPI 3.1 role names).
    """
    names = role_names(roles, "RequireRole")

    async def user_with_role(conn: HTTPConnection,
                             cookie: Annotated[str | None, params.Security(scheme)]
                             ) -> SessionUser:
        return require_role(conn, *names)

    return documented(user_with_role, FORBIDDEN, scopes=names)


def RequireAdmin(*, roles: RoleHierarchy = DEFAULT_ROLES,
                 scheme: SessionCookie = SESSION_COOKIE) -> params.Security:
    """The signed-in user with the highest role of the middleware's hierarchy (``ADMIN``
    by default), else 401 or 403 (:data:`AdminUser` with the default cookie).

    The operation's security requirement lists the highest role of ``roles``, as
    :func:`RequireRole` lists its roles: give the middleware's own ``roles=`` when it
    is another hierarchy (the check always uses the middleware's).
    """

    async def admin_user(conn: HTTPConnection,
                         cookie: Annotated[str | None, params.Security(scheme)]
                         ) -> SessionUser:
        return require_admin(conn)

    return documented(admin_user, FORBIDDEN, scopes=[roles.highest])


def RequireFreshLogin(max_age: int = FRESH_LOGIN_AGE, *,
                      scheme: SessionCookie = SESSION_COOKIE) -> params.Security:
    """The signed-in user when they proved their credentials at most ``max_age``
    seconds ago (sign-in or :func:`~asgi_jwt_session.reauthenticate`), else 401
    (``reason: "reauthentication_required"``): for sensitive actions."""
    age = fresh_age(max_age)

    async def freshly_signed_in(conn: HTTPConnection,
                                cookie: Annotated[str | None, params.Security(scheme)]
                                ) -> SessionUser:
        return require_fresh_login(conn, max_age=age)

    return documented(freshly_signed_in, REAUTHENTICATE)


def RequireCSRF(*, scheme: CSRFHeader = CSRF_TOKEN, cookie_name: str = CSRF_COOKIE,
                trusted_origins: Iterable[str] = ()) -> params.Security:
    """Check an unsafe request's CSRF token (header ``scheme.model.name``, or the
    ``csrf_token`` form field) and origin; a refused request gets 403. See
    :func:`~asgi_jwt_session.csrf.verify_csrf`::

        @app.post("/admin/role", dependencies=[RequireCSRF()])
    """
    origins = trusted(trusted_origins)
    header = scheme.model.name

    async def csrf_checked(request: Request,
                           token: Annotated[str | None, params.Security(scheme)]) -> None:
        await verify_csrf(request, cookie_name=cookie_name, header_name=header,
                          trusted_origins=origins)

    return documented(csrf_checked, CSRF_REFUSED)


CurrentSession = Annotated[SignedIn, RequireSession()]
"""The signed-in session (``session.user``, ``session.expires``, the data); 401 when
nobody is signed in."""

CurrentUser = Annotated[SessionUser, RequireLogin()]
"""The signed-in :class:`~asgi_jwt_session.SessionUser`; 401 when nobody is signed in."""

OptionalSession = Annotated[SignedIn | None, params.Depends(optional_session)]
"""The signed-in session, or ``None``: :func:`~asgi_jwt_session.auth` as a parameter."""

AdminUser = Annotated[SessionUser, RequireAdmin()]
"""The signed-in user with the highest role (``ADMIN``); 401 or 403 otherwise."""


# --- the session endpoints as an APIRouter ---------------------------------------------------

SESSION_VIEW = {
    "type": ["object", "null"],
    "properties": {
        "user": {"type": "object", "properties": {"id": {"type": "string"},
                                                   "role": {"type": "string"}}},
        "expires": {"type": ["string", "null"], "format": "date-time"},
        "actor": {"type": "object", "properties": {"id": {"type": "string"},
                                                    "role": {"type": "string"}}},
    },
}
UNAVAILABLE = error_response("The session store cannot be reached (Retry-After)")
READ_ONLY = error_response("The session cookie is Auth.js's and read-only here")
NO_STORE = error_response("No session store (or registry) configured")


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# Summary and responses of each route of session_routes(), by route name.
ROUTE_DOCS: dict[str, tuple[str, Responses]] = {
    "session": ("Read the session and get a CSRF token", {200: json_response(
        "The public view of the session (null when signed out), and the CSRF token "
        "and header the POSTs take; sets the csrftoken cookie",
        {"type": "object", "properties": {"session": SESSION_VIEW,
                                          "csrfToken": {"type": "string"},
                                          "csrfHeader": {"type": "string"}}})}),
    "refresh": ("Re-read the role from the store and re-issue the cookie", {
        200: json_response("The refreshed session", {
            "type": "object", "properties": {"session": SESSION_VIEW}}),
        401: error_response("Signed out, or the user is gone, disabled or revoked"),
        404: NO_STORE, 409: READ_ONLY, 503: UNAVAILABLE}),
    "signout": ("Sign out: clear the session and expire its cookie", {
        200: json_response("Signed out", {"type": "object",
                                          "properties": {"session": {"type": "null"}}}),
        303: {"description": "A browser's form post: back to its next page"},
        409: READ_ONLY}),
    "sessions": ("List the signed-in user's sessions", {
        401: error_response("Not signed in"), **IMPERSONATING, 404: NO_STORE,
        503: UNAVAILABLE}),
    "revoke_session": ("Sign one of the user's sessions out everywhere", {
        401: error_response("Not signed in"), **IMPERSONATING,
        404: error_response("No such session, or no registry"), 409: READ_ONLY,
        503: UNAVAILABLE}),
    "revoke_other_sessions": ("Sign out every other session of the user", {
        401: error_response("Not signed in"), **IMPERSONATING, 404: NO_STORE,
        409: READ_ONLY, 503: UNAVAILABLE}),
}


REGISTRY_ROUTES = frozenset({"sessions", "revoke_session", "revoke_other_sessions"})


def path_parameters(route: Route) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.param_convertors]


def session_router(
    store: Store | None = None,
    *,
    prefix: str = "/auth",
    user_loader: "UserLoader | None" = None,
    csrf_cookie: str = CSRF_COOKIE,
    csrf_header: str = CSRF_HEADER,
    trusted_origins: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    name: str | None = "auth",
    tags: Sequence[str] = ("session",),
    scheme: SessionCookie = SESSION_COOKIE,
    registry: bool = False,
) -> APIRouter:
    """:func:`~asgi_jwt_session.endpoints.session_routes` as a FastAPI ``APIRouter``:
    ``app.include_router(session_router())``.

    The same endpoints (the very same functions) with the same options and behaviour,
    listed in ``/openapi.json`` with their answers; the POSTs declare the CSRF header
    (:class:`CSRFHeader`) as their security scheme, so Swagger UI sends the token given
    to "Authorize". The browser client ``{prefix}/session.js`` is served but left out of
    the schema. Route names are ``auth:session``, ``auth:refresh``, ``auth:signout``,
    ``auth:script``... (``name:route``), as under ``session_routes``' mount.
    ``scheme`` is the session cookie's :class:`SessionCookie` (another cookie name).

    The ``/sessions`` routes (a user's sessions, revoking them) need a session registry
    on the middleware's freshness (``Freshness(store,
    registry=SessionRegistry(store))``) and answer 404 without one: they are listed in
    the schema only with ``registry=True``.
    """
    mount = session_routes(store, prefix="", user_loader=user_loader,
                           csrf_cookie=csrf_cookie, csrf_header=csrf_header,
                           trusted_origins=trusted_origins, timeout=timeout, name=None)
    csrf_scheme = CSRF_TOKEN if csrf_header.lower() == CSRF_HEADER else CSRFHeader(csrf_header)
    router = APIRouter(prefix=prefix, tags=list(tags), route_class=SessionRoute)
    for route in mount.routes:
        if not isinstance(route, Route):
            continue
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        summary, responses = ROUTE_DOCS.get(route.name, (None, {}))
        unsafe = any(method not in ("GET", "OPTIONS") for method in methods)
        if unsafe:
            responses = {**responses}
            merge(responses, CSRF_REFUSED)
        schemes = [params.Security(csrf_scheme)] if unsafe else []
        if 401 in responses:  # it needs a signed-in user
            schemes.append(params.Security(scheme))
        parameters = path_parameters(route)
        router.add_api_route(
            route.path, route.endpoint, methods=methods, summary=summary,
            responses=responses, name=f"{name}:{route.name}" if name else route.name,
            dependencies=schemes,
            include_in_schema=route.name != "script" and (
                registry or route.name not in REGISTRY_ROUTES),
            openapi_extra={"parameters": parameters} if parameters else None,
        )
    return router
