"""``asgi-jwt-session``: keys, cookies and the role store, from the command line.

```
asgi-jwt-session keygen [--jwk]
asgi-jwt-session decode COOKIE
asgi-jwt-session db init
asgi-jwt-session users [--json]
asgi-jwt-session create-user ID ROLE [--email EMAIL]
asgi-jwt-session set-role ID ROLE
asgi-jwt-session revoke ID
asgi-jwt-session disable ID
asgi-jwt-session enable ID
asgi-jwt-session sessions ID [--json] [--limit N] [--cursor CURSOR]
```

The store commands work on the database of ``--database URL`` (or ``$DATABASE_URL``)
through :class:`~asgi_jwt_session.store.RoleStore`, as the application does. On
PostgreSQL a change is also announced on the version feed's channel, so apps with a
:class:`~asgi_jwt_session.freshness.PostgresVersionFeed` see it on the next request.
Errors are one line on stderr, never a traceback; the exit status says what kind:
:data:`OK`, :data:`REFUSED`, :data:`USAGE` or :data:`UNAVAILABLE`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus, urlsplit

import orjson

from asgi_jwt_session.errors import InvalidToken, StoreUnavailable, UnknownRole, UnknownUser
from asgi_jwt_session.keys import Keyring, generate_secret
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.store.base import StoredUser
from asgi_jwt_session.tokens import TokenCodec

if TYPE_CHECKING:
    from asgi_jwt_session.store.databases import RoleStore

SECRET_ENV = "SESSION_SECRET"
DATABASE_ENV = "DATABASE_URL"

OK = 0
REFUSED = 1  # unknown user or role, a taken id, no table yet, the store extra missing
USAGE = 2  # bad arguments, no database given (argparse's own status too)
UNAVAILABLE = 3  # the database cannot be reached

# What goes wrong is said once, in one line: the library's log lines stay out of it.
QUIET = logging.NullHandler()

MASK = "********"
# Query parameters whose value is masked wherever a URL is printed: libpq's password,
# sslpassword and passfile, and anything else that looks like a secret.
SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key|auth|cred|sig", re.IGNORECASE)


class CommandError(Exception):
    """A failure to report as one line, with the exit status to end with."""

    def __init__(self, message: str, status: int = REFUSED) -> None:
        super().__init__(message)
        self.status = status


# Keys and cookies


def keygen(args: argparse.Namespace) -> int:
    secret = generate_secret()
    if args.jwk:
        print(orjson.dumps(Keyring(secret).to_jwks(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(secret)
    return OK


def decode(args: argparse.Namespace) -> int:
    raw = os.environ.get(args.secret_env, "")
    if not raw:
        raise CommandError(
            f"set the secret in ${args.secret_env} (newest first, comma-separated)", USAGE)
    token = args.cookie if args.cookie != "-" else sys.stdin.read()
    token = token.strip()
    if "=" in token.split(".", 1)[0]:  # "session=<token>" as copied from a browser
        token = token.split("=", 1)[1]
    try:
        codec = TokenCodec([s for s in raw.split(",") if s], cache_size=0,
                           leeway=args.leeway)
        claims = codec.decode(token)
    except (InvalidToken, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(orjson.dumps(claims, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    return OK


# Printing database URLs


def url_secrets(url: str) -> list[str]:
    """The credentials ``url`` carries (as written and percent-decoded), longest first:
    the password of its user info, the values of its secret-looking query parameters."""
    found: set[str] = set()
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        password = userinfo.partition(":")[2]
        found.update((password, unquote(password)))
    for pair in parts.query.split("&"):
        key, equals, value = pair.partition("=")
        if equals and SECRET_PARAMETER.search(unquote_plus(key)):
            found.update((value, unquote_plus(value)))
    if parts.fragment:
        found.add(parts.fragment)
    return sorted((secret for secret in found if secret), key=len, reverse=True)


def mask_url(url: str) -> str:
    """``url`` as printed: the password and every secret-looking query parameter's value
    replaced with ``********`` (``postgresql://app:********@db/app?sslpassword=********``),
    user, host, database and other options kept. A URL that cannot be parsed is not
    printed at all."""
    try:
        parts = urlsplit(url)
        userinfo, at, hosts = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            userinfo = f"{userinfo.partition(':')[0]}:{MASK}"
        netloc = f"{userinfo}@{hosts}" if at else hosts
        query = []
        for pair in parts.query.split("&") if parts.query else ():
            key, equals, value = pair.partition("=")
            if equals and SECRET_PARAMETER.search(unquote_plus(key)):
                value = MASK
            query.append(f"{key}{equals}{value}")
        # Put together by hand: urlunsplit drops an empty host (sqlite:///path.db).
        masked = f"{parts.scheme}:" if parts.scheme else ""
        if url[len(masked):].startswith("//"):
            masked += f"//{netloc}"
        masked += parts.path
        if query:
            masked += "?" + "&".join(query)
        return masked + (f"#{MASK}" if parts.fragment else "")
    except ValueError:
        return "the database URL"


def without_secrets(text: str, url: str) -> str:
    """``text`` with ``url`` masked and none of its credentials left, wherever they
    appear (a driver's message may quote them)."""
    text = text.replace(url, mask_url(url))
    try:
        secrets = url_secrets(url)
    except ValueError:  # unparseable: mask_url printed none of it
        secrets = [url]
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def database_url(args: argparse.Namespace) -> str:
    """The database URL a store command works on (``--database`` or ``$DATABASE_URL``)."""
    return str(getattr(args, "database", None) or os.environ.get(DATABASE_ENV, ""))


# The role store


def open_store(args: argparse.Namespace) -> RoleStore:
    url = database_url(args)
    if not url:
        raise CommandError(f"no database: pass --database URL or set ${DATABASE_ENV}", USAGE)
    try:
        from asgi_jwt_session.store import RoleStore
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    try:
        roles = RoleHierarchy(args.roles.split(",")) if args.roles else None
        # connect_retry=None: an unreachable database is an error here, not an outage
        # to ride out in the background as an app does.
        sessions_table = args.sessions_table or getattr(args, "registry_default", None)
        store = RoleStore(url, roles=roles, table=args.table, connect_retry=None,
                          connect_timeout=args.timeout, sessions_table=sessions_table)
    except ValueError as exc:
        raise CommandError(str(exc), USAGE) from None
    path = None if store.is_postgres else store.database.url.database
    creates = getattr(args, "creates", False)
    if path and path != ":memory:":
        if not creates and not Path(path).exists():
            raise CommandError(f"no database file {path}: run `asgi-jwt-session db init` first")
        if not Path(path).parent.is_dir():
            raise CommandError(f"no directory {Path(path).parent} for the database file")
    return store


def database_error(exc: Exception, store: RoleStore) -> CommandError:
    """A database error the store lets through (a schema problem, a bug), as one line."""
    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    sqlite = isinstance(exc, sqlite3.OperationalError)
    name = type(exc).__name__  # asyncpg's, without importing asyncpg
    missing = (sqlite and "no such table" in message) or name == "UndefinedTableError"
    if missing and store.sessions is not None and store.sessions.name in message:
        return CommandError(f"no session registry table {store.sessions.name!r} in the "
                            "database: run `asgi-jwt-session db init --sessions-table "
                            f"{store.sessions.name}` first")
    if missing:
        return CommandError(f"no table {store.table_name!r} in the database: run "
                            "`asgi-jwt-session db init` first")
    if (sqlite and "no such column" in message) or name == "UndefinedColumnError":
        return CommandError(f"table {store.table_name!r} lacks a column the store needs "
                            f"({message}); see docs/operations.md, 'An older table'")
    return CommandError(f"{name}: {message}")


def run_store(args: argparse.Namespace, work: Callable[[RoleStore], Awaitable[str]]) -> int:
    """Connect, do ``work``, disconnect; print what it returned."""
    store = open_store(args)

    async def session() -> str:
        try:
            await store.connect()
        except StoreUnavailable:
            # aiosqlite stops the worker thread of a connection that failed to open
            # after returning; give it the loop, or it reports to a closed one.
            await asyncio.sleep(0.1)
            raise
        try:
            if not (store.is_postgres and getattr(args, "notifies", False) and args.notify):
                return await work(store)
            from asgi_jwt_session.freshness.postgres import PostgresVersionFeed

            # The feed announces each change the store makes on its channel, as an
            # app's does: the apps' feeds hear it at once.
            feed = PostgresVersionFeed(store, channel=args.channel, max_age=60,
                                       connect_timeout=args.timeout)
            await feed.start(wait=args.timeout)
            try:
                output = await work(store)
            finally:
                await feed.stop()
            if feed.pending or not feed.connections:
                print(f"warning: could not notify the apps on channel {feed.channel!r}; "
                      "they see the change at their next revalidation", file=sys.stderr)
            return output
        finally:
            await store.disconnect()

    try:
        output = asyncio.run(session())
    except StoreUnavailable as exc:
        url = mask_url(str(store.database.url))
        raise CommandError(f"cannot reach {url}: {exc}", UNAVAILABLE) from None
    except UnknownUser as exc:
        raise CommandError(f"no user {exc.args[0]!r}") from None
    except (UnknownRole, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:  # a driver's error: one line, not a traceback
        raise database_error(exc, store) from None
    print(output)
    return OK


def describe(user: StoredUser) -> str:
    line = f"{user.id}: role {user.role}, session version {user.session_version}"
    if user.disabled:
        line += ", disabled"
    if user.revoked_at is not None:
        line += f", sessions revoked at {when(user.revoked_at)}"
    return line


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def as_json(user: StoredUser) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "role": user.role,
            "session_version": user.session_version, "disabled": user.disabled,
            "revoked_at": user.revoked_at and user.revoked_at.isoformat(),
            "updated_at": user.updated_at.isoformat()}


def db_init(args: argparse.Namespace) -> int:
    async def work(store: RoleStore) -> str:
        await store.create_tables()
        if store.sessions is not None:
            return f"table {store.table_name} ready\ntable {store.sessions.name} ready"
        return f"table {store.table_name} ready"

    return run_store(args, work)


def users(args: argparse.Namespace) -> int:
    async def work(store: RoleStore) -> str:
        found = await store.list_users()
        if args.json:
            return orjson.dumps([as_json(user) for user in found],
                                option=orjson.OPT_INDENT_2).decode()
        rows = [("ID", "ROLE", "VERSION", "DISABLED", "REVOKED AT", "EMAIL")]
        rows += [(user.id, user.role, str(user.session_version),
                  "yes" if user.disabled else "no", when(user.revoked_at), user.email or "-")
                 for user in found]
        return columns(rows)

    return run_store(args, work)


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows)


def sessions(args: argparse.Namespace) -> int:
    async def work(store: RoleStore) -> str:
        from asgi_jwt_session.registry import list_sessions

        if await store.get_user(args.id) is None:
            raise UnknownUser(args.id)
        found = await list_sessions(store, args.id, limit=args.limit, cursor=args.cursor)
        if found.next_cursor is not None:  # stderr: the JSON on stdout stays a list
            print(f"more sessions: add --cursor {found.next_cursor}", file=sys.stderr)
        if args.json:
            return orjson.dumps([
                {"id": s.id, "created_at": s.created_at.isoformat(),
                 "renewed_at": s.renewed_at.isoformat(), "expires_at": s.expires_at.isoformat(),
                 "user_agent": s.user_agent, "client": s.client} for s in found
            ], option=orjson.OPT_INDENT_2).decode()
        if not found:
            return f"{args.id}: no active sessions"
        rows = [("SESSION", "SIGNED IN", "RENEWED", "EXPIRES", "CLIENT", "USER AGENT")]
        rows += [(s.id, when(s.created_at), when(s.renewed_at), when(s.expires_at),
                  s.client or "-", s.user_agent or "-") for s in found]
        return columns(rows)

    return run_store(args, work)


def create_user(args: argparse.Namespace) -> int:
    async def work(store: RoleStore) -> str:
        return describe(await store.create_user(args.id, args.role, email=args.email))

    return run_store(args, work)


def set_role(args: argparse.Namespace) -> int:
    async def work(store: RoleStore) -> str:
        return describe(await store.update_user_role(args.id, args.role))

    return run_store(args, work)


def revoke(args: argparse.Namespace) -> int:
    async def work(store: RoleStore) -> str:
        return describe(await store.revoke_sessions(args.id))

    return run_store(args, work)


def set_disabled(disabled: bool) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        async def work(store: RoleStore) -> str:
            return describe(await store.set_disabled(args.id, disabled))

        return run_store(args, work)

    return command


# The parser


def store_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("the role store")
    group.add_argument("--database", metavar="URL",
                       help=f"sqlite:///path.db or postgresql://... (default: ${DATABASE_ENV})")
    group.add_argument("--table", default="users", help="the users table (default: users)")
    group.add_argument("--roles", metavar="A,B,C",
                       help="the role hierarchy, lowest first (default: USER,ORG_ADMIN,ADMIN)")
    group.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="how long to wait for the database (default: 10)")
    group.add_argument("--channel", metavar="NAME",
                       help="PostgreSQL: the version feed's channel (default: the feed's "
                            "default for the table)")
    group.add_argument("--no-notify", dest="notify", action="store_false",
                       help="PostgreSQL: do not announce the change to the apps' feeds")
    group.add_argument("--sessions-table", metavar="NAME",
                       help="the session registry's table (db init creates it; default: "
                            "none, and user_sessions for `sessions`)")
    return options


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgi-jwt-session",
        description="Encrypted JWT cookie sessions: keys, cookies and the role store.",
        epilog=f"exit status: {OK} done, {REFUSED} refused (unknown user or role, ...), "
               f"{USAGE} usage, {UNAVAILABLE} database unreachable")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store = store_options()

    parser_keygen = commands.add_parser("keygen", help="print a new random secret")
    parser_keygen.add_argument("--jwk", action="store_true", help="print it as a JWK Set")
    parser_keygen.set_defaults(run=keygen)

    parser_decode = commands.add_parser(
        "decode", help=f"print a cookie's claims; the secret comes from ${SECRET_ENV}")
    parser_decode.add_argument("cookie", help="the cookie value (or name=value), - for stdin")
    parser_decode.add_argument("--secret-env", default=SECRET_ENV,
                               help="environment variable holding the secret(s)")
    parser_decode.add_argument("--leeway", type=int, default=10)
    parser_decode.set_defaults(run=decode)

    parser_db = commands.add_parser("db", help="the role store's schema")
    db_commands = parser_db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    parser_init = db_commands.add_parser(
        "init", parents=[store], help="create the users table (and the database file)")
    parser_init.set_defaults(run=db_init, creates=True)

    parser_users = commands.add_parser("users", parents=[store], help="list the users")
    parser_users.add_argument("--json", action="store_true", help="as JSON")
    parser_users.set_defaults(run=users)

    parser_create = commands.add_parser("create-user", parents=[store], help="add a user")
    parser_create.add_argument("id")
    parser_create.add_argument("role")
    parser_create.add_argument("--email")
    parser_create.set_defaults(run=create_user)

    parser_role = commands.add_parser(
        "set-role", parents=[store],
        help="set a user's role; sessions see it on their next revalidation")
    parser_role.add_argument("id")
    parser_role.add_argument("role")
    parser_role.set_defaults(run=set_role, notifies=True)

    parser_revoke = commands.add_parser(
        "revoke", parents=[store], help="sign a user out everywhere")
    parser_revoke.add_argument("id")
    parser_revoke.set_defaults(run=revoke, notifies=True)

    for name, disabled, text in (("disable", True, "disable a user (signs them out)"),
                                 ("enable", False, "enable a disabled user again")):
        parser_disabled = commands.add_parser(name, parents=[store], help=text)
        parser_disabled.add_argument("id")
        parser_disabled.set_defaults(run=set_disabled(disabled), notifies=True)

    parser_sessions = commands.add_parser(
        "sessions", parents=[store], help="list a user's active sessions (the session registry)")
    parser_sessions.add_argument("id")
    parser_sessions.add_argument("--json", action="store_true", help="as JSON")
    parser_sessions.add_argument("--limit", type=int, default=20, metavar="N",
                                 help="sessions a page lists, newest first (1-100, default 20)")
    parser_sessions.add_argument("--cursor", metavar="CURSOR",
                                 help="the next page: the cursor the previous page printed")
    parser_sessions.set_defaults(run=sessions, registry_default="user_sessions")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.getLogger("asgi_jwt_session").addHandler(QUIET)
    try:
        result: int = args.run(args)
    except CommandError as exc:
        message = str(exc)
        url = database_url(args) if hasattr(args, "database") else ""
        if url:  # whatever the message quotes, no credential of the URL is printed
            message = without_secrets(message, url)
        print(f"error: {message}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
