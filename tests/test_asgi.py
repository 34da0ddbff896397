"""storekit.asgi.SessionMiddleware over a raw ASGI app: the WSGI middleware's rules, awaited.

HTTP through httpx's ASGITransport (its client keeps the cookie, as a browser
would), websockets through Starlette's TestClient; the stores are
AsyncMemoryStore behind a spy that records and can fail each call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import pytest

from storekit import StoreUnavailable
from storekit.asession import AsyncSession, AsyncStoreHolder, WebSocketSession
from storekit.asgi import SessionMiddleware, session_of
from storekit.cookie import sign
from storekit.groups import GROUP_PREFIX
from storekit.reference import AsyncMemoryStore, MemoryStore
from storekit.session import SessionNotFound
from storekit.wsgi import SessionMiddleware as WSGISessionMiddleware

T0 = 1_795_341_600.0  # 2026-11-22T10:00:00Z
SECRET = "keyboard cat"
BASE = "http://testserver"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class SpyStore:
    """An async store with touch() that records every call (in ``events`` too) and can fail."""

    def __init__(self, inner: AsyncMemoryStore, events: list[str] | None = None) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []
        self.events = events if events is not None else []
        self.fail: set[str] = set()

    async def _do(self, op: str, *args: Any) -> Any:
        self.calls.append((op, args[0]))
        self.events.append(op)
        await asyncio.sleep(0)  # a real store yields to the loop
        if op in self.fail:
            raise StoreUnavailable(f"{op}: the backend at 127.0.0.1:1 is down; start it")
        return await getattr(self.inner, op)(*args)

    async def get(self, sid: str) -> Any:
        return await self._do("get", sid)

    async def set(self, sid: str, session: dict[str, Any]) -> None:
        await self._do("set", sid, session)

    async def destroy(self, sid: str) -> None:
        await self._do("destroy", sid)

    async def touch(self, sid: str, session: dict[str, Any]) -> None:
        await self._do("touch", sid, session)

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]


async def demo(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app: the path says what to do with the session."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":
        await websocket_demo(scope, receive, send)
        return
    session = session_of(scope)
    path = scope["path"].removeprefix("/app")
    query = dict(parse_qsl(scope["query_string"].decode()))
    status, body = 200, "ok"
    if path == "/read":
        body = json.dumps({"id": session.id, "data": dict(session)})
    elif path == "/set":
        session.update(query)
    elif path == "/inc":
        session["n"] = session.get("n", 0) + 1
        body = str(session["n"])
    elif path == "/login":
        await session.aregenerate(keep_data="keep" in query)
        session["user"] = query["user"]
        session.join_group("user:" + query["user"])
    elif path == "/leave":
        session.leave_group("user:" + session["user"])
    elif path == "/logout-everywhere":
        body = str(await session.aend_group("user:" + session["user"]))
    elif path == "/destroy":
        await session.adestroy()
    elif path == "/reload":
        try:
            await session.areload()
        except SessionNotFound as exc:
            status, body = 409, str(exc)
    elif path == "/save":
        session["saved"] = True
        await session.asave()
    elif path == "/remember":
        session["user"] = "ada"
        session.cookie.max_age = 30 * 86400
    elif path == "/boom":
        session["x"] = 1
        raise RuntimeError("boom")
    elif path == "/fail":
        session["x"] = 1
        status = 500
    elif path == "/stream":
        await stream(session, send)
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if query.get("vary"):
        headers.append((b"vary", query["vary"].encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


async def stream(session: AsyncSession, send: Send) -> None:
    session["n"] = session.get("n", 0) + 1
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for chunk in ("one ", "two ", "three"):
        await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
    session["late"] = True  # after the start: too late to be saved
    await send({"type": "http.response.body", "body": b""})


async def websocket_demo(scope: Scope, receive: Receive, send: Send) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    session = session_of(scope)
    try:
        session["from_socket"] = True
        refused = ""
    except TypeError as exc:
        refused = str(exc)
    reply = {"data": dict(session), "new": session.is_new, "kind": type(session).__name__, "refused": refused}
    await send({"type": "websocket.send", "text": json.dumps(reply)})
    await send({"type": "websocket.close", "code": 1000})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


@pytest.fixture
def store(memory: MemoryStore) -> SpyStore:
    return SpyStore(AsyncMemoryStore(sync=memory))


@pytest.fixture
def make(store: SpyStore, clock: Clock) -> Callable[..., SessionMiddleware]:
    def make(app: Any = demo, *, store: Any = store, **options: Any) -> SessionMiddleware:
        options.setdefault("secret", SECRET)
        return SessionMiddleware(app, store, clock=clock, **options)

    return make


def browse(app: Any, *steps: str | tuple[str, dict[str, str]], base: str = BASE) -> list[httpx.Response]:
    """GET each path in one client (one cookie jar), in one event loop; the responses."""

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as client:
            responses = []
            for step in steps:
                path, headers = (step, {}) if isinstance(step, str) else step
                responses.append(await client.get(path, headers=headers))
            return responses

    return asyncio.run(main())


def get(app: Any, path: str, **headers: str) -> httpx.Response:
    """One request from a client without a jar; ``cookie=...`` sends a Cookie header."""
    return browse(app, (path, headers))[0]


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def sid_of(response: httpx.Response) -> str:
    (header,) = set_cookies(response)
    value = unquote(header.split(";")[0].split("=", 1)[1])
    match = re.fullmatch(r"s:(.+)\.[A-Za-z0-9+/]+", value)
    assert match, header
    return match.group(1)


def cookie(sid: str, secret: str = SECRET) -> str:
    return "connect.sid=" + sign(sid, secret.encode()).replace(":", "%3A")


# -- the basics ----------------------------------------------------------------


def test_a_counter_counts_across_requests(make: Any) -> None:
    assert [r.text for r in browse(make(), "/inc", "/inc", "/inc")] == ["1", "2", "3"]


def test_an_untouched_new_session_sets_no_cookie_and_stores_nothing(make: Any, memory: MemoryStore) -> None:
    response = get(make(), "/")
    assert set_cookies(response) == []
    assert "vary" not in response.headers
    assert memory.length() == 0


def test_a_write_sets_the_wsgi_shells_cookie_and_stores_the_session(make: Any, memory: MemoryStore) -> None:
    response = get(make(), "/inc")
    sid = sid_of(response)
    (header,) = set_cookies(response)
    assert header.startswith("connect.sid=s%3A")
    expires = "2026-11-23T10:00:00.000Z"  # ttl: one day after the last use (issue 11)
    assert memory.get(sid) == {
        "cookie": {
            "originalMaxAge": None,
            "expires": expires,
            "httpOnly": True,
            "path": "/",
            "sameSite": "lax",
        },
        "n": 1,
    }


def test_the_session_is_in_scope_session_as_an_async_session(make: Any) -> None:
    seen: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["session"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    get(make(app), "/")
    assert isinstance(seen[0], AsyncSession)
    assert not isinstance(seen[0], WebSocketSession)


def test_session_of_without_the_middleware_says_how_to_get_one() -> None:
    with pytest.raises(KeyError, match=r"wrap the app in storekit\.asgi\.SessionMiddleware"):
        session_of({"type": "http"})
    with pytest.raises(KeyError, match="found dict"):
        session_of({"type": "http", "session": {}})  # Starlette's own middleware is installed instead


def call(app: Any, scope: Scope) -> list[Message]:
    """Run ``app`` on one raw HTTP ``scope`` with an empty body; the messages it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(path: str, *headers: tuple[bytes, bytes], **extra: Any) -> Scope:
    return {"type": "http", "path": path, "query_string": b"", "headers": list(headers), **extra}


