"""The check that asyncio-only parts (the `databases` role store, the PostgreSQL and
Redis feeds) make before they start: under trio they fail at once with what to use
instead, not with asyncio's bare "no running event loop"."""

from __future__ import annotations

import asyncio

__all__ = ["require_asyncio"]

TRIO_INSTEAD = (
    "under trio, give Freshness a user loader (async user_id -> (role, version) or "
    "None) on a trio-capable driver, with the in-process VersionFeed (docs/architecture.md, "
    "'asyncio and trio')"
)


def require_asyncio(what: str) -> None:
    """Raise ``RuntimeError`` naming ``what`` when no asyncio event loop runs here (the
    app runs under trio, or no event loop at all)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"{what} runs under asyncio only, and no asyncio event loop "
                           f"runs here: {TRIO_INSTEAD}") from None
