"""A small HTTP/1.1 load generator whose connections come from many source addresses.

wrk and ab send everything from one address, which ip-hash rightly puts on one
worker; this one binds each connection to the next address of a list (all of
127.0.0.0/8 reaches loopback on Linux) before it connects. One thread, one
selector, non-blocking sockets: cheap enough per request that a Python WSGI
server, not this, is the bottleneck (the benchmark also runs it against nginx
to show that).

    python benchmarks/loadgen.py 127.0.0.1 8000 --connections 50 --duration 5 --sources 64
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import selectors
import socket
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LoadResult", "run_load", "run_load_parallel", "source_addresses"]

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux: pick the port at connect()


def source_addresses(count: int) -> list[str]:
    """127.0.0.1, 127.0.0.2, ... : `count` loopback client addresses."""
    return [f"127.0.{(i >> 8) & 255}.{i & 255}" for i in range(1, count + 1)]


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    connections: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, float | int]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies"}
        out.update(rps=round(self.rps, 1), p50_ms=round(self.percentile(0.5) * 1e3, 2))
        out["p99_ms"] = round(self.percentile(0.99) * 1e3, 2)
        return out


class _Conn:
    __slots__ = ("buf", "closing", "need", "sent_at", "sock", "source")

    def __init__(self, sock: socket.socket, source: str) -> None:
        self.sock = sock
        self.source = source
        self.buf = b""
        self.need = -1  # total bytes of the response once its head is parsed
        self.closing = False  # the response said Connection: close
        self.sent_at = 0.0


def _response_length(buf: bytes) -> int:
    """Length of the whole response in `buf` once its head is in, else -1 (-2: no Content-Length)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return -1
    head = buf[:end].lower()
    at = head.find(b"\ncontent-length:")
    if at < 0:
        return -2
    value = head[at + 16 : head.find(b"\r", at + 16) if head.find(b"\r", at + 16) > 0 else None]
    return end + 4 + int(value.strip())


def run_load(
    host: str,
    port: int,
    *,
    connections: int = 50,
    duration: float = 5.0,
    sources: list[str] | None = None,
    keepalive: bool = True,
    path: str = "/",
    timeout: float = 5.0,
    cookies: bool = False,
) -> LoadResult:
    """Keep `connections` requests in flight for `duration` seconds; count the answers.

    With `cookies`, each source address is one client: it sends back the cookie
    its last answer set, as a browser would, so a session app sees returning
    visitors rather than a new session per request.
    """
    sources = sources or ["127.0.0.1"]
    connection = b"" if keepalive else b"Connection: close\r\n"
    head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode() + connection
    jar: dict[str, bytes] = {}

    def request_from(source: str) -> bytes:
        cookie = jar.get(source) if cookies else None
        return head + (b"Cookie: " + cookie + b"\r\n" if cookie else b"") + b"\r\n"

    def remember(source: str, buf: bytes) -> None:
        at = buf.lower().find(b"\r\nset-cookie:", 0, buf.find(b"\r\n\r\n"))
        if at >= 0:
            value = buf[at + 13 : buf.find(b"\r\n", at + 2)].strip()
            jar[source] = value.split(b";", 1)[0]

    sel = selectors.DefaultSelector()
    result = LoadResult()
    next_source = 0
    end = time.monotonic() + duration

    def open_conn() -> None:
        nonlocal next_source
        source = sources[next_source % len(sources)]
        next_source += 1
        sock = socket.socket(socket.AF_INET6 if ":" in source else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            result.errors += 1
            return
        conn = _Conn(sock, source)
        result.connections += 1
        conn.sent_at = time.monotonic()
        sel.register(sock, selectors.EVENT_WRITE, conn)

    def close(conn: _Conn, *, error: bool) -> None:
        sel.unregister(conn.sock)
        conn.sock.close()
        if error:
            result.errors += 1
        if time.monotonic() < end:
            open_conn()

    for _ in range(connections):
        open_conn()
    started = last_check = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= end:
            break
        events = sel.select(min(0.1, end - now))
        now = time.monotonic()
        for key, mask in events:
            conn: _Conn = key.data
            try:
                if mask & selectors.EVENT_WRITE:
                    conn.sock.send(request_from(conn.source))
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
                    continue
                data = conn.sock.recv(65536)
            except OSError:
                close(conn, error=True)
                continue
            if not data:  # closed before the whole answer came
                close(conn, error=conn.need != -2)
                if conn.need == -2:
                    result.requests += 1
                continue
            conn.buf += data
            if conn.need < 0:
                conn.need = _response_length(conn.buf)
                conn.closing = conn.need != -1 and b"\nconnection: close" in conn.buf[:4096].lower()
            if conn.need < 0 or len(conn.buf) < conn.need:
                continue
            result.requests += 1
            result.latencies.append(now - conn.sent_at)
            if cookies:
                remember(conn.source, conn.buf)
            if keepalive and now < end and not conn.closing:
                conn.buf, conn.need, conn.sent_at = b"", -1, now
                conn.sock.send(request_from(conn.source))
            else:
                close(conn, error=False)
        if now - last_check > 0.5:  # nothing may hang: drop stuck connections
            last_check = now
            for key in list(sel.get_map().values()):
                stuck: _Conn = key.data
                if now - stuck.sent_at > timeout:
                    close(stuck, error=True)
    result.seconds = time.monotonic() - started
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    sel.close()
    return result


def run_load_parallel(host: str, port: int, *, processes: int = 1, **kw: Any) -> LoadResult:
    """`run_load` in `processes` forked processes sharing the connections; the results added up."""
    if processes <= 1:
        return run_load(host, port, **kw)
    connections = kw.pop("connections", 50)
    sources = kw.pop("sources", None) or ["127.0.0.1"]
    jobs = []
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        for i in range(processes):
            share = connections // processes + (1 if i < connections % processes else 0)
            jobs.append(
                pool.submit(run_load, host, port, connections=share, sources=sources[i::processes], **kw)
            )
        parts = [job.result() for job in jobs]
    total = LoadResult(seconds=max(part.seconds for part in parts))
    for part in parts:
        total.requests += part.requests
        total.errors += part.errors
        total.connections += part.connections
        total.latencies += part.latencies
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--sources", type=int, default=64, help="how many 127.0.0.x client addresses")
    parser.add_argument("--close", action="store_true", help="a new connection for every request")
    parser.add_argument("--path", default="/")
    parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    args = parser.parse_args(argv)
    result = run_load_parallel(
        args.host,
        args.port,
        processes=args.processes,
        connections=args.connections,
        duration=args.duration,
        sources=source_addresses(args.sources),
        keepalive=not args.close,
        path=args.path,
    )
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
