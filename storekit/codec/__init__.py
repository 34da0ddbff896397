"""Strict JSON encoding, session-ID checks and expiry parsing.

These are the helpers every conforming store needs and most get subtly wrong,
by concern: :mod:`~storekit.codec.sid` (session IDs),
:mod:`~storekit.codec.expiry` (durations, ``cookie.expires``, the cookie
JSON) and :mod:`~storekit.codec.session_json` (a session as JSON, on the
fast paths of :mod:`~storekit.codec.fast_json` where they give the answer
of :mod:`~storekit.codec.strict_json`).
"""

from storekit.codec.expiry import (
    check_seconds,
    cookie_json,
    expires_in,
    format_expires,
    parse_expires,
    session_expiry,
)
from storekit.codec.session_json import decode_session, encode_session
from storekit.codec.sid import MAX_SID_LENGTH, check_sid
from storekit.codec.strict_json import DEFAULT_MAX_SESSION_BYTES, MAX_DEPTH, encode_strictly

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
