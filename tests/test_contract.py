"""storekit.contract's one "is this a store" check: store_kind and check_store."""

from __future__ import annotations

from typing import Any

import pytest

from storekit.contract import check_store, store_kind
from storekit.reference import AsyncMemoryStore, MemoryStore


class Mixed:
    async def get(self, sid: str) -> Any: ...
    def set(self, sid: str, session: Any) -> None: ...
    def destroy(self, sid: str) -> None: ...


class NoSet:
    def get(self, sid: str) -> Any: ...
    def destroy(self, sid: str) -> None: ...


def test_sync_and_async_stores_are_told_apart() -> None:
    assert store_kind(MemoryStore()) == "sync"
    assert store_kind(AsyncMemoryStore()) == "async"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (MemoryStore, r"MemoryStore is a class, not a store; pass an instance, MemoryStore\(\)"),
        (NoSet(), r"is not a store: it has no set\(\); a store needs get, set and destroy"),
        (None, r"None is not a store: it has no get\(\), set\(\), destroy\(\)"),
        (Mixed(), r"get\(\) is a coroutine function but set\(\) and destroy\(\) are not"),
    ],
)
def test_what_is_not_a_store_is_refused_with_what_is_wrong(obj: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        store_kind(obj)


def test_a_store_of_the_other_kind_names_the_twin_to_use() -> None:
    with pytest.raises(TypeError, match=r"is an async store; the app needs a sync store such as"):
        check_store(AsyncMemoryStore(), "the app", kind="sync")
    with pytest.raises(
        TypeError, match=r"is a sync store; the app needs an async store such as .*AsyncMemoryStore"
    ):
        check_store(MemoryStore(), "the app", kind="async")
    store = MemoryStore()
    assert check_store(store, "the app", kind="sync") is store
