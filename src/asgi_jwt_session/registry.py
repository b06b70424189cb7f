"""The session registry: list a user's signed-in sessions and end them one by one.

::

    store = RoleStore(DATABASE_URL, sessions_table="user_sessions")
    freshness = Freshness(store, feed=feed, registry=SessionRegistry(store))

    await list_sessions(store, "alice")  # her sessions, the last renewed first (a page)
    await revoke_session(store, session_id)  # that device is signed out
    await revoke_other_sessions(request)  # after a password change: all but this one
    await revoke_all_sessions(store)  # an incident: everyone, everywhere

A row per signed-in session, keyed by its session id (the token's ``sid``, which
Auth.js passes through when it re-encodes a cookie, else its ``jti``), written only
when the middleware issues a token at sign-in or renewal
(:meth:`SessionRegistry.issued`), never on an ordinary request; signing out revokes it
(:meth:`SessionRegistry.ended`). A revocation bumps the user's session version, so
version feeds announce it and the user's sessions revalidate; the revalidation query
returns the user's revoked session ids with the user
(:attr:`StoredUser.revoked_sessions`), and :func:`~asgi_jwt_session.apply.apply_user`
signs out the session whose id is among them. The registry only ever takes sessions
away: a row never makes a token valid that its signature, expiry or the user row
refuse.

What is recorded beyond times is the app's choice (``device=``): nothing by default;
:func:`coarse_device` keeps the user agent (cut to 120 characters) and the client's
network, never its address (IPv4 /24, IPv6 /48). See docs/session-management.md.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import anyio
from starlette.requests import HTTPConnection
from starlette.types import Scope

from asgi_jwt_session.apply import CheckedUser, apply_user
from asgi_jwt_session.context import get_context
from asgi_jwt_session.errors import ImpersonationDenied, failure
from asgi_jwt_session.guards import check
from asgi_jwt_session.impersonation import Action, ImpersonationHook, event, notify
from asgi_jwt_session.session import Actor, Session, get_session, new_session_id, scope_of
from asgi_jwt_session.store.base import SessionStore, StoredSession, StoredUser, kept_sign_in_ms

__all__ = [
    "Device",
    "SessionPage",
    "SessionRegistry",
    "client_prefix",
    "coarse_device",
    "list_sessions",
    "registry_of",
    "revoke_all_sessions",
    "revoke_other_sessions",
    "revoke_session",
]

logger = logging.getLogger("asgi_jwt_session.registry")

# Session ids the registry records and the endpoints accept: this package's (URL-safe
# base64) and Auth.js's (UUIDs). A token with another jti is served, but not recorded.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_USER_AGENT = 200  # characters the registry keeps of what ``device`` returns
MAX_CLIENT = 64
COARSE_USER_AGENT = 120  # what coarse_device keeps of the User-Agent header
DEFAULT_TIMEOUT = 5.0
PAGE_SIZE = 20  # sessions a page lists by default
MAX_PAGE = 100  # and at most
MAX_CURSOR = 200  # characters of a cursor
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Device = tuple[str | None, str | None]
"""What ``device(scope)`` returns: ``(user agent, client)``, either ``None``."""


def client_prefix(address: str | None) -> str | None:
    """The network of an IP address, not the address: ``203.0.113.7`` gives
    ``203.0.113.0/24``, ``2001:db8:1:2::7`` gives ``2001:db8:1::/48``; ``None`` for
    anything that is not an IP address (a Unix socket, a test client)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def coarse_device(scope: Scope) -> Device:
    """A ``device`` for :class:`SessionRegistry`: the ``User-Agent`` header cut to 120
    characters, and :func:`client_prefix` of the client address the server gives
    (behind a proxy, the server's proxy-headers option decides which that is)."""
    user_agent = None
    for name, value in scope.get("headers", ()):
        if name == b"user-agent":
            user_agent = value.decode("latin-1")[:COARSE_USER_AGENT]
            break
    client = scope.get("client")
    return user_agent, client_prefix(client[0] if client else None)


