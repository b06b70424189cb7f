"""What runs under trio (docs/architecture.md, "asyncio and trio"): the documented set-up
served by hypercorn's trio worker, and the asyncio-only parts failing at start with
what to use instead."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest

from asgi_jwt_session.freshness import RedisVersionFeed
from support.servers import serve
from tests.app_processes import ROOT


@pytest.fixture(scope="module")
def trio_server() -> Iterator[str]:
    process, port = serve(lambda port: [sys.executable, "-m", "hypercorn", "tests.trio_app:app",
                                        "--worker-class", "trio",
                                        "--bind", f"127.0.0.1:{port}"], cwd=ROOT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_the_trio_set_up_under_hypercorn_trio(trio_server: str) -> None:
    with httpx.Client(base_url=trio_server, headers={"accept": "application/json"}) as client:
        assert client.get("/library").json() == {"library": "trio", "loads": 0}
        assert client.get("/admin").status_code == 401
        client.get("/login", params={"user": "ann"})
        assert client.get("/admin").json() == {"admin": "ann"}
        state = client.get("/auth/session").json()
        assert state["session"]["user"] == {"id": "ann", "role": "ADMIN"}
        assert client.get("/library").json()["loads"] == 0  # the cookie alone
        refreshed = client.post("/auth/session/refresh",
                                headers={state["csrfHeader"]: state["csrfToken"]})
        assert refreshed.status_code == 200, refreshed.text  # the loader, under trio
        assert client.get("/library").json() == {"library": "trio", "loads": 1}
        client.post("/demote", params={"user": "ann"})
        assert client.get("/admin").status_code == 403  # the feed says stale: loaded
        assert client.get("/library").json()["loads"] == 2
        state = client.get("/auth/session").json()
        assert state["session"]["user"] == {"id": "ann", "role": "USER"}
        assert client.get("/library").json()["loads"] == 2  # the re-issued cookie

@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_asyncio_only_parts_say_so_under_trio(anyio_backend: str,
                                                    database_url: str) -> None:
    from asgi_jwt_session.store import RoleStore

    for part in (RoleStore(database_url), RedisVersionFeed("redis://127.0.0.1:1/0")):
        with pytest.raises(RuntimeError, match=r"runs under asyncio only.*user loader"):
            async with part:
                pass  # pragma: no cover
