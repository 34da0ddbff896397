"""What the conformance suite runs against: a store factory and what it claims."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from storekit.codec import DEFAULT_MAX_SESSION_BYTES, check_seconds

__all__ = ["Target"]

ContextFactory = Callable[[], contextlib.AbstractContextManager[Any]]


class Target:
    """A store factory for the suite, with what the store claims about itself.

    ``factory`` is called with no arguments wherever a store is needed: once
    per test, and in every worker process of the cross-process clauses, so it
    may be a lambda or a closure (workers receive it through ``multiprocess``,
    which pickles with dill). It must return a new store on every call: the
    suite closes each store it builds (``close()``, or ``aclose()``) after the
    test that used it.

    ``serve`` is entered in the pytest process around the whole run (start a
    server, a master, a database), and once before it, briefly, for the
    target check; ``namespaced(name)`` builds a store for another namespace
    on the same backend (clear.3, and a store of its own for the tests that
    count sessions). The suite's namespaces match ``[a-z][a-z0-9_]{0,39}``:
    lowercase ASCII letters, digits and ``_``, starting with a letter, at most
    40 characters, so that one can be a SQL table name, a key prefix or a
    directory name as it is; none is a prefix of another. ``outage`` makes
    the backend unreachable for as long as it is entered (errors.1).
    ``shared=True`` claims that sessions are visible across processes and
    turns on the process clauses. ``ttl_resolution`` (seconds) is how far
    from ``cookie.expires`` a session may still appear or already be gone;
    ``default_ttl`` is how long a session with no expiry lives (``None``:
    longer than any test run); ``max_session_bytes`` is the largest encoded
    session the store keeps (set.4).
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        name: str | None = None,
        shared: bool = False,
        serve: ContextFactory | None = None,
        namespaced: Callable[[str], Any] | None = None,
        ttl_resolution: float = 1.0,
        default_ttl: float | None = None,
        max_session_bytes: int = DEFAULT_MAX_SESSION_BYTES,
        outage: ContextFactory | None = None,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"Target factory must be callable, got {factory!r}")
        check_seconds("ttl_resolution", ttl_resolution, zero=True)
        check_seconds("default_ttl", default_ttl, none="sessions outlive the run")
        if max_session_bytes < 1:
            raise ValueError(f"max_session_bytes must be positive, got {max_session_bytes!r}")
        self.factory = factory
        self.name = name or _name_of(factory)
        self.shared = shared
        self.serve = serve
        self.namespaced = namespaced
        self.ttl_resolution = float(ttl_resolution)
        self.default_ttl = default_ttl
        self.max_session_bytes = max_session_bytes
        self.outage = outage

    @classmethod
    def of(cls, obj: object, *, name: str | None = None) -> Target:
        """``obj`` if it is a Target, else ``Target(obj)`` for a zero-argument callable."""
        if isinstance(obj, Target):
            return obj
        if callable(obj):
            return cls(obj, name=name)
        raise TypeError(
            f"a storekit target is a storekit.Target or a zero-argument callable returning "
            f"a store, got {type(obj).__name__} {obj!r}"
        )

    def __repr__(self) -> str:
        return f"Target({self.name!r}, shared={self.shared})"


def _name_of(factory: Callable[..., Any]) -> str:
    name = getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
    return str(name) if name else type(factory).__name__
