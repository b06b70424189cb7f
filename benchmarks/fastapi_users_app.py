"""fastapi-users, configured as its documentation shows, serving the benchmark's route.

Models: ``SQLAlchemyBaseUserTableUUID`` with two added columns (``name``, the
benchmark's user id, and ``role``) and ``SQLAlchemyBaseAccessTokenTableUUID``; an async
SQLAlchemy engine on PostgreSQL (asyncpg driver), one session per request through the
documented dependency chain (session → user database → ``UserManager``), a
``CookieTransport(cookie_max_age=3600)`` and one strategy:

- ``database``: ``DatabaseStrategy`` on ``SQLAlchemyAccessTokenDatabase``: the token row,
  then the user row (two queries);
- ``redis``: ``RedisStrategy`` on redis-py (``decode_responses=True``): a GET, then the
  user row;
- ``jwt``: ``JWTStrategy`` (HS256, PyJWT): decode and verify, then the user row.

``GET /`` depends on ``current_user(active=True)`` and answers ``"<name> <role>"``;
``GET /login/{uid}`` signs the user in through ``AuthenticationBackend.login`` (the
strategy writes the token, the transport sets the cookie), without the password
check. The engine's pool is the run's ``pool_size`` (no overflow), like the other
PostgreSQL strategies'.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at
run time, and the dependencies are local to ``setup``.
"""

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse, Response
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin
from fastapi_users.authentication import (
    AuthenticationBackend,
    CookieTransport,
    JWTStrategy,
    RedisStrategy,
    Strategy,
)
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users_db_sqlalchemy.access_token import (
    SQLAlchemyAccessTokenDatabase,
    SQLAlchemyBaseAccessTokenTableUUID,
)
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from benchmarks.app import FIXED_USER, BenchConfig, Setup
from benchmarks.peers import FastAPIUsersKind, Row

LIFETIME = 3600  # the docs' lifetime_seconds and cookie_max_age


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    name: Mapped[str] = mapped_column(String(length=32), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(length=16), nullable=False)


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    pass


def asyncpg_url(url: str) -> str:
    """SQLAlchemy's name for ``postgresql://`` through asyncpg."""
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def setup(config: BenchConfig, kind: FastAPIUsersKind) -> Setup:
    """The whole app (fastapi-users lives in FastAPI's dependencies, not a middleware)."""
    engine = create_async_engine(asyncpg_url(config.urls["postgres"]),
                                 pool_size=config.pool_size, max_overflow=0)
    session_maker = async_sessionmaker(engine, expire_on_commit=False)
    redis = (aioredis.from_url(config.urls["redis"], decode_responses=True)
             if kind == "redis" else None)

    async def get_async_session() -> AsyncIterator[AsyncSession]:
        async with session_maker() as session:
            yield session

    async def get_user_db(session: Annotated[AsyncSession, Depends(get_async_session)]
                          ) -> AsyncIterator[SQLAlchemyUserDatabase[User, uuid.UUID]]:
        yield SQLAlchemyUserDatabase(session, User)

    async def get_access_token_db(
        session: Annotated[AsyncSession, Depends(get_async_session)],
    ) -> AsyncIterator[SQLAlchemyAccessTokenDatabase[AccessToken]]:
        yield SQLAlchemyAccessTokenDatabase(session, AccessToken)

    class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
        reset_password_token_secret = config.secret
        verification_token_secret = config.secret

    async def get_user_manager(
        user_db: Annotated[SQLAlchemyUserDatabase[User, uuid.UUID], Depends(get_user_db)],
    ) -> AsyncIterator[UserManager]:
        yield UserManager(user_db)

    def get_database_strategy(
        access_token_db: Annotated[SQLAlchemyAccessTokenDatabase[AccessToken],
                                   Depends(get_access_token_db)],
    ) -> DatabaseStrategy[User, uuid.UUID, AccessToken]:
        return DatabaseStrategy(access_token_db, lifetime_seconds=LIFETIME)

    def get_redis_strategy() -> RedisStrategy[User, uuid.UUID]:
        assert redis is not None
        return RedisStrategy(redis, lifetime_seconds=LIFETIME)

    def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
        return JWTStrategy(secret=config.secret, lifetime_seconds=LIFETIME)

    get_strategy: Any = {"database": get_database_strategy, "redis": get_redis_strategy,
                         "jwt": get_jwt_strategy}[kind]
    backend = AuthenticationBackend[User, uuid.UUID](
        name=kind, transport=CookieTransport(cookie_max_age=LIFETIME),
        get_strategy=get_strategy,
    )
    users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])
    current_active_user = users.current_user(active=True)

    async def connect() -> None:
        return None

    async def disconnect() -> None:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await connect()
        try:
            yield
        finally:
            await disconnect()

    app = FastAPI(lifespan=lifespan, openapi_url=None)

    @app.get("/")
    async def whoami(user: Annotated[User, Depends(current_active_user)]) -> Response:
        return PlainTextResponse(f"{user.name} {user.role}")

    @app.get("/login/{uid}")
    async def login(uid: str, user_manager: Annotated[UserManager, Depends(get_user_manager)],
                    strategy: Annotated[Strategy[User, uuid.UUID],
                                        Depends(backend.get_strategy)]) -> Response:
        user = await user_manager.get_by_email(f"{uid}@example.com")
        return await backend.login(strategy, user)

    return Setup(connect=connect, disconnect=disconnect, app=app)


def no_session() -> Setup:
    """FastAPI with the same route, answering the baseline's fixed user."""
    app = FastAPI(openapi_url=None)

    @app.get("/")
    async def whoami() -> Response:
        return PlainTextResponse(" ".join(FIXED_USER))

    return Setup(app=app)


async def fill(config: BenchConfig, rows: Sequence[Row]) -> None:
    """Create fastapi-users' tables and one active user per row (one password hash for
    all: hashing is not what is measured)."""
    engine = create_async_engine(asyncpg_url(config.urls["postgres"]))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        hashed = PasswordHelper().hash("benchmark-password")
        session_maker = async_sessionmaker(engine, expire_on_commit=False)
        async with session_maker() as session:
            session.add_all([
                User(email=f"{uid}@example.com", hashed_password=hashed, name=uid, role=role,
                     is_active=True, is_superuser=False, is_verified=True)
                for uid, role, _ in rows
            ])
            await session.commit()
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
    finally:
        await engine.dispose()
