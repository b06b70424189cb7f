"""The AES-GCM decrypt through `cryptography` answers exactly as jwcrypto does, on tens of
thousands of valid, tampered and foreign-header tokens, after the same strict checks."""

from __future__ import annotations

import random
from typing import Any

import orjson
from jwcrypto import jwe

from asgi_jwt_session.errors import InvalidToken
from asgi_jwt_session.tokens import TokenCodec
from tests.tampering import ALPHABET, WRITES_CRIT_EXP, flipped

SECRET = "equivalence-secret-" + "e" * 32
OTHER = "equivalence-other-" + "o" * 32


def jwcrypto_path(codec: TokenCodec, token: str) -> bytes | None:
    """The reference: the shared checks, then jwcrypto's own decrypt."""
    try:
        compact = codec.check(token)
    except InvalidToken:
        return None
    key = codec.keyring.by_kid.get(compact.header.get("kid"))  # type: ignore[arg-type]
    if key is None:
        return None
    reader = jwe.JWE(algs=["dir", "A256GCM"])
    try:
        reader.deserialize(token, key=key)
    except Exception:
        return None
    plaintext: bytes = reader.plaintext
    return plaintext


def cryptography_path(codec: TokenCodec, token: str) -> bytes | None:
    try:
        return codec.wire.decrypt(codec.check(token))
    except InvalidToken:
        return None


def encrypt(key: Any, header: dict[str, Any], plaintext: bytes) -> str:
    token = jwe.JWE(plaintext, protected=orjson.dumps(header).decode(),
                    header_registry=WRITES_CRIT_EXP)
    token.add_recipient(key)
    return str(token.serialize(compact=True))


def mutations(token: str, rng: random.Random) -> list[str]:
    parts = token.split(".")
    out = flipped(token, rng)
    position = rng.randrange(len(token))
    out.append(token[:position] + rng.choice(ALPHABET) + token[position + 1:])
    out.append(token[:-1])
    out.append(token + rng.choice(ALPHABET))
    swapped = list(parts)
    swapped[2], swapped[4] = parts[4][:16], parts[2][:22] if len(parts[2]) >= 22 else parts[4]
    out.append(".".join(swapped))
    return out


def test_both_paths_agree_on_every_token() -> None:
    rng = random.Random(20261202)
    codec = TokenCodec([SECRET, OTHER], cache_size=0)
    key, old_key = codec.keyring.keys
    kid = codec.keyring.current_kid
    tokens: list[str] = []
    for index in range(2000):
        claims = {"sub": f"user-{index}", "role": "USER", "exp": 2_000_000_000,
                  "data": {"n": rng.random(), "s": "x" * rng.randrange(200)}}
        token = codec.encode(claims)
        tokens.append(token)
        tokens.extend(mutations(token, rng))
        plaintext = orjson.dumps(claims)
        # Foreign headers: allowed extras, reordered members, an old key, other kids.
        tokens.append(encrypt(key, {"enc": "A256GCM", "alg": "dir", "kid": kid}, plaintext))
        tokens.append(encrypt(key, {"alg": "dir", "enc": "A256GCM", "kid": kid, "typ": "JWT",
                                    "cty": "json"}, plaintext))
        tokens.append(encrypt(old_key, {"alg": "dir", "enc": "A256GCM",
                                        "kid": old_key["kid"]}, plaintext))
        tokens.append(encrypt(old_key, {"alg": "dir", "enc": "A256GCM", "kid": kid}, plaintext))
        tokens.append(encrypt(key, {"alg": "dir", "enc": "A256GCM", "kid": "nope"}, plaintext))
        tokens.append(encrypt(key, {"alg": "dir", "enc": "A256GCM"}, plaintext))
        if index % 10 == 0:
            tokens.append(encrypt(key, {"alg": "dir", "enc": "A256GCM", "kid": kid,
                                        "zip": "DEF"}, plaintext))
            tokens.append(encrypt(key, {"alg": "dir", "enc": "A256GCM", "kid": kid,
                                        "crit": ["exp"], "exp": 1}, plaintext))
    assert len(tokens) >= 30_000
    accepted = 0
    for token in tokens:
        expected = jwcrypto_path(codec, token)
        assert cryptography_path(codec, token) == expected, token
        accepted += expected is not None
    # Both accept every untampered token of ours, and refuse every tampered one.
    assert 2000 * 4 <= accepted < len(tokens) // 2
