"""A read-only request costs one store round trip on a store with renew (contract v2): the load
is a renew, which also touches, and the end has nothing left to do. Counted, call by call, under
the WSGI middleware, the Flask interface and the ASGI middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from flask import Flask, session
from webtest import TestApp

from storekit.asgi import SessionMiddleware as AsgiSessionMiddleware
from storekit.flask import StoreSessionInterface
from storekit.reference import AsyncMemoryStore, MemoryStore
from storekit.wsgi import SessionMiddleware, session_of

SECRET = "a long random value"


class Counting:
    """A store that records each call by name, forwarding to ``inner`` (its optional methods only
    where ``inner`` has them and ``hide`` does not name them)."""

    def __init__(self, inner: Any, hide: tuple[str, ...] = ()) -> None:
        self.inner = inner
        self.calls: list[str] = []
        for name in ("touch", "renew", "replace", "length", "clear", "all"):
            if hasattr(inner, name) and name not in hide:
                setattr(self, name, self._counted(name))

    def _counted(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append(name)
            return getattr(self.inner, name)(*args)

        return call

    def get(self, sid: str) -> Any:
        self.calls.append("get")
        return self.inner.get(sid)

    def set(self, sid: str, value: Any) -> None:
        self.calls.append("set")
        self.inner.set(sid, value)

    def destroy(self, sid: str) -> None:
        self.calls.append("destroy")
        self.inner.destroy(sid)


def counter(environ: Any, start_response: Any) -> list[bytes]:
    s = session_of(environ)
    if environ["PATH_INFO"] == "/inc":
        s["n"] = s.get("n", 0) + 1
    elif environ["PATH_INFO"] == "/remember":
        s.cookie.max_age = 30 * 24 * 3600
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(s.get("n", 0)).encode()]


def test_a_read_only_request_is_one_renew_and_a_writing_one_adds_its_write() -> None:
    store = Counting(MemoryStore())
    browser = TestApp(SessionMiddleware(counter, store, secret=SECRET, max_age=3600))
    browser.get("/inc")
    store.calls.clear()
    assert browser.get("/read").text == "1"
    assert store.calls == ["renew"]
    store.calls.clear()
    assert browser.get("/inc").text == "2"
    assert store.calls == ["renew", "replace"]


def test_without_renew_a_read_only_request_is_a_get_and_a_touch() -> None:
    store = Counting(MemoryStore(), hide=("renew",))
    browser = TestApp(SessionMiddleware(counter, store, secret=SECRET, max_age=3600))
    browser.get("/inc")
    store.calls.clear()
    browser.get("/read")
    assert store.calls == ["get", "touch"]


def test_a_session_with_its_own_max_age_is_touched_with_it_at_the_end() -> None:
    """The renew at load uses the middleware's max age; a "remember me" session is touched again
    at the end with its own, so its expiry is never shortened."""
    memory = MemoryStore()
    store = Counting(memory)
    browser = TestApp(SessionMiddleware(counter, store, secret=SECRET, max_age=3600))
    browser.get("/inc")
    browser.get("/remember")
    store.calls.clear()
    browser.get("/read")
    assert store.calls == ["renew", "touch"]
    (sid,) = memory.all()
    assert memory.all()[sid]["cookie"]["originalMaxAge"] == 30 * 24 * 3600 * 1000


def test_a_renew_keeps_an_active_session_alive_past_its_first_expiry() -> None:
    clock = [1_000_000.0]
    memory = MemoryStore(clock=lambda: clock[0])
    app = SessionMiddleware(counter, memory, secret=SECRET, max_age=100, clock=lambda: clock[0])
    browser = TestApp(app)
    browser.get("/inc")
    for _ in range(5):
        clock[0] += 60  # each visit within the max age of the one before
        assert browser.get("/read").text == "1"
    clock[0] += 101
    assert browser.get("/read").text == "0"  # idle past the max age: gone


def test_flask_renews_only_when_it_refreshes_each_request() -> None:
    for refresh, expected in ((True, ["renew"]), (False, ["get"])):
        store = Counting(MemoryStore())
        app = Flask(__name__)
        app.secret_key = SECRET
        app.config["SESSION_REFRESH_EACH_REQUEST"] = refresh
        app.session_interface = StoreSessionInterface(store)

        @app.route("/inc")
        def inc() -> str:
            session.permanent = True
            session["n"] = session.get("n", 0) + 1
            return str(session["n"])

        @app.route("/read")
        def read() -> str:
            return str(session.get("n", 0))

        client = app.test_client()
        client.get("/inc")
        store.calls.clear()
        assert client.get("/read").text == "1"
        assert store.calls == expected, refresh


class AsyncCounting(Counting):
    def _counted(self, name: str) -> Any:
        async def call(*args: Any) -> Any:
            self.calls.append(name)
            return await getattr(self.inner, name)(*args)

        return call

    async def get(self, sid: str) -> Any:  # type: ignore[override]
        self.calls.append("get")
        return await self.inner.get(sid)

    async def set(self, sid: str, value: Any) -> None:  # type: ignore[override]
        self.calls.append("set")
        await self.inner.set(sid, value)

    async def destroy(self, sid: str) -> None:  # type: ignore[override]
        self.calls.append("destroy")
        await self.inner.destroy(sid)


def test_the_asgi_middleware_makes_one_round_trip_for_a_read() -> None:
    from storekit.asgi import session_of as asgi_session

    store = AsyncCounting(AsyncMemoryStore())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        s = asgi_session(scope)
        if scope["path"] == "/inc":
            s["n"] = s.get("n", 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(s.get("n", 0)).encode()})

    wrapped = AsgiSessionMiddleware(app, store, secret=SECRET, max_age=3600)

    async def main() -> list[str]:
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.get("/inc")
            store.calls.clear()
            assert (await client.get("/read")).text == "1"
            return list(store.calls)

    assert asyncio.run(main()) == ["renew"]
