"""BetterAuthSessions remembers at most memo_size rows, the least recently loaded
dropped first (no database needed: a stand-in for Better Auth's tables)."""

from __future__ import annotations

from typing import Any

import anyio

from asgi_jwt_session.betterauth_sessions import BetterAuthSessions

SECRET = "better-auth-memo-" + "Vq8r" * 8


class Tables:
    """Answers every read with "no such session", counting the reads."""

    queries = 0

    async def session(self, *, session_id: str | None = None,
                      token: str | None = None) -> Any:
        self.queries += 1
        return None


def test_the_memo_keeps_the_newest_rows_up_to_its_size() -> None:
    tables = Tables()
    sessions = BetterAuthSessions(tables, secret_key=SECRET, memo_size=2)  # type: ignore[arg-type]

    async def main() -> None:
        for key in ("a", "b", "a", "c"):  # "a" reloaded (forced): the newest again
            await sessions.lookup(key, None, 1000, force=True)
        assert list(sessions.memo) == ["a", "c"]
        await sessions.lookup("a", None, 1001)  # remembered: no read
        assert tables.queries == 4

    anyio.run(main)


def test_a_memo_of_size_zero_keeps_nothing() -> None:
    tables = Tables()
    sessions = BetterAuthSessions(tables, secret_key=SECRET, memo_size=0)  # type: ignore[arg-type]

    async def main() -> None:
        await sessions.lookup("a", None, 1000)
        await sessions.lookup("a", None, 1000)
        assert not sessions.memo and tables.queries == 2

    anyio.run(main)
