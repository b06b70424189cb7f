"""Claims to compact JWE and back: allow-list, time checks, decoded-token cache."""

from __future__ import annotations


class InvalidToken(ValueError):
    """A token that must be treated as no session. The message says why."""


class ExpiredToken(InvalidToken):
    """The token was valid once but its ``exp`` has passed."""


class UnknownKey(InvalidToken):
    """The token names a key (``kid``) that this keyring does not hold."""
