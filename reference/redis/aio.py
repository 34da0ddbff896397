"""AsyncRedisStore: the asyncio twin of RedisStore, on redis.asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from storekit.codec import encode_session
from storekit.contract import Session
from storekit.reference.redis.common import (
    BATCH,
    StoreCore,
    decode_value,
    mapped_errors,
    sid_of,
)

__all__ = ["AsyncRedisStore"]


class AsyncRedisStore(StoreCore):
    """RedisStore's twin for asyncio apps, with the same arguments; ``client``
    is a ``redis.asyncio`` client (``Redis``, ``cluster.RedisCluster``, a
    Sentinel's ``master_for()``) or a URL. Close it with ``await store.aclose()``."""

    asyncio = True

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

    async def replace(self, sid: str, session: Session) -> bool:
        """SET with XX, as :meth:`RedisStore.replace`."""
        key = self._key(sid)
        data = encode_session(session, max_bytes=self.max_session_bytes)
        ttl_ms = self.expiry.of(session)
        with mapped_errors("replace", self.where, key):
            if ttl_ms is not None and ttl_ms <= 0:
                return bool(await self.client.delete(key))
            return bool(await self.client.set(key, data, px=ttl_ms, xx=True))

    async def renew(self, sid: str, session: Session) -> Session | None:
        """GETEX: the session and its new expiry in one Redis command (the stored data, its
        ``cookie`` included, stays as it was, as touch leaves it)."""
        key = self._key(sid)
        ttl_ms = self.expiry.of(session)
        with mapped_errors("renew", self.where, key):
            if ttl_ms is not None and ttl_ms <= 0:
                await self.client.delete(key)
                return None
            if ttl_ms is None:
                raw = await self.client.getex(key, persist=True)
            else:
                raw = await self.client.getex(key, px=ttl_ms)
        return None if raw is None else decode_value(key, raw)

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
