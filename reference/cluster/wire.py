"""The ClusterStore wire protocol: every frame's layout, as bytes, with no sockets.

No other module knows a size or an offset below: they pack and unpack frames
through the functions here.

Every message is a frame: a 4-byte big-endian length, then that many bytes.

Handshake (before it, frames are at most :data:`MAX_HANDSHAKE_FRAME` bytes;
:mod:`~storekit.reference.cluster.handshake` runs the steps):

1. server -> client ``HELLO``: ``MAGIC`` + a 32-byte server nonce;
2. client -> server ``AUTH``: a 32-byte client nonce + HMAC-SHA256 over both
   nonces with the master's secret;
3. server -> client ``WELCOME``: an ``OK`` reply carrying HMAC-SHA256 over
   both nonces with another label, proving the server knows the secret too;
   or an ``ERROR`` reply, and the server closes the connection.

Requests: ``op`` (1 byte), namespace length (1), sid length (2), the UTF-8
namespace, the UTF-8 sid, and for set, replace, touch and renew a value: a 6-byte expiry
followed by the JSON. The expiry is milliseconds since the epoch, big-endian,
so that values compare with ``value[EXPIRY] <= now`` and :data:`NEVER` (all
ones) means "no expiry". What the server stores for a session is exactly the
value of a set request, one ``bytes`` object; :data:`EXPIRY` and :data:`JSON`
slice it. A touch keeps the session's JSON as it was and appends the touch's
JSON (``{"cookie": ...}``), its length (4 bytes) and a zero byte, which no
JSON object ends with (:func:`touched_value`); a reader takes the cookie from
the appended JSON (:func:`split_json`). A replace is a set that the server
carries out only over a live session: ``OK`` if it did, ``MISSING`` if not.
A renew carries a touch's value and is answered as a get after that touch:
``FOUND`` with the renewed value, or ``MISSING``.

Replies: a status byte, then its payload (``FOUND``: a value; ``COUNT``:
8-byte count; ``ITEMS``: repeated sid length (2), sid, value length (4),
value; ``ERROR``: a code byte and a UTF-8 message). The codes:
:data:`ERR_BAD_REQUEST`, :data:`ERR_INVALID_DATA` (a value the server does not
store), :data:`ERR_DENIED` (the handshake failed) and :data:`ERR_UNAVAILABLE`
(a change the master cannot persist now, and did not make).
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import struct
from typing import Final, NamedTuple, TypeAlias

from storekit.codec import MAX_SID_LENGTH

__all__ = [
    "ALL",
    "CLEAR",
    "COUNT",
    "DESTROY",
    "ERROR",
    "ERR_BAD_REQUEST",
    "ERR_DENIED",
    "ERR_INVALID_DATA",
    "ERR_UNAVAILABLE",
    "EXPIRY",
    "EXPIRY_BYTES",
    "FOUND",
    "GET",
    "ITEMS",
    "JSON",
    "LENGTH",
    "MAGIC",
    "MAX_HANDSHAKE_FRAME",
    "MAX_NAMESPACE_BYTES",
    "MAX_SID_BYTES",
    "MISSING",
    "MISSING_FRAME",
    "NEVER",
    "NEVER_BYTES",
    "NONCE_BYTES",
    "OK",
    "OK_FRAME",
    "RENEW",
    "REPLACE",
    "SET",
    "TOUCH",
    "FrameTooLong",
    "Request",
    "RequestTuple",
    "WireError",
    "auth_frame",
    "check_auth",
    "check_welcome",
    "count_frame",
    "decode_count",
    "decode_error",
    "decode_items",
    "decode_request",
    "encode_expiry",
    "encode_request",
    "error_frame",
    "expiry_millis",
    "found_frame",
    "found_header",
    "found_json",
    "frame",
    "frame_size",
    "hello_frame",
    "item_parts",
    "items_reply",
    "json_length",
    "max_request_frame",
    "millis_expiry",
    "next_request",
    "parse_hello",
    "reply_payload",
    "reply_status",
    "sid_problem",
    "split_json",
    "take_frame",
    "touched_value",
    "value_problem",
    "welcome_frame",
]

Buffer: TypeAlias = "bytes | bytearray | memoryview"
RequestTuple: TypeAlias = "tuple[int, bytes, bytes, bytes, int]"  # what next_request returns

MAGIC: Final = b"SKC1"
NONCE_BYTES: Final = 32
MAC_BYTES: Final = 32
MAX_HANDSHAKE_FRAME: Final = 64
EXPIRY_BYTES: Final = 6
NEVER: Final = (1 << 48) - 1
"""The expiry of a session that never expires, in milliseconds."""
NEVER_BYTES: Final = NEVER.to_bytes(EXPIRY_BYTES, "big")
EXPIRY: Final = slice(0, EXPIRY_BYTES)
"""The expiry of a stored value (``value[EXPIRY]``), comparable as bytes."""
JSON: Final = slice(EXPIRY_BYTES, None)
"""The JSON of a stored value (``value[JSON]``)."""

GET, SET, DESTROY, TOUCH, LENGTH, CLEAR, ALL, REPLACE, RENEW = range(1, 10)
OK, FOUND, MISSING, COUNT, ITEMS, ERROR = range(6)
ERR_BAD_REQUEST, ERR_INVALID_DATA, ERR_DENIED, ERR_UNAVAILABLE = range(1, 5)

_PREFIX = struct.Struct("!I")  # the length of the body that follows
_REQUEST = struct.Struct("!IBBH")  # length, op, namespace length, sid length
_REPLY = struct.Struct("!IB")  # length, status
_ITEM_SID = struct.Struct("!H")
_ITEM_VALUE = struct.Struct("!I")
_COUNT = struct.Struct("!Q")
_HEAD: Final = _REQUEST.size - _PREFIX.size  # a request body's fixed part
_STATUS: Final = _PREFIX.size  # where a reply's status byte is
_FOUND_JSON: Final = _REPLY.size + EXPIRY_BYTES  # where a FOUND reply's JSON starts
_MAX_BODY: Final = 0xFFFF_FFFF
_MAX_PAYLOAD: Final = _MAX_BODY - 0xFF
_MAX_ERROR_TEXT: Final = 4000

_NO_SID, _SID, _SID_VALUE = range(3)
_SHAPES: Final = {
    GET: _SID,
    DESTROY: _SID,
    SET: _SID_VALUE,
    TOUCH: _SID_VALUE,
    REPLACE: _SID_VALUE,
    RENEW: _SID_VALUE,
    LENGTH: _NO_SID,
    CLEAR: _NO_SID,
    ALL: _NO_SID,
}

MAX_NAMESPACE_BYTES: Final = 255
MAX_SID_BYTES: Final = 0xFFFF


class WireError(ValueError):
    """A frame that breaks the protocol; the connection that sent it is closed."""


class FrameTooLong(WireError):
    """A request whose prefix announces more than the server takes: it is refused
    with an error reply and its bytes are skipped, so the connection lives on."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(
            f"a request of {length} bytes exceeds the cluster server's limit of {limit}: the session "
            "is larger than the server keeps (raise max_session_bytes in setup())"
        )
        self.length = length
        self.frame_bytes = _PREFIX.size + length


