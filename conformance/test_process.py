"""process: many processes, one shared store (targets with shared=True).

Each worker process builds its own store from the target's factory, as every
worker of a real multi-process app does.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from storekit.codec import format_expires
from storekit.conformance._processes import Pool, Worker, WorkerError, _stream
from storekit.conformance._support import check, depends, fail, new_sid, offers, show, sleep_until, tidy
from storekit.conformance.linearizability import check_history

HISTORY_SIDS = 3
OPS_PER_WORKER = 600


@pytest.mark.clause("process.1")
def test_a_returned_write_is_seen_by_later_operations_in_every_process(
    storekit_pool: Pool, storekit_store: Any
) -> None:
    """process.1: a set, destroy or clear that returned in one process is seen by every later operation."""
    workers = storekit_pool.workers
    sid = new_sid("p1")
    storekit_store.set(sid, {"from": "parent"})
    for worker in workers:
        got = worker.call("get", sid)
        check(
            got == {"from": "parent"},
            "process.1",
            f"worker {worker.pid} read {show(got)} after the parent's set",
        )
    for writer in workers:
        writer.call("set", sid, {"from": writer.pid})
        for reader in workers:
            got = reader.call("get", sid)
            check(
                got == {"from": writer.pid},
                "process.1",
                f"worker {reader.pid} read {show(got)} after worker {writer.pid}'s set returned",
            )
        got = storekit_store.get(sid)
        check(
            got == {"from": writer.pid},
            "process.1",
            f"the parent read {show(got)} after worker {writer.pid}'s set",
        )
    workers[0].call("destroy", sid)
    for worker in workers[1:]:
        got = worker.call("get", sid)
        check(
            got is None,
            "process.1",
            f"worker {worker.pid} read {show(got)} after another process destroyed it",
        )
    if offers(storekit_store, "clear"):
        others = [new_sid("p1c") for _ in workers]
        for worker, other in zip(workers, others, strict=True):
            worker.call("set", other, {"n": 1})
        storekit_store.clear()
        for worker in workers:
            seen = [other for other in others if worker.call("get", other) is not None]
            check(not seen, "process.1", f"worker {worker.pid} still read {seen} after the parent's clear()")


@pytest.mark.clause("process.2")
def test_concurrent_processes_tear_no_session_and_give_linearizable_histories(storekit_pool: Pool) -> None:
    """process.2: concurrent get/set/destroy from 4 processes read whole sessions, linearizable per sid.

    Each set writes six fields that all hold the set's own token; a read whose
    fields differ is torn and reported as such, naming the sid, the fields and
    the writes they came from, before the per-sid search for a linearization.
    """
    sids = [new_sid("p2") for _ in range(HISTORY_SIDS)]
    try:
        ops = storekit_pool.history(sids, OPS_PER_WORKER)
    except WorkerError as exc:
        fail("process.2", str(exc))
    result = check_history(ops, timeout=120)
    if result.ok is None:
        fail("process.2", result.explain())
    check(
        result.ok,
        "process.2",
        f"{len(ops)} operations from {len(storekit_pool.workers)} processes: {result.explain()}",
    )
    for sid in sids:
        storekit_pool.workers[0].call("destroy", sid)


@pytest.mark.clause("process.3")
def test_a_killed_process_loses_no_returned_write_and_breaks_nothing(
    storekit_pool: Pool, storekit_target: Any, storekit_store: Any
) -> None:
    """process.3: SIGKILL in mid-stream loses no write that had returned; other processes carry on."""
    victim_sids = [new_sid("p3v") for _ in range(5)]
    victim = Worker(storekit_target.factory, _stream, victim_sids)
    shared = [new_sid("p3") for _ in range(HISTORY_SIDS)]
    start = time.monotonic_ns() + 100_000_000
    for index, worker in enumerate(storekit_pool.workers):
        worker.send("history", index, shared, OPS_PER_WORKER // 2, random.randrange(1 << 30), start)
    acked: dict[str, int] = {}
    killed_after = random.randint(50, 400)
    try:
        for _ in range(killed_after):
            seq = victim._receive("a write")
            acked[victim_sids[seq % len(victim_sids)]] = seq
    finally:
        victim.kill()
    for seq in victim.acknowledged():
        acked[victim_sids[seq % len(victim_sids)]] = seq
    try:
        ops = storekit_pool.collect_history()
    except WorkerError as exc:
        fail("process.3", f"another process failed while a worker was killed: {exc}")
    for sid, seq in acked.items():
        got = storekit_store.get(sid)
        stored = int(got["w"].rpartition("#")[2]) if isinstance(got, dict) and "w" in got else None
        check(
            stored is not None and stored >= seq,
            "process.3",
            f"write #{seq} to {sid!r} returned before the SIGKILL, but the store holds {show(got)}",
        )
    result = check_history(ops, timeout=120)
    check(result.ok is not False, "process.3", f"the surviving processes' history: {result.explain()}")
    probe = new_sid("p3after")
    storekit_store.set(probe, {"after": True})
    got = storekit_pool.workers[0].call("get", probe)
    check(got == {"after": True}, "process.3", f"after the kill, a worker read {show(got)} for a fresh write")
    tidy(storekit_store, probe, *victim_sids, *shared)


@pytest.mark.clause("process.4")
def test_every_process_sees_the_same_expiry(
    storekit_pool: Pool, storekit_target: Any, storekit_store: Any
) -> None:
    """process.4: a session expires at the same time for every process."""
    resolution = storekit_target.ttl_resolution
    from_parent, from_worker = new_sid("p4"), new_sid("p4w")
    expires = time.time() + resolution + 1.0
    cookie = {"expires": format_expires(expires)}
    storekit_store.set(from_parent, {"n": 1, "cookie": cookie})
    storekit_pool.workers[0].call("set", from_worker, {"n": 2, "cookie": cookie})
    depends(time.time() < expires - resolution, "ttl.1", "setting two sessions took longer than the window")
    for worker in storekit_pool.workers:
        for sid in (from_parent, from_worker):
            check(
                worker.call("get", sid) is not None,
                "process.4",
                f"worker {worker.pid} lost {sid!r} before it expired",
            )
    sleep_until(expires + resolution)
    for worker in storekit_pool.workers:
        for sid in (from_parent, from_worker):
            got = worker.call("get", sid)
            check(
                got is None,
                "process.4",
                f"worker {worker.pid} still read {show(got)} for {sid!r} after it expired",
            )
    for sid in (from_parent, from_worker):
        got = storekit_store.get(sid)
        check(got is None, "process.4", f"the parent still read {show(got)} for {sid!r} after it expired")
