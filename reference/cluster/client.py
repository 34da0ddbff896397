"""ClusterStore: the blocking client, one pooled connection per thread at a time."""

from __future__ import annotations

import contextlib
import socket
import struct
import time

from storekit.contract import Session
from storekit.errors import StoreUnavailable
from storekit.reference.cluster import wire
from storekit.reference.cluster.common import BUSY_RETRY, Address, Busy, ClientBase, Requests, unavailable
from storekit.reference.cluster.handshake import READ_SIZE, ClientHandshake

__all__ = ["ClusterStore"]
_IDLE_CONNECTIONS = 32  # kept per process; more threads at once open more, then close them
_BUFFER = 1 << 16


class ClusterStore(ClientBase):
    """A store whose sessions live in the master's cluster server.

    Call ``storekit.reference.cluster.setup()`` in the master first; workers
    forked or spawned afterwards find the server through the environment.
    Connections are opened on first use, pooled per process (one per thread
    at a time), and reopened after a broken connection. Every operation raises
    :class:`~storekit.StoreUnavailable` within ``timeout`` seconds when the
    master cannot be reached. ``namespace`` keeps this store's sessions apart
    from other namespaces on the same server.
    """

    _idle: list[_Conn]  # this process's idle connections

    def get(self, sid: str) -> Session | None:
        return Requests.session(self._call(self.requests.get(sid)))

    def set(self, sid: str, session: Session) -> None:
        Requests.done(self._call(self.requests.set(sid, session)))

    def destroy(self, sid: str) -> None:
        Requests.done(self._call(self.requests.destroy(sid)))

    def replace(self, sid: str, session: Session) -> bool:
        return Requests.replaced(self._call(self.requests.replace(sid, session)))

    def touch(self, sid: str, session: Session) -> None:
        Requests.done(self._call(self.requests.touch(sid, session)))

    def renew(self, sid: str, session: Session) -> Session | None:
        return Requests.session(self._call(self.requests.renew(sid, session)))

    def length(self) -> int:
        return Requests.count(self._call(self.requests.length))

    def clear(self) -> None:
        Requests.done(self._call(self.requests.clear))

    def all(self) -> dict[str, Session]:
        return Requests.sessions(self._call(self.requests.all))

    def close(self) -> None:
        """Close this process's idle connections; the store reconnects when used again."""
        self._forget()

    def _forget(self) -> None:
        idle: list[_Conn] = getattr(self, "_idle", [])  # none before __init__'s call
        self._idle = []
        for conn in idle:
            conn.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._forget()

    def _call(self, frame: bytes) -> bytes:
        self._drop_inherited()
        try:
            conn = self._idle.pop()
        except IndexError:
            return self._exchange(self._connect(), frame)
        try:
            return self._exchange(conn, frame)
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, (TimeoutError, BlockingIOError)):
                raise
        # A pooled connection broke (the server restarted, say): every request is
        # idempotent, so ask once more on a fresh connection.
        return self._exchange(self._connect(), frame)

    def _exchange(self, conn: _Conn, frame: bytes) -> bytes:
        try:
            conn.sock.sendall(frame)
            reply = conn.recv_frame()
        except (OSError, EOFError, wire.WireError) as exc:
            conn.close()
            raise unavailable(self.address, exc, self.timeout) from exc
        if len(self._idle) < _IDLE_CONNECTIONS:
            self._idle.append(conn)
        else:
            conn.close()
        return reply

    def _connect(self) -> _Conn:
        sock = _connected(self.address.path, self.timeout, self.address)
        handshake = ClientHandshake(self.address.secret)
        try:
            sock.settimeout(None)  # blocking, with kernel timeouts: no poll() per call
            timeval = struct.pack("ll", int(self.timeout), int(self.timeout % 1 * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            while not handshake.done:
                proof = handshake.receive(sock.recv(READ_SIZE))
                if proof:
                    sock.sendall(proof)
        except (OSError, wire.WireError) as exc:
            sock.close()
            raise unavailable(self.address, handshake.explain(exc), self.timeout) from exc
        return _Conn(sock)


def _connected(path: str, timeout: float, address: Address) -> socket.socket:
    """A socket connected to ``path``; on EAGAIN (the listen backlog is full)
    one more try after :data:`BUSY_RETRY`, then StoreUnavailable saying "busy"."""
    for attempt in (1, 2):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)  # a Unix socket answers at once: connected, refused, or EAGAIN
            return sock
        except BlockingIOError as exc:
            sock.close()
            if attempt == 2 or timeout <= BUSY_RETRY:
                raise unavailable(address, Busy(exc.errno, exc.strerror), timeout) from exc
        except OSError as exc:
            sock.close()
            raise unavailable(address, exc, timeout) from exc
        time.sleep(BUSY_RETRY)
    raise AssertionError("unreachable")


class _Conn:
    """A client connection and its reusable receive buffer."""

    __slots__ = ("buf", "sock", "view")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray(_BUFFER)
        self.view = memoryview(self.buf)

    def close(self) -> None:
        self.sock.close()

    def recv_frame(self) -> bytes:
        """One whole frame, length prefix included; EOFError if the server hung up."""
        recv_into, view = self.sock.recv_into, self.view
        filled = recv_into(view)
        while True:
            need = wire.frame_size(self.buf, filled)
            if need:
                if filled == need:
                    frame = bytes(view[:filled])
                    if len(self.buf) > _BUFFER:
                        self.buf = bytearray(_BUFFER)
                        self.view = memoryview(self.buf)
                    return frame
                if filled > need:
                    raise wire.WireError(f"the cluster server sent {filled - need} bytes beyond its reply")
                if need > len(self.buf):  # a large reply (all()): grow for it, then shrink back
                    grown = bytearray(need)
                    grown[:filled] = view[:filled]
                    view = memoryview(grown)
                    self.buf = grown
            elif not filled:
                raise EOFError("the cluster server closed the connection")
            received = recv_into(view[filled:])
            if not received:
                raise EOFError("the cluster server closed the connection")
            filled += received
