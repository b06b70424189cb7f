"""``SessionConfig``: every option of the middleware with its default, checked once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from asgi_jwt_session.codec import DEFAULT_CACHE_SIZE
from asgi_jwt_session.cookies import check_attribute
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.upgrade import names_new_spellings

HOUR = 60 * 60
DAY = 24 * HOUR


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The cookie, token and renewal options of :class:`JWTSessionMiddleware` (the same
    keyword names it takes), checked once.

    - ``session_cookie``, ``max_age``, ``path``, ``same_site``, ``https_only``,
      ``domain``, ``partitioned``: as in Starlette's ``SessionMiddleware``, except that
      ``max_age`` defaults to 30 days and ``https_only=None`` sets ``Secure`` exactly
      when the request came over https.
    - ``update_age``: re-issue the cookie (sliding expiry) once it is this old.
    - ``max_lifetime``: absolute cap from sign-in (``auth_time``); sliding stops there.
    - ``idle_timeout``: a session unused for this many seconds is over (``None``: no
      idle timeout). Its token expires at most ``idle_timeout`` after it was issued,
      and is re-issued at least every ``idle_timeout / 2`` while in use.
    - ``browser_session_lifetime``: absolute cap from sign-in of a session signed in
      with ``login(..., remember=False)``, whose cookie has no ``Max-Age``.
    - ``impersonation_lifetime``: seconds an impersonation lasts at most from its
      start, whatever the activity (renewals never slide past it).
    - ``leeway``: clock tolerance for ``exp``/``nbf``/``iat``, seconds.
    - ``cache_size``: decoded-token LRU entries; 0 turns the cache off.
    - ``max_cookie_size``: total budget for the token over all chunks, bytes.
    - ``login_url``: where guards send a browser that is not signed in.
    - ``roles``: the :class:`RoleHierarchy` guards check against.
    """

    session_cookie: str = "session"
    max_age: int | None = 30 * DAY
    path: str = "/"
    same_site: Literal["lax", "strict", "none"] = "lax"
    https_only: bool | None = None
    domain: str | None = None
    partitioned: bool = False
    update_age: int = DAY
    max_lifetime: int = 90 * DAY
    idle_timeout: int | None = None
    browser_session_lifetime: int = DAY
    impersonation_lifetime: int = HOUR
    leeway: int = 10
    cache_size: int = DEFAULT_CACHE_SIZE
    max_cookie_size: int = 12 * 1024
    login_url: str = "/login"
    roles: RoleHierarchy = field(default_factory=RoleHierarchy)

    def __post_init__(self) -> None:
        check_attribute("path", self.path)
        check_attribute("domain", self.domain)
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', not {self.path!r}")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError("max_age must be positive, or None for a browser-session cookie")
        if self.update_age < 0:
            raise ValueError("update_age must be >= 0")
        if self.max_lifetime <= 0:
            raise ValueError("max_lifetime must be positive")
        idle = self.idle_timeout
        if idle is not None and (type(idle) is not int or not 0 < idle <= self.max_lifetime):
            raise ValueError("idle_timeout must be a positive number of seconds, at most "
                             "max_lifetime, or None")
        if type(self.browser_session_lifetime) is not int or self.browser_session_lifetime <= 0:
            raise ValueError("browser_session_lifetime must be a positive number of seconds")
        lifetime = self.impersonation_lifetime
        if type(lifetime) is not int or lifetime <= 0:
            raise ValueError("impersonation_lifetime must be a positive number of seconds")
        if self.same_site == "none" and self.https_only is False:
            raise ValueError("same_site='none' needs Secure cookies: do not set https_only=False")
        if not self.login_url.startswith("/") or self.login_url[1:2] in ("/", "\\"):
            raise ValueError("login_url must be a path on this site, like '/login'")
        if not isinstance(self.roles, RoleHierarchy):
            raise TypeError("roles must be a RoleHierarchy, like RoleHierarchy(MyRole)")
        if self.leeway < 0:
            raise ValueError("leeway must be >= 0")
        if self.cache_size < 0:
            raise ValueError("cache_size must be >= 0")

    @property
    def renew_after(self) -> int:
        """When a token is re-issued: ``update_age``, but never so late that a session
        in use would expire (at most half of the token's lifetime)."""
        return self.renew_after_for(True)

    @property
    def token_lifetime(self) -> int:
        """How long a token is valid after it is issued (``max_lifetime`` for a
        browser-session cookie, which has no ``Max-Age`` of its own), at most
        ``idle_timeout``."""
        return self.token_lifetime_for(True)

    def lifetime(self, remember: bool = True) -> int:
        """The absolute lifetime from sign-in: ``max_lifetime``, or for a session
        signed in with ``remember=False``, ``browser_session_lifetime`` (at most
        ``max_lifetime``)."""
        if remember:
            return self.max_lifetime
        return min(self.browser_session_lifetime, self.max_lifetime)

    def token_lifetime_for(self, remember: bool) -> int:
        """How long a token of a remembered (or a browser-session) sign-in is valid
        after it is issued."""
        if not remember:
            lifetime = self.lifetime(False)
        else:
            lifetime = self.max_lifetime if self.max_age is None else self.max_age
        return lifetime if self.idle_timeout is None else min(lifetime, self.idle_timeout)

    def renew_after_for(self, remember: bool) -> int:
        """When a token of a remembered (or a browser-session) sign-in is re-issued."""
        return min(self.update_age, self.token_lifetime_for(remember) // 2)


# 0.1's options (store=, format="authjs", ...) raise a TypeError naming their new spelling.
SessionConfig.__init__ = names_new_spellings(SessionConfig.__init__)  # type: ignore[method-assign]
