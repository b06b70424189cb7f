"""Unpadded base64url (RFC 7515 section 2), strict about the one canonical spelling."""

from __future__ import annotations

import base64
import binascii

__all__ = ["CANONICAL_TAIL_BYTES", "b64url_decode", "b64url_encode", "is_canonical_b64url"]

# Last base64url character when the unused low bits must be zero (canonical spelling),
# by length mod 4; as characters, and as byte values for a segment in bytes.
CANONICAL_TAIL = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
CANONICAL_TAIL_BYTES = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
URLSAFE = bytes.maketrans(b"-_", b"+/")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(part: str) -> bytes:
    """Unpadded base64url to bytes (the caller checked the alphabet). What
    ``base64.urlsafe_b64decode`` does, without its per-call wrapping (the cold path)."""
    return binascii.a2b_base64(part.encode("ascii").translate(URLSAFE) + b"==")


def is_canonical_b64url(part: str) -> bool:
    """True when ``part`` is the one canonical unpadded base64url spelling of its bytes."""
    remainder = len(part) % 4
    if remainder == 1:
        return False
    return remainder == 0 or part[-1] in CANONICAL_TAIL[remainder]
