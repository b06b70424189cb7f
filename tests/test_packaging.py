"""The package as users get it: metadata, extras, a wheel and sdist that ``twine check``
passes, and the wheel installed with its base dependencies only in a fresh venv, where a
smoke test runs (marked ``packaging``: it builds and installs, ~20-40 s, PyPI needed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

import asgi_jwt_session

REPOSITORY = "https://github.com/asgi-jwt-session/asgi-jwt-session"
ROOT = Path(__file__).parent.parent
PACKAGE = Path(asgi_jwt_session.__file__).parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]


def names(requirements: list[str]) -> set[str]:
    """Distribution names (with their extras) of requirement strings."""
    found = set()
    for requirement in requirements:
        for stop in "<>=!~;":
            requirement = requirement.split(stop, 1)[0]
        found.add(requirement.strip().lower())
    return found


# --- metadata (fast) ------------------------------------------------------------------------


def test_base_install_is_the_cookie_core() -> None:
    assert names(PROJECT["dependencies"]) == {"starlette", "jwcrypto", "orjson", "cryptography",
                                              "anyio"}


def test_extras() -> None:
    assert names(EXTRAS["store"]) == {"databases[aiosqlite]", "sqlalchemy"}
    assert names(EXTRAS["postgres"]) == {"asgi-jwt-session[store]", "asyncpg"}
    assert "asgi-jwt-session[store]" in names(EXTRAS["demo"])
    # The tests need the store, and PostgreSQL's driver.
    assert any(name.startswith("asgi-jwt-session[") and "postgres" in name
               for name in names(EXTRAS["test"]))
    for extra, requirements in EXTRAS.items():
        if extra != "test":
            assert "playwright" not in names(requirements), extra


def test_metadata_is_complete() -> None:
    for field in ("description", "license", "authors", "keywords", "classifiers",
                  "requires-python"):
        assert PROJECT.get(field), field
    assert "readme" in PROJECT["dynamic"]  # README.md, with absolute links: see below
    assert "Typing :: Typed" in PROJECT["classifiers"]
    assert PROJECT["scripts"] == {"asgi-jwt-session": "asgi_jwt_session.cli:main"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert f"## {asgi_jwt_session.__version__}" in (ROOT / "CHANGELOG.md").read_text()
    assert (PACKAGE / "py.typed").exists()
    assert (PACKAGE / "static" / "session.js").exists()


def test_role_store_without_the_store_extra_says_what_to_install() -> None:
    """Without `databases`, the core imports and works; RoleStore and the store commands
    say which extra to install."""
    code = textwrap.dedent("""
        import sys
        sys.modules["databases"] = None  # as if it were not installed
        import asgi_jwt_session
        from asgi_jwt_session.cli import main
        try:
            from asgi_jwt_session.store import RoleStore
        except ImportError as exc:
            print(exc)
        sys.exit(main(["users", "--database", "sqlite:///nowhere.db"]))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "pip install 'asgi-jwt-session[store]'" in result.stdout
    assert result.stderr.startswith("error: RoleStore needs databases")
    assert result.stderr.count("\n") == 1


def long_description() -> tuple[str, str]:
    """The description PyPI shows, and its content type, as the build makes them (the
    metadata hook of pyproject.toml applied to README.md)."""
    from hatchling.metadata.core import ProjectMetadata
    from hatchling.plugin.manager import PluginManager

    core = ProjectMetadata(str(ROOT), PluginManager()).core
    return core.readme, core.readme_content_type


def test_project_urls() -> None:
    urls = PROJECT["urls"]
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith(REPOSITORY) for url in urls.values()), urls


def test_long_description_renders_with_absolute_links() -> None:
    """On PyPI a relative link or image (docs/demo.md, the screenshots) leads nowhere:
    the description has absolute ones, to files that exist, and renders as PyPI does."""
    import re

    from readme_renderer.markdown import render

    text, content_type = long_description()
    assert content_type == "text/markdown"
    html = render(text, variant="GFM")
    assert html is not None and ">Install<" in html and "<table>" in html
    targets = re.findall(r'(?:href|src)="([^"]*)"', html)
    assert targets and all(target.startswith(("https://", "http://", "#"))
                           for target in targets), targets
    images = re.findall(r'<img[^>]* src="([^"]*)"', html)
    assert len(images) >= 3, images
    raw = REPOSITORY.replace("github.com", "raw.githubusercontent.com") + "/main/"
    blob = REPOSITORY + "/blob/main/"
    for target in targets:
        for prefix in (raw, blob):
            if target.startswith(prefix):
                path = target.removeprefix(prefix).split("#")[0]
                assert (ROOT / path).is_file(), target
    assert all(image.startswith(raw) for image in images), images
    # The README itself keeps relative links: GitHub and the docs site resolve them.
    assert "](docs/demo.md)" in (ROOT / "README.md").read_text()


