"""Tampered compact tokens, for the equivalence tests of the decrypt paths."""

from __future__ import annotations

import base64
import random

from jwcrypto.common import JWSEHeaderParameter

from asgi_jwt_session.codec import b64url_decode, b64url_encode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# What jwcrypto must know to write a token whose "crit" names "exp" (from 1.6.2 on it
# refuses to write an unknown critical header); its readers here are not told.
WRITES_CRIT_EXP = {"exp": JWSEHeaderParameter("Expiration time", False, True, None)}


def lenient_b64url(segment: str) -> bytes:
    """``segment``'s bytes as a lenient base64url reader takes them: padding optional,
    the bits a last character leaves over ignored (this package refuses such spellings,
    as jwcrypto does from 1.6.2 on)."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def flip_bit(segment: str, rng: random.Random) -> str:
    """``segment`` (base64url) with one bit of its bytes flipped (empty: as it is)."""
    raw = bytearray(b64url_decode(segment))
    if not raw:
        return segment
    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    return b64url_encode(bytes(raw))


def flipped(token: str, rng: random.Random) -> list[str]:
    """``token`` with one bit flipped in its header, then its IV, ciphertext and tag."""
    parts = token.split(".")
    out = []
    for index in (0, 2, 3, 4):
        changed = list(parts)
        changed[index] = flip_bit(parts[index], rng)
        out.append(".".join(changed))
    return out
