"""``asgi-jwt-session``: keygen and decode; the store commands on a real SQLite file and a
real PostgreSQL server; errors as one line and an exit status, never a traceback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import orjson
import pytest

from asgi_jwt_session.cli import (
    OK,
    REFUSED,
    UNAVAILABLE,
    USAGE,
    main,
    mask_url,
    without_secrets,
)
from asgi_jwt_session.keys import Keyring
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.store import RoleStore, StoredUser
from asgi_jwt_session.tokens import TokenCodec
from support.servers import PostgresServer
from tests.conftest import OTHER_SECRET, SECRET

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# --- keys and cookies -----------------------------------------------------------------------


def test_keygen_prints_a_usable_secret(capsys: Capture) -> None:
    assert main(["keygen"]) == 0
    secret = capsys.readouterr().out.strip()
    assert len(secret) >= 43
    Keyring(secret)  # long enough to be accepted
    assert main(["keygen"]) == 0
    assert capsys.readouterr().out.strip() != secret


def test_keygen_jwk(capsys: Capture) -> None:
    assert main(["keygen", "--jwk"]) == 0
    jwks = orjson.loads(capsys.readouterr().out)
    assert jwks["keys"][0]["kty"] == "oct"
    Keyring(jwks["keys"][0])


def test_decode(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    now = int(time.time())
    token = TokenCodec(SECRET).encode({"sub": "u1", "role": "USER", "iat": now, "exp": now + 60})
    monkeypatch.setenv("SESSION_SECRET", f"{OTHER_SECRET},{SECRET}")
    assert main(["decode", f"session={token}"]) == 0
    assert orjson.loads(capsys.readouterr().out)["sub"] == "u1"

    monkeypatch.setenv("SESSION_SECRET", OTHER_SECRET)
    assert main(["decode", token]) == REFUSED
    assert "key" in capsys.readouterr().err

    monkeypatch.delenv("SESSION_SECRET")
    assert main(["decode", token]) == USAGE
    assert "SESSION_SECRET" in capsys.readouterr().err


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "asgi_jwt_session.cli", "--help"],
                            capture_output=True, text=True, check=True)
    for command in ("keygen", "decode", "db", "users", "create-user", "set-role", "revoke",
                    "disable", "enable", "sessions"):
        assert command in result.stdout
    assert "bench" not in result.stdout  # it needed a source checkout


# --- the role store -------------------------------------------------------------------------


@pytest.fixture
def database(sqlite_or_postgres_url: str) -> str:
    return sqlite_or_postgres_url


@pytest.fixture
def table() -> str:
    return f"users_{uuid.uuid4().hex[:12]}"  # tests on one PostgreSQL server never meet


def stored(database: str, table: str, user_id: str,
           roles: RoleHierarchy | None = None) -> StoredUser | None:
    """The user as the application's own RoleStore reads it."""

    async def read() -> StoredUser | None:
        async with RoleStore(database, table=table, roles=roles) as store:
            return await store.get_user(user_id)

    return asyncio.run(read())


