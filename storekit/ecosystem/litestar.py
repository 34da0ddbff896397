"""Litestar's server-side stores (MemoryStore, FileStore, RedisStore) as async session stores.

The adapter does what Litestar's ``ServerSideSessionBackend`` does with a store: the session
id is the store key, the data is the backend's ``serialize_data`` (msgspec JSON with
Litestar's default encoders) and ``deserialize_data``. Where it must translate, it says so:

* the sid is the key, as it is (FileStore hashes it into a file name, RedisStore prefixes
  its namespace);
* ``get`` is ``get(key)`` without ``renew_for``; ``None`` is "no session";
* ``set`` is ``set(key, data, expires_in)``. The middleware passes its one ``max_age`` for
  every session; the adapter passes the whole seconds from now to ``cookie.expires``, rounded
  up, as they are (0 or less for an expiry at or before now), and ``expires_in=None``
  without one. A session the serializer refuses (Litestar's SerializationException), or one
  that is not a dict, raises InvalidSessionData;
* ``touch`` is Litestar's renewal on access, ``get(key, renew_for=seconds)`` with the same
  seconds (``renew_on_access`` in the middleware's config); ``destroy`` is ``delete``;
  ``clear`` is ``delete_all``. Litestar's stores cannot count or list keys: ``length`` and
  ``all`` are not offered;
* namespaces: the session store is ``root.with_namespace("sessions")`` and another namespace
  ``root.with_namespace(name)``, as Litestar's docs build a registry from one root store;
  FileStore takes only alphanumeric namespaces, so the adapter spells a namespace in hex
  there. MemoryStore has no namespaces: another namespace is another MemoryStore, as the
  store registry makes one per name.

RedisStore runs on a real redis-server with redis-py's asyncio client (socket timeouts of
5 s); its ConnectionError and TimeoutError become StoreUnavailable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.exceptions import SerializationException
from litestar.middleware.session.server_side import ServerSideSessionBackend
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore

from storekit.contract import Session
from storekit.ecosystem._common import (
    outage_errors,
    redis_outage,
    redis_url,
    require_sid,
    serving,
    temp_dir,
    timeout_seconds,
    unavailable,
)
from storekit.errors import InvalidSessionData, cut
from storekit.target import Target

__all__ = ["LitestarStore", "file_target", "memory_target", "redis_target"]

SESSIONS = "sessions"
"""The store name Litestar's ServerSideSessionConfig uses, here the session store's namespace."""


class LitestarStore:
    """An async storekit store over any Litestar ``Store``."""

    def __init__(
        self, store: Store, *, errors: tuple[type[BaseException], ...] = (), client: Any = None
    ) -> None:
        self.store = store
        self.errors = errors
        self.client = client

    async def get(self, sid: str) -> Session | None:
        key = require_sid(sid)
        with unavailable(repr(self), self.errors):
            raw = await self.store.get(key)
        if raw is None:
            return None
        data: Session = ServerSideSessionBackend.deserialize_data(raw)
        return data

    async def set(self, sid: str, session: Session) -> None:
        key = require_sid(sid)
        if not isinstance(session, dict):
            raise InvalidSessionData(
                f"a Litestar session is a dict; cannot store {type(session).__name__} {cut(session)}"
            )
        try:
            data = ServerSideSessionBackend.serialize_data(session)
        except SerializationException as exc:
            raise InvalidSessionData(f"Litestar's serializer refuses {cut(session)}: {exc}") from exc
        with unavailable(repr(self), self.errors):
            await self.store.set(key, data, expires_in=timeout_seconds(session))

    async def touch(self, sid: str, session: Session) -> None:
        key = require_sid(sid)
        seconds = timeout_seconds(session) if isinstance(session, dict) else None
        with unavailable(repr(self), self.errors):
            await self.store.get(key, renew_for=seconds)

    async def destroy(self, sid: str) -> None:
        key = require_sid(sid)
        with unavailable(repr(self), self.errors):
            await self.store.delete(key)

    async def clear(self) -> None:
        with unavailable(repr(self), self.errors):
            await self.store.delete_all()

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    def __repr__(self) -> str:
        return f"LitestarStore({type(self.store).__name__})"


memory_target = Target(
    lambda: LitestarStore(MemoryStore()),
    name="Litestar MemoryStore",
    namespaced=lambda name: LitestarStore(MemoryStore()),
)
"""A fresh MemoryStore per store: one process's memory."""


def _file_store(namespace: str = SESSIONS) -> LitestarStore:
    root = FileStore(Path(temp_dir("litestar_files")))
    return LitestarStore(root.with_namespace(namespace.encode("utf-8").hex()))


file_target = Target(
    _file_store,
    name="Litestar FileStore",
    shared=True,
    serve=lambda: serving(lambda: temp_dir("litestar_files")),
    namespaced=_file_store,
)
"""FileStore in a fresh temporary directory per run, namespace ``sessions`` (in hex)."""


def _redis_store(namespace: str = SESSIONS) -> LitestarStore:
    from litestar.stores.redis import RedisStore
    from redis.asyncio import Redis

    client: Any = Redis.from_url(redis_url("litestar_redis"), socket_timeout=5, socket_connect_timeout=5)
    return LitestarStore(RedisStore(client).with_namespace(namespace), errors=outage_errors(), client=client)


redis_target = Target(
    _redis_store,
    name="Litestar RedisStore",
    shared=True,
    serve=lambda: serving(lambda: redis_url("litestar_redis")),
    namespaced=_redis_store,
    outage=lambda: redis_outage("litestar_redis"),
)
"""RedisStore on a redis-server started for the run, ``LITESTAR`` root namespace, ``sessions`` below it."""
