"""Logout is final under the sync shells (WSGI middleware, Flask interface), with real threads.

A slow request of a session is held at a gate (an Event) while another request
logs the session out (``destroy()``, ``end_group()``); the slow one is then let
go. Whatever it does at its end (a write, a resave, a rolling touch, Flask's
refresh), the old cookie never logs in again. On MemoryStore (with and without
``touch``), ClusterStore and RedisStore.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from redis_support import need_redis_server
from webtest import TestApp

from storekit.lifecycle import ENDED_PREFIX
from storekit.reference import MemoryStore
from storekit.wsgi import SessionMiddleware, session_of

SECRET = "keyboard cat"
WAIT = 10.0


class Gate:
    """Where a slow request stops: it says it is in (``entered``) and waits for ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def pause(self) -> None:
        self.entered.set()
        assert self.release.wait(WAIT), "the test never released the slow request"


class NoTouch:
    """A store with only get, set and destroy (no touch, no replace): the middleware must
    write (set) to keep a session alive, and keep a logout final with its marker."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get(self, sid: str) -> Any:
        return self.inner.get(sid)

    def set(self, sid: str, session: dict[str, Any]) -> None:
        self.inner.set(sid, session)

    def destroy(self, sid: str) -> None:
        self.inner.destroy(sid)


def sessions_in(store: Any, sids: Iterable[str]) -> list[str]:
    return [sid for sid in sids if store.get(sid) is not None]


class NoReplace(NoTouch):
    """A store with touch but no replace (a contract v1 store)."""

    def touch(self, sid: str, session: dict[str, Any]) -> None:
        self.inner.touch(sid, session)


@pytest.fixture(params=["memory", "memory-no-replace", "memory-no-touch", "cluster", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    kind = request.param
    if kind.startswith("memory"):
        memory = MemoryStore()
        wrappers = {"memory": lambda m: m, "memory-no-replace": NoReplace, "memory-no-touch": NoTouch}
        yield wrappers[kind](memory)
    elif kind == "cluster":
        cluster = pytest.importorskip("storekit.reference.cluster")
        with cluster.serving():
            made = cluster.ClusterStore(namespace="logout-" + secrets.token_hex(4))
            try:
                yield made
            finally:
                made.clear()
                getattr(made, "close", lambda: None)()
    else:
        need_redis_server()
        from storekit.reference.redis import RedisStore
        from storekit.testing import RedisServer

        with RedisServer() as server, RedisStore(server.url) as made:
            yield made


def accounts(gate: Gate) -> Callable[..., Iterable[bytes]]:
    """/login (regenerate + group), /logout, /logout-everywhere, /slow-write, /slow-read, /whoami."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = session_of(environ)
        path = environ["PATH_INFO"]
        if path == "/login":
            session.regenerate()
            session["user"] = "ada"
            session.join_group("user:ada")
        elif path == "/logout":
            session.destroy()
        elif path == "/logout-everywhere":
            session.end_group("user:ada")
        elif path == "/slow-write":
            session["visits"] = session.get("visits", 0) + 1
            gate.pause()
        elif path == "/slow-read":
            session.get("user")
            gate.pause()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(session.get("user", "nobody")).encode()]

    return app


def race(app: Any, slow: str, logout: str, gate: Gate, name: str = "connect.sid") -> tuple[TestApp, str, Any]:
    """Log in, start the ``slow`` request, log out with ``logout`` while it waits, let it end;
    the browser, the cookie it had, and the slow request's response."""
    browser = TestApp(app)
    browser.get("/login")
    cookie = f"{name}={browser.cookies[name]}"
    result: list[Any] = []
    slow_request = threading.Thread(
        target=lambda: result.append(TestApp(app).get(slow, extra_environ={"HTTP_COOKIE": cookie})),
        daemon=True,
    )
    slow_request.start()
    assert gate.entered.wait(WAIT), "the slow request never reached its gate"
    assert browser.get(logout).text == ("ada" if logout == "/login" else "nobody")
    gate.release.set()
    slow_request.join(WAIT)
    assert not slow_request.is_alive()
    return browser, cookie, result[0]


OPTIONS = {
    "write": ("/slow-write", {}),
    "resave": ("/slow-read", {"resave": True}),
    "rolling": ("/slow-read", {"rolling": True, "max_age": 3600}),
    "defaults": ("/slow-read", {}),
}


