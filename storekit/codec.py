"""Strict JSON encoding, session-ID checks and expiry parsing.

These are the helpers every conforming store needs and most get subtly wrong:
``json.dumps`` quietly turns ``{1: "a"}`` into ``{"1": "a"}``, writes ``NaN``
that no other JSON parser reads, and happily encodes lone surrogates that no
UTF-8 backend can store. The functions here reject all of that with
:class:`~storekit.errors.InvalidSessionData`, naming where in the session the
problem is, so that a store built on them passes set.2, set.3, set.4 and ttl.6
without further thought.
"""

from __future__ import annotations

import functools
import json
import json.scanner
import marshal
import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from storekit.errors import InvalidSessionData, InvalidSessionId, cut

_orjson_dumps: Callable[..., bytes] | None
_orjson_loads: Callable[[bytes], Any] | None
try:
    from orjson import OPT_PASSTHROUGH_DATACLASS, OPT_PASSTHROUGH_DATETIME, OPT_PASSTHROUGH_SUBCLASS
    from orjson import dumps as _orjson_dumps
    from orjson import loads as _orjson_loads

    # refuse (there is no default) what orjson would otherwise write on its own terms
    _ORJSON_REFUSE = OPT_PASSTHROUGH_DATACLASS | OPT_PASSTHROUGH_DATETIME | OPT_PASSTHROUGH_SUBCLASS
except ImportError:  # an interpreter orjson does not support: the json module does the work
    _orjson_dumps = _orjson_loads = None
    _ORJSON_REFUSE = 0

__all__ = [
    "DEFAULT_MAX_SESSION_BYTES",
    "MAX_DEPTH",
    "MAX_SID_LENGTH",
    "check_seconds",
    "check_sid",
    "cookie_json",
    "decode_session",
    "encode_session",
    "encode_strictly",
    "expires_in",
    "format_expires",
    "parse_expires",
    "session_expiry",
]

DEFAULT_MAX_SESSION_BYTES = 1 << 20
"""set.4: sessions up to 1 MiB of encoded JSON must be kept."""

MAX_DEPTH = 512
"""Containers nested deeper than this are rejected (set.3 asks for 64)."""

MAX_SID_LENGTH = 1024
"""Longer sids are rejected; sid.2 asks for 256 and express-session uses 32."""

_SCALARS = (str, int, float, bool, type(None))


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


def _where(path: list[Any]) -> str:
    return "the session" if not path else "session" + "".join(f"[{p!r}]" for p in path)


def _validate(session: object) -> None:
    """Walk ``session`` and raise InvalidSessionData at the first non-JSON part."""
    if not isinstance(session, dict):
        raise InvalidSessionData(
            f"a session must be a dict (a JSON object), got {type(session).__name__} {cut(session)}"
        )
    stack: list[tuple[object, list[Any]]] = [(session, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _SCALARS):
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidSessionData(
                    f"{_where(path)} is {value!r}, which JSON cannot represent; "
                    "store a finite number or None",
                    path,
                )
            continue
        if len(path) >= MAX_DEPTH:
            raise InvalidSessionData(
                f"{_where(path[:3])}... is nested more than {MAX_DEPTH} levels deep (or contains "
                "itself); flatten the data",
                path,
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidSessionData(
                        f"{_where(path)} has key {cut(key)} of type {type(key).__name__}; "
                        "JSON object keys must be str (json.dumps would silently turn it into "
                        f"{json.dumps(str(key))})",
                        [*path, key],
                    )
                stack.append((item, [*path, key]))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, [*path, index]) for index, item in enumerate(value))
        else:
            raise InvalidSessionData(
                f"{_where(path)} is a {type(value).__name__} ({cut(value)}), which is not a JSON "
                "value; convert it to str, int, float, bool, None, list or dict before saving",
                path,
            )


