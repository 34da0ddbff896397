"""pytest --storekit-http passes every http.* clause for storekit's own shells: the WSGI
middleware on MemoryStore, ClusterStore and RedisStore, the Flask interface, the Django engine
and the ASGI middleware on AsyncMemoryStore and AsyncRedisStore, each served for real by
``python -m storekit.probe`` (waitress or uvicorn) on an ephemeral port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from redis_support import need_redis_server

from storekit.testing import RedisServer

SHELLS = [
    ("wsgi", "memory"),
    ("wsgi", "cluster"),
    ("wsgi", "redis"),
    ("flask", "memory"),
    ("django", "memory"),
    ("asgi", "memory"),
    ("asgi", "redis"),
]
NOT_OFFERED: dict[str, set[str]] = {"django": {"http.13"}}
"""Clauses a shell declares it does not offer at /features."""
START_TIMEOUT = 60.0


class Probe:
    """``python -m storekit.probe KIND --store STORE`` in a process group of its own."""

    def __init__(self, kind: str, store: str, redis_url: str | None) -> None:
        argv = [sys.executable, "-m", "storekit.probe", kind, "--store", store, "--port", "0"]
        if redis_url is not None:
            argv += ["--redis-url", redis_url]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
        )
        self.url = self._url()

    def _url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("listening on "):
                return line.removeprefix("listening on ").strip()
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"the probe {self.process.args} did not say where it listens")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    need_redis_server()
    with RedisServer() as redis:
        probes = {shell: Probe(*shell, redis.url if shell[1] == "redis" else None) for shell in SHELLS}
        try:
            halves = [SHELLS[0::2], SHELLS[1::2]]

            def run(index: int) -> dict[str, Any]:
                cwd = tmp_path_factory.mktemp(f"own{index}")
                (cwd / "pytest.ini").write_text("[pytest]\n")
                command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
                command += [f"--storekit-http={probes[shell].url}" for shell in halves[index]]
                command += ["--storekit-report=r.json"]
                done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
                report: dict[str, Any] = json.loads((cwd / "r.json").read_text())
                report["output"] = (done.stdout + done.stderr)[-4000:]
                return report

            with ThreadPoolExecutor(2) as pool:
                reports = list(pool.map(run, range(2)))
            by_url = {row["url"]: (row, report["output"]) for report in reports for row in report["targets"]}
            yield {
                shell: {**by_url[probe.url][0], "output": by_url[probe.url][1]}
                for shell, probe in probes.items()
            }
        finally:
            for probe in probes.values():
                probe.stop()


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: "-".join(s))
def test_the_shell_passes_every_http_clause(
    rows: dict[tuple[str, str], dict[str, Any]], shell: tuple[str, str]
) -> None:
    row = rows[shell]
    verdicts = {c["id"]: c["verdict"] for c in row["clauses"]}
    wrong = {
        c["id"]: c["message"]
        for c in row["clauses"]
        if c["verdict"] not in ("passed", "info") and c["id"] not in NOT_OFFERED.get(shell[0], set())
    }
    assert wrong == {}, row["output"]
    assert verdicts["http.12"] == "info"
    assert row["level"] == "passes"
