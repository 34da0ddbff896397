"""RedisStore and AsyncRedisStore: sessions in Redis, in connect-redis's layout.

The parts: ``common`` (the key layout and replies, pure), ``store`` (the sync
store), ``aio`` (its async twin), ``serve`` and ``targets`` (the suite's
targets, which start a redis-server). See docs/redis.md.
"""

from storekit.reference.redis.aio import AsyncRedisStore
from storekit.reference.redis.common import DEFAULT_PREFIX, DEFAULT_TTL, CorruptSession, namespace_prefix
from storekit.reference.redis.serve import ENV_CLUSTER_URL, ENV_URL
from storekit.reference.redis.store import RedisStore
from storekit.reference.redis.targets import redis_async_target, redis_cluster_target, redis_target

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TTL",
    "ENV_CLUSTER_URL",
    "ENV_URL",
    "AsyncRedisStore",
    "CorruptSession",
    "RedisStore",
    "namespace_prefix",
    "redis_async_target",
    "redis_cluster_target",
    "redis_target",
]
