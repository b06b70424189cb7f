"""Device Bound Session Credentials: the proofs a browser signs and the challenges in them.

A proof is a compact JWS (``typ: dbsc+jwt``, ES256 or RS256) over ``{"jti":
<challenge>}``, signed by the device's key: at registration the public key comes in the
JWS header (``jwk``), at refresh it is the one the session token carries (``cnf``).
The signature is checked by jwcrypto; this module only decides what may reach it.

A challenge is ``<time>.<nonce>.<mac>``: an HMAC-SHA256 over its purpose, the session
id, the time and the nonce, under a key derived (HKDF) from the server's keyring. So it
is bound to one session and one moment, cannot be forged, and needs no database; a
:class:`Challenges` also remembers the ones used (per process) so each serves once.
With a session registry, the store remembers them for every process (dbsc.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from typing import Any, Literal

import orjson

from asgi_jwt_session.codec import b64url_decode, b64url_encode, is_canonical_b64url
from asgi_jwt_session.keys import Keyring, hkdf

__all__ = ["ALGORITHMS", "Challenges", "ProofError", "public_jwk", "thumbprint", "verify_proof"]

ALGORITHMS = ("ES256", "RS256")
PROOF_TYPE = "dbsc+jwt"
MAX_PROOF_SIZE = 8192
ALLOWED_HEADER = frozenset({"alg", "typ", "jwk", "kid"})
SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
CHALLENGE = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22})")
HKDF_INFO = b"asgi-jwt-session v1 DBSC challenge key"
MIN_RSA_BYTES = 256  # 2048-bit modulus
Purpose = Literal["register", "refresh"]


class ProofError(Exception):
    """A proof, challenge or key that is refused (the message says why, for the log)."""


def public_jwk(jwk: Any, alg: str) -> dict[str, str]:
    """The public key of a proof's ``jwk`` header as its RFC 7638 members only (what
    ``cnf`` keeps): EC P-256 for ES256, RSA of 2048 bits or more for RS256."""
    if type(jwk) is not dict:
        raise ProofError("jwk is not a JSON object")
    if jwk.keys() & {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}:
        raise ProofError("jwk holds private key material")
    if alg == "ES256":
        members = {"crv": jwk.get("crv"), "kty": jwk.get("kty"), "x": jwk.get("x"),
                   "y": jwk.get("y")}
        if members["kty"] != "EC" or members["crv"] != "P-256":
            raise ProofError("ES256 needs an EC P-256 key")
        sizes = {"x": 32, "y": 32}
    elif alg == "RS256":
        members = {"e": jwk.get("e"), "kty": jwk.get("kty"), "n": jwk.get("n")}
        if members["kty"] != "RSA":
            raise ProofError("RS256 needs an RSA key")
        sizes = {}
    else:
        raise ProofError(f"algorithm {alg!r} is not allowed")
    for name, value in members.items():
        if name == "kty" or name == "crv":
            continue
        if type(value) is not str or not SEGMENT.fullmatch(value) or len(value) > 1024 \
                or not is_canonical_b64url(value):
            raise ProofError(f"jwk member {name!r} is not base64url")
        raw = b64url_decode(value)
        if name in sizes and len(raw) != sizes[name]:
            raise ProofError(f"jwk member {name!r} has the wrong size")
        if name not in sizes and raw[:1] == b"\0":
            # RFC 7518: the shortest encoding (one spelling, one thumbprint per key)
            raise ProofError(f"jwk member {name!r} has a leading zero byte")
        if name == "n" and len(raw) < MIN_RSA_BYTES:
            raise ProofError("RSA key is shorter than 2048 bits")
    return members  # type: ignore[return-value]  # every value checked to be a str


def key_alg(key: dict[str, str]) -> str:
    return "ES256" if key.get("kty") == "EC" else "RS256"


def thumbprint(key: dict[str, str]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of a public key from
    :func:`public_jwk`."""
    return b64url_encode(hashlib.sha256(orjson.dumps(key, option=orjson.OPT_SORT_KEYS))
                         .digest())


