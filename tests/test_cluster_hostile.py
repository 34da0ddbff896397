"""Hostile and broken clients: each closes its own connection and nothing else."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
from cluster_support import read_frame
from helpers import wait_until

from storekit import StoreUnavailable
from storekit.reference.cluster import Address, ClusterStore, wire
from storekit.reference.cluster.server import ClusterServer
from storekit.reference.cluster.state import ClusterState


@pytest.fixture
def server() -> Iterator[ClusterServer]:
    directory = tempfile.mkdtemp(prefix="storekit-test-", dir="/tmp")
    srv = ClusterServer(
        os.path.join(directory, "sock"),
        secrets.token_bytes(32),
        state=ClusterState(max_session_bytes=1 << 20),
        handshake_timeout=1.0,
    )
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(directory)


@pytest.fixture
def store(server: ClusterServer) -> ClusterStore:
    good = ClusterStore(address=Address(server.path, server.secret), timeout=2.0)
    good.set("canary", {"alive": True})
    return good


def connect(server: ClusterServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.connect(server.path)
    return sock


def authenticated(server: ClusterServer) -> socket.socket:
    sock = connect(server)
    server_nonce = wire.parse_hello(read_frame(sock))
    sock.sendall(wire.auth_frame(server.secret, server_nonce, b"c" * 32))
    assert wire.reply_status(read_frame(sock)) == wire.OK
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (data before EOF is skipped)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def serves_others(store: ClusterStore) -> None:
    started = time.monotonic()
    assert store.get("canary") == {"alive": True}
    store.set("other", {"n": 1})
    assert store.get("other") == {"n": 1}
    assert time.monotonic() - started < 1.0


def test_no_handshake_is_dropped_after_the_timeout(server: ClusterServer, store: ClusterStore) -> None:
    silent = connect(server)
    serves_others(store)
    assert closed_by_server(silent, within=4.0)


def test_wrong_key_is_rejected(server: ClusterServer, store: ClusterStore) -> None:
    sock = connect(server)
    nonce = wire.parse_hello(read_frame(sock))
    sock.sendall(wire.auth_frame(b"not the key", nonce, b"c" * 32))
    reply = read_frame(sock)
    assert wire.reply_status(reply) == wire.ERROR
    assert closed_by_server(sock, within=1.0)
    intruder = ClusterStore(address=Address(server.path, b"wrong"))
    with pytest.raises(StoreUnavailable, match="rejected this process's key"):
        intruder.get("canary")
    serves_others(store)


@pytest.mark.parametrize("authenticate", [False, True], ids=["before-auth", "after-auth"])
def test_garbage_closes_the_connection(
    server: ClusterServer, store: ClusterStore, authenticate: bool
) -> None:
    sock = authenticated(server) if authenticate else connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(64))
    assert closed_by_server(sock, within=1.0)
    serves_others(store)


def test_an_unknown_op_after_auth_closes_the_connection(server: ClusterServer, store: ClusterStore) -> None:
    sock = authenticated(server)
    sock.sendall(struct.pack("!IBBH", 5, 200, 0, 1) + b"a")
    assert closed_by_server(sock, within=1.0)
    serves_others(store)


@pytest.mark.parametrize("authenticate", [False, True], ids=["before-auth", "after-auth"])
def test_a_100_mb_length_prefix_is_refused_at_once(
    server: ClusterServer, store: ClusterStore, authenticate: bool
) -> None:
    sock = authenticated(server) if authenticate else connect(server)
    if not authenticate:
        read_frame(sock)
    sock.sendall(struct.pack("!I", 100_000_000) + b"\x01\x00\x00\x01a")
    assert closed_by_server(sock, within=0.9)  # before the 1 s handshake timeout
    serves_others(store)


@pytest.mark.parametrize("authenticate", [False, True], ids=["before-auth", "after-auth"])
def test_half_a_frame_then_silence_blocks_nobody(
    server: ClusterServer, store: ClusterStore, authenticate: bool
) -> None:
    sock = authenticated(server) if authenticate else connect(server)
    frame = wire.encode_request(wire.SET, b"", b"half", wire.NEVER_BYTES + b'{"x":"' + b"y" * 2000 + b'"}')
    sock.sendall(frame[: len(frame) // 2])
    serves_others(store)
    assert store.get("half") is None
    if authenticate:  # a worker may pause mid-frame; its connection stays, harmless
        assert not closed_by_server(sock, within=0.2)
        sock.sendall(frame[len(frame) // 2 :])
        wait_until(lambda: store.get("half") is not None)
    else:
        assert closed_by_server(sock, within=4.0)


def test_a_thousand_idle_connections_do_not_stop_service(server: ClusterServer, store: ClusterStore) -> None:
    idle = [connect(server) for _ in range(1000)]
    try:
        for _ in range(20):
            serves_others(store)
        for sock in idle:  # the server drops every one of them after the handshake timeout
            assert closed_by_server(sock, within=5.0)
        assert not server._conns
    finally:
        for sock in idle:
            sock.close()


def test_a_client_that_never_reads_stalls_only_itself(server: ClusterServer, store: ClusterStore) -> None:
    sock = authenticated(server)
    request = wire.encode_request(wire.GET, b"", b"big")
    store.set("big", {"x": "y" * 100_000})
    sock.settimeout(5.0)
    sock.setblocking(False)
    sent = 0
    try:
        for _ in range(2000):  # ~200 MB of replies that nobody reads
            sent += sock.send(request)
    except BlockingIOError:
        pass
    assert sent > 0
    serves_others(store)
    sock.close()
    serves_others(store)


def test_a_client_that_pipelines_without_pause_does_not_starve_others(
    server: ClusterServer, store: ClusterStore
) -> None:
    """One connection sends GETs as fast as it can and reads every reply; the server answers it
    a batch at a time, serving the other connections between batches."""
    sock = authenticated(server)
    chunk = wire.encode_request(wire.GET, b"", b"canary") * 2000
    stop = threading.Event()
    received = [0]

    def flood() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                sock.sendall(chunk)

    def drain() -> None:
        with contextlib.suppress(OSError):
            while data := sock.recv(1 << 16):
                received[0] += len(data)

    threads = [threading.Thread(target=flood), threading.Thread(target=drain)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: received[0] > 1 << 20, what="the flood's first MiB of replies")
        before = received[0]
        for _ in range(50):
            serves_others(store)  # each round within a second
        assert received[0] > before  # the flood went on meanwhile
    finally:
        stop.set()
        sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(10)
        sock.close()


def test_the_server_checks_sizes_itself(server: ClusterServer, store: ClusterStore) -> None:
    sock = authenticated(server)
    too_big = wire.NEVER_BYTES + b'"' + b"x" * (1 << 20) + b'"'
    sock.sendall(wire.encode_request(wire.SET, b"", b"canary", too_big))
    reply = read_frame(sock)
    assert wire.reply_status(reply) == wire.ERROR
    assert wire.decode_error(wire.reply_payload(reply))[0] == wire.ERR_INVALID_DATA
    serves_others(store)  # and the canary is unchanged


def test_a_peer_killed_mid_frame_leaves_the_server_working(
    server: ClusterServer, store: ClusterStore
) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child sends half a frame and is killed
        sock = authenticated(server)
        frame = wire.encode_request(wire.SET, b"", b"canary", wire.NEVER_BYTES + b"[" * 50_000)
        sock.sendall(frame[:30_000])
        signal.pause()  # until the SIGKILL below
        os._exit(0)
    wait_until(lambda: server.connections >= 2)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    wait_until(lambda: server.connections == 1)
    serves_others(store)


def test_requests_sent_in_one_write_are_answered_in_order(server: ClusterServer, store: ClusterStore) -> None:
    sock = authenticated(server)
    value = wire.NEVER_BYTES + b'{"n":1}'
    sock.sendall(
        wire.encode_request(wire.SET, b"", b"piped", value)
        + wire.encode_request(wire.GET, b"", b"piped")
        + wire.encode_request(wire.GET, b"", b"nobody")
        + wire.encode_request(wire.LENGTH, b"")
    )
    assert read_frame(sock) == wire.OK_FRAME
    assert read_frame(sock) == wire.found_frame(value)
    assert read_frame(sock) == wire.MISSING_FRAME
    assert read_frame(sock) == wire.count_frame(2)  # the canary and this one
    serves_others(store)
