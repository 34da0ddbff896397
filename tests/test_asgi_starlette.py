"""storekit.asgi.SessionMiddleware as a drop-in for Starlette's own SessionMiddleware.

The same Starlette app runs under each middleware, side by side, and must
answer the same; then FastAPI's ``request.session``, websockets, errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("itsdangerous")  # Starlette's own SessionMiddleware needs it

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from storekit import StoreUnavailable
from storekit.asession import AsyncSession
from storekit.asgi import SessionMiddleware
from storekit.cookie import sign
from storekit.reference import AsyncMemoryStore

SECRET = "keyboard cat"


async def set_(request: Request) -> Response:
    request.session.update(request.query_params)
    return PlainTextResponse("ok")


async def read(request: Request) -> Response:
    return JSONResponse(dict(request.session))


async def clear(request: Request) -> Response:
    request.session.clear()
    return PlainTextResponse("cleared")


async def nothing(request: Request) -> Response:
    return PlainTextResponse("nothing")


async def mapping(request: Request) -> Response:
    """What an app does with request.session as a mutable mapping."""
    session = request.session
    session.setdefault("visits", 0)
    session["visits"] += 1
    session["tmp"] = "x"
    popped = session.pop("tmp")
    session.update({"a": 1}, b=2)
    session |= {"c": 3}
    facts = {
        "mapping": isinstance(session, MutableMapping),
        "popped": popped,
        "len": len(session),
        "has_a": "a" in session,
        "keys": sorted(session),
        "get": session.get("missing", "default"),
    }
    return JSONResponse(facts)


async def counter(request: Request) -> Response:
    request.session["n"] = request.session.get("n", 0) + 1
    return PlainTextResponse(str(request.session["n"]))


async def stream(request: Request) -> Response:
    request.session["streamed"] = True

    async def chunks() -> Any:
        for word in ("a", "b", "c"):
            yield word

    return StreamingResponse(chunks())


async def boom(request: Request) -> Response:
    request.session["boom"] = True
    raise RuntimeError("boom")


async def unavailable(request: Request) -> Response:
    request.session["fail"] = True
    return PlainTextResponse("down", status_code=503)


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(dict(websocket.session))
    await websocket.close()


ROUTES = [
    Route("/set", set_),
    Route("/read", read),
    Route("/clear", clear),
    Route("/nothing", nothing),
    Route("/mapping", mapping),
    Route("/inc", counter),
    Route("/stream", stream),
    Route("/boom", boom),
    Route("/503", unavailable),
    WebSocketRoute("/ws", socket),
]


def starlettes_own() -> Starlette:
    app = Starlette(routes=ROUTES)
    app.add_middleware(StarletteSessionMiddleware, secret_key=SECRET)
    return app


def storekits(store: AsyncMemoryStore | None = None) -> Starlette:
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, store=store or AsyncMemoryStore(), secret=SECRET)
    return app


def visit(app: Starlette, *paths: str) -> list[tuple[int, str, str | None]]:
    """Each path in one client: (status, body, Vary)."""

    async def main() -> list[tuple[int, str, str | None]]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            found = []
            for path in paths:
                response = await client.get(path)
                found.append((response.status_code, response.text, response.headers.get("vary")))
            return found

    return asyncio.run(main())


SCENARIOS = {
    "set then read": ["/set?user=ada&lang=en", "/read"],
    "clear": ["/set?user=ada", "/clear", "/read", "/set?user=bob", "/read"],
    "mutable mapping": ["/mapping", "/mapping", "/read"],
    "counter": ["/inc", "/inc", "/inc"],
    "untouched": ["/nothing", "/read"],
    "streaming": ["/stream", "/read"],
    "app raises": ["/set?k=1", "/boom", "/read"],
}


@pytest.mark.parametrize("paths", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_storekit_answers_as_starlettes_own_session_middleware(paths: list[str]) -> None:
    assert visit(storekits(), *paths) == visit(starlettes_own(), *paths)


def test_request_session_is_a_storekit_session_in_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    store = AsyncMemoryStore()
    seen: list[object] = []

    async def look(request: Request) -> Response:
        seen.append(request.session)
        request.session["user"] = "ada"
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", look)])
    app.add_middleware(SessionMiddleware, store=store, secret=SECRET)
    visit(app, "/")
    assert isinstance(seen[0], AsyncSession)
    assert [record["user"] for record in store.sync.all().values()] == ["ada"]


def test_a_5xx_saves_nothing_unlike_starlettes_own() -> None:
    """A documented difference: Starlette's cookie carries a 5xx's changes, storekit saves nothing."""
    assert visit(storekits(), "/set?k=1", "/503", "/read")[-1][1] == json.dumps(
        {"k": "1"}, separators=(",", ":")
    )


class DownOnSet(AsyncMemoryStore):
    async def set(self, sid: str, session: dict[str, Any]) -> None:
        raise StoreUnavailable("redis at 127.0.0.1:1 did not answer within 2.0s")


@pytest.mark.parametrize("path", ["/inc", "/stream"])
def test_a_store_failure_under_starlette_is_one_500_and_a_log_line(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The 500 replaces the app's response; nothing escapes to Starlette's error middleware."""

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=storekits(DownOnSet()))  # raises what the app lets escape
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path)

    with caplog.at_level(logging.ERROR):
        response = asyncio.run(main())
    assert (response.status_code, response.text) == (500, "Internal Server Error\n")
    assert [r.name for r in caplog.records] == ["storekit.session"]
    assert "did not answer within 2.0s" in caplog.text


