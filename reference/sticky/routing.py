"""Pure routing logic of the sticky server: no sockets, no processes.

Which worker slot serves a connection is decided here, from a client address,
a peeked request head, or a counter; option values are checked here too, so
that the programmatic API and the command line fail with the same messages.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "HEAD_LIMIT",
    "MODES",
    "ROUTINGS",
    "HeadRoute",
    "HeadScanner",
    "Mode",
    "Routing",
    "address_key",
    "check_mode",
    "check_routing",
    "check_threads",
    "check_workers",
    "fmix32",
    "oat_hash",
    "parse_bind",
    "route_head",
    "slot_for_address",
    "slot_for_key",
]

Routing = Literal["ip-hash", "round-robin", "header"]
Mode = Literal["auto", "kernel", "handoff"]
ROUTINGS: tuple[Routing, ...] = ("ip-hash", "round-robin", "header")
MODES: tuple[Mode, ...] = ("auto", "kernel", "handoff")

#: How much of a request head the master peeks at in header mode, at most.
HEAD_LIMIT = 32 * 1024

_MASK = 0xFFFFFFFF
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def oat_hash(data: bytes, seed: int = 0) -> int:
    """Jenkins' one-at-a-time hash over `data`, unsigned 32-bit, starting from `seed`.

    sticky-session hashes addresses with it too; here every step is unsigned, so
    the kernel's classic BPF program (see _sticky_bpf) computes exactly this.
    """
    h = seed & _MASK
    for byte in data:
        h = (h + byte) & _MASK
        h = (h + (h << 10)) & _MASK
        h ^= h >> 6
    h = (h + (h << 3)) & _MASK
    h ^= h >> 11
    return (h + (h << 15)) & _MASK


def address_key(address: str) -> bytes:
    """The bytes an address hashes as: 4 for IPv4, 16 for IPv6.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) gives the IPv4 bytes, so a
    dual-stack listener routes a client as an IPv4-only one would. A zone
    (``fe80::1%eth0``) is ignored. Anything that is not an IP address (a Unix
    socket path, a hostname in a header) hashes as its UTF-8 text.
    """
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    try:
        packed = ipaddress.ip_address(text).packed
    except ValueError:
        return address.encode("utf-8", "surrogateescape")
    if len(packed) == 16 and packed.startswith(_V4_MAPPED_PREFIX):
        return packed[12:]
    return packed


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finalizer: every input bit moves every output bit.

    One-at-a-time alone leaves neighbouring addresses (127.0.0.1, .2, ...) in
    step modulo 3 or 6 workers; this makes ``% workers`` fair for any count.
    """
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    return h ^ (h >> 16)


def slot_for_key(key: bytes, workers: int, seed: int = 0) -> int:
    """The slot in ``range(workers)`` for routing key `key`: ``fmix32(oat_hash(key, seed)) % workers``."""
    return fmix32(oat_hash(key, seed)) % workers


def slot_for_address(address: str, workers: int, seed: int = 0) -> int:
    """The slot that ip-hash routing gives a client at `address`."""
    return slot_for_key(address_key(address), workers, seed)


@dataclass(frozen=True)
class HeadRoute:
    """What a peeked request head says about routing.

    `key` is the routing key found (None: use the peer address); `final` is
    False while more bytes could still change the answer.
    """

    key: bytes | None
    final: bool


