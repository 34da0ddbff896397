"""Logout is final under the ASGI middleware, with asyncio tasks through httpx's ASGITransport.

The twin of test_logout_wsgi.py: a slow request waits at an asyncio.Event while
another request logs the session out; once let go it must not bring the
session back, with a write, ``resave`` or ``rolling``. On AsyncMemoryStore
(with and without ``touch``), AsyncClusterStore and AsyncRedisStore.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
from redis_support import need_redis_server

from storekit.asgi import SessionMiddleware, session_of
from storekit.reference import AsyncMemoryStore

SECRET = "keyboard cat"
WAIT = 10.0
BASE = "http://testserver"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def pause(self) -> None:
        self.entered.set()
        await asyncio.wait_for(self.release.wait(), WAIT)


class NoTouch:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def get(self, sid: str) -> Any:
        return await self.inner.get(sid)

    async def set(self, sid: str, session: dict[str, Any]) -> None:
        await self.inner.set(sid, session)

    async def destroy(self, sid: str) -> None:
        await self.inner.destroy(sid)


def accounts(gate: Gate) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = session_of(scope)
        path = scope["path"]
        if path == "/login":
            await session.aregenerate()
            session["user"] = "ada"
            session.join_group("user:ada")
        elif path == "/logout":
            await session.adestroy()
        elif path == "/logout-everywhere":
            await session.aend_group("user:ada")
        elif path == "/slow-write":
            session["visits"] = session.get("visits", 0) + 1
            await gate.pause()
        elif path == "/slow-read":
            session.get("user")
            await gate.pause()
        body = str(session.get("user", "nobody")).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def make_store(kind: str) -> AsyncIterator[Any]:
    if kind.startswith("memory"):
        memory = AsyncMemoryStore()
        yield memory if kind == "memory" else NoTouch(memory)
    elif kind == "cluster":
        cluster = pytest.importorskip("storekit.reference.cluster")
        with cluster.serving():
            made = cluster.AsyncClusterStore(namespace="logout-" + secrets.token_hex(4))
            try:
                yield made
            finally:
                await made.clear()
                await made.aclose()
    else:
        need_redis_server()
        from storekit.reference.redis import AsyncRedisStore
        from storekit.testing import RedisServer

        with RedisServer() as server:
            made = AsyncRedisStore(server.url)
            try:
                yield made
            finally:
                await made.aclose()


OPTIONS = {
    "write": ("/slow-write", {}),
    "resave": ("/slow-read", {"resave": True}),
    "rolling": ("/slow-read", {"rolling": True, "max_age": 3600}),
}


async def race(kind: str, case: str, logout: str) -> tuple[str, str]:
    slow, options = OPTIONS[case]
    async for store in make_store(kind):
        gate = Gate()
        app = SessionMiddleware(accounts(gate), store, secret=SECRET, **options)
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url=BASE) as browser,
            httpx.AsyncClient(transport=transport, base_url=BASE) as tab,
            httpx.AsyncClient(transport=transport, base_url=BASE) as replay,
        ):
            await browser.get("/login")
            cookie = browser.cookies["connect.sid"]
            tab.cookies.set("connect.sid", cookie)
            slow_task = asyncio.create_task(tab.get(slow))
            await asyncio.wait_for(gate.entered.wait(), WAIT)
            logged_out = (await browser.get(logout)).text
            gate.release.set()
            await asyncio.wait_for(slow_task, WAIT)
            replay.cookies.set("connect.sid", cookie)
            return logged_out, (await replay.get("/whoami")).text
    raise AssertionError("no store")


@pytest.mark.parametrize("kind", ["memory", "memory-no-touch", "cluster", "redis"])
@pytest.mark.parametrize("case", sorted(OPTIONS))
@pytest.mark.parametrize("logout", ["/logout", "/logout-everywhere"])
def test_a_slow_request_never_undoes_a_logout_under_asgi(kind: str, case: str, logout: str) -> None:
    assert asyncio.run(race(kind, case, logout)) == ("nobody", "nobody"), f"{kind}/{case}/{logout}"
