"""express-session + connect-redis (the real ones, in node) and storekit's SessionMiddleware +
RedisStore (under waitress) share one Redis, one secret and one cookie: a session either app
writes, the other reads and updates, both ways.

Needs node with express, express-session, connect-redis and redis on NODE_PATH (CI installs
them; see docs/interop.md) and redis-server.
"""

from __future__ import annotations

import http.cookiejar
import json
import select
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
import redis

from storekit.reference.redis import RedisStore
from storekit.testing.redis_server import RedisServer
from storekit.wsgi import SessionMiddleware, session_of

SECRET = "keyboard cat"
APP_JS = Path(__file__).parent / "js" / "express_redis_app.js"
NPM_PACKAGES = "express@4 express-session@1.18 connect-redis@7 redis@4"
START_TIMEOUT = 20.0


def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Debian: apt-get install nodejs npm); this test runs express-session"
    probe = subprocess.run(
        [
            "node",
            "-e",
            "for (const m of ['express','express-session','connect-redis','redis']) require.resolve(m)",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return (
            "express, express-session, connect-redis or redis is not installed for node: run "
            f"'npm install --prefix ~/.cache/storekit-node {NPM_PACKAGES}' and export "
            "NODE_PATH=~/.cache/storekit-node/node_modules"
        )
    return None


pytestmark = pytest.mark.skipif(_node_missing() is not None, reason=str(_node_missing()))


def python_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The Python twin of express_redis_app.js: /read, /set?k=v, /inc, /destroy."""
    session = session_of(environ)
    path = environ["PATH_INFO"]
    if path == "/set":
        session.update(dict(parse_qsl(environ.get("QUERY_STRING", ""))))
    elif path == "/inc":
        session["n"] = session.get("n", 0) + 1
        session["from"] = "python"
    elif path == "/destroy":
        session.destroy()
    body = {"id": session.id, "data": {k: v for k, v in session.items() if k != "cookie"}}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.fixture(scope="module")
def node_app(server: RedisServer) -> Iterator[tuple[str, dict[str, Any]]]:
    """The Express app on an ephemeral port: its base URL and the package versions it runs."""
    process = subprocess.Popen(
        ["node", str(APP_JS), server.url, SECRET],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        if not line:
            process.kill()
            raise RuntimeError(f"the Express app did not start: {process.communicate(timeout=10)[1][-2000:]}")
        hello = json.loads(line)
        base = f"http://127.0.0.1:{hello['port']}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # poll until it answers
            try:
                urllib.request.urlopen(base + "/read", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield base, hello
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def python_server(server: RedisServer) -> Iterator[str]:
    """storekit's middleware on RedisStore, served by waitress on an ephemeral port."""
    import waitress
    from waitress import wasyncore

    store = RedisStore(server.url)
    app = SessionMiddleware(python_app, store, secret=SECRET, max_age=3600)
    wsgi = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
    stop = threading.Event()

    def serve() -> None:  # waitress's run(), stoppable; closing from another thread races select()
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=wsgi._map, use_poll=True, count=1)
        wsgi.task_dispatcher.shutdown()
        wasyncore.close_all(wsgi._map)

    thread = threading.Thread(target=serve, daemon=True, name="waitress")
    thread.start()
    try:
        yield f"http://127.0.0.1:{wsgi.effective_port}"
    finally:
        stop.set()
        thread.join(timeout=10)
        store.close()


class Browser:
    """One cookie jar for both apps: a cookie is not tied to a port, so a browser sends the
    cookie 127.0.0.1 set to every port on 127.0.0.1, as it does here."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.set_cookies: list[str] = []

    def get(self, url: str) -> dict[str, Any]:
        with self.opener.open(url, timeout=10) as response:
            self.set_cookies += response.headers.get_all("Set-Cookie") or []
            return json.loads(response.read())  # type: ignore[no-any-return]

    @property
    def cookie(self) -> str:
        (cookie,) = [c for c in self.jar if c.name == "connect.sid"]
        return str(cookie.value)

    def sent_values(self) -> set[str]:
        return {header.split(";")[0].split("=", 1)[1] for header in self.set_cookies}


def sid_in(cookie: str) -> str:
    """The sid inside an express-session cookie value: s:<sid>.<signature>, URL-encoded."""
    value = unquote(cookie)
    assert value.startswith("s:"), value
    return value[2:].rsplit(".", 1)[0]


def test_the_node_app_runs_the_packages_we_claim(node_app: tuple[str, dict[str, Any]]) -> None:
    versions = node_app[1]["versions"]
    assert versions["express-session"].startswith("1.")
    assert int(versions["connect-redis"].split(".")[0]) >= 7
    assert versions["redis"].startswith("4.")


def test_a_session_express_wrote_is_read_and_updated_by_python_and_read_back_by_express(
    node_app: tuple[str, dict[str, Any]], python_server: str, server: RedisServer
) -> None:
    node, python, browser = node_app[0], python_server, Browser()
    first = browser.get(node + "/set?user=ada")
    sid = first["id"]
    assert sid_in(browser.cookie) == sid
    raw = redis.Redis.from_url(server.url)
    stored = json.loads(raw.get(f"sess:{sid}") or b"null")
    assert stored["user"] == "ada"
    # express-session sets expires = now + maxAge, then reads originalMaxAge back as
    # expires - now: a millisecond that ticks between the two makes it 3,599,999
    assert 3_599_000 <= stored["cookie"]["originalMaxAge"] <= 3_600_000
    assert 3_500_000 < raw.pttl(f"sess:{sid}") <= 3_600_000  # connect-redis: EX from cookie.expires

    assert browser.get(python + "/read") == {"id": sid, "data": {"user": "ada"}}
    assert browser.get(python + "/inc") == {"id": sid, "data": {"user": "ada", "n": 1, "from": "python"}}
    assert 3_500_000 < raw.pttl(f"sess:{sid}") <= 3_600_000  # RedisStore: PX from cookie.expires

    assert browser.get(node + "/read") == {"id": sid, "data": {"user": "ada", "n": 1, "from": "python"}}
    assert browser.get(node + "/inc")["data"] == {"user": "ada", "n": 1, "from": "node", "views": 1}
    assert browser.get(python + "/read")["data"] == {"user": "ada", "n": 1, "from": "node", "views": 1}
    assert browser.sent_values() == {browser.cookie}  # both apps set the very same cookie
    raw.close()


def test_a_session_python_wrote_is_read_and_updated_by_express_and_read_back_by_python(
    node_app: tuple[str, dict[str, Any]], python_server: str, server: RedisServer
) -> None:
    node, python, browser = node_app[0], python_server, Browser()
    first = browser.get(python + "/set?user=grace")
    sid = first["id"]
    assert sid_in(browser.cookie) == sid
    raw = redis.Redis.from_url(server.url)
    assert json.loads(raw.get(f"sess:{sid}") or b"null")["user"] == "grace"

    assert browser.get(node + "/read") == {"id": sid, "data": {"user": "grace"}}
    assert browser.get(node + "/inc") == {"id": sid, "data": {"user": "grace", "views": 1, "from": "node"}}
    assert browser.get(python + "/read") == {"id": sid, "data": {"user": "grace", "views": 1, "from": "node"}}
    assert browser.get(python + "/inc")["data"] == {"user": "grace", "views": 1, "from": "python", "n": 1}
    assert browser.get(node + "/read")["data"] == {"user": "grace", "views": 1, "from": "python", "n": 1}
    assert browser.sent_values() == {browser.cookie}
    raw.close()


def test_a_session_destroyed_by_either_app_is_gone_for_the_other(
    node_app: tuple[str, dict[str, Any]], python_server: str
) -> None:
    node, python = node_app[0], python_server
    for writer, destroyer in ((node, python), (python, node)):
        browser = Browser()
        sid = browser.get(writer + "/set?user=x")["id"]
        browser.get(destroyer + "/destroy")
        for reader in (node, python):
            answer = browser.get(reader + "/read")
            assert answer["data"] == {}, (writer, destroyer, reader)
            assert answer["id"] != sid


def test_the_cookie_python_signs_is_the_cookie_express_signs(
    node_app: tuple[str, dict[str, Any]], python_server: str
) -> None:
    """Both apps refresh the cookie of one session; the values are byte for byte the same."""
    node, python, browser = node_app[0], python_server, Browser()
    browser.get(node + "/set?user=ada")
    from_node = browser.set_cookies[-1]
    browser.get(python + "/inc")
    from_python = browser.set_cookies[-1]
    assert from_node.split(";")[0] == from_python.split(";")[0]
