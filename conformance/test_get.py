"""get: an unknown sid is None; a known one gives a fresh copy of what was set."""

from __future__ import annotations

from typing import Any

import pytest

from storekit.conformance._support import check, expiring, new_sid, offers, round_trip, same, show


@pytest.mark.clause("get.1")
def test_get_of_an_unknown_sid_returns_none_and_creates_nothing(storekit_store: Any) -> None:
    """get.1: get of an unknown sid returns None (not {}, not an error) and creates nothing."""
    store = storekit_store
    sid = new_sid()
    before = store.length() if offers(store, "length") else None
    got = store.get(sid)
    check(got is None, "get.1", f"get({sid!r}) of an unknown sid returned {show(got)} (expected None)")
    again = store.get(sid)
    check(again is None, "get.1", f"a second get({sid!r}) returned {show(again)} (the first get created it)")
    if before is not None:
        after = store.length()
        check(after == before, "get.1", f"length() went from {before} to {after} after get of an unknown sid")
    if offers(store, "all"):
        check(sid not in store.all(), "get.1", f"all() lists {sid!r} after a get of that unknown sid")


SESSIONS = {
    "express-shaped": {
        "cookie": {"originalMaxAge": 3_600_000, "expires": None, "httpOnly": True, "path": "/"},
        "user": {"id": 42, "name": "Ada"},
        "views": 3,
    },
    "tuple becomes list": {"pair": (1, 2), "nested": {"t": ("a", ("b",))}},
    "empty": {},
    "float keys of ints": {"ratio": 1.0, "count": 1},
}


@pytest.mark.clause("get.2")
@pytest.mark.parametrize("name", list(SESSIONS))
def test_get_returns_the_json_round_trip_of_the_session_last_set(storekit_store: Any, name: str) -> None:
    """get.2: get returns the session last set, equal to its JSON round trip."""
    sid = new_sid()
    session = SESSIONS[name]
    storekit_store.set(sid, session)
    got = storekit_store.get(sid)
    expected = round_trip(session)
    check(same(got, expected), "get.2", f"get({sid!r}) returned {show(got)} (expected {show(expected)})")


@pytest.mark.clause("get.2")
def test_get_returns_the_latest_of_several_sets(storekit_store: Any) -> None:
    """get.2: after several sets, get returns the last one."""
    sid = new_sid()
    for n in range(5):
        storekit_store.set(sid, {"n": n, "cookie": expiring(3600)["cookie"]})
    got = storekit_store.get(sid)
    check(got is not None and got.get("n") == 4, "get.2", f"get after five sets returned {show(got)} (n=4)")


@pytest.mark.clause("get.3")
def test_mutating_what_get_returned_changes_nothing_stored(storekit_store: Any) -> None:
    """get.3: every get returns a new object; mutating it changes nothing stored."""
    sid = new_sid()
    storekit_store.set(sid, {"list": [1], "dict": {"a": 1}, "n": 1})
    first = storekit_store.get(sid)
    first["n"] = 2
    first["list"].append(2)
    first["dict"]["b"] = 2
    first["new"] = True
    second = storekit_store.get(sid)
    expected = {"list": [1], "dict": {"a": 1}, "n": 1}
    check(second == expected, "get.3", f"after mutating a returned session, get gave {show(second)}")
    check(second is not first, "get.3", "two gets returned the same object")


@pytest.mark.clause("get.3")
def test_mutating_the_dict_passed_to_set_changes_nothing_stored(storekit_store: Any) -> None:
    """get.3: mutating the dict passed to set, after set returned, changes nothing stored."""
    sid = new_sid()
    session: dict[str, Any] = {"list": [1], "dict": {"a": 1}, "n": 1}
    storekit_store.set(sid, session)
    session["n"] = 2
    session["list"].append(2)
    session["dict"]["b"] = 2
    got = storekit_store.get(sid)
    expected = {"list": [1], "dict": {"a": 1}, "n": 1}
    check(got == expected, "get.3", f"after mutating the dict passed to set, get gave {show(got)}")
