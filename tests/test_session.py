"""The session logic without a web server: signing, cookies, options, decisions."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from storekit.cookie import (
    check_secrets,
    cookie_values,
    delete_cookie_header,
    generate_sid,
    set_cookie_header,
    sign,
    signed_sids,
    unsign,
)
from storekit.groups import GROUPS_KEY, groups_due
from storekit.options import SessionConfig, SessionCookie, request_is_secure
from storekit.reference import MemoryStore
from storekit.session import Session, SessionNotFound, decide

T0 = 1_795_341_600.0  # 2026-11-22T10:00:00Z


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def express_sign(sid: str, secret: bytes) -> str:
    """cookie-signature's sign(), computed here from its definition, with express-session's 's:'."""
    mac = hmac.new(secret, sid.encode("utf-8"), hashlib.sha256).digest()
    return "s:" + sid + "." + base64.b64encode(mac).decode("ascii").rstrip("=")


# -- signatures ------------------------------------------------------------


def test_sign_matches_cookie_signature_published_vectors() -> None:
    """The vectors in cookie-signature's own tests."""
    assert sign("hello", b"tobiiscool") == "s:hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
    assert sign("hello", bytes.fromhex("A0ABBC0C")) == "s:hello.hIvljrKw5oOZtHHSq5u+MlL27cgnPKX77y7F+x5r1to"


@pytest.mark.parametrize(
    "sid",
    ["a", "abc", "a9Kx3-_zPq", "x" * 32, "héllo", "a.b.c", pytest.param(generate_sid(), id="generated")],
)
@pytest.mark.parametrize("secret", [b"k", b"keyboard cat", "sécret".encode()])
def test_sign_is_hmac_sha256_in_unpadded_base64(sid: str, secret: bytes) -> None:
    signed = sign(sid, secret)
    assert signed == express_sign(sid, secret)
    assert not signed.endswith("=")
    assert unsign(signed, [secret]) == sid


def test_unsign_rejects_what_cookie_signature_rejects() -> None:
    key = b"actual sekrit password"
    good = sign("real data", key)
    assert unsign(good, [key]) == "real data"
    for bad in [
        "fake unsigned data",
        "s:fake unsigned data",
        "s:garbage" + good[2:],
        "s:garbage." + good[2:],
        good + ".garbage",
        good + "garbage",
        good[2:],  # no 's:' prefix
        "s:",
        "s:.",
        good[:-1] + "é",
    ]:
        assert unsign(bad, [key]) is None, bad
    assert unsign(good, [b"luna"]) is None


def test_unsign_accepts_any_secret_of_the_list() -> None:
    old, new = b"old secret", b"new secret"
    assert unsign(sign("sid1", old), [new, old]) == "sid1"
    assert unsign(sign("sid1", new), [new, old]) == "sid1"
    assert unsign(sign("sid1", old), [new]) is None


def test_generated_sids_are_32_url_safe_characters_and_distinct() -> None:
    sids = {generate_sid() for _ in range(1000)}
    assert len(sids) == 1000
    assert all(len(sid) == 32 and sid.replace("-", "").replace("_", "").isalnum() for sid in sids)


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        ("", "secret is empty"),
        ([], "secret list is empty"),
        (["ok", ""], "secret[1] is empty"),
        (3, "got int"),
    ],
)
def test_a_bad_secret_is_refused_with_the_fix(secret: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match="secret") as info:
        check_secrets(secret)
    assert fragment in str(info.value)


# -- the Cookie header -----------------------------------------------------


def test_cookie_values_returns_every_value_of_the_name_in_order() -> None:
    header = 'a=1; connect.sid=first; b; connect.sid="second" ;connect.sid=s%3Athird; connect.sidx=no'
    assert cookie_values(header, "connect.sid") == ["first", "second", "s:third"]
    assert cookie_values(None, "connect.sid") == []
    assert cookie_values("", "connect.sid") == []


