"""Logout is final: the old cookie loads nothing, whatever was running when it happened."""

from __future__ import annotations

import time

import pytest

from storekit.conformance._support import check, depends
from storekit.conformance.http._probe import SLOW, Probe, read_user, running


@pytest.mark.clause("http.3")
def test_after_logout_the_old_cookie_loads_no_session(probe: Probe) -> None:
    """http.3: a replay of the cookie from before the logout is anonymous."""
    browser = probe.browser()
    user = probe.user()
    probe.logged_in(browser, user, "http.3")
    old = browser.cookie
    out = browser.logout()
    check(out.status == 200, "http.3", f"/logout answered {out!r}")
    replay = probe.browser(old)
    seen = read_user(replay)
    check(seen is None, "http.3", f"a replay of the cookie from before the logout is logged in as {seen!r}")


def _logout_is_final_alone(probe: Probe, clause: str) -> None:
    """http.3's check, as a precondition: without it, what a slow request does is moot."""
    __tracebackhide__ = True
    alone = probe.browser()
    probe.logged_in(alone, probe.user(), clause)
    old = alone.cookie
    alone.logout()
    depends(read_user(probe.browser(old)) is None, "http.3", "a plain logout leaves the old cookie logged in")


def _undone_by(probe: Probe, clause: str, slow_route: str) -> None:
    __tracebackhide__ = True
    _logout_is_final_alone(probe, clause)
    browser = probe.browser()
    user = probe.user()
    probe.logged_in(browser, user, clause)
    old = browser.cookie
    tab = probe.browser(old)  # a second tab of the same browser, with a slow request in flight
    if slow_route == "write":
        work = lambda: tab.write("cart", "3", delay=SLOW)  # noqa: E731
    else:
        work = lambda: tab.read(delay=SLOW)  # noqa: E731
    with running(work, clause) as done:
        time.sleep(SLOW / 3)  # the slow request has loaded the session
        out = browser.logout()
        check(out.status == 200, clause, f"/logout answered {out!r}")
    slow = done[0]
    replay = probe.browser(old)
    seen = read_user(replay)
    check(
        seen is None,
        clause,
        f"a slow {slow_route} begun before the logout ({slow!r}) logged the old cookie in as {seen!r}",
    )
    again = read_user(tab)
    check(again is None, clause, f"the tab of the slow {slow_route} is logged in again as {again!r}")


@pytest.mark.clause("http.4")
def test_a_slow_writing_request_does_not_undo_a_logout(probe: Probe) -> None:
    """http.4: the write at the end of a request that began before the logout brings nothing back."""
    _undone_by(probe, "http.4", "write")


@pytest.mark.clause("http.5")
def test_a_slow_read_only_request_does_not_undo_a_logout(probe: Probe) -> None:
    """http.5: nor does the save (or touch, or resave) at the end of a read."""
    _undone_by(probe, "http.5", "read")


@pytest.mark.clause("http.13")
def test_ending_a_group_logs_out_every_session_in_it(probe: Probe) -> None:
    """http.13: the laptop ends the group; the phone is logged out too, and stays so."""
    probe.needs("groups")
    user = probe.user()
    laptop, phone = probe.browser(), probe.browser()
    probe.logged_in(laptop, user, "http.13")
    probe.logged_in(phone, user, "http.13")
    phone_cookie = phone.cookie
    ended = laptop.call("POST", "/end-group", user=user)
    check(ended.status == 200, "http.13", f"/end-group answered {ended!r}")
    for name, browser in (("the phone", probe.browser(phone_cookie)), ("the laptop", laptop)):
        seen = read_user(browser)
        check(seen is None, "http.13", f"{name} is still logged in as {seen!r} after end-group")
