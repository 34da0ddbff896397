"""The cluster server: threads in the master that serve the workers.

A selector thread accepts connections and runs the handshake on non-blocking
sockets: a stranger may send one frame of at most ``wire.MAX_HANDSHAKE_FRAME``
bytes, is dropped after ``handshake_timeout``, and at most ``max_pending``
strangers wait at once (the oldest is dropped for a newcomer), so that they
never take the descriptors or the backlog that workers need. A connection
that proves it knows the key gets a thread of its own doing blocking I/O, as
close to a raw socket round trip as Python gets, until it has sent nothing
for ``idle_timeout``: then the selector thread watches it, and its next
request starts a thread again. Every operation runs under one lock, in the
order the server receives it, so per-sid histories are linearizable; no
request holds it for more than a batch of GETs and SETs or a slice of a long
operation, and no connection can make the server hold more than
``reply_bound`` bytes of replies it does not read. Frames are bounded before
their body arrives: a request over the limit gets an error reply and is
skipped (up to ``connection.SKIP_LIMIT`` bytes); any other protocol error
closes that one connection.

A forked child must not serve: an at-fork hook closes the child's copies of
the server's sockets (the parent keeps its own) and keeps the inherited
sessions referenced, so that the child never frees, and so never copies, them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import resource
import selectors
import signal
import socket
import struct
import threading
import time
import weakref
from typing import Any

from storekit.reference.cluster import wire
from storekit.reference.cluster.connection import REPLY_BOUND, serve
from storekit.reference.cluster.handshake import READ_SIZE, HandshakeError, ServerHandshake
from storekit.reference.cluster.persist import Journal
from storekit.reference.cluster.state import ClusterState

__all__ = ["HANDSHAKE_TIMEOUT", "IDLE_TIMEOUT", "REPLY_BOUND", "ClusterServer", "pending_limit"]

log = logging.getLogger("storekit.cluster")

_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_LISTENER = object()
_WAKE = object()
_PEERCRED = struct.Struct("3i")
HANDSHAKE_TIMEOUT = 2.0
"""Seconds a connection may take to prove it knows the key (a worker takes a millisecond)."""
IDLE_TIMEOUT = 2.0
"""Seconds an authenticated connection may send nothing before its thread hands
it to the selector thread and ends; its next request starts a thread again."""


class _Conn:
    """A connection in the handshake."""

    __slots__ = ("deadline", "handshake", "sock")

    def __init__(self, sock: socket.socket, handshake: ServerHandshake, deadline: float) -> None:
        self.sock = sock
        self.handshake = handshake
        self.deadline = deadline


class _Parked:
    """An idle authenticated connection, watched by the selector thread."""

    __slots__ = ("leftover", "sock")

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.leftover = leftover  # what it had sent of its next frame


class ClusterServer:
    """Serve ``state`` on a Unix socket at ``path`` to clients that know ``secret``."""

    def __init__(
        self,
        path: str,
        secret: bytes,
        *,
        state: ClusterState,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_pending: int | None = None,
        reply_bound: int = REPLY_BOUND,
        idle_timeout: float = IDLE_TIMEOUT,
        journal: Journal | None = None,
    ) -> None:
        self.path = path
        self.journal = journal  # its threads run while this server does; its owner closes it
        self.secret = secret
        self.state = state
        self.handshake_timeout = handshake_timeout
        self.max_pending = pending_limit() if max_pending is None else max_pending
        self.reply_bound = reply_bound
        self.max_frame = wire.max_request_frame(state.max_session_bytes)
        self.pid = os.getpid()
        self._conns: dict[_Conn, None] = {}  # connections in the handshake, oldest first
        self._workers: dict[socket.socket, threading.Thread] = {}  # authenticated, with a thread
        self._parked: dict[socket.socket, _Parked] = {}  # authenticated, idle, watched by the selector
        self._parking: collections.deque[tuple[socket.socket, bytes]] = collections.deque()  # to watch
        self.idle_timeout = idle_timeout
        self._idle_timeval = struct.pack("ll", int(idle_timeout), int(idle_timeout % 1 * 1_000_000))
        self._lock = threading.Lock()  # held for every operation on state
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._listening = False
        self._inode = 0
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()

    @property
    def connections(self) -> int:
        """Authenticated connections open: those with a thread and the parked ones."""
        return len(self._workers) + len(self._parked) + len(self._parking)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.pid == os.getpid()

    def start(self) -> None:
        """Bind the socket (mode 0600; its directory must be private) and serve."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            os.chmod(self.path, 0o600)
            listener.listen(1024)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._inode = os.stat(self.path).st_ino
        self._listener = listener
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._listen(True)
        _servers.add(self)
        if self.journal is not None:
            self.journal.start(self._lock)
        self._thread = threading.Thread(target=self._run, name="storekit-cluster-server", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close every connection and remove the socket file."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for sock, thread in list(self._workers.items()):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv
            thread.join(timeout)
        self.unlink()
        self._close_all()
        _servers.discard(self)

    def unlink(self) -> None:
        """Remove the socket file, if it is still the one this server bound."""
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    def _close_all(self) -> None:
        for conn in list(self._conns):
            conn.sock.close()
        self._conns.clear()
        for worker in list(self._workers):
            worker.close()
        self._workers.clear()
        for idle in [*self._parked, *(sock for sock, _ in self._parking)]:
            idle.close()
        self._parked.clear()
        self._parking.clear()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._selector.close()

    def abandon(self) -> None:
        """In a forked child: drop the inherited server without touching the parent's."""
        self._stopping = True
        _graveyard.append(self.state)
        self._close_all()

    def _listen(self, on: bool) -> None:
        assert self._listener is not None
        if on and not self._listening:
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        elif not on and self._listening:
            self._selector.unregister(self._listener)
        self._listening = on

    def _spawn(self, sock: socket.socket, leftover: bytes) -> None:
        """Give an authenticated connection with something to read a thread."""
        thread = threading.Thread(
            target=self._serve, args=(sock, leftover), name="storekit-cluster-worker", daemon=True
        )
        self._workers[sock] = thread
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had: this one connection is closed
            log.warning("storekit cluster server: closing a worker connection: %s", exc)
            self._workers.pop(sock, None)
            sock.close()

    def _serve(self, sock: socket.socket, leftover: bytes) -> None:
        """The thread of one authenticated connection, until it closes or idles."""
        parked: bytes | None = None
        try:
            parked = serve(
                sock,
                leftover,
                self.state,
                self._lock,
                max_frame=self.max_frame,
                reply_bound=self.reply_bound,
                journal=self.journal,
            )
        except (OSError, wire.WireError) as exc:
            if not self._stopping:
                log.debug("closing a worker connection: %s", exc)
        except Exception:
            log.exception("storekit cluster server: unexpected error; closing one connection")
        finally:
            if parked is None or self._stopping:
                sock.close()
            else:  # idle: the selector thread watches it, and no thread waits for it
                self._parking.append((sock, parked))
                with contextlib.suppress(OSError):
                    self._wake_w.send(b"p")
            self._workers.pop(sock, None)

    def _run(self) -> None:
        # The threads of the server (this one and those it starts) never take SIGTERM or
        # SIGINT, so that the kernel delivers them to a thread that can run Python's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        select = self._selector.select
        next_tick = time.monotonic() + 0.5
        while True:
            if self._stopping:
                return
            try:
                events = select(0.5)
                for key, _mask in events:
                    data = key.data
                    if data is _LISTENER:
                        self._accept()
                    elif data is _WAKE:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                        self._unpark()
                    elif type(data) is _Parked:
                        self._wake_parked(data)
                    else:
                        self._read(data)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + 0.5
                    self._tick(now)
            except Exception:  # a bug must not take the server down for every worker
                if not self._stopping:
                    log.exception("storekit cluster server: unexpected error; serving on")

    def _tick(self, now: float) -> None:
        for conn in [c for c in self._conns if c.deadline < now]:
            log.debug("closing a connection that did not authenticate in time")
            self._close(conn)
        if not self._listening:
            self._listen(True)
        for _ in range(20):  # in slices, so that no request waits long for the lock
            with self._lock:
                if not self.state.sweep(1000):
                    break

    def _accept(self) -> None:
        """Accept what the backlog holds, keeping at most ``max_pending``
        connections in the handshake: beyond that the oldest is dropped, so a
        flood of silent connections costs a bounded number of descriptors and
        never keeps a worker (which answers the greeting at once) out. Out of
        descriptors, it drops the oldest pending one and tries again, or, with
        none pending, stops accepting until the next tick."""
        assert self._listener is not None
        conns = self._conns
        for _ in range(256):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like
                if conns:
                    self._close(next(iter(conns)))
                    continue
                log.warning("storekit cluster server cannot accept: %s; pausing until the next tick", exc)
                self._listen(False)
                return
            if not _same_user(sock):
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock, ServerHandshake(self.secret), time.monotonic() + self.handshake_timeout)
            try:
                sock.send(conn.handshake.greeting)
            except OSError:
                sock.close()
                continue
            while len(conns) >= self.max_pending:
                self._close(next(iter(conns)))
            conns[conn] = None
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _close(self, conn: _Conn) -> None:
        if conn in self._conns:
            del self._conns[conn]
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
            conn.sock.close()

    def _read(self, conn: _Conn) -> None:
        """Handshake input, until the proof of the key; then a thread of its own."""
        try:
            data: bytes = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        try:
            welcome = conn.handshake.receive(data)
        except HandshakeError as exc:
            if exc.reply:
                with contextlib.suppress(OSError):
                    conn.sock.send(exc.reply)
            log.debug("closing a connection in the handshake: %s", exc)
            self._close(conn)
            return
        if welcome is None:
            return
        del self._conns[conn]
        self._selector.unregister(conn.sock)
        sock = conn.sock
        try:
            sock.setblocking(True)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._idle_timeval)
            sock.sendall(welcome)
        except OSError:
            sock.close()
            return
        self._spawn(sock, conn.handshake.leftover)

    def _unpark(self) -> None:
        """Watch the connections that threads parked; close them if stopping."""
        while self._parking:
            sock, leftover = self._parking.popleft()
            if self._stopping:
                sock.close()
                continue
            parked = _Parked(sock, leftover)
            self._parked[sock] = parked
            self._selector.register(sock, selectors.EVENT_READ, parked)

    def _wake_parked(self, parked: _Parked) -> None:
        """A parked connection has something to read (or hung up): a thread again."""
        self._selector.unregister(parked.sock)
        del self._parked[parked.sock]
        self._spawn(parked.sock, parked.leftover)


def pending_limit() -> int:
    """How many connections may wait in the handshake: a quarter of this
    process's descriptor limit (RLIMIT_NOFILE), within 16 and 4,096, so that
    strangers never take the descriptors that workers' connections need."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 4))


def _same_user(sock: socket.socket) -> bool:
    """Defence in depth beside the private directory: the peer runs as our user (or root)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    try:
        _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size))
    except OSError:
        return False
    return uid in (os.geteuid(), 0)


_servers: weakref.WeakSet[ClusterServer] = weakref.WeakSet()
_graveyard: list[Any] = []


def _after_fork_in_child() -> None:
    for server in list(_servers):
        server.abandon()
    _servers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
