"""MemoryStore against what a one-process app would use instead, in one run.

    python benchmarks/bench_memory.py [--seconds 1.0] [--repeat 5]

Each contender gets and sets ~1 KB sessions shaped as express-session writes
them, from one thread and from four. The peers:

* a plain dict behind a lock, holding the caller's dict (no copy: fast, and
  the caller's later mutations leak into the "store"; it also never expires);
* cachelib's SimpleCache (what Flask-Session's memory backend builds on),
  which pickles each value and expires by timeout.

Also the memory that 100,000 such sessions take in each, by tracemalloc.
Prints a Markdown table; figures are medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from cachelib import SimpleCache

from storekit.codec import expires_in
from storekit.reference import MemoryStore

SIDS = 1000


def session(n: int) -> dict[str, Any]:
    return {
        "cookie": expires_in(3600),
        "user": {"id": n, "name": f"user-{n}", "roles": ["reader", "writer"], "email": f"u{n}@example.org"},
        "cart": [{"sku": f"SKU-{n}-{i}", "qty": i, "price": 9.99 + i} for i in range(8)],
        "flash": [],
        "csrf": "x" * 43,
        "views": n,
    }


class LockedDict:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.lock = threading.Lock()

    def get(self, sid: str) -> Any:
        with self.lock:
            return self.data.get(sid)

    def set(self, sid: str, value: Any) -> None:
        with self.lock:
            self.data[sid] = value


class CachelibStore:
    def __init__(self) -> None:
        self.cache = SimpleCache(threshold=10**9, default_timeout=3600)

    def get(self, sid: str) -> Any:
        return self.cache.get(sid)

    def set(self, sid: str, value: Any) -> None:
        self.cache.set(sid, value)


CONTENDERS: dict[str, Callable[[], Any]] = {
    "MemoryStore": MemoryStore,
    "dict + lock": LockedDict,
    "cachelib SimpleCache": CachelibStore,
}


def rate(store: Any, op: str, seconds: float, threads: int) -> float:
    """Operations per second over ``seconds``, summed over ``threads``."""
    sessions = [session(n) for n in range(SIDS)]
    sids = [f"sid-{n:04d}" for n in range(SIDS)]
    for sid, value in zip(sids, sessions, strict=True):
        store.set(sid, value)
    counts = [0] * threads
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(threads)

    def work(slot: int) -> None:
        barrier.wait()
        done = 0
        n = slot
        get, put = store.get, store.set
        while time.perf_counter() < stop:
            for _ in range(100):
                n = (n + 7) % SIDS
                if op == "get":
                    get(sids[n])
                else:
                    put(sids[n], sessions[n])
            done += 100
        counts[slot] = done

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / seconds


def memory(factory: Callable[[], Any], count: int) -> float:
    """MiB held by ``count`` sessions in a store built by ``factory``."""
    template = session(1)
    tracemalloc.start()
    store = factory()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        store.set(f"sid-{n:06d}", copy.deepcopy(template))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100_000, help="for the memory figure")
    options = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.platform()}")
    print(f"session size: {len(str(session(1)))} characters of repr, ~1 KB of JSON\n")
    print("| store | get, 1 thread | set, 1 thread | get, 4 threads | set, 4 threads | memory, "
          f"{options.sessions:,} sessions |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, factory in CONTENDERS.items():
        cells = []
        for op, threads in (("get", 1), ("set", 1), ("get", 4), ("set", 4)):
            runs = [rate(factory(), op, options.seconds, threads) for _ in range(options.repeat)]
            cells.append(f"{statistics.median(runs):,.0f}/s")
        cells.append(f"{memory(factory, options.sessions):,.0f} MiB")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