def test_cookie_values_keeps_bad_percent_escapes_and_odd_bytes_as_sent() -> None:
    assert cookie_values("n=%ff%fe", "n") == ["%ff%fe"]
    assert cookie_values("n=\xff\xfe\x00", "n") == ["\xff\xfe\x00"]
    assert cookie_values("n=%E2%82%AC", "n") == ["€"]


# -- Set-Cookie ------------------------------------------------------------


def test_set_cookie_url_encodes_the_value_as_encode_uri_component() -> None:
    value = sign("a9Kx3-_zPq", b"keyboard cat")  # node: encodeURIComponent of the same value
    header = set_cookie_header(
        "connect.sid", value, expires=None, now=T0, path="/", domain=None,
        secure=False, http_only=True, same_site=None,
    )  # fmt: skip
    assert (
        header == "connect.sid=s%3Aa9Kx3-_zPq.AJZj7lu8QHCcJKmEjoxsA9HUyPnNpyjy7SdbxgDprDE; Path=/; HttpOnly"
    )
    odd = set_cookie_header(
        "n", "s:h\xe9llo.a+b/c=", expires=None, now=T0, path="/", domain=None,
        secure=False, http_only=False, same_site=None,
    )  # fmt: skip
    assert odd == "n=s%3Ah%C3%A9llo.a%2Bb%2Fc%3D; Path=/"


def test_set_cookie_with_expiry_and_every_flag() -> None:
    header = set_cookie_header(
        "sid", "v", expires=T0 + 3600, now=T0, path="/app", domain="example.org",
        secure=True, http_only=True, same_site="strict",
    )  # fmt: skip
    assert header == (
        "sid=v; Max-Age=3600; Domain=example.org; Path=/app; Expires=Sun, 22 Nov 2026 11:00:00 GMT; "
        "HttpOnly; Secure; SameSite=Strict"
    )


def test_delete_cookie_keeps_path_and_domain() -> None:
    header = delete_cookie_header(
        "sid", path="/app", domain="example.org", secure=False, http_only=True, same_site="lax"
    )
    assert header == (
        "sid=; Max-Age=0; Domain=example.org; Path=/app; Expires=Thu, 01 Jan 1970 00:00:00 GMT; "
        "HttpOnly; SameSite=Lax"
    )


# -- options -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_age": -5}, "max_age must be a positive number of seconds, or None (a browser-session"),
        ({"max_age": 0}, "got 0"),
        ({"max_age": True}, "max_age must be a positive number of seconds, or None"),
        ({"max_age": float("nan")}, "got nan"),
        ({"max_age": "3600"}, "got '3600'"),
        ({"secret": ""}, "secret is empty"),
        ({"cookie_name": "my cookie"}, "cookie name must be a non-empty token"),
        ({"cookie_name": ""}, "cookie name"),
        ({"same_site": "loose"}, "same_site must be 'lax', 'strict', 'none' or None, got 'loose'"),
        ({"same_site": "none"}, "pass secure=True"),
        ({"path": "app"}, "must start with '/'"),
        ({"path": "/a;b"}, "without spaces or ';'"),
        ({"domain": "a b"}, "cookie domain"),
        ({"rolling": "yes"}, "rolling must be True or False, got str 'yes'"),
        ({"secure": "always"}, "secure must be True or False"),
        ({"group_ttl": 0}, "group_ttl"),
    ],
)
def test_bad_options_are_refused_with_the_value_and_the_fix(options: dict[str, Any], fragment: str) -> None:
    kwargs: dict[str, Any] = {"secret": "s3cret", **options}
    with pytest.raises(ValueError) as info:
        SessionConfig(**kwargs)
    assert fragment in str(info.value)


def test_options_have_secure_defaults() -> None:
    config = SessionConfig(secret="s3cret")
    assert (config.http_only, config.secure, config.same_site, config.path) == (True, False, "lax", "/")
    assert (config.rolling, config.resave, config.save_uninitialized, config.always_set) == (False,) * 4
    assert config.cookie_name == "connect.sid"
    assert "s3cret" not in repr(config)


