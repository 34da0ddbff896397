"""ASGI on 2 workers: `storekit serve` (ip-hash, round-robin) vs. uvicorn --workers vs. gunicorn ASGI.

    .venv/bin/python benchmarks/bench_asgi.py --duration 2 --rounds 9 --write docs/benchmarks.md

The HTTP app is asgi_apps:counter, storekit.asgi.SessionMiddleware over a raw
ASGI visit counter; each of ``--sources`` client addresses in 127.0.0.0/8
keeps its cookie (loadgen.py's jar), so every request loads and saves a
session. The sticky server (kernel steering, SO_REUSEPORT + BPF) keeps the
sessions in AsyncClusterStore, whose server its master runs; uvicorn and
gunicorn, which cannot host that master, keep them in AsyncRedisStore on a
real redis-server. Then websocket echo: messages per second through the
sticky server and through uvicorn serving asgi_apps:echo directly, one
message in flight per connection. Rounds are interleaved; every ratio is
taken within a round and shown as the median of the rounds with the lowest
and highest, since this machine is shared.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import errno
import functools
import importlib.util
import multiprocessing
import os
import platform
import selectors
import shlex
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _docs import paired, write_section  # noqa: E402
from asgi_apps import STORE_ENV, counter, echo  # noqa: E402
from bench_sticky import free_port, own_cpu, process, tree_cpu  # noqa: E402
from loadgen import IP_BIND_ADDRESS_NO_PORT, LoadResult, run_load, run_load_parallel, source_addresses  # noqa: E402

from storekit.reference.sticky import StickyServer  # noqa: E402
from storekit.reference.sticky.routing import slot_for_address  # noqa: E402

# entered: serving; (port, pids whose CPU counts (the first with its descendants), the store's pid or 0)
Served = tuple[int, list[int], int]
Server = Callable[[], AbstractContextManager[Served]]

KERNEL, EVEN, ROUND_ROBIN, UVICORN, GUNICORN = (
    "storekit serve ip-hash, kernel", "storekit serve ip-hash, kernel, even split",
    "storekit serve round-robin, kernel", "uvicorn --workers", "gunicorn ASGI worker",
)  # fmt: skip
WS_STICKY, WS_UVICORN = "storekit serve ip-hash, kernel", "uvicorn --workers (direct)"


def heavier_share(sources: list[str], workers: int, seed: int) -> float:
    """The share of `sources` that ip-hash under `seed` gives its busiest worker."""
    counts = [0] * workers
    for address in sources:
        counts[slot_for_address(address, workers, seed)] += 1
    return max(counts) / len(sources)


def even_seed(sources: list[str], workers: int) -> int:
    """The first seed under which ip-hash splits `sources` as evenly as they can be split."""
    best = -(-len(sources) // workers) / len(sources)
    return next(seed for seed in range(1 << 20) if heavier_share(sources, workers, seed) <= best)


class Sticky:
    """`storekit serve` in kernel mode; ``shares`` collects, per start, the busiest worker's share
    of the client addresses under the seed that start used (random, unless ``seed`` is given)."""

    def __init__(
        self,
        app: Callable[..., Any],
        workers: int,
        routing: str,
        *,
        sources: list[str],
        seed: int | None = None,
        factory: bool = True,
    ) -> None:
        self.app, self.workers, self.routing, self.sources, self.seed = app, workers, routing, sources, seed
        self.factory = factory
        self.shares: list[float] = []

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Served]:
        options = {"workers": self.workers, "routing": self.routing, "mode": "kernel", "interface": "asgi"}
        with StickyServer(self.app, factory=self.factory, seed=self.seed, **options) as server:  # type: ignore[arg-type]
            assert server.master_pid is not None
            self.shares.append(heavier_share(self.sources, self.workers, server.seed))
            yield server.port, [server.master_pid], server.master_pid  # the master runs the cluster server


def command_server(argv: Callable[[int], list[str]], env: dict[str, str], extra: list[int]) -> Server:
    @contextlib.contextmanager
    def serve() -> Iterator[Served]:
        port = free_port()
        with process(argv(port), port, env=env) as (_, pid):
            yield port, [pid, *extra], (extra or [0])[0]

    return serve


def uvicorn_argv(spec: str, workers: int, factory: bool) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        out = [sys.executable, "-m", "uvicorn", "--workers", str(workers), "--host", "127.0.0.1"]
        out += ["--port", str(port), "--no-access-log", "--log-level", "warning", "--app-dir", str(HERE)]
        return [*out, *(["--factory"] if factory else []), spec]

    return argv


def gunicorn_worker() -> tuple[str | None, str]:
    """The worker class for gunicorn's ASGI row, or None and why not."""
    if importlib.util.find_spec("gunicorn") is None:
        return None, "gunicorn is not installed"
    from gunicorn.workers import SUPPORTED_WORKERS

    if "asgi" in SUPPORTED_WORKERS:
        return "asgi", f"gunicorn {metadata.version('gunicorn')} --worker-class asgi"
    if importlib.util.find_spec("uvicorn.workers") is not None:
        return "uvicorn.workers.UvicornWorker", "uvicorn.workers.UvicornWorker (gunicorn has no asgi worker)"
    return None, f"gunicorn {metadata.version('gunicorn')} has no asgi worker and uvicorn.workers is missing"


