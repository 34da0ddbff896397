"""Helpers for the Redis tests: real servers, skips that say how to install, the suite in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storekit.testing.redis_server import RedisServer, RedisServerMissing, redis_server_path


def need_redis_server() -> None:
    """Skip, saying how to install it, where redis-server is missing (CI has it)."""
    try:
        redis_server_path()
    except RedisServerMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A redis-server of the test module's own, on a free loopback port."""
    need_redis_server()
    with RedisServer() as started:
        yield started


@pytest.fixture
def raw(server: RedisServer) -> Iterator[Any]:
    """A plain redis-py client (``redis.Redis``) on ``server``, its database emptied first."""
    import redis  # an extra: only the Redis tests need it

    client = redis.Redis.from_url(server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def redis_url(raw: Any, server: RedisServer) -> str:
    """The URL of ``server``, its database emptied first (by ``raw``)."""
    return server.url


def clean_env() -> dict[str, str]:
    """This environment without the variables that point a target at an existing Redis."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("STOREKIT_REDIS_URL", "STOREKIT_REDIS_CLUSTER_URL")
    }


def run_suite(target: str, directory: Path, *extra: str) -> dict[str, Any]:
    """Run the whole conformance suite on ``target`` in a fresh pytest process; return its target report."""
    need_redis_server()
    report = directory / "r.json"
    pytest_args = ["-p", "no:cacheprovider", "-q", f"--rootdir={directory}"]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *pytest_args,
            f"--storekit={target}",
            f"--storekit-report={report}",
            *extra,
        ],
        cwd=directory,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.exists(), f"the suite wrote no report:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    (result,) = json.loads(report.read_text())["targets"]
    assert run.returncode == 0, f"the suite failed:\n{run.stdout[-5000:]}"
    return result  # type: ignore[no-any-return]


def verdicts(result: dict[str, Any]) -> dict[str, str]:
    return {clause["id"]: clause["verdict"] for clause in result["clauses"]}


def assert_all_passed(result: dict[str, Any]) -> None:
    """Every clause passed, errors.1 and process.* included: level sticky, or shared where this
    storekit has no sticky checks yet (then they are "not applicable")."""
    seen = verdicts(result)
    failing = {
        cid: verdict
        for cid, verdict in seen.items()
        if verdict != "passed" and not (cid.startswith("sticky.") and verdict == "not applicable")
    }
    assert failing == {}, [c for c in result["clauses"] if c["id"] in failing]
    for required in ("errors.1", "process.1", "process.2", "process.3", "process.4", "all.1", "touch.1"):
        assert seen[required] == "passed", required
    sticky = [verdict for cid, verdict in seen.items() if cid.startswith("sticky.")]
    assert result["level"] == ("sticky" if sticky and set(sticky) == {"passed"} else "shared")
