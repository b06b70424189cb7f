"""Every ``python`` code block of README.md and docs/*.md runs, as written.

The blocks of one page run in order in one namespace (a later block may use what an
earlier one defined), in a temporary directory (``sqlite:///app.db`` lands there) with
``$SESSION_SECRET`` set, as the docs tell an app to keep its secret. A block with a
top-level ``await`` runs on the page's event loop. Blocks that must not run are marked
in the markdown (see tests/docs_blocks.py). Each page's blocks are also checked by ruff
for undefined names (a missing import), and the README quick start by
``mypy --strict``; the apps the pages define are exercised below where that is cheap.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from asgi_jwt_session.store import RoleStore
from tests.docs_blocks import PAGES, ROOT, blocks, page_source, python_blocks

SECRET = "docs-secret-0123456789abcdef-0123456789"
RUNNABLE = [page for page in PAGES if python_blocks(page)]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def run_page(page: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    with asyncio.Runner() as runner:
        for block in python_blocks(page):
            code = compile("\n" * (block.line) + block.source, str(page), "exec",
                           flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)  # exec, but returns the coroutine of an await
            if inspect.iscoroutine(result):
                runner.run(result)
        namespace["__runner__"] = runner
        try:
            check = CHECKS.get(page_id(page))
            if check is not None:
                check(namespace)
        finally:  # a page's stores stay connected as a running app's would: close them
            for value in list(namespace.values()):
                if isinstance(value, RoleStore) and value.is_connected:
                    runner.run(value.disconnect())
    return namespace


@pytest.fixture
def docs_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSION_SECRET", SECRET)
    monkeypatch.setenv("AUTH_SECRET", SECRET)  # docs/nextjs-interop.md
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_page_runs(page: Path, docs_env: Path) -> None:
    run_page(page)


@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_page_names_are_defined(page: Path, tmp_path: Path) -> None:
    """A name used in a block is imported or defined in it or an earlier one."""
    source = tmp_path / f"{page.stem}.py"
    source.write_text(page_source(page))
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--no-cache", "--isolated", "--select", "F821,F822,F823",
         "--output-format", "concise", str(source)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout.replace(str(source), page_id(page))


def test_markers_say_why() -> None:
    """Every ``not run`` marker has a reason, and sits on a python block."""
    marked = [b for page in PAGES for b in blocks(page) if b.not_run is not None]
    for block in marked:
        assert block.lang == "python", f"{block.name}: the marker is on a {block.lang!r} block"
        assert len(block.not_run or "") > 10, f"{block.name}: say why it is not run"
    assert len(marked) <= 6, [b.name for b in marked]  # keep them few


def test_user_docs_do_not_speak_of_the_issue() -> None:
    for page in PAGES:
        if page.name == "benchmarks.md":  # generated sections; owned by the scripts
            continue
        text = page.read_text().lower()
        for phrase in ("the issue", "the design"):
            assert phrase not in text, f"{page_id(page)} speaks of {phrase!r}"


# --- exercising the apps the pages define --------------------------------------------


def csrf_post(client: TestClient, url: str, **kwargs: Any) -> Any:
    token = client.get("/auth/session").json()["csrfToken"]
    return client.post(url, headers={"x-csrf-token": token}, **kwargs)


def check_readme(ns: dict[str, Any]) -> None:
    with TestClient(ns["app"]) as client:
        assert client.get("/me").json() is None
        assert client.get("/org", headers={"accept": "application/json"}).status_code == 401
        assert client.post("/sign-in", data={"email": "ada@example.com",
                                             "password": "x"}).status_code == 403  # no CSRF
        answer = csrf_post(client, "/sign-in",
                           data={"email": "ada@example.com", "password": "correct horse"})
        assert answer.status_code == 200, answer.text
        me = client.get("/me").json()
        assert me["id"] == "42" and me["role"] == "ORG_ADMIN", me
        assert client.get("/org").json() == {"cart": []}


def check_session_and_roles(ns: dict[str, Any]) -> None:
    """With freshness=Freshness(store), the next request sees a role change."""
    from asgi_jwt_session import update_user_role
    from asgi_jwt_session.testing import sign_in

    store = ns["store"]
    with TestClient(ns["app"]) as client:  # the FastAPI app, with the page's lifespan
        user = client.portal.call(store.create_user, "alice", "USER")
        sign_in(client, SECRET, "alice", "USER", version=user.session_version)
        assert client.get("/auth/session").json()["session"]["user"]["role"] == "USER"
        client.portal.call(update_user_role, store, "alice", "ORG_ADMIN")
        assert client.get("/auth/session").json()["session"]["user"]["role"] == "ORG_ADMIN"
        assert client.get("/api/reports").json() == {"user": "alice", "role": "ORG_ADMIN"}


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "README.md": check_readme,
    "docs/session-and-roles.md": check_session_and_roles,
}


def test_readme_quick_start_is_mypy_strict_clean(tmp_path: Path) -> None:
    quick_start = python_blocks(ROOT / "README.md")[0]
    source = tmp_path / "quick_start.py"
    source.write_text(quick_start.source)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--python-version", "3.11", str(source)],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "MYPY_CACHE_DIR": str(tmp_path / ".mypy_cache")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
