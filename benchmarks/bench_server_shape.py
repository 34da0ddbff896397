"""Why the cluster server gives each worker's connection a thread: two shapes of Python server.

Both servers answer a 40-byte request with a 1,000-byte reply over a Unix socket, doing no other
work, in a process of their own:

* ``threads``: a thread per connection, blocking in ``recv_into`` (the cluster server's shape);
* ``epoll``: one thread, non-blocking sockets, ``select.epoll`` (the shape of an event loop,
  such as the Node master of strong-cluster-connect-store, or a Python server on asyncio).

1, 2 and 4 client processes make round trips as fast as they can; the shapes take turns
in every round. Reported: round trips per second, the server's CPU time per round trip,
and the ratio epoll / threads of both, taken within each round (median and range).

    .venv/bin/python benchmarks/bench_server_shape.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _docs import paired, write_section

REQUEST = b"q" * 40
REPLY = b"r" * 1000
SHAPES = ("threads", "epoll")
ctx = multiprocessing.get_context("fork")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _threads(listener: socket.socket) -> None:
    def serve(conn: socket.socket) -> None:
        buf = bytearray(1 << 16)
        while conn.recv_into(buf):
            conn.sendall(REPLY)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def _epoll(listener: socket.socket) -> None:
    poll = select.epoll()
    poll.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    buf = bytearray(1 << 16)
    while True:
        for fd, _ in poll.poll():
            if fd == listener.fileno():
                conn, _ = listener.accept()
                conn.setblocking(False)
                conns[conn.fileno()] = conn
                poll.register(conn.fileno(), select.EPOLLIN)
                continue
            conn = conns[fd]
            try:
                if conn.recv_into(buf):
                    conn.send(REPLY)  # 1,000 bytes always fit in an empty socket buffer
                    continue
            except BlockingIOError:
                continue
            poll.unregister(fd)
            del conns[fd]
            conn.close()


def _server(shape: str, path: str, ready: Any, report: Any) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    serve = _threads if shape == "threads" else _epoll
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    ready.set()
    while True:  # answer "cpu?" with this process's CPU seconds
        report.recv_bytes()
        report.send_bytes(repr(_cpu()).encode())


def _client(path: str, seconds: float, go: Any, out: Any) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    buf = bytearray(1 << 16)
    for _ in range(100):  # warm up
        sock.sendall(REQUEST)
        sock.recv_into(buf)
    out.send_bytes(b"ready")
    go.wait()
    count, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        for _ in range(20):
            sock.sendall(REQUEST)
            got = sock.recv_into(buf)
            while got < len(REPLY):
                got += sock.recv_into(memoryview(buf)[got:])
        count += 20
    out.send_bytes(repr(count).encode())


def measure(shape: str, clients: int, seconds: float) -> tuple[float, float]:
    """(round trips per second, server CPU µs per round trip) of one run."""
    directory = tempfile.mkdtemp(prefix="bench-shape-")
    path = os.path.join(directory, "sock")
    ready, go = ctx.Event(), ctx.Event()
    report, theirs = ctx.Pipe()
    server = ctx.Process(target=_server, args=(shape, path, ready, theirs), daemon=True)
    server.start()
    ready.wait(10)
    pipes, procs = [], []
    try:
        for _ in range(clients):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_client, args=(path, seconds, go, send), daemon=True)
            proc.start()
            pipes.append(receive)
            procs.append(proc)
        for receive in pipes:
            receive.recv_bytes()
        report.send_bytes(b"cpu?")
        before = float(report.recv_bytes())
        go.set()
        count = sum(int(receive.recv_bytes()) for receive in pipes)
        report.send_bytes(b"cpu?")
        used = float(report.recv_bytes()) - before
    finally:
        for proc in procs:
            proc.join(5)
        server.kill()
        server.join()
        os.unlink(path)
        os.rmdir(directory)
    return count / seconds, used / max(count, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--clients", default="1,2,4", help="client counts, comma-separated")
    parser.add_argument("--section", default="## Cluster server: a thread per connection or one epoll thread")
    parser.add_argument("--write", type=Path, help="replace the section of this markdown file")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.clients.split(",")]
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for round_ in range(args.rounds):
        for clients in counts:
            for shape in SHAPES if round_ % 2 == 0 else SHAPES[::-1]:
                result = measure(shape, clients, args.seconds)
                runs.setdefault((shape, clients), []).append(result)
                print(f"round {round_ + 1}  {shape:8} x{clients}: {result[0]:9,.0f} round trips/s  "
                      f"server {result[1]:5.1f} µs CPU each", flush=True)  # fmt: skip
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    system = f"{platform.system()} {platform.release()}, {os.cpu_count()} cores"
    system += f", Python {platform.python_version()}"
    lines = [
        args.section,
        "",
        f"Machine: {system}. Load average before/after: {load_before} / {load_after}.",
        f"Command: `python benchmarks/bench_server_shape.py --seconds {args.seconds:g} --rounds {args.rounds}"
        f"{' --write ' + str(args.write) if args.write else ''}`; {args.rounds} interleaved rounds.",
        "",
        "Two Python servers that do no work: 40 bytes in, 1,000 bytes out over a Unix socket, from "
        "client processes that each keep one request in flight. `threads` blocks a thread per "
        "connection in `recv_into` (the cluster server's shape); `epoll` serves every connection "
        "on one thread with `select.epoll`.",
        "",
        "| clients | threads: round trips/s | epoll: round trips/s | threads: server CPU µs each "
        "| epoll: server CPU µs each | epoll / threads, round trips/s | epoll / threads, server CPU |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for clients in counts:
        t, e = runs[("threads", clients)], runs[("epoll", clients)]
        rate_t, rate_e = (statistics.median(r[0] for r in runs_) for runs_ in (t, e))
        cpu_t, cpu_e = (statistics.median(r[1] for r in runs_) for runs_ in (t, e))
        lines.append(
            f"| {clients} | {rate_t:,.0f} | {rate_e:,.0f} | {cpu_t:.1f} | {cpu_e:.1f} "
            f"| {paired(e, t, lambda x, y: x[0] / y[0])} | {paired(e, t, lambda x, y: x[1] / y[1])} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(args.write, args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
