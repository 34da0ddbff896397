"""``python -m storekit.probe KIND``: build a probe and its store, serve it, stop on a signal.

WSGI probes (``wsgi``, ``flask``, ``django``) run on waitress, ASGI probes
(``asgi``, ``starlette``) on uvicorn, and ``express`` is ``node
express_probe.js``. Each storekit probe's store sits behind an
:class:`~storekit.probe.outage.OutageStore`. Once the socket listens, the
launcher prints one line, ``listening on http://HOST:PORT/probe``; SIGTERM
and SIGINT stop it, and it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.resources
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from storekit.codec import DEFAULT_MAX_SESSION_BYTES
from storekit.probe.outage import AsyncOutageStore, OutageStore
from storekit.probe.protocol import PREFIX

__all__ = ["ASYNC_KINDS", "GRACE", "KINDS", "NODE_HINT", "NODE_PACKAGES", "STORES", "THREADS", "main"]

KINDS = ("wsgi", "asgi", "flask", "django", "starlette", "express")
ASYNC_KINDS = ("asgi", "starlette")
STORES = ("memory", "cluster", "redis")
THREADS = 8
"""waitress's worker threads: enough for a few slow (``delay``) requests to overlap."""
GRACE = 5
"""Seconds a stopping server gives the requests in flight."""

NODE_PACKAGES = "express@4 express-session@1.18 connect-redis@7 redis@4"
NODE_HINT = (
    f"npm install --prefix ~/.cache/storekit-node {NODE_PACKAGES}, "
    "then export NODE_PATH=~/.cache/storekit-node/node_modules"
)

