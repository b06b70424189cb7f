from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from jwcrypto import jwe

from tests.servers import PostgresServer, RedisServer, ServerUnavailable

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip on a bare laptop; under CI=true a missing server or tool is a failure."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def running_postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
        server.start()
    except ServerUnavailable as exc:
        unavailable(f"PostgreSQL: {exc}")
        raise
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (loopback, temp dir)."""
    yield from running_postgres()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, to stop and start again."""
    yield from running_postgres()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
        server.start()
    except ServerUnavailable as exc:
        unavailable(f"Redis: {exc}")
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def decrypt_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Counts jwcrypto decryptions (every JWE.deserialize call, ours included)."""
    calls: list[str] = []
    original = jwe.JWE.deserialize

    def counting(self: jwe.JWE, raw_jwe: str, key: Any = None) -> None:
        calls.append(raw_jwe)
        original(self, raw_jwe, key)

    monkeypatch.setattr(jwe.JWE, "deserialize", counting)
    yield calls
