"""cachelib's SimpleCache, FileSystemCache and RedisCache as session stores.

The translation is Flask-Session's (``flask_session.cachelib``): a session is
stored under ``key_prefix + sid`` as the dict itself, serialized by cachelib
(pickle), with a timeout. Flask-Session's timeout is the app's session
lifetime; here it is computed from ``cookie.expires``: whole seconds from now,
rounded up. Where it must translate, the adapter says so:

* a session without ``cookie.expires`` gets ``timeout=None``, cachelib's
  ``default_timeout`` (300 s unless the cache was built otherwise);
* an expiry at or before now gives a timeout of 0 or less, passed on as it is:
  cachelib documents 0 as "never expires" and leaves negative timeouts
  undefined, and the suite shows what each backend does with them;
* ``destroy`` is ``delete``; ``clear`` is the cache's own ``clear()``.
  cachelib has no way to list keys, so ``length`` and ``all`` are not offered.
  The namespace of ``namespaced(name)`` is a key prefix on the same cache,
  Flask-Session's ``SESSION_KEY_PREFIX``; RedisCache takes it as its own
  ``key_prefix``, so that its ``clear()`` can honour it.

The caches are built with cachelib's defaults (``threshold=500``,
``default_timeout=300``), as Flask-Session builds its FileSystemCache.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from cachelib import BaseCache, FileSystemCache, RedisCache, SimpleCache

from storekit.contract import Session
from storekit.ecosystem._common import (
    redis_outage,
    redis_url,
    require_sid,
    serving,
    temp_dir,
    timeout_seconds,
)
from storekit.errors import StoreUnavailable
from storekit.target import Target

__all__ = [
    "DEFAULT_PREFIX",
    "CacheLibStore",
    "filesystem_cache_target",
    "redis_cache_target",
    "simple_cache_target",
]

DEFAULT_PREFIX = "session:"
"""Flask-Session's default SESSION_KEY_PREFIX."""

DEFAULT_TIMEOUT = 300
"""cachelib's default_timeout: the life of a session without cookie.expires."""


class CacheLibStore:
    """A storekit store over any cachelib ``BaseCache``, keyed ``key_prefix + sid``.

    ``unavailable`` are the exceptions by which the cache's client says that the
    backend cannot be reached; they are re-raised as StoreUnavailable.
    """

    def __init__(
        self,
        cache: BaseCache,
        *,
        key_prefix: str = DEFAULT_PREFIX,
        unavailable: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.cache = cache
        self.key_prefix = key_prefix
        self.unavailable = unavailable

    def _key(self, sid: object) -> str:
        return self.key_prefix + require_sid(sid)

    @contextlib.contextmanager
    def _calling(self) -> Iterator[None]:
        try:
            yield
        except self.unavailable as exc:
            raise StoreUnavailable(f"{type(self.cache).__name__} cannot reach its backend: {exc}") from exc

    def get(self, sid: str) -> Session | None:
        key = self._key(sid)
        with self._calling():
            value: Session | None = self.cache.get(key)
        return value

    def set(self, sid: str, session: Session) -> None:
        key = self._key(sid)
        timeout = timeout_seconds(session) if isinstance(session, dict) else None
        with self._calling():
            self.cache.set(key, session, timeout=timeout)

    def destroy(self, sid: str) -> None:
        key = self._key(sid)
        with self._calling():
            self.cache.delete(key)

    def clear(self) -> None:
        with self._calling():
            self.cache.clear()

    def __repr__(self) -> str:
        return f"CacheLibStore({type(self.cache).__name__}, key_prefix={self.key_prefix!r})"


# -- SimpleCache: one process's memory ------------------------------------------

_shared_lock = threading.Lock()
_shared_simple: list[SimpleCache] = []


def _one_simple_cache() -> SimpleCache:
    """The process's SimpleCache that namespaced stores share (as apps share one cache)."""
    with _shared_lock:
        if not _shared_simple:
            _shared_simple.append(SimpleCache())
        return _shared_simple[0]


simple_cache_target = Target(
    lambda: CacheLibStore(SimpleCache()),
    name="cachelib SimpleCache",
    namespaced=lambda name: CacheLibStore(_one_simple_cache(), key_prefix=f"{name}:"),
    default_ttl=DEFAULT_TIMEOUT,
)
"""A fresh SimpleCache per store: the cache of one process, as one Flask worker has."""


# -- FileSystemCache: a directory shared by processes ----------------------------


def _directory() -> str:
    return temp_dir("cachelib_files")


def _filesystem_store(prefix: str = DEFAULT_PREFIX) -> CacheLibStore:
    return CacheLibStore(FileSystemCache(_directory(), threshold=500), key_prefix=prefix)


filesystem_cache_target = Target(
    _filesystem_store,
    name="cachelib FileSystemCache",
    shared=True,
    serve=lambda: serving(_directory),
    namespaced=lambda name: _filesystem_store(f"{name}:"),
    default_ttl=DEFAULT_TIMEOUT,
)
"""One FileSystemCache directory (a fresh temporary one per run), threshold 500 as Flask-Session's."""


# -- RedisCache: a real redis-server -------------------------------------------


def _redis_store(prefix: str = DEFAULT_PREFIX) -> CacheLibStore:
    import redis

    client: Any = redis.Redis.from_url(
        redis_url("cachelib_redis"), socket_timeout=5, socket_connect_timeout=5
    )
    return CacheLibStore(
        RedisCache(client, key_prefix=prefix),
        key_prefix="",
        unavailable=(redis.ConnectionError, redis.TimeoutError),
    )


redis_cache_target = Target(
    _redis_store,
    name="cachelib RedisCache",
    shared=True,
    serve=lambda: serving(lambda: redis_url("cachelib_redis")),
    namespaced=lambda name: _redis_store(f"{name}:"),
    default_ttl=DEFAULT_TIMEOUT,
    outage=lambda: redis_outage("cachelib_redis"),
)
"""RedisCache on a redis-server started for the run, ``key_prefix="session:"``."""
