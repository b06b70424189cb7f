"""``JWTSessionMiddleware``: the session in an encrypted cookie, in ``scope["session"]``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_jwt_session.codec import DEFAULT_CACHE_SIZE, Codec, Decoded, SessionFormat
from asgi_jwt_session.config import DAY, HOUR, SessionConfig
from asgi_jwt_session.context import SCOPE_KEY, DeviceBindingHook, FreshnessHook, SessionContext
from asgi_jwt_session.cookies import CookieWriter
from asgi_jwt_session.errors import AuthError, InvalidToken
from asgi_jwt_session.front import FRONT_SIZE, FrontCache, Seen
from asgi_jwt_session.issuing import CookieIssuer, cookie_writer, vary_on_cookie
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.responses import HeldServerErrors, auth_error_response
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.session import Actor, Session, SessionUser
from asgi_jwt_session.tokens import TokenFormat
from asgi_jwt_session.upgrade import names_new_spellings
from asgi_jwt_session.users import SessionAuth

__all__ = ["JWTSessionMiddleware"]

logger = logging.getLogger("asgi_jwt_session")

DEFAULT_ROLES = RoleHierarchy()
START = frozenset({"http.response.start", "websocket.accept"})
DEFAULT_CONFIG = SessionConfig()
# The session as the app got it, and what came with it: (session, cookie name, chunk
# names carried, renew, was empty, decoded token, session id, who was signed in (with a
# freshness policy), actor).
Opened = tuple[Session, str, list[str], bool, bool, "Decoded | None", "str | None",
               "SessionUser | None", "Actor | None"]


def replaced_session(current: object) -> Session:
    """The session an app put in ``scope["session"]`` in place of the middleware's
    (a framework's ``set_session()``/``clear_session()``), as a changed session: a
    :class:`Session` as it is, a mapping as the new data with nobody signed in, and
    anything else (``None``, a framework's "empty" marker) as a sign-out."""
    if isinstance(current, Session):
        session = current
    elif isinstance(current, Mapping):
        session = Session(current)
    else:
        session = Session()
    session.mark_modified()
    return session


class JWTSessionMiddleware:
    """Keeps ``request.session`` in an encrypted JWT cookie (JWE, ``dir`` + ``A256GCM``).

    A drop-in for ``starlette.middleware.sessions.SessionMiddleware``: same keyword
    names, same behaviour of ``request.session``. Reading a session does no I/O; the
    cookie is written only when the session changed, when it is ``update_age`` old, or
    when it was encrypted with a key that is no longer the newest. A cookie that fails
    to decode reads as an empty session and is expired in the response (at most the
    chunks this middleware could have written: a request's other names are ignored).

    ``max_cookie_size`` bounds what is written. When the app puts more in the session
    than fits, :class:`SessionTooLarge` is raised as the response starts (the app's
    error, like any other). A re-issue the app did not cause (renewal, a new role from
    ``freshness``) that no longer fits leaves the cookie as it is, with a warning.

    The cookie, token and renewal options are :class:`SessionConfig`'s (pass them as
    keywords, or one ``config=``). Features plug in as objects: ``format`` (the wire
    format; this package's tokens by default, or
    :class:`~asgi_jwt_session.authjs.AuthJSFormat`) and ``freshness`` (a
    :class:`~asgi_jwt_session.freshness.Freshness`: role changes and revocations that
    take effect) and ``device_binding`` (a :class:`~asgi_jwt_session.dbsc.DeviceBinding`:
    session cookies bound to the browser's device key, DBSC).

    It also fills ``request.user`` / ``request.auth`` for Starlette's ``@requires``, and
    answers the guards' ``AuthError`` (login redirect, 401, 403; a websocket is refused
    with 401 / 403, or closed with 4401 / 4403).

    A framework that replaces ``scope["session"]`` (Litestar's ``clear_session()``,
    ``set_session()``) is followed: the session written is the one in the scope as the
    response starts; a mapping there is new data with nobody signed in, and ``None`` or
    any other value signs the user out.
    """

    @names_new_spellings  # a 0.1 option raises a TypeError that names its new spelling
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
        update_age: int = DAY,
        max_lifetime: int = 90 * DAY,
        idle_timeout: int | None = None,
        browser_session_lifetime: int = DAY,
        impersonation_lifetime: int = HOUR,
        leeway: int = 10,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_cookie_size: int = 12 * 1024,
        login_url: str = "/login",
        roles: RoleHierarchy = DEFAULT_ROLES,
        format: SessionFormat | None = None,
        freshness: FreshnessHook | None = None,
        config: SessionConfig | None = None,
        device_binding: DeviceBindingHook | None = None,
    ) -> None:
        self.app = app
        options = dict(
            session_cookie=session_cookie, max_age=max_age, path=path, same_site=same_site,
            https_only=https_only, domain=domain, partitioned=partitioned,
            update_age=update_age, max_lifetime=max_lifetime, idle_timeout=idle_timeout,
            browser_session_lifetime=browser_session_lifetime,
            impersonation_lifetime=impersonation_lifetime, leeway=leeway,
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
        # A cookie another program writes too (Auth.js's) may be longer than this
        # middleware's write budget: it is read up to the format's own cap, and a
        # cookie too large even for that is left alone rather than expired.
        self.owns_cookie: bool = getattr(self.format, "owns_cookie", True)
        read_size = max(config.max_cookie_size, getattr(self.format, "max_token_size", 0))
        # (cookie name, codec, writer) for each cookie the session may live in, https
        # name first (Auth.js has one of each, each its own key).
        self.cookies: list[tuple[str, Codec, CookieWriter]] = []
        # The most chunks each cookie is read in: what a request carries past that is
        # never joined nor expired, so no request can make a response expire more.
        self.max_chunks: dict[str, int] = {}
        for name, wire in self.format.cookies(secret_key, config.session_cookie):
            codec = Codec(wire, leeway=config.leeway, cache_size=config.cache_size,
                          max_token_size=read_size, max_cached_size=config.max_cookie_size)
            writer = cookie_writer(config, name, self.format.chunk_size)
            self.cookies.append((name, codec, writer))
            self.max_chunks[name] = writer.chunks_for(read_size)
        # Raw Cookie header -> what it holds; bounded in entries and in bytes a key.
        self.front = FrontCache([(name, codec) for name, codec, _ in self.cookies],
                                self.max_chunks, min(FRONT_SIZE, config.cache_size))
        self.context = SessionContext(config, self.format.writable, freshness)
        self.issuer = CookieIssuer(self.cookies, self.context)
        # The Set-Cookie lines a response needs (see CookieIssuer.lines).
        self.set_cookie_lines = self.issuer.lines
        self.roles = config.roles
        self.binding = device_binding
        if device_binding is not None:
            device_binding.attach(self)
        # When a token is re-issued, for a remembered sign-in and for remember=False.
        self.renew_after = config.renew_after
        self.browser_renew_after = config.renew_after_for(False)
        handlers = getattr(app, "exception_handlers", None)  # a Starlette app's
        if isinstance(handlers, dict) and AuthError not in handlers:
            # Wrapped from outside: its error middleware answers AuthError with 500.
            self.app = HeldServerErrors(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        binding = self.binding
        if binding is not None and kind == "http" and scope["path"] in binding.paths:
            await binding.handle(scope, receive, send)  # DBSC registration and refresh
            return

        instant = time.time()  # compared as it is: the window's ends are whole seconds
        seen = self.front.read(scope["headers"])
        decoded = seen.decoded
        if decoded is not None and seen.quiet_from <= instant < seen.quiet_until:
            # A token seen before, with nothing due: valid, newest key, not for renewal.
            session = Session.from_decoded(decoded, seen.lifetime)
            renew = was_empty = False
            carried = seen.read.carried
        else:
            found, decoded, renew, carried = self.open(seen, int(instant))
            was_empty = found is None
            session = Session() if found is None else found
        freshness = self.freshness
        signed_in = None
        if freshness is not None and not was_empty:
            now = int(instant)
            if freshness.is_stale(session, now):
                await freshness.revalidate(session, now)  # the only I/O, and rare
            # Who was signed in as the app started: when the app signs them out, the
            # freshness policy ends that session everywhere (its registry, if any).
            signed_in = session.user
        scope["session"] = session
        scope[SCOPE_KEY] = self.context
        scope["user"] = scope["auth"] = SessionAuth(session, self.roles)
        # What the response's start needs (see response_starts).
        opened = (session, seen.name, carried, renew, was_empty, decoded, session.jti,
                  signed_in, session.actor)
        # Work the response may need whatever the app does: renew, expire a bad cookie,
        # offer DBSC's binding to a session signed in before (register_existing).
        pending = renew or (was_empty and bool(carried)) or (
            binding is not None and kind == "http" and binding.may_offer(scope, session))
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = True
            if message["type"] in START:
                if pending or session.modified or scope.get("session") is not session:
                    await self.response_starts(message, scope, opened)
                elif session.accessed:  # unchanged: no cookie to write, but it was read
                    vary_on_cookie(message)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except AuthError as exc:
            if started:
                raise
            await auth_error_response(scope, exc)(scope, receive, send_wrapper)

    async def response_starts(self, message: Message, scope: Scope, opened: Opened) -> None:
        """Complete the response's start ``message`` for the session as the app left it
        (``opened``: the session as the app got it and what came with it)."""
        session, name, carried, renew, was_empty, decoded, jti, signed_in, actor = opened
        current = scope.get("session")
        if current is not session:  # the app put another session in the scope
            session = scope["session"] = replaced_session(current)
        if renew or (was_empty and carried) or session.modified:
            freshness = self.freshness
            if signed_in is not None and freshness is not None and (
                    session.user is None or (  # signed out, or another sign-in in its
                        session.jti != jti  # place (not an impersonation start or stop)
                        and actor is None and session.actor is None)):
                await freshness.ended(scope, signed_in.id, jti, actor)
            await self.start_response(message, session, scope, name, carried, renew,
                                      was_empty, decoded, jti)
        elif session.accessed:  # unchanged, nothing pending: no cookie to write
            vary_on_cookie(message)
        binding = self.binding
        if binding is not None and scope["type"] == "http":
            # DBSC's register_existing: a session signed in before may be offered binding.
            offer = binding.offer_existing(scope, session, jti)
            if offer is not None:
                vary_on_cookie(message).append(offer)

    async def start_response(self, message: Message, session: Session, scope: Scope,
                             name: str, carried: list[str], renew: bool, was_empty: bool,
                             decoded: Decoded | None, jti: str | None) -> None:
        """Add ``Vary: Cookie`` and the Set-Cookie lines a response needs to its start
        ``message`` (a changed session, a renewal, a refused cookie to expire)."""
        lines = self.set_cookie_lines(scope, session, name, carried, renew, was_empty,
                                      decoded)
        if lines and session.user is not None and self.freshness is not None and (
                renew or session.jti != jti):  # a sign-in or a renewal: tell it
            await self.freshness.issued(scope, session, session.jti != jti)
        added = (self.binding.response_headers(scope, session, jti, decoded, lines)
                 if self.binding is not None else ())
        if lines or session.accessed or added:
            headers = vary_on_cookie(message)  # a Set-Cookie is per user: never share it
            headers.extend((b"set-cookie", line.encode("latin-1")) for line in lines)
            headers.extend(added)

    def open(self, seen: Seen, now: int
             ) -> tuple[Session | None, Decoded | None, bool, list[str]]:
        """The session of a request whose cookie the front cache cannot vouch for:
        ``(session or None, its token's entry, whether to re-issue it, chunk names to
        expire if refused)``. A valid token that needs nothing yet makes ``seen`` vouch
        for it until something is due (see :class:`Seen`)."""
        config = self.config
        codec = seen.codec
        name = seen.name
        token, carried, overflow = seen.read
        session = None
        decoded = None
        renew = False
        if token is not None:
            try:
                decoded = codec.decode_cached(token, now)
                session = Session.from_decoded(decoded, None)
                # No sign-in time (an Auth.js token): no absolute lifetime here.
                ends_at = (self.context.ends_at(session, now)
                           if session.auth_time is not None else None)
                if ends_at is not None and now > ends_at:
                    raise InvalidToken("session passed its absolute lifetime")
                issued_at = session.issued_at or 0
                renew_after = self.renew_after if session.remember else self.browser_renew_after
                renew = now - issued_at >= renew_after or not codec.is_current(token)
                if not self.owns_cookie and session.issued_at is not None:
                    session.lifetime = decoded.exp - session.issued_at
                if not renew and self.front.size and len(token) <= codec.max_cached_size:
                    # (Comparisons, not min() and max(): the first-sight path.)
                    until = decoded.exp + config.leeway
                    if issued_at + renew_after - 1 < until:
                        until = issued_at + renew_after - 1
                    if ends_at is not None and ends_at < until:
                        until = ends_at
                    nbf, iat = decoded.nbf, decoded.iat
                    start = iat if nbf is None else nbf if iat is None or iat < nbf else iat
                    # Set before decoded: a thread that sees decoded sees these too.
                    # Floats, as time.time() is (an int compared with a float is converted).
                    seen.quiet_from = start - config.leeway + 0.0 if start is not None else 0.0
                    seen.quiet_until = until + 1.0
                    seen.lifetime = session.lifetime
                    seen.decoded = decoded
            except InvalidToken as exc:
                logger.debug("session cookie %s refused: %s", name, exc)
                session = decoded = None
        elif carried:
            logger.debug("session cookie %s refused: incomplete chunks %s", name, carried)
        if session is None and not self.owns_cookie and (
                overflow or (token is not None and len(token) > codec.max_token_size)):
            # Possibly a valid session of the cookie's owner, too large for this side.
            size = (f"more than {self.max_chunks[name]} chunks" if overflow
                    else f"{len(token or '')} characters")
            logger.info("session cookie %s not read: %s, over the %d characters read here "
                        "(max_token_size); left as it is", name, size, codec.max_token_size)
            carried = []
        return session, decoded, renew, carried

    def read_cookie(self, scope: Scope) -> tuple[str, Codec, str | None, list[str]]:
        """The first session cookie the request carries: name, codec, token, chunk names."""
        seen = self.read_chunks(scope)
        return seen.name, seen.codec, seen.read.token, seen.read.carried

    def read_chunks(self, scope: Scope) -> Seen:
        """The first session cookie the request carries: its name, codec and what was
        read (through the front cache)."""
        return self.front.read(scope["headers"])