def test_secure_auto_follows_the_request() -> None:
    config = SessionConfig(secret="k", secure="auto", same_site="none")
    assert config.cookie_flags(True) == (True, "none")
    assert config.cookie_flags(False) == (False, "lax")


@pytest.mark.parametrize(
    ("scheme", "forwarded", "trust", "expected"),
    [
        ("https", None, False, True),
        ("http", "https", False, False),
        ("http", "https", True, True),
        ("http", "HTTPS , http", True, True),
        ("http", "http, https", True, False),
        ("http", "", True, False),
        ("http", None, True, False),
    ],
)
def test_request_is_secure(scheme: str, forwarded: str | None, trust: bool, expected: bool) -> None:
    assert request_is_secure(scheme, forwarded, trust_proxy=trust) is expected


# -- the cookie in the session -----------------------------------------------


def test_cookie_json_is_express_sessions_shape() -> None:
    clock = Clock()
    config = SessionConfig(secret="k", max_age=3600, clock=clock)
    cookie = SessionCookie(3600.0, None, clock)
    cookie.reset()
    assert cookie.to_json(config, False) == {
        "originalMaxAge": 3600000,
        "expires": "2026-11-22T11:00:00.000Z",
        "httpOnly": True,
        "path": "/",
        "sameSite": "lax",
    }
    assert list(cookie.to_json(config, False)) == [
        "originalMaxAge",
        "expires",
        "httpOnly",
        "path",
        "sameSite",
    ]
    full = SessionConfig(secret="k", secure=True, domain="example.org", same_site=None, clock=clock)
    assert SessionCookie(None, None, clock).to_json(full, True) == {
        "originalMaxAge": None,
        "expires": None,
        "secure": True,
        "httpOnly": True,
        "domain": "example.org",
        "path": "/",
    }


def test_cookie_from_json_keeps_expiry_and_takes_flags_from_options() -> None:
    clock = Clock()
    config = SessionConfig(secret="k", clock=clock)
    node = {"originalMaxAge": 60000, "expires": "2026-11-22T10:01:00.000Z", "secure": True, "path": "/x"}
    cookie = SessionCookie.from_json(node, config)
    assert (cookie.original_max_age, cookie.expires) == (60.0, T0 + 60)
    assert cookie.max_age == 60.0
    assert cookie.to_json(config, False)["path"] == "/"
    assert SessionCookie.from_json(None, config).expires is None


@pytest.mark.parametrize("bad", [{"originalMaxAge": "1"}, {"originalMaxAge": -1}, {"expires": 5}, "x"])
def test_a_malformed_stored_cookie_is_an_error(bad: object) -> None:
    with pytest.raises(ValueError, match="cookie"):
        SessionCookie.from_json(bad, SessionConfig(secret="k"))


def test_setting_max_age_restarts_the_expiry() -> None:
    clock = Clock()
    cookie = SessionCookie(None, None, clock)
    cookie.max_age = 30
    assert (cookie.expires, cookie.changed) == (T0 + 30, True)
    with pytest.raises(ValueError, match="got -1"):
        cookie.max_age = -1


# -- the session object --------------------------------------------------------


def make(**options: Any) -> tuple[SessionConfig, MemoryStore, Clock]:
    clock = Clock()
    config = SessionConfig(secret="k", clock=clock, **options)
    return config, MemoryStore(clock=clock), clock


def loaded(config: SessionConfig, store: MemoryStore, data: dict[str, Any]) -> Session:
    session = Session.new(config, store)
    session.update(data)
    store.set(session.id, session.to_record(False))
    record = store.get(session.id)
    return Session.from_record(session.id, record, config, store)


def test_session_is_a_mapping_that_notes_access() -> None:
    config, store, _ = make()
    session = Session.new(config, store)
    before = session.accessed
    session["a"] = {"b": [1]}
    assert (before, session.accessed) == (False, True)
    assert dict(session) == {"a": {"b": [1]}}
    assert "a" in session
    assert len(session) == 1
    with pytest.raises(ValueError, match=r"reserved for the session's groups; use join_group\(\)"):
        session[GROUPS_KEY] = {}
    with pytest.raises(TypeError, match="session keys must be str"):
        session[1] = "x"  # type: ignore[index]


