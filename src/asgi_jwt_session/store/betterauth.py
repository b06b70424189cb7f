"""Better Auth's own ``session`` and ``user`` tables, read (never written) through
`databases`.

Better Auth keeps a session as a row of its ``session`` table (``id``, ``token``,
``userId``, ``expiresAt``, ``impersonatedBy``...) and its user in ``user`` (the admin
plugin adds ``role``, ``banned``, ``banExpires``). Columns are Better Auth's default
camelCase names (its Kysely adapter on PostgreSQL); tables may be renamed.

:class:`BetterAuthTables` answers one question, with one query: the session with this
id (or this token) and its user, as they are now. It is also a change source for
:class:`~asgi_jwt_session.freshness.PostgresVersionFeed`, so that a change Better Auth
makes reaches every process within a second: see :data:`NOTIFY_TRIGGER`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from databases import Database

from asgi_jwt_session.store.base import StoredSession
from asgi_jwt_session.store.databases import as_utc, identifier, unavailable_as_store_error

__all__ = ["NOTIFY_CHANNEL", "BetterAuthRow", "BetterAuthTables", "notify_trigger_sql"]

NOTIFY_CHANNEL = "better_auth_changes"


def quoted(name: str) -> str:
    return f'"{identifier(name)}"'


def utc(value: Any) -> datetime | None:
    """A timestamp column as an aware UTC datetime (naive means UTC; SQLite gives text,
    or epoch milliseconds)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    return as_utc(value)


@dataclass(frozen=True, slots=True)
class BetterAuthRow:
    """A Better Auth session row joined with its user, as read now."""

    session_id: str
    user_id: str
    expires_at: datetime
    role: str | None
    banned: bool
    ban_expires: datetime | None
    impersonated_by: str | None
    name: str | None = None
    email: str | None = None

    def is_banned(self, now: datetime) -> bool:
        return self.banned and (self.ban_expires is None or self.ban_expires > now)


