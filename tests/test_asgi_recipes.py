"""The "Several workers" recipes of docs/asgi.md, run for real: the Starlette counter
of the page under `storekit serve`, gunicorn's ASGI worker and uvicorn's --workers,
with AsyncClusterStore and AsyncRedisStore, two workers each.

Each test writes the page's files into a temporary directory, runs the page's
command as written (plus a free loopback port), and checks that one client,
opening a new connection for every request, counts 1, 2, 3, ... while more than
one worker answers; then SIGTERM, a clean exit, and no process left behind.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import nothing_left_in_session, wait_until

from storekit.reference import cluster
from storekit.testing.http_client import request

DOCS = Path(__file__).resolve().parent.parent / "docs"
BIN = Path(sys.executable).parent
UP = 30.0
"""Seconds a server may take to start (or to show a second worker) on a loaded machine."""
REDIS_PLACEHOLDER = "redis://127.0.0.1:6379/0"
_ANSWER = re.compile(r"(\d+) from worker (\d+)")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def section() -> str:
    text = (DOCS / "asgi.md").read_text()
    assert "\n## Several workers\n" in text, "docs/asgi.md has no 'Several workers' section"
    return text.split("\n## Several workers\n", 1)[1]


def files() -> dict[str, str]:
    """The section's ```py files, by the name on their first line."""
    named = {}
    for block in re.findall(r"```py\n(.*?)```", section(), re.S):
        first = block.splitlines()[0]
        assert re.fullmatch(r"# [\w.]+\.py", first), f"a recipe file must start with '# file.py': {first!r}"
        named[first[2:]] = block
    return named


def commands() -> list[str]:
    """The section's one-line shell commands, in order."""
    return re.findall(r"```\n([^\n]+)\n```", section())


def command(start: str) -> str:
    found = [line for line in commands() if line.startswith(start)]
    assert len(found) == 1, f"docs/asgi.md's 'Several workers' should show one command {start!r}...: {found}"
    return found[0]


RECIPES = {
    "storekit-serve-cluster": "storekit serve ",
    "gunicorn-cluster": "gunicorn -c gunicorn.conf.py ",
    "gunicorn-redis": f"REDIS_URL={REDIS_PLACEHOLDER} gunicorn ",
    "uvicorn-redis": f"REDIS_URL={REDIS_PLACEHOLDER} uvicorn ",
    "uvicorn-run-cluster": "python serve.py",
}


