"""Device Bound Session Credentials (W3C DBSC): a session cookie that is useless off
the device it was issued to.

``JWTSessionMiddleware(app, secret, device_binding=DeviceBinding())`` (needs
``pip install 'asgi-jwt-session[dbsc]'``). Off by default; over plain http, in
browsers without DBSC and for sessions that never registered nothing changes.

1. A sign-in over https answers ``Secure-Session-Registration: (ES256 RS256);
   path="<registration_path>";challenge="<c>"``. The browser makes a key (in the TPM)
   and POSTs a proof signed by it; the session token then carries the public key
   (``cnf``, RFC 7800) and lives ``bound_lifetime`` seconds.
2. The ordinary request of a bound session is served from its cookie as before (no
   I/O); renewal never extends a bound token.
3. When the cookie expires, the browser POSTs ``refresh_path`` with
   ``Sec-Secure-Session-Id``; it gets a challenge (403), signs it, and the verified
   proof earns a new cookie for ``bound_lifetime`` more. The session itself lives
   meanwhile in a second cookie that only the refresh path receives, encrypted under
   another key (so it is never a session cookie): without the device's key it is
   worth nothing.

See docs/device-binding.md.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import anyio
import orjson
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from asgi_jwt_session.codec import Codec, Decoded, b64url_encode
from asgi_jwt_session.context import SCOPE_KEY
from asgi_jwt_session.cookies import CookieWriter, read_cookie_chunks
from asgi_jwt_session.dbsc_proof import (
    ALGORITHMS,
    Challenges,
    ProofError,
    derive_keys,
    verify_proof,
)
from asgi_jwt_session.errors import (
    InvalidToken,
    SessionTooLarge,
    StoreUnavailable,
    failure,
)
from asgi_jwt_session.keys import Keyring
from asgi_jwt_session.session import Session
from asgi_jwt_session.store.base import ChallengeStore
from asgi_jwt_session.tokens import TokenFormat, TokenWire

if TYPE_CHECKING:
    from asgi_jwt_session.middleware import JWTSessionMiddleware

__all__ = ["DeviceBinding"]

logger = logging.getLogger("asgi_jwt_session.dbsc")

REGISTRATION = b"secure-session-registration"
RESPONSE = b"secure-session-response"
CHALLENGE = b"secure-session-challenge"
SESSION_ID = b"sec-secure-session-id"
REFRESH_KEY_INFO = b"asgi-jwt-session v1 DBSC refresh cookie key"
MAX_HEADER = 8192
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
NO_STORE = {"cache-control": "no-store"}
OFFERS_REMEMBERED = 65536  # sessions offered a registration (register_existing), per process


class Refused(Exception):
    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code


def header(scope: Scope, name: bytes) -> str | None:
    """A request header that is an RFC 9651 item (a string or a token), parsed by
    ``http_sf``; ``None`` when absent. Several, oversized or malformed: refused."""
    import http_sf

    values = [value for key, value in scope["headers"] if key == name]
    if not values:
        return None
    if len(values) > 1 or len(values[0]) > MAX_HEADER:
        raise Refused(400, f"{name.decode()} is repeated or too large")
    try:
        item, _ = cast(tuple[Any, Any], http_sf.parse(values[0], tltype="item"))
    except Exception as exc:  # http_sf raises ValueError and its own errors
        raise Refused(400, f"{name.decode()} is not a structured field item") from exc
    if not isinstance(item, (str, http_sf.Token)):  # a proof comes as a token
        raise Refused(400, f"{name.decode()} is not a string")
    return str(item)


def derived_keyring(keyring: Keyring) -> Keyring:
    """The keyring of the refresh cookie: each key derived (HKDF) from the session
    keyring's under another label, so a refresh token never decrypts as a session."""
    return Keyring([{"kty": "oct", "k": b64url_encode(key)}
                    for key in derive_keys(keyring, REFRESH_KEY_INFO)])