def notify_trigger_sql(session_table: str = "session", user_table: str = "user",
                       channel: str = NOTIFY_CHANNEL) -> list[str]:
    """PostgreSQL statements that make Better Auth's own writes announce themselves:
    after a user row changes (role, ban) or a session row is deleted or updated, a
    ``pg_notify(channel, '{"id": <user id>, "ver": <epoch ms>}')``, the payload
    :class:`~asgi_jwt_session.freshness.PostgresVersionFeed` reads. Run them once,
    as a migration of the Next.js app's database."""
    statements = []
    for table, user_id in ((user_table, "id"), (session_table, '"userId"')):
        function, trigger = quoted(f"{channel}_{table}_notify"), quoted(f"{channel}_{table}")
        statements += [
            f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('{channel}', json_build_object(
    'id', CASE WHEN TG_OP = 'DELETE' THEN OLD.{user_id} ELSE NEW.{user_id} END,
    'ver', (extract(epoch from clock_timestamp()) * 1000)::bigint)::text);
  RETURN NULL;
END $$ LANGUAGE plpgsql""",
            f"DROP TRIGGER IF EXISTS {trigger} ON {quoted(table)}",
            f"CREATE TRIGGER {trigger} AFTER UPDATE OR DELETE ON {quoted(table)} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        ]
    return statements


class BetterAuthTables:
    """Read Better Auth's sessions from its tables (``databases`` URL, or a connected
    ``databases.Database``). ``role_field`` is the user column holding the role.

    ``async with tables:`` connects (and disconnects a database it made). Reads raise
    :class:`~asgi_jwt_session.errors.StoreUnavailable` when the database cannot be
    reached. ``queries`` counts the queries sent. ``admin``: the app uses the admin
    plugin (its ``role``, ``banned``, ``banExpires`` and ``impersonatedBy`` columns).
    """

    def __init__(self, database: Any, *, session_table: str = "session",
                 user_table: str = "user", role_field: str = "role", admin: bool = True,
                 channel: str = NOTIFY_CHANNEL) -> None:
        self.owned = isinstance(database, str)
        self.database = Database(database) if isinstance(database, str) else database
        self.session_table, self.user_table = session_table, user_table
        self.channel = channel
        self.is_postgres = str(self.database.url.scheme).startswith("postgres")
        self.on_change: list[Any] = []  # read-only: never changes anything itself
        s, u, role = quoted(session_table), quoted(user_table), quoted(role_field)
        # Without the admin plugin there is no role, ban or impersonation column.
        plugin = (f's."impersonatedBy" AS impersonated_by, u.{role} AS role, '
                  f'u.banned AS banned, u."banExpires" AS ban_expires, ' if admin else
                  "NULL AS impersonated_by, NULL AS role, NULL AS banned, NULL AS ban_expires, ")
        select = (f'SELECT s.id AS session_id, s."userId" AS user_id, '
                  f's."expiresAt" AS expires_at, {plugin}u.name AS name, u.email AS email '
                  f'FROM {s} AS s JOIN {u} AS u ON u.id = s."userId" ')
        self.by_id = select + "WHERE s.id = :key"
        self.by_token = select + "WHERE s.token = :key"
        self.queries = 0

    @property
    def table_name(self) -> str:
        return self.user_table

    async def __aenter__(self) -> BetterAuthTables:
        if not self.database.is_connected:
            await self.database.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.owned:
            await self.database.disconnect()

    @contextmanager
    def querying(self) -> Iterator[None]:
        """Count one query; a database that cannot be reached raises StoreUnavailable."""
        self.queries += 1
        with unavailable_as_store_error("Better Auth tables"):
            yield

    async def session(self, *, session_id: str | None = None, token: str | None = None
                      ) -> BetterAuthRow | None:
        """The session with this id (or token) and its user; ``None`` when it is gone."""
        query, key = (self.by_id, session_id) if session_id is not None else (self.by_token,
                                                                              token)
        with self.querying():
            row = await self.database.fetch_one(query, {"key": key})
        if row is None:
            return None
        expires_at = utc(row["expires_at"])
        assert expires_at is not None
        return BetterAuthRow(
            session_id=str(row["session_id"]), user_id=str(row["user_id"]),
            expires_at=expires_at, role=row["role"], banned=bool(row["banned"]),
            ban_expires=utc(row["ban_expires"]), impersonated_by=row["impersonated_by"],
            name=row["name"], email=row["email"])

    async def list_sessions(self, user_id: str, *, limit: int = 1000,
                            before: tuple[datetime, str] | None = None) -> list[StoredSession]:
        """The user's unexpired Better Auth sessions, last updated first, as the session
        registry lists them (``asgi_jwt_session.registry.list_sessions(tables, id)``).
        Ending one is Better Auth's to do (its ``revokeSession`` API)."""
        s = quoted(self.session_table)
        query = (f'SELECT id, "userId" AS user_id, "createdAt" AS created_at, '
                 f'"updatedAt" AS updated_at, "expiresAt" AS expires_at, '
                 f'"userAgent" AS user_agent FROM {s} '
                 f'WHERE "userId" = :user_id AND "expiresAt" > :now ')
        values: dict[str, Any] = {"user_id": user_id, "now": datetime.now(UTC)}
        if not self.is_postgres:
            values["now"] = values["now"].isoformat()
        if before is not None:
            query += 'AND ("updatedAt" < :at OR ("updatedAt" = :at AND id < :id)) '
            values.update(at=before[0], id=before[1])
        query += 'ORDER BY "updatedAt" DESC, id DESC LIMIT :limit'
        values["limit"] = limit
        with self.querying():
            rows = await self.database.fetch_all(query, values)
        sessions = []
        for row in rows:
            created, updated, expires = (utc(row["created_at"]), utc(row["updated_at"]),
                                         utc(row["expires_at"]))
            assert created is not None and updated is not None and expires is not None
            agent = row["user_agent"]
            sessions.append(StoredSession(
                id=str(row["id"]), user_id=str(row["user_id"]), created_at=created,
                renewed_at=updated, expires_at=expires, ends_at=expires,
                user_agent=agent[:120] if agent else None))
        return sessions

    # A change source for PostgresVersionFeed (the trigger notifies; this catches up)

    def asyncpg_arguments(self) -> tuple[str, dict[str, Any]]:
        return str(self.database.url.replace(driver="")), {}

    def versions_since_query(self) -> str:
        return (f'SELECT id, (extract(epoch from "updatedAt") * 1000)::bigint '
                f'FROM {quoted(self.user_table)} WHERE "updatedAt" >= $1')

    async def changes_since(self, when: datetime) -> list[Any]:
        return []  # versions_since_query answers instead
