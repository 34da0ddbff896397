"""RedisStore on a Redis Cluster of three primaries on loopback ports: the whole suite, and
SCAN, MGET and DEL reaching every primary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_support import assert_all_passed, need_redis_server, run_suite

from storekit.reference.redis import RedisStore, namespace_prefix
from storekit.reference.redis.serve import RedisClusterServers


def test_the_suite_passes_on_a_three_primary_cluster(tmp_path: Path) -> None:
    """Every clause passes on the cluster target, errors.1 (all nodes down) included."""
    result = run_suite("storekit.reference.redis:redis_cluster_target", tmp_path)
    assert result["name"] == "RedisStore (cluster)"
    assert_all_passed(result)


@pytest.fixture(scope="module")
def servers() -> Iterator[RedisClusterServers]:
    need_redis_server()
    with RedisClusterServers() as started:
        yield started


@pytest.fixture
def store(servers: RedisClusterServers) -> Iterator[RedisStore]:
    with RedisStore(servers.url, cluster=True) as made:
        made.client.flushall(target_nodes="primaries")
        yield made


def sizes(store: RedisStore) -> list[int]:
    """Keys on each primary."""
    client: Any = store.client
    return [int(client.dbsize(target_nodes=node)) for node in client.get_primaries()]


def test_sessions_spread_over_every_primary_and_all_finds_them(store: RedisStore) -> None:
    sessions = {f"sid-{n}": {"n": n} for n in range(300)}
    for sid, session in sessions.items():
        store.set(sid, session)
    assert len(sizes(store)) == 3
    assert all(size > 50 for size in sizes(store)), sizes(store)
    assert store.length() == 300
    assert store.all() == sessions
    assert sorted(store.ids()) == sorted(sessions)


def test_clear_empties_every_primary_and_leaves_foreign_keys(store: RedisStore) -> None:
    for n in range(200):
        store.set(f"sid-{n}", {"n": n})
    foreign = ["sess2:x", "other:*", "sess", "{sess:}x"]
    for key in foreign:
        store.client.set(key, b"foreign")
    store.clear()
    assert store.length() == 0
    assert sum(sizes(store)) == len(foreign)
    assert all(store.client.get(key) == b"foreign" for key in foreign)


def test_hash_tags_in_sids_and_namespaces_on_the_cluster(
    servers: RedisClusterServers, store: RedisStore
) -> None:
    """A sid holding {braces} pins its key to one slot, which changes nothing for the store."""
    sids = ["{a}1", "{a}2", "{", "}{", "{}", "x{y}z"]
    for sid in sids:
        store.set(sid, {"sid": sid})
    with RedisStore(servers.url, cluster=True, prefix=namespace_prefix("a:b")) as other:
        other.set("{a}1", {"other": True})
        assert {sid: store.get(sid) for sid in sids} == {sid: {"sid": sid} for sid in sids}
        assert store.length() == len(sids)
        store.clear()
        assert other.all() == {"{a}1": {"other": True}}
