"""`storekit serve` as a newcomer meets it: ClusterStore with no setup, a factory given as an app,
the bind that listens everywhere, a second server on a port already served, and MODULE:APP lookup.

Every server here is a real `python -m storekit serve` in its own session, on an ephemeral
loopback port, read for readiness from its banner, and checked for leftover processes after.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import nothing_left_in_session, wait_until

from storekit.reference.cluster import ENV_KEY, ENV_SOCKET, ClusterStore
from storekit.reference.sticky import StickyServer
from storekit.reference.sticky.bpf import kernel_supported
from storekit.testing.http_client import process_alive, request
from storekit.wsgi import SessionMiddleware, session_of

KERNEL = pytest.param(
    "kernel", marks=pytest.mark.skipif(not kernel_supported(), reason="needs Linux SO_REUSEPORT")
)
START = 30.0  # seconds a server may take to start on a loaded machine

COUNTER_APP = """
import os

from storekit.reference.cluster import ClusterStore, ENV_SOCKET
from storekit.wsgi import SessionMiddleware, session_of


def counter(environ, start_response):
    session = session_of(environ)
    session["n"] = session.get("n", 0) + 1
    body = f"{session['n']} {os.getpid()} {os.environ[ENV_SOCKET]}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_app():
    return SessionMiddleware(counter, ClusterStore(), secret="a long random value")


app = SessionMiddleware(counter, ClusterStore(), secret="a long random value")  # built in the master
"""

SHAPES_APP = """
from storekit.reference.sticky import whoami


def create_app():
    return whoami


def create_app_any(*args, **kwargs):
    return whoami


class App:
    def __init__(self):
        self.inner = whoami

    def __call__(self, environ, start_response):
        return self.inner(environ, start_response)


instance = App()


def takes_three(environ, start_response, extra):
    return whoami(environ, start_response)
"""


@dataclass
class Serve:
    proc: subprocess.Popen[str]
    port: int
    banner: str

    def stop(self) -> str:
        """SIGTERM; the rest of stderr once the server exited 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


