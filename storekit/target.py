"""What the conformance suite runs against: a store factory, what it claims, and the
failures its author declares known."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storekit.codec import DEFAULT_MAX_SESSION_BYTES, check_seconds

__all__ = ["KnownFailure", "KnownFailures", "Target"]

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


KNOWN_FORM = "CLAUSE: REASON [LINK]"
"""A line of a known-failures file: a clause ID (or ``model``), a colon, why the store
fails it, and optionally, as the line's last word, an http(s) link (the issue)."""


@dataclass(frozen=True)
class KnownFailure:
    """One clause that a store is declared to fail, and why: ``line`` is where the file says so."""

    clause: str
    reason: str
    link: str | None
    line: int


@dataclass(frozen=True)
class KnownFailures:
    """The clauses of a known-failures file (``--storekit-known-failures``), by ID.

    One clause per line, as ``get.2: pickles sessions, so tuples stay tuples
    https://example.org/issues/7``; blank lines and lines starting with ``#`` are
    ignored. ``path`` is the file as the user named it, for the messages that ask to
    edit it.
    """

    path: str
    entries: dict[str, KnownFailure]

    @classmethod
    def parse(cls, text: str, path: str) -> KnownFailures:
        """The entries of ``text``; ValueError naming the line that is not one."""
        from storekit.clauses import STATEFUL, by_id

        entries: dict[str, KnownFailure] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            clause, colon, rest = (part.strip() for part in line.partition(":"))
            if not colon or not clause or " " in clause:
                raise ValueError(f"line {number}: expected {KNOWN_FORM!r}, got {raw!r}")
            if clause != STATEFUL:
                try:
                    by_id(clause)
                except KeyError as exc:
                    raise ValueError(f"line {number}: {exc.args[0]}") from None
            if clause in entries:
                first = entries[clause].line
                raise ValueError(f"line {number}: {clause} is declared twice (first on line {first})")
            words = rest.split()
            link = words.pop() if words and words[-1].startswith(("https://", "http://")) else None
            if not words:
                raise ValueError(f"line {number}: {clause} has no reason; say why it fails: {KNOWN_FORM!r}")
            entries[clause] = KnownFailure(clause, " ".join(words), link, number)
        return cls(path, entries)

    @classmethod
    def read(cls, path: str, relative_to: Path | None = None) -> KnownFailures:
        """Parse the UTF-8 file at ``path`` (relative to ``relative_to``); ValueError saying
        what is wrong with it, OSError if it cannot be read."""
        file = Path(path) if relative_to is None else relative_to / path
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        return cls.parse(text, path)

    def get(self, clause: str) -> KnownFailure | None:
        return self.entries.get(clause)