def test_store_commands(capsys: Capture, database: str, table: str) -> None:
    db = ["--database", database, "--table", table]
    status, out, _ = run(capsys, "db", "init", *db)
    assert (status, out) == (OK, f"table {table} ready\n")
    assert run(capsys, "db", "init", *db)[0] == OK  # again: nothing to do

    status, out, _ = run(capsys, "create-user", "ann", "ADMIN", "--email", "ann@example.com", *db)
    assert (status, out) == (OK, "ann: role ADMIN, session version 1\n")
    assert run(capsys, "create-user", "bob", "USER", *db)[0] == OK

    status, out, _ = run(capsys, "set-role", "bob", "ORG_ADMIN", *db)
    assert (status, out) == (OK, "bob: role ORG_ADMIN, session version 2\n")
    bob = stored(database, table, "bob")
    assert bob is not None and (bob.role, bob.session_version) == ("ORG_ADMIN", 2)

    status, out, _ = run(capsys, "revoke", "bob", *db)
    assert status == OK and "session version 3, sessions revoked at" in out
    bob = stored(database, table, "bob")
    assert bob is not None and bob.revoked_at is not None

    status, out, _ = run(capsys, "disable", "bob", *db)
    assert status == OK and ", disabled" in out
    bob = stored(database, table, "bob")
    assert bob is not None and bob.disabled
    assert run(capsys, "enable", "bob", *db)[0] == OK
    bob = stored(database, table, "bob")
    assert bob is not None and not bob.disabled and bob.session_version == 5

    status, out, _ = run(capsys, "users", *db)
    lines = out.splitlines()
    assert status == OK and lines[0].split() == ["ID", "ROLE", "VERSION", "DISABLED", "REVOKED",
                                                 "AT", "EMAIL"]
    assert lines[1].split() == ["ann", "ADMIN", "1", "no", "-", "ann@example.com"]
    assert lines[2].split()[:4] == ["bob", "ORG_ADMIN", "5", "no"]

    status, out, _ = run(capsys, "users", "--json", *db)
    users = orjson.loads(out)
    assert [user["id"] for user in users] == ["ann", "bob"]
    assert users[0] == {**users[0], "email": "ann@example.com", "role": "ADMIN",
                        "session_version": 1, "disabled": False, "revoked_at": None}
    assert users[1]["revoked_at"] is not None


def test_errors_are_one_line_with_a_status(capsys: Capture, database: str, table: str) -> None:
    db = ["--database", database, "--table", table]
    status, _, err = run(capsys, "users", *db)
    assert status == REFUSED
    assert "db init" in err  # no table yet (on SQLite: no file yet)

    run(capsys, "db", "init", *db)
    run(capsys, "create-user", "ann", "ADMIN", *db)
    cases = [
        (["set-role", "zed", "USER"], REFUSED, "error: no user 'zed'\n"),
        (["revoke", "zed"], REFUSED, "error: no user 'zed'\n"),
        (["disable", "zed"], REFUSED, "error: no user 'zed'\n"),
        (["set-role", "ann", "BOSS"], REFUSED,
         "error: unknown role 'BOSS'; known roles: USER, ORG_ADMIN, ADMIN\n"),
        (["create-user", "bob", "BOSS"], REFUSED,
         "error: unknown role 'BOSS'; known roles: USER, ORG_ADMIN, ADMIN\n"),
        (["create-user", "ann", "USER"], REFUSED, "error: user 'ann' already exists\n"),
    ]
    for argv, expected_status, expected_err in cases:
        status, out, err = run(capsys, *argv, *db)
        assert (status, out, err) == (expected_status, "", expected_err), argv
    user = stored(database, table, "ann")
    assert user is not None and (user.role, user.session_version) == ("ADMIN", 1)


def test_custom_roles(capsys: Capture, tmp_path: Path) -> None:
    db = ["--database", f"sqlite:///{tmp_path / 'app.db'}", "--roles", "READER,EDITOR,OWNER"]
    run(capsys, "db", "init", *db)
    assert run(capsys, "create-user", "ann", "EDITOR", *db)[0] == OK
    assert run(capsys, "set-role", "ann", "OWNER", *db)[0] == OK
    status, _, err = run(capsys, "set-role", "ann", "ADMIN", *db)
    assert status == REFUSED and "known roles: READER, EDITOR, OWNER" in err


