"""ClusterStore against a server in this process: behaviour, setup(), fork safety, permissions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import wait_until

from storekit import InvalidSessionData, InvalidSessionId, StoreError, StoreUnavailable, expires_in
from storekit.reference import cluster
from storekit.reference.cluster.common import Address
from storekit.reference.cluster.server import ClusterServer
from storekit.reference.cluster.state import ClusterState


def no_master(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from a process that serves nothing and has no address in its environment."""
    if cluster.master._server is not None and cluster.master._server.running:
        pytest.skip("a cluster server already runs in this process (the conformance suite's?)")
    monkeypatch.delenv(cluster.ENV_SOCKET, raising=False)
    monkeypatch.delenv(cluster.ENV_KEY, raising=False)


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    no_master(monkeypatch)
    with cluster.serving() as path:
        yield path


def in_fork(child: Callable[[], object]) -> object:
    """Run ``child`` in a forked process and return what it returned (as JSON)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            result = {"ok": child()}
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_every_method_of_the_contract(master: str) -> None:
    store = cluster.ClusterStore()
    assert store.get("a") is None
    store.set("a", {"n": 1, "cookie": expires_in(60)})
    store.set("b", {"n": 2})
    assert store.get("a") == {"n": 1, "cookie": store.get("a")["cookie"]}  # type: ignore[index]
    assert store.length() == 2
    assert set(store.all()) == {"a", "b"}
    renewed = expires_in(120)
    store.touch("a", {"n": "ignored", "cookie": renewed})
    assert store.get("a") == {"n": 1, "cookie": renewed}  # the touch's cookie, the stored data
    assert store.all()["a"] == {"n": 1, "cookie": renewed}
    again = expires_in(180)
    store.touch("a", {"cookie": again})
    assert store.get("a") == {"n": 1, "cookie": again}
    store.destroy("a")
    store.destroy("never-there")
    assert store.get("a") is None
    store.clear()
    assert store.length() == 0
    assert store.all() == {}


def test_namespaces_keep_their_sessions_apart(master: str) -> None:
    one, two = cluster.ClusterStore(namespace="one"), cluster.ClusterStore().namespace("two")
    one.set("s", {"who": 1})
    two.set("s", {"who": 2})
    assert one.get("s") == {"who": 1}
    one.clear()
    assert (one.length(), two.length(), two.get("s")) == (0, 1, {"who": 2})
    with pytest.raises(ValueError, match="at most 255"):
        cluster.ClusterStore(namespace="n" * 300)


def test_bad_input_is_refused_in_the_client(master: str) -> None:
    store = cluster.ClusterStore(max_session_bytes=100)
    store.set("a", {"ok": True})
    for sid in ("", 5, None, "\ud800"):
        with pytest.raises(InvalidSessionId):
            store.get(sid)  # type: ignore[arg-type]
    for session in ({1: 2}, {"x": float("nan")}, {"x": b"bytes"}, {"x": "y" * 200}):
        with pytest.raises(InvalidSessionData):
            store.set("a", session)
    with pytest.raises(InvalidSessionData, match="RFC 3339"):
        store.set("a", {"cookie": {"expires": "2030-01-01T00:00:00"}})
    assert store.get("a") == {"ok": True}


def test_the_server_rechecks_the_size() -> None:
    directory = _private_dir()
    address = Address(os.path.join(directory, "s"), b"k" * 32)
    server = ClusterServer(address.path, address.secret, state=ClusterState(max_session_bytes=50))
    server.start()
    try:
        store = cluster.ClusterStore(address=address)  # the client allows 1 MiB
        store.set("a", {"x": 1})
        with pytest.raises(InvalidSessionData, match="at most 50"):
            store.set("a", {"x": "y" * 100})
        assert store.get("a") == {"x": 1}
    finally:
        server.stop()
        os.rmdir(directory)


def test_sessions_of_one_mebibyte_are_kept(master: str) -> None:
    store = cluster.ClusterStore()
    big = {"x": "y" * ((1 << 20) - 8)}
    store.set("big", big)
    assert store.get("big") == big
    assert store.all()["big"] == big


def test_expiry_is_applied(master: str) -> None:
    store = cluster.ClusterStore(default_ttl=0.3)
    store.set("short", {"cookie": expires_in(0.2)})
    store.set("default", {})
    store.set("past", {"cookie": expires_in(-1)})
    assert store.get("past") is None
    assert store.get("short") is not None
    wait_until(lambda: store.get("short") is None and store.get("default") is None)
    assert store.length() == 0


def test_eight_threads_share_one_store(master: str) -> None:
    store = cluster.ClusterStore()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                store.set(f"t{n}", {"i": i})
                assert store.get(f"t{n}") == {"i": i}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.length() == 8


def test_async_twin(master: str) -> None:
    store = cluster.AsyncClusterStore(namespace="aio")

    async def main() -> list[object]:
        await store.set("a", {"v": 1})
        await store.touch("a", {"cookie": expires_in(60)})
        got = await asyncio.gather(*(store.get("a") for _ in range(64)))
        return [*got, await store.length(), await store.all()]

    results = asyncio.run(main())
    assert results[0] == results[63]
    assert results[0]["v"] == 1  # type: ignore[index]
    assert results[64] == 1
    assert asyncio.run(store.get("a")) == results[0]  # a second event loop
    asyncio.run(store.clear())
    assert asyncio.run(store.length()) == 0


def test_outage_raises_quickly_then_the_same_store_recovers(master: str) -> None:
    store, aio = cluster.ClusterStore(timeout=1.0), cluster.AsyncClusterStore(timeout=1.0)
    store.set("kept", {"v": 1})
    with cluster.outage():
        for call in (lambda: store.get("kept"), lambda: store.set("x", {}), store.length, store.all):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="setup"):
                call()
            assert time.monotonic() - started < 1.0
        with pytest.raises(StoreUnavailable):
            asyncio.run(aio.get("kept"))
    assert store.get("kept") == {"v": 1}
    assert asyncio.run(aio.get("kept")) == {"v": 1}


def test_setup_twice_is_harmless(master: str) -> None:
    store = cluster.ClusterStore()
    store.set("a", {})
    assert cluster.setup() == master
    assert cluster.setup() == master
    assert store.get("a") == {}


def test_store_without_a_master_says_to_call_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    no_master(monkeypatch)
    with pytest.raises(StoreUnavailable, match=r"call storekit\.reference\.cluster\.setup\(\) in the master"):
        cluster.ClusterStore()
    with pytest.raises(StoreError, match="setup"):
        cluster.AsyncClusterStore()


def test_a_master_that_went_away_is_reported(master: str) -> None:
    store = cluster.ClusterStore()
    cluster.shutdown()
    with pytest.raises(StoreUnavailable, match=r"no cluster server is listening .*setup\(\)"):
        store.get("a")


def test_a_forked_worker_uses_the_master_and_serves_nothing(master: str) -> None:
    store = cluster.ClusterStore()
    store.set("a", {"from": "master"})

    def child() -> object:
        assert cluster.setup() == master  # setup() in a worker: the master already serves
        assert not any(t.name.startswith("storekit-cluster") for t in threading.enumerate())
        store.set("b", {"from": "worker"})  # the inherited store opens its own connection
        cluster.shutdown()  # a worker's shutdown() must not touch the master's server
        return store.get("a")

    assert in_fork(child) == {"ok": {"from": "master"}}
    assert store.get("b") == {"from": "worker"}
    assert os.path.exists(master)


def test_a_forked_child_holds_no_server_socket(master: str) -> None:
    server = cluster.master._server
    assert server is not None
    assert server._listener is not None
    inode = os.fstat(server._listener.fileno()).st_ino
    cluster.ClusterStore().set("a", {})  # a worker connection exists too

    def child() -> object:
        links = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the descriptor listdir() itself used
                links.append(os.readlink(f"/proc/self/fd/{fd}"))
        return [link for link in links if link == f"socket:[{inode}]"]

    assert in_fork(child) == {"ok": []}


def test_a_worker_forked_before_setup_is_told_so(monkeypatch: pytest.MonkeyPatch) -> None:
    no_master(monkeypatch)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child waits for the parent's setup(), too late
        os.read(read, 1)
        try:
            cluster.ClusterStore()
            os._exit(1)
        except StoreUnavailable as exc:
            os._exit(0 if "before it starts its workers" in str(exc) else 2)
    with cluster.serving():
        os.write(write, b"x")
        assert os.waitpid(pid, 0)[1] == 0


def test_socket_and_directory_are_private(master: str) -> None:
    assert stat.S_IMODE(os.stat(os.path.dirname(master)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(master).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(master).st_mode)


def test_setup_refuses_a_directory_others_can_enter(monkeypatch: pytest.MonkeyPatch) -> None:
    no_master(monkeypatch)
    directory = _private_dir()
    os.chmod(directory, 0o755)
    monkeypatch.setenv(cluster.ENV_SOCKET, os.path.join(directory, "sock"))
    monkeypatch.setenv(cluster.ENV_KEY, "00" * 32)
    try:
        with pytest.raises(StoreError, match="mode 755; it must be 0700"):
            cluster.setup()
    finally:
        os.rmdir(directory)


def test_setup_refuses_a_symlinked_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    no_master(monkeypatch)
    directory = _private_dir()
    link = directory + "-link"
    os.symlink(directory, link)
    monkeypatch.setenv(cluster.ENV_SOCKET, os.path.join(link, "sock"))
    monkeypatch.setenv(cluster.ENV_KEY, "00" * 32)
    try:
        with pytest.raises(StoreError, match="not a directory"):
            cluster.setup()
    finally:
        os.unlink(link)
        os.rmdir(directory)


def test_the_target_serves_and_builds_namespaced_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    no_master(monkeypatch)
    target = cluster.cluster_target
    assert (target.name, target.shared, target.ttl_resolution) == ("ClusterStore", True, 0.25)
    assert target.serve is not None
    assert target.namespaced is not None
    assert target.outage is not None
    with target.serve():
        store, other = target.factory(), target.namespaced("other")
        store.set("a", {})
        other.set("a", {"other": True})
        store.clear()
        assert other.get("a") == {"other": True}
        with target.outage(), pytest.raises(StoreUnavailable):
            store.get("a")
        assert other.get("a") == {"other": True}
    assert cluster.ENV_SOCKET not in os.environ


def _private_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="storekit-test-", dir="/tmp")
