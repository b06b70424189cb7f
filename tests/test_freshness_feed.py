"""VersionFeed: the in-process map of user id to newest session version."""

from __future__ import annotations

import pytest

from asgi_jwt_session.freshness import VersionFeed
from asgi_jwt_session.freshness.feed import DEFAULT_MAX_AGE
from tests.conftest import Clock


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
    clock = Clock(100.0)
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
    clock = Clock(100.0)
    feed = VersionFeed(10, clock=clock)
    for i in range(10_000):
        clock.now += 0.1
        feed.publish(f"user-{i}", 2)
    assert len(feed) <= 101


def test_feed_max_age_must_be_positive() -> None:
    with pytest.raises(ValueError):
        VersionFeed(0)




def test_feed_defaults_to_the_token_lifetime() -> None:
    assert VersionFeed().max_age == DEFAULT_MAX_AGE == 30 * 24 * 3600
