"""storekit.django: a Django session engine over a conforming store, through Django's test client."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        SECRET_KEY="storekit-tests-not-a-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        SESSION_ENGINE="storekit.django",
        STOREKIT_SESSION_STORE="storekit.reference:MemoryStore",
    )
    django.setup()

from django.contrib.sessions.backends.base import CreateError, UpdateError  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from storekit import django as engine  # noqa: E402
from storekit.codec import parse_expires  # noqa: E402
from storekit.reference import cluster  # noqa: E402


def count(request: HttpRequest) -> JsonResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return JsonResponse({"n": request.session["n"]})


def read(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"n": request.session.get("n")})


def login(request: HttpRequest) -> JsonResponse:
    request.session.cycle_key()
    request.session["user"] = "ada"
    return JsonResponse({"user": "ada"})


def logout(request: HttpRequest) -> JsonResponse:
    request.session.flush()
    return JsonResponse({})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"up": True})  # never touches request.session


urlpatterns = [
    path("count", count),
    path("read", read),
    path("login", login),
    path("logout", logout),
    path("health", health),
]


@contextlib.contextmanager
def cluster_master() -> Iterator[None]:
    if cluster.master._server is not None and cluster.master._server.running:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(cluster.ENV_SOCKET, raising=False)
        patch.delenv(cluster.ENV_KEY, raising=False)
        with cluster.serving():
            yield


REDIS_URL: list[str] = []


def redis_store() -> Any:
    """What STOREKIT_SESSION_STORE = "test_django:redis_store" builds: a RedisStore on the test's server."""
    from storekit.reference.redis import RedisStore

    return RedisStore(REDIS_URL[0])


@contextlib.contextmanager
def redis_server() -> Iterator[None]:
    pytest.importorskip("storekit.reference.redis")
    from storekit.testing.redis_server import RedisServer

    with RedisServer() as server:
        REDIS_URL[:] = [server.url]
        yield


@pytest.fixture(
    params=[
        "storekit.reference:MemoryStore",
        "storekit.reference.cluster:ClusterStore",
        f"{__name__}:redis_store",
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    engine._stores.clear()
    with contextlib.ExitStack() as stack:
        if "cluster" in request.param:
            stack.enter_context(cluster_master())
        if "redis" in request.param:
            stack.enter_context(redis_server())
        stack.enter_context(override_settings(STOREKIT_SESSION_STORE=request.param))
        yield engine.get_store()
        close = getattr(engine.get_store(), "close", None)
        if "redis" in request.param and callable(close):
            close()
    engine._stores.clear()


def session_key(client: Client) -> str:
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


def test_a_session_persists_in_the_store_across_requests(store: Any) -> None:
    client = Client()
    assert client.get("/count").json() == {"n": 1}
    assert client.get("/count").json() == {"n": 2}
    record = store.get(session_key(client))
    assert record["n"] == 2
    left = parse_expires(record["cookie"]["expires"]) - time.time()
    assert abs(left - settings.SESSION_COOKIE_AGE) < 60


def test_cycle_key_moves_the_data_to_a_new_key_and_destroys_the_old(store: Any) -> None:
    client = Client()
    client.get("/count")
    before = session_key(client)
    client.get("/login")
    after = session_key(client)
    assert after != before
    assert store.get(before) is None
    assert client.get("/read").json() == {"n": 1}


def test_flush_destroys_the_session(store: Any) -> None:
    client = Client()
    client.get("/count")
    key = session_key(client)
    client.get("/logout")
    assert store.get(key) is None
    assert client.get("/read").json() == {"n": None}


def test_load_of_an_unknown_key_creates_nothing(store: Any) -> None:
    session = engine.SessionStore("unknown0key0that0nobody0made0000")
    assert session.load() == {}
    assert session.session_key is None
    assert not session.exists("unknown0key0that0nobody0made0000")
    assert store.get("unknown0key0that0nobody0made0000") is None


@pytest.mark.parametrize("key", ["storekit.group:user:ada", "storekit.ended:somesid0000"])
def test_a_key_naming_one_of_storekits_own_records_is_no_session(store: Any, key: str) -> None:
    store.set(key, {"members": ["victim-sid"], "cookie": {"expires": None}})
    session = engine.SessionStore(key)  # a client's raw, unsigned cookie value
    assert dict(session.items()) == {}
    assert session.session_key is None
    session.cycle_key()  # what django.contrib.auth.login does: it must not destroy the record
    assert store.get(key) == {"members": ["victim-sid"], "cookie": {"expires": None}}


def test_save_and_create_keep_djangos_semantics(store: Any) -> None:
    first = engine.SessionStore()
    first["a"] = 1
    first.create()
    key = first.session_key
    assert first.exists(key)
    again = engine.SessionStore(key)
    with pytest.raises(CreateError):
        again.save(must_create=True)
    other = engine.SessionStore(key)
    other.delete()
    first["a"] = 2
    with pytest.raises(UpdateError):  # a session logged out elsewhere is not resurrected
        first.save()
    assert store.get(key) is None


def test_an_expiry_in_the_past_makes_the_store_drop_it(store: Any) -> None:
    session = engine.SessionStore()
    session["a"] = 1
    session.create()
    session.set_expiry(-10)
    session.save()
    assert engine.SessionStore(session.session_key).load() == {}
    engine.SessionStore.clear_expired()  # a no-op that must exist


def test_a_key_the_store_cannot_hold_is_no_session(store: Any) -> None:
    session = engine.SessionStore("x" * 5000)  # MemoryStore and ClusterStore refuse 5000 characters
    assert session.load() == {}
    session.delete("x" * 5000)


def test_a_key_named_cookie_is_kept_beside_express_sessions_cookie(store: Any) -> None:
    """As under WSGI and Flask: the app's "cookie" is stored escaped, the record's stays express-session's."""
    session = engine.SessionStore()
    session["cookie"] = "mine"
    session["storekit.key:x"] = 1
    session.create()
    record = store.get(session.session_key)
    assert record["storekit.key:cookie"] == "mine"
    assert record["storekit.key:storekit.key:x"] == 1
    assert set(record["cookie"]) == {"originalMaxAge", "expires", "httpOnly", "path", "sameSite"}
    assert engine.SessionStore(session.session_key).load() == {"cookie": "mine", "storekit.key:x": 1}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "needs the STOREKIT_SESSION_STORE setting"),
        ("storekit.reference.MemoryStore", "STOREKIT_SESSION_STORE = .*: expects 'module:attribute'"),
        ("storekit.nowhere:Store", "STOREKIT_SESSION_STORE = .*: cannot import module 'storekit.nowhere'"),
        ("storekit.reference:NoSuchStore", "has no attribute 'NoSuchStore'"),
        ("storekit.codec:MAX_DEPTH", "is not a store"),
        ("storekit.reference:AsyncMemoryStore", "is an async store; STOREKIT_SESSION_STORE needs a sync"),
    ],
)
def test_a_bad_setting_is_reported_with_the_value_and_the_fix(value: Any, message: str) -> None:
    engine._stores.clear()
    with override_settings(STOREKIT_SESSION_STORE=value), pytest.raises(ImproperlyConfigured, match=message):
        engine.get_store()