class Request(NamedTuple):
    op: int
    namespace: bytes
    sid: bytes
    value: bytes  # expiry + JSON for SET, REPLACE, TOUCH and RENEW, else b""


# Frames


def frame(body: bytes) -> bytes:
    """``body`` behind its length prefix."""
    return _PREFIX.pack(len(body)) + body


def frame_size(buffer: Buffer, filled: int) -> int:
    """The size of the frame at the start of ``buffer``, prefix included, once
    the prefix is among the first ``filled`` bytes; 0 before."""
    if filled < _PREFIX.size:
        return 0
    length: int = _PREFIX.unpack_from(buffer)[0]
    return _PREFIX.size + length


def take_frame(buffer: bytearray, limit: int) -> bytes | None:
    """Remove the first frame from ``buffer`` and return it whole, once it is
    all there (None before); WireError as soon as its prefix announces a body
    of more than ``limit`` bytes."""
    size = frame_size(buffer, len(buffer))
    if not size:
        return None
    if size - _PREFIX.size > limit:
        raise WireError(f"a frame announces {size - _PREFIX.size} bytes; at most {limit} are allowed here")
    if len(buffer) < size:
        return None
    whole = bytes(buffer[:size])
    del buffer[:size]
    return whole


def max_request_frame(max_session_bytes: int) -> int:
    """The largest request body a server with this session limit accepts."""
    return _HEAD + MAX_NAMESPACE_BYTES + MAX_SID_BYTES + EXPIRY_BYTES + max_session_bytes + 64


# Expiries and stored values


