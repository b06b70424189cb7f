"""``JWTSessionMiddleware``: the session in an encrypted cookie, in ``scope["session"]``."""

from __future__ import annotations

import logging
import time
from typing import Literal

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_jwt_session.codec import Codec, SessionFormat
from asgi_jwt_session.config import DAY, SessionConfig
from asgi_jwt_session.context import SCOPE_KEY, FreshnessHook, SessionContext
from asgi_jwt_session.cookies import CookieWriter, read_session_cookie
from asgi_jwt_session.errors import AuthError, InvalidToken
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.responses import auth_error_response
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.session import Session
from asgi_jwt_session.tokens import TokenFormat
from asgi_jwt_session.users import SessionAuthUser, SessionCredentials

__all__ = ["JWTSessionMiddleware"]

logger = logging.getLogger("asgi_jwt_session")

DEFAULT_ROLES = RoleHierarchy()
DEFAULT_CONFIG = SessionConfig()


def add_vary_cookie(headers: list[tuple[bytes, bytes]]) -> None:
    """Add ``Cookie`` to the response's ``Vary`` header (once)."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"cookie" not in value.lower() and value.strip() != b"*":
                headers[index] = (name, value + b", Cookie")
            return
    headers.append((b"vary", b"Cookie"))


class JWTSessionMiddleware:
    """Keeps ``request.session`` in an encrypted JWT cookie (JWE, ``dir`` + ``A256GCM``).

    A drop-in for ``starlette.middleware.sessions.SessionMiddleware``: same keyword
    names, same behaviour of ``request.session``. Reading a session does no I/O; the
    cookie is written only when the session changed, when it is ``update_age`` old, or
    when it was encrypted with a key that is no longer the newest. A cookie that fails
    to decode reads as an empty session and is expired in the response.

    The cookie, token and renewal options are :class:`SessionConfig`'s (pass them as
    keywords, or one ``config=``). Features plug in as objects: ``format`` (the wire
    format; this package's tokens by default, or
    :class:`~asgi_jwt_session.authjs.AuthJSFormat`) and ``freshness`` (a
    :class:`~asgi_jwt_session.freshness.Freshness`: role changes and revocations that
    take effect).

    It also fills ``request.user`` / ``request.auth`` for Starlette's ``@requires``, and
    answers the guards' ``AuthError`` (login redirect, 401, 403, websocket 4401/4403).
    """

    def __init__(
        self,
        app: ASGIApp,
        /,
        secret_key: SecretKey,
        session_cookie: str = "session",
        max_age: int | None = 30 * DAY,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool | None = None,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        update_age: int = DAY,
        max_lifetime: int = 90 * DAY,
        leeway: int = 10,
        cache_size: int = 4096,
        max_cookie_size: int = 12 * 1024,
        login_url: str = "/login",
        roles: RoleHierarchy = DEFAULT_ROLES,
        format: SessionFormat | None = None,
        freshness: FreshnessHook | None = None,
        config: SessionConfig | None = None,
    ) -> None:
        self.app = app
        options = dict(
            session_cookie=session_cookie, max_age=max_age, path=path, same_site=same_site,
            https_only=https_only, domain=domain, partitioned=partitioned,
            update_age=update_age, max_lifetime=max_lifetime, leeway=leeway,
            cache_size=cache_size, max_cookie_size=max_cookie_size, login_url=login_url,
            roles=roles,
        )
        if config is None:
            config = SessionConfig(**options)  # type: ignore[arg-type]
        else:
            given = sorted(name for name, value in options.items()
                           if value != getattr(DEFAULT_CONFIG, name))
            if given:
                raise TypeError(f"options go in config=SessionConfig(...), not also {given}")
        self.config = config
        self.format: SessionFormat = format if format is not None else TokenFormat()
        self.freshness = freshness
        # (cookie name, codec, writer) for each cookie the session may live in, https
        # name first (Auth.js has one of each, each its own key).
        self.cookies: list[tuple[str, Codec, CookieWriter]] = []
        for name, wire in self.format.cookies(secret_key, config.session_cookie):
            codec = Codec(wire, leeway=config.leeway, cache_size=config.cache_size,
                          max_token_size=config.max_cookie_size)
            self.cookies.append((name, codec, self.writer(name, self.format.chunk_size)))
        self.context = SessionContext(config, self.format.writable, freshness)
        self.renew_after = config.renew_after
        if isinstance(app, Starlette) and AuthError not in app.exception_handlers:
            logger.warning(
                "JWTSessionMiddleware wraps a Starlette app from outside: its error "
                "middleware answers the guards' AuthError with 500. Add "
                "exception_handlers=exception_handlers (asgi_jwt_session.responses) to "
                "the app, or install the middleware with Middleware(...)")

    def writer(self, name: str, chunk_size: int | None = None) -> CookieWriter:
        config = self.config
        return CookieWriter(name, max_age=config.max_age, path=config.path,
                            domain=config.domain, same_site=config.same_site,
                            partitioned=config.partitioned, max_size=config.max_cookie_size,
                            chunk_size=chunk_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        config = self.config
        now = int(time.time())
        name, codec, token, carried = self.read_cookie(scope)
        session = None
        renew = False
        if token is not None:
            try:
                session = Session.from_decoded(codec.decode_cached(token, now))
                if session.auth_time is not None and now > session.auth_time + config.max_lifetime:
                    raise InvalidToken("session passed its absolute lifetime")
                issued_at = session.issued_at or 0
                renew = now - issued_at >= self.renew_after or not codec.is_current(token)
            except InvalidToken as exc:
                logger.debug("session cookie %s refused: %s", name, exc)
                session = None
        elif carried:
            logger.debug("session cookie %s refused: incomplete chunks %s", name, carried)
        initial_session_was_empty = session is None
        if session is None:
            session = Session()
        elif self.freshness is not None and self.freshness.is_stale(session, now):
            await self.freshness.revalidate(session, now)  # the only I/O, and rare
        scope["session"] = session
        scope[SCOPE_KEY] = self.context
        scope["user"] = SessionAuthUser(session)
        scope["auth"] = SessionCredentials(session, config.roles)
        started = False
        # Work the response may need whatever the app does: renew, or expire a bad cookie.
        pending = renew or (initial_session_was_empty and bool(carried))

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = True
            if (pending or session.accessed) and message["type"] in (
                    "http.response.start", "websocket.accept"):
                lines = self.set_cookie_lines(scope, session, name, carried, renew,
                                              initial_session_was_empty)
                if lines or session.accessed:
                    # "headers" is optional in websocket.accept, and may be any iterable.
                    headers = message["headers"] = list(message.get("headers", ()))
                    add_vary_cookie(headers)  # a Set-Cookie is per user: never share it
                    headers.extend((b"set-cookie", line.encode("latin-1")) for line in lines)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except AuthError as exc:
            if started:
                raise
            await auth_error_response(scope, exc)(scope, receive, send_wrapper)

    def read_cookie(self, scope: Scope) -> tuple[str, Codec, str | None, list[str]]:
        """The first session cookie the request carries: name, codec, token, chunk names."""
        for name, codec, _ in self.cookies:
            token, carried = read_session_cookie(scope["headers"], name)
            if carried:
                return name, codec, token, carried
        return name, codec, None, []

    def set_cookie_lines(self, scope: Scope, session: Session, name: str, carried: list[str],
                         renew: bool, initial_session_was_empty: bool) -> list[str]:
        """The Set-Cookie lines this response needs (most responses need none)."""
        empty = session.is_empty
        if not self.context.writable or (
            # Nothing to expire: no session cookie, or one that stays (not cleared).
            not (carried and (session.modified or initial_session_was_empty)) if empty
            # Nothing to write: unchanged and not due for renewal.
            else not (session.modified or renew)
        ):
            return []
        secure = self.context.is_secure(scope)
        if carried:  # write back where the session came from (Auth.js: https or http name)
            _, codec, cookie = next(entry for entry in self.cookies if entry[0] == name)
            secure = secure or name.startswith("__Secure-")
        else:
            _, codec, cookie = self.cookies[0] if secure else self.cookies[-1]
        if empty:  # cleared, or a cookie we could not read: expire every chunk it had
            return cookie.delete_all(carried, secure=secure)
        now = int(time.time())
        if session.auth_time is None:
            session.auth_time = now
        expires_at = self.context.expires_for(session, now)
        token = codec.encode(session.to_claims(now, expires_at))
        session.issued_at = now
        session.expires_at = expires_at
        return cookie.set(token, secure=secure, carried=carried, max_age=expires_at - now)

    def expires_for(self, session: Session, now: int) -> int:
        """When a token issued for ``session`` at ``now`` expires."""
        return self.context.expires_for(session, now)

    def is_secure(self, scope: Scope) -> bool:
        """Whether a cookie set in answer to this request gets ``Secure``."""
        return self.context.is_secure(scope)
