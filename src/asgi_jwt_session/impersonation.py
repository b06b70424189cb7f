"""Impersonation for support staff: see the app as a user sees it, and come back.

::

    from asgi_jwt_session.impersonation import impersonate, stop_impersonating

    async def view_as(request):  # POST /admin/users/{id}/impersonate, CSRF-checked
        await impersonate(request, store, request.path_params["id"], on_event=audit)
        return RedirectResponse("/", status_code=303)

    async def back(request):  # POST /impersonation/stop
        await stop_impersonating(request, on_event=audit)
        return RedirectResponse("/admin", status_code=303)

While it lasts, ``session.user`` is the impersonated user (their id, role and session
version, read from the store) and ``session.user.actor`` the impersonator; the token
carries the impersonator as its ``act`` claim (RFC 8693's name), with what
:func:`stop_impersonating` gives back: their session version, sign-in times and
session id. The session's data starts empty and is emptied again on the way back.

The rules:

- Only a user the ``allowed`` guard lets through may start (default
  :func:`~asgi_jwt_session.guards.require_admin`), never to a user whose role is above
  their own in the middleware's :class:`~asgi_jwt_session.roles.RoleHierarchy`
  (:class:`~asgi_jwt_session.errors.ImpersonationDenied`, 403), never while already
  impersonating, never oneself, nor an unknown or disabled user
  (:class:`~asgi_jwt_session.errors.ImpersonationError`, 400).
- Both users are read from the store when it starts (two queries), so a role changed
  a moment ago counts.
- With :class:`~asgi_jwt_session.freshness.Freshness`, revalidation checks both users:
  the session is signed out when the impersonator is gone, disabled, their sessions
  revoked or their role changed, or when the impersonated user is gone, disabled,
  revoked or their role changed. Fresh login is the impersonator's.
- An impersonation lasts at most ``impersonation_lifetime`` (a middleware option,
  default one hour) from its start, whatever the activity: renewals never slide past
  it, nor past the impersonator's own absolute lifetime.
- :func:`stop_impersonating` marks the impersonator in the store (a new session
  version): the impersonation token, and any copy of it, ends everywhere and can never
  restore the impersonator's session; the token given back is a new one.
- An impersonation ends when the impersonator's session version changes (a stop, a
  revocation of one of their sessions).
- :func:`~asgi_jwt_session.session.logout` signs the impersonator out too.

Every start and stop is logged (logger ``asgi_jwt_session.impersonation``, INFO) and
given to ``on_event`` (a function or coroutine function of one
:class:`ImpersonationEvent`), for the app's audit log.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.requests import HTTPConnection
from starlette.types import Scope

from asgi_jwt_session.apply import CheckedUser, apply_actor, apply_user
from asgi_jwt_session.context import get_context
from asgi_jwt_session.errors import (
    ImpersonationDenied,
    ImpersonationError,
    NotAuthenticated,
    UnknownUser,
)
from asgi_jwt_session.guards import check, require_admin, roles_of
from asgi_jwt_session.session import (
    Actor,
    Session,
    SessionUser,
    get_session,
    new_session_id,
    scope_of,
)
from asgi_jwt_session.store.base import Store

__all__ = [
    "ImpersonationDenied",
    "ImpersonationError",
    "ImpersonationEvent",
    "ImpersonationHook",
    "impersonate",
    "stop_impersonating",
]

logger = logging.getLogger("asgi_jwt_session.impersonation")



@dataclass(frozen=True, slots=True)
class ImpersonationEvent:
    """An impersonation started or stopped, or the impersonator managed the user's
    sessions (when the session registry allows it): what an audit log records.

    ``actor`` is the impersonator, ``user`` the impersonated user, ``at`` the time
    (UTC), ``session_id`` the impersonation's own session id (``jti``), ``scope`` the
    request's ASGI scope (for its client address, path, headers), ``target`` the
    session a ``"revoke_session"`` ends.
    """

    action: Action
    actor: SessionUser
    user: SessionUser
    at: datetime
    session_id: str | None
    scope: Scope
    target: str | None = None


Action = Literal["start", "stop", "list_sessions", "revoke_session", "revoke_other_sessions"]
"""What an :class:`ImpersonationEvent` records."""

ImpersonationHook = Callable[[ImpersonationEvent], Awaitable[None] | None]
"""Called with every :class:`ImpersonationEvent`; a coroutine function is awaited."""

Guard = Callable[[Any], object]
"""A check of the request that raises when it may not impersonate: ``require_admin``
(the default), ``require_role(Role.ORG_ADMIN)`` (a dependency: it is awaited), or any
function of the request that raises
:class:`~asgi_jwt_session.errors.PermissionDenied`."""


def refuse(detail: str, reason: str) -> ImpersonationError:
    return ImpersonationError(detail, reason=reason)


async def notify(on_event: ImpersonationHook | None, event: ImpersonationEvent) -> None:
    logger.info("impersonation %s: %r as %r (session %s)%s", event.action, event.actor.id,
                event.user.id, event.session_id,
                f": {event.target}" if event.target is not None else "")
    if on_event is not None:
        result = on_event(event)
        if inspect.isawaitable(result):
            await result


def event(action: Action, actor: SessionUser, user: SessionUser, session_id: str | None,
          scope: Scope, target: str | None = None) -> ImpersonationEvent:
    # The users as the app knows them, without the actor link (plain, comparable).
    actor = SessionUser.from_json(actor.id, actor.role, actor.claims_json)
    user = SessionUser.from_json(user.id, user.role, user.claims_json)
    return ImpersonationEvent(action, actor, user, datetime.fromtimestamp(time.time(), UTC),
                              session_id, scope, target)


async def impersonate(
    conn: HTTPConnection | Scope,
    store: Store,
    user_id: str,
    *,
    allowed: Guard = require_admin,
    on_event: ImpersonationHook | None = None,
    **claims: Any,
) -> Session:
    """Let the signed-in user act as ``user_id`` until :func:`stop_impersonating`.

    ``allowed`` is the guard the signed-in user must pass (default
    :func:`~asgi_jwt_session.guards.require_admin`); ``claims`` become the
    impersonated user's claims (``session.user.claims``), as at :func:`login`.

    Raises :class:`~asgi_jwt_session.errors.NotAuthenticated` (nobody signed in, or
    the impersonator's own sessions were revoked), what ``allowed`` raises
    (:class:`~asgi_jwt_session.errors.PermissionDenied`),
    :class:`~asgi_jwt_session.errors.ImpersonationDenied` (403: a role above the
    impersonator's), :class:`~asgi_jwt_session.errors.ImpersonationError` (400:
    already impersonating, oneself, an unknown or disabled user) and the store's
    :class:`~asgi_jwt_session.errors.StoreUnavailable` (503 with the package's
    ``exception_handlers``). The middleware answers each. On failure the session is
    left as it was, but for what the store said of the impersonator (a new role, or
    signed out when their sessions were revoked).
    """
    scope = scope_of(conn)
    current = check(scope, ())
    session = get_session(scope)
    if session.actor is not None:
        raise refuse("Already impersonating a user: stop first", "already_impersonating")
    if not isinstance(user_id, str) or not user_id:
        raise refuse("The user to impersonate must be a user id", "unknown_user")
    if user_id == current.id:
        raise refuse("Cannot impersonate yourself", "self")
    # The impersonator as the store has them now: a role changed a moment ago counts.
    now = int(time.time())
    apply_user(session, CheckedUser.coerce(await store.get_user(current.id)), now)
    if session.user is None:
        raise NotAuthenticated()
    result = allowed(conn)
    if inspect.isawaitable(result):
        await result
    actor_user = session.user
    target = await store.get_user(user_id)
    if target is None:
        raise refuse(f"No user {user_id!r}", "unknown_user")
    if target.disabled:
        raise refuse(f"User {user_id!r} is disabled", "user_disabled")
    roles = roles_of(scope)
    if not roles.satisfies(actor_user.role, target.role):
        raise ImpersonationDenied(f"User {user_id!r} has a role above yours")

    actor = Actor(actor_user, session.version, session.auth_time, session.auth_ms, session.jti)
    dict.clear(session)  # the impersonator's data is not the user's
    session.actor = actor
    session.user = SessionUser(target.id, target.role, claims, actor=actor_user)
    session.version = target.session_version
    session.jti = new_session_id()
    session.checked_at = now
    # A revocation of the user's sessions from now on ends this one. auth_time is the
    # start: the impersonation lasts impersonation_lifetime from it, never sliding (the
    # impersonator's own sign-in, kept in act, still bounds it).
    session.auth_time = now
    session.auth_ms = int(time.time() * 1000)
    session.mark_modified()
    await notify(on_event, event("start", actor_user, session.user, session.jti, scope))
    return session


def store_of(scope: Scope) -> Any:
    """The store of the middleware's freshness policy, or ``None``."""
    context = get_context(scope)
    return getattr(context.freshness, "store", None) if context is not None else None


async def stop_impersonating(
    conn: HTTPConnection | Scope,
    store: Store | None = None,
    *,
    on_event: ImpersonationHook | None = None,
) -> Session:
    """End the impersonation: the impersonator's own session is back (their user,
    sign-in times and session id, in a new token with their new session version; the
    data is emptied).

    Stopping marks the impersonator in ``store`` (default: the middleware's
    ``Freshness`` store) with a new session version, one statement
    (``bump_session_version``). The impersonation token carries the version it
    started with, so the mark ends it, and every copy of it: revalidation refuses it
    on every process (within the feed's bound, else ``revalidate_after``), and it can
    never be exchanged for the impersonator's session again. The stop that moves the
    version one step is the only one that restores; any other (a copy, a race, the
    impersonator's record changed meanwhile) signs out and raises
    :class:`~asgi_jwt_session.errors.NotAuthenticated`. Without a store that can
    mark, stopping signs out too.

    Raises :class:`~asgi_jwt_session.errors.NotAuthenticated` when nobody is signed
    in, :class:`~asgi_jwt_session.errors.ImpersonationError` (400) when the session
    is not impersonating anyone, and the store's
    :class:`~asgi_jwt_session.errors.StoreUnavailable` (the session is left as it was).
    """
    scope = scope_of(conn)
    user = check(scope, ())
    session = get_session(scope)
    actor = session.actor
    if actor is None:
        raise refuse("Not impersonating anyone", "not_impersonating")
    bump = getattr(store if store is not None else store_of(scope), "bump_session_version",
                   None)
    session_id = session.jti
    marked: CheckedUser | None = None
    if not callable(bump):
        logger.warning("impersonation stopped without a store that can mark it "
                       "(bump_session_version): signed out instead of restoring")
    elif actor.version is not None:
        with suppress(UnknownUser):
            marked = CheckedUser.coerce(await bump(actor.user.id))
        if marked is not None:
            # Only the stop that moved the version one step restores (a copy, or a race,
            # sees another number), and only if the impersonator still passes the checks.
            session.actor = replace(actor, version=actor.version + 1)
            apply_actor(session, marked)
    if marked is None or session.user is None:
        session.logout()
        await notify(on_event, event("stop", actor.user, user, session_id, scope))
        raise NotAuthenticated()
    dict.clear(session)
    session.actor = None
    session.user = actor.user
    session.version = marked.session_version
    session.auth_time = actor.auth_time
    session.auth_ms = actor.auth_ms
    session.jti = actor.jti if actor.jti is not None else new_session_id()
    session.checked_at = int(time.time())
    session.mark_modified()
    await notify(on_event, event("stop", actor.user, user, session_id, scope))
    return session
