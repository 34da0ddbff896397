"""One round trip for a read: the WSGI middleware on a store with renew against the same store
without it, for a read-only and a writing request, in interleaved rounds.

    python benchmarks/bench_round_trips.py --seconds 2 --rounds 5 --write docs/benchmarks.md

Each request is a direct WSGI call (no HTTP server, so that what differs is the store's part)
from 4 threads, each thread a browser with its own session. "with renew" is the store as it
is (MemoryStore, RedisStore on a real redis-server, ClusterStore where it offers renew);
"without" is the same store behind a wrapper that hides renew, so that the middleware loads
with get and touches at the end. Reported per request: store calls, requests per second, and
the CPU of this process (the client side: the middleware and the store's client).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import paired, write_section

from storekit.reference import MemoryStore
from storekit.wsgi import SessionMiddleware, session_of

HEADING = "## One round trip for a read (renew)"
THREADS = 4


class Counted:
    """``inner`` with each call counted; ``renew`` hidden when ``renew`` is False."""

    def __init__(self, inner: Any, *, renew: bool) -> None:
        self.inner = inner
        self.calls = 0
        self.lock = threading.Lock()
        names = ["touch", "replace"] + (["renew"] if renew else [])
        for name in names:
            if hasattr(inner, name):
                setattr(self, name, self._counted(getattr(inner, name)))

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            with self.lock:
                self.calls += 1
            return method(*args)

        return call

    def get(self, sid: str) -> Any:
        with self.lock:
            self.calls += 1
        return self.inner.get(sid)

    def set(self, sid: str, session: Any) -> None:
        with self.lock:
            self.calls += 1
        self.inner.set(sid, session)

    def destroy(self, sid: str) -> None:
        with self.lock:
            self.calls += 1
        self.inner.destroy(sid)


def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = session_of(environ)
    if environ["PATH_INFO"] == "/write":
        session["n"] = session.get("n", 0) + 1
    else:
        session.get("n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _cookie(app: Any) -> str:
    headers: list[tuple[str, str]] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/write", "wsgi.url_scheme": "http"}
    list(app(environ, lambda status, h, exc=None: headers.extend(h)))
    value = next(v for k, v in headers if k == "Set-Cookie")
    return value.split(";", 1)[0]


def measure(store: Any, route: str, seconds: float) -> tuple[float, float, float]:
    """(requests per second, CPU µs per request, store calls per request) from THREADS threads."""
    app = SessionMiddleware(page, store, secret="a long random value", max_age=3600)
    cookies = [_cookie(app) for _ in range(THREADS)]
    store.calls = 0
    counts = [0] * THREADS
    stop = time.monotonic() + seconds

    def browse(index: int) -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": route, "wsgi.url_scheme": "http"}
        environ["HTTP_COOKIE"] = cookies[index]
        done = 0
        while time.monotonic() < stop:
            list(app(dict(environ), lambda status, h, exc=None: None))
            done += 1
        counts[index] = done

    cpu, wall = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=browse, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    total = sum(counts)
    return total / wall, cpu / total * 1e6, store.calls / total


@contextlib.contextmanager
def stores(names: list[str]) -> Iterator[dict[str, Callable[[], Any]]]:
    with contextlib.ExitStack() as stack:
        made: dict[str, Callable[[], Any]] = {}
        for name in names:
            if name == "memory":
                made[name] = MemoryStore
            elif name == "redis":
                from storekit.reference.redis import RedisStore
                from storekit.testing import RedisServer

                url = stack.enter_context(RedisServer()).url
                made[name] = lambda url=url: RedisStore(url)  # type: ignore[misc]
            elif name == "cluster":
                from storekit.reference import cluster

                stack.enter_context(cluster.serving())
                made[name] = cluster.ClusterStore
        yield made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stores", default="memory,redis,cluster")
    parser.add_argument("--write", type=Path, default=None, help="write the section into this file")
    args = parser.parse_args(argv)
    names = args.stores.split(",")
    rows = []
    with stores(names) as made:
        for name in names:
            if not hasattr(made[name](), "renew"):
                print(f"{name}: the store offers no renew; left out")
                continue
            for route in ("/read", "/write"):
                runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
                for _ in range(args.rounds):  # interleaved: each round measures both back to back
                    for renew in (True, False):
                        runs[renew].append(measure(Counted(made[name](), renew=renew), route, args.seconds))
                rows.append((name, route, runs))
                print(name, route, {k: [tuple(round(x, 1) for x in r) for r in v] for k, v in runs.items()})
    lines = [
        HEADING,
        "",
        "The WSGI middleware on each store with renew against the same store with renew hidden (a "
        "get at load and a touch at the end), direct WSGI calls from 4 threads, each its own "
        f"session; {args.rounds} interleaved rounds of {args.seconds:g} s. Medians, with the range "
        "of the per-round ratios in brackets. CPU is this process's (middleware and store client).",
        "",
        f"    python benchmarks/bench_round_trips.py {shlex.join(argv or sys.argv[1:])}",
        "",
        "| store | request | store calls (with / without) | req/s with renew ÷ without | "
        "CPU per request with ÷ without |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, route, runs in rows:
        calls = f"{runs[True][0][2]:.2f} / {runs[False][0][2]:.2f}"
        rps = paired(runs[True], runs[False], lambda a, b: a[0] / b[0])
        cpu = paired(runs[True], runs[False], lambda a, b: a[1] / b[1])
        lines.append(f"| {name} | {route.strip('/')} | {calls} | {rps} | {cpu} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write is not None:
        write_section(args.write, HEADING, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
