"""What every third-party probe app shares: its command line, its ``/features`` answer, the
probe protocol's parameters, an outage switch, and the servers that run it.

The probe protocol is docs/http.md's. Each app in this folder implements it with one
middleware's own API; nothing here touches a session, so what the suite finds is the
middleware's behaviour.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

HOST = "127.0.0.1"
PREFIX = "/probe"
LIFETIME = 3
"""Seconds a session lives without activity, in every app here (``/features`` ``lifetime``)."""
COOKIE_LIMIT = 4096
"""A browser keeps cookies up to about 4 KB: the limit of a session held in the cookie."""
NO_LIMIT = 1024 * 1024
"""``max_session_bytes`` for a server-side store that has no limit of its own: a session the
suite makes larger than this (1.5 MiB) should fail, and http.10 reports what happens."""
INTERNAL_KEYS = ("_permanent", "__metadata__")
"""Keys a middleware keeps in the session dict for itself (Flask's, starsessions'): not data."""


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--redis-url", help="the redis-server the session store uses")
    return parser.parse_args()


def needs_redis(args: argparse.Namespace) -> str:
    if not args.redis_url:
        raise SystemExit(f"{sys.argv[0]}: this probe keeps its sessions in Redis; give --redis-url URL")
    return str(args.redis_url)


def features(
    cookie: str,
    *,
    max_session_bytes: int,
    outage: bool,
    samesite: str | None = "Lax",
    secure: bool = False,
) -> dict[str, Any]:
    """The ``/features`` answer: no groups (no middleware here has them)."""
    return {
        "protocol": 1,
        "cookie": cookie,
        "lifetime": LIFETIME,
        "secure": secure,
        "samesite": samesite,
        "groups": False,
        "outage": outage,
        "max_session_bytes": max_session_bytes,
    }


def data(session: Mapping[str, Any]) -> dict[str, Any]:
    """The session's data as the app stored it, without the middleware's own keys."""
    return {key: value for key, value in session.items() if key not in INTERNAL_KEYS}


def delay(query: Mapping[str, str]) -> float:
    return float(query.get("delay") or 0)


def value(query: Mapping[str, str]) -> str:
    """``/write``'s value: ``value``, or ``size`` characters ``x``."""
    size = query.get("size")
    return "x" * int(size) if size else query.get("value", "")


def wait(query: Mapping[str, str]) -> None:
    seconds = delay(query)
    if seconds > 0:
        time.sleep(seconds)


class Outage:
    """The ``/outage`` switch. While it is on, the app's store client talks to a port of
    127.0.0.1 that is bound and never listens, so every command fails as with a store that
    is down: the failure comes from the client library itself."""

    def __init__(self) -> None:
        self.on = threading.Event()
        self._hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._hole.bind((HOST, 0))  # bound, not listening: connections are refused, and no one takes it
        self.port = int(self._hole.getsockname()[1])

    @property
    def dead_url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def set(self, query: Mapping[str, str]) -> None:
        if query.get("on") == "1":
            self.on.set()
        else:
            self.on.clear()


def announce(port: int) -> None:
    print(f"listening on http://{HOST}:{port}{PREFIX}", flush=True)


def serve_wsgi(app: Any, port: int) -> None:
    """Serve a WSGI app with waitress until SIGTERM (or Ctrl-C)."""
    import waitress

    server: Any = waitress.create_server(app, host=HOST, port=port, threads=16, ident="probe")
    signal.signal(signal.SIGTERM, _exit)
    announce(int(server.effective_port))
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.close()


def serve_asgi(app: Any, port: int) -> None:
    """Serve an ASGI app with uvicorn (which stops on SIGTERM), announced once it accepts."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                announce(int(self.servers[0].sockets[0].getsockname()[1]))

    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="off")
    signal.signal(signal.SIGTERM, _exit)  # uvicorn raises the signal again once it has shut down
    with contextlib.suppress(SystemExit, KeyboardInterrupt):
        Server(config).run()


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)
