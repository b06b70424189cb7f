"""Freshness in one process: the version feed, the rule, single flight, the policy.

Runs under asyncio and trio (a plain async loader); the parts on a real RoleStore and
PostgreSQL are asyncio-only, like the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from asgi_jwt_session.config import SessionConfig
from asgi_jwt_session.freshness import (
    DEFAULT_MAX_AGE,
    CheckedUser,
    Freshness,
    SingleFlight,
    VersionFeed,
    apply_user,
)
from asgi_jwt_session.session import Session, SessionUser
from asgi_jwt_session.store import StoredUser, StoreUnavailable

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000


def session(role: str = "ADMIN", version: int | None = 1, checked_at: int | None = NOW,
            user_id: str = "alice") -> Session:
    return Session({"cart": 3}, user=SessionUser(id=user_id, role=role), jti="j1",
                   version=version, issued_at=checked_at, checked_at=checked_at,
                   auth_time=checked_at)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- VersionFeed -------------------------------------------------------------------------


def test_feed_publish_and_newest() -> None:
    feed = VersionFeed(60)
    assert feed.newest("alice") is None
    feed.publish("alice", 3)
    feed.publish("alice", 2)  # out of order: the newer one stays
    feed.publish("bob", 1)
    assert (feed.newest("alice"), feed.newest("bob"), len(feed)) == (3, 1, 2)
    feed.publish("alice", 4)
    assert feed.newest("alice") == 4


def test_feed_drops_entries_older_than_max_age() -> None:
    clock = Clock()
    feed = VersionFeed(60, clock=clock)
    feed.publish("alice", 2)
    clock.now += 30
    feed.publish("bob", 2)
    clock.now += 31  # alice's entry is 61 s old, bob's 31 s
    feed.publish("carol", 2)
    assert (feed.newest("alice"), feed.newest("bob"), feed.newest("carol")) == (None, 2, 2)
    clock.now += 30
    feed.publish("bob", 3)  # republished: its age starts again
    clock.now += 59
    feed.prune()
    assert (feed.newest("bob"), feed.newest("carol")) == (3, None)
    assert len(feed.published) == len(feed.versions) == 1


def test_feed_stays_bounded() -> None:
    clock = Clock()
    feed = VersionFeed(10, clock=clock)
    for i in range(10_000):
        clock.now += 0.1
        feed.publish(f"user-{i}", 2)
    assert len(feed) <= 101


def test_feed_max_age_must_be_positive() -> None:
    with pytest.raises(ValueError):
        VersionFeed(0)


# --- the rule -------------------------------------------------------------------------------


SIGNED_IN = NOW - 400  # the sessions' auth_time (and chk)


@pytest.mark.parametrize(
    ("token", "stored", "expected"),
    [
        # (role, ver) in the token; (role, version, disabled, revoked_at) in the store;
        # outcome
        (("ADMIN", 1), ("ADMIN", 1, False, None), ("ADMIN", 1)),  # nothing changed
        (("ADMIN", 1), ("USER", 2, False, None), ("USER", 2)),  # one role change: adopted
        (("USER", 1), ("ADMIN", 2, False, None), ("ADMIN", 2)),  # promotion likewise
        (("ADMIN", 1), ("USER", 3, False, None), ("USER", 3)),  # two changes: the newest
        (("ADMIN", 1), ("ADMIN", 3, False, None), ("ADMIN", 3)),  # demoted, promoted back
        (("ADMIN", 1), ("ADMIN", 2, False, None), ("ADMIN", 2)),  # same role set again
        (("ADMIN", 1), ("ADMIN", 2, False, SIGNED_IN + 1), None),  # revoked after sign-in
        (("ADMIN", 1), ("USER", 3, False, SIGNED_IN + 1), None),  # revoked + role change
        (("ADMIN", 1), ("ADMIN", 2, False, SIGNED_IN), None),  # revoked in the same second
        (("ADMIN", 2), ("USER", 3, False, SIGNED_IN - 1), ("USER", 3)),  # signed in after
        (("ADMIN", 1), ("ADMIN", 1, True, None), None),  # disabled
        (("ADMIN", 5), ("ADMIN", 4, False, None), None),  # token newer than the store
        (("ADMIN", None), ("USER", 7, False, None), ("USER", 7)),  # no version: adopted
        (("ADMIN", None), ("USER", 7, False, SIGNED_IN), None),  # ... but not revoked
    ],
)
def test_apply_user(token: tuple[str, int | None], stored: tuple[str, int, bool, int | None],
                    expected: tuple[str, int] | None) -> None:
    s = session(role=token[0], version=token[1], checked_at=SIGNED_IN)
    apply_user(s, CheckedUser(*stored), NOW)
    if expected is None:
        assert s.user is None and s.is_empty and s.modified
        return
    assert s.user is not None
    assert (s.user.role, s.version, s.checked_at) == (*expected, NOW)
    assert s.modified  # re-issued with the new chk
    assert s["cart"] == 3


def test_apply_user_gone() -> None:
    s = session()
    apply_user(s, None, NOW)
    assert s.user is None and s.is_empty


def test_apply_user_unchanged_is_not_modified() -> None:
    s = session(checked_at=NOW)
    apply_user(s, CheckedUser("ADMIN", 1), NOW)
    assert not s.modified
    apply_user(s, CheckedUser("ADMIN", 1, revoked_at=NOW - 1), NOW)  # an older revocation
    assert not s.modified and s.user is not None


def test_apply_user_without_auth_time_counts_as_signed_in_long_ago() -> None:
    s = session()
    s.auth_time = None
    apply_user(s, CheckedUser("ADMIN", 1, revoked_at=0), NOW)
    assert s.user is None


def test_checked_user_coerce() -> None:
    @dataclass
    class Row:
        role: str
        session_version: int
        disabled: bool = False

    @dataclass
    class Revoked:
        role: str
        session_version: int
        revoked_at: Any

    assert CheckedUser.coerce(None) is None
    assert CheckedUser.coerce(("USER", 3)) == CheckedUser("USER", 3)
    assert CheckedUser.coerce(Row("ADMIN", 2, True)) == CheckedUser("ADMIN", 2, True)
    # revoked_at: whole epoch seconds, rounded down; a naive datetime is UTC.
    when = datetime.fromtimestamp(NOW, UTC).replace(microsecond=999_999)
    assert CheckedUser.coerce(Revoked("USER", 2, when)) == CheckedUser("USER", 2, False, NOW)
    assert CheckedUser.coerce(Revoked("USER", 2, when.replace(tzinfo=None))).revoked_at == NOW  # type: ignore[union-attr]
    assert CheckedUser.coerce(Revoked("USER", 2, NOW + 0.5)).revoked_at == NOW  # type: ignore[union-attr]
    assert CheckedUser.coerce(Revoked("USER", 2, None)).revoked_at is None  # type: ignore[union-attr]
    stored = StoredUser(id="alice", email=None, role="USER", session_version=4,
                        updated_at=when, revoked_at=when)
    assert CheckedUser.coerce(stored) == CheckedUser("USER", 4, False, NOW)


# --- single flight -------------------------------------------------------------------------


async def test_single_flight_shares_one_call() -> None:
    started = anyio.Event()
    release = anyio.Event()
    calls: list[str] = []

    async def load(key: str) -> str:
        calls.append(key)
        started.set()
        await release.wait()
        return key.upper()

    flight: SingleFlight[str] = SingleFlight(load)
    results: list[str] = []

    async def one(key: str) -> None:
        results.append(await flight(key))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one, "alice")
        tg.start_soon(one, "bob")
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert sorted(calls) == ["alice", "bob"]
    assert results.count("ALICE") == 50 and results.count("BOB") == 1
    assert flight.pending == {}
    assert await flight("alice") == "ALICE" and calls.count("alice") == 2  # not cached


async def test_single_flight_shares_the_error() -> None:
    release = anyio.Event()

    async def load(key: str) -> str:
        await release.wait()
        raise StoreUnavailable("down")

    flight: SingleFlight[str] = SingleFlight(load)
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await flight("alice")
        except StoreUnavailable as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert len(errors) == 5 and flight.calls == 1


async def test_single_flight_leader_cancelled() -> None:
    first = anyio.Event()
    calls = 0

    async def load(key: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            first.set()
            await anyio.sleep_forever()
        return "second"

    flight: SingleFlight[str] = SingleFlight(load)
    results: list[str] = []

    async def follower() -> None:
        results.append(await flight("alice"))

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await flight("alice")

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await first.wait()
        tg.start_soon(follower)
        await anyio.wait_all_tasks_blocked()
        leader_scope.cancel()
    assert results == ["second"] and calls == 2


# --- the policy ---------------------------------------------------------------------------


class Loader:
    """A user_loader over a dict, counting calls; can be made to fail or to block."""

    def __init__(self, **users: tuple[str, int]) -> None:
        self.users: dict[str, Any] = dict(users)
        self.calls = 0
        self.error: Exception | None = None
        self.gate: anyio.Event | None = None

    async def __call__(self, user_id: str) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.users.get(user_id)


def test_is_stale() -> None:
    freshness = Freshness(Loader(), revalidate_after=300)
    assert not freshness.is_stale(Session(), NOW)
    assert not freshness.is_stale(session(checked_at=NOW - 299), NOW)
    assert freshness.is_stale(session(checked_at=NOW - 300), NOW)
    assert freshness.is_stale(session(checked_at=None), NOW)
    freshness.feed.publish("alice", 1)
    assert not freshness.is_stale(session(version=1), NOW)
    freshness.feed.publish("alice", 2)
    assert freshness.is_stale(session(version=1), NOW)
    assert freshness.is_stale(session(version=None), NOW)
    assert not freshness.is_stale(session(user_id="bob"), NOW)

    only_feed = Freshness(Loader(), revalidate_after=None)
    assert not only_feed.is_stale(session(checked_at=0), NOW)
    only_feed.feed.publish("alice", 2)
    assert only_feed.is_stale(session(checked_at=0), NOW)


def test_feed_max_age_follows_revalidate_after() -> None:
    assert Freshness(Loader(), revalidate_after=300).feed.max_age == 360
    feed = VersionFeed(5)
    assert Freshness(Loader(), feed=feed).feed is feed and feed.max_age == 5


def test_feed_max_age_of_the_policys_own_feed() -> None:
    assert Freshness(Loader(), revalidate_after=None).feed.max_age == DEFAULT_MAX_AGE
    assert Freshness(Loader(), revalidate_after=None, token_lifetime=600).feed.max_age == 600
    from_config = Freshness.from_config
    for options, max_age in [({}, 360), ({"revalidate_after": 120}, 180),
                             ({"revalidate_after": None, "max_age": 3600}, 3600),
                             ({"revalidate_after": None}, 30 * 24 * 3600)]:
        freshness = from_config(SessionConfig(user_loader=Loader(), **options))  # type: ignore[arg-type]
        assert freshness is not None and freshness.feed.max_age == max_age


def test_a_feed_passed_in_is_not_changed() -> None:
    feed = VersionFeed()
    assert feed.max_age == DEFAULT_MAX_AGE
    assert Freshness(Loader(), revalidate_after=300, feed=feed).feed is feed
    config = SessionConfig(user_loader=Loader(), feed=feed, revalidate_after=60)
    freshness = Freshness.from_config(config)
    assert freshness is not None and freshness.feed is feed
    assert feed.max_age == DEFAULT_MAX_AGE
    other = Freshness.from_config(SessionConfig(user_loader=Loader(), revalidate_after=60))
    assert other is not None and other.feed is not feed and other.feed.max_age == 120


async def test_revalidate_demotion_and_memo() -> None:
    loader = Loader(alice=("USER", 2))
    freshness = Freshness(loader, revalidate_after=300)
    old = session(checked_at=NOW - 400)
    await freshness.revalidate(old, NOW)
    assert old.user is not None and (old.user.role, old.version, old.checked_at) == (
        "USER", 2, NOW)
    # The browser still sends the old cookie (or ignores cookies): no second query.
    again = session(checked_at=NOW - 400)
    await freshness.revalidate(again, NOW + 299)
    assert again.user is not None and again.user.role == "USER"
    assert again.checked_at == NOW  # the time of the read, so the bound holds
    assert loader.calls == 1
    # Next window: one more query.
    await freshness.revalidate(session(checked_at=NOW - 400), NOW + 300)
    assert loader.calls == 2


async def test_revalidate_newer_feed_version_reloads() -> None:
    loader = Loader(alice=("USER", 2))
    freshness = Freshness(loader, revalidate_after=300)
    await freshness.revalidate(session(checked_at=NOW - 400), NOW)
    loader.users["alice"] = CheckedUser("USER", 3, revoked_at=NOW + 1)  # revoked
    freshness.feed.publish("alice", 3)
    s = session(role="USER", version=2)
    assert freshness.is_stale(s, NOW + 1)
    await freshness.revalidate(s, NOW + 1)
    assert s.user is None and loader.calls == 2
    # A feed version the store never reaches costs one query, not one per request.
    freshness.feed.publish("alice", 9)
    for _ in range(3):
        s = session(role="USER", version=3, checked_at=NOW + 2)
        await freshness.revalidate(s, NOW + 2)
        assert s.user is not None and not s.modified
    assert loader.calls == 3


async def test_revalidate_deleted_user_signs_out() -> None:
    freshness = Freshness(Loader(), revalidate_after=300)
    s = session(checked_at=NOW - 400)
    await freshness.revalidate(s, NOW)
    assert s.user is None and s.is_empty


async def test_concurrent_revalidations_share_one_load() -> None:
    loader = Loader(alice=("ADMIN", 1))
    loader.gate = anyio.Event()
    freshness = Freshness(loader, revalidate_after=300)
    sessions = [session(checked_at=NOW - 400) for _ in range(50)]
    async with anyio.create_task_group() as tg:
        for s in sessions:
            tg.start_soon(freshness.revalidate, s, NOW)
        await anyio.wait_all_tasks_blocked()
        loader.gate.set()
    assert loader.calls == 1 and freshness.queries == 1
    assert all(s.checked_at == NOW and s.modified for s in sessions)


@pytest.mark.parametrize("policy", ["keep", "signout"])
async def test_store_unreachable(policy: Any, caplog: pytest.LogCaptureFixture) -> None:
    loader = Loader(alice=("USER", 2))
    loader.error = StoreUnavailable("connection refused")
    freshness = Freshness(loader, revalidate_after=300, on_store_error=policy, retry_after=30)
    caplog.set_level(logging.WARNING, "asgi_jwt_session.freshness")
    for t in range(0, 30, 3):
        s = session(checked_at=NOW - 400)
        await freshness.revalidate(s, NOW + t)
        if policy == "keep":  # served with the claims it has; chk stays old: retried later
            assert s.user is not None and s.user.role == "ADMIN" and not s.modified
            assert s.checked_at == NOW - 400
        else:
            assert s.user is None
    assert loader.calls == 1  # no query again before retry_after
    assert len(caplog.records) == 1 and "unreachable" in caplog.records[0].getMessage()
    await freshness.revalidate(session(checked_at=NOW - 400), NOW + 30)
    assert loader.calls == 2 and len(caplog.records) == 2  # once per interval
    loader.error = None
    s = session(checked_at=NOW - 400)
    await freshness.revalidate(s, NOW + 60)
    assert s.user is not None and s.user.role == "USER" and loader.calls == 3


async def test_slow_store_times_out() -> None:
    loader = Loader(alice=("USER", 2))
    loader.gate = anyio.Event()  # never set: a hanging database
    freshness = Freshness(loader, revalidate_after=300, timeout=0.05)
    s = session(checked_at=NOW - 400)
    await freshness.revalidate(s, NOW)
    assert s.user is not None and s.user.role == "ADMIN"
    assert freshness.retry_at == NOW + freshness.retry_after


async def test_other_loader_errors_propagate() -> None:
    loader = Loader()
    loader.error = KeyError("bug")
    freshness = Freshness(loader)
    with pytest.raises(KeyError):
        await freshness.revalidate(session(checked_at=NOW - 400), NOW)


def test_policy_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Freshness(Loader(), revalidate_after=0)
    with pytest.raises(ValueError):
        Freshness(Loader(), on_store_error="ignore")  # type: ignore[arg-type]
