"""The session object: a change-tracking dict plus the signed-in user."""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson
from starlette.requests import HTTPConnection
from starlette.types import Scope

from asgi_jwt_session.codec import ACTOR_CLAIM_TYPES, RESERVED_CLAIMS, Decoded, compact_json
from asgi_jwt_session.errors import NotAuthenticated
from asgi_jwt_session.values import PLAIN, check_value


class SessionUser:
    """Who is signed in: ``id``, ``role`` and any extra claims given at login.

    ``actor`` is who is really at the keyboard while an admin impersonates this user
    (a :class:`SessionUser`; ``None`` otherwise, see
    :mod:`asgi_jwt_session.impersonation`).

    Read-only: a new role comes with :meth:`Session.set_role`, new claims with a new
    :func:`login`. One user object serves every request that carries the same token,
    so ``claims`` is kept as JSON and each access gets its own copy.
    """

    __slots__ = ("actor", "claims_json", "id", "role")

    id: str
    role: str
    claims_json: bytes | None
    actor: SessionUser | None

    def __init__(self, id: str, role: str, claims: Mapping[str, Any] | None = None, *,
                 actor: SessionUser | None = None) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "role", role)
        object.__setattr__(self, "claims_json", compact_json(dict(claims)) if claims else None)
        object.__setattr__(self, "actor", actor)

    @classmethod
    def from_json(cls, id: str, role: str, claims_json: bytes | None, *,
                  actor: SessionUser | None = None) -> SessionUser:
        """A user whose extra claims are already JSON (a JSON object, or ``None``)."""
        if cls is not SessionUser:  # a subclass: through the read-only slots' setters
            user = cls.__new__(cls)
            for name, value in (("id", id), ("role", role), ("claims_json", claims_json),
                                ("actor", actor)):
                object.__setattr__(user, name, value)
            return user
        # The first-sight path: filled as a Filling (the same slots, no read-only guard:
        # a plain store each, not a call each), then made a SessionUser.
        filling = new_object(Filling)
        filling.id = id
        filling.role = role
        filling.claims_json = claims_json
        filling.actor = actor
        filling.__class__ = SessionUser  # type: ignore[assignment]
        return filling  # type: ignore[return-value]  # a SessionUser now

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SessionUser is read-only")

    @property
    def claims(self) -> dict[str, Any]:
        """The extra claims (a fresh dict on every access)."""
        return orjson.loads(self.claims_json) if self.claims_json is not None else {}

    def __getitem__(self, name: str) -> Any:
        return self.claims[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.claims.get(name, default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionUser):
            return NotImplemented
        return ((self.id, self.role, self.claims, self.actor)
                == (other.id, other.role, other.claims, other.actor))

    def __hash__(self) -> int:
        # Equal users may hold their claims in another order: hash what __eq__ sees first.
        return hash((self.id, self.role))

    def __repr__(self) -> str:
        actor = f", actor={self.actor!r}" if self.actor is not None else ""
        return (f"SessionUser(id={self.id!r}, role={self.role!r}, "
                f"claims={self.claims!r}{actor})")


class Filling:
    """A :class:`SessionUser` being built by ``SessionUser.from_json``: the same slots
    (so it may take that class once filled), without the read-only guard."""

    __slots__ = SessionUser.__slots__

    id: str
    role: str
    claims_json: bytes | None
    actor: SessionUser | None


new_object = object.__new__


@dataclass(frozen=True, slots=True)
class Actor:
    """The impersonator's own session, kept in the token's ``act`` claim while they
    impersonate someone: ``user`` (their id, role and claims) and what
    :func:`~asgi_jwt_session.impersonation.stop_impersonating` gives back (their session
    version, sign-in times and session id)."""

    user: SessionUser
    version: int | None = None
    auth_time: int | None = None
    auth_ms: int | None = None
    jti: str | None = None

    @classmethod
    def from_claim(cls, act: Mapping[str, Any]) -> Actor:
        """The actor of a checked ``act`` claim (see ``claims.check_actor``)."""
        extra = {name: value for name, value in act.items() if name not in ACTOR_CLAIM_TYPES}
        return cls(SessionUser(act["sub"], act["role"], extra), act.get("ver"),
                   act.get("auth_time"), act.get("auth_ms"), act.get("jti"))

    def to_claim(self) -> dict[str, Any]:
        """The ``act`` claim: the actor's claims, ``sub``, ``role`` and what is set of
        ``ver``, ``auth_time``, ``auth_ms``, ``jti``."""
        claim = self.user.claims
        claim["sub"] = self.user.id
        claim["role"] = self.user.role
        for name, value in (("ver", self.version), ("auth_time", self.auth_time),
                            ("auth_ms", self.auth_ms), ("jti", self.jti)):
            if value is not None:
                claim[name] = value
        return claim


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


TokenFields = tuple[
    "SessionUser | None", "str | None", "int | None", "int | None", "int | None",
    "int | None", "int | None", "int | None", "int | None", bool, "Actor | None",
    "dict[str, Any] | None",
]


def token_fields(decoded: Decoded) -> TokenFields:
    """What a session takes from its token: user, session id (sid or jti), ver, iat, exp,
    chk, auth_time, auth_ms, rat, rem, act, cnf."""
    claims = decoded.claims
    user = actor = None
    if "sub" in claims:
        act = claims.get("act")
        if act is not None:
            actor = Actor.from_claim(act)
        # The extra claims' JSON is shared with the cache entry, not copied.
        user = SessionUser.from_json(claims["sub"], claims["role"], decoded.extra,
                                     actor=actor.user if actor is not None else None)
    # No auth_time (an Auth.js token): the sign-in time is unknown, and revocation
    # judges the session by its iat (see apply.signed_in_before).
    auth_time = claims.get("auth_time")
    # No rat: the credentials were last proved at sign-in (rat is written only when not).
    # The session id: sid where the token has one (Auth.js's encode draws a new jti each
    # time and passes sid through), else its jti.
    get = claims.get
    return (user, get("sid", get("jti")), get("ver"), get("iat"), decoded.exp, get("chk"),
            auth_time, get("auth_ms"), get("rat", auth_time), get("rem", True), actor,
            get("cnf"))


class Session(dict[str, Any]):
    """``request.session``: a dict that records changes, and the signed-in user apart.

    Behaves like Starlette's session (``accessed``/``modified``, ``mark_accessed()``),
    so it is a drop-in. ``user`` is the signed-in :class:`SessionUser` or ``None``;
    ``expires`` is when the current cookie stops being valid (``None`` before one is
    issued). Change the user only through :func:`login` and :func:`logout`.

    ``authenticated_at`` is when the user last proved their credentials (sign-in or
    :func:`reauthenticate`, epoch seconds); ``remember`` is ``False`` for a
    browser-session cookie (``login(..., remember=False)``); ``actor`` holds the
    impersonator's own session while they impersonate ``user``.
    """

    __slots__ = ("accessed", "actor", "auth_ms", "auth_time", "authenticated_at", "checked_at",
                 "cnf",
                 "expires_at", "issued_at", "jti", "lifetime", "modified", "remember", "user",
                 "version")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        user: SessionUser | None = None,
        jti: str | None = None,
        version: int | None = None,
        issued_at: int | None = None,
        expires_at: int | None = None,
        checked_at: int | None = None,
        auth_time: int | None = None,
        auth_ms: int | None = None,
        authenticated_at: int | None = None,
        remember: bool = True,
        actor: Actor | None = None,
    ) -> None:
        super().__init__(data or ())
        for key, value in self.items():
            check_value(key, value)
        self.accessed = False
        self.modified = False
        self.user = user
        self.jti = jti
        self.version = version
        self.issued_at = issued_at
        self.expires_at = expires_at
        self.checked_at = checked_at
        self.auth_time = auth_time
        self.auth_ms = auth_ms
        self.authenticated_at = authenticated_at
        self.remember = remember
        self.actor = actor
        # The device key of a session bound with DBSC (the token's ``cnf``), or None.
        self.cnf: dict[str, Any] | None = None
        # Seconds a re-issued token lives when its cookie's owner decides (an Auth.js
        # token's own exp - iat); None: the middleware's max_age.
        self.lifetime: int | None = None

    @classmethod
    def from_decoded(cls, decoded: Decoded, lifetime: int | None = None) -> Session:
        """Build a session from a decoded token (as the codec's cache keeps it);
        ``lifetime``: the seconds a re-issued token lives, when the cookie's owner
        decides (``None``: the middleware's ``max_age``)."""
        fields = decoded.memo
        if fields is None:
            fields = decoded.memo = token_fields(decoded)
        # The hot path: no __init__ keyword parsing, the fields come ready from the cache.
        session = cls.__new__(cls)
        data = decoded.data
        if data is not None:
            # The entry's first session takes the data already parsed (list.pop: one
            # thread gets it); every other one parses its own copy.
            fresh = decoded.fresh
            if fresh is None:
                parsed = orjson.loads(data)
            else:
                decoded.fresh = None
                try:
                    parsed = fresh.pop()
                except IndexError:  # another thread took it first
                    parsed = orjson.loads(data)
            dict.update(session, parsed)
        session.accessed = session.modified = False
        session.lifetime = lifetime
        (session.user, session.jti, session.version, session.issued_at, session.expires_at,
         session.checked_at, session.auth_time, session.auth_ms, session.authenticated_at,
         session.remember, session.actor, session.cnf) = fields
        return session

    def to_claims(self, now: int, expires_at: int) -> dict[str, Any]:
        """The claims for a new token of this session, issued at ``now``."""
        claims: dict[str, Any] = {}
        if self.user is not None:
            claims.update(self.user.claims)
            claims["sub"] = self.user.id
            claims["role"] = self.user.role
            if self.version is not None:
                claims["ver"] = self.version
            if self.checked_at is not None:
                claims["chk"] = self.checked_at
        if self.jti is None:
            self.jti = new_session_id()
        claims["jti"] = self.jti
        claims["iat"] = now
        claims["exp"] = expires_at
        # Only a sign-in sets auth_time: a re-issue never invents one (an Auth.js token
        # without it stays without it, so it never passes for a fresh sign-in).
        auth_time = self.auth_time
        if auth_time is not None:
            claims["auth_time"] = auth_time
        if self.auth_ms is not None:
            claims["auth_ms"] = self.auth_ms
        if self.authenticated_at is not None and self.authenticated_at != auth_time:
            claims["rat"] = self.authenticated_at  # left out when it is the sign-in time
        if not self.remember:
            claims["rem"] = False
        if self.actor is not None and self.user is not None:
            claims["act"] = self.actor.to_claim()
        if self.cnf is not None and self.user is not None:
            claims["cnf"] = self.cnf
        if len(self):
            claims["data"] = dict(self)
        return claims

    def __bool__(self) -> bool:
        # A signed-in session is truthy even with no data, so `if auth(request):` works.
        return self.user is not None or len(self) > 0

    @property
    def is_empty(self) -> bool:
        """No data and nobody signed in: nothing worth a cookie."""
        return not self

    @property
    def expires(self) -> datetime | None:
        """When the current cookie expires (UTC), or ``None`` before one is issued."""
        if self.expires_at is None:
            return None
        return datetime.fromtimestamp(self.expires_at, UTC)

    def mark_accessed(self) -> None:
        self.accessed = True

    def mark_modified(self) -> None:
        self.accessed = True
        self.modified = True

    def login(self, /, user_id: str, role: str, *, version: int | None = None,
              remember: bool = True, **claims: Any) -> None:
        """Sign ``user_id`` in with a new session id (no fixation).

        ``remember=False`` makes a browser-session cookie (no ``Max-Age``) that lives
        at most ``browser_session_lifetime`` from now.

        Extra claims are keyword arguments, so none can be named ``user_id``,
        ``version`` or ``remember``; the reserved claim names (``sub``, ``exp``...)
        are refused.

        Data collected before sign-in stays, unless another user was signed in.
        """
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        if not isinstance(role, str) or not role:
            raise ValueError("role must be a non-empty string")
        if not isinstance(remember, bool):
            raise TypeError("remember must be True or False")
        reserved = RESERVED_CLAIMS.intersection(claims)
        if reserved:
            raise ValueError(f"reserved claim names cannot be set at login: {sorted(reserved)}")
        for name, value in claims.items():
            check_value(name, value, claim=True)
        if self.user is not None and self.user.id != user_id:
            super().clear()
        instant = time.time()
        now = int(instant)
        self.user = SessionUser(id=str(user_id), role=str(role), claims=claims)
        self.jti = new_session_id()
        self.version = version
        self.auth_time = now
        # To the millisecond: a revocation in the same second must not end this sign-in.
        self.auth_ms = int(instant * 1000)
        self.authenticated_at = now
        self.remember = remember
        self.actor = None
        self.cnf = None  # a new sign-in is bound to no device until it registers
        self.checked_at = now
        self.issued_at = None
        self.mark_modified()

    def reauthenticate(self) -> None:
        """Record that the signed-in user has just proved their credentials again (the
        app checked the password): what :func:`requires_fresh_login` asks for.

        Raises :class:`~asgi_jwt_session.errors.NotAuthenticated` when nobody is signed
        in (the session ended while the user typed: sent to sign in, or 401)."""
        if self.user is None:
            raise NotAuthenticated()
        self.authenticated_at = int(time.time())
        self.mark_modified()

    def logout(self) -> None:
        """Forget the user and every piece of data; the cookie is expired."""
        self.clear()

    def set_role(self, role: str, *, version: int | None = None, checked_at: int | None = None
                 ) -> None:
        """Replace the signed-in user's role (after the server re-read it)."""
        if self.user is None:
            raise ValueError("nobody is signed in")
        self.user = SessionUser.from_json(self.user.id, str(role), self.user.claims_json,
                                          actor=self.user.actor)
        if version is not None:
            self.version = version
        self.checked_at = checked_at if checked_at is not None else int(time.time())
        self.mark_modified()

    def __setitem__(self, key: str, value: Any) -> None:
        if type(value) not in PLAIN or type(key) is not str:
            check_value(key, value)  # refused here, not when the cookie is written
        self.mark_modified()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        super().__delitem__(key)

    def clear(self) -> None:
        """Empty the session and sign the user out, as Starlette's ``clear()`` ends it."""
        self.mark_modified()
        super().clear()
        self.user = None
        self.jti = None
        self.version = None
        self.checked_at = None
        self.auth_time = None
        self.auth_ms = None
        self.authenticated_at = None
        self.remember = True
        self.actor = None
        self.cnf = None

    def pop(self, key: str, *args: Any) -> Any:
        if key in self:
            self.mark_modified()
        return super().pop(key, *args)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self.mark_modified()
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            check_value(key, default)
            self.mark_modified()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)
        for key, value in items.items():
            check_value(key, value)
        self.mark_modified()
        super().update(items)

    def __ior__(self, other: Any, /) -> Session:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __repr__(self) -> str:
        return f"Session({dict.__repr__(self)}, user={self.user!r})"


