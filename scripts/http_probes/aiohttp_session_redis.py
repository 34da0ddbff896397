"""The probe routes on aiohttp-session 2.12 with its RedisStorage (redis-py's asyncio
client), served by aiohttp's own runner.

    python scripts/http_probes/aiohttp_session_redis.py --port 0 --redis-url redis://127.0.0.1:6379/0

``RedisStorage(max_age=3, samesite="Lax")``, otherwise its defaults. Login is
aiohttp-session's ``new_session(request)`` (a new session, which gets a new key when it is
saved) with the user; logout is ``session.invalidate()``. ``/outage`` points the client at a
closed port.
"""

from __future__ import annotations

import asyncio
import signal

import _common
import _redis
from _common import PREFIX
from aiohttp import web
from aiohttp_session import get_session, new_session, session_middleware
from aiohttp_session.redis_storage import RedisStorage

COOKIE = "AIOHTTP_SESSION"


async def wait(request: web.Request) -> None:
    seconds = _common.delay(request.query)
    if seconds > 0:
        await asyncio.sleep(seconds)


def make_app(redis_url: str) -> web.Application:
    outage = _common.Outage()
    storage = RedisStorage(
        _redis.async_client(redis_url, outage),
        cookie_name=COOKIE,
        max_age=_common.LIFETIME,
        samesite="Lax",
    )
    routes = web.RouteTableDef()

    @routes.get(f"{PREFIX}/features")
    async def features(request: web.Request) -> web.Response:
        return web.json_response(_common.features(COOKIE, max_session_bytes=_common.NO_LIMIT, outage=True))

    @routes.get(f"{PREFIX}/read")
    async def read(request: web.Request) -> web.Response:
        session = await get_session(request)
        await wait(request)
        return web.json_response({"data": dict(session)})

    @routes.post(f"{PREFIX}/write")
    async def write(request: web.Request) -> web.Response:
        session = await get_session(request)
        await wait(request)
        session[request.query["key"]] = _common.value(request.query)
        return web.json_response({"data": dict(session)})

    @routes.post(f"{PREFIX}/login")
    async def login(request: web.Request) -> web.Response:
        await wait(request)
        session = await new_session(request)
        session["user"] = request.query["user"]
        return web.json_response({"data": dict(session)})

    @routes.post(f"{PREFIX}/logout")
    async def logout(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.invalidate()
        return web.json_response({"data": {}})

    @routes.get(f"{PREFIX}/untouched")
    async def untouched(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    @routes.post(f"{PREFIX}/outage")
    async def switch(request: web.Request) -> web.Response:
        outage.set(request.query)
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[session_middleware(storage)])
    app.add_routes(routes)
    return app


async def serve(app: web.Application, port: int) -> None:
    """Run until SIGTERM (or Ctrl-C), then clean up the runner."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, _common.HOST, port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _common.announce(int(runner.addresses[0][1]))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    args = _common.arguments(__doc__ or "")
    asyncio.run(serve(make_app(_common.needs_redis(args)), args.port))
