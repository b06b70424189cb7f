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
import re
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware, require_role
from asgi_jwt_session.store import RoleStore
from tests.docs_blocks import PAGES, ROOT, blocks, page_source, python_blocks

SECRET = "docs-secret-0123456789abcdef-0123456789"
RUNNABLE = [page for page in PAGES if python_blocks(page)]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


def run_page(page: Path) -> dict[str, Any]:
    # A module of its own in sys.modules: frameworks (Litestar) resolve a handler's
    # annotations through its __module__.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    namespace: dict[str, Any] = module.__dict__
    sys.modules[module.__name__] = module
    with asyncio.Runner() as runner, made_middlewares() as made:
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
            check_guards_answer(page, namespace, made)
        finally:  # a page's stores stay connected as a running app's would: close them
            for value in list(namespace.values()):
                if isinstance(value, RoleStore) and value.is_connected:
                    runner.run(value.disconnect())
            sys.modules.pop(module.__name__, None)
    return namespace


# --- every app a page sets up answers a guard's refusal, never 500 ----------------------

PROBE = "/__docs_probe__"


async def probe(request: Request) -> JSONResponse:
    return JSONResponse({"id": require_role(request, "ADMIN").id})


@contextmanager
def made_middlewares() -> Iterator[list[JWTSessionMiddleware]]:
    """Every ``JWTSessionMiddleware`` made meanwhile: also one a block makes and drops
    (``JWTSessionMiddleware(app, ...)`` as a statement) or one wrapped around an app."""
    made: list[JWTSessionMiddleware] = []
    original = JWTSessionMiddleware.__init__

    def init(self: JWTSessionMiddleware, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JWTSessionMiddleware, "__init__", init)
        yield made


def wrapped_app(outer: object) -> Starlette | None:
    """The Starlette (or FastAPI) app inside an ASGI wrapper, if any."""
    for _ in range(10):
        if isinstance(outer, Starlette):
            return outer
        outer = getattr(outer, "app", None)
    return None


def session_apps(namespace: dict[str, Any], made: list[JWTSessionMiddleware],
                 ) -> list[tuple[str, Any, Starlette]]:
    """(name, what a server would run, the Starlette app inside) for each app of a page
    with the session middleware: installed with ``Middleware(...)``/``add_middleware``,
    or wrapped around the app from outside."""
    found: dict[int, tuple[str, Any, Starlette]] = {}
    for name, value in namespace.items():
        if isinstance(value, Starlette) and any(
                isinstance(m.cls, type) and issubclass(m.cls, JWTSessionMiddleware)
                for m in value.user_middleware):
            found[id(value)] = (name, value, value)
    for middleware in made:
        inner = wrapped_app(middleware)
        if inner is not None:
            found[id(inner)] = (f"JWTSessionMiddleware({type(inner).__name__}(), ...)",
                                middleware, inner)
    return list(found.values())


def check_guards_answer(page: Path, namespace: dict[str, Any],
                        made: list[JWTSessionMiddleware]) -> None:
    """A guarded route of each app the page sets up answers 401 to a request without a
    session, as the guards promise; a set-up where it answers 500 (an app whose own
    handler answers the guard's error first) fails the page."""
    for name, entry, app in session_apps(namespace, made):
        route = Route(PROBE, probe)
        app.router.routes.insert(0, route)  # before any stand-in (`routes=[...]`)
        try:
            client = TestClient(entry, raise_server_exceptions=False)
            answer = client.get(PROBE, headers={"accept": "application/json"})
        finally:
            app.router.routes.remove(route)
        assert answer.status_code == 401, (
            f"{page_id(page)}: in the app {name}, a guarded route answers "
            f"{answer.status_code}, not 401, to a request without a session")


@pytest.fixture
def docs_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SESSION_SECRET", SECRET)
    monkeypatch.setenv("AUTH_SECRET", SECRET)  # docs/nextjs-interop.md
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def runs_apart(page: Path) -> bool:
    """A page with apps of the framework integrations: Django's settings and BlackSheep's
    default router are the process's, so its blocks run in a process of their own rather
    than beside the suite's apps of those frameworks."""
    return any("asgi_jwt_session.integrations." in block.source
               for block in python_blocks(page))


