"""aiohttp-session's RedisStorage and MemcachedStorage as async session stores.

aiohttp-session's storages are bound to the cookie: ``load_session(request)`` reads the
session id from the request's cookie and ``save_session(request, response, session)`` writes
the data and sets the cookie. They have no API by key, so the adapter drives those two
methods with a stand-in request that carries only ``cookies`` (all that ``load_cookie``
reads) and a real ``aiohttp.web.Response`` whose cookie is thrown away. Where it must
translate, it says so here:

* the sid is the cookie's value, as it is (no cookie parsing: the stand-in request holds the
  sid itself); the storages key it ``"AIOHTTP_SESSION_" + sid``;
* ``get`` is ``load_session``. A session that comes back ``new`` is "no session", which the
  adapter reads as ``None``; otherwise the session's mapping is returned;
* ``set`` is what a handler does to give a new session its id: ``new_session()``,
  ``set_new_identity(sid)``, ``update(session)``, and ``max_age`` set to the whole seconds
  from now to ``cookie.expires``, rounded up (left at the storage's ``max_age=None`` without
  one), then ``save_session``. aiohttp-session stores ``{"created": ..., "session": ...}`` with
  ``json.dumps``; a TypeError or ValueError from it, or a session that is not a mapping,
  raises InvalidSessionData;
* ``destroy`` is what a handler's ``session.invalidate()`` leads to: the session is loaded,
  invalidated and saved, which writes the empty record ``{}`` (aiohttp-session has no
  delete); for a sid it does not find, under a fresh random key, as the middleware does;
* errors: redis-py's ConnectionError and TimeoutError, and the socket's ConnectionError and
  TimeoutError under aiomcache, become StoreUnavailable; aiomcache's ``ValidationException``
  about a key becomes InvalidSessionId (told apart by its message, the only place aiomcache
  says what it refused), and one about an exptime propagates as it is.

aiohttp-session cannot count, list, clear or renew sessions: ``touch``, ``length``, ``all`` and
``clear`` are not offered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp_session import AbstractStorage

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
from storekit.ecosystem._memcached import memcached_address
from storekit.errors import InvalidSessionData, InvalidSessionId, StoreError, cut
from storekit.target import Target

__all__ = ["AiohttpSessionStore", "CookieOnlyRequest", "memcached_target", "redis_target"]


@dataclass
class CookieOnlyRequest:
    """What ``AbstractStorage.load_cookie`` reads of a request: its cookies."""

    cookies: Mapping[str, str] = field(default_factory=dict)


class AiohttpSessionStore:
    """An async storekit store over an aiohttp-session storage."""

    def __init__(
        self,
        storage: AbstractStorage,
        *,
        errors: tuple[type[BaseException], ...] = (),
        invalid_key: Callable[[BaseException], bool] = lambda exc: False,
        client: Any = None,
    ) -> None:
        self.storage = storage
        self.errors = errors
        self.invalid_key = invalid_key
        self.client = client

    def _request(self, sid: str) -> Any:
        return CookieOnlyRequest({self.storage.cookie_name: sid})

    async def _call(self, sid: str, awaitable: Any) -> Any:
        with unavailable(repr(self), self.errors):
            try:
                return await awaitable
            except Exception as exc:
                if self.invalid_key(exc):
                    raise InvalidSessionId(
                        f"{type(self.storage).__name__} refuses key {cut(sid)}: {exc}", sid
                    ) from exc
                raise

    async def get(self, sid: str) -> Session | None:
        key = require_sid(sid)
        session = await self._call(key, self.storage.load_session(self._request(key)))
        if session.new:
            return None
        return dict(session)

    async def set(self, sid: str, session: Session) -> None:
        key = require_sid(sid)
        if not isinstance(session, Mapping):
            raise InvalidSessionData(
                "an aiohttp-session session is a mapping; "
                f"cannot store {type(session).__name__} {cut(session)}"
            )
        fresh = await self.storage.new_session()
        fresh.set_new_identity(key)
        fresh.update(session)
        ttl = timeout_seconds(session) if isinstance(session, dict) else None
        if ttl is not None:
            fresh.max_age = ttl
        try:
            await self._call(key, self.storage.save_session(self._request(key), web.Response(), fresh))
        except StoreError:
            raise
        except (TypeError, ValueError) as exc:
            raise InvalidSessionData(f"aiohttp-session's json.dumps refuses {cut(session)}: {exc}") from exc

    async def destroy(self, sid: str) -> None:
        key = require_sid(sid)
        request = self._request(key)
        session = await self._call(key, self.storage.load_session(request))
        session.invalidate()
        await self._call(key, self.storage.save_session(request, web.Response(), session))

    async def aclose(self) -> None:
        if self.client is not None:
            close = getattr(self.client, "aclose", None) or self.client.close
            await close()

    def __repr__(self) -> str:
        return f"AiohttpSessionStore({type(self.storage).__name__})"


def _redis_store() -> AiohttpSessionStore:
    from aiohttp_session.redis_storage import RedisStorage
    from redis.asyncio import Redis

    client: Any = Redis.from_url(redis_url("aiohttp_redis"), socket_timeout=5, socket_connect_timeout=5)
    return AiohttpSessionStore(RedisStorage(client), errors=outage_errors(), client=client)


redis_target = Target(
    _redis_store,
    name="aiohttp-session Redis",
    shared=True,
    serve=lambda: serving(lambda: redis_url("aiohttp_redis")),
    outage=lambda: redis_outage("aiohttp_redis"),
)
"""RedisStorage on a redis-server started for the run, with redis-py's asyncio client."""


def _aiomcache_key_refused(exc: BaseException) -> bool:
    """Whether aiomcache's ValidationException is about the key: it keeps no attribute to tell,
    only its message ('invalid key', 'trailing newline', 'key must be bytes'), while one about
    an exptime says 'exptime ...'."""
    import aiomcache

    return isinstance(exc, aiomcache.exceptions.ValidationException) and str(exc).startswith(
        _AIOMCACHE_KEY_MESSAGES
    )


_AIOMCACHE_KEY_MESSAGES = ("invalid key", "trailing newline", "key must be bytes")


def _memcached_store() -> AiohttpSessionStore:
    import aiomcache
    from aiohttp_session.memcached_storage import MemcachedStorage

    host, _, port = memcached_address("aiohttp_memcached").partition(":")
    client = aiomcache.Client(host, int(port), pool_size=4)
    return AiohttpSessionStore(
        MemcachedStorage(client),
        errors=(ConnectionError, TimeoutError),
        invalid_key=_aiomcache_key_refused,
        client=client,
    )


memcached_target = Target(
    _memcached_store,
    name="aiohttp-session memcached",
    shared=True,
    serve=lambda: serving(lambda: memcached_address("aiohttp_memcached")),
)
"""MemcachedStorage with aiomcache on a memcached started for the run."""
