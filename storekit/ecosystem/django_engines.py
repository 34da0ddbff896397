"""Django's session engines (db, cache, cached_db, file) as session stores.

Each store drives an engine's ``SessionStore`` through Django's own API, as
Django's SessionMiddleware does; where it must translate, it says so here:

* the sid is the session key, as it is: Django treats a key shorter than 8
  characters as no key at all, so such a sid raises InvalidSessionId, and so
  does a key the engine refuses (``InvalidSessionKey``, a SuspiciousOperation);
* ``get`` is ``load()``. Django answers ``{}`` both for "no session" and for an
  empty one, and tells them apart by dropping (or replacing) the key when the
  session is missing or expired, which the adapter reads as ``None``. The key
  ``_session_expiry`` that Django adds itself is removed from what ``get`` returns;
* ``set`` replaces the data (``clear()`` then ``update()``) and calls
  ``set_expiry()`` with ``cookie.expires`` as a datetime, or ``None`` (the global
  ``SESSION_COOKIE_AGE``, two weeks) without one. Django has no upsert: the
  adapter calls ``save()``, which raises UpdateError when the key is not there,
  and then ``save(must_create=True)``, which raises CreateError when it is, in a
  loop, as Django's ``create()`` loops. A TypeError or ValueError raised while
  the engine encodes the data becomes InvalidSessionData; a session that is not
  a mapping cannot be a Django session and raises InvalidSessionData too;
* ``destroy`` is ``delete(key)``. Django's engines cannot count, list or clear
  sessions (``clear_expired`` only purges), so ``length``, ``all`` and ``clear``
  are not offered.

``cache_alias`` puts the cache engine on another cache than the process's
``SESSION_CACHE_ALIAS`` (``_on_cache``): ``storekit.ecosystem.django_caches``
runs it on django-redis and on memcached. A key that a memcached backend
refuses (``InvalidCacheKey``) raises InvalidSessionId, and django-redis's
``ConnectionInterrupted`` becomes StoreUnavailable.

Django is configured once per process by the targets (an SQLite file and a
files directory in a temporary directory, a redis-server for the caches, a
memcached when it is installed); the worker processes of the process clauses
configure themselves from the same places.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any

from storekit.contract import Session
from storekit.ecosystem._common import (
    expiry_datetime,
    redis_outage,
    redis_url,
    require_sid,
    resources,
    serving,
    temp_dir,
)
from storekit.errors import InvalidSessionData, InvalidSessionId, StoreUnavailable, cut
from storekit.target import Target

__all__ = [
    "DjangoEngineStore",
    "cache_target",
    "cached_db_target",
    "configure",
    "db_target",
    "file_hex_target",
    "file_target",
]

DJANGO_KEYS = "_session_expiry"
"""The key Django keeps in the session's data for a custom expiry."""

SESSION_COOKIE_AGE = 1209600
"""Django's default SESSION_COOKIE_AGE: the life of a session without cookie.expires."""

_MAX_ATTEMPTS = 100


def configure() -> None:
    """Configure Django for the ecosystem targets in this process, once; migrate in the first one."""
    from django.conf import settings

    if settings.configured:
        if resources.lookup("django") is None:
            raise RuntimeError(
                "Django is already configured in this process by someone else; run the ecosystem's "
                "Django targets in a process of their own (python -m pytest --storekit=...)"
            )
        return
    published = resources.lookup("django") is not None
    base = temp_dir("django")
    url = redis_url("django_redis")
    import django

    settings.configure(
        SECRET_KEY="storekit-ecosystem-not-a-secret",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(base, "sessions.sqlite3"),
                "OPTIONS": {"timeout": 30},
            }
        },
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5},
            },
            **_more_caches(url),
        },
        SESSION_FILE_PATH=os.path.join(base, "files"),
    )
    os.makedirs(os.path.join(base, "files"), exist_ok=True)
    django.setup()
    if not published:
        from django.core.management import call_command

        call_command("migrate", "sessions", verbosity=0, interactive=False)


def _more_caches(url: str) -> dict[str, Any]:
    from storekit.ecosystem.django_caches import more_caches

    return more_caches(url)


def _on_cache(engine_class: Any, alias: str) -> Any:
    """The cache engine's SessionStore on cache ``alias``: what ``SESSION_CACHE_ALIAS = alias``
    does, for one store rather than for the whole process."""
    from django.core.cache import caches

    class SessionStore(engine_class):  # type: ignore[misc]
        def __init__(self, session_key: str | None = None) -> None:
            super().__init__(session_key)
            self._cache = caches[alias]

    return SessionStore