_DECODER = json.JSONDecoder()
_scan_once: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_c_encode_basestring: Any = getattr(json.encoder, "c_encode_basestring", None)
_encode_chunks: Callable[[object, int], list[str]]
if _c_make_encoder is not None and _c_encode_basestring is not None:
    # The C encoder itself, built once (JSONEncoder.encode builds one per call). Arguments:
    # markers (None: no circular check), default, string encoder, indent, key separator,
    # item separator, sort_keys, skipkeys, allow_nan.
    _encode_chunks = _c_make_encoder(None, _refuse, _c_encode_basestring, None, ":", ",", False, False, False)
else:  # an interpreter without the C accelerator
    _encoder = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
    )

    def _encode_chunks(value: object, _level: int) -> list[str]:
        return [_encoder.encode(value)]


_MAYBE_CONVERTED_KEY = re.compile(r'":(?<=[0-9el]":)(?:(?<=[0-9]":)|(?<="true":)|(?<="false":)|(?<="null":))')
"""Where json.dumps may have written an int, float, bool or None key, the one thing it
silently changes (it raises for every other non-JSON value): a key whose last character is
a digit, or a key ``true``, ``false`` or ``null``. The pattern starts with the literal
``":`` that ends every key, so the scan jumps from key to key and looks further only at
keys ending in a digit, ``e`` or ``l``. A match that is really a str key costs the precise
pattern below; only a key that looks converted costs the strict path."""
_CONVERTED_KEY = re.compile(r'"(?:-?[0-9][0-9.eE+-]*|true|false|null)":')


def encode_session(session: object, *, max_bytes: int = DEFAULT_MAX_SESSION_BYTES) -> bytes:
    """Encode a session as compact UTF-8 JSON, or raise InvalidSessionData.

    Rejects what is not a JSON object (set.2), sessions larger than
    ``max_bytes`` (set.4), and strings that are not valid Unicode. What comes
    back from :func:`decode_session` equals ``json.loads(json.dumps(session))``.

    The common case takes orjson's path where orjson is installed; what that
    gives up on (subclasses such as OrderedDict or IntEnum, ints beyond 64
    bits, and values that are not JSON) takes json's C encoder. Each path
    vouches for its output or gives up; what both give up on goes through
    :func:`encode_strictly`, which accepts it or names the problem.
    """
    if type(session) is dict:
        data = None if _orjson_dumps is None else _encode_with_orjson(session, max_bytes)
        if data is None:
            data = _encode_with_json(session, max_bytes)
        if data is not None:
            return data
    return encode_strictly(session, max_bytes=max_bytes)


def _encode_with_orjson(session: dict[Any, Any], max_bytes: int) -> bytes | None:
    """orjson's encoding of ``session`` if json would accept the session and
    keep it within ``max_bytes``, else None.

    orjson writes values json refuses: UUIDs and enum members always,
    dataclasses, datetimes and subclasses of the builtin types unless told
    to pass them to a ``default`` (there is none here, so they raise). marshal
    writes the builtin types and refuses every other type, subclasses
    included, except an object that exposes a buffer, which orjson refuses
    in turn; so once both have taken the session (marshal's output is thrown
    away), orjson has written the value json would write. Two differences
    remain. A non-finite float comes out as ``null``, so a text with
    ``null`` in it has its floats checked. And a float's text may differ
    from ``repr``'s: ``1e-7`` for ``1e-07``, one byte shorter, at most, and
    only in the exponent form, so a text whose length plus its count of
    ``e`` is over ``max_bytes`` is left to json, which decides the size
    exactly as the strict path does. On Python 3.12 and later, where any
    class can expose a buffer, an enum member whose class does so would be
    written as its value instead of refused.

    orjson's bytes keep the buffer they were written into (4 KiB at least),
    which a store that keeps them would hold per session: what is returned
    is a copy of its own size.
    """
    assert _orjson_dumps is not None
    try:
        marshal.dumps(session)
        data = _orjson_dumps(session, option=_ORJSON_REFUSE)
    except (TypeError, ValueError):
        return None
    size = len(data)
    if size > max_bytes // 2 and size + data.count(b"e") > max_bytes:  # (the count is at most the size)
        return None
    if b"null" in data and not _floats_finite(session):
        return None
    return memoryview(data).tobytes()


