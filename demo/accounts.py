"""The demo's users: the seeded accounts, their passwords (scrypt) and signing in.

Roles live in the package's :class:`RoleStore` (its ``users`` table); passwords in a
``demo_passwords`` table of the demo's own, next to it in the same database.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import anyio.to_thread

from asgi_jwt_session import Role
from asgi_jwt_session.store import RoleStore, StoredUser


@dataclass(frozen=True)
class DemoAccount:
    id: str
    email: str
    role: Role
    password: str


# Fixed demo passwords, printed at start-up and shown on the sign-in page. Demo only.
DEMO_ACCOUNTS = (
    DemoAccount("ada", "ada@example.com", Role.ADMIN, "ada-admin-demo"),
    DemoAccount("olga", "olga@example.com", Role.ORG_ADMIN, "olga-org-demo"),
    DemoAccount("uma", "uma@example.com", Role.USER, "uma-user-demo"),
    DemoAccount("ulf", "ulf@example.com", Role.USER, "ulf-user-demo"),
)

# scrypt parameters (RFC 7914): 16 MiB of memory, ~50-100 ms a hash.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_LENGTH = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=2 * 128 * n * r * p, dklen=length)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash``: the parameters travel with the hash."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LENGTH)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; constant-time comparison."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p), len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    # Checked against when the email is unknown, so both cases take as long.
    return hash_password(secrets.token_urlsafe(16))


class Accounts:
    """Signing in against the store's users, with passwords kept beside them."""

    def __init__(self, store: RoleStore) -> None:
        self.store = store

    async def create_tables(self) -> None:
        await self.store.database.execute(
            "CREATE TABLE IF NOT EXISTS demo_passwords ("
            " email TEXT PRIMARY KEY, user_id TEXT NOT NULL, password_hash TEXT NOT NULL)"
        )
        # Users whose password is no longer the seeded one (a table of its own, so a
        # database made by an older demo gets it too).
        await self.store.database.execute(
            "CREATE TABLE IF NOT EXISTS demo_changed_passwords (user_id TEXT PRIMARY KEY)"
        )

    async def set_password(self, user: StoredUser, password: str) -> None:
        assert user.email is not None
        encoded = await anyio.to_thread.run_sync(hash_password, password)
        await self.store.database.execute(
            "INSERT INTO demo_passwords (email, user_id, password_hash)"
            " VALUES (:email, :user_id, :password_hash)",
            {"email": user.email.lower(), "user_id": user.id, "password_hash": encoded},
        )

    async def change_password(self, user_id: str, password: str) -> None:
        """Replace the password of ``user_id`` (a new salt, a new hash)."""
        encoded = await anyio.to_thread.run_sync(hash_password, password)
        await self.store.database.execute(
            "UPDATE demo_passwords SET password_hash = :password_hash WHERE user_id = :user_id",
            {"user_id": user_id, "password_hash": encoded},
        )
        await self.store.database.execute(
            "INSERT INTO demo_changed_passwords (user_id) VALUES (:user_id)"
            " ON CONFLICT (user_id) DO NOTHING",
            {"user_id": user_id},
        )

    async def changed_passwords(self) -> set[str]:
        """The users whose password is no longer their seeded demo password."""
        rows = await self.store.database.fetch_all("SELECT user_id FROM demo_changed_passwords")
        return {row[0] for row in rows}

    async def seed(self) -> bool:
        """Create the demo accounts in an empty database. True when it did."""
        if await self.store.list_users():
            return False
        for account in DEMO_ACCOUNTS:
            user = await self.store.create_user(account.id, account.role, email=account.email)
            await self.set_password(user, account.password)
        return True

    async def authenticate(self, email: str, password: str) -> StoredUser | None:
        """The user with this email and password, if enabled; else ``None``."""
        if not self.store.can_store(email):  # a NUL or a lone surrogate: nobody's
            email = ""
        row = await self.store.database.fetch_one(
            "SELECT user_id, password_hash FROM demo_passwords WHERE email = :email",
            {"email": email.strip().lower()},
        )
        encoded = row[1] if row is not None else _dummy_hash()
        matches = await anyio.to_thread.run_sync(verify_password, password, encoded)
        if row is None or not matches:
            return None
        user = await self.store.get_user(row[0])
        if user is None or user.disabled:
            return None
        return user
