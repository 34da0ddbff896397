"""AsyncRedisStore, RedisStore's asyncio twin: the same keys and values, on a single server
and on a cluster, outages and recovery."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
import redis
from redis_support import need_redis_server

from storekit import InvalidSessionId, StoreUnavailable, expires_in
from storekit.conformance.linearizability import Kind, Operation, check_history
from storekit.reference.redis import AsyncRedisStore, CorruptSession, RedisStore
from storekit.reference.redis.serve import RedisClusterServers
from storekit.testing.redis_server import RedisServer


async def lifecycle(store: AsyncRedisStore) -> None:
    """The connect-redis test suite's lifecycle, on the async store."""
    first = {"cookie": expires_in(60), "n": 1}
    await store.set("a", first)
    await store.set("b", {"n": 2})
    assert await store.get("a") == first
    assert await store.length() == 2
    assert sorted(await store.ids()) == ["a", "b"]
    await store.touch("b", {"cookie": expires_in(3600)})
    assert await store.get("b") == {"n": 2}
    await store.touch("nobody", {"cookie": expires_in(3600)})
    assert await store.get("nobody") is None
    await store.destroy("a")
    assert await store.all() == {"b": {"n": 2}}
    await store.set("b", {"cookie": expires_in(-1)})
    assert await store.length() == 0
    for n in range(1500):
        await store.set(f"s{n}", {"n": n})
    assert len(await store.all()) == 1500
    await store.clear()
    assert await store.length() == 0


def test_the_async_store_writes_what_the_sync_store_reads(server: RedisServer, raw: redis.Redis) -> None:
    async def main() -> None:
        store = AsyncRedisStore(server.url)
        try:
            await lifecycle(store)
            await store.set("shared", {"cookie": expires_in(60), "from": "async"})
            with pytest.raises(InvalidSessionId):
                await store.get("")
        finally:
            await store.aclose()

    asyncio.run(main())
    assert 59_000 < raw.pttl("sess:shared") <= 60_000
    with RedisStore(server.url) as sync:
        assert (sync.get("shared") or {})["from"] == "async"
        sync.set("back", {"from": "sync"})
    assert raw.get("sess:back") == b'{"from":"sync"}'


def test_the_async_store_names_garbage_keys(server: RedisServer, raw: redis.Redis) -> None:
    raw.set("sess:bad", b"{oops")

    async def main() -> None:
        store = AsyncRedisStore(server.url)
        try:
            with pytest.raises(CorruptSession, match="sess:bad"):
                await store.get("bad")
            with pytest.raises(CorruptSession, match="sess:bad"):
                await store.all()
        finally:
            await store.aclose()

    asyncio.run(main())


def test_the_async_store_raises_store_unavailable_in_an_outage_and_recovers(
    server: RedisServer, raw: redis.Redis
) -> None:
    async def main() -> None:
        store = AsyncRedisStore(server.url)
        try:
            await store.set("a", {"n": 1})
            with server.down():
                calls: dict[str, Any] = {
                    "get": store.get("a"),
                    "set": store.set("a", {"n": 2}),
                    "destroy": store.destroy("a"),
                    "touch": store.touch("a", {}),
                    "length": store.length(),
                    "all": store.all(),
                    "clear": store.clear(),
                }
                for name, call in calls.items():
                    began = time.monotonic()
                    with pytest.raises(StoreUnavailable, match=f"{name}: Redis at"):
                        await call
                    assert time.monotonic() - began < 2.5, name
            await store.set("a", {"back": True})
            assert await store.get("a") == {"back": True}
        finally:
            await store.aclose()

    asyncio.run(main())


def test_sixty_four_tasks_share_one_async_store(server: RedisServer, raw: redis.Redis) -> None:
    async def main() -> None:
        store = AsyncRedisStore(server.url)
        try:
            await asyncio.gather(*(store.set(f"t{n}", {"n": n}) for n in range(64)))
            got = await asyncio.gather(*(store.get(f"t{n}") for n in range(64)))
            assert got == [{"n": n} for n in range(64)]
        finally:
            await store.aclose()

    asyncio.run(main())


def test_sixty_four_tasks_give_linearizable_histories(server: RedisServer, raw: redis.Redis) -> None:
    """threads.1's workload (64 tasks on one loop, 25 get/set/destroy each) on 16 sids rather
    than the suite's 4, so that the checker decides within its budget."""
    sids = [f"race-{n}" for n in range(16)]
    ops: list[Operation] = []

    async def work(store: AsyncRedisStore, client: int, start: asyncio.Event) -> None:
        rng = random.Random(client)
        await start.wait()
        kinds: list[Kind] = ["get", "get", "get", "get", "get", "set", "set", "set", "set", "destroy"]
        for step in range(25):
            kind, sid, value = rng.choice(kinds), rng.choice(sids), f"c{client}-{step}"
            called = time.monotonic_ns()
            result: Any = None
            if kind == "get":
                got = await store.get(sid)
                result = None if got is None else got["w"]
            elif kind == "set":
                await store.set(sid, {"w": value})
            else:
                await store.destroy(sid)
            written = value if kind == "set" else None
            ops.append(Operation(client, sid, kind, written, result, called, time.monotonic_ns()))

    async def main() -> None:
        store = AsyncRedisStore(server.url)
        try:
            start = asyncio.Event()
            tasks = [asyncio.ensure_future(work(store, n, start)) for n in range(64)]
            start.set()
            await asyncio.gather(*tasks)
        finally:
            await store.aclose()

    asyncio.run(main())
    assert len(ops) == 64 * 25
    result = check_history(ops, timeout=60)
    assert result.ok is True, result.explain()


def test_the_async_store_on_a_cluster() -> None:
    need_redis_server()
    with RedisClusterServers() as servers:

        async def main() -> None:
            store = AsyncRedisStore(servers.url, cluster=True)
            try:
                await lifecycle(store)
            finally:
                await store.aclose()

        asyncio.run(main())


def test_a_sync_client_is_refused_with_the_fix(server: RedisServer) -> None:
    import redis.asyncio

    sync_client = redis.Redis.from_url(server.url)
    with pytest.raises(TypeError, match="use RedisStore with this client"):
        AsyncRedisStore(sync_client)
    with pytest.raises(TypeError, match="use AsyncRedisStore with this client"):
        RedisStore(redis.asyncio.Redis.from_url(server.url))
    sync_client.close()