def test_the_server_scope_is_not_mutated(make: Any) -> None:
    scope = http_scope("/inc")
    sent = call(make(), scope)
    assert "session" not in scope
    assert sent[0]["status"] == 200


def test_lifespan_passes_through_untouched(make: Any, store: SpyStore) -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        assert (await receive())["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})

    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(make(app)(scope, receive, send))
    assert seen == [scope]
    assert seen[0] is scope
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert store.calls == []


def test_requests_outside_the_cookie_path_get_no_session(make: Any) -> None:
    seen: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append("session" in scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app_under = make(app, path="/app")
    get(app_under, "/other")
    get(app_under, "/app/x")
    assert seen == [False, True]


def test_the_cookie_path_counts_the_root_path(make: Any) -> None:
    """Current servers put root_path in path; older ones send it apart."""
    app = make(path="/app")
    for scope in (http_scope("/app/inc", root_path="/app"), http_scope("/inc", root_path="/app")):
        sent = call(app, scope)
        assert sent[1]["body"] == b"1"
        assert any(name == b"set-cookie" for name, _ in sent[0]["headers"])


def test_every_cookie_header_is_read(make: Any, memory: MemoryStore) -> None:
    """HTTP/2 sends each cookie in a Cookie header of its own."""
    memory.set("sid-one", {"n": 1})
    sent = call(
        make(), http_scope("/inc", (b"cookie", b"theme=dark"), (b"cookie", cookie("sid-one").encode()))
    )
    assert sent[1]["body"] == b"2"


# -- the async session API ------------------------------------------------------


def test_regenerate_gives_a_new_sid_and_destroys_the_old_record(make: Any, memory: MemoryStore) -> None:
    first, login = browse(make(), "/inc", "/login?user=ada")
    old, new = sid_of(first), sid_of(login)
    assert old != new
    assert memory.get(old) is None
    assert memory.get(new)["user"] == "ada"  # type: ignore[index]
    assert "n" not in memory.get(new)  # type: ignore[operator]


def test_regenerate_can_keep_the_data(make: Any, memory: MemoryStore) -> None:
    _, login = browse(make(), "/inc", "/login?user=ada&keep=1")
    assert memory.get(sid_of(login))["n"] == 1  # type: ignore[index]


def test_destroy_removes_the_record_and_deletes_the_cookie_with_its_path_and_domain(
    make: Any, memory: MemoryStore
) -> None:
    app = make(path="/app", domain="example.com")
    first, gone, after = browse(app, "/app/inc", "/app/destroy", "/app/read", base="http://example.com")
    sid = sid_of(first)
    assert memory.get(sid) is None
    (header,) = set_cookies(gone)
    assert header.startswith("connect.sid=;")
    assert "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in header
    assert "Path=/app" in header
    assert "Domain=example.com" in header
    assert gone.headers["vary"] == "Cookie"
    assert json.loads(after.text)["data"] == {}


def test_reload_of_a_vanished_session_is_an_error(make: Any, memory: MemoryStore) -> None:
    app = make()

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            sid = sid_of(await client.get("/inc"))
            memory.destroy(sid)
            return await client.get("/reload")

    response = asyncio.run(main())
    assert response.status_code == 409
    assert "is no longer in the store" in response.text


def test_explicit_save_writes_at_once_and_sends_the_cookie(make: Any, store: SpyStore) -> None:
    response = get(make(), "/save")
    assert store.ops()[:1] == ["set"]
    assert len(set_cookies(response)) == 1


def test_a_per_session_max_age_is_sent_and_stored(make: Any, memory: MemoryStore) -> None:
    response = get(make(), "/remember")
    (header,) = set_cookies(response)
    assert "Expires=Tue, 22 Dec 2026 10:00:00 GMT" in header
    assert memory.get(sid_of(response))["cookie"]["originalMaxAge"] == 30 * 86400 * 1000  # type: ignore[index]


@pytest.mark.parametrize(
    ("call", "coroutine"),
    [
        (lambda s: s.save(), "asave"),
        (lambda s: s.reload(), "areload"),
        (lambda s: s.destroy(), "adestroy"),
        (lambda s: s.regenerate(), "aregenerate"),
        (lambda s: s.end_group("user:1"), "aend_group"),
    ],
    ids=["save", "reload", "destroy", "regenerate", "end_group"],
)
def test_a_sync_store_operation_names_its_coroutine(make: Any, call: Any, coroutine: str) -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            call(session_of(scope))
        except TypeError as exc:
            errors.append(str(exc))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    get(make(app), "/")
    assert len(errors) == 1
    assert f"await session.{coroutine}(" in errors[0]


def test_the_async_store_behind_a_session_refuses_sync_calls() -> None:
    holder = AsyncStoreHolder(AsyncMemoryStore())
    for call in (lambda: holder.get("sid"), lambda: holder.set("sid", {}), lambda: holder.destroy("sid")):
        with pytest.raises(TypeError, match=r"called synchronously .*await session\.asave\(\)"):
            call()


# -- groups ---------------------------------------------------------------------


def test_ending_a_group_logs_out_another_session(make: Any, memory: MemoryStore) -> None:
    app = make()

    async def main() -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url=BASE) as laptop,
            httpx.AsyncClient(transport=transport, base_url=BASE) as phone,
        ):
            await laptop.get("/login?user=ada")
            await phone.get("/login?user=ada")
            before = json.loads((await phone.get("/read")).text)["data"].get("user")
            ended = (await laptop.get("/logout-everywhere")).text
            after = json.loads((await phone.get("/read")).text)["data"].get("user")
            return [before, ended, str(after)]

    assert asyncio.run(main()) == ["ada", "2", "None"]
    index = memory.get(GROUP_PREFIX + "user:ada")
    assert index is not None
    assert index["members"] == []  # the group's next generation, empty


