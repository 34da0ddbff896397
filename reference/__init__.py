"""Reference parts that pass the storekit conformance suite.

``MemoryStore`` keeps sessions in one process (``storekit.reference.memory``);
``ClusterStore`` shares them among the worker processes of one machine
through their master (``storekit.reference.cluster``: ``setup()`` in the
master); ``cluster_target`` is the suite's target for it. ``RedisStore`` keeps
them in Redis for more than one machine, in connect-redis's layout
(``storekit.reference.redis``; ``redis_target`` starts a redis-server for the
suite). ``StickyServer`` serves a WSGI app on worker processes, each client
address on one worker (``storekit.reference.sticky``).

Each name is imported on first use, so importing one part loads nothing of
the others: ``from storekit.reference import MemoryStore`` starts no thread,
imports no socket code and installs no at-fork hook.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storekit.reference.cluster import (
        AsyncClusterStore,
        ClusterStore,
        cluster_async_target,
        cluster_target,
    )
    from storekit.reference.memory import AsyncMemoryStore, MemoryStore
    from storekit.reference.redis import (
        AsyncRedisStore,
        RedisStore,
        redis_async_target,
        redis_cluster_target,
        redis_target,
    )
    from storekit.reference.sticky import StickyServer, StickyServerError

_WHERE = {
    "AsyncClusterStore": "cluster",
    "AsyncMemoryStore": "memory",
    "AsyncRedisStore": "redis",
    "ClusterStore": "cluster",
    "MemoryStore": "memory",
    "RedisStore": "redis",
    "StickyServer": "sticky",
    "StickyServerError": "sticky",
    "cluster_async_target": "cluster",
    "cluster_target": "cluster",
    "redis_async_target": "redis",
    "redis_cluster_target": "redis",
    "redis_target": "redis",
}

__all__ = [
    "AsyncClusterStore",
    "AsyncMemoryStore",
    "AsyncRedisStore",
    "ClusterStore",
    "MemoryStore",
    "RedisStore",
    "StickyServer",
    "StickyServerError",
    "cluster_async_target",
    "cluster_target",
    "redis_async_target",
    "redis_cluster_target",
    "redis_target",
]


def __getattr__(name: str) -> Any:
    part = _WHERE.get(name)
    if part is None:
        raise AttributeError(f"module 'storekit.reference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"storekit.reference.{part}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
