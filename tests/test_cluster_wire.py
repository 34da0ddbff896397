"""The ClusterStore wire protocol and server state, without sockets."""

from __future__ import annotations

import json

import pytest

from storekit.codec import session_expiry
from storekit.errors import InvalidSessionData
from storekit.reference.cluster import wire
from storekit.reference.cluster.common import Requests
from storekit.reference.cluster.state import ClusterState

NEVER = wire.NEVER_BYTES


def _body(frame: bytes) -> bytes:
    assert wire.frame_length(frame) == len(frame) - 4
    return frame[4:]


def test_request_round_trips() -> None:
    value = wire.encode_expiry(1_700_000_000.123) + b'{"a":1}'
    request = wire.decode_request(_body(wire.encode_request(wire.SET, b"ns", "sé".encode(), value)))
    assert request == (wire.SET, b"ns", "sé".encode(), value)
    assert wire.decode_request(_body(wire.encode_request(wire.LENGTH, b""))) == (wire.LENGTH, b"", b"", b"")


@pytest.mark.parametrize(
    "body",
    [
        b"",  # shorter than the header
        b"\x01\x00",
        bytes([99, 0, 0, 1]) + b"a",  # unknown op
        bytes([wire.GET, 0, 0, 0]),  # empty sid
        bytes([wire.GET, 5, 0, 1]) + b"a",  # names longer than the body
        bytes([wire.GET, 0, 0, 1]) + b"ab",  # trailing bytes
        bytes([wire.SET, 0, 0, 1]) + b"a" + b"\x00" * 3,  # expiry cut short
        bytes([wire.CLEAR, 0, 0, 1]) + b"a",  # clear with a sid
    ],
)
def test_malformed_requests_raise_wire_error(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_request(body)


def test_expiry_encoding_is_milliseconds_and_orders_as_bytes() -> None:
    assert int.from_bytes(wire.encode_expiry(1.2346), "big") == 1235
    assert wire.encode_expiry(None) == NEVER
    assert wire.encode_expiry(-5) == bytes(6)
    assert wire.encode_expiry(1e300) < NEVER
    assert wire.encode_expiry(10.0) < wire.encode_expiry(10.001) < wire.encode_expiry(11)


def test_items_round_trip() -> None:
    parts = [*wire.item_parts(b"a", NEVER + b"{}"), *wire.item_parts("é".encode(), NEVER + b"[]")]
    assert wire.decode_items(b"".join(parts)) == [(b"a", NEVER + b"{}"), ("é".encode(), NEVER + b"[]")]
    with pytest.raises(wire.WireError):
        wire.decode_items(b"".join(parts)[:-1] + b"\x00\x00\x00\x00\x00\x09")


def test_handshake_accepts_the_key_and_nothing_else() -> None:
    server_nonce, client_nonce = b"s" * 32, b"c" * 32
    assert wire.parse_hello(wire.hello_frame(server_nonce)[4:]) == server_nonce
    auth = wire.auth_frame(b"key", server_nonce, client_nonce)[4:]
    assert wire.check_auth(b"key", server_nonce, auth) == client_nonce
    assert wire.check_auth(b"other", server_nonce, auth) is None
    assert wire.check_auth(b"key", b"x" * 32, auth) is None  # a replay under another nonce
    assert wire.check_auth(b"key", server_nonce, auth[:-1]) is None
    welcome = wire.welcome_frame(b"key", server_nonce, client_nonce)[5:]
    assert wire.check_welcome(b"key", server_nonce, client_nonce, welcome)
    assert not wire.check_welcome(b"other", server_nonce, client_nonce, welcome)
    with pytest.raises(wire.WireError):
        wire.parse_hello(b"HTTP/1.1 200 OK\r\n")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _value(expires: float | None, session: object) -> bytes:
    return wire.encode_expiry(expires) + json.dumps(session).encode()


def test_state_expires_on_read_and_set_in_the_past_removes() -> None:
    clock = Clock()
    state = ClusterState(max_session_bytes=100, clock=clock)
    assert state.set(b"", b"a", _value(clock.now + 10, {"n": 1})) is None
    assert state.get(b"", b"a") == _value(clock.now + 10, {"n": 1})
    clock.now += 9.998
    assert state.get(b"", b"a") is not None
    assert state.length(b"") == 1
    clock.now += 0.002
    assert state.get(b"", b"a") is None
    state.set(b"", b"b", _value(None, {}))
    state.set(b"", b"b", _value(clock.now, {}))  # at or before now: removes
    assert state.get(b"", b"b") is None
    assert state.size() == 0


def test_state_refuses_oversized_values_and_keeps_the_old_one() -> None:
    state = ClusterState(max_session_bytes=10)
    state.set(b"", b"a", _value(None, [1]))
    assert "at most 10" in (state.set(b"", b"a", _value(None, "x" * 20)) or "")
    assert state.get(b"", b"a") == _value(None, [1])


def test_state_touch_rewrites_the_cookie_only() -> None:
    clock = Clock()
    state = ClusterState(max_session_bytes=1000, clock=clock)
    state.set(b"", b"a", _value(clock.now + 5, {"cookie": {"x": 1}, "data": [1]}))
    patch = wire.encode_expiry(clock.now + 50) + b'{"cookie":{"x":2}}'
    assert state.touch(b"", b"a", patch) is None
    clock.now += 10
    value = state.get(b"", b"a")
    assert value is not None
    assert json.loads(value[6:]) == {"cookie": {"x": 2}, "data": [1]}
    assert state.touch(b"", b"unknown", patch) is None
    assert state.get(b"", b"unknown") is None
    assert state.touch(b"", b"a", wire.encode_expiry(clock.now - 1) + b"{}") is None
    assert state.get(b"", b"a") is None


def test_state_touch_reports_json_it_cannot_rewrite() -> None:
    state = ClusterState(max_session_bytes=1000)
    state.set(b"", b"a", NEVER + b"[1]")
    assert state.touch(b"", b"a", NEVER + b'{"cookie":null}') is not None
    state.set(b"", b"b", NEVER + b"{}")
    assert state.touch(b"", b"b", NEVER + b'{"cookie":NaN}') is not None
    assert state.get(b"", b"b") == NEVER + b"{}"


def test_state_namespaces_are_apart() -> None:
    state = ClusterState(max_session_bytes=1000)
    state.set(b"x", b"a", NEVER + b"{}")
    state.set(b"y", b"a", NEVER + b"[]")
    assert state.items(b"x") == [(b"a", NEVER + b"{}")]
    state.clear(b"x")
    assert state.length(b"x") == 0
    assert state.length(b"y") == 1


def test_sweep_drops_expired_sessions_nobody_reads() -> None:
    clock = Clock()
    state = ClusterState(max_session_bytes=1000, clock=clock)
    for i in range(5000):
        state.set(b"", b"s%d" % i, _value(clock.now + 1 + i % 7, {}))
    state.set(b"", b"forever", _value(None, {}))
    clock.now += 10
    for _ in range(10):
        state.sweep()
    assert state.size() == 1


def test_stale_bucket_slots_are_compacted() -> None:
    clock = Clock()
    state = ClusterState(max_session_bytes=1000, clock=clock)
    for i in range(10_000):
        state.set(b"", b"same", _value(clock.now + 3600 + i, {}))
    space = state.spaces[b""]
    assert space.refs <= 2 * len(space.entries) + 1024


def test_the_expiry_cache_agrees_with_the_codec() -> None:
    requests = Requests("", 30.0, 1 << 20, lambda: 1000.0)
    for cookie in ({"expires": "2030-01-01T00:00:00.250Z"}, {"expires": None}, {}, None):
        expected = session_expiry({"cookie": cookie})
        want = wire.encode_expiry(1030.0 if expected is None else expected)
        assert requests._expiry({"cookie": cookie}) == want
    for bad in ({"expires": "2030-01-01T00:00:00"}, {"expires": 5}, "not a cookie"):
        with pytest.raises(InvalidSessionData):
            requests._expiry({"cookie": bad})