class DeviceBinding:
    """Device Bound Session Credentials for :class:`JWTSessionMiddleware`
    (``device_binding=DeviceBinding()``).

    - ``bound_lifetime``: seconds a bound session's cookie (token and ``Max-Age``)
      lives; the browser refreshes it with a proof from the device's key.
    - ``registration_path``, ``refresh_path``: the two endpoints the middleware
      answers itself (POST only).
    - ``challenge_lifetime``: seconds a challenge may be answered.
    - ``refresh_cookie``: the name of the cookie that keeps the session between
      refreshes (sent to ``refresh_path`` only); default ``__Secure-<session>-dbsc``.
    - ``scope_specification``: rules of the session's scope, as DBSC's session
      configuration writes them (``{"type": "exclude", "domain": ..., "path": ...}``).
    - ``register_existing``: also offer registration to a session signed in before
      (unbound), on its next response over https; each process offers it once.

    With a session registry (``Freshness(store, registry=SessionRegistry(store))``),
    each challenge answered is recorded in the store (one write per registration or
    refresh), so it serves once on every process, not only on the one that saw it.

    Works with this package's token format and cookies that fit one Set-Cookie line;
    Auth.js or Better Auth cookies, and ``max_cookie_size`` that would chunk, are
    refused when the middleware is made.
    """

    def __init__(
        self,
        *,
        bound_lifetime: int = 600,
        registration_path: str = "/auth/dbsc/register",
        refresh_path: str = "/auth/dbsc/refresh",
        challenge_lifetime: int = 120,
        refresh_cookie: str | None = None,
        scope_specification: Sequence[dict[str, str]] = (),
        register_existing: bool = False,
    ) -> None:
        if type(bound_lifetime) is not int or bound_lifetime <= 0:
            raise ValueError("bound_lifetime must be a positive number of seconds")
        if type(challenge_lifetime) is not int or challenge_lifetime <= 0:
            raise ValueError("challenge_lifetime must be a positive number of seconds")
        for path in (registration_path, refresh_path):
            if not path.startswith("/") or path.startswith("//") or not path.isascii() \
                    or '"' in path or "\\" in path:
                raise ValueError(f"DBSC paths must be paths on this site, not {path!r}")
        if registration_path == refresh_path:
            raise ValueError("registration_path and refresh_path must differ")
        try:
            import http_sf  # noqa: F401
        except ImportError as exc:
            raise ImportError("DeviceBinding needs the http-sf package: "
                              "pip install 'asgi-jwt-session[dbsc]'") from exc
        self.bound_lifetime = bound_lifetime
        self.registration_path = registration_path
        self.refresh_path = refresh_path
        self.paths = frozenset({registration_path, refresh_path})
        self.challenge_lifetime = challenge_lifetime
        self.refresh_cookie_name = refresh_cookie
        self.scope_specification = [dict(rule) for rule in scope_specification]
        if not isinstance(register_existing, bool):
            raise TypeError("register_existing must be True or False")
        self.register_existing = register_existing
        self.offered: OrderedDict[str, None] = OrderedDict()  # session ids, per process
        self.attached: JWTSessionMiddleware | None = None

    def attach(self, middleware: JWTSessionMiddleware) -> None:
        """Check the middleware's options and take its keys (the middleware calls this)."""
        if self.attached is not None:
            raise ValueError("this DeviceBinding already serves another middleware")
        if type(middleware.format) is not TokenFormat:
            raise TypeError(f"DeviceBinding works with this package's own tokens only, not "
                            f"{type(middleware.format).__name__}: that cookie is written by "
                            "another program, which would not keep it bound")
        config = middleware.config
        if config.https_only is False:
            raise ValueError("DeviceBinding needs Secure cookies: do not set https_only=False")
        name, codec, writer = middleware.cookies[0]
        refresh_name = self.refresh_cookie_name or "__Secure-{}-dbsc".format(
            name.removeprefix("__Host-").removeprefix("__Secure-"))
        self.refresh_writer = CookieWriter(
            refresh_name, max_age=config.max_age, path=self.refresh_path,
            domain=config.domain, same_site=config.same_site,
            partitioned=config.partitioned, max_size=config.max_cookie_size)
        # Both cookies hold the token whole: the largest that fits one Set-Cookie line.
        fits = max(size for size in range(64, 4097) if writer.chunks_for(size) == 1
                   and self.refresh_writer.chunks_for(size) == 1)
        if config.max_cookie_size > fits:
            raise ValueError(f"DeviceBinding binds one cookie, and max_cookie_size="
                             f"{config.max_cookie_size} would chunk it: set "
                             f"max_cookie_size={fits} or less")
        keyring: Keyring = codec.wire.keyring  # type: ignore[attr-defined]  # a TokenWire
        self.challenges = Challenges(keyring, lifetime=self.challenge_lifetime,
                                     leeway=config.leeway)
        self.refresh_codec = Codec(TokenWire(derived_keyring(keyring)), leeway=config.leeway,
                                   cache_size=0, max_token_size=config.max_cookie_size)
        self.writer = writer
        # With a session registry, its store records the challenges answered.
        registry = getattr(middleware.freshness, "registry", None)
        store = getattr(registry, "store", None)
        self.challenge_store: ChallengeStore | None = store if callable(
            getattr(store, "use_challenge", None)) else None
        self.store_timeout: float = getattr(registry, "timeout", 5.0)
        if registry is not None and self.challenge_store is None:
            logger.warning("DBSC: the session registry's store has no use_challenge(): "
                           "a challenge serves once per process only")
        self.attached = middleware

    @property
    def middleware(self) -> JWTSessionMiddleware:
        if self.attached is None:
            raise RuntimeError("give this DeviceBinding to JWTSessionMiddleware(device_binding=)")
        return self.attached

    # On the way out of an ordinary response

    def response_headers(self, scope: Scope, session: Session, jti: str | None,
                         decoded: Decoded | None, lines: list[str]) -> list[tuple[bytes, bytes]]:
        """What a response that writes the session cookie (``lines``) adds: a bound
        session's refresh cookie, the registration header at a sign-in over https, or
        the refresh cookie's deletion when a bound session ends."""
        if not lines or scope.get("scheme") != "https" or scope["type"] != "http":
            return []
        now = int(time.time())
        was_bound = decoded is not None and "cnf" in decoded.claims
        if session.user is None or session.jti is None:
            return [self.delete_refresh()] if was_bound else []
        if session.cnf is not None:
            return [self.refresh_line(session, now)]
        added = []
        if session.jti != jti:  # a sign-in: offer to bind it
            added.append(self.registration(session.jti, now))
        if was_bound:
            added.append(self.delete_refresh())
        return added

    def registration(self, session_id: str, now: int) -> tuple[bytes, bytes]:
        """The ``Secure-Session-Registration`` header that offers to bind a session."""
        import http_sf

        challenge = self.challenges.issue("register", session_id, now)
        offer: Any = [([http_sf.Token(alg) for alg in ALGORITHMS],
                       {"path": self.registration_path, "challenge": challenge})]
        return REGISTRATION, http_sf.ser(offer).encode("ascii")

    def may_offer(self, scope: Scope, session: Session) -> bool:
        """``register_existing``: whether this https request's session, signed in and
        unbound, has not been offered a registration in this process yet."""
        return (self.register_existing and scope.get("scheme") == "https"
                and session.user is not None and session.jti is not None
                and session.cnf is None and session.jti not in self.offered)

    def offer_existing(self, scope: Scope, session: Session, jti: str | None
                       ) -> tuple[bytes, bytes] | None:
        """``register_existing``: the registration header for a session signed in
        before, unbound, on its first response over https in this process (``None``
        otherwise: a sign-in is offered by :meth:`response_headers`)."""
        if jti is None or session.jti != jti or not self.may_offer(scope, session):
            return None
        offered = self.offered
        if jti in offered:
            return None
        offered[jti] = None
        if len(offered) > OFFERS_REMEMBERED:
            offered.popitem(last=False)
        return self.registration(jti, int(time.time()))

    def refresh_line(self, session: Session, now: int) -> tuple[bytes, bytes]:
        context = self.middleware.context
        expires_at = context.expires_for(session, now, bound=False)
        token = self.refresh_codec.encode(session.to_claims(now, expires_at))
        line = self.refresh_writer.set(token, secure=True, max_age=expires_at - now,
                                       persistent=session.remember)[0]
        return b"set-cookie", line.encode("latin-1")

    def delete_refresh(self) -> tuple[bytes, bytes]:
        line = self.refresh_writer.delete(self.refresh_writer.name, secure=True)
        return b"set-cookie", line.encode("latin-1")

    # The two endpoints

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a request to ``registration_path`` or ``refresh_path``."""
        refresh = scope["path"] == self.refresh_path
        scope[SCOPE_KEY] = self.middleware.context  # the registry reads the options there
        try:
            if scope["method"] != "POST":
                response: Response = JSONResponse({"detail": "Method Not Allowed"}, 405,
                                                  headers={"allow": "POST", **NO_STORE})
            elif scope.get("scheme") != "https":
                raise Refused(400, "device binding needs https")
            elif refresh:
                response = await self.refresh(scope)
            else:
                response = await self.register(scope)
        except Refused as exc:
            logger.info("DBSC %s refused: %s", "refresh" if refresh else "registration", exc)
            response = self.refused(exc, refresh)
        await response(scope, receive, send)

    def refused(self, exc: Refused, refresh: bool) -> Response:
        if not refresh:
            return JSONResponse({"detail": str(exc)}, exc.status_code, headers=NO_STORE)
        # The protocol's answer that ends the browser's DBSC session; the session
        # cookie and the refresh cookie go with it, so the next request is signed out.
        response = JSONResponse({"continue": False}, exc.status_code, headers=NO_STORE)
        response.raw_headers.append(self.delete_refresh())
        line = self.writer.delete(self.writer.name, secure=True)
        response.raw_headers.append((b"set-cookie", line.encode("latin-1")))
        return response

    async def register(self, scope: Scope) -> Response:
        now = int(time.time())
        proof = header(scope, RESPONSE)
        if proof is None:
            raise Refused(400, "no Secure-Session-Response proof")
        middleware = self.middleware
        seen = middleware.read_chunks(scope)
        session, decoded, _, carried = middleware.open(seen, now)
        if session is None or session.user is None or session.jti is None:
            raise Refused(401, "no signed-in session to bind")
        if session.cnf is not None:
            raise Refused(409, "the session is bound already")
        try:
            payload, key = verify_proof(proof, None)
            until = self.challenges.check(payload["jti"], "register", session.jti, now)
        except ProofError as exc:
            raise Refused(401, str(exc)) from exc
        await self.spend(payload["jti"], until)
        session.cnf = {"jwk": key}
        return await self.issue(scope, session, seen.name, carried, decoded)

    @staticmethod
    def session_id(scope: Scope) -> str | None:
        """``Sec-Secure-Session-Id``: Chromium sends the id bare (``abc``), which is an
        RFC 9651 token only when it starts with a letter; a quoted string is parsed."""
        raw: list[bytes] = [value for key, value in scope["headers"] if key == SESSION_ID]
        if len(raw) == 1 and SESSION_ID_PATTERN.fullmatch(raw[0].decode("latin-1")):
            return raw[0].decode("ascii")
        session_id = header(scope, SESSION_ID)
        if session_id is None or not SESSION_ID_PATTERN.fullmatch(session_id):
            return None
        return session_id

    async def refresh(self, scope: Scope) -> Response:
        now = int(time.time())
        session_id = self.session_id(scope)
        if session_id is None:
            raise Refused(400, "no valid Sec-Secure-Session-Id")
        name = self.refresh_writer.name
        token = read_cookie_chunks(scope["headers"], name, 1).token
        if token is None:
            raise Refused(401, "no refresh cookie")
        try:
            session = Session.from_decoded(self.refresh_codec.decode_cached(token, now))
        except InvalidToken as exc:
            raise Refused(401, f"refresh cookie refused: {exc}") from exc
        cnf = session.cnf
        key = cnf.get("jwk") if cnf is not None else None
        if session.user is None or session.jti != session_id or type(key) is not dict:
            raise Refused(401, "the refresh cookie is not this bound session's")
        if session.auth_time is not None and now > self.middleware.context.ends_at(session, now):
            raise Refused(401, "session passed its absolute lifetime")
        proof = header(scope, RESPONSE)
        if proof is None:
            import http_sf

            challenge = self.challenges.issue("refresh", session_id, now)
            value = http_sf.ser(cast(Any, (challenge, {"id": session_id})))
            response = Response(status_code=403, headers=NO_STORE)
            response.raw_headers.append((CHALLENGE, value.encode("ascii")))
            return response
        try:
            payload, _ = verify_proof(proof, key)
            until = self.challenges.check(payload["jti"], "refresh", session_id, now)
        except ProofError as exc:
            raise Refused(401, str(exc)) from exc
        await self.spend(payload["jti"], until)
        freshness = self.middleware.freshness
        if freshness is not None:  # a natural moment to revalidate: one store read
            try:
                await freshness.refresh(session, now)
            except StoreUnavailable as exc:
                if getattr(freshness, "on_store_error", "keep") == "signout":
                    raise Refused(401, f"store unavailable: {exc}") from exc
                logger.warning("DBSC refresh of %r served from its cookie: %s",
                               session.user.id, exc)
            if session.user is None:
                raise Refused(401, "session revoked, or its user disabled or gone")
        return await self.issue(scope, session, self.writer.name, [], None)

    async def spend(self, challenge: str, until: int) -> None:
        """With a session registry: record ``challenge`` as answered in its store (one
        write), so a replay is refused on every process. When the store cannot be
        reached, ``Freshness(on_store_error="signout")`` refuses; ``"keep"`` goes on
        (logged), the challenge then serving once on this process only."""
        store = self.challenge_store
        if store is None:
            return
        leeway = self.middleware.config.leeway
        try:
            with anyio.fail_after(self.store_timeout):
                first = await store.use_challenge(
                    challenge, datetime.fromtimestamp(until + leeway, UTC))
        except Exception as exc:  # the database down, or slow
            reason = failure(exc, self.store_timeout)
            if getattr(self.middleware.freshness, "on_store_error", "keep") == "signout":
                raise Refused(401, f"store unavailable: {reason}") from exc
            logger.warning("DBSC challenge not recorded (it serves once on this process "
                           "only): %s", reason)
            return
        if not first:
            raise Refused(401, "challenge was used before (on another process)")

    async def issue(self, scope: Scope, session: Session, name: str, carried: list[str],
                    decoded: Decoded | None) -> Response:
        """Bind ``session`` for ``bound_lifetime`` more: its cookie, its refresh cookie,
        the registry's row, and the session configuration (never cached)."""
        now = int(time.time())  # after the proof's check: the cookie's clock
        session.expires_at = now + self.bound_lifetime
        session.mark_modified()
        middleware = self.middleware
        try:
            lines = middleware.set_cookie_lines(scope, session, name, carried, True, False,
                                                decoded)
        except SessionTooLarge as exc:
            raise Refused(400, str(exc)) from exc
        freshness = middleware.freshness
        if freshness is not None and session.user is not None:
            await freshness.issued(scope, session, False)
        response = Response(orjson.dumps(self.configuration(scope, session)),
                            media_type="application/json", headers=NO_STORE)
        response.raw_headers.extend((b"set-cookie", line.encode("latin-1")) for line in lines)
        response.raw_headers.append(self.refresh_line(session, now))
        return response

    def configuration(self, scope: Scope, session: Session) -> dict[str, Any]:
        """The DBSC session configuration: the session id, the refresh URL, the scope
        (this origin) and the bound cookie with exactly its Set-Cookie attributes."""
        host = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1")
                break
        if host is None or not HOST.fullmatch(host):
            server = scope.get("server")
            if not server:
                raise Refused(400, "no Host header")
            host = f"{server[0]}:{server[1]}"
        return {
            "session_identifier": session.jti,
            "refresh_url": self.refresh_path,
            "scope": {"origin": f"https://{host}", "include_site": False,
                      "scope_specification": self.scope_specification},
            "credentials": [{"type": "cookie", "name": self.writer.name,
                             "attributes": self.writer.attributes(True)}],
        }