NOT_INSTALLED = "JWTSessionMiddleware must be installed to use sessions"


def scope_of(conn: HTTPConnection | Scope) -> Scope:
    """The ASGI scope of a request or websocket, any framework's (its ``scope``), or the
    scope itself."""
    return cast("Scope", getattr(conn, "scope", conn))


def get_session(conn: HTTPConnection | Scope) -> Session:
    """The :class:`Session` of a request, websocket or raw ASGI scope."""
    # A Request's scope, or the scope itself (no isinstance: HTTPConnection is an ABC).
    scope: Scope | None = getattr(conn, "scope", None)
    session = (conn if scope is None else scope).get("session")
    if not isinstance(session, Session):
        raise RuntimeError(NOT_INSTALLED)
    return session


if TYPE_CHECKING:

    class SignedIn(Session):
        """What :func:`auth` returns: a :class:`Session` with a user signed in, so
        ``user`` and ``expires`` are never ``None`` (for type checkers; at run time it
        is :class:`Session` itself)."""

        user: SessionUser

        @property
        def expires(self) -> datetime: ...

else:
    SignedIn = Session


F = TypeVar("F", bound=Callable[..., Any])


def takes_connection(func: F) -> F:
    """Show ``func`` to what reads signatures to fill arguments (FastAPI's
    ``Depends(func)``) as taking the request's connection: the real annotation,
    ``HTTPConnection | Scope``, reads to FastAPI as a body field it cannot build."""
    returns = inspect.signature(func).return_annotation
    conn = inspect.Parameter("conn", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                             annotation=HTTPConnection)
    func.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [conn], return_annotation=returns)
    return func


