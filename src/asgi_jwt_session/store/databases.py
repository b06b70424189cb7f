"""The default role store: users' roles and session versions via `databases`.

Every use of the `databases` package (and of SQLAlchemy) lives in this module; it is
imported only when a :class:`RoleStore` is made.

SQLite (aiosqlite) and PostgreSQL (asyncpg) are supported. `databases` and both
drivers are asyncio-only, so the store is too: call it from asyncio, not trio (under trio
:meth:`RoleStore.connect` raises a ``RuntimeError`` that says so).

Connections, measured on a 2-core machine (median `get_user`): `databases` opens a new
SQLite connection (and thread) for every top-level query, 600-2000 µs a lookup; on one
held connection it is ~130 µs. So the store holds one connection for SQLite (its queries
are serialized, as SQLite's writes are anyway) and puts the file in WAL mode, so other
stores and processes read while one writes. For PostgreSQL it uses the asyncpg pool,
~120 µs a lookup; asyncpg's reset query on every release would make that ~200 µs, so
a pool the store makes itself skips it: the store never changes session state.

Every write is one ``UPDATE``/``INSERT ... RETURNING`` statement, so it is its own
transaction: it happens completely or not at all, and returns the row as committed.

A database that cannot be reached at start does not stop the app: :meth:`RoleStore.connect`
logs it and keeps trying in the background (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import databases
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from asgi_jwt_session.asyncio_only import require_asyncio
from asgi_jwt_session.errors import StoreUnavailable, UnknownRole, UnknownUser
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.store.base import Listener, StoredSession, StoredUser, kept_sign_in_ms

__all__ = ["RoleStore"]

logger = logging.getLogger("asgi_jwt_session.store")

COLUMNS = ("id", "email", "role", "session_version", "updated_at", "disabled", "revoked_at")
OPTIONAL_COLUMNS = ("email", "disabled", "revoked_at")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# SQLite failures that mean "cannot reach the database now": locked or busy, cannot
# open the file, disk I/O, disk full. Other errors ("no such column/table", a wrong
# `columns=` mapping) are bugs, and raise as they are.
SQLITE_UNAVAILABLE = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
                                sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL})
SQLITE_UNAVAILABLE_MESSAGE = re.compile(r"locked|busy|unable to open|disk I/O|disk is full")
# URL query options that `databases` reads itself; asyncpg would send them to the
# server as settings, which it refuses.
DATABASES_OPTIONS = ("min_size", "max_size", "ssl", "unix_sock")
MIN_RETRY = 0.1  # seconds before the first background connect attempt; doubles from there
# The session registry's rows are deleted this long after their session's absolute end
# (clock skew, leeway), when their user next signs in.
PRUNE_MARGIN = timedelta(hours=1)
MAX_SESSIONS_PER_USER = 50  # live registry rows a user may have; a new sign-in ends the oldest
MAX_LIST = 1000  # rows one list_sessions call may ask for
CHALLENGE_PRUNE_EVERY = 60.0  # seconds between two deletes of used DBSC challenges past their end
CHALLENGE_MARGIN = timedelta(minutes=5)  # kept this much past their end (clocks differ)
SESSION_UPDATES = ("renewed_at", "expires_at", "ends_at", "user_agent", "client",
                   "device_bound")


def describe(exc: BaseException) -> str:
    """An exception's message, never empty (``TimeoutError()`` has none)."""
    return str(exc) or repr(exc)


def _driver_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(errors meaning "cannot reach the database", errors meaning "constraint violated").

    ``sqlite3.OperationalError`` is not among the first: only some of them are an
    outage (see :func:`is_unavailable`).
    """
    unavailable: list[type[Exception]] = [OSError]
    integrity: list[type[Exception]] = [sqlite3.IntegrityError]
    try:
        from asyncpg import exceptions as pg  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - asyncpg is the `postgres` extra
        return tuple(unavailable), tuple(integrity)
    unavailable += [
        pg.PostgresConnectionError,  # class 08, and "connection was closed"
        pg.OperatorInterventionError,  # shutting down, cannot connect now
        pg.InsufficientResourcesError,  # too many connections, disk full
        # An idle pooled connection that got the server's shutdown message is left
        # mid-protocol until its socket closes; using it then raises this.
        pg.InternalClientError,
    ]
    integrity.append(pg.IntegrityConstraintViolationError)
    return tuple(unavailable), tuple(integrity)


UNAVAILABLE_ERRORS, INTEGRITY_ERRORS = _driver_errors()
# What may be an outage: UNAVAILABLE_ERRORS, and some of SQLite's OperationalErrors.
MAYBE_UNAVAILABLE: tuple[type[Exception], ...] = (*UNAVAILABLE_ERRORS, sqlite3.OperationalError)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database cannot be reached now, not a bug."""
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return (code & 0xFF) in SQLITE_UNAVAILABLE  # the primary code of an extended one
        return SQLITE_UNAVAILABLE_MESSAGE.search(str(exc)) is not None
    return isinstance(exc, UNAVAILABLE_ERRORS)


