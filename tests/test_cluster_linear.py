"""Concurrent histories from real processes are linearizable per sid, also when
one process is SIGKILLed mid-stream (its cut-short operation counts as unknown)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storekit.conformance.linearizability import UNKNOWN, Operation, check_history
from storekit.reference import cluster

SIDS = ["s0", "s1", "s2"]


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if cluster.master._server is not None and cluster.master._server.running:
        pytest.skip("a cluster server already runs in this process (the conformance suite's?)")
    monkeypatch.delenv(cluster.ENV_SOCKET, raising=False)
    monkeypatch.delenv(cluster.ENV_KEY, raising=False)
    with cluster.serving() as path:
        yield path


def worker(client: int, ops: int, log: Path) -> None:
    """Random get/set/destroy; every call is logged before it starts and after it returns."""
    store = cluster.ClusterStore()
    rng = random.Random(client)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for i in range(ops):
        sid, kind = rng.choice(SIDS), rng.choice(["get", "get", "set", "destroy"])
        value = f"{client}-{i}"
        os.write(fd, f"C {i} {kind} {sid} {value} {time.monotonic_ns()}\n".encode())
        if kind == "get":
            session = store.get(sid)
            result = "-" if session is None else session["v"]
        elif kind == "set":
            store.set(sid, {"v": value})
            result = "-"
        else:
            store.destroy(sid)
            result = "-"
        os.write(fd, f"R {i} {result} {time.monotonic_ns()}\n".encode())
    os.close(fd)


def history(client: int, log: Path) -> list[Operation]:
    calls: dict[int, list[str]] = {}
    returns: dict[int, list[str]] = {}
    for line in log.read_text().splitlines():
        if not line.endswith(tuple("0123456789")):
            continue  # a line cut by the kill
        fields = line.split()
        (calls if fields[0] == "C" else returns)[int(fields[1])] = fields[2:]
    ops = []
    for i, (kind, sid, value, called) in calls.items():
        done = returns.get(i)
        if kind == "get":
            result = UNKNOWN if done is None else (None if done[0] == "-" else done[0])
        else:
            result = UNKNOWN if done is None else None
        ops.append(
            Operation(
                client=client,
                sid=sid,
                kind=kind,  # type: ignore[arg-type]
                value=value if kind == "set" else None,
                result=result,
                called=int(called),
                returned=None if done is None else int(done[-1]),
            )
        )
    return ops


def spawn(client: int, ops: int, log: Path) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the worker process
        code = 0
        try:
            worker(client, ops, log)
        except BaseException:
            code = 1
        os._exit(code)
    return pid


@pytest.mark.parametrize("kill", [False, True], ids=["all-finish", "one-killed"])
def test_histories_from_four_processes_are_linearizable(master: str, tmp_path: Path, kill: bool) -> None:
    logs = [tmp_path / f"client{n}.log" for n in range(4)]
    pids = [spawn(n, 600, log) for n, log in enumerate(logs)]
    if kill:
        deadline = time.monotonic() + 30
        while not logs[0].exists() or logs[0].read_text().count("\n") < 300:
            assert time.monotonic() < deadline, "the victim made no progress"
            time.sleep(0.005)
        os.kill(pids[0], signal.SIGKILL)
    for n, pid in enumerate(pids):
        status = os.waitpid(pid, 0)[1]
        if kill and n == 0:
            assert os.WIFSIGNALED(status)
        else:
            assert status == 0, f"worker {n} failed"
    ops = [op for n, log in enumerate(logs) for op in history(n, log)]
    assert len(ops) >= 3 * 600
    verdict = check_history(ops, timeout=60)
    assert verdict.ok, verdict.explain()