def gunicorn_argv(worker: str, workers: int) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        out = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", worker]
        out += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--keep-alive", "5"]
        return [*out, "--pythonpath", str(HERE), "asgi_apps:counter()"]

    return argv


def http_servers(args: argparse.Namespace, redis_url: str, redis_pid: int) -> tuple[dict[str, Server], str]:
    from storekit.reference.redis import ENV_URL

    n, sources = args.workers, source_addresses(args.sources)
    env = {**os.environ, STORE_ENV: "redis", ENV_URL: redis_url}
    out: dict[str, Server] = {
        KERNEL: Sticky(counter, n, "ip-hash", sources=sources),
        EVEN: Sticky(counter, n, "ip-hash", sources=sources, seed=even_seed(sources, n)),
        ROUND_ROBIN: Sticky(counter, n, "round-robin", sources=sources),
        UVICORN: command_server(uvicorn_argv("asgi_apps:counter", n, factory=True), env, [redis_pid]),
    }
    worker, gunicorn_note = gunicorn_worker()
    if worker is not None:
        out[GUNICORN] = command_server(gunicorn_argv(worker, n), env, [redis_pid])
    return out, gunicorn_note


# -- websocket echo load ---------------------------------------------------------------------------

_KEY = base64.b64encode(b"storekit-bench-k").decode()
_MASK = b"\x5a\xa5\x3c\xc3"


def _masked_text(payload: bytes) -> bytes:
    """One client text frame (FIN, masked, payload under 126 bytes)."""
    body = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + _MASK + body


def run_ws(
    host: str, port: int, *, connections: int = 50, duration: float = 2.0, sources: list[str] | None = None,
    payload: bytes = b"hello, echo", timeout: float = 5.0,
) -> LoadResult:  # fmt: skip
    """Open `connections` websockets (from `sources` in turn); each sends a text message as soon as
    the echo of the last one is in. `requests` counts echoes."""
    sources = sources or ["127.0.0.1"]
    upgrade = (
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    frame = _masked_text(payload)
    sel = selectors.DefaultSelector()
    result = LoadResult()
    state: dict[socket.socket, list[Any]] = {}  # sock -> [buffer, upgraded, sent_at]
    end = time.monotonic() + duration
    for i in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((sources[i % len(sources)], 0))
        if sock.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
            sock.close()
            result.errors += 1
            continue
        state[sock] = [b"", False, time.monotonic()]
        result.connections += 1
        sel.register(sock, selectors.EVENT_WRITE)

    def drop(sock: socket.socket) -> None:
        sel.unregister(sock)
        sock.close()
        del state[sock]
        result.errors += 1

    started = time.monotonic()
    while (now := time.monotonic()) < end and state:
        for key, mask in sel.select(min(0.1, end - now)):
            sock = key.fileobj  # type: ignore[assignment]
            conn = state[sock]
            try:
                if mask & selectors.EVENT_WRITE:
                    sock.send(upgrade)
                    sel.modify(sock, selectors.EVENT_READ)
                    continue
                data = sock.recv(65536)
            except OSError:
                drop(sock)
                continue
            if not data:
                drop(sock)
                continue
            conn[0] += data
            if not conn[1]:
                head_end = conn[0].find(b"\r\n\r\n")
                if head_end < 0:
                    continue
                if not conn[0].startswith(b"HTTP/1.1 101"):
                    drop(sock)
                    continue
                conn[0], conn[1], conn[2] = conn[0][head_end + 4 :], True, time.monotonic()
                sock.send(frame)
                continue
            buf = conn[0]
            while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):  # the server's frames are short
                opcode, buf = buf[0] & 0x0F, buf[2 + (buf[1] & 0x7F) :]
                if opcode in (1, 2):
                    now = time.monotonic()
                    result.requests += 1
                    result.latencies.append(now - conn[2])
                    conn[2] = now
                    if now < end:
                        sock.send(frame)
            conn[0] = buf
        if time.monotonic() - started > timeout and not result.requests:
            break  # nothing answers
    result.seconds = time.monotonic() - started
    for sock in state:
        sock.close()
    sel.close()
    return result


