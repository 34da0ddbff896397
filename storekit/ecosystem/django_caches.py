"""Django's cache session engine on two more caches: django-redis and memcached.

The stores are ``storekit.ecosystem.django_engines.DjangoEngineStore`` on the cache engine,
translating as its docstring says; the only difference is the cache. Django reads one
``SESSION_CACHE_ALIAS`` for the whole process, so each of these stores is given its own
cache alias instead, which is what setting ``SESSION_CACHE_ALIAS`` to that alias does:

* ``django_redis``: django-redis's ``RedisCache`` (its default pickle serializer) on the
  run's redis-server, database 1, with 5 s socket timeouts. django-redis's
  ``ConnectionInterrupted`` becomes StoreUnavailable;
* ``memcached``: Django's own ``PyMemcacheCache`` on a real memcached started for the run
  (Debian's package), with 5 s timeouts. A key memcached cannot hold makes Django raise
  ``InvalidCacheKey``, which becomes InvalidSessionId.

The aliases are in the Django settings that ``django_engines.configure()`` writes, when
django-redis, pymemcache and memcached are installed.
"""

from __future__ import annotations

from typing import Any

from storekit.ecosystem._common import redis_outage, serving
from storekit.ecosystem.django_engines import SESSION_COOKIE_AGE, DjangoEngineStore, configure
from storekit.target import Target

__all__ = ["DJANGO_REDIS_ALIAS", "MEMCACHED_ALIAS", "django_redis_target", "memcached_target", "more_caches"]

DJANGO_REDIS_ALIAS = "django_redis"
"""The cache alias of django-redis's ``RedisCache``, on the same redis-server, database 1."""

MEMCACHED_ALIAS = "memcached"
"""The cache alias of Django's ``PyMemcacheCache``, on a memcached started for the run."""

_ENGINE = "django.contrib.sessions.backends.cache"


def more_caches(url: str) -> dict[str, Any]:
    """django-redis (when installed) and PyMemcacheCache (when memcached is) beside the default."""
    caches: dict[str, Any] = {}
    try:
        import django_redis  # noqa: F401
    except ImportError:
        pass
    else:
        caches[DJANGO_REDIS_ALIAS] = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url.rpartition("/")[0] + "/1",
            "OPTIONS": {"SOCKET_TIMEOUT": 5, "SOCKET_CONNECT_TIMEOUT": 5},
        }
    from storekit.ecosystem._memcached import memcached_address
    from storekit.testing import MemcachedMissing

    try:
        import pymemcache  # noqa: F401

        address = memcached_address("django_memcached")
    except (ImportError, MemcachedMissing):
        return caches
    caches[MEMCACHED_ALIAS] = {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": address,
        "OPTIONS": {"connect_timeout": 5, "timeout": 5},
    }
    return caches


def _serve() -> Any:
    return serving(configure)


django_redis_target = Target(
    lambda: DjangoEngineStore(_ENGINE, cache_alias=DJANGO_REDIS_ALIAS),
    name="django-redis (cache engine)",
    shared=True,
    serve=_serve,
    default_ttl=SESSION_COOKIE_AGE,
    outage=lambda: redis_outage("django_redis"),
)
"""The cache engine on django-redis's ``RedisCache``, on the run's redis-server, database 1."""

memcached_target = Target(
    lambda: DjangoEngineStore(_ENGINE, cache_alias=MEMCACHED_ALIAS),
    name="Django cache (memcached)",
    shared=True,
    serve=_serve,
    default_ttl=SESSION_COOKIE_AGE,
)
"""The cache engine on Django's ``PyMemcacheCache``, on a memcached started for the run."""
