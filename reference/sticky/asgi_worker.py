"""An ASGI worker of the sticky server: uvicorn serving one slot.

In kernel mode uvicorn serves the slot's own SO_REUSEPORT socket, inherited from
the master, through its public ``Server.serve(sockets=[...])``. In handoff mode
it listens on nothing: each connected socket the master passes over the slot's
socketpair is given to uvicorn's HTTP protocol with asyncio's
``loop.connect_accepted_socket`` (`_handed_protocol` is the one place that
builds a uvicorn protocol by hand). Either way uvicorn does all HTTP and
websocket parsing; lifespan startup runs before the worker reports ready, and
lifespan shutdown after the drain.

What uvicorn does not bound is added around its protocol (`guarded_protocol`):
connections per client address, and the time to send the first request head.
On SIGTERM the worker accepts what is queued for it, gives a connection that
has sent nothing yet `FIRST_BYTES` seconds, then lets uvicorn finish the
requests in flight (``timeout_graceful_shutdown``) and run lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import select
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from storekit.reference.sticky.limits import Limits, host_of
from storekit.reference.sticky.worker import HandoffListener, WorkerSpec

__all__ = ["FIRST_BYTES", "SWEEP_INTERVAL", "AsgiWorker", "Guard", "guarded_protocol", "uvicorn_options"]

#: Seconds between two looks for connections past their header timeout.
SWEEP_INTERVAL = 0.25
#: Seconds a drain waits for a request on a connection that has sent nothing yet.
FIRST_BYTES = 1.0
#: Seconds a drain waits for the kernel's (kernel mode) or the socketpair's (handoff) queue to empty.
_QUEUE_WINDOW = 1.0
_HEAD_END = b"\r\n\r\n"


class Guard:
    """The connections of one worker, by client address; shared by every guarded protocol."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.per_address: Counter[str] = Counter()
        self.open: dict[asyncio.BaseTransport, Any] = {}  # transport -> its guarded protocol
        self.refused = 0
        self.expired = 0

    def admit(self, transport: asyncio.BaseTransport, protocol: Any) -> bool:
        host = host_of(transport.get_extra_info("peername"))
        limits = self.limits
        if self.per_address[host] >= limits.per_address_limit and not limits.trusts(host):
            self.refused += 1
            return False
        self.per_address[host] += 1
        self.open[transport] = protocol
        protocol.peer_host = host
        return True

    def forget(self, transport: asyncio.BaseTransport) -> None:
        protocol = self.open.pop(transport, None)
        if protocol is None:
            return
        host = protocol.peer_host
        left = self.per_address[host] - 1
        if left > 0:
            self.per_address[host] = left
        else:
            del self.per_address[host]

    def sweep(self, now: float) -> None:
        """Forget closed connections (a websocket's swaps uvicorn's protocol out, so ours never hears of
        its end) and close those whose first head is overdue."""
        for transport, protocol in list(self.open.items()):
            if transport.is_closing():
                self.forget(transport)
            elif protocol.head_due is not None and now > protocol.head_due:
                self.expired += 1
                protocol.head_due = None
                transport.close()

    def waiting_for_first_bytes(self) -> bool:
        return any(not p.heard for t, p in self.open.items() if not t.is_closing())


def guarded_protocol(base: type[asyncio.Protocol], guard: Guard) -> type[asyncio.Protocol]:
    """`base` (uvicorn's HTTP protocol) that counts its connection in `guard` and must see the end of
    each request head within the header timeout: the first from the connection's start, each later
    one (on a kept-alive connection) from its first byte. It relies on asyncio's Protocol methods and
    on `on_response_complete`, which both of uvicorn's HTTP protocols call when a response is done."""

    class Guarded(base):  # type: ignore[valid-type,misc]
        peer_host = ""
        refused = False
        heard = False
        head_due: float | None = None
        between = False  # a response is done; the next request's first byte starts its head's clock
        _tail = b""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if not guard.admit(transport, self):
                self.refused = True
                transport.close()
                return
            self.head_due = time.monotonic() + guard.limits.header_timeout
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if self.refused:
                return
            self.heard = True
            if self.between:
                self.between = False
                self.head_due, self._tail = time.monotonic() + guard.limits.header_timeout, b""
            if self.head_due is not None:
                if _HEAD_END in self._tail + data[:3] or _HEAD_END in data:
                    self.head_due, self._tail = None, b""
                else:
                    self._tail = (self._tail + data)[-3:]
            super().data_received(data)

        def on_response_complete(self, *args: Any) -> None:
            super().on_response_complete(*args)
            self.between = self.head_due is None  # a head pipelined behind it is already in hand

        def connection_lost(self, exc: Exception | None) -> None:
            if self.refused:
                return
            guard.forget(self.transport)
            super().connection_lost(exc)

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def uvicorn_options(spec: WorkerSpec, nofile: int) -> dict[str, Any]:
    """uvicorn's Config options for this worker: the limits of `spec`, then the caller's `server_options`.

    `connection_limit` becomes ``limit_concurrency`` (past it uvicorn answers 503), `idle_timeout`
    ``timeout_keep_alive`` and `graceful_timeout` ``timeout_graceful_shutdown`` (both whole seconds);
    forwarded headers count only from `trusted_proxies`.
    """
    limits = spec.limits
    trusted = [str(net) for net in limits.trusted_proxies]
    options: dict[str, Any] = {
        "interface": "asgi3",
        "lifespan": "auto",
        "log_config": None,  # no handlers of uvicorn's: its warnings and errors reach stderr as they are
        "access_log": False,
        "limit_concurrency": limits.connections_for(nofile),
        "timeout_keep_alive": max(1, math.ceil(limits.idle_timeout)),
        "timeout_graceful_shutdown": max(1, math.ceil(spec.graceful_timeout)),
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
    }
    options.update(spec.server_options)
    return options


