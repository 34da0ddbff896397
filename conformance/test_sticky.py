"""sticky: routing scenarios, with the reference sticky server, the session
middleware and the target's store, from many client addresses on loopback.

Every worker builds its own store from the target's factory and serves a
session counter; each client is a distinct 127.0.0.x address with its own
cookie. A process-local store keeps its sessions under ip-hash (sticky.2)
but not under round-robin, which the report gives as information (sticky.3).
A sync store is served by the WSGI middleware on waitress; an async store by
the ASGI middleware (``storekit.asgi.SessionMiddleware``) on uvicorn, the way
an async app runs it, not through the suite's sync adapter.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from storekit.conformance._support import AsyncStoreFacade, build_store, check, close_store, fail
from storekit.report import INFO_PROPERTY
from storekit.target import Target

if TYPE_CHECKING:
    from storekit.reference.sticky.routing import Routing

WORKERS = 4
SECRET = "storekit sticky clauses"
_SERVED = re.compile(rb"slot (\d+) pid (\d+) n (\d+)")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="sticky scenarios bind 127.0.0.x source addresses (Linux)"
)


def _counter_app(target: Target) -> Callable[[], Any]:
    """An app factory, run once in each worker: the WSGI middleware over the target's sync store."""

    def make() -> Any:
        from storekit.reference.sticky import SLOT_ENV
        from storekit.wsgi import SessionMiddleware

        store = build_store(target)

        def count(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            session = environ["storekit.session"]
            session["n"] = int(session.get("n", 0)) + 1
            body = f"slot {os.environ.get(SLOT_ENV, '-')} pid {os.getpid()} n {session['n']}".encode()
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]

        return SessionMiddleware(count, store, secret=SECRET)

    return make


