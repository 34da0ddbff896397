"""The master of the sticky server: owns every slot, forks and replaces workers, hands off.

One thread, one selector. The master opens every slot's listening socket (kernel
mode) or hand-off socketpair (handoff mode) before any worker exists and keeps it
open until it stops, so a slot's index in the reuseport group, and with it the
mapping from client address to slot, never changes when a worker dies: the
connections that arrive meanwhile wait in the slot's backlog or socketpair for
the replacement, which inherits the same socket.

On SIGTERM nothing accepted is lost: each listening socket first refuses new
handshakes (a socket filter that drops the SYN of a new connection; queued
connections are sockets of their own and stay, and handshakes under way
complete), the hand-off accepts what the kernel queues for a quarter of a
second more and waits up to a second for heads still coming in, and only once
every connection is in a worker's hands are the workers told to drain (in
kernel mode at once: each worker accepts for that quarter second itself).

`shared_sessions()` starts ClusterStore's server (``cluster.setup()``) in the
master before it loads the app or forks a worker, so that ``ClusterStore()``
works in the workers, and in the app module the master imports, with no
setup of the user's own; leaving it stops the server and removes its socket
directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from storekit.reference.sticky.bpf import HANDSHAKE_SETTLE, refuse_new_connections
from storekit.reference.sticky.handoff import Handoff
from storekit.reference.sticky.sockets import Config
from storekit.reference.sticky.worker import HandoffListener, WorkerSpec, run_worker

__all__ = ["Master", "shared_sessions"]

#: Seconds past its own deadlines that a stopping hand-off gets before the workers drain all the same.
_DRAIN_SLACK = 0.5
#: Seconds a stopping master waits for heads still coming in (header routing) before the workers drain.
_DRAIN_WINDOW = 1.0


@contextlib.contextmanager
def shared_sessions() -> Iterator[str | None]:
    """``cluster.setup()`` unless a cluster server already answers for this process; on exit,
    ``cluster.shutdown()`` if this call started it. Yields the socket directory this call made
    (None when it made none), for whoever must remove it if this process is SIGKILLed."""
    from storekit.errors import StoreError
    from storekit.reference.cluster.common import ENV_SOCKET
    from storekit.reference.cluster.master import serving

    inherited = os.environ.get(ENV_SOCKET)
    stack = contextlib.ExitStack()
    try:
        path = stack.enter_context(serving())
    except (OSError, StoreError) as exc:  # an app without ClusterStore must still be served
        print(f"storekit serve: warning: ClusterStore will not work in the workers: {exc}", file=sys.stderr)
        yield None
        return
    with stack:
        yield None if inherited else os.path.dirname(path)


@dataclass
class _Slot:
    pid: int | None = None
    ready_fd: int | None = None
    lifeline_w: int | None = None  # closing it tells the worker the master is gone
    ready: bool = False
    started: float = 0.0
    quick_deaths: int = 0
    respawn_at: float | None = None


class Master:
    """Run with `run()` in the process that is to be the master; returns an exit code."""

    def __init__(self, config: Config, sockets: list[socket.socket], status_fd: int | None = None,
                 lifeline_fd: int | None = None) -> None:  # fmt: skip
        self.config = config
        self.sockets = sockets
        self.status_fd = status_fd
        self.lifeline_fd = lifeline_fd
        self.slots = [_Slot() for _ in range(config.workers)]
        self.sel = selectors.DefaultSelector()
        self.handoff: Handoff | None = None
        self.announced = False
        self.stopping = False
        self.stop_requested = False
        self.workers_told = False
        self.drain_until = 0.0
        self.children_changed = False
        self.kill_at = 0.0
        self.exit_code = 0
        self.pid = os.getpid()

    # -- life cycle -------------------------------------------------------------
    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._own_fds = {wake_r, wake_w, self.sel.fileno()}
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, self._on_child_signal)
        self.sel.register(wake_r, selectors.EVENT_READ, lambda: _drain(wake_r))
        for fd in (self.lifeline_fd, self.status_fd):
            if fd is not None:
                os.set_blocking(fd, False)
        if self.lifeline_fd is not None:
            self.sel.register(self.lifeline_fd, selectors.EVENT_READ, self._on_lifeline)
        if self.config.mode == "handoff":
            self.handoff = Handoff(self.config, self.sockets[0], self.sel)
        for slot in range(self.config.workers):
            self._spawn(slot)
        try:
            while not (self.stopping and not any(s.pid for s in self.slots)):
                self._step()
        finally:
            for sock in self.sockets:
                sock.close()
            signal.set_wakeup_fd(-1)
        return self.exit_code

    def _step(self) -> None:
        now = time.monotonic()
        deadlines = [s.respawn_at for s in self.slots if s.respawn_at is not None]
        if self.handoff is not None and (head_deadline := self.handoff.next_deadline()) is not None:
            deadlines.append(head_deadline)
        if self.stopping:
            deadlines.append(self.kill_at if self.workers_told else self.drain_until)
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        for key, _ in self.sel.select(timeout):
            key.data()
        if self.stop_requested and not self.stopping:
            self._begin_stop()
        if self.children_changed:
            self.children_changed = False
            self._reap()
        now = time.monotonic()
        for slot, state in enumerate(self.slots):
            if state.respawn_at is not None and now >= state.respawn_at and not self.stopping:
                self._spawn(slot)
        if self.handoff is not None:
            self.handoff.expire(now)
        if self.stopping and not self.workers_told:
            if self.handoff is None or self.handoff.drained() or now >= self.drain_until:
                self._tell_workers()
        elif self.stopping and now >= self.kill_at:
            for state in self.slots:
                if state.pid:
                    _kill(state.pid, signal.SIGKILL)
            self.kill_at = now + 1.0

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def _on_child_signal(self, signum: int, frame: object) -> None:
        self.children_changed = True

    def _on_lifeline(self) -> None:
        assert self.lifeline_fd is not None
        if not _drain(self.lifeline_fd):  # EOF: whoever started us is gone
            self.sel.unregister(self.lifeline_fd)
            self.stop_requested = True

    def _begin_stop(self) -> None:
        """Stop taking connections but lose none: new handshakes are refused first, then what the
        kernel already queued is handed on (handoff) or left for the workers to accept (kernel);
        the workers are told to drain once every connection the master holds is in their hands."""
        self.stopping = True
        window = min(_DRAIN_WINDOW, self.config.limits.header_timeout)
        # a fallback: the hand-off reports drained once its listener closed and its heads are placed
        self.drain_until = time.monotonic() + HANDSHAKE_SETTLE + window + _DRAIN_SLACK
        if self.handoff is not None:
            self.handoff.begin_drain(window)  # it closes the listener once handshakes settled
        else:
            for sock in self.sockets:
                refuse_new_connections(sock)  # the workers accept what is queued, then close
                sock.close()  # the master's copy; each worker holds its own
        for state in self.slots:
            state.respawn_at = None

    def _tell_workers(self) -> None:
        self.workers_told = True
        self.kill_at = time.monotonic() + self.config.graceful_timeout + 1.0
        for state in self.slots:
            if state.pid:
                _kill(state.pid, signal.SIGTERM)

    # -- workers ----------------------------------------------------------------
    def _spawn(self, slot: int) -> None:
        state = self.slots[slot]
        state.respawn_at = None
        ready_r, ready_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        close = self._master_fds() | {ready_r, lifeline_w}
        if self.config.mode == "kernel":
            listener: socket.socket | HandoffListener = self.sockets[slot]
        else:
            assert self.handoff is not None
            sock = self.sockets[0]
            listener = HandoffListener(self.handoff.worker_ends[slot], sock.getsockname(), sock.family)
        keep = {listener.fileno()}
        spec = WorkerSpec(
            slot=slot, app=self.config.app, factory=self.config.factory, listener=listener,
            ready_fd=ready_w, lifeline_fd=lifeline_r, master_pid=self.pid, close_fds=sorted(close - keep),
            threads=self.config.threads, graceful_timeout=self.config.graceful_timeout,
            limits=self.config.limits, server_options=self.config.server_options,
            interface=self.config.interface,
        )  # fmt: skip
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = run_worker(spec)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(ready_w)
        os.close(lifeline_r)
        state.pid, state.ready, state.ready_fd, state.started = pid, False, ready_r, time.monotonic()
        state.lifeline_w = lifeline_w  # closes when the master exits, however it exits
        self.sel.register(ready_r, selectors.EVENT_READ, lambda: self._on_ready(slot, ready_r))
        self._status(event="spawned", slot=slot, pid=pid)

    def _master_fds(self) -> set[int]:
        fds = set(self._own_fds)
        fds |= {s.fileno() for s in self.sockets}
        if self.handoff is not None:
            fds |= self.handoff.fds()
        for state in self.slots:
            fds |= {fd for fd in (state.ready_fd, state.lifeline_w) if fd is not None}
        fds |= {fd for fd in (self.status_fd, self.lifeline_fd) if fd is not None}
        return fds

    def _on_ready(self, slot: int, fd: int) -> None:
        state = self.slots[slot]
        data = os.read(fd, 4096)
        if data == b"R":
            state.ready = True
            self._status(event="ready", slot=slot, pid=state.pid)
            if not self.announced and all(s.ready for s in self.slots):
                self.announced = True
                pids = {str(i): s.pid for i, s in enumerate(self.slots)}
                self._status(event="serving", pids=pids)
            return
        self.sel.unregister(fd)
        os.close(fd)
        state.ready_fd = None
        if data.startswith(b"E"):
            message = f"worker {slot} failed to start: {data[1:].decode('utf-8', 'replace')}"
            self._status(event="error", slot=slot, message=message)
            if not self.announced:
                self.exit_code = 3
                self.stop_requested = True

    def _reap(self) -> None:
        for slot, state in enumerate(self.slots):
            if not state.pid:
                continue
            try:
                pid, status = os.waitpid(state.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = state.pid, 0
            if pid == 0:
                continue
            if state.ready_fd is not None:
                self.sel.unregister(state.ready_fd)
                os.close(state.ready_fd)
                state.ready_fd = None
            if state.lifeline_w is not None:
                os.close(state.lifeline_w)
                state.lifeline_w = None
            state.pid = None
            self._status(event="exited", slot=slot, pid=pid, status=status)
            if self.stopping:
                continue
            if not self.announced:  # a worker that dies while booting stops the server
                self.exit_code = self.exit_code or 3
                self._status(event="error", slot=slot, message=f"worker {slot} exited while starting")
                self.stop_requested = True
                continue
            quick = time.monotonic() - state.started < 1.0
            state.quick_deaths = state.quick_deaths + 1 if quick else 0
            delay = min(0.05 * 2**state.quick_deaths, 5.0) if state.quick_deaths else 0.0
            state.respawn_at = time.monotonic() + delay

    # -- reporting ----------------------------------------------------------------
    def _status(self, **event: Any) -> None:
        if event["event"] == "error":
            print(f"storekit serve: {event['message']}", file=sys.stderr, flush=True)
        if self.status_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.status_fd, json.dumps(event).encode() + b"\n")


def _drain(fd: int) -> bool:
    """Read what is waiting on a non-blocking fd; False at end of file."""
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return True
    except OSError:
        return False


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
