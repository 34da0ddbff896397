"""The master's data path in handoff mode: accept, choose a slot, pass the socket on.

The master never reads a request: ip-hash and round-robin decide from the peer
address or a counter; header routing peeks (MSG_PEEK) at the request head,
waking again only when more bytes arrive (SO_RCVLOWAT), and gives up after
`header_timeout`. Each slot has a Unix socketpair; the master keeps both ends
for its whole life, so connections sent while a worker is being replaced wait
in the socketpair for the replacement, which inherits the worker's end.
"""

from __future__ import annotations

import contextlib
import functools
import selectors
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass

from storekit.reference.sticky.routing import HEAD_LIMIT, address_key, route_head, slot_for_key
from storekit.reference.sticky.sockets import Config

__all__ = ["Handoff"]


@dataclass
class _Head:
    conn: socket.socket
    address_slot: int
    deadline: float
    seen: int = -1


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
        self._slot_of = functools.lru_cache(maxsize=4096)(self._address_slot)
        sel.register(listener, selectors.EVENT_READ, self._accept)

    def fds(self) -> set[int]:
        """The descriptors only the master needs (a worker keeps its own end)."""
        return {s.fileno() for s in (*self.channels, *self.worker_ends)}

    def next_deadline(self) -> float | None:
        return min((head.deadline for head in self.heads.values()), default=None)

    def expire(self, now: float) -> None:
        """Route by peer address the connections whose head did not come in time."""
        for fd, head in list(self.heads.items()):
            if now >= head.deadline:
                self._route_head(fd, head, head.address_slot)

    def stop(self) -> None:
        """Accept no more; drop connections still waiting for their head."""
        self.sel.unregister(self.listener)
        for head in self.heads.values():
            self.sel.unregister(head.conn)
            head.conn.close()
        self.heads.clear()

    def _address_slot(self, host: str) -> int:
        return slot_for_key(address_key(host), self.config.workers, self.config.seed)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNABORTED and friends: that client is gone
                continue
            if self.config.routing == "round-robin":
                self.rr = (self.rr + 1) % self.config.workers
                self._hand(self.rr, conn)
            elif self.config.routing == "ip-hash":
                self._hand(self._slot_of(address[0]), conn)
            else:
                conn.setblocking(False)
                head = _Head(conn, self._slot_of(address[0]), time.monotonic() + self.config.header_timeout)
                self.heads[conn.fileno()] = head
                self.sel.register(conn, selectors.EVENT_READ, functools.partial(self._peek, conn.fileno()))

    def _peek(self, fd: int) -> None:
        head = self.heads[fd]
        try:
            data = head.conn.recv(HEAD_LIMIT, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            self.sel.unregister(head.conn)
            del self.heads[fd]
            head.conn.close()
            return
        # Readable with nothing new means end of stream (or no SO_RCVLOWAT): decide now.
        stalled = len(data) <= head.seen
        head.seen = len(data)
        config = self.config
        route = route_head(data, header=config.header, cookie=config.cookie, eof=not data or stalled)
        if route.final:
            slot = (
                head.address_slot
                if route.key is None
                else slot_for_key(route.key, config.workers, config.seed)
            )
            self._route_head(fd, head, slot)
        elif hasattr(socket, "SO_RCVLOWAT"):  # wake again only when more bytes came
            head.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, len(data) + 1)

    def _route_head(self, fd: int, head: _Head, slot: int) -> None:
        self.sel.unregister(head.conn)
        del self.heads[fd]
        if hasattr(socket, "SO_RCVLOWAT"):
            with contextlib.suppress(OSError):
                head.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        self._hand(slot, head.conn)

    def _hand(self, slot: int, conn: socket.socket) -> None:
        backlog = self.backlogs[slot]
        if backlog:
            backlog.append(conn)
            return
        try:
            socket.send_fds(self.channels[slot], [b"c"], [conn.fileno()])
        except (BlockingIOError, InterruptedError):  # the socketpair is full: wait until it drains
            backlog.append(conn)
            self.sel.register(
                self.channels[slot], selectors.EVENT_WRITE, functools.partial(self._flush, slot)
            )
            return
        except OSError:
            pass
        conn.close()

    def _flush(self, slot: int) -> None:
        backlog = self.backlogs[slot]
        while backlog:
            try:
                socket.send_fds(self.channels[slot], [b"c"], [backlog[0].fileno()])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            backlog.popleft().close()
        self.sel.unregister(self.channels[slot])
