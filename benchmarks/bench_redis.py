"""RedisStore against raw redis-py on the same redis-server, in one run: storekit's overhead.

    python benchmarks/bench_redis.py [--seconds 1.0] [--rounds 5] [--sessions 100000] [--url URL]

One thread, one connection, ~1 KB sessions shaped as express-session writes them. For get,
set and touch, three contenders take turns in every round:

* ``RedisStore``: ``store.get(sid)``, ``store.set(sid, session)``, ``store.touch(sid, session)``;
* ``raw``: redis-py alone, ``GET``, ``SET key bytes PX ms``, ``PEXPIRE key ms`` with the
  bytes and the milliseconds ready beforehand (the round trip and nothing else);
* ``raw + json``: the same with ``json.loads`` / ``json.dumps`` of the session, the least
  any store that keeps sessions as JSON must do.

Cells are medians over the rounds of ops/s and of the client's CPU time per operation
(``time.process_time``; steadier than ops/s on a shared machine). Then ``all()`` over
``--sessions`` sessions, against raw SCAN + MGET without decoding. Starts its own
redis-server on a free loopback port unless ``--url`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from storekit.codec import encode_session
from storekit.reference.redis import RedisStore
from storekit.testing.redis_server import RedisServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import session

SIDS = 1000
Op = Callable[[int], Any]


def contenders(url: str) -> dict[str, dict[str, Op]]:
    store = RedisStore(url)
    client = redis.Redis.from_url(url)
    sids = [f"bench-{n:04d}-K2VpIjSGfMPuVDD9jRpXblbG" for n in range(SIDS)]
    keys = ["sess:" + sid for sid in sids]
    sessions = [session(n) for n in range(SIDS)]
    encoded = [encode_session(s) for s in sessions]
    px = 3_600_000
    for sid, value in zip(sids, sessions, strict=True):
        store.set(sid, value)
    return {
        "RedisStore": {
            "get": lambda n: store.get(sids[n]),
            "set": lambda n: store.set(sids[n], sessions[n]),
            "touch": lambda n: store.touch(sids[n], sessions[n]),
        },
        "raw": {
            "get": lambda n: client.get(keys[n]),
            "set": lambda n: client.set(keys[n], encoded[n], px=px),
            "touch": lambda n: client.pexpire(keys[n], px),
        },
        "raw + json": {
            "get": lambda n: json.loads(client.get(keys[n]) or b"null"),
            "set": lambda n: client.set(keys[n], json.dumps(sessions[n], separators=(",", ":")), px=px),
            "touch": lambda n: client.pexpire(keys[n], px),
        },
    }


def measure(op: Op, seconds: float) -> tuple[float, float]:
    """(ops/s, client CPU µs per op) over ``seconds``."""
    done, n = 0, 0
    stop = time.perf_counter() + seconds
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() < stop:
        for _ in range(50):
            n = (n + 7) % SIDS
            op(n)
        done += 50
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return done / wall, cpu / done * 1e6


def bench_ops(url: str, seconds: float, rounds: int) -> None:
    runs = contenders(url)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for op in ("get", "set", "touch"):
            for name, ops in runs.items():
                results.setdefault((name, op), []).append(measure(ops[op], seconds))
    print("| op | contender | ops/s | client CPU µs/op | RedisStore ÷ this, CPU | RedisStore ÷ this, time |")
    print("|---|---|---:|---:|---:|---:|")
    for op in ("get", "set", "touch"):
        mine = results[("RedisStore", op)]
        mine_rate = statistics.median(r for r, _ in mine)
        mine_cpu = statistics.median(c for _, c in mine)
        for name in runs:
            rate = statistics.median(r for r, _ in results[(name, op)])
            cpu = statistics.median(c for _, c in results[(name, op)])
            ratio = "" if name == "RedisStore" else f"{mine_cpu / cpu:.2f}x"
            slower = "" if name == "RedisStore" else f"{rate / mine_rate:.2f}x"
            print(f"| {op} | {name} | {rate:,.0f} | {cpu:.1f} | {ratio} | {slower} |")


def bench_all(url: str, count: int, rounds: int) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    template = encode_session(session(1))
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        pipe.set(f"sess:all-{n:06d}", template, px=3_600_000)
        if n % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    store = RedisStore(url)

    def raw_all() -> int:
        keys = list(set(client.scan_iter(match="sess:?*", count=1000)))
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(keys), 1000):
            pipe.mget(keys[start : start + 1000])
        return sum(len(chunk) for chunk in pipe.execute())

    timings: dict[str, list[float]] = {
        "RedisStore.all()": [],
        "raw SCAN + MGET": [],
        "RedisStore.length()": [],
    }
    for _ in range(rounds):
        for name, call in (
            ("RedisStore.all()", lambda: len(store.all())),
            ("raw SCAN + MGET", raw_all),
            ("RedisStore.length()", store.length),
        ):
            began = time.perf_counter()
            got = call()
            timings[name].append(time.perf_counter() - began)
            assert got == count, (name, got)
    print(f"\n{count:,} sessions of {len(template)} bytes of JSON:\n")
    print("| call | seconds (median) | sessions/s |")
    print("|---|---:|---:|")
    for name, runs in timings.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {count / median:,.0f} |")
    client.flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100_000, help="for all()")
    parser.add_argument("--url", help="a Redis to use instead of starting one (it gets FLUSHDB)")
    options = parser.parse_args()
    print(
        f"python {platform.python_version()}, redis-py {redis.__version__}, {platform.platform()}, "
        f"{os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    if options.url:
        bench_ops(options.url, options.seconds, options.rounds)
        bench_all(options.url, options.sessions, 3)
        return
    with RedisServer() as server:
        bench_ops(server.url, options.seconds, options.rounds)
        bench_all(server.url, options.sessions, 3)


if __name__ == "__main__":
    main()
