"""FastAPI ergonomics (asgi_jwt_session.dependencies): typed dependencies for the session,
the user and a role; their OpenAPI security schemes and 401/403 responses; CSRF for
Swagger UI; the session endpoints as an APIRouter; and ``auth()``'s ``SignedIn`` type."""

from __future__ import annotations

import inspect
import pydoc
import subprocess
import sys
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, WebSocket
from starlette.requests import Request
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from asgi_jwt_session import (
    JWTSessionMiddleware,
    Role,
    RoleHierarchy,
    Session,
    SessionUser,
    auth,
    login,
    require_admin,
    require_fresh_login,
    require_role,
)
from asgi_jwt_session.dependencies import (
    AUTH_RESPONSES,
    AdminUser,
    CSRFHeader,
    CurrentSession,
    CurrentUser,
    OptionalSession,
    RequireAdmin,
    RequireCSRF,
    RequireFreshLogin,
    RequireLogin,
    RequireRole,
    SessionCookie,
    SessionRoute,
    session_router,
)
from asgi_jwt_session.session import SignedIn
from asgi_jwt_session.testing import sign_in
from tests.conftest import SECRET, Clock, Users

Client = Callable[..., TestClient]
JSON = {"accept": "application/json"}
HTML = {"accept": "text/html,application/xhtml+xml"}

OrgAdmin = Annotated[SessionUser, RequireRole(Role.ORG_ADMIN)]
FreshUser = Annotated[SessionUser, RequireFreshLogin(max_age=60)]
APP_COOKIE = SessionCookie("app.session")
AppUser = Annotated[SessionUser, RequireLogin(scheme=APP_COOKIE)]
STAFF = RoleHierarchy(["STAFF", "OWNER"])
Owner = Annotated[SessionUser, RequireAdmin(roles=STAFF)]


def make_api(users: Users | None = None, **options: Any) -> FastAPI:
    api = FastAPI()
    api.router.route_class = SessionRoute
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET, **options)
    api.include_router(session_router(user_loader=users))

    @api.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"id": user.id, "role": user.role}

    @api.get("/session")
    async def session(session: CurrentSession) -> dict[str, Any]:
        return {"id": session.user.id, "expires": session.expires.isoformat(),
                "cart": session.get("cart")}

    @api.get("/maybe")
    async def maybe(session: OptionalSession) -> dict[str, str | None]:
        return {"id": session.user.id if session is not None else None}

    @api.get("/org")
    async def org(user: OrgAdmin) -> dict[str, str]:
        return {"id": user.id}

    @api.get("/admin")
    async def admin(user: AdminUser) -> dict[str, str]:
        return {"id": user.id}

    @api.post("/sudo")
    async def sudo(user: FreshUser) -> dict[str, str]:
        return {"id": user.id}

    @api.post("/sign-in", dependencies=[RequireCSRF()])
    async def sign_in_route(request: Request, user: str, role: str) -> dict[str, Any]:
        session = login(request, user, role)
        signed_in = auth(request)
        assert signed_in is session
        return {"id": signed_in.user.id, "expires": signed_in.expires.isoformat()}

    @api.post("/promote", dependencies=[RequireCSRF()])
    async def promote(user: OrgAdmin) -> dict[str, str]:
        return {"id": user.id}

    @api.get("/declared", responses={401: {"description": "mine"}})
    async def declared(user: CurrentUser) -> dict[str, str]:
        return {"id": user.id}

    @api.websocket("/ws")
    async def ws(websocket: WebSocket, user: OrgAdmin) -> None:
        await websocket.accept()
        await websocket.send_json({"id": user.id})
        await websocket.close()

    return api


@pytest.fixture
def api() -> FastAPI:
    return make_api(Users(alice=("ORG_ADMIN", 1), bob=("USER", 1)))


@pytest.fixture
def client(client_for: Client, api: FastAPI) -> TestClient:
    return client_for(api)


def csrf(client: TestClient, prefix: str = "/auth") -> dict[str, str]:
    body = client.get(f"{prefix}/session").json()
    return {body["csrfHeader"]: body["csrfToken"]}


# --- the dependencies -------------------------------------------------------------------------


def test_current_user(client: TestClient) -> None:
    response = client.get("/me", headers=JSON)
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    redirect = client.get("/me", headers=HTML)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=%2Fme"
    sign_in(client, SECRET, "alice", "USER")
    assert client.get("/me").json() == {"id": "alice", "role": "USER"}


def test_current_session_and_optional_session(client: TestClient) -> None:
    assert client.get("/session", headers=JSON).status_code == 401
    assert client.get("/maybe").json() == {"id": None}
    signed_in = sign_in(client, SECRET, "alice", "USER", data={"cart": [1]})
    body = client.get("/session").json()
    assert body == {"id": "alice", "expires": signed_in.expires.isoformat()
                    if signed_in.expires else None, "cart": [1]}
    assert client.get("/maybe").json() == {"id": "alice"}


