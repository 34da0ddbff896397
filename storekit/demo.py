"""``storekit demo``: a /hello app on 4 sticky workers sharing sessions through ClusterStore.

This process is the master: it calls ``cluster.setup()``, then starts the
sticky server, whose workers each build the app with a ``ClusterStore``. A
first visit says "Hello from worker N", the next "Hello again from worker N".
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

SECRET = "keyboard cat"


def make_hello_app() -> Any:
    """The app of one worker (called once in each): /hello behind the session middleware."""
    from storekit.reference.cluster import ClusterStore
    from storekit.reference.sticky import SLOT_ENV
    from storekit.wsgi import SessionMiddleware

    worker = os.environ.get(SLOT_ENV, "?")

    def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/hello":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"try /hello\n"]
        session = environ["storekit.session"]
        greeting = "Hello again from worker" if session.get("visited") else "Hello from worker"
        session["visited"] = "1"
        body = json.dumps({"msg": f"{greeting} {worker}", "pid": os.getpid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return SessionMiddleware(hello, ClusterStore(), secret=SECRET)


def visit(port: int, cookie: str | None) -> tuple[dict[str, Any], str | None]:
    """GET /hello with ``cookie``; the JSON answer and the cookie to send next time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/hello", headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        answer = json.loads(response.read())
        set_cookie = response.getheader("Set-Cookie")
    finally:
        connection.close()
    return answer, set_cookie.split(";", 1)[0] if set_cookie else cookie


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="storekit demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--serve", action="store_true", help="keep serving until interrupted")
    options = parser.parse_args(argv)

    from storekit.reference import cluster
    from storekit.reference.sticky import StickyServer

    cluster.setup()
    with StickyServer(
        make_hello_app, workers=options.workers, bind=("127.0.0.1", options.port), factory=True
    ) as server:
        pids = sorted(server.pids.values())
        print(f"serving /hello on {server.url} with {server.workers} workers (pids {pids})")
        cookie = None
        for _ in range(2):
            answer, cookie = visit(server.port, cookie)
            print(answer["msg"])
        if options.serve:
            print(f"try: curl -c jar -b jar {server.url}/hello   (Ctrl-C to stop)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0
