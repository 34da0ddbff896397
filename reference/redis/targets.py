"""The suite's targets for RedisStore and AsyncRedisStore.

Each target's ``serve()`` starts a redis-server (or a Redis Cluster) on an
ephemeral loopback port and sets ``$STOREKIT_REDIS_URL``
(``$STOREKIT_REDIS_CLUSTER_URL``); export it yourself to run the suite
against a server you already have.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from storekit.errors import StoreError
from storekit.reference.redis.aio import AsyncRedisStore
from storekit.reference.redis.common import DEFAULT_TTL, namespace_prefix
from storekit.reference.redis.serve import (
    ENV_CLUSTER_URL,
    ENV_URL,
    cluster_outage,
    redis_outage,
    serve_cluster,
    serve_redis,
)
from storekit.reference.redis.store import RedisStore
from storekit.target import Target

__all__ = ["redis_async_target", "redis_cluster_target", "redis_target"]


def _url(name: str) -> str:
    url = os.environ.get(name)
    if not url:
        raise StoreError(
            f"${name} is not set: run the suite with this target (its serve() starts a "
            f"redis-server and sets it), or export {name}=redis://host:port/0 to use a running one"
        )
    return url


def _single() -> RedisStore:
    return RedisStore(_url(ENV_URL))


def _async() -> AsyncRedisStore:
    return AsyncRedisStore(_url(ENV_URL))


def _cluster() -> RedisStore:
    return RedisStore(_url(ENV_CLUSTER_URL), cluster=True)


# Expiries travel as relative milliseconds (PX), computed from the clock that
# the server shares on one machine; what remains is a request's round trip and
# Redis's 1 ms granularity, far inside 0.25 s even on a loaded machine.
def _target(
    name: str,
    factory: Callable[[], Any],
    namespaced: Callable[[str], Any],
    serve: Callable[[], AbstractContextManager[str]],
    outage: Callable[[], AbstractContextManager[None]],
) -> Target:
    return Target(
        factory,
        name=name,
        shared=True,
        serve=serve,
        namespaced=namespaced,
        ttl_resolution=0.25,
        default_ttl=DEFAULT_TTL,
        outage=outage,
    )


redis_target = _target(
    "RedisStore",
    _single,
    lambda namespace: RedisStore(_url(ENV_URL), prefix=namespace_prefix(namespace)),
    serve_redis,
    redis_outage,
)

redis_cluster_target = _target(
    "RedisStore (cluster)",
    _cluster,
    lambda namespace: RedisStore(_url(ENV_CLUSTER_URL), cluster=True, prefix=namespace_prefix(namespace)),
    serve_cluster,
    cluster_outage,
)

redis_async_target = _target(
    "AsyncRedisStore",
    _async,
    lambda namespace: AsyncRedisStore(_url(ENV_URL), prefix=namespace_prefix(namespace)),
    serve_redis,
    redis_outage,
)
