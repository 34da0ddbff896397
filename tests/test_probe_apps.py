"""The probe apps (storekit/probe/, docs/http.md), each started by ``python -m storekit.probe KIND``
on an ephemeral port and driven over real HTTP with httpx's cookie jar, as the HTTP suite drives
them. Starlette's own SessionMiddleware and express-session are comparisons: where they answer
otherwise by design, the test says so and checks that design."""

from __future__ import annotations

import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import IO, Any

import httpx
import pytest

from storekit.probe.serve import KINDS, NODE_HINT, NODE_PACKAGES

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return f"node is not installed; the express probe needs node and npm install {NODE_PACKAGES}"
    found = subprocess.run(
        ["node", "-e", "for (const m of ['express', 'express-session']) require.resolve(m)"],
        capture_output=True,
    )
    if found.returncode != 0:
        return f"express or express-session is not installed for node: {NODE_HINT}"
    return None


def _tail(log: IO[str]) -> str:
    log.seek(0)
    return log.read()[-2000:]


@dataclass
class Running:
    """A probe started by the launcher: its kind, its URL and its ``/features``."""

    kind: str
    url: str
    features: dict[str, Any]

    def browser(self, cookies: httpx.Cookies | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, cookies=cookies, timeout=10.0)


@pytest.fixture(scope="module", params=KINDS)
def probe(request: pytest.FixtureRequest) -> Iterator[Running]:
    kind: str = request.param
    if kind == "express" and (missing := _node_missing()) is not None:
        pytest.skip(missing)
    with tempfile.TemporaryFile(mode="w+") as log:  # a pipe could fill up with the log and stall it
        process = subprocess.Popen(
            [sys.executable, "-m", "storekit.probe", kind, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
            line = process.stdout.readline() if ready else ""
            if not line.startswith("listening on http://"):
                raise RuntimeError(f"the {kind} probe printed {line!r}: {_tail(log)}")
            url = line.split()[-1]
            yield Running(kind, url, httpx.get(url + "/features", timeout=10.0).json())
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
        assert code == 0, f"the {kind} probe exited {code} on SIGTERM: {_tail(log)}"


def _logged_in(probe: Running, user: str) -> httpx.Client:
    browser = probe.browser()
    answer = browser.post("/login", params={"user": user})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"data": {"user": user}}
    return browser


def test_features_declare_protocol_1_and_the_probe_offers(probe: Running) -> None:
    """/features: protocol 1, a cookie name, the launcher's lifetime, and a positive size limit."""
    features = probe.features
    assert features["protocol"] == 1
    assert features["cookie"]
    assert features["lifetime"] == 3
    assert features["secure"] is False
    assert isinstance(features["max_session_bytes"], int)
    assert features["max_session_bytes"] > 0
    assert features["groups"] is (probe.kind in ("wsgi", "asgi", "flask"))
    assert features["outage"] is (probe.kind != "starlette")


def test_a_new_browser_reads_no_data_and_gets_no_cookie(probe: Running) -> None:
    """/read without a cookie: no data, and nothing stored or sent."""
    with probe.browser() as browser:
        answer = browser.get("/read")
        assert answer.json() == {"data": {}}
        assert "set-cookie" not in answer.headers


def test_a_write_is_read_back(probe: Running) -> None:
    """/write sets the key; the next /read of that browser shows it."""
    with probe.browser() as browser:
        assert browser.post("/write", params={"key": "color", "value": "red"}).json() == {
            "data": {"color": "red"}
        }
        assert browser.get("/read").json() == {"data": {"color": "red"}}
        assert browser.post("/write", params={"key": "pad", "size": 5}).json()["data"]["pad"] == "xxxxx"


def test_login_issues_a_new_cookie_and_drops_the_old_data(probe: Running) -> None:
    """/login: a new cookie value, and only ``user`` in the session."""
    with probe.browser() as browser:
        browser.post("/write", params={"key": "cart", "value": "1"})
        before = browser.cookies[probe.features["cookie"]]
        answer = browser.post("/login", params={"user": "ada"})
        assert answer.json() == {"data": {"user": "ada"}}
        assert browser.cookies[probe.features["cookie"]] != before
        assert browser.get("/read").json() == {"data": {"user": "ada"}}


def test_the_cookie_replayed_after_logout_loads_nothing(probe: Running) -> None:
    """/logout ends the session: the old cookie, sent again, loads no data (not under Starlette,
    whose session is the signed cookie itself: a logout cannot revoke it)."""
    browser = _logged_in(probe, "bob")
    kept = httpx.Cookies(browser.cookies)
    assert browser.post("/logout").json() == {"data": {}}
    with probe.browser(kept) as replay:
        seen = replay.get("/read").json()
    browser.close()
    assert seen == ({"data": {"user": "bob"}} if probe.kind == "starlette" else {"data": {}})


def test_untouched_sends_no_cookie(probe: Running) -> None:
    """/untouched answers {"ok": true} and no Set-Cookie, for a logged-in browser too."""
    with closing(_logged_in(probe, "cy")) as browser:
        answer = browser.get("/untouched")
        assert answer.json() == {"ok": True}
        assert "set-cookie" not in answer.headers


def test_an_outage_fails_session_routes_and_spares_untouched(probe: Running) -> None:
    """/outage?on=1: /read is a 5xx, /untouched a 200; on=0: the session is back. 404 where the
    probe has no outage switch."""
    with closing(_logged_in(probe, "dee")) as browser:
        if not probe.features["outage"]:
            assert browser.post("/outage", params={"on": 1}).status_code == 404
            return
        assert browser.post("/outage", params={"on": 1}).json() == {"outage": True}
        try:
            assert browser.get("/read").status_code >= 500
            assert browser.get("/untouched").status_code == 200
        finally:
            browser.post("/outage", params={"on": 0})
        assert browser.get("/read").json() == {"data": {"user": "dee"}}


def test_a_session_over_the_limit_is_an_error(probe: Running) -> None:
    """A write of 1.5 times max_session_bytes answers an error status (not under Starlette, whose
    limit is the browser's, nor express-session, which has none: both answer 200)."""
    size = probe.features["max_session_bytes"] * 3 // 2
    with probe.browser() as browser:
        browser.post("/write", params={"key": "kept", "value": "yes"})
        status = browser.post("/write", params={"key": "big", "size": size}).status_code
        if probe.kind in ("starlette", "express"):
            assert status == 200
        else:
            assert status >= 400
            assert browser.get("/read").json() == {"data": {"kept": "yes"}}


def test_end_group_ends_every_session_of_the_user(probe: Running) -> None:
    """/end-group?user=U logs every browser of U out; 404 where groups are not offered."""
    laptop, phone = _logged_in(probe, "eve"), _logged_in(probe, "eve")
    with closing(laptop), closing(phone), probe.browser() as admin:
        answer = admin.post("/end-group", params={"user": "eve"})
        if not probe.features["groups"]:
            assert answer.status_code == 404
            return
        assert answer.json() == {"ended": 2}
        assert laptop.get("/read").json() == phone.get("/read").json() == {"data": {}}


def test_the_protocol_refuses_what_it_does_not_know(probe: Running) -> None:
    """An unknown route is a 404, a wrong method a 405, a /write without a value a 400."""
    with probe.browser() as browser:
        assert browser.get("/nope").status_code == 404
        assert browser.post("/read").status_code == 405
        assert browser.post("/write", params={"key": "k"}).status_code == 400
