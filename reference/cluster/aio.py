"""AsyncClusterStore: the asyncio twin of ClusterStore, one shared connection per event loop.

The tasks of an event loop share a connection (a :class:`_Channel`): each
request is written as soon as it is made, the server answers a connection's
requests in the order it receives them, and each reply resolves the oldest
request still waiting. So concurrent tasks pipeline their requests on one
socket, which the loop watches for as long as it is open: a request costs
one ``send`` and its share of a ``recv``, and the master serves two
connections per store and event loop rather than one per task in flight.
LENGTH, CLEAR and ALL go over the second channel, so that a long answer
never holds up the gets and sets behind it.

A call has one deadline, ``timeout`` after it starts, for its connect and its
reply; a long reply whose bytes keep coming is given ``timeout`` from its
last bytes. A reply that has not begun by its deadline fails every request
waiting on that channel (the server answers in order, so none behind it can
come first) and closes it; the next request opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import socket
import sys
from typing import Final

from storekit.contract import Session
from storekit.errors import StoreError, StoreUnavailable, cut
from storekit.reference.cluster import wire
from storekit.reference.cluster.common import BUSY_RETRY, Address, Busy, ClientBase, Requests, unavailable
from storekit.reference.cluster.handshake import READ_SIZE, ClientHandshake

__all__ = ["AsyncClusterStore"]

_CHUNK: Final = 1 << 16  # what to ask recv for
_HOT, _BULK = 0, 1  # the channel for get, set and the like; the one for length, clear and all
_Key = tuple[asyncio.AbstractEventLoop, int]


class AsyncClusterStore(ClientBase):
    """The asyncio twin of :class:`ClusterStore`, with the same arguments.

    The tasks of one event loop pipeline their requests on one connection (a
    second one carries ``length``, ``clear`` and ``all``); each operation,
    connect included, raises :class:`~storekit.StoreUnavailable` within
    ``timeout`` of its start, or of the last bytes received while a long
    reply arrives. One store may serve several event loops, in turn
    (``asyncio.run`` per call) or at once in different threads: each loop
    gets connections of its own; those of a closed loop are closed when the
    store next connects, or by ``aclose()``. The loop must be able to watch
    sockets (``add_reader``), as asyncio's default loop on Unix and uvloop can.
    """

    _channels: dict[_Key, _Channel]
    _opening: dict[_Key, asyncio.Task[_Channel]]

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
        return Requests.count(await self._call(self.requests.length, _BULK))

    async def clear(self) -> None:
        Requests.done(await self._call(self.requests.clear, _BULK))

    async def all(self) -> dict[str, Session]:
        return Requests.sessions(await self._call(self.requests.all, _BULK))

    async def aclose(self) -> None:
        """Close this event loop's connections: requests waiting on them raise
        StoreUnavailable, and the store connects again when used again."""
        loop = asyncio.get_running_loop()
        for kind in (_HOT, _BULK):
            opening = self._opening.pop((loop, kind), None)
            if opening is not None:
                opening.cancel()
            channel = self._channels.pop((loop, kind), None)
            if channel is not None:
                channel.fail(_Closed("aclose() closed the connection this request waited on"))
        self._prune()

    async def _call(self, frame: bytes, kind: int = _HOT) -> bytes:
        """The reply to ``frame``, or StoreUnavailable within ``timeout`` of the call (of
        the last bytes received, while a long reply arrives)."""
        self._drop_inherited()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        channel = await self._channel(loop, kind, deadline)  # StoreUnavailable if it cannot connect
        try:
            return await channel.request(frame, deadline)
        except _Closed as exc:
            raise StoreUnavailable(f"{self!r}: {exc}") from exc
        except TimeoutError as exc:
            raise unavailable(self.address, exc, self.timeout) from exc
        except (OSError, EOFError, wire.WireError) as exc:
            if loop.time() >= deadline:
                raise unavailable(self.address, exc, self.timeout) from exc
        # The connection broke (the server restarted, say): ask once more, on a new one.
        # A request the server had applied is applied again: the same state, unless
        # another process changed that session in between (docs/cluster.md, Guarantees).
        channel = await self._channel(loop, kind, deadline)
        try:
            return await channel.request(frame, deadline)
        except _Closed as exc:
            raise StoreUnavailable(f"{self!r}: {exc}") from exc
        except (OSError, EOFError, wire.WireError) as exc:
            raise unavailable(self.address, exc, self.timeout) from exc

    async def _channel(self, loop: asyncio.AbstractEventLoop, kind: int, deadline: float) -> _Channel:
        """This loop's open channel of ``kind``, or the one being opened for it."""
        key = (loop, kind)
        channel = self._channels.get(key)
        if channel is not None and channel.open:
            return channel
        opening = self._opening.get(key)
        if opening is None:  # one connect for every task that finds no channel
            self._prune()
            opening = loop.create_task(self._open(loop))
            self._opening[key] = opening
            opening.add_done_callback(functools.partial(self._opened, key))
        try:  # shielded: one caller's cancel or deadline must not end the others' connect
            return await asyncio.wait_for(asyncio.shield(opening), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise unavailable(self.address, TimeoutError("connect timed out"), self.timeout) from None

    def _opened(self, key: _Key, task: asyncio.Task[_Channel]) -> None:
        if self._opening.get(key) is task:
            del self._opening[key]
        if not task.cancelled() and task.exception() is None:
            self._channels[key] = task.result()

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Channel:
        try:
            sock = await asyncio.wait_for(self._connect(loop), self.timeout)
        except (OSError, EOFError, asyncio.TimeoutError, wire.WireError) as exc:
            raise unavailable(self.address, _as_timeout(exc), self.timeout) from exc
        try:
            return _Channel(loop, sock, self.timeout)
        except NotImplementedError:
            sock.close()
            raise StoreError(
                f"AsyncClusterStore needs an event loop that can watch sockets (add_reader); "
                f"{type(loop).__name__} cannot: use asyncio's default loop on Unix, or uvloop"
            ) from None
        except BaseException:
            sock.close()
            raise

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

    def _prune(self) -> None:
        """Close the channels of event loops that have closed (another thread may prune too)."""
        for key, channel in list(self._channels.items()):
            if key[0].is_closed() and self._channels.pop(key, None) is channel:
                channel.abandon()
        for key in [key for key in self._opening if key[0].is_closed()]:
            self._opening.pop(key, None)

    def _forget(self) -> None:
        # In a forked child the loops are the parent's, their epoll too: close the sockets
        # only, never touching a loop. From __init__, this makes the empty dicts.
        for channel in getattr(self, "_channels", {}).values():
            channel.abandon()
        self._channels, self._opening = {}, {}

    def __del__(self) -> None:
        if not hasattr(self, "_channels"):  # __init__ raised
            return
        if self._inherited():  # a forked child: the loops are the parent's
            self._forget()
            return
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                channel.close_soon()


class _Channel:
    """One connection of one event loop, shared by its tasks, with the loop watching it.

    ``waiting`` holds the futures of the requests sent and not yet answered, oldest
    first, each with its deadline; a request that could not be written at once
    waits in ``outbox``, in order. A cancelled request's reply is read and dropped.
    """

    __slots__ = ("buffer", "failed", "fd", "loop", "outbox", "sock", "timeout", "timer", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.timeout = timeout
        self.waiting: collections.deque[tuple[asyncio.Future[bytes], float]] = collections.deque()
        self.buffer = bytearray()  # the start of a reply not yet whole
        self.outbox = bytearray()  # what the socket would not take yet
        self.timer: asyncio.TimerHandle | None = None
        self.failed: BaseException | None = None
        loop.add_reader(self.fd, self._readable)

    @property
    def open(self) -> bool:
        return self.failed is None

    def request(self, frame: bytes, deadline: float) -> asyncio.Future[bytes]:
        """Send ``frame``; the future gets the reply's whole frame, or the channel's
        failure: TimeoutError if no reply has begun by ``deadline`` (loop time)."""
        loop = self.loop
        future: asyncio.Future[bytes] = loop.create_future()
        if self.failed is not None:
            future.set_exception(_again(self.failed))
            return future
        self.waiting.append((future, deadline))
        if self.outbox:
            self.outbox += frame
        else:
            try:
                sent = self.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.fail(exc)
                return future
            if sent < len(frame):
                self.outbox += memoryview(frame)[sent:]
                loop.add_writer(self.fd, self._writable)
        if self.timer is None:
            self.timer = loop.call_at(deadline, self._expire)
        return future

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(exc)
            return
        del self.outbox[:sent]
        if not self.outbox:
            self.loop.remove_writer(self.fd)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(exc)
            return
        if not data:
            self.fail(EOFError("the cluster server closed the connection"))
            return
        buffer = self.buffer
        if not buffer and wire.frame_size(data, len(data)) == len(data):
            self._answer(data)  # the usual case: one whole reply, taken without a copy
            return
        buffer += data
        while self.failed is None and (reply := wire.take_frame(buffer, sys.maxsize)) is not None:
            self._answer(reply)
        if buffer and self.waiting:  # a long reply on its way: its deadline runs from its last bytes
            future, deadline = self.waiting[0]
            self.waiting[0] = (future, max(deadline, self.loop.time() + self.timeout))

    def _answer(self, reply: bytes) -> None:
        if not self.waiting:
            unasked = wire.WireError(
                f"the cluster server sent a reply that no request asked for: {cut(reply)}"
            )
            self.fail(unasked)
            return
        future, _ = self.waiting.popleft()
        if not future.done():  # else its task was cancelled: the reply is dropped
            future.set_result(reply)

    def _expire(self) -> None:
        self.timer = None
        if self.failed is not None or not self.waiting:
            return
        deadline = self.waiting[0][1]
        if self.loop.time() >= deadline:
            self.fail(TimeoutError(f"the cluster server did not answer within {self.timeout}s"))
        else:
            self.timer = self.loop.call_at(deadline, self._expire)

    def fail(self, exc: BaseException) -> None:
        """Close the channel (in its loop's thread) and fail every request waiting on it."""
        if self.failed is None:
            self.failed = exc
            if self.timer is not None:
                self.timer.cancel()
            self.loop.remove_reader(self.fd)
            self.loop.remove_writer(self.fd)
            self.sock.close()
        waiting, self.waiting = self.waiting, collections.deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(_again(exc))

    def abandon(self) -> None:
        """Close the socket without touching the loop: it is closed, or it is a forked
        parent's, whose epoll the child shares."""
        if self.failed is None:
            self.failed = EOFError("the connection was closed")
        self.sock.close()

    def close_soon(self) -> None:
        """From any thread: close the channel at once if its loop is closed or not
        running, or else in the loop's own thread."""
        if self.loop.is_closed():
            self.abandon()
        elif not self.loop.is_running():
            self.fail(_Closed("the store was collected"))
        else:
            self.loop.call_soon_threadsafe(self.fail, _Closed("the store was collected"))


class _Closed(EOFError):
    """The store closed the connection: its waiting requests fail, and are not asked again."""


def _again(exc: BaseException) -> BaseException:
    """A fresh copy of ``exc`` for each waiting request, so that their tracebacks stay their own."""
    try:
        return type(exc)(*exc.args)
    except Exception:
        return exc


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
