"""FastAPI with encrypted JWT cookie sessions, roles stored in SQLite, and role changes
that take effect on the user's next request.

Run it from this folder: ``uvicorn app:app --reload``, then open http://127.0.0.1:8000/docs.
``SESSION_SECRET`` and ``DATABASE_URL`` come from the environment.
"""

import hmac
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from asgi_jwt_session import (
    JWTSessionMiddleware,
    Role,
    SessionUser,
    UnknownRole,
    UnknownUser,
    login,
    update_user_role,
)
from asgi_jwt_session.dependencies import (
    AdminUser,
    CurrentSession,
    CurrentUser,
    RequireCSRF,
    RequireRole,
    SessionRoute,
    session_router,
)
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.responses import exception_handlers
from asgi_jwt_session.store import RoleStore

logger = logging.getLogger("uvicorn.error")

# username: (role, password). A real app checks a password hash (argon2, bcrypt,
# hashlib.scrypt) kept in its own table; the role store keeps only roles.
ACCOUNTS = {
    "ada": (Role.ADMIN, "ada-password"),
    "olga": (Role.ORG_ADMIN, "olga-password"),
    "bob": (Role.USER, "bob-password"),
}

OrgAdmin = Annotated[SessionUser, RequireRole(Role.ORG_ADMIN)]  # ORG_ADMIN or ADMIN


class Credentials(BaseModel):
    username: str
    password: str


class RoleChange(BaseModel):
    role: str


def password_ok(username: str, password: str) -> bool:
    account = ACCOUNTS.get(username)
    return account is not None and hmac.compare_digest(account[1].encode(), password.encode())


def user_view(user: SessionUser) -> dict[str, str]:
    return {"id": user.id, "role": user.role}


def create_app(secret_key: str | None = None, database_url: str | None = None) -> FastAPI:
    """The app; ``secret_key`` and ``database_url`` default to the environment's
    ``SESSION_SECRET`` (else a random one: sessions end when the process does) and
    ``DATABASE_URL`` (else ``sqlite:///fastapi-example.sqlite3``)."""
    if secret_key is None:
        secret_key = os.environ.get("SESSION_SECRET")
    if not secret_key:
        logger.warning("SESSION_SECRET is not set: using a random one (asgi-jwt-session keygen)")
        secret_key = secrets.token_urlsafe(32)
    store = RoleStore(database_url or os.environ.get("DATABASE_URL")
                      or "sqlite:///fastapi-example.sqlite3")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with store:
            await store.create_tables()
            for username, (role, _) in ACCOUNTS.items():
                if await store.get_user(username) is None:
                    await store.create_user(username, role)
            yield

    # exception_handlers: the store down while the app itself queries it (sign-in, the
    # admin pages) is answered 503 with Retry-After, not 500.
    app = FastAPI(title="asgi-jwt-session: FastAPI example", lifespan=lifespan,
                  exception_handlers=dict(exception_handlers))
    app.router.route_class = SessionRoute  # each guard documents its 401/403
    # With the store, a role change is seen on the user's next request.
    app.add_middleware(JWTSessionMiddleware, secret_key=secret_key,
                       freshness=Freshness(store))
    # GET /auth/session (and the CSRF token), POST /auth/session/refresh, /auth/signout.
    app.include_router(session_router())

    @app.post("/sign-in", dependencies=[RequireCSRF()])
    async def sign_in(request: Request, credentials: Credentials) -> Any:
        """Sign in; send the ``csrfToken`` of ``GET /auth/session`` as ``X-CSRF-Token``."""
        stored = await store.get_user(credentials.username)
        if stored is None or stored.disabled or not password_ok(credentials.username,
                                                                credentials.password):
            return JSONResponse({"detail": "Wrong username or password"}, status_code=401)
        session = login(request, stored.id, stored.role, version=stored.session_version)
        return {"user": user_view(session.user), "expires": session.expires.isoformat()}

    @app.get("/me")
    async def me(session: CurrentSession) -> dict[str, Any]:
        return {"user": user_view(session.user), "expires": session.expires.isoformat()}

    @app.get("/reports")
    async def reports(user: OrgAdmin) -> dict[str, str]:
        return {"report": f"for {user.id}", "role": user.role}

    @app.get("/admin/users")
    async def list_users(admin: AdminUser) -> list[dict[str, Any]]:
        return [{"id": user.id, "role": user.role, "version": user.session_version}
                for user in await store.list_users()]

    @app.post("/admin/users/{user_id}/role", dependencies=[RequireCSRF()])
    async def change_role(user_id: str, change: RoleChange, admin: AdminUser) -> Any:
        """Change a user's role: they see it on their next request, with no new sign-in."""
        if user_id == admin.id and change.role != Role.ADMIN:
            return JSONResponse({"detail": "An admin cannot demote herself"}, status_code=400)
        try:
            user = await update_user_role(store, user_id, change.role)
        except (UnknownUser, UnknownRole) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return {"id": user.id, "role": user.role, "version": user.session_version}

    @app.websocket("/ws")
    async def echo(websocket: WebSocket, user: CurrentUser) -> None:
        """Echo, signed in only (closed with 4401 before accept otherwise)."""
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_json({"from": user.id, "text": text})
        except WebSocketDisconnect:
            pass

    return app


app = create_app()