def encode_expiry(expires: float | None) -> bytes:
    """POSIX seconds (or ``None`` for never) as the 6-byte wire expiry."""
    if expires is None:
        return NEVER_BYTES
    return millis_expiry(min(max(round(expires * 1000), 0), NEVER - 1))


def millis_expiry(millis: int) -> bytes:
    """Milliseconds since the epoch as the 6-byte wire expiry."""
    return millis.to_bytes(EXPIRY_BYTES, "big")


def expiry_millis(expiry: bytes) -> int:
    """A wire expiry as milliseconds since the epoch."""
    return int.from_bytes(expiry, "big")


def json_length(value: bytes) -> int:
    """The bytes of JSON in a stored value."""
    return len(value) - EXPIRY_BYTES


_OPEN, _CLOSE = ord("{"), ord("}")
_utf8 = codecs.utf_8_decode


def value_problem(value: bytes) -> str | None:
    """Why the JSON of a stored value cannot be the JSON object a client wrote, by
    a cheap look (it is compact, so its first byte is ``{`` and its last ``}``,
    and it is UTF-8); None when it passes. Not a parse: a client that decodes
    what passed must still expect an error."""
    if len(value) < EXPIRY_BYTES + 2 or value[EXPIRY_BYTES] != _OPEN or value[-1] != _CLOSE:
        return "the session is not a compact JSON object (its JSON must start with '{' and end with '}')"
    if not value[JSON].isascii():
        try:
            _utf8(memoryview(value)[JSON], "strict", True)
        except UnicodeDecodeError as exc:
            return f"the session's JSON is not UTF-8 ({exc.reason} at byte {exc.start})"
    return None


_TOUCHED: Final = 0  # the last byte of a touched value; a JSON object ends with "}"
_PATCH_LENGTH = struct.Struct("!I")
_TRAILER: Final = _PATCH_LENGTH.size + 1


def split_json(data: bytes) -> tuple[bytes, bytes | None]:
    """The session's JSON and the JSON of the touch that renewed it (None if
    none) in the JSON part of a stored value (``value[JSON]``)."""
    if not data or data[-1] != _TOUCHED or len(data) < _TRAILER:
        return data, None
    end = len(data) - _TRAILER
    (length,) = _PATCH_LENGTH.unpack_from(data, end)
    if length > end:
        return data, None  # no touch's trailer: let the JSON decoder say what is wrong
    return data[: end - length], data[end - length : end]


def touched_value(expiry: bytes, value: bytes, patch: bytes) -> bytes:
    """The stored ``value`` renewed by a touch: the new ``expiry``, the
    session's JSON copied as it is (neither parsed nor encoded again), and the
    touch's JSON ``patch`` in place of any earlier touch's."""
    data = memoryview(value)[JSON]
    end = len(data)
    if end >= _TRAILER and data[-1] == _TOUCHED:
        end -= _TRAILER + _PATCH_LENGTH.unpack_from(data, end - _TRAILER)[0]
    return b"".join((expiry, data[:end], patch, _PATCH_LENGTH.pack(len(patch)), bytes((_TOUCHED,))))


def sid_problem(sid: bytes) -> str | None:
    """Why ``sid`` is no sid a client can read back (UTF-8 of at most
    ``MAX_SID_LENGTH`` characters, no lone surrogates); None when it is one."""
    if len(sid) <= MAX_SID_LENGTH and sid.isascii():
        return None
    try:
        text = sid.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the sid is not UTF-8 ({exc.reason} at byte {exc.start})"
    if len(text) > MAX_SID_LENGTH:
        return f"the sid is {len(text)} characters; clients accept at most {MAX_SID_LENGTH}"
    return None


# Requests


def encode_request(
    op: int, namespace: bytes, sid: bytes = b"", value: bytes = b"", payload: bytes = b""
) -> bytes:
    """One request frame; for SET and TOUCH, ``value`` is the expiry and
    ``payload`` the JSON (or ``value`` is both, already joined)."""
    body = _HEAD + len(namespace) + len(sid) + len(value) + len(payload)
    return b"".join((_REQUEST.pack(body, op, len(namespace), len(sid)), namespace, sid, value, payload))


