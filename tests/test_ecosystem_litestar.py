"""storekit.ecosystem.litestar: what the adapter hands Litestar's stores, and the Litestar bugs
that docs/compatibility.md describes, which must still reproduce as described."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("litestar")

from helpers import expiring_in
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore

from storekit.ecosystem.litestar import LitestarStore
from storekit.errors import InvalidSessionData, InvalidSessionId


def test_set_hands_the_seconds_to_cookie_expires_and_the_msgspec_json_of_the_session() -> None:
    inner = MemoryStore()
    store = LitestarStore(inner)

    async def scenario() -> None:
        await store.set("sid-1", expiring_in(100))
        assert 98 <= await inner.expires_in("sid-1") <= 101
        assert (await inner.get("sid-1") or b"").startswith(b'{"n":1,')
        await store.set("sid-2", {"n": 2})
        assert await inner.expires_in("sid-2") == -1  # no cookie.expires: expires_in=None
        assert await store.get("sid-2") == {"n": 2}

    asyncio.run(scenario())


def test_touch_is_get_with_renew_for_and_destroy_and_clear_are_delete_and_delete_all() -> None:
    inner = MemoryStore()
    store = LitestarStore(inner)

    async def scenario() -> None:
        await store.set("a", expiring_in(10))
        await store.touch("a", expiring_in(500))
        assert await inner.expires_in("a") >= 498
        assert (await store.get("a") or {})["n"] == 1  # the data is left as it was
        await store.set("b", {"n": 2})
        await store.destroy("b")
        assert await inner.get("b") is None
        await store.clear()
        assert await inner.get("a") is None

    asyncio.run(scenario())


def test_what_the_serializer_refuses_and_sids_that_are_not_text_raise_storekit_errors() -> None:
    store = LitestarStore(MemoryStore())
    with pytest.raises(InvalidSessionData, match="Litestar"):
        asyncio.run(store.set("sid", {"x": object()}))
    with pytest.raises(InvalidSessionData, match="list"):
        asyncio.run(store.set("sid", [1, 2]))  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        asyncio.run(store.get(""))


def test_filestore_namespaces_are_spelled_in_hex(tmp_path: Path) -> None:
    from storekit.ecosystem import litestar

    root = FileStore(tmp_path)
    named = root.with_namespace(b"sk-ns-1".hex())
    assert named.path == tmp_path / "736b2d6e732d31"
    assert litestar.SESSIONS == "sessions"


# -- Litestar bugs that docs/compatibility.md describes --------------------------------------


def test_litestar_expires_in_zero_still_means_never_in_memory_and_an_error_in_redis(redis_url: str) -> None:
    from litestar.stores.redis import RedisStore
    from redis.asyncio import Redis
    from redis.exceptions import ResponseError

    async def scenario() -> None:
        memory = MemoryStore()
        await memory.set("k", b"v", expires_in=0)
        assert await memory.expires_in("k") == -1  # stored with no expiry at all
        client = Redis.from_url(redis_url)
        try:
            with pytest.raises(ResponseError, match="invalid expire time"):
                await RedisStore(client).set("k", b"v", expires_in=0)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_litestar_redis_renew_for_a_timedelta_still_uses_its_seconds_field_and_deletes_the_key(
    redis_url: str,
) -> None:
    from litestar.stores.redis import RedisStore
    from redis.asyncio import Redis

    async def scenario() -> None:
        client = Redis.from_url(redis_url)
        try:
            store = RedisStore(client)
            await store.set("k", b"v", expires_in=3600)
            assert await store.get("k", renew_for=timedelta(days=1)) == b"v"
            assert await store.get("k") is None  # renewed "for one day": EXPIRE k 0
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_litestar_redis_delete_all_still_clears_namespaces_that_share_its_prefix(redis_url: str) -> None:
    from litestar.stores.redis import RedisStore
    from redis.asyncio import Redis

    async def scenario() -> None:
        client = Redis.from_url(redis_url)
        try:
            app, apple = RedisStore(client, namespace="app"), RedisStore(client, namespace="apple")
            await apple.set("k", b"precious")
            await app.delete_all()
            assert await apple.get("k") is None  # another namespace's key is gone
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_litestar_filestore_delete_all_still_raises_before_the_first_write(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "sessions")  # its directory is made by the first set()
    with pytest.raises(FileNotFoundError):
        asyncio.run(store.delete_all())


def test_litestar_filestore_concurrent_delete_all_still_raises(tmp_path: Path) -> None:
    async def scenario() -> list[BaseException | None]:
        store = FileStore(tmp_path / "sessions")
        for n in range(200):
            await store.set(f"k{n}", b"v")
        return await asyncio.gather(*(store.delete_all() for _ in range(8)), return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert any(isinstance(outcome, FileNotFoundError) for outcome in outcomes), outcomes
