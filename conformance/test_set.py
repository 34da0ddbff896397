"""set: an upsert of a JSON object, exact round trips, strict rejection, a size limit."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import uuid
from typing import Any

import pytest

from storekit.conformance._support import check, new_sid, round_trip, same, show, tidy
from storekit.errors import InvalidSessionData


@pytest.mark.clause("set.1")
def test_a_second_set_replaces_the_whole_session(storekit_store: Any) -> None:
    """set.1: set is an upsert; a second set replaces the session and never merges."""
    sid = new_sid()
    storekit_store.set(sid, {"a": 1, "nested": {"x": 1, "y": 2}})
    storekit_store.set(sid, {"b": 2, "nested": {"z": 3}})
    got = storekit_store.get(sid)
    expected = {"b": 2, "nested": {"z": 3}}
    check(
        got == expected, "set.1", f"get after two sets returned {show(got)} (expected {expected!r}: no merge)"
    )


def _nested(depth: int, leaf: Any) -> Any:
    for level in range(depth):
        leaf = {"k": leaf} if level % 2 else [leaf]
    return leaf


INVALID: dict[str, Any] = {
    "a list": [1, 2],
    "a str": "session",
    "None": None,
    "an int": 3,
    "an int key": {1: "a"},
    "a None key": {None: "a"},
    "a nested int key": {"a": {"b": {2: "c"}}},
    "a key in a list": {"a": [{"ok": 1}, {(1, 2): "c"}]},
    "a set": {"a": {1, 2}},
    "bytes": {"a": b"bytes"},
    "a datetime": {"when": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},
    "a Decimal": {"price": decimal.Decimal("1.10")},
    "a UUID": {"id": uuid.UUID(int=1)},
    "NaN": {"x": math.nan},
    "infinity": {"x": math.inf},
    "-infinity in a list": {"x": [1.0, -math.inf]},
    "an object": {"x": object()},
    "a function": {"x": len},
}


@pytest.mark.clause("set.2")
@pytest.mark.parametrize("name", list(INVALID))
def test_a_session_that_is_not_a_json_object_is_rejected(storekit_store: Any, name: str) -> None:
    """set.2: a non-JSON session raises InvalidSessionData and leaves the stored session unchanged."""
    sid = new_sid()
    storekit_store.set(sid, {"kept": True})
    bad = INVALID[name]
    try:
        storekit_store.set(sid, bad)
    except InvalidSessionData:
        pass
    except Exception as exc:
        raise AssertionError(
            f"set.2: set({sid!r}, <{name}>) raised {type(exc).__name__}: {exc} (expected InvalidSessionData)"
        ) from exc
    else:
        raise AssertionError(f"set.2: set({sid!r}, {show(bad)}) with {name} raised nothing")
    got = storekit_store.get(sid)
    check(got == {"kept": True}, "set.2", f"after the rejected set with {name}, get returned {show(got)}")


VALUES: dict[str, Any] = {
    "64-deep nesting": _nested(64, "bottom"),
    "astral and NUL": "\U0001d11e \U0001f600 \x00 end",
    "every escape": "".join(chr(c) for c in range(0x20)) + '"\\/\u2028\u2029\ufeff\uffff',
    "combining marks": "e\u0301 \u0915\u094d\u0937",
    "a NUL key": {"a\x00b": 1, "": "empty key"},
    "int64 edges": [-(2**63), 2**63 - 1, 0, -1, 2**53 + 1],
    "floats to the last bit": [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -0.0, 2.5, 1e16],
    "bools stay bools": [True, False, 1, 0],
    "floats stay floats": [1.0, 0.0, 1],
    "None": None,
    "empty containers": [{}, [], ""],
    "many keys": {f"k{i}": i for i in range(1000)},
}


@pytest.mark.clause("set.3")
@pytest.mark.parametrize("name", list(VALUES))
def test_values_round_trip_exactly(storekit_store: Any, name: str) -> None:
    """set.3: nesting, Unicode, 64-bit ints, floats, bools, None and empty containers round-trip exactly."""
    sid = new_sid()
    session = {"value": VALUES[name]}
    storekit_store.set(sid, session)
    got = storekit_store.get(sid)
    expected = round_trip(session)
    check(same(got, expected), "set.3", f"{name}: get returned {show(got)} (expected {show(expected)})")


def _session_of_size(size: int) -> dict[str, str]:
    """A session whose compact UTF-8 JSON encoding is exactly ``size`` bytes."""
    overhead = len(json.dumps({"data": ""}, separators=(",", ":")))
    return {"data": "x" * (size - overhead)}


@pytest.mark.clause("set.4")
def test_a_session_of_the_maximum_size_is_kept(storekit_store: Any, storekit_target: Any) -> None:
    """set.4: a session of exactly max_session_bytes of compact JSON is kept whole."""
    sid = new_sid()
    session = _session_of_size(storekit_target.max_session_bytes)
    storekit_store.set(sid, session)
    got = storekit_store.get(sid)
    check(
        got == session,
        "set.4",
        f"a {storekit_target.max_session_bytes}-byte session came back as {len(json.dumps(got))} bytes "
        f"of JSON ({show(got)})",
    )
    tidy(storekit_store, sid)


@pytest.mark.clause("set.4")
def test_a_session_over_the_maximum_size_is_rejected_not_truncated(
    storekit_store: Any, storekit_target: Any
) -> None:
    """set.4: a session one byte over max_session_bytes raises InvalidSessionData; the old one stays."""
    sid = new_sid()
    storekit_store.set(sid, {"kept": True})
    too_big = _session_of_size(storekit_target.max_session_bytes + 1)
    try:
        storekit_store.set(sid, too_big)
    except InvalidSessionData:
        pass
    else:
        got = storekit_store.get(sid)
        size = "nothing" if got is None else f"{len(json.dumps(got, separators=(',', ':')))} bytes"
        raise AssertionError(
            f"set.4: set of a {storekit_target.max_session_bytes + 1}-byte session raised nothing "
            f"(expected InvalidSessionData); get then returned {size}"
        )
    got = storekit_store.get(sid)
    check(got == {"kept": True}, "set.4", f"after the rejected oversized set, get returned {show(got)}")