def test_a_starlette_websocket_reads_the_session() -> None:
    with TestClient(storekits()) as client:
        client.get("/set?user=ada")
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_json() == {"user": "ada"}


def test_a_fastapi_app_counts_with_request_session() -> None:
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()

    @app.get("/count")
    async def count(request: Request) -> dict[str, int]:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        session = request.session
        assert isinstance(session, AsyncSession)
        await session.aregenerate(keep_data=True)
        session["user"] = "ada"
        return dict(session)

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return dict(request.session)  # a mutable mapping, not a dict: docs/asgi.md says so

    app.add_middleware(SessionMiddleware, store=AsyncMemoryStore(), secret=SECRET)

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            counts = [(await client.get("/count")).json()["n"] for _ in range(3)]
            before = client.cookies["connect.sid"]
            logged_in = (await client.post("/login")).json()
            after = client.cookies["connect.sid"]
            return [counts, logged_in, before != after, (await client.get("/whoami")).json()]

    assert asyncio.run(main()) == [[1, 2, 3], {"n": 3, "user": "ada"}, True, {"n": 3, "user": "ada"}]


def test_a_client_hanging_up_during_the_save_does_not_bring_back_a_logged_out_session() -> None:
    """Starlette's StreamingResponse (ASGI spec below 2.4) cancels the response when the client
    disconnects. A slow request writes back a session that /logout destroyed while it ran, on a
    store without replace(); the client hangs up while that write looks for the logout's marker.
    The write runs to its end and destroys the session again."""
    sid = "S" * 32
    gate = {name: asyncio.Event() for name in ("set_sent", "logged_out", "marker_asked", "release", "cut")}

    class Remote(AsyncMemoryStore):  # a store without replace (a third-party one, say)
        replace = None  # type: ignore[assignment]
        renew = None  # type: ignore[assignment]

        async def set(self, key: str, session: dict[str, Any]) -> None:
            if key == sid and not gate["logged_out"].is_set():  # the slow request's write-back
                gate["set_sent"].set()
                await gate["logged_out"].wait()
            await super().set(key, session)

        async def get(self, key: str) -> Any:
            if key.startswith("storekit.ended:") and gate["logged_out"].is_set():
                gate["marker_asked"].set()  # the client hangs up now
                try:
                    await gate["release"].wait()
                except asyncio.CancelledError:
                    gate["cut"].set()  # the look itself was cancelled
                    raise
            return await super().get(key)

    store = Remote()

    async def slow(request: Request) -> Response:
        request.session["cart"] = ["item"]
        return StreamingResponse(iter([b"x"]))

    async def logout(request: Request) -> Response:
        await request.session.adestroy()
        return PlainTextResponse("bye")

    app = Starlette(routes=[Route("/slow", slow), Route("/logout", logout)])
    app.add_middleware(SessionMiddleware, store=store, secret="s")
    cookie = b"connect.sid=" + quote(sign(sid, b"s"), safe="").encode()

    async def call(path: str, hang_up: asyncio.Event | None = None) -> list[str]:
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "server": ("testserver", 80), "client": ("127.0.0.1", 1),
            "headers": [(b"cookie", cookie)],
        }  # fmt: skip
        requests = [{"type": "http.request", "body": b""}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            if requests:
                return requests.pop()
            await (hang_up or asyncio.Event()).wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message["type"])

        await app(scope, receive, send)
        return sent

    async def main() -> Any:
        store.sync.set(sid, {"cookie": {"originalMaxAge": None, "expires": None}, "user": "ada"})
        request = asyncio.create_task(call("/slow", hang_up=gate["marker_asked"]))
        await asyncio.wait_for(
            gate["set_sent"].wait(), 5
        )  # it read the session live; its write is on the way
        assert await call("/logout") == ["http.response.start", "http.response.body"]
        gate["logged_out"].set()
        await asyncio.wait_for(gate["marker_asked"].wait(), 5)
        deadline = time.monotonic() + 5
        while not (gate["cut"].is_set() or any(t.cancelling() for t in asyncio.all_tasks())):
            assert time.monotonic() < deadline, "Starlette did not cancel the response on the disconnect"
            await asyncio.sleep(0.001)  # until the disconnect has made Starlette cancel the response
        gate["release"].set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(request, 5)
        return store.sync.get(sid)

    assert asyncio.run(main()) is None
