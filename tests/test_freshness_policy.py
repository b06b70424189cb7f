"""The freshness policy: the rule (apply_user), what a loader may return, when a session
is stale, revalidation with memo, single flight and outages (asyncio and trio)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from asgi_jwt_session.errors import StoreUnavailable
from asgi_jwt_session.freshness import CheckedUser, Freshness, VersionFeed, apply_user
from asgi_jwt_session.freshness.feed import DEFAULT_MAX_AGE
from asgi_jwt_session.session import Session, SessionUser
from asgi_jwt_session.store import StoredUser
from tests.conftest import Clock, Users

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000


def session(role: str = "ADMIN", version: int | None = 1, checked_at: int | None = NOW,
            user_id: str = "alice") -> Session:
    return Session({"cart": 3}, user=SessionUser(id=user_id, role=role), jti="j1",
                   version=version, issued_at=checked_at, checked_at=checked_at,
                   auth_time=checked_at)


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


def test_apply_user_without_auth_time_is_judged_by_its_iat() -> None:
    # An Auth.js token may carry no auth_time: its iat stands in for the sign-in.
    s = session()
    s.auth_time = None
    apply_user(s, CheckedUser("ADMIN", 1, revoked_at=NOW - 1), NOW)
    assert s.user is not None  # issued after the revocation
    apply_user(s, CheckedUser("ADMIN", 1, revoked_at=NOW), NOW)
    assert s.user is None
    s = session()
    s.auth_time = s.issued_at = None  # nothing to go by: signed in long ago
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
    # revoked_at: epoch seconds, sub-second kept; a naive datetime is UTC.
    when = datetime.fromtimestamp(NOW, UTC).replace(microsecond=500_000)
    checked = CheckedUser("USER", 2, False, NOW + 0.5)
    assert CheckedUser.coerce(Revoked("USER", 2, when)) == checked
    assert CheckedUser.coerce(Revoked("USER", 2, when.replace(tzinfo=None))) == checked
    assert CheckedUser.coerce(Revoked("USER", 2, NOW + 0.5)) == checked
    assert CheckedUser.coerce(Revoked("USER", 2, None)) == CheckedUser("USER", 2)
    stored = StoredUser(id="alice", email=None, role="USER", session_version=4,
                        updated_at=when, revoked_at=when)
    assert CheckedUser.coerce(stored) == CheckedUser("USER", 4, False, NOW + 0.5)



# --- the policy ---------------------------------------------------------------------------


def test_is_stale() -> None:
    freshness = Freshness(Users(), revalidate_after=300)
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

    only_feed = Freshness(Users(), revalidate_after=None)
    assert not only_feed.is_stale(session(checked_at=0), NOW)
    only_feed.feed.publish("alice", 2)
    assert only_feed.is_stale(session(checked_at=0), NOW)


def test_feed_max_age_of_the_policys_own_feed() -> None:
    # revalidate_after and a minute (older changes are caught by revalidation anyway).
    assert Freshness(Users()).feed.max_age == 360
    assert Freshness(Users(), revalidate_after=120).feed.max_age == 180
    assert Freshness(Users(), revalidate_after=None).feed.max_age == DEFAULT_MAX_AGE


def test_a_feed_passed_in_keeps_a_max_age_it_was_given() -> None:
    feed = VersionFeed(600)
    assert Freshness(Users(), revalidate_after=60, feed=feed).feed is feed
    assert Freshness(Users(), revalidate_after=3600, feed=feed).feed is feed
    assert feed.max_age == 600
    # Without one it keeps what the policies using it need: the longest.
    shared = VersionFeed()
    assert shared.max_age == DEFAULT_MAX_AGE
    Freshness(Users(), revalidate_after=60, feed=shared)
    assert shared.max_age == 120
    Freshness(Users(), revalidate_after=300, feed=shared)
    Freshness(Users(), revalidate_after=30, feed=shared)
    assert shared.max_age == 360
    other = Freshness(Users(), revalidate_after=60)
    assert other.feed is not shared and other.feed.max_age == 120


async def test_revalidate_demotion_and_memo() -> None:
    users = Users(alice=("USER", 2))
    freshness = Freshness(users, revalidate_after=300)
    old = session(checked_at=NOW - 400)
    await freshness.revalidate(old, NOW)
    assert old.user is not None and (old.user.role, old.version, old.checked_at) == (
        "USER", 2, NOW)
    # The browser still sends the old cookie (or ignores cookies): no second query.
    again = session(checked_at=NOW - 400)
    await freshness.revalidate(again, NOW + 299)
    assert again.user is not None and again.user.role == "USER"
    assert again.checked_at == NOW  # the time of the read, so the bound holds
    assert users.calls == 1
    # Next window: one more query.
    await freshness.revalidate(session(checked_at=NOW - 400), NOW + 300)
    assert users.calls == 2


async def test_revalidate_newer_feed_version_reloads() -> None:
    users = Users(alice=("USER", 2))
    freshness = Freshness(users, revalidate_after=300)
    await freshness.revalidate(session(checked_at=NOW - 400), NOW)
    users.users["alice"] = CheckedUser("USER", 3, revoked_at=NOW + 1)  # revoked
    freshness.feed.publish("alice", 3)
    s = session(role="USER", version=2)
    assert freshness.is_stale(s, NOW + 1)
    await freshness.revalidate(s, NOW + 1)
    assert s.user is None and users.calls == 2
    # A feed version the store never reaches costs one query, not one per request.
    freshness.feed.publish("alice", 9)
    for _ in range(3):
        s = session(role="USER", version=3, checked_at=NOW + 2)
        await freshness.revalidate(s, NOW + 2)
        assert s.user is not None and not s.modified
    assert users.calls == 3


async def test_revalidate_deleted_user_signs_out() -> None:
    freshness = Freshness(Users(), revalidate_after=300)
    s = session(checked_at=NOW - 400)
    await freshness.revalidate(s, NOW)
    assert s.user is None and s.is_empty


async def test_concurrent_revalidations_share_one_load() -> None:
    users = Users(alice=("ADMIN", 1))
    users.gate = anyio.Event()
    freshness = Freshness(users, revalidate_after=300)
    sessions = [session(checked_at=NOW - 400) for _ in range(50)]
    async with anyio.create_task_group() as tg:
        for s in sessions:
            tg.start_soon(freshness.revalidate, s, NOW)
        await anyio.wait_all_tasks_blocked()
        users.gate.set()
    assert users.calls == 1 and freshness.queries == 1
    assert all(s.checked_at == NOW and s.modified for s in sessions)


@pytest.mark.parametrize("policy", ["keep", "signout"])
async def test_store_unreachable(policy: Any, caplog: pytest.LogCaptureFixture) -> None:
    users = Users(alice=("USER", 2))
    users.error = StoreUnavailable("connection refused")
    clock = Clock(0.0)  # the policy's own (monotonic) clock, for retry_after
    freshness = Freshness(users, revalidate_after=300, on_store_error=policy, retry_after=30,
                          clock=clock)
    caplog.set_level(logging.WARNING, "asgi_jwt_session.freshness")
    for t in range(0, 30, 3):
        clock.now = t
        s = session(checked_at=NOW - 400)
        await freshness.revalidate(s, NOW + t)
        if policy == "keep":  # served with the claims it has; chk stays old: retried later
            assert s.user is not None and s.user.role == "ADMIN" and not s.modified
            assert s.checked_at == NOW - 400
        else:
            assert s.user is None
    assert users.calls == 1  # no query again before retry_after
    assert not freshness.reachable
    assert len(caplog.records) == 1 and "unreachable" in caplog.records[0].getMessage()
    clock.now = 30
    await freshness.revalidate(session(checked_at=NOW - 400), NOW + 30)
    assert users.calls == 2 and len(caplog.records) == 1  # logged once per outage
    users.error = None
    clock.now = 60
    s = session(checked_at=NOW - 400)
    await freshness.revalidate(s, NOW + 60)
    assert s.user is not None and s.user.role == "USER" and users.calls == 3
    assert freshness.reachable
    assert len(caplog.records) == 2 and "reachable again" in caplog.records[1].getMessage()


async def test_slow_store_times_out() -> None:
    users = Users(alice=("USER", 2))
    users.gate = anyio.Event()  # never set: a hanging database
    clock = Clock(0.0)
    freshness = Freshness(users, revalidate_after=300, timeout=0.05, clock=clock)
    s = session(checked_at=NOW - 400)
    await freshness.revalidate(s, NOW)
    assert s.user is not None and s.user.role == "ADMIN"
    assert not freshness.reachable
    clock.now = freshness.retry_after / 2  # not probed again before retry_after
    await freshness.revalidate(session(checked_at=NOW - 400), NOW + 1)
    assert users.calls == 1


async def test_other_loader_errors_propagate() -> None:
    users = Users()
    users.error = KeyError("bug")
    freshness = Freshness(users)
    with pytest.raises(KeyError):
        await freshness.revalidate(session(checked_at=NOW - 400), NOW)


def test_policy_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Freshness(Users(), revalidate_after=0)
    with pytest.raises(ValueError):
        Freshness(Users(), on_store_error="ignore")  # type: ignore[arg-type]
