"""Fixtures shared by several test modules (a module's own fixture of the same name wins)."""

from redis_support import raw, redis_url, server  # noqa: F401  (a module's redis-server, a client, its URL)