def pending_expiry(conn: HTTPConnection | Scope, session: Session) -> int:
    """When the cookie the middleware issues for ``session`` (signed in during this
    request, so it has none yet) will expire."""
    scope = scope_of(conn)
    context = scope.get("session_context")  # context.SessionContext, duck-typed: no cycle
    now = int(time.time())
    return int(context.expires_for(session, now)) if context is not None else now


@takes_connection
def auth(conn: HTTPConnection | Scope) -> SignedIn | None:
    """The session when a user is signed in, else ``None``.

    The result is typed :class:`SignedIn`: ``session.user`` and ``session.expires``
    need no ``None`` check. Right after :func:`login`, ``expires`` is when the cookie
    about to be issued will expire.

    Like ``request.session``, this marks the session accessed: the response depends on
    the cookie and gets ``Vary: Cookie``. In FastAPI, ``Depends(auth)`` is the session
    or ``None`` (as ``OptionalSession`` of :mod:`asgi_jwt_session.dependencies`).
    """
    # get_session, inline: most routes call this.
    scope: Scope | None = getattr(conn, "scope", None)
    session = (conn if scope is None else scope).get("session")
    if not isinstance(session, Session):
        raise RuntimeError(NOT_INSTALLED)
    session.accessed = True
    if session.user is None:
        return None
    if session.expires_at is None:  # signed in during this request
        session.expires_at = pending_expiry(conn, session)
    return session  # type: ignore[return-value]  # a SignedIn: its user is set


