"""The sticky server under a worker kill mid-load, and under hostile clients."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import wait_until

from storekit.reference.sticky import StickyServer, whoami
from storekit.reference.sticky.bpf import kernel_supported
from storekit.testing.http_client import loopback_sources, process_alive, request

KERNEL = pytest.mark.skipif(not kernel_supported(), reason="needs Linux SO_REUSEPORT")
SETUPS = [
    pytest.param(("ip-hash", "kernel"), marks=KERNEL, id="kernel"),
    pytest.param(("ip-hash", "handoff"), id="handoff"),
    pytest.param(("header", "handoff"), id="header"),
]


@pytest.fixture(params=SETUPS)
def server(request: pytest.FixtureRequest) -> Iterator[StickyServer]:
    routing, mode = request.param
    trusted = ["127.0.0.0/8"] if routing == "header" else []
    with StickyServer(
        whoami, workers=4, routing=routing, mode=mode, header_timeout=1.0, trusted_proxies=trusted
    ) as running:
        yield running
        pids = running.all_pids()
    wait_until(lambda: not any(process_alive(p) for p in pids), 10, "a process outlived stop()")


def slot_of(server: StickyServer, source: str, timeout: float = 5.0) -> int:
    reply = request(server.host, server.port, source=source, timeout=timeout)
    assert reply.status == 200, reply
    return int(reply.text.split()[1])


@pytest.mark.parametrize("mode", [pytest.param("kernel", marks=KERNEL), "handoff"])
def test_1000_connections_from_64_addresses_while_a_worker_is_killed(mode: str) -> None:
    sources = loopback_sources(64)
    outcomes: list[tuple[str, int | str]] = []
    with StickyServer(whoami, workers=4, mode=mode) as server:  # type: ignore[arg-type]
        pids = server.all_pids()
        victim = server.slot_for(sources[0])
        killed: list[int] = []

        def one(n: int) -> tuple[str, int | str]:
            source = sources[n % 64]
            if n == 300:
                killed.append(server.kill_worker(victim))
            try:
                return source, slot_of(server, source, timeout=5.0)
            except TimeoutError:
                return source, "timeout"
            except (OSError, http.client.HTTPException) as exc:  # in flight on the killed worker
                return source, type(exc).__name__

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(one, range(1000)))
        elapsed = time.monotonic() - started
        assert killed
        new = server.wait_replaced(victim, killed[0])
        pids |= server.all_pids()
        after = {source: slot_of(server, source) for source in sources}
    timeouts = [o for o in outcomes if o[1] == "timeout"]
    failures = [o for o in outcomes if isinstance(o[1], str)]
    assert not timeouts, f"{len(timeouts)} requests hung"
    assert len(failures) <= 16, failures  # at most what was in flight on the victim
    assert all(slot == server.slot_for(source) for source, slot in outcomes if isinstance(slot, int))
    assert after == {source: server.slot_for(source) for source in sources}
    assert new in pids
    assert killed[0] in pids
    assert elapsed < 60
    wait_until(lambda: not any(process_alive(p) for p in pids), 10, "a process outlived stop()")


def test_garbage_bytes_get_an_answer_or_a_close_and_the_server_goes_on(server: StickyServer) -> None:
    with socket.create_connection(
        (server.host, server.port), timeout=5, source_address=("127.0.0.2", 0)
    ) as sock:
        sock.sendall(b"\x00\xff\xfe garbage \x01" * 200 + b"\r\n\r\n")
        first = sock.recv(4096)
        assert first == b"" or first.startswith(b"HTTP/1.")
    assert slot_of(server, "127.0.0.2") == server.slot_for("127.0.0.2")


def test_silent_clients_do_not_block_anyone_else(server: StickyServer) -> None:
    """Connections that send nothing: the master routes around them (header mode waits 1s, then hands off)."""
    silent = []
    try:
        for source in loopback_sources(20, start=150):
            silent.append(socket.create_connection((server.host, server.port), source_address=(source, 0)))
        started = time.monotonic()
        for source in loopback_sources(8, start=10):
            assert slot_of(server, source, timeout=3) == server.slot_for(source)
        assert time.monotonic() - started < 3
    finally:
        for sock in silent:
            sock.close()


def test_a_trickling_header_is_routed_once_complete(server: StickyServer) -> None:
    with socket.create_connection(
        (server.host, server.port), timeout=5, source_address=("127.0.0.3", 0)
    ) as sock:
        for part in (b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.", b"100.7\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.05)  # let the master see each part separately
        answer = sock.recv(4096)
    expected = server.slot_for("198.51.100.7" if server.routing == "header" else "127.0.0.3")
    assert answer.startswith(b"HTTP/1.1 200")
    assert f"slot {expected} ".encode() in answer


@pytest.mark.parametrize("size", [40_000, 300_000])
def test_huge_headers_get_an_answer_and_the_server_goes_on(server: StickyServer, size: int) -> None:
    headers = {"X-Big": "a" * size, "X-Forwarded-For": "198.51.100.9"}
    try:
        reply = request(server.host, server.port, source="127.0.0.4", headers=headers, timeout=5)
        assert reply.status in (200, 400, 431)
    except (ConnectionError, http.client.RemoteDisconnected):
        pass  # closing on a head over the server's limit is an answer too
    assert slot_of(server, "127.0.0.4") == server.slot_for("127.0.0.4")


def test_half_closed_after_a_whole_request_gets_no_hang(server: StickyServer) -> None:
    with socket.create_connection(
        (server.host, server.port), timeout=5, source_address=("127.0.0.5", 0)
    ) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data == b"" or data.startswith(b"HTTP/1.1 200")


def test_half_closed_mid_request_is_closed_without_a_hang(server: StickyServer) -> None:
    with socket.create_connection(
        (server.host, server.port), timeout=5, source_address=("127.0.0.6", 0)
    ) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forw")
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):  # an error answer or nothing, then the close: no hang (timeout 5s)
            pass
    assert slot_of(server, "127.0.0.6") == server.slot_for("127.0.0.6")


def test_a_client_that_resets_at_once_is_harmless(server: StickyServer) -> None:
    for source in loopback_sources(20, start=200):
        sock = socket.create_connection((server.host, server.port), source_address=(source, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST
    assert slot_of(server, "127.0.0.8") == server.slot_for("127.0.0.8")
