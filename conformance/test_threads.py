"""threads: one store shared by many threads (or asyncio tasks) reads whole sessions, stays
linearizable per sid, and every method it offers is safe beside the writes."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Hashable
from typing import Any

import pytest

from storekit.conformance._support import (
    AsyncStoreFacade,
    Stores,
    depends,
    expiring,
    fail,
    new_sid,
    offers,
    tidy,
)
from storekit.conformance.linearizability import Liveness, Operation, check_history, observe, record

THREADS = 8
TASKS = 64
SIDS = 4
TASK_SIDS = 16
"""64 tasks on 4 sids would overlap up to 30 calls a sid, more than the checker can
search in good time; on 16 sids a history stays as concurrent as the threads'."""
TOUCH_AHEAD = 3600.0
"""touch() gives an expiry an hour away: no session expires while the test runs."""
MIX = {"get": 40, "set": 32, "destroy": 8, "touch": 8, "length": 3, "all": 3, "clear": 1}
"""The share of each method in a client's calls (in 95); those the store lacks drop out."""
BASIC = ("get", "set", "destroy")


def _touching(token: str) -> dict[str, Any]:
    """What a touch passes: the expiry, and data that must not reach the store (touch.1)."""
    return expiring(TOUCH_AHEAD, **record(token))


def _seen(session: object) -> Hashable:
    return observe(session, ignore=("cookie",))


class Recorder:
    """The history of a run: per-sid operations, counts, what raised, sids no one wrote."""

    def __init__(self, sids: list[str], mix: dict[str, int], known: set[str] | None) -> None:
        self.sids = sids
        self.mix = mix
        self.known = known  # the sids all() may return besides ours; None: anything (not our own store)
        self.ops: list[Operation] = []
        self.counts: list[tuple[int, int, int, int]] = []  # (client, called, returned, length())
        self.errors: list[str] = []
        self.strays: list[str] = []
        self._lock = threading.Lock()

    def plan(self, client: int, count: int) -> list[tuple[str, str, str]]:
        rng = random.Random(client)
        kinds = rng.choices(list(self.mix), list(self.mix.values()), k=count)
        return [(kind, rng.choice(self.sids), f"{kind[0]}{client}-{i}") for i, kind in enumerate(kinds)]

    def record(self, client: int, kind: str, sid: str, token: str, result: Any, called: int) -> None:
        returned = time.monotonic_ns()
        ops: list[Operation] = []
        if kind == "get":
            ops = [Operation(client, sid, "get", None, _seen(result), called, returned)]
        elif kind == "set":
            ops = [Operation(client, sid, "set", token, None, called, returned)]
        elif kind == "destroy":
            ops = [Operation(client, sid, "destroy", None, None, called, returned)]
        elif kind == "replace":
            if not isinstance(result, bool):
                self.failed(client, f"replace({sid!r})", f"returned {result!r}, not a bool")
                return
            ops = [Operation(client, sid, "replace", token, result, called, returned)]
        elif kind == "clear":
            ops = [Operation(client, each, "clear", None, None, called, returned) for each in self.sids]
        elif kind == "length":
            if not isinstance(result, int) or isinstance(result, bool):
                self.failed(client, "length()", f"returned {result!r}, not an int")
                return
            with self._lock:
                self.counts.append((client, called, returned, result))
        elif kind == "all":
            if not isinstance(result, dict):
                self.failed(client, "all()", f"returned a {type(result).__name__}, not a dict")
                return
            ops = [
                Operation(client, each, "all", None, _seen(result.get(each)), called, returned)
                for each in self.sids
            ]
            if self.known is not None:
                strays = sorted(set(result) - set(self.sids) - self.known)
                if strays:
                    with self._lock:
                        self.strays.append(f"client {client}: all() returned sids no one wrote: {strays[:3]}")
        with self._lock:
            self.ops += ops

    def failed(self, client: int, call: str, what: str) -> None:
        with self._lock:
            self.errors.append(f"client {client}: {call} {what}")


