"""SessionMiddleware through webtest's TestApp and its cookie jar, against MemoryStore."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import pytest
from webtest import TestApp

from storekit import InvalidSessionData, StoreUnavailable
from storekit.groups import GROUP_PREFIX, add_member, end_group
from storekit.reference import AsyncMemoryStore, MemoryStore
from storekit.session import SessionNotFound
from storekit.wsgi import SessionMiddleware, session_of

T0 = 1_795_341_600.0  # 2026-11-22T10:00:00Z
SECRET = "keyboard cat"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class SpyStore:
    """A store without touch() that records every call and can be made to fail."""

    def __init__(self, inner: MemoryStore, events: list[str] | None = None) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []
        self.events = events if events is not None else []
        self.fail: set[str] = set()

    def _do(self, op: str, *args: Any) -> Any:
        self.calls.append((op, args[0]))
        self.events.append(op)
        if op in self.fail:
            raise StoreUnavailable(f"{op}: the backend at 127.0.0.1:1 is down; start it")
        return getattr(self.inner, op)(*args)

    def get(self, sid: str) -> Any:
        return self._do("get", sid)

    def set(self, sid: str, session: dict[str, Any]) -> None:
        self._do("set", sid, session)

    def destroy(self, sid: str) -> None:
        self._do("destroy", sid)

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]


class TouchSpyStore(SpyStore):
    def touch(self, sid: str, session: dict[str, Any]) -> None:
        self._do("touch", sid, session)


def demo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A small app: the path says what to do with the session."""
    session = session_of(environ)
    path = environ["PATH_INFO"].removeprefix("/app")
    query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    status, body = "200 OK", "ok"
    if path == "/read":
        body = json.dumps({"id": session.id, "data": dict(session)})
    elif path == "/set":
        session.update(query)
    elif path == "/inc":
        session["n"] = session.get("n", 0) + 1
        body = str(session["n"])
    elif path == "/login":
        session.regenerate(keep_data="keep" in query)
        session["user"] = query["user"]
        session.join_group("user:" + query["user"])
    elif path == "/leave":
        session.leave_group("user:" + session["user"])
    elif path == "/logout-everywhere":
        body = str(session.end_group("user:" + session["user"]))
    elif path == "/destroy":
        session.destroy()
    elif path == "/reload":
        try:
            session.reload()
        except SessionNotFound as exc:
            status, body = "409 Conflict", str(exc)
    elif path == "/touch":
        session.touch()
    elif path == "/remember":
        session["user"] = "ada"
        session.cookie.max_age = 30 * 86400
    elif path == "/save":
        session["saved"] = True
        session.save()
    elif path == "/boom":
        session["x"] = 1
        raise RuntimeError("boom")
    elif path == "/fail":
        session["x"] = 1
        status = "500 Internal Server Error"
    elif path == "/unjson":
        session["when"] = {1, 2}
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    if query.get("vary"):
        headers.append(("Vary", query["vary"]))
    start_response(status, headers)
    return [body.encode()]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def store(memory: MemoryStore) -> TouchSpyStore:
    return TouchSpyStore(memory)


@pytest.fixture
def make(store: SpyStore, clock: Clock) -> Callable[..., TestApp]:
    def make(app: Any = demo, *, store: Any = store, **options: Any) -> TestApp:
        options.setdefault("secret", SECRET)
        middleware = SessionMiddleware(app, store, clock=clock, **options)
        return TestApp(middleware)

    return make


def express_cookie(sid: str, secret: str = SECRET) -> str:
    """An express-session cookie value for ``sid``, from cookie-signature's definition."""
    mac = hmac.new(secret.encode(), sid.encode(), hashlib.sha256).digest()
    return quote("s:" + sid + "." + base64.b64encode(mac).decode().rstrip("="), safe="-_.!~*'()")


def set_cookies(response: Any) -> list[str]:
    return [value for name, value in response.headerlist if name.lower() == "set-cookie"]


def sid_of(response: Any) -> str:
    (header,) = set_cookies(response)
    value = unquote(header.split(";")[0].split("=", 1)[1])
    match = re.fullmatch(r"s:(.+)\.[A-Za-z0-9+/]+", value)
    assert match, header
    return match.group(1)


