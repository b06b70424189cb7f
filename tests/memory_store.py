"""A role store in a dict that counts its reads, for the session-management tests.

Backend-neutral (no I/O), so the tests that use it run under asyncio and trio; its
clock is ``time.time`` (the tests' fake clock), so ``revoked_at`` follows it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio.lowlevel

from asgi_jwt_session.errors import UnknownRole, UnknownUser
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.store import Listener, StoredUser


def now() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)


class MemoryStore:
    """The whole ``Store`` protocol over a dict; ``reads`` counts ``get_user`` calls."""

    def __init__(self, **users: str) -> None:
        self.users: dict[str, StoredUser] = {}
        self.on_change: list[Listener] = []
        self.roles = RoleHierarchy()
        self.reads = 0
        for user_id, role in users.items():
            self.users[user_id] = StoredUser(user_id, f"{user_id}@example.com", role, 1, now())

    async def get_user(self, user_id: str) -> StoredUser | None:
        self.reads += 1
        await anyio.lowlevel.checkpoint()
        return self.users.get(user_id)

    async def create_user(self, user_id: str, role: str, *, email: str | None = None
                          ) -> StoredUser:
        if user_id in self.users:
            raise ValueError(f"user {user_id!r} already exists")
        user = StoredUser(user_id, email, self.roles.validate(role), 1, now())
        self.users[user_id] = user
        return user

    async def change(self, user_id: str, **values: Any) -> StoredUser:
        user = self.users.get(user_id)
        if user is None:
            raise UnknownUser(user_id)
        user = replace(user, session_version=user.session_version + 1, updated_at=now(),
                       **values)
        self.users[user_id] = user
        for listener in self.on_change:
            result = listener(user)
            if result is not None:
                await result
        return user

    async def update_user_role(self, user_id: str, role: str) -> StoredUser:
        if role not in self.roles:
            raise UnknownRole(role)
        return await self.change(user_id, role=role)

    async def revoke_sessions(self, user_id: str) -> StoredUser:
        return await self.change(user_id, revoked_at=now())

    async def set_disabled(self, user_id: str, disabled: bool) -> StoredUser:
        return await self.change(user_id, disabled=disabled)

    async def bump_session_version(self, user_id: str) -> StoredUser:
        return await self.change(user_id)

    def delete(self, user_id: str) -> None:
        del self.users[user_id]