def _floats_finite(session: dict[Any, Any]) -> bool:
    """Whether every float in ``session`` (builtin types only, no cycles) is finite."""
    stack: list[Any] = [session]
    while stack:
        container = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is float:
                if item - item != 0.0:  # inf - inf and nan - nan are nan
                    return False
            elif kind is dict or kind is list or kind is tuple:
                stack.append(item)
    return True


def _encode_with_json(session: dict[Any, Any], max_bytes: int) -> bytes | None:
    """json's C encoder's output for ``session``, unless it is over
    ``max_bytes``, a key may have been converted or the nesting may be too
    deep; then None."""
    try:
        text = "".join(_encode_chunks(session, 0))
        data = text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        return None
    if len(data) > max_bytes:
        return None
    if _MAYBE_CONVERTED_KEY.search(text) is not None and _CONVERTED_KEY.search(text) is not None:
        return None
    # nesting n deep takes 2n brackets: only a long text can be too deep
    if len(text) >= 2 * MAX_DEPTH and text.count("{") + text.count("[") >= MAX_DEPTH:
        return None
    return data


def encode_strictly(session: object, *, max_bytes: int = DEFAULT_MAX_SESSION_BYTES) -> bytes:
    """:func:`encode_session` without the fast path: walk the session, then encode."""
    _validate(session)
    try:
        text = json.dumps(session, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        raise InvalidSessionData(f"the session cannot be encoded as JSON: {cut(session)}") from None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidSessionData(
            "the session contains a string with a lone surrogate "
            f"({cut(exc.object[max(0, exc.start - 10) : exc.end + 10])}), which is not valid Unicode; "
            "decode bytes with errors='replace' or drop the character"
        ) from None
    if len(data) > max_bytes:
        raise InvalidSessionData(
            f"the session encodes to {len(data)} bytes of JSON; this store keeps at most "
            f"{max_bytes} bytes per session (keep large data elsewhere and store a reference)"
        )
    return data


_DIGITS = bytes(48 if 48 <= i <= 57 else 120 for i in range(256))  # digits to "0", the rest to "x"
_LONG_NUMBER = b"0" * 19


def decode_session(data: bytes | bytearray | str) -> dict[str, Any]:
    """Decode what :func:`encode_session` produced, or any JSON object in UTF-8.

    The result equals ``json.loads(data)``'s, and so do the errors, with one
    exception: nesting deeper than ``json.loads`` can follow on the current
    stack (about 1,000 levels) is read up to orjson's limit of 1,024. orjson
    decodes where it is installed and agrees with json; where it may not (a
    run of 19 digits or more could be an int beyond 64 bits, which orjson
    turns into a float), or where it refuses the text, json decides.
    """
    if _orjson_loads is not None:
        found = _decode_with_orjson(data)
        if found is not None:
            return found
    return _decode_with_json(data)


def _decode_with_orjson(data: object) -> dict[str, Any] | None:
    assert _orjson_loads is not None
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            return None
    elif isinstance(data, (bytes, bytearray)):  # what json.loads takes besides str
        raw = bytes(data)  # no copy of a bytes object
    else:
        return None
    if _LONG_NUMBER in raw.translate(_DIGITS):
        return None
    try:
        found = _orjson_loads(raw)
    except ValueError:
        return None
    return found if type(found) is dict else None


def _decode_with_json(data: bytes | bytearray | str) -> dict[str, Any]:
    """Compact JSON, as encode_session writes it, goes straight to the scanner
    inside ``json.loads``; anything else (whitespace around it, a syntax
    error, not an object) takes ``json.loads``'s own path and its errors."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    try:
        found, end = _scan_once(text, 0)
    except (StopIteration, ValueError, RecursionError):
        pass
    else:
        if end == len(text) and type(found) is dict:
            return found
    session = _DECODER.decode(text)
    if not isinstance(session, dict):
        raise InvalidSessionData(f"stored data is not a JSON object: {cut(data)}")
    return session


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
