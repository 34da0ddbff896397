"""The master's data path in handoff mode: accept, choose a slot, pass the socket on.

The master never reads a request: ip-hash and round-robin decide from the peer
address or a counter; header routing peeks (MSG_PEEK) at the request head,
waking again only when more bytes arrive (SO_RCVLOWAT), feeds only the new
bytes to a `HeadScanner` (with SO_PEEK_OFF, on Linux 6.10 and later, the kernel
returns only those; elsewhere each peek copies the head again but scans only
the new part), and after `header_timeout` routes by the peer address.
The forwarded header counts only from a trusted proxy; from any other peer the
master does not even peek unless a routing cookie is configured. Each slot has
a Unix socketpair; the master keeps both ends for its whole life, so
connections sent while a worker is being replaced wait in the socketpair for
the replacement, which inherits the worker's end.

When accept() fails for want of descriptors (EMFILE, ENFILE) the listener
leaves the selector for 10 ms, doubling to 0.5 s, or until the master closes a
socket it held; the connections wait in the kernel's queue meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import selectors
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass

from storekit.reference.sticky.bpf import HANDSHAKE_SETTLE, refuse_new_connections
from storekit.reference.sticky.limits import host_of
from storekit.reference.sticky.routing import HEAD_LIMIT, HeadScanner, address_key, slot_for_key
from storekit.reference.sticky.sockets import Config

__all__ = ["Handoff"]

_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_PAUSE_FIRST, _PAUSE_MAX = 0.01, 0.5
#: From <asm-generic/socket.h>; Python does not name it.
_SO_PEEK_OFF: int | None = getattr(socket, "SO_PEEK_OFF", 42 if sys.platform.startswith("linux") else None)
_RETRY = 0.05  # seconds before sending again when the kernel refuses more descriptors in flight
_log = logging.getLogger("storekit.sticky")


@dataclass
class _Head:
    conn: socket.socket
    address_slot: int
    deadline: float
    scanner: HeadScanner
    offset: bool  # SO_PEEK_OFF: each peek returns only bytes not peeked before


def _peek_offset(conn: socket.socket) -> bool:
    """Turn on SO_PEEK_OFF for `conn` if this kernel has it for TCP (Linux 6.10 and later)."""
    if _SO_PEEK_OFF is None:
        return False
    try:
        conn.setsockopt(socket.SOL_SOCKET, _SO_PEEK_OFF, 0)
    except OSError:
        return False
    return True


class Handoff:
    """Hand-off for one listening socket, driven by the master's selector."""

    def __init__(self, config: Config, listener: socket.socket, sel: selectors.BaseSelector) -> None:
        self.config = config
        self.listener = listener
        self.sel = sel
        kind = socket.SOCK_SEQPACKET if sys.platform.startswith("linux") else socket.SOCK_DGRAM
        pairs = [socket.socketpair(socket.AF_UNIX, kind) for _ in range(config.workers)]
        self.channels = [master_end for master_end, _ in pairs]
        self.worker_ends = [worker_end for _, worker_end in pairs]
        for channel in self.channels:
            channel.setblocking(False)
        self.backlogs: list[deque[socket.socket]] = [deque() for _ in pairs]
        self.heads: dict[int, _Head] = {}
        self.rr = -1
        self.listening = True
        self.paused_until: float | None = None
        self.pauses = 0
        self._pause = _PAUSE_FIRST
        self._warned_at = 0.0
        self.retry_at: float | None = None  # when to send again after ETOOMANYREFS
        self.closing_at: float | None = None  # a drain: when the listener closes
        self._window = 0.0  # a drain: seconds the heads still coming get once it closes
        self._writing: set[int] = set()  # slots waiting for their socketpair to drain
        self._peeked = bytearray(HEAD_LIMIT)  # one buffer for every peek: the master has one thread
        self._slot_of = functools.lru_cache(maxsize=4096)(self._address_slot)
        self._trusts = functools.lru_cache(maxsize=4096)(config.limits.trusts)
        sel.register(listener, selectors.EVENT_READ, self._accept)

    def fds(self) -> set[int]:
        """The descriptors only the master needs (a worker keeps its own end)."""
        return {s.fileno() for s in (*self.channels, *self.worker_ends)}

    def next_deadline(self) -> float | None:
        deadlines = [head.deadline for head in self.heads.values()]
        deadlines += [t for t in (self.paused_until, self.retry_at, self.closing_at) if t is not None]
        return min(deadlines, default=None)

    def expire(self, now: float) -> None:
        """Accept again after a pause; close the listener of a drain once its handshakes settled;
        route by peer address the heads that did not come in time."""
        if self.paused_until is not None and now >= self.paused_until:
            self._resume()
        if self.closing_at is not None and now >= self.closing_at:
            self._close_listener(now)
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            for slot, backlog in enumerate(self.backlogs):
                if backlog and slot not in self._writing:
                    self._flush(slot)
        for fd, head in list(self.heads.items()):
            if now >= head.deadline:
                self._route_head(fd, head, head.address_slot)

    def begin_drain(self, window: float) -> None:
        """Stop taking connections without dropping any: refuse new handshakes, and for
        :data:`HANDSHAKE_SETTLE` seconds more accept what the kernel queues (the handshakes that
        were under way complete); then close the listener (:meth:`expire`), and give heads still
        coming at most `window` seconds more."""
        refuse_new_connections(self.listener)
        self._resume()
        self.closing_at = time.monotonic() + HANDSHAKE_SETTLE
        self._window = window

    def _close_listener(self, now: float) -> None:
        self.closing_at = None
        for _ in range(1024):  # 64 each: what a listen backlog can hold, and more
            if not self._accept():
                break
        if self.paused_until is None:  # registered unless accepting is paused
            self.sel.unregister(self.listener)
        self.listening = False
        self.paused_until = None
        self.listener.close()
        last = now + self._window
        for head in self.heads.values():
            head.deadline = min(head.deadline, last)

    def drained(self) -> bool:
        """Whether the listener is closed and every connection it accepted is in a worker's socketpair."""
        return self.closing_at is None and not self.heads and not any(self.backlogs)

    def _address_slot(self, host: str) -> int:
        return slot_for_key(address_key(host), self.config.workers, self.config.seed)

    def _accept(self) -> bool:
        """Accept up to 64 connections; True if there may be more."""
        for _ in range(64):
            try:
                conn, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    self._pause_accepting(exc)
                    return False
                continue  # ECONNABORTED and friends: that client is gone
            self._pause = _PAUSE_FIRST
            self._place(conn, host_of(address))
        return True

    def _place(self, conn: socket.socket, host: str) -> None:
        config = self.config
        if config.routing == "round-robin":
            self.rr = (self.rr + 1) % config.workers
            self._hand(self.rr, conn)
            return
        header = config.header if self._trusts(host) else None
        scanner = HeadScanner(header=header, cookie=config.cookie)
        if config.routing == "ip-hash" or not scanner.wanted:  # nothing in the head may route it
            self._hand(self._slot_of(host), conn)
            return
        conn.setblocking(False)
        deadline = time.monotonic() + config.limits.header_timeout
        self.heads[conn.fileno()] = _Head(conn, self._slot_of(host), deadline, scanner, _peek_offset(conn))
        self.sel.register(conn, selectors.EVENT_READ, functools.partial(self._peek, conn.fileno()))

    def _pause_accepting(self, exc: OSError) -> None:
        if self.listening and self.paused_until is None:
            self.sel.unregister(self.listener)
        self.paused_until = time.monotonic() + self._pause
        self.pauses += 1
        now = time.monotonic()
        if now - self._warned_at >= 5.0:
            self._warned_at = now
            _log.warning(
                "storekit serve: accept() failed: %s; accepting again in %.2fs or when a connection closes "
                "(raise the descriptor limit, ulimit -n, to hold more)",
                exc.strerror,
                self._pause,
            )
        self._pause = min(self._pause * 2, _PAUSE_MAX)

    def _resume(self) -> None:
        if self.paused_until is not None and self.listening:
            self.paused_until = None
            self.sel.register(self.listener, selectors.EVENT_READ, self._accept)

    def _released(self, conn: socket.socket) -> None:
        """The master is done with `conn`: close it, and accept again if descriptors had run out."""
        conn.close()
        if self.paused_until is not None:
            self._resume()

    def _peek(self, fd: int) -> None:
        head = self.heads[fd]
        scanner = head.scanner
        room = HEAD_LIMIT - scanner.seen
        try:
            if head.offset:  # the kernel skips what we peeked already
                size = head.conn.recv_into(self._peeked, room, socket.MSG_PEEK)
                new = memoryview(self._peeked)[:size]
            else:  # every peek starts at the first byte; only the new ones are scanned
                size = head.conn.recv_into(self._peeked, HEAD_LIMIT, socket.MSG_PEEK) - scanner.seen
                new = memoryview(self._peeked)[scanner.seen : scanner.seen + max(0, size)]
        except BlockingIOError:
            return
        except OSError:
            self.sel.unregister(head.conn)
            del self.heads[fd]
            self._released(head.conn)
            return
        # Readable with nothing new means end of stream (or no SO_RCVLOWAT): decide now.
        route = scanner.feed(bytes(new)) if size > 0 else scanner.finish()
        if route.final:
            config = self.config
            slot = (
                head.address_slot
                if route.key is None
                else slot_for_key(route.key, config.workers, config.seed)
            )
            self._route_head(fd, head, slot)
        elif hasattr(socket, "SO_RCVLOWAT"):  # wake again only when more bytes came
            head.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, scanner.seen + 1)

    def _route_head(self, fd: int, head: _Head, slot: int) -> None:
        self.sel.unregister(head.conn)
        del self.heads[fd]
        with contextlib.suppress(OSError):
            if hasattr(socket, "SO_RCVLOWAT"):
                head.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            if head.offset and _SO_PEEK_OFF is not None:
                head.conn.setsockopt(socket.SOL_SOCKET, _SO_PEEK_OFF, -1)  # the worker reads plainly
        self._hand(slot, head.conn)

    def _hand(self, slot: int, conn: socket.socket) -> None:
        backlog = self.backlogs[slot]
        backlog.append(conn)
        if len(backlog) == 1:
            self._flush(slot)

    def _flush(self, slot: int) -> None:
        """Send the slot's waiting connections; when its socketpair is full, wait until it drains
        (or, when the kernel caps descriptors in flight, ETOOMANYREFS, try again shortly)."""
        backlog = self.backlogs[slot]
        while backlog:
            try:
                socket.send_fds(self.channels[slot], [b"c"], [backlog[0].fileno()])
            except (BlockingIOError, InterruptedError):
                self._wait_writable(slot, True)
                return
            except OSError as exc:
                if exc.errno == errno.ETOOMANYREFS:
                    self._wait_writable(slot, False)
                    self.retry_at = time.monotonic() + _RETRY
                    return
            self._released(backlog.popleft())  # sent, or that client is gone
        self._wait_writable(slot, False)

    def _wait_writable(self, slot: int, wait: bool) -> None:
        if wait and slot not in self._writing:
            self._writing.add(slot)
            self.sel.register(
                self.channels[slot], selectors.EVENT_WRITE, functools.partial(self._flush, slot)
            )
        elif not wait and slot in self._writing:
            self._writing.discard(slot)
            self.sel.unregister(self.channels[slot])