class _Server(uvicorn.Server):
    """uvicorn's Server under the sticky worker's signals, drain and hand-off."""

    def __init__(self, config: uvicorn.Config, worker: AsgiWorker) -> None:
        super().__init__(config)
        self.worker = worker

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The worker's own handlers stay: SIGTERM drains (see on_tick), SIGINT is the master's.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)  # lifespan startup first, then listening
        if self.started:
            self.worker.serving(self)

    async def on_tick(self, counter: int) -> bool:
        if self.worker.stopping.is_set():
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.worker.drain()
        await super().shutdown(sockets=sockets)


class AsgiWorker:
    """`run()` serves `app` with uvicorn until SIGTERM (drain, lifespan shutdown, exit 0) and reports
    ready itself; the constructor raises, before anything is reported, when uvicorn refuses the options."""

    def __init__(self, app: Any, spec: WorkerSpec, stopping: threading.Event) -> None:
        self.spec = spec
        self.stopping = stopping
        self.guard = Guard(spec.limits)
        options = uvicorn_options(spec, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.config = uvicorn.Config(app, **options)
        self.config.load()  # resolves "auto" to uvicorn's HTTP protocol class, which the guard wraps
        self.config.http_protocol_class = guarded_protocol(self.config.http_protocol_class, self.guard)
        self.server = _Server(self.config, self)
        self.reported = False
        self.tasks: set[asyncio.Task[Any]] = set()  # hand-offs under way: asyncio keeps weak references
        self.sweeper: asyncio.Task[None] | None = None

    def run(self) -> int:
        listener = self.spec.listener
        sockets = [listener] if isinstance(listener, socket.socket) else []
        try:
            asyncio.run(self.server.serve(sockets=sockets))
        except SystemExit:  # uvicorn's answer to a failed lifespan startup
            if not self.reported:
                self._report(b"Ethe app's lifespan startup failed (its error is above)")
            return 3
        except BaseException as exc:
            if not self.reported:
                message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self._report(f"E{message}".encode("utf-8", "replace")[:4000])
            traceback.print_exc()
            return 1
        return 0

    def _report(self, message: bytes) -> None:
        self.reported = True
        os.write(self.spec.ready_fd, message)
        os.close(self.spec.ready_fd)

    def serving(self, server: _Server) -> None:
        loop = asyncio.get_running_loop()
        listener = self.spec.listener
        if isinstance(listener, HandoffListener):
            listener.setblocking(False)
            loop.add_reader(listener.fileno(), self._take_handed, server)
        self.sweeper = loop.create_task(self._sweep())
        self._report(b"R")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._handed)

    def _handed(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a client gone before its transport was made: asyncio closed the socket

    async def _sweep(self) -> None:
        while True:
            self.guard.sweep(time.monotonic())
            await asyncio.sleep(SWEEP_INTERVAL)

    def _take_handed(self, server: _Server) -> None:
        """Serve every connection the master has passed over, up to 64 a wake-up."""
        listener = self.spec.listener
        assert isinstance(listener, HandoffListener)
        loop = asyncio.get_running_loop()
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError:  # out of descriptors: the rest wait in the socketpair
                loop.remove_reader(listener.fileno())
                loop.call_later(0.05, loop.add_reader, listener.fileno(), self._take_handed, server)
                return
            conn.setblocking(False)
            self._spawn(loop.connect_accepted_socket(_handed_protocol(server), conn))

    async def drain(self) -> None:
        """Take what is queued for this worker, stop taking, and give silent connections their first bytes."""
        listener = self.spec.listener
        now = time.monotonic()
        deadline, settled = now + _QUEUE_WINDOW, now + self.spec.settle
        while (now < settled or _readable(listener.fileno())) and now < deadline:
            if isinstance(listener, HandoffListener):
                self._take_handed(self.server)
            await asyncio.sleep(0.005)  # kernel mode: asyncio's server accepts them
            now = time.monotonic()
        if isinstance(listener, HandoffListener):
            asyncio.get_running_loop().remove_reader(listener.fileno())
        for server in self.server.servers:
            server.close()  # stop accepting before the first-bytes window
        await asyncio.sleep(0.01)  # connections just accepted reach connection_made, and the guard
        first_bytes_by = time.monotonic() + min(FIRST_BYTES, self.spec.limits.header_timeout)
        while self.guard.waiting_for_first_bytes() and time.monotonic() < first_bytes_by:
            await asyncio.sleep(0.01)
        if self.sweeper is not None:
            self.sweeper.cancel()


def _handed_protocol(server: uvicorn.Server) -> Callable[[], asyncio.Protocol]:
    """A factory of uvicorn's HTTP protocol for a connection the master handed over.

    Internal API: this is what uvicorn's ``Server.startup`` builds for ``loop.create_server``
    (protocol class from the loaded config, the server's state, the lifespan's state); uvicorn
    has no public way to serve an already accepted socket. tests/test_sticky_asgi.py covers it.
    """
    config = server.config
    loop = asyncio.get_running_loop()

    def create() -> asyncio.Protocol:
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=server.server_state, app_state=server.lifespan.state, _loop=loop
        )

    return create


def _readable(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False