# --- the built distributions (slow) ---------------------------------------------------------

SMOKE = """
import importlib.resources
import importlib.util
import subprocess
import sys

import asgi_jwt_session
from asgi_jwt_session import JWTSessionMiddleware, auth, login, require_role
from asgi_jwt_session.testing import sign_in

assert "site-packages" in asgi_jwt_session.__file__, asgi_jwt_session.__file__
for stack in ("databases", "sqlalchemy", "aiosqlite"):
    assert importlib.util.find_spec(stack) is None, stack
try:
    from asgi_jwt_session.store import RoleStore
except ImportError as exc:
    assert "asgi-jwt-session[store]" in str(exc), exc
else:
    raise AssertionError("RoleStore imported without databases")

files = importlib.resources.files("asgi_jwt_session")
assert files.joinpath("py.typed").is_file()
assert "fetch" in files.joinpath("static/session.js").read_text()

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

SECRET = "smoke-test-secret-0123456789abcdef-0123"


async def sign_in_endpoint(request):
    login(request, "ann", "ADMIN", name="Ann")
    request.session["cart"] = [1]
    return JSONResponse({})


async def me(request):
    session = auth(request)
    return JSONResponse({"id": session.user.id, "name": session.user["name"],
                         "cart": session["cart"]})


async def admin(request):
    return JSONResponse({"id": require_role(request, "ADMIN").id})


app = Starlette(routes=[Route("/login", sign_in_endpoint, methods=["POST"]),
                        Route("/me", me), Route("/admin", admin)],
                middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)])
client = TestClient(app)
response = client.post("/login")
cookie = response.cookies["session"]
assert cookie.count(".") == 4 and "Ann" not in cookie  # a JWE: encrypted
assert client.get("/me").json() == {"id": "ann", "name": "Ann", "cart": [1]}

other = TestClient(app)
sign_in(other, SECRET, user_id="bob", role="USER")
assert other.get("/admin", headers={"accept": "application/json"}).status_code == 403

script = [sys.prefix + "/bin/asgi-jwt-session"]
assert len(subprocess.run([*script, "keygen"], capture_output=True, text=True,
                          check=True).stdout.strip()) >= 43
result = subprocess.run([*script, "users", "--database", "sqlite:///x.db"],
                        capture_output=True, text=True)
assert result.returncode == 1 and "asgi-jwt-session[store]" in result.stderr, result
print("smoke test passed")
"""


def run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            cwd=cwd)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and, built from it, the wheel (as ``python -m build`` makes them)."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    return out


@pytest.mark.packaging
def test_wheel_and_sdist_pass_twine_check(dist: Path) -> None:
    version = asgi_jwt_session.__version__
    wheel = dist / f"asgi_jwt_session-{version}-py3-none-any.whl"
    sdist = dist / f"asgi_jwt_session-{version}.tar.gz"
    assert wheel.exists() and sdist.exists(), sorted(dist.iterdir())
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    metadata = zipfile.ZipFile(wheel).read(
        f"asgi_jwt_session-{version}.dist-info/METADATA").decode()
    assert f"Project-URL: Repository, {REPOSITORY}" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
    assert "](docs/" not in metadata and f"]({REPOSITORY}/blob/main/docs/" in metadata

    files = zipfile.ZipFile(wheel).namelist()
    assert "asgi_jwt_session/static/session.js" in files
    assert "asgi_jwt_session/py.typed" in files
    assert "asgi_jwt_session/testing.py" in files
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in files)
    assert not [name for name in files if name.startswith(("tests/", "benchmarks/", "demo/"))]


@pytest.mark.packaging
def test_wheel_installs_and_runs_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    [wheel] = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    # This interpreter's pip installs into the new venv: the wheel, its base
    # dependencies from the index, and httpx for Starlette's TestClient.
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
        "--disable-pip-version-check", wheel, "httpx")
    (tmp_path / "smoke.py").write_text(SMOKE)
    assert "smoke test passed" in run(python, tmp_path / "smoke.py", cwd=tmp_path)
