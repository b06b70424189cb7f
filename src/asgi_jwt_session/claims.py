"""The registered claims: their types, and the one pass that checks and splits them.

A token's claims are the registered ones (the user's id and role, the times, the
session id, ``data``...), each of an exact JSON type and a time within 1970 to 9999,
and the user's own claims, left to the application.
"""

from __future__ import annotations

from typing import Any

from asgi_jwt_session.errors import InvalidToken

__all__ = ["ACTOR_CLAIM_TYPES", "CLAIM_TYPES", "RESERVED_CLAIMS", "check_actor",
           "check_types", "split_claims"]

# Latest time a claim may hold: 9999-12-31T23:59:59Z (datetime cannot go further).
MAX_TIMESTAMP = 253402300799

# Types of the registered claims; anything else is a user claim, left to the application.
CLAIM_TYPES: dict[str, type] = {
    "sub": str,
    "role": str,
    "jti": str,
    "sid": str,  # the session id where a writer draws a new jti per token (Auth.js)
    "ver": int,
    "iat": int,
    "exp": int,
    "nbf": int,
    "chk": int,
    "auth_time": int,
    "auth_ms": int,
    "rat": int,  # when the user last proved their credentials (login, reauthenticate)
    "rem": bool,  # false: a browser-session cookie (login(..., remember=False))
    "act": dict,  # the impersonator (RFC 8693's actor claim), see ACTOR_CLAIM_TYPES
    "cnf": dict,  # the device key a bound session proves (RFC 7800), see dbsc.py
    "data": dict,
}
TIME_CLAIMS = ("iat", "exp", "nbf", "chk", "auth_time", "rat")
# The members of "act" with a meaning of their own: the impersonator's id and role, and
# what ends the impersonation gives back (their session version, sign-in times, jti).
# Its other members are the impersonator's own claims (name, email...).
ACTOR_CLAIM_TYPES: dict[str, type] = {
    "sub": str, "role": str, "ver": int, "auth_time": int, "auth_ms": int, "jti": str,
}
# Claims with a meaning of their own; everything else a token carries is a user claim.
RESERVED_CLAIMS = frozenset(CLAIM_TYPES)
# Per registered claim: its exact type, and for a time the largest value it may hold
# (0: not a time). split_claims looks each claim up once.
CLAIM_CHECKS: dict[str, tuple[type, int]] = {
    name: (expected, MAX_TIMESTAMP if name in TIME_CLAIMS
           else MAX_TIMESTAMP * 1000 if name == "auth_ms" else 0)
    for name, expected in CLAIM_TYPES.items()
}

MISSING: Any = object()


def check_types(claims: Any) -> dict[str, Any]:
    """Check the registered claims' types; return the claims or raise InvalidToken."""
    user_claims(claims)
    return claims  # type: ignore[no-any-return]  # a dict: user_claims checked it


def split_claims(claims: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the claims a token has (see :func:`user_claims`) and split them: return
    ``(registered, extra)``, the registered claims (``data`` among them) and the user's
    other claims. Without user claims, ``claims`` itself is ``registered``. Raise
    InvalidToken otherwise."""
    names = user_claims(claims)
    if names is None:
        return claims, {}
    extra = {name: claims[name] for name in names}
    # A new dict, not claims with the others popped: a dict never shrinks, and a cache
    # keeps this one.
    return {name: value for name, value in claims.items() if name not in extra}, extra


def user_claims(claims: Any) -> list[str] | None:
    """Check the registered claims' types and times in one pass over the claims a token
    has; return the names of the user's other claims (``None``: there are none). Raise
    InvalidToken otherwise."""
    if type(claims) is not dict:
        raise InvalidToken("token payload is not a JSON object")
    extra: list[str] | None = None
    checks = CLAIM_CHECKS
    for name, value in claims.items():
        check = checks.get(name)
        if check is None:
            if extra is None:
                extra = [name]
            else:
                extra.append(name)
            continue
        expected, largest = check
        # Exact types (JSON has no subclasses): a bool is no int, and null is a wrong type
        # too: {"sub": null} must not sign in a user with no id.
        if type(value) is not expected:
            raise InvalidToken(f"claim {name!r} has the wrong type")
        if largest and not 0 <= value <= largest:  # type: ignore[operator]  # an int
            raise InvalidToken(f"claim {name!r} is not a time between 1970 and 9999")
    if "exp" not in claims:
        raise InvalidToken("token has no 'exp' claim")
    if "sub" in claims and "role" not in claims:
        raise InvalidToken("token names a user but no role")
    if "act" in claims:
        check_actor(claims)
    return extra


def check_actor(claims: dict[str, Any]) -> None:
    """Check the ``act`` claim of an impersonation token (or raise InvalidToken)."""
    actor = claims["act"]
    if "sub" not in claims:
        raise InvalidToken("token names an impersonator ('act') but no user")
    for name, expected in ACTOR_CLAIM_TYPES.items():
        value = actor.get(name, MISSING)
        if value is not MISSING and (type(value) is bool or not isinstance(value, expected)):
            raise InvalidToken(f"claim 'act.{name}' has the wrong type")
    if "sub" not in actor or "role" not in actor:
        raise InvalidToken("claim 'act' has no 'sub' or no 'role'")
    reserved = (actor.keys() & CLAIM_TYPES.keys()) - ACTOR_CLAIM_TYPES.keys()
    if reserved:  # a nested act (a delegation chain) among them: never written here
        raise InvalidToken(f"claim 'act' has members it may not have: {sorted(reserved)}")
    auth_time, auth_ms = actor.get("auth_time"), actor.get("auth_ms")
    if ((auth_time is not None and not 0 <= auth_time <= MAX_TIMESTAMP)
            or (auth_ms is not None and not 0 <= auth_ms <= MAX_TIMESTAMP * 1000)):
        raise InvalidToken("claim 'act' has a sign-in time outside 1970 to 9999")


