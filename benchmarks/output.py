"""Where results go: an untracked folder unless ``--publish`` asks for the tracked copy
(``benchmarks/results/``, and for the suite the results section of
``docs/benchmarks.md``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "benchmarks" / "results"
LOCAL = PUBLISHED / "tmp"  # ignored by git
DOCS = ROOT / "docs" / "benchmarks.md"


def add_json_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--json PATH`` (default ``benchmarks/results/tmp/NAME``) or ``--publish``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--json", type=Path, metavar="PATH",
                       help=f"write the results here (default: {LOCAL.relative_to(ROOT)}/{name})")
    where.add_argument("--publish", action="store_true",
                       help=f"write the tracked {PUBLISHED.relative_to(ROOT)}/{name}")


def json_path(args: argparse.Namespace, name: str) -> Path:
    """The file ``add_json_arguments``' options chose."""
    if args.publish:
        return PUBLISHED / name
    path: Path | None = args.json
    return path if path is not None else LOCAL / name


def write_json(data: Any, path: Path) -> None:
    """``data`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def update_docs_section(marker: str, section: str, docs: Path = DOCS) -> bool:
    """Replace the text between ``<!-- MARKER:start -->`` and ``<!-- MARKER:end -->`` in
    ``docs``; False (and nothing written) when the markers are missing."""
    if not docs.exists():
        return False
    start_mark, end_mark = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = docs.read_text()
    start, end = text.find(start_mark), text.find(end_mark)
    if start < 0 or end < start:
        return False
    docs.write_text(text[: start + len(start_mark)] + "\n\n" + section.rstrip() + "\n\n"
                    + text[end:])
    return True


def report(args: argparse.Namespace, name: str, results: Any, text: str,
           marker: str) -> Path:
    """Print ``text``, write ``results`` where ``add_json_arguments``' options chose
    (``name`` by default) and, with ``--publish``, the docs section ``marker``; print
    and return the JSON file's path."""
    print(text)
    path = json_path(args, name)
    write_json(results, path)
    if args.publish:
        update_docs_section(marker, text)
    print(f"results: {path}")
    return path
