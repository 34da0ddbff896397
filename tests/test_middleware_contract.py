"""The middleware contract of issue 11 through the one session core, in every shell it applies to.

The live write's exact window (deterministic interleavings), groups that no
session outlives, a finite default lifetime (an injected clock on MemoryStore),
the session loaded when first used (an outage fails only the routes that use
it), a bounded cookie verification, and fixation stopped by ``regenerate()``.
The slow-request races with real threads and tasks are in test_logout_wsgi.py
and test_logout_asgi.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from webtest import TestApp

import storekit.cookie
from storekit import StoreUnavailable
from storekit.asgi import SessionMiddleware as ASGISessionMiddleware
from storekit.asgi import session_of as asgi_session_of
from storekit.groups import group_sid, membership
from storekit.lifecycle import MAX_CANDIDATES, verified_sid
from storekit.live import destroy_record, write_live
from storekit.options import SessionConfig
from storekit.reference import AsyncMemoryStore, MemoryStore
from storekit.wsgi import SessionMiddleware, session_of

T0 = 1_795_341_600.0  # 2026-11-22T10:00:00Z
SECRET = "keyboard cat"
DAY = 86400.0
BASE = "http://testserver"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def site(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """/login (regenerate + group), /logout, /logout-everywhere, /plant, /static (no session), else whoami."""
    path = environ["PATH_INFO"]
    body = "static"
    if path != "/static":
        session = session_of(environ)
        if path == "/login":
            session.regenerate()
            session["user"] = environ.get("QUERY_STRING") or "ada"
            session.join_group("user:ada")
        elif path == "/logout":
            session.destroy()
        elif path == "/logout-everywhere":
            session.end_group("user:ada")
        elif path == "/plant":
            session["attacker"] = True
        body = str(session.get("user", "nobody"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]


def user_sessions(store: MemoryStore) -> list[str]:
    return sorted(sid for sid in store.all() if not sid.startswith("storekit."))


# -- 1. the live write: its window, exactly -----------------------------------------------


class Interleaving(MemoryStore):
    """Runs ``between`` once, right before the next set() of ``sid``: a destroy that lands between
    the live write's get and its set. It offers no replace (a contract v1 store), so that the
    live write takes its get, set and marker path."""

    replace = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.between: Callable[[], None] | None = None

    def set(self, sid: str, session: dict[str, Any]) -> None:
        hook, self.between = self.between, None
        if hook is not None and not sid.startswith("storekit."):
            hook()
        super().set(sid, session)


def test_a_core_destroy_between_the_check_and_the_set_is_not_undone() -> None:
    store = Interleaving()
    store.set("sid-1", {"user": "ada"})
    store.between = lambda: destroy_record(store, "sid-1", time.time())
    assert write_live(store, "sid-1", {"user": "ada", "n": 1}) is False
    assert store.get("sid-1") is None


def test_a_foreign_destroy_between_the_check_and_the_set_is_the_documented_window() -> None:
    """Without replace(), a destroy that leaves no marker (another program's) in the one store
    call between the get and the set is undone: docs/middleware.md states this window."""
    store = Interleaving()
    store.set("sid-1", {"user": "ada"})
    store.between = lambda: store.destroy("sid-1")
    assert write_live(store, "sid-1", {"user": "ada", "n": 1}) is True
    assert store.get("sid-1") == {"user": "ada", "n": 1}


def test_a_destroy_before_the_live_write_is_never_undone() -> None:
    store = MemoryStore()
    store.set("sid-1", {"user": "ada"})
    store.destroy("sid-1")  # even one that leaves no marker
    assert write_live(store, "sid-1", {"user": "ada"}) is False
    assert store.get("sid-1") is None


class Replacing(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def get(self, sid: str) -> Any:
        self.calls.append("get")
        return super().get(sid)

    def replace(self, sid: str, session: dict[str, Any]) -> bool:
        self.calls.append("replace")
        if super().get(sid) is None:
            return False
        super().set(sid, session)
        return True


def test_with_replace_the_core_calls_it_alone_and_leaves_no_marker() -> None:
    store = Replacing()
    store.set("sid-1", {"user": "ada"})
    assert write_live(store, "sid-1", {"user": "bob"}) is True
    assert store.calls == ["replace"]
    destroy_record(store, "sid-1", time.time())
    assert write_live(store, "sid-1", {"user": "bob"}) is False
    assert store.all() == {}


# -- 2. groups: no session outlives an end_group ------------------------------------------


def test_a_session_written_back_after_its_group_ended_is_ended_when_next_loaded() -> None:
    """The escape of issue 11: a record brought back says "member for 200 days" while the index
    no longer lists it. Its generation no longer matches, so it ends when next loaded."""
    memory = MemoryStore()
    app = SessionMiddleware(site, memory, secret=SECRET)
    laptop, phone = TestApp(app), TestApp(app)
    laptop.get("/login")
    phone.get("/login")
    (phone_sid,) = [sid for sid in user_sessions(memory) if sid in phone.cookies["connect.sid"]]
    record = memory.get(phone_sid)
    laptop.get("/logout-everywhere")
    memory.set(phone_sid, record)  # a writer that raced the end (or an older storekit) brings it back
    assert phone.get("/").text == "nobody"
    assert memory.get(phone_sid) is None
    assert app.end_group("user:ada") == 0  # nothing is left to escape a later end_group


def test_a_membership_the_index_lost_is_joined_again_and_then_ended() -> None:
    memory = MemoryStore()
    app = SessionMiddleware(site, memory, secret=SECRET)
    laptop, phone = TestApp(app), TestApp(app)
    laptop.get("/login")
    phone.get("/login")
    index = memory.get(group_sid("user:ada"))
    assert index is not None
    assert len(index["members"]) == 2
    memory.set(group_sid("user:ada"), {**index, "members": index["members"][:1]})  # a lost join
    assert phone.get("/").text == "ada"  # its next request finds itself missing and joins again
    index = memory.get(group_sid("user:ada"))
    assert index is not None
    assert len(index["members"]) == 2
    assert app.end_group("user:ada") == 2
    assert (laptop.get("/").text, phone.get("/").text) == ("nobody", "nobody")


def test_concurrent_logins_all_end_with_their_group() -> None:
    """Eight logins of one user at once (a barrier, real threads): whatever the index kept, one
    end_group, after each session's next request, leaves none logged in."""
    memory = MemoryStore()
    app = SessionMiddleware(site, memory, secret=SECRET)
    browsers = [TestApp(app) for _ in range(8)]
    barrier = threading.Barrier(len(browsers))

    def login(browser: TestApp) -> None:
        barrier.wait(10)
        browser.get("/login")

    threads = [threading.Thread(target=login, args=(browser,), daemon=True) for browser in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [browser.get("/").text for browser in browsers] == ["ada"] * 8  # each heals a lost join
    app.end_group("user:ada")
    assert [browser.get("/").text for browser in browsers] == ["nobody"] * 8


def test_membership_is_judged_by_the_index_generation() -> None:
    index = {"members": ["a"], "generation": "g1"}
    assert membership(index, "g", "a", "g1") == "member"
    assert membership(index, "g", "b", "g1") == "lost"
    assert membership({**index, "generation": "g2"}, "g", "a", "g1") == "ended"
    assert membership(None, "g", "a", "g1") == "ended"
    assert membership(None, "g", "a", None) == "lost"  # stored by an older storekit: join again


# -- 3. a finite default lifetime ----------------------------------------------------------


def test_with_the_default_options_a_wsgi_session_record_is_gone_after_one_day() -> None:
    clock = Clock()
    memory = MemoryStore(clock=clock)  # no default TTL of its own: for ever
    browser = TestApp(SessionMiddleware(site, memory, secret=SECRET, clock=clock))
    browser.get("/login")
    (header,) = [v for k, v in browser.get("/login").headerlist if k == "Set-Cookie"]
    assert "Expires" not in header  # still a browser-session cookie
    clock.now += DAY - 1
    assert user_sessions(memory) != []
    assert browser.get("/").text == "ada"  # a use restarts the day
    clock.now += DAY + 1
    assert user_sessions(memory) == []
    assert browser.get("/").text == "nobody"


def test_the_default_lifetime_is_settable() -> None:
    clock = Clock()
    memory = MemoryStore(clock=clock)
    short = TestApp(SessionMiddleware(site, memory, secret=SECRET, clock=clock, ttl=60))
    short.get("/login")
    clock.now += 61
    assert user_sessions(memory) == []
    forever = TestApp(SessionMiddleware(site, memory, secret=SECRET, clock=clock, ttl=None))
    forever.get("/login")
    clock.now += 400 * DAY
    assert len(user_sessions(memory)) == 1  # ttl=None: the store's default TTL, here none
    with pytest.raises(ValueError, match=r"ttl must be a positive number of seconds, or None"):
        SessionMiddleware(site, memory, secret=SECRET, ttl=0)


def test_with_the_default_options_an_asgi_session_record_is_gone_after_one_day() -> None:
    clock = Clock()
    memory = MemoryStore(clock=clock)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = asgi_session_of(scope)
        if scope["path"] == "/login":
            session["user"] = "ada"
        body = str(session.get("user", "nobody")).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    middleware = ASGISessionMiddleware(app, AsyncMemoryStore(sync=memory), secret=SECRET, clock=clock)

    async def visit() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=BASE) as c:
            seen = [(await c.get("/login")).text]
            clock.now += DAY - 1
            seen.append((await c.get("/")).text)
            clock.now += DAY + 1
            seen.append((await c.get("/")).text)
            return seen

    assert asyncio.run(visit()) == ["ada", "ada", "nobody"]
    assert user_sessions(memory) == []


def test_a_flask_session_that_is_not_permanent_is_gone_after_its_lifetime() -> None:
    flask = pytest.importorskip("flask")
    from storekit.flask import StoreSessionInterface

    clock = Clock()
    memory = MemoryStore(clock=clock)
    app = flask.Flask(__name__)
    app.secret_key = SECRET
    app.session_interface = StoreSessionInterface(memory, clock=clock)

    @app.get("/login")
    def login() -> str:
        flask.session["user"] = "ada"
        return "ada"

    TestApp(app).get("/login")
    clock.now += app.permanent_session_lifetime.total_seconds() - 1
    assert user_sessions(memory) != []
    clock.now += 2
    assert user_sessions(memory) == []


# -- 4. loaded when first used: an outage fails only the routes that use the session ------


class Down(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def get(self, sid: str) -> Any:
        if self.down:
            raise StoreUnavailable("redis at 127.0.0.1:6379 did not answer within 2.0s")
        return super().get(sid)

    def renew(self, sid: str, session: dict[str, Any]) -> Any:
        if self.down:
            raise StoreUnavailable("redis at 127.0.0.1:6379 did not answer within 2.0s")
        return super().renew(sid, session)


def test_flask_answers_503_where_the_session_is_used_and_serves_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flask = pytest.importorskip("flask")
    from storekit.flask import StoreSessionInterface

    store = Down()
    app = flask.Flask(__name__)
    app.secret_key = SECRET
    app.session_interface = StoreSessionInterface(store)

    @app.get("/login")
    def login() -> str:
        flask.session["user"] = "ada"
        return "ada"

    @app.get("/whoami")
    def whoami() -> str:
        return str(flask.session.get("user", "nobody"))

    @app.get("/about")
    def about() -> str:
        return "about"

    browser = TestApp(app)
    browser.get("/login")
    store.down = True
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        assert browser.get("/about").text == "about"
        failed = browser.get("/whoami", status=503)
    assert "redis" not in failed.text  # no internals
    assert "nobody" not in failed.text  # and never an empty session
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "could not load session" in record.getMessage()


def test_asgi_answers_503_where_the_session_is_used_and_serves_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    memory = Down()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b"static"
        if scope["path"] != "/static":
            session = asgi_session_of(scope)
            if scope["path"] == "/login":
                session["user"] = "ada"
            body = str(session.get("user", "nobody")).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    middleware = ASGISessionMiddleware(app, AsyncMemoryStore(sync=memory), secret=SECRET)

    async def visit() -> list[tuple[int, str]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=BASE) as c:
            await c.get("/login")
            memory.down = True
            return [((r := await c.get(path)).status_code, r.text) for path in ("/static", "/whoami")]

    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        assert asyncio.run(visit()) == [(200, "static"), (503, "Service Unavailable\n")]
    assert "could not load session" in caplog.text


# -- 5. the cost of cookie verification is bounded ------------------------------------------


def test_fourteen_thousand_forged_cookies_cost_a_bounded_number_of_hmacs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    header = "; ".join(f"connect.sid=s:{i % 100:02d}.bc" for i in range(14_000))
    calls: list[int] = []
    real = storekit.cookie.signature

    def counted(sid: str, key: bytes) -> str:
        calls.append(1)
        return real(sid, key)

    monkeypatch.setattr(storekit.cookie, "signature", counted)
    for secrets in (["one"], ["one", "two", "three"]):
        calls.clear()
        assert verified_sid(header, SessionConfig(secret=secrets)) == (None, True)
        assert len(calls) == MAX_CANDIDATES * len(secrets)


def test_a_valid_cookie_behind_four_others_of_the_name_is_not_verified() -> None:
    memory = MemoryStore()
    browser = TestApp(SessionMiddleware(site, memory, secret=SECRET))
    browser.get("/login")
    good = f"connect.sid={browser.cookies['connect.sid']}"
    fresh = TestApp(browser.app)
    assert (
        fresh.get("/", extra_environ={"HTTP_COOKIE": "; ".join(["connect.sid=x"] * 3 + [good])}).text == "ada"
    )
    assert (
        fresh.get("/", extra_environ={"HTTP_COOKIE": "; ".join(["connect.sid=x"] * 4 + [good])}).text
        == "nobody"
    )


# -- 6. fixation: regenerate() at login is what protects -----------------------------------


def test_a_planted_live_session_is_worthless_after_a_login_that_regenerates() -> None:
    memory = MemoryStore()
    app = SessionMiddleware(site, memory, secret=SECRET)
    attacker = TestApp(app)
    attacker.get("/plant")  # the attacker's own signed, live session
    planted = f"connect.sid={attacker.cookies['connect.sid']}"
    victim = TestApp(app)
    login = victim.get("/login", extra_environ={"HTTP_COOKIE": planted})  # the cookie was planted
    issued = [v.split(";", 1)[0] for k, v in login.headerlist if k == "Set-Cookie"]
    assert len(issued) == 1
    assert issued[0].startswith("connect.sid=")
    assert issued[0] != planted  # a new sid
    assert attacker.get("/").text == "nobody"  # the planted sid no longer loads
    assert len([sid for sid in memory.all() if not sid.startswith("storekit.")]) == 1  # the victim's only


def test_a_planted_session_is_adopted_when_login_does_not_regenerate() -> None:
    """What the docs warn of: a login that only writes the user into the session it was given."""

    def careless(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = session_of(environ)
        if environ["PATH_INFO"] == "/login":
            session["user"] = "victim"
        elif environ["PATH_INFO"] == "/plant":
            session["attacker"] = True
        start_response("200 OK", [])
        return [str(session.get("user", "nobody")).encode()]

    app = SessionMiddleware(careless, MemoryStore(), secret=SECRET)
    attacker = TestApp(app)
    attacker.get("/plant")
    planted = f"connect.sid={attacker.cookies['connect.sid']}"
    TestApp(app).get("/login", extra_environ={"HTTP_COOKIE": planted})
    assert attacker.get("/").text == "victim"