def test_the_middleware_ends_a_group_from_outside_a_request(make: Any, memory: MemoryStore) -> None:
    app = make()
    (login,) = browse(app, "/login?user=bob")
    assert asyncio.run(app.aend_group("user:bob")) == 1
    assert memory.get(sid_of(login)) is None


def test_a_session_that_left_its_group_is_not_ended_with_it(make: Any, memory: MemoryStore) -> None:
    app = make()
    login, _ = browse(app, "/login?user=eve", "/leave")
    assert asyncio.run(app.aend_group("user:eve")) == 0
    assert memory.get(sid_of(login)) is not None


# -- when it is saved -----------------------------------------------------------


def recorder(app: Any, events: list[str]) -> Any:
    """An ASGI middleware outside ours that records each message the server is sent."""

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        async def spy(message: Message) -> None:
            events.append(message["type"])
            await send(message)

        await app(scope, receive, spy)

    return recording


def test_the_session_is_saved_before_the_response_start_is_sent(memory: MemoryStore, clock: Clock) -> None:
    events: list[str] = []
    store = SpyStore(AsyncMemoryStore(sync=memory), events)
    app = recorder(SessionMiddleware(demo, store, secret=SECRET, clock=clock), events)
    get(app, "/inc")
    assert events == ["set", "http.response.start", "http.response.body"]


