"""Keys: secrets or JWKs to A256GCM content keys with short ``kid``s."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from asgi_jwt_session.base64url import b64url_decode, b64url_encode

if TYPE_CHECKING:
    from jwcrypto import jwk

# Fixed label: the derived key depends on the secret only, never on the cookie name.
HKDF_INFO = b"asgi-jwt-session v1 A256GCM content key"
KEY_BYTES = 32
MIN_SECRET_BYTES = 32
# A random 32-byte secret, as text or bytes, has a Lempel-Ziv complexity of 14 or more
# (hex and digits the lowest); "password" * 4 has 8, "x" * 32 has 2.
MIN_COMPLEXITY = 12
CHECKED_BYTES = 256  # patterns show in the first bytes; keeps the check quick

KeyMaterial: TypeAlias = "str | bytes | jwk.JWK | Mapping[str, Any]"
SecretKey: TypeAlias = "KeyMaterial | Iterable[KeyMaterial] | Keyring"


def generate_secret() -> str:
    """A new random secret (256 bits, URL-safe text) for ``secret_key``."""
    return secrets.token_urlsafe(KEY_BYTES)


def complexity(raw: bytes) -> int:
    """The Lempel-Ziv (1976) complexity of ``raw``: how many phrases it splits into,
    each the shortest not seen before. Repeats and runs add few phrases."""
    phrases = start = 0
    while start < len(raw):
        length = 1
        while start + length <= len(raw) and raw[start:start + length] in raw[:start + length - 1]:
            length += 1
        phrases += 1
        start += length
    return phrases


def is_repeated(raw: bytes) -> bool:
    """True when ``raw`` is a shorter piece said twice or more (``"abc" * 2``)."""
    return any(raw[period:] == raw[:-period] for period in range(1, len(raw) // 2 + 1))


def check_secret(raw: bytes) -> None:
    """Refuse a secret too short, or a pattern rather than random bytes."""
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(
            f"secret_key is too short ({len(raw)} bytes); use at least {MIN_SECRET_BYTES} "
            "random bytes, e.g. `asgi-jwt-session keygen`"
        )
    head = raw[:CHECKED_BYTES]
    if complexity(head) < MIN_COMPLEXITY or is_repeated(head):
        raise ValueError(
            "secret_key is a pattern, not a random secret (too few different bytes, or a "
            "piece repeated): make one with `asgi-jwt-session keygen`"
        )


def derive_key(secret: str | bytes) -> bytes:
    """Stretch a secret into a 256-bit key with HKDF-SHA256 under a fixed label."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    check_secret(raw)
    return hkdf(raw, HKDF_INFO)


def hkdf(raw: bytes, info: bytes) -> bytes:
    """A 256-bit key derived from ``raw`` with HKDF-SHA256 (no salt) under ``info``."""
    from cryptography.hazmat.primitives import hashes  # loaded when a key is made
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(raw)


def secret_strings(secret: Any, name: str) -> list[str]:
    """A text secret, or a list of them newest first (Auth.js's and Better Auth's), as a
    list; ``ValueError`` naming ``name`` when it is empty or holds anything but
    non-empty strings."""
    values = [secret] if isinstance(secret, str) else list(secret)
    if not values or not all(isinstance(value, str) and value for value in values):
        raise ValueError(f"{name} must be a non-empty string or a list of them")
    return values


def key_id(key: bytes) -> str:
    """A short, stable id for a key: 8 characters of its SHA-256."""
    return b64url_encode(hashlib.sha256(b"kid:" + key).digest())[:8]


def raw_key(material: KeyMaterial) -> tuple[str, bytes]:
    """``(kid, 32-byte key)`` for a secret (HKDF-derived) or an ``oct`` JWK (as it is)."""
    if isinstance(material, (str, bytes)):
        key = derive_key(material)
        return key_id(key), key
    exported = (material.export(as_dict=True, private_key=True)
                if hasattr(material, "export") else dict(material))
    if exported.get("kty") != "oct" or not isinstance(exported.get("k"), str):
        raise ValueError("only symmetric ('oct') JWKs can encrypt session cookies")
    raw = b64url_decode(exported["k"])
    if len(raw) != KEY_BYTES:
        raise ValueError(f"an 'oct' JWK for A256GCM must hold {KEY_BYTES} bytes, not {len(raw)}")
    kid = exported.get("kid") or key_id(raw)
    if not isinstance(kid, str):
        raise ValueError("a JWK's kid must be a string")
    return kid, raw


class Keyring:
    """The keys that protect session cookies, newest first.

    The first key encrypts; every key decrypts. Rotate by putting a new secret in
    front and keeping the old ones until their cookies have expired.

    ``secrets`` holds ``(kid, key bytes)`` pairs; ``keys``, ``by_kid`` and ``current``
    are the same keys as jwcrypto JWKs, made when first asked for (so importing the
    package does not load jwcrypto).
    """

    def __init__(self, keys: KeyMaterial | Iterable[KeyMaterial]) -> None:
        if isinstance(keys, (str, bytes, Mapping)) or hasattr(keys, "export"):
            items: list[KeyMaterial] = [keys]
        else:
            items = list(keys)
        if not items:
            raise ValueError("a Keyring needs at least one secret or key")
        self.secrets: tuple[tuple[str, bytes], ...] = tuple(raw_key(item) for item in items)
        kids = [kid for kid, _ in self.secrets]
        for kid in kids:
            if kids.count(kid) > 1:
                raise ValueError(f"two keys share the kid {kid!r} (the same secret twice?)")
        self._jwks: tuple[jwk.JWK, ...] | None = None

    @classmethod
    def coerce(cls, secret_key: SecretKey) -> Keyring:
        """Accept what ``secret_key`` may be: a secret, a JWK, a list of them, a Keyring."""
        if isinstance(secret_key, Keyring):
            return secret_key
        if secret_key is None:
            raise TypeError("secret_key is required")
        if hasattr(secret_key, "get_secret_value"):  # pydantic SecretStr
            secret_key = secret_key.get_secret_value()
        elif type(secret_key).__name__ == "Secret":  # starlette.datastructures.Secret
            secret_key = str(secret_key)
        return cls(secret_key)

    @classmethod
    def generate(cls) -> Keyring:
        """A keyring holding one fresh random key."""
        return cls(generate_secret())

    @property
    def keys(self) -> tuple[jwk.JWK, ...]:
        """The keys as jwcrypto JWKs (``kid``, ``alg: dir``, ``use: enc``), newest first."""
        if self._jwks is None:
            from jwcrypto import jwk

            self._jwks = tuple(
                jwk.JWK(kty="oct", k=b64url_encode(raw), kid=kid, alg="dir", use="enc")
                for kid, raw in self.secrets)
        return self._jwks

    @property
    def by_kid(self) -> dict[str, jwk.JWK]:
        """The JWKs by ``kid``."""
        return {key["kid"]: key for key in self.keys}

    @property
    def current(self) -> jwk.JWK:
        """The key that encrypts new cookies."""
        return self.keys[0]

    @property
    def current_kid(self) -> str:
        return self.secrets[0][0]

    def to_jwks(self) -> dict[str, Any]:
        """The keys as a JWK Set (RFC 7517), so another JOSE library can read the cookies.

        This holds secret key material: treat it like the secrets themselves.
        """
        return {"keys": [key.export(private_key=True, as_dict=True) for key in self.keys]}

    def __repr__(self) -> str:
        return f"Keyring(kids={[kid for kid, _ in self.secrets]!r})"
