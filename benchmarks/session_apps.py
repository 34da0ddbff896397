"""The session-counter app for bench_sticky.py: storekit's middleware over a shared store.

    python benchmarks/bench_sticky.py --app session_apps:counter --factory --cookies --store cluster

``counter()`` runs once in each worker and builds the store that
``$STOREKIT_BENCH_STORE`` names (``cluster`` or ``redis``); bench_sticky.py
starts the master or the redis-server before the servers under test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from storekit.wsgi import SessionMiddleware

STORE_ENV = "STOREKIT_BENCH_STORE"


def counter() -> Any:
    """Count each client's visits in its session."""
    kind = os.environ.get(STORE_ENV, "cluster")
    if kind == "redis":
        from storekit.reference.redis import ENV_URL, RedisStore

        store: Any = RedisStore(os.environ[ENV_URL])
    else:
        from storekit.reference.cluster import ClusterStore

        store = ClusterStore()

    def count(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = environ["storekit.session"]
        session["n"] = int(session.get("n", 0)) + 1
        body = b"n %d\n" % session["n"]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return SessionMiddleware(count, store, secret="storekit benchmark")
