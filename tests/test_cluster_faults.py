"""Real processes, real signals: the master dies or hangs, a worker is SIGKILLed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import wait_until

from storekit import StoreUnavailable
from storekit.reference import cluster
from storekit.reference.cluster import Address, ClusterStore

MASTER = """
import os, sys
from storekit.reference import cluster
cluster.setup()
print(os.environ[cluster.ENV_SOCKET], os.environ[cluster.ENV_KEY], flush=True)
sys.stdin.read()  # serve until the test closes stdin or kills us
"""

WORKER = """
import sys
from storekit.reference.cluster import ClusterStore
store, name = ClusterStore(), sys.argv[1]
for i in range(int(sys.argv[2])):
    store.set(name, {"i": i})
    print(i, flush=True)
"""


def start_master(env: dict[str, str]) -> tuple[subprocess.Popen[str], Address]:
    proc = subprocess.Popen(
        [sys.executable, "-c", MASTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    path, key = proc.stdout.readline().split()
    return proc, Address(path, bytes.fromhex(key))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    if cluster.master._server is not None and cluster.master._server.running:
        pytest.skip("a cluster server already runs in this process (the conformance suite's?)")
    monkeypatch.delenv(cluster.ENV_SOCKET, raising=False)
    monkeypatch.delenv(cluster.ENV_KEY, raising=False)
    return dict(os.environ)


def stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` has stopped (state T in /proc)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for task in tasks)


def raises_quickly(call: Callable[[], object], limit: float) -> StoreUnavailable:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        call()
    assert time.monotonic() - started < limit
    return info.value


def test_master_death_then_a_new_master_at_the_same_address(clean_env: dict[str, str]) -> None:
    first, address = start_master(clean_env)
    try:
        store = ClusterStore(address=address, timeout=1.0)
        store.set("a", {"v": 1})
        first.kill()
        first.wait()
        error = raises_quickly(lambda: store.get("a"), limit=1.5)  # the pooled connection broke
        assert "setup()" in str(error)
        raises_quickly(lambda: store.set("a", {}), limit=1.5)
        env = {**clean_env, cluster.ENV_SOCKET: address.path, cluster.ENV_KEY: address.secret.hex()}
        second, again = start_master(env)  # setup() takes over the dead master's address
        try:
            assert again == address
            assert store.get("a") is None  # sessions lived in the dead master's memory
            store.set("a", {"v": 2})
            assert store.get("a") == {"v": 2}
        finally:
            second.kill()
            second.wait()
    finally:
        first.kill()
        shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)


def test_a_hung_master_gives_store_unavailable_within_the_timeout(clean_env: dict[str, str]) -> None:
    master, address = start_master(clean_env)
    try:
        store = ClusterStore(address=address, timeout=0.5)
        store.set("a", {"v": 1})
        master.send_signal(signal.SIGSTOP)
        wait_until(lambda: stopped(master.pid))
        error = raises_quickly(lambda: store.get("a"), limit=1.5)  # on the pooled connection
        assert "did not answer within 0.5s" in str(error)
        raises_quickly(lambda: store.get("a"), limit=1.5)  # on a fresh connection
        master.send_signal(signal.SIGCONT)
        assert store.get("a") == {"v": 1}
    finally:
        master.send_signal(signal.SIGCONT)
        master.kill()
        master.wait()
        shutil.rmtree(os.path.dirname(address.path), ignore_errors=True)


def test_a_worker_killed_mid_stream_loses_no_returned_write(clean_env: dict[str, str]) -> None:
    with cluster.serving():
        store = ClusterStore()
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, f"w{n}", "100000" if n == 0 else "1500"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(3)
        ]
        victim = workers[0]
        assert victim.stdout is not None
        acked = -1
        while acked < 300:
            acked = int(victim.stdout.readline())
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        for line in victim.stdout:  # writes it reported before it died
            acked = int(line) if line.strip().isdigit() else acked
        stored = store.get("w0")
        assert stored is not None
        assert stored["i"] >= acked
        for worker in workers[1:]:
            out, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0
            assert out.split()[-1] == "1499"
        assert store.get("w1") == {"i": 1499}
        assert store.get("w2") == {"i": 1499}