def run_ws_parallel(host: str, port: int, *, processes: int, connections: int, sources: list[str],
                    **kw: Any) -> LoadResult:  # fmt: skip
    """`run_ws` in `processes` forked processes sharing connections and addresses; results added up."""
    shares = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        jobs = [pool.submit(run_ws, host, port, connections=share, sources=sources[i::processes], **kw)
                for i, share in enumerate(shares)]  # fmt: skip
        parts = [job.result() for job in jobs]
    return LoadResult(
        sum(p.requests for p in parts), sum(p.errors for p in parts), sum(p.connections for p in parts),
        max(p.seconds for p in parts), [x for p in parts for x in p.latencies],
    )  # fmt: skip


def ws_used(args: argparse.Namespace) -> list[str]:
    """The addresses the websocket load connects from: each load process's first ones."""
    sources, n = source_addresses(args.sources), args.loadgen_processes
    shares = [args.connections // n + (1 if i < args.connections % n else 0) for i in range(n)]
    return [address for i, share in enumerate(shares) for address in sources[i::n][:share]]


def ws_servers(args: argparse.Namespace) -> dict[str, Server]:
    return {
        WS_STICKY: Sticky(echo, args.workers, "ip-hash", sources=ws_used(args), factory=False),
        WS_UVICORN: command_server(uvicorn_argv("asgi_apps:echo", args.workers, False), dict(os.environ), []),
    }


# -- measuring and reporting -----------------------------------------------------------------------

# (name, kind) -> [(per second, CPU µs per request or message, of which the store process's)];
# kind: "keep-alive", "close" or "ws"
Results = dict[tuple[str, str], list[tuple[float, float, float]]]


def cpu_of(pids: list[int]) -> float:
    return tree_cpu(pids[0]) + sum(own_cpu(pid) for pid in pids[1:])


def measure(args: argparse.Namespace, http: dict[str, Server], ws: dict[str, Server]) -> Results:
    results: Results = {}
    sources = source_addresses(args.sources)
    common: dict[str, Any] = {"connections": args.connections, "sources": sources}

    def sample(round_: int, name: str, kind: str, served: Served, load: Callable[[], LoadResult]) -> None:
        _, pids, store = served
        cpu, store_cpu = cpu_of(pids), own_cpu(store) if store else 0.0
        result = load()
        per = (cpu_of(pids) - cpu) / max(result.requests, 1) * 1e6
        store_per = ((own_cpu(store) if store else 0.0) - store_cpu) / max(result.requests, 1) * 1e6
        results.setdefault((name, kind), []).append((result.rps, per, store_per))
        unit = "msg/s" if kind == "ws" else "req/s"
        print(f"round {round_ + 1}  {name:36} {kind:10} {result.rps:8.0f} {unit}  {per:6.0f} µs CPU/each  "
              f"p50 {result.percentile(0.5) * 1e3:.1f} ms  errors {result.errors}", flush=True)  # fmt: skip

    for round_ in range(args.rounds):
        for name, serve in http.items():
            with serve() as served:
                for keepalive in (True, False):
                    options = {**common, "duration": args.duration, "keepalive": keepalive, "cookies": True}
                    run_load("127.0.0.1", served[0], **{**options, "duration": 0.3})
                    load = functools.partial(run_load_parallel, "127.0.0.1", served[0], **options,
                                             processes=args.loadgen_processes)  # fmt: skip
                    sample(round_, name, "keep-alive" if keepalive else "close", served, load)
        for name, serve in ws.items():
            with serve() as served:
                run_ws("127.0.0.1", served[0], **{**common, "duration": 0.3})
                options = {**common, "processes": args.loadgen_processes, "duration": args.duration}
                load = functools.partial(run_ws_parallel, "127.0.0.1", served[0], **options)
                sample(round_, name, "ws", served, load)
    return results


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    system = f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({(models or ['?'])[0]})"
    packages = ", ".join(f"{p} {metadata.version(p)}" for p in ("uvicorn", "gunicorn", "h11", "wsproto"))
    return f"{system}, Python {platform.python_version()}, {packages}"


def judge(cell: str, target: float) -> str:
    """'yes' or 'no' for a paired() cell's median against `target`."""
    return "n/a" if cell == "n/a" else ("yes" if float(cell.split()[0]) >= target else "no")


def split_note(args: argparse.Namespace, results: Results, shares: list[float], even: int) -> list[str]:
    """What the ip-hash row's random seeds did to the split of the addresses, round by round."""
    if not shares or (KERNEL, "close") not in results or (ROUND_ROBIN, "close") not in results:
        return []
    pairs = zip(results[(KERNEL, "close")], results[(ROUND_ROBIN, "close")], strict=True)
    ratios = [ip_hash[0] / round_robin[0] for ip_hash, round_robin in pairs]
    rounds = ", ".join(f"{share:.2f}: {ratio:.2f}" for share, ratio in zip(shares, ratios, strict=True))
    median = statistics.median(shares)
    related = statistics.correlation(shares, ratios) if len(set(shares)) > 1 and len(set(ratios)) > 1 else 0.0
    return [
        "",
        f"The split: ip-hash sends an address to worker `hash(address, seed) % {args.workers}`, the "
        f"seed random per start, so the {args.sources} addresses that the new-connection runs take "
        f"in turn split as the hash falls: over the ip-hash row's rounds the busiest worker had a "
        f"median {median:.2f} ({min(shares):.2f}-{max(shares):.2f}) of them. Round by round, that "
        f"share: the new-connection ratio to round-robin: {rounds} (correlation {related:.2f}, "
        f"over {len(shares)} rounds). The even-split row runs the same server with seed {even}, "
        f"under which those {args.sources} addresses split evenly, for comparison (the keep-alive "
        f"runs' {args.connections} connections use only the first addresses of each load process's "
        "share, which that seed need not split evenly).",
    ]


def report(
    args: argparse.Namespace,
    results: Results,
    command: str,
    load: str,
    gunicorn_note: str,
    split: list[str] | None = None,
) -> str:
    med = {key: statistics.median(s[0] for s in v) for key, v in results.items()}
    cpu = {key: statistics.median(s[1] for s in v) for key, v in results.items()}
    store = {key: statistics.median(s[2] for s in v) for key, v in results.items()}
    lines = [
        args.section,
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine()}; loopback; "
        f"{args.workers} workers, {args.connections} connections from {args.sources} client addresses in "
        f"127.0.0.0/8, {args.duration:g}s per run, {args.rounds} interleaved rounds, load from "
        f"{args.loadgen_processes} processes of benchmarks/loadgen.py (HTTP) and bench_asgi.py's websocket "
        f"client that share the cores with the servers. Load average before / after: {load}; the machine "
        "was shared with other work, so requests per second move by tens of percent between runs.",
        "",
        f"    {command}",
        "",
        "The app: `asgi_apps:counter`, storekit.asgi.SessionMiddleware over a raw ASGI counter; each "
        "client address keeps its cookie, so every request loads and saves its session. The sticky rows "
        "keep sessions in AsyncClusterStore (the sticky master runs its server), uvicorn and gunicorn in "
        f"AsyncRedisStore on a local redis-server. Gunicorn's row: {gunicorn_note}. CPU is that of the "
        "server's processes, master included, plus redis-server's for the Redis rows; the store's share is "
        "the sticky master's own CPU (its cluster server) or redis-server's.",
        "",
        "| server, sessions | req/s, keep-alive | req/s, new connection per request | CPU µs/req, keep-alive "
        "| CPU µs/req, new connection | of which the store's, keep-alive |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in dict.fromkeys(n for n, kind in results if kind != "ws"):
        kind = "AsyncClusterStore" if name.startswith("storekit") else "AsyncRedisStore"
        on, off = (name, "keep-alive"), (name, "close")
        cells = f"{med[on]:.0f} | {med[off]:.0f} | {cpu[on]:.0f} | {cpu[off]:.0f} | {store[on]:.0f}"
        lines.append(f"| {name}, {kind} | {cells} |")
    lines += ["", "| websocket echo, asgi_apps:echo | messages/s | CPU µs/message |", "| --- | ---: | ---: |"]
    for name in dict.fromkeys(n for n, kind in results if kind == "ws"):
        lines.append(f"| {name} | {med[(name, 'ws')]:.0f} | {cpu[(name, 'ws')]:.0f} |")
    lines += [
        "",
        "| ratio, median of the rounds' ratios (lowest-highest) | per second, keep-alive "
        "| per second, new connection | CPU capacity, keep-alive | CPU capacity, new connection "
        "| target | met (median) |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    rows = [("ip-hash / round-robin", KERNEL, ROUND_ROBIN, 0.95, ("keep-alive", "close")),
            ("ip-hash, even split / round-robin", EVEN, ROUND_ROBIN, None, ("keep-alive", "close")),
            ("ip-hash / uvicorn --workers", KERNEL, UVICORN, 1.0, ("keep-alive", "close")),
            ("ip-hash / gunicorn ASGI worker", KERNEL, GUNICORN, None, ("keep-alive", "close")),
            ("websocket echo: sticky / uvicorn direct", WS_STICKY, WS_UVICORN, 0.9, ("ws",))]  # fmt: skip
    for label, a, b, target, kinds in rows:
        if (b, kinds[0]) not in results:
            continue
        pairs = [(results[(a, k)], results[(b, k)]) for k in kinds]
        rate = [paired(x, y, lambda p, q: p[0] / q[0]) for x, y in pairs]
        capacity = [paired(x, y, lambda p, q: q[1] / p[1]) for x, y in pairs]
        if len(kinds) == 1:
            rate, capacity = [rate[0], "-"], [capacity[0], "-"]
        met = "-" if target is None else ", ".join(judge(cell, target) for cell in rate if cell != "-")
        goal = ("diagnostic" if a == EVEN else "baseline") if target is None else f">= {target:.2f}"
        lines.append(f"| {label} | {' | '.join(rate + capacity)} | {goal} | {met} |")
    lines += [
        "",
        "How to read it: CPU capacity is requests (or messages) per CPU-second of the serving processes, "
        "the inverse of the CPU columns, steadier than the rates on a shared machine. Ratios are taken "
        "within each round and the median of the rounds is shown with the lowest and highest; 'met' "
        "judges each rate median (keep-alive, then new connection) against the target. The sticky rows and "
        "uvicorn's run the same uvicorn in each worker, which parses HTTP with h11 and websockets with "
        "wsproto here (httptools and websockets are not installed); gunicorn's ASGI worker has its own "
        "parser. Both websocket rows run that uvicorn: the sticky one on its kernel-steered socket. "
        "The sticky master's cluster server answers each worker's session reads and writes on one "
        "thread per connection, under the master's GIL.",
        *(split or []),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--sources", type=int, default=64)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--loadgen-processes", type=int, default=2, help="processes of the load generator")
    parser.add_argument("--write", type=Path, default=None, help="put the results into this markdown file")
    parser.add_argument("--section", default="## ASGI, session app and websocket echo")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "benchmarks/bench_asgi.py", *given])
    print(command, flush=True)
    before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    from storekit.testing.redis_server import RedisServer

    os.environ[STORE_ENV] = "cluster"  # the sticky workers; the others get "redis" in their environment
    with RedisServer() as redis:
        assert redis.process is not None
        http, gunicorn_note = http_servers(args, redis.url, redis.process.pid)
        print(f"gunicorn: {gunicorn_note}", flush=True)
        ws = ws_servers(args)
        results = measure(args, http, ws)
    load = f"{before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    kernel, even = http[KERNEL], http[EVEN]
    assert isinstance(kernel, Sticky)
    assert isinstance(even, Sticky)
    assert even.seed is not None
    split = split_note(args, results, kernel.shares, even.seed)
    ws_sticky = ws[WS_STICKY]
    assert isinstance(ws_sticky, Sticky)
    if ws_sticky.shares:
        held = ws_sticky.shares
        split += [
            "",
            f"The websocket rows' {args.connections} connections come from {len(ws_sticky.sources)} "
            f"addresses; under ip-hash the busiest worker held a median {statistics.median(held):.2f} "
            f"({min(held):.2f}-{max(held):.2f}) of them, while uvicorn's workers accept from one shared "
            "listening socket.",
        ]
    section = report(args, results, command, load, gunicorn_note, split)
    print(section)
    if args.write is not None:
        write_section(args.write, args.section, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
