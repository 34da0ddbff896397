"""Durations and expiry: positive seconds, RFC 3339 ``cookie.expires``, express-session's cookie JSON."""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from storekit.errors import InvalidSessionData, cut

__all__ = ["check_seconds", "cookie_json", "expires_in", "format_expires", "parse_expires", "session_expiry"]


def check_seconds(
    name: str, value: object, *, none: str | None = None, zero: bool = False, hint: str = ""
) -> float | None:
    """Return ``value`` as float seconds if it is a finite number above zero, else raise ValueError.

    The one check of every duration storekit takes (a TTL, a max age, a
    timeout). ``none`` says what ``None`` means where ``None`` is accepted
    ("no expiry"); ``zero`` accepts 0 as well. The message names ``name``,
    quotes the value, and ends with ``hint``.
    """
    if value is None and none is not None:
        return None
    if (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value > 0 or (zero and value == 0))
    ):
        return float(value)
    wanted = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
    if none is not None:
        wanted += f", or None ({none})"
    raise ValueError(f"{name} must be {wanted}; got {cut(value)}{hint}")


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))\Z",
    re.ASCII,
)


def parse_expires(value: object) -> float:
    """Parse an RFC 3339 timestamp with an offset into POSIX seconds.

    ``"2026-11-22T10:00:00.000Z"`` (what express-session writes) and
    ``"2026-11-22T11:00:00+01:00"`` are accepted; a naive timestamp, a number
    or anything else raises InvalidSessionData (ttl.6). A session keeps its
    expiry over many saves, so parsed strings are remembered.
    """
    if isinstance(value, str):
        return _parse_rfc3339(value)
    raise InvalidSessionData(
        f"cookie.expires must be an RFC 3339 string such as '2026-11-22T10:00:00.000Z', "
        f"got {type(value).__name__} {cut(value)}; use storekit.codec.format_expires()",
        ["cookie", "expires"],
    )


@functools.lru_cache(maxsize=4096)
def _parse_rfc3339(value: str) -> float:
    match = _RFC3339.match(value)
    if match is None:
        hint = " (it has no UTC offset: add 'Z' or '+00:00')" if _looks_naive(value) else ""
        raise InvalidSessionData(
            f"cookie.expires {cut(value)} is not an RFC 3339 timestamp with an offset{hint}; "
            "write it as '2026-11-22T10:00:00.000Z'",
            ["cookie", "expires"],
        )
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta(0)
        if not zulu:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            if sign == "-":
                offset = -offset
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            tzinfo=timezone(offset),
        )  # fmt: skip
    except ValueError as exc:
        raise InvalidSessionData(
            f"cookie.expires {cut(value)} is not a valid date and time ({exc})",
            ["cookie", "expires"],
        ) from None
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def _looks_naive(value: str) -> bool:
    return re.fullmatch(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d+)?)?", value) is not None


def format_expires(when: float) -> str:
    """Format POSIX seconds as express-session does: UTC, milliseconds, ``Z``."""
    millis = math.floor(when * 1000)
    moment = datetime.fromtimestamp(millis // 1000, timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def session_expiry(session: dict[str, Any]) -> float | None:
    """The POSIX time at which ``session`` expires, from ``cookie.expires``.

    ``None`` when the session has no cookie, no ``expires`` or ``expires: null``:
    such a session lives for the store's default TTL (ttl.5).
    """
    cookie = session.get("cookie")
    if cookie is None:
        return None
    if not isinstance(cookie, dict):
        raise InvalidSessionData(
            f"session['cookie'] must be an object holding 'expires', got "
            f"{type(cookie).__name__} {cut(cookie)}; express-session reads it as the cookie",
            ["cookie"],
        )
    expires = cookie.get("expires")
    return None if expires is None else parse_expires(expires)


def cookie_json(
    *,
    max_age: float | None,
    expires: float | None,
    http_only: bool = True,
    path: str = "/",
    secure: bool = False,
    domain: str | None = None,
    same_site: str | None = None,
) -> dict[str, Any]:
    """express-session's ``cookie.toJSON()``: the one writer of a stored session's ``cookie``.

    ``max_age`` is seconds (``originalMaxAge`` is written in milliseconds),
    ``expires`` POSIX seconds; ``None`` for either is written as ``null`` (a
    browser-session cookie). The keys express-session leaves undefined stay
    out: ``secure`` when False, ``domain`` and ``sameSite`` when None.
    """
    data: dict[str, Any] = {
        "originalMaxAge": None if max_age is None else round(max_age * 1000),
        "expires": None if expires is None else format_expires(expires),
    }
    if secure:
        data["secure"] = True
    data["httpOnly"] = http_only
    if domain is not None:
        data["domain"] = domain
    data["path"] = path
    if same_site is not None:
        data["sameSite"] = same_site
    return data


def expires_in(seconds: float, *, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """A session cookie, shaped as express-session writes it, expiring in ``seconds``.

    ``session["cookie"] = expires_in(3600)`` gives a session one hour to live.
    """
    return cookie_json(max_age=seconds, expires=clock() + seconds)
