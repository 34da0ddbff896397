"""renew (optional, contract version 2): touch and get in one step.

A session middleware reads the session at the start of a request and, when the
request changed nothing, renews its expiry at the end: two round trips. A store
with ``renew`` does both at the start, in one (Redis has ``GETEX``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from storekit.codec import format_expires
from storekit.conformance._lab import Lab, expiry, scenario
from storekit.conformance._support import (
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
from storekit.errors import InvalidSessionData


def _data(session: Any) -> Any:
    return None if not isinstance(session, dict) else {k: v for k, v in session.items() if k != "cookie"}


@scenario()
def renew_outlives_the_old_expiry(lab: Lab) -> None:
    store = lab.store()
    require(store, "renew")
    sid = new_sid("rn1")
    try:
        first = time.time() + lab.lead
        store.set(sid, {"n": 1, "items": [1, 2], "cookie": {"expires": format_expires(first)}})
        got = store.renew(sid, expiring(3600, n=999, items=[]))
        check(
            _data(got) == {"n": 1, "items": [1, 2]},
            "renew.1",
            f"renew returned {show(got)}, not the stored data",
        )
        sleep_until(first + lab.resolution)
        after = store.get(sid)
        check(
            after is not None, "renew.1", "the session expired at its old expiry although renew extended it"
        )
        check(
            _data(after) == {"n": 1, "items": [1, 2]},
            "renew.1",
            f"renew rewrote the stored data: {show(after)}",
        )
    finally:
        tidy(store, sid)


@pytest.mark.clause("renew.1")
@expiry(renew_outlives_the_old_expiry)
def test_renew_returns_the_data_and_renews_the_expiry(storekit_lab: Any) -> None:
    """renew.1: the stored session (data and cookie) comes back, and it outlives its old expiry."""
    storekit_lab.replay(renew_outlives_the_old_expiry)


@scenario()
def renew_of_a_dead_sid(lab: Lab) -> None:
    store = lab.store()
    require(store, "renew")
    unknown, destroyed, expired = new_sid("rn2"), new_sid("rn2"), new_sid("rn2")
    try:
        store.set(destroyed, expiring(3600, n=1))
        store.destroy(destroyed)
        depends(store.get(destroyed) is None, "destroy.1", "get after destroy returned the session")
        ends = time.time() + lab.lead
        store.set(expired, {"n": 1, "cookie": {"expires": format_expires(ends)}})
        sleep_until(ends + lab.resolution)
        depends(store.get(expired) is None, "ttl.2", "the session did not expire")
        for label, sid in (("unknown", unknown), ("destroyed", destroyed), ("expired", expired)):
            got = store.renew(sid, expiring(3600, n=2))
            check(got is None, "renew.2", f"renew of an {label} sid returned {show(got)}")
            check(
                store.get(sid) is None, "renew.2", f"renew of an {label} sid created {show(store.get(sid))}"
            )
    finally:
        tidy(store, unknown, destroyed, expired)


@pytest.mark.clause("renew.2")
@expiry(renew_of_a_dead_sid)
def test_renew_of_an_unknown_destroyed_or_expired_sid_gives_none(storekit_lab: Any) -> None:
    """renew.2: None, and nothing created."""
    storekit_lab.replay(renew_of_a_dead_sid)


@pytest.mark.clause("renew.3")
def test_renew_with_a_past_expiry_removes_and_a_malformed_one_raises(storekit_store: Any) -> None:
    """renew.3: a past expiry ends the session; a malformed one is refused and changes nothing."""
    store = storekit_store
    require(store, "renew")
    gone, kept = new_sid("rn3"), new_sid("rn3")
    try:
        store.set(gone, expiring(3600, n=1))
        got = store.renew(gone, expiring(-1, n=1))
        check(got is None, "renew.3", f"renew with a past expiry returned {show(got)}")
        check(store.get(gone) is None, "renew.3", "renew with a past expiry left the session")
        store.set(kept, expiring(3600, n=1))
        try:
            store.renew(kept, {"cookie": {"expires": "tomorrow"}})
        except InvalidSessionData:
            pass
        except Exception as exc:
            fail(
                "renew.3",
                f"a malformed expires raised {type(exc).__name__}: {exc}; it must raise InvalidSessionData",
            )
        else:
            fail("renew.3", "renew with the expires 'tomorrow' returned; it must raise InvalidSessionData")
        check(_data(store.get(kept)) == {"n": 1}, "renew.3", "a refused renew changed the session")
    finally:
        tidy(store, gone, kept)
