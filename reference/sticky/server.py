"""The sticky server: a WSGI or ASGI app on N worker processes, each client address on one worker.

The seed's sticky-session, in Python::

    with StickyServer(app, workers=4) as server:       # ip-hash routing
        ...  # http://127.0.0.1:{server.port}/ ; server.pids == {0: pid, 1: pid, ...}

    StickyServer(make_app, factory=True)               # make_app() runs once in each worker
    StickyServer(starlette_app)                        # ASGI: uvicorn in each worker (interface=)

or from a shell, ``storekit serve MODULE:APP --workers 4 --bind 127.0.0.1:8000`` (see `cli`).
The master starts ClusterStore's server before it loads the app, so workers
can build ``ClusterStore()`` with no setup of their own. What one client may
hold (connections, time to send its head) is bounded by `limits`.
See docs/sticky.md for the modes, proxies, limits and worker replacement.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import selectors
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Any

from storekit.reference.sticky.app import (
    Interface,
    prepare_app,
    require_server,
    require_uvicorn,
    require_waitress,
)
from storekit.reference.sticky.bpf import kernel_supported
from storekit.reference.sticky.limits import (
    CONNECTION_LIMIT,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    PER_ADDRESS_LIMIT,
    check_timeout,
    make_limits,
)
from storekit.reference.sticky.master import Master, shared_sessions
from storekit.reference.sticky.routing import (
    Mode,
    Routing,
    check_mode,
    check_routing,
    check_threads,
    check_workers,
    slot_for_address,
)
from storekit.reference.sticky.sockets import Config, Resolved, open_listeners
from storekit.reference.sticky.worker import SLOT_ENV

__all__ = [
    "SLOT_ENV",
    "StickyServer",
    "StickyServerError",
    "awhoami",
    "prepare_app",
    "require_server",
    "require_uvicorn",
    "require_waitress",
    "resolve_mode",
    "whoami",
]


class StickyServerError(RuntimeError):
    """The sticky server could not start, or a worker failed to boot."""


def resolve_mode(routing: Routing, mode: Mode) -> Resolved:
    """The data path for `routing`: the kernel steers, or the master hands sockets over."""
    if mode == "auto":
        return "kernel" if kernel_supported() and routing != "header" else "handoff"
    if mode == "kernel" and routing == "header":
        raise ValueError(
            "routing 'header' needs the master to read the request head; use mode 'handoff' or 'auto'"
        )
    if mode == "kernel" and not kernel_supported():
        raise ValueError(
            f"mode 'kernel' needs Linux SO_REUSEPORT, not on {sys.platform!r}; use 'handoff' or 'auto'"
        )
    return mode


def whoami(environ: Mapping[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app that answers which worker served it: ``slot 2 pid 4242``."""
    body = f"slot {os.environ.get(SLOT_ENV, '-')} pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def awhoami(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                  send: Callable[[Any], Awaitable[None]]) -> None:  # fmt: skip
    """`whoami` for ASGI: ``slot 2 pid 4242`` over HTTP; a websocket gets the same line, then each of
    its text messages back (lifespan is not supported, which uvicorn's ``lifespan="auto"`` accepts)."""
    line = f"slot {os.environ.get(SLOT_ENV, '-')} pid {os.getpid()}"
    if scope["type"] == "http":
        body = (line + "\n").encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": line})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    else:
        raise RuntimeError(f"awhoami serves http and websocket scopes, not {scope['type']!r}")


