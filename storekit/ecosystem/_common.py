"""What every ecosystem adapter shares: the sid type boundary, expiry as the
backends take it, and backing services that live as long as the process.

A target's ``serve`` starts what its backend needs (a directory, a Redis
server) once per process and publishes where it is in an environment
variable, so that worker processes spawned by the process clauses, which
build their stores from the same factory, find the same backend.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from storekit.codec import session_expiry
from storekit.errors import InvalidSessionId, StoreUnavailable, cut

__all__ = [
    "Resources",
    "expiry_datetime",
    "outage_errors",
    "redis_outage",
    "redis_url",
    "require_sid",
    "resources",
    "serving",
    "temp_dir",
    "timeout_seconds",
    "unavailable",
]


def require_sid(sid: object) -> str:
    """sid.1 at the adapter's type boundary: a non-empty ``str``, else InvalidSessionId.

    Nothing else is checked: length, characters and normalization are the backend's business.
    """
    if not isinstance(sid, str) or not sid:
        raise InvalidSessionId(
            f"session ID must be a non-empty str, got {type(sid).__name__} {cut(sid)}; "
            "the backend's API takes text keys",
            sid,
        )
    return sid


def timeout_seconds(session: dict[str, Any], *, clock: Callable[[], float] = time.time) -> int | None:
    """``cookie.expires`` as a timeout in whole seconds from now, rounded up; None without one.

    An expiry at or before now gives 0 or a negative number, passed on as it is:
    what the backend makes of that is part of what the suite checks.
    """
    expires = session_expiry(session)
    if expires is None:
        return None
    return math.ceil(expires - clock())


def expiry_datetime(session: dict[str, Any]) -> datetime | None:
    """``cookie.expires`` as an aware datetime; None without one."""
    expires = session_expiry(session)
    return None if expires is None else datetime.fromtimestamp(expires, timezone.utc)


class Resources:
    """Backing services for this process and the workers it spawns.

    ``ensure(name, start)`` returns the location of resource ``name``: from the
    environment variable ``STOREKIT_ECOSYSTEM_<NAME>`` when a parent process
    published it, else by calling ``start()`` once, which returns the location
    (a JSON-able value) and a clean-up callable run at exit.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cleanups: list[Callable[[], None]] = []
        self._owner = os.getpid()
        atexit.register(self._close)

    @staticmethod
    def variable(name: str) -> str:
        return f"STOREKIT_ECOSYSTEM_{name.upper()}"

    def lookup(self, name: str) -> Any:
        """The published location of ``name``, or None."""
        raw = os.environ.get(self.variable(name))
        return None if raw is None else json.loads(raw)

    def ensure(self, name: str, start: Callable[[], tuple[Any, Callable[[], None]]]) -> Any:
        with self._lock:
            found = self.lookup(name)
            if found is not None:
                return found
            location, cleanup = start()
            os.environ[self.variable(name)] = json.dumps(location)
            self._cleanups.append(cleanup)
            return location

    def _close(self) -> None:
        if os.getpid() != self._owner:
            return
        while self._cleanups:
            with contextlib.suppress(Exception):
                self._cleanups.pop()()


resources = Resources()


def temp_dir(name: str) -> str:
    """A private temporary directory for resource ``name``, removed at exit."""

    def start() -> tuple[Any, Callable[[], None]]:
        path = tempfile.mkdtemp(prefix=f"storekit-{name}-")
        return path, lambda: shutil.rmtree(path, ignore_errors=True)

    location: str = resources.ensure(name, start)
    return location


_servers: dict[str, Any] = {}


def redis_url(name: str) -> str:
    """The URL of a redis-server started for resource ``name`` (see reference/redis_server.py)."""

    def start() -> tuple[Any, Callable[[], None]]:
        from storekit.testing.redis_server import RedisServer

        server = RedisServer().start()
        _servers[name] = server
        return server.url, server.close

    location: str = resources.ensure(name, start)
    return location


@contextlib.contextmanager
def redis_outage(name: str) -> Iterator[None]:
    """Stop resource ``name``'s redis-server for the block, then start it again on its port."""
    server = _servers.get(name)
    if server is None:
        raise RuntimeError(
            f"no redis-server {name!r} was started in this process; enter the target's serve()"
        )
    with server.down():
        yield


@contextlib.contextmanager
def serving(*starts: Callable[[], object]) -> Iterator[None]:
    """A target's ``serve``: start each resource once in this process; they stop at exit."""
    for start in starts:
        start()
    yield


@contextlib.contextmanager
def unavailable(what: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Re-raise ``errors`` (a client's "cannot reach the backend") as StoreUnavailable naming ``what``."""
    try:
        yield
    except errors as exc:
        raise StoreUnavailable(f"{what} cannot reach its backend: {type(exc).__name__}: {exc}") from exc


def outage_errors() -> tuple[type[BaseException], ...]:
    """redis-py's connection errors, which its asyncio client raises too."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError)
