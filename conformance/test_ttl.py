"""ttl: a session lives until its cookie.expires, give or take the target's resolution.

The scenarios that wait for real time run together in the expiry lab.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from storekit.codec import format_expires
from storekit.conformance._lab import Lab, expiry, scenario
from storekit.conformance._support import (
    all_sessions,
    check,
    expiring,
    new_sid,
    offers,
    show,
    sleep_until,
    tidy,
)
from storekit.errors import InvalidSessionData


@scenario()
def visible_until_expiry(lab: Lab) -> None:
    store = lab.store()
    sid = new_sid()
    expires = time.time() + lab.lead + 0.5
    store.set(sid, {"n": 1, "cookie": {"expires": format_expires(expires)}})
    while (now := time.time()) < expires - lab.resolution - 0.05:
        got = store.get(sid)
        check(
            got is not None and got.get("n") == 1,
            "ttl.1",
            f"get({sid!r}) returned {show(got)} {expires - now:.2f}s before cookie.expires "
            f"(resolution {lab.resolution}s)",
        )
        time.sleep(0.1)


@pytest.mark.clause("ttl.1")
@expiry(visible_until_expiry)
def test_a_session_is_returned_until_its_expiry(storekit_lab: Any) -> None:
    """ttl.1: a session whose cookie.expires lies ahead is returned until expires - resolution."""
    storekit_lab.replay(visible_until_expiry)


@scenario(exclusive=True)
def gone_after_expiry(lab: Lab) -> None:
    store = lab.store()
    sid, control = new_sid(), new_sid()
    base = store.length() if offers(store, "length") else 0
    store.set(control, {"control": True})
    expires = time.time() + lab.lead
    store.set(sid, {"n": 1, "cookie": {"expires": format_expires(expires)}})
    sleep_until(expires + lab.resolution)
    # all() and length() first: a get that drops the expired entry would hide their mistakes
    if offers(store, "all"):
        every = all_sessions(store)
        check(sid not in every, "ttl.2", f"all() still lists {sid!r} after it expired")
        check(control in every, "ttl.2", f"all() lost the unexpiring control session {control!r}")
    if offers(store, "length"):
        count = store.length()
        check(
            count == base + 1,
            "ttl.2",
            f"length() is {count} with one live and one expired session over {base} (expected {base + 1})",
        )
    got = store.get(sid)
    check(got is None, "ttl.2", f"get({sid!r}) returned {show(got)} {lab.resolution}s after cookie.expires")


@pytest.mark.clause("ttl.2")
@expiry(gone_after_expiry)
def test_an_expired_session_is_gone_from_get_length_and_all(storekit_lab: Any) -> None:
    """ttl.2: from expires + resolution on, get returns None and length and all leave the session out."""
    storekit_lab.replay(gone_after_expiry)


@pytest.mark.clause("ttl.3")
def test_set_with_a_past_expiry_stores_nothing_and_removes_the_sid(storekit_store: Any) -> None:
    """ttl.3: set with cookie.expires at or before now stores nothing, removes the sid, raises nothing."""
    fresh, existing = new_sid(), new_sid()
    storekit_store.set(fresh, expiring(-10, n=1))
    got = storekit_store.get(fresh)
    check(got is None, "ttl.3", f"set with an expiry 10s ago, then get({fresh!r}) returned {show(got)}")
    storekit_store.set(existing, expiring(3600, n=1))
    storekit_store.set(existing, expiring(-0.001, n=2))
    got = storekit_store.get(existing)
    check(got is None, "ttl.3", f"set over a live session with a past expiry left {show(got)}")


@scenario()
def later_set_extends(lab: Lab) -> None:
    store = lab.store()
    sid = new_sid()
    first = time.time() + lab.lead
    store.set(sid, {"n": 1, "cookie": {"expires": format_expires(first)}})
    store.set(sid, expiring(3600, n=2))
    sleep_until(first + lab.resolution)
    got = store.get(sid)
    check(
        got is not None and got.get("n") == 2, "ttl.4", f"an extended session was gone: get gave {show(got)}"
    )


@pytest.mark.clause("ttl.4")
@expiry(later_set_extends)
def test_a_later_set_can_extend_the_expiry(storekit_lab: Any) -> None:
    """ttl.4: a later set with a later expiry keeps the session past the first expiry."""
    storekit_lab.replay(later_set_extends)


@scenario()
def later_set_shortens(lab: Lab) -> None:
    store = lab.store()
    sid = new_sid()
    store.set(sid, expiring(3600, n=1))
    second = time.time() + lab.lead
    store.set(sid, {"n": 2, "cookie": {"expires": format_expires(second)}})
    sleep_until(second + lab.resolution)
    got = store.get(sid)
    check(got is None, "ttl.4", f"a session whose expiry a later set shortened is still there: {show(got)}")


@pytest.mark.clause("ttl.4")
@expiry(later_set_shortens)
def test_a_later_set_can_shorten_the_expiry(storekit_lab: Any) -> None:
    """ttl.4: a later set with an earlier expiry ends the session at the new expiry."""
    storekit_lab.replay(later_set_shortens)


LONGEST_WAIT = 10.0
"""A default TTL longer than this is checked for presence only."""


@scenario()
def default_ttl_applies(lab: Lab) -> None:
    store = lab.store()
    sids = [new_sid(), new_sid(), new_sid()]
    sessions = [{"n": 0}, {"n": 1, "cookie": {"path": "/"}}, {"n": 2, "cookie": {"expires": None}}]
    start = time.time()
    for sid, session in zip(sids, sessions, strict=True):
        store.set(sid, session)
    ttl = lab.target.default_ttl
    if ttl is not None and ttl <= LONGEST_WAIT:
        sleep_until(start + ttl + lab.resolution)
        for sid in sids:
            got = store.get(sid)
            check(got is None, "ttl.5", f"{sid!r} outlived the default TTL of {ttl}s: {show(got)}")
        return
    sleep_until(start + lab.lead + lab.resolution)
    for sid, session in zip(sids, sessions, strict=True):
        got = store.get(sid)
        check(got == session, "ttl.5", f"a session without expiry {show(session)} was gone: {show(got)}")
    tidy(store, *sids)


@pytest.mark.clause("ttl.5")
@expiry(default_ttl_applies)
def test_a_session_without_expiry_lives_for_the_default_ttl(storekit_lab: Any) -> None:
    """ttl.5: a session with no cookie, no expires or expires null lives for the target's default_ttl."""
    storekit_lab.replay(default_ttl_applies)