def clean(value: object, limit: int) -> str | None:
    """A printable string of at most ``limit`` characters, or ``None``."""
    if not isinstance(value, str):
        return None
    value = "".join(char for char in value[:limit * 2] if char.isprintable()).strip()
    return value[:limit] or None


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class SessionRegistry:
    """Records each signed-in session in ``store`` (a
    :class:`~asgi_jwt_session.store.SessionStore`, such as
    ``RoleStore(..., sessions_table="user_sessions")``); give it to
    ``Freshness(store, registry=...)``.

    - ``device``: ``scope -> (user agent, client)``, what to record of the device
      (``None``, the default: nothing but times). Values are cut to 200 and 64
      printable characters. :func:`coarse_device` is one.
    - ``timeout``: seconds a write may take; a write that fails or takes longer is
      logged (a warning) and the sign-in goes on without its row.

    - ``allow_impersonation``: while an admin impersonates a user, listing and ending
      the user's sessions (the endpoints, :func:`revoke_other_sessions`) is refused
      (:class:`~asgi_jwt_session.errors.ImpersonationDenied`, 403, reason
      ``"impersonating"``) unless this is ``True``; then each such action is given to
      ``on_event`` (an :class:`~asgi_jwt_session.impersonation.ImpersonationEvent`),
      for the audit log.

    ``recorded`` and ``failed`` count the writes.
    """

    def __init__(self, store: SessionStore, *, device: Callable[[Scope], Device] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, allow_impersonation: bool = False,
                 on_event: ImpersonationHook | None = None) -> None:
        if not callable(getattr(store, "record_session", None)):
            raise TypeError("SessionRegistry needs a store with a session registry "
                            "(RoleStore(..., sessions_table='user_sessions'))")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.store = store
        self.device = device
        self.allow_impersonation = allow_impersonation
        self.on_event = on_event
        self.timeout = timeout
        self.recorded = 0
        self.failed = 0

    async def issued(self, scope: Scope, session: Session, first: bool) -> None:
        """Record ``session`` (the middleware issued its first token, ``first``, or
        renewed it): one upsert, plus one delete of the user's ended rows at sign-in.

        Nothing is recorded for an impersonation (it is the impersonator's session,
        not a device of the user) or a session id outside ``[A-Za-z0-9_-]{1,128}``.
        Never raises.
        """
        user = session.user
        jti = session.jti
        if user is None or session.actor is not None or jti is None:
            return
        if not SESSION_ID.fullmatch(jti):
            logger.debug("session of %r not recorded: unusual session id", user.id)
            return
        try:
            record = self.record(scope, session, jti, user.id)
            with anyio.fail_after(self.timeout):
                await self.store.record_session(record, first=first)
        except Exception as exc:  # the database down, or slow: never fail the sign-in
            self.failed += 1
            logger.warning("session registry: %s of %r not recorded: %s",
                           "sign-in" if first else "renewal", user.id,
                           failure(exc, self.timeout))
            return
        self.recorded += 1

    async def ended(self, user_id: str, session_id: str | None, actor: Actor | None = None
                    ) -> None:
        """The app signed ``user_id``'s session ``session_id`` out (:func:`logout`, the
        sign-out endpoint, ``request.session.clear()``): revoke its row, so its user's
        version is bumped, the feed announces it, and a copy of the cookie is refused on
        every process within the feed's bound. An impersonation (``actor``) has no row
        (:meth:`issued` records none): the impersonator's own session is revoked instead;
        without a row of it (never recorded), the impersonator's session version is
        bumped, which ends every copy of the impersonation's cookie as stopping does.
        Never raises: a failure is logged."""
        if actor is None:
            await self.end(user_id, session_id)
        else:
            await self.end(actor.user.id, actor.jti,
                           getattr(self.store, "bump_session_version", None))

    async def end(self, user_id: str, session_id: str | None,
                  bump: Callable[[str], Awaitable[object]] | None = None) -> None:
        """Revoke ``user_id``'s row ``session_id``; without such a row, ``bump`` the
        user's session version (when given). Never raises: a failure is logged."""
        known = session_id if session_id is not None and SESSION_ID.fullmatch(session_id) \
            else None
        if known is None and not callable(bump):
            return
        try:
            with anyio.fail_after(self.timeout):
                found = known is not None and await self.store.revoke_session(
                    known, user_id=user_id)
                if not found and callable(bump):
                    await bump(user_id)
        except Exception as exc:  # the database down, or slow: the cookie still ends
            self.failed += 1
            logger.warning("session registry: sign-out of %r not recorded, a copy of "
                           "its cookie stays valid: %s", user_id, failure(exc, self.timeout))

    async def acting(self, conn: HTTPConnection | Scope, action: Action,
                     target: str | None = None) -> None:
        """Before an ``action`` on the signed-in user's sessions: during an
        impersonation, refuse it unless ``allow_impersonation``, and give it to
        ``on_event`` when allowed. Nothing happens otherwise."""
        scope = scope_of(conn)
        session = get_session(scope)
        actor, user = session.actor, session.user
        if actor is None or user is None:
            return
        if not self.allow_impersonation:
            raise ImpersonationDenied("Not while impersonating a user: stop first",
                                      reason="impersonating")
        await notify(self.on_event, event(action, actor.user, user, session.jti, scope, target))

    def record(self, scope: Scope, session: Session, jti: str, user_id: str) -> StoredSession:
        now = time.time()
        auth_time = session.auth_time if session.auth_time is not None else int(now)
        context = get_context(scope)
        expires_at = session.expires_at if session.expires_at is not None else int(now)
        # The absolute lifetime's end (impersonations are never recorded: no caps here).
        ends_at = context.ends_at(session, int(now)) if context is not None else expires_at
        if session.cnf is not None and context is not None:  # DBSC: refreshed until then
            expires_at = max(expires_at, context.expires_for(session, int(now), bound=False))
        user_agent = client = None
        if self.device is not None:
            user_agent, client = self.device(scope)
        return StoredSession(
            # Sign-in to the millisecond where known: the cap ends sessions by it.
            id=jti, user_id=user_id, renewed_at=utc(now),
            created_at=utc(auth_time if session.auth_ms is None else session.auth_ms / 1000),
            expires_at=utc(expires_at), ends_at=utc(max(ends_at, expires_at)),
            user_agent=clean(user_agent, MAX_USER_AGENT), client=clean(client, MAX_CLIENT),
            device_bound=session.cnf is not None,
        )


