"""``JWTSessionMiddleware``: the session in an encrypted cookie, in ``scope["session"]``."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_jwt_session.authjs import (
    AUTHJS_CHUNK_SIZE,
    AuthJSCodec,
    AuthJSSessionCodec,
    authjs_cookie_name,
)
from asgi_jwt_session.config import DAY, SessionConfig
from asgi_jwt_session.cookies import CookieWriter, read_session_cookie
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.guards import (
    AuthError,
    SessionAuthUser,
    SessionCredentials,
    auth_error_response,
    handle_auth_error,
)
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.session import Session
from asgi_jwt_session.tokens import InvalidToken, SessionCodec, TokenCodec

logger = logging.getLogger("asgi_jwt_session")


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
        config: SessionConfig | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        if config is not None and options:
            raise TypeError(f"options go in config=SessionConfig(...), not also {sorted(options)}")
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
        # (cookie name, codec, writer) for each cookie the session may live in: one for
        # this package's tokens; Auth.js's https and http names (each its own key).
        self.cookies: list[tuple[str, SessionCodec, CookieWriter]] = []
        if config.format == "authjs":
            for secure in (True, False):
                name = authjs_cookie_name(secure)
                codec: SessionCodec = AuthJSSessionCodec(
                    AuthJSCodec(secret_key, salt=name,  # type: ignore[arg-type]
                                role_claim=config.role_claim, max_age=config.token_lifetime,
                                leeway=config.leeway),
                    cache_size=config.cache_size, default_role=config.default_role,
                    max_token_size=config.max_cookie_size)
                self.cookies.append((name, codec, self.writer(name, AUTHJS_CHUNK_SIZE)))
        else:
            self.codec = TokenCodec(secret_key, leeway=config.leeway,
                                    cache_size=config.cache_size,
                                    max_token_size=config.max_cookie_size)
            name = config.session_cookie
            self.cookies.append((name, self.codec, self.writer(name)))
        self.writable = config.format == "jwe" or config.authjs_write
        self.renew_after = config.renew_after
        self.freshness = Freshness.from_config(config)  # None without a store or loader

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
        scope["session_middleware"] = self
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

    def read_cookie(self, scope: Scope) -> tuple[str, SessionCodec, str | None, list[str]]:
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
        if not self.writable or (
            # Nothing to expire: no session cookie, or one that stays (not cleared).
            not (carried and (session.modified or initial_session_was_empty)) if empty
            # Nothing to write: unchanged and not due for renewal.
            else not (session.modified or renew)
        ):
            return []
        secure = self.is_secure(scope)
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
        expires_at = self.expires_for(session, now)
        token = codec.encode(session.to_claims(now, expires_at))
        session.issued_at = now
        session.expires_at = expires_at
        return cookie.set(token, secure=secure, carried=carried, max_age=expires_at - now)

    def expires_for(self, session: Session, now: int) -> int:
        """When a token issued for ``session`` at ``now`` expires: ``max_age`` on, capped
        by the absolute lifetime from sign-in."""
        auth_time = session.auth_time if session.auth_time is not None else now
        return min(now + self.config.token_lifetime, auth_time + self.config.max_lifetime)

    def is_secure(self, scope: Scope) -> bool:
        config = self.config
        if config.https_only is not None:
            return config.https_only
        # Browsers drop SameSite=None and Partitioned cookies that are not Secure.
        if config.same_site == "none" or config.partitioned:
            return True
        return scope.get("scheme") in ("https", "wss")
