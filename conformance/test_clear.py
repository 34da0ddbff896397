"""clear (optional): remove every session of the store's own namespace."""

from __future__ import annotations

from typing import Any

import pytest

from storekit.conformance._support import (
    all_sessions,
    check,
    depends,
    new_namespace,
    new_sid,
    not_applicable,
    offers,
    require,
    show,
)


@pytest.mark.clause("clear.1")
def test_after_clear_every_get_returns_none(storekit_stores: Any) -> None:
    """clear.1: after clear(), every get returns None and length() is 0."""
    store = storekit_stores.isolated()
    require(store, "clear")
    sids = [new_sid() for _ in range(4)]
    for sid in sids:
        store.set(sid, {"sid": sid})
    store.clear()
    for sid in sids:
        got = store.get(sid)
        check(got is None, "clear.1", f"get({sid!r}) after clear() returned {show(got)}")
    if offers(store, "length"):
        count = store.length()
        check(count == 0, "clear.1", f"length() after clear() is {count} (expected 0)")
    if offers(store, "all"):
        every = all_sessions(store)
        check(every == {}, "clear.1", f"all() after clear() returned {show(every)}")


@pytest.mark.clause("clear.2")
def test_clear_of_an_empty_store_is_a_no_op(storekit_stores: Any) -> None:
    """clear.2: clear() on an empty store does nothing and raises nothing."""
    store = storekit_stores.isolated()
    require(store, "clear")
    store.clear()
    store.clear()
    sid = new_sid()
    store.set(sid, {"after": True})
    got = store.get(sid)
    check(
        got == {"after": True},
        "clear.2",
        f"the store did not work after two clears: get returned {show(got)}",
    )


@pytest.mark.clause("clear.3")
def test_clear_leaves_other_namespaces_alone(storekit_stores: Any) -> None:
    """clear.3: clear() removes its own namespace only."""
    target = storekit_stores.target
    probe = storekit_stores.new()
    require(probe, "clear")
    if target.namespaced is not None:
        mine = storekit_stores.namespaced(new_namespace("a"))
        theirs = storekit_stores.namespaced(new_namespace("b"))
        other = "a store the target built for another namespace"
    elif not target.shared:
        mine, theirs = probe, storekit_stores.new()
        other = "another store from the same factory (the target is not shared)"
    else:
        not_applicable("the target is shared and has no namespaced hook to build another namespace")
    sid = new_sid()
    mine.set(sid, {"mine": True})
    theirs.set(sid, {"theirs": True})
    kept = new_sid()
    theirs.set(kept, {"theirs": 2})
    mine.clear()
    depends(mine.get(sid) is None, "clear.1", "clear() left a session in its own namespace")
    for key, expected in ((sid, {"theirs": True}), (kept, {"theirs": 2})):
        got = theirs.get(key)
        check(
            got == expected, "clear.3", f"clear() also removed {key!r} from {other}: get returned {show(got)}"
        )
