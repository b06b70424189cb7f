"""Better Auth sessions checked against its tables: revocation, bans and role changes
seen without a new sign-in, and sessions without a cookie cache.

- :class:`BetterAuthSessions` is a freshness hook (``freshness=`` of the middleware):
  a cookie-cache session is checked against Better Auth's ``session`` and ``user``
  rows when a feed says its user changed after the cache was written (within a second
  with :class:`~asgi_jwt_session.freshness.PostgresVersionFeed` and the trigger of
  :func:`~asgi_jwt_session.store.betterauth.notify_trigger_sql`), or when it is
  ``revalidate_after`` seconds old. A deleted, expired or banned session signs out; a
  new role applies at once. One query per session, single flight, remembered.
- :class:`BetterAuthTokenSessions` (an ASGI middleware inside the session middleware)
  reads the session of a request that carries only Better Auth's signed
  ``session_token`` (cookie cache off, or expired) from the tables: one query per
  session, single flight, remembered for ``cache_for`` seconds (Better Auth's
  ``cookieCache.maxAge``), or until the feed announces a change.

With the cookie cache on, an ordinary request makes no query.
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

import anyio

from asgi_jwt_session.betterauth import BETTER_AUTH_ROLES, session_role
from asgi_jwt_session.codec import Decoded, LRUCache
from asgi_jwt_session.context import SCOPE_KEY
from asgi_jwt_session.errors import InvalidToken, StoreUnavailable
from asgi_jwt_session.freshness.flight import SingleFlight
from asgi_jwt_session.freshness.policy import UNAVAILABLE
from asgi_jwt_session.keys import secret_strings
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.session import Actor, Session
from asgi_jwt_session.users import SessionAuth

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from asgi_jwt_session.freshness.feed import Feed
    from asgi_jwt_session.store.betterauth import BetterAuthRow, BetterAuthTables

__all__ = ["BetterAuthSessions", "BetterAuthTokenSessions"]

logger = logging.getLogger("asgi_jwt_session.betterauth")


@dataclass(frozen=True, slots=True)
class Loaded:
    row: BetterAuthRow | None
    at: int  # when it was read, epoch seconds (the request's clock)
    ms: int  # the same, in milliseconds (compared with the feed's change times)


class BetterAuthSessions:
    """Better Auth's tables behind the sessions read from its cookie cache.

    - ``tables``: a :class:`~asgi_jwt_session.store.betterauth.BetterAuthTables`.
    - ``secret_key``: Better Auth's secret (the current one first), to verify the
      signed ``session_token`` cookie.
    - ``revalidate_after``: seconds after the cookie cache was written at which its
      session is checked again (``None``, the default: only when the feed says so;
      Better Auth itself trusts the cache until its ``maxAge``).
    - ``feed``: a version feed whose versions are change times in epoch milliseconds
      (the trigger's); started and stopped with the app's lifespan. A feed made with
      ``max_age=None`` keeps changes for ``cache_for`` (or ``revalidate_after``) plus a
      minute.
    - ``cache_for``: seconds a row read for a session is trusted (Better Auth's
      ``cookieCache.maxAge``, 300 by default).
    - ``on_store_error``: while the tables cannot be read, ``"keep"`` the session as
      the cookie has it, or ``"signout"``.
    - ``default_role``, ``impersonator_role``, ``roles``: as for
      :class:`~asgi_jwt_session.betterauth.BetterAuthFormat`.
    """

    def __init__(
        self,
        tables: BetterAuthTables,
        *,
        secret_key: str | Sequence[str],
        revalidate_after: int | None = None,
        feed: Feed | None = None,
        cache_for: int = 300,
        on_store_error: Literal["keep", "signout"] = "keep",
        timeout: float = 5.0,
        memo_size: int = 65536,
        default_role: str = "user",
        impersonator_role: str = "admin",
        roles: RoleHierarchy = BETTER_AUTH_ROLES,
    ) -> None:
        secrets = secret_strings(secret_key, "secret_key")
        if revalidate_after is not None and revalidate_after <= 0:
            raise ValueError("revalidate_after must be positive, or None")
        if cache_for <= 0 or timeout <= 0 or memo_size < 0:
            raise ValueError("cache_for and timeout must be positive, memo_size not negative")
        if on_store_error not in ("keep", "signout"):
            raise ValueError("on_store_error must be 'keep' or 'signout'")
        self.tables = tables
        self.mac_key = secrets[0].encode()  # Better Auth signs cookies with the current one
        self.revalidate_after = revalidate_after
        self.feed = feed
        keep_for = getattr(feed, "keep_for", None)
        if callable(keep_for):
            # A change matters while a cookie cache or a row read before it may be used:
            # up to cache_for (or revalidate_after) seconds, plus a minute for clocks.
            keep_for(max(cache_for, revalidate_after or 0) + 60)
        self.cache_for = cache_for
        self.on_store_error = on_store_error
        self.timeout = timeout
        self.default_role = default_role
        self.impersonator_role = impersonator_role
        self.roles = roles
        self.memo: LRUCache[str, Loaded] = LRUCache(memo_size)  # by session id, or "t:" token
        self.flight: SingleFlight[Loaded] = SingleFlight(self.load)

    @property
    def queries(self) -> int:
        """How many reads of the tables this object started."""
        return self.flight.calls

    def changed_since(self, user_id: str, ms: int) -> bool:
        """Whether the feed knows a change of ``user_id`` after ``ms``."""
        newest = self.feed.newest(user_id) if self.feed is not None else None
        return newest is not None and newest > ms

    # -- the freshness hook ---------------------------------------------------------------

    def is_stale(self, session: Session, now: int) -> bool:
        user = session.user
        if user is None:
            return False
        checked = session.checked_at
        if checked is None:
            return True
        if self.changed_since(user.id, checked * 1000):
            return True
        actor = session.actor
        if actor is not None and self.changed_since(actor.user.id, checked * 1000):
            return True
        after = self.revalidate_after
        return after is not None and now - checked >= after

    async def revalidate(self, session: Session, now: int) -> None:
        try:
            await self.check(session, now, force=False)
        except UNAVAILABLE as exc:
            logger.warning("Better Auth tables unavailable (%s): %s", self.on_store_error, exc)
            if self.on_store_error == "signout":
                session.logout()

    async def refresh(self, session: Session, now: int) -> None:
        try:
            await self.check(session, now, force=True)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Better Auth tables unavailable: {exc!r}") from exc

    async def issued(self, scope: Scope, session: Session, first: bool) -> None:
        return None  # Better Auth issues its sessions itself

    async def ended(self, scope: Scope, user_id: str, session_id: str | None,
                    actor: Actor | None) -> None:
        # The app signed the session out for this response only: ending it everywhere
        # is Better Auth's (its signOut or revokeSession), these tables are read-only.
        logger.debug("Better Auth session %s of %r signed out here only", session_id, user_id)

    async def check(self, session: Session, now: int, *, force: bool) -> None:
        user = session.user
        if user is None:
            return
        if session.jti is None:
            session.logout()
            return
        loaded = await self.lookup(session.jti, user.id, now, force=force)
        self.apply(session, loaded.row, now)

    def apply(self, session: Session, row: BetterAuthRow | None, now: int) -> None:
        """Sign out a session whose row is gone, expired or banned; adopt a new role."""
        user = session.user
        if user is None:
            return
        moment = datetime.fromtimestamp(now, UTC)
        actor = session.actor
        if (row is None or row.user_id != user.id or row.expires_at <= moment
                or row.is_banned(moment)
                or (actor is not None and row.impersonated_by != actor.user.id)):
            session.logout()
            return
        role = session_role(row.role, self.roles, self.default_role)
        if role != user.role:
            if actor is not None:  # the impersonation was allowed for the role it had
                session.logout()
            else:
                session.set_role(role, checked_at=now)

    async def lookup(self, key: str, user_id: str | None, now: int, *, force: bool = False,
                     token: str | None = None) -> Loaded:
        """The row for a session id (or a token, ``key`` ``"t:<token>"``), remembered
        for ``cache_for`` seconds unless the feed knows a later change."""
        loaded = self.memo.get(key)
        if (force or loaded is None or now - loaded.at >= self.cache_for
                or (user_id is not None and self.changed_since(user_id, loaded.ms))
                or (loaded.row is not None and self.changed_since(loaded.row.user_id,
                                                                  loaded.ms))):
            loaded = await self.flight(key, now, token)
        return loaded

    async def load(self, key: str, now: int, token: str | None) -> Loaded:
        ms = int(time.time() * 1000)  # before the read: a change after it reloads
        with anyio.fail_after(self.timeout):
            if token is not None:
                row = await self.tables.session(token=token)
            else:
                row = await self.tables.session(session_id=key)
        loaded = Loaded(row, now, ms)
        self.memo.pop(key, None)  # a reload is the newest entry
        self.memo.store(key, loaded)
        return loaded

    # -- the session_token path -----------------------------------------------------------

    def unsign(self, value: str) -> str | None:
        """The token of a signed ``session_token`` cookie value, or ``None``."""
        value = unquote(value)
        token, dot, signature = value.rpartition(".")
        if not dot or not token or len(signature) != 44 or not signature.endswith("="):
            return None
        try:
            given = base64.b64decode(signature, validate=True)
        except ValueError:
            return None
        expected = hmac.digest(self.mac_key, token.encode(), "sha256")
        return token if hmac.compare_digest(given, expected) else None

    async def from_token(self, value: str, now: int) -> Session | None:
        """The signed-in session a ``session_token`` cookie names, read from the tables
        (remembered); ``None`` when it is forged, gone, expired or banned."""
        token = self.unsign(value)
        if token is None:
            return None
        try:
            loaded = await self.lookup("t:" + token, None, now, token=token)
        except UNAVAILABLE as exc:
            logger.warning("Better Auth tables unavailable, no session: %s", exc)
            return None
        row = loaded.row
        moment = datetime.fromtimestamp(now, UTC)
        if row is None or row.expires_at <= moment or row.is_banned(moment):
            return None
        claims: dict[str, Any] = {
            "sub": row.user_id,
            "role": session_role(row.role, self.roles, self.default_role),
            "jti": row.session_id,
            "iat": loaded.at,
            "chk": loaded.at,
            "exp": min(int(row.expires_at.timestamp()), loaded.at + self.cache_for),
        }
        for name in ("name", "email"):
            if getattr(row, name) is not None:
                claims[name] = getattr(row, name)
        if row.impersonated_by is not None:
            claims["act"] = {"sub": row.impersonated_by, "role": self.impersonator_role}
        try:
            return Session.from_decoded(Decoded(claims))  # the constructor checks the types
        except InvalidToken:
            return None


class BetterAuthTokenSessions:
    """ASGI middleware, inside the session middleware: a request with no session from
    the cookie cache but Better Auth's signed ``session_token`` cookie gets its session
    from Better Auth's tables (see :meth:`BetterAuthSessions.from_token`).

    ``Middleware(BetterAuthTokenSessions, sessions=sessions)`` after
    ``Middleware(JWTSessionMiddleware, ..., freshness=sessions)``.
    """

    def __init__(self, app: ASGIApp, sessions: BetterAuthSessions, *,
                 cookie_prefix: str = "better-auth") -> None:
        self.app = app
        self.sessions = sessions
        name = f"{cookie_prefix}.session_token"
        self.names = (f"__Secure-{name}", name)
        # In both names: a Cookie header without it is not split.
        self.needle = name.encode("latin-1", "replace")

    def token_cookie(self, scope: Scope) -> str | None:
        found: dict[str, str] = {}
        for key, value in scope["headers"]:
            if key == b"cookie" and self.needle in value:
                for part in value.decode("latin-1").split(";"):
                    name, eq, cookie = part.strip().partition("=")
                    if eq and name in self.names:
                        found.setdefault(name, cookie)
        return next((found[name] for name in self.names if name in found), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            session = scope.get("session")
            if isinstance(session, Session) and session.user is None and session.is_empty:
                value = self.token_cookie(scope)
                if value is not None:
                    found = await self.sessions.from_token(value, int(time.time()))
                    if found is not None:
                        scope["session"] = found
                        scope["user"] = scope["auth"] = SessionAuth(
                            found, scope[SCOPE_KEY].config.roles)
        await self.app(scope, receive, send)
