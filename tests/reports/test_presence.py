"""Presence across web processes: each keeps its connections in a Redis hash that expires unless renewed."""

from __future__ import annotations

import time

import pytest
from redis import Redis

from web import presence as presence_module
from web.presence import Online, Presence


def test_two_processes_see_each_others_agents(redis: Redis, redis_url: str) -> None:
    web1, web2 = Presence(redis_url), Presence(redis_url)
    web1.add("sid-1", Online(1, "Alice", (10,)))
    web2.add("sid-2", Online(2, "Bob", (10, 20)))
    web2.add("sid-3", Online(1, "Alice", (10,)))  # Alice has a second tab, served by the other process
    for reader in (web1, web2):
        assert reader.users() == {1: "Alice", 2: "Bob"}
        assert reader.users(20) == {2: "Bob"}
    assert web2.remove("sid-3") == Online(1, "Alice", (10,))
    assert web1.users() == {1: "Alice", 2: "Bob"}  # still in the first tab
    web1.remove("sid-1")
    assert web2.users() == {2: "Bob"}
    assert 0 < redis.ttl(web2.key) <= presence_module.TTL


def test_a_dead_process_drops_off_and_a_live_one_stays(
    redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence_module, "TTL", 2)
    alive, dead = Presence(redis_url), Presence(redis_url)
    alive.add("a", Online(1, "Alice", ()))
    dead.add("d", Online(2, "Dan", ()))  # then the process is killed: nobody renews its hash
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and 2 in alive.users():
        alive.refresh()  # what the live process's background thread does every REFRESH seconds
        time.sleep(0.5)
    assert alive.users() == {1: "Alice"}


def test_without_redis_presence_is_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    local = Presence(None)
    local.add("x", Online(3, "Carol", (1,)))
    assert local.users(1) == {3: "Carol"} and local.users(2) == {}
    local.remove("x")
    assert local.users() == {}