def login(conn: HTTPConnection | Scope, /, user_id: str, role: str, *,
          version: int | None = None, remember: bool = True, **claims: Any) -> SignedIn:
    """Sign ``user_id`` in with ``role`` (and extra claims); a new session id is issued.

    ``version`` is the user's session version in the store. ``remember=False`` ("keep
    me signed in" unticked) gives a cookie the browser forgets when it closes, which
    lives at most ``browser_session_lifetime`` (default one day) however it is used.
    Returns the session (its ``expires``: when the cookie about to be issued expires).

    HTTP only: a websocket cannot set the cookie, so ``login(websocket, ...)`` raises
    ``TypeError``. Sign in over HTTP before opening the socket; the socket then sees
    the session (``auth(websocket)``).
    """
    scope = scope_of(conn)
    if scope.get("type") == "websocket":
        raise TypeError(
            "login() on a websocket: a websocket cannot set the session cookie. Sign in "
            "over HTTP (a POST to your login endpoint) before opening the socket; the "
            "socket then sees the session through auth(websocket)")
    session = get_session(conn)
    session.login(user_id, role, version=version, remember=remember, **claims)
    session.expires_at = pending_expiry(conn, session)
    return session  # type: ignore[return-value]  # a SignedIn: its user is set


def reauthenticate(conn: HTTPConnection | Scope) -> Session:
    """Record that the signed-in user has just proved their credentials again.

    Call it after the app checked the password once more (or a passkey, an OTP); the
    guard :func:`~asgi_jwt_session.guards.requires_fresh_login` then lets sensitive
    actions through for its ``max_age``. The cookie is re-issued with the new time.
    While an admin impersonates someone, it is the admin's credentials that count.
    Raises :class:`~asgi_jwt_session.errors.NotAuthenticated` when nobody is signed in.
    """
    session = get_session(conn)
    session.reauthenticate()
    return session


def logout(conn: HTTPConnection | Scope) -> None:
    """Sign out: the session is emptied and its cookie expired.

    HTTP only: a websocket cannot expire the cookie, so ``logout(websocket)`` raises
    ``TypeError`` (the browser would stay signed in). Sign out over HTTP (``POST
    /auth/signout`` or your own endpoint); to end the session from the socket's side,
    revoke it (:func:`~asgi_jwt_session.registry.revoke_session` with a registry, or
    :func:`~asgi_jwt_session.store.revoke_sessions`) and close the socket.
    """
    scope = scope_of(conn)
    if scope.get("type") == "websocket":
        raise TypeError(
            "logout() on a websocket: a websocket cannot expire the session cookie, so the "
            "browser would stay signed in. Sign out over HTTP (POST /auth/signout or your "
            "own endpoint); to end the session from the socket, revoke it "
            "(revoke_session() with a session registry, or revoke_sessions()) and close "
            "the socket")
    get_session(conn).logout()
