"""destroy: removes one sid, and is a no-op for an unknown one."""

from __future__ import annotations

from typing import Any

import pytest

from storekit.conformance._support import check, depends, new_sid, show, tidy


@pytest.mark.clause("destroy.1")
def test_get_after_destroy_returns_none(storekit_store: Any) -> None:
    """destroy.1: after destroy(sid), get(sid) returns None."""
    sid = new_sid()
    storekit_store.set(sid, {"n": 1})
    storekit_store.destroy(sid)
    got = storekit_store.get(sid)
    check(got is None, "destroy.1", f"get({sid!r}) after destroy returned {show(got)} (expected None)")


@pytest.mark.clause("destroy.2")
def test_destroy_of_an_unknown_sid_is_a_no_op(storekit_store: Any) -> None:
    """destroy.2: destroy of an unknown sid, or of one already destroyed, does nothing and raises nothing."""
    unknown, twice = new_sid(), new_sid()
    before = storekit_store.get(unknown)
    depends(before is None, "get.1", f"get({unknown!r}) of an unknown sid returned {show(before)}")
    storekit_store.destroy(unknown)
    got = storekit_store.get(unknown)
    check(
        got is None,
        "destroy.2",
        f"get({unknown!r}) returned {show(got)} after destroy of that unknown sid "
        "(expected None, as get returned before the destroy)",
    )
    storekit_store.set(twice, {"n": 1})
    storekit_store.destroy(twice)
    storekit_store.destroy(twice)


@pytest.mark.clause("destroy.3")
def test_destroy_removes_that_sid_only(storekit_store: Any) -> None:
    """destroy.3: destroy removes the given sid and no other."""
    base = new_sid()
    sids = [base, base + "x", base[:-1], base.upper()]
    for index, sid in enumerate(sids):
        storekit_store.set(sid, {"n": index})
    storekit_store.destroy(base)
    for index, sid in enumerate(sids[1:], start=1):
        got = storekit_store.get(sid)
        check(
            got == {"n": index}, "destroy.3", f"destroy({base!r}) also changed {sid!r}: get gave {show(got)}"
        )
    tidy(storekit_store, *sids)