def read(app: TestApp, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(app.get("/read", **kwargs).text)
    return result


# -- the basics ----------------------------------------------------------------


def test_an_untouched_new_session_sets_no_cookie_and_stores_nothing(make: Any, memory: MemoryStore) -> None:
    response = make().get("/")
    assert set_cookies(response) == []
    assert "Vary" not in response.headers
    assert memory.length() == 0


def test_reading_the_session_adds_vary_cookie_only(make: Any, memory: MemoryStore) -> None:
    response = make().get("/read")
    assert response.headers["Vary"] == "Cookie"
    assert set_cookies(response) == []
    assert memory.length() == 0


def test_vary_is_merged_with_the_apps_vary(make: Any) -> None:
    app = make()
    assert app.get("/read?vary=Accept-Encoding").headers["Vary"] == "Accept-Encoding, Cookie"
    assert app.get("/read?vary=*").headers["Vary"] == "*"
    assert app.get("/read?vary=cookie").headers["Vary"] == "cookie"


def test_a_write_sets_an_express_signed_cookie_and_stores_the_session(make: Any, memory: MemoryStore) -> None:
    response = make(max_age=3600).get("/set?user=ada")
    (header,) = set_cookies(response)
    sid = sid_of(response)
    assert header == (
        f"connect.sid={express_cookie(sid)}; Max-Age=3600; Path=/; "
        "Expires=Sun, 22 Nov 2026 11:00:00 GMT; HttpOnly; SameSite=Lax"
    )
    assert memory.get(sid) == {
        "cookie": {
            "originalMaxAge": 3600000,
            "expires": "2026-11-22T11:00:00.000Z",
            "httpOnly": True,
            "path": "/",
            "sameSite": "lax",
        },
        "user": "ada",
    }


def test_the_cookie_jar_brings_the_session_back(make: Any) -> None:
    app = make()
    assert app.get("/inc").text == "1"
    assert app.get("/inc").text == "2"
    assert read(app)["data"] == {"n": 2}


def test_a_session_saved_by_express_loads(make: Any, memory: MemoryStore) -> None:
    """What express-session's MemoryStore holds after JSON.stringify of req.session."""
    node_json = (
        '{"cookie":{"originalMaxAge":86400000,"expires":"2026-11-23T10:00:00.000Z","secure":false,'
        '"httpOnly":true,"path":"/","sameSite":"strict"},"views":3,"user":{"name":"ada","roles":["a"]}}'
    )
    memory.set("K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo", json.loads(node_json))
    app = make()
    app.set_cookie("connect.sid", express_cookie("K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo"))
    assert read(app) == {
        "id": "K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo",
        "data": {"views": 3, "user": {"name": "ada", "roles": ["a"]}},
    }
    app.get("/inc")
    stored = memory.get("K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo")
    assert stored is not None
    assert stored["cookie"]["originalMaxAge"] == 86400000
    assert stored["cookie"]["expires"] == "2026-11-23T10:00:00.000Z"  # now + originalMaxAge


def test_a_key_named_cookie_is_the_apps_and_is_stored_escaped(make: Any, memory: MemoryStore) -> None:
    """As under Flask and Django: kept, under storekit.key:cookie, beside express-session's cookie."""
    app = make()
    sid = sid_of(app.get("/set?cookie=accepted"))
    assert read(app)["data"] == {"cookie": "accepted"}
    stored = memory.get(sid)
    assert stored is not None
    assert stored["storekit.key:cookie"] == "accepted"
    assert stored["cookie"]["httpOnly"] is True


# -- hostile cookies -------------------------------------------------------------


def _signed(sid: str, secret: str = SECRET) -> str:
    return express_cookie(sid, secret)


HOSTILE = {
    "garbage": "garbage",
    "prefix only": "s%3A",
    "no signature": "s%3Aabc",
    "empty signature": "s%3Aabc.",
    "10 KB": "s%3A" + "a" * 10240 + ".sig",
    "wrong signature": "s%3AK2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "other secret": _signed("K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo", "another secret"),
    "unsigned known sid": "K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo",
    "bad percent escapes": "s%3A%ff%fe.%c3",
    "non-UTF-8 bytes": "s:\xff\xfe\x80.\xc3\x28",
    "signed empty sid": _signed(""),
    "signed huge sid": _signed("x" * 2000),
    "signed group index": _signed(GROUP_PREFIX + "user:1"),
}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_cookie_gives_a_fresh_session_without_a_lookup(
    make: Any, store: SpyStore, memory: MemoryStore, value: str
) -> None:
    memory.set("K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo", {"user": "victim"})
    memory.set(GROUP_PREFIX + "user:1", {"members": ["K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo"]})
    response = make().get("/inc", extra_environ={"HTTP_COOKIE": f"connect.sid={value}"})
    assert response.text == "1"
    assert "get" not in store.ops()
    sid = sid_of(response)
    assert sid not in {"K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo", "", GROUP_PREFIX + "user:1"}
    assert memory.get(sid) is not None
    assert memory.get("K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo") == {"user": "victim"}


def test_a_validly_signed_unknown_sid_is_never_adopted(make: Any, memory: MemoryStore) -> None:
    response = make().get("/inc", extra_environ={"HTTP_COOKIE": "connect.sid=" + _signed("chosen-by-client")})
    assert sid_of(response) != "chosen-by-client"
    assert memory.get("chosen-by-client") is None


def test_of_several_cookies_of_the_name_the_first_valid_one_counts(make: Any, memory: MemoryStore) -> None:
    memory.set("sid-one", {"n": 1})
    memory.set("sid-two", {"n": 2})
    header = f"connect.sid=garbage; connect.sid={_signed('sid-two')}; connect.sid={_signed('sid-one')}"
    assert read(make(), extra_environ={"HTTP_COOKIE": header})["data"] == {"n": 2}


def test_a_cookie_signed_by_node_is_read(make: Any, memory: MemoryStore) -> None:
    """s:a9Kx3-_zPq signed with 'keyboard cat' by node's crypto, as cookie-signature does."""
    memory.set("a9Kx3-_zPq", {"n": 41})
    cookie = "connect.sid=s%3Aa9Kx3-_zPq.AJZj7lu8QHCcJKmEjoxsA9HUyPnNpyjy7SdbxgDprDE"
    assert make().get("/inc", extra_environ={"HTTP_COOKIE": cookie}).text == "42"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_verifies_the_cookie_we_set(make: Any) -> None:
    response = make().get("/set?a=1")
    value = unquote(set_cookies(response)[0].split(";")[0].split("=", 1)[1])
    script = (
        "const c=require('crypto');const v=decodeURIComponent(process.argv[1]).slice(2);"
        "const t=v.slice(0,v.lastIndexOf('.'));"
        "const s=t+'.'+c.createHmac('sha256',process.argv[2]).update(t).digest('base64').replace(/=+$/,'');"
        "process.stdout.write(s===v?t:'BAD')"
    )
    out = subprocess.run(
        ["node", "-e", script, quote(value, safe=""), SECRET], capture_output=True, text=True, check=True
    )
    assert out.stdout == sid_of(response)


# -- secrets -----------------------------------------------------------------------


def test_secret_rotation_keeps_old_sessions_and_signs_with_the_new_secret(
    make: Any, memory: MemoryStore
) -> None:
    old = make(secret="old secret")
    old.get("/inc")
    cookie = old.cookies["connect.sid"]
    rotated = make(secret=["new secret", "old secret"], rolling=True)
    rotated.set_cookie("connect.sid", cookie)
    response = rotated.get("/inc")
    assert response.text == "2"
    sid = sid_of(response)
    assert set_cookies(response)[0].startswith("connect.sid=" + express_cookie(sid, "new secret") + ";")
    retired = make(secret="new secret")
    retired.set_cookie("connect.sid", cookie)
    assert retired.get("/inc").text == "1"


# -- options -------------------------------------------------------------------------


def test_without_rolling_an_unmodified_request_touches_the_store_but_sends_no_cookie(
    make: Any, store: SpyStore, memory: MemoryStore, clock: Clock
) -> None:
    app = make(max_age=60)
    sid = sid_of(app.get("/inc"))
    clock.now += 30
    response = app.get("/read")
    assert set_cookies(response) == []
    assert store.ops()[-2:] == ["get", "touch"]
    stored = memory.get(sid)
    assert stored is not None
    assert stored["cookie"]["expires"] == "2026-11-22T10:01:30.000Z"


def test_rolling_sends_the_cookie_every_time_with_a_new_expiry(make: Any, clock: Clock) -> None:
    app = make(max_age=60, rolling=True)
    app.get("/inc")
    clock.now += 30
    (header,) = set_cookies(app.get("/read"))
    assert "Expires=Sun, 22 Nov 2026 10:01:30 GMT" in header
    assert "Max-Age=60" in header


def test_without_touch_and_resave_an_unmodified_session_is_not_written(
    make: Any, memory: MemoryStore
) -> None:
    store = SpyStore(memory)
    app = make(store=store, max_age=60)
    app.get("/inc")
    app.get("/read")
    assert store.ops() == ["set", "get"]


def test_resave_writes_an_unmodified_session(make: Any, memory: MemoryStore) -> None:
    """Behaviour changed (issue 11): the write of a loaded session checks that it is still stored
    (get), sets it, then looks for a logout marker (get)."""
    store = SpyStore(memory)
    app = make(store=store, resave=True)
    app.get("/inc")
    app.get("/read")
    assert store.ops() == ["set", "get", "get", "set", "get"]


def test_save_uninitialized_stores_and_sends_an_empty_session(make: Any, memory: MemoryStore) -> None:
    response = make(save_uninitialized=True).get("/")
    assert memory.get(sid_of(response)) is not None


def test_always_set_sends_the_cookie_on_every_response(make: Any, memory: MemoryStore) -> None:
    app = make(always_set=True)
    first = sid_of(app.get("/"))
    assert sid_of(app.get("/")) == first
    assert memory.length() == 1


def test_without_max_age_the_cookie_is_a_browser_session_cookie(make: Any, memory: MemoryStore) -> None:
    """Behaviour changed (issue 11): the stored session now expires one day (``ttl``) after its last use."""
    response = make().get("/inc")
    (header,) = set_cookies(response)
    assert "Expires" not in header
    assert "Max-Age" not in header
    stored = memory.get(sid_of(response))
    assert stored is not None
    assert stored["cookie"]["expires"] == "2026-11-23T10:00:00.000Z"
    assert stored["cookie"]["originalMaxAge"] is None


def test_cookie_flags_are_written(make: Any, memory: MemoryStore) -> None:
    app = make(
        cookie_name="sid", secure=True, same_site="strict", path="/app", domain="example.org", http_only=False
    )
    response = app.get("/app/set?a=1", extra_environ={"wsgi.url_scheme": "https"})
    (header,) = set_cookies(response)
    assert header.startswith("sid=s%3A")
    assert header.endswith("; Domain=example.org; Path=/app; Secure; SameSite=Strict")
    stored = memory.get(sid_of(response))
    assert stored is not None
    assert stored["cookie"] == {
        "originalMaxAge": None,
        "expires": "2026-11-23T10:00:00.000Z",  # ttl: one day (issue 11)
        "secure": True,
        "httpOnly": False,
        "domain": "example.org",
        "path": "/app",
        "sameSite": "strict",
    }


def test_partitioned_adds_the_attribute(make: Any) -> None:
    response = make(secure=True, partitioned=True).get("/inc", extra_environ={"wsgi.url_scheme": "https"})
    assert set_cookies(response)[0].endswith("; Secure; SameSite=Lax; Partitioned")


def test_requests_outside_the_cookie_path_get_no_session(make: Any) -> None:
    app = make(path="/app")
    with pytest.raises(KeyError, match=r"wrap the app in storekit\.wsgi\.SessionMiddleware"):
        app.get("/other/read")
    assert app.get("/app/inc").text == "1"


@pytest.mark.parametrize(
    ("environ", "sent"),
    [
        ({}, False),
        ({"HTTP_X_FORWARDED_PROTO": "https"}, False),
        ({"wsgi.url_scheme": "https"}, True),
    ],
)
def test_a_secure_cookie_goes_out_over_https_only(
    make: Any, memory: MemoryStore, environ: dict[str, str], sent: bool
) -> None:
    response = make(secure=True).get("/inc", extra_environ=environ)
    assert bool(set_cookies(response)) is sent
    assert memory.length() == int(sent)


@pytest.mark.parametrize(("proto", "sent"), [("https", True), ("https, http", True), ("http", False)])
def test_a_trusted_proxy_says_https(make: Any, proto: str, sent: bool) -> None:
    response = make(secure=True, trust_proxy=True).get("/inc", headers={"X-Forwarded-Proto": proto})
    assert bool(set_cookies(response)) is sent
    if sent:
        assert "; Secure" in set_cookies(response)[0]


def test_secure_auto_follows_the_scheme(make: Any) -> None:
    app = make(secure="auto", trust_proxy=True)
    assert "Secure" not in set_cookies(app.get("/inc"))[0]
    app.reset()
    assert "; Secure" in set_cookies(app.get("/inc", headers={"X-Forwarded-Proto": "https"}))[0]


# -- session methods ---------------------------------------------------------------


def test_regenerate_gives_a_new_sid_and_destroys_the_old_record(make: Any, memory: MemoryStore) -> None:
    app = make()
    old = sid_of(app.get("/set?cart=1"))
    new = sid_of(app.get("/login?user=ada"))
    assert new != old
    assert memory.get(old) is None
    assert read(app)["data"] == {"user": "ada"}


def test_regenerate_can_keep_the_data(make: Any) -> None:
    app = make()
    app.get("/set?cart=1")
    app.get("/login?user=ada&keep=1")
    assert read(app)["data"] == {"cart": "1", "user": "ada"}


def test_destroy_removes_the_record_and_deletes_the_cookie_with_its_path_and_domain(
    make: Any, memory: MemoryStore
) -> None:
    app = make(path="/app", domain="example.org")
    sid = sid_of(app.get("/app/inc"))
    response = app.get("/app/destroy", extra_environ={"HTTP_COOKIE": "connect.sid=" + _signed(sid)})
    assert memory.get(sid) is None
    (header,) = set_cookies(response)
    assert header == (
        "connect.sid=; Max-Age=0; Domain=example.org; Path=/app; Expires=Thu, 01 Jan 1970 00:00:00 GMT; "
        "HttpOnly; SameSite=Lax"
    )
    assert response.headers["Vary"] == "Cookie"


def test_destroy_without_a_cookie_sets_none_but_varies(make: Any) -> None:
    response = make().get("/destroy")
    assert set_cookies(response) == []
    assert response.headers["Vary"] == "Cookie"


def test_the_jar_loses_the_cookie_after_destroy(make: Any) -> None:
    app = make()
    app.get("/inc")
    app.get("/destroy")
    assert "connect.sid" not in app.cookies
    assert app.get("/inc").text == "1"


def test_reload_of_a_vanished_session_is_an_error(make: Any, memory: MemoryStore) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        session = session_of(environ)
        memory.destroy(session.id)  # another worker logs the session out meanwhile
        with pytest.raises(SessionNotFound, match="is no longer in the store") as info:
            session.reload()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [info.value.sid.encode()]

    browser = make()
    sid = sid_of(browser.get("/inc"))
    browser.app.app = app
    assert browser.get("/").text == sid
    assert memory.get(sid) is None


def test_explicit_save_writes_at_once_and_sends_the_cookie(make: Any, store: SpyStore) -> None:
    response = make().get("/save")
    assert store.ops() == ["set"]
    assert sid_of(response)


def test_touch_sends_the_cookie_again(make: Any, clock: Clock) -> None:
    app = make(max_age=60)
    app.get("/inc")
    clock.now += 10
    (header,) = set_cookies(app.get("/touch"))
    assert "Expires=Sun, 22 Nov 2026 10:01:10 GMT" in header


def test_a_per_session_max_age_is_sent_stored_and_kept(make: Any, memory: MemoryStore, clock: Clock) -> None:
    app = make(max_age=3600)
    response = app.get("/remember")
    assert "Max-Age=2592000" in set_cookies(response)[0]
    sid = sid_of(response)
    clock.now += 86400  # a day later the 1-hour default would be long gone
    app.get("/inc")
    stored = memory.get(sid)
    assert stored is not None
    assert stored["cookie"]["originalMaxAge"] == 30 * 86400 * 1000
    assert stored["cookie"]["expires"] == "2026-12-23T10:00:00.000Z"


# -- groups ---------------------------------------------------------------------------


def test_ending_a_group_logs_out_everywhere(make: Any, memory: MemoryStore) -> None:
    laptop, phone, other = make(), make(), make()
    laptop.get("/login?user=ada")
    phone.get("/login?user=ada")
    other.get("/login?user=bob")
    assert memory.length() == 5  # three sessions, two group indexes
    response = laptop.get("/logout-everywhere")
    assert response.text == "2"
    assert "connect.sid=;" in set_cookies(response)[0]
    assert read(phone)["data"] == {}
    assert read(laptop)["data"] == {}
    assert read(other)["data"] == {"user": "bob"}
    index = memory.get(GROUP_PREFIX + "user:ada")
    assert index is not None
    assert index["members"] == []  # the group's next generation, empty


def test_the_middleware_ends_a_group_from_outside_a_request(make: Any, store: SpyStore) -> None:
    app = make()
    app.get("/login?user=ada")
    assert app.app.end_group("user:ada") == 1
    assert read(app)["data"] == {}
    assert app.app.end_group("user:nobody") == 0


def test_a_session_that_left_its_group_is_not_ended_with_it(make: Any) -> None:
    stays, leaves = make(), make()
    stays.get("/login?user=ada")
    leaves.get("/login?user=ada")
    leaves.get("/leave")
    assert stays.get("/logout-everywhere").text == "1"
    assert read(leaves)["data"] == {"user": "ada"}


def test_a_group_index_outlives_its_members(make: Any, memory: MemoryStore, clock: Clock) -> None:
    app = make(max_age=3600, rolling=True, group_ttl=7200)
    app.get("/login?user=ada")
    for _ in range(10):  # a rolling session active for 10 hours
        clock.now += 3000
        app.get("/read")
    index = memory.get(GROUP_PREFIX + "user:ada")
    assert index is not None
    assert app.app.end_group("user:ada") == 1
    assert read(app)["data"] == {}


def test_a_long_member_list_is_pruned_of_sessions_that_are_gone(memory: MemoryStore) -> None:
    memory.set("alive", {"n": 1})
    memory.set(GROUP_PREFIX + "g", {"members": ["alive"] + [f"gone{i}" for i in range(70)]})
    add_member(memory, "g", "joining", until=T0 + 60)
    index = memory.get(GROUP_PREFIX + "g")
    assert index is not None
    assert index["members"] == ["alive", "joining"]
    assert index["cookie"]["expires"] == "2026-11-22T10:01:00.000Z"


def test_a_foreign_record_under_the_group_prefix_is_an_error(memory: MemoryStore) -> None:
    memory.set(GROUP_PREFIX + "g", {"members": "everyone"})
    with pytest.raises(InvalidSessionData, match="another program wrote under storekit's reserved prefix"):
        end_group(memory, "g")
    with pytest.raises(ValueError, match="a group name must be a non-empty str"):
        end_group(memory, "")


# -- failures ---------------------------------------------------------------------------


def test_a_store_failure_on_load_is_a_503_and_a_log_line(
    make: Any, store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Behaviour changed (issue 11): an outage is a 503, raised where the app first uses the session."""
    app = make()
    app.get("/inc")
    store.fail = {"get"}
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        response = app.get("/inc", status=503)
    assert response.text == "Service Unavailable\n"
    assert set_cookies(response) == []
    (record,) = caplog.records
    assert "could not load session" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], StoreUnavailable)


def test_during_an_outage_a_route_that_never_uses_the_session_works(
    make: Any, store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make()
    app.get("/inc")
    store.fail = {"get", "set", "touch", "destroy"}
    calls = len(store.calls)
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        response = app.get("/")  # the demo's "/" never reads the session
    assert (response.status_int, response.text, set_cookies(response)) == (200, "ok", [])
    assert len(store.calls) == calls  # not even a get
    assert caplog.records == []


def test_a_store_failure_on_save_is_a_500_and_the_store_is_untouched(
    make: Any, store: SpyStore, memory: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make()
    store.fail = {"set"}
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        response = app.get("/inc", status=500)
    assert set_cookies(response) == []
    assert memory.length() == 0
    assert "could not save session" in caplog.records[0].getMessage()


def test_a_stored_record_that_is_not_a_session_is_a_500_not_an_empty_session(
    make: Any, memory: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    memory.set("odd-record", {"cookie": {"originalMaxAge": "soon"}, "user": "ada"})
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        make().get("/read", extra_environ={"HTTP_COOKIE": "connect.sid=" + _signed("odd-record")}, status=500)
    assert "originalMaxAge" in str(caplog.records[0].exc_info[1])  # type: ignore[index]
    assert memory.get("odd-record") == {"cookie": {"originalMaxAge": "soon"}, "user": "ada"}


def test_a_value_that_is_not_json_is_a_500_naming_the_key(
    make: Any, memory: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        make().get("/unjson", status=500)
    assert "session['when'] is a set" in str(caplog.records[0].exc_info[1])  # type: ignore[index]
    assert memory.length() == 0


def test_when_the_app_raises_nothing_is_saved(make: Any, memory: MemoryStore) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        make().get("/boom")
    assert memory.length() == 0


def test_when_a_generator_app_raises_before_its_first_byte_nothing_is_saved(
    memory: MemoryStore, clock: Clock
) -> None:
    def failing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session_of(environ)["half"] = "done"
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("boom while rendering")
        yield b""  # type: ignore[unreachable]  # makes this a generator

    with pytest.raises(RuntimeError, match="boom while rendering"):
        TestApp(SessionMiddleware(failing, memory, secret=SECRET, clock=clock)).get("/")
    assert memory.length() == 0


def test_a_5xx_saves_nothing_and_sets_no_cookie(make: Any, memory: MemoryStore) -> None:
    response = make(save_uninitialized=True).get("/fail", status=500)
    assert set_cookies(response) == []
    assert memory.length() == 0


def test_an_async_store_is_refused_with_the_reason() -> None:
    with pytest.raises(TypeError, match="an async store is for async frameworks"):
        SessionMiddleware(demo, AsyncMemoryStore(), secret=SECRET)  # type: ignore[arg-type]


# -- the save happens before the response can be seen ------------------------------------


def _recording_server(app: Any, events: list[str]) -> Any:
    def server(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        def recording_start_response(*args: Any) -> Any:
            events.append("start_response")
            return start_response(*args)

        for chunk in app(environ, recording_start_response):
            events.append("body")
            yield chunk

    return server


def test_the_session_is_saved_before_the_headers_go_out(make: Any, memory: MemoryStore, clock: Clock) -> None:
    events: list[str] = []
    store = SpyStore(memory, events)
    middleware = SessionMiddleware(demo, store, secret=SECRET, clock=clock)
    TestApp(_recording_server(middleware, events)).get("/inc")
    assert events == ["set", "start_response", "body"]


def test_a_generator_app_is_saved_before_its_first_byte(memory: MemoryStore, clock: Clock) -> None:
    def streaming(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        session_of(environ)["streamed"] = True
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        yield b"one "
        yield b"two"

    events: list[str] = []
    middleware = SessionMiddleware(streaming, SpyStore(memory, events), secret=SECRET, clock=clock)
    response = TestApp(_recording_server(middleware, events)).get("/")
    assert response.text == "one two"
    assert events[:2] == ["set", "start_response"]


def test_the_legacy_write_callable_is_saved_first(memory: MemoryStore, clock: Clock) -> None:
    def writer(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        session_of(environ)["written"] = True
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"early ")
        return [b"late"]

    events: list[str] = []
    middleware = SessionMiddleware(writer, SpyStore(memory, events), secret=SECRET, clock=clock)
    response = TestApp(middleware, lint=False).get("/")
    assert response.text == "early late"
    assert events == ["set"]
    assert memory.length() == 1


# -- the docs ------------------------------------------------------------------------------


def test_the_examples_in_docs_middleware_md_run() -> None:
    text = (Path(__file__).parent.parent / "docs" / "middleware.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/middleware.md has no python examples"
    namespace: dict[str, Any] = {"__name__": "docs_middleware"}
    for block in blocks:
        exec(compile(block, "docs/middleware.md", "exec"), namespace)


# -- ClusterStore: two workers' middlewares, one shared store ----------------------------------


@pytest.fixture
def cluster_stores() -> Iterator[tuple[Any, Any]]:
    cluster = pytest.importorskip("storekit.reference.cluster")
    namespace = "test-wsgi-" + secrets.token_hex(4)
    with cluster.serving():
        first, second = cluster.ClusterStore(namespace=namespace), cluster.ClusterStore(namespace=namespace)
        try:
            yield first, second
        finally:
            first.clear()
            for store in (first, second):
                getattr(store, "close", lambda: None)()


def test_with_cluster_store_a_session_follows_the_client_across_workers(cluster_stores: Any) -> None:
    first, second = cluster_stores
    worker_one = SessionMiddleware(demo, first, secret=SECRET, max_age=3600)
    worker_two = SessionMiddleware(demo, second, secret=SECRET, max_age=3600)
    browser = TestApp(worker_one)
    assert browser.get("/inc").text == "1"
    browser.app = worker_two
    assert browser.get("/inc").text == "2"
    sid = sid_of(browser.get("/login?user=ada"))
    browser.app = worker_one
    assert read(browser)["data"] == {"user": "ada"}
    other = TestApp(worker_two)
    other.get("/login?user=ada")
    assert worker_two.end_group("user:ada") == 2
    assert first.get(sid) is None
    assert read(browser)["data"] == {}


@pytest.mark.parametrize("value", [HOSTILE["10 KB"], HOSTILE["other secret"], HOSTILE["non-UTF-8 bytes"]])
def test_with_cluster_store_a_hostile_cookie_gives_a_fresh_session(cluster_stores: Any, value: str) -> None:
    first, _ = cluster_stores
    response = TestApp(SessionMiddleware(demo, first, secret=SECRET)).get(
        "/inc", extra_environ={"HTTP_COOKIE": f"connect.sid={value}"}
    )
    assert response.text == "1"
    assert first.get(sid_of(response)) is not None


# -- express-session itself, in node ------------------------------------------------------------

EXPRESS_APP = r"""
const http = require('http');
const session = require('express-session');
const [secret, sid, record, cookieHeader] = process.argv.slice(1);
const store = new session.MemoryStore();
store.set(sid, JSON.parse(record), () => {
  const middleware = session({secret, store, resave: false, saveUninitialized: false});
  const server = http.createServer((req, res) => middleware(req, res, (err) => {
    if (err) { res.statusCode = 500; res.end(String(err)); return; }
    const seen = Object.assign({}, req.session);
    delete seen.cookie;
    req.session.views = (req.session.views || 0) + 1;
    req.session.from = 'node';
    res.end(JSON.stringify({id: req.sessionID, seen}));
  }));
  server.listen(0, '127.0.0.1', () => {
    const options = {host: '127.0.0.1', port: server.address().port, headers: {cookie: cookieHeader}};
    http.get(options, (res) => {
      let body = '';
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        const answer = JSON.parse(body);
        store.get(answer.id, (err, stored) => {
          process.stdout.write(JSON.stringify({answer, setCookie: res.headers['set-cookie'] || [], stored}));
          server.close();
        });
      });
    });
  });
});
"""


def _express_session_available() -> bool:
    if shutil.which("node") is None:
        return False
    probe = subprocess.run(["node", "-e", "require.resolve('express-session')"], capture_output=True)
    return probe.returncode == 0


needs_express_session = pytest.mark.skipif(
    not _express_session_available(),
    reason="express-session is not installed for node (npm install express-session; set NODE_PATH)",
)


def run_express(sid: str, record: Any, cookie_header: str) -> dict[str, Any]:
    run = subprocess.run(
        ["node", "-e", EXPRESS_APP, SECRET, sid, json.dumps(record), cookie_header],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(run.stdout)
    return result


@needs_express_session
def test_express_session_and_the_middleware_share_a_session(
    make: Any, memory: MemoryStore, clock: Clock
) -> None:
    """Python saves, express-session loads and saves, Python loads: one session, one cookie format."""
    clock.now = time.time()  # node's clock writes the expiry it saves
    browser = make(max_age=3600)
    sid = sid_of(browser.get("/set?user=ada"))
    node = run_express(sid, memory.get(sid), "connect.sid=" + browser.cookies["connect.sid"])
    assert node["answer"] == {"id": sid, "seen": {"user": "ada"}}
    (node_cookie,) = node["setCookie"]
    assert node_cookie.startswith(f"connect.sid={express_cookie(sid)}; Path=/; Expires=")
    memory.set(sid, node["stored"])  # as if both apps used one store
    python_again = make()
    python_again.set_cookie("connect.sid", node_cookie.split(";")[0].split("=", 1)[1])
    assert read(python_again) == {"id": sid, "data": {"user": "ada", "views": 1, "from": "node"}}


@needs_express_session
def test_a_session_express_session_started_loads_in_python(
    make: Any, memory: MemoryStore, clock: Clock
) -> None:
    clock.now = time.time()
    node = run_express("unused", {"cookie": {"originalMaxAge": None, "expires": None}}, "")
    sid = node["answer"]["id"]
    assert node["stored"]["cookie"] == {
        "originalMaxAge": None,
        "expires": None,
        "httpOnly": True,
        "path": "/",
    }
    memory.set(sid, node["stored"])
    browser = make()
    (node_cookie,) = node["setCookie"]
    browser.set_cookie("connect.sid", node_cookie.split(";")[0].split("=", 1)[1])
    assert browser.get("/inc").text == "1"
    assert read(browser) == {"id": sid, "data": {"views": 1, "from": "node", "n": 1}}


@pytest.mark.parametrize("read", ["id", "groups", "cookie"])
def test_a_response_that_read_the_sessions_id_groups_or_cookie_varies_on_cookie(read: str) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        session = session_of(environ)
        if environ["PATH_INFO"] == "/login":
            session["user"] = "ada"
            body = "ok"
        else:
            body = repr(getattr(session, read))[:40]  # e.g. a CSRF token derived from the sid
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]

    browser = TestApp(SessionMiddleware(app, MemoryStore(), secret="s"))
    browser.get("/login")
    response = browser.get("/page")
    assert response.headers.get("Vary") == "Cookie"
    assert "Set-Cookie" not in response.headers