def test_a_streaming_response_streams_and_its_session_is_saved_before_the_first_chunk(
    memory: MemoryStore, clock: Clock
) -> None:
    events: list[str] = []
    store = SpyStore(AsyncMemoryStore(sync=memory), events)
    app = recorder(SessionMiddleware(demo, store, secret=SECRET, clock=clock), events)
    first, _ = browse(app, "/stream", "/stream")
    assert first.text == "one two three"
    assert events[:3] == ["set", "http.response.start", "http.response.body"]
    assert events.count("http.response.body") == 8
    data = memory.get(sid_of(first))
    assert data is not None
    assert data["n"] == 2
    assert "late" not in data  # changed after the start went out: not saved


def test_when_the_app_raises_nothing_is_saved(make: Any, memory: MemoryStore) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        get(make(), "/boom")
    assert memory.length() == 0


def test_a_5xx_saves_nothing_and_sets_no_cookie(make: Any, memory: MemoryStore) -> None:
    app = make()
    first, failed, after = browse(app, "/inc", "/fail", "/read")
    assert failed.status_code == 500
    assert set_cookies(failed) == []
    assert failed.headers["vary"] == "Cookie"
    assert json.loads(after.text)["data"] == {"n": 1}
    assert memory.get(sid_of(first)) is not None


