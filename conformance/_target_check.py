"""The target check, run once before the suite: build what the suite will build and
say what is wrong, once, instead of failing every test the same way.

It enters ``serve``, calls the factory twice (closing the first store before
building the second, as the suite closes each store after its test), reads an
unknown sid from each, and builds one store with the ``namespaced`` hook.
A factory that raises, returns something that is not a store (None, a class,
an object without ``set``, a store with sync and async methods mixed), returns
the same instance twice, or returns a store that the closing of another one
broke, raises :class:`BrokenTarget`. What the stores do with their sessions is
left to the clauses.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from typing import Any

from storekit.conformance._support import (
    NAMESPACE_PATTERN,
    AsyncStoreFacade,
    close_store,
    drive,
    new_namespace,
    new_sid,
)
from storekit.errors import cut
from storekit.target import Target

__all__ = ["BrokenTarget", "check_target"]

CLOSES = "the suite closes each store it builds, after the test that used it"
FIX = f"{CLOSES}: return a new store from each call, whose close() releases only what that store opened"


class BrokenTarget(Exception):
    """What is wrong with a target, said once; the plugin makes it a usage error."""


def check_target(target: Target) -> None:
    """Raise BrokenTarget if the suite cannot run on ``target`` at all."""
    with contextlib.ExitStack() as stack:
        if target.serve is not None:
            serve = target.serve
            _attempt("its serve()", lambda: stack.enter_context(serve()))
        probe = new_sid("check")
        first = _build("its factory", target.factory)
        read = _read(first, probe)
        _close(first, "its factory")
        try:
            second = _build("its factory", target.factory)
        except BrokenTarget as exc:
            raise BrokenTarget(
                f"{exc}, after the suite had closed the first store it returned; {FIX}"
            ) from None
        try:
            _distinct(target, _inner(first), _inner(second))
            if read is None and (broken := _read(second, probe)) is not None:
                raise BrokenTarget(
                    f"a second store from its factory failed after the suite had closed the first one "
                    f"(whose get() had worked): {broken}; {FIX}"
                )
            if read is not None:
                raise BrokenTarget(f"a new store from its factory does not work: {read}")
        finally:
            _close(second, "its factory")
        if target.namespaced is not None:
            _check_namespaced(target.namespaced, probe)
        _attempt("its serve() on exit", stack.close)


def _check_namespaced(hook: Callable[[str], Any], probe: str) -> None:
    namespace = new_namespace("check")
    what = f"its namespaced hook, called as namespaced({namespace!r}),"
    alphabet = (
        f"the suite passes namespaces that match {NAMESPACE_PATTERN} (lowercase letters, digits and '_', "
        "starting with a letter); make the hook accept them"
    )
    try:
        store = _build(what, lambda: hook(namespace))
        read = _read(store, probe)
    except BrokenTarget as exc:
        raise BrokenTarget(f"{exc}; {alphabet}") from None
    _close(store, what)
    if read is not None:
        raise BrokenTarget(f"the store {what} returned does not work: {read}; {alphabet}")


def _attempt(what: str, action: Callable[[], object]) -> Any:
    try:
        return action()
    except Exception as exc:
        raise BrokenTarget(f"{what} raised {_error(exc)}") from None


def _build(what: str, make: Callable[[], object]) -> Any:
    store = _attempt(what, make)
    try:
        return drive(store)
    except TypeError as exc:
        raise BrokenTarget(f"{what} did not return a store: {exc}") from None


def _read(store: Any, sid: str) -> str | None:
    """None if ``get`` of an unknown sid returns, else what it raised."""
    try:
        store.get(sid)
    except Exception as exc:
        return f"get({sid!r}) raised {_error(exc)}"
    return None


def _close(store: Any, what: str) -> None:
    try:
        close_store(store)
    except Exception as exc:
        raise BrokenTarget(f"close() of a store from {what} raised {_error(exc)}") from None


def _inner(store: Any) -> Any:
    return store.inner if isinstance(store, AsyncStoreFacade) else store


def _distinct(target: Target, first: object, second: object) -> None:
    if first is not second:
        return
    if any(callable(getattr(first, name, None)) for name in ("close", "aclose")):
        raise BrokenTarget(
            f"its factory returned the same instance twice ({cut(first)}); {CLOSES}, so every test "
            "after the first would use a closed store: return a new store from each call (stores may "
            "share a connection pool, as long as close() leaves the pool open)"
        )
    if not target.shared:
        raise BrokenTarget(
            f"its factory returned the same instance twice ({cut(first)}), and the target is not "
            "shared, so each test must get a new, empty store (the clauses that count sessions would "
            "see other tests' sessions): return a new store from each call, or declare "
            "Target(..., shared=True) if stores from the factory share their sessions"
        )


def _error(exc: BaseException) -> str:
    """``Type: message``, and where it was raised in the caller's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