def _call(store: Any, kind: str, sid: str, token: str) -> Any:
    if kind == "set":
        return store.set(sid, record(token))
    if kind == "replace":
        return store.replace(sid, record(token))
    if kind == "touch":
        return store.touch(sid, _touching(token))
    if kind in BASIC:
        return getattr(store, kind)(sid)
    return getattr(store, kind)()


async def _acall(store: Any, kind: str, sid: str, token: str) -> Any:
    if kind == "set":
        return await store.set(sid, record(token))
    if kind == "replace":
        return await store.replace(sid, record(token))
    if kind == "touch":
        return await store.touch(sid, _touching(token))
    if kind in BASIC:
        return await getattr(store, kind)(sid)
    return await getattr(store, kind)()


def _shown(kind: str, sid: str) -> str:
    return f"{kind}({sid!r})" if kind in (*BASIC, "touch", "replace") else f"{kind}()"


def _run_threads(store: Any, recorder: Recorder, per_thread: int, clause: str = "threads.1") -> None:
    barrier = threading.Barrier(THREADS)

    def work(client: int) -> None:
        steps = recorder.plan(client, per_thread)
        barrier.wait()
        for kind, sid, token in steps:
            called = time.monotonic_ns()
            try:
                result = _call(store, kind, sid, token)
            except Exception as exc:
                recorder.failed(client, _shown(kind, sid), f"raised {type(exc).__name__}: {exc}")
                return
            recorder.record(client, kind, sid, token, result, called)

    threads = [threading.Thread(target=work, args=(n,), name=f"storekit-client-{n}") for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if any(thread.is_alive() for thread in threads):
        fail(clause, "a thread was still running after 120s: the store hangs under concurrency")


def _run_tasks(facade: AsyncStoreFacade, recorder: Recorder, per_task: int) -> None:
    store = facade.inner

    async def work(client: int, start: asyncio.Event) -> None:
        steps = recorder.plan(client, per_task)
        await start.wait()
        for kind, sid, token in steps:
            called = time.monotonic_ns()
            try:
                result = await _acall(store, kind, sid, token)
            except Exception as exc:
                recorder.failed(client, _shown(kind, sid), f"raised {type(exc).__name__}: {exc}")
                return
            recorder.record(client, kind, sid, token, result, called)

    async def main() -> None:
        start = asyncio.Event()
        tasks = [asyncio.ensure_future(work(n, start)) for n in range(TASKS)]
        start.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    facade.run(main())


def _sequential_semantics_hold(store: Any) -> None:
    """threads.1 is about concurrency: what one thread alone sees is other clauses' business."""
    sid = new_sid("seq")
    one, two = record("one"), record("two")
    depends(store.get(sid) is None, "get.1", "get of an unknown sid did not return None")
    try:
        store.destroy(sid)
    except Exception as exc:
        depends(False, "destroy.2", f"destroy of an unknown sid raised {type(exc).__name__}")
    store.set(sid, one)
    depends(store.get(sid) == one, "get.2", "get did not return what set stored")
    store.set(sid, two)
    depends(store.get(sid) == two, "set.1", "a second set did not replace the first")
    store.destroy(sid)
    depends(store.get(sid) is None, "destroy.1", "get after destroy returned the session")
    store.destroy(sid)


def _works_alone(store: Any, method: str, own: bool) -> bool:
    """Whether an optional method does its job for one thread alone; one that does not
    is left out of the concurrent run, so that its own clause alone reports it."""
    sid, other = new_sid("alone"), new_sid("alone")
    before = record("before")
    try:
        if method == "touch":
            store.set(sid, before)
            store.touch(sid, _touching("touched"))
            store.touch(other, _touching("touched"))
            return _seen(store.get(sid)) == "before" and store.get(other) is None
        if method == "length":
            base = store.length()
            if not own:
                return isinstance(base, int)
            store.get(other)
            store.set(sid, before)
            store.set(sid, before)
            grew = store.length()
            store.destroy(sid)
            return bool(grew == base + 1 and store.length() == base)
        if method == "all":
            store.get(other)
            store.set(sid, before)
            every = store.all()
            if not isinstance(every, dict) or _seen(every.get(sid)) != "before" or other in every:
                return False
            store.destroy(sid)
            return sid not in store.all()
        store.set(sid, before)  # clear, of a store of its own
        store.clear()
        store.clear()
        return store.get(sid) is None
    except Exception:
        return False
    finally:
        tidy(store, sid, other)


def _miscounts(recorder: Recorder, base: int | None) -> list[str]:
    """length() and all() results that no moment of their call can explain; ``base``
    is the count of other sessions, None if it is not known (counts go unchecked)."""
    liveness = Liveness(recorder.ops)
    seen = []
    for client, called, returned, count in recorder.counts:
        low, high = liveness.bounds(called, returned)
        if base is not None and not base + low <= count <= base + high:
            seen.append(
                f"client {client}: length() returned {count} while between {base + low} and "
                f"{base + high} sessions were live (called {called}, returned {returned})"
            )
    for op in recorder.ops:
        if op.kind != "all":
            continue
        surely, possibly = liveness.live(op.sid, op.called, op.called if op.returned is None else op.returned)
        if op.result is None and surely:
            seen.append(f"client {op.client}: all() left out {op.sid!r}, live throughout the call")
        elif op.result is not None and not possibly:
            seen.append(f"client {op.client}: all() returned {op.sid!r}, not live at any moment of the call")
    return seen


def _hint(value: Hashable) -> str:
    if isinstance(value, str) and value.startswith("t"):
        return " (that is the data touch() was given: touch must leave the stored data alone)"
    return ""


@pytest.mark.clause("threads.1")
def test_concurrent_use_raises_nothing_tears_nothing_and_is_linearizable(storekit_stores: Stores) -> None:
    """threads.1: 8 threads (or 64 tasks) on every method raise nothing, tear nothing, count right, linearize.

    A session is six fields that one set fills with its own token: a read whose
    fields differ is torn, and is reported as such before any search; a whole
    read names exactly one set, so each sid's history stays a register's and
    the search stays per sid. touch (an hour ahead, with data no set wrote) is
    a no-op on what a read may see. clear() enters every test sid's history as
    a destroy within the call's interval, so the search judges it with the
    rest. all() is not one atomic snapshot (a SCAN is not), so it is not
    searched: each test sid in it must be whole, written by a set begun before
    all() returned, and live at some instant of the call; a sid live
    throughout the call must be in it. length() must lie between the sids
    surely live throughout the call and those possibly live at some instant of
    it. Both are bounds computed from the history, with no search: decidable.
    clear() runs, and counts and strays are checked, only on a store of the
    test's own (a fresh namespace, or a store that is not shared). An optional
    method that fails its own clause for one thread alone is left out, so that
    its own clause, not this one, reports it.
    """
    target = storekit_stores.target
    store = storekit_stores.isolated()
    _sequential_semantics_hold(store)
    own = target.namespaced is not None or not target.shared
    mix = {
        kind: weight
        for kind, weight in MIX.items()
        if kind in BASIC
        or (offers(store, kind) and (own or kind != "clear") and _works_alone(store, kind, own))
    }
    base = store.length() if "length" in mix and own else 0
    known = set(store.all()) if "all" in mix and own else None
    tasks = isinstance(store, AsyncStoreFacade)
    sids = [new_sid("race") for _ in range(TASK_SIDS if tasks else SIDS)]
    recorder = Recorder(sids, mix, known)
    if tasks:
        _run_tasks(store, recorder, per_task=25)
        who = f"{TASKS} tasks"
    else:
        _run_threads(store, recorder, per_thread=200)
        who = f"{THREADS} threads"
    tidy(store, *sids)
    if recorder.errors:
        fail("threads.1", f"with {who}: " + "; ".join(recorder.errors[:5]))
    result = check_history(recorder.ops)
    if result.ok is None:
        fail("threads.1", f"with {who}, the checker could not decide: {result.explain()}")
    if not result.ok:
        hint = _hint(result.history[0].result) if result.problem == "unwritten" else ""
        fail("threads.1", f"with {who}, {result.explain()}{hint}")
    wrong = recorder.strays + _miscounts(recorder, base if own else None)
    if wrong:
        fail("threads.1", f"with {who}: " + "; ".join(wrong[:5]))
