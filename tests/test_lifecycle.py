"""storekit.lifecycle: the decisions every shell shares, as data, without a server or a store call."""

from __future__ import annotations

from typing import Any

import pytest

from storekit.cookie import set_cookie_header
from storekit.groups import GROUPS_KEY
from storekit.lifecycle import (
    ESCAPE,
    app_key,
    fingerprint,
    group_steps,
    plan,
    record_of,
    split_record,
    stored_key,
    vary_cookie,
    verified_sid,
)
from storekit.options import SessionConfig
from storekit.reference import MemoryStore
from storekit.request import end_request, open_session
from storekit.session import Session

T0 = 1_795_341_600.0  # 2026-11-22T10:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class RecordingStore(MemoryStore):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.calls: list[str] = []

    def get(self, sid: str) -> Any:
        self.calls.append("get")
        return super().get(sid)

    def set(self, sid: str, session: dict[str, Any]) -> None:
        self.calls.append("set")
        super().set(sid, session)


def make(**options: Any) -> tuple[SessionConfig, RecordingStore]:
    clock = Clock()
    return SessionConfig(secret="k", clock=clock, **options), RecordingStore(clock)


@pytest.mark.parametrize(
    "key", ["cookie", GROUPS_KEY, "user", "storekit.key:cookie", "storekit.key:", "cookies", ""]
)
def test_stored_keys_are_escaped_one_to_one(key: str) -> None:
    assert app_key(stored_key(key)) == key
    assert stored_key(key) not in {"cookie", GROUPS_KEY}


def test_a_key_named_cookie_is_stored_escaped_beside_express_sessions_cookie() -> None:
    record = record_of({"cookie": "mine", "n": 1}, {"originalMaxAge": None, "expires": None}, {"g": 5.0})
    assert record == {
        "cookie": {"originalMaxAge": None, "expires": None},
        ESCAPE + "cookie": "mine",
        "n": 1,
        GROUPS_KEY: {"g": 5.0},
    }
    assert split_record("sid", record) == ({"cookie": "mine", "n": 1}, record["cookie"], {"g": 5.0})


def test_encode_and_decode_apply_to_values_only() -> None:
    record = record_of({"t": 1}, {}, {}, encode=lambda value: [value])
    assert record == {"cookie": {}, "t": [1]}
    assert split_record("sid", record, decode=lambda value: value[0])[0] == {"t": 1}


def test_fingerprint_sees_nested_changes_and_groups() -> None:
    data: dict[str, Any] = {"cart": [1]}
    before = fingerprint(data, {})
    data["cart"].append(2)
    assert fingerprint(data, {}) != before
    assert fingerprint(data, {"g": 1.0}) != fingerprint(data, {})


def test_a_key_named_cookie_survives_a_request_cycle_under_the_session_core() -> None:
    config, store = make()
    session, _ = open_session(config, store, None)
    session["cookie"] = "accepted"
    plan_ = end_request(session, store, status=200, request_secure=False, had_cookie=False)
    assert plan_.set_cookie is not None
    again, had = open_session(config, store, plan_.set_cookie.split(";")[0].replace("%3A", ":"))
    assert had
    assert dict(again) == {"cookie": "accepted"}
    assert again.cookie.original_max_age is None  # session.cookie is the session's own cookie


def test_verified_sid_never_takes_an_unsigned_or_foreign_value() -> None:
    config, _ = make()
    assert verified_sid("connect.sid=plain", config) == (None, True)
    assert verified_sid(None, config) == (None, False)


def test_the_plan_holds_the_record_and_the_header_and_calls_nothing() -> None:
    config, store = make(max_age=60)
    session = Session.new(config, store)
    session["a"] = 1
    session.cookie.reset()
    result = plan(session, status=200, request_secure=False, had_cookie=False, store_can_touch=True)
    assert store.calls == []
    assert (result.store, result.sid, result.vary) == ("set", session.id, True)
    assert result.record is not None
    assert result.record["a"] == 1
    assert result.set_cookie is not None
    assert "Max-Age=60" in result.set_cookie


