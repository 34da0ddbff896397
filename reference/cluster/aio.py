"""AsyncClusterStore: the asyncio twin of ClusterStore, over asyncio streams."""

from __future__ import annotations

import asyncio
import socket

from storekit.contract import Session
from storekit.errors import StoreUnavailable
from storekit.reference.cluster import wire
from storekit.reference.cluster.common import BUSY_RETRY, Address, Busy, ClientBase, Requests, unavailable
from storekit.reference.cluster.handshake import READ_SIZE, ClientHandshake

__all__ = ["AsyncClusterStore"]

_IDLE_CONNECTIONS = 16
_CHUNK = 1 << 16  # what to ask recv for while reading a reply


class AsyncClusterStore(ClientBase):
    """The asyncio twin of :class:`ClusterStore`, with the same arguments.

    Concurrent tasks each use a connection of their own from a small pool of
    non-blocking sockets, so the server sees them as concurrent requests; each
    operation (connect included) raises :class:`~storekit.StoreUnavailable`
    within ``timeout``. The sockets belong to no event loop, so one store may
    serve successive loops (``asyncio.run`` per call).
    """

    async def get(self, sid: str) -> Session | None:
        return Requests.session(await self._call(self.requests.get(sid)))

    async def set(self, sid: str, session: Session) -> None:
        Requests.done(await self._call(self.requests.set(sid, session)))

    async def destroy(self, sid: str) -> None:
        Requests.done(await self._call(self.requests.destroy(sid)))

    async def replace(self, sid: str, session: Session) -> bool:
        return Requests.replaced(await self._call(self.requests.replace(sid, session)))

    async def touch(self, sid: str, session: Session) -> None:
        Requests.done(await self._call(self.requests.touch(sid, session)))

    async def renew(self, sid: str, session: Session) -> Session | None:
        return Requests.session(await self._call(self.requests.renew(sid, session)))

    async def length(self) -> int:
        return Requests.count(await self._call(self.requests.length))

    async def clear(self) -> None:
        Requests.done(await self._call(self.requests.clear))

    async def all(self) -> dict[str, Session]:
        return Requests.sessions(await self._call(self.requests.all))

    async def aclose(self) -> None:
        """Close the idle connections; the store reconnects when used again."""
        self._close_idle()

    async def _call(self, frame: bytes) -> bytes:
        self._drop_inherited()
        if self._idle:
            try:
                return await self._exchange(self._idle.pop(), frame)
            except StoreUnavailable as exc:
                if isinstance(exc.__cause__, (asyncio.TimeoutError, TimeoutError)):
                    raise
            # a pooled connection broke; every request is idempotent: ask again
        return await self._exchange(None, frame)

    async def _exchange(self, sock: socket.socket | None, frame: bytes) -> bytes:
        try:
            return await asyncio.wait_for(self._roundtrip(sock, frame), self.timeout)
        except (OSError, EOFError, asyncio.TimeoutError, wire.WireError) as exc:
            raise unavailable(self.address, _as_timeout(exc), self.timeout) from exc

    async def _roundtrip(self, sock: socket.socket | None, frame: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        if sock is None:
            sock = await self._connect(loop)
        try:
            await loop.sock_sendall(sock, frame)
            reply = await _read_frame(loop, sock)
        except BaseException:
            sock.close()
            raise
        if len(self._idle) < _IDLE_CONNECTIONS:
            self._idle.append(sock)
        else:
            sock.close()
        return reply

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        sock = await _connected(self.address, self.timeout)
        handshake = ClientHandshake(self.address.secret)
        try:
            while not handshake.done:
                proof = handshake.receive(await loop.sock_recv(sock, READ_SIZE))
                if proof:
                    await loop.sock_sendall(sock, proof)
        except (OSError, wire.WireError) as exc:
            sock.close()
            raise unavailable(self.address, handshake.explain(exc), self.timeout) from exc
        except BaseException:
            sock.close()
            raise
        return sock


async def _connected(address: Address, timeout: float) -> socket.socket:
    """A non-blocking socket connected to the server. A Unix socket's connect
    answers at once (``loop.sock_connect`` would take EAGAIN, a full listen
    backlog, for a connect in progress): on EAGAIN, one more try after
    :data:`BUSY_RETRY`, then StoreUnavailable saying "busy"."""
    for attempt in (1, 2):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.connect(address.path)
            return sock
        except BlockingIOError as exc:
            sock.close()
            if attempt == 2 or timeout <= BUSY_RETRY:
                raise unavailable(address, Busy(exc.errno, exc.strerror), timeout) from exc
        except BaseException:
            sock.close()
            raise
        await asyncio.sleep(BUSY_RETRY)
    raise AssertionError("unreachable")


def _as_timeout(exc: BaseException) -> BaseException:
    return TimeoutError(str(exc)) if isinstance(exc, asyncio.TimeoutError) else exc


async def _read_frame(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """One whole frame, length prefix included; EOFError if the server hung up."""
    data = bytearray()
    size = 0
    while not size or len(data) < size:
        received = await loop.sock_recv(sock, max(size - len(data), _CHUNK))
        if not received:
            raise EOFError("the cluster server closed the connection")
        data += received
        size = wire.frame_size(data, len(data))
    if len(data) > size:
        raise wire.WireError(f"the cluster server sent {len(data) - size} bytes beyond its reply")
    return bytes(data)