Closer = Callable[[], Awaitable[None]]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m storekit.probe", description="Serve a probe app of the HTTP session suite."
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--store", choices=STORES, help="the session store (default: memory)")
    parser.add_argument("--redis-url", help="the Redis server, with --store redis")
    parser.add_argument("--lifetime", type=float, default=3.0, help="seconds a session lives idle")
    parser.add_argument("--port", type=int, default=0, help="0 (the default): an ephemeral port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if args.lifetime <= 0:
        parser.error(f"--lifetime must be a positive number of seconds, got {args.lifetime:g}")
    if args.kind == "starlette" and args.store is not None:
        parser.error("starlette keeps its sessions in the cookie: --store does not apply to it")
    if args.kind == "express" and args.store == "cluster":
        parser.error("express takes --store memory (express-session's MemoryStore) or redis (connect-redis)")
    if (args.store == "redis") != (args.redis_url is not None):
        parser.error("--store redis needs --redis-url URL, and --redis-url needs --store redis")
    args.store = args.store or "memory"
    return args


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _announce(host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{port}{PREFIX}", flush=True)


_STORE_CLASSES = {  # --store: the sync and the async class in storekit.reference
    "memory": ("MemoryStore", "AsyncMemoryStore"),
    "cluster": ("ClusterStore", "AsyncClusterStore"),
    "redis": ("RedisStore", "AsyncRedisStore"),
}


def _reference_store(args: argparse.Namespace, cleanup: contextlib.ExitStack, *, asynchronous: bool) -> Any:
    """The ``--store`` of ``args`` at storekit's default size limit, the cluster server started
    for it (and stopped by ``cleanup``) when it is ClusterStore."""
    import storekit.reference

    limit = DEFAULT_MAX_SESSION_BYTES
    if args.store == "cluster":
        from storekit.reference import cluster

        cluster.setup(max_session_bytes=limit)
        cleanup.callback(cluster.shutdown)
    made = getattr(storekit.reference, _STORE_CLASSES[args.store][asynchronous])
    where = (args.redis_url,) if args.store == "redis" else ()
    return made(*where, max_session_bytes=limit)


def _sync_store(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> OutageStore:
    store = _reference_store(args, cleanup, asynchronous=False)
    close = getattr(store, "close", None)
    if callable(close):
        cleanup.callback(close)
    return OutageStore(store)


def _async_store(
    args: argparse.Namespace, cleanup: contextlib.ExitStack, closers: list[Closer]
) -> AsyncOutageStore:
    store = _reference_store(args, cleanup, asynchronous=True)
    aclose = getattr(store, "aclose", None)
    if callable(aclose):
        closers.append(aclose)
    return AsyncOutageStore(store)


def _app(args: argparse.Namespace, cleanup: contextlib.ExitStack, closers: list[Closer]) -> Any:
    secret = secrets.token_urlsafe(32)
    if args.kind == "starlette":
        from storekit.probe import starlette

        return starlette.make_app(secret=secret, lifetime=args.lifetime)
    if args.kind == "asgi":
        from storekit.probe import asgi

        return asgi.make_app(_async_store(args, cleanup, closers), secret=secret, lifetime=args.lifetime)
    store = _sync_store(args, cleanup)
    if args.kind == "flask":
        from storekit.probe import flask

        return flask.make_app(store, secret=secret, lifetime=args.lifetime)
    if args.kind == "django":
        from storekit.probe import django

        return django.make_app(store, secret=secret, lifetime=args.lifetime)
    from storekit.probe import wsgi

    return wsgi.make_app(store, secret=secret, lifetime=args.lifetime)


def serve_wsgi(app: Any, host: str, port: int) -> None:
    """Serve ``app`` on waitress until a signal handler raises SystemExit."""
    import waitress

    server = waitress.create_server(app, host=host, port=port, threads=THREADS, ident="storekit-probe")
    try:
        _announce(host, server.effective_port)
        server.run()  # returns once SystemExit (from _stop) reached it, its threads stopped
    finally:
        server.close()


def serve_asgi(app: Any, host: str, port: int, closers: list[Closer]) -> None:
    """Serve ``app`` on uvicorn until SIGTERM or SIGINT, which uvicorn handles itself."""
    import uvicorn

    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=GRACE
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            while not server.started and not serving.done():
                await asyncio.sleep(0.01)
            if server.started:
                _announce(host, sock.getsockname()[1])
            await serving
        finally:
            for close in closers:
                await close()

    for signum in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises what it caught once it stopped
        signal.signal(signum, signal.SIG_IGN)
    try:
        asyncio.run(run())
    finally:
        sock.close()


def run_express(args: argparse.Namespace) -> int:
    """Run ``node express_probe.js`` and relay what it prints; its exit status is ours."""
    if shutil.which("node") is None:
        print(f"the express probe needs node (then: {NODE_HINT})", file=sys.stderr)
        return 2
    env = {**os.environ, "PORT": str(args.port), "HOST": args.host, "LIFETIME": f"{args.lifetime:g}"}
    env.update(SECRET=secrets.token_urlsafe(32), PREFIX=PREFIX)
    env.pop("REDIS_URL", None)
    if args.redis_url is not None:
        env["REDIS_URL"] = args.redis_url
    script = importlib.resources.files("storekit.probe") / "express_probe.js"
    with importlib.resources.as_file(script) as path:
        node = subprocess.Popen(["node", str(path)], env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert node.stdout is not None
            for line in node.stdout:
                print(line, end="", flush=True)
            return node.wait()
        finally:
            if node.poll() is None:
                node.terminate()
                try:
                    node.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.kill()
                    node.wait()


def main(argv: list[str] | None = None) -> int:
    """The launcher; see the module's docstring."""
    args = _arguments(argv)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)  # before cluster.setup(), which then leaves SIGTERM to us
    try:
        if args.kind == "express":
            return run_express(args)
        closers: list[Closer] = []
        with contextlib.ExitStack() as cleanup:
            app = _app(args, cleanup, closers)
            if args.kind in ASYNC_KINDS:
                serve_asgi(app, args.host, args.port, closers)
            else:
                serve_wsgi(app, args.host, args.port)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else 1
    return 0
