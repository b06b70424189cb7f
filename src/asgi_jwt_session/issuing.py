"""What a response carries for its session: the Set-Cookie lines that write, renew or
expire the cookie, and ``Vary: Cookie``."""

from __future__ import annotations

import logging
import time

import orjson
from starlette.types import Message, Scope

from asgi_jwt_session.codec import Codec, Decoded
from asgi_jwt_session.config import SessionConfig
from asgi_jwt_session.context import SessionContext
from asgi_jwt_session.cookies import CookieWriter
from asgi_jwt_session.errors import SessionTooLarge
from asgi_jwt_session.session import Session

__all__ = ["CookieIssuer", "changed_content", "cookie_writer", "vary_on_cookie"]

logger = logging.getLogger("asgi_jwt_session")

VARY_COOKIE = (b"vary", b"Cookie")


def cookie_writer(config: SessionConfig, name: str, chunk_size: int | None = None
                  ) -> CookieWriter:
    """The writer of the session cookie ``name`` with ``config``'s attributes."""
    return CookieWriter(name, max_age=config.max_age, path=config.path,
                        domain=config.domain, same_site=config.same_site,
                        partitioned=config.partitioned, max_size=config.max_cookie_size,
                        chunk_size=chunk_size)


def vary_on_cookie(message: Message) -> list[tuple[bytes, bytes]]:
    """Give the response start ``message`` its own copy of its headers (``headers`` is
    optional in ``websocket.accept``, and may be any iterable), with ``Cookie`` in its
    ``Vary`` header (once); return that list, for more headers to go in. A header pair
    may be any two-item iterable the ASGI spec allows (a tuple or a list)."""
    headers = message["headers"] = [*message.get("headers", ())]  # (no list() call)
    # Looked for without enumerate(), which every response would pay for; found (rare:
    # the app set Vary itself), it is looked for again with its index.
    for name, _ in headers:
        if len(name) == 4 and name.lower() == b"vary":
            for index, (name, value) in enumerate(headers):
                if len(name) == 4 and name.lower() == b"vary":
                    if value.lower().find(b"cookie") < 0 and value.strip() != b"*":
                        headers[index] = (name, value + b", Cookie")
                    return headers
    headers.append(VARY_COOKIE)
    return headers


class CookieIssuer:
    """Encodes a session into its cookie's Set-Cookie lines, for each of ``cookies``
    (``(name, codec, writer)``, https name first) the session may live in, with the
    lifetimes ``context`` gives; expires a cookie that was cleared or refused."""

    def __init__(self, cookies: list[tuple[str, Codec, CookieWriter]],
                 context: SessionContext) -> None:
        self.cookies = cookies
        self.context = context
        self.warned_insecure = False  # a Secure cookie set over http: logged once

    def lines(self, scope: Scope, session: Session, name: str, carried: list[str],
              renew: bool, initial_session_was_empty: bool,
              decoded: Decoded | None = None) -> list[str]:
        """The Set-Cookie lines this response needs (most responses need none).

        A re-issue over ``max_cookie_size`` raises :class:`SessionTooLarge` when the app
        put more in the session than the cookie it came with held; otherwise (renewal,
        a new role, a long Auth.js token) the cookie is left as it is and a warning
        logged: what the client sent never makes a response fail.
        """
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
        if secure and not self.warned_insecure and scope.get("scheme") not in ("https", "wss"):
            self.warn_insecure(scope, name)
        now = int(time.time())
        if session.auth_time is None and session.user is None:
            # An anonymous session's absolute lifetime counts from its first cookie. A
            # signed-in one without a sign-in time (Auth.js) is never given one.
            session.auth_time = now
        expires_at = self.context.expires_for(session, now)
        token = codec.encode(session.to_claims(now, expires_at))
        try:
            lines = cookie.set(token, secure=secure, carried=carried, max_age=expires_at - now,
                               persistent=session.remember or session.cnf is not None)
        except SessionTooLarge as exc:
            if decoded is None or changed_content(session, decoded):
                raise
            logger.warning("session cookie %s of user %r not re-issued, left as it is: %s",
                           name, session.user.id if session.user else None, exc)
            return []
        session.issued_at = now
        session.expires_at = expires_at
        return lines

    def warn_insecure(self, scope: Scope, name: str) -> None:
        """Log, once, that a Secure cookie goes out on a plain-http request."""
        self.warned_insecure = True
        server = scope.get("server") or ("", None)
        logger.warning(
            "session cookie %s is Secure (https_only=True, SameSite=None, Partitioned or a "
            "__Secure- name) but is set on a plain-http request (%s://%s%s): a browser does "
            "not send it back over http, so the user looks signed out. Serve over https; "
            "behind a proxy that ends TLS, have the server trust its X-Forwarded-Proto "
            "(uvicorn --proxy-headers --forwarded-allow-ips); for local http, leave "
            "https_only=None. Logged once.", name, scope.get("scheme", "http"),
            server[0] or "?", f":{server[1]}" if server[1] else "")


def changed_content(session: Session, decoded: Decoded) -> bool:
    """Whether ``session`` holds other data or user claims than the token it was read
    from (its role, version and times aside): what the app put there, not the client."""
    user = session.user
    claims = decoded.claims
    if (user.id if user is not None else None) != claims.get("sub"):
        return True
    extra = orjson.loads(decoded.extra) if decoded.extra is not None else {}
    data = orjson.loads(decoded.data) if decoded.data is not None else {}
    return (user.claims if user is not None else {}) != extra or dict(session) != data
