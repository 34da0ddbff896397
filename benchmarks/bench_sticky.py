"""Sticky server vs. round-robin vs. gunicorn vs. nginx, on loopback, from 64 client addresses.

    .venv/bin/python benchmarks/bench_sticky.py --duration 3 --rounds 3 --write docs/benchmarks.md

Each candidate serves the same WSGI app (``--app MODULE:ATTR``, a factory with
``--factory``) on the same number of workers; the load generator (loadgen.py)
keeps ``--connections`` requests in flight from ``--sources`` addresses in
127.0.0.0/8, once with keep-alive and once with a new connection per request
(where the hand-off cost shows). Rounds are interleaved and the median kept,
since this machine is shared. nginx answering from its config is the control:
it shows how many requests per second the load generator can make at all.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import pkgutil
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _docs import paired, write_section  # noqa: E402
from loadgen import run_load, run_load_parallel, source_addresses  # noqa: E402

from storekit.reference.sticky import StickyServer  # noqa: E402


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The trivial app: 13 bytes of text."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


Server = Callable[[], AbstractContextManager[tuple[int, int]]]  # entered: serving; (port, root pid)
TICK = os.sysconf("SC_CLK_TCK")


def own_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` alone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and all its descendants."""
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICK
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += used.get(pid, 0.0)
        stack += [child for child, ppid in parent.items() if ppid == pid]
    return total


def sticky(app: Callable[..., Any], factory: bool, workers: int, routing: str, mode: str) -> Server:
    @contextlib.contextmanager
    def serve() -> Iterator[tuple[int, int]]:
        with StickyServer(app, factory=factory, workers=workers, routing=routing, mode=mode) as server:  # type: ignore[arg-type]
            assert server.master_pid is not None
            yield server.port, server.master_pid

    return serve


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before serving")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if sock.recv(12).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} did not serve on port {port} within {timeout}s")


