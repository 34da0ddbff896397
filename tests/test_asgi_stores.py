"""The ASGI middleware over the real async stores, and its cookie in the WSGI shell.

AsyncRedisStore on a real redis-server (storekit.testing.RedisServer),
AsyncClusterStore through two "workers" sharing the cluster server, and the
same session read through storekit.wsgi.SessionMiddleware over the same store.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis_support import raw, server  # noqa: F401  (fixtures)
from test_asgi import SECRET, cookie, demo, sid_of
from webtest import TestApp

from storekit.asgi import SessionMiddleware
from storekit.groups import GROUP_PREFIX
from storekit.reference import AsyncMemoryStore, MemoryStore
from storekit.testing import RedisServer
from storekit.wsgi import SessionMiddleware as WSGISessionMiddleware

BASE = "http://testserver"


async def scenario(app: Any, other: Any | None = None) -> dict[str, Any]:
    """Counter, login (regenerate + group), a second client logged out by ending the group."""
    other = other or app
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as laptop,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=BASE) as phone,
    ):
        responses = [await laptop.get("/inc") for _ in range(3)]
        counts = [response.text for response in responses]
        before = sid_of(responses[0])
        after = sid_of(await laptop.get("/login?user=ada&keep=1"))
        await phone.get("/login?user=ada")
        phone_user = json.loads((await phone.get("/read")).text)["data"].get("user")
        ended = (await laptop.get("/logout-everywhere")).text
        phone_after = json.loads((await phone.get("/read")).text)["data"]
        return {
            "counts": counts,
            "regenerated": before != after,
            "old": before,
            "new": after,
            "phone": phone_user,
            "ended": ended,
            "phone after": phone_after,
        }


EXPECTED = {"counts": ["1", "2", "3"], "regenerated": True, "phone": "ada", "ended": "2", "phone after": {}}


def test_over_async_redis_store(server: RedisServer, raw: Any) -> None:  # noqa: F811
    from storekit.reference.redis import AsyncRedisStore

    async def main() -> dict[str, Any]:
        store = AsyncRedisStore(server.url)
        try:
            return await scenario(SessionMiddleware(demo, store, secret=SECRET, max_age=60))
        finally:
            await store.aclose()

    found = asyncio.run(main())
    assert {key: found[key] for key in EXPECTED} == EXPECTED
    assert raw.get("sess:" + found["old"]) is None
    assert raw.get("sess:" + found["new"]) is None  # ended with its group
    assert json.loads(raw.get("sess:" + GROUP_PREFIX + "user:ada"))["members"] == []  # its next generation


def test_over_async_redis_store_the_record_expires_with_the_cookie(server: RedisServer, raw: Any) -> None:  # noqa: F811
    from storekit.reference.redis import AsyncRedisStore

    async def main() -> str:
        store = AsyncRedisStore(server.url)
        app = SessionMiddleware(demo, store, secret=SECRET, max_age=60)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
                return sid_of(await client.get("/inc"))
        finally:
            await store.aclose()

    sid = asyncio.run(main())
    assert 59_000 < raw.pttl("sess:" + sid) <= 60_000


def test_over_async_redis_store_a_request_that_never_uses_the_session_keeps_its_own_ttl(
    server: RedisServer,  # noqa: F811
    raw: Any,  # noqa: F811
) -> None:
    """The load renews with the default cookie (a day here); the end gives a "remember me"
    session its own 30 days back, though the app never read it."""
    from storekit.reference.redis import AsyncRedisStore

    async def main() -> str:
        store = AsyncRedisStore(server.url)
        app = SessionMiddleware(demo, store, secret=SECRET)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
                sid = sid_of(await client.get("/remember"))
                await client.get("/health")
                return sid
        finally:
            await store.aclose()

    sid = asyncio.run(main())
    assert raw.pttl("sess:" + sid) > 29 * 86400 * 1000


def test_an_async_redis_session_is_read_by_the_wsgi_shell_over_redis_store(
    server: RedisServer,  # noqa: F811
    raw: Any,  # noqa: F811
) -> None:
    from storekit.reference.redis import AsyncRedisStore, RedisStore

    async def main() -> str:
        store = AsyncRedisStore(server.url)
        app = SessionMiddleware(demo, store, secret=SECRET)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
                await client.get("/inc")
                return client.cookies["connect.sid"]
        finally:
            await store.aclose()

    value = asyncio.run(main())
    with RedisStore(server.url) as sync:
        browser = TestApp(WSGISessionMiddleware(wsgi_demo, sync, secret=SECRET))
        browser.set_cookie("connect.sid", value)
        assert browser.get("/inc").text == "2"


@pytest.fixture
def cluster_stores() -> Iterator[tuple[Any, Any]]:
    cluster = pytest.importorskip("storekit.reference.cluster")
    namespace = "test-asgi-" + secrets.token_hex(4)
    with cluster.serving():
        first = cluster.AsyncClusterStore(namespace=namespace)
        second = cluster.AsyncClusterStore(namespace=namespace)
        yield first, second
        asyncio.run(first.clear())


def test_over_async_cluster_store_a_session_follows_the_client_across_workers(
    cluster_stores: tuple[Any, Any],
) -> None:
    first, second = cluster_stores
    worker_one = SessionMiddleware(demo, first, secret=SECRET)
    worker_two = SessionMiddleware(demo, second, secret=SECRET)
    found = asyncio.run(scenario(worker_one, worker_two))
    assert {key: found[key] for key in EXPECTED} == EXPECTED
    assert asyncio.run(second.get(found["old"])) is None


# -- the cookie format is the WSGI shell's ---------------------------------------


def wsgi_demo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["storekit.session"]
    if environ["PATH_INFO"] == "/inc":
        session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session.get("n", 0)).encode()]


def test_a_cookie_issued_by_the_asgi_shell_is_accepted_by_the_wsgi_shell() -> None:
    memory = MemoryStore()
    asgi = SessionMiddleware(demo, AsyncMemoryStore(sync=memory), secret=SECRET, max_age=3600)
    wsgi = WSGISessionMiddleware(wsgi_demo, memory, secret=SECRET, max_age=3600)

    async def main() -> tuple[str, str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE) as client:
            response = await client.get("/inc")
            return response.headers["set-cookie"], client.cookies["connect.sid"]

    header, value = asyncio.run(main())
    browser = TestApp(wsgi)
    browser.set_cookie("connect.sid", value)
    assert browser.get("/inc").text == "2"
    assert browser.get("/read").text == "2"
    (wsgi_header,) = browser.get("/inc").headers.getall("Set-Cookie")
    assert wsgi_header.split("; ")[0] == header.split("; ")[0]  # the same signed sid, the same encoding
    names = [{part.split("=")[0] for part in h.split("; ")[1:]} for h in (header, wsgi_header)]
    assert names[0] == names[1] == {"Max-Age", "Path", "Expires", "HttpOnly", "SameSite"}


def test_a_cookie_issued_by_the_wsgi_shell_is_accepted_by_the_asgi_shell() -> None:
    memory = MemoryStore()
    wsgi = TestApp(WSGISessionMiddleware(wsgi_demo, memory, secret=SECRET))
    wsgi.get("/inc")
    (sid,) = memory.all()
    asgi = SessionMiddleware(demo, AsyncMemoryStore(sync=memory), secret=SECRET)

    async def main() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE) as client:
            return (await client.get("/inc", headers={"cookie": cookie(sid)})).text

    assert asyncio.run(main()) == "2"
