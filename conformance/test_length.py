"""length (optional): the number of live sessions."""

from __future__ import annotations

import time
from typing import Any

import pytest

from storekit.codec import format_expires
from storekit.conformance._lab import Lab, expiry, scenario
from storekit.conformance._support import check, depends, new_sid, require, sleep_until, tidy


@pytest.mark.clause("length.1")
def test_length_counts_live_sessions(storekit_stores: Any) -> None:
    """length.1: n sets of distinct sids add n, a set over a sid adds nothing, a destroy takes one."""
    store = storekit_stores.isolated()
    require(store, "length")
    base = store.length()
    isolated = storekit_stores.target.namespaced is not None or not storekit_stores.target.shared
    if isolated:
        check(base == 0, "length.1", f"length() of a new, empty store is {base} (expected 0)")
    sids = [new_sid() for _ in range(5)]
    for n, sid in enumerate(sids, start=1):
        store.set(sid, {"n": n})
        count = store.length()
        check(count == base + n, "length.1", f"length() is {count} after {n} sets (expected {base + n})")
    store.set(sids[0], {"n": "again"})
    count = store.length()
    check(
        count == base + 5,
        "length.1",
        f"length() is {count} after a set over an existing sid (expected {base + 5})",
    )
    store.destroy(sids[1])
    depends(store.get(sids[1]) is None, "destroy.1", "get after destroy returned the session")
    count = store.length()
    check(count == base + 4, "length.1", f"length() is {count} after a destroy (expected {base + 4})")
    tidy(store, *sids)


@scenario(exclusive=True)
def length_leaves_out_expired(lab: Lab) -> None:
    store = lab.store()
    require(store, "length")
    base = store.length()
    expires = time.time() + lab.lead
    for n in range(3):
        store.set(new_sid(), {"n": n, "cookie": {"expires": format_expires(expires)}})
    store.set(new_sid(), {"n": "lasting"})
    sleep_until(expires + lab.resolution)
    count = store.length()
    check(
        count == base + 1,
        "length.1",
        f"length() is {count} with 3 expired and 1 live session (expected {base + 1})",
    )


@pytest.mark.clause("length.1")
@expiry(length_leaves_out_expired)
def test_length_leaves_out_expired_sessions(storekit_lab: Any) -> None:
    """length.1: expired sessions are not counted."""
    storekit_lab.replay(length_leaves_out_expired)