def test_a_cookie_that_is_not_persistent_goes_without_expiry_and_is_not_rolled() -> None:
    config, store = make(max_age=60, rolling=True)
    session = Session.new(config, store)
    session["a"] = 1
    session.cookie.persistent = False
    session.cookie.reset()
    result = plan(session, status=200, request_secure=False, had_cookie=False, store_can_touch=True)
    assert result.set_cookie is not None
    assert "Expires" not in result.set_cookie
    assert result.record is not None
    assert result.record["cookie"]["expires"] == "2026-11-22T10:01:00.000Z"
    store.set(session.id, result.record)
    loaded = Session.from_record(session.id, store.get(session.id), config, store)
    loaded.cookie.persistent = False
    loaded.cookie.reset()
    rolled = plan(loaded, status=200, request_secure=False, had_cookie=True, store_can_touch=True)
    assert (rolled.store, rolled.set_cookie) == ("touch", None)


def test_partitioned_is_an_option_of_the_cookie() -> None:
    config, store = make(partitioned=True, secure=True)
    session = Session.new(config, store)
    session["a"] = 1
    session.cookie.reset()
    result = plan(session, status=200, request_secure=True, had_cookie=False, store_can_touch=False)
    assert result.set_cookie is not None
    assert result.set_cookie.endswith("; Secure; SameSite=Lax; Partitioned")
    with pytest.raises(ValueError, match="partitioned must be True or False"):
        SessionConfig(secret="k", partitioned="yes")  # type: ignore[arg-type]
    plain = set_cookie_header(
        "n", "v", expires=None, now=T0, path="/", domain=None, secure=False, http_only=False, same_site=None
    )
    assert plain == "n=v; Path=/"


def test_group_steps_say_what_to_write_without_writing() -> None:
    config, store = make(max_age=60, group_ttl=1000)
    session = Session.new(config, store)
    session.join_group("user:1")
    session.cookie.reset()
    steps = group_steps(session, T0)
    assert (steps.leave, steps.join, steps.until) == ((), ("user:1",), T0 + 1000)
    assert store.calls == []


def test_the_store_sees_open_then_end_in_order() -> None:
    config, store = make()
    session, _ = open_session(config, store, None)
    session["n"] = 1
    end_request(session, store, status=200, request_secure=False, had_cookie=False)
    assert store.calls == ["set"]
    failed, _ = open_session(config, store, None)
    failed["n"] = 2
    assert end_request(failed, store, status=503, request_secure=False, had_cookie=False).store is None
    assert store.calls == ["set"]


def test_the_index_arithmetic_is_pure() -> None:
    from storekit.groups import joined, left

    record, until, generation = joined(None, [], "a", until=T0 + 10, generation="g1")
    assert (record["members"], until, generation) == (["a"], T0 + 10, "g1")
    assert record["cookie"]["expires"] == "2026-11-22T10:00:10.000Z"
    again, later, kept = joined(record, ["a"], "b", until=T0 + 5, generation="g2")
    assert (again["members"], later) == (["a", "b"], T0 + 10)  # an index never shrinks its life
    assert kept == again["generation"] == "g1"  # an index keeps its generation
    assert left(again, "g", "a") == {**again, "members": ["b"]}
    assert left(again, "g", "nobody") is None
    assert left(None, "g", "a") is None


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (None, "Cookie"),
        ("Accept-Encoding", "Accept-Encoding, Cookie"),
        ("accept-encoding, cookie", "accept-encoding, cookie"),
        ("*", "*"),
        ("Origin ,COOKIE", "Origin ,COOKIE"),
    ],
)
def test_vary_names_cookie_once_whatever_the_app_sent(sent: str | None, expected: str) -> None:
    assert vary_cookie(sent) == expected
