"""Session IDs: what a store can keep as a key (sid.1, sid.2, sid.3)."""

from __future__ import annotations

from storekit.errors import InvalidSessionId, cut

__all__ = ["MAX_SID_LENGTH", "check_sid"]

MAX_SID_LENGTH = 1024
"""Longer sids are rejected; sid.2 asks for 256 and express-session uses 32."""


def check_sid(sid: object, *, max_length: int = MAX_SID_LENGTH) -> str:
    """Return ``sid`` if it is a session ID a store can keep, else raise.

    A sid must be a non-empty ``str`` (sid.1) of at most ``max_length``
    characters that encodes to UTF-8 (no lone surrogates), so that every
    backend, from a dict to a Redis key to a cookie, can hold it (sid.3).
    """
    if not isinstance(sid, str):
        raise InvalidSessionId(
            f"session ID must be a str, got {type(sid).__name__} {cut(sid)}; "
            "pass the sid as text, e.g. str(sid)",
            sid,
        )
    if not sid:
        raise InvalidSessionId("session ID must not be empty; generate one with secrets.token_urlsafe()", sid)
    if len(sid) > max_length:
        raise InvalidSessionId(
            f"session ID {cut(sid)} is {len(sid)} characters; this store accepts at most {max_length}",
            sid,
        )
    try:
        sid.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSessionId(
            f"session ID {cut(sid)} contains a lone surrogate and is not valid Unicode text", sid
        ) from None
    return sid
