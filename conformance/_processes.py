"""Worker processes for the process clauses: each builds its own store from the
target's factory and runs what the parent asks, over a pipe.

Workers are spawned (never forked: the parent may run server threads) with
``multiprocess``, whose dill pickling carries lambda and closure factories.
Times are ``time.monotonic_ns()``, one system-wide clock on Linux and macOS,
so histories from different processes line up.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import multiprocess

from storekit.conformance.linearizability import Operation, observe, record

ANSWER_TIMEOUT = 120.0
"""Seconds a worker may take to answer before the suite calls it hung."""

_context = multiprocess.get_context("spawn")


MIX = ("get",) * 5 + ("set",) * 4 + ("destroy",)
"""The operations of a process history, in their shares."""


def _history(
    store: Any,
    client: int,
    sids: list[str],
    count: int,
    seed: int,
    start_ns: int,
    kinds: tuple[str, ...] = MIX,
) -> list[tuple[Any, ...]]:
    """Run ``count`` random operations from ``start_ns`` on; record each with its times.

    Each set (or replace) writes a :func:`~storekit.conformance.linearizability.record`,
    every field holding its token; a get records the token it read, or a ``Torn``; a
    replace records whether it wrote."""
    rng = random.Random(seed)
    plan = [(rng.choice(kinds), rng.choice(sids), f"p{client}-{i}") for i in range(count)]
    while time.monotonic_ns() < start_ns:
        pass
    ops = []
    for kind, sid, value in plan:
        called = time.monotonic_ns()
        if kind == "get":
            result = observe(store.get(sid))
        elif kind == "set":
            result = store.set(sid, record(value))
        elif kind == "replace":
            result = store.replace(sid, record(value))
        else:
            result = store.destroy(sid)
        written = value if kind in ("set", "replace") else None
        ops.append((client, sid, kind, written, result, called, time.monotonic_ns()))
    return ops


def _serve(factory: Callable[[], Any], connection: Any) -> None:
    """A worker's main loop: build the store, then answer commands until told to stop."""
    from storekit.conformance._support import build_store, close_store
    from storekit.target import Target

    store = build_store(Target(factory))
    connection.send(("ready", os.getpid()))
    try:
        while True:
            command, *args = connection.recv()
            if command == "stop":
                return
            try:
                if command == "history":
                    answer: Any = _history(store, *args)
                else:
                    answer = getattr(store, command)(*args)
            except BaseException as exc:
                connection.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=4)))
            else:
                connection.send(("ok", answer))
    finally:
        close_store(store)


def _stream(factory: Callable[[], Any], connection: Any, sids: list[str]) -> None:
    """Write to ``sids`` in turn for ever, acknowledging each write after it returned."""
    from storekit.conformance._support import build_store
    from storekit.target import Target

    store = build_store(Target(factory))
    connection.send(("ready", os.getpid()))
    seq = 0
    while True:
        sid = sids[seq % len(sids)]
        store.set(sid, {"w": f"{sid}#{seq}"})
        connection.send(seq)
        seq += 1


class WorkerError(AssertionError):
    """A worker raised, hung or died; the message says which and how."""


class Worker:
    def __init__(self, factory: Callable[[], Any], target: Callable[..., None] = _serve, *extra: Any) -> None:
        self.connection, child = _context.Pipe()
        self.process = _context.Process(target=target, args=(factory, child, *extra), daemon=True)
        self.process.start()
        child.close()
        self.pid = self._ready()

    def _ready(self) -> int:
        message = self._receive("start")
        if not (isinstance(message, tuple) and message[0] == "ready"):
            raise WorkerError(f"a worker could not build its store: {message!r}")
        return int(message[1])

    def _receive(self, what: str, timeout: float = ANSWER_TIMEOUT) -> Any:
        if not self.connection.poll(timeout):
            raise WorkerError(f"worker {self.process.pid} did not answer {what} within {timeout:.0f}s")
        try:
            return self.connection.recv()
        except EOFError:
            raise WorkerError(
                f"worker {self.process.pid} died during {what} (exit code {self.process.exitcode})"
            ) from None

    def send(self, command: str, *args: Any) -> None:
        self.connection.send((command, *args))

    def answer(self, what: str) -> Any:
        message = self._receive(what)
        if message[0] == "error":
            raise WorkerError(f"worker {self.pid}: {what} raised {message[1]}\n{message[2]}")
        return message[1]

    def call(self, command: str, *args: Any) -> Any:
        self.send(command, *args)
        return self.answer(f"{command}{args!r}")

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.send("stop")
        self.process.join(timeout=10)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.join(timeout=10)

    def acknowledged(self) -> Iterator[int]:
        """After a kill: the acknowledgements still in the pipe, in order."""
        while True:
            try:
                if not self.connection.poll(0.5):
                    return
                message = self.connection.recv()
            except (EOFError, OSError, ValueError):
                return
            except Exception:  # a message cut short by the kill
                return
            if isinstance(message, int):
                yield message


class Pool:
    """``size`` workers over one target, for the whole run of that target."""

    def __init__(self, factory: Callable[[], Any], size: int) -> None:
        self.factory = factory
        self.workers: list[Worker] = []
        try:
            for _ in range(size):
                self.workers.append(Worker(factory))
        except BaseException:
            self.close()
            raise

    def history(self, sids: list[str], count: int, kinds: tuple[str, ...] = MIX) -> list[Operation]:
        start = time.monotonic_ns() + 200_000_000  # everyone starts together, 0.2 s from now
        for index, worker in enumerate(self.workers):
            worker.send("history", index, sids, count, random.randrange(1 << 30), start, kinds)
        return self.collect_history()

    def collect_history(self) -> list[Operation]:
        ops: list[Operation] = []
        for worker in self.workers:
            ops += [Operation(*row) for row in worker.answer("its share of the history")]
        return ops

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
