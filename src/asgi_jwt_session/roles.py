"""Roles and their order: a higher role satisfies a lower requirement."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum


class Role(StrEnum):
    """The built-in roles, lowest first."""

    USER = "USER"
    ORG_ADMIN = "ORG_ADMIN"
    ADMIN = "ADMIN"


class RoleHierarchy:
    """An ordered list of role names, lowest first.

    ``RoleHierarchy()`` is ``USER < ORG_ADMIN < ADMIN``; pass your own enum or names
    for another order. Unknown names never satisfy anything. Give it to the middleware
    as ``roles=`` for the guards to use.
    """

    def __init__(self, roles: Iterable[str] = Role) -> None:
        names = [str(role) for role in roles]
        if not names:
            raise ValueError("a role hierarchy needs at least one role")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate role in hierarchy: {names}")
        self.roles: tuple[str, ...] = tuple(names)
        self.rank = {name: index for index, name in enumerate(names)}
        # Starlette auth scopes per role, built once: a role has every role below it.
        self.role_scopes = {
            name: ("authenticated", *(f"role:{lower}" for lower in names[: index + 1]))
            for index, name in enumerate(names)
        }

    def __contains__(self, role: object) -> bool:
        return isinstance(role, str) and role in self.rank

    def __iter__(self) -> Iterator[str]:
        return iter(self.roles)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RoleHierarchy) and other.roles == self.roles

    def __hash__(self) -> int:
        return hash(self.roles)

    def __repr__(self) -> str:
        return f"RoleHierarchy({list(self.roles)!r})"

    def validate(self, role: str) -> str:
        """Return ``role`` as a plain string, or raise ``ValueError`` if it is unknown."""
        if role not in self.rank:
            raise ValueError(f"unknown role {role!r}; known roles: {', '.join(self.roles)}")
        return str(role)

    def satisfies(self, role: str | None, *required: str) -> bool:
        """True when ``role`` is at least one of ``required`` (any of them)."""
        if role is None or role not in self.rank:
            return False
        have = self.rank[role]
        return any(need in self.rank and have >= self.rank[need] for need in required)

    def scopes(self, role: str | None) -> list[str]:
        """Starlette auth scopes for a signed-in user with ``role``: ``"authenticated"``
        and ``"role:<R>"`` for ``role`` and every role below it (``[]`` for ``None``)."""
        if role is None:
            return []
        return list(self.role_scopes.get(role, ("authenticated",)))

    @property
    def highest(self) -> str:
        """The top role (``ADMIN`` by default): what :func:`require_admin` asks for."""
        return self.roles[-1]
