"""What storekit's own tests use and a project's tests can use too.

``RedisServer`` starts a real redis-server on an ephemeral loopback port
(``RedisClusterServers`` a Redis Cluster of them) and ``MemcachedServer`` a
memcached, both on :class:`ProgramServer`; ``request`` sends one HTTP request
from a chosen 127.0.0.x source address, as the sticky server's tests do;
``loopback_sources`` names such addresses. See docs/testing.md.
"""

from storekit.testing.http_client import Reply, loopback_sources, process_alive, request
from storekit.testing.memcached_server import MemcachedMissing, MemcachedServer, memcached_path
from storekit.testing.process import ProgramServer, Restartable, free_port
from storekit.testing.redis_server import (
    RedisClusterServers,
    RedisServer,
    RedisServerMissing,
    redis_server_path,
)

__all__ = [
    "MemcachedMissing",
    "MemcachedServer",
    "ProgramServer",
    "RedisClusterServers",
    "RedisServer",
    "RedisServerMissing",
    "Reply",
    "Restartable",
    "free_port",
    "loopback_sources",
    "memcached_path",
    "process_alive",
    "redis_server_path",
    "request",
]