@pytest.mark.parametrize(("role", "org", "admin"), [("USER", 403, 403),
                                                    ("ORG_ADMIN", 200, 403),
                                                    ("ADMIN", 200, 200)])
def test_roles(client: TestClient, role: str, org: int, admin: int) -> None:
    assert client.get("/org", headers=JSON).status_code == 401
    sign_in(client, SECRET, "alice", role)
    assert client.get("/org", headers=JSON).status_code == org
    assert client.get("/admin", headers=JSON).status_code == admin


def test_require_role_needs_a_role() -> None:
    with pytest.raises(TypeError, match="at least one role"):
        RequireRole()
    with pytest.raises(ValueError, match="max_age"):
        RequireFreshLogin(max_age=-1)


def test_plain_guards_as_dependencies(client_for: Client, clock: Clock) -> None:
    # Depends(auth) and Depends(require_admin) once failed at definition with FastAPI's
    # "Invalid args for response field!" (their parameter is HTTPConnection | Scope).
    api = FastAPI()
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET)

    @api.get("/maybe")
    async def maybe(session: Annotated[Session | None, Depends(auth)]) -> dict[str, str | None]:
        return {"id": session.user.id if session is not None and session.user else None}

    @api.get("/admin")
    async def admin(user: Annotated[SessionUser, Depends(require_admin)]) -> dict[str, str]:
        return {"id": user.id}

    @api.get("/admin-called")
    async def admin_called(user: Annotated[SessionUser, Depends(require_admin())]
                           ) -> dict[str, str]:
        return {"id": user.id}

    @api.post("/sudo")
    async def sudo(user: Annotated[SessionUser, Depends(require_fresh_login)]) -> dict[str, str]:
        return {"id": user.id}

    @api.websocket("/ws")
    async def ws(websocket: WebSocket,
                 user: Annotated[SessionUser, Depends(require_admin)]) -> None:
        await websocket.accept()
        await websocket.send_json({"id": user.id})
        await websocket.close()

    for path in ("/maybe", "/admin", "/sudo"):  # no query parameter made of `conn`
        params = operation(api, "post" if path == "/sudo" else "get", path).get(
            "parameters", [])
        assert params == [], path
    client = client_for(api)
    assert client.get("/maybe").json() == {"id": None}
    assert client.get("/admin", headers=JSON).status_code == 401
    assert client.post("/sudo", headers=JSON).status_code == 401
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
        pass
    assert refused.value.status_code == 401  # the server's denial response
    sign_in(client, SECRET, "bob", "USER")
    assert client.get("/maybe").json() == {"id": "bob"}
    assert client.get("/admin", headers=JSON).status_code == 403
    assert client.get("/admin-called", headers=JSON).status_code == 403
    assert client.post("/sudo").json() == {"id": "bob"}
    clock.now += 301  # require_fresh_login's default max_age
    assert client.post("/sudo", headers=JSON).json()["reason"] == "reauthentication_required"
    sign_in(client, SECRET, "ann", "ADMIN")
    assert client.get("/admin").json() == {"id": "ann"}
    assert client.get("/admin-called").json() == {"id": "ann"}
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"id": "ann"}


def test_depends_require_role_without_roles_fails_at_definition() -> None:
    # It once made a required `args` query parameter: every call answered 422.
    api = FastAPI()
    with pytest.raises(TypeError, match=r"Depends\(require_role\) needs the roles.*"
                                        r"require_role\(Role.ADMIN\).*RequireRole"):
        @api.get("/org")
        async def org(user: Annotated[SessionUser, Depends(require_role)]) -> None: ...
    # The function itself is unchanged: its help, and its plain calls.
    assert "(*args" in pydoc.render_doc(require_role, renderer=pydoc.plaintext)
    assert "conn" in str(inspect.signature(require_admin))
    with pytest.raises(TypeError, match="at least one role"):
        require_role()


def test_fresh_login(client: TestClient, clock: Clock) -> None:
    sign_in(client, SECRET, "alice", "USER")
    assert client.post("/sudo").json() == {"id": "alice"}
    clock.now += 61
    response = client.post("/sudo", headers=JSON)
    assert response.status_code == 401
    assert response.json()["reason"] == "reauthentication_required"


def test_websocket(client: TestClient) -> None:
    for user, role, status in (None, None, 401), ("bob", "USER", 403):
        if user is not None and role is not None:
            sign_in(client, SECRET, user, role)
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
            pass
        assert refused.value.status_code == status  # the server's denial response
    sign_in(client, SECRET, "alice", "ORG_ADMIN")
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"id": "alice"}


