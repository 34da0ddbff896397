"""A short-request load on a sticky server, stopped with SIGTERM while it runs (WSGI and ASGI tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

from helpers import wait_until

from storekit.reference.sticky import StickyServer
from storekit.testing.http_client import loopback_sources


def one_request(port: int, source: str) -> str:
    """'ok'; 'refused' when the connection was never made (the server stopped listening); else the failure."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    except OSError as exc:  # refused, or SYNs dropped until it is: not a request the server had
        return "refused" if isinstance(exc, ConnectionRefusedError | TimeoutError) else repr(exc)
    with sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        except OSError as exc:
            return f"{type(exc).__name__} after connecting"
    return "ok" if data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok") else f"answer {data[:40]!r}"


def stop_under_load(server: StickyServer, clients: int = 32) -> Counter[str]:
    """Run ``clients`` request loops from distinct addresses against the started ``server``, stop it
    (SIGTERM to the master) once 300 requests were answered, and count each request's outcome."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stopped = threading.Event()

    def client(source: str) -> None:
        deadline = time.monotonic() + 20  # bounded whatever happens
        while time.monotonic() < deadline:
            outcome = one_request(server.port, source)
            with lock:
                outcomes[outcome] += 1
            if outcome == "refused" and stopped.is_set():
                return

    threads = [threading.Thread(target=client, args=(s,)) for s in loopback_sources(clients, start=30)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: outcomes["ok"] >= 300, 20, f"the load did not get going: {outcomes}")
        stopped.set()
        server.stop()  # SIGTERM to the master, with requests in flight on every worker
    finally:
        stopped.set()
        server.stop()
        for thread in threads:
            thread.join(25)
    return outcomes
