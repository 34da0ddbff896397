"""The probe routes on starsessions 2.x with its RedisStore (redis-py's asyncio client), on
Starlette, served by uvicorn.

    python scripts/http_probes/starsessions_redis.py --port 0 --redis-url redis://127.0.0.1:6379/0

As starsessions' README sets it up: ``SessionMiddleware`` with a ``RedisStore`` and
``SessionAutoloadMiddleware``, here told (its ``paths``) to load the session for the session
routes only, so that ``/untouched`` and ``/features`` never touch it. ``lifetime=3`` with
``rolling=True`` (the probe's lifetime counts from the last activity), and
``cookie_https_only=False`` because the suite speaks plain HTTP. Login is starsessions'
``regenerate_session_id(request)``, then a cleared session and the user; logout clears the
session, which starsessions turns into a ``remove`` and an expired cookie.
"""

from __future__ import annotations

import asyncio

import _common
import _redis
from _common import PREFIX
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starsessions import SessionAutoloadMiddleware, SessionMiddleware, regenerate_session_id
from starsessions.stores.redis import RedisStore

COOKIE = "session"


async def wait(request: Request) -> None:
    seconds = _common.delay(request.query_params)
    if seconds > 0:
        await asyncio.sleep(seconds)


def make_app(redis_url: str) -> Starlette:
    outage = _common.Outage()

    async def features(request: Request) -> JSONResponse:
        return JSONResponse(_common.features(COOKIE, max_session_bytes=_common.NO_LIMIT, outage=True))

    async def read(request: Request) -> JSONResponse:
        loaded = _common.data(request.session)
        await wait(request)
        return JSONResponse({"data": loaded})

    async def write(request: Request) -> JSONResponse:
        await wait(request)
        request.session[request.query_params["key"]] = _common.value(request.query_params)
        return JSONResponse({"data": _common.data(request.session)})

    async def login(request: Request) -> JSONResponse:
        await wait(request)
        regenerate_session_id(request)
        request.session.clear()
        request.session["user"] = request.query_params["user"]
        return JSONResponse({"data": _common.data(request.session)})

    async def logout(request: Request) -> JSONResponse:
        request.session.clear()
        return JSONResponse({"data": {}})

    async def untouched(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def switch(request: Request) -> JSONResponse:
        outage.set(request.query_params)
        return JSONResponse({"ok": True})

    routes = [
        Route(f"{PREFIX}/features", features, methods=["GET"]),
        Route(f"{PREFIX}/read", read, methods=["GET"]),
        Route(f"{PREFIX}/write", write, methods=["POST"]),
        Route(f"{PREFIX}/login", login, methods=["POST"]),
        Route(f"{PREFIX}/logout", logout, methods=["POST"]),
        Route(f"{PREFIX}/untouched", untouched, methods=["GET"]),
        Route(f"{PREFIX}/outage", switch, methods=["POST"]),
    ]
    store = RedisStore(connection=_redis.async_client(redis_url, outage))
    middleware = [
        Middleware(
            SessionMiddleware,
            store=store,
            lifetime=_common.LIFETIME,
            rolling=True,
            cookie_name=COOKIE,
            cookie_same_site="lax",
            cookie_https_only=False,
        ),
        Middleware(SessionAutoloadMiddleware, paths=[rf"^{PREFIX}/(read|write|login|logout)$"]),
    ]
    return Starlette(routes=routes, middleware=middleware)


if __name__ == "__main__":
    args = _common.arguments(__doc__ or "")
    _common.serve_asgi(make_app(_common.needs_redis(args)), args.port)
