"""replace (optional, contract version 2): a write that lands only on a live session.

A session middleware saves a loaded session at the end of its request. If the
session was destroyed meanwhile (a logout in another tab), a plain ``set``
brings it back and the old cookie is logged in again; ``replace`` writes only
while the session is still there, in one step of the store, so it cannot.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from storekit.codec import format_expires
from storekit.conformance._lab import Lab, expiry, scenario
from storekit.conformance._processes import Pool, WorkerError
from storekit.conformance._support import (
    AsyncStoreFacade,
    Stores,
    check,
    depends,
    expiring,
    fail,
    new_sid,
    require,
    show,
    sleep_until,
    tidy,
)
from storekit.conformance.linearizability import check_history
from storekit.conformance.test_threads import TASK_SIDS, TASKS, THREADS, Recorder, _run_tasks, _run_threads
from storekit.errors import InvalidSessionData

MIX = {"get": 30, "replace": 40, "destroy": 12, "set": 13}
"""The calls of the concurrent clauses, in their shares: mostly replaces racing destroys,
with sets to bring sessions back so that replaces have something to land on."""
PROCESS_MIX = ("get",) * 3 + ("replace",) * 4 + ("destroy",) + ("set",) * 2
OPS_PER_WORKER = 400


def _replace(store: Any, sid: str, session: Any, clause: str) -> bool:
    __tracebackhide__ = True
    result = store.replace(sid, session)
    check(isinstance(result, bool), clause, f"replace({sid!r}, ...) returned {show(result)}, not a bool")
    return bool(result)


@scenario()
def replace_lands_only_on_a_live_session(lab: Lab) -> None:
    store = lab.store()
    require(store, "replace")
    live, unknown, destroyed, expired = (new_sid("rp1") for _ in range(4))
    try:
        store.set(live, expiring(3600, a=1, b=[1, 2]))
        check(
            _replace(store, live, expiring(3600, c="new"), "replace.1"),
            "replace.1",
            "replace of a live session returned False",
        )
        got = store.get(live)
        data = None if got is None else {k: v for k, v in got.items() if k != "cookie"}
        check(
            data == {"c": "new"},
            "replace.1",
            f"after replace, get returned {show(got)}, not the new session whole",
        )

        check(
            not _replace(store, unknown, expiring(3600, a=1), "replace.1"),
            "replace.1",
            "replace of an unknown sid returned True",
        )
        store.set(destroyed, expiring(3600, a=1))
        store.destroy(destroyed)
        depends(store.get(destroyed) is None, "destroy.1", "get after destroy returned the session")
        check(
            not _replace(store, destroyed, expiring(3600, a=2), "replace.1"),
            "replace.1",
            "replace of a destroyed sid returned True",
        )
        expires = time.time() + lab.lead
        store.set(expired, {"a": 1, "cookie": {"expires": format_expires(expires)}})
        sleep_until(expires + lab.resolution)
        depends(store.get(expired) is None, "ttl.2", "the session did not expire")
        check(
            not _replace(store, expired, expiring(3600, a=2), "replace.1"),
            "replace.1",
            "replace of an expired sid returned True",
        )
        for label, sid in (("unknown", unknown), ("destroyed", destroyed), ("expired", expired)):
            got = store.get(sid)
            check(got is None, "replace.1", f"replace of an {label} sid {sid!r} stored {show(got)}")
    finally:
        tidy(store, live, unknown, destroyed, expired)


@pytest.mark.clause("replace.1")
@expiry(replace_lands_only_on_a_live_session)
def test_replace_writes_a_live_session_and_nothing_else(storekit_lab: Any) -> None:
    """replace.1: on a live session, replace is set (whole, not merged) and returns True;
    on an unknown, destroyed or expired sid it stores nothing and returns False."""
    storekit_lab.replay(replace_lands_only_on_a_live_session)


@pytest.mark.clause("replace.2")
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"when": {1, 2}}, id="a-set"),
        pytest.param({1: "int key"}, id="int-key"),
        pytest.param({"x": float("nan")}, id="nan"),
        pytest.param({"cookie": {"expires": "tomorrow"}}, id="bad-expires"),
        pytest.param(["not", "a", "dict"], id="list"),
    ],
)
def test_replace_refuses_what_set_refuses_and_changes_nothing(storekit_store: Any, bad: Any) -> None:
    """replace.2: a session set would refuse raises InvalidSessionData; the stored one stays."""
    store = storekit_store
    require(store, "replace")
    sid, absent = new_sid("rp2"), new_sid("rp2")
    before = expiring(3600, kept=True)
    try:
        store.set(sid, before)
        for where in (sid, absent):
            try:
                store.replace(where, bad)
            except InvalidSessionData:
                pass
            except Exception as exc:
                fail(
                    "replace.2",
                    f"replace({where!r}, {show(bad)}) raised {type(exc).__name__}: {exc}; "
                    "it must raise InvalidSessionData",
                )
            else:
                fail(
                    "replace.2", f"replace({where!r}, {show(bad)}) returned; it must raise InvalidSessionData"
                )
        got = store.get(sid)
        check(
            got is not None and got.get("kept") is True,
            "replace.2",
            f"a refused replace changed the session: {show(got)}",
        )
        check(store.get(absent) is None, "replace.2", "a refused replace of an unknown sid stored something")
    finally:
        tidy(store, sid, absent)


@scenario()
def replace_sets_the_new_expiry(lab: Lab) -> None:
    store = lab.store()
    require(store, "replace")
    shorter, gone = new_sid("rp3"), new_sid("rp3")
    try:
        store.set(shorter, expiring(3600, n=1))
        expires = time.time() + lab.lead
        _replace(store, shorter, {"n": 2, "cookie": {"expires": format_expires(expires)}}, "replace.3")
        sleep_until(expires + lab.resolution)
        got = store.get(shorter)
        check(
            got is None,
            "replace.3",
            f"a replace with an expiry {lab.lead:g} s away left {show(got)} "
            f"{lab.resolution:g} s past that expiry",
        )
        store.set(gone, expiring(3600, n=1))
        removed = _replace(store, gone, expiring(-1, n=2), "replace.3")
        check(removed, "replace.3", "replace with a past expiry of a live session returned False")
        got = store.get(gone)
        check(got is None, "replace.3", f"replace with a past expiry left {show(got)}")
    finally:
        tidy(store, shorter, gone)


@pytest.mark.clause("replace.3")
@expiry(replace_sets_the_new_expiry)
def test_replace_sets_the_new_expiry(storekit_lab: Any) -> None:
    """replace.3: the expiry is the new session's; an expiry at or before now removes the live session."""
    storekit_lab.replay(replace_sets_the_new_expiry)


