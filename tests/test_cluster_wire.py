"""The ClusterStore wire protocol, the handshake and the server state, without sockets;
and the one handshake as both clients meet it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator

import pytest
from cluster_support import unix_peer

from storekit.codec import session_expiry
from storekit.errors import InvalidSessionData, StoreUnavailable
from storekit.reference.cluster import Address, AsyncClusterStore, ClusterStore, wire
from storekit.reference.cluster.common import Requests
from storekit.reference.cluster.handshake import (
    ClientHandshake,
    Dropped,
    NotACluster,
    Refused,
    ServerHandshake,
    WrongKey,
)
from storekit.reference.cluster.server import ClusterServer
from storekit.reference.cluster.state import ClusterState

NEVER = wire.NEVER_BYTES
LIMIT = wire.max_request_frame(1 << 20)


def _body(frame: bytes) -> bytes:
    assert wire.frame_size(frame, len(frame)) == len(frame)
    return frame[4:]


def test_request_round_trips() -> None:
    value = wire.encode_expiry(1_700_000_000.123) + b'{"a":1}'
    request = wire.decode_request(wire.encode_request(wire.SET, b"ns", "sé".encode(), value))
    assert request == (wire.SET, b"ns", "sé".encode(), value)
    assert wire.decode_request(wire.encode_request(wire.LENGTH, b"")) == (wire.LENGTH, b"", b"", b"")
    split = wire.encode_request(wire.TOUCH, b"", b"s", NEVER, b"{}")
    assert wire.decode_request(split) == (wire.TOUCH, b"", b"s", NEVER + b"{}")
    assert _body(split) == split[4:]


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
        bytes([wire.LENGTH, 0, 0, 0]) + b"x",  # length with a value
        bytes([wire.DESTROY, 0, 0, 0]),  # destroy without a sid
        bytes([0, 0, 0, 0]),  # op 0
    ],
)
def test_malformed_requests_raise_wire_error(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_request(wire.frame(body))
    with pytest.raises(wire.WireError):  # in a buffer too, as the server reads it
        wire.next_request(memoryview(bytearray(b"pad" + wire.frame(body))), 3, 3 + 4 + len(body), LIMIT)


def test_a_truncated_request_frame_is_incomplete_until_its_last_byte() -> None:
    whole = wire.encode_request(wire.SET, b"ns", b"sid", NEVER + b'{"a":1}')
    for cut in range(len(whole)):
        assert wire.next_request(whole, 0, cut, LIMIT) is None
        with pytest.raises(wire.WireError, match="cut short"):
            wire.decode_request(whole[:cut])
    assert wire.next_request(whole, 0, len(whole), LIMIT) == (
        wire.SET,
        b"ns",
        b"sid",
        NEVER + b'{"a":1}',
        len(whole),
    )
    with pytest.raises(wire.WireError, match="1 bytes follow"):
        wire.decode_request(whole + b"x")


def test_pipelined_requests_are_read_in_place_one_after_another() -> None:
    frames = [
        wire.encode_request(wire.GET, b"", b"a"),
        wire.encode_request(wire.SET, b"n", b"b", NEVER, b"[]"),
        wire.encode_request(wire.ALL, b"n"),
    ]
    view = memoryview(bytearray(b"".join(frames) + frames[0][:5]))  # and the start of a fourth
    offset, seen = 0, []
    while (request := wire.next_request(view, offset, len(view), LIMIT)) is not None:
        *fields, offset = request
        seen.append(tuple(fields))
    assert seen == [
        (wire.GET, b"", b"a", b""),
        (wire.SET, b"n", b"b", NEVER + b"[]"),
        (wire.ALL, b"n", b"", b""),
    ]
    assert offset == len(view) - 5


def test_an_oversized_length_is_refused_as_soon_as_the_prefix_arrives() -> None:
    prefix = (LIMIT + 1).to_bytes(4, "big")
    for filled in (4, 8):
        with pytest.raises(wire.WireError, match="exceeds the cluster server's limit"):
            wire.next_request(prefix + bytes([wire.GET, 0, 0, 1]), 0, filled, LIMIT)
    assert wire.next_request(prefix, 0, 3, LIMIT) is None  # not yet a prefix
    buffer = bytearray(prefix)
    with pytest.raises(wire.WireError, match="at most 64"):
        wire.take_frame(buffer, wire.MAX_HANDSHAKE_FRAME)


def test_take_frame_removes_one_whole_frame() -> None:
    buffer = bytearray(wire.frame(b"one") + wire.frame(b"two")[:5])
    assert wire.frame_size(buffer, 3) == 0
    assert wire.frame_size(buffer, 4) == 7
    assert wire.take_frame(buffer, 64) == wire.frame(b"one")
    assert wire.take_frame(buffer, 64) is None
    buffer += b"wo"
    assert wire.take_frame(buffer, 64) == wire.frame(b"two")
    assert buffer == b""


def test_replies_round_trip() -> None:
    value = NEVER + b'{"a":1}'
    assert wire.found_json(wire.found_frame(value)) == b'{"a":1}'
    for other in (
        wire.OK_FRAME,
        wire.MISSING_FRAME,
        wire.count_frame(3),
        wire.frame(b""),
        wire.frame(b"\x01"),
    ):
        assert wire.found_json(other) is None
    assert wire.reply_status(wire.OK_FRAME) == wire.OK
    assert wire.reply_status(wire.MISSING_FRAME) == wire.MISSING
    assert wire.reply_status(wire.frame(b"")) is None
    count = wire.count_frame(2**40)
    assert wire.reply_status(count) == wire.COUNT
    assert wire.decode_count(wire.reply_payload(count)) == 2**40
    with pytest.raises(wire.WireError, match="COUNT"):
        wire.decode_count(b"\x00" * 7)
    error = wire.error_frame(wire.ERR_INVALID_DATA, "too big: é" + "x" * 5000)
    assert wire.reply_status(error) == wire.ERROR
    code, message = wire.decode_error(wire.reply_payload(error))
    assert (code, message[:10]) == (wire.ERR_INVALID_DATA, "too big: é")
    assert len(error) < 4100
    items = [(b"a", NEVER + b"{}"), ("é".encode(), value)]
    reply = b"".join(wire.items_reply(items))
    assert wire.frame_size(reply, len(reply)) == len(reply)
    assert wire.reply_status(reply) == wire.ITEMS
    assert wire.decode_items(wire.reply_payload(reply)) == items
    assert wire.decode_items(wire.reply_payload(b"".join(wire.items_reply([])))) == []


def test_expiry_encoding_is_milliseconds_and_orders_as_bytes() -> None:
    assert int.from_bytes(wire.encode_expiry(1.2346), "big") == 1235
    assert wire.encode_expiry(None) == NEVER
    assert wire.encode_expiry(-5) == bytes(6)
    assert wire.encode_expiry(1e300) < NEVER
    assert wire.encode_expiry(10.0) < wire.encode_expiry(10.001) < wire.encode_expiry(11)
    assert wire.expiry_millis(wire.millis_expiry(1_700_000_000_123)) == 1_700_000_000_123
    value = wire.encode_expiry(5.0) + b"{}"
    assert (value[wire.EXPIRY], value[wire.JSON], wire.json_length(value)) == (
        wire.encode_expiry(5.0),
        b"{}",
        2,
    )


def test_items_round_trip() -> None:
    parts = [*wire.item_parts(b"a", NEVER + b"{}"), *wire.item_parts("é".encode(), NEVER + b"[]")]
    assert wire.decode_items(b"".join(parts)) == [(b"a", NEVER + b"{}"), ("é".encode(), NEVER + b"[]")]
    with pytest.raises(wire.WireError):
        wire.decode_items(b"".join(parts)[:-1] + b"\x00\x00\x00\x00\x00\x09")


def test_handshake_accepts_the_key_and_nothing_else() -> None:
    server_nonce, client_nonce = b"s" * 32, b"c" * 32
    assert wire.parse_hello(wire.hello_frame(server_nonce)) == server_nonce
    auth = wire.auth_frame(b"key", server_nonce, client_nonce)
    assert wire.check_auth(b"key", server_nonce, auth) == client_nonce
    assert wire.check_auth(b"other", server_nonce, auth) is None
    assert wire.check_auth(b"key", b"x" * 32, auth) is None  # a replay under another nonce
    assert wire.check_auth(b"key", server_nonce, auth[:-1]) is None
    welcome = wire.welcome_frame(b"key", server_nonce, client_nonce)
    assert wire.check_welcome(b"key", server_nonce, client_nonce, welcome)
    assert not wire.check_welcome(b"other", server_nonce, client_nonce, welcome)
    with pytest.raises(wire.WireError):
        wire.parse_hello(b"HTTP/1.1 200 OK\r\n")


def _drive(client: ClientHandshake, server: ServerHandshake, chunk: int) -> bytes:
    """Run the two sides against each other, ``chunk`` bytes at a time; what the server answers last."""
    to_client, answer = server.greeting, b""
    while not client.done:
        proof = b""
        for i in range(0, len(to_client), chunk):
            proof += client.receive(to_client[i : i + chunk])
        to_client = b""
        for i in range(0, len(proof), chunk):
            answer = server.receive(proof[i : i + chunk]) or answer
        to_client = answer
    return answer


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_the_two_sides_of_the_handshake_agree_however_the_bytes_arrive(chunk: int) -> None:
    client, server = ClientHandshake(b"key"), ServerHandshake(b"key")
    _drive(client, server, chunk)
    assert client.done
    assert client.server_nonce == server.nonce
    assert server.leftover == b""


def test_requests_right_behind_the_proof_are_kept_for_the_server() -> None:
    client, server = ClientHandshake(b"key"), ServerHandshake(b"key")
    proof = client.receive(server.greeting)
    request = wire.encode_request(wire.GET, b"", b"a")
    welcome = server.receive(proof + request)
    assert welcome is not None
    assert server.leftover == request
    assert client.receive(welcome) == b""
    assert client.done


def test_a_wrong_key_fails_on_both_sides() -> None:
    client, server = ClientHandshake(b"mine"), ServerHandshake(b"theirs")
    with pytest.raises(WrongKey) as denied:
        server.receive(client.receive(server.greeting))
    assert wire.reply_status(denied.value.reply) == wire.ERROR
    with pytest.raises(WrongKey, match="does not verify"):
        client.receive(denied.value.reply)
    impostor = ClientHandshake(b"mine")  # a server that accepts any proof but cannot prove the key
    impostor.receive(server.greeting)
    with pytest.raises(WrongKey, match="its own proof"):
        impostor.receive(wire.welcome_frame(b"theirs", server.nonce, impostor.nonce))


@pytest.mark.parametrize(
    "greeting",
    [b"HTTP/1.1 400 Bad Request\r\n\r\n", wire.frame(b"SKC2" + bytes(32)), wire.frame(b"SKC1"), bytes(4)],
)
def test_a_stranger_is_not_a_cluster_server(greeting: bytes) -> None:
    with pytest.raises(NotACluster, match="it greeted with"):
        ClientHandshake(b"key").receive(greeting)


def test_what_a_closed_connection_means_depends_on_the_step() -> None:
    client = ClientHandshake(b"key")
    with pytest.raises(Refused, match="before greeting"):
        client.receive(b"")
    assert isinstance(client.explain(ConnectionResetError()), Refused)
    assert isinstance(client.explain(TimeoutError()), TimeoutError)
    client.receive(ServerHandshake(b"key").greeting)
    assert isinstance(client.explain(BrokenPipeError()), Dropped)  # a bad proof gets an answer
    with pytest.raises(Dropped, match="hung up after greeting"):
        client.receive(b"")


def test_the_server_side_refuses_a_big_first_frame_at_once() -> None:
    with pytest.raises(NotACluster, match="no proof"):
        ServerHandshake(b"key").receive(b"GET / HTTP/1.1\r\n")
    assert ServerHandshake(b"key").receive(wire.frame(b"x" * 64)[:10]) is None  # may still come


# The one handshake as the two clients meet it: the same message for the same failure.


@pytest.fixture
def directory() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="storekit-test-", dir="/tmp")
    yield path
    shutil.rmtree(path)


@pytest.fixture
def peer(directory: str) -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A Unix socket server at a fresh path that treats every connection with ``behave``."""
    started = itertools.count()
    with contextlib.ExitStack() as peers:

        def start(behave: Callable[[socket.socket], None]) -> str:
            path = os.path.join(directory, f"peer{next(started)}")
            return peers.enter_context(unix_peer(path, behave))

        yield start