def test_an_unchanged_session_is_touched_and_gets_no_cookie(make: Any, store: SpyStore) -> None:
    _, again = browse(make(), "/inc", "/read")
    assert store.ops() == ["set", "get", "touch"]
    assert set_cookies(again) == []


class RenewingSpy(SpyStore):
    """A SpyStore with renew (get and renew in one call), as every bundled async store has."""

    async def renew(self, sid: str, session: dict[str, Any]) -> Any:
        return await self._do("renew", sid, session)


def test_a_request_that_never_uses_a_remember_me_session_keeps_its_own_lifetime(
    make: Any, memory: MemoryStore, clock: Clock
) -> None:
    """The ASGI shell loads (renews) every session before the app runs, with the default cookie;
    a session with a cookie of its own is touched back with it at the end, even when the app
    never looked at it, and gets no header for that."""
    spy = RenewingSpy(AsyncMemoryStore(sync=memory))
    app = make(store=spy)  # max_age None: the default cookie lasts the browser session, ttl a day
    login, health = browse(app, "/remember", "/health")
    sid = sid_of(login)
    assert spy.ops() == ["set", "renew", "touch"]
    assert set_cookies(health) == []
    assert "vary" not in health.headers
    clock.now += 2 * 86400  # two days on: the 30-day cookie is valid, and so is its session
    assert json.loads(get(app, "/read", cookie=cookie(sid)).text)["data"] == {"user": "ada"}


@pytest.mark.parametrize("path", ["/boom", "/fail"], ids=["raises", "answers 500"])
def test_a_failing_request_gives_a_remember_me_session_its_own_lifetime_back(
    make: Any, memory: MemoryStore, clock: Clock, path: str
) -> None:
    """A failing request saves nothing; the renew at load, which wrote the default cookie,
    is undone with a touch of the record as it was."""
    spy = RenewingSpy(AsyncMemoryStore(sync=memory))
    app = make(store=spy)
    sid = sid_of(get(app, "/remember"))
    with contextlib.suppress(RuntimeError):
        get(app, path, cookie=cookie(sid))
    assert spy.ops() == ["set", "renew", "touch"]
    clock.now += 2 * 86400
    assert json.loads(get(app, "/read", cookie=cookie(sid)).text)["data"] == {"user": "ada"}


def test_a_logout_while_a_request_fails_stays_final(make: Any, memory: MemoryStore) -> None:
    """A request fails (500) after another request of the session logged out: giving the
    failing request's session its own cookie back (a touch) does not bring it back."""
    spy = RenewingSpy(AsyncMemoryStore(sync=memory))
    loaded, release = asyncio.Event(), asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow-fail":
            loaded.set()
            await release.wait()
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await demo(scope, receive, send)

    middleware = make(app, store=spy)
    sid = sid_of(get(middleware, "/remember"))

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=BASE) as client:
            failing = asyncio.create_task(client.get("/slow-fail", headers={"cookie": cookie(sid)}))
            await asyncio.wait_for(loaded.wait(), 5)
            await client.get("/destroy", headers={"cookie": cookie(sid)})
            release.set()
            assert (await failing).status_code == 500

    asyncio.run(main())
    assert spy.ops()[-1] == "touch"  # the failing request gave back its own cookie, to no session
    assert memory.get(sid) is None


def test_a_request_that_never_uses_a_default_session_costs_only_the_renew(
    make: Any, memory: MemoryStore
) -> None:
    spy = RenewingSpy(AsyncMemoryStore(sync=memory))
    app = make(store=spy, max_age=60)
    _, health = browse(app, "/inc", "/health")
    assert spy.ops() == ["set", "renew"]  # the renew at load gave it its cookie: no touch
    assert set_cookies(health) == []


def test_rolling_sends_the_cookie_every_time(make: Any) -> None:
    _, again = browse(make(rolling=True, max_age=60), "/inc", "/read")
    assert len(set_cookies(again)) == 1


# -- Vary -------------------------------------------------------------------


def test_reading_the_session_adds_vary_cookie(make: Any) -> None:
    assert get(make(), "/read").headers["vary"] == "Cookie"


