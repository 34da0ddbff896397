"""Reference stores that pass the storekit conformance suite.

``MemoryStore`` keeps sessions in one process; ``ClusterStore`` shares them
among the worker processes of one machine through their master
(``storekit.reference.cluster.setup()``). ``cluster_target`` is the suite's
target for ClusterStore: ``pytest --storekit=storekit.reference:cluster_target``.
``RedisStore`` keeps them in Redis for more than one machine, in connect-redis's
layout (``redis_target`` starts a redis-server for the suite). ``StickyServer``
serves a WSGI app on worker processes, each client address on one worker.
"""

from storekit.reference.cluster import AsyncClusterStore, ClusterStore, cluster_target
from storekit.reference.memory import AsyncMemoryStore, MemoryStore
from storekit.reference.redis import (
    AsyncRedisStore,
    RedisStore,
    redis_async_target,
    redis_cluster_target,
    redis_target,
)
from storekit.reference.sticky import StickyServer, StickyServerError

__all__ = [
    "AsyncClusterStore",
    "AsyncMemoryStore",
    "AsyncRedisStore",
    "ClusterStore",
    "MemoryStore",
    "RedisStore",
    "StickyServer",
    "StickyServerError",
    "cluster_target",
    "redis_async_target",
    "redis_cluster_target",
    "redis_target",
]
