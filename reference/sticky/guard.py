"""waitress in a sticky worker, guarded: what one client, and all of them, may hold.

`GuardedServer` is waitress's TcpWSGIServer with four changes, all on waitress's
own loop thread:

- its accept path counts open connections per client address and closes a new
  one at once when that address already holds ``per_address_limit`` (a trusted
  proxy is exempt); the total is waitress's ``connection_limit``, raised from
  its 100 and kept below the worker's descriptor limit;
- every connection must send a whole request head within ``header_timeout`` of
  opening (or of the first byte of its next request), however slowly it
  trickles; a kept-alive connection with no request goes after ``idle_timeout``
  (waitress alone counts any byte as activity, so a slow head never expires);
- accept() failing for want of descriptors (EMFILE, ENFILE) pauses accepting,
  10 ms doubling to 0.5 s, where waitress would retry at once and spin;
- `drain` accepts what is queued, stops accepting and serves what is in flight.

In kernel mode this is where the per-address limit can be enforced at all: the
kernel steers a connection straight to the worker.
"""

from __future__ import annotations

import errno
import logging
import time
from collections import Counter
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from storekit.reference.sticky.limits import Limits, host_of

__all__ = ["FIRST_BYTES", "SWEEP_INTERVAL", "GuardedChannel", "GuardedServer"]

#: Seconds between two looks for connections past their timeouts (the loop wakes at least this often).
SWEEP_INTERVAL = 0.25

#: Seconds a drain waits for a request on a connection that has sent nothing yet.
FIRST_BYTES = 1.0

_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_PAUSE_FIRST, _PAUSE_MAX = 0.01, 0.5
_log = logging.getLogger("storekit.sticky")


class GuardedChannel(HTTPChannel):  # type: ignore[misc]
    """waitress's channel, remembering when the head it waits for began."""

    server: GuardedServer
    peer_host = ""
    counted = False

    def __init__(self, server: GuardedServer, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map=map)
        self.head_started: float | None = self.creation_time  # the first head is due from the start
        self.heard = False  # any byte at all yet

    def received(self, data: bytes) -> bool:
        if self.request is None and self.heard:
            self.head_started = time.time()  # the first byte of a next request
        self.heard = self.heard or bool(data)
        result: bool = super().received(data)
        request = self.request
        if request is None or request.headers_finished:
            self.head_started = None
        return result

    def overdue(self, now: float, limits: Limits) -> bool:
        """Whether this connection is past its header or idle timeout (never while a request runs)."""
        if self.requests or self.total_outbufs_len or self.will_close:
            return False
        if self.head_started is not None:
            return now - self.head_started > limits.header_timeout
        idle: float = now - self.last_activity
        return idle > limits.idle_timeout

    def in_flight(self, now: float, wait_until: float) -> bool:
        """Whether a drain must wait for this connection: a request runs or is being read, or, until
        `wait_until`, a connection that has sent nothing yet may have its request on the way."""
        if self.requests or self.total_outbufs_len or self.request is not None:
            return True
        return not self.heard and now < wait_until

    def del_channel(self, map: Any = None) -> None:
        if self.counted:
            self.counted = False
            self.server.forget(self.peer_host)
        super().del_channel(map)


class GuardedServer(TcpWSGIServer):  # type: ignore[misc]
    """TcpWSGIServer on an inherited listener (a socket, or the hand-off channel) with `limits`."""

    channel_class = GuardedChannel

    def __init__(
        self, app: Any, listener: Any, *, adj: Any, sockinfo: tuple[Any, ...], limits: Limits
    ) -> None:
        self.limits = limits
        self.per_address: Counter[str] = Counter()
        self.refused = 0
        self.expired = 0
        self._paused_until = 0.0
        self._pause = _PAUSE_FIRST
        self._next_sweep = 0.0
        self._warned_at = 0.0
        super().__init__(app, {}, True, listener, adj=adj, bind_socket=False, sockinfo=sockinfo)

    # -- waitress's hooks ------------------------------------------------------------
    def readable(self) -> bool:
        ready: bool = super().readable()  # waitress's own maintenance and connection_limit
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self.sweep()
        return ready and now >= self._paused_until

    def handle_accept(self) -> None:
        for _ in range(16):  # a few per wake-up, so that a flood cannot starve the channels
            if len(self._map) >= self.adj.connection_limit or not self.accept_one():
                return

    # -- ours ------------------------------------------------------------------------------
    def accept_one(self) -> bool:
        """Accept one connection, or refuse it for its address; False when none was waiting."""
        try:
            pair = self.accept()
        except OSError as exc:
            if exc.errno in _OUT_OF_FDS:
                self._paused_until = time.monotonic() + self._pause
                self._warn(f"accept() failed: {exc.strerror}; accepting again in {self._pause:.2f}s")
                self._pause = min(self._pause * 2, _PAUSE_MAX)
            return False
        if pair is None:
            return False
        self._pause = _PAUSE_FIRST
        conn, addr = pair
        host = host_of(addr)
        limits = self.limits
        if self.per_address[host] >= limits.per_address_limit and not limits.trusts(host):
            self.refused += 1
            self._warn(
                f"{host} already holds {limits.per_address_limit} connections (--per-address-limit): "
                "closing its new one"
            )
            conn.close()
            return True
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return True
        self.per_address[host] += 1
        channel = self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
        channel.peer_host, channel.counted = host, True
        return True

    def forget(self, host: str) -> None:
        """A connection of `host` closed."""
        left = self.per_address[host] - 1
        if left > 0:
            self.per_address[host] = left
        else:
            del self.per_address[host]

    def channels(self) -> list[GuardedChannel]:
        return [c for c in self._map.values() if isinstance(c, GuardedChannel)]

    def sweep(self) -> None:
        """Close the connections past their header or idle timeout."""
        now = time.time()
        for channel in self.channels():
            if channel.overdue(now, self.limits):
                self.expired += 1
                channel.will_close = True  # waitress closes it on its next turn of the loop

    def drain(self, timeout: float, loop: Any, *, settle: float = 0.0) -> None:
        """Accept what is queued, stop accepting, and serve until nothing is in flight or `timeout`.

        `loop(seconds)` runs one turn of waitress's loop. For `settle` seconds
        first, the listener stays open for the handshakes under way when new ones
        were refused (kernel mode); what they queue is accepted and served. Kept-alive
        connections with no request are closed; one that has sent nothing yet is
        given `FIRST_BYTES` seconds (at most its header timeout) to send its request.
        """
        deadline = time.monotonic() + timeout
        settled = time.monotonic() + min(settle, timeout)
        while True:
            for _ in range(self.adj.connection_limit):
                if not self.accept_one():
                    break
            if time.monotonic() >= settled:
                break
            loop(0.01)
        wasyncore.dispatcher.close(self)  # out of the loop's map and closed; waitress's trigger stays
        first_bytes_by = time.time() + min(FIRST_BYTES, self.limits.header_timeout)
        while time.monotonic() < deadline:
            loop(0.0)
            now = time.time()
            busy = False
            for channel in self.channels():
                if channel.in_flight(now, first_bytes_by) and not channel.overdue(now, self.limits):
                    busy = True
                elif not channel.will_close:
                    channel.will_close = True
            if not busy:
                loop(0.0)  # flush and close what was just marked
                return
            loop(0.02)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 5.0:  # at most one line per 5 s, whatever the attack
            self._warned_at = now
            _log.warning("storekit serve: %s", message)
