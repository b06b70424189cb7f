"""The first-sight scenarios: requests as a busy process meets them.

Each scenario is a Starlette app called directly (no server) whose route reads the
signed-in user and two of its three session values. The tokens are minted by another
encoder (another process, as with several workers), and the JWT apps are warmed until
both their caches are full, so a token never seen before inserts and evicts, as it
does in a process that has been serving for a while.

- ``none``: no session middleware (every cost is over it);
- ``floor``: a pass-through middleware that wraps ``send`` and adds ``Vary: Cookie``,
  the least any cookie session middleware adds;
- ``least``: the least a warm session can do with this package's ``Session`` and
  ``request.user`` (see :class:`Least`): not a usable middleware, the bound under ``warm``;
- ``starlette``: Starlette's ``SessionMiddleware``, 1,000 users' cookies in turn;
- ``warm``: this package, the same 1,000 users, every token already cached;
- ``first-sight``: this package, every request a token never seen, caches full;
- ``mix``: nine warm requests, then one first-sight request;
- ``decrypt-only``: this package with ``cache_size=0`` (no cache to look up, insert or
  evict): the decrypt-and-check component alone, not a figure users meet.

Used by ``bench_instructions`` (instruction counts) and ``bench_first_sight`` (time).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_jwt_session import JWTSessionMiddleware, auth
from asgi_jwt_session.session import Session
from asgi_jwt_session.tokens import TokenCodec
from asgi_jwt_session.users import SessionAuth
from benchmarks.bench_server import VaryOnly
from benchmarks.inprocess import call, discard, receive_empty
from benchmarks.inprocess import scopes_for as scopes

SECRET = "benchmark-first-sight-" + "k7Qz" * 8
USERS = 1000
CACHE_SIZE = 2048  # the token cache; the front cache holds min(1024, this)
DATA = {"theme": "dark", "cart": [3, 1, 4], "lang": "en-GB"}
# In this order, request by request, when timed: warm follows starlette, as it did
# before least came, rather than least, whose requests leave the CPU's caches warm.
SCENARIOS = ("none", "floor", "least", "starlette", "warm", "first-sight", "mix",
             "decrypt-only")
MIX_EVERY = 10  # one request in ten, in "mix", carries a token never seen
EXPECTED = b"USER dark en-GB"


async def fixed(request: Request) -> PlainTextResponse:
    return PlainTextResponse("u000001 USER dark en-GB")


async def starlette_route(request: Request) -> PlainTextResponse:
    session = request.session
    return PlainTextResponse(f"{session.get('uid')} {session.get('role')} "
                             f"{session.get('theme')} {session.get('lang')}")


async def jwt_route(request: Request) -> PlainTextResponse:
    session = auth(request)
    if session is None:
        return PlainTextResponse("signed out", status_code=401)
    return PlainTextResponse(f"{session.user.id} {session.user.role} "
                             f"{session.get('theme')} {session.get('lang')}")


def app(route: Callable[[Request], Any], *middleware: Middleware) -> Starlette:
    return Starlette(routes=[Route("/", route)], middleware=list(middleware))


def jwt_app(cache_size: int = CACHE_SIZE) -> Starlette:
    return app(jwt_route, Middleware(JWTSessionMiddleware, secret_key=SECRET,
                                     cache_size=cache_size))


class Least:
    """The least a warm cookie session can do with this package's parts, the bound
    under ``warm``: the request's Cookie header looked up as it is in the front cache of
    ``source``'s JWT middleware (warmed), the :class:`Session` of the token found there,
    ``request.user``, and ``Vary: Cookie`` on a response that read it. Nothing else: no
    time check (expiry, renewal), no LRU update, no cookie written when the session
    changes, no session the app replaces, no guard's error answered, no other cookie
    layout, no ``Vary`` the app set merged with, no session context in the scope, no
    websocket. Not a middleware to use: what any design pays that builds this
    ``Session`` and ``request.user`` per request."""

    def __init__(self, app: ASGIApp, source: Starlette) -> None:
        self.app = app
        self.source = source
        self.middleware: JWTSessionMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        middleware = self.middleware
        if middleware is None:  # the source app's, once its stack is built (warm-up)
            found: Any = self.source.middleware_stack
            while not isinstance(found, JWTSessionMiddleware):
                found = found.app
            middleware = self.middleware = found
        cookie = b""
        for key, value in scope["headers"]:
            if key == b"cookie":
                cookie = value
        seen = middleware.front.get(cookie)
        if seen is None or seen.decoded is None:
            raise RuntimeError("least: a token its source has not cached")
        session = Session.from_decoded(seen.decoded, seen.lifetime)
        scope["session"] = session
        scope["user"] = scope["auth"] = SessionAuth(session, middleware.roles)

        async def send_vary(message: Message) -> None:
            if message["type"] == "http.response.start" and session.accessed:
                message["headers"] = [*message.get("headers", ()), (b"vary", b"Cookie")]
            await send(message)

        await self.app(scope, receive, send_vary)


def starlette_cookie(payload: dict[str, Any]) -> str:
    """A cookie value as Starlette's SessionMiddleware writes it."""
    signer = SessionMiddleware(discard_app, secret_key=SECRET).signer
    data = base64.b64encode(json.dumps(payload).encode("utf-8"))
    return signer.sign(data).decode("utf-8")