def next_request(buffer: Buffer, offset: int, filled: int, limit: int) -> RequestTuple | None:
    """The request frame at ``offset`` in the first ``filled`` bytes of
    ``buffer`` as ``(op, namespace, sid, value, end)``, ``end`` being where the
    next frame starts; None until the frame is all there. WireError for a
    malformed frame, and as soon as a prefix announces a body of more than
    ``limit`` bytes. The one request decoder; the server's hot path."""
    if filled - offset < _REQUEST.size:  # no whole header yet; what does the prefix say?
        if filled - offset >= _PREFIX.size:
            (length,) = _PREFIX.unpack_from(buffer, offset)
            if length > limit:
                raise _too_long(length, limit)
            if length < _HEAD and offset + _PREFIX.size + length <= filled:
                raise _too_short(length)
        return None
    length, op, ns_len, sid_len = _REQUEST.unpack_from(buffer, offset)
    if length > limit:
        raise _too_long(length, limit)
    end = offset + _PREFIX.size + length
    if end > filled:
        return None
    if length < _HEAD:
        raise _too_short(length)
    ns_start = offset + _REQUEST.size
    sid_start = ns_start + ns_len
    sid_end = sid_start + sid_len
    if sid_end > end:
        raise WireError(f"a request announces {ns_len + sid_len} bytes of names but carries {length - _HEAD}")
    shape = _SHAPES.get(op)
    if shape == _SID and sid_len and sid_end == end:
        return op, bytes(buffer[ns_start:sid_start]), bytes(buffer[sid_start:sid_end]), b"", end
    if shape == _SID_VALUE and sid_len and end - sid_end >= EXPIRY_BYTES:
        sid = bytes(buffer[sid_start:sid_end])
        return op, bytes(buffer[ns_start:sid_start]), sid, bytes(buffer[sid_end:end]), end
    if shape == _NO_SID and not sid_len and sid_end == end:
        return op, bytes(buffer[ns_start:sid_start]), b"", b"", end
    raise _malformed(op, shape, sid_len, end - sid_end)


def _too_long(length: int, limit: int) -> WireError:
    return FrameTooLong(length, limit)


def _too_short(length: int) -> WireError:
    return WireError(f"a request of {length} bytes is shorter than its {_HEAD}-byte header")


def _malformed(op: int, shape: int | None, sid_len: int, rest: int) -> WireError:
    if shape is None:
        return WireError(f"unknown op {op}")
    if shape != _NO_SID and not sid_len:
        return WireError(f"op {op} has an empty sid")
    if shape == _NO_SID and sid_len:
        return WireError(f"op {op} takes no sid")
    if shape == _SID_VALUE:
        return WireError(f"op {op} carries {rest} bytes of value, less than its {EXPIRY_BYTES}-byte expiry")
    return WireError(f"op {op} carries {rest} unexpected bytes")


def decode_request(whole: Buffer, *, limit: int = _MAX_BODY) -> Request:
    """One whole request frame, prefix included, or WireError."""
    found = next_request(whole, 0, len(whole), limit)
    if found is None:
        raise WireError(f"a request frame is cut short at {len(whole)} bytes")
    op, namespace, sid, value, end = found
    if end != len(whole):
        raise WireError(f"{len(whole) - end} bytes follow the request frame")
    return Request(op, namespace, sid, value)


# Replies, built by the server


OK_FRAME: Final = _REPLY.pack(1, OK)
MISSING_FRAME: Final = _REPLY.pack(1, MISSING)


def _reply_header(status: int, payload_length: int) -> bytes:
    return _REPLY.pack(payload_length + 1, status)


def found_frame(value: bytes) -> bytes:
    """The FOUND reply carrying a stored value."""
    return _REPLY.pack(len(value) + 1, FOUND) + value


def found_header(value: bytes) -> bytes:
    """What precedes ``value`` in its FOUND reply: a large value is sent after
    it as it is stored, not copied into one frame."""
    return _REPLY.pack(len(value) + 1, FOUND)


def count_frame(count: int) -> bytes:
    return _reply_header(COUNT, _COUNT.size) + _COUNT.pack(count)