class Servers:
    """`storekit serve` processes run from a directory that holds the test apps; every one is
    killed if still running, and checked for leftover processes, at the end of the test."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *argv: str) -> Serve:
        """A server that printed its banner (every socket bound)."""
        proc = self.launch(*argv)
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        found = re.search(r"on http://[^ ]*:(\d+), ", banner)
        assert found, banner + (proc.stderr.read() if proc.poll() is not None else "")
        return Serve(proc, int(found.group(1)), banner)

    def run(self, *argv: str) -> tuple[int, str]:
        """(exit status, stderr) of a server expected to refuse to start."""
        proc = self.launch(*argv)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err

    def launch(self, *argv: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOREKIT_CLUSTER")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "storekit", "serve", *argv],
            cwd=self.cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
        for proc in self.started:
            nothing_left_in_session(proc.pid)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    (tmp_path / "counter_app.py").write_text(COUNTER_APP)
    (tmp_path / "shapes_app.py").write_text(SHAPES_APP)
    servers = Servers(tmp_path)
    try:
        yield servers
    finally:
        servers.close()


def ask(port: int, cookie: str | None = None, path: str = "/") -> tuple[int, str, str | None]:
    """(status, body, session cookie set) for one request from 127.0.0.7 on a new connection."""
    headers = {"Cookie": cookie} if cookie else {}
    reply = request("127.0.0.1", port, path, source="127.0.0.7", headers=headers)
    set_cookie = reply.headers.get("Set-Cookie")
    return reply.status, reply.text, set_cookie.split(";", 1)[0] if set_cookie else None


# -- 1. ClusterStore under storekit serve, with no setup of the user's own --------------------------
@pytest.mark.parametrize("mode", [KERNEL, "handoff"])
@pytest.mark.parametrize("target", [["counter_app:app"], ["counter_app:make_app", "--factory"]])
def test_cluster_store_sessions_are_shared_by_every_worker_and_leave_no_directory(
    servers: Servers, mode: str, target: list[str]
) -> None:
    argv = [*target, "--workers", "2", "--routing", "round-robin", "--mode", mode, "--bind", "127.0.0.1:0"]
    server: Serve = servers.start(*argv)
    status, body, cookie = ask(server.port)
    assert status == 200, body
    assert cookie is not None
    count, _, socket_path = body.split()
    assert count == "1"
    directory = Path(socket_path).parent
    assert directory.is_dir()
    pids: set[int] = set()
    expected = 1

    def counts_on_from_every_worker() -> bool:
        nonlocal expected
        expected += 1
        status, body, _ = ask(server.port, cookie)
        assert status == 200, body
        n, pid, _ = body.split()
        assert int(n) == expected, f"the session counter went {expected - 1} -> {n}: not one shared store"
        pids.add(int(pid))
        return len(pids) == 2 and expected >= 4

    wait_until(counts_on_from_every_worker, START, "two workers did not both serve the session")
    server.stop()
    assert not directory.exists(), f"{directory} outlived the server"


def counter(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = session_of(environ)
    session["n"] = session.get("n", 0) + 1
    body = f"{session['n']} {os.getpid()} {os.environ[ENV_SOCKET]}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_counter() -> SessionMiddleware:
    return SessionMiddleware(counter, ClusterStore(), secret="a long random value")


def test_a_sticky_server_started_from_python_shares_cluster_sessions_and_cleans_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_SOCKET, raising=False)
    monkeypatch.delenv(ENV_KEY, raising=False)
    with StickyServer(make_counter, factory=True, workers=2, routing="round-robin", mode="handoff") as server:
        status, body, cookie = ask(server.port)
        assert (status, body.split()[0]) == (200, "1"), body
        directory = Path(body.split()[2]).parent
        replies = [ask(server.port, cookie)[1].split() for _ in range(3)]
        assert [int(n) for n, _, _ in replies] == [2, 3, 4]
        assert len({pid for _, pid, _ in replies}) == 2  # handoff round-robin: a strict rotation
        pids = server.all_pids()
    assert ENV_SOCKET not in os.environ  # the master set it up, not this process
    assert not directory.exists(), f"{directory} outlived stop()"
    wait_until(lambda: not any(process_alive(p) for p in pids), 10, "processes outlived stop()")


def test_stop_removes_the_cluster_directory_of_a_master_that_was_sigkilled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_SOCKET, raising=False)
    monkeypatch.delenv(ENV_KEY, raising=False)
    server = StickyServer(make_counter, factory=True, workers=1, mode="handoff")
    server.start()
    try:
        status, body, _ = ask(server.port)
        assert status == 200, body
        directory = Path(body.split()[2]).parent
        pids = server.all_pids()
        assert server.master_pid is not None
        os.kill(server.master_pid, signal.SIGKILL)  # no chance to clean up
    finally:
        server.stop()
    assert not directory.exists(), f"{directory} outlived a SIGKILLed master"
    wait_until(lambda: not any(process_alive(p) for p in pids), 10, "processes outlived stop()")


def test_a_factory_given_to_sticky_server_as_an_app_is_refused_saying_factory_true() -> None:
    with pytest.raises(ValueError, match=r"it looks like an app factory; use factory=True"):
        StickyServer(make_counter, workers=1)
    with pytest.raises(ValueError, match=r"takes \(environ, start_response\), so drop factory=True"):
        StickyServer(counter, workers=1, factory=True)


# -- 3. a factory given as an app ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "message"),
    [
        (["shapes_app:create_app"], "'shapes_app:create_app' is a callable that takes (), not (environ, "),
        (["shapes_app:App"], "'shapes_app:App' is a class that takes ()"),
        (["shapes_app:takes_three"], "a WSGI app takes (environ, start_response)"),
        (["shapes_app:instance", "--factory"], "it takes (environ, start_response), so drop --factory"),
    ],
)
def test_an_app_that_is_no_wsgi_app_is_refused_before_any_worker_starts(
    servers: Servers, target: list[str], message: str
) -> None:
    code, err = servers.run(*target, "--workers", "2", "--bind", "127.0.0.1:0")
    assert code == 2, err
    assert err.startswith("storekit serve: error: "), err
    assert message in err
    if "takes ()" in message:  # a factory without --factory
        assert "it looks like an app factory; use --factory" in err


@pytest.mark.parametrize(
    "target",
    [["shapes_app:instance"], ["shapes_app:create_app", "--factory"], ["shapes_app:App", "--factory"]],
)
def test_instances_functions_and_factories_that_fit_are_served(servers: Servers, target: list[str]) -> None:
    server: Serve = servers.start(*target, "--workers", "2", "--bind", "127.0.0.1:0")
    status, body, _ = ask(server.port)
    assert (status, body.split()[0]) == (200, "slot")
    server.stop()


def test_a_factory_that_its_signature_hides_answers_500_saying_use_factory(servers: Servers) -> None:
    server: Serve = servers.start("shapes_app:create_app_any", "--workers", "1", "--bind", "127.0.0.1:0")
    status, body, _ = ask(server.port)
    assert status == 500
    assert "'shapes_app:create_app_any' returned <function whoami" in body
    assert body.rstrip().endswith("it looks like an app factory; use --factory")
    assert "use --factory" in server.stop()


# -- 4. the bind ---------------------------------------------------------------------------------------
def test_help_states_the_default_bind() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "storekit", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "default 127.0.0.1:8000, this machine only" in " ".join(done.stdout.split())


@pytest.mark.parametrize(("bind", "everywhere"), [(":0", True), ("0.0.0.0:0", True), ("127.0.0.1:0", False)])
def test_a_bind_on_every_interface_says_so(servers: Servers, bind: str, everywhere: bool) -> None:
    server: Serve = servers.start("storekit.reference.sticky:whoami", "--workers", "1", "--bind", bind)
    assert ask(server.port)[0] == 200
    rest = server.stop()
    line = f"listening on every interface ({bind!r}): other machines can connect; --bind 127.0.0.1:"
    assert (line in rest) is everywhere, rest


# -- 5. a second server on a port already served ---------------------------------------------------------
@pytest.mark.parametrize("first_mode", [KERNEL, "handoff"])
@pytest.mark.parametrize("second_mode", [KERNEL, "handoff"])
def test_a_second_server_on_a_served_port_is_refused_and_the_first_keeps_serving(
    servers: Servers, first_mode: str, second_mode: str
) -> None:
    whoami = "storekit.reference.sticky:whoami"
    first: Serve = servers.start(whoami, "--workers", "2", "--bind", "127.0.0.1:0", "--mode", first_mode)
    bind = f"127.0.0.1:{first.port}"
    code, err = servers.run(whoami, "--workers", "2", "--bind", bind, "--mode", second_mode)
    assert code == 1, err
    served = f"port {first.port} on 127.0.0.1 is already served by pid {first.proc.pid} ("
    assert f"cannot listen on {bind!r}: {served}" in err
    assert "stop that server first, or choose another port with --bind" in err
    for _ in range(4):
        assert ask(first.port)[0] == 200
    first.stop()


# -- 6. MODULE:APP is found as storekit.resolve finds it -------------------------------------------------
def test_a_module_that_is_nowhere_names_the_directory_looked_in(servers: Servers, tmp_path: Path) -> None:
    code, err = servers.run("no_such_module_xyz:app", "--bind", "127.0.0.1:0")
    assert code == 2, err
    assert "cannot load 'no_such_module_xyz:app': MODULE:APP cannot import module 'no_such_module_xyz'" in err
    assert f"(looked in {str(tmp_path)!r} too)" in err
