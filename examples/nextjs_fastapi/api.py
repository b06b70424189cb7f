"""The Python side of one Auth.js session shared by Next.js and FastAPI.

Next.js signs users in with Auth.js (``auth.ts``) and writes the session cookie; this API
reads the same cookie (``AuthJSFormat()``), with the same ``AUTH_SECRET``, so one sign-in
serves both, with no call back into Next.js. Run it from this folder::

    AUTH_SECRET=... uvicorn api:create_app --factory --port 8000

Next.js forwards ``/api/py/*`` here (``next.config.ts``), so the browser sends the cookie
to its own origin; the docs are at ``/api/py/docs``.
"""

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI

from asgi_jwt_session import JWTSessionMiddleware, Role, SessionUser
from asgi_jwt_session.authjs import AuthJSFormat, authjs_secrets_from_env
from asgi_jwt_session.dependencies import (
    OptionalSession,
    RequireLogin,
    RequireRole,
    SessionCookie,
    SessionRoute,
)

# Auth.js's cookie (``__Secure-authjs.session-token`` over https), for the OpenAPI docs.
AUTHJS_COOKIE = SessionCookie(
    "authjs.session-token",
    description="Auth.js's session cookie, set by Next.js at sign-in "
                "(__Secure-authjs.session-token over https).")
User = Annotated[SessionUser, RequireLogin(scheme=AUTHJS_COOKIE)]
Admin = Annotated[SessionUser, RequireRole(Role.ADMIN, scheme=AUTHJS_COOKIE)]


def create_app(secret_key: str | list[str] | None = None) -> FastAPI:
    """The API; ``secret_key`` defaults to the secrets NextAuth reads (``AUTH_SECRET``,
    or ``AUTH_SECRET_1``... when rotating: :func:`authjs_secrets_from_env`)."""
    app = FastAPI(title="asgi-jwt-session: the Python API behind Next.js",
                  docs_url="/api/py/docs", openapi_url="/api/py/openapi.json")
    router = APIRouter(prefix="/api/py", route_class=SessionRoute)
    app.add_middleware(
        JWTSessionMiddleware,
        secret_key=secret_key if secret_key is not None else authjs_secrets_from_env(),
        format=AuthJSFormat(role_claim="role", default_role=Role.USER),  # read-only
        leeway=15,  # Auth.js's clock tolerance
    )

    @router.get("/me")
    async def me(user: User) -> dict[str, Any]:
        """The signed-in user, as Auth.js signed them in."""
        return {"id": user.id, "role": user.role, "name": user.get("name"),
                "email": user.get("email")}

    @router.get("/admin/stats")
    async def stats(admin: Admin) -> dict[str, Any]:
        return {"admin": admin.id, "users": 3}

    @router.get("/greeting")
    async def greeting(session: OptionalSession) -> dict[str, str]:
        if session is None:
            return {"greeting": "Hello, stranger"}
        return {"greeting": f"Hello, {session.user.get('name') or session.user.id}"}

    app.include_router(router)
    return app