def test_a_target_names_its_factory() -> None:
    engine._stores.clear()
    with override_settings(STOREKIT_SESSION_STORE="storekit.ecosystem.cachelib:simple_cache_target"):
        assert type(engine.get_store()).__name__ == "CacheLibStore"
    engine._stores.clear()


def test_the_setup_in_docs_frameworks_md_works() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "frameworks.md").read_text()
    code = text.split("<!-- example: django -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/frameworks.md", "exec"), namespace)
    configured = {key: value for key, value in namespace.items() if key.isupper()}
    assert configured["SESSION_ENGINE"] == "storekit.django"
    engine._stores.clear()
    with override_settings(**configured):
        client = Client()
        client.get("/count")
        assert client.get("/count").json() == {"n": 2}
        assert engine.get_store().get(session_key(client))["n"] == 2
    engine._stores.clear()


class _Replacing:
    """A MemoryStore with the conditional write of contract v2 (replace only while stored)."""

    def __init__(self) -> None:
        from storekit.reference import MemoryStore

        self.inner = MemoryStore()
        self.replaced: list[str] = []

    def get(self, sid: str) -> Any:
        return self.inner.get(sid)

    def set(self, sid: str, session: dict[str, Any]) -> None:
        self.inner.set(sid, session)

    def destroy(self, sid: str) -> None:
        self.inner.destroy(sid)

    def replace(self, sid: str, session: dict[str, Any]) -> bool:
        self.replaced.append(sid)
        if self.inner.get(sid) is None:
            return False
        self.inner.set(sid, session)
        return True


replacing_store = _Replacing()


def test_save_uses_the_stores_replace_and_a_logout_is_not_undone() -> None:
    engine._stores.clear()
    with override_settings(STOREKIT_SESSION_STORE=f"{__name__}:replacing_store"):
        first = engine.SessionStore()
        first["a"] = 1
        first.create()
        key = first.session_key
        first["a"] = 2
        first.save()
        assert replacing_store.replaced == [key]
        engine.SessionStore(key).delete()  # a logout in another request
        first["a"] = 3
        with pytest.raises(UpdateError):
            first.save()
        assert replacing_store.get(key) is None
        assert not [sid for sid in replacing_store.inner.all() if sid.startswith("storekit.ended:")]
    engine._stores.clear()


def test_a_logout_is_final_against_a_save_in_flight(store: Any) -> None:
    """A session loaded before the logout saves nothing after it; only a store without replace
    needs the marker that such a save looks for."""
    from django.contrib.sessions.backends.base import UpdateError

    first = engine.SessionStore()
    first["a"] = 1
    first.create()
    key = first.session_key
    racing = engine.SessionStore(key)
    assert racing["a"] == 1  # loaded before the logout
    engine.SessionStore(key).delete()
    marker = store.get("storekit.ended:" + key)
    assert (marker is None) == callable(getattr(store, "replace", None))
    racing["b"] = 2
    with pytest.raises(UpdateError):
        racing.save()
    assert store.get(key) is None


class _Outage:
    def __init__(self) -> None:
        from storekit.reference import MemoryStore

        self.inner = MemoryStore()
        self.down = False

    def _check(self) -> None:
        if self.down:
            from storekit import StoreUnavailable

            raise StoreUnavailable("redis at 127.0.0.1:6379 did not answer within 2.0s")

    def get(self, sid: str) -> Any:
        self._check()
        return self.inner.get(sid)

    def set(self, sid: str, session: dict[str, Any]) -> None:
        self._check()
        self.inner.set(sid, session)

    def destroy(self, sid: str) -> None:
        self._check()
        self.inner.destroy(sid)


outage_store = _Outage()


def test_during_an_outage_a_view_that_never_uses_the_session_is_served() -> None:
    """Django loads the session lazily: only the views that use it fail (Django's 500)."""
    engine._stores.clear()
    with override_settings(STOREKIT_SESSION_STORE=f"{__name__}:outage_store"):
        client = Client(raise_request_exception=False)
        assert client.get("/count").json() == {"n": 1}
        outage_store.down = True
        try:
            assert client.get("/health").json() == {"up": True}
            assert client.get("/read").status_code == 500
        finally:
            outage_store.down = False
    engine._stores.clear()
