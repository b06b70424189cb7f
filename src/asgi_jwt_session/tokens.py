"""This package's wire format: compact JWE, ``dir`` + ``A256GCM``, short ``kid``s.

jwcrypto writes the tokens and holds the keys. Reading goes through the shared
checks of :mod:`asgi_jwt_session.codec` (shape, canonical base64url, header
allow-list, size), then ``cryptography``'s AES-GCM with the header segment as the
additional data, exactly as RFC 7516 has it; jwcrypto does the same work with
more per-token overhead, and a test holds both to the same answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from asgi_jwt_session.codec import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_MAX_TOKEN_SIZE,
    Codec,
    Compact,
    b64url_encode,
)
from asgi_jwt_session.errors import InvalidToken, UnknownKey
from asgi_jwt_session.keys import Keyring, SecretKey

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["TokenCodec", "TokenFormat", "TokenWire"]

ALG = "dir"
ENC = "A256GCM"
ENCS = frozenset({ENC})


class TokenWire:
    """The wire codec of :class:`TokenFormat` for one keyring."""

    encs = ENCS

    def __init__(self, keyring: Keyring) -> None:
        from cryptography.exceptions import InvalidTag  # loaded with the middleware
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.invalid = (InvalidTag, ValueError)
        self.keyring = keyring
        # One AESGCM object per key, by kid; and the exact header segment written for
        # each key, so a token of ours needs no header parsing.
        self.ciphers: dict[str, AESGCM] = {}
        self.headers: dict[str, Mapping[str, Any]] = {}
        for kid, raw in keyring.secrets:
            self.ciphers[kid] = AESGCM(raw)
            header = {"alg": ALG, "enc": ENC, "kid": kid}
            self.headers[b64url_encode(orjson.dumps(header))] = header
        self.current_header = orjson.dumps(
            {"alg": ALG, "enc": ENC, "kid": keyring.current_kid}).decode()
        self.current_prefix = b64url_encode(self.current_header.encode()) + "."

    def decrypt(self, compact: Compact) -> bytes:
        kid = compact.header.get("kid")
        cipher = self.ciphers.get(kid) if type(kid) is str else None
        if cipher is None:
            raise UnknownKey("token was encrypted with a key this keyring does not hold")
        try:
            return cipher.decrypt(compact.iv, compact.ciphertext + compact.tag,
                                  compact.header_segment.encode("ascii"))
        except self.invalid as exc:
            raise InvalidToken("token failed to decrypt") from exc

    claims_as_they_are = True  # claims() returns them unchanged: the pipeline skips it

    def claims(self, claims: dict[str, Any]) -> dict[str, Any]:
        return claims

    def encode(self, claims: dict[str, Any]) -> str:
        try:
            # Keys that are not strings become strings, as json.dumps (and Starlette) has it.
            plaintext = orjson.dumps(claims, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError as exc:
            raise TypeError(f"session data must be JSON-serializable: {exc}") from exc
        from jwcrypto import jwe  # loaded on the first write, not at import

        token = jwe.JWE(plaintext, protected=self.current_header)
        token.add_recipient(self.keyring.current)
        compact: str = token.serialize(compact=True)
        return compact

    def is_current(self, token: str) -> bool:
        return token.startswith(self.current_prefix)


class TokenFormat:
    """This package's tokens (the default ``format``): one cookie, ``session_cookie``,
    chunked when a Set-Cookie line would pass 4096 bytes."""

    writable = True
    chunk_size: int | None = None

    def cookies(self, secret_key: SecretKey, session_cookie: str) -> list[tuple[str, TokenWire]]:
        return [(session_cookie, TokenWire(Keyring.coerce(secret_key)))]


class TokenCodec(Codec):
    """Encrypts claims into compact JWE (``dir`` + ``A256GCM``) and decrypts them back,
    through the shared decode pipeline (:class:`~asgi_jwt_session.codec.Codec`)."""

    wire: TokenWire

    def __init__(
        self,
        secret_key: SecretKey,
        *,
        leeway: int = 10,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
    ) -> None:
        super().__init__(TokenWire(Keyring.coerce(secret_key)), leeway=leeway,
                         cache_size=cache_size, max_token_size=max_token_size)

    @property
    def keyring(self) -> Keyring:
        return self.wire.keyring
