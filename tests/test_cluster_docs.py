"""Every code example in docs/cluster.md runs, for real: the quick start, the
multiprocessing pool, and the /hello app under gunicorn and under `storekit serve`
with several workers."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import nothing_left_in_session, wait_until

from storekit.reference import cluster
from storekit.testing.http_client import request

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


def serve_command() -> list[str]:
    """The `storekit serve ...` line of docs/cluster.md's storekit serve section, as argv after 'serve'."""
    found = re.search(r"```\n(storekit serve [^\n]+)\n```", DOC.read_text())
    assert found, "docs/cluster.md shows no storekit serve command"
    return shlex.split(found.group(1))[2:]


def test_hello_under_storekit_serve_needs_no_setup(workdir: Path) -> None:
    """The command of the storekit serve section: hello.py's module-level store, built in the
    sticky master with no setup() of its own, shares the session across every worker."""
    argv = [*serve_command(), "--bind", "127.0.0.1:0"]
    workers = int(argv[argv.index("--workers") + 1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREKIT_CLUSTER")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "storekit", "serve", *argv],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        port = re.search(r"on http://127\.0\.0\.1:(\d+), ", banner)
        assert port, banner
        first = request("127.0.0.1", int(port.group(1)), "/hello", source="127.0.0.3")
        assert re.fullmatch(r"Hello from worker \d+", first.text), first
        cookie = first.headers["Set-Cookie"].split(";", 1)[0]
        seen: set[int] = set()

        def every_worker_knows_the_session() -> bool:
            reply = request(
                "127.0.0.1", int(port.group(1)), "/hello", source="127.0.0.3", headers={"Cookie": cookie}
            )
            assert re.fullmatch(r"Hello again from worker \d+", reply.text), reply
            seen.add(pid_of(reply.text))
            return len(seen) == workers

        wait_until(every_worker_knows_the_session, WORKERS_UP, f"not all {workers} workers saw the session")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()  # type: ignore[union-attr]
    nothing_left_in_session(proc.pid)


def test_the_documented_suite_command_reaches_level_shared_or_above(tmp_path: Path) -> None:
    """The first command of docs/cluster.md: the whole suite against cluster_target and its async twin."""
    import storekit.reference

    command = re.search(r"```\n(pytest(?: --storekit=\S+)+)\n```", DOC.read_text())
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
    targets = json.loads(report.read_text())["targets"]
    assert [t["name"] for t in targets] == ["ClusterStore", "AsyncClusterStore"]
    assert all(t["level"] in ("shared", "sticky") for t in targets), targets


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``path`` (outside code blocks)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    titles = re.findall(r"^#{1,6} (.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in titles}


def test_the_gunicorn_recipe_is_one_and_has_the_anchor_other_pages_link_to() -> None:
    assert "gunicorn" in _anchors(DOC)  # docs/cluster.md#gunicorn
    assert DOC.read_text().count("# gunicorn.conf.py\n") == 1


@pytest.mark.parametrize("name", ["cluster.md", "sticky.md"])
def test_links_between_cluster_md_and_sticky_md_find_their_heading(name: str) -> None:
    docs = DOC.parent
    links = re.findall(r"\]\(((?:cluster|sticky)\.md)#([^)]+)\)", (docs / name).read_text())
    assert links
    missing = [f"{doc}#{anchor}" for doc, anchor in links if anchor not in _anchors(docs / doc)]
    assert missing == []
