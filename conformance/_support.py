"""What every conformance module uses: sids, namespaces, sessions, time, optional
methods, async stores, and the skips that carry their verdict."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import pytest

from storekit.codec import format_expires
from storekit.contract import store_kind
from storekit.errors import cut
from storekit.target import Target

if TYPE_CHECKING:
    from _pytest.outcomes import Skipped  # pytest.skip.Exception, spelled so that mypy can subclass it
else:
    Skipped = pytest.skip.Exception

OPTIONAL = ("touch", "length", "clear", "all", "replace", "renew")
RECOMMENDED = ("touch",)
MARGIN = 0.5
"""Seconds of slack added to every expiry window, for a loaded CI machine."""
NAMESPACE_PATTERN = r"[a-z][a-z0-9_]{0,39}"
"""Every namespace the suite passes to a target's ``namespaced`` hook matches this:
lowercase ASCII letters, digits and ``_``, starting with a letter, at most 40
characters, so that it can be a SQL table name, a key prefix or a directory name
as it is. No namespace is a prefix of another."""

_counter = itertools.count()

SkipKind = Literal["not offered", "not applicable", "skipped"]


class Skip(Skipped):
    """A test that did not check its clause, with the verdict as data for the report.

    ``kind`` is the verdict (``"not offered"``: the store lacks an optional
    method; ``"not applicable"``: the clause does not apply to this target;
    ``"skipped"``: a precondition did not hold), ``reason`` the report's
    message, ``depends_on`` the clause whose failure made the test moot.
    storekit.suite reads them from the exception; nothing parses the text.
    """

    # Shown by pytest as its own skips are ("Skipped: reason"), not under this module's name.
    __module__ = "builtins"
    __qualname__ = "Skipped"

    def __init__(self, kind: SkipKind, reason: str, *, depends_on: str | None = None) -> None:
        super().__init__(reason if kind == "skipped" else f"{kind}: {reason}")
        self.kind: SkipKind = kind
        self.reason = reason
        self.depends_on = depends_on


class ClauseViolation(AssertionError):
    """A failed check that names its clause: ``clause: what was seen``."""

    def __init__(self, clause: str, message: str) -> None:
        super().__init__(f"{clause}: {message}")
        self.clause = clause


def fail(clause: str, message: str) -> NoReturn:
    __tracebackhide__ = True
    raise ClauseViolation(clause, message)


def check(condition: object, clause: str, message: str) -> None:
    __tracebackhide__ = True
    if not condition:
        raise ClauseViolation(clause, message)


def show(value: object) -> str:
    return cut(value, 120)


def new_sid(tag: str = "s") -> str:
    """A sid no other test or process uses."""
    return f"sk-{tag}-{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"


def new_namespace(tag: str = "ns") -> str:
    """A namespace no other test or process uses, matching :data:`NAMESPACE_PATTERN`
    (``tag`` is a few lowercase letters)."""
    return f"sk_{tag}_{os.getpid()}_{next(_counter)}_{secrets.token_hex(4)}"


def expiring(seconds: float, **data: Any) -> dict[str, Any]:
    """A session with ``data`` whose cookie expires ``seconds`` from now."""
    return {**data, "cookie": {"expires": format_expires(time.time() + seconds), "path": "/"}}


def sleep_until(deadline: float) -> None:
    """Sleep until ``time.time()`` reaches ``deadline``: the contract's own deadline,
    not a guess at how long something takes."""
    while (left := deadline - time.time()) > 0:
        time.sleep(min(left, 0.05))


def offers(store: object, method: str) -> bool:
    return callable(getattr(store, method, None))


def not_offered(method: str) -> NoReturn:
    """Skip as "not offered": the store lacks the optional (or recommended) ``method``."""
    __tracebackhide__ = True
    kind = "recommended" if method in RECOMMENDED else "optional"
    raise Skip("not offered", f"store has no {method}(); {method} is {kind}")


def require(store: object, method: str) -> None:
    """Skip as "not offered" when the store lacks an optional method."""
    __tracebackhide__ = True
    if not offers(store, method):
        not_offered(method)


def depends(condition: object, clause: str, message: str) -> None:
    """Skip when a precondition that another clause guarantees does not hold, so a
    broken ``destroy`` fails destroy.1 rather than every test that destroys."""
    __tracebackhide__ = True
    if not condition:
        raise Skip("skipped", f"depends on {clause}, which does not hold here: {message}", depends_on=clause)


def tidy(store: Any, *sids: str) -> None:
    """Remove what a test wrote, ignoring errors (they are other tests' business)."""
    for sid in sids:
        with contextlib.suppress(Exception):
            store.destroy(sid)


def all_sessions(store: Any) -> dict[str, Any]:
    """``store.all()`` for clauses other than all.1, which checks its shape."""
    __tracebackhide__ = True
    every = store.all()
    depends(isinstance(every, dict), "all.1", f"all() returned a {type(every).__name__}, not a dict")
    return every  # type: ignore[no-any-return]


def not_applicable(reason: str) -> NoReturn:
    """Skip as "not applicable": the clause does not apply to this target."""
    __tracebackhide__ = True
    raise Skip("not applicable", reason)


class AsyncStoreFacade:
    """Drives an async store from synchronous test code, on a private event loop
    in a background thread. Optional methods appear only when the store has them."""

    def __init__(self, store: Any) -> None:
        self.inner = store
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="storekit-async", daemon=True)
        self._thread.start()
        for name in OPTIONAL:
            if offers(store, name):
                setattr(self, name, self._bind(name))

    def run(self, awaitable: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result()

    def _bind(self, name: str) -> Callable[..., Any]:
        method = getattr(self.inner, name)
        return lambda *args: self.run(method(*args))

    def get(self, sid: Any) -> Any:
        return self.run(self.inner.get(sid))

    def set(self, sid: Any, session: Any) -> None:
        self.run(self.inner.set(sid, session))

    def destroy(self, sid: Any) -> None:
        self.run(self.inner.destroy(sid))

    def close(self) -> None:
        close = getattr(self.inner, "aclose", None) or getattr(self.inner, "close", None)
        if callable(close) and inspect.iscoroutinefunction(close):
            self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __repr__(self) -> str:
        return f"<async {self.inner!r}>"


def drive(store: object) -> Any:
    """``store`` as the suite calls it: a sync store as it is, an async one behind an
    :class:`AsyncStoreFacade`; TypeError saying what is wrong if it is not a store."""
    return AsyncStoreFacade(store) if store_kind(store) == "async" else store


def build_store(target: Target, factory: Callable[[], Any] | None = None) -> Any:
    """Call the target's factory (or ``factory``) and check that what it returns is a store."""
    __tracebackhide__ = True
    store = (factory or target.factory)()
    try:
        return drive(store)
    except TypeError as exc:
        pytest.fail(f"target {target.name!r} did not get a store: {exc}", pytrace=False)


def close_store(store: Any) -> None:
    if isinstance(store, AsyncStoreFacade):
        store.close()
        return
    close = getattr(store, "close", None)
    if callable(close) and not inspect.iscoroutinefunction(close):
        close()


class Stores:
    """Builds stores for one test and closes them after it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._made: list[Any] = []

    def new(self) -> Any:
        store = build_store(self.target)
        self._made.append(store)
        return store

    def namespaced(self, namespace: str) -> Any:
        if self.target.namespaced is None:
            raise LookupError("target has no namespaced hook")
        namespaced = self.target.namespaced
        store = build_store(self.target, lambda: namespaced(namespace))
        self._made.append(store)
        return store

    def isolated(self) -> Any:
        """A store that no other test writes to: a fresh namespace where the target
        has them, a fresh instance of a process-local store, else the shared one."""
        if self.target.namespaced is not None:
            return self.namespaced(new_namespace())
        return self.new()

    def close(self) -> None:
        while self._made:
            close_store(self._made.pop())


def round_trip(value: Any) -> Any:
    """What a store must give back for ``value``: its JSON round trip."""
    import json

    return json.loads(json.dumps(value))


def same(a: object, b: object) -> bool:
    """Equality that JSON would see: True is not 1, 1.0 is not 1, -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        assert isinstance(b, float)
        return a.hex() == b.hex()
    return a == b
