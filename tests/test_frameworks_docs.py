"""Each app of docs/frameworks.md, saved as ``main.py`` the way the page says and run in
a process of its own: a guarded route refuses a request without a session (401), the
session endpoints answer at /auth, and where the app has a sign-in route the guard lets
the signed-in admin through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_blocks import ROOT, python_blocks

PAGE = ROOT / "docs" / "frameworks.md"
BLOCKS = {block.source.split("from asgi_jwt_session.integrations.")[1].split(" ")[0]: block
          for block in python_blocks(PAGE) if "asgi_jwt_session.integrations." in block.source}

DRIVER = """
import asyncio, json
import httpx
import main

async def run():
    transport = httpx.ASGITransport(app=main.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        out = {"anonymous": (await client.get("/admin", headers={"accept": "application/json"})
                             ).status_code,
               "endpoints": (await client.get("/auth/session")).status_code}
        signed_in = await client.post("/sign-in")
        if signed_in.status_code != 404:
            out["admin"] = (await client.get("/admin")).json()
        print(json.dumps(out))

asyncio.run(run())
"""


def test_every_framework_has_an_app() -> None:
    assert sorted(BLOCKS) == ["blacksheep", "django", "falcon", "litestar", "quart"]


@pytest.mark.parametrize("framework", sorted(BLOCKS))
def test_the_pages_app(framework: str, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(BLOCKS[framework].source)
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "SESSION_SECRET": "docs-frameworks-secret-0123456789abcdef",
           "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "driver.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["anonymous"] == 401 and out["endpoints"] == 200
    if framework != "django":  # its page shows no sign-in route
        assert out["admin"] == {"admin": "ada"}
