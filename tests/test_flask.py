"""storekit.flask: Flask sessions in a conforming store, through Flask's own test client."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from storekit.codec import parse_expires  # noqa: E402
from storekit.cookie import sign  # noqa: E402
from storekit.flask import StoreSessionInterface  # noqa: E402
from storekit.reference import MemoryStore, cluster  # noqa: E402

SECRET = "test-secret"


@contextlib.contextmanager
def cluster_store() -> Iterator[Any]:
    if cluster.master._server is not None and cluster.master._server.running:
        yield cluster.ClusterStore()  # a cluster server already runs in this process
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(cluster.ENV_SOCKET, raising=False)
        patch.delenv(cluster.ENV_KEY, raising=False)
        with cluster.serving():
            yield cluster.ClusterStore()


@contextlib.contextmanager
def redis_store() -> Iterator[Any]:
    redis_module = pytest.importorskip("storekit.reference.redis")
    from storekit.testing.redis_server import RedisServer

    with RedisServer() as server:
        store = redis_module.RedisStore(server.url)
        yield store
        store.close()


@pytest.fixture(params=["memory", "cluster", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    with cluster_store() if request.param == "cluster" else redis_store() as store:
        yield store


def make_app(store: Any, **config: Any) -> Any:
    app = flask.Flask(__name__)
    app.secret_key = SECRET
    app.config.update(config)
    app.session_interface = StoreSessionInterface(store)

    @app.get("/read")
    def read() -> Any:
        return {"n": flask.session.get("n")}

    @app.get("/count")
    def count() -> Any:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return {"n": flask.session["n"]}

    @app.get("/append")
    def append() -> Any:
        flask.session.setdefault("items", [])
        flask.session["items"].append(len(flask.session["items"]))  # a nested change
        return {"items": flask.session["items"]}

    @app.get("/login")
    def login() -> Any:
        flask.session.regenerate()  # type: ignore[attr-defined]
        flask.session["user"] = "ada"
        flask.session.permanent = True
        return {"user": "ada"}

    @app.get("/logout")
    def logout() -> Any:
        flask.session.clear()
        return {}

    @app.get("/nothing")
    def nothing() -> Any:
        return {}

    @app.get("/fail")
    def fail() -> Any:
        flask.session["n"] = 99
        return {}, 500

    return app


def sid_of(client: Any, app: Any) -> str | None:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    if cookie is None:
        return None
    value = cookie.value.replace("%3A", ":").replace("%2B", "+").replace("%2F", "/")
    assert value.startswith("s:")
    return str(value[2:].rpartition(".")[0])


def test_a_session_persists_in_the_store_across_requests(store: Any) -> None:
    app = make_app(store)
    client = app.test_client()
    assert client.get("/count").json == {"n": 1}
    assert client.get("/count").json == {"n": 2}
    sid = sid_of(client, app)
    assert sid is not None
    record = store.get(sid)
    assert record["n"] == 2
    assert parse_expires(record["cookie"]["expires"]) > time.time() + 30 * 86400  # 31 days by default


def test_nested_changes_are_saved_without_setting_modified(store: Any) -> None:
    client = make_app(store).test_client()
    client.get("/append")
    assert client.get("/append").json == {"items": [0, 1]}


def test_an_untouched_empty_session_is_neither_saved_nor_sent(store: Any) -> None:
    app = make_app(store)
    client = app.test_client()
    response = client.get("/nothing")
    assert "Set-Cookie" not in response.headers
    response = client.get("/read")
    assert "Set-Cookie" not in response.headers
    assert "Cookie" in response.headers["Vary"]
    if hasattr(store, "length"):
        assert store.length() == 0


def test_the_cookie_is_signed_and_a_forged_one_is_ignored(store: Any) -> None:
    app = make_app(store)
    client = app.test_client()
    client.get("/count")
    sid = sid_of(client, app)
    assert sid is not None
    forged = sign(sid, b"another secret")
    client.set_cookie("session", forged)
    assert client.get("/read").json == {"n": None}


def test_an_unknown_sid_is_never_adopted(store: Any) -> None:
    app = make_app(store)
    client = app.test_client()
    chosen = "attacker-chosen-sid-0123456789"
    client.set_cookie("session", sign(chosen, SECRET.encode()))
    client.get("/count")
    assert sid_of(client, app) != chosen
    assert store.get(chosen) is None


def test_regenerate_gives_a_new_sid_and_destroys_the_old_record(store: Any) -> None:
    app = make_app(store)
    client = app.test_client()
    client.get("/count")
    before = sid_of(client, app)
    assert before is not None
    client.get("/login")
    after = sid_of(client, app)
    assert after is not None
    assert after != before
    assert store.get(before) is None
    assert store.get(after)["user"] == "ada"
    assert client.get("/read").json == {"n": None}  # the data was dropped, as under WSGI
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.expires is not None


def test_clear_destroys_the_session_and_deletes_the_cookie(store: Any) -> None:
    app = make_app(store)
    client = app.test_client()
    client.get("/count")
    sid = sid_of(client, app)
    assert sid is not None
    response = client.get("/logout")
    assert "Set-Cookie" in response.headers
    assert store.get(sid) is None
    assert client.get_cookie("session") is None


def test_nothing_is_saved_for_a_server_error(store: Any) -> None:
    app = make_app(store)
    client = app.test_client()
    client.get("/count")
    client.get("/fail")
    assert client.get("/read").json == {"n": 1}


def test_the_store_expires_the_session_with_the_lifetime(store: Any) -> None:
    app = make_app(store, PERMANENT_SESSION_LIFETIME=timedelta(seconds=1))
    client = app.test_client()
    client.get("/count")
    sid = sid_of(client, app)
    assert sid is not None
    deadline = time.time() + 5
    while store.get(sid) is not None:
        assert time.time() < deadline, "the store kept the session past its expiry"
        time.sleep(0.1)
    assert client.get("/read").json == {"n": None}


def test_a_read_renews_the_expiry_with_touch() -> None:
    now = [1_000_000.0]
    store = MemoryStore(clock=lambda: now[0])
    app = make_app(store, PERMANENT_SESSION_LIFETIME=timedelta(seconds=100))
    app.session_interface = StoreSessionInterface(store, clock=lambda: now[0])
    client = app.test_client()
    client.get("/count")
    sid = sid_of(client, app)
    assert sid is not None
    now[0] += 80
    client.get("/read")
    now[0] += 80
    assert client.get("/read").json == {"n": 1}  # 160 s after the write, 80 after the touch


def test_secret_key_fallbacks_still_verify_old_cookies(store: Any) -> None:
    app = make_app(store)
    client = app.test_client()
    client.get("/count")
    app.secret_key = "new-secret"
    app.config["SECRET_KEY_FALLBACKS"] = [SECRET]
    assert client.get("/read").json == {"n": 1}


def test_without_a_secret_key_flask_says_to_set_one(store: Any) -> None:
    app = make_app(store)
    app.secret_key = None
    response = app.test_client().get("/count")
    assert response.status_code == 500


def test_an_async_store_is_refused_with_a_reason() -> None:
    from storekit.reference import AsyncMemoryStore

    with pytest.raises(TypeError, match="is an async store; Flask needs a sync store"):
        StoreSessionInterface(AsyncMemoryStore())  # type: ignore[arg-type]


def test_the_setup_in_docs_frameworks_md_works() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "frameworks.md").read_text()
    code = text.split("<!-- example: flask -->\n```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 7
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(code, "docs/frameworks.md", "exec"), namespace)
    app = namespace["app"]

    @app.get("/")
    def index() -> Any:
        flask.session["visits"] = flask.session.get("visits", 0) + 1
        return {"visits": flask.session["visits"]}

    client = app.test_client()
    client.get("/")
    assert client.get("/").json == {"visits": 2}


def test_the_login_in_docs_frameworks_md_regenerates_and_the_logout_is_final() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "frameworks.md").read_text()
    setup = text.split("<!-- example: flask -->\n```python\n", 1)[1].split("```", 1)[0]
    views = text.split("<!-- example: flask-login -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(setup + views, "docs/frameworks.md", "exec"), namespace)
    app = namespace["app"]

    @app.get("/whoami")
    def whoami() -> str:
        return str(flask.session.get("user", "nobody"))

    @app.get("/plant")
    def plant() -> str:
        flask.session["attacker"] = True
        return "planted"

    attacker = app.test_client()
    attacker.get("/plant")
    planted = attacker.get_cookie("session")
    assert planted is not None
    victim = app.test_client()
    victim.set_cookie("session", planted.value)
    victim.post("/login")
    assert victim.get_cookie("session").value != planted.value  # type: ignore[union-attr]
    assert attacker.get("/whoami").text == "nobody"  # the planted session no longer logs in as ada
    assert victim.get("/whoami").text == "ada"
    victim.post("/logout")
    assert victim.get("/whoami").text == "nobody"


class TouchCounter(MemoryStore):
    """Counts the touches, a renew at load (one round trip for a read and its touch) included."""

    def __init__(self) -> None:
        super().__init__()
        self.touches = 0

    def touch(self, sid: str, session: dict[str, Any]) -> None:
        self.touches += 1
        super().touch(sid, session)

    def renew(self, sid: str, session: dict[str, Any]) -> Any:
        self.touches += 1
        return super().renew(sid, session)


def test_the_stored_cookie_leaves_out_what_express_session_leaves_out() -> None:
    """One writer (codec.cookie_json): no null domain or sameSite, no secure: false."""
    store = MemoryStore()
    app = make_app(store)
    client = app.test_client()
    client.get("/count")
    sid = sid_of(client, app)
    assert sid is not None
    assert list(store.get(sid)["cookie"]) == ["originalMaxAge", "expires", "httpOnly", "path"]
    strict = make_app(store, SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_DOMAIN="example.org")
    client = strict.test_client()
    client.get("/count", base_url="http://www.example.org")
    (record,) = [r for s, r in store.all().items() if s != sid]
    assert (record["cookie"]["sameSite"], record["cookie"]["domain"]) == ("strict", "example.org")


def test_regenerate_can_keep_the_data(store: Any) -> None:
    app = make_app(store)

    @app.get("/promote")
    def promote() -> Any:
        flask.session.regenerate(keep_data=True)  # type: ignore[attr-defined]
        return {}

    client = app.test_client()
    client.get("/count")
    before = sid_of(client, app)
    client.get("/promote")
    assert sid_of(client, app) != before
    assert store.get(before) is None
    assert client.get("/read").json == {"n": 1}


def test_a_session_that_is_not_permanent_has_a_browser_session_cookie_and_a_stored_expiry() -> None:
    store = MemoryStore()
    app = make_app(store, PERMANENT_SESSION_LIFETIME=timedelta(seconds=600))
    client = app.test_client()
    response = client.get("/count")
    (header,) = response.headers.getlist("Set-Cookie")
    assert "Expires" not in header
    assert "Max-Age" not in header
    sid = sid_of(client, app)
    assert sid is not None
    left = parse_expires(store.get(sid)["cookie"]["expires"]) - time.time()
    assert 590 < left <= 600
    assert "Set-Cookie" not in client.get("/count").headers  # the browser's copy is still good


def test_a_permanent_session_is_refreshed_on_each_request_unless_configured_not_to() -> None:
    store = TouchCounter()
    app = make_app(store)
    client = app.test_client()
    client.get("/login")
    response = client.get("/read")
    assert "Expires=" in response.headers["Set-Cookie"]
    assert store.touches == 1
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    response = client.get("/read")
    assert "Set-Cookie" not in response.headers
    assert store.touches == 1


def test_partitioned_is_written_on_the_cookie() -> None:
    app = make_app(MemoryStore(), SESSION_COOKIE_PARTITIONED=True, SESSION_COOKIE_SECURE=True)
    response = app.test_client().get("/count", base_url="https://localhost")
    assert response.headers["Set-Cookie"].endswith("; Secure; Partitioned")


def test_a_server_error_after_clear_keeps_the_session(store: Any) -> None:
    app = make_app(store)

    @app.get("/clear-and-fail")
    def clear_and_fail() -> Any:
        flask.session.clear()
        return {}, 500

    client = app.test_client()
    client.get("/count")
    client.get("/clear-and-fail")
    assert client.get("/read").json == {"n": 1}
