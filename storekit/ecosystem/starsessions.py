"""starsessions' InMemoryStore and RedisStore (Starlette, FastAPI) as async session stores.

The adapter drives the store layer, ``SessionStore.read/write/remove``, with the bytes of
starsessions' default serializer (``JsonSerializer``), as its ``SessionHandler`` does for the
middleware. Where it must translate, it says so here:

* the sid is the ``session_id`` as it is; RedisStore keys it ``"starsessions." + sid``, its
  default prefix;
* ``get`` is ``read(sid, lifetime)``. starsessions answers ``b""`` for "no session", which the
  adapter reads as ``None``; anything else goes through ``JsonSerializer.deserialize``. The
  middleware's ``__metadata__`` key is middleware bookkeeping: the adapter neither adds nor
  removes it;
* ``set`` is ``write(sid, data, lifetime, ttl)``. Without ``cookie.expires`` it passes
  ``lifetime=0, ttl=0``, what the middleware passes for its default session-only cookie. With
  one, ``ttl`` is the whole seconds from now to the expiry, rounded up, passed on as it is
  (the middleware's non-rolling strategy also hands over a ttl at or below zero once a
  session outlives its lifetime), and ``lifetime`` is the same number but at least 1, since
  starsessions reads ``lifetime=0`` as "session-only cookie". A session the serializer
  refuses (``json.dumps``'s TypeError or ValueError) raises InvalidSessionData; a session that
  is not a dict does too, as the middleware's session is a dict;
* ``destroy`` is ``remove``. starsessions cannot count, list or clear sessions, so
  ``length``, ``all`` and ``clear`` are not offered, and has no touch.

RedisStore runs on a real redis-server started for the run, with redis-py's asyncio client
(socket timeouts of 5 s); its ConnectionError and TimeoutError become StoreUnavailable.
"""

from __future__ import annotations

from typing import Any

from starsessions import InMemoryStore, JsonSerializer, SessionStore
from starsessions.stores.redis import RedisStore

from storekit.contract import Session
from storekit.ecosystem._common import (
    outage_errors,
    redis_outage,
    redis_url,
    require_sid,
    serving,
    timeout_seconds,
    unavailable,
)
from storekit.errors import InvalidSessionData, cut
from storekit.target import Target

__all__ = [
    "GC_TTL",
    "StarsessionsStore",
    "memory_target",
    "redis_target",
]

GC_TTL = 3600 * 24 * 30
"""RedisStore's default ``gc_ttl``: how long it keeps a session written with ``lifetime=0``."""


def expiry_arguments(session: Session) -> tuple[int, int]:
    """``(lifetime, ttl)`` for ``SessionStore.write``, from ``cookie.expires``."""
    ttl = timeout_seconds(session) if isinstance(session, dict) else None
    if ttl is None:
        return 0, 0
    return max(ttl, 1), ttl


class StarsessionsStore:
    """An async storekit store over any starsessions ``SessionStore``."""

    def __init__(
        self, store: SessionStore, *, errors: tuple[type[BaseException], ...] = (), client: Any = None
    ) -> None:
        self.store = store
        self.serializer = JsonSerializer()
        self.errors = errors
        self.client = client

    async def get(self, sid: str) -> Session | None:
        key = require_sid(sid)
        with unavailable(repr(self), self.errors):
            raw = await self.store.read(key, lifetime=0)
        if not raw:
            return None
        data: Session = self.serializer.deserialize(raw)
        return data

    async def set(self, sid: str, session: Session) -> None:
        key = require_sid(sid)
        if not isinstance(session, dict):
            raise InvalidSessionData(
                f"a starsessions session is a dict; cannot store {type(session).__name__} {cut(session)}"
            )
        try:
            data = self.serializer.serialize(session)
        except (TypeError, ValueError) as exc:
            raise InvalidSessionData(f"starsessions' JsonSerializer refuses {cut(session)}: {exc}") from exc
        lifetime, ttl = expiry_arguments(session)
        with unavailable(repr(self), self.errors):
            await self.store.write(key, data, lifetime=lifetime, ttl=ttl)

    async def destroy(self, sid: str) -> None:
        key = require_sid(sid)
        with unavailable(repr(self), self.errors):
            await self.store.remove(key)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    def __repr__(self) -> str:
        return f"StarsessionsStore({type(self.store).__name__})"


memory_target = Target(lambda: StarsessionsStore(InMemoryStore()), name="starsessions InMemoryStore")
"""A fresh InMemoryStore per store: one process's dict."""


def _redis_store(prefix: str = "starsessions.") -> StarsessionsStore:
    from redis.asyncio import Redis

    client: Any = Redis.from_url(redis_url("starsessions_redis"), socket_timeout=5, socket_connect_timeout=5)
    return StarsessionsStore(
        RedisStore(connection=client, prefix=prefix), errors=outage_errors(), client=client
    )


redis_target = Target(
    _redis_store,
    name="starsessions RedisStore",
    shared=True,
    serve=lambda: serving(lambda: redis_url("starsessions_redis")),
    default_ttl=GC_TTL,
    outage=lambda: redis_outage("starsessions_redis"),
)
"""RedisStore on a redis-server started for the run, with its default prefix and ``gc_ttl``."""