class Scenarios:
    """Every scenario's app and the scopes it is fed (``requests`` each), and the
    warm-up that fills the JWT apps' caches. ``shared``: the JWT scenarios share one
    app (a process runs one of them); otherwise each has its own, warmed alike."""

    def __init__(self, requests: int, shared: bool = False) -> None:
        elsewhere = TokenCodec(SECRET, cache_size=0)  # another process's encoder
        now = int(time.time())

        def cookie(index: int) -> str:
            claims = {"sub": f"u{index:06d}", "role": "USER", "ver": 0, "iat": now,
                      "exp": now + 30 * 86400, "auth_time": now, "jti": f"j{index:08d}",
                      "data": DATA}
            return "session=" + elsewhere.encode(claims)

        users = [cookie(i) for i in range(USERS)]
        fillers = [cookie(USERS + i) for i in range(CACHE_SIZE)]
        new = [cookie(10 * USERS + i) for i in range(requests)]
        mix_new = [cookie(20 * USERS + requests + i) for i in range(requests // MIX_EVERY)]
        signed = [f"session={starlette_cookie({'uid': f'u{i:06d}', 'role': 'USER', **DATA})}"
                  for i in range(USERS)]
        fresh = iter(mix_new)
        mix = [next(fresh) if i % MIX_EVERY == MIX_EVERY - 1 else users[i % USERS]
               for i in range(requests)]
        turns = [users[i % USERS] for i in range(requests)]
        one = jwt_app() if shared else None
        # The JWT app whose front cache least reads: its own unless shared (so that one
        # scenario's requests never warm the CPU's caches for the other's).
        self.source = one or jwt_app()
        self.apps: dict[str, ASGIApp] = {
            "none": app(fixed),
            "floor": app(fixed, Middleware(VaryOnly)),
            "starlette": app(starlette_route, Middleware(SessionMiddleware, secret_key=SECRET)),
            "least": app(jwt_route, Middleware(Least, source=self.source)),
            "warm": one or jwt_app(),
            "first-sight": one or jwt_app(),
            "mix": one or jwt_app(),
            "decrypt-only": jwt_app(cache_size=0),
        }
        self.scopes: dict[str, list[Scope]] = {
            "none": scopes(turns), "floor": scopes(turns),
            "starlette": scopes([signed[i % USERS] for i in range(requests)]),
            "least": scopes(turns), "warm": scopes(turns), "first-sight": scopes(new),
            "mix": scopes(mix), "decrypt-only": scopes(turns),
        }
        # Fillers first, so that the users are the newest entries of both caches.
        self.warmup: dict[str, list[Scope]] = {
            name: scopes(fillers + users) for name in ("warm", "first-sight", "mix")
            if not shared or name == "warm"}
        self.source_warmup = [] if shared else scopes(fillers + users)
        self.warmup["starlette"] = scopes(signed[:10])
        self.warmup["least"] = scopes(users[-10:])  # after its source's warm-up
        self.warmup["decrypt-only"] = scopes(users[:10])

    async def warm_up(self) -> None:
        """Send every warm-up request (the caches fill), checking the last answers."""
        await serve(self.source, self.source_warmup)
        for name, warmup in self.warmup.items():
            await serve(self.apps[name], warmup)
            status, _, body = await call(self.apps[name], dict(warmup[-1]))
            if status != 200 or not body.endswith(EXPECTED):
                raise RuntimeError(f"{name}: expected 200 ...{EXPECTED!r}, got {status} {body!r}")


async def discard_app(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def serve(app: ASGIApp, requests: Sequence[Scope]) -> None:
    for scope in requests:
        await app(dict(scope), receive_empty, discard)
