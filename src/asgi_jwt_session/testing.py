"""Helpers for an application's own tests: sign a test client in, in one line.

```python
from starlette.testclient import TestClient
from asgi_jwt_session.testing import sign_in

client = TestClient(app)
sign_in(client, SECRET_KEY, user_id="ann", role="ADMIN")
assert client.get("/admin").status_code == 200
```

The cookie is made by the package's own code, exactly as the middleware would set it
after a ``login()`` (same token format, claims, name, chunks, ``Path``, ``Domain`` and
``Secure``), and put in the client's cookie jar as if the app had answered with it, so
a later ``logout()`` or renewal by the app replaces it as usual. Works with Starlette's
``TestClient`` and with ``httpx.Client`` / ``httpx.AsyncClient`` (``ASGITransport``):
any client with a ``base_url`` and ``cookies`` over a standard ``http.cookiejar`` jar.

Give the helpers what the app's middleware was given: the same ``secret_key`` (its
newest key signs), ``session_cookie`` (or ``config=SessionConfig(...)``) and
``format``.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Mapping
from email.message import Message
from http.cookiejar import CookieJar
from typing import Any, Protocol
from urllib.parse import urljoin

from asgi_jwt_session.codec import Codec, SessionFormat
from asgi_jwt_session.config import SessionConfig
from asgi_jwt_session.cookies import CookieWriter
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.middleware import JWTSessionMiddleware
from asgi_jwt_session.session import Session

__all__ = ["Client", "read_session", "session_token", "sign_in", "sign_out"]


class Client(Protocol):
    """A test client: Starlette's ``TestClient``, ``httpx.Client``, ``httpx.AsyncClient``."""

    @property
    def base_url(self) -> Any: ...

    @property
    def cookies(self) -> Any: ...  # httpx.Cookies (its ``.jar``), or a CookieJar


async def no_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("asgi_jwt_session.testing builds cookies; it serves nothing")


def middleware_for(secret_key: SecretKey, session_cookie: str, config: SessionConfig | None,
                   format: SessionFormat | None) -> JWTSessionMiddleware:
    """A middleware set up as the app's is, for its codecs and cookie writers."""
    return JWTSessionMiddleware(no_app, secret_key, session_cookie, config=config,
                                format=format)


def jar_of(client: Client) -> CookieJar:
    cookies = client.cookies
    jar = getattr(cookies, "jar", cookies)
    if not isinstance(jar, CookieJar):
        raise TypeError(f"{type(client).__name__} has no cookie jar: use Starlette's "
                        "TestClient, or an httpx.Client or httpx.AsyncClient")
    return jar


def url_of(client: Client, path: str) -> urllib.request.Request:
    """A request to ``path`` on the client's ``base_url``, as the cookie jar sees it."""
    return urllib.request.Request(urljoin(str(client.base_url), path))


class SetCookieAnswer:
    """Set-Cookie lines in the shape ``CookieJar.extract_cookies`` reads."""

    def __init__(self, lines: list[str]) -> None:
        self.headers = Message()
        for line in lines:
            self.headers["Set-Cookie"] = line

    def info(self) -> Message:
        return self.headers


def is_cookie_of(name: str, session_cookie: str) -> bool:
    """``session_cookie`` itself, or one of its chunks (``session.0``, ``session.1``...)."""
    index = name[len(session_cookie) + 1:]
    return name == session_cookie or (
        name.startswith(session_cookie + ".") and index.isascii() and index.isdigit())


def new_session(user_id: str, role: str, data: Mapping[str, Any] | None,
                version: int | None, claims: dict[str, Any]) -> Session:
    session = Session(data)
    session.login(user_id, role, version=version, **claims)
    return session


def issue(middleware: JWTSessionMiddleware, session: Session, secure: bool
          ) -> tuple[str, Codec, CookieWriter, str]:
    """Encode ``session`` as the middleware does when it writes the cookie:
    the cookie's name, codec, writer and the token."""
    cookies = middleware.cookies
    name, codec, writer = cookies[0] if secure else cookies[-1]
    now = int(time.time())
    expires_at = middleware.context.expires_for(session, now)
    token = codec.encode(session.to_claims(now, expires_at))
    session.issued_at = now
    session.expires_at = expires_at
    return name, codec, writer, token