@contextmanager
def unavailable_as_store_error(what: str = "role store unavailable") -> Iterator[None]:
    """Raise :class:`StoreUnavailable` (``what: reason``) for an error meaning the
    database cannot be reached; any other error passes as it is."""
    try:
        yield
    except MAYBE_UNAVAILABLE as exc:
        if not is_unavailable(exc):
            raise
        raise StoreUnavailable(f"{what}: {describe(exc)}") from exc


def holds(value: str, postgres: bool) -> bool:
    """Whether the database can store text ``value``: UTF-8 (no lone surrogate, which
    neither driver can encode) and, on PostgreSQL, no NUL. An id it cannot store is no
    row's id: the store answers "no such user" or "no such session" without a query."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return not (postgres and "\x00" in value)


def identifier(name: str) -> str:
    """``name``, refused (``ValueError``) unless it is a plain SQL identifier."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def as_utc(value: Any) -> datetime:
    """A timestamp column's value as an aware UTC datetime (naive means UTC)."""
    if isinstance(value, str):  # SQLite text that no type processor parsed
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    if value.tzinfo is None:  # SQLite, or a PostgreSQL `timestamp` column: stored as UTC
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


async def _keep_session(connection: object) -> None:
    """asyncpg pool ``reset``: the store changes no session state, so skip the query."""


