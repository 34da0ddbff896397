"""AsyncClusterStore's shared connection: the tasks of an event loop pipeline their requests on one
socket, and every reply reaches the request it answers, whatever is cancelled, slow or broken.

The server is a real ClusterServer in this process; holding its lock (what every operation
takes) is how a test makes it slow without faking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from cluster_support import cluster_server, unix_peer
from helpers import wait_until

from storekit.errors import InvalidSessionData, StoreUnavailable
from storekit.reference.cluster import Address, AsyncClusterStore, ClusterStore, wire
from storekit.reference.cluster.handshake import ServerHandshake
from storekit.reference.cluster.server import ClusterServer


@pytest.fixture
def server() -> Iterator[ClusterServer]:
    with cluster_server() as srv:
        yield srv


def store_of(server: ClusterServer, timeout: float = 2.0) -> AsyncClusterStore:
    return AsyncClusterStore(address=Address(server.path, server.secret), timeout=timeout)


def test_the_tasks_of_a_loop_share_one_connection_and_each_gets_its_own_reply(server: ClusterServer) -> None:
    store = store_of(server)

    async def main() -> list[object]:
        await asyncio.gather(*(store.set(f"s{i}", {"i": i}) for i in range(64)))
        got = await asyncio.gather(*(store.get(f"s{i}") for i in reversed(range(64))))
        hot = server.connections
        return [*got, hot, await store.length(), server.connections]

    *got, hot, length, both = asyncio.run(main())
    assert got == [{"i": i} for i in reversed(range(64))]
    assert (hot, length, both) == (1, 64, 2)  # the second carries length, clear and all


def test_a_cancelled_request_leaves_the_next_replies_to_their_own_requests(server: ClusterServer) -> None:
    store = store_of(server)

    async def main() -> tuple[object, object, object]:
        await store.set("a", {"v": "a"})
        await store.set("b", {"v": "b"})
        with server._lock:  # the server reads both requests and waits
            first = asyncio.ensure_future(store.get("a"))
            second = asyncio.ensure_future(store.get("b"))
            await asyncio.sleep(0.05)
            first.cancel()
            await asyncio.sleep(0)
        return await second, await store.get("a"), first.cancelled()

    assert asyncio.run(main()) == ({"v": "b"}, {"v": "a"}, True)


def test_a_server_that_stops_answering_fails_every_waiting_request_and_the_next_connects_again(
    server: ClusterServer,
) -> None:
    store = store_of(server, timeout=0.5)

    async def main() -> tuple[list[BaseException | object], float, object]:
        await store.set("a", {"v": 1})
        started = time.monotonic()
        with server._lock:
            got = await asyncio.gather(*(store.get("a") for _ in range(10)), return_exceptions=True)
        took = time.monotonic() - started
        return got, took, await store.get("a")

    got, took, after = asyncio.run(main())
    assert all(isinstance(e, StoreUnavailable) for e in got), got
    assert "did not answer within 0.5s" in str(got[0])
    assert took < 5.0  # within the timeout, not a hang (a generous bound on a loaded machine)
    assert after == {"v": 1}
    wait_until(lambda: server.connections == 1, timeout=5.0)  # the timed-out connection is gone


def test_a_mebibyte_session_written_in_pieces_keeps_the_requests_behind_it_in_order(
    server: ClusterServer,
) -> None:
    """The socket takes part of the big set while the server is held; the small requests after it
    wait in the outbox, and every one is answered with its own reply."""
    store = store_of(server, timeout=10.0)
    big = {"blob": "x" * 900_000}

    async def main() -> list[object]:
        with server._lock:
            calls = [store.set("big", big)]
            calls += [store.set(f"s{i}", {"i": i}) for i in range(100)]
            calls += [store.get(f"s{i}") for i in range(100)]
            calls += [store.get("big")]
            tasks = [asyncio.ensure_future(c) for c in calls]
            await asyncio.sleep(0.1)
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(main())
    assert results[:101] == [None] * 101
    assert results[101:201] == [{"i": i} for i in range(100)]
    assert results[201] == big


def test_a_broken_connection_is_asked_again_on_a_new_one(server: ClusterServer) -> None:
    store = store_of(server)

    async def main() -> tuple[object, object]:
        await store.set("a", {"v": 1})
        for sock in list(server._workers) + list(server._parked):  # the server side hangs up
            sock.shutdown(socket.SHUT_RDWR)
        await asyncio.sleep(0.05)
        return await store.get("a"), await store.get("a")

    assert asyncio.run(main()) == ({"v": 1}, {"v": 1})


def test_one_store_serves_loops_in_turn_and_loops_in_two_threads_at_once(server: ClusterServer) -> None:
    store = store_of(server)
    for i in range(3):  # asyncio.run per call: each loop gets a connection; a closed loop's is closed
        asyncio.run(store.set(f"turn{i}", {"i": i}))
    assert asyncio.run(store.get("turn0")) == {"i": 0}
    wait_until(lambda: server.connections <= 2, timeout=5.0)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        async def main() -> None:
            await asyncio.gather(*(store.set(f"{name}{i}", {"i": i}) for i in range(100)))
            got = await asyncio.gather(*(store.get(f"{name}{i}") for i in range(100)))
            assert got == [{"i": i} for i in range(100)]

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


def _child(store: AsyncClusterStore, out: multiprocessing.queues.SimpleQueue[object]) -> None:
    out.put(asyncio.run(store.get("a")))


def test_a_forked_child_connects_on_its_own_and_leaves_the_parents_loop_alone(server: ClusterServer) -> None:
    """The child inherits the parent's live loop and its epoll: it closes its copies of the
    sockets without touching either, and the parent's connection goes on serving."""
    store = store_of(server)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(store.set("a", {"v": 1}))
        context = multiprocessing.get_context("fork")
        out = context.SimpleQueue()
        child = context.Process(target=_child, args=(store, out))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert out.get() == {"v": 1}

        async def gets() -> list[object]:
            return list(await asyncio.gather(*(store.get("a") for _ in range(8))))

        assert loop.run_until_complete(gets()) == [{"v": 1}] * 8
        wait_until(lambda: server.connections == 1, timeout=5.0)  # the child's closed, the parent's serving
    finally:
        loop.close()


