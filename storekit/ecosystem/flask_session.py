"""Flask-Session 0.8's own session interfaces (Redis, cachelib, SQLAlchemy, memcached) as stores.

Each store drives one interface's storage methods, the three that its ``open_session`` and
``save_session`` call and that every backend of Flask-Session 0.8 implements:
``_retrieve_session_data(store_id)``, ``_upsert_session(lifetime, session, store_id)`` and
``_delete_session(store_id)``. The public path cannot write a chosen sid (``open_session``
replaces a sid it does not find with a new random one), so the adapter calls these methods
directly. Where it must translate, it says so here:

* the sid is ``session.sid``; the store id is ``key_prefix + sid`` (``"session:"``), from the
  interface's own ``_get_store_id``;
* ``get`` is ``_retrieve_session_data``; ``None`` is "no session";
* ``set`` builds the interface's ``session_class(session, sid=sid)`` and calls
  ``_upsert_session`` with a ``timedelta`` of the whole seconds from now to ``cookie.expires``,
  rounded up (0 or less for an expiry at or before now); without one, the app's
  ``permanent_session_lifetime`` (Flask's default, 31 days), which is what ``save_session``
  passes for every session. The data goes to Flask-Session's ``MsgSpecSerializer`` (msgpack,
  its default) or, for cachelib, to cachelib's pickle; a TypeError, ValueError or msgspec
  EncodeError from it, or a session that is not a dict, raises InvalidSessionData;
* ``destroy`` is ``_delete_session``. Flask-Session cannot count, list, clear or renew
  sessions: ``touch``, ``length``, ``all`` and ``clear`` are not offered;
* errors: redis-py's ConnectionError and TimeoutError, and the socket's ConnectionError and
  TimeoutError under pymemcache, become StoreUnavailable; pymemcache's
  MemcacheIllegalInputError (a key memcached cannot hold) becomes InvalidSessionId.

Every call runs inside the app's application context, as Flask-Session's calls do (its
``retry_query`` logs through ``current_app``, and Flask-SQLAlchemy's session is scoped to it).
The memcached client is the one Flask-Session itself picks when pymemcache is the library
installed, ``pymemcache.Client`` on the server's address.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from flask import Flask

from storekit.contract import Session
from storekit.ecosystem._common import (
    outage_errors,
    redis_outage,
    redis_url,
    require_sid,
    serving,
    temp_dir,
    timeout_seconds,
)
from storekit.ecosystem._memcached import memcached_address
from storekit.errors import InvalidSessionData, InvalidSessionId, StoreUnavailable, cut
from storekit.target import Target

__all__ = [
    "PERMANENT_SESSION_LIFETIME",
    "FlaskSessionStore",
    "cachelib_target",
    "memcached_target",
    "redis_target",
    "sqlalchemy_target",
]

PERMANENT_SESSION_LIFETIME = 31 * 24 * 3600
"""Flask's default ``PERMANENT_SESSION_LIFETIME``: the life of a session without cookie.expires."""