class RoleStore:
    """Users' roles and session versions, in SQLite or PostgreSQL.

    ``database`` is a database URL (``sqlite:///path/to/file.db``,
    ``postgresql://user@host/db``) or a ``databases.Database``. ``table`` and ``columns``
    map the store onto an existing table: ``columns`` maps the logical names ``id``,
    ``email``, ``role``, ``session_version``, ``updated_at``, ``disabled`` and
    ``revoked_at`` onto the table's column names; names left out keep their logical
    name, and ``email``, ``disabled`` or ``revoked_at`` mapped to ``None`` means the
    table has no such column (without ``revoked_at``, ``revoke_sessions`` refuses).

    Times are stored in UTC: SQLite as ``YYYY-MM-DD HH:MM:SS.ffffff`` text, PostgreSQL
    in ``timestamptz`` (a ``timestamp`` column holds UTC too when the connection's
    ``TimeZone`` is UTC, which a pool the store makes itself sets).

    ``queries`` counts the SQL statements sent. ``on_change`` listeners are called,
    in order, with the committed user after a role update, a revocation or a change
    of ``disabled``; an exception from a listener propagates to the caller.

    ``connect_retry``: when the database cannot be reached at :meth:`connect`, keep
    trying in the background, at most this many seconds apart (``None``: raise
    :class:`~asgi_jwt_session.errors.StoreUnavailable` instead). ``connect_timeout``:
    seconds one connect attempt may take.

    ``sessions_table``: the session registry's table (``"user_sessions"``), beside the
    users table and in its schema (``None``: no registry). With it, :meth:`get_user`
    also reads the user's revoked session ids (a subquery on an index, still one
    query), and the registry methods (:meth:`record_session`, :meth:`list_sessions`,
    :meth:`revoke_session`, ...) work; see :mod:`asgi_jwt_session.registry`.
    ``max_sessions_per_user`` (50; ``None``: no cap) bounds the user's sessions the
    registry holds: a sign-in past it ends the user's sessions signed in longest ago,
    as :meth:`revoke_sessions` ends sessions signed in before a time. Every registry
    statement reads a bounded number of rows, whatever the table holds (indexes, see
    :meth:`create_tables`).
    """

    def __init__(
        self,
        database: str | databases.Database,
        *,
        roles: RoleHierarchy | None = None,
        table: str = "users",
        columns: Mapping[str, str | None] | None = None,
        connect_retry: float | None = 1.0,
        connect_timeout: float = 5.0,
        sessions_table: str | None = None,
        max_sessions_per_user: int | None = MAX_SESSIONS_PER_USER,
    ) -> None:
        cap = max_sessions_per_user
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError("max_sessions_per_user must be a positive int, or None")
        self.max_sessions_per_user = max_sessions_per_user
        if connect_retry is not None and connect_retry <= 0:
            raise ValueError("connect_retry must be positive, or None")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        url = databases.DatabaseURL(database) if isinstance(database, str) else database.url
        if url.dialect == "sqlite":
            if sqlite3.sqlite_version_info < (3, 35):  # for UPDATE ... RETURNING
                raise RuntimeError(f"RoleStore needs SQLite 3.35+, not {sqlite3.sqlite_version}")
            self.is_postgres = False
        elif url.dialect in ("postgresql", "postgres") and url.driver in ("", "asyncpg"):
            self.is_postgres = True
        else:
            raise ValueError(f"unsupported database {url.scheme!r}; "
                             "use sqlite:// or postgresql:// (asyncpg)")
        if isinstance(database, str):
            options: dict[str, Any] = {}
            if self.is_postgres:
                options = {"server_settings": {"timezone": "UTC"}, "reset": _keep_session}
            database = databases.Database(url, **options)
        self.database = database
        self.roles = roles if roles is not None else RoleHierarchy()
        self.table = self._make_table(table, columns or {})
        c = self.table.c
        self._selected = [c[name] for name in COLUMNS if name in c]
        # `databases` compiles every statement on every call (~80 µs for this select);
        # compiled once to a text clause, the lookup costs ~15 µs of that.
        dialect = (postgresql.dialect if self.is_postgres else sqlite.dialect)(paramstyle="named")
        self.sessions = (self._make_sessions_table(sessions_table, self.table)
                         if sessions_table is not None else None)
        # The DBSC challenges answered, with the registry (see use_challenge).
        self.dbsc_challenges = (self._make_challenges_table(sessions_table, self.table)
                                if sessions_table is not None else None)
        self._challenges_pruned = 0.0  # when use_challenge last deleted old rows
        query = sa.select(*self._selected)
        if self.sessions is not None:  # the revoked session ids, space-separated
            s = self.sessions.c
            separator: Any = sa.literal_column("' '")
            revoked = sa.select(sa.func.string_agg(s.id, separator) if self.is_postgres
                                else sa.func.group_concat(s.id, separator))
            # Only the rows that matter, one index range: revoked after the user's
            # revoked_at, which ends every session signed in before it (so "sign out
            # everywhere", "sign out other devices" and the cap add no id here). Rows
            # past their session's end go at the user's next sign-in (pruning).
            since: Any = s.revoked_at.is_not(None)
            if "revoked_at" in c:
                never: Any = sa.literal_column(
                    "'-infinity'::timestamptz" if self.is_postgres else "''")
                since = s.revoked_at > sa.func.coalesce(c.revoked_at, never)
                if self.is_postgres:
                    # Bounded on both sides, the planner guesses a narrow range (not a
                    # third of the table) and reads the index even for a user with
                    # 100,000 rows.
                    since &= s.revoked_at < sa.literal_column("'infinity'::timestamptz")
            query = query.add_columns(revoked.where(s.user_id == c.id, since).scalar_subquery())
        query = query.where(c.id == sa.bindparam("user_id", type_=sa.Text))
        self._get_user_query = sa.text(str(query.compile(dialect=dialect)))
        self.queries = 0
        self.on_change: list[Listener] = []
        self._connection: Any = None  # the held connection (SQLite)
        self._connected = False
        self._connected_database = False
        self.connect_retry = connect_retry
        self.connect_timeout = connect_timeout
        self._connecting: asyncio.Task[None] | None = None  # retrying in the background
        self._unreachable = ""  # why the last connect attempt failed

    @staticmethod
    def _make_table(name: str, columns: Mapping[str, str | None]) -> sa.Table:
        unknown = set(columns) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown column names {sorted(unknown)}; expected {COLUMNS}")
        names: dict[str, str | None] = {logical: logical for logical in COLUMNS}
        for logical, actual in columns.items():
            if actual is None and logical not in OPTIONAL_COLUMNS:
                raise ValueError(f"column {logical!r} is required")
            names[logical] = None if actual is None else identifier(actual)
        used = [actual for actual in names.values() if actual is not None]
        if len(set(used)) != len(used):
            raise ValueError(f"two logical columns map onto one column: {names}")

        schema, _, table_name = name.rpartition(".")
        table = sa.Table(
            identifier(table_name),
            sa.MetaData(),
            sa.Column(names["id"], sa.Text, primary_key=True, key="id"),
            sa.Column(names["role"], sa.Text, nullable=False, key="role"),
            sa.Column(names["session_version"], sa.Integer, nullable=False,
                      server_default=sa.text("1"), key="session_version"),
            sa.Column(names["updated_at"], sa.DateTime(timezone=True), nullable=False,
                      index=True, key="updated_at"),
            schema=identifier(schema) if schema else None,
        )
        if names["email"] is not None:
            table.append_column(
                sa.Column(names["email"], sa.Text, unique=True, nullable=True, key="email")
            )
        if names["disabled"] is not None:
            table.append_column(
                sa.Column(names["disabled"], sa.Boolean, nullable=False,
                          server_default=sa.false(), key="disabled")
            )
        if names["revoked_at"] is not None:
            table.append_column(
                sa.Column(names["revoked_at"], sa.DateTime(timezone=True), nullable=True,
                          key="revoked_at")
            )
        return table

    @staticmethod
    def _make_sessions_table(name: str, users: sa.Table) -> sa.Table:
        time = sa.DateTime(timezone=True)
        prefix = identifier(name)[:40]
        return sa.Table(
            identifier(name),
            users.metadata,
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("user_id", sa.Text, nullable=False, index=True),
            sa.Column("created_at", time, nullable=False),
            sa.Column("renewed_at", time, nullable=False),
            sa.Column("expires_at", time, nullable=False),
            sa.Column("ends_at", time, nullable=False),
            sa.Column("user_agent", sa.Text, nullable=True),
            sa.Column("client", sa.Text, nullable=True),
            sa.Column("revoked_at", time, nullable=True),
            sa.Column("device_bound", sa.Boolean, nullable=False, server_default=sa.false()),
            # Listing (live rows, newest first), the cap and the revoked ids: a user's
            # rows by revocation, then renewal. Pruning: a user's rows by their end.
            sa.Index(f"ix_{prefix}_user_revoked", "user_id", "revoked_at", "renewed_at"),
            sa.Index(f"ix_{prefix}_user_ends", "user_id", "ends_at"),
            schema=users.schema,
        )

    @staticmethod
    def _make_challenges_table(sessions: str, users: sa.Table) -> sa.Table:
        name = identifier(sessions)[:40] + "_dbsc"  # its index name fits 63 too
        return sa.Table(
            name,
            users.metadata,
            sa.Column("challenge", sa.Text, primary_key=True),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
            schema=users.schema,
        )

    @property
    def table_name(self) -> str:
        """The table's name, schema-qualified when it has a schema."""
        return str(self.table.fullname)

    # Connecting

    @property
    def is_connected(self) -> bool:
        """True once connected (a background connect may still be trying)."""
        return self._connected

    async def connect(self) -> None:
        """Connect (and for SQLite, open the held connection in WAL mode).

        When the database cannot be reached, this logs a warning and returns; the store
        keeps trying in the background (backoff up to ``connect_retry`` seconds) and
        logs when it connects. Until then its queries raise
        :class:`~asgi_jwt_session.errors.StoreUnavailable`, which freshness treats as
        an outage. With ``connect_retry=None`` the ``StoreUnavailable`` is raised here.
        Other errors (a wrong password, an unknown database) always raise.
        """
        if self._connected or self._connecting is not None:
            return
        require_asyncio("RoleStore (databases)")
        try:
            await self._open()
        except StoreUnavailable as exc:
            if self.connect_retry is None:
                raise
            self._unreachable = str(exc)
            logger.warning("%s; serving without it, connecting in the background", exc)
            self._connecting = asyncio.get_running_loop().create_task(self._keep_connecting())

    async def _open(self) -> None:
        """One connect attempt."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                if not self.database.is_connected:
                    await self.database.connect()
                    self._connected_database = True
                if not self.is_postgres:
                    connection = self.database.connection()
                    await connection.__aenter__()
                    self._connection = connection
                    self.queries += 1
                    await connection.execute("PRAGMA journal_mode=WAL")
        except BaseException as exc:
            await self._close()
            if isinstance(exc, TimeoutError):
                raise StoreUnavailable("cannot connect to the role store: no answer within "
                                       f"{self.connect_timeout}s") from exc
            if is_unavailable(exc):
                raise StoreUnavailable(
                    f"cannot connect to the role store: {describe(exc)}") from exc
            raise
        self._connected = True

    async def _keep_connecting(self) -> None:
        assert self.connect_retry is not None
        delay, attempts, started = MIN_RETRY, 1, asyncio.get_running_loop().time()
        logged_error = ""
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.connect_retry)
            attempts += 1
            try:
                await self._open()
            except StoreUnavailable as exc:
                self._unreachable = str(exc)
                continue
            except Exception as exc:  # not an outage: say so (once), and keep trying
                self._unreachable = f"cannot connect to the role store: {describe(exc)}"
                if self._unreachable != logged_error:
                    logged_error = self._unreachable
                    logger.error("%s; still trying", self._unreachable)
                continue
            self._connecting = None
            logger.warning("role store connected after %d attempts (%.1fs)", attempts,
                           asyncio.get_running_loop().time() - started)
            return

    async def disconnect(self) -> None:
        """Release the held connection, and disconnect a database that ``connect`` opened
        (or stop trying to connect)."""
        self._connected = False
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await self._close()

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        try:
            if connection is not None:
                await connection.__aexit__(None, None, None)
        finally:
            if self._connected_database:
                self._connected_database = False
                await self.database.disconnect()

    async def __aenter__(self) -> RoleStore:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.disconnect()

    def asyncpg_arguments(self) -> tuple[str, dict[str, Any]]:
        """A DSN and ``asyncpg.connect()`` keyword arguments for a connection of one's
        own to this store's PostgreSQL database (a version feed's LISTEN connection).

        The URL's libpq options (``sslmode``, ``application_name``, ...) stay in the
        DSN; the ones `databases` reads itself do not: pool sizes are dropped; the
        URL's ``ssl``, and the ``ssl`` and ``server_settings`` the ``databases.Database``
        was given, become keyword arguments, as `databases` passes them to asyncpg.
        """
        if not self.is_postgres:
            raise ValueError("not a PostgreSQL store")
        url = self.database.url
        options = url.options
        query = [(key, value) for key, value in parse_qsl(url.components.query)
                 if key not in DATABASES_OPTIONS]
        if "unix_sock" in options and not url.components.hostname and "host" not in options:
            query.append(("host", options["unix_sock"]))
        dsn = str(url.replace(driver="", query=urlencode(query)))
        arguments: dict[str, Any] = {}
        if "ssl" in options:
            ssl = options["ssl"].lower()
            arguments["ssl"] = {"true": True, "false": False}.get(ssl, ssl)
        for name in ("ssl", "server_settings"):
            if name in self.database.options:
                arguments[name] = self.database.options[name]
        return dsn, arguments

    # Sending statements: the only place that talks to `databases`

    def _target(self) -> Any:
        if not self._connected:
            if self._connecting is not None:
                raise StoreUnavailable(f"role store not connected yet ({self._unreachable})")
            raise RuntimeError("the RoleStore is not connected; await store.connect() first")
        return self._connection if self._connection is not None else self.database

    async def _fetch_one(self, query: sa.ClauseElement) -> Any:
        target = self._target()
        self.queries += 1
        with unavailable_as_store_error():
            return await target.fetch_one(query)

    async def _fetch_all(self, query: sa.ClauseElement) -> list[Any]:
        target = self._target()
        self.queries += 1
        with unavailable_as_store_error():
            rows: list[Any] = await target.fetch_all(query)
        return rows

    async def _execute(self, query: sa.ClauseElement) -> None:
        target = self._target()
        self.queries += 1
        with unavailable_as_store_error():
            await target.execute(query)

    # Rows

    def _user(self, row: Any, revoked: str | None = None) -> StoredUser:
        # Rows hold the columns of `_selected`: COLUMNS' order, absent ones left out.
        values = {column.key: row[i] for i, column in enumerate(self._selected)}
        return StoredUser(
            id=values["id"],
            email=values.get("email"),
            role=values["role"],
            session_version=int(values["session_version"]),
            updated_at=as_utc(values["updated_at"]),
            disabled=bool(values.get("disabled", False)),
            revoked_at=None if values.get("revoked_at") is None else as_utc(values["revoked_at"]),
            revoked_sessions=frozenset(revoked.split()) if revoked else frozenset(),
        )

    def _session(self, row: Any) -> StoredSession:
        return StoredSession(
            id=row["id"], user_id=row["user_id"], created_at=as_utc(row["created_at"]),
            renewed_at=as_utc(row["renewed_at"]), expires_at=as_utc(row["expires_at"]),
            ends_at=as_utc(row["ends_at"]), user_agent=row["user_agent"], client=row["client"],
            revoked_at=None if row["revoked_at"] is None else as_utc(row["revoked_at"]),
            device_bound=bool(row["device_bound"]),
        )

    def _time(self, when: datetime) -> datetime:
        """An aware datetime as this database stores it (SQLite: naive UTC)."""
        when = when.astimezone(UTC)
        return when if self.is_postgres else when.replace(tzinfo=None)

    def _registry(self) -> sa.Table:
        if self.sessions is None:
            raise ValueError("no session registry: make the store with "
                             "RoleStore(..., sessions_table='user_sessions')")
        return self.sessions

    def _now(self) -> Any:
        # PostgreSQL: the server's clock, one clock for every process. SQLite: processes
        # share a host and its clock; naive UTC keeps SQLAlchemy's text format.
        if self.is_postgres:
            return sa.func.now()
        return datetime.now(UTC).replace(tzinfo=None)

    def _when(self, when: datetime) -> Any:
        if when.tzinfo is None:
            raise ValueError("changes_since() needs an aware datetime")
        when = when.astimezone(UTC)
        if self.is_postgres:
            # timestamptz works against both timestamptz and timestamp (UTC) columns.
            return sa.cast(when, sa.DateTime(timezone=True))
        return when.replace(tzinfo=None)

    def can_store(self, *values: str | None) -> bool:
        """Whether this database can store each text of ``values`` (``None`` aside):
        ``False`` for a NUL on PostgreSQL or a lone surrogate. Ids it cannot store are
        no user's and no session's; an app's own queries on this database (a password
        table) can check their input the same way."""
        return all(value is None or holds(value, self.is_postgres) for value in values)

    def _role(self, role: str) -> str:
        try:
            return self.roles.validate(role)
        except ValueError as exc:
            raise UnknownRole(str(exc)) from None

    # Schema and seeding

    async def create_tables(self) -> None:
        """Create the table and its ``updated_at`` index if they do not exist, and the
        session registry's tables (its sessions; the DBSC challenges answered) and
        indexes.

        Indexes missing from an existing table are added (the registry's, which keep
        its statements bounded, came in a later release: run this, or ``asgi-jwt-session
        db init``, once after upgrading). Columns are left as they are: a table made
        before ``revoked_at`` existed
        needs ``ALTER TABLE ... ADD COLUMN revoked_at`` (a nullable timestamp), or
        ``columns={"revoked_at": None}``.
        """
        tables = [self.table] if self.sessions is None else [self.table, self.sessions]
        if self.dbsc_challenges is not None:  # the registry's used DBSC challenges
            tables.append(self.dbsc_challenges)
        for table in tables:
            await self._execute(sa.schema.CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                await self._execute(sa.schema.CreateIndex(index, if_not_exists=True))

    async def create_user(
        self, user_id: str, role: str, *, email: str | None = None
    ) -> StoredUser:
        """Insert a user (session version 1). A taken id or email raises ``ValueError``."""
        role = self._role(role)
        if not self.can_store(user_id, email):
            raise ValueError(f"cannot create user {user_id!r}: the database cannot store "
                             "that id or email (a NUL or a lone surrogate)")
        values: dict[str, Any] = {"id": user_id, "role": role, "session_version": 1,
                                  "updated_at": self._now()}
        if email is not None:
            if "email" not in self.table.c:
                raise ValueError("this table has no email column")
            values["email"] = email
        if "disabled" in self.table.c:
            values["disabled"] = False
        query = self.table.insert().values(values).returning(*self._selected)
        try:
            row = await self._fetch_one(query)
        except INTEGRITY_ERRORS as exc:
            if await self.get_user(user_id) is not None:
                raise ValueError(f"user {user_id!r} already exists") from exc
            raise ValueError(f"cannot create user {user_id!r}: {exc}") from exc
        return self._user(row)

    # Reading

    async def get_user(self, user_id: str) -> StoredUser | None:
        """The user with this id, or ``None``: one primary-key query (with the session
        registry, its revoked session ids too, in the same query). An id the database
        cannot store (a NUL on PostgreSQL, a lone surrogate) is no user's."""
        if not self.can_store(user_id):
            return None
        row = await self._fetch_one(self._get_user_query.bindparams(user_id=user_id))
        if row is None:
            return None
        return self._user(row, row[len(self._selected)] if self.sessions is not None else None)

    async def list_users(self) -> list[StoredUser]:
        """Every user, ordered by id."""
        query = sa.select(*self._selected).order_by(self.table.c.id)
        return [self._user(row) for row in await self._fetch_all(query)]

    async def changes_since(self, when: datetime) -> list[StoredUser]:
        """Users whose ``updated_at`` is at or after ``when`` (aware), oldest first."""
        c = self.table.c
        query = (
            sa.select(*self._selected)
            .where(c.updated_at >= self._when(when))
            .order_by(c.updated_at, c.id)
        )
        return [self._user(row) for row in await self._fetch_all(query)]

    def versions_since_query(self) -> str:
        """PostgreSQL: ``SELECT id, session_version`` of the users changed at or after
        ``$1`` (an aware datetime), for a version feed to run on its own asyncpg
        connection. Two columns and no `databases` in between: 100,000 rows in ~0.1 s,
        where :meth:`changes_since` takes ~1.6 s."""
        if not self.is_postgres:
            raise ValueError("not a PostgreSQL store")
        c = self.table.c
        since = sa.cast(sa.bindparam("since"), sa.DateTime(timezone=True))
        query = sa.select(c.id, c.session_version).where(c.updated_at >= since)
        dialect: Any = postgresql.dialect
        return str(query.compile(dialect=dialect(paramstyle="numeric_dollar")))

    # Writing

    async def _update(self, user_id: str, values: dict[str, Any], now: Any = None
                      ) -> StoredUser:
        if not self.can_store(user_id):
            raise UnknownUser(user_id)
        c = self.table.c
        values = {
            **values,
            "session_version": c.session_version + 1,
            "updated_at": self._now() if now is None else now,
        }
        query = (
            self.table.update()
            .where(c.id == user_id)
            .values(values)
            .returning(*self._selected)
        )
        row = await self._fetch_one(query)
        if row is None:
            raise UnknownUser(user_id)
        user = self._user(row)
        await self._changed(user)
        return user

    async def _changed(self, user: StoredUser) -> None:
        for listener in self.on_change:
            result = listener(user)
            if result is not None:
                await result

    async def update_user_role(self, user_id: str, role: str) -> StoredUser:
        """Set the role and bump the session version, so every session sees the change.

        An unknown role raises ``UnknownRole`` before any query; an unknown user raises
        ``UnknownUser`` and writes nothing.
        """
        return await self._update(user_id, {"role": self._role(role)})

    async def revoke_sessions(self, user_id: str) -> StoredUser:
        """Sign the user out everywhere: every session signed in until now ends.

        Sets ``revoked_at`` to now (the server's clock on PostgreSQL, as ``updated_at``)
        and bumps the session version, so version feeds and revalidation notice. A
        table without a ``revoked_at`` column raises ``ValueError`` before any query.
        """
        if "revoked_at" not in self.table.c:
            raise ValueError("this table has no revoked_at column (a nullable timestamp); "
                             "add one, or map it with columns=, to revoke sessions")
        if not self.can_store(user_id):
            raise UnknownUser(user_id)
        now = self._now()
        if self.sessions is not None:  # the registry lists them as revoked too
            s = self.sessions.c
            await self._execute(self.sessions.update()
                                .where(s.user_id == user_id, s.revoked_at.is_(None))
                                .values(revoked_at=now))
        return await self._update(user_id, {"revoked_at": now}, now)

    async def set_disabled(self, user_id: str, disabled: bool) -> StoredUser:
        """Disable or re-enable a user; bumps the session version too."""
        if "disabled" not in self.table.c:
            raise ValueError("this table has no disabled column")
        return await self._update(user_id, {"disabled": bool(disabled)})

    async def bump_session_version(self, user_id: str) -> StoredUser:
        """Bump the session version and change nothing else: each session of the user
        revalidates once, and an impersonation by them ends (what
        :func:`~asgi_jwt_session.impersonation.stop_impersonating` marks). One statement."""
        return await self._update(user_id, {})

    # The session registry (sessions_table=...)

    async def record_session(self, session: StoredSession, *, first: bool) -> None:
        """Insert the session's row, or renew the row of this id and user (its times and
        device; a revoked row stays revoked, another user's row is left alone).
        ``first``: also delete the user's rows past their ``ends_at`` and hold the user
        to ``max_sessions_per_user`` (two more statements, four more when the cap ends
        sessions: see :meth:`end_oldest_sessions`). Times are the app's clock. A row the
        database cannot store (an id with a NUL or a lone surrogate) is not written."""
        sessions = self._registry()
        s = sessions.c
        if not self.can_store(session.id, session.user_id, session.user_agent, session.client):
            logger.debug("session of %r not recorded: the database cannot store it",
                         session.user_id)
            return
        values = {
            "id": session.id, "user_id": session.user_id,
            "created_at": self._time(session.created_at),
            "renewed_at": self._time(session.renewed_at),
            "expires_at": self._time(session.expires_at),
            "ends_at": self._time(session.ends_at),
            "user_agent": session.user_agent, "client": session.client,
            "device_bound": session.device_bound,
        }
        insert = (postgresql.insert if self.is_postgres else sqlite.insert)(sessions)
        insert = insert.values(values)
        # A revoked row stays revoked; renewed (a token issued before a revalidation
        # refused it) it counts as revoked now, after the user's revoked_at, so
        # revalidation reads its id: a session whose sign-in time is unknown (judged by
        # when it was issued) would survive revoked_at.
        updates: dict[str, Any] = {name: insert.excluded[name] for name in SESSION_UPDATES}
        updates["revoked_at"] = sa.case((s.revoked_at.is_(None), s.revoked_at),
                                        else_=self._now())
        query = insert.on_conflict_do_update(
            index_elements=[s.id], set_=updates, where=s.user_id == insert.excluded.user_id)
        await self._execute(query)
        if first:
            horizon = self._time(session.renewed_at - PRUNE_MARGIN)
            await self._execute(sessions.delete().where(s.user_id == session.user_id,
                                                        s.ends_at < horizon))
            if self.max_sessions_per_user is not None:
                await self.end_oldest_sessions(session.user_id, self.max_sessions_per_user)

    async def end_oldest_sessions(self, user_id: str, keep: int) -> datetime | None:
        """End the user's sessions but the ``keep`` signed in last; returns the time
        sessions signed in at or before it ended (``None``: no more than ``keep``).

        One statement finds the newest sign-in past the ``keep`` newest unrevoked rows
        (a bounded read: a user never holds many more than ``keep`` of them). When there
        is one, the user's ``revoked_at`` moves up to it, as :meth:`revoke_sessions`
        would have set it then (so sessions the registry never recorded end too, and
        the revoked ids revalidation reads stay few), the rows are marked revoked, and
        the session version is bumped: two more statements. Without a ``revoked_at``
        column only the rows are revoked.
        """
        sessions = self._registry()
        s = sessions.c
        if not self.can_store(user_id):
            raise UnknownUser(user_id)
        oldest = (sa.select(s.created_at)
                  .where(s.user_id == user_id, s.revoked_at.is_(None))
                  .order_by(s.created_at.desc(), s.id.desc())
                  .limit(1).offset(keep))
        row = await self._fetch_one(oldest)
        if row is None:
            return None
        # A microsecond more keeps revalidation's float comparison of a sign-in time
        # in milliseconds on the side of ending them.
        until = as_utc(row[0]) + timedelta(microseconds=1)
        await self._execute(sessions.update()
                            .where(s.user_id == user_id, s.revoked_at.is_(None),
                                   s.created_at <= self._time(until))
                            .values(revoked_at=self._time(until)))
        c = self.table.c
        values: dict[str, Any] = {}
        if "revoked_at" in c:
            later = self._when(until)
            values["revoked_at"] = sa.case(
                (c.revoked_at.is_(None) | (c.revoked_at < later), later), else_=c.revoked_at)
        with suppress(UnknownUser):  # rows of a user since deleted
            await self._update(user_id, values)
        return until

    async def list_sessions(self, user_id: str, *, limit: int = MAX_LIST,
                            before: tuple[datetime, str] | None = None) -> list[StoredSession]:
        """The user's sessions neither revoked nor expired, the last renewed first: at
        most ``limit`` (1 to 1000) of them, those that come after ``before`` (the
        ``(renewed_at, id)`` of the last row of the previous page) when given."""
        sessions = self._registry()
        s = sessions.c
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise ValueError(f"limit must be an int from 1 to {MAX_LIST}")
        if not self.can_store(user_id) or (before is not None and not self.can_store(before[1])):
            return []
        query = (sa.select(sessions)
                 .where(s.user_id == user_id, s.revoked_at.is_(None), s.expires_at > self._now())
                 .order_by(s.renewed_at.desc(), s.id.desc())
                 .limit(limit))
        if before is not None:
            renewed = self._time(before[0])
            query = query.where((s.renewed_at < renewed)
                                | ((s.renewed_at == renewed) & (s.id < before[1])))
        return [self._session(row) for row in await self._fetch_all(query)]

    async def revoke_session(self, session_id: str, *, user_id: str | None = None) -> bool:
        """Revoke one session (only if it is ``user_id``'s, when given) and bump its
        user's session version, so feeds and revalidation see it: two statements.
        ``False`` (and nothing written) when there is no such row. Revoking it again
        bumps the version again (a retry after a failure is safe)."""
        sessions = self._registry()
        s = sessions.c
        if not self.can_store(session_id, user_id):
            return False
        condition = s.id == session_id
        if user_id is not None:
            condition = condition & (s.user_id == user_id)
        query = (sessions.update().where(condition)
                 .values(revoked_at=sa.func.coalesce(s.revoked_at, self._now()))
                 .returning(s.user_id))
        row = await self._fetch_one(query)
        if row is None:
            return False
        with suppress(UnknownUser):  # a row of a user since deleted: nothing to bump
            await self._update(row[0], {})
        return True

    async def revoke_other_sessions(self, user_id: str, keep: str) -> StoredUser:
        """Revoke the user's rows but ``keep`` and set the user's ``revoked_at`` to now
        (without that column, only the rows: sessions the registry never recorded stay);
        bumps the session version. Two statements, and a third that moves the kept row's
        sign-in past ``revoked_at``, as the caller moves the session's own
        (:func:`~asgi_jwt_session.registry.revoke_other_sessions`), so the cap
        (``max_sessions_per_user``) orders it by that.
        """
        sessions = self._registry()
        s = sessions.c
        if not self.can_store(user_id):
            raise UnknownUser(user_id)
        if not self.can_store(keep):
            keep = ""  # no row has it: every row is revoked
        now = self._now()
        await self._execute(sessions.update()
                            .where(s.user_id == user_id, s.id != keep, s.revoked_at.is_(None))
                            .values(revoked_at=now))
        values = {"revoked_at": now} if "revoked_at" in self.table.c else {}
        user = await self._update(user_id, values, now)
        if user.revoked_at is not None and keep:
            moved = kept_sign_in_ms(user.revoked_at)
            await self._execute(sessions.update()
                                .where(s.id == keep, s.user_id == user_id)
                                .values(created_at=self._time(
                                    datetime.fromtimestamp(moved / 1000, UTC))))
        return user

    async def revoke_all_sessions(self) -> int:
        """End every session of every user: ``revoked_at`` of every user set to now and
        their versions bumped in one statement (the registry's rows too, in another);
        ``on_change`` is called for each user, so a version feed announces each.
        Returns the number of users. Works without a registry."""
        c = self.table.c
        if "revoked_at" not in c:
            raise ValueError("this table has no revoked_at column (a nullable timestamp); "
                             "add one, or map it with columns=, to revoke sessions")
        now = self._now()
        if self.sessions is not None:
            s = self.sessions.c
            await self._execute(self.sessions.update().where(s.revoked_at.is_(None))
                                .values(revoked_at=now))
        query = (self.table.update()
                 .values(revoked_at=now, session_version=c.session_version + 1, updated_at=now)
                 .returning(*self._selected))
        users = [self._user(row) for row in await self._fetch_all(query)]
        for user in users:
            await self._changed(user)
        return len(users)

    # DBSC challenges answered (sessions_table=...): see asgi_jwt_session.dbsc

    async def use_challenge(self, challenge: str, expires_at: datetime) -> bool:
        """Record a DBSC challenge as answered, kept at least until ``expires_at``;
        ``False`` when it was answered before, on any process sharing the database. One
        ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` in the ``<sessions_table>_dbsc``
        table; at most once a minute per store, one more statement deletes the rows
        past their end (on an index)."""
        table = self.dbsc_challenges
        if table is None:
            raise ValueError("no session registry: make the store with "
                             "RoleStore(..., sessions_table='user_sessions')")
        if not self.can_store(challenge):
            return False
        c = table.c
        insert = (postgresql.insert if self.is_postgres else sqlite.insert)(table)
        query = insert.values(challenge=challenge, expires_at=self._time(expires_at)
                              ).on_conflict_do_nothing(index_elements=[c.challenge]
                                                       ).returning(c.challenge)
        row = await self._fetch_one(query)
        now = datetime.now(UTC)
        if now.timestamp() - self._challenges_pruned >= CHALLENGE_PRUNE_EVERY:
            self._challenges_pruned = now.timestamp()
            await self._execute(table.delete().where(
                c.expires_at < self._time(now - CHALLENGE_MARGIN)))
        return row is not None