@contextlib.contextmanager
def process(argv: list[str], port: int, **kw: Any) -> Iterator[tuple[int, int]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, **kw)
    try:
        wait_ready(port, proc)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gunicorn(
    app_spec: str,
    factory: bool,
    workers: int,
    worker_class: str,
    threads: int,
    env: dict[str, str] | None = None,
) -> Server:
    def serve() -> AbstractContextManager[tuple[int, int]]:
        port = free_port()
        target = f"{app_spec}()" if factory else app_spec
        argv = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", worker_class]
        argv += ["--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
        argv += ["--pythonpath", str(HERE), "--keep-alive", "5", target]
        return process(argv, port, env=env)

    return serve


def nginx(workers: int) -> Server | None:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        return None

    @contextlib.contextmanager
    def serve() -> Iterator[tuple[int, int]]:
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
            temps = " ".join(
                f"{kind}_temp_path {tmp}/{kind};" for kind in ("proxy", "fastcgi", "uwsgi", "scgi")
            )
            conf = Path(tmp, "nginx.conf")
            conf.write_text(
                f"worker_processes {workers}; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;\n"
                "events { worker_connections 4096; }\n"
                f"http {{ access_log off; client_body_temp_path {tmp}/body; {temps}\n"
                "  keepalive_requests 1000000;\n"
                f'  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "Hello, world!"; }} }} }}\n'
            )
            with process([binary, "-c", str(conf), "-p", tmp, "-e", f"{tmp}/error.log"], port) as ready:
                yield ready

    return serve


def candidates(args: argparse.Namespace) -> dict[str, Server]:
    app = pkgutil.resolve_name(args.app)
    n = args.workers
    out: dict[str, Server] = {
        "sticky ip-hash, kernel": sticky(app, args.factory, n, "ip-hash", "kernel"),
        "sticky round-robin, kernel": sticky(app, args.factory, n, "round-robin", "kernel"),
        "sticky ip-hash, handoff": sticky(app, args.factory, n, "ip-hash", "handoff"),
        "sticky round-robin, handoff": sticky(app, args.factory, n, "round-robin", "handoff"),
        "gunicorn gthread": gunicorn(args.app, args.factory, n, "gthread", args.threads),
        "gunicorn sync": gunicorn(args.app, args.factory, n, "sync", 1),
    }
    if args.redis_baseline:  # what a user would run instead: gunicorn, sessions in Redis
        from storekit.reference.redis import ENV_URL

        env = {**os.environ, "STOREKIT_BENCH_STORE": "redis", ENV_URL: args.redis_baseline}
        out[REDIS_BASELINE] = gunicorn(args.app, args.factory, n, "gthread", args.threads, env)
    control = nginx(n)
    if control is not None:
        out["nginx (control, not WSGI)"] = control
    return out


REDIS_BASELINE = "gunicorn gthread, sessions in RedisStore"

# (name, keep-alive) -> [(req/s, CPU µs per request of all the server's processes, of its master alone)]
Results = dict[tuple[str, bool], list[tuple[float, float, float]]]


def measure(args: argparse.Namespace) -> Results:
    results: Results = {}
    servers = candidates(args)
    sources = source_addresses(args.sources)
    for round_ in range(args.rounds):
        for name, serve in servers.items():
            with serve() as (port, root):
                for keepalive in (True, False):
                    run_load(
                        "127.0.0.1", port, connections=args.connections, duration=0.3, sources=sources,
                        cookies=args.cookies,
                    )  # fmt: skip
                    cpu, master = tree_cpu(root), own_cpu(root)
                    result = run_load_parallel(
                        "127.0.0.1", port, processes=args.loadgen_processes, connections=args.connections,
                        duration=args.duration, sources=sources, keepalive=keepalive, cookies=args.cookies,
                    )  # fmt: skip
                    cpu_per_request = (tree_cpu(root) - cpu) / max(result.requests, 1) * 1e6
                    master_per_request = (own_cpu(root) - master) / max(result.requests, 1) * 1e6
                    sample = (result.rps, cpu_per_request, master_per_request)
                    results.setdefault((name, keepalive), []).append(sample)
                    p99 = result.percentile(0.99) * 1e3
                    status = (
                        f"{result.rps:8.0f} req/s  {cpu_per_request:6.0f} µs CPU/req  errors {result.errors}"
                    )
                    status += f"  p99 {p99:.1f} ms"
                    print(
                        f"round {round_ + 1}  {name:30} {'keep-alive' if keepalive else 'close':10} {status}"
                    )
    return results


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    model = models[0] if models else platform.processor() or "unknown CPU"
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("waitress", "gunicorn"))
    system = f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({model})"
    return f"{system}, Python {platform.python_version()}, {versions}"


