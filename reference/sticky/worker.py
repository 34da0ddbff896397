"""One worker of the sticky server: waitress (WSGI) or uvicorn (ASGI, see `asgi_worker`) serving one slot.

In kernel mode the worker accepts on its slot's own SO_REUSEPORT socket, which
it inherited from the master. In handoff mode it accepts nothing itself: the
master passes each connected socket over a Unix socketpair (SCM_RIGHTS), and
`HandoffListener` makes that socketpair look like a listening socket to
waitress, whose accept() then returns the handed-off connections. Either way
waitress does all HTTP parsing, keep-alive and threading, held to the server's
limits by `guard` (connections per address and in all, header and idle
timeouts). On SIGTERM the worker accepts what is queued for it, stops
accepting, finishes the requests in flight and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storekit.reference.sticky.app import Interface, interface_of, require_waitress
from storekit.reference.sticky.bpf import HANDSHAKE_SETTLE
from storekit.reference.sticky.limits import Limits

if TYPE_CHECKING:
    from storekit.reference.sticky.asgi_worker import AsgiWorker

__all__ = ["SLOT_ENV", "HandoffListener", "WorkerSpec", "run_worker", "server_options"]

#: Set in every worker's environment to its slot number ("0", "1", ...).
SLOT_ENV = "STOREKIT_WORKER_SLOT"

WSGIApp = Callable[..., Any]

_PR_SET_PDEATHSIG = 1


class HandoffListener:
    """A stand-in for a listening socket whose accept() returns handed-off connections.

    Its fileno() is the worker's end of the master's socketpair, so it polls
    readable exactly when a connection is waiting. Each message from the master
    carries one connected socket and no request bytes.
    """

    def __init__(self, channel: socket.socket, address: tuple[Any, ...], family: int) -> None:
        self.channel = channel
        self.address = address
        self.family = family
        self.type = socket.SOCK_STREAM

    def fileno(self) -> int:
        return self.channel.fileno()

    def accept(self) -> tuple[socket.socket, Any]:
        while True:
            _, fds, flags, _ = socket.recv_fds(self.channel, 1, 1)  # raises BlockingIOError when none wait
            if flags & socket.MSG_CTRUNC:  # the kernel could not give us the descriptor: we are at our limit
                for fd in fds:
                    os.close(fd)
                raise OSError(errno.EMFILE, "a handed-off connection was dropped: too many open files")
            if not fds:
                raise BlockingIOError(errno.EAGAIN, "the master closed the hand-off channel")
            conn = socket.socket(fileno=fds[0])
            try:
                return conn, conn.getpeername()
            except OSError:  # the client went away while in flight
                conn.close()

    def getsockname(self) -> tuple[Any, ...]:
        return self.address

    def setblocking(self, flag: bool) -> None:
        self.channel.setblocking(flag)

    def listen(self, backlog: int = 0) -> None:
        """Nothing to do: the master listens."""

    def getsockopt(self, level: int, option: int) -> int:
        return 0

    def setsockopt(self, level: int, option: int, value: int) -> None:
        """Options belong to the master's listening socket, not to the channel."""

    def close(self) -> None:
        self.channel.close()


@dataclass
class WorkerSpec:
    """What a freshly forked worker needs; every fd here was inherited from the master."""

    slot: int
    app: WSGIApp
    factory: bool
    listener: socket.socket | HandoffListener
    ready_fd: int
    lifeline_fd: int
    master_pid: int
    close_fds: Iterable[int] = ()
    threads: int = 4
    graceful_timeout: float = 10.0
    limits: Limits = field(default_factory=Limits)
    server_options: Mapping[str, Any] = field(default_factory=dict)
    interface: Interface = "wsgi"  # "auto": judged from the app the factory returns

    @property
    def settle(self) -> float:
        """Seconds a stopping worker keeps accepting: in kernel mode the handshakes under way when
        the master refused new ones still complete (bpf.HANDSHAKE_SETTLE); a hand-off has none."""
        return 0.0 if isinstance(self.listener, HandoffListener) else HANDSHAKE_SETTLE


