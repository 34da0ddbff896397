"""The strict path: what a session's JSON is, decided by walking the session and by json itself.

``json.dumps`` quietly turns ``{1: "a"}`` into ``{"1": "a"}``, writes ``NaN``
that no other JSON parser reads, and happily encodes lone surrogates that no
UTF-8 backend can store. :func:`encode_strictly` walks the session first and
rejects all of that with :class:`~storekit.errors.InvalidSessionData`, naming
where in the session the problem is (set.2, set.3, set.4). Its answer, bytes or
error, is the answer: the fast paths in :mod:`storekit.codec.fast_json` only
ever give the same bytes or give up.
"""

from __future__ import annotations

import json
import math
from typing import Any

from storekit.errors import InvalidSessionData, cut

__all__ = ["DECODER", "DEFAULT_MAX_SESSION_BYTES", "MAX_DEPTH", "decode_strictly", "encode_strictly"]

DEFAULT_MAX_SESSION_BYTES = 1 << 20
"""set.4: sessions up to 1 MiB of encoded JSON must be kept."""

MAX_DEPTH = 512
"""Containers nested deeper than this are rejected (set.3 asks for 64)."""

DECODER = json.JSONDecoder()
"""json.loads' own decoder (no hooks, strict): the one both decoding paths use."""

_SCALARS = (str, int, float, bool, type(None))


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


def encode_strictly(session: object, *, max_bytes: int = DEFAULT_MAX_SESSION_BYTES) -> bytes:
    """:func:`~storekit.codec.encode_session` without the fast path: walk the session, then encode."""
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


def decode_strictly(data: bytes | bytearray | str) -> dict[str, Any]:
    """``json.loads(data)``, as :data:`DECODER` reads UTF-8 text, if it is a JSON object; its errors else."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    session = DECODER.decode(text)
    if not isinstance(session, dict):
        raise InvalidSessionData(f"stored data is not a JSON object: {cut(data)}")
    return session