def registry_of(conn: HTTPConnection | Scope) -> SessionRegistry | None:
    """The session registry of the middleware serving a request (its freshness
    policy's ``registry``), or ``None``."""
    context = get_context(conn)
    registry = getattr(context.freshness, "registry", None) if context is not None else None
    return registry if isinstance(registry, SessionRegistry) else None


class SessionPage(list[StoredSession]):
    """One page of a user's sessions (a list), with ``next_cursor``: the ``cursor``
    that gives the next page (``None``: this is the last)."""

    next_cursor: str | None = None


def session_cursor(stored: StoredSession) -> str:
    """The cursor of the page that follows ``stored`` (the last row of a page)."""
    micros = (stored.renewed_at - EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}:{stored.id}".encode()).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    """``(renewed_at, id)`` of a cursor :func:`session_cursor` made; ``ValueError``
    for anything else."""
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR:
        raise ValueError("not a session cursor")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a session cursor") from None
    micros, colon, session_id = text.partition(":")
    if not (colon and micros.isascii() and micros.isdigit() and len(micros) <= 17
            and SESSION_ID.fullmatch(session_id)):
        raise ValueError("not a session cursor")
    return EPOCH + timedelta(microseconds=int(micros)), session_id


async def list_sessions(store: SessionStore, user_id: str, *, limit: int = PAGE_SIZE,
                        cursor: str | None = None) -> SessionPage:
    """The user's sessions neither revoked nor expired, the last renewed first, a page
    at a time: at most ``limit`` (1 to 100, default 20); ``cursor``, the previous
    page's ``next_cursor``, gives the next. One bounded query. A user has at most the
    store's ``max_sessions_per_user`` of them. ``ValueError`` for a bad ``limit`` or
    ``cursor``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an int from 1 to {MAX_PAGE}")
    before = parse_cursor(cursor) if cursor is not None else None
    rows = await store.list_sessions(user_id, limit=limit + 1, before=before)
    page = SessionPage(rows[:limit])
    if len(rows) > limit:
        page.next_cursor = session_cursor(page[-1])
    return page


async def revoke_session(store: SessionStore, session_id: str) -> bool:
    """Sign one session out, wherever it is used: on every process within the feed's
    bound, within ``revalidate_after`` without one. ``False`` for an unknown id."""
    return await store.revoke_session(session_id)


async def revoke_all_sessions(store: SessionStore) -> int:
    """End every session of every user (an incident); returns the number of users.

    Each user's ``revoked_at`` is set and their version bumped, so it holds for
    sessions the registry never recorded too. A leaked secret key is answered by
    rotating the key instead: tokens made with it stop decoding at once.
    """
    return await store.revoke_all_sessions()


async def revoke_other_sessions(conn: HTTPConnection | Scope) -> Session:
    """Sign the user out on every other device and stay signed in here: the one line
    after a password change (``await revoke_other_sessions(request)``).

    Every other session of the user ends, recorded or not (the user's ``revoked_at``
    is set, as :func:`~asgi_jwt_session.store.revoke_sessions` does), and this one is
    re-issued with its sign-in moved just past it, with the user's new session version.
    Three statements. Raises :class:`~asgi_jwt_session.errors.NotAuthenticated` when
    nobody is signed in, :class:`~asgi_jwt_session.errors.ImpersonationDenied` while
    impersonating (unless the registry allows it), ``RuntimeError`` without a registry
    or when the middleware cannot write the cookie (Auth.js's, read-only), and the
    store's errors
    (:class:`~asgi_jwt_session.errors.StoreUnavailable`).
    """
    user = check(conn, ())
    session = get_session(conn)
    registry = registry_of(conn)
    if registry is None:
        raise RuntimeError("no session registry: give the middleware "
                           "freshness=Freshness(store, registry=SessionRegistry(store))")
    await registry.acting(conn, "revoke_other_sessions")
    context = get_context(conn)
    if context is None or not context.writable:
        raise RuntimeError("the session cookie is read-only here: this session cannot stay "
                           "signed in while the others are revoked")
    if session.jti is None:
        session.jti = new_session_id()
    stored: StoredUser = await registry.store.revoke_other_sessions(user.id, session.jti)
    if stored.revoked_at is not None:  # after it on the database's clock: this one stays
        session.auth_ms = max(session.auth_ms or 0, kept_sign_in_ms(stored.revoked_at))
    apply_user(session, CheckedUser.coerce(stored), int(time.time()))
    session.mark_modified()
    return session