def gunicorn_conf() -> str:
    """docs/cluster.md's one gunicorn.conf.py, which the asgi.md recipe links to."""
    blocks = re.findall(r"```python\n(# gunicorn\.conf\.py\n.*?)```", (DOCS / "cluster.md").read_text(), re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def test_every_command_and_file_of_the_section_is_run_here() -> None:
    assert sorted(files()) == ["counter.py", "serve.py"]
    assert sorted(commands()) == sorted(command(start) for start in RECIPES.values())
    assert "uvicorn counter:app --workers 2" in section()  # the plain command the uvicorn part explains


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The section's files, and cluster.md's gunicorn.conf.py; no cluster master inherited."""
    monkeypatch.delenv(cluster.ENV_SOCKET, raising=False)
    monkeypatch.delenv(cluster.ENV_KEY, raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    for name, text in files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "gunicorn.conf.py").write_text(gunicorn_conf())
    return tmp_path


def argv_of(line: str, redis_url: str | None) -> tuple[list[str], dict[str, str]]:
    """A documented command as argv (this venv's programs, on a free port) and its environment."""
    words = shlex.split(line)
    env = dict(os.environ)
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = redis_url if value == REDIS_PLACEHOLDER and redis_url else value
    program, args = words[0], words[1:]
    if program == "storekit":
        return [sys.executable, "-m", "storekit", *args, "--bind", "127.0.0.1:0"], env
    if program == "gunicorn":
        return [str(BIN / "gunicorn"), *args, "--bind", "127.0.0.1:0", "--no-control-socket"], env
    if program == "uvicorn":
        return [str(BIN / "uvicorn"), *args, "--port", "0"], env
    assert program == "python", line
    return [sys.executable, *args], env


class Served:
    """A documented command running in a session of its own, its output in a file."""

    def __init__(self, workdir: Path, argv: list[str], env: dict[str, str]) -> None:
        self.log = workdir / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.port = 0

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_port(self) -> int:
        def announced() -> bool:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
            found = re.search(r"http://127\.0\.0\.1:(\d+)", self.output())
            self.port = int(found.group(1)) if found else 0
            return bool(self.port)

        wait_until(announced, UP, "the server did not say where it listens")
        return self.port

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            nothing_left_in_session(self.proc.pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def visit(port: int, cookie: str | None) -> tuple[int, int, str | None]:
    """(count, worker pid, cookie) of one GET / on a new connection."""
    reply = request("127.0.0.1", port, "/", headers={"Cookie": cookie} if cookie else {}, timeout=10)
    found = _ANSWER.fullmatch(reply.text)
    assert reply.status == 200, (reply.status, reply.text[:300])
    assert found, reply.text[:300]
    set_cookie = reply.headers.get("set-cookie") or reply.headers.get("Set-Cookie")
    return int(found.group(1)), int(found.group(2)), set_cookie.split(";", 1)[0] if set_cookie else cookie


def counts_across_workers(served: Served) -> set[int]:
    """One client counts 1, 2, 3, ... until more than one worker has answered; the workers' pids."""
    port = served.wait_for_port()

    def answers() -> bool:
        try:
            visit(port, None)
        except OSError:
            return False
        return True

    wait_until(answers, UP, "the server did not answer")
    counts: list[int] = []
    pids: set[int] = set()
    cookie: str | None = None

    def two_workers_answered() -> bool:
        nonlocal cookie
        n, pid, cookie = visit(port, cookie)
        counts.append(n)
        pids.add(pid)
        assert counts == list(range(1, len(counts) + 1)), f"the session counted {counts} over workers {pids}"
        return len(counts) >= 3 and len(pids) > 1

    wait_until(two_workers_answered, UP, f"one worker answered every request: {pids}")
    return pids


def run_recipe(workdir: Path, recipe: str, redis_url: str | None = None) -> tuple[Served, set[int]]:
    argv, env = argv_of(command(RECIPES[recipe]), redis_url)
    served = Served(workdir, argv, env)
    try:
        pids = counts_across_workers(served)
    except BaseException:
        served.kill()
        raise
    return served, pids


def test_storekit_serve_with_async_cluster_store_needs_no_setup(workdir: Path) -> None:
    served, pids = run_recipe(workdir, "storekit-serve-cluster")
    assert served.stop() == 0, served.output()[-3000:]
    assert served.proc.pid not in pids


def gunicorn_has_the_asgi_worker() -> None:
    done = subprocess.run([str(BIN / "gunicorn"), "--version"], capture_output=True, text=True, check=True)
    version = re.search(r"(\d+)\.\d+", done.stdout + done.stderr)
    assert version is not None, done
    if int(version.group(1)) < 25:
        pytest.skip(f"--worker-class asgi needs gunicorn >= 25, this is {version.group(0)}")


def test_gunicorn_asgi_worker_with_async_cluster_store_and_setup_in_the_conf(workdir: Path) -> None:
    gunicorn_has_the_asgi_worker()
    served, _ = run_recipe(workdir, "gunicorn-cluster")
    assert served.stop() == 0, served.output()[-3000:]


def test_gunicorn_asgi_worker_with_async_redis_store(workdir: Path, redis_url: str) -> None:
    gunicorn_has_the_asgi_worker()
    served, _ = run_recipe(workdir, "gunicorn-redis", redis_url)
    assert served.stop() == 0, served.output()[-3000:]


def test_uvicorn_workers_with_async_redis_store(workdir: Path, redis_url: str) -> None:
    served, _ = run_recipe(workdir, "uvicorn-redis", redis_url)
    assert served.stop() == 0, served.output()[-3000:]


def test_uvicorn_run_in_a_script_that_calls_setup_hosts_the_cluster_master(workdir: Path) -> None:
    """serve.py is uvicorn's supervisor and the cluster master; SIGTERM removes the socket's directory."""
    script = workdir / "serve.py"
    assert "port=8000" in script.read_text()
    script.write_text(script.read_text().replace("port=8000", "port=0"))
    served, pids = run_recipe(workdir, "uvicorn-run-cluster")
    socket_path = Path(inherited(min(pids), cluster.ENV_SOCKET))
    assert socket_path.exists()
    assert served.stop() == 0, served.output()[-3000:]
    assert not socket_path.parent.exists()


def inherited(pid: int, name: str) -> str:
    """The value of ``name`` in the environment process ``pid`` started with."""
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        key, _, value = entry.partition(b"=")
        if key == name.encode():
            return os.fsdecode(value)
    raise AssertionError(f"process {pid} did not inherit ${name}")


def test_plain_uvicorn_workers_cannot_reach_a_cluster_master(workdir: Path) -> None:
    """What the uvicorn part says: its supervisor runs nothing of ours, so every worker fails at import."""
    argv, env = argv_of("uvicorn counter:app --workers 2", None)
    served = Served(workdir, argv, env)
    try:
        served.wait_for_port()
        wait_until(lambda: "StoreUnavailable: no cluster master" in served.output(), UP, "no worker failed")
    finally:
        served.stop()