def test_vary_is_merged_with_the_apps_vary(make: Any) -> None:
    assert get(make(), "/read?vary=Accept-Encoding").headers.get_list("vary") == ["Accept-Encoding, Cookie"]
    assert get(make(), "/read?vary=Cookie").headers.get_list("vary") == ["Cookie"]
    assert get(make(), "/read?vary=*").headers.get_list("vary") == ["*"]


# -- the cookie -----------------------------------------------------------------


def test_cookie_flags_are_written(make: Any) -> None:
    app = make(
        max_age=3600, secure=True, same_site="strict", domain="example.com", path="/app", partitioned=True
    )
    assert set_cookies(get(app, "/app/inc", **{"x-forwarded-proto": "https"})) == []  # proxy not trusted
    (header,) = set_cookies(browse(app, "/app/inc", base="https://example.com")[0])
    attributes = header.split("; ")[1:]
    assert attributes == [
        "Max-Age=3600",
        "Domain=example.com",
        "Path=/app",
        "Expires=Sun, 22 Nov 2026 11:00:00 GMT",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Partitioned",
    ]


def test_a_secure_cookie_is_not_sent_over_plain_http(make: Any, memory: MemoryStore) -> None:
    response = get(make(secure=True), "/inc")
    assert set_cookies(response) == []
    assert memory.length() == 0


def test_a_trusted_proxy_says_https(make: Any) -> None:
    response = get(make(secure=True, trust_proxy=True), "/inc", **{"x-forwarded-proto": "https"})
    assert "Secure" in set_cookies(response)[0]


def test_secure_auto_follows_the_scheme(make: Any) -> None:
    app = make(secure="auto")
    assert "Secure" not in set_cookies(get(app, "/inc"))[0]
    assert "Secure" in set_cookies(browse(app, "/inc", base="https://testserver")[0])[0]


def test_the_default_cookie_is_httponly_lax_and_a_browser_session_cookie(make: Any) -> None:
    (header,) = set_cookies(get(make(), "/inc"))
    assert header.split("; ")[1:] == ["Path=/", "HttpOnly", "SameSite=Lax"]


# -- hostile cookies --------------------------------------------------------------

VICTIM = "K2VpIjSGfMPuVDD9jRpXblbGBkTjR1Uo"
HOSTILE = {
    "garbage": "connect.sid=garbage",
    "no signature": "connect.sid=s%3A" + VICTIM,
    "tampered signature": cookie(VICTIM)[:-4] + "AAAA",
    "tampered sid": cookie(VICTIM).replace("K2Vp", "K2Vq"),
    "forged with another secret": cookie(VICTIM, "another secret"),
    "unsigned known sid": "connect.sid=" + VICTIM,
    "10 KB": "connect.sid=s%3A" + "a" * 10240 + ".sig",
    "bad percent escapes": "connect.sid=s%3A%ff%fe.%c3",
    "signed empty sid": cookie(""),
    "signed huge sid": cookie("x" * 2000),
    "signed group index": cookie(GROUP_PREFIX + "user:1"),
}