def test_csrf_dependency(client: TestClient) -> None:
    params = {"user": "alice", "role": "USER"}
    refused = client.post("/sign-in", params=params, headers=JSON)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    headers = csrf(client)
    assert list(headers) == ["x-csrf-token"]
    response = client.post("/sign-in", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "alice"
    assert response.json()["expires"]  # auth() right after login(): the coming cookie's
    assert client.get("/me").json()["id"] == "alice"
    cross_site = client.post("/sign-in", params=params,
                             headers={**headers, "sec-fetch-site": "cross-site"})
    assert cross_site.status_code == 403


# --- the session endpoints as an APIRouter ------------------------------------------------------


def test_session_router_behaves_as_session_routes(client: TestClient, api: FastAPI) -> None:
    anonymous = client.get("/auth/session")
    assert anonymous.json()["session"] is None
    assert anonymous.headers["cache-control"] == "private, no-store"
    assert client.post("/auth/session/refresh", headers=csrf(client)).status_code == 401
    sign_in(client, SECRET, "bob", "ADMIN", version=1)  # the store says USER
    assert client.post("/auth/session/refresh").status_code == 403  # no CSRF token
    refreshed = client.post("/auth/session/refresh", headers=csrf(client))
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["session"]["user"] == {"id": "bob", "role": "USER"}
    assert client.get("/me").json()["role"] == "USER"
    assert client.post("/auth/signout", headers=csrf(client)).json() == {"session": None}
    assert client.get("/me", headers=JSON).status_code == 401
    script = client.get("/auth/session.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert api.url_path_for("auth:script") == "/auth/session.js"
    assert api.url_path_for("auth:refresh") == "/auth/session/refresh"


def test_session_router_options(client_for: Client) -> None:
    api = FastAPI()
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET)
    api.include_router(session_router(prefix="/api/auth", csrf_header="X-Token", name="s"))
    client = client_for(api)
    body = client.get("/api/auth/session").json()
    assert body["csrfHeader"] == "X-Token"
    assert client.post("/api/auth/session/refresh").status_code == 403
    assert client.post("/api/auth/session/refresh",
                       headers={"X-Token": body["csrfToken"]}).status_code == 404  # no store
    assert api.url_path_for("s:session") == "/api/auth/session"
    schemes = api.openapi()["components"]["securitySchemes"]
    assert schemes["csrfToken"]["name"] == "X-Token"


# --- OpenAPI ---------------------------------------------------------------------------------


def operation(api: FastAPI, method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = api.openapi()["paths"][path][method]
    return op


def test_openapi_security_schemes(api: FastAPI) -> None:
    schemes = api.openapi()["components"]["securitySchemes"]
    assert schemes["sessionCookie"] == {
        "type": "apiKey", "in": "cookie", "name": "session",
        "description": schemes["sessionCookie"]["description"]}
    assert schemes["csrfToken"]["in"] == "header"
    assert schemes["csrfToken"]["name"] == "X-CSRF-Token"
    assert "GET /auth/session" in schemes["csrfToken"]["description"]


def test_openapi_guarded_routes(api: FastAPI) -> None:
    me = operation(api, "get", "/me")
    assert me["security"] == [{"sessionCookie": []}]
    assert set(me["responses"]) == {"200", "401"}
    assert me["responses"]["401"]["content"]["application/json"]["schema"]["required"] == [
        "detail"]
    org = operation(api, "get", "/org")
    assert org["security"] == [{"sessionCookie": ["ORG_ADMIN"]}]  # OpenAPI 3.1 role names
    assert {"401", "403"} <= set(org["responses"])
    assert {"401", "403"} <= set(operation(api, "get", "/admin")["responses"])
    assert "reauthentication_required" in operation(api, "post", "/sudo")["responses"][
        "401"]["description"]
    maybe = operation(api, "get", "/maybe")
    assert "security" not in maybe
    assert "401" not in maybe["responses"]
    sign_in_op = operation(api, "post", "/sign-in")
    assert sign_in_op["security"] == [{"csrfToken": []}]
    assert "403" in sign_in_op["responses"]
    assert operation(api, "get", "/declared")["responses"]["401"]["description"] == "mine"
    promote = operation(api, "post", "/promote")
    assert promote["responses"]["403"]["description"] == (
        "Signed in without the role; CSRF check failed")
    assert {"csrfToken": []} in promote["security"]
    assert {"sessionCookie": ["ORG_ADMIN"]} in promote["security"]


def test_openapi_admin_lists_its_role(client_for: Client) -> None:
    api = make_api()
    assert operation(api, "get", "/admin")["security"] == [{"sessionCookie": ["ADMIN"]}]
    api = FastAPI()
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET, roles=STAFF)

    @api.get("/owner")
    async def owner(user: Owner) -> str:
        return user.id

    assert operation(api, "get", "/owner")["security"] == [{"sessionCookie": ["OWNER"]}]
    client = client_for(api)
    sign_in(client, SECRET, "ann", "STAFF")
    assert client.get("/owner", headers=JSON).status_code == 403
    sign_in(client, SECRET, "ann", "OWNER")
    assert client.get("/owner").json() == "ann"


def test_openapi_registry_routes_only_with_a_registry(client_for: Client) -> None:
    sessions = {"/auth/sessions", "/auth/sessions/revoke-others",
                "/auth/sessions/{session_id}/revoke"}
    without = FastAPI()
    without.add_middleware(JWTSessionMiddleware, secret_key=SECRET)
    without.include_router(session_router())
    assert not sessions & set(without.openapi()["paths"])
    client = client_for(without)
    sign_in(client, SECRET, "ann", "USER")
    assert client.get("/auth/sessions").status_code == 404  # served: says why it is 404
    assert "registry" in client.get("/auth/sessions").json()["detail"]
    with_registry = FastAPI()
    with_registry.include_router(session_router(registry=True))
    assert sessions <= set(with_registry.openapi()["paths"])


def test_openapi_registry_routes_list_the_impersonation_refusal() -> None:
    # While an admin impersonates the user, these answer 403 {"reason": "impersonating"};
    # the schema once listed only the CSRF refusal (and nothing for the GET).
    api = FastAPI()
    api.include_router(session_router(registry=True))
    paths = api.openapi()["paths"]
    for path, method in (("/auth/sessions", "get"),
                         ("/auth/sessions/{session_id}/revoke", "post"),
                         ("/auth/sessions/revoke-others", "post")):
        refused = paths[path][method]["responses"]["403"]
        assert 'reason "impersonating"' in refused["description"], path
        body = refused["content"]["application/json"]
        assert body["example"]["reason"] == "impersonating"
        assert set(body["schema"]["properties"]) == {"detail", "reason"}
        if method == "post":
            assert "CSRF check failed" in refused["description"]
    for path in ("/auth/session/refresh", "/auth/signout"):  # not refused then
        assert "impersonating" not in paths[path]["post"]["responses"]["403"]["description"]


def test_openapi_session_endpoints(api: FastAPI) -> None:
    paths = api.openapi()["paths"]
    assert "/auth/session.js" not in paths
    session = paths["/auth/session"]["get"]
    assert "security" not in session
    assert set(session["responses"]["200"]["content"]["application/json"]["schema"][
        "properties"]) == {"session", "csrfToken", "csrfHeader"}
    for path in ("/auth/session/refresh", "/auth/signout"):
        op = paths[path]["post"]
        assert {"csrfToken": []} in op["security"]
        assert "403" in op["responses"]
        assert op["tags"] == ["session"]
    refresh = paths["/auth/session/refresh"]["post"]
    assert {"sessionCookie": []} in refresh["security"]
    assert {"401", "404", "409", "503"} <= set(refresh["responses"])


def test_session_route_on_an_included_router(client_for: Client) -> None:
    router = APIRouter(route_class=SessionRoute)

    @router.get("/reports")
    async def reports(user: Annotated[SessionUser, RequireLogin()]) -> dict[str, str]:
        return {"id": user.id}

    api = FastAPI()
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET)
    api.include_router(router, prefix="/api")
    assert set(operation(api, "get", "/api/reports")["responses"]) == {"200", "401"}
    client = client_for(api)
    assert client.get("/api/reports", headers=JSON).status_code == 401


