"""A memcached for the ecosystem's memcached targets: one per resource name, per process tree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storekit.ecosystem._common import resources
from storekit.testing import MemcachedServer

__all__ = ["memcached_address"]

_servers: dict[str, MemcachedServer] = {}


def memcached_address(name: str) -> str:
    """``host:port`` of a memcached started for resource ``name``, once per process tree."""

    def start() -> tuple[Any, Callable[[], None]]:
        server = MemcachedServer().start()
        _servers[name] = server
        return server.address, server.close

    location: str = resources.ensure(name, start)
    return location
