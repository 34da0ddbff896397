"""What RedisStore and AsyncRedisStore share: keys, glob escaping, expiry in
milliseconds, value decoding and the mapping of redis-py's errors.

Pure functions only; the I/O lives in ``redis.py`` and ``_redis_aio.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from storekit.codec import DEFAULT_MAX_SESSION_BYTES, check_seconds, check_sid, decode_session, session_expiry
from storekit.contract import Session
from storekit.errors import InvalidSessionData, StoreError, StoreUnavailable, cut

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TTL",
    "CorruptSession",
    "Expiry",
    "client_options",
    "decode_value",
    "describe",
    "escape_glob",
    "is_async_client",
    "mapped_errors",
    "namespace_prefix",
    "scan_pattern",
    "sid_of",
]

DEFAULT_PREFIX = "sess:"
"""connect-redis's default key prefix."""

DEFAULT_TTL = 86400.0
"""Seconds a session without ``cookie.expires`` lives: one day, as in connect-redis."""

DEFAULT_TIMEOUT = 2.0
"""Seconds an operation may take before StoreUnavailable (URL-built clients)."""

BATCH = 1000
"""Keys per MGET or DEL in all() and clear()."""

_GLOB = re.compile(r"([*?\[\]\\])")


class CorruptSession(StoreError, ValueError):
    """A key under the store's prefix holds something that is not a session
    (a value another program wrote, or a key of another type). ``.key`` names it."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def escape_glob(text: str) -> str:
    """``text`` as a Redis glob pattern that matches exactly ``text``:
    ``* ? [ ] \\`` each get a backslash."""
    return _GLOB.sub(r"\\\1", text)


def scan_pattern(prefix: str) -> str:
    """The SCAN MATCH pattern for every key under ``prefix``, and no other key: the
    prefix escaped, then at least one character (no sid is empty, so the key that
    is the prefix itself belongs to someone else)."""
    return escape_glob(prefix) + "?*"


def namespace_prefix(namespace: str, root: str = "sess") -> str:
    """A key prefix for ``namespace`` that no other namespace's prefix begins with.

    The name is percent-encoded, so it holds no ``:``; ``sess-a:`` therefore
    never begins ``sess-a%3Ab:`` (the namespace ``"a:b"``), and none begins
    with the default prefix ``sess:``, whose store would otherwise see every
    namespace's sessions as its own.
    """
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"a namespace must be a non-empty str, got {cut(namespace)}")
    return f"{root}-{quote(namespace, safe='')}:"


def sid_of(key: bytes | str, prefix: str) -> str:
    """The sid of a key that SCAN found under ``prefix``."""
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptSession(
                f"key {cut(key)} under prefix {prefix!r} is not UTF-8, so it is no session ID a "
                "store wrote; delete it or give the store a prefix of its own",
                repr(key),
            ) from None
    return key[len(prefix) :]


def decode_value(key: str, raw: bytes | str) -> Session:
    """Decode a stored session, or raise CorruptSession naming the key."""
    try:
        return decode_session(raw)
    except (ValueError, RecursionError):  # JSON, UTF-8, "not an object", nested too deep
        raise CorruptSession(
            f"key {key!r} holds {cut(raw)}, which is not a session stored as a JSON object; "
            "another program wrote it: delete the key or give the store a prefix of its own",
            key,
        ) from None


class Expiry:
    """Milliseconds to live for a session, from its ``cookie.expires`` or the default TTL."""

    def __init__(self, ttl: float | None, clock: Callable[[], float]) -> None:
        ttl = check_seconds(
            "ttl", ttl, none="no expiry", hint="; connect-redis turns ttl=0 into one day, storekit refuses it"
        )
        self.ttl_ms = None if ttl is None else max(1, math.ceil(ttl * 1000))
        self.clock = clock

    def of(self, session: Session) -> int | None:
        """Milliseconds the session lives from now: ``None`` for ever, ``<= 0`` already gone.

        Like connect-redis, the time left is rounded up, but to the millisecond
        (connect-redis rounds up to the second).
        """
        if not isinstance(session, dict):
            raise InvalidSessionData(
                f"a session must be a dict (a JSON object), got {type(session).__name__} {cut(session)}"
            )
        expires = session_expiry(session)
        if expires is None:
            return self.ttl_ms
        return math.ceil((expires - self.clock()) * 1000)


def client_options(timeout: float, *, cluster: bool = False, asyncio: bool = False) -> dict[str, Any]:
    """Keyword arguments for a redis-py client built from a URL.

    Each attempt waits at most ``timeout`` seconds. A command that failed on a
    broken connection (one left over from before a restart) is sent once more
    on a fresh one; a command that timed out is not, since Redis may have run
    it: a second run could undo a later write by someone else (redis-py's own
    default retries timeouts). A cluster client is given no retries, because
    redis-py's cluster layer retries timeouts whatever the policy says.
    """
    try:
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        if asyncio:
            from redis.asyncio.retry import Retry as AsyncRetry

            retry: Any = AsyncRetry(NoBackoff(), 0 if cluster else 1, (RedisConnectionError,))
        else:
            from redis.retry import Retry

            retry = Retry(NoBackoff(), 0 if cluster else 1, (RedisConnectionError,))
    except ImportError as exc:
        raise ImportError(
            f"RedisStore needs redis-py ({exc}); install it with: pip install 'storekit[redis]'"
        ) from exc
    check_seconds("timeout", timeout)
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": retry}


class _Errors:
    """redis-py's exception classes, imported on first use (redis-py is an optional
    dependency of storekit, so nothing imports it before a Redis store is made)."""

    unavailable: tuple[type[BaseException], ...] = ()
    response: type[BaseException] = Exception
    any: type[BaseException] = Exception

    @classmethod
    def load(cls) -> None:
        import redis.exceptions as e

        cls.unavailable = (
            e.ConnectionError,  # refused, reset, BusyLoading, MaxConnections
            e.TimeoutError,
            e.ClusterDownError,  # MasterDown too
            e.TryAgainError,
            e.ReadOnlyError,  # a replica answered: failover under way
            e.RedisClusterException,  # no reachable node, slots not covered
            OSError,
        )
        cls.response, cls.any = e.ResponseError, e.RedisError


class mapped_errors:
    """Turn redis-py's errors into storekit's: StoreUnavailable when Redis
    cannot be reached, CorruptSession for a key of the wrong type. A class, not a
    generator: it runs around every command, and this costs a fraction as much."""

    __slots__ = ("key", "operation", "where")

    def __init__(self, operation: str, where: str, key: str | None = None) -> None:
        self.operation, self.where, self.key = operation, where, key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, trace: object) -> None:
        if exc is None:
            return
        if not _Errors.unavailable:
            _Errors.load()
        operation, where, key = self.operation, self.where, self.key
        if isinstance(exc, _Errors.unavailable):
            raise StoreUnavailable(
                f"{operation}: Redis at {where} is unavailable ({type(exc).__name__}: "
                f"{cut(str(exc), 160)}); check that redis-server is running and reachable; "
                "the store reconnects by itself"
            ) from exc
        if isinstance(exc, _Errors.response):
            if key is not None and str(exc).startswith("WRONGTYPE"):
                raise CorruptSession(
                    f"{operation}: key {key!r} on {where} is not a string ({exc}); another program "
                    "wrote it: delete the key or give the store a prefix of its own",
                    key,
                ) from exc
            raise StoreError(f"{operation}: Redis at {where} answered an error: {exc}") from exc
        if isinstance(exc, _Errors.any):
            raise StoreError(f"{operation}: Redis at {where} failed: {type(exc).__name__}: {exc}") from exc


def is_async_client(client: Any) -> bool:
    """Whether ``client`` is a redis.asyncio client (its commands return awaitables)."""
    marker = getattr(type(client), "_is_async_client", None)  # redis-py 6 and later
    if isinstance(marker, bool):
        return marker
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def describe(client: Any) -> str:
    """Where a redis-py client points, for messages: ``127.0.0.1:6379/0`` or ``cluster ...``."""
    nodes = getattr(client, "get_nodes", None)
    if callable(nodes):
        with contextlib.suppress(Exception):
            return "cluster " + ",".join(sorted(node.name for node in nodes()))
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) or {}
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    service = getattr(pool, "service_name", None)
    return f"sentinel service {service!r}" if service else repr(client)


class StoreCore:
    """What RedisStore and its async twin share: the client (given, or built from a
    URL), the prefix and the SCAN pattern that matches only their own keys, and
    the expiry rules. ``asyncio`` says which kind of redis-py client it takes."""

    asyncio = False

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float | None = DEFAULT_TTL,
        cluster: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        scan_count: int = BATCH,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str such as 'sess:', got {type(prefix).__name__} {prefix!r}")
        self.prefix = prefix
        self.expiry = Expiry(ttl, clock)
        self.ttl = ttl
        self.scan_count = scan_count
        self.max_session_bytes = max_session_bytes
        self.pattern = scan_pattern(prefix)
        name, kind = type(self).__name__, "a redis.asyncio" if self.asyncio else "a redis-py"
        self._owns_client = isinstance(client, str)
        if isinstance(client, str):
            client = client_from_url(client, cluster=cluster, timeout=timeout, asyncio=self.asyncio)
        elif not callable(getattr(client, "get", None)) or not callable(getattr(client, "pexpire", None)):
            raise TypeError(
                f"{name} needs {kind} client or a URL such as 'redis://127.0.0.1:6379/0', "
                f"got {type(client).__name__} {client!r}"
            )
        elif is_async_client(client) != self.asyncio:
            other = "RedisStore" if self.asyncio else "AsyncRedisStore"
            raise TypeError(
                f"{client!r} is {'a sync' if self.asyncio else 'a redis.asyncio'} client; {name} needs "
                f"{kind} one, or use {other} with this client"
            )
        self.client = client
        self.cluster = callable(getattr(client, "get_nodes", None))
        self.where = describe(client)

    def _key(self, sid: str) -> str:
        return self.prefix + check_sid(sid)


def client_from_url(url: str, *, cluster: bool, timeout: float, asyncio: bool) -> Any:
    """A redis-py client (sync or asyncio, plain or cluster) for ``url``."""
    options = client_options(
        timeout, cluster=cluster, asyncio=asyncio
    )  # first: it says how to install redis-py
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

    kinds: dict[tuple[bool, bool], Any] = {
        (False, False): redis.Redis,
        (False, True): redis.cluster.RedisCluster,
        (True, False): redis.asyncio.Redis,
        (True, True): redis.asyncio.cluster.RedisCluster,
    }
    with mapped_errors("connect", url):  # a sync cluster client connects at once
        try:
            return kinds[asyncio, cluster].from_url(url, **options)
        except ValueError as exc:
            raise ValueError(
                f"{url!r} is not a Redis URL ({exc}); write it as 'redis://host:port/db' "
                "or 'unix:///path/to/redis.sock'"
            ) from None