@pytest.mark.parametrize("case", sorted(OPTIONS))
@pytest.mark.parametrize("logout", ["/logout", "/logout-everywhere"])
def test_a_slow_request_never_undoes_a_logout_under_wsgi(store: Any, case: str, logout: str) -> None:
    gate = Gate()
    slow, options = OPTIONS[case]
    app = SessionMiddleware(accounts(gate), store, secret=SECRET, **options)
    _, cookie, slow_response = race(app, slow, logout, gate)
    assert slow_response.status_int == 200
    if case == "write":  # the write found the session gone: it leaves the browser's cookie alone
        assert slow_response.headers.getall("Set-Cookie") == []
    replay = TestApp(app).get("/whoami", extra_environ={"HTTP_COOKIE": cookie})
    assert replay.text == "nobody", f"{case}/{logout}: the old cookie logged in again"


@pytest.mark.parametrize("case", ["write", "refresh"])
def test_a_slow_request_never_undoes_a_logout_under_flask(store: Any, case: str) -> None:
    flask = pytest.importorskip("flask")
    from storekit.flask import StoreSessionInterface

    gate = Gate()
    app = flask.Flask(__name__)
    app.secret_key = SECRET
    app.session_interface = StoreSessionInterface(store)

    @app.get("/login")
    def login() -> str:
        flask.session.regenerate()  # type: ignore[attr-defined]
        flask.session["user"] = "ada"
        flask.session.permanent = True
        return "ada"

    @app.get("/logout")
    def logout() -> str:
        flask.session.clear()
        return str(flask.session.get("user", "nobody"))

    @app.get("/slow")
    def slow() -> str:
        if case == "write":
            flask.session["visits"] = flask.session.get("visits", 0) + 1
        else:  # read-only: SESSION_REFRESH_EACH_REQUEST refreshes a permanent session
            flask.session.get("user")
        gate.pause()
        return "slow"

    @app.get("/whoami")
    def whoami() -> str:
        return str(flask.session.get("user", "nobody"))

    _, cookie, slow_response = race(app, "/slow", "/logout", gate, name="session")
    assert slow_response.status_int == 200
    replay = TestApp(app).get("/whoami", extra_environ={"HTTP_COOKIE": cookie})
    assert replay.text == "nobody", f"{case}: the old cookie logged in again"


def test_a_slow_request_that_ends_after_a_login_leaves_the_new_cookie_alone() -> None:
    """The login's regenerate destroyed the sid the slow request loaded: the slow request writes
    nothing and sends no Set-Cookie, so the browser keeps the login's cookie."""
    gate = Gate()
    app = SessionMiddleware(accounts(gate), MemoryStore(), secret=SECRET)
    browser, cookie, slow_response = race(app, "/slow-write", "/login", gate)
    assert slow_response.headers.getall("Set-Cookie") == []
    assert f"connect.sid={browser.cookies['connect.sid']}" != cookie
    assert browser.get("/whoami").text == "ada"
    assert TestApp(app).get("/whoami", extra_environ={"HTTP_COOKIE": cookie}).text == "nobody"


def test_a_destroy_leaves_a_short_lived_marker_only_where_the_store_cannot_replace() -> None:
    memory = MemoryStore()
    app = SessionMiddleware(accounts(Gate()), NoReplace(memory), secret=SECRET)
    browser = TestApp(app)
    browser.get("/login")
    sid = next(s for s in memory.all() if not s.startswith("storekit."))
    browser.get("/logout")
    marker = memory.get(ENDED_PREFIX + sid)
    assert marker is not None
    assert marker["cookie"]["expires"] is not None


class Replacing(MemoryStore):
    """MemoryStore (whose replace is contract v2's, atomic under its lock), counting replaces."""

    def __init__(self) -> None:
        super().__init__()
        self.replaced: list[str] = []

    def replace(self, sid: str, session: dict[str, Any]) -> bool:
        done = super().replace(sid, session)
        if done:
            self.replaced.append(sid)
        return done


def test_a_store_with_replace_gets_replace_and_no_marker() -> None:
    store = Replacing()
    gate = Gate()
    app = SessionMiddleware(accounts(gate), store, secret=SECRET)
    _, cookie, _ = race(app, "/slow-write", "/logout", gate)
    assert not [sid for sid in store.all() if sid.startswith(ENDED_PREFIX)]
    assert TestApp(app).get("/whoami", extra_environ={"HTTP_COOKIE": cookie}).text == "nobody"
    browser = TestApp(app)
    browser.get("/login")
    browser.get("/slow-write")  # the gate is open by now
    assert store.replaced  # the write of a loaded session went through replace()