def _both_fail(path: str, secret: bytes = b"k" * 32, timeout: float = 2.0) -> str:
    """What the blocking and the async client say about ``path``; they must say the same."""
    address = Address(path, secret)
    with pytest.raises(StoreUnavailable) as sync_error:
        ClusterStore(address=address, timeout=timeout).get("a")
    with pytest.raises(StoreUnavailable) as async_error:
        asyncio.run(AsyncClusterStore(address=address, timeout=timeout).get("a"))
    assert str(sync_error.value) == str(async_error.value)
    return str(sync_error.value)


def test_both_clients_say_a_wrong_key_is_rejected(directory: str) -> None:
    server = ClusterServer(
        os.path.join(directory, "sock"), secrets.token_bytes(32), state=ClusterState(max_session_bytes=100)
    )
    server.start()
    try:
        message = _both_fail(server.path)
    finally:
        server.stop()
    assert "rejected this process's key" in message
    assert "$STOREKIT_CLUSTER_KEY does not match the master's" in message


def test_both_clients_say_a_stranger_is_not_a_cluster_server(
    peer: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    message = _both_fail(peer(lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")))
    assert "is not a storekit cluster server (it greeted with b'HTTP/1.1 400" in message
    assert "$STOREKIT_CLUSTER_SOCKET must name the socket" in message


def test_both_clients_say_a_peer_that_hangs_up_refused_them(
    peer: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    message = _both_fail(peer(lambda conn: conn.close()))
    assert "refused the connection (it hung up before greeting)" in message


def test_both_clients_say_a_server_that_drops_them_after_greeting_dropped_them(
    peer: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    def greet_then_drop(conn: socket.socket) -> None:
        conn.sendall(ServerHandshake(b"k" * 32).greeting)
        conn.recv(4096)  # the proof
        conn.close()  # what a master under a flood does to its oldest waiting handshake

    message = _both_fail(peer(greet_then_drop))
    assert "dropped this connection during the handshake" in message
    assert "rejected this process's key" not in message


def test_both_clients_say_a_silent_peer_timed_out(
    peer: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    message = _both_fail(peer(lambda conn: None), timeout=0.3)
    assert "did not answer within 0.3s" in message


def test_both_clients_say_nobody_listens(directory: str) -> None:
    message = _both_fail(os.path.join(directory, "nothing"))
    assert "no cluster server is listening" in message


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
    state.set(b"", b"a", _value(None, {"a": 1}))
    assert "at most 10" in (state.set(b"", b"a", _value(None, {"x": "x" * 20})) or "")
    assert state.get(b"", b"a") == _value(None, {"a": 1})


@pytest.mark.parametrize(
    ("sid", "json_text", "problem"),
    [
        (b"\xff\xfe", b"{}", "the sid is not UTF-8"),
        (b"\xed\xa0\x80", b"{}", "the sid is not UTF-8"),  # a lone surrogate, encoded
        (b"s" * 1025, b"{}", "the sid is 1025 characters; clients accept at most 1024"),
        (b"a", b"[1]", "not a compact JSON object"),
        (b"a", b'"text"', "not a compact JSON object"),
        (b"a", b"", "not a compact JSON object"),
        (b"a", b' {"a":1}', "not a compact JSON object"),
        (b"a", b'{"a":"\xff"}', "the session's JSON is not UTF-8"),
    ],
)
def test_state_refuses_what_no_client_could_read(sid: bytes, json_text: bytes, problem: str) -> None:
    state = ClusterState(max_session_bytes=1 << 20)
    state.set(b"", b"a", NEVER + b'{"kept":1}')
    assert problem in (state.set(b"", sid, NEVER + json_text) or "")
    assert state.get(b"", b"a") == NEVER + b'{"kept":1}'
    assert state.size() == 1


def test_state_keeps_sids_of_1024_characters_in_any_script() -> None:
    state = ClusterState(max_session_bytes=100)
    for sid in ("é" * 1024, "s" * 1024, "\U0001f600" * 1024):
        assert state.set(b"", sid.encode(), NEVER + '{"ü":"\U0001f600"}'.encode()) is None
    assert state.size() == 3


def _session(value: bytes | None) -> object:
    """What a client reads from a stored value: the session, with a touch's cookie."""
    assert value is not None
    session_json, touch = wire.split_json(value[wire.JSON])
    session = json.loads(session_json)
    if touch is not None:
        session["cookie"] = json.loads(touch).get("cookie")
    return session


def test_state_touch_renews_the_expiry_and_the_cookie_only() -> None:
    clock = Clock()
    state = ClusterState(max_session_bytes=1000, clock=clock)
    state.set(b"", b"a", _value(clock.now + 5, {"cookie": {"x": 1}, "data": [1]}))
    patch = wire.encode_expiry(clock.now + 50) + b'{"cookie":{"x":2}}'
    assert state.touch(b"", b"a", patch) is None
    clock.now += 10
    value = state.get(b"", b"a")
    assert _session(value) == {"cookie": {"x": 2}, "data": [1]}
    assert state.touch(b"", b"a", wire.encode_expiry(clock.now + 60) + b'{"cookie":{"x":3}}') is None
    assert _session(state.get(b"", b"a")) == {"cookie": {"x": 3}, "data": [1]}  # the last touch's only
    assert len(state.get(b"", b"a") or b"") == len(value or b"")
    assert state.touch(b"", b"unknown", patch) is None
    assert state.get(b"", b"unknown") is None
    assert state.touch(b"", b"a", wire.encode_expiry(clock.now - 1) + b"{}") is None
    assert state.get(b"", b"a") is None


def test_state_touch_keeps_the_session_bytes_as_they_are() -> None:
    state = ClusterState(max_session_bytes=1 << 20)
    stored = NEVER + rb'{"n":1.50,"s":"\u00e9","cookie":null}'  # as no encoder here would write it again
    state.set(b"", b"a", stored)
    state.touch(b"", b"a", NEVER + b'{"cookie":{"expires":null}}')
    value = state.get(b"", b"a")
    assert value is not None
    assert wire.split_json(value[wire.JSON]) == (stored[wire.JSON], b'{"cookie":{"expires":null}}')
    assert _session(value) == {"n": 1.5, "s": "é", "cookie": {"expires": None}}


def test_state_touch_refuses_what_is_no_cookie_object() -> None:
    state = ClusterState(max_session_bytes=1 << 20)
    state.set(b"", b"a", NEVER + b'{"a":1}')
    assert "touch needs the JSON object" in (state.touch(b"", b"a", NEVER + b"[1]") or "")
    assert "a cookie takes at most" in (
        state.touch(b"", b"a", NEVER + b'{"c":"' + b"x" * 70_000 + b'"}') or ""
    )
    assert state.get(b"", b"a") == NEVER + b'{"a":1}'


def test_state_namespaces_are_apart() -> None:
    state = ClusterState(max_session_bytes=1000)
    state.set(b"x", b"a", NEVER + b"{}")
    state.set(b"y", b"a", NEVER + b'{"y":1}')
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