def run_page_apart(page: Path, directory: Path) -> None:
    """The page's blocks, in order, as one script run by a Python process of its own."""
    script = directory / f"docs_{page.stem.replace('-', '_')}.py"
    script.write_text(page_source(page))
    result = subprocess.run([sys.executable, str(script)], cwd=directory, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr.replace(str(script), page_id(page))


@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_page_runs(page: Path, docs_env: Path) -> None:
    if runs_apart(page):
        run_page_apart(page, docs_env)
    else:
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


def check_fastapi(ns: dict[str, Any]) -> None:
    """The complete app: the lifespan connects the store and creates its tables in a
    SQLite file; sign-in, an admin's role change seen on the user's next request, the
    session routes."""
    store = ns["store"]
    with TestClient(ns["app"]) as client:
        assert Path("app.db").stat().st_size > 0  # a real SQLite file, with the tables
        for user_id, role in (("ada", "ADMIN"), ("bob", "USER")):
            client.portal.call(store.create_user, user_id, role)
        assert client.get("/me").status_code == 401
        wrong = csrf_post(client, "/sign-in", json={"username": "bob", "password": "x"})
        assert wrong.status_code == 401
        signed_in = csrf_post(client, "/sign-in",
                              json={"username": "bob", "password": "correct horse"})
        assert signed_in.json() == {"id": "bob", "role": "USER"}, signed_in.text
        assert client.get("/me").json() == {"id": "bob", "role": "USER"}
        assert csrf_post(client, "/admin/users/bob/role",
                         params={"role": "ADMIN"}).status_code == 403
        bob = dict(client.cookies)

        client.cookies.clear()
        csrf_post(client, "/sign-in", json={"username": "ada", "password": "correct horse"})
        changed = csrf_post(client, "/admin/users/bob/role", params={"role": "ORG_ADMIN"})
        assert changed.status_code == 200 and changed.json()["role"] == "ORG_ADMIN"

        client.cookies.clear()
        client.cookies.update(bob)
        assert client.get("/me").json() == {"id": "bob", "role": "ORG_ADMIN"}  # next request
        refreshed = csrf_post(client, "/auth/session/refresh")
        assert refreshed.json()["session"]["user"]["role"] == "ORG_ADMIN"
        signed_out = csrf_post(client, "/auth/signout")
        assert signed_out.json() == {"session": None}
        assert "session=; " in signed_out.headers["set-cookie"]  # expired


def check_quick_reference(ns: dict[str, Any]) -> None:
    """FastAPI routes take the user as a typed parameter (``CurrentUser``,
    ``RequireRole(...)``), which documents the cookie and the 401/403 in OpenAPI."""
    from asgi_jwt_session.testing import sign_in

    assert "Depends(require_" not in (ROOT / "docs" / "quick-reference.md").read_text()
    client = TestClient(ns["api"])
    json = {"accept": "application/json"}
    assert client.get("/me", headers=json).status_code == 401
    sign_in(client, SECRET, "uma", "USER")
    assert client.get("/me").json() == {"id": "uma", "role": "USER"}
    assert client.get("/org", headers=json).status_code == 403
    assert client.get("/admin", headers=json).status_code == 403
    sign_in(client, SECRET, "ada", "ADMIN")
    assert client.get("/org").json() == {"id": "ada"}
    paths = ns["api"].openapi()["paths"]
    assert paths["/org"]["get"]["security"] == [{"sessionCookie": ["ORG_ADMIN"]}]
    for path in ("/me", "/org", "/admin"):
        assert "401" in paths[path]["get"]["responses"], path
    assert "403" in paths["/admin"]["get"]["responses"]


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "README.md": check_readme,
    "docs/quick-reference.md": check_quick_reference,
    "docs/fastapi.md": check_fastapi,
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


SET_UPS = {
    "wrapped from outside": ("app = Starlette(routes=[Route('/', home)])\n"
                             "JWTSessionMiddleware(app, secret_key=SECRET)\n", None),
    "wrapped from outside, kept": ("app = Starlette(routes=[Route('/', home)])\n"
                                   "asgi = JWTSessionMiddleware(app, secret_key=SECRET)\n", None),
    "wrapped, AuthError answered with 500 by the app": (
        "app = Starlette(exception_handlers={AuthError: lambda request, exc: "
        "PlainTextResponse('no', 500)})\n"
        "asgi = JWTSessionMiddleware(app, secret_key=SECRET)\n", 500),
    "wrapped, with the exception handlers": (
        "app = Starlette(exception_handlers=exception_handlers)\n"
        "asgi = JWTSessionMiddleware(app, secret_key=SECRET)\n", None),
    "Middleware(...)": ("app = Starlette(middleware=[Middleware(JWTSessionMiddleware,"
                        " secret_key=SECRET)])\n", None),
    "add_middleware": ("app = Starlette()\n"
                       "app.add_middleware(JWTSessionMiddleware, secret_key=SECRET)\n", None),
}


@pytest.mark.parametrize("set_up", SET_UPS)
def test_runner_fails_a_page_whose_guards_answer_500(set_up: str, docs_env: Path) -> None:
    """The runner itself: a snippet whose set-up turns a guard's 401 into a 500 fails."""
    code, status = SET_UPS[set_up]
    page = docs_env / "page.md"
    page.write_text(
        "```python\nimport os\n\nfrom starlette.applications import Starlette\n"
        "from starlette.middleware import Middleware\nfrom starlette.responses import "
        "PlainTextResponse\nfrom starlette.routing import Route\n\n"
        "from asgi_jwt_session import AuthError, JWTSessionMiddleware\n"
        "from asgi_jwt_session.responses import exception_handlers\n\n"
        "SECRET = os.environ['SESSION_SECRET']\n\n\n"
        "async def home(request):\n    return PlainTextResponse('home')\n\n\n"
        f"{code}```\n")
    if status is None:
        run_page(page)
    else:
        with pytest.raises(AssertionError, match=f"a guarded route answers {status}"):
            run_page(page)


# --- one name for the secret, readable link texts --------------------------------------

SECRET_VARIABLE = re.compile(
    r"""environ(?:\.get)?[\[(]["'](\w*SECRET\w*)|getenv\(["'](\w*SECRET\w*)"""
    r"""|\b(\w*SECRET\w*)=["']?\$\(|export (\w*SECRET\w*)|\b(\w*SECRET\w*)='[^']*' asgi""")
AUTHJS_VARIABLES = {"AUTH_SECRET", "NEXTAUTH_SECRET"}  # Auth.js's own, for its cookies
BETTERAUTH_VARIABLES = {"BETTER_AUTH_SECRET", "BETTER_AUTH_SECRETS"}  # Better Auth's own


def user_facing_files() -> list[Path]:
    return [*PAGES, *sorted((ROOT / "examples").rglob("*.md")),
            *sorted((ROOT / "examples").rglob("*.py")), *sorted((ROOT / "demo").rglob("*.py"))]


def test_the_secret_has_one_variable_name() -> None:
    """README, docs, examples and the demo read (and tell users to set) one environment
    variable for the session secret: ``SESSION_SECRET``."""
    found: dict[str, set[str]] = {}
    for path in user_facing_files():
        for match in SECRET_VARIABLE.finditer(path.read_text()):
            name = next(group for group in match.groups() if group)
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert "SESSION_SECRET" in found
    assert set(found) <= {"SESSION_SECRET", *AUTHJS_VARIABLES, *BETTERAUTH_VARIABLES}, found


LINK_TEXT = re.compile(r"(?<!!)\[`?([^\]`]+)`?\]\(([^)\s]+)\)")
FILE_NAME = re.compile(r"^[\w./-]+\.(?:md|py|png|json|ts|js|html)$")


def test_link_texts_are_titles_not_file_paths() -> None:
    """A link reads as what it leads to ("[Freshness](docs/freshness.md)"), not as a file
    path ("[docs/freshness.md](docs/freshness.md)"): in the docs site and on PyPI the
    path means nothing."""
    paths = []
    for path in [*PAGES, *sorted((ROOT / "examples").rglob("README.md"))]:
        for text in re.split(r"^\s*```.*?^\s*```", path.read_text(), flags=re.M | re.S):
            for match in LINK_TEXT.finditer(text):
                if FILE_NAME.match(match[1]):
                    paths.append(f"{path.relative_to(ROOT)}: [{match[1]}]({match[2]})")
    assert paths == [], paths