class FlaskSessionStore:
    """A storekit store over a Flask-Session ``ServerSideSessionInterface``."""

    def __init__(
        self,
        interface: Any,
        app: Flask,
        *,
        errors: tuple[type[BaseException], ...] = (),
        invalid_key: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.interface = interface
        self.app = app
        self.errors = errors
        self.invalid_key = invalid_key

    @contextlib.contextmanager
    def _calling(self, sid: str) -> Iterator[None]:
        with self.app.app_context():
            try:
                yield
            except self.errors as exc:
                raise StoreUnavailable(f"{self!r} cannot reach its backend: {exc}") from exc
            except self.invalid_key as exc:
                raise InvalidSessionId(f"{self!r} refuses key {cut(sid)}: {exc}", sid) from exc

    def get(self, sid: str) -> Session | None:
        key = require_sid(sid)
        with self._calling(key):
            data: Session | None = self.interface._retrieve_session_data(self.interface._get_store_id(key))
        return None if data is None else dict(data)

    def set(self, sid: str, session: Session) -> None:
        import msgspec

        key = require_sid(sid)
        if not isinstance(session, dict):
            raise InvalidSessionData(
                f"a Flask session is a dict; cannot store {type(session).__name__} {cut(session)}"
            )
        ttl = timeout_seconds(session)
        lifetime = self.app.permanent_session_lifetime if ttl is None else timedelta(seconds=ttl)
        record = self.interface.session_class(session, sid=key)
        with self._calling(key):
            try:
                self.interface._upsert_session(lifetime, record, self.interface._get_store_id(key))
            except (TypeError, ValueError, msgspec.EncodeError) as exc:
                raise InvalidSessionData(f"{self!r} cannot encode {cut(session)}: {exc}") from exc

    def destroy(self, sid: str) -> None:
        key = require_sid(sid)
        with self._calling(key):
            self.interface._delete_session(self.interface._get_store_id(key))

    def __repr__(self) -> str:
        return f"FlaskSessionStore({type(self.interface).__name__})"


def _app(**config: Any) -> Flask:
    app = Flask("storekit_flask_session")
    app.config.update(SECRET_KEY="storekit-ecosystem-not-a-secret", **config)
    return app


# -- Redis --------------------------------------------------------------------------


def _redis_store() -> FlaskSessionStore:
    import redis
    from flask_session.redis import RedisSessionInterface

    app = _app()
    client: Any = redis.Redis.from_url(
        redis_url("flask_session_redis"), socket_timeout=5, socket_connect_timeout=5
    )
    return FlaskSessionStore(RedisSessionInterface(app, client=client), app, errors=outage_errors())


redis_target = Target(
    _redis_store,
    name="Flask-Session Redis",
    shared=True,
    serve=lambda: serving(lambda: redis_url("flask_session_redis")),
    default_ttl=PERMANENT_SESSION_LIFETIME,
    outage=lambda: redis_outage("flask_session_redis"),
)
"""RedisSessionInterface on a redis-server started for the run."""


# -- cachelib FileSystemCache ---------------------------------------------------------


def _cachelib_store() -> FlaskSessionStore:
    from cachelib import FileSystemCache
    from flask_session.cachelib import CacheLibSessionInterface

    app = _app()
    cache = FileSystemCache(temp_dir("flask_session_files"), threshold=500)
    return FlaskSessionStore(CacheLibSessionInterface(app, client=cache), app)


cachelib_target = Target(
    _cachelib_store,
    name="Flask-Session cachelib FileSystemCache",
    shared=True,
    serve=lambda: serving(lambda: temp_dir("flask_session_files")),
    default_ttl=PERMANENT_SESSION_LIFETIME,
)
"""CacheLibSessionInterface on a FileSystemCache (threshold 500, its documented setup)."""


# -- SQLAlchemy on SQLite ----------------------------------------------------------------

_lock = threading.Lock()
_sqlalchemy: list[FlaskSessionStore] = []


def _sqlalchemy_store() -> FlaskSessionStore:
    """One interface per process: its session model is declared once on the SQLAlchemy metadata."""
    from flask_session.sqlalchemy import SqlAlchemySessionInterface
    from flask_sqlalchemy import SQLAlchemy

    with _lock:
        if not _sqlalchemy:
            path = os.path.join(temp_dir("flask_session_sqlite"), "sessions.sqlite3")
            app = _app(
                SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}",
                SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"timeout": 30}},
            )
            db = SQLAlchemy(app)
            interface = SqlAlchemySessionInterface(app, client=db)
            _sqlalchemy.append(FlaskSessionStore(interface, app))
        return _sqlalchemy[0]


sqlalchemy_target = Target(
    _sqlalchemy_store,
    name="Flask-Session SQLAlchemy (SQLite)",
    shared=True,
    serve=lambda: serving(lambda: temp_dir("flask_session_sqlite")),
    default_ttl=PERMANENT_SESSION_LIFETIME,
)
"""SqlAlchemySessionInterface with Flask-SQLAlchemy on an SQLite file (30 s busy timeout)."""


# -- memcached ---------------------------------------------------------------------------


def _memcached_store() -> FlaskSessionStore:
    import pymemcache
    from flask_session.memcached import MemcachedSessionInterface
    from pymemcache.exceptions import MemcacheIllegalInputError

    app = _app()
    client = pymemcache.Client(memcached_address("flask_session_memcached"), connect_timeout=5, timeout=5)
    return FlaskSessionStore(
        MemcachedSessionInterface(app, client=client),
        app,
        errors=(ConnectionError, TimeoutError),
        invalid_key=(MemcacheIllegalInputError,),
    )


memcached_target = Target(
    _memcached_store,
    name="Flask-Session memcached",
    shared=True,
    serve=lambda: serving(lambda: memcached_address("flask_session_memcached")),
    default_ttl=PERMANENT_SESSION_LIFETIME,
)
"""MemcachedSessionInterface with pymemcache on a memcached started for the run."""
