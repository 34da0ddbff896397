"""Every code example in docs/cluster.md runs, for real: the quick start, the
multiprocessing pool, and the /hello app under gunicorn with several workers."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until

from storekit.reference import cluster

DOC = Path(__file__).resolve().parent.parent / "docs" / "cluster.md"
GUNICORN = Path(sys.executable).with_name("gunicorn")
WORKERS_UP = 30.0
"""Seconds gunicorn may take to start, or replace, its workers on a loaded machine."""


def examples() -> dict[str, str]:
    """The ```python blocks of the doc, by the file name on their first line."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    named = {}
    for block in blocks:
        first = block.splitlines()[0]
        assert re.fullmatch(r"# [\w.]+\.py", first), f"a docs example must start with '# file.py': {first!r}"
        named[first[2:]] = block
    return named


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(cluster.ENV_SOCKET, raising=False)
    monkeypatch.delenv(cluster.ENV_KEY, raising=False)
    for name, text in examples().items():
        (tmp_path / name).write_text(text)
    return tmp_path


def run(workdir: Path, script: str) -> str:
    done = subprocess.run(
        [sys.executable, script], cwd=workdir, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_example_is_named_and_exercised() -> None:
    assert set(examples()) == {"quickstart.py", "gunicorn.conf.py", "hello.py", "pool.py"}


def test_quickstart(workdir: Path) -> None:
    assert run(workdir, "quickstart.py") == "{'user': 'ada'}\n"


@pytest.mark.parametrize("variant", ["spawn", "fork", "multiprocess"])
def test_pool_recipe(workdir: Path, variant: str) -> None:
    script = (workdir / "pool.py").read_text()
    if variant == "fork":
        script = script.replace('get_context("spawn")', 'get_context("fork")')
    elif variant == "multiprocess":
        script = script.replace("import multiprocessing\n", "import multiprocess as multiprocessing\n")
    (workdir / f"pool_{variant}.py").write_text(script)
    out = run(workdir, f"pool_{variant}.py")
    assert re.fullmatch(r"100 sessions from [1-4] workers\n", out), out


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.unix_path)


def hello(path: str, sid: str | None = None) -> tuple[str, str | None]:
    """GET /hello; the body and the sid of any Set-Cookie."""
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", "/hello", headers={"Cookie": f"sid={sid}"} if sid else {})
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        cookie = response.getheader("Set-Cookie")
        return body, (cookie.split(";")[0].split("=", 1)[1] if cookie else None)
    finally:
        conn.close()


@pytest.fixture(params=[[], ["--preload"]], ids=["plain", "preload"])
def gunicorn(workdir: Path, request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], str]]:
    sock = str(workdir / "http.sock")
    options = ["-c", "gunicorn.conf.py", "--workers", "3", "--bind", f"unix:{sock}", *request.param]
    proc = subprocess.Popen(
        [str(GUNICORN), *options, "hello:app"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            hello(sock)
        except OSError:
            return False
        return True

    try:
        wait_until(up, WORKERS_UP)
        yield proc, sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pid_of(body: str) -> int:
    return int(body.rsplit(" ", 1)[1])


def workers_of(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def test_hello_under_gunicorn_with_three_workers(gunicorn: tuple[subprocess.Popen[str], str]) -> None:
    proc, sock = gunicorn
    first, sid = hello(sock)
    assert re.fullmatch(r"Hello from worker \d+", first)
    assert sid is not None
    assert pid_of(first) in workers_of(proc.pid)

    seen: set[int] = set()

    def visit_in_parallel() -> bool:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            bodies = list(pool.map(lambda _: hello(sock, sid)[0], range(6)))
        for body in bodies:
            assert re.fullmatch(r"Hello again from worker \d+", body), body
            seen.add(pid_of(body))
        return len(seen) >= 2

    wait_until(visit_in_parallel, WORKERS_UP)  # the session is seen by more than one worker
    assert seen <= workers_of(proc.pid)

    victim = pid_of(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in workers_of(proc.pid) and len(workers_of(proc.pid)) == 3, WORKERS_UP)
    replacement = (workers_of(proc.pid) - seen - {victim}) or workers_of(proc.pid)

    def answered_by_a_new_worker() -> bool:
        body, _ = hello(sock, sid)
        assert body.startswith("Hello again from worker "), body
        return pid_of(body) in replacement

    wait_until(answered_by_a_new_worker, WORKERS_UP)


def test_the_documented_suite_command_reaches_level_shared_or_above(tmp_path: Path) -> None:
    """The first command of docs/cluster.md: the whole suite against cluster_target."""
    import storekit.reference

    command = re.search(r"```\n(pytest --storekit=\S+)\n```", DOC.read_text())
    assert command is not None
    if not hasattr(storekit.reference, "cluster_target"):
        pytest.skip("storekit.reference does not export cluster_target yet")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREKIT_CLUSTER")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            *command.group(1).split(),
            f"--storekit-report={report}",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert json.loads(report.read_text())["targets"][0]["level"] in ("shared", "sticky")
