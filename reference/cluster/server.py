"""The cluster server: threads in the master that serve the workers.

A selector thread accepts connections and runs the handshake on non-blocking
sockets: a stranger may send one frame of at most ``wire.MAX_HANDSHAKE_FRAME``
bytes and is dropped after ``handshake_timeout``. A connection that proves it knows the key gets a
thread of its own doing blocking I/O, as close to a raw socket round trip as
Python gets. Every operation runs under one lock, in the order the server
receives it, so per-sid histories are linearizable. Frames are bounded before
their body arrives; any protocol error closes that one connection.

A forked child must not serve: an at-fork hook closes the child's copies of
the server's sockets (the parent keeps its own) and keeps the inherited
sessions referenced, so that the child never frees, and so never copies, them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import struct
import threading
import time
import weakref
from typing import Any

from storekit.reference.cluster import wire
from storekit.reference.cluster.handshake import READ_SIZE, HandshakeError, ServerHandshake
from storekit.reference.cluster.state import ClusterState

__all__ = ["ClusterServer"]

log = logging.getLogger("storekit.cluster")

_LISTENER = object()
_WAKE = object()
_BUFFER = 1 << 16  # receive buffer of a worker connection
_PEERCRED = struct.Struct("3i")
_GET, _SET, _OK_FRAME, _MISSING_FRAME = wire.GET, wire.SET, wire.OK_FRAME, wire.MISSING_FRAME


class _Conn:
    """A connection in the handshake."""

    __slots__ = ("deadline", "handshake", "sock")

    def __init__(self, sock: socket.socket, handshake: ServerHandshake, deadline: float) -> None:
        self.sock = sock
        self.handshake = handshake
        self.deadline = deadline


class ClusterServer:
    """Serve ``state`` on a Unix socket at ``path`` to clients that know ``secret``."""

    def __init__(
        self,
        path: str,
        secret: bytes,
        *,
        state: ClusterState,
        handshake_timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.secret = secret
        self.state = state
        self.handshake_timeout = handshake_timeout
        self.max_frame = wire.max_request_frame(state.max_session_bytes)
        self.pid = os.getpid()
        self._conns: set[_Conn] = set()  # connections still in the handshake
        self._workers: dict[socket.socket, threading.Thread] = {}  # authenticated ones
        self._lock = threading.Lock()  # held for every operation on state
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._listening = False
        self._inode = 0
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()

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
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        self._close_all()
        _servers.discard(self)

    def _close_all(self) -> None:
        for conn in list(self._conns):
            conn.sock.close()
        self._conns.clear()
        for worker in list(self._workers):
            worker.close()
        self._workers.clear()
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

    def _serve(self, sock: socket.socket, leftover: bytes) -> None:
        """The thread of one authenticated connection."""
        try:
            self._serve_loop(sock, leftover)
        except (OSError, wire.WireError) as exc:
            if not self._stopping:
                log.debug("closing a worker connection: %s", exc)
        except Exception:
            log.exception("storekit cluster server: unexpected error; closing one connection")
        finally:
            self._workers.pop(sock, None)
            sock.close()

    def _serve_loop(self, sock: socket.socket, leftover: bytes) -> None:
        """Read into one reusable buffer (a ``recv(n)`` would allocate ``n``
        bytes per call), answer every whole frame, repeat. GET and SET, the
        hot paths, are answered here; the other requests by ``_handle``."""
        recv_into, limit, handle, lock = sock.recv_into, self.max_frame, self._handle, self._lock
        get, set_, next_request = self.state.get, self.state.set, wire.next_request
        found_frame, error_frame, invalid = wire.found_frame, wire.error_frame, wire.ERR_INVALID_DATA
        buf = bytearray(max(_BUFFER, len(leftover)))
        view = memoryview(buf)
        filled = len(leftover)
        view[:filled] = leftover
        while True:
            offset = 0
            out: list[bytes] = []
            request = next_request(view, offset, filled, limit)
            if request is not None:
                with lock:
                    while request is not None:
                        op, namespace, sid, value, offset = request
                        if op == _GET:
                            found = get(namespace, sid)
                            out.append(_MISSING_FRAME if found is None else found_frame(found))
                        elif op == _SET:
                            error = set_(namespace, sid, value)
                            out.append(_OK_FRAME if error is None else error_frame(invalid, error))
                        else:
                            handle(op, namespace, sid, value, out)
                        request = next_request(view, offset, filled, limit) if offset < filled else None
            if out:  # one write per batch of replies
                sock.sendall(out[0] if len(out) == 1 else b"".join(out))
            if offset == filled and len(buf) == _BUFFER:  # the usual case: all answered, nothing to move
                received = recv_into(view)
                filled = 0
            else:
                if offset:
                    filled -= offset
                    view[:filled] = view[offset : offset + filled]
                size = max(_BUFFER, wire.frame_size(buf, filled))
                if size != len(buf):  # grow for a big frame, or shrink after one
                    resized = bytearray(size)
                    resized[:filled] = view[:filled]
                    view.release()
                    buf, view = resized, memoryview(resized)
                received = recv_into(view[filled:])
            if not received:
                return
            filled += received

    def _run(self) -> None:
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
        assert self._listener is not None
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: pause accepting until the next tick
                log.warning("storekit cluster server cannot accept: %s", exc)
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
            self._conns.add(conn)
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _close(self, conn: _Conn) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
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
        self._conns.discard(conn)
        self._selector.unregister(conn.sock)
        sock = conn.sock
        try:
            sock.setblocking(True)
            sock.sendall(welcome)
        except OSError:
            sock.close()
            return
        thread = threading.Thread(
            target=self._serve,
            args=(sock, conn.handshake.leftover),
            name="storekit-cluster-worker",
            daemon=True,
        )
        self._workers[sock] = thread
        thread.start()

    def _handle(self, op: int, namespace: bytes, sid: bytes, value: bytes, out: list[bytes]) -> None:
        """Every request but GET and SET, which the serve loop answers itself."""
        state = self.state
        if op == wire.TOUCH:
            error = state.touch(namespace, sid, value)
            out.append(_OK_FRAME if error is None else wire.error_frame(wire.ERR_INVALID_DATA, error))
        elif op == wire.DESTROY:
            state.destroy(namespace, sid)
            out.append(_OK_FRAME)
        elif op == wire.LENGTH:
            out.append(wire.count_frame(state.length(namespace)))
        elif op == wire.CLEAR:
            state.clear(namespace)
            out.append(_OK_FRAME)
        else:  # ALL; next_request admits no other op
            out.extend(wire.items_reply(state.items(namespace)))


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
