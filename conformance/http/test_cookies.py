"""The cookie: never adopted, new at login, its attributes, Vary, none for a visit that changes nothing."""

from __future__ import annotations

import pytest

from storekit.conformance._support import check, depends, fail
from storekit.conformance.http._probe import Probe


@pytest.mark.clause("http.1")
def test_a_missing_forged_tampered_or_ended_cookie_gives_a_fresh_session_never_adopted(probe: Probe) -> None:
    """http.1: each of these reads an empty session, and a write under it issues another cookie."""
    real = probe.browser()
    user = probe.user()
    probe.logged_in(real, user, "http.1")
    good = real.cookie
    assert good is not None
    ended = probe.browser(good)
    real.logout()
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    cases = {
        "no cookie": None,
        "a forged cookie": "s%3Ask-forged-0123456789abcdef.forgedsignature",
        "a tampered cookie": tampered,
        "the cookie of a session that was logged out": good,
    }
    for label, cookie in cases.items():
        browser = ended if label.startswith("the cookie") else probe.browser(cookie)
        answer = browser.read()
        if browser is ended and isinstance(answer.data, dict) and answer.data.get("user") == user:
            depends(False, "http.3", "the cookie of a session that was logged out still loads it")
        check(answer.status == 200, "http.1", f"with {label}, /read answered {answer!r}")
        check(answer.data == {}, "http.1", f"with {label}, /read gave the session {answer.data!r}, not {{}}")
        written = browser.write("k", "v")
        check(written.status == 200, "http.1", f"with {label}, /write answered {written!r}")
        issued = written.session_cookie
        if issued is None:
            fail("http.1", f"with {label}, a write issued no {probe.features.cookie!r} cookie")
        if cookie is not None:
            check(issued[""] != cookie, "http.1", f"with {label}, the app adopted the cookie it was sent")


@pytest.mark.clause("http.2")
def test_login_issues_a_new_cookie_and_the_old_one_loads_nothing(probe: Probe) -> None:
    """http.2: the cookie from before login (an attacker may have planted it) is not the session's."""
    browser = probe.browser()
    before = browser.write("planted", "yes")
    check(before.status == 200, "http.2", f"/write answered {before!r}")
    old = browser.cookie
    check(old is not None, "http.2", "a write issued no session cookie")
    user = probe.user()
    probe.logged_in(browser, user, "http.2")
    check(browser.cookie != old, "http.2", "login kept the cookie from before it: session fixation")
    check(
        browser.read().data.get("planted") is None, "http.2", "login kept the data of the session before it"
    )
    attacker = probe.browser(old)
    seen = attacker.read().data
    check(seen == {}, "http.2", f"the cookie from before login loads {seen!r} after the login")


@pytest.mark.clause("http.7")
def test_the_cookie_is_httponly_with_secure_and_samesite_as_declared(probe: Probe) -> None:
    """http.7: HttpOnly always; Secure and SameSite as /features declares them."""
    browser = probe.browser()
    answer = browser.write("k", "v")
    cookie = answer.session_cookie
    if cookie is None:
        fail("http.7", f"a write issued no {probe.features.cookie!r} cookie: {answer!r}")
    check("httponly" in cookie, "http.7", f"the session cookie is not HttpOnly: {cookie}")
    check(
        ("secure" in cookie) == probe.features.secure,
        "http.7",
        f"Secure is {'secure' in cookie}, declared {probe.features.secure}: {cookie}",
    )
    declared = (probe.features.samesite or "").lower()
    check(
        cookie.get("samesite", "").lower() == declared,
        "http.7",
        f"SameSite is {cookie.get('samesite')!r}, declared {probe.features.samesite!r}",
    )


@pytest.mark.clause("http.8")
def test_a_response_that_used_the_session_varies_on_cookie(probe: Probe) -> None:
    """http.8: a shared cache must not serve one user's page to another."""
    browser = probe.browser()
    for name, answer in (("/write", browser.write("k", "v")), ("/read", browser.read())):
        vary = {part.strip().lower() for part in answer.response.headers.get("vary", "").split(",")}
        check(
            "cookie" in vary or "*" in vary,
            "http.8",
            f"{name} used the session and sent Vary {vary or 'none'}",
        )


@pytest.mark.clause("http.9")
def test_an_anonymous_visit_that_changes_nothing_gets_no_cookie(probe: Probe) -> None:
    """http.9: no cookie (and no record) for a visitor who only looked."""
    for route in ("/untouched", "/read"):
        answer = probe.browser().call("GET", route)
        check(answer.status == 200, "http.9", f"{route} answered {answer!r}")
        check(
            answer.session_cookie is None,
            "http.9",
            f"an anonymous {route} that changed nothing got the cookie {answer.session_cookie}",
        )
