"""threads: one store shared by many threads (or asyncio tasks) stays linearizable per sid."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from storekit.conformance._support import AsyncStoreFacade, depends, fail, new_sid, tidy
from storekit.conformance.linearizability import Kind, Operation, check_history

THREADS = 8
TASKS = 64
SIDS = 4
TASK_SIDS = 16
"""64 tasks on 4 sids would overlap up to 30 calls a sid, more than the checker can
search in good time; on 16 sids a history stays as concurrent as the threads'."""


def _observed(session: Any) -> Hashable:
    if session is None:
        return None
    if isinstance(session, dict) and set(session) == {"w"} and isinstance(session["w"], str):
        return session["w"]
    return f"unexpected session {session!r}"


class Recorder:
    def __init__(self, sids: list[str]) -> None:
        self.sids = sids
        self.ops: list[Operation] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def plan(self, client: int, count: int) -> list[tuple[Kind, str, str]]:
        rng = random.Random(client)
        kinds: tuple[Kind, ...] = ("get",) * 5 + ("set",) * 4 + ("destroy",)
        return [(rng.choice(kinds), rng.choice(self.sids), f"c{client}-{i}") for i in range(count)]

    def record(self, client: int, kind: Kind, sid: str, value: str, result: Hashable, called: int) -> None:
        written = value if kind == "set" else None
        op = Operation(client, sid, kind, written, result, called, time.monotonic_ns())
        with self._lock:
            self.ops.append(op)

    def failed(self, client: int, kind: Kind, sid: str, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(f"client {client}: {kind}({sid!r}) raised {type(exc).__name__}: {exc}")


def _run_threads(store: Any, recorder: Recorder, per_thread: int) -> None:
    barrier = threading.Barrier(THREADS)

    def work(client: int) -> None:
        steps = recorder.plan(client, per_thread)
        calls: dict[str, Callable[[str, str], Any]] = {
            "get": lambda sid, _: store.get(sid),
            "set": lambda sid, value: store.set(sid, {"w": value}),
            "destroy": lambda sid, _: store.destroy(sid),
        }
        barrier.wait()
        for kind, sid, value in steps:
            called = time.monotonic_ns()
            try:
                result = calls[kind](sid, value)
            except Exception as exc:
                recorder.failed(client, kind, sid, exc)
                return
            recorder.record(client, kind, sid, value, _observed(result) if kind == "get" else None, called)

    threads = [threading.Thread(target=work, args=(n,), name=f"storekit-client-{n}") for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if any(thread.is_alive() for thread in threads):
        fail("threads.1", "a thread was still running after 120s: the store hangs under concurrency")


def _run_tasks(facade: AsyncStoreFacade, recorder: Recorder, per_task: int) -> None:
    store = facade.inner

    async def work(client: int, start: asyncio.Event) -> None:
        steps = recorder.plan(client, per_task)
        await start.wait()
        for kind, sid, value in steps:
            called = time.monotonic_ns()
            try:
                if kind == "get":
                    result = _observed(await store.get(sid))
                elif kind == "set":
                    result = await store.set(sid, {"w": value})
                else:
                    result = await store.destroy(sid)
            except Exception as exc:
                recorder.failed(client, kind, sid, exc)
                return
            recorder.record(client, kind, sid, value, result if kind == "get" else None, called)

    async def main() -> None:
        start = asyncio.Event()
        tasks = [asyncio.ensure_future(work(n, start)) for n in range(TASKS)]
        start.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    facade.run(main())


def _sequential_semantics_hold(store: Any) -> None:
    """threads.1 is about concurrency: what one thread alone sees is other clauses' business."""
    sid = new_sid("seq")
    depends(store.get(sid) is None, "get.1", "get of an unknown sid did not return None")
    try:
        store.destroy(sid)
    except Exception as exc:
        depends(False, "destroy.2", f"destroy of an unknown sid raised {type(exc).__name__}")
    store.set(sid, {"w": "one"})
    depends(store.get(sid) == {"w": "one"}, "get.2", "get did not return what set stored")
    store.set(sid, {"w": "two"})
    depends(store.get(sid) == {"w": "two"}, "set.1", "a second set did not replace the first")
    store.destroy(sid)
    depends(store.get(sid) is None, "destroy.1", "get after destroy returned the session")
    store.destroy(sid)


@pytest.mark.clause("threads.1")
def test_concurrent_use_is_linearizable_per_sid(storekit_store: Any) -> None:
    """threads.1: 8 threads (or 64 tasks) on one store raise nothing and give linearizable histories."""
    _sequential_semantics_hold(storekit_store)
    tasks = isinstance(storekit_store, AsyncStoreFacade)
    sids = [new_sid("race") for _ in range(TASK_SIDS if tasks else SIDS)]
    recorder = Recorder(sids)
    if tasks:
        _run_tasks(storekit_store, recorder, per_task=25)
        who = f"{TASKS} tasks"
    else:
        _run_threads(storekit_store, recorder, per_thread=200)
        who = f"{THREADS} threads"
    tidy(storekit_store, *sids)
    if recorder.errors:
        fail("threads.1", f"with {who}: " + "; ".join(recorder.errors[:5]))
    result = check_history(recorder.ops)
    if result.ok is None:
        fail("threads.1", f"with {who}, the checker could not decide: {result.explain()}")
    if not result.ok:
        fail("threads.1", f"with {who}, {result.explain()}")