class DjangoEngineStore:
    """A storekit store over one Django session engine, e.g. ``"django.contrib.sessions.backends.db"``.

    ``key`` turns a sid into the session key (the identity by default); ``cache_alias``
    puts the cache engine on another cache than ``SESSION_CACHE_ALIAS``.
    """

    def __init__(
        self, engine: str, *, key: Callable[[str], str] = str, cache_alias: str | None = None
    ) -> None:
        configure()
        self.engine = engine
        self.engine_class: Any = import_module(engine).SessionStore
        if cache_alias is not None:
            self.engine_class = _on_cache(self.engine_class, cache_alias)
        self.key = key
        self.cache_alias = cache_alias

    def _open(self, sid: object) -> tuple[str, Any]:
        from django.core.exceptions import SuspiciousOperation

        key = self.key(require_sid(sid))
        try:
            session = self.engine_class(session_key=key)
        except SuspiciousOperation as exc:
            raise InvalidSessionId(f"Django refuses session key {cut(key)}: {exc}", sid) from exc
        if session.session_key != key:
            raise InvalidSessionId(
                f"Django treats {cut(key)} as no session key (keys must be at least 8 characters)", sid
            )
        return key, session

    @contextlib.contextmanager
    def _calling(self, sid: object) -> Iterator[None]:
        from django.core.exceptions import SuspiciousOperation

        try:
            yield
        except SuspiciousOperation as exc:
            raise InvalidSessionId(f"Django refuses session key {cut(sid)}: {exc}", sid) from exc
        except _unavailable() as exc:
            raise StoreUnavailable(f"{self.engine} cannot reach its backend: {exc}") from exc

    def get(self, sid: str) -> Session | None:
        key, session = self._open(sid)
        with self._calling(sid):
            data = session.load()
        if session.session_key != key:
            return None
        found = dict(data)
        found.pop(DJANGO_KEYS, None)
        return found

    def set(self, sid: str, session: Session) -> None:
        from django.contrib.sessions.backends.base import CreateError, UpdateError
        from django.core.cache.backends.base import InvalidCacheKey

        if not isinstance(session, dict):
            raise InvalidSessionData(
                f"a Django session is a mapping; cannot store {type(session).__name__} {cut(session)}"
            )
        expires = expiry_datetime(session)
        _, store = self._open(sid)
        store.clear()
        try:
            store.update(session)
        except (TypeError, ValueError) as exc:
            raise InvalidSessionData(f"Django cannot hold this session: {exc}") from exc
        store.set_expiry(expires)
        with self._calling(sid):
            for _ in range(_MAX_ATTEMPTS):
                try:
                    try:
                        store.save()
                        return
                    except UpdateError:
                        pass
                    try:
                        store.save(must_create=True)
                        return
                    except CreateError:
                        continue
                except InvalidCacheKey as exc:
                    raise InvalidSessionId(f"the cache refuses the key of {cut(sid)}: {exc}", sid) from exc
                except (TypeError, ValueError) as exc:
                    raise InvalidSessionData(f"{self.engine} cannot encode this session: {exc}") from exc
        raise RuntimeError(f"{self.engine}: neither save() nor save(must_create=True) succeeded")

    def destroy(self, sid: str) -> None:
        key = self.key(require_sid(sid))
        with self._calling(sid):
            self.engine_class().delete(key)

    def __repr__(self) -> str:
        alias = "" if self.cache_alias is None else f", cache_alias={self.cache_alias!r}"
        return f"DjangoEngineStore({self.engine!r}{alias})"


def _unavailable() -> tuple[type[BaseException], ...]:
    import redis

    found: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
    try:
        from django_redis.exceptions import ConnectionInterrupted
    except ImportError:
        return found
    return (*found, ConnectionInterrupted)


def _engine(
    name: str, key: Callable[[str], str] = str, cache_alias: str | None = None
) -> Callable[[], DjangoEngineStore]:
    engine = f"django.contrib.sessions.backends.{name}"
    return lambda: DjangoEngineStore(engine, key=key, cache_alias=cache_alias)


def _hex(sid: str) -> str:
    return sid.encode("utf-8").hex()


def _serve() -> contextlib.AbstractContextManager[None]:
    return serving(configure)


db_target = Target(
    _engine("db"),
    name="Django db (SQLite)",
    shared=True,
    serve=_serve,
    default_ttl=SESSION_COOKIE_AGE,
)
cache_target = Target(
    _engine("cache"),
    name="Django cache (Redis)",
    shared=True,
    serve=_serve,
    default_ttl=SESSION_COOKIE_AGE,
    outage=lambda: redis_outage("django_redis"),
)
cached_db_target = Target(
    _engine("cached_db"),
    name="Django cached_db",
    shared=True,
    serve=_serve,
    default_ttl=SESSION_COOKIE_AGE,
)
file_target = Target(
    _engine("file"),
    name="Django file",
    shared=True,
    serve=_serve,
    default_ttl=SESSION_COOKIE_AGE,
)
file_hex_target = Target(
    _engine("file", _hex),
    name="Django file (hex keys)",
    shared=True,
    serve=_serve,
    default_ttl=SESSION_COOKIE_AGE,
)
"""The file engine with each sid spelled in lowercase hex, the alphabet of Django's own
keys: a translation of the key space only, so that the rest of the engine can be seen."""