@pytest.mark.clause("replace.4")
def test_replace_beside_other_threads_is_linearizable(storekit_stores: Stores) -> None:
    """replace.4: 8 threads (or 64 tasks) mixing replace with set, get and destroy on a
    few sids give a history with a linearization in which each replace wrote exactly
    when the session was live (and said so)."""
    store = storekit_stores.isolated()
    require(store, "replace")
    alone = new_sid("rp4")
    depends(
        store.replace(alone, expiring(3600, n=1)) is False, "replace.1", "replace of an unknown sid wrote"
    )
    tidy(store, alone)
    tasks = isinstance(store, AsyncStoreFacade)
    sids = [new_sid("rp4") for _ in range(TASK_SIDS if tasks else 4)]
    recorder = Recorder(sids, MIX, None)
    if tasks:
        _run_tasks(store, recorder, per_task=25)
        who = f"{TASKS} tasks"
    else:
        _run_threads(store, recorder, per_thread=200, clause="replace.4")
        who = f"{THREADS} threads"
    tidy(store, *sids)
    if recorder.errors:
        fail("replace.4", f"with {who}: " + "; ".join(recorder.errors[:5]))
    result = check_history(recorder.ops)
    if result.ok is None:
        fail("replace.4", f"with {who}, the checker could not decide: {result.explain()}")
    check(result.ok, "replace.4", f"with {who}, {result.explain()}")


@pytest.mark.clause("replace.5")
def test_replace_from_many_processes_is_linearizable(storekit_pool: Pool, storekit_store: Any) -> None:
    """replace.5: 4 processes mixing replace with set, get and destroy give a linearizable history."""
    require(storekit_store, "replace")
    sids = [new_sid("rp5") for _ in range(3)]
    try:
        ops = storekit_pool.history(sids, OPS_PER_WORKER, PROCESS_MIX)
    except WorkerError as exc:
        fail("replace.5", str(exc))
    for sid in sids:
        storekit_pool.workers[0].call("destroy", sid)
    odd = [op for op in ops if op.kind == "replace" and not isinstance(op.result, bool)]
    check(not odd, "replace.5", f"replace returned {show(odd[0].result) if odd else ''}, not a bool")
    result = check_history(ops, timeout=120)
    if result.ok is None:
        fail("replace.5", result.explain())
    check(
        result.ok,
        "replace.5",
        f"{len(ops)} operations from {len(storekit_pool.workers)} processes: {result.explain()}",
    )
