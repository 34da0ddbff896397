"""The errors a store raises under the storekit contract.

Every error derives from :class:`StoreError`, and each also derives from the
builtin that a caller would naturally catch, so ``except ValueError`` around a
``set`` still works for code that has never heard of storekit.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InvalidSessionData", "InvalidSessionId", "StoreError", "StoreUnavailable", "cut"]


def cut(value: object, limit: int = 80) -> str:
    """``repr(value)``, shortened to about ``limit`` characters for messages."""
    try:
        text = repr(value)
    except Exception as exc:  # a hostile __repr__ must not hide the real error
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}...{text[-10:]} ({len(text)} chars)"


class StoreError(Exception):
    """The root of every error storekit and conforming stores raise."""


class InvalidSessionId(StoreError, ValueError):
    """A session ID the store cannot accept (clauses sid.1 and sid.3).

    ``.sid`` holds the rejected value.
    """

    def __init__(self, message: str, sid: object = None) -> None:
        super().__init__(message)
        self.sid = sid


class InvalidSessionData(StoreError, ValueError):
    """A session the store cannot keep: not a JSON object, too large, or with a
    malformed ``cookie.expires`` (clauses set.2, set.4 and ttl.6).

    ``.path`` is where in the session the problem lies, as a list of keys and
    indexes (empty for the session as a whole).
    """

    def __init__(self, message: str, path: list[Any] | None = None) -> None:
        super().__init__(message)
        self.path = list(path or [])


class StoreUnavailable(StoreError, ConnectionError):
    """The store's backend cannot be reached (clause errors.1).

    Raised within the store's timeout, never after hanging, and never in place
    of an answer: a store that cannot ask its backend raises this rather than
    returning ``None``.
    """