@pytest.mark.parametrize("header", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_cookie_gives_a_fresh_session_without_a_lookup(
    make: Any, store: SpyStore, memory: MemoryStore, header: str
) -> None:
    memory.set(VICTIM, {"user": "victim"})
    memory.set(GROUP_PREFIX + "user:1", {"members": [VICTIM]})
    response = get(make(), "/inc", cookie=header)
    assert response.text == "1"
    assert "get" not in store.ops()
    assert sid_of(response) not in {VICTIM, "", GROUP_PREFIX + "user:1"}
    assert memory.get(VICTIM) == {"user": "victim"}


def test_a_validly_signed_unknown_sid_is_never_adopted(make: Any, memory: MemoryStore) -> None:
    response = get(make(), "/inc", cookie=cookie("chosen-by-client"))
    assert sid_of(response) != "chosen-by-client"
    assert memory.get("chosen-by-client") is None


def test_of_many_cookies_of_the_name_the_first_valid_one_counts(make: Any, memory: MemoryStore) -> None:
    """Behaviour changed (issue 11): only the first four values of the name are verified."""
    memory.set("sid-one", {"n": 1})
    memory.set("sid-two", {"n": 2})
    many = "; ".join(["connect.sid=garbage"] * 2 + [cookie("sid-two"), cookie("sid-one")])
    assert json.loads(get(make(), "/read", cookie=many).text)["data"] == {"n": 2}
    late = "; ".join(["connect.sid=garbage"] * 50 + [cookie("sid-two")])
    assert json.loads(get(make(), "/read", cookie=late).text)["data"] == {}


# -- errors -----------------------------------------------------------------------


def test_a_sync_store_is_refused_naming_the_async_twin() -> None:
    with pytest.raises(TypeError, match=r"is a sync store; storekit\.asgi\.SessionMiddleware needs an async"):
        SessionMiddleware(demo, MemoryStore(), secret=SECRET)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AsyncMemoryStore, AsyncClusterStore or AsyncRedisStore"):
        SessionMiddleware(demo, MemoryStore(), secret=SECRET)  # type: ignore[arg-type]


def test_a_bad_option_is_refused_as_by_the_wsgi_middleware() -> None:
    with pytest.raises(ValueError, match="max_age must be a positive number of seconds, or None"):
        SessionMiddleware(demo, AsyncMemoryStore(), secret=SECRET, max_age=-5)


def test_the_options_are_the_wsgi_middlewares() -> None:
    asgi = inspect.signature(SessionMiddleware).parameters
    wsgi = inspect.signature(WSGISessionMiddleware).parameters
    assert list(asgi) == list(wsgi)
    for name in list(asgi)[2:]:
        assert (asgi[name].kind, asgi[name].default) == (wsgi[name].kind, wsgi[name].default)


def test_a_store_failure_on_load_is_a_503_and_a_log_line(
    make: Any, store: SpyStore, memory: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Behaviour changed (issue 11): an outage is a 503, raised where the app first uses the session."""
    memory.set("sid-one", {"n": 1})
    store.fail.add("get")
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        response = get(make(), "/inc", cookie=cookie("sid-one"))
    assert (response.status_code, response.text) == (503, "Service Unavailable\n")
    assert "could not load session" in caplog.text
    assert "the backend at 127.0.0.1:1 is down" in caplog.text
    assert memory.get("sid-one") == {"n": 1}


def test_a_store_failure_on_save_is_a_500_and_the_apps_response_is_discarded(
    make: Any, store: SpyStore, memory: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.fail.add("set")
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        response = get(make(), "/stream")
    assert (response.status_code, response.text) == (500, "Internal Server Error\n")
    assert set_cookies(response) == []
    assert "could not save session" in caplog.text
    assert memory.length() == 0


def test_a_stored_record_that_is_not_a_session_is_a_500_not_an_empty_session(
    make: Any, memory: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    memory.set("sid-odd", {"storekit.groups": "not a map"})
    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        response = get(make(), "/read", cookie=cookie("sid-odd"))
    assert response.status_code == 500
    assert "storekit.groups" in caplog.text


def test_a_value_that_is_not_json_is_a_500_naming_the_key(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session_of(scope)["when"] = {1, 2}
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with caplog.at_level(logging.ERROR, logger="storekit.session"):
        response = get(make(app), "/")
    assert response.status_code == 500
    assert "when" in caplog.text


# -- websockets -------------------------------------------------------------------


@pytest.fixture
def client(make: Any) -> Iterator[Any]:
    testclient = pytest.importorskip("starlette.testclient")
    with testclient.TestClient(make()) as started:
        yield started


def test_a_websocket_reads_the_session_of_its_http_cookie(client: Any, memory: MemoryStore) -> None:
    assert client.get("/inc").text == "1"
    assert client.get("/inc").text == "2"
    with client.websocket_connect("/ws") as socket:
        reply = socket.receive_json()
    assert reply["data"] == {"n": 2}
    assert (reply["new"], reply["kind"]) == (False, "WebSocketSession")


def test_a_websocket_session_is_read_only_and_nothing_is_saved(
    client: Any, memory: MemoryStore, store: SpyStore
) -> None:
    client.get("/inc")
    before = store.ops()
    with client.websocket_connect("/ws") as socket:
        reply = socket.receive_json()
    assert "a websocket's session is read-only" in reply["refused"]
    assert store.ops()[len(before) :] == ["get"]
    assert "from_socket" not in json.loads(client.get("/read").text)["data"]


def test_a_websocket_without_a_cookie_gets_an_empty_new_session(client: Any) -> None:
    with client.websocket_connect("/ws") as socket:
        reply = socket.receive_json()
    assert (reply["data"], reply["new"]) == ({}, True)


def test_a_websocket_whose_store_fails_is_refused_with_a_503(
    make: Any, store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Behaviour changed (issue 11): refused where the app first uses the session, with 503;
    after the accept, closed with 1011; a socket that never uses it is served."""
    testclient = pytest.importorskip("starlette.testclient")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await demo(scope, receive, send)
            return
        await receive()
        if scope["path"] == "/early":
            session_of(scope).get("n")
        await send({"type": "websocket.accept"})
        if scope["path"] == "/late":
            session_of(scope).get("n")
        await send({"type": "websocket.send", "text": "served"})
        await send({"type": "websocket.close", "code": 1000})

    with testclient.TestClient(make(app)) as client:
        client.get("/inc")
        store.fail.add("get")
        with (
            caplog.at_level(logging.ERROR, logger="storekit.session"),
            pytest.raises(testclient.WebSocketDenialResponse) as denied,
            client.websocket_connect("/early"),
        ):
            pass
        assert denied.value.status_code == 503
        assert "could not load session" in caplog.text
        with (
            client.websocket_connect("/late") as socket,
            pytest.raises(testclient.WebSocketDisconnect) as closed,
        ):
            socket.receive_text()
        assert closed.value.code == 1011
        with client.websocket_connect("/never") as socket:
            assert socket.receive_text() == "served"


def test_a_websocket_session_can_be_reloaded_and_destroyed(make: Any, memory: MemoryStore) -> None:
    testclient = pytest.importorskip("starlette.testclient")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await demo(scope, receive, send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        session = session_of(scope)
        await session.areload()
        user = session["user"]
        await session.adestroy()
        await send({"type": "websocket.send", "text": user})
        await send({"type": "websocket.close", "code": 1000})

    with testclient.TestClient(make(app)) as browser:
        sid = sid_of(browser.get("/login?user=ada"))
        with browser.websocket_connect("/ws") as socket:
            assert socket.receive_text() == "ada"
        assert memory.get(sid) is None


def test_a_websocket_that_changes_its_session_in_place_is_warned_of(
    make: Any, memory: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    testclient = pytest.importorskip("starlette.testclient")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            session_of(scope)["tags"] = []
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            session_of(scope)["tags"].append("from the socket")  # in place: not caught, not saved
            await send({"type": "websocket.close", "code": 1000})

    browser = testclient.TestClient(make(app))
    sid = sid_of(browser.get("/"))
    with caplog.at_level(logging.WARNING, logger="storekit.session"):
        with browser.websocket_connect("/ws"):
            pass
        deadline = time.monotonic() + 5
        while "the change was not saved" not in caplog.text:
            assert time.monotonic() < deadline, f"no warning within 5s: {caplog.text!r}"
            time.sleep(0.01)
    assert memory.get(sid)["tags"] == []  # type: ignore[index]


# -- what it imports ----------------------------------------------------------------


def test_importing_storekit_asgi_loads_no_framework_and_no_store() -> None:
    probe = (
        "import sys, storekit.asgi; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'fastapi', 'httpx', 'anyio') or m.startswith('storekit.reference')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- the docs ---------------------------------------------------------------------


def test_the_examples_in_docs_asgi_md_run() -> None:
    text = (Path(__file__).parent.parent / "docs" / "asgi.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/asgi.md has no python examples"
    namespace: dict[str, Any] = {"__name__": "docs_asgi"}
    for block in blocks:
        exec(compile(block, "docs/asgi.md", "exec"), namespace)
