"""Lifetime, size, outage and concurrent writes."""

from __future__ import annotations

import time

import pytest

from storekit.conformance._support import check, fail, not_applicable, sleep_until
from storekit.conformance.http._probe import SLOW, Probe, running
from storekit.report import INFO_PROPERTY

LONGEST_WAIT = 30.0
"""The longest lifetime the suite waits out."""


@pytest.mark.clause("http.6")
def test_the_server_forgets_a_session_when_its_lifetime_ends(probe: Probe) -> None:
    """http.6: after the declared lifetime without activity, the cookie loads nothing."""
    lifetime = probe.features.lifetime
    if lifetime is None:
        fail(
            "http.6",
            "/features declares no lifetime: sessions that never expire are the bug this clause finds",
        )
    if lifetime > LONGEST_WAIT:
        not_applicable(
            f"the declared lifetime is {lifetime:g}s; the suite waits out at most {LONGEST_WAIT:g}s"
        )
    browser = probe.browser()
    user = probe.user()
    probe.logged_in(browser, user, "http.6")
    cookie = browser.cookie
    last = time.time()
    sleep_until(last + lifetime + 1.5)
    seen = probe.browser(cookie).read().data
    check(seen == {}, "http.6", f"{lifetime:g}s after its last use the session still loads: {seen!r}")


@pytest.mark.clause("http.10")
def test_an_oversized_session_fails_loudly_and_keeps_the_previous_one(probe: Probe) -> None:
    """http.10: an error status, and the session as it was before the request."""
    browser = probe.browser()
    first = browser.write("kept", "yes")
    check(first.status == 200, "http.10", f"/write answered {first!r}")
    size = probe.features.max_session_bytes * 3 // 2
    big = browser.write("big", "", size=size)
    check(
        big.status >= 400,
        "http.10",
        f"a session of {size} bytes (limit {probe.features.max_session_bytes}) answered {big.status}",
    )
    after = browser.read().data
    check(
        after == {"kept": "yes"}, "http.10", f"after the oversized write the session is {str(after)[:200]!r}"
    )


@pytest.mark.clause("http.11")
def test_a_store_outage_fails_only_the_routes_that_use_the_session(probe: Probe) -> None:
    """http.11: an error status for session routes (never an empty session), 200 for the others."""
    probe.needs("outage")
    browser = probe.browser()
    probe.logged_in(browser, probe.user(), "http.11")
    on = probe.browser().call("POST", "/outage", on=1)
    check(on.status == 200, "http.11", f"/outage?on=1 answered {on!r}")
    try:
        read = browser.read()
        check(read.status >= 500, "http.11", f"/read in an outage answered {read!r}, not an error status")
        untouched = probe.browser(browser.cookie).call("GET", "/untouched")  # on a connection of its own
        check(untouched.status == 200, "http.11", f"/untouched in an outage answered {untouched!r}")
    finally:
        probe.browser().call("POST", "/outage", on=0)
    back = browser.read()
    check(
        back.status == 200 and back.data.get("user") is not None,
        "http.11",
        f"after the outage, /read gave {back!r}",
    )


@pytest.mark.clause("http.12")
def test_two_concurrent_writes_of_different_keys(probe: Probe, request: pytest.FixtureRequest) -> None:
    """http.12: information: whether both keys survive two overlapping requests of one session."""
    browser = probe.browser()
    check(browser.write("base", "1").status == 200, "http.12", "/write failed")
    cookie = browser.cookie
    one, two = probe.browser(cookie), probe.browser(cookie)
    with running(lambda: one.write("a", "1", delay=SLOW), "http.12") as first:
        time.sleep(SLOW / 3)
        second = two.write("b", "2")
    check(
        first[0].status == 200 and second.status == 200,
        "http.12",
        f"the writes answered {first[0]!r}, {second!r}",
    )
    data = probe.browser(cookie).read().data or {}
    kept = sorted(key for key in ("a", "b") if key in data)
    if kept == ["a", "b"]:
        found = "merged: both keys kept"
    elif kept:
        found = f"one write lost: only {kept[0]!r} kept (the last save wins)"
    else:
        found = "both writes lost: neither 'a' nor 'b' kept"
    request.node.user_properties.append((INFO_PROPERTY, found))