def _async_counter_app(target: Target) -> Callable[[], Any]:
    """The same counter for an async store, run once in each worker: a raw ASGI app in the ASGI
    middleware over the target's store as it is; lifespan shutdown closes the store."""

    def make() -> Any:
        from storekit.asgi import Receive, Scope, Send, SessionMiddleware, session_of
        from storekit.reference.sticky import SLOT_ENV

        store = target.factory()

        async def count(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                while (await receive())["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                await _aclose(store)
                await send({"type": "lifespan.shutdown.complete"})
                return
            session = session_of(scope)
            session["n"] = int(session.get("n", 0)) + 1
            body = f"slot {os.environ.get(SLOT_ENV, '-')} pid {os.getpid()} n {session['n']}".encode()
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return SessionMiddleware(count, store, secret=SECRET)

    return make


async def _aclose(store: Any) -> None:
    """Close an async store as the suite does: ``aclose()``, or a coroutine ``close()``."""
    close = getattr(store, "aclose", None) or getattr(store, "close", None)
    if callable(close) and inspect.iscoroutinefunction(close):
        await close()


def _is_async(target: Target) -> bool:
    """Whether the target's factory builds an async store (one store, built, judged and closed)."""
    store = build_store(target)
    try:
        return isinstance(store, AsyncStoreFacade)
    finally:
        close_store(store)


class Client:
    """One browser: a source address and a cookie jar of one cookie."""

    def __init__(self, server: Any, address: str) -> None:
        self.server = server
        self.address = address
        self.cookie: str | None = None

    def visit(self) -> tuple[int, int, int]:
        """(slot, pid, n): who served the request and the session's count."""
        from storekit.testing.http_client import request

        headers = {"Cookie": self.cookie} if self.cookie else {}
        try:
            reply = request(
                self.server.host, self.server.port, "/", source=self.address, headers=headers, timeout=10
            )
        except OSError as exc:
            fail("sticky.1", f"a request from {self.address} failed: {type(exc).__name__}: {exc}")
        cookie = reply.headers.get("Set-Cookie") or reply.headers.get("set-cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        match = _SERVED.search(reply.body)
        if reply.status != 200 or match is None:
            fail("sticky.2", f"a request from {self.address} got {reply.status}: {reply.text[:200]!r}")
        slot, pid, n = (int(group) for group in match.groups())
        return slot, pid, n


def _addresses(count: int, start: int = 10) -> list[str]:
    from storekit.testing.http_client import loopback_sources

    return loopback_sources(count, start)


def _server(target: Target, routing: Routing) -> Iterator[Any]:
    from storekit.reference.sticky import StickyServer

    if _is_async(target):
        served = StickyServer(
            _async_counter_app(target), workers=WORKERS, routing=routing, factory=True, interface="asgi"
        )
    else:
        served = StickyServer(_counter_app(target), workers=WORKERS, routing=routing, factory=True)
    with served as server:
        yield server


@pytest.fixture(scope="session")
def storekit_sticky_ip_hash(storekit_target: Target) -> Iterator[Any]:
    """The sticky server under ip-hash routing, serving the target's store."""
    yield from _server(storekit_target, "ip-hash")


@pytest.fixture(scope="session")
def storekit_sticky_round_robin(storekit_target: Target) -> Iterator[Any]:
    """The same server under round-robin routing."""
    yield from _server(storekit_target, "round-robin")


@pytest.mark.clause("sticky.1")
def test_under_ip_hash_one_address_always_reaches_one_worker(storekit_sticky_ip_hash: Any) -> None:
    """sticky.1: under ip-hash routing, every request from one client address reaches the same worker."""
    for address in _addresses(16):
        client = Client(storekit_sticky_ip_hash, address)
        served = {client.visit()[:2] for _ in range(4)}
        check(
            len(served) == 1, "sticky.1", f"requests from {address} reached several workers: {sorted(served)}"
        )


@pytest.mark.clause("sticky.2")
def test_under_ip_hash_each_clients_session_persists(storekit_sticky_ip_hash: Any) -> None:
    """sticky.2: under ip-hash routing, each client's session persists across its requests."""
    for address in _addresses(8, start=40):
        client = Client(storekit_sticky_ip_hash, address)
        counts = [client.visit()[2] for _ in range(5)]
        check(
            counts == [1, 2, 3, 4, 5],
            "sticky.2",
            f"the session of {address} counted {counts} over 5 requests",
        )


@pytest.mark.clause("sticky.3")
def test_under_round_robin_sessions_persist_for_a_shared_store(
    storekit_sticky_round_robin: Any, storekit_target: Target, request: pytest.FixtureRequest
) -> None:
    """sticky.3: under round-robin routing, sessions persist for a shared store."""
    client = Client(storekit_sticky_round_robin, _addresses(1, start=80)[0])
    visits = [client.visit() for _ in range(2 * WORKERS)]
    workers = {pid for _, pid, _ in visits}
    counts = [n for _, _, n in visits]
    check(len(workers) > 1, "sticky.3", f"round-robin sent every request to one worker: {sorted(workers)}")
    if counts == list(range(1, len(visits) + 1)):
        return
    if storekit_target.shared:
        fail(
            "sticky.3",
            f"a shared store lost the session across workers: counts {counts} over {len(workers)} workers",
        )
    request.node.user_properties.append(
        (
            INFO_PROPERTY,
            f"needs sticky routing: a process-local store counted {counts} across {len(workers)} workers",
        )
    )


@pytest.mark.clause("sticky.4")
def test_a_killed_worker_is_replaced_in_its_slot(storekit_target: Target) -> None:
    """sticky.4: a killed worker is replaced; its addresses map to the same slot; shared sessions survive."""
    for server in _server(storekit_target, "ip-hash"):
        clients = [Client(server, address) for address in _addresses(24, start=120)]
        before = {client.address: client.visit() for client in clients}
        victim_slot, victim_pid, _ = before[clients[0].address]
        server.kill_worker(victim_slot)
        try:
            replacement = server.wait_replaced(victim_slot, victim_pid, timeout=30)
        except Exception as exc:
            fail("sticky.4", f"worker slot {victim_slot} (pid {victim_pid}) was not replaced: {exc}")
        for client in clients:
            slot, pid, n = client.visit()
            old_slot, old_pid, old_n = before[client.address]
            check(
                slot == old_slot,
                "sticky.4",
                f"{client.address} moved from slot {old_slot} to {slot} after the kill",
            )
            expected_pid = replacement if slot == victim_slot else old_pid
            check(
                pid == expected_pid,
                "sticky.4",
                f"{client.address} reached pid {pid}, expected {expected_pid}",
            )
            if storekit_target.shared or slot != victim_slot:
                check(n == old_n + 1, "sticky.4", f"the session of {client.address} counted {old_n} then {n}")


@pytest.mark.clause("sticky.5")
def test_sixty_four_addresses_spread_over_four_workers(storekit_sticky_ip_hash: Any) -> None:
    """sticky.5: 64 client addresses over 4 workers: no worker gets more than twice its fair share."""
    slots = Counter(
        Client(storekit_sticky_ip_hash, address).visit()[0] for address in _addresses(64, start=160)
    )
    fair = 64 / WORKERS
    check(
        max(slots.values()) <= 2 * fair and len(slots) == WORKERS,
        "sticky.5",
        f"64 addresses spread over the workers as {dict(sorted(slots.items()))} (fair share {fair:.0f} each)",
    )
