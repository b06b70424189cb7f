"""The Python side of a Better Auth sign-in: a FastAPI service reading its sessions.

Better Auth (``auth.mjs``, or a Next.js app) signs users in and writes its cookies; this
API reads the cookie cache (``better-auth.session_data``) with the same
``BETTER_AUTH_SECRET``, with no query per request. Run it from this folder::

    BETTER_AUTH_SECRET=... COOKIE_CACHE_STRATEGY=compact \\
        uvicorn api:create_app --factory --port 8000

With ``DATABASE_URL`` (Better Auth's own PostgreSQL database) it also reads sessions
whose cookie cache is off or expired from Better Auth's tables (one query per session,
remembered), and sees a sign-out, a ban or a role change within a second (the trigger
of ``notify_trigger_sql()``, installed at start).
"""

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI

from asgi_jwt_session import JWTSessionMiddleware, SessionUser
from asgi_jwt_session.betterauth import (
    BETTER_AUTH_ROLES,
    BetterAuthFormat,
    Strategy,
    betterauth_secrets_from_env,
)
from asgi_jwt_session.dependencies import CurrentUser, OptionalSession, RequireRole

Admin = Annotated[SessionUser, RequireRole("admin")]


def create_app(secret_key: str | list[str] | None = None, strategy: Strategy | None = None,
               database_url: str | None = None) -> FastAPI:
    """The API. ``secret_key`` defaults to the secrets Better Auth reads
    (:func:`betterauth_secrets_from_env`), ``strategy`` to ``$COOKIE_CACHE_STRATEGY``
    (``compact``), ``database_url`` to ``$DATABASE_URL`` (none: cookie cache only)."""
    secrets = secret_key if secret_key is not None else betterauth_secrets_from_env()
    cache_strategy: Strategy = strategy or os.environ.get(  # type: ignore[assignment]
        "COOKIE_CACHE_STRATEGY", "compact")
    database_url = database_url or os.environ.get("DATABASE_URL")
    freshness: Any = None
    stack = AsyncExitStack()

    if database_url:
        from asgi_jwt_session.betterauth_sessions import (
            BetterAuthSessions,
            BetterAuthTokenSessions,
        )
        from asgi_jwt_session.freshness import PostgresVersionFeed
        from asgi_jwt_session.store.betterauth import BetterAuthTables, notify_trigger_sql

        tables = BetterAuthTables(database_url)
        feed = PostgresVersionFeed(tables)  # on the channel of the tables' trigger
        freshness = BetterAuthSessions(tables, secret_key=secrets, feed=feed)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with stack:
            if database_url:
                await stack.enter_async_context(tables)
                for statement in notify_trigger_sql():  # once: a migration, really
                    await tables.database.execute(statement)
                await stack.enter_async_context(feed)
            yield

    app = FastAPI(title="asgi-jwt-session: reading Better Auth sessions", lifespan=lifespan)
    if freshness is not None:
        app.add_middleware(BetterAuthTokenSessions, sessions=freshness)
    app.add_middleware(
        JWTSessionMiddleware,
        secret_key=secrets,
        format=BetterAuthFormat(cache_strategy),  # read-only: Better Auth owns its cookies
        roles=BETTER_AUTH_ROLES,  # the admin plugin's "user" < "admin"
        freshness=freshness,
    )

    @app.get("/api/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        """The signed-in user, as Better Auth signed them in."""
        return {"id": user.id, "role": user.role, "name": user.get("name"),
                "email": user.get("email")}

    @app.get("/api/admin/stats")
    async def stats(admin: Admin) -> dict[str, Any]:
        return {"admin": admin.id, "users": 3}

    @app.get("/api/greeting")
    async def greeting(session: OptionalSession) -> dict[str, str]:
        name = session.user.get("name") if session is not None else None
        return {"greeting": f"Hello, {name or 'stranger'}!"}

    return app
