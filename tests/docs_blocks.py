"""The Python code blocks of README.md and docs/*.md, for tests/test_docs.py.

A fenced block whose language is ``python`` is run; any other language (``py``,
``pycon``, ``text``, ``sh``, ...) is not. A ``python`` block right after the line
``<!-- not run: <reason> -->`` is not run either: the marker is visible in the markdown
source and says why. Fences may be indented (a block inside a list item).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)[^\n]*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    not_run: str | None  # the marker's reason, or None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced code block of ``page``, in order."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""
        ):
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1  # the closing fence
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = NOT_RUN.match(previous)
        found.append(Block(page, start + 1, opening["lang"], "\n".join(body) + "\n",
                           marker["reason"] if marker else None))
    return found


def python_blocks(page: Path) -> list[Block]:
    """The blocks of ``page`` that run: language ``python``, no ``not run`` marker."""
    return [b for b in blocks(page) if b.lang == "python" and b.not_run is None]


def page_source(page: Path) -> str:
    """The runnable blocks of a page as one module, each at its own line numbers of the
    markdown file (blank lines in between), so an error points into the page."""
    out: list[str] = []
    for block in python_blocks(page):
        out.extend([""] * (block.line - len(out)))
        out.extend(block.source.splitlines())
    return "\n".join(out) + "\n"
