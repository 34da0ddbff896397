"""storekit.ecosystem.starsessions: what the adapter hands starsessions' stores, and the
behaviour of theirs that docs/compatibility.md describes, which must still be as described."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("starsessions")

from helpers import expiring_in
from starsessions import InMemoryStore

from storekit.ecosystem.starsessions import GC_TTL, StarsessionsStore, expiry_arguments
from storekit.errors import InvalidSessionData, InvalidSessionId


def test_expiry_becomes_lifetime_and_ttl_and_no_expiry_is_a_session_only_cookie() -> None:
    assert expiry_arguments({"n": 1}) == (0, 0)
    lifetime, ttl = expiry_arguments(expiring_in(100))
    assert lifetime == ttl
    assert 99 <= ttl <= 101
    assert expiry_arguments(expiring_in(-10)) in ((1, -10), (1, -9))  # lifetime 0 would mean "no max-age"


def test_set_writes_json_bytes_and_get_reads_empty_bytes_as_no_session() -> None:
    inner = InMemoryStore()
    store = StarsessionsStore(inner)

    async def scenario() -> None:
        assert await store.get("sid") is None  # read() answers b"" for an unknown id
        await store.set("sid", {"a": [1, 2]})
        assert inner.data["sid"] == b'{"a": [1, 2]}'
        assert await store.get("sid") == {"a": [1, 2]}
        await store.destroy("sid")
        assert "sid" not in inner.data

    asyncio.run(scenario())


def test_what_json_refuses_and_sids_that_are_not_text_raise_storekit_errors() -> None:
    store = StarsessionsStore(InMemoryStore())
    with pytest.raises(InvalidSessionData, match="JsonSerializer"):
        asyncio.run(store.set("sid", {"s": {1, 2}}))
    with pytest.raises(InvalidSessionData, match="list"):
        asyncio.run(store.set("sid", [1]))  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        asyncio.run(store.get(b"sid"))  # type: ignore[arg-type]


def test_redis_store_keys_are_prefixed_and_carry_the_ttl(redis_url: str) -> None:
    import redis

    from storekit.ecosystem import starsessions

    check = redis.Redis.from_url(redis_url)

    async def scenario() -> None:
        from redis.asyncio import Redis
        from starsessions.stores.redis import RedisStore

        client = Redis.from_url(redis_url)
        store = StarsessionsStore(RedisStore(connection=client), client=client)
        await store.set("sid", expiring_in(100))
        await store.set("forever", {"n": 1})
        await store.aclose()

    asyncio.run(scenario())
    assert 98 <= check.ttl("starsessions.sid") <= 101
    assert GC_TTL - 5 <= check.ttl("starsessions.forever") <= GC_TTL  # lifetime 0: gc_ttl
    assert starsessions.redis_target.default_ttl == GC_TTL


# -- starsessions behaviour that docs/compatibility.md describes -----------------------------


def test_starsessions_inmemorystore_still_ignores_lifetime_and_ttl() -> None:
    """Design difference (documented as mostly for unit tests): nothing ever expires."""

    async def scenario() -> bytes:
        store = InMemoryStore()
        await store.write("sid", b"{}", lifetime=1, ttl=-100)
        return await store.read("sid", lifetime=1)

    assert asyncio.run(scenario()) == b"{}"


def test_starsessions_redis_store_still_keeps_an_already_expired_write_for_a_second(redis_url: str) -> None:
    import redis

    async def scenario() -> None:
        from redis.asyncio import Redis
        from starsessions.stores.redis import RedisStore

        client = Redis.from_url(redis_url)
        await RedisStore(connection=client).write("sid", b"{}", lifetime=60, ttl=-100)
        await client.aclose()

    asyncio.run(scenario())
    assert redis.Redis.from_url(redis_url).ttl("starsessions.sid") == 1  # max(1, ttl)