def test_database_from_the_environment(capsys: Capture, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    status, _, err = run(capsys, "users")
    assert status == USAGE and "--database URL or set $DATABASE_URL" in err

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert run(capsys, "db", "init")[0] == OK
    assert run(capsys, "create-user", "ann", "USER")[0] == OK
    assert run(capsys, "users")[1].splitlines()[1].startswith("ann")


def test_bad_database_urls(capsys: Capture, tmp_path: Path) -> None:
    status, _, err = run(capsys, "users", "--database", "mysql://localhost/app")
    assert status == USAGE and "unsupported database 'mysql'" in err

    status, _, err = run(capsys, "users", "--database", f"sqlite:///{tmp_path / 'none.db'}")
    assert status == REFUSED and "no database file" in err and "db init" in err
    assert not (tmp_path / "none.db").exists()  # not made by looking

    status, _, err = run(capsys, "db", "init", "--database", f"sqlite:///{tmp_path}/no/x.db")
    assert status == REFUSED and "no directory" in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_database(capsys: Capture) -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{free_port()}/app"
    status, out, err = run(capsys, "users", "--database", url, "--timeout", "5")
    assert (status, out) == (UNAVAILABLE, "")
    assert err.startswith("error: cannot reach postgresql://app:********@127.0.0.1:")
    assert "hunter2" not in err and err.count("\n") == 1


@pytest.mark.parametrize("source", ["--database", "$DATABASE_URL"])
@pytest.mark.parametrize(("credentials", "query", "printed"), [
    ("app", "?password=hunter2", "app@127.0.0.1:{port}/app?password=********"),
    ("app", "?sslmode=disable&passwd=hunter2&application_name=cli",
     "app@127.0.0.1:{port}/app?sslmode=disable&passwd=********&application_name=cli"),
    ("app", "?pass%77ord=hunter2", "app@127.0.0.1:{port}/app?pass%77ord=********"),
    ("app:hun%74er2", "?sslpassword=hunter2&connect_timeout=3",
     "app:********@127.0.0.1:{port}/app?sslpassword=********&connect_timeout=3"),
])
def test_unreachable_database_never_prints_a_credential(
        capsys: Capture, monkeypatch: pytest.MonkeyPatch, source: str, credentials: str,
        query: str, printed: str) -> None:
    port = free_port()
    url = f"postgresql://{credentials}@127.0.0.1:{port}/app{query}"
    if source == "--database":
        argv = ["users", "--database", url, "--timeout", "5"]
    else:
        monkeypatch.setenv("DATABASE_URL", url)
        argv = ["users", "--timeout", "5"]
    status, out, err = run(capsys, *argv)
    assert (status, out) == (UNAVAILABLE, "")
    assert err.startswith(f"error: cannot reach postgresql://{printed.format(port=port)}: ")
    assert "hunter2" not in err and "hun%74er2" not in err and err.count("\n") == 1


@pytest.mark.parametrize(("url", "printed"), [
    ("postgresql://app:s3cret@db:5432/app", "postgresql://app:********@db:5432/app"),
    ("postgresql://app:p@ss@db/app", "postgresql://app:********@db/app"),
    ("postgresql://app@db/app?password=s3cret", "postgresql://app@db/app?password=********"),
    ("postgresql://db/app?user=app&PASSWORD=s3cret&sslkey=/k&sslmode=require",
     "postgresql://db/app?user=app&PASSWORD=********&sslkey=********&sslmode=require"),
    ("postgresql://app@h1:5432,h2:5433/app?token=t&api_secret=s&x=1",
     "postgresql://app@h1:5432,h2:5433/app?token=********&api_secret=********&x=1"),
    ("postgresql:///app?host=/run/postgresql&passfile=/p", "postgresql:///app?host=/run/"
     "postgresql&passfile=********"),
    ("postgresql://app:pw@db/app#pw", "postgresql://app:********@db/app#********"),
    ("sqlite:///var/app.db", "sqlite:///var/app.db"),
])
def test_mask_url(url: str, printed: str) -> None:
    assert mask_url(url) == printed


def test_a_message_quoting_the_url_or_its_password_is_masked() -> None:
    url = "postgresql://app:pw%2Fx@db/app?sslpassword=k%20ey"
    message = f"bad {url}: password 'pw/x' or 'k ey' refused (k%20ey)"
    assert without_secrets(message, url) == ("bad postgresql://app:********@db/app?"
                                             "sslpassword=********: password '********' or "
                                             "'********' refused (********)")


def test_no_traceback_from_the_console_script(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'app.db'}"
    command = [sys.executable, "-m", "asgi_jwt_session.cli"]
    subprocess.run([*command, "db", "init", "--database", database], check=True,
                   capture_output=True)
    result = subprocess.run([*command, "set-role", "zed", "ADMIN", "--database", database],
                            capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (REFUSED, "",
                                                                "error: no user 'zed'\n")
    result = subprocess.run(
        [*command, "users", "--database", f"postgresql://127.0.0.1:{free_port()}/app"],
        capture_output=True, text=True)
    assert result.returncode == UNAVAILABLE
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.postgres
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # asyncpg
async def test_changes_are_announced_to_the_apps_feeds(postgres: PostgresServer,
                                                       table: str) -> None:
    """An app's PostgresVersionFeed hears a change the CLI made, as it hears another
    process of the app."""
    from asgi_jwt_session.freshness import PostgresVersionFeed

    command = [sys.executable, "-m", "asgi_jwt_session.cli"]
    db = ["--database", postgres.dsn, "--table", table]

    async def cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
        return await anyio.run_process([*command, *argv, *db], check=False)

    assert (await cli("db", "init")).returncode == OK
    assert (await cli("create-user", "ann", "ADMIN")).returncode == OK
    async with RoleStore(postgres.dsn, table=table) as store, \
            PostgresVersionFeed(store) as feed:
        assert feed.newest("ann") is None or feed.newest("ann") == 1
        result = await cli("set-role", "ann", "USER")
        assert (result.returncode, result.stderr) == (OK, b"")
        with anyio.fail_after(5):
            while feed.newest("ann") != 2:
                await anyio.sleep(0.01)
        connections = feed.connections
        result = await cli("revoke", "ann", "--no-notify")
        assert (await store.get_user("ann")).session_version == 3  # type: ignore[union-attr]
        await anyio.sleep(0.2)
        # Not announced (a reconnect meanwhile would catch it up from the table).
        assert feed.newest("ann") == 2 or feed.connections != connections


def test_sessions_command(capsys: Capture, database: str, table: str) -> None:
    sessions_table = f"{table}_sessions"
    db = ["--database", database, "--table", table]
    run(capsys, "db", "init", *db)
    run(capsys, "create-user", "ann", "USER", *db)
    status, _, err = run(capsys, "sessions", "ann", *db, "--sessions-table", sessions_table)
    assert status == REFUSED and f"db init --sessions-table {sessions_table}" in err

    status, out, _ = run(capsys, "db", "init", *db, "--sessions-table", sessions_table)
    assert (status, out) == (OK, f"table {table} ready\ntable {sessions_table} ready\n")
    registry = [*db, "--sessions-table", sessions_table]
    assert run(capsys, "sessions", "ann", *registry)[:2] == (OK, "ann: no active sessions\n")

    async def record() -> None:
        from datetime import UTC, datetime, timedelta

        from asgi_jwt_session.store import StoredSession

        async with RoleStore(database, table=table, sessions_table=sessions_table) as store:
            now = datetime.now(UTC)
            for session_id, agent in (("s-old", None), ("s-new", "Firefox/130")):
                await store.record_session(StoredSession(
                    session_id, "ann", now, now, now + timedelta(days=1), now + timedelta(days=2),
                    agent, "203.0.113.0/24"), first=True)
            await store.revoke_session("s-old")

    asyncio.run(record())
    status, out, _ = run(capsys, "sessions", "ann", *registry)
    lines = out.splitlines()
    assert status == OK and lines[0].split() == ["SESSION", "SIGNED", "IN", "RENEWED", "EXPIRES",
                                                 "CLIENT", "USER", "AGENT"]
    assert len(lines) == 2 and lines[1].startswith("s-new ")  # the revoked one is not active
    assert lines[1].split()[-2:] == ["203.0.113.0/24", "Firefox/130"]
    status, out, _ = run(capsys, "sessions", "ann", "--json", *registry)
    [found] = orjson.loads(out)
    assert found == {**found, "id": "s-new", "user_agent": "Firefox/130",
                     "client": "203.0.113.0/24"}
    assert run(capsys, "sessions", "zed", *registry)[::2] == (REFUSED, "error: no user 'zed'\n")
