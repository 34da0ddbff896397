"""Client-side helpers for checking a sticky server: requests from chosen source addresses.

Linux routes all of 127.0.0.0/8 to loopback, so binding a client socket to
127.0.0.N before connecting makes it a distinct client to ip-hash routing. Used
by the project's tests and by the sticky clauses of the conformance suite.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Reply", "loopback_sources", "process_alive", "request"]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def loopback_sources(count: int, start: int = 1) -> list[str]:
    """`count` IPv4 loopback addresses: 127.0.0.1, 127.0.0.2, ... (127.0.1.0 after 127.0.0.255)."""
    return [f"127.0.{(n >> 8) & 255}.{n & 255}" for n in range(start, start + count)]


def request(
    host: str,
    port: int,
    path: str = "/",
    *,
    source: str | None = None,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 5.0,
) -> Reply:
    """One request on a new connection from `source` (an address to bind, port chosen by the kernel)."""
    conn = http.client.HTTPConnection(
        host, port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
