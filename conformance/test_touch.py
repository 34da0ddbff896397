"""touch (recommended): renew a session's expiry without rewriting its data."""

from __future__ import annotations

import time
from typing import Any

import pytest

from storekit.codec import format_expires
from storekit.conformance._lab import Lab, expiry, scenario
from storekit.conformance._support import check, depends, expiring, new_sid, require, show, sleep_until


@scenario()
def touch_extends_and_keeps_data(lab: Lab) -> None:
    store = lab.store()
    require(store, "touch")
    sid = new_sid()
    first = time.time() + lab.lead
    store.set(sid, {"n": 1, "items": [1, 2], "cookie": {"expires": format_expires(first)}})
    store.touch(sid, expiring(3600, n=999, items=[]))
    sleep_until(first + lab.resolution)
    got = store.get(sid)
    check(
        got is not None, "touch.1", f"the session expired at its old expiry although touch extended it: {got}"
    )
    data = {key: value for key, value in got.items() if key != "cookie"}
    check(data == {"n": 1, "items": [1, 2]}, "touch.1", f"touch rewrote the stored data: {show(data)}")


@pytest.mark.clause("touch.1")
@expiry(touch_extends_and_keeps_data)
def test_touch_renews_the_expiry_and_keeps_the_data(storekit_lab: Any) -> None:
    """touch.1: touch sets the expiry from the session's cookie and leaves the stored data as it was."""
    storekit_lab.replay(touch_extends_and_keeps_data)


@pytest.mark.clause("touch.2")
def test_touch_of_an_unknown_or_destroyed_sid_creates_nothing(storekit_store: Any) -> None:
    """touch.2: touch of an unknown, destroyed or already expired sid creates nothing."""
    require(storekit_store, "touch")
    unknown, destroyed, expired = new_sid(), new_sid(), new_sid()
    storekit_store.touch(unknown, expiring(3600, n=1))
    storekit_store.set(destroyed, expiring(3600, n=1))
    storekit_store.destroy(destroyed)
    depends(storekit_store.get(destroyed) is None, "destroy.1", "get after destroy returned the session")
    storekit_store.touch(destroyed, expiring(3600, n=1))
    storekit_store.set(expired, expiring(-1, n=1))
    depends(storekit_store.get(expired) is None, "ttl.3", "a set with a past expiry stored the session")
    storekit_store.touch(expired, expiring(3600, n=1))
    for label, sid in (("unknown", unknown), ("destroyed", destroyed), ("expired", expired)):
        got = storekit_store.get(sid)
        check(got is None, "touch.2", f"touch of an {label} sid {sid!r} created {show(got)}")


@scenario()
def touch_does_not_revive(lab: Lab) -> None:
    store = lab.store()
    require(store, "touch")
    sid = new_sid()
    expires = time.time() + lab.lead
    store.set(sid, {"n": 1, "cookie": {"expires": format_expires(expires)}})
    sleep_until(expires + lab.resolution)
    store.touch(sid, expiring(3600, n=1))
    got = store.get(sid)
    check(got is None, "touch.2", f"touch revived a session that had expired: get returned {show(got)}")


@pytest.mark.clause("touch.2")
@expiry(touch_does_not_revive)
def test_touch_does_not_revive_an_expired_session(storekit_lab: Any) -> None:
    """touch.2: a session that expired stays gone after touch."""
    storekit_lab.replay(touch_does_not_revive)


@pytest.mark.clause("touch.3")
def test_touch_with_a_past_expiry_removes_the_session(storekit_store: Any) -> None:
    """touch.3: touch with an expiry at or before now removes the session."""
    require(storekit_store, "touch")
    sid = new_sid()
    storekit_store.set(sid, expiring(3600, n=1))
    storekit_store.touch(sid, expiring(-1, n=1))
    got = storekit_store.get(sid)
    check(got is None, "touch.3", f"touch with an expiry in the past left {show(got)}")