@contextlib.contextmanager
def fake_server(secret: bytes, after_welcome: Callable[[socket.socket, bytes, bytes], None]) -> Iterator[str]:
    """A server at a fresh path that greets each client and checks its proof of ``secret`` as
    a real one does, then hands ``after_welcome`` the socket, the welcome (unsent) and what the
    client sent after its proof."""

    def serve(conn: socket.socket) -> None:
        handshake = ServerHandshake(secret)
        with contextlib.suppress(OSError):
            conn.sendall(handshake.greeting)
            welcome = None
            while welcome is None:
                welcome = handshake.receive(conn.recv(4096))
            after_welcome(conn, welcome, handshake.leftover)

    directory = tempfile.mkdtemp(prefix="storekit-test-", dir="/tmp")
    try:
        with unix_peer(os.path.join(directory, "fake"), serve) as path:
            yield path
    finally:
        shutil.rmtree(directory)


def test_a_reply_that_no_request_asked_for_closes_the_connection() -> None:
    """A server that answers every request twice: the second reply finds no request waiting."""
    secret = os.urandom(32)
    hung_up = threading.Event()

    def answer_twice(conn: socket.socket, welcome: bytes, leftover: bytes) -> None:
        conn.sendall(welcome)
        pending = bytearray(leftover)
        reply = wire.found_frame(wire.NEVER_BYTES + b'{"v":1}')
        while True:
            while wire.take_frame(pending, 1 << 20) is not None:
                conn.sendall(reply + reply)
            data = conn.recv(4096)
            if not data:
                hung_up.set()
                return
            pending += data

    with fake_server(secret, answer_twice) as path:
        store = AsyncClusterStore(address=Address(path, secret), timeout=1.0)

        async def main() -> tuple[object, bool]:
            got = await store.get("a")
            deadline = time.monotonic() + 5.0
            while not hung_up.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the loop reads the second reply and hangs up
            return got, hung_up.is_set()

        assert asyncio.run(main()) == ({"v": 1}, True)


@pytest.fixture
def small_server() -> Iterator[ClusterServer]:
    """A server that keeps sessions of at most 64 KiB, for clients that allow 1 MiB."""
    with cluster_server(max_session_bytes=1 << 16) as srv:
        yield srv


