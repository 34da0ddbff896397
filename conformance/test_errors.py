"""errors: the backend goes away (targets with an outage hook)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from storekit.conformance._support import check, expiring, fail, new_sid, not_applicable, offers, show, tidy
from storekit.errors import StoreUnavailable

HANG = 30.0
"""Seconds after which an operation during an outage counts as hanging."""


def _timed(call: Callable[[], Any]) -> tuple[str, Any, float]:
    """Run ``call`` in a thread: ("returned", value | "raised", exc | "hung", None), seconds."""
    outcome: list[tuple[str, Any]] = []

    def run() -> None:
        try:
            outcome.append(("returned", call()))
        except BaseException as exc:
            outcome.append(("raised", exc))

    began = time.monotonic()
    thread = threading.Thread(target=run, daemon=True, name="storekit-outage-call")
    thread.start()
    thread.join(HANG)
    took = time.monotonic() - began
    return (*outcome[0], took) if outcome else ("hung", None, took)


@pytest.mark.clause("errors.1")
def test_during_an_outage_every_operation_raises_store_unavailable_in_time(
    storekit_target: Any, storekit_store: Any
) -> None:
    """errors.1: during an outage operations raise StoreUnavailable in time; after it, the store works."""
    if storekit_target.outage is None:
        not_applicable("the target has no outage hook (Target(outage=...) runs this)")
    store = storekit_store
    kept = new_sid("err")
    store.set(kept, expiring(3600, n=1))
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: store.get(kept),
        "set": lambda: store.set(new_sid("err"), {"n": 2}),
        "destroy": lambda: store.destroy(new_sid("err")),
    }
    optional: dict[str, Callable[[], Any]] = {
        "touch": lambda: store.touch(kept, expiring(60)),
        "length": lambda: store.length(),
        "all": lambda: store.all(),
        "clear": lambda: store.clear(),
    }
    calls.update({name: call for name, call in optional.items() if offers(store, name)})
    with storekit_target.outage():
        for name, call in calls.items():
            kind, value, _ = _timed(call)
            if kind == "hung":
                fail("errors.1", f"{name}() during the outage did not return within {HANG:.0f}s")
            if kind == "returned":
                fail(
                    "errors.1",
                    f"{name}() during the outage returned {show(value)} instead of raising StoreUnavailable",
                )
            check(
                isinstance(value, StoreUnavailable),
                "errors.1",
                f"{name}() during the outage raised {type(value).__name__}: {value}, not StoreUnavailable",
            )
    probe = new_sid("err-after")
    deadline = time.monotonic() + HANG
    while True:  # the backend may take a moment to answer again
        kind, value, _ = _timed(lambda: store.set(probe, {"back": True}))
        if kind == "returned" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(kind == "returned", "errors.1", f"after the outage, set() still {kind}: {show(value)}")
    got = store.get(probe)
    check(
        got == {"back": True}, "errors.1", f"after the outage, get() returned {show(got)} for a fresh write"
    )
    tidy(store, probe, kept)