BAD_EXPIRES: dict[str, Any] = {
    "naive": "2030-01-01T00:00:00",
    "naive with millis": "2030-01-01T00:00:00.000",
    "date only": "2030-01-01",
    "a number": 1893456000,
    "a float": 1893456000.0,
    "garbage": "soon",
    "empty": "",
    "true": True,
    "an object": {"date": "2030-01-01T00:00:00Z"},
    "HTTP date": "Tue, 01 Jan 2030 00:00:00 GMT",
    "month 13": "2030-13-01T00:00:00Z",
}


@pytest.mark.clause("ttl.6")
@pytest.mark.parametrize("name", list(BAD_EXPIRES))
def test_a_malformed_expiry_is_rejected_and_changes_nothing(storekit_store: Any, name: str) -> None:
    """ttl.6: a cookie.expires that is not RFC 3339 with an offset raises InvalidSessionData."""
    sid = new_sid()
    storekit_store.set(sid, {"kept": True})
    bad = BAD_EXPIRES[name]
    try:
        storekit_store.set(sid, {"n": 1, "cookie": {"expires": bad}})
    except InvalidSessionData:
        pass
    except Exception as exc:
        raise AssertionError(
            f"ttl.6: cookie.expires={show(bad)} raised {type(exc).__name__}: {exc} "
            "(expected InvalidSessionData)"
        ) from exc
    else:
        raise AssertionError(f"ttl.6: set with cookie.expires={show(bad)} ({name}) raised nothing")
    got = storekit_store.get(sid)
    check(got == {"kept": True}, "ttl.6", f"after the rejected set, get returned {show(got)}")