class StickyServer:
    """A master process and its workers, started by `start()` or `with`, ended by `stop()`.

    The master runs in a child of the calling process; `pids` maps each slot to
    its current worker's pid; `kill_worker()` and `wait_replaced()` let a test
    take a worker down and see its slot come back.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        workers: int | None = None,
        bind: tuple[str, int] = ("127.0.0.1", 0),
        routing: Routing = "ip-hash",
        mode: Mode = "auto",
        factory: bool = False,
        interface: Interface = "auto",
        header: str | None = "X-Forwarded-For",
        cookie: str | None = None,
        seed: int | None = None,
        threads: int = 4,
        start_timeout: float = 15.0,
        graceful_timeout: float = 10.0,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        connection_limit: int = CONNECTION_LIMIT,
        per_address_limit: int = PER_ADDRESS_LIMIT,
        trusted_proxies: Iterable[str] = (),
        server_options: Mapping[str, Any] | None = None,
    ) -> None:
        routing = check_routing(routing)
        name = getattr(app, "__qualname__", None) or repr(app)
        prepared, interface = prepare_app(
            app, factory=factory, name=name, flag="factory=True", interface=interface
        )
        self.config = Config(
            app=prepared,
            factory=factory,
            interface=interface,
            workers=check_workers((os.cpu_count() or 1) if workers is None else workers),
            routing=routing,
            mode=resolve_mode(routing, check_mode(mode)),
            seed=random.getrandbits(32) if seed is None else seed,
            header=header,
            cookie=cookie,
            threads=check_threads(threads),
            graceful_timeout=check_timeout(graceful_timeout, "--graceful-timeout"),
            limits=make_limits(
                connection_limit=connection_limit,
                per_address_limit=per_address_limit,
                header_timeout=header_timeout,
                idle_timeout=idle_timeout,
                trusted_proxies=trusted_proxies,
            ),
            server_options=dict(server_options or {}),
        )
        self._requested_mode = check_mode(mode)
        self.bind = bind
        self.start_timeout = start_timeout
        self.host = bind[0]
        self.port = 0
        self.master_pid: int | None = None
        self._pids: dict[int, int] = {}
        self._ready: dict[int, int] = {}
        self._seen: set[int] = set()
        self._errors: list[str] = []
        self._serving = False
        self._buffer = b""
        self._status_fd: int | None = None
        self._lifeline_fd: int | None = None
        self._cluster_dir: str | None = None  # ClusterStore's socket directory, made by the master

    @property
    def workers(self) -> int:
        return self.config.workers

    @property
    def mode(self) -> Resolved:
        return self.config.mode

    @property
    def interface(self) -> Interface:
        """ "asgi" or "wsgi"; "auto" for a factory whose app each worker judges."""
        return self.config.interface

    @property
    def routing(self) -> Routing:
        return self.config.routing

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pids(self) -> dict[int, int]:
        """Slot -> pid of the worker serving it now (a replacement may still be booting)."""
        self._read_status(0.0)
        return dict(self._pids)

    def all_pids(self) -> set[int]:
        """The master and every worker it ever started, to check that none outlives `stop()`."""
        self._read_status(0.0)
        return self._seen | ({self.master_pid} if self.master_pid else set())

    def slot_for(self, address: str) -> int:
        """The slot ip-hash routing gives a client at `address`."""
        return slot_for_address(address, self.workers, self.seed)

    # -- life cycle ---------------------------------------------------------------
    def __enter__(self) -> StickyServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Open the sockets, fork the master, and wait until every worker serves."""
        require_server(self.config.interface)
        sockets = open_listeners(self.bind[0], self.bind[1], self.config, self._requested_mode)
        self.host, self.port = sockets[0].getsockname()[:2]
        status_r, status_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the master
            code = 1
            try:
                os.close(status_r)
                os.close(lifeline_w)
                with shared_sessions() as made:
                    if made is not None:
                        event = {"event": "cluster", "directory": made}
                        os.write(status_w, json.dumps(event).encode() + b"\n")
                    code = Master(self.config, sockets, status_w, lifeline_r).run()
            finally:
                os._exit(code)
        self.master_pid = pid
        for sock in sockets:
            sock.close()
        os.close(status_w)
        os.close(lifeline_r)
        self._status_fd, self._lifeline_fd = status_r, lifeline_w
        deadline = time.monotonic() + self.start_timeout
        while not self._serving and not self._errors and self._status_fd is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._read_status(left)
        if not self._serving:
            reason = "; ".join(self._errors) or f"not every worker was ready within {self.start_timeout}s"
            self.stop()
            raise StickyServerError(f"sticky server on {self.url} did not start: {reason}")

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the master, which drains its workers; SIGKILL whatever is left after `timeout`."""
        if self.master_pid is None:
            return
        limit = self.config.graceful_timeout + 5.0 if timeout is None else timeout
        _signal(self.master_pid, signal.SIGTERM)
        if not _wait_child(self.master_pid, limit):
            for pid in [self.master_pid, *self.all_pids()]:
                _signal(pid, signal.SIGKILL)
            _wait_child(self.master_pid, 5.0)
        self._read_status(0.0)
        for fd in (self._status_fd, self._lifeline_fd):
            if fd is not None:
                os.close(fd)
        self._status_fd = self._lifeline_fd = None
        self.master_pid = None
        if self._cluster_dir is not None:  # gone already unless the master had to be SIGKILLed
            shutil.rmtree(self._cluster_dir, ignore_errors=True)
            self._cluster_dir = None

    def kill_worker(self, slot: int, signum: int = signal.SIGKILL) -> int:
        """Send `signum` to the worker of `slot`; returns its pid."""
        pid = self.pids[slot]
        _signal(pid, signum)
        return pid

    def wait_replaced(self, slot: int, old_pid: int, timeout: float = 10.0) -> int:
        """Wait until a worker other than `old_pid` serves `slot`; returns its pid."""
        deadline = time.monotonic() + timeout
        while True:
            pid = self._ready.get(slot)
            if pid is not None and pid != old_pid:
                return pid
            left = deadline - time.monotonic()
            if left <= 0 or self._status_fd is None:
                raise StickyServerError(
                    f"slot {slot} had no new worker within {timeout}s (old pid {old_pid})"
                )
            self._read_status(left)

    def _read_status(self, timeout: float) -> None:
        if self._status_fd is None:
            return
        with selectors.DefaultSelector() as sel:
            sel.register(self._status_fd, selectors.EVENT_READ)
            if not sel.select(timeout):
                return
        data = os.read(self._status_fd, 65536)
        if not data:
            os.close(self._status_fd)
            self._status_fd = None
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._on_event(json.loads(line))

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "spawned":
            self._pids[event["slot"]] = event["pid"]
            self._seen.add(event["pid"])
        elif kind == "ready":
            self._ready[event["slot"]] = event["pid"]
        elif kind == "serving":
            self._serving = True
        elif kind == "error":
            self._errors.append(event["message"])
        elif kind == "cluster":
            self._cluster_dir = event["directory"]


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_child(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