def test_a_request_over_the_servers_limit_fails_alone_and_the_connection_lives_on(
    small_server: ClusterServer,
) -> None:
    """A client allowing more than the master's max_session_bytes sends a request the server will
    not read: it is refused with an error naming the setting, its bytes are skipped, and the
    requests pipelined around it on the same connection are answered, each exactly once."""
    address = Address(small_server.path, small_server.secret)
    store = AsyncClusterStore(address=address, max_session_bytes=1 << 20)
    big = {"blob": "x" * 300_000}

    async def main() -> list[object]:
        await store.set("a", {"v": 1})
        with small_server._lock:  # so that all of them are in the server's buffer together
            calls = [store.set(f"s{i}", {"i": i}) for i in range(30)]
            calls += [store.set("big", big)]
            calls += [store.get("a") for _ in range(30)]
            tasks = [asyncio.ensure_future(call) for call in calls]
            await asyncio.sleep(0.1)
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = asyncio.run(main())
    assert results[:30] == [None] * 30
    assert isinstance(results[30], InvalidSessionData), results[30]
    assert "exceeds the cluster server's limit" in str(results[30])
    assert "raise max_session_bytes in setup()" in str(results[30])
    assert results[31:] == [{"v": 1}] * 30
    assert small_server.connections == 1  # the same connection throughout: nothing was asked twice

    sync = ClusterStore(address=address, max_session_bytes=1 << 20)
    with pytest.raises(InvalidSessionData, match="exceeds the cluster server's limit"):
        sync.set("big", big)
    assert sync.get("a") == {"v": 1}  # on the same connection
    assert asyncio.run(store.get("big")) is None


def test_aclose_fails_the_requests_waiting_on_its_connections_and_the_store_reconnects(
    server: ClusterServer,
) -> None:
    store = store_of(server)

    async def main() -> tuple[list[object], object]:
        await store.set("a", {"v": 1})
        with server._lock:
            waiting = [asyncio.ensure_future(store.get("a")) for _ in range(5)]
            await asyncio.sleep(0.05)
            await store.aclose()
            got = await asyncio.gather(*waiting, return_exceptions=True)
        return got, await store.get("a")

    got, after = asyncio.run(main())
    assert all(isinstance(e, StoreUnavailable) and "aclose() closed" in str(e) for e in got), got
    assert after == {"v": 1}
    wait_until(lambda: server.connections == 1, timeout=5.0)


def test_a_slow_connect_counts_against_the_operations_timeout() -> None:
    """One deadline for the call: a welcome after 0.8 of the timeout leaves the request 0.2."""
    secret = os.urandom(32)

    done = threading.Event()

    def slow_then_silent(conn: socket.socket, welcome: bytes, leftover: bytes) -> None:
        if done.wait(0.8):  # the peer's behaviour: welcome 0.8s late (at once if the test has ended)
            return
        conn.sendall(welcome)
        while conn.recv(4096):
            pass

    with fake_server(secret, slow_then_silent) as path:
        store = AsyncClusterStore(address=Address(path, secret), timeout=1.0)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"did not answer within 1\.0s"):
            asyncio.run(store.get("a"))
        took = time.monotonic() - started
        done.set()
    assert took < 1.5, f"{took:.2f}s for a timeout of 1s"  # 1.8s when each step had a timeout of its own


def test_a_long_reply_still_arriving_is_not_timed_out(server: ClusterServer) -> None:
    """all() of 200,000 sessions (about 30 MB) read by a loop that is busy between its reads: the
    reply takes longer than the timeout to arrive (over 2s), but its bytes keep coming."""
    value = wire.NEVER_BYTES + b'{"data":"' + b"x" * 120 + b'"}'
    with server._lock:
        for i in range(200_000):
            assert server.state.set(b"", b"s%06d" % i, value) is None
    store = store_of(server, timeout=1.0)  # the server takes about 0.4s to build the reply

    async def main() -> int:
        done = False

        async def busy() -> None:
            while not done:
                time.sleep(0.005)  # the loop is busy between two of its reads of the reply
                await asyncio.sleep(0)

        hog = asyncio.ensure_future(busy())
        try:
            return len(await store.all())
        finally:
            done = True
            await hog

    assert asyncio.run(main()) == 200_000


@pytest.mark.parametrize("timeout", [None, 0, -1.0, float("inf"), float("nan"), "2", True])
@pytest.mark.parametrize("store_class", [ClusterStore, AsyncClusterStore])
def test_a_timeout_that_is_no_positive_number_is_refused_at_once(
    server: ClusterServer, store_class: type[ClusterStore | AsyncClusterStore], timeout: object
) -> None:
    with pytest.raises(ValueError, match=r"timeout must be a positive number of seconds, got"):
        store_class(address=Address(server.path, server.secret), timeout=timeout)  # type: ignore[arg-type]