def session_token(
    secret_key: SecretKey,
    user_id: str,
    role: str,
    *,
    session_cookie: str = "session",
    config: SessionConfig | None = None,
    format: SessionFormat | None = None,
    secure: bool = False,
    data: Mapping[str, Any] | None = None,
    version: int | None = None,
    **claims: Any,
) -> str:
    """The value of a session cookie for ``user_id`` signed in with ``role``.

    For a client that has no cookie jar (a raw ASGI test, a websocket library): send
    it as ``Cookie: session=<token>``. A token too large for one cookie must be
    chunked (``sign_in`` does that). ``secure`` picks the https cookie of a format that
    has two (Auth.js). The other arguments are :func:`sign_in`'s.
    """
    middleware = middleware_for(secret_key, session_cookie, config, format)
    session = new_session(user_id, role, data, version, claims)
    return issue(middleware, session, secure)[3]


def sign_in(
    client: Client,
    secret_key: SecretKey,
    user_id: str,
    role: str,
    *,
    session_cookie: str = "session",
    config: SessionConfig | None = None,
    format: SessionFormat | None = None,
    data: Mapping[str, Any] | None = None,
    version: int | None = None,
    **claims: Any,
) -> Session:
    """Sign ``client`` in as ``user_id`` with ``role``: a fresh session cookie in its jar.

    - ``secret_key``: the middleware's (a secret, a list newest first, or a ``Keyring``).
    - ``session_cookie`` or ``config``: the middleware's cookie name, or its whole
      :class:`~asgi_jwt_session.SessionConfig` (``path``, ``domain``, ``max_age``,
      ``https_only`` are honoured as the middleware honours them).
    - ``format``: the middleware's format, e.g. ``AuthJSFormat()``.
    - ``data``: the session's free-form data (``request.session``).
    - ``version``: the session version (``ver``); with a store-backed ``Freshness``,
      pass the user's ``session_version`` so no revalidation is due at once.
    - ``claims``: extra claims, as ``login()`` takes them (``session.user.claims``);
      ``remember=False`` as ``login()`` takes it too.

    The cookie is ``Secure`` exactly when the middleware would make it so for a
    request to the client's ``base_url`` (so an app with ``https_only=True`` needs a
    client with an ``https://`` base URL, as it does after a real sign-in). Replaces
    any session cookie (and chunks) the client had. Returns the
    :class:`~asgi_jwt_session.Session` the cookie holds.
    """
    middleware = middleware_for(secret_key, session_cookie, config, format)
    session = new_session(user_id, role, data, version, claims)
    jar = jar_of(client)
    request = url_of(client, middleware.config.path)
    secure = middleware.context.is_secure({"type": "http", "scheme": request.type})
    name, _, writer, token = issue(middleware, session, secure)
    carried = [cookie.name for cookie in jar if is_cookie_of(cookie.name, name)]
    lines = writer.set(token, secure=secure, carried=carried,
                       max_age=(session.expires_at or 0) - (session.issued_at or 0),
                       persistent=session.remember)
    # Into the jar as if the app had answered a request with these lines, so the jar
    # keeps the cookie under the domain and path the app's own Set-Cookie would have.
    jar.extract_cookies(SetCookieAnswer(lines), request)  # type: ignore[arg-type]
    if not any(is_cookie_of(cookie.name, name) for cookie in jar):
        raise ValueError(
            f"a client at {client.base_url} keeps no cookie for domain "
            f"{middleware.config.domain!r}: give the client a base_url on that domain")
    return session


def sign_out(client: Client, session_cookie: str = "session") -> None:
    """Drop the session cookie ``session_cookie`` (and its chunks) from the client's jar.

    An Auth.js session has two names: ``authjs.session-token`` and
    ``__Secure-authjs.session-token``.
    """
    jar = jar_of(client)
    for cookie in list(jar):
        if is_cookie_of(cookie.name, session_cookie):
            jar.clear(cookie.domain, cookie.path, cookie.name)


def read_session(
    client: Client,
    secret_key: SecretKey,
    *,
    session_cookie: str = "session",
    config: SessionConfig | None = None,
    format: SessionFormat | None = None,
) -> Session | None:
    """The session in the client's jar, as the app would read it on the next request
    (``None`` when the client sends no session cookie): to check what the app wrote,
    e.g. the role after a refresh.

    A cookie that does not decode raises :class:`~asgi_jwt_session.InvalidToken`.
    """
    middleware = middleware_for(secret_key, session_cookie, config, format)
    request = url_of(client, middleware.config.path)
    jar_of(client).add_cookie_header(request)  # the Cookie header the client would send
    header = request.get_header("Cookie")
    headers = [(b"cookie", header.encode("latin-1"))] if header else []
    _, codec, token, _ = middleware.read_cookie({"type": "http", "headers": headers})
    if token is None:
        return None
    return Session.from_decoded(codec.decode_cached(token, int(time.time())))
