"""Real Redis for the RedisStore targets: one redis-server, or a Redis Cluster of
three primaries, on free loopback ports.

``serve_redis()`` starts a server and puts its URL in ``$STOREKIT_REDIS_URL``,
which worker processes spawned later inherit, so that the target's factory
finds it there; when the variable is already set, that server is used and
none is started. ``serve_cluster()`` does the same for a cluster, with
``$STOREKIT_REDIS_CLUSTER_URL``. The outage hooks stop what serve started and
start it again on the same ports.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from storekit.errors import StoreError
from storekit.testing.redis_server import RedisClusterServers, RedisServer

__all__ = [
    "ENV_CLUSTER_URL",
    "ENV_URL",
    "cluster_outage",
    "redis_outage",
    "serve_cluster",
    "serve_redis",
]

ENV_URL = "STOREKIT_REDIS_URL"
ENV_CLUSTER_URL = "STOREKIT_REDIS_CLUSTER_URL"

_started: dict[str, Any] = {}  # environment variable -> the server(s) serve() started


@contextlib.contextmanager
def _serve(variable: str, servers: Any) -> Iterator[str]:
    if os.environ.get(variable):  # the user's own Redis: start none
        yield os.environ[variable]
        return
    with servers() as started:
        _started[variable] = started
        os.environ[variable] = started.url
        try:
            yield started.url
        finally:
            os.environ.pop(variable, None)
            _started.pop(variable, None)


def serve_redis() -> contextlib.AbstractContextManager[str]:
    """Start a redis-server for the run unless ``$STOREKIT_REDIS_URL`` names one."""
    return _serve(ENV_URL, RedisServer)


def serve_cluster() -> contextlib.AbstractContextManager[str]:
    """Start a 3-primary Redis Cluster unless ``$STOREKIT_REDIS_CLUSTER_URL`` names one."""
    return _serve(ENV_CLUSTER_URL, RedisClusterServers)


@contextlib.contextmanager
def _outage(variable: str) -> Iterator[None]:
    servers = _started.get(variable)
    if servers is None:
        raise StoreError(
            f"the outage hook stops the Redis that serve() started, and there is none in this "
            f"process (${variable} names a server of yours); unset ${variable} to let the "
            "target start its own"
        )
    with servers.down():
        yield


def redis_outage() -> contextlib.AbstractContextManager[None]:
    """Stop the redis-server that serve_redis() started, then start it on the same port."""
    return _outage(ENV_URL)


def cluster_outage() -> contextlib.AbstractContextManager[None]:
    """Stop every node of the cluster that serve_cluster() started, then start them again."""
    return _outage(ENV_CLUSTER_URL)
