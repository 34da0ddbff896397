"""A stateful model test: hypothesis drives the store and a dict model side by side.

Random programs of set, destroy, touch and clear, with real expiries (past,
near and far), run against the store and against a model that knows, for
each sid, what must be there, what must be gone, and what may be either
(inside the target's resolution around an expiry). After every step each sid
is read back, and length() and all() are compared with the model. A
disagreement names the one clause it breaks (a read that still holds keys of
the session that a set replaced breaks set.1, not get.2), and hypothesis
prints the shortest program that shows it, as Python you can replay. Programs are derandomized:
the same store gets the same programs, and so the same verdict, on every run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from storekit.codec import format_expires
from storekit.conformance._support import Stores, fail, new_sid, offers, round_trip, same, show, tidy
from storekit.target import Target

POOL = 4
GONE = ("destroy.1", "ttl.3", "touch.3", "touch.2", "clear.1")
"""What the last operation on a sid was when the model knows it is not stored."""
LIVES = ("none", "past", "near", "far")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
sessions = st.dictionaries(st.text(max_size=6).filter(lambda k: k != "cookie"), json_values, max_size=3)


@dataclass
class Entry:
    session: dict[str, Any]
    expires: float | None
    maybe: bool  # it may already be gone (touched or set inside an expiry window)
    last: str  # the clause that the last operation on this sid answers to
    touched: bool = False
    replaced: dict[str, Any] | None = None  # the live session that the last set replaced


def leftovers(got: object, entry: Entry) -> list[str]:
    """Keys of ``got`` that only the session the last set replaced had: a merge (set.1)."""
    if entry.replaced is None or not isinstance(got, dict):
        return []
    return sorted(key for key in got if key not in entry.session and key in entry.replaced)


_replay: list[Stores] = []


def replay_on(target: Target | Any) -> None:
    """Make ``StoreMachine()`` use ``target``, so a program hypothesis printed runs as is:

    from storekit.conformance.test_model import StoreMachine, replay_on
    replay_on(my_target)
    state = StoreMachine()
    state.set_session(data={}, i=0, life='none')
    ...
    """
    _replay[:] = [Stores(Target.of(target))]


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, stores: Stores | None = None) -> None:
        if stores is None:
            if not _replay:
                raise RuntimeError(
                    "call storekit.conformance.test_model.replay_on(target) before StoreMachine()"
                )
            stores = _replay[0]
        super().__init__()
        self.target: Target = stores.target
        self.store = stores.isolated()
        self.res = self.target.ttl_resolution
        self.sids = [new_sid("model") for _ in range(POOL)]
        self.model: dict[str, Entry] = {}
        self.base = self.store.length() if offers(self.store, "length") else 0
        self.base_all = set(self.store.all()) if offers(self.store, "all") else set()

    def teardown(self) -> None:
        tidy(self.store, *self.sids)

    def _cookie(self, life: str, now: float) -> dict[str, Any]:
        if life == "none":
            return {"path": "/"}
        offset = {"past": -5.0, "near": 2 * self.res * 0.5, "far": 3600.0}[life]
        return {"path": "/", "expires": format_expires(now + offset)}

    def _expiry(self, cookie: dict[str, Any], now: float) -> float | None:
        if "expires" in cookie:
            from storekit.codec import parse_expires

            return parse_expires(cookie["expires"])
        return None if self.target.default_ttl is None else now + self.target.default_ttl

    def _status(self, entry: Entry, called: float, returned: float) -> str:
        if entry.expires is not None and called >= entry.expires + self.res:
            return "absent"
        if not entry.maybe and (entry.expires is None or returned < entry.expires - self.res):
            return "present"
        return "either"

    def _call(self, clause: str, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            fail(clause, f"{what} raised {type(exc).__name__}: {exc}")

    @rule(i=st.integers(0, POOL - 1), data=sessions, life=st.sampled_from(LIVES))
    def set_session(self, i: int, data: dict[str, Any], life: str) -> None:
        sid = self.sids[i]
        now = time.time()
        session = {**data, "cookie": self._cookie(life, now)}
        self._call("set.3", f"set({sid!r}, {show(session)})", self.store.set, sid, session)
        expires = self._expiry(session["cookie"], now)
        before = self.model.get(sid)
        live = before is not None and before.last not in GONE and self._status(before, now, now) != "absent"
        if expires is not None and expires <= now:
            self.model[sid] = Entry({}, now, False, "ttl.3")
        else:
            near = expires is not None and expires - self.res <= time.time()
            replaced = before.session if before is not None and live else None
            self.model[sid] = Entry(round_trip(session), expires, near, "get.2", replaced=replaced)

    @rule(i=st.integers(0, POOL - 1))
    def destroy_session(self, i: int) -> None:
        sid = self.sids[i]
        self._call("destroy.1", f"destroy({sid!r})", self.store.destroy, sid)
        self.model[sid] = Entry({}, time.time() - 3600, False, "destroy.1")

    @precondition(lambda self: offers(self.store, "touch"))
    @rule(i=st.integers(0, POOL - 1), life=st.sampled_from(LIVES))
    def touch_session(self, i: int, life: str) -> None:
        sid = self.sids[i]
        now = time.time()
        cookie = self._cookie(life, now)
        self._call("touch.1", f"touch({sid!r})", self.store.touch, sid, {"other": "data", "cookie": cookie})
        entry = self.model.get(sid)
        if entry is None:
            self.model[sid] = Entry({}, now - 3600, False, "touch.2")
            return
        state = self._status(entry, now, now)
        expires = self._expiry(cookie, now)
        if state == "absent":
            entry.last = "touch.2"
        elif expires is not None and expires <= now:
            self.model[sid] = Entry({}, now - 3600, False, "touch.3")
        else:
            entry.expires, entry.last, entry.touched = expires, "touch.1", True
            entry.maybe = state == "either" or (expires is not None and expires - self.res <= time.time())

    @invariant()
    def agrees_with_the_model(self) -> None:
        """After every step: each sid by get first (the most specific finding), then
        length() and all(), which a mistake on one sid would also disturb."""
        for sid in self.sids:
            self._check_get(sid)
        if offers(self.store, "length"):
            self._check_length()
        if offers(self.store, "all"):
            self._check_all()

    def _check_get(self, sid: str) -> None:
        called = time.time()
        got = self._call("get.2", f"get({sid!r})", self.store.get, sid)
        entry = self.model.get(sid)
        if entry is None:
            if got is not None:
                fail("get.1", f"get({sid!r}) of a sid never set returned {show(got)}")
            return
        state = self._status(entry, called, time.time())
        if got is None:
            if state == "present":
                clause = "ttl.1" if entry.expires is not None and entry.last == "get.2" else entry.last
                fail(clause, f"get({sid!r}) returned None; expected {show(entry.session)}")
            self.model[sid] = Entry({}, called - 3600, False, entry.last)
            return
        if state == "absent":
            clause = "ttl.2" if entry.last in ("get.2", "touch.1") else entry.last
            fail(clause, f"get({sid!r}) returned {show(got)}; it should be gone")
        expected, actual = entry.session, got
        if entry.touched:
            expected = {k: v for k, v in expected.items() if k != "cookie"}
            actual = {k: v for k, v in got.items() if k != "cookie"} if isinstance(got, dict) else got
        if not same(actual, expected):
            merged = leftovers(got, entry) if entry.last == "get.2" else []
            if merged:
                fail(
                    "set.1",
                    f"get({sid!r}) returned {show(got)}; expected {show(entry.session)}: the keys "
                    f"{show(merged)} are left from the session that the last set replaced",
                )
            fail(entry.last, f"get({sid!r}) returned {show(got)}; expected {show(entry.session)}")
        entry.maybe = False

    def _bounds(self, called: float, returned: float) -> tuple[set[str], set[str]]:
        """Sids that must be live, and sids that may be."""
        must, may = set(), set()
        for sid, entry in self.model.items():
            state = self._status(entry, called, returned)
            if state != "absent" and entry.last not in GONE:
                may.add(sid)
                if state == "present":
                    must.add(sid)
        return must, may

    def _check_length(self) -> None:
        called = time.time()
        count = self._call("length.1", "length()", self.store.length)
        must, may = self._bounds(called, time.time())
        low, high = self.base + len(must), self.base + len(may)
        if not low <= count <= high:
            fail("length.1", f"length() is {count}; the model expects {low}..{high}")

    def _check_all(self) -> None:
        called = time.time()
        every = self._call("all.1", "all()", self.store.all)
        if not isinstance(every, dict):
            fail("all.1", f"all() returned a {type(every).__name__}, not a dict")
        must, may = self._bounds(called, time.time())
        ours = set(every) & set(self.sids)
        if not must <= ours <= may:
            fail(
                "all.1",
                f"all() lists {sorted(ours)} of the program's sids; expected {sorted(must)}..{sorted(may)}",
            )
        others = set(every) - set(self.sids)
        if others != self.base_all:
            fail("all.1", f"all() lists sids this program never set: {show(sorted(others - self.base_all))}")
        for sid in must:
            entry = self.model[sid]
            if not entry.touched and not same(every[sid], entry.session):
                fail("all.1", f"all()[{sid!r}] is {show(every[sid])}; expected {show(entry.session)}")

    @precondition(lambda self: offers(self.store, "clear"))
    @rule()
    def clear_store(self) -> None:
        self._call("clear.1", "clear()", self.store.clear)
        now = time.time()
        self.model = {sid: Entry({}, now - 3600, False, "clear.1") for sid in self.sids}
        self.base, self.base_all = 0, set()


@pytest.mark.clause("model")
def test_store_agrees_with_a_dict_model(storekit_stores: Stores) -> None:
    """A random program of every operation the store offers gives the same answers as a dict model."""
    run_state_machine_as_test(
        lambda: StoreMachine(storekit_stores),  # type: ignore[arg-type]
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,  # the same store gets the same programs, and the same verdict
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )
