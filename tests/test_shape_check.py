"""The shared shape check (``Codec.check``) accepts exactly the tokens its plain
definition accepts, and decodes their segments to the same bytes: five segments of the
base64url alphabet, the second empty, each the one canonical spelling of its bytes, a
header this wire writes or one inside the allow-list, the IV and tag sizes of its enc.
Checked on tens of thousands of mutated tokens, characters outside the alphabet
included."""

from __future__ import annotations

import base64
import random
import re
from typing import Any

import orjson

from asgi_jwt_session.codec import ALLOWED_HEADER, is_canonical_b64url
from asgi_jwt_session.errors import InvalidToken
from asgi_jwt_session.tokens import TokenCodec
from tests.tampering import lenient_b64url

SECRET = "shape-check-secret-" + "Qw3rTy9" * 5
SEGMENT = "[A-Za-z0-9_-]"
SHAPE = re.compile(rf"({SEGMENT}{{2,1024}})\.\.({SEGMENT}+)\.({SEGMENT}+)\.({SEGMENT}+)")
SIZES = {"A256GCM": (16, 22)}
# Everything a mutation may put in: the alphabet, the separator, standard base64's
# characters and padding, white space, a NUL, non-ASCII.
CHARACTERS = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
              ".+/= \n\t\x00é%!")


def definition(token: str) -> tuple[Any, ...] | None:
    """The check as its rules say it, written plainly; ``None``: refused."""
    match = SHAPE.fullmatch(token)
    if match is None or not all(map(is_canonical_b64url, match.groups())):
        return None
    header_segment, iv, ciphertext, tag = match.groups()
    try:
        header = orjson.loads(lenient_b64url(header_segment))
    except orjson.JSONDecodeError:
        return None
    if (type(header) is not dict or not header.keys() <= ALLOWED_HEADER
            or header.get("alg") != "dir" or header.get("enc") not in SIZES
            or type(header.get("kid", "")) is not str):
        return None
    if (len(iv), len(tag)) != SIZES[header["enc"]]:
        return None
    return (header_segment, lenient_b64url(iv), lenient_b64url(ciphertext),
            lenient_b64url(tag))


def checked(codec: TokenCodec, token: str) -> tuple[Any, ...] | None:
    try:
        compact = codec.check(token)
    except InvalidToken:
        return None
    return compact.header_segment, compact.iv, compact.ciphertext, compact.tag


def mutated(token: str, rng: random.Random) -> str:
    characters = list(token)
    for _ in range(rng.randrange(1, 4)):
        position = rng.randrange(len(characters) + 1)
        kind = rng.randrange(3)
        if kind == 0 and position < len(characters):
            characters[position] = rng.choice(CHARACTERS)
        elif kind == 1:
            characters.insert(position, rng.choice(CHARACTERS))
        elif position < len(characters):
            del characters[position]
    return "".join(characters)


def test_the_check_is_its_definition() -> None:
    rng = random.Random(20261207)
    codec = TokenCodec(SECRET, cache_size=0)
    headers = [None, {"enc": "A256GCM", "alg": "dir"},
               {"alg": "dir", "enc": "A256GCM", "kid": "other", "typ": "JWT"}]
    accepted = refused = 0
    for index in range(300):
        token = codec.encode({"sub": "u", "role": "USER", "exp": 2_000_000_000,
                              "data": {"pad": "x" * rng.randrange(12)}})
        header = headers[index % len(headers)]
        if header is not None:  # a header another writer spells: parsed, not matched
            segment = base64.urlsafe_b64encode(orjson.dumps(header)).rstrip(b"=").decode()
            token = segment + token[token.index("."):]
        for candidate in [token] + [mutated(token, rng) for _ in range(150)]:
            expected = definition(candidate)
            assert checked(codec, candidate) == expected, candidate
            accepted += expected is not None
            refused += expected is None
    assert accepted > 1000 and refused > 20000  # both sides well exercised
