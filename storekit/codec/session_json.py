"""A session as JSON: :func:`encode_session` and :func:`decode_session`, the fast path first.

A store built on these passes set.2, set.3, set.4 and ttl.6 without further
thought. Each call asks :mod:`storekit.codec.fast_json` first, which answers
only where its answer is the strict path's, and otherwise goes to
:mod:`storekit.codec.strict_json`, which decides and names the problem.
"""

from __future__ import annotations

from typing import Any

from storekit.codec import fast_json
from storekit.codec.strict_json import DEFAULT_MAX_SESSION_BYTES, decode_strictly, encode_strictly

__all__ = ["decode_session", "encode_session"]


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
        data = fast_json.encode(session, max_bytes)
        if data is not None:
            return data
    return encode_strictly(session, max_bytes=max_bytes)


def decode_session(data: bytes | bytearray | str) -> dict[str, Any]:
    """Decode what :func:`encode_session` produced, or any JSON object in UTF-8.

    The result equals ``json.loads(data)``'s, and so do the errors, with one
    exception: nesting deeper than ``json.loads`` can follow on the current
    stack (about 1,000 levels) is read up to orjson's limit of 1,024. orjson
    decodes where it is installed and agrees with json; where it may not (a
    run of 19 digits or more could be an int beyond 64 bits, which orjson
    turns into a float), or where it refuses the text, json decides.
    """
    found = fast_json.decode(data)
    return decode_strictly(data) if found is None else found
