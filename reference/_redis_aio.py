"""AsyncRedisStore: the asyncio twin of RedisStore, on redis.asyncio."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from storekit.codec import DEFAULT_MAX_SESSION_BYTES, check_sid, encode_session
from storekit.contract import Session
from storekit.reference._redis_common import (
    BATCH,
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
    DEFAULT_TTL,
    KeyLayout,
    client_options,
    decode_value,
    describe,
    is_async_client,
    mapped_errors,
    sid_of,
)

__all__ = ["AsyncRedisStore"]


class AsyncRedisStore(KeyLayout):
    """RedisStore's twin for asyncio apps, with the same arguments; ``client``
    is a ``redis.asyncio`` client (``Redis``, ``cluster.RedisCluster``, a
    Sentinel's ``master_for()``) or a URL. Close it with ``await store.aclose()``."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float | None = DEFAULT_TTL,
        cluster: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        scan_count: int = BATCH,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(prefix, ttl, scan_count, max_session_bytes, clock)
        self._owns_client = isinstance(client, str)
        if isinstance(client, str):
            client = _client_from_url(client, cluster=cluster, timeout=timeout)
        elif not callable(getattr(client, "get", None)) or not callable(getattr(client, "pexpire", None)):
            raise TypeError(
                f"AsyncRedisStore needs a redis.asyncio client or a URL such as "
                f"'redis://127.0.0.1:6379/0', got {type(client).__name__} {client!r}"
            )
        elif not is_async_client(client):
            raise TypeError(
                f"{client!r} is a sync client; AsyncRedisStore needs a redis.asyncio one "
                "(redis.asyncio.Redis), or use RedisStore with this client"
            )
        self.client = client
        self.cluster = callable(getattr(client, "get_nodes", None))
        self.where = describe(client)

    def _key(self, sid: str) -> str:
        return self.prefix + check_sid(sid)

    async def get(self, sid: str) -> Session | None:
        key = self._key(sid)
        with mapped_errors("get", self.where, key):
            raw = await self.client.get(key)
        return None if raw is None else decode_value(key, raw)

    async def set(self, sid: str, session: Session) -> None:
        key = self._key(sid)
        data = encode_session(session, max_bytes=self.max_session_bytes)
        ttl_ms = self.expiry.of(session)
        with mapped_errors("set", self.where, key):
            if ttl_ms is not None and ttl_ms <= 0:
                await self.client.delete(key)
            else:
                await self.client.set(key, data, px=ttl_ms)

    async def destroy(self, sid: str) -> None:
        key = self._key(sid)
        with mapped_errors("destroy", self.where, key):
            await self.client.delete(key)

    async def touch(self, sid: str, session: Session) -> None:
        """See :meth:`RedisStore.touch`: the expiry only, never a new key."""
        key = self._key(sid)
        ttl_ms = self.expiry.of(session)
        with mapped_errors("touch", self.where, key):
            if ttl_ms is None:
                await self.client.persist(key)
            elif ttl_ms <= 0:
                await self.client.delete(key)
            else:
                await self.client.pexpire(key, ttl_ms)

    async def _keys(self) -> list[bytes | str]:
        found: AsyncIterator[bytes | str] = self.client.scan_iter(match=self.pattern, count=self.scan_count)
        return list({key async for key in found})  # SCAN may return a key twice

    async def ids(self) -> list[str]:
        with mapped_errors("ids", self.where):
            keys = await self._keys()
        return [sid_of(key, self.prefix) for key in keys]

    async def length(self) -> int:
        with mapped_errors("length", self.where):
            return len(await self._keys())

    async def clear(self) -> None:
        with mapped_errors("clear", self.where):
            keys = await self._keys()
            for start in range(0, len(keys), BATCH):
                await self.client.delete(*keys[start : start + BATCH])

    async def all(self) -> dict[str, Session]:
        """See :meth:`RedisStore.all`."""
        with mapped_errors("all", self.where):
            keys = await self._keys()
            values = await self._mget(keys)
        every: dict[str, Session] = {}
        for key, raw in zip(keys, values, strict=True):
            if raw is not None:
                sid = sid_of(key, self.prefix)
                every[sid] = decode_value(self.prefix + sid, raw)
        return every

    async def _mget(self, keys: list[bytes | str]) -> list[Any]:
        if not keys:
            return []
        if self.cluster:
            return list(await self.client.mget_nonatomic(keys))
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(keys), BATCH):
            pipe.mget(keys[start : start + BATCH])
        return [value for chunk in await pipe.execute() for value in chunk]

    async def aclose(self) -> None:
        """Close the client if the store built it from a URL."""
        if self._owns_client:
            await self.client.aclose()

    def __repr__(self) -> str:
        return f"AsyncRedisStore({self.where!r}, prefix={self.prefix!r})"


def _client_from_url(url: str, *, cluster: bool, timeout: float) -> Any:
    options = client_options(timeout, cluster=cluster, asyncio=True)  # first: says how to install redis-py
    import redis.asyncio
    import redis.asyncio.cluster

    try:
        if cluster:
            return redis.asyncio.cluster.RedisCluster.from_url(url, **options)
        return redis.asyncio.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ValueError(
            f"{url!r} is not a Redis URL ({exc}); write it as 'redis://host:port/db' "
            "or 'unix:///path/to/redis.sock'"
        ) from None
