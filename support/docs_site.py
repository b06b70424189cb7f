"""What ``mkdocs.yml`` plugs in to build the site from the files as they are on GitHub.

- ``on_files`` / ``on_page_markdown`` (MkDocs hooks): ``README.md`` is the home page
  (when ``docs/index.md`` does not exist), and a link that leaves ``docs/`` for a file of
  the repository (``../benchmarks/results/latest.png``, README's ``docs/demo.md``) points
  at that file in the site. So the links work both on GitHub and in the site, and
  ``mkdocs build --strict`` checks every one of them.
- ``SphinxRoles`` (a griffe extension for mkdocstrings): the docstrings' Sphinx roles
  (``:class:`~asgi_jwt_session.Session```) render as code (``Session``).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
REPO_FILES = "repo"  # where files from outside docs/ go in the site
# A markdown link or image target: ](target) or ](target "title"), outside code.
LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?(?:\s+\"[^\"]*\")?\))")
FENCE = re.compile(r"^\s*(```|~~~)")
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([\w.]+)`")
LITERAL = re.compile(r"(\S)::$", re.MULTILINE)  # reST's "text::" before a code block


def source_of(page_file: File) -> Path:
    return Path(page_file.abs_src_path or "")


def outside_code(markdown: str) -> list[tuple[bool, str]]:
    """The markdown in pieces: (is prose, text), fenced code blocks apart."""
    pieces: list[tuple[bool, str]] = []
    in_code = False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            pieces.append((False, line))
            in_code = not in_code
        else:
            pieces.append((not in_code, line))
    return pieces


def target_of(link: str, source: Path) -> Path | None:
    """The repository file a relative link from ``source`` names, or ``None``."""
    if re.match(r"[a-z][a-z0-9+.-]*:", link) or link.startswith("/"):
        return None  # a URL, or a site-absolute path
    target = (source.parent / link).resolve()
    if ROOT not in target.parents or not target.is_file():
        return None
    return target


def site_path(target: Path, docs_dir: Path) -> str:
    """Where a repository file is in the site (its path under ``docs_dir``)."""
    if docs_dir in target.parents:
        return target.relative_to(docs_dir).as_posix()
    return f"{REPO_FILES}/{target.relative_to(ROOT).as_posix()}"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    docs_dir = Path(config.docs_dir).resolve()
    if files.get_file_from_path("index.md") is None:
        files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / "README.md")))
    pending = list(files.documentation_pages())
    while pending:  # a page brought in (examples/README.md) may link to more
        source = source_of(pending.pop())
        for is_prose, text in outside_code(source.read_text()):
            if not is_prose:
                continue
            for match in LINK.finditer(text):
                target = target_of(match[2], source)
                if target is None or docs_dir in target.parents:
                    continue
                uri = site_path(target, docs_dir)
                if files.get_file_from_path(uri) is None:
                    added = File.generated(config, uri, abs_src_path=str(target))
                    files.append(added)
                    if added.is_documentation_page():
                        pending.append(added)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files,
                     **kwargs: Any) -> str:
    docs_dir = Path(config.docs_dir).resolve()
    source = source_of(page.file)
    page_dir = posixpath.dirname(page.file.src_uri)

    def relink(match: re.Match[str]) -> str:
        target = target_of(match[2], source)
        if target is None:
            return match[0]
        link = posixpath.relpath(site_path(target, docs_dir), page_dir or ".")
        return f"{match[1]}{link}{match[3]}"

    return "".join(LINK.sub(relink, text) if is_prose else text
                   for is_prose, text in outside_code(markdown))


def plain_role(match: re.Match[str]) -> str:
    short, name = match[1], match[2]
    return f"``{name.rsplit('.', 1)[-1] if short else name}``"


class SphinxRoles(griffe.Extension):
    """Docstrings' ``:class:`x``` and friends as inline code, ``text::`` as ``text:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = ROLE.sub(plain_role, obj.docstring.value)
            obj.docstring.value = LITERAL.sub(r"\1:", value)
