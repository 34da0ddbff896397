"""storekit.flask beside Flask's own cookie session: the same steps, the same behaviour.

Each test runs one app twice, once on Flask's default ``SecureCookieSessionInterface``
and once on ``StoreSessionInterface``, and compares what a view and a browser see.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from flask.sessions import SecureCookieSessionInterface, SessionMixin  # noqa: E402
from markupsafe import Markup  # noqa: E402

from storekit.flask import StoreSessionInterface  # noqa: E402
from storekit.reference import MemoryStore  # noqa: E402

SEEN: dict[str, list[dict[str, Any]]] = {"flask": [], "storekit": []}


def _flags(session: SessionMixin) -> dict[str, Any]:
    return {"accessed": session.accessed, "modified": session.modified, "permanent": session.permanent}


class FlaskCookies(SecureCookieSessionInterface):
    def save_session(self, app: Any, session: Any, response: Any) -> None:
        SEEN["flask"].append(_flags(session))
        super().save_session(app, session, response)


class StorekitSessions(StoreSessionInterface):
    def save_session(self, app: Any, session: Any, response: Any) -> None:
        SEEN["storekit"].append(_flags(session))
        super().save_session(app, session, response)


Views = Callable[[Any], None]


def apps(views: Views) -> dict[str, tuple[Any, Any]]:
    """Two apps with the same views, one per session interface; each with a client and a store."""
    made: dict[str, tuple[Any, Any]] = {}
    for kind in ("flask", "storekit"):
        app = flask.Flask(f"fidelity_{kind}")
        app.secret_key = "fidelity-secret"
        store = MemoryStore()
        app.session_interface = FlaskCookies() if kind == "flask" else StorekitSessions(store)
        views(app)
        made[kind] = (app.test_client(), store)
    SEEN["flask"].clear()
    SEEN["storekit"].clear()
    return made


def both(made: dict[str, tuple[Any, Any]], path: str) -> dict[str, Any]:
    """GET ``path`` on both apps: each one's body, Vary, and whether it set or deleted the cookie."""
    seen = {}
    for kind, (client, _) in made.items():
        response = client.get(path)
        cookies = response.headers.getlist("Set-Cookie")
        seen[kind] = {
            "body": response.get_data(as_text=True),
            "vary": response.headers.get("Vary"),
            "cookie": None
            if not cookies
            else ("delete" if "Expires=Thu, 01 Jan 1970" in cookies[0] else "set"),
        }
    return seen


def sessions_in(store: MemoryStore) -> list[str]:
    """The sids of the sessions stored, without storekit's own records (logout markers, indexes)."""
    return sorted(sid for sid in store.all() if not sid.startswith("storekit."))


def same(made: dict[str, tuple[Any, Any]], path: str) -> dict[str, Any]:
    seen = both(made, path)
    assert seen["storekit"] == seen["flask"], path
    return seen["flask"]


def test_a_key_named_cookie_is_kept_as_by_flask() -> None:
    def views(app: Any) -> None:
        @app.get("/set")
        def set_() -> str:
            flask.session["cookie"] = "accepted"
            return "ok"

        @app.get("/get")
        def get() -> str:
            return repr(flask.session.get("cookie"))

    made = apps(views)
    same(made, "/set")
    assert same(made, "/get")["body"] == "'accepted'"
    (record,) = made["storekit"][1].all().values()
    assert record["storekit.key:cookie"] == "accepted"
    assert set(record["cookie"]) >= {"originalMaxAge", "expires", "httpOnly", "path"}  # express-session's


def test_accessed_is_set_only_when_the_view_used_the_session() -> None:
    def views(app: Any) -> None:
        @app.get("/write")
        def write() -> str:
            flask.session["n"] = 1
            return "ok"

        @app.get("/nothing")
        def nothing() -> str:
            return "ok"

        @app.get("/read")
        def read() -> str:
            return repr(flask.session.get("n"))

    made = apps(views)
    same(made, "/write")
    assert same(made, "/nothing")["vary"] is None
    assert same(made, "/read")["vary"] == "Cookie"
    assert [flags["accessed"] for flags in SEEN["storekit"]] == [True, False, True]
    assert SEEN["storekit"] == SEEN["flask"]


