"""all (optional): every live session, keyed by sid."""

from __future__ import annotations

from typing import Any

import pytest

from storekit.conformance._support import check, depends, expiring, new_sid, require, round_trip, show, tidy


@pytest.mark.clause("all.1")
def test_all_maps_each_live_sid_to_its_session(storekit_stores: Any) -> None:
    """all.1: all() returns a new dict of each live sid to its session, and nothing else."""
    store = storekit_stores.isolated()
    require(store, "all")
    before = store.all()
    check(
        isinstance(before, dict),
        "all.1",
        f"all() returned a {type(before).__name__}, not a dict: {show(before)}",
    )
    added = {new_sid(): {"n": n, "pair": [n, n]} for n in range(3)}
    for sid, session in added.items():
        store.set(sid, session)
    gone, past = new_sid(), new_sid()
    store.set(gone, {"n": "destroyed"})
    store.destroy(gone)
    depends(store.get(gone) is None, "destroy.1", "get after destroy returned the session")
    store.set(past, expiring(-5, n="expired"))
    depends(store.get(past) is None, "ttl.3", "a set with a past expiry stored the session")
    every = store.all()
    expected = {**before, **{sid: round_trip(session) for sid, session in added.items()}}
    check(every == expected, "all.1", f"all() returned {show(every)} (expected {show(expected)})")
    first_sid = next(iter(added))
    every[first_sid]["n"] = "mutated"
    every["sk-intruder"] = {}
    again = store.all()
    check(again == expected, "all.1", f"mutating what all() returned changed the store: {show(again)}")
    check(again is not every, "all.1", "two calls to all() returned the same dict")
    tidy(store, *added)
