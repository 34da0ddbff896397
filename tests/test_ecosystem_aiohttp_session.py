"""storekit.ecosystem.aiohttp_session: what the adapter hands aiohttp-session's storages, and
the aiohttp-session bugs that docs/compatibility.md describes, which must still reproduce."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("aiohttp_session")

from aiohttp import web
from aiohttp_session import Session
from helpers import expiring_in

from storekit.ecosystem.aiohttp_session import AiohttpSessionStore, CookieOnlyRequest
from storekit.errors import InvalidSessionData, InvalidSessionId


@pytest.fixture
def memcached() -> Iterator[tuple[str, int]]:
    from storekit.testing import MemcachedMissing, MemcachedServer

    try:
        server = MemcachedServer()
    except MemcachedMissing as exc:
        pytest.skip(f"{exc} (apt-get install memcached)")
    with server:
        yield "127.0.0.1", server.port


def _redis_store(url: str) -> tuple[AiohttpSessionStore, Any]:
    from aiohttp_session.redis_storage import RedisStorage
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    return AiohttpSessionStore(RedisStorage(client), client=client), client


def test_set_gives_a_new_session_the_sid_and_the_max_age_of_cookie_expires(redis_url: str) -> None:
    import redis

    async def scenario() -> None:
        store, _ = _redis_store(redis_url)
        await store.set("sid", expiring_in(100))
        assert (await store.get("sid") or {})["n"] == 1
        assert await store.get("unknown") is None  # load_session answers a new session
        await store.aclose()

    asyncio.run(scenario())
    check = redis.Redis.from_url(redis_url)
    record = json.loads(check.get("AIOHTTP_SESSION_sid") or b"")
    assert set(record) == {"created", "session"}
    assert record["session"]["n"] == 1
    assert 98 <= check.ttl("AIOHTTP_SESSION_sid") <= 101


def test_destroy_is_invalidate_and_save_which_writes_an_empty_record(redis_url: str) -> None:
    import redis

    async def scenario() -> None:
        store, _ = _redis_store(redis_url)
        await store.set("sid", {"n": 1})
        await store.destroy("sid")
        assert await store.get("sid") is None
        await store.aclose()

    asyncio.run(scenario())
    assert redis.Redis.from_url(redis_url).get("AIOHTTP_SESSION_sid") == b"{}"


def test_the_stand_in_request_carries_the_sid_as_it_is() -> None:
    from aiohttp_session import SimpleCookieStorage

    storage = SimpleCookieStorage()
    assert storage.load_cookie(CookieOnlyRequest({"AIOHTTP_SESSION": 'a b;"c'})) == 'a b;"c'  # type: ignore[arg-type]


def test_refused_data_and_keys_raise_storekit_errors(redis_url: str, memcached: tuple[str, int]) -> None:
    from storekit.ecosystem import aiohttp_session

    async def scenario() -> None:
        store, _ = _redis_store(redis_url)
        with pytest.raises(InvalidSessionData, match=r"json\.dumps"):
            await store.set("sid", {"s": {1, 2}})
        with pytest.raises(InvalidSessionData, match="mapping"):
            await store.set("sid", [1])  # type: ignore[arg-type]
        await store.aclose()

    asyncio.run(scenario())
    import os

    host, port = memcached
    os.environ["STOREKIT_ECOSYSTEM_AIOHTTP_MEMCACHED"] = json.dumps(f"{host}:{port}")
    try:

        async def refused() -> None:
            store = aiohttp_session._memcached_store()
            with pytest.raises(InvalidSessionId, match="refuses key"):
                await store.set("with space", {"n": 1})
            await store.aclose()

        asyncio.run(refused())
    finally:
        del os.environ["STOREKIT_ECOSYSTEM_AIOHTTP_MEMCACHED"]


# -- aiohttp-session bugs that docs/compatibility.md describes --------------------------------


def _expired(max_age: int) -> Session:
    session = Session("sid", data=None, new=True)
    session["n"] = 1
    session.max_age = max_age
    return session


def test_aiohttp_session_max_age_zero_still_raises_on_redis_and_stores_forever_on_memcached(
    redis_url: str, memcached: tuple[str, int]
) -> None:
    import aiomcache
    from aiohttp_session.memcached_storage import MemcachedStorage
    from aiohttp_session.redis_storage import RedisStorage
    from redis.asyncio import Redis
    from redis.exceptions import ResponseError

    async def scenario() -> None:
        client = Redis.from_url(redis_url)
        with pytest.raises(ResponseError, match="invalid expire time"):
            await RedisStorage(client).save_session(None, web.Response(), _expired(0))  # type: ignore[arg-type]
        await client.aclose()
        mc = aiomcache.Client(*memcached)
        await MemcachedStorage(mc).save_session(None, web.Response(), _expired(0))  # type: ignore[arg-type]
        await asyncio.sleep(1.1)
        assert await mc.get(b"AIOHTTP_SESSION_sid") is not None  # exptime 0: never expires
        with pytest.raises(aiomcache.exceptions.ValidationException, match="exptime negative"):
            await MemcachedStorage(mc).save_session(None, web.Response(), _expired(-1))  # type: ignore[arg-type]
        await mc.close()

    asyncio.run(scenario())