class HeadScanner:
    """The routing key of a request head fed to it in pieces, each byte looked at once.

    `feed` takes the bytes that arrived since the last call (never the whole head
    again), so a head that trickles in forever costs its length in total, not its
    length squared; a line cut by a piece waits, bounded by HEAD_LIMIT, for the
    rest. `header` is the address header to honour (None: the peer is not a
    trusted proxy, so only the cookie counts). The rules are `route_head`'s.
    """

    def __init__(self, *, header: str | None, cookie: str | None) -> None:
        self._header = header.lower().encode("latin-1") if header else None
        self._cookie = cookie
        self._line = bytearray()
        self._first = True  # the request line comes first; it holds no header
        self._found: bytes | None = None
        self.seen = 0
        self.route: HeadRoute | None = None

    @property
    def wanted(self) -> bool:
        """Whether the head can say anything at all (an address header to honour or a cookie)."""
        return self._header is not None or self._cookie is not None

    def feed(self, data: bytes) -> HeadRoute:
        """The answer after `data`, the next bytes of the head; final once it cannot change."""
        if self.route is not None:
            return self.route
        room = HEAD_LIMIT - self.seen
        data = data[:room]
        self.seen += len(data)
        start = 0
        while self.route is None:
            newline = data.find(b"\n", start)
            if newline < 0:
                self._line += data[start:]
                break
            self._line += data[start:newline]
            start = newline + 1
            self._take_line()
        if self.route is None and self.seen >= HEAD_LIMIT:
            return self.finish()
        return self.route or HeadRoute(None, False)

    def finish(self) -> HeadRoute:
        """The final answer now (end of stream, timeout or HEAD_LIMIT): the cut line counts too."""
        if self.route is None:
            if self._line:
                self._take_line()
            if self.route is None:
                self._end()
        assert self.route is not None
        return self.route

    def _take_line(self) -> None:
        line = bytes(self._line).rstrip(b"\r")
        self._line.clear()
        if self._first:
            self._first = False
            if line:
                return
        if not line:
            self._end()
            return
        name, sep, value = line.partition(b":")
        if not sep:
            return
        name = name.strip().lower()
        if self._cookie is not None and name == b"cookie":
            cookie_value = _cookie_value(value, self._cookie)
            if cookie_value:
                self.route = HeadRoute(b"cookie:" + cookie_value, True)
        elif name == self._header and self._found is None:
            first = value.split(b",", 1)[0].strip()
            if first:
                self._found = first

    def _end(self) -> None:
        key = address_key(self._found.decode("latin-1")) if self._found is not None else None
        self.route = HeadRoute(key, True)


def route_head(head: bytes, *, header: str | None, cookie: str | None, eof: bool = False) -> HeadRoute:
    """Find the routing key in the start of a request (bytes peeked, never consumed).

    The cookie `cookie` wins when present; otherwise the first address of
    header `header` (X-Forwarded-For: ``client, proxy1, proxy2``) as ip-hash
    would hash it. Only header lines are looked at; this is not an HTTP parser,
    and the worker's server still reads and validates the whole request.
    The answer is final once the head is complete, `eof` is reached, or
    HEAD_LIMIT bytes were seen; with no key the caller routes by peer address.
    The master feeds a `HeadScanner` piece by piece instead; this is the same on a whole buffer.
    """
    scanner = HeadScanner(header=header, cookie=cookie)
    route = scanner.feed(head)
    return scanner.finish() if eof else route


def _cookie_value(header_value: bytes, name: str) -> bytes | None:
    wanted = name.encode("latin-1")
    for part in header_value.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == wanted:
            return value.strip().strip(b'"') or None
    return None


def check_workers(workers: object) -> int:
    """`workers` as an int >= 1, or ValueError that says the fix."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ValueError(f"--workers expects a whole number of processes, got {workers!r}")
    if workers < 1:
        raise ValueError(
            f"--workers expects at least 1 worker process, got {workers!r}; use --workers 1 or more"
        )
    return workers


def check_threads(threads: object) -> int:
    """`threads` (per worker) as an int >= 1, or ValueError that says the fix."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"--threads expects at least 1 thread per worker, got {threads!r}")
    return threads


def check_routing(routing: object) -> Routing:
    """`routing` if it is a known routing, or ValueError naming the choices."""
    if routing not in ROUTINGS:
        choices = ", ".join(ROUTINGS)
        raise ValueError(f"--routing expects one of {choices}, got {routing!r}")
    return routing


def check_mode(mode: object) -> Mode:
    """`mode` if it is a known mode, or ValueError naming the choices."""
    if mode not in MODES:
        raise ValueError(f"mode expects one of {', '.join(MODES)}, got {mode!r}")
    return mode


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6, ``:8000`` for all IPv4) as (host, port)."""
    fix = "use HOST:PORT, e.g. 127.0.0.1:8000, [::1]:8000 or 0.0.0.0:0 for any free port"
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"--bind expects HOST:PORT, got {text!r}; {fix}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"--bind port must be 0-65535, got {port} in {text!r}; {fix}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"--bind needs brackets around an IPv6 host, got {text!r}; {fix}")
    return host or "0.0.0.0", port
