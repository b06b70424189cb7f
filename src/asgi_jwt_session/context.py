"""The typed per-request context the middleware puts in ``scope["session_context"]``.

Guards, CSRF, responses and the session endpoints read what they need of the
middleware from here (its options, whether the cookie is written, how secure and how
long a new cookie is), never the middleware object itself.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from asgi_jwt_session.codec import Decoded
from asgi_jwt_session.config import SessionConfig
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.session import Actor, Session, scope_of

__all__ = ["SCOPE_KEY", "DeviceBindingHook", "FreshnessHook", "SessionContext", "get_context"]

SCOPE_KEY = "session_context"


class FreshnessHook(Protocol):
    """What the middleware and the refresh endpoint need of a freshness policy
    (:class:`asgi_jwt_session.freshness.Freshness` is one)."""

    def is_stale(self, session: Session, now: int) -> bool:
        """True when ``session`` must be revalidated before the request goes on (no I/O)."""

    async def revalidate(self, session: Session, now: int) -> None:
        """Bring a stale ``session`` up to date; never raises for an outage."""

    async def refresh(self, session: Session, now: int) -> None:
        """Re-read the user now and apply it; raises ``StoreUnavailable`` on an outage."""

    async def issued(self, scope: Scope, session: Session, first: bool) -> None:
        """The middleware issued a token for signed-in ``session``: its first (a new
        session id, ``first``) or a renewal; not called for other re-issues. Never
        raises (the session registry records it here)."""

    async def ended(self, scope: Scope, user_id: str, session_id: str | None,
                    actor: Actor | None) -> None:
        """The app signed out ``user_id``'s session ``session_id`` (``actor``: the
        impersonator's own session, during an impersonation); called as the response
        starts, not when revalidation signs it out. Never raises (the session registry
        revokes it here, so a copy of the cookie is refused everywhere)."""


class DeviceBindingHook(Protocol):
    """What the middleware needs of device binding
    (:class:`asgi_jwt_session.dbsc.DeviceBinding` is one)."""

    @property
    def paths(self) -> Collection[str]:
        """The paths the binding answers itself (the middleware hands them over)."""

    def attach(self, middleware: Any) -> None:
        """Check the options of ``middleware`` (the :class:`JWTSessionMiddleware` that
        takes this binding) and take what it needs of it; raises when they do not fit."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer an http request to one of :attr:`paths`."""

    def response_headers(self, scope: Scope, session: Session, jti: str | None,
                         decoded: Decoded | None, lines: list[str],
                         ) -> list[tuple[bytes, bytes]]:
        """Headers a response adds as it writes the session cookie (``lines``): ``jti``
        and ``decoded`` are the session id and token the request came with."""

    def may_offer(self, scope: Scope, session: Session) -> bool:
        """Whether a response to this http request of ``session`` (as it came) may offer
        to bind it (:meth:`offer_existing`): asked before the app runs."""

    def offer_existing(self, scope: Scope, session: Session, jti: str | None
                       ) -> tuple[bytes, bytes] | None:
        """A header to add to any http response of ``session`` (``jti``: the session id
        the request came with): an offer to bind a session signed in before, or ``None``."""


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What the rest of the package may know of the middleware serving a request.

    - ``config``: the middleware's :class:`SessionConfig`.
    - ``writable``: whether the middleware writes the session cookie (an Auth.js
      cookie may be read-only).
    - ``freshness``: the freshness policy, or ``None``.
    """

    config: SessionConfig
    writable: bool
    freshness: FreshnessHook | None = None

    @property
    def roles(self) -> RoleHierarchy:
        return self.config.roles

    @property
    def login_url(self) -> str:
        return self.config.login_url

    def is_secure(self, scope: Scope) -> bool:
        """Whether a cookie set in answer to this request gets ``Secure``."""
        config = self.config
        if config.https_only is not None:
            return config.https_only
        # Browsers drop SameSite=None and Partitioned cookies that are not Secure.
        if config.same_site == "none" or config.partitioned:
            return True
        return scope.get("scheme") in ("https", "wss")

    def ends_at(self, session: Session, now: int) -> int:
        """When ``session`` ends whatever its cookie: its absolute lifetime from sign-in
        (``browser_session_lifetime`` for a sign-in with ``remember=False``; from ``now``
        when it has no sign-in time), and for an impersonation ``impersonation_lifetime``
        from its start and the impersonator's own absolute lifetime."""
        config = self.config
        # (config.lifetime(), without the call for a remembered sign-in: the first-sight path.)
        lifetime = config.max_lifetime if session.remember else config.lifetime(False)
        auth_time = session.auth_time if session.auth_time is not None else now
        ends_at = auth_time + lifetime
        actor = session.actor
        if actor is not None:  # an impersonation: auth_time is its start
            ends_at = min(ends_at, auth_time + config.impersonation_lifetime)
            if actor.auth_time is not None:  # and the impersonator's own sign-in ends it
                ends_at = min(ends_at, actor.auth_time + lifetime)
        return ends_at

    def expires_for(self, session: Session, now: int, *, bound: bool = True) -> int:
        """When a token issued for ``session`` at ``now`` expires: ``max_age`` (or
        ``idle_timeout``) on, never past :meth:`ends_at`, and never later than the
        session's ``lifetime`` (the span the cookie's owner gave the token it replaces,
        for an Auth.js cookie). A device-bound session's token never outlives the one it
        replaces (``bound=False``: the session's own expiry)."""
        expires_at = min(now + self.config.token_lifetime_for(session.remember),
                         self.ends_at(session, now))
        if session.lifetime is not None:
            expires_at = min(expires_at, now + session.lifetime)
        if bound and session.cnf is not None and session.expires_at is not None:
            # A device-bound token lives on proofs: only the refresh endpoint extends it.
            expires_at = min(expires_at, session.expires_at)
        return expires_at


def get_context(conn: HTTPConnection | Scope) -> SessionContext | None:
    """The :class:`SessionContext` of a request, websocket or scope (``None`` when no
    :class:`JWTSessionMiddleware` serves it)."""
    context = scope_of(conn).get(SCOPE_KEY)
    return context if isinstance(context, SessionContext) else None
