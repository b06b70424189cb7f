"""``JWTSessionMiddleware``: the session in an encrypted cookie, in ``scope["session"]``."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_jwt_session.config import DAY, SessionConfig
from asgi_jwt_session.cookies import CookieWriter, read_session_cookie
from asgi_jwt_session.guards import (
    AuthError,
    SessionAuthUser,
    SessionCredentials,
    auth_error_response,
    handle_auth_error,
)
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.session import Session
from asgi_jwt_session.tokens import InvalidToken, TokenCodec

logger = logging.getLogger("asgi_jwt_session")


class JWTSessionMiddleware:
    """Keeps ``request.session`` in an encrypted JWT cookie (JWE, ``dir`` + ``A256GCM``).

    A drop-in for ``starlette.middleware.sessions.SessionMiddleware``: same keyword
    names, same behaviour of ``request.session``. Reading a session does no I/O; the
    cookie is written only when the session changed, when it is ``update_age`` old, or
    when it was encrypted with a key that is no longer the newest. A cookie that fails
    to decode reads as an empty session and is expired in the response.

    It also fills ``request.user`` / ``request.auth`` for Starlette's ``@requires``, and
    answers the guards' ``AuthError`` (login redirect, 401, 403, websocket 4401/4403).
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: SecretKey,
        session_cookie: str = "session",
        max_age: int | None = 30 * DAY,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool | None = None,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        config: SessionConfig | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        if isinstance(app, Starlette):
            # Wrapped from outside, its error middleware would turn AuthError into a 500.
            app.add_exception_handler(AuthError, handle_auth_error)  # type: ignore[arg-type]
        if config is None:
            config = SessionConfig(
                session_cookie=session_cookie, max_age=max_age, path=path,
                same_site=same_site, https_only=https_only, domain=domain,
                partitioned=partitioned, **options,
            )
        self.config = config
        self.codec = TokenCodec(secret_key, leeway=config.leeway, cache_size=config.cache_size,
                                max_token_size=config.max_cookie_size)
        self.cookie = CookieWriter(
            config.session_cookie, max_age=config.max_age, path=config.path,
            domain=config.domain, same_site=config.same_site,
            partitioned=config.partitioned, max_size=config.max_cookie_size,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        config = self.config
        now = int(time.time())
        token, carried = read_session_cookie(scope["headers"], config.session_cookie)
        session = None
        renew = False
        if token is not None:
            try:
                claims = self.codec.decode(token, now=now)
                session = Session.from_claims(claims)
                if session.auth_time is not None and now > session.auth_time + config.max_lifetime:
                    raise InvalidToken("session passed its absolute lifetime")
                renew = now - claims["iat"] >= config.update_age or not self.codec.is_current(token)
            except InvalidToken as exc:
                logger.debug("session cookie refused: %s", exc)
                session = None
        elif carried:
            logger.debug("session cookie refused: incomplete chunks %s", carried)
        initial_session_was_empty = session is None
        if session is None:
            session = Session()
        scope["session"] = session
        scope["session_middleware"] = self
        scope["user"] = SessionAuthUser(session)
        scope["auth"] = SessionCredentials(session, config.roles)
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = True
            if message["type"] in ("http.response.start", "websocket.accept"):
                lines = self.set_cookie_lines(scope, session, carried, renew,
                                              initial_session_was_empty)
                if lines or session.accessed:
                    message.setdefault("headers", [])  # optional in websocket.accept
                    headers = MutableHeaders(scope=message)
                    if session.accessed:
                        headers.add_vary_header("Cookie")
                    for line in lines:
                        headers.append("set-cookie", line)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except AuthError as exc:
            if started:
                raise
            await auth_error_response(scope, exc)(scope, receive, send_wrapper)

    def set_cookie_lines(self, scope: Scope, session: Session, carried: list[str],
                         renew: bool, initial_session_was_empty: bool) -> list[str]:
        """The Set-Cookie lines this response needs (most responses need none)."""
        secure = self.is_secure(scope)
        if session.is_empty:
            if carried and (session.modified or initial_session_was_empty):
                # Cleared, or a cookie we could not read: expire every chunk it had.
                return self.cookie.delete_all(carried, secure=secure)
            return []
        if not (session.modified or renew):
            return []
        now = int(time.time())
        if session.auth_time is None:
            session.auth_time = now
        expires_at = min(now + self.config.token_lifetime,
                         session.auth_time + self.config.max_lifetime)
        token = self.codec.encode(session.to_claims(now, expires_at))
        session.issued_at = now
        session.expires_at = expires_at
        return self.cookie.set(token, secure=secure, carried=carried)

    def is_secure(self, scope: Scope) -> bool:
        if self.config.https_only is not None:
            return self.config.https_only
        return scope.get("scheme") in ("https", "wss")
