"""storekit.ecosystem.flask_session: what the adapter hands Flask-Session 0.8's interfaces."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("flask_session")

from cachelib import FileSystemCache
from flask_session.cachelib import CacheLibSessionInterface
from helpers import expiring_in

from storekit.ecosystem.flask_session import PERMANENT_SESSION_LIFETIME, FlaskSessionStore, _app
from storekit.errors import InvalidSessionData, InvalidSessionId


def _cachelib(tmp_path: Path) -> tuple[FlaskSessionStore, FileSystemCache]:
    app = _app()
    cache = FileSystemCache(str(tmp_path))
    return FlaskSessionStore(CacheLibSessionInterface(app, client=cache), app), cache


def test_the_store_id_is_the_key_prefix_and_the_sid(tmp_path: Path) -> None:
    store, cache = _cachelib(tmp_path)
    store.set("sid", {"n": 1})
    assert cache.get("session:sid") == {"n": 1}
    assert store.get("sid") == {"n": 1}
    store.destroy("sid")
    assert cache.get("session:sid") is None
    assert store.get("sid") is None


def test_the_lifetime_is_the_seconds_to_cookie_expires_else_the_apps(redis_url: str) -> None:
    import redis
    from flask_session.redis import RedisSessionInterface

    app = _app()
    client = redis.Redis.from_url(redis_url)
    store = FlaskSessionStore(RedisSessionInterface(app, client=client), app)
    store.set("a", expiring_in(100))
    store.set("b", {"n": 2})
    assert 98 <= client.ttl("session:a") <= 101
    assert PERMANENT_SESSION_LIFETIME - 5 <= client.ttl("session:b") <= PERMANENT_SESSION_LIFETIME
    assert app.permanent_session_lifetime.total_seconds() == PERMANENT_SESSION_LIFETIME
    assert store.get("b") == {"n": 2}  # msgpack, Flask-Session's default format


def test_sqlalchemy_records_carry_an_expiry_and_expired_ones_read_as_none(tmp_path: Path) -> None:
    from flask_session.sqlalchemy import SqlAlchemySessionInterface
    from flask_sqlalchemy import SQLAlchemy

    app = _app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 's.sqlite3'}")
    interface = SqlAlchemySessionInterface(app, client=SQLAlchemy(app))
    store = FlaskSessionStore(interface, app)
    store.set("live", expiring_in(100))
    store.set("gone", expiring_in(-10))
    assert (store.get("live") or {})["n"] == 1
    assert store.get("gone") is None


def test_refused_data_and_keys_raise_storekit_errors(tmp_path: Path, redis_url: str) -> None:
    import redis
    from flask_session.redis import RedisSessionInterface

    app = _app()
    store = FlaskSessionStore(RedisSessionInterface(app, client=redis.Redis.from_url(redis_url)), app)
    with pytest.raises(InvalidSessionData, match="cannot encode"):
        store.set("sid", {"x": object()})
    with pytest.raises(InvalidSessionData, match="dict"):
        store.set("sid", [1])  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionId):
        store.get(1)  # type: ignore[arg-type]


# -- Flask-Session bugs that docs/compatibility.md describes ----------------------------------


def test_flask_session_sqlalchemy_update_still_lands_on_the_row_another_session_reused(
    tmp_path: Path,
) -> None:
    """``_upsert_session`` reads the record, then updates it by its integer primary key; SQLite
    gives a deleted row's id to the next insert, so the update can land on another session."""
    import msgspec
    from flask_session.sqlalchemy import SqlAlchemySessionInterface
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import event

    app = _app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 's.sqlite3'}")
    db = SQLAlchemy(app)
    interface = SqlAlchemySessionInterface(app, client=db)
    store = FlaskSessionStore(interface, app)
    store.set("alice", {"who": "alice"})
    table = interface.sql_session_model.__table__
    raced: list[bool] = []

    def another_request(*_: object) -> None:  # between the upsert's SELECT and its UPDATE
        if raced:
            return
        raced.append(True)
        with db.engine.begin() as connection:  # alice logs out, bob logs in
            connection.execute(table.delete().where(table.c.session_id == "session:alice"))
            connection.execute(
                table.insert().values(
                    session_id="session:bob",
                    data=msgspec.msgpack.encode({"who": "bob"}),
                    expiry=datetime.utcnow() + timedelta(days=1),
                )
            )

    with app.app_context():
        session_class = type(db.session())
    event.listen(session_class, "before_flush", another_request)
    try:
        store.set("alice", {"who": "alice", "cart": ["book"]})
    finally:
        event.remove(session_class, "before_flush", another_request)
    assert store.get("bob") == {"who": "alice", "cart": ["book"]}  # bob now has alice's session
    assert store.get("alice") is None


@pytest.fixture
def memcached_address() -> Iterator[str]:
    from storekit.testing import MemcachedMissing, MemcachedServer

    try:
        server = MemcachedServer()
    except MemcachedMissing as exc:
        pytest.skip(f"{exc} (apt-get install memcached)")
    with server:
        yield server.address


def test_flask_session_memcached_still_loses_a_refused_write_without_a_word(memcached_address: str) -> None:
    """pymemcache's ``set`` defaults to noreply, which Flask-Session keeps: no error comes back."""
    import pymemcache
    from flask_session.memcached import MemcachedSessionInterface

    app = _app()
    store = FlaskSessionStore(
        MemcachedSessionInterface(app, client=pymemcache.Client(memcached_address)), app
    )
    store.set("sid", {"n": 1})
    store.set("sid", {"big": "x" * (2 << 20)})  # over memcached's 1 MiB item limit: refused
    assert store.get("sid") is None  # memcached dropped the old item too; set() returned as if stored


def test_flask_session_memcached_still_prefers_pymemcaches_thread_unsafe_client() -> None:
    pymemcache = pytest.importorskip("pymemcache")
    import importlib.util

    from flask_session.memcached import MemcachedSessionInterface

    if importlib.util.find_spec("pylibmc") or importlib.util.find_spec("memcache"):
        pytest.skip("pylibmc or python-memcached is installed: Flask-Session prefers it")
    client = MemcachedSessionInterface._get_preferred_memcache_client(None)
    assert type(client) is pymemcache.client.base.Client  # not PooledClient
