"""RedisStore: sessions in Redis, in connect-redis's layout, for apps on more than one machine.

    store = RedisStore("redis://127.0.0.1:6379/0")
    store = RedisStore(redis.Redis(...))                      # any redis-py client
    store = RedisStore("redis://10.0.0.5:7000", cluster=True)  # Redis Cluster

A session lives at the key ``prefix + sid`` (``sess:`` by default) as its JSON
text, with a time to live taken from ``cookie.expires`` to the millisecond, or
``ttl`` seconds (one day) when it has none: what connect-redis writes, so a
Node app and a Python app can share sessions. ``all``, ``length`` and
``clear`` SCAN the store's own prefix only (on every primary of a cluster).
See ``docs/redis.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from storekit.codec import encode_session
from storekit.contract import Session
from storekit.reference.redis.common import (
    BATCH,
    StoreCore,
    decode_value,
    mapped_errors,
    sid_of,
)

__all__ = ["RedisStore"]


class RedisStore(StoreCore):
    """A store on Redis through redis-py, in connect-redis's key layout.

    ``client`` is a redis-py client (``redis.Redis``, one from a Sentinel's
    ``master_for()``, ``redis.cluster.RedisCluster``) or a URL, from which the
    store builds one (``cluster=True``: a RedisCluster) whose operations give
    up with StoreUnavailable after about ``timeout`` seconds. ``prefix``
    begins every key; stores sharing one Redis need prefixes of which none
    begins another (see :func:`namespace_prefix`). ``ttl`` is the life in
    seconds of a session without ``cookie.expires`` (``None``: no expiry).
    """

    def get(self, sid: str) -> Session | None:
        key = self._key(sid)
        with mapped_errors("get", self.where, key):
            raw = self.client.get(key)
        return None if raw is None else decode_value(key, raw)

    def set(self, sid: str, session: Session) -> None:
        key = self._key(sid)
        data = encode_session(session, max_bytes=self.max_session_bytes)
        ttl_ms = self.expiry.of(session)
        with mapped_errors("set", self.where, key):
            if ttl_ms is not None and ttl_ms <= 0:
                self.client.delete(key)  # an expiry in the past (ttl.3), as connect-redis does
            else:
                self.client.set(key, data, px=ttl_ms)

    def replace(self, sid: str, session: Session) -> bool:
        """SET with XX: written only over a live key, in one Redis command; whether it was."""
        key = self._key(sid)
        data = encode_session(session, max_bytes=self.max_session_bytes)
        ttl_ms = self.expiry.of(session)
        with mapped_errors("replace", self.where, key):
            if ttl_ms is not None and ttl_ms <= 0:
                return bool(self.client.delete(key))
            return bool(self.client.set(key, data, px=ttl_ms, xx=True))

    def renew(self, sid: str, session: Session) -> Session | None:
        """GETEX: the session and its new expiry in one Redis command (the stored data, its
        ``cookie`` included, stays as it was, as touch leaves it)."""
        key = self._key(sid)
        ttl_ms = self.expiry.of(session)
        with mapped_errors("renew", self.where, key):
            if ttl_ms is not None and ttl_ms <= 0:
                self.client.delete(key)
                return None
            if ttl_ms is None:
                raw = self.client.getex(key, persist=True)
            else:
                raw = self.client.getex(key, px=ttl_ms)
        return None if raw is None else decode_value(key, raw)

    def destroy(self, sid: str) -> None:
        key = self._key(sid)
        with mapped_errors("destroy", self.where, key):
            self.client.delete(key)

    def touch(self, sid: str, session: Session) -> None:
        """Renew the expiry only (PEXPIRE, which never creates a key); the stored
        data, ``cookie`` included, stays as it was, as in connect-redis."""
        key = self._key(sid)
        ttl_ms = self.expiry.of(session)
        with mapped_errors("touch", self.where, key):
            if ttl_ms is None:
                self.client.persist(key)
            elif ttl_ms <= 0:
                self.client.delete(key)
            else:
                self.client.pexpire(key, ttl_ms)

    def _keys(self) -> Iterator[bytes | str]:
        return self.client.scan_iter(match=self.pattern, count=self.scan_count)  # type: ignore[no-any-return]

    def ids(self) -> list[str]:
        """The sids of the live sessions (connect-redis's ``ids()``)."""
        with mapped_errors("ids", self.where):
            keys = set(self._keys())
        return [sid_of(key, self.prefix) for key in keys]

    def length(self) -> int:
        with mapped_errors("length", self.where):
            return len(set(self._keys()))  # SCAN may return a key twice

    def clear(self) -> None:
        with mapped_errors("clear", self.where):
            batch: list[bytes | str] = []
            for key in self._keys():
                batch.append(key)
                if len(batch) >= BATCH:
                    self.client.delete(*batch)
                    batch.clear()
            if batch:
                self.client.delete(*batch)

    def all(self) -> dict[str, Session]:
        """Every live session by sid: a dict, as the storekit contract says
        (connect-redis's ``all()`` gives an array of sessions with ``id`` added)."""
        with mapped_errors("all", self.where):
            keys = list(set(self._keys()))
            values = self._mget(keys)
        every: dict[str, Session] = {}
        for key, raw in zip(keys, values, strict=True):
            if raw is not None:  # expired or destroyed since the SCAN
                sid = sid_of(key, self.prefix)
                every[sid] = decode_value(self.prefix + sid, raw)
        return every

    def _mget(self, keys: list[bytes | str]) -> list[Any]:
        if self.cluster:
            return list(self.client.mget_nonatomic(keys)) if keys else []
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(keys), BATCH):
            pipe.mget(keys[start : start + BATCH])
        return [value for chunk in pipe.execute() for value in chunk]

    def close(self) -> None:
        """Close the client if the store built it from a URL."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.where!r}, prefix={self.prefix!r})"