def report(args: argparse.Namespace, results: Results, command: str, load: str) -> str:
    rps = {key: statistics.median(s[0] for s in samples) for key, samples in results.items()}
    cpu = {key: statistics.median(s[1] for s in samples) for key, samples in results.items()}
    master = {key: statistics.median(s[2] for s in samples) for key, samples in results.items()}
    names = list(dict.fromkeys(name for name, _ in results))
    lines = [
        args.section,
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine()}; loopback; {args.workers} workers, "
        f"{args.connections} connections from {args.sources} client addresses in 127.0.0.0/8, "
        f"app `{args.app}`{f' ({args.store} sessions, clients keep cookies)' if args.cookies else ''}, "
        f"{args.duration:g}s per run, median of {args.rounds} interleaved rounds, "
        f"load from {args.loadgen_processes} processes of benchmarks/loadgen.py that share the cores "
        f"with the servers. Load average before / after: {load} (the machine is shared with other work, "
        "so requests per second vary by tens of percent from run to run; the CPU time the server's "
        "processes, master included, spend per request is the steadier measure of overhead).",
        "",
        f"    {command}",
        "",
        "| server | req/s, keep-alive | req/s, new connection per request "
        "| CPU µs/req, keep-alive | CPU µs/req, new connection | of which the master's, new connection |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        on, off = (name, True), (name, False)
        cells = f"{rps[on]:.0f} | {rps[off]:.0f} | {cpu[on]:.0f} | {cpu[off]:.0f} | {master[off]:.0f}"
        lines.append(f"| {name} | {cells} |")
    lines.append("")
    kernel, rr, handoff, gthread = (
        "sticky ip-hash, kernel", "sticky round-robin, kernel", "sticky ip-hash, handoff", "gunicorn gthread",
    )  # fmt: skip
    redis = (REDIS_BASELINE, True) in results
    lines.append(
        "| ratio (higher is better), median of the rounds' ratios (lowest-highest) | req/s, keep-alive "
        "| req/s, new connection | CPU capacity, keep-alive | CPU capacity, new connection | target |"
    )
    lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for label, a, b, target in (
        ("ip-hash kernel / round-robin kernel", kernel, rr, ">= 0.95"),
        ("ip-hash kernel / gunicorn gthread", kernel, gthread, ">= 1.00"),
        ("ip-hash handoff / ip-hash kernel", handoff, kernel, ">= 0.80"),
        *([(f"ip-hash kernel / {REDIS_BASELINE}", kernel, REDIS_BASELINE, "baseline")] if redis else []),
    ):
        pairs = [(results[(a, k)], results[(b, k)]) for k in (True, False)]
        rps_cells = [paired(x, y, lambda p, q: p[0] / q[0]) for x, y in pairs]
        cpu_cells = [paired(x, y, lambda p, q: q[1] / p[1]) for x, y in pairs]  # requests per CPU-second
        lines.append(f"| {label} | {' | '.join(rps_cells + cpu_cells)} | {target} |")
    lines += [
        "",
        "How to read it: once a connection is placed, every sticky variant serves it with the same waitress "
        "worker, so the keep-alive columns of the four sticky rows differ by noise only. Kernel steering "
        "runs a BPF program once per new connection, inside the kernel: no master CPU at all. Hand-off "
        "costs the master the CPU in the last column for each new connection, and the workers a little "
        "more to receive it. CPU capacity is requests per CPU-second of the server's processes (the "
        "inverse of the CPU columns), less sensitive to the other work on the machine than req/s. "
        "Ratios are taken within each round, where both servers ran minutes apart at most, and the "
        "median of the rounds is shown with the lowest and highest. "
        "nginx answering from its config shows what the load generator can drive."
        + (
            f" The last ratio compares with {REDIS_BASELINE}: the same app under gunicorn with its "
            "sessions in a redis-server on loopback, which is what a user would run instead of a "
            "sticky server with ClusterStore. CPU columns count the server's processes only, not the "
            "cluster master (the benchmark's own process) nor redis-server."
            if redis
            else ""
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--app", default="bench_sticky:hello", help="MODULE:ATTR of the WSGI app (or factory)"
    )
    parser.add_argument("--factory", action="store_true", help="--app is a factory called in each worker")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (waitress and gthread)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--sources", type=int, default=64)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loadgen-processes", type=int, default=2, help="processes of the load generator")
    parser.add_argument("--write", type=Path, default=None, help="put the results into this markdown file")
    parser.add_argument("--section", default="## Sticky server", help="the heading of the section to write")
    parser.add_argument("--cookies", action="store_true", help="each client address keeps its cookie")
    parser.add_argument(
        "--store", choices=("none", "cluster", "redis"), default="none",
        help="start a ClusterStore master or a redis-server for a session app first",
    )  # fmt: skip
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "benchmarks/bench_sticky.py", *given])
    before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with contextlib.ExitStack() as stack:
        args.redis_baseline = None
        if args.store == "cluster":
            from storekit.reference import cluster

            cluster.setup()
            if args.cookies and shutil.which("redis-server"):
                from storekit.testing.redis_server import RedisServer

                args.redis_baseline = stack.enter_context(RedisServer()).url
        elif args.store == "redis":
            from storekit.reference.redis import ENV_URL
            from storekit.testing.redis_server import RedisServer

            os.environ[ENV_URL] = stack.enter_context(RedisServer()).url
        os.environ["STOREKIT_BENCH_STORE"] = args.store
        results = measure(args)
    load = f"{before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    section = report(args, results, command.strip(), load)
    print(section)
    if args.write is not None:
        write_section(args.write, args.section, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