def test_plain_routes_can_use_auth_responses(client_for: Client) -> None:
    api = FastAPI()  # no SessionRoute
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET)

    @api.get("/org", responses=AUTH_RESPONSES)
    async def org(user: OrgAdmin) -> dict[str, str]:
        return {"id": user.id}

    assert {"401", "403"} <= set(operation(api, "get", "/org")["responses"])


def test_another_cookie_name(client_for: Client) -> None:
    api = FastAPI()
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET, session_cookie="app.session")

    @api.get("/me")
    async def me(user: AppUser) -> dict[str, str]:
        return {"id": user.id}

    assert api.openapi()["components"]["securitySchemes"]["sessionCookie"]["name"] == (
        "app.session")
    client = client_for(api)
    sign_in(client, SECRET, "alice", "USER", session_cookie="app.session")
    assert client.get("/me").json() == {"id": "alice"}


def test_csrf_header_scheme_name() -> None:
    assert CSRFHeader("X-Other").model.name == "X-Other"


# --- auth()'s type, and what imports FastAPI ---------------------------------------------------


def test_signed_in_is_session_at_run_time() -> None:
    assert SignedIn is Session


def test_the_package_imports_no_fastapi() -> None:
    code = ("import sys, asgi_jwt_session, asgi_jwt_session.endpoints, "
            "asgi_jwt_session.guards, asgi_jwt_session.csrf; "
            "print('fastapi' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
