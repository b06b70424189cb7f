"""Apply a stored user to a session: the one rule revalidation, the refresh endpoint,
the session registry and impersonation share.

:func:`apply_user` brings a signed-in session up to date with the user as the store
has them now (role, session version, disabled, revocations of every session or of
this one); :func:`apply_actor` does the same for the impersonator during an
impersonation. Neither does I/O: the caller loads the user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgi_jwt_session.session import Actor, Session

__all__ = ["CheckedUser", "apply_actor", "apply_user", "epoch_seconds", "signed_in_before"]

logger = logging.getLogger("asgi_jwt_session.freshness")
impersonation_logger = logging.getLogger("asgi_jwt_session.impersonation")

warned_no_auth_time = False


def epoch_seconds(value: datetime | float | None) -> float | None:
    """``revoked_at`` as epoch seconds (sub-second kept): from a datetime (naive means
    UTC) or a number; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


@dataclass(frozen=True, slots=True)
class CheckedUser:
    """What revalidation needs of a user: role, session version, disabled, when
    their sessions were last revoked (epoch seconds, ``None``: never), and the ids of
    their sessions the session registry revoked."""

    role: str
    session_version: int
    disabled: bool = False
    revoked_at: float | None = None
    revoked_sessions: frozenset[str] = frozenset()

    @classmethod
    def coerce(cls, found: Any) -> CheckedUser | None:
        """Normalize what a :data:`UserLoader` returned."""
        if found is None or isinstance(found, CheckedUser):
            return found
        if isinstance(found, tuple):
            role, version = found
            return cls(str(role), int(version))
        return cls(str(found.role), int(found.session_version),
                   bool(getattr(found, "disabled", False)),
                   epoch_seconds(getattr(found, "revoked_at", None)),
                   frozenset(getattr(found, "revoked_sessions", None) or ()))


def signed_in_before(session: Session, revoked_at: float) -> bool:
    """Whether ``session`` was signed in at or before ``revoked_at``.

    A session of this package knows its sign-in time to the millisecond
    (``auth_ms``); one with whole seconds only counts as signed in before a
    revocation in the same second (the safe side). An Auth.js token without
    ``auth_time`` is judged by its ``iat``, so a session that Auth.js re-issued after
    the revocation is not ended by it (a warning says so, once).
    """
    if session.auth_ms is not None:
        return session.auth_ms <= revoked_at * 1000
    if session.auth_time is not None:
        return session.auth_time <= revoked_at
    global warned_no_auth_time
    if not warned_no_auth_time:
        warned_no_auth_time = True
        logger.warning("a session token without auth_time: revocation is judged by its iat, "
                       "so a token re-issued after a revocation survives it. Set auth_time "
                       "in the Auth.js jwt callback (see docs/nextjs-interop.md)")
    return session.issued_at is None or session.issued_at <= revoked_at


def apply_user(session: Session, user: CheckedUser | None, checked_at: int) -> None:
    """Bring a signed-in ``session`` up to date with ``user`` as read at ``checked_at``.

    Signs out when the user is gone or disabled, when the session was signed in at or
    before the user's ``revoked_at``, and when the session's version is newer than the
    store's. Otherwise the stored role and version are adopted, however many changes
    the session missed, and the session is marked modified (re-issued) only when its
    role, version or ``chk`` changed. During an impersonation, a role change signs
    out too: the impersonation was allowed for the role it started with.
    """
    current = session.user
    if current is None:
        return
    if user is None or user.disabled:
        session.logout()
        return
    if user.revoked_at is not None and signed_in_before(session, user.revoked_at):
        session.logout()
        return
    if session.jti is not None and session.jti in user.revoked_sessions:
        session.logout()  # this one session was revoked (the session registry)
        return
    version, stored = session.version, user.session_version
    if version is not None and version > stored:
        # Versions only grow, so the store has gone back (a restored backup, a user
        # deleted and created again): revocations after that point are lost with it.
        session.logout()
        return
    if session.actor is not None and current.role != user.role:
        end_impersonation(session, f"the role of {current.id!r} changed")
        return
    if version != stored or current.role != user.role or session.checked_at != checked_at:
        session.set_role(user.role, version=stored, checked_at=checked_at)


def actor_signed_in_before(actor: Actor, revoked_at: float) -> bool:
    """Whether the impersonator signed in at or before ``revoked_at`` (unknown: yes)."""
    if actor.auth_ms is not None:
        return actor.auth_ms <= revoked_at * 1000
    return actor.auth_time is None or actor.auth_time <= revoked_at


def apply_actor(session: Session, user: CheckedUser | None) -> None:
    """Check the impersonator of ``session`` against ``user`` (the impersonator as the
    store has them now).

    Signs out when they are gone or disabled, when their sessions were revoked after
    their own sign-in, when their role changed (it may no longer allow the
    impersonation), and when their session version is not the one the impersonation
    started with: :func:`~asgi_jwt_session.impersonation.stop_impersonating` bumps it,
    so a copy of the impersonation's cookie ends on every process that hears of it.
    """
    actor = session.actor
    if actor is None or session.user is None:
        return
    reason = None
    if user is None or user.disabled:
        reason = "is gone" if user is None else "is disabled"
    elif user.revoked_at is not None and actor_signed_in_before(actor, user.revoked_at):
        reason = "had their sessions revoked"
    elif actor.jti is not None and actor.jti in user.revoked_sessions:
        reason = "had their own session revoked"
    elif actor.version != user.session_version:
        reason = "changed in the store (the impersonation was stopped, or they were)"
    elif user.role != actor.user.role:
        reason = "has another role"
    if reason is not None:
        end_impersonation(session, f"the impersonator {actor.user.id!r} {reason}")


def end_impersonation(session: Session, reason: str) -> None:
    actor, user = session.actor, session.user
    impersonation_logger.info("impersonation ended, signed out: %r as %r: %s",
                              actor.user.id if actor else None, user.id if user else None,
                              reason)
    session.logout()