VALUES: dict[str, Any] = {
    "tuple": (1, "two", (3,)),
    "bytes": b"\x00\xffraw",
    "markup": Markup("<b>bold</b>"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "datetime": datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc),
    "tag-like dict": {" t": ["not", "a", "tuple"]},
    "nested": {"list": [(1, 2), b"b"], "plain": {"a": [1, None, True, 1.5, "x"]}},
}


@pytest.mark.parametrize("name", VALUES)
def test_a_tagged_value_comes_back_as_it_went_in(name: str) -> None:
    def views(app: Any) -> None:
        @app.get("/put")
        def put() -> str:
            flask.session["value"] = VALUES[name]
            return "ok"

        @app.get("/show")
        def show() -> str:
            value = flask.session["value"]
            return f"{type(value).__name__} {value!r}"

    made = apps(views)
    same(made, "/put")
    shown = same(made, "/show")["body"]
    assert shown == f"{type(VALUES[name]).__name__} {VALUES[name]!r}"


def test_plain_json_values_are_stored_as_plain_json() -> None:
    plain = {"n": 3, "items": [1, "a", None], "user": {"name": "ada", "roles": ["admin"]}}

    def views(app: Any) -> None:
        @app.get("/put")
        def put() -> str:
            flask.session.update(plain)
            flask.session["when"] = (1, 2)
            return "ok"

    made = apps(views)
    same(made, "/put")
    (record,) = made["storekit"][1].all().values()
    assert {key: record[key] for key in plain} == plain  # what an Express app sharing the store reads
    assert record["when"] == {" t": [1, 2]}  # Flask's own tag for a tuple, still JSON


def test_flashed_markup_renders_unescaped_and_categories_come_as_tuples() -> None:
    def views(app: Any) -> None:
        @app.get("/flash")
        def flash() -> str:
            flask.flash(Markup("<em>saved</em>"), "info")
            flask.flash("plain <text>")
            return "ok"

        @app.get("/show")
        def show() -> str:
            messages = flask.get_flashed_messages(with_categories=True)
            page = flask.render_template_string(
                "{% for c, m in messages %}{{ m }}|{% endfor %}", messages=messages
            )
            return f"{[type(m).__name__ for m in messages]} {page}"

    made = apps(views)
    same(made, "/flash")
    assert same(made, "/show")["body"] == "['tuple', 'tuple'] <em>saved</em>|plain &lt;text&gt;|"
    assert same(made, "/show")["body"] == "[] "


def test_the_flags_follow_flasks_and_clear_deletes_the_cookie() -> None:
    def views(app: Any) -> None:
        @app.get("/login")
        def login() -> str:
            flask.session["user"] = "ada"
            flask.session.permanent = True
            return "ok"

        @app.get("/look")
        def look() -> str:
            return f"{flask.session.permanent} {flask.session.modified}"

        @app.get("/nested")
        def nested() -> str:
            flask.session["user"] = "bob"
            return str(flask.session.modified)

        @app.get("/clear")
        def clear() -> str:
            flask.session.clear()
            return str(flask.session.modified)

        @app.get("/pop")
        def pop() -> str:
            flask.session.pop("user")
            flask.session.pop("_permanent")
            return "ok"

    made = apps(views)
    assert same(made, "/login")["cookie"] == "set"
    assert same(made, "/look")["body"] == "True False"  # a permanent session's cookie is refreshed
    assert same(made, "/nested")["body"] == "True"
    cleared = same(made, "/clear")
    assert (cleared["body"], cleared["cookie"], cleared["vary"]) == ("True", "delete", "Cookie")
    assert sessions_in(made["storekit"][1]) == []
    assert same(made, "/look")["body"] == "False False"
    same(made, "/login")
    assert same(made, "/pop")["cookie"] == "delete"  # modified to empty: both remove the cookie
    assert sessions_in(made["storekit"][1]) == []
    assert SEEN["storekit"] == SEEN["flask"]