def verify_proof(proof: str, key: dict[str, str] | None) -> tuple[dict[str, Any],
                                                                  dict[str, str]]:
    """Check a ``Secure-Session-Response`` proof; return its payload and the public key
    that signed it.

    ``key`` is the session's bound key (``cnf``) for a refresh, ``None`` at
    registration (the key is then the header's ``jwk``). Refused before any signature
    work: another shape than a compact JWS, more than 8 KiB, a header member outside
    ``alg``/``typ``/``jwk``/``kid``, ``typ`` other than ``dbsc+jwt``, ``alg`` other than
    ES256/RS256 (``none``, HS256...) or not the bound key's. Then jwcrypto checks the
    signature, and the payload must be a JSON object with a string ``jti``.
    """
    if not isinstance(proof, str) or len(proof) > MAX_PROOF_SIZE:
        raise ProofError("proof is too large or not text")
    parts = proof.split(".")
    if len(parts) != 3 or not all(SEGMENT.fullmatch(part) and is_canonical_b64url(part)
                                  for part in parts):
        raise ProofError("proof is not a compact JWS")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise ProofError("proof header is not JSON") from exc
    if type(header) is not dict:
        raise ProofError("proof header is not a JSON object")
    extra = header.keys() - ALLOWED_HEADER
    if extra:
        raise ProofError(f"proof header has members outside the allow-list: {sorted(extra)}")
    if header.get("typ") != PROOF_TYPE:
        raise ProofError(f"proof typ is {header.get('typ')!r}, not {PROOF_TYPE!r}")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise ProofError(f"proof algorithm {alg!r} is not allowed (only ES256, RS256)")
    if key is None:
        key = public_jwk(header.get("jwk"), alg)
    elif alg != key_alg(key):
        raise ProofError(f"proof algorithm {alg} does not fit the session's key")
    # One spelling of a signature: r||s (ES256), or exactly the modulus's size (RS256).
    size = 64 if alg == "ES256" else len(b64url_decode(key["n"]).lstrip(b"\0"))
    if len(b64url_decode(parts[2])) != size:
        raise ProofError(f"proof signature is not {size} bytes")
    from jwcrypto import jwk, jws  # loaded on the first proof
    from jwcrypto.common import JWException

    try:
        token = jws.JWS()
        token.deserialize(proof)
        token.verify(jwk.JWK(**key), alg=alg)
        payload = orjson.loads(token.payload)
    except (JWException, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise ProofError(f"proof signature does not verify: {exc}") from exc
    if type(payload) is not dict or type(payload.get("jti")) is not str:
        raise ProofError("proof payload has no string jti")
    return payload, key


def derive_keys(keyring: Keyring, info: bytes) -> list[bytes]:
    """Each key of ``keyring``, newest first, derived (HKDF-SHA256) under ``info``."""
    return [hkdf(raw, info) for _, raw in keyring.secrets]


class Challenges:
    """Issues and checks challenges for one keyring: unforgeable (HMAC under a key
    derived from each of the keyring's keys, the newest issuing), bound to a purpose
    and a session id, valid ``lifetime`` seconds, and used once per process (at most
    ``remember`` used ones are kept; older ones are refused by their age anyway)."""

    def __init__(self, keyring: Keyring, *, lifetime: int = 120, leeway: int = 10,
                 remember: int = 65536) -> None:
        self.keys = derive_keys(keyring, HKDF_INFO)
        self.lifetime = lifetime
        self.leeway = leeway
        self.remember = remember
        self.used: OrderedDict[str, int] = OrderedDict()  # challenge -> issued at

    @staticmethod
    def mac(key: bytes, purpose: Purpose, session_id: str, issued: str, nonce: str) -> str:
        message = "\n".join((purpose, session_id, issued, nonce)).encode()
        return b64url_encode(hmac.new(key, message, hashlib.sha256).digest()[:16])

    def issue(self, purpose: Purpose, session_id: str, now: int) -> str:
        """A new challenge for ``session_id``."""
        nonce = secrets.token_urlsafe(12)
        return f"{now}.{nonce}.{self.mac(self.keys[0], purpose, session_id, str(now), nonce)}"

    def check(self, challenge: str, purpose: Purpose, session_id: str, now: int) -> int:
        """Refuse a challenge that was not issued here for ``purpose`` and this session,
        is older than ``lifetime`` (or from the future), or was used before; then mark
        it used. Returns the last second it would have been accepted."""
        match = CHALLENGE.fullmatch(challenge) if isinstance(challenge, str) else None
        if match is None:
            raise ProofError("challenge is not one of ours")
        issued, nonce, mac = match.groups()
        if not any(hmac.compare_digest(mac, self.mac(key, purpose, session_id, issued, nonce))
                   for key in self.keys):
            raise ProofError("challenge was issued for another session or purpose")
        age = now - int(issued)
        if age > self.lifetime or age < -self.leeway:
            raise ProofError("challenge has expired")
        used = self.used
        while used and now - next(iter(used.values())) > self.lifetime:
            used.popitem(last=False)  # older than any challenge still accepted
        if challenge in used:
            raise ProofError("challenge was used before")
        used[challenge] = int(issued)
        if len(used) > self.remember:
            used.popitem(last=False)
        return int(issued) + self.lifetime