def test_nested_changes_count_as_modified() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"cart": [1]})
    assert not session.is_modified()
    assert not session.is_new
    session["cart"].append(2)
    assert session.is_modified()


def test_reading_only_does_not_modify() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"n": 1})
    assert session["n"] == 1
    assert session.get("x") is None
    assert not session.is_modified()
    assert session.is_saved()


def test_record_holds_data_cookie_and_groups() -> None:
    config, store, _ = make(max_age=60)
    session = Session.new(config, store)
    session["user"] = "ada"
    session.join_group("user:1")
    session.cookie.reset()
    record = session.to_record(False)
    assert record["user"] == "ada"
    assert record["cookie"]["originalMaxAge"] == 60000
    assert record[GROUPS_KEY] == {"user:1": 0.0}
    again = Session.from_record("sid1", record, config, store)
    assert dict(again) == {"user": "ada"}
    assert again.groups == {"user:1"}


def test_from_record_refuses_what_is_not_a_session() -> None:
    config, store, _ = make()
    with pytest.raises(ValueError, match="not a session"):
        Session.from_record("x", [1], config, store)
    with pytest.raises(ValueError, match=r"storekit\.groups"):
        Session.from_record("x", {GROUPS_KEY: ["a"]}, config, store)


def test_reload_of_a_vanished_session_raises_session_not_found() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"n": 1})
    store.destroy(session.id)
    with pytest.raises(SessionNotFound, match="no longer in the store") as info:
        session.reload()
    assert info.value.sid == session.id
    assert isinstance(info.value, LookupError)


def test_reload_takes_what_the_store_holds_now() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"n": 1})
    store.set(session.id, {**session.to_record(False), "n": 2})
    session.reload()
    assert session["n"] == 2
    assert not session.is_modified()


def test_regenerate_destroys_the_old_record_and_drops_the_data() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"n": 1})
    old = session.id
    session.regenerate()
    assert session.id != old
    assert store.get(old) is None
    assert dict(session) == {}
    assert session.is_new


def test_regenerate_can_keep_the_data() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"n": 1})
    session.join_group("g")
    session.regenerate(keep_data=True)
    assert dict(session) == {"n": 1}
    assert session.group_times == {"g": 0.0}
    assert session.is_modified()


def test_a_destroyed_session_refuses_writes() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"n": 1})
    session.destroy()
    assert store.get(session.id) is None
    assert dict(session) == {}
    with pytest.raises(RuntimeError, match=r"call regenerate\(\)"):
        session["n"] = 2
    session.regenerate()
    session["n"] = 2


def test_groups_due_when_the_index_would_end_too_soon() -> None:
    assert groups_due({"a": 0.0, "b": T0 + 100, "c": T0 + 1000}, expires=None, now=T0, ttl=400) == ["a", "b"]
    assert groups_due({"c": T0 + 1000}, expires=T0 + 2000, now=T0, ttl=400) == ["c"]


# -- decisions -------------------------------------------------------------------


def decision(session: Session, *, status: int = 200, secure: bool = False, had: bool = False,
             touch: bool = True) -> tuple[str | None, str | None, bool]:  # fmt: skip
    session.cookie.reset()
    result = decide(session, status=status, request_secure=secure, had_cookie=had, store_can_touch=touch)
    return result.store, result.cookie, result.vary


def test_a_new_untouched_session_is_neither_saved_nor_sent() -> None:
    config, store, _ = make()
    assert decision(Session.new(config, store)) == (None, None, False)


@pytest.mark.parametrize("option", ["save_uninitialized", "always_set"])
def test_a_new_untouched_session_is_saved_and_sent_when_asked(option: str) -> None:
    config, store, _ = make(**{option: True})
    assert decision(Session.new(config, store)) == ("set", "set", True)


