"""The Python ecosystem's session backends, adapted to the storekit contract.

Each module adapts one third-party library and exposes one :class:`storekit.Target`
per backend, so that ``storekit check storekit.ecosystem.cachelib:simple_cache_target``
runs the conformance suite on it. ``scripts/compatibility.py`` runs them all and
writes ``docs/compatibility.md``.

The adapters translate; they do not repair. Every adapter does the same few things
and nothing more:

* **sid.1, the type boundary.** A sid that is not a non-empty ``str`` raises
  :class:`~storekit.InvalidSessionId` before the backend is called: the backends'
  APIs take ``key: str`` and say nothing about other values. Every other sid goes
  to the backend as it is, under the prefix or key the library's own session
  integration would use.
* **Async.** starsessions, aiohttp-session and Litestar are asyncio libraries: their
  adapters are storekit AsyncStores (coroutine methods), driven by the suite on an
  event loop of their own.
* **Expiry.** ``cookie.expires`` is parsed (a malformed one raises
  InvalidSessionData: nothing can be translated from it) and handed to the backend
  in the backend's own terms: a cachelib timeout in whole seconds, a Django
  ``set_expiry`` datetime, a starsessions ttl, a Litestar ``expires_in``, a
  Flask-Session lifetime ``timedelta``, an aiohttp-session ``max_age``. What the
  backend then does with it, rounding, ``0`` meaning "forever", is what the suite sees.
* **Data.** The session dict goes to the backend's own serialization (pickle for
  cachelib and Beaker, Django's JSON serializer, ``json.dumps`` for starsessions and
  aiohttp-session, msgspec JSON for Litestar, msgpack for Flask-Session), and what
  comes back is returned as it is, minus the bookkeeping keys the library adds itself.
* **Errors.** Where the backend signals an invalid key or refused data with its
  own exception, the adapter re-raises it as the storekit error of the same
  meaning; anything else propagates unchanged.

The third-party libraries are imported by these modules only: ``import storekit``
never needs them.
"""

from __future__ import annotations

__all__ = ["TARGETS"]

TARGETS: dict[str, str] = {
    "cachelib SimpleCache": "storekit.ecosystem.cachelib:simple_cache_target",
    "cachelib FileSystemCache": "storekit.ecosystem.cachelib:filesystem_cache_target",
    "cachelib RedisCache": "storekit.ecosystem.cachelib:redis_cache_target",
    "Django db (SQLite)": "storekit.ecosystem.django_engines:db_target",
    "Django cache (Redis)": "storekit.ecosystem.django_engines:cache_target",
    "Django cached_db": "storekit.ecosystem.django_engines:cached_db_target",
    "Django file": "storekit.ecosystem.django_engines:file_target",
    "Django file (hex keys)": "storekit.ecosystem.django_engines:file_hex_target",
    "Beaker memory": "storekit.ecosystem.beaker:memory_target",
    "Beaker file": "storekit.ecosystem.beaker:file_target",
    "django-redis (cache engine)": "storekit.ecosystem.django_caches:django_redis_target",
    "Django cache (memcached)": "storekit.ecosystem.django_caches:memcached_target",
    "starsessions InMemoryStore": "storekit.ecosystem.starsessions:memory_target",
    "starsessions RedisStore": "storekit.ecosystem.starsessions:redis_target",
    "aiohttp-session Redis": "storekit.ecosystem.aiohttp_session:redis_target",
    "aiohttp-session memcached": "storekit.ecosystem.aiohttp_session:memcached_target",
    "Litestar MemoryStore": "storekit.ecosystem.litestar:memory_target",
    "Litestar FileStore": "storekit.ecosystem.litestar:file_target",
    "Litestar RedisStore": "storekit.ecosystem.litestar:redis_target",
    "Flask-Session Redis": "storekit.ecosystem.flask_session:redis_target",
    "Flask-Session cachelib FileSystemCache": "storekit.ecosystem.flask_session:cachelib_target",
    "Flask-Session SQLAlchemy (SQLite)": "storekit.ecosystem.flask_session:sqlalchemy_target",
    "Flask-Session memcached": "storekit.ecosystem.flask_session:memcached_target",
}
"""Every ecosystem target, by the name the compatibility matrix shows, as ``module:attr``."""