def run_worker(spec: WorkerSpec) -> int:
    """Serve until SIGTERM (drain, then exit 0) or the master's death (exit at once)."""
    signal.set_wakeup_fd(-1)  # the master's, inherited
    _die_with_master(spec.master_pid, spec.lifeline_fd)
    for fd in spec.close_fds:
        _close_quietly(fd)
    os.environ[SLOT_ENV] = str(spec.slot)
    stopping = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the master, which stops us
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    asgi: AsgiWorker | None = None
    try:
        app = spec.app() if spec.factory else spec.app
        if interface_of(app, spec.interface) == "asgi":
            from storekit.reference.sticky.asgi_worker import AsgiWorker

            asgi = AsgiWorker(app, spec, stopping)
        else:
            require_waitress()  # a factory's app is judged here: say how to get waitress
            server = _make_server(app, spec)
    except BaseException as exc:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        os.write(spec.ready_fd, f"E{message}".encode("utf-8", "replace")[:4000])
        traceback.print_exc()
        return 3
    if asgi is not None:
        return asgi.run()  # says it is ready itself, once lifespan startup is done
    os.write(spec.ready_fd, b"R")
    os.close(spec.ready_fd)
    _serve(server, stopping, spec.graceful_timeout, settle=spec.settle)
    return 0


def server_options(spec: WorkerSpec, nofile: int) -> dict[str, Any]:
    """waitress's options for this worker: the limits of `spec`, then the caller's `server_options`.

    The connection limit is kept `FD_RESERVE` below the descriptor limit `nofile`, so that
    accept() runs out of connections to take before the process runs out of descriptors;
    waitress's own idle timeout (whole seconds) is put past ours, which is finer.
    """
    limits = spec.limits
    options: dict[str, Any] = {
        "threads": spec.threads,
        "connection_limit": limits.connections_for(nofile),
        "channel_timeout": math.ceil(max(limits.idle_timeout, limits.header_timeout)) + 1,
    }
    options.update(spec.server_options)
    return options


def _make_server(app: WSGIApp, spec: WorkerSpec) -> Any:
    from waitress.adjustments import Adjustments

    from storekit.reference.sticky.guard import GuardedServer

    queue_log = logging.getLogger("waitress.queue")
    if queue_log.level == logging.NOTSET:  # "Task queue depth is 3" on every busy moment
        queue_log.setLevel(logging.ERROR)
    options = server_options(spec, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    listener = spec.listener
    if isinstance(listener, socket.socket):
        adj = Adjustments(sockets=[listener], **options)
        sockinfo: tuple[Any, ...] = (listener.family, listener.type, listener.proto, listener.getsockname())
    else:
        adj = Adjustments(**options)
        sockinfo = (listener.family, socket.SOCK_STREAM, 0, listener.getsockname())
    # What waitress.create_server(sockets=[...]) does for one socket; a HandoffListener
    # is not a socket.socket, which the `sockets` option insists on, hence the direct call.
    return GuardedServer(app, listener, adj=adj, sockinfo=sockinfo, limits=spec.limits)


def _serve(server: Any, stopping: threading.Event, graceful_timeout: float, *, settle: float) -> None:
    from waitress import wasyncore

    from storekit.reference.sticky.guard import SWEEP_INTERVAL

    socket_map: dict[int, Any] = server._map

    class Waker(wasyncore.file_dispatcher):  # type: ignore[misc]
        # A signal writes a byte here (set_wakeup_fd), so poll() returns at once on SIGTERM.
        def writable(self) -> bool:
            return False

        def handle_read(self) -> None:
            self.recv(512)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    Waker(wake_r, socket_map)
    os.close(wake_r)  # file_dispatcher keeps a dup
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    timeout = min(float(server.adj.asyncore_loop_timeout), SWEEP_INTERVAL)
    while not stopping.is_set():
        wasyncore.loop(timeout=timeout, map=socket_map, use_poll=True, count=1)
    # Serve what was accepted or queued for us (the master refuses new connections first), then
    # stop; waitress's trigger stays, which the task threads still pull as they finish.
    deadline = time.monotonic() + graceful_timeout
    server.drain(
        graceful_timeout,
        lambda seconds: wasyncore.loop(timeout=seconds, map=socket_map, use_poll=True, count=1),
        settle=settle,
    )
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
    wasyncore.close_all(socket_map)


def _die_with_master(master_pid: int, lifeline_fd: int) -> None:
    """Never outlive the master: PR_SET_PDEATHSIG on Linux, and a pipe that ends with it anywhere."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master_pid:  # the master died before prctl took effect
        os._exit(1)

    def watch() -> None:
        try:
            while os.read(lifeline_fd, 64):
                pass
        except OSError:
            pass
        os._exit(1)

    threading.Thread(target=watch, name="storekit-lifeline", daemon=True).start()


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