def test_a_new_modified_session_is_saved_and_sent() -> None:
    config, store, _ = make()
    session = Session.new(config, store)
    session["a"] = 1
    assert decision(session) == ("set", "set", True)


def test_a_loaded_unmodified_session_is_touched_not_saved_nor_sent() -> None:
    config, store, _ = make(max_age=60)
    assert decision(loaded(config, store, {"a": 1})) == ("touch", None, False)
    assert decision(loaded(config, store, {"a": 1}), touch=False) == (None, None, False)


def test_resave_saves_an_unmodified_session_only_where_the_store_cannot_touch() -> None:
    """A touch of a session destroyed meanwhile creates nothing (touch.2); a set would bring it back."""
    config, store, _ = make(resave=True)
    assert decision(loaded(config, store, {"a": 1})) == ("touch", None, False)
    assert decision(loaded(config, store, {"a": 1}), touch=False) == ("set", None, False)


@pytest.mark.parametrize("option", ["rolling", "always_set"])
def test_rolling_sends_the_cookie_for_an_unmodified_session(option: str) -> None:
    config, store, _ = make(max_age=60, **{option: True})
    assert decision(loaded(config, store, {"a": 1})) == ("touch", "set", True)


def test_a_modified_session_is_sent_again_only_if_its_cookie_expires() -> None:
    config, store, _ = make(max_age=60)
    session = loaded(config, store, {"a": 1})
    session["a"] = 2
    assert decision(session) == ("set", "set", True)
    config, store, _ = make()  # browser-session cookie: the browser's copy is still good
    session = loaded(config, store, {"a": 1})
    session["a"] = 2
    assert decision(session) == ("set", None, True)


def test_a_destroyed_session_deletes_the_cookie_it_was_sent() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"a": 1})
    session.destroy()
    assert decision(session, had=True) == (None, "delete", True)
    assert decision(session, had=False) == (None, None, True)


def test_nothing_is_saved_on_a_5xx() -> None:
    config, store, _ = make(save_uninitialized=True)
    session = Session.new(config, store)
    session["a"] = 1
    assert decision(session, status=500) == (None, None, True)
    assert decision(Session.new(config, store), status=503) == (None, None, False)


def test_a_secure_cookie_is_not_sent_over_plain_http_and_a_new_session_not_saved() -> None:
    config, store, _ = make(secure=True)
    session = Session.new(config, store)
    session["a"] = 1
    assert decision(session, secure=False) == (None, None, True)
    assert decision(session, secure=True) == ("set", "set", True)


def test_an_explicit_save_of_a_new_session_sends_the_cookie_once_saved() -> None:
    config, store, _ = make()
    session = Session.new(config, store)
    session.save()
    assert store.get(session.id) is not None
    assert decision(session) == (None, "set", True)


def test_touch_sends_the_cookie_and_writes_the_new_expiry() -> None:
    config, store, clock = make(max_age=60)
    session = loaded(config, store, {"a": 1})
    clock.now += 30
    session.touch()
    assert session.cookie.expires == T0 + 90
    assert decision(session) == ("set", "set", True)


def test_a_regenerated_session_is_new() -> None:
    config, store, _ = make()
    session = loaded(config, store, {"a": 1})
    session.regenerate()
    assert decision(session, had=True) == (None, None, True)
    session["user"] = "ada"
    assert decision(session, had=True) == ("set", "set", True)


def test_signed_sids_keeps_only_verified_sids_a_store_can_keep_in_order() -> None:
    old, new = b"old secret", b"new secret"
    values = [
        "garbage",
        sign("abc", b"someone else's secret"),
        sign("x" * 2000, new),  # verified, but longer than any store keeps
        sign("second", old),
        "s:first.tampered",
        sign("third", new),
    ]
    assert list(signed_sids(values, (new, old))) == ["second", "third"]
    assert list(signed_sids(values, (new,))) == ["third"]
    assert list(signed_sids([], (new,))) == []
