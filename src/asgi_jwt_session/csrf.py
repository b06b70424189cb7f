"""CSRF protection for POSTs: a double-submit token and an origin check.

A browser POST passes when both hold:

- the ``X-CSRF-Token`` header (or the ``csrf_token`` form field) equals the
  ``csrftoken`` cookie, compared in constant time. The cookie is readable by scripts
  (not ``HttpOnly``) and ``SameSite=Lax``; another site can neither read it nor set it.
- the request is not cross-site: ``Sec-Fetch-Site`` must be ``same-origin`` (or
  ``none``); a browser without it must send an ``Origin`` equal to the request's own
  origin. An origin listed in ``trusted_origins`` passes either check. A request with
  neither header (an old browser, or not a browser) relies on the token alone.

The session endpoints use these; an app's own HTML forms can too::

    async def settings_page(request):
        response = templates.TemplateResponse(
            request, "settings.html", {"csrf_token": csrf_token(request)})
        set_csrf_cookie(request, response)
        return response

    async def save_settings(request):
        await verify_csrf(request)  # a refused request becomes a 403
        ...
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

import starlette.requests
from starlette.requests import Request
from starlette.responses import Response

from asgi_jwt_session.context import get_context
from asgi_jwt_session.errors import CSRFError

__all__ = ["CSRFError", "csrf_token", "set_csrf_cookie", "verify_csrf"]

logger = logging.getLogger("asgi_jwt_session.csrf")

CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
TOKEN = re.compile(r"[A-Za-z0-9_-]{32,128}")
DEFAULT_PORTS = {"http": 80, "https": 443}
SCOPE_KEY = "asgi_jwt_session.csrf_token"  # a token minted during this request


def csrf_token(request: Request, *, cookie_name: str = CSRF_COOKIE) -> str:
    """The CSRF token to put in a form or an ``X-CSRF-Token`` header.

    The token from the request's cookie, or a new random one (the same one for every
    call in this request) that :func:`set_csrf_cookie` then sends to the browser.
    """
    token = request.cookies.get(cookie_name)
    if token is not None and TOKEN.fullmatch(token):
        return token
    minted: str | None = request.scope.get(SCOPE_KEY)
    if minted is None:
        minted = request.scope[SCOPE_KEY] = secrets.token_urlsafe(32)
    return minted


def set_csrf_cookie(request: Request, response: Response, *,
                    cookie_name: str = CSRF_COOKIE) -> None:
    """Set the CSRF cookie on ``response`` if :func:`csrf_token` minted a new token.

    The cookie is a browser-session cookie on ``Path=/``, ``SameSite=Lax``, readable by
    scripts, and ``Secure`` when the session cookie would be (the request is https,
    or the middleware has ``https_only=True``).
    """
    token = request.scope.get(SCOPE_KEY)
    if token is None:
        return
    context = get_context(request)
    secure = (context.is_secure(request.scope) if context is not None
              else request.url.scheme == "https")
    response.set_cookie(cookie_name, token, path="/", secure=secure, httponly=False,
                        samesite="lax")


def can_parse_forms() -> bool:
    """Whether Starlette can parse form bodies here (it needs ``python-multipart``)."""
    return getattr(starlette.requests, "parse_options_header", None) is not None


@functools.cache
def warn_no_form_parser() -> None:
    logger.warning("python-multipart is not installed: form fields (csrf_token, next) "
                   "are not read; send the CSRF token in a header")


async def form_field(request: Request, name: str) -> str | None:
    """The text field ``name`` of a form body; ``None`` when the request is no form,
    has no such field, or forms cannot be parsed (no ``python-multipart``)."""
    if not request.headers.get("content-type", "").startswith(FORM_TYPES):
        return None
    if not can_parse_forms():
        warn_no_form_parser()  # once per process
        return None
    value = (await request.form()).get(name)
    return value if isinstance(value, str) else None


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower case, without a default port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def trusted(origins: Iterable[str]) -> frozenset[str]:
    """Normalized ``trusted_origins``; a value that is not an origin is a bug."""
    normalized = set()
    for origin in origins:
        value = origin_of(origin)
        parts = urlsplit(origin)
        extra = parts.path.strip("/") or parts.query or parts.fragment or parts.username
        if value is None or extra:
            raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        normalized.add(value)
    return frozenset(normalized)


def check_origin(request: Request, trusted_origins: frozenset[str]) -> None:
    """Refuse a cross-site request by ``Sec-Fetch-Site``, else by ``Origin``."""
    origin = request.headers.get("origin")
    if origin is not None and origin_of(origin) in trusted_origins:
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise CSRFError(f"CSRF check failed: {site} request")
    elif origin is not None:
        own = origin_of(str(request.url))
        if own is None or origin_of(origin) != own:
            raise CSRFError("CSRF check failed: Origin does not match")


async def verify_csrf(
    request: Request,
    *,
    cookie_name: str = CSRF_COOKIE,
    header_name: str = CSRF_HEADER,
    field_name: str = CSRF_FIELD,
    trusted_origins: Iterable[str] = (),
) -> None:
    """Raise :class:`CSRFError` (a 403) unless this unsafe request is same-origin and
    carries the CSRF cookie's token in the ``header_name`` header or ``field_name``
    form field. GET, HEAD, OPTIONS and TRACE pass unchecked.

    Reading the form field needs ``python-multipart``; without it only the header
    counts. The form stays cached on the request, so the endpoint can still ``await
    request.form()``.
    """
    if request.method in SAFE_METHODS:
        return
    check_origin(request, trusted(trusted_origins))
    expected = request.cookies.get(cookie_name)
    if expected is None or not TOKEN.fullmatch(expected):
        raise CSRFError("CSRF check failed: no CSRF cookie")
    submitted = request.headers.get(header_name)
    if submitted is None:
        submitted = await form_field(request, field_name)
    if submitted is None:
        raise CSRFError("CSRF check failed: no CSRF token sent")
    if not hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "replace")):
        raise CSRFError("CSRF check failed: CSRF token does not match")
