"""The docs site (mkdocs.yml, MkDocs Material): ``mkdocs build --strict`` passes, so every
link between the pages, to their anchors and to the repository's files resolves; the home
page is README.md, the benchmark chart and the API reference are in it.

Marked ``docs``: ``make test-fast`` leaves it out (it needs the ``docs`` extra).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    return site


def test_build_is_strict_and_leaves_the_tree_clean(site: Path) -> None:
    assert (site / "index.html").exists()
    assert not (ROOT / "site").exists()


def test_home_page_is_the_readme(site: Path) -> None:
    home = (site / "index.html").read_text()
    title = ROOT.joinpath("README.md").read_text().splitlines()[0].lstrip("# ")
    assert title in home
    assert 'href="freshness/"' in home  # README's docs/freshness.md, as a site link


def test_benchmark_chart_is_served(site: Path) -> None:
    page = (site / "benchmarks" / "index.html").read_text()
    assert "repo/benchmarks/results/latest.png" in page
    assert (site / "repo" / "benchmarks" / "results" / "latest.png").stat().st_size > 0


def test_every_docs_page_is_built(site: Path) -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert (site / page.stem / "index.html").exists(), page.name


def test_api_reference_from_docstrings(site: Path) -> None:
    reference = (site / "reference" / "index.html").read_text()
    for name in ("JWTSessionMiddleware", "session_router", "RequireRole", "SignedIn",
                 "update_user_role", "AuthJSFormat", "sign_in"):
        assert name in reference, name
    assert ":class:`" not in reference  # Sphinx roles render as code


def test_examples_are_in_the_site(site: Path) -> None:
    assert (site / "repo" / "examples" / "fastapi_app" / "index.html").exists()  # README.md
