"""MemoryStore beyond the suite: the clock, the sweep, namespaces, hostile input."""

from __future__ import annotations

import asyncio
import threading

import pytest

from storekit import InvalidSessionData, InvalidSessionId
from storekit.codec import format_expires
from storekit.reference import AsyncMemoryStore, MemoryStore


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def expiring_at(when: float, **data: object) -> dict[str, object]:
    return {**data, "cookie": {"expires": format_expires(when)}}


def test_a_session_is_there_until_its_expiry_and_gone_at_it() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    store.set("a", expiring_at(clock.now + 10, n=1))
    clock.now += 9.999
    assert store.get("a") is not None
    clock.now += 0.001
    assert store.get("a") is None
    assert store.length() == 0


def test_default_ttl_applies_to_sessions_without_expiry() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, default_ttl=30)
    store.set("a", {"n": 1})
    clock.now += 29
    assert store.get("a") == {"n": 1}
    clock.now += 1
    assert store.get("a") is None


@pytest.mark.parametrize("ttl", [0, -1])
def test_a_default_ttl_that_is_not_positive_is_refused(ttl: float) -> None:
    with pytest.raises(ValueError, match="default_ttl"):
        MemoryStore(default_ttl=ttl)


def test_expired_sessions_are_swept_by_later_writes_without_reads() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    for n in range(1000):
        store.set(f"old{n}", expiring_at(clock.now + 1, n=n))
    clock.now += 2
    store.set("new", {"n": 0})
    assert len(store._space) == 1  # nobody read the old ones; the sweep removed them


def test_the_expiry_heap_does_not_grow_with_repeated_touches() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    store.set("a", expiring_at(clock.now + 100))
    for step in range(20_000):
        store.touch("a", expiring_at(clock.now + 100 + step))
    assert len(store._shelf.expiries) < 3000


def test_touch_replaces_the_cookie_and_keeps_the_data() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    store.set("a", expiring_at(clock.now + 10, n=1))
    store.touch("a", expiring_at(clock.now + 100, n=2))
    clock.now += 50
    got = store.get("a")
    assert got is not None
    assert got["n"] == 1
    assert got["cookie"] == {"expires": format_expires(clock.now + 50)}


def test_namespaces_share_memory_but_not_sessions() -> None:
    store = MemoryStore()
    other = store.namespace("other")
    store.set("a", {"in": "default"})
    other.set("a", {"in": "other"})
    assert store.get("a") == {"in": "default"}
    assert other.get("a") == {"in": "other"}
    other.clear()
    assert store.all() == {"a": {"in": "default"}}
    assert other.length() == 0


def test_a_rejected_set_loses_nothing() -> None:
    store = MemoryStore()
    store.set("a", {"kept": True})
    for bad in ({1: 2}, {"x": float("nan")}, {"cookie": {"expires": 5}}, {"cookie": {"expires": "soon"}}):
        with pytest.raises(InvalidSessionData):
            store.set("a", bad)
    with pytest.raises(InvalidSessionData):
        store.set("a", {"big": "x" * (1 << 20)})
    assert store.get("a") == {"kept": True}


@pytest.mark.parametrize("method", ["get", "destroy", "set", "touch"])
@pytest.mark.parametrize("sid", [None, "", 7, b"a", "\ud800"])
def test_odd_sids_are_refused_by_every_method(method: str, sid: object) -> None:
    store = MemoryStore()
    args = (sid, {}) if method in ("set", "touch") else (sid,)
    with pytest.raises(InvalidSessionId):
        getattr(store, method)(*args)


def test_a_huge_session_just_under_the_limit_round_trips() -> None:
    store = MemoryStore(max_session_bytes=2 << 20)
    session = {"blob": "\U0001f600" * 400_000}
    store.set("a", session)
    assert store.get("a") == session


def test_many_threads_see_consistent_sessions() -> None:
    store = MemoryStore()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(500):
                store.set(f"t{n}", {"i": i})
                got = store.get(f"t{n}")
                assert got == {"i": i}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.length() == 8


def test_the_async_twin_shares_the_behaviour() -> None:
    async def scenario() -> None:
        store = AsyncMemoryStore()
        await store.set("a", {"n": 1})
        assert await store.get("a") == {"n": 1}
        assert await store.length() == 1
        assert await store.all() == {"a": {"n": 1}}
        other = store.namespace("x")
        await other.set("a", {"n": 2})
        await store.clear()
        assert await other.get("a") == {"n": 2}
        await other.destroy("a")
        assert await other.get("a") is None

    asyncio.run(scenario())