USES: dict[str, Callable[[], object]] = {
    "get": lambda: flask.session.get("n"),
    "getitem": lambda: flask.session["n"],
    "setdefault": lambda: flask.session.setdefault("m", 1),
    "in": lambda: "n" in flask.session,
    "len": lambda: len(flask.session),
    "iter": lambda: list(flask.session),
    "setitem": lambda: flask.session.update(m=2),
    "pop": lambda: flask.session.pop("n", None),
    "permanent": lambda: flask.session.permanent,
}


@pytest.mark.parametrize("use", USES)
def test_every_use_of_the_session_varies_on_cookie_as_in_flask(use: str) -> None:
    def views(app: Any) -> None:
        @app.get("/seed")
        def seed() -> str:
            flask.session["n"] = 1
            return "ok"

        @app.get("/use")
        def use_() -> Any:
            USES[use]()
            return "ok", 200, {"Vary": "Accept-Encoding"}

    made = apps(views)
    same(made, "/seed")
    seen = both(made, "/use")  # the cookie may differ: Flask's holds the data, storekit's only the sid
    assert seen["storekit"]["vary"] == seen["flask"]["vary"] == "Accept-Encoding, Cookie"


def _attributes(header: str) -> set[str]:
    """The cookie's attribute names and values, without its value, Max-Age and the expiry's text."""
    parts = [part.strip() for part in header.split(";")[1:]]
    return {part.split("=")[0] if part.lower().startswith(("expires", "max-age")) else part for part in parts}


def test_the_cookie_carries_the_attributes_flasks_settings_ask_for() -> None:
    settings = {
        "SESSION_COOKIE_DOMAIN": "example.com",
        "SESSION_COOKIE_PATH": "/app",
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "SESSION_COOKIE_PARTITIONED": True,
    }

    def views(app: Any) -> None:
        app.config.update(settings)

        @app.get("/app/login")
        def login() -> str:
            flask.session["user"] = "ada"
            flask.session.permanent = True
            return "ok"

    made = apps(views)
    headers = {
        kind: client.get("/app/login", base_url="https://www.example.com").headers["Set-Cookie"]
        for kind, (client, _) in made.items()
    }
    assert _attributes(headers["storekit"]) - {"Max-Age"} == _attributes(headers["flask"])


def test_an_interface_with_its_own_serializer_uses_its_tags() -> None:
    from decimal import Decimal

    from flask.json.tag import JSONTag, TaggedJSONSerializer

    from storekit.flask import StoreSessionInterface
    from storekit.reference import MemoryStore

    class TagDecimal(JSONTag):
        __slots__ = ()
        key = " dec"

        def check(self, value: Any) -> bool:
            return isinstance(value, Decimal)

        def to_json(self, value: Any) -> Any:
            return str(value)

        def to_python(self, value: Any) -> Any:
            return Decimal(value)

    serializer = TaggedJSONSerializer()
    serializer.register(TagDecimal)

    class DecimalSessions(StoreSessionInterface):
        pass

    DecimalSessions.serializer = serializer
    store = MemoryStore()
    app = flask.Flask("decimals")
    app.secret_key = "s"
    app.session_interface = DecimalSessions(store)

    @app.get("/put")
    def put() -> str:
        flask.session["price"] = Decimal("1.10")
        return "ok"

    @app.get("/show")
    def show() -> str:
        return repr(flask.session["price"])

    client = app.test_client()
    client.get("/put")
    assert client.get("/show").text == "Decimal('1.10')"
    (record,) = store.all().values()
    assert record["price"] == {" dec": "1.10"}