def item_parts(sid: bytes, value: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """The pieces of one entry of an ITEMS payload (sid, then value)."""
    return _ITEM_SID.pack(len(sid)), sid, _ITEM_VALUE.pack(len(value)), value


def items_reply(items: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The pieces of the ITEMS reply carrying ``items``, or of an ERROR reply
    if they would not fit in one frame."""
    total = sum(_ITEM_SID.size + len(sid) + _ITEM_VALUE.size + len(value) for sid, value in items)
    if total > _MAX_PAYLOAD:
        return [
            error_frame(ERR_BAD_REQUEST, f"all() would send {total} bytes; one reply holds {_MAX_PAYLOAD}")
        ]
    parts = [_reply_header(ITEMS, total)]
    for sid, value in items:
        parts.extend(item_parts(sid, value))
    return parts


def error_frame(code: int, message: str) -> bytes:
    text = message.encode("utf-8", "replace")[:_MAX_ERROR_TEXT]
    return _reply_header(ERROR, 1 + len(text)) + bytes((code,)) + text


# Replies, read by the clients (each a whole frame, prefix included)


def reply_status(whole: bytes) -> int | None:
    """The status of a reply frame; None if it has none."""
    return whole[_STATUS] if len(whole) > _STATUS else None


def reply_payload(whole: bytes) -> memoryview:
    """What follows a reply frame's status."""
    return memoryview(whole)[_REPLY.size :]


def found_json(whole: bytes) -> bytes | None:
    """The JSON of a FOUND reply frame; None for any other reply. The client's hot path."""
    if len(whole) >= _FOUND_JSON and whole[_STATUS] == FOUND:
        return whole[_FOUND_JSON:]
    return None


def decode_count(payload: Buffer) -> int:
    if len(payload) != _COUNT.size:
        raise WireError(f"a COUNT reply carries {len(payload)} bytes, not {_COUNT.size}")
    count: int = _COUNT.unpack(payload)[0]
    return count


def decode_items(payload: Buffer) -> list[tuple[bytes, bytes]]:
    """The (sid, value) pairs of an ITEMS payload; values start with their expiry."""
    view = memoryview(payload)
    items: list[tuple[bytes, bytes]] = []
    offset, size = 0, len(view)
    try:
        while offset < size:
            (sid_len,) = _ITEM_SID.unpack_from(view, offset)
            offset += _ITEM_SID.size
            sid = bytes(view[offset : offset + sid_len])
            offset += sid_len
            (value_len,) = _ITEM_VALUE.unpack_from(view, offset)
            offset += _ITEM_VALUE.size
            items.append((sid, bytes(view[offset : offset + value_len])))
            offset += value_len
    except struct.error:
        raise WireError("ITEMS payload ends inside an item") from None
    if offset != size:
        raise WireError("ITEMS payload ends inside an item")
    return items


def decode_error(payload: Buffer) -> tuple[int, str]:
    """The code and the message of an ERROR payload."""
    data = bytes(payload)
    if not data:
        return ERR_BAD_REQUEST, "server sent an empty error"
    return data[0], data[1:].decode("utf-8", "replace")


# The handshake's frames


def _mac(secret: bytes, label: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(secret, label + server_nonce + client_nonce, hashlib.sha256).digest()


def hello_frame(server_nonce: bytes) -> bytes:
    return frame(MAGIC + server_nonce)


def parse_hello(whole: bytes) -> bytes:
    """The server nonce of a HELLO frame, or WireError."""
    body = whole[_PREFIX.size :]
    if (
        frame_size(whole, len(whole)) != len(whole)
        or len(body) != len(MAGIC) + NONCE_BYTES
        or not body.startswith(MAGIC)
    ):
        raise WireError("not the greeting of a storekit cluster server")
    return body[len(MAGIC) :]


def auth_frame(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return frame(client_nonce + _mac(secret, b"storekit-cluster client", server_nonce, client_nonce))


def check_auth(secret: bytes, server_nonce: bytes, whole: bytes) -> bytes | None:
    """The client nonce if the AUTH frame ``whole`` proves knowledge of ``secret``, else None."""
    if len(whole) != _PREFIX.size + NONCE_BYTES + MAC_BYTES or frame_size(whole, len(whole)) != len(whole):
        return None
    client_nonce, mac = whole[_PREFIX.size : -MAC_BYTES], whole[-MAC_BYTES:]
    expected = _mac(secret, b"storekit-cluster client", server_nonce, client_nonce)
    return client_nonce if hmac.compare_digest(mac, expected) else None


def welcome_frame(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    mac = _mac(secret, b"storekit-cluster server", server_nonce, client_nonce)
    return _reply_header(OK, MAC_BYTES) + mac


def check_welcome(secret: bytes, server_nonce: bytes, client_nonce: bytes, whole: bytes) -> bool:
    """Whether ``whole`` is the WELCOME of a server that knows ``secret``."""
    if reply_status(whole) != OK or frame_size(whole, len(whole)) != len(whole):
        return False
    expected = _mac(secret, b"storekit-cluster server", server_nonce, client_nonce)
    return hmac.compare_digest(bytes(reply_payload(whole)), expected)
