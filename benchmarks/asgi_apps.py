"""The ASGI apps of bench_asgi.py: a session counter over an async store, and a websocket echo.

    python benchmarks/bench_asgi.py --duration 2 --rounds 5

``counter()`` is a factory, called once in each worker (``storekit serve
--factory``, ``uvicorn --factory``, gunicorn's ``asgi_apps:counter()``): it
builds the store that ``$STOREKIT_BENCH_STORE`` names, ``cluster``
(AsyncClusterStore, whose server the sticky master runs) or ``redis``
(AsyncRedisStore at ``$STOREKIT_REDIS_URL``). ``echo`` sends each websocket
message back, and answers plain HTTP with 200 so that a readiness probe sees it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from storekit.asgi import SessionMiddleware, session_of

STORE_ENV = "STOREKIT_BENCH_STORE"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: say so, as every server's lifespan probe expects."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def count(scope: Scope, receive: Receive, send: Send) -> None:
    """Count each client's visits in its session: ``n 1``, ``n 2``, ..."""
    if scope["type"] != "http":
        await lifespan(receive, send)
        return
    session = session_of(scope)
    session["n"] = int(session.get("n", 0)) + 1
    body = b"n %d\n" % session["n"]
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def counter() -> Any:
    """`count` in storekit's ASGI middleware over the store ``$STOREKIT_BENCH_STORE`` names."""
    kind = os.environ.get(STORE_ENV, "cluster")
    if kind == "redis":
        from storekit.reference.redis import ENV_URL, AsyncRedisStore

        store: Any = AsyncRedisStore(os.environ[ENV_URL])
    elif kind == "cluster":
        from storekit.reference.cluster import AsyncClusterStore

        store = AsyncClusterStore()
    else:
        raise ValueError(f"${STORE_ENV} is 'cluster' or 'redis', got {kind!r}")
    return SessionMiddleware(count, store, secret="storekit benchmark")


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """A websocket gets each of its messages back; HTTP gets ``ok``; lifespan is accepted."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"3")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok\n"})
    else:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
